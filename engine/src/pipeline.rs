//! The request pipeline: a fixed list of phases every request goes through on its worker.
//!
//! 1. `route`: method + path -> what to do (proxy endpoint, models, health) or 404/405.
//! 2. body: read under the body limit and timeout (always, so keep-alive framing stays intact).
//! 3. `authenticate`: bearer / x-api-key -> key record, or 401.
//! 4. `inspect`: parse what routing needs from the JSON body (simd-json, in place), or 400.
//! 5. `resolve`: client model -> deployment, or 404 `model_not_found`.
//! 6. `call`: rewrite only `model` (and ask for stream usage), call the upstream.
//! 7. `respond`: non-stream -> read whole body, take usage, send; stream -> forward each SSE
//!    event as it arrives, take usage from the final event, end with an SSE error event if the
//!    upstream cuts the stream.
//!
//! Each phase returns `Result<_, GatewayError>`; the one place an error turns into bytes is
//! `handle`, through `GatewayError`'s renderer.

use std::time::{Duration, Instant};

use crate::trace::RequestId;

use bytes::{Bytes, BytesMut};
use std::cell::Cell;
use std::sync::Arc;

use tollgate_config::UnknownPrice;
use tollgate_policy::governance::{admit, Directory, Estimate, KeyEntry, KeyRefusal};
use tollgate_policy::keys::presented_token;
use tollgate_protocol::anthropic_api;
use tollgate_protocol::chat::ChatRequest;
use tollgate_protocol::http::{Method, RequestHead, Version};
use tollgate_protocol::openai::{
    inspect_request, inspect_stream_chunk, response_usage, rewrite_request, Endpoint,
    RequestSummary, Usage,
};
use tollgate_protocol::sse::SseDecoder;

use crate::builtin_mock::call_mock;
use crate::conn::{Downstream, StreamFraming};
use crate::error::GatewayError;
use crate::router::AttemptResult;
use crate::shared::{Backend, Shared, Wire};
use crate::translate::{attempt_native_anthropic, attempt_translated, AttemptInfo, Ended};
use crate::upstream::{call_http, UpstreamCall, UpstreamResponse};
use crate::worker::Core;

/// Largest single SSE event accepted from an upstream.
pub(crate) const MAX_SSE_FRAME: usize = 1024 * 1024;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Proxy(Endpoint),
    Messages,
    Models,
    Live,
    Ready,
    Admin,
    Metrics,
    Ui,
}

impl Route {
    /// The route's name in metrics.
    fn label(&self) -> &'static str {
        match self {
            Route::Proxy(Endpoint::ChatCompletions) => "chat_completions",
            Route::Proxy(Endpoint::Completions) => "completions",
            Route::Proxy(Endpoint::Embeddings) => "embeddings",
            Route::Messages => "messages",
            Route::Models => "models",
            Route::Live | Route::Ready => "health",
            Route::Admin => "admin",
            Route::Metrics => "metrics",
            Route::Ui => "ui",
        }
    }
}

/// How a request ended, for the caller's bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// False when the connection must close after this response.
    pub(crate) keep_alive: bool,
}

/// The API format a client speaks, which decides how answers and errors are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientFormat {
    /// OpenAI (`/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`).
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
}

/// Handle one request whose head has been read. Returns whether the connection stays open.
pub async fn handle(core: &Core<'_>, conn: &mut Downstream, head: RequestHead) -> bool {
    let keep_alive = head.keep_alive && !core.draining.get();
    let seq = core.request_seq.get();
    core.request_seq.set(seq.wrapping_add(1));
    let id = head
        .header("x-request-id")
        .and_then(RequestId::from_client)
        .unwrap_or_else(|| RequestId::generate(crate::governor::now_ms(), core.id, seq));
    conn.set_request_id(Some(id));
    let route = route(head.method, head.method_str(), head.path());
    let label = route.as_ref().map_or("unknown", Route::label);
    let started = Instant::now();
    let keep = serve(core, conn, head, route, keep_alive).await;
    let status = conn.last_status();
    core.metrics.borrow_mut().http_response(label, status);
    if !conn.take_logged() {
        // Not a model request, or refused before one (no key, no such model): a short line.
        core.access.log(|| crate::access_log::AccessEntry {
            time_ms: crate::governor::now_ms(),
            request_id: id.as_str(),
            route: label,
            status,
            latency_us: u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            ..Default::default()
        });
    }
    keep
}

/// Phases 2 on: answer the request `route` sends where it goes (or the routing error).
async fn serve(
    core: &Core<'_>,
    conn: &mut Downstream,
    head: RequestHead,
    route: Result<Route, GatewayError>,
    keep_alive: bool,
) -> bool {
    let version = head.version;
    let route = match route {
        Ok(r) => r,
        Err(e) => {
            // Unknown routes still have their body drained so the connection stays usable.
            return match conn.read_body(&head, core).await {
                Ok(_) => fail(conn, &e, keep_alive, version, ClientFormat::OpenAi),
                Err(body_err) => fail(conn, &body_err, false, version, ClientFormat::OpenAi),
            };
        }
    };
    let format = match route {
        Route::Messages => ClientFormat::Anthropic,
        _ => ClientFormat::OpenAi,
    };
    let body = match conn.read_body(&head, core).await {
        Ok(b) => b,
        Err(e) => return fail(conn, &e, false, version, format),
    };
    let result = match route {
        Route::Live => health(conn, 200, "live", keep_alive, version).await,
        Route::Ready if core.draining.get() => health(conn, 503, "draining", false, version).await,
        Route::Ready => health(conn, 200, "ready", keep_alive, version).await,
        Route::Models => match models_auth(core, &head) {
            Ok(_) => conn
                .respond(
                    200,
                    b"application/json",
                    &[],
                    core.shared().models_body.clone(),
                    keep_alive,
                    version,
                )
                .await
                .map(|_| Outcome { keep_alive })
                .map_err(|_| GatewayError::ClientGone),
            Err(e) => Err(e),
        },
        Route::Proxy(endpoint) => proxy(core, conn, &head, endpoint, body, keep_alive).await,
        Route::Messages => messages(core, conn, &head, body, keep_alive).await,
        Route::Admin if crate::dashboard::is_live_view(head.path()) => {
            crate::dashboard::live_view(core, conn, &head, keep_alive).await
        }
        Route::Admin => admin(core, conn, &head, body, keep_alive).await,
        Route::Ui => crate::dashboard::ui(core, conn, &head, body, keep_alive).await,
        Route::Metrics => metrics(core, conn, keep_alive, version).await,
    };
    match result {
        Ok(outcome) => outcome.keep_alive,
        Err(e) => fail(
            conn,
            &e,
            keep_alive && !e.closes_connection(),
            version,
            format,
        ),
    }
}

/// The id of the request `conn` is answering (set by `handle` before any route runs).
fn request_id(conn: &Downstream) -> RequestId {
    conn.request_id()
        .copied()
        .unwrap_or_else(|| RequestId::generate(0, 0, 0))
}

