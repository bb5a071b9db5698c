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

use bytes::{Bytes, BytesMut};
use tollgate_policy::keys::{presented_token, KeyRecord};
use tollgate_protocol::http::{Method, RequestHead, Version};
use tollgate_protocol::openai::{
    inspect_request, inspect_stream_chunk, response_usage, rewrite_request, Endpoint, Usage,
};
use tollgate_protocol::sse::SseDecoder;

use crate::builtin_mock::call_mock;
use crate::conn::Downstream;
use crate::error::GatewayError;
use crate::shared::{Backend, Shared};
use crate::upstream::{call_http, UpstreamResponse};
use crate::worker::Core;

/// Largest single SSE event accepted from an upstream.
const MAX_SSE_FRAME: usize = 1024 * 1024;

/// What a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Proxy(Endpoint),
    Models,
    Live,
    Ready,
}

/// How a request ended, for the caller's bookkeeping.
#[derive(Debug, Default)]
struct Outcome {
    /// False when the connection must close after this response.
    keep_alive: bool,
}

/// Handle one request whose head has been read. Returns whether the connection stays open.
pub async fn handle(core: &Core, conn: &mut Downstream, head: RequestHead) -> bool {
    let version = head.version;
    let keep_alive = head.keep_alive && !core.draining.get();
    let route = match route(head.method, head.method_str(), head.path()) {
        Ok(r) => r,
        Err(e) => {
            // Unknown routes still have their body drained so the connection stays usable.
            return match conn.read_body(&head, core).await {
                Ok(_) => fail(conn, &e, keep_alive, version),
                Err(body_err) => fail(conn, &body_err, false, version),
            };
        }
    };
    let body = match conn.read_body(&head, core).await {
        Ok(b) => b,
        Err(e) => return fail(conn, &e, false, version),
    };
    let result = match route {
        Route::Live => health(conn, 200, "live", keep_alive, version).await,
        Route::Ready if core.draining.get() => health(conn, 503, "draining", false, version).await,
        Route::Ready => health(conn, 200, "ready", keep_alive, version).await,
        Route::Models => match authenticate(&core.shared, &head) {
            Ok(_) => conn
                .respond(
                    200,
                    b"application/json",
                    &[],
                    core.shared.models_body.clone(),
                    keep_alive,
                    version,
                )
                .await
                .map(|_| Outcome { keep_alive })
                .map_err(|_| GatewayError::ClientGone),
            Err(e) => Err(e),
        },
        Route::Proxy(endpoint) => proxy(core, conn, &head, endpoint, body, keep_alive).await,
    };
    match result {
        Ok(outcome) => outcome.keep_alive,
        Err(e) => fail(conn, &e, keep_alive && !e.closes_connection(), version),
    }
}