/// What every upstream call of this request carries: its id, and the client's trace context
/// as a child span.
fn upstream_lines(core: &Core<'_>, conn: &Downstream, head: &RequestHead) -> Bytes {
    let span = core.next_span_id();
    crate::trace::upstream_lines(
        &request_id(conn),
        head.header("traceparent"),
        head.header("tracestate"),
        span,
    )
}

/// `/v1/models` needs a valid key, nothing more.
fn models_auth(core: &Core<'_>, head: &RequestHead) -> Result<(), GatewayError> {
    let directory = core.directory.borrow().clone();
    authenticate(&directory, head, crate::governor::now_ms() / 1000).map(|_| ())
}

fn fail(
    conn: &mut Downstream,
    e: &GatewayError,
    keep_alive: bool,
    version: Version,
    format: ClientFormat,
) -> bool {
    conn.write_error(e, keep_alive, version, format);
    keep_alive
}

async fn health(
    conn: &mut Downstream,
    status: u16,
    state: &'static str,
    keep_alive: bool,
    version: Version,
) -> Result<Outcome, GatewayError> {
    let body = match state {
        "live" => Bytes::from_static(br#"{"status":"live"}"#),
        "ready" => Bytes::from_static(br#"{"status":"ready"}"#),
        _ => Bytes::from_static(br#"{"status":"draining"}"#),
    };
    conn.respond(status, b"application/json", &[], body, keep_alive, version)
        .await
        .map_err(|_| GatewayError::ClientGone)?;
    Ok(Outcome { keep_alive })
}

/// `/metrics`: every core's counters and histograms, merged, in the Prometheus text format.
/// Open like the health endpoints: label values are config and directory names, never keys.
async fn metrics(
    core: &Core<'_>,
    conn: &mut Downstream,
    keep_alive: bool,
    version: Version,
) -> Result<Outcome, GatewayError> {
    if !core.shared().config.server.metrics {
        return Err(GatewayError::NotFound {
            method: "GET".to_owned(),
            path: "/metrics".to_owned(),
        });
    }
    let own = core.metrics.borrow().snapshot(core.open_connections.get());
    let text = core.telemetry.collect(core.id, own).await.render();
    conn.respond(
        200,
        b"text/plain; version=0.0.4; charset=utf-8",
        &[],
        Bytes::from(text),
        keep_alive,
        version,
    )
    .await
    .map_err(|_| GatewayError::ClientGone)?;
    Ok(Outcome { keep_alive })
}

/// `/admin/...`: master key (or dashboard session), then the operation, run on the storage
/// thread when it touches the store. Admin traffic is rare; the worker polls for the answer
/// rather than block.
async fn admin(
    core: &Core<'_>,
    conn: &mut Downstream,
    head: &RequestHead,
    body: Bytes,
    keep_alive: bool,
) -> Result<Outcome, GatewayError> {
    use crate::admin::{self, AdminError};
    let gov = core.gov.clone();
    crate::dashboard::authorize_admin(core, head)?;
    let shared = core.shared();
    if head.path().split('?').next() == Some("/admin/reload") {
        if head.method != Method::Post {
            return Err(GatewayError::MethodNotAllowed {
                method: truncate(head.method_str(), 32).to_owned(),
                path: "/admin/reload".to_owned(),
                allow: "POST",
            });
        }
        return reload(core, conn, head.version, keep_alive).await;
    }
    let known = admin::Known {
        models: &shared.model_names,
        profiles: &shared.profile_names,
    };
    let op = admin::parse(head.method_str(), head.path(), &body, known)?;
    let answer = match gov.read(|records| admin::read(records, &op)) {
        Some(read) => read.map(|v| (200, v)),
        None => {
            let g = gov.clone();
            let reply = gov.storage.call(move |store| {
                if let Some(report) = admin::report(store, &op) {
                    return report.map(|v| (200, v));
                }
                g.change(store, |records| admin::apply(records, op))
            });
            let answer = poll_reply(&reply, Duration::from_secs(30), Duration::from_millis(1));
            answer.await.unwrap_or_else(|| {
                Err(AdminError {
                    status: 503,
                    message: "The storage thread did not answer.".into(),
                    code: "store_unavailable",
                    param: None,
                })
            })
        }
    };
    let (status, value) = answer?;
    let body = serde_json::to_vec(&value).unwrap_or_default();
    conn.respond(
        status,
        b"application/json",
        &crate::dashboard::DATA_HEADERS,
        Bytes::from(body),
        keep_alive,
        head.version,
    )
    .await
    .map_err(|_| GatewayError::ClientGone)?;
    Ok(Outcome { keep_alive })
}

/// `POST /admin/reload`: the reloader rereads and swaps the config (this core keeps serving
/// meanwhile: its control loop takes part in the swap while this request waits).
async fn reload(
    core: &Core<'_>,
    conn: &mut Downstream,
    version: Version,
    keep_alive: bool,
) -> Result<Outcome, GatewayError> {
    let reply = core.reloader.request();
    // Longer than the reloader's own deadlines, so it is the one that reports a stall.
    let outcome = poll_reply(&reply, Duration::from_secs(60), Duration::from_millis(5))
        .await
        .unwrap_or_else(|| {
            Err(crate::reload::ReloadError::Stalled(
                "the reloader did not answer".into(),
            ))
        });
    let (status, body) = match outcome {
        Ok(report) => (200, report.to_json()),
        Err(e) => (e.status(), e.to_json()),
    };
    conn.respond(
        status,
        b"application/json",
        &crate::dashboard::DATA_HEADERS,
        Bytes::from(serde_json::to_vec(&body).unwrap_or_default()),
        keep_alive,
        version,
    )
    .await
    .map_err(|_| GatewayError::ClientGone)?;
    Ok(Outcome { keep_alive })
}

/// Phase 1: method + path (query ignored) -> route. `method_text` is the method as sent, for
/// error messages.
fn route(method: Method, method_text: &str, target: &str) -> Result<Route, GatewayError> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if path.starts_with("/admin/") {
        // Methods are checked per admin route.
        return Ok(Route::Admin);
    }
    if path == "/ui" || path.starts_with("/ui/") {
        return Ok(Route::Ui);
    }
    let (route, allow) = match path {
        "/v1/chat/completions" => (Route::Proxy(Endpoint::ChatCompletions), Method::Post),
        "/v1/completions" => (Route::Proxy(Endpoint::Completions), Method::Post),
        "/v1/embeddings" => (Route::Proxy(Endpoint::Embeddings), Method::Post),
        "/v1/messages" => (Route::Messages, Method::Post),
        "/v1/models" => (Route::Models, Method::Get),
        "/health/live" => (Route::Live, Method::Get),
        "/health/ready" => (Route::Ready, Method::Get),
        "/metrics" => (Route::Metrics, Method::Get),
        _ => {
            return Err(GatewayError::NotFound {
                method: truncate(method_text, 32).to_owned(),
                path: truncate(path, 256).to_owned(),
            })
        }
    };
    if method == allow {
        Ok(route)
    } else {
        Err(GatewayError::MethodNotAllowed {
            method: truncate(method_text, 32).to_owned(),
            path: path.to_owned(),
            allow: allow.as_str().unwrap_or_default(),
        })
    }
}

/// Wait for the answer another thread (storage, reloader) sends on `reply` without blocking
/// the worker: look every `every` until `within` has passed. `None`: no answer in time, or
/// the other side is gone. For admin traffic, which is rare.
async fn poll_reply<T>(
    reply: &crossbeam_channel::Receiver<T>,
    within: Duration,
    every: Duration,
) -> Option<T> {
    let deadline = Instant::now() + within;
    loop {
        match reply.try_recv() {
            Ok(answer) => return Some(answer),
            Err(crossbeam_channel::TryRecvError::Empty) if Instant::now() < deadline => {
                monoio::time::sleep(every).await;
            }
            Err(_) => return None,
        }
    }
}

/// `s` cut to at most `max` bytes, on a character boundary (for echoing client input in
/// errors).
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Phase 3: the presented key -> its entry (record and limit chain), or 401.
fn authenticate<'d>(
    directory: &'d Directory,
    head: &RequestHead,
    now_s: u64,
) -> Result<&'d Arc<KeyEntry>, GatewayError> {
    let token = presented_token(head.header("authorization"), head.header("x-api-key")).ok_or(
        GatewayError::Unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
        ),
    )?;
    directory
        .authenticate(token, now_s)
        .map_err(|refusal| match refusal {
            KeyRefusal::Unknown | KeyRefusal::ModelNotAllowed => {
                GatewayError::Unauthorized("Incorrect API key provided.")
            }
            KeyRefusal::Revoked => GatewayError::KeyInactive {
                message: "This API key has been revoked.",
                code: "key_revoked",
            },
            KeyRefusal::Expired => GatewayError::KeyInactive {
                message: "This API key has expired.",
                code: "key_expired",
            },
            KeyRefusal::Rotated => GatewayError::KeyInactive {
                message: "This API key was rotated and its grace period is over; use the new key.",
                code: "key_rotated",
            },
        })
}