fn fail(conn: &mut Downstream, e: &GatewayError, keep_alive: bool, version: Version) -> bool {
    conn.write_error(e, keep_alive, version);
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

/// Phase 1: method + path (query ignored) -> route. `method_text` is the method as sent, for
/// error messages.
fn route(method: Method, method_text: &str, target: &str) -> Result<Route, GatewayError> {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let (route, allow) = match path {
        "/v1/chat/completions" => (Route::Proxy(Endpoint::ChatCompletions), Method::Post),
        "/v1/completions" => (Route::Proxy(Endpoint::Completions), Method::Post),
        "/v1/embeddings" => (Route::Proxy(Endpoint::Embeddings), Method::Post),
        "/v1/models" => (Route::Models, Method::Get),
        "/health/live" => (Route::Live, Method::Get),
        "/health/ready" => (Route::Ready, Method::Get),
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

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Phase 3: the presented key -> its record.
fn authenticate<'a>(shared: &'a Shared, head: &RequestHead) -> Result<&'a KeyRecord, GatewayError> {
    let token = presented_token(head.header("authorization"), head.header("x-api-key")).ok_or(
        GatewayError::Unauthorized(
            "You didn't provide an API key. Send it as `Authorization: Bearer <key>`.",
        ),
    )?;
    shared
        .keys
        .authenticate(token)
        .ok_or(GatewayError::Unauthorized("Incorrect API key provided."))
}

async fn proxy(
    core: &Core,
    conn: &mut Downstream,
    head: &RequestHead,
    endpoint: Endpoint,
    body: Bytes,
    keep_alive: bool,
) -> Result<Outcome, GatewayError> {
    let shared = &*core.shared;
    let _key = authenticate(shared, head)?;

    // Phase 4: inspect. The scratch borrow ends before any await.
    let summary = inspect_request(endpoint, &body, &mut core.scratch.borrow_mut())?;

    // Phase 5: resolve.
    let model_index = *shared
        .models
        .get(summary.model.as_str())
        .ok_or_else(|| GatewayError::ModelNotFound(truncate(&summary.model, 256).to_owned()))?;
    let deployment = shared.config.models[model_index]
        .deployments
        .first()
        .ok_or_else(|| GatewayError::ModelNotFound(summary.model.clone()))?;
    let provider_index = deployment.provider;
    let provider = shared
        .providers
        .get(provider_index)
        .ok_or_else(|| GatewayError::ModelNotFound(summary.model.clone()))?;

    // Phase 6: call. Only `model` changes (and streams ask for usage); otherwise the client's
    // bytes go upstream untouched.
    let streaming = summary.stream && endpoint != Endpoint::Embeddings;
    let wants_usage = streaming && summary.include_usage != Some(true);
    let upstream_body = if deployment.model == summary.model && !wants_usage {
        body.clone()
    } else {
        let mut out = BytesMut::with_capacity(body.len() + 64);
        rewrite_request(&body, &summary, &deployment.model, wants_usage, &mut out);
        out.freeze()
    };
    let mut response = match &provider.backend {
        Backend::Mock(knobs) => {
            let index = core.mock_requests.get();
            core.mock_requests.set(index.wrapping_add(1));
            let steps = tollgate_protocol::mock::plan(
                endpoint,
                &upstream_body,
                knobs,
                index,
                &mut core.scratch.borrow_mut(),
            )
            .steps;
            call_mock(provider, steps).await?
        }
        Backend::Http(target) => {
            call_http(
                &core.pools,
                provider_index,
                provider,
                target,
                target.head_prefix(endpoint),
                upstream_body,
                &shared.upstream_limits,
            )
            .await?
        }
    };

    // Phase 7: respond.
    let is_sse = response
        .head
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with(b"text/event-stream"));
    if streaming && response.head.status == 200 && is_sse {
        let client_wants_usage = summary.include_usage == Some(true);
        let stream = StreamCtx {
            provider: &provider.name,
            client_wants_usage,
            keep_alive,
            version: head.version,
        };
        stream_response(core, conn, &mut response, stream).await
    } else {
        whole_response(
            core,
            conn,
            &mut response,
            &provider.name,
            keep_alive,
            head.version,
        )
        .await
    }
}

async fn whole_response(
    core: &Core,
    conn: &mut Downstream,
    response: &mut UpstreamResponse,
    provider: &str,
    keep_alive: bool,
    version: Version,
) -> Result<Outcome, GatewayError> {
    let body = response.collect(&core.pools).await?;
    let status = response.head.status;
    let json = response
        .head
        .content_type
        .as_deref()
        .is_some_and(is_json_content_type);
    if status >= 400 && !json {
        return Err(GatewayError::UpstreamStatus {
            provider: provider.to_owned(),
            status,
        });
    }
    let _usage: Option<Usage> = if status == 200 {
        response_usage(&body, &mut core.scratch.borrow_mut())
    } else {
        None
    };
    let content_type = response
        .head
        .content_type
        .clone()
        .unwrap_or_else(|| Bytes::from_static(b"application/json"));
    conn.respond(status, &content_type, &[], body, keep_alive, version)
        .await
        .map_err(|_| GatewayError::ClientGone)?;
    Ok(Outcome { keep_alive })
}