/// Largest upstream error body kept to pass through to the client.
pub(crate) const MAX_ERROR_BODY: usize = 64 * 1024;

/// The request header with which a client turns fallbacks off for one request.
const FALLBACK_HEADER: &str = "x-tollgate-fallback";

/// What one request carries through its attempts.
pub(crate) struct RequestCtx<'a> {
    pub(crate) head: &'a RequestHead,
    pub(crate) format: ClientFormat,
    pub(crate) endpoint: Endpoint,
    pub(crate) body: Bytes,
    /// The model the client asked for.
    pub(crate) model: String,
    pub(crate) streaming: bool,
    /// The client asked for a usage event in its stream.
    pub(crate) client_wants_usage: bool,
    pub(crate) keep_alive: bool,
    /// OpenAI-format requests: spans for the zero-copy model splice.
    openai: Option<RequestSummary>,
    /// Anthropic-format requests: spans for the native pass-through.
    native: Option<anthropic_api::NativeSummary>,
    /// The canonical form, parsed on the first translated attempt.
    canonical: std::cell::OnceCell<Result<ChatRequest, String>>,
    /// What the attempts learn about usage, for settlement.
    pub(crate) meter: Meter,
    /// Guardrails for this request, when its profile has rules.
    pub(crate) guard: Option<crate::guard::Guard<'a>>,
    /// The request's id (the client's `x-request-id`, or one made here).
    pub(crate) request_id: crate::trace::RequestId,
    /// Header lines every upstream call of this request carries (see `trace::upstream_lines`).
    pub(crate) upstream_lines: Bytes,
}

impl RequestCtx<'_> {
    /// The route this request came in on, as metrics and the access log name it.
    pub(crate) fn route_label(&self) -> &'static str {
        match self.format {
            ClientFormat::Anthropic => Route::Messages.label(),
            ClientFormat::OpenAi => Route::Proxy(self.endpoint).label(),
        }
    }

    /// Replaces the body (input guardrails masked something) and inspects it again, so the
    /// spans the attempts splice at point into the new body.
    fn replace_body(&mut self, body: Bytes, core: &Core<'_>) -> Result<(), GatewayError> {
        match self.format {
            ClientFormat::OpenAi => {
                let summary =
                    inspect_request(self.endpoint, &body, &mut core.scratch.borrow_mut())?;
                self.openai = Some(summary);
            }
            ClientFormat::Anthropic => self.native = Some(inspect_native(&body)?),
        }
        self.body = body;
        Ok(())
    }

    /// Output guardrails on a complete response body about to be sent: the body to send
    /// (placeholders restored, values masked). `ContentPolicy` means a `block` rule matched:
    /// answer the client with it, do not try another deployment.
    pub(crate) fn guard_response(
        &self,
        core: &Core<'_>,
        provider: &str,
        body: Bytes,
    ) -> Result<Bytes, GatewayError> {
        match &self.guard {
            Some(guard) => Ok(match guard.scan_response(core, provider, &body)? {
                Some(rewritten) => Bytes::from(rewritten),
                None => body,
            }),
            None => Ok(body),
        }
    }
}

/// What a request's attempts learn about its usage: the upstream's own report when it sends
/// one, else the output events the gateway forwarded.
#[derive(Debug)]
pub(crate) struct Meter {
    pub(crate) usage: Cell<Option<Usage>>,
    pub(crate) counted_output: Cell<u64>,
    pub(crate) served_by: Cell<Option<(usize, usize)>>,
    pub(crate) status: Cell<u16>,
    /// When the request was read and authenticated (the meter is made then).
    pub(crate) started: Instant,
    /// Streams: when the first event went to the client.
    pub(crate) first_event: Cell<Option<Instant>>,
    /// Upstream calls made (attempts, retries and fallbacks included).
    pub(crate) attempts: Cell<u32>,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            usage: Cell::new(None),
            counted_output: Cell::new(0),
            served_by: Cell::new(None),
            status: Cell::new(200),
            started: Instant::now(),
            first_event: Cell::new(None),
            attempts: Cell::new(0),
        }
    }
}

impl Meter {
    /// The upstream reported usage.
    pub(crate) fn report(&self, usage: Usage) {
        self.usage.set(Some(usage));
    }

    /// The upstream reported usage in canonical form.
    pub(crate) fn report_chat(&self, usage: &tollgate_protocol::chat::ChatUsage) {
        self.report(Usage {
            prompt_tokens: usage.prompt_tokens,
            completion_tokens: usage.completion_tokens,
            total_tokens: usage.total_tokens,
            cached_tokens: usage
                .prompt_tokens_details
                .as_ref()
                .map_or(0, |d| d.cached_tokens),
        });
    }

    /// One more output event went to the client (counted when no usage is reported).
    pub(crate) fn count_output(&self) {
        self.counted_output.set(self.counted_output.get() + 1);
    }

    /// The status the client got, when not 200.
    pub(crate) fn set_status(&self, status: u16) {
        self.status.set(status);
    }
}

impl RequestCtx<'_> {
    fn canonical(&self) -> &Result<ChatRequest, String> {
        self.canonical.get_or_init(|| match self.format {
            ClientFormat::OpenAi => {
                serde_json::from_slice(&self.body).map_err(|e| format!("invalid request: {e}"))
            }
            ClientFormat::Anthropic => {
                anthropic_api::decode_request(&self.body).map_err(|e| e.message)
            }
        })
    }
}

/// An attempt that failed before anything reached the client.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    /// Seconds the upstream asked us to wait.
    pub(crate) retry_after: Option<u64>,
    /// The upstream said the prompt is too long for the model: switch to context fallbacks.
    pub(crate) context_overflow: bool,
}

#[derive(Debug)]
pub(crate) enum FailureKind {
    /// The gateway could not get a usable response (connect, timeout, reset, bad framing).
    Gateway(GatewayError),
    /// The upstream answered with an error; passed through if no other attempt succeeds.
    Upstream {
        status: u16,
        content_type: Option<Bytes>,
        body: Bytes,
    },
}

impl FailureKind {
    /// Bounded label of what went wrong, for metrics.
    fn cause(&self) -> &'static str {
        match self {
            FailureKind::Gateway(e) => e.label(),
            FailureKind::Upstream { status: 429, .. } => "status_429",
            FailureKind::Upstream { status, .. } if *status >= 500 => "status_5xx",
            FailureKind::Upstream { .. } => "status_4xx",
        }
    }
}

pub(crate) enum AttemptEnd {
    /// The client has its answer (success, or an error not worth another attempt).
    Answered(Outcome),
    /// Nothing was written; the chain may go on.
    Failed(Failure),
}

/// The models and deployments a request may still try, in order.
struct Chain {
    models: Vec<usize>,
    position: usize,
    tries_on_model: u32,
    tried: Vec<usize>,
    on_context_chain: bool,
}

impl Chain {
    fn new(shared: &Shared, model: usize, allow_fallbacks: bool) -> Self {
        let mut models = vec![model];
        if allow_fallbacks {
            models.extend(shared.config.models[model].fallbacks.iter().copied());
        }
        Chain {
            models,
            position: 0,
            tries_on_model: 0,
            tried: Vec::new(),
            on_context_chain: false,
        }
    }

    /// Switch to the primary model's context-window fallbacks (once). False when it has none.
    fn switch_to_context_fallbacks(&mut self, shared: &Shared, primary: usize) -> bool {
        let chain = &shared.config.models[primary].context_fallbacks;
        if self.on_context_chain || chain.is_empty() {
            return false;
        }
        self.models = chain.clone();
        self.position = 0;
        self.tries_on_model = 0;
        self.tried.clear();
        self.on_context_chain = true;
        true
    }

    /// The next (model, deployment) to try, or `None` when the chain is exhausted. Each model
    /// gets `retries + 1` attempts, untried deployments first; a model whose deployments are
    /// all cooling down is skipped while a later model remains.
    fn next(&mut self, core: &Core<'_>, retries: u32, now: Instant) -> Option<(usize, usize)> {
        let mut router = core.router().borrow_mut();
        while let Some(&model) = self.models.get(self.position) {
            let last_model = self.position + 1 == self.models.len();
            if self.tries_on_model <= retries
                && (last_model || !router.all_cooling_down(model, now))
            {
                let order = router.order(model, now);
                let pick = order
                    .iter()
                    .copied()
                    .find(|d| !self.tried.contains(d))
                    .or_else(|| order.first().copied());
                if let Some(deployment) = pick {
                    self.tries_on_model += 1;
                    self.tried.push(deployment);
                    return Some((model, deployment));
                }
            }
            self.position += 1;
            self.tries_on_model = 0;
            self.tried.clear();
        }
        None
    }
}

fn fallbacks_allowed(head: &RequestHead) -> bool {
    !head.header(FALLBACK_HEADER).is_some_and(|v| {
        let v = std::str::from_utf8(v).unwrap_or("").trim();
        ["off", "false", "0", "no", "none"]
            .iter()
            .any(|off| v.eq_ignore_ascii_case(off))
    })
}

async fn proxy(
    core: &Core<'_>,
    conn: &mut Downstream,
    head: &RequestHead,
    endpoint: Endpoint,
    body: Bytes,
    keep_alive: bool,
) -> Result<Outcome, GatewayError> {
    let shared = core.shared();
    let directory = core.directory.borrow().clone();
    let now = crate::governor::now_ms();
    let entry = authenticate(&directory, head, now / 1000)?;

    // Phase 4: inspect. The scratch borrow ends before any await.
    let summary = inspect_request(endpoint, &body, &mut core.scratch.borrow_mut())?;
    let max_tokens = if endpoint == Endpoint::Embeddings {
        Some(0)
    } else {
        summary.max_tokens
    };

    // Phase 5: resolve.
    let primary = *shared
        .models
        .get(summary.model.as_str())
        .ok_or_else(|| GatewayError::ModelNotFound(truncate(&summary.model, 256).to_owned()))?;
    let ctx = RequestCtx {
        head,
        format: ClientFormat::OpenAi,
        endpoint,
        model: summary.model.clone(),
        streaming: summary.stream && endpoint != Endpoint::Embeddings,
        client_wants_usage: summary.include_usage == Some(true),
        keep_alive,
        body,
        openai: Some(summary),
        native: None,
        canonical: std::cell::OnceCell::new(),
        meter: Meter::default(),
        guard: crate::guard::Guard::for_key(shared, entry),
        request_id: request_id(conn),
        upstream_lines: upstream_lines(core, conn, head),
    };
    governed(core, conn, ctx, primary, entry, max_tokens, now).await
}

/// Phase 4 for `/v1/messages`: what policy needs from an Anthropic-format body.
fn inspect_native(body: &[u8]) -> Result<anthropic_api::NativeSummary, GatewayError> {
    anthropic_api::inspect_native(body).map_err(|e| {
        GatewayError::InvalidRequest(tollgate_protocol::openai::RequestError {
            message: e.message,
            param: None,
            code: None,
        })
    })
}

/// `POST /v1/messages`: the Anthropic-format front door.
async fn messages(
    core: &Core<'_>,
    conn: &mut Downstream,
    head: &RequestHead,
    body: Bytes,
    keep_alive: bool,
) -> Result<Outcome, GatewayError> {
    let shared = core.shared();
    let directory = core.directory.borrow().clone();
    let now = crate::governor::now_ms();
    let entry = authenticate(&directory, head, now / 1000)?;
    let native = inspect_native(&body)?;
    let primary = *shared
        .models
        .get(native.model.as_str())
        .ok_or_else(|| GatewayError::ModelNotFound(truncate(&native.model, 256).to_owned()))?;
    let max_tokens = native.max_tokens;
    let ctx = RequestCtx {
        head,
        format: ClientFormat::Anthropic,
        endpoint: Endpoint::ChatCompletions,
        model: native.model.clone(),
        streaming: native.stream,
        client_wants_usage: true,
        keep_alive,
        body,
        openai: None,
        native: Some(native),
        canonical: std::cell::OnceCell::new(),
        meter: Meter::default(),
        guard: crate::guard::Guard::for_key(shared, entry),
        request_id: request_id(conn),
        upstream_lines: upstream_lines(core, conn, head),
    };
    governed(core, conn, ctx, primary, entry, Some(max_tokens), now).await
}