fn is_json_content_type(content_type: &[u8]) -> bool {
    content_type
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"json"))
}

/// Forward an SSE stream event by event. Every upstream read is forwarded as soon as the events
/// it completes are decoded: the client never waits for more than the event in progress.
/// Per-stream forwarding state: which events go to the client, and the usage seen.
struct SseRelay {
    client_wants_usage: bool,
    saw_done: bool,
    usage: Option<Usage>,
    /// Raw bytes of the events to forward from the current upstream read.
    batch: BytesMut,
}

impl SseRelay {
    fn on_frame(&mut self, frame: tollgate_protocol::sse::SseFrame, scratch: &mut Vec<u8>) {
        if frame.is_done() {
            self.saw_done = true;
        } else if let Some(data) = frame.data.as_deref() {
            if let Some(info) = inspect_stream_chunk(data.as_bytes(), scratch) {
                if info.usage.is_some() {
                    self.usage = info.usage;
                }
                // The gateway asked for usage on the client's behalf: do not send the client an
                // event it did not ask for.
                if info.usage_only && !self.client_wants_usage {
                    return;
                }
            }
        }
        self.batch.extend_from_slice(&frame.raw);
    }
}

struct StreamCtx<'a> {
    provider: &'a str,
    client_wants_usage: bool,
    keep_alive: bool,
    version: Version,
}

async fn stream_response(
    core: &Core,
    conn: &mut Downstream,
    response: &mut UpstreamResponse,
    ctx: StreamCtx<'_>,
) -> Result<Outcome, GatewayError> {
    let StreamCtx {
        provider,
        client_wants_usage,
        keep_alive,
        version,
    } = ctx;
    let framing = conn.start_stream(200, b"text/event-stream", &[], keep_alive, version);
    let mut decoder = SseDecoder::new(MAX_SSE_FRAME);
    let mut pending = BytesMut::new();
    let mut relay = SseRelay {
        client_wants_usage,
        saw_done: false,
        usage: None,
        batch: BytesMut::new(),
    };
    let mut failure = None;
    loop {
        let ended = match response.next_chunk(&core.pools).await {
            Ok(Some(chunk)) => {
                pending.extend_from_slice(&chunk);
                false
            }
            Ok(None) => true,
            Err(e) => {
                failure = Some(e);
                true
            }
        };
        loop {
            // Once the upstream has ended, a trailing CR terminates its line.
            let next = if ended {
                decoder.decode_final(&mut pending)
            } else {
                decoder.decode(&mut pending)
            };
            match next {
                Ok(Some(frame)) => relay.on_frame(frame, &mut core.scratch.borrow_mut()),
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
        if !relay.batch.is_empty() {
            conn.stream_data(framing, &relay.batch);
            relay.batch.clear();
            if conn.flush().await.is_err() {
                // The client left; the upstream connection is dropped, not pooled.
                return Ok(Outcome { keep_alive: false });
            }
        }
        if ended || failure.is_some() {
            decoder.finish(&mut pending);
            break;
        }
    }
    let failure = failure.or_else(|| {
        (!relay.saw_done).then_some(GatewayError::UpstreamClosed {
            provider: provider.to_owned(),
            when: "mid-stream",
        })
    });
    if let Some(e) = failure {
        // Never a silent truncation: the client gets a terminal error event.
        let mut event = BytesMut::new();
        e.write_sse(&mut event);
        conn.stream_data(framing, &event);
    }
    conn.end_stream(framing);
    let keep_alive = keep_alive && framing == crate::conn::StreamFraming::Chunked;
    conn.flush().await.map_err(|_| GatewayError::ClientGone)?;
    Ok(Outcome { keep_alive })
}