/// Prompt tokens assumed before the call: a quarter of the request body, rounded up. The body
/// holds the prompt plus JSON syntax, so this over-estimates English text (about four
/// characters a token); actual usage replaces it at settlement.
fn estimate_input_tokens(body_len: usize) -> u64 {
    body_len.div_ceil(4) as u64
}

/// Phase 5b: policy. Model access, input guardrails (refusing, or masking the body), then
/// every level's limits and budgets (reserving the worst-case cost); then the chain of
/// attempts; then settlement against actual usage and one ledger record, whatever happened.
/// Guardrails come before limits so a refused prompt holds no reservation and no rate slot.
async fn governed(
    core: &Core<'_>,
    conn: &mut Downstream,
    mut ctx: RequestCtx<'_>,
    primary: usize,
    entry: &Arc<KeyEntry>,
    max_tokens: Option<u64>,
    started_ms: u64,
) -> Result<Outcome, GatewayError> {
    let shared = core.shared();
    if !entry.allows(&ctx.model) {
        return Err(GatewayError::Forbidden {
            message: format!(
                "The key `{}` may not use the model `{}`.",
                entry.record.name,
                truncate(&ctx.model, 256)
            ),
            code: "model_not_allowed",
            param: Some("model"),
        });
    }
    let pricing = &shared.pricing[primary];
    let settings = &shared.config.governance;
    if settings.unknown_price == UnknownPrice::Block && !pricing.all_priced {
        return Err(GatewayError::Forbidden {
            message: format!(
                "No price is known for a deployment of `{}`, and this gateway refuses unpriced models.",
                ctx.model
            ),
            code: "model_price_unknown",
            param: Some("model"),
        });
    }
    let input_tokens = estimate_input_tokens(ctx.body.len());
    let max_output_tokens = max_tokens.unwrap_or(settings.default_max_tokens);
    let estimate = Estimate {
        input_tokens,
        max_output_tokens,
        worst_cost: pricing
            .reserve
            .map_or(0, |p| p.worst_case(input_tokens, max_output_tokens)),
    };
    if let Some(guard) = &ctx.guard {
        let scanned = guard
            .scan_request(core, &ctx.body)
            .and_then(|masked| match masked {
                Some(body) => ctx.replace_body(Bytes::from(body), core),
                None => Ok(()),
            });
        if let Err(e) = scanned {
            ctx.meter.set_status(e.status());
            crate::governor::record(core, &ctx, entry, None, estimate, started_ms, false);
            conn.mark_logged();
            return Err(e);
        }
    }
    let admission = match admit(entry, &ctx.model, estimate, core.id, started_ms) {
        Ok(a) => a,
        Err(denial) => {
            let e = crate::governor::refusal(&denial, started_ms);
            let (limit, level) = crate::governor::refusal_labels(&denial);
            core.metrics.borrow_mut().refused(limit, level);
            ctx.meter.set_status(429);
            crate::governor::record(core, &ctx, entry, None, estimate, started_ms, false);
            conn.mark_logged();
            return Err(e);
        }
    };
    let result = run_chain(core, conn, &ctx, primary).await;
    if let Err(e) = &result {
        ctx.meter.set_status(e.status());
    }
    crate::governor::record(
        core,
        &ctx,
        entry,
        Some(admission),
        estimate,
        started_ms,
        true,
    );
    conn.mark_logged();
    result
}

/// Phase 6: attempts, retries and fallbacks, only while nothing has been written.
async fn run_chain(
    core: &Core<'_>,
    conn: &mut Downstream,
    ctx: &RequestCtx<'_>,
    primary: usize,
) -> Result<Outcome, GatewayError> {
    let shared = core.shared();
    let routing = &shared.config.routing;
    let mut chain = Chain::new(shared, primary, fallbacks_allowed(ctx.head));
    let mut attempts: u32 = 0;
    let mut last: Option<Failure> = None;
    while let Some((model, deployment)) = chain.next(core, routing.retries, Instant::now()) {
        if let Some(failure) = &last {
            core.metrics
                .borrow_mut()
                .retry(&ctx.model, failure.kind.cause());
            let wait = match failure.retry_after.map(Duration::from_secs) {
                Some(asked) if asked <= routing.honor_retry_after_max => asked,
                _ => core
                    .router()
                    .borrow_mut()
                    .backoff(attempts.saturating_sub(1)),
            };
            if !wait.is_zero() {
                monoio::time::sleep(wait).await;
            }
        }
        attempts += 1;
        match attempt(core, conn, ctx, model, deployment, attempts).await {
            AttemptEnd::Answered(outcome) => return Ok(outcome),
            AttemptEnd::Failed(failure) => {
                let provider = shared.config.models[model].deployments[deployment].provider;
                if let Some(p) = shared.providers.get(provider) {
                    core.metrics
                        .borrow_mut()
                        .upstream_failure(&p.name, failure.kind.cause());
                }
                let overflow = failure.context_overflow;
                last = Some(failure);
                if overflow && !chain.switch_to_context_fallbacks(shared, primary) {
                    // Too long for this model and nowhere longer to go: the client gets the
                    // upstream's answer.
                    break;
                }
            }
        }
    }
    let Some(failure) = last else {
        return Err(GatewayError::ModelNotFound(ctx.model.clone()));
    };
    match failure.kind {
        FailureKind::Gateway(e) => Err(e),
        FailureKind::Upstream {
            status,
            content_type,
            body,
        } => {
            if !content_type.as_deref().is_some_and(is_json_content_type) {
                return Err(GatewayError::UpstreamStatus {
                    provider: String::from("upstream"),
                    status,
                });
            }
            ctx.meter.set_status(status);
            let attempts_text = attempts.to_string();
            let extra = [("x-tollgate-attempts", attempts_text.as_bytes())];
            conn.respond(
                status,
                b"application/json",
                &extra,
                body,
                ctx.keep_alive,
                ctx.head.version,
            )
            .await
            .map_err(|_| GatewayError::ClientGone)?;
            Ok(Outcome {
                keep_alive: ctx.keep_alive,
            })
        }
    }
}

/// One attempt on one deployment. Records the result with the router exactly once.
async fn attempt(
    core: &Core<'_>,
    conn: &mut Downstream,
    ctx: &RequestCtx<'_>,
    model: usize,
    deployment_index: usize,
    attempt_number: u32,
) -> AttemptEnd {
    let shared = core.shared();
    let deployment = &shared.config.models[model].deployments[deployment_index];
    let provider_index = deployment.provider;
    ctx.meter.served_by.set(Some((model, deployment_index)));
    ctx.meter.attempts.set(ctx.meter.attempts.get() + 1);
    let Some(provider) = shared.providers.get(provider_index) else {
        return AttemptEnd::Failed(Failure {
            kind: FailureKind::Gateway(GatewayError::ModelNotFound(ctx.model.clone())),
            retry_after: None,
            context_overflow: false,
        });
    };
    let first_byte_timeout = deployment.timeout.unwrap_or(provider.first_byte_timeout);

    // The zero-copy splice serves OpenAI clients of OpenAI-wire providers; Anthropic clients
    // of Anthropic providers get the native pass-through; everything else is translated.
    let summary = match (ctx.format, provider.wire, &ctx.openai, &ctx.native) {
        (ClientFormat::OpenAi, Wire::OpenAi, Some(summary), _) => summary,
        (format, wire, _, native) => {
            let info = AttemptInfo {
                provider,
                provider_index,
                upstream_model: &deployment.model,
                request_lines: &ctx.upstream_lines,
                first_byte_timeout,
                labels: ResponseLabels::new(shared, model, deployment_index, attempt_number),
            };
            core.router().borrow_mut().start(model, deployment_index);
            let ended = match (format, wire, native) {
                (ClientFormat::Anthropic, Wire::Anthropic, Some(native)) => {
                    attempt_native_anthropic(core, conn, ctx, native, info).await
                }
                _ if ctx.endpoint != Endpoint::ChatCompletions => {
                    let e = GatewayError::InvalidRequest(tollgate_protocol::openai::RequestError {
                        message: format!(
                            "Provider `{}` only serves chat completions through this gateway.",
                            provider.name
                        ),
                        param: Some("model"),
                        code: None,
                    });
                    Ended {
                        end: AttemptEnd::Answered(answer_error(conn, &e, ctx)),
                        result: AttemptResult::Neutral,
                        ttfb: None,
                        first_event_at: None,
                    }
                }
                _ => match ctx.canonical() {
                    Ok(canonical) => attempt_translated(core, conn, ctx, canonical, info).await,
                    Err(message) => {
                        let e =
                            GatewayError::InvalidRequest(tollgate_protocol::openai::RequestError {
                                message: message.clone(),
                                param: None,
                                code: None,
                            });
                        Ended {
                            end: AttemptEnd::Answered(answer_error(conn, &e, ctx)),
                            result: AttemptResult::Neutral,
                            ttfb: None,
                            first_event_at: None,
                        }
                    }
                },
            };
            core.router().borrow_mut().finish(
                model,
                deployment_index,
                ended.result,
                ended.ttfb,
                Instant::now(),
            );
            return ended.end;
        }
    };

    // Only `model` changes (and streams ask for usage); otherwise the client's bytes go
    // upstream untouched.
    let wants_usage = ctx.streaming && !ctx.client_wants_usage;
    let upstream_body = if deployment.model == summary.model && !wants_usage {
        ctx.body.clone()
    } else {
        let mut out = BytesMut::with_capacity(ctx.body.len() + 64);
        rewrite_request(&ctx.body, summary, &deployment.model, wants_usage, &mut out);
        out.freeze()
    };

    core.router().borrow_mut().start(model, deployment_index);
    let started = Instant::now();
    let finish = |result: AttemptResult, ttfb: Option<Duration>| {
        core.router()
            .borrow_mut()
            .finish(model, deployment_index, result, ttfb, Instant::now());
    };
    let called = match &provider.backend {
        Backend::Mock(knobs) => {
            let index = core.mock_requests.get();
            core.mock_requests.set(index.wrapping_add(1));
            let steps = tollgate_protocol::mock::plan(
                ctx.endpoint,
                &upstream_body,
                knobs,
                index,
                &mut core.scratch.borrow_mut(),
            )
            .steps;
            call_mock(provider, first_byte_timeout, steps).await
        }
        Backend::Http(target) => {
            let call = UpstreamCall {
                head_prefix: target.head_prefix(ctx.endpoint).clone(),
                request_lines: ctx.upstream_lines.clone(),
                body: upstream_body,
                first_byte_timeout,
            };
            call_http(
                core.pools(),
                provider_index,
                provider,
                target,
                call,
                &shared.upstream_limits,
            )
            .await
        }
    };
    let mut response = match called {
        Ok(r) => r,
        Err(e) => {
            finish(AttemptResult::Failure, None);
            return AttemptEnd::Failed(Failure {
                kind: FailureKind::Gateway(e),
                retry_after: None,
                context_overflow: false,
            });
        }
    };
    let ttfb = Some(started.elapsed());
    let status = response.head.status;

    if status >= 400 {
        // Error answers are small: read them whole to classify.
        let body = match response.collect(core.pools()).await {
            Ok(b) => b.slice(..b.len().min(MAX_ERROR_BODY)),
            Err(e) => {
                finish(AttemptResult::Failure, ttfb);
                return AttemptEnd::Failed(Failure {
                    kind: FailureKind::Gateway(e),
                    retry_after: None,
                    context_overflow: false,
                });
            }
        };
        let unhealthy = status == 408 || status == 429 || status >= 500;
        let context_overflow = status == 400 && is_context_overflow(&body);
        finish(
            if unhealthy {
                AttemptResult::Failure
            } else {
                AttemptResult::Success
            },
            ttfb,
        );
        if unhealthy || context_overflow {
            return AttemptEnd::Failed(Failure {
                kind: FailureKind::Upstream {
                    status,
                    content_type: response.head.content_type.clone(),
                    body,
                },
                retry_after: response.head.retry_after,
                context_overflow,
            });
        }
        // The request itself is wrong: no other deployment will do better.
        ctx.meter.set_status(status);
        let labels = ResponseLabels::new(shared, model, deployment_index, attempt_number);
        let content_type = response
            .head
            .content_type
            .clone()
            .unwrap_or_else(|| Bytes::from_static(b"application/json"));
        if !is_json_content_type(&content_type) {
            return AttemptEnd::Answered(answer_error(
                conn,
                &GatewayError::UpstreamStatus {
                    provider: provider.name.clone(),
                    status,
                },
                ctx,
            ));
        }
        let sent = conn
            .respond(
                status,
                &content_type,
                &labels.headers(),
                body,
                ctx.keep_alive,
                ctx.head.version,
            )
            .await;
        return AttemptEnd::Answered(Outcome {
            keep_alive: ctx.keep_alive && sent.is_ok(),
        });
    }

    // Phase 7: respond.
    let labels = ResponseLabels::new(shared, model, deployment_index, attempt_number);
    let is_sse = response
        .head
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with(b"text/event-stream"));
    if ctx.streaming && is_sse {
        let stream = StreamCtx {
            meter: &ctx.meter,
            provider: &provider.name,
            client_wants_usage: ctx.client_wants_usage,
            keep_alive: ctx.keep_alive,
            version: ctx.head.version,
            labels: &labels,
            guard: ctx.guard.as_ref(),
        };
        match stream_response(core, conn, &mut response, stream).await {
            StreamEnd::Done {
                outcome,
                upstream_ok,
                first_event_at,
            } => {
                let result = if upstream_ok {
                    AttemptResult::Success
                } else {
                    AttemptResult::Failure
                };
                // Streams are ranked by time to first token, not to the response head.
                let ttft = first_event_at.map(|t| t.saturating_duration_since(started));
                ctx.meter.first_event.set(first_event_at);
                finish(result, ttft.or(ttfb));
                AttemptEnd::Answered(outcome)
            }
            StreamEnd::ClientGone => {
                finish(AttemptResult::Neutral, ttfb);
                AttemptEnd::Answered(Outcome { keep_alive: false })
            }
            StreamEnd::FailedBeforeFirstEvent(e) => {
                finish(AttemptResult::Failure, ttfb);
                AttemptEnd::Failed(Failure {
                    kind: FailureKind::Gateway(e),
                    retry_after: None,
                    context_overflow: false,
                })
            }
        }
    } else {
        match whole_response(core, conn, &mut response, &labels, ctx, &provider.name).await {
            Ok(outcome) => {
                finish(AttemptResult::Success, ttfb);
                AttemptEnd::Answered(outcome)
            }
            // The upstream answered; the answer may not be delivered. Not a reason to ask
            // another deployment.
            Err(e @ GatewayError::ContentPolicy { .. }) => {
                finish(AttemptResult::Success, ttfb);
                AttemptEnd::Answered(answer_error(conn, &e, ctx))
            }
            Err(e @ GatewayError::ClientGone) => {
                finish(AttemptResult::Neutral, ttfb);
                AttemptEnd::Answered(answer_error(conn, &e, ctx))
            }
            Err(e) => {
                // The body failed before anything was written: another deployment may do.
                finish(AttemptResult::Failure, ttfb);
                AttemptEnd::Failed(Failure {
                    kind: FailureKind::Gateway(e),
                    retry_after: None,
                    context_overflow: false,
                })
            }
        }
    }
}

fn answer_error(conn: &mut Downstream, e: &GatewayError, ctx: &RequestCtx<'_>) -> Outcome {
    ctx.meter.set_status(e.status());
    let keep_alive = ctx.keep_alive && !e.closes_connection();
    conn.write_error(e, keep_alive, ctx.head.version, ctx.format);
    Outcome { keep_alive }
}

/// True when an upstream 400 body says the prompt exceeds the model's context window.
fn is_context_overflow(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]);
    text.contains("context_length_exceeded")
        || tollgate_protocol::providers::looks_like_context_length(&text)
}

/// Response headers naming the deployment that answered and the attempts it took.
pub(crate) struct ResponseLabels<'a> {
    /// `<provider>/<upstream model>`, built once per config (see `Shared::deployment_label`).
    deployment: &'a str,
    /// The attempt count in decimal, formatted once on the stack.
    attempts: [u8; 10],
    attempts_len: usize,
}

impl<'a> ResponseLabels<'a> {
    pub(crate) fn new(shared: &'a Shared, model: usize, deployment: usize, attempts: u32) -> Self {
        let mut digits = [0u8; 10];
        let mut buffer = itoa::Buffer::new();
        let text = buffer.format(attempts).as_bytes();
        let len = text.len().min(digits.len());
        digits[..len].copy_from_slice(&text[..len]);
        ResponseLabels {
            deployment: shared.deployment_label(model, deployment),
            attempts: digits,
            attempts_len: len,
        }
    }

    pub(crate) fn headers(&self) -> [(&str, &[u8]); 2] {
        [
            ("x-tollgate-deployment", self.deployment.as_bytes()),
            ("x-tollgate-attempts", &self.attempts[..self.attempts_len]),
        ]
    }
}

async fn whole_response(
    core: &Core<'_>,
    conn: &mut Downstream,
    response: &mut UpstreamResponse,
    labels: &ResponseLabels<'_>,
    ctx: &RequestCtx<'_>,
    provider: &str,
) -> Result<Outcome, GatewayError> {
    let body = response.collect(core.pools()).await?;
    let status = response.head.status;
    let body = if status == 200 {
        if let Some(usage) = response_usage(&body, &mut core.scratch.borrow_mut()) {
            ctx.meter.report(usage);
        }
        ctx.guard_response(core, provider, body)?
    } else {
        ctx.meter.set_status(status);
        body
    };
    let content_type = response
        .head
        .content_type
        .clone()
        .unwrap_or_else(|| Bytes::from_static(b"application/json"));
    conn.respond(
        status,
        &content_type,
        &labels.headers(),
        body,
        ctx.keep_alive,
        ctx.head.version,
    )
    .await
    .map_err(|_| GatewayError::ClientGone)?;
    Ok(Outcome {
        keep_alive: ctx.keep_alive,
    })
}

fn is_json_content_type(content_type: &[u8]) -> bool {
    content_type
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"json"))
}

/// Per-stream forwarding state: which events go to the client, and the usage seen.
struct SseRelay<'m> {
    meter: &'m Meter,
    client_wants_usage: bool,
    saw_done: bool,
    usage: Option<Usage>,
    /// Raw bytes of the events to forward from the current upstream read.
    batch: BytesMut,
    /// Events decoded so far (the first one commits the response).
    events: usize,
    /// Output guardrails, when the request's profile has output rules.
    guard: Option<crate::guard::StreamGuard<'m>>,
    /// A `block` rule matched: nothing more is forwarded, the stream ends with this error.
    blocked: Option<GatewayError>,
}

impl SseRelay<'_> {
    fn on_frame(&mut self, frame: tollgate_protocol::sse::SseFrame, core: &Core<'_>) {
        if self.blocked.is_some() {
            return;
        }
        self.events += 1;
        if frame.is_done() {
            self.saw_done = true;
            if let Some(guard) = &mut self.guard {
                match guard.openai_done(core) {
                    Ok(Some(extra)) => write_event(&mut self.batch, &extra),
                    Ok(None) => {}
                    Err(e) => {
                        self.blocked = Some(e);
                        return;
                    }
                }
            }
        } else if let Some(data) = frame.data.as_deref() {
            if let Some(info) =
                inspect_stream_chunk(data.as_bytes(), &mut core.scratch.borrow_mut())
            {
                if let Some(usage) = info.usage {
                    self.usage = Some(usage);
                    self.meter.report(usage);
                }
                if info.output {
                    self.meter.count_output();
                }
                // The gateway asked for usage on the client's behalf: do not send the client an
                // event it did not ask for.
                if info.usage_only && !self.client_wants_usage {
                    return;
                }
            }
            if let Some(guard) = &mut self.guard {
                let scanned = guard.openai_event(core, data);
                self.blocked = guard.take_blocked();
                match scanned {
                    Ok(Some(rewritten)) => {
                        write_event(&mut self.batch, &rewritten);
                        return;
                    }
                    Ok(None) if self.blocked.is_none() => {}
                    Ok(None) => return,
                    Err(e) => {
                        self.blocked = Some(e);
                        return;
                    }
                }
            }
        }
        self.batch.extend_from_slice(&frame.raw);
    }
}

/// One `data:` event with a JSON payload (which never contains a line break).
fn write_event(out: &mut BytesMut, json: &str) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
}

struct StreamCtx<'a> {
    meter: &'a Meter,
    provider: &'a str,
    client_wants_usage: bool,
    keep_alive: bool,
    version: Version,
    labels: &'a ResponseLabels<'a>,
    guard: Option<&'a crate::guard::Guard<'a>>,
}

enum StreamEnd {
    /// The stream was answered (completely, or ended with an SSE error event).
    Done {
        outcome: Outcome,
        upstream_ok: bool,
        /// When the first event went out.
        first_event_at: Option<Instant>,
    },
    /// The client left mid-stream.
    ClientGone,
    /// The upstream failed before its first event: nothing was written, another attempt may.
    FailedBeforeFirstEvent(GatewayError),
}

/// What to do with a stream whose 200 head is held back until its first event.
pub(crate) enum Commit {
    /// Nothing to send yet: read more.
    Wait,
    /// The head is queued (now or earlier): write events with this framing.
    Ready(StreamFraming),
    /// The upstream ended or failed before its first event: nothing was written, so the
    /// attempt may fail over.
    FailedBeforeFirstEvent(GatewayError),
}

/// The held-back head of a streamed response.
pub(crate) struct HeldStream<'a> {
    framing: Option<StreamFraming>,
    /// When the first event went out (time to first token, for the router).
    committed_at: Option<Instant>,
    labels: &'a ResponseLabels<'a>,
    keep_alive: bool,
    version: Version,
    provider: &'a str,
}

impl<'a> HeldStream<'a> {
    pub(crate) fn new(
        labels: &'a ResponseLabels<'a>,
        keep_alive: bool,
        version: Version,
        provider: &'a str,
    ) -> Self {
        HeldStream {
            framing: None,
            committed_at: None,
            labels,
            keep_alive,
            version,
            provider,
        }
    }

    /// Queue the head once there is a first event (`has_event`); before that, report a
    /// finished (`finished`) upstream as a failure before the first event.
    pub(crate) fn commit(
        &mut self,
        conn: &mut Downstream,
        has_event: bool,
        finished: bool,
        failure: &mut Option<GatewayError>,
    ) -> Commit {
        if let Some(framing) = self.framing {
            return Commit::Ready(framing);
        }
        if !has_event {
            if !finished {
                return Commit::Wait;
            }
            return Commit::FailedBeforeFirstEvent(failure.take().unwrap_or(
                GatewayError::UpstreamClosed {
                    provider: self.provider.to_owned(),
                    when: "before the first event",
                },
            ));
        }
        let framing = conn.start_stream(
            200,
            b"text/event-stream",
            &self.labels.headers(),
            self.keep_alive,
            self.version,
        );
        self.framing = Some(framing);
        self.committed_at = Some(Instant::now());
        Commit::Ready(framing)
    }

    /// When the first event was ready to go out, if it was.
    pub(crate) fn first_event_at(&self) -> Option<Instant> {
        self.committed_at
    }

    /// The framing, once the head is queued.
    pub(crate) fn framing(&self) -> Option<StreamFraming> {
        self.framing
    }
}

/// An upstream SSE body decoded frame by frame as it arrives.
pub(crate) struct SseReader {
    decoder: SseDecoder,
    pending: BytesMut,
}

impl SseReader {
    pub(crate) fn new() -> Self {
        SseReader {
            decoder: SseDecoder::new(MAX_SSE_FRAME),
            pending: BytesMut::new(),
        }
    }

    /// Read the next piece of the body and hand every frame it completes to `on_frame`.
    /// Returns true once the body has ended; a read or framing failure is recorded in
    /// `failure` (the first one wins).
    pub(crate) async fn read(
        &mut self,
        response: &mut UpstreamResponse,
        core: &Core<'_>,
        provider: &str,
        failure: &mut Option<GatewayError>,
        mut on_frame: impl FnMut(tollgate_protocol::sse::SseFrame),
    ) -> bool {
        let ended = match core.read_upstream(response).await {
            Ok(Some(chunk)) => {
                self.pending.extend_from_slice(&chunk);
                false
            }
            Ok(None) => true,
            Err(e) => {
                failure.get_or_insert(e);
                true
            }
        };
        loop {
            // Once the upstream has ended, a trailing CR terminates its line.
            let next = if ended {
                self.decoder.decode_final(&mut self.pending)
            } else {
                self.decoder.decode(&mut self.pending)
            };
            match next {
                Ok(Some(frame)) => on_frame(frame),
                Ok(None) => break,
                Err(e) => {
                    failure.get_or_insert(GatewayError::UpstreamProtocol {
                        provider: provider.to_owned(),
                        reason: format!("invalid event stream: {e}"),
                    });
                    break;
                }
            }
        }
        if ended {
            self.decoder.finish(&mut self.pending);
        }
        ended
    }
}

/// Forward an SSE stream event by event. The 200 head is held back until the upstream's first
/// event has arrived, so an upstream that dies before it can still be retried elsewhere; from
/// then on every upstream read is forwarded as soon as the events it completes are decoded.
async fn stream_response(
    core: &Core<'_>,
    conn: &mut Downstream,
    response: &mut UpstreamResponse,
    ctx: StreamCtx<'_>,
) -> StreamEnd {
    let mut reader = SseReader::new();
    let mut relay = SseRelay {
        meter: ctx.meter,
        client_wants_usage: ctx.client_wants_usage,
        saw_done: false,
        usage: None,
        batch: BytesMut::new(),
        events: 0,
        guard: ctx.guard.and_then(crate::guard::StreamGuard::new),
        blocked: None,
    };
    let mut held = HeldStream::new(ctx.labels, ctx.keep_alive, ctx.version, ctx.provider);
    let mut failure = None;
    loop {
        let ended = reader
            .read(response, core, ctx.provider, &mut failure, |frame| {
                relay.on_frame(frame, core)
            })
            .await;
        if let Some(blocked) = relay.blocked.take() {
            // What was decided before the match goes out; then the error ends the stream.
            failure = Some(blocked);
        }
        let finished = ended || failure.is_some();
        let framing = match held.commit(conn, relay.events > 0, finished, &mut failure) {
            Commit::Wait => continue,
            Commit::FailedBeforeFirstEvent(e) => return StreamEnd::FailedBeforeFirstEvent(e),
            Commit::Ready(framing) => framing,
        };
        if !relay.batch.is_empty() {
            conn.stream_data(framing, &relay.batch);
            relay.batch.clear();
            if conn.flush().await.is_err() {
                // The client left; the upstream connection is dropped, not pooled.
                return StreamEnd::ClientGone;
            }
        }
        if ended || failure.is_some() {
            break;
        }
    }
    let Some(framing) = held.framing() else {
        return StreamEnd::ClientGone;
    };
    let failure = failure.or_else(|| {
        (!relay.saw_done).then_some(GatewayError::UpstreamClosed {
            provider: ctx.provider.to_owned(),
            when: "mid-stream",
        })
    });
    // A guardrail ending the stream says nothing about the upstream's health.
    let upstream_ok = failure.as_ref().is_none_or(GatewayError::is_content_policy);
    if let Some(e) = failure {
        // Never a silent truncation: the client gets a terminal error event.
        let mut event = BytesMut::new();
        e.write_sse(&mut event);
        conn.stream_data(framing, &event);
    }
    conn.end_stream(framing);
    let keep_alive = ctx.keep_alive && framing == crate::conn::StreamFraming::Chunked;
    if conn.flush().await.is_err() {
        return StreamEnd::ClientGone;
    }
    StreamEnd::Done {
        outcome: Outcome { keep_alive },
        upstream_ok,
        first_event_at: held.first_event_at(),
    }
}
