//! Attempts that cross wire formats, and the Anthropic-native pass-through.
//!
//! Translated: the client's request (OpenAI or Anthropic format) becomes a canonical
//! `ChatRequest`, the provider's adapter encodes it, the engine sends it, the adapter decodes
//! the answer (whole or as a stream of canonical chunks), and it is re-encoded in the client's
//! format. Native: an Anthropic-format client in front of an Anthropic provider gets the
//! provider's bytes, with only `model` rewritten on the way in.
//!
//! Both follow the pipeline's attempt rules: nothing reaches the client until the upstream has
//! answered (for streams, until its first event), so a failure before that can still fail over.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use tollgate_protocol::anthropic_api::{
    self, encode_error, encode_error_event, error_type_for, MessagesStreamEncoder,
    NativeUsageTracker,
};
use tollgate_protocol::chat::{ChatChunk, ChatRequest};
use tollgate_protocol::error_body::ErrorBody;
use tollgate_protocol::openai::Endpoint;
use tollgate_protocol::providers::{ErrorKind, ProviderError, UpstreamRequest};

use crate::builtin_mock::call_mock;
use crate::conn::{Downstream, StreamFraming};
use crate::error::GatewayError;
use crate::pipeline::{
    AttemptEnd, ClientFormat, Commit, Failure, FailureKind, HeldStream, Outcome, RequestCtx,
    ResponseLabels, SseReader, MAX_ERROR_BODY,
};
use crate::router::AttemptResult;
use crate::shared::{Backend, ProviderTarget};
use crate::upstream::{call_http, UpstreamCall, UpstreamResponse};
use crate::worker::Core;

/// What a translated or native attempt needs besides the request.
pub(crate) struct AttemptInfo<'a> {
    /// The deployment's provider.
    pub(crate) provider: &'a ProviderTarget,
    /// Its index (for the pools).
    pub(crate) provider_index: usize,
    /// The deployment's upstream model id.
    pub(crate) upstream_model: &'a str,
    /// The request's own upstream header lines (id, trace context).
    pub(crate) request_lines: &'a Bytes,
    /// First-byte limit for this deployment.
    pub(crate) first_byte_timeout: Duration,
    /// Response headers naming the deployment.
    pub(crate) labels: ResponseLabels<'a>,
}

/// How an attempt ended, with what to tell the router.
pub(crate) struct Ended {
    /// When a stream's first event went out (ranks deployments by time to first token).
    pub(crate) first_event_at: Option<Instant>,
    /// The attempt's end for the chain.
    pub(crate) end: AttemptEnd,
    /// Health verdict on the deployment.
    pub(crate) result: AttemptResult,
    /// Time to the response head, if there was one.
    pub(crate) ttfb: Option<Duration>,
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The request head (up to `content-length: `) for an adapter-built request.
fn head_prefix(req: &UpstreamRequest) -> Bytes {
    let mut out = BytesMut::with_capacity(256 + req.path.len());
    out.put_slice(req.method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(req.path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    for (name, value) in &req.headers {
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("connection") {
            continue;
        }
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"user-agent: tollgate/");
    out.put_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.put_slice(b"\r\ncontent-length: ");
    out.freeze()
}

/// Send `request` to the provider (or run it through the built-in mock).
async fn send(
    core: &Core<'_>,
    info: &AttemptInfo<'_>,
    request: UpstreamRequest,
) -> Result<UpstreamResponse, GatewayError> {
    match &info.provider.backend {
        Backend::Mock(knobs) => {
            let index = core.mock_requests.get();
            core.mock_requests.set(index.wrapping_add(1));
            let steps = tollgate_protocol::mock::plan(
                Endpoint::ChatCompletions,
                &request.body,
                knobs,
                index,
                &mut core.scratch.borrow_mut(),
            )
            .steps;
            call_mock(info.provider, info.first_byte_timeout, steps).await
        }
        Backend::Http(target) => {
            let call = UpstreamCall {
                head_prefix: head_prefix(&request),
                request_lines: info.request_lines.clone(),
                body: request.body,
                first_byte_timeout: info.first_byte_timeout,
            };
            call_http(
                core.pools(),
                info.provider_index,
                info.provider,
                target,
                call,
                &core.shared().upstream_limits,
            )
            .await
        }
    }
}

/// An error body in the client's format.
fn error_bytes(
    format: ClientFormat,
    status: u16,
    error_type: &str,
    code: Option<&str>,
    message: &str,
) -> Bytes {
    let mut out = BytesMut::with_capacity(128 + message.len());
    match format {
        ClientFormat::OpenAi => ErrorBody {
            message,
            error_type,
            param: None,
            code,
        }
        .write_json(&mut out),
        ClientFormat::Anthropic => {
            encode_error(error_type_for(error_type, status), message, &mut out)
        }
    }
    out.freeze()
}

fn provider_error_bytes(format: ClientFormat, e: &ProviderError) -> Bytes {
    error_bytes(
        format,
        e.status,
        e.openai_type(),
        e.openai_code(),
        &e.message,
    )
}

/// Classify an upstream error answer: retryable or context overflow -> `Failed`, else the
/// client gets it (rendered by `render`).
async fn upstream_error(
    conn: &mut Downstream,
    ctx: &RequestCtx<'_>,
    info: &AttemptInfo<'_>,
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
    pass_through: Option<Bytes>,
) -> Ended {
    let mut perr = info.provider.adapter.map_error(status, body);
    perr.retry_after = perr.retry_after.or(retry_after);
    let unhealthy = perr.is_retryable();
    let context_overflow = perr.kind == ErrorKind::ContextLength;
    let rendered = pass_through.unwrap_or_else(|| provider_error_bytes(ctx.format, &perr));
    let result = if unhealthy {
        AttemptResult::Failure
    } else {
        AttemptResult::Success
    };
    if unhealthy || context_overflow {
        return Ended {
            end: AttemptEnd::Failed(Failure {
                kind: FailureKind::Upstream {
                    status: perr.status,
                    content_type: Some(Bytes::from_static(b"application/json")),
                    body: rendered,
                },
                retry_after: perr.retry_after,
                context_overflow,
            }),
            result,
            ttfb: None,
            first_event_at: None,
        };
    }
    let sent = conn
        .respond(
            perr.status,
            b"application/json",
            &info.labels.headers(),
            rendered,
            ctx.keep_alive,
            ctx.head.version,
        )
        .await;
    Ended {
        end: AttemptEnd::Answered(Outcome {
            keep_alive: ctx.keep_alive && sent.is_ok(),
        }),
        result,
        ttfb: None,
        first_event_at: None,
    }
}

fn failed(e: GatewayError, result: AttemptResult) -> Ended {
    Ended {
        end: AttemptEnd::Failed(Failure {
            kind: FailureKind::Gateway(e),
            retry_after: None,
            context_overflow: false,
        }),
        result,
        ttfb: None,
        first_event_at: None,
    }
}

/// Output guardrails refused a complete answer: a `block` rule tells the client (the upstream
/// did answer, so no other deployment is asked); a body that could not be scanned fails the
/// attempt like any invalid upstream answer.
fn guard_refused(conn: &mut Downstream, ctx: &RequestCtx<'_>, e: GatewayError) -> Ended {
    match e {
        GatewayError::ContentPolicy { .. } => {
            ctx.meter.set_status(e.status());
            let keep_alive = ctx.keep_alive;
            conn.write_error(&e, keep_alive, ctx.head.version, ctx.format);
            answered(Outcome { keep_alive }, AttemptResult::Success, None)
        }
        e => failed(e, AttemptResult::Failure),
    }
}

fn answered(outcome: Outcome, result: AttemptResult, ttfb: Option<Duration>) -> Ended {
    Ended {
        end: AttemptEnd::Answered(outcome),
        result,
        ttfb,
        first_event_at: None,
    }
}

/// Send `request`; an error status is classified (and answered or failed over) here. Returns
/// the successful response and its time to head, or how the attempt ended.
async fn send_checked(
    core: &Core<'_>,
    conn: &mut Downstream,
    ctx: &RequestCtx<'_>,
    info: &AttemptInfo<'_>,
    request: UpstreamRequest,
    pass_through_errors: bool,
) -> Result<(UpstreamResponse, Instant, Option<Duration>), Ended> {
    let started = Instant::now();
    let mut response = match send(core, info, request).await {
        Ok(r) => r,
        Err(e) => return Err(failed(e, AttemptResult::Failure)),
    };
    let ttfb = Some(started.elapsed());
    let status = response.head.status;
    if status < 400 {
        return Ok((response, started, ttfb));
    }
    let body = match response.collect(core.pools()).await {
        Ok(b) => b.slice(..b.len().min(MAX_ERROR_BODY)),
        Err(e) => return Err(failed(e, AttemptResult::Failure)),
    };
    let pass = pass_through_errors.then(|| body.clone());
    let retry_after = response.head.retry_after;
    let mut ended = upstream_error(conn, ctx, info, status, retry_after, &body, pass).await;
    ended.ttfb = ttfb;
    Err(ended)
}

/// One translated attempt: canonical request -> provider -> canonical answer -> client format.
pub(crate) async fn attempt_translated(
    core: &Core<'_>,
    conn: &mut Downstream,
    ctx: &RequestCtx<'_>,
    canonical: &ChatRequest,
    info: AttemptInfo<'_>,
) -> Ended {
    // Adapters take the model from the target, and the canonical request carries the client's
    // own `stream`: no per-attempt copy of the request is needed.
    let target = info.provider.target(info.upstream_model, now_unix());
    let request = match info.provider.adapter.encode_request(canonical, &target) {
        Ok(r) => r,
        Err(e) => {
            // The request cannot be expressed for this provider: a client error, not the
            // deployment's fault.
            let body = error_bytes(ctx.format, 400, "invalid_request_error", None, &e.message);
            let sent = conn
                .respond(
                    400,
                    b"application/json",
                    &info.labels.headers(),
                    body,
                    ctx.keep_alive,
                    ctx.head.version,
                )
                .await;
            return answered(
                Outcome {
                    keep_alive: ctx.keep_alive && sent.is_ok(),
                },
                AttemptResult::Neutral,
                None,
            );
        }
    };
    let (mut response, started, ttfb) =
        match send_checked(core, conn, ctx, &info, request, false).await {
            Ok(r) => r,
            Err(ended) => return ended,
        };
    let mut ended = if ctx.streaming {
        translated_stream(core, conn, ctx, &info, &mut response).await
    } else {
        translated_whole(core, conn, ctx, &info, &mut response).await
    };
    ended.ttfb = match (ended.first_event_at, ttfb) {
        // Streams are ranked by time to first token, not to the response head.
        (Some(first), Some(_)) => Some(first.saturating_duration_since(started)),
        _ => ttfb,
    };
    ended
}

async fn translated_whole(
    core: &Core<'_>,
    conn: &mut Downstream,
    ctx: &RequestCtx<'_>,
    info: &AttemptInfo<'_>,
    response: &mut UpstreamResponse,
) -> Ended {
    let body = match response.collect(core.pools()).await {
        Ok(b) => b,
        Err(e) => return failed(e, AttemptResult::Failure),
    };
    let decoded = match info
        .provider
        .adapter
        .decode_response(&body, info.upstream_model)
    {
        Ok(mut r) => {
            if let Some(usage) = &r.usage {
                ctx.meter.report_chat(usage);
            }
            // Providers that report no time leave `created` at 0.
            if r.created == 0 {
                r.created = now_unix();
            }
            r
        }
        Err(e) => {
            return failed(
                GatewayError::UpstreamProtocol {
                    provider: info.provider.name.clone(),
                    reason: e.message,
                },
                AttemptResult::Failure,
            )
        }
    };
    let mut out = BytesMut::with_capacity(body.len() + 256);
    match ctx.format {
        ClientFormat::OpenAi => match serde_json::to_vec(&decoded) {
            Ok(json) => out.extend_from_slice(&json),
            Err(e) => {
                return failed(
                    GatewayError::UpstreamProtocol {
                        provider: info.provider.name.clone(),
                        reason: format!("cannot encode the response: {e}"),
                    },
                    AttemptResult::Neutral,
                )
            }
        },
        ClientFormat::Anthropic => anthropic_api::encode_response(&decoded, &mut out),
    }
    let out = match ctx.guard_response(core, &info.provider.name, out.freeze()) {
        Ok(body) => body,
        Err(e) => return guard_refused(conn, ctx, e),
    };
    let sent = conn
        .respond(
            200,
            b"application/json",
            &info.labels.headers(),
            out,
            ctx.keep_alive,
            ctx.head.version,
        )
        .await;
    match sent {
        Ok(()) => answered(
            Outcome {
                keep_alive: ctx.keep_alive,
            },
            AttemptResult::Success,
            None,
        ),
        Err(_) => answered(Outcome { keep_alive: false }, AttemptResult::Neutral, None),
    }
}

/// Encodes canonical chunks in the client's streaming format.
enum ClientStream {
    OpenAi { wants_usage: bool },
    Anthropic(Box<MessagesStreamEncoder>),
}

impl ClientStream {
    fn push(&mut self, chunk: &mut ChatChunk, created: u64, out: &mut BytesMut) {
        if chunk.created == 0 {
            chunk.created = created;
        }
        match self {
            ClientStream::OpenAi { wants_usage } => {
                if chunk.choices.is_empty() && chunk.usage.is_some() && !*wants_usage {
                    return;
                }
                if let Ok(json) = serde_json::to_vec(&*chunk) {
                    out.put_slice(b"data: ");
                    out.put_slice(&json);
                    out.put_slice(b"\n\n");
                }
            }
            ClientStream::Anthropic(encoder) => encoder.push(chunk, out),
        }
    }

    fn finish(&mut self, out: &mut BytesMut) {
        match self {
            ClientStream::OpenAi { .. } => out.put_slice(b"data: [DONE]\n\n"),
            ClientStream::Anthropic(encoder) => encoder.finish(out),
        }
    }

    fn error(&self, e: &GatewayError, out: &mut BytesMut) {
        match self {
            ClientStream::OpenAi { .. } => e.write_sse(out),
            ClientStream::Anthropic(_) => {
                let kind = error_type_for(e.error_type(), e.status());
                encode_error_event(kind, &e.to_string(), out);
            }
        }
    }
}

async fn translated_stream(
    core: &Core<'_>,
    conn: &mut Downstream,
    ctx: &RequestCtx<'_>,
    info: &AttemptInfo<'_>,
    response: &mut UpstreamResponse,
) -> Ended {
    let mut decoder = info.provider.adapter.stream_decoder(info.upstream_model);
    let mut client = match ctx.format {
        ClientFormat::OpenAi => ClientStream::OpenAi {
            wants_usage: ctx.client_wants_usage,
        },
        ClientFormat::Anthropic => {
            ClientStream::Anthropic(Box::new(MessagesStreamEncoder::new(&ctx.model)))
        }
    };
    let provider = &info.provider.name;
    let created = now_unix();
    let mut chunks: Vec<ChatChunk> = Vec::new();
    let mut out = BytesMut::new();
    let mut held = HeldStream::new(&info.labels, ctx.keep_alive, ctx.head.version, provider);
    let mut failure: Option<GatewayError> = None;
    let mut complete = false;
    let mut guard = ctx.guard.as_ref().and_then(crate::guard::StreamGuard::new);
    // Id and model of the last chunk: the shape of a chunk carrying text held to the end.
    let mut last: Option<(String, String)> = None;
    loop {
        let ended = match core.read_upstream(response).await {
            Ok(Some(bytes)) => {
                if let Err(e) = decoder.feed(&bytes, &mut chunks) {
                    failure = Some(stream_error(provider, e));
                }
                false
            }
            Ok(None) => {
                match decoder.finish(&mut chunks) {
                    Ok(true) => complete = true,
                    Ok(false) => {}
                    Err(e) => failure = Some(stream_error(provider, e)),
                }
                true
            }
            Err(e) => {
                failure = Some(e);
                true
            }
        };
        for mut chunk in chunks.drain(..) {
            if let Some(usage) = &chunk.usage {
                ctx.meter.report_chat(usage);
            }
            if !chunk.choices.is_empty() {
                ctx.meter.count_output();
            }
            if failure.is_some() {
                continue;
            }
            if let Some(guard) = &mut guard {
                last = Some((chunk.id.clone(), chunk.model.clone()));
                if let Err(e) = guard.chat_chunk(core, &mut chunk) {
                    failure = Some(e);
                    continue;
                }
                // What was decided before a match goes out; the error ends the stream.
                failure = guard.take_blocked();
            }
            client.push(&mut chunk, created, &mut out);
        }
        let finished = ended || failure.is_some();
        let framing = match held.commit(conn, !out.is_empty(), finished, &mut failure) {
            Commit::Wait => continue,
            // The upstream answered and a guardrail refused it before anything went out.
            Commit::FailedBeforeFirstEvent(e @ GatewayError::ContentPolicy { .. }) => {
                return guard_refused(conn, ctx, e)
            }
            // Nothing was sent yet: another deployment may still answer.
            Commit::FailedBeforeFirstEvent(e) => return failed(e, AttemptResult::Failure),
            Commit::Ready(framing) => framing,
        };
        if ended || failure.is_some() {
            if failure.is_none() && !complete {
                failure = Some(GatewayError::UpstreamClosed {
                    provider: provider.clone(),
                    when: "mid-stream",
                });
            }
            if let (None, Some(guard), Some((id, model))) = (&failure, &mut guard, &last) {
                match guard.chat_done(core, id, model, created) {
                    Ok(Some(mut extra)) => client.push(&mut extra, created, &mut out),
                    Ok(None) => {}
                    Err(e) => failure = Some(e),
                }
            }
            match &failure {
                // Never a silent truncation: the client gets a terminal error event.
                Some(e) => client.error(e, &mut out),
                None => client.finish(&mut out),
            }
        }
        if !out.is_empty() {
            conn.stream_data(framing, &out);
            out.clear();
        }
        if ended || failure.is_some() {
            conn.end_stream(framing);
            let keep_alive = ctx.keep_alive && framing == StreamFraming::Chunked;
            let flushed = conn.flush().await.is_ok();
            // A guardrail ending the stream says nothing about the upstream's health.
            let result = if failure.as_ref().is_some_and(|e| !e.is_content_policy()) {
                AttemptResult::Failure
            } else {
                AttemptResult::Success
            };
            let mut done = answered(
                Outcome {
                    keep_alive: keep_alive && flushed,
                },
                result,
                None,
            );
            done.first_event_at = held.first_event_at();
            return done;
        }
        if conn.flush().await.is_err() {
            return answered(Outcome { keep_alive: false }, AttemptResult::Neutral, None);
        }
    }
}

fn stream_error(provider: &str, e: ProviderError) -> GatewayError {
    match e.kind {
        ErrorKind::BadResponse => GatewayError::UpstreamProtocol {
            provider: provider.to_owned(),
            reason: e.message,
        },
        _ => GatewayError::UpstreamStreamError {
            provider: provider.to_owned(),
            status: e.status,
            message: e.message,
        },
    }
}

/// An Anthropic-format client in front of an Anthropic provider: the provider's own bytes,
/// with only `model` rewritten.
pub(crate) async fn attempt_native_anthropic(
    core: &Core<'_>,
    conn: &mut Downstream,
    ctx: &RequestCtx<'_>,
    native: &anthropic_api::NativeSummary,
    info: AttemptInfo<'_>,
) -> Ended {
    let mut body = BytesMut::with_capacity(ctx.body.len() + 32);
    anthropic_api::rewrite_model(&ctx.body, native, info.upstream_model, &mut body);
    let version = ctx
        .head
        .header("anthropic-version")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::to_owned)
        .or_else(|| info.provider.api_version.clone())
        .unwrap_or_else(|| "2023-06-01".to_owned());
    let mut headers = vec![
        ("host", info.provider.authority.clone()),
        ("content-type", "application/json".to_owned()),
        ("anthropic-version", version),
    ];
    if let Some(key) = &info.provider.api_key {
        headers.push(("x-api-key", key.clone()));
    }
    if let Some(beta) = ctx
        .head
        .header("anthropic-beta")
        .and_then(|v| std::str::from_utf8(v).ok())
        .filter(|v| !v.contains(['\r', '\n']))
    {
        headers.push(("anthropic-beta", beta.to_owned()));
    }
    if ctx.streaming {
        headers.push(("accept", "text/event-stream".to_owned()));
    }
    let request = UpstreamRequest {
        method: "POST",
        path: format!("{}/v1/messages", info.provider.base_path),
        headers,
        body: body.freeze(),
    };
    let (mut response, started, ttfb) =
        match send_checked(core, conn, ctx, &info, request, true).await {
            Ok(r) => r,
            Err(ended) => return ended,
        };
    let status = response.head.status;
    let is_sse = response
        .head
        .content_type
        .as_deref()
        .is_some_and(|ct| ct.starts_with(b"text/event-stream"));
    let mut ended = if ctx.streaming && is_sse {
        native_stream(core, conn, ctx, &info, &mut response).await
    } else {
        match response.collect(core.pools()).await {
            Err(e) => failed(e, AttemptResult::Failure),
            Ok(body) => {
                if let Some(usage) = anthropic_api::native_usage(&body) {
                    ctx.meter.report_chat(&usage);
                }
                let body = if status == 200 {
                    match ctx.guard_response(core, &info.provider.name, body) {
                        Ok(body) => body,
                        Err(e) => return guard_refused(conn, ctx, e),
                    }
                } else {
                    body
                };
                let sent = conn
                    .respond(
                        status,
                        b"application/json",
                        &info.labels.headers(),
                        body,
                        ctx.keep_alive,
                        ctx.head.version,
                    )
                    .await;
                answered(
                    Outcome {
                        keep_alive: ctx.keep_alive && sent.is_ok(),
                    },
                    AttemptResult::Success,
                    None,
                )
            }
        }
    };
    ended.ttfb = match (ended.first_event_at, ttfb) {
        // Streams are ranked by time to first token, not to the response head.
        (Some(first), Some(_)) => Some(first.saturating_duration_since(started)),
        _ => ttfb,
    };
    ended
}

/// Forward an Anthropic event stream as it arrives; the head waits for the first event.
async fn native_stream(
    core: &Core<'_>,
    conn: &mut Downstream,
    ctx: &RequestCtx<'_>,
    info: &AttemptInfo<'_>,
    response: &mut UpstreamResponse,
) -> Ended {
    let provider = &info.provider.name;
    let mut reader = SseReader::new();
    let mut usage = NativeUsageTracker::new();
    let mut batch = BytesMut::new();
    let mut held = HeldStream::new(&info.labels, ctx.keep_alive, ctx.head.version, provider);
    let mut failure: Option<GatewayError> = None;
    let mut stopped = false;
    let mut error_event = false;
    let mut events = 0usize;
    let mut guard = ctx.guard.as_ref().and_then(crate::guard::StreamGuard::new);
    let mut blocked: Option<GatewayError> = None;
    loop {
        let ended = reader
            .read(response, core, provider, &mut failure, |frame| {
                if blocked.is_some() {
                    return;
                }
                events += 1;
                match frame.event.as_deref() {
                    Some("message_stop") => stopped = true,
                    Some("content_block_delta") => ctx.meter.count_output(),
                    Some("error") => {
                        // Forwarded as is; the stream is over for the router's purposes.
                        error_event = true;
                        stopped = true;
                    }
                    _ => {}
                }
                if let Some(data) = frame.data.as_deref() {
                    usage.observe(data.as_bytes());
                }
                match &mut guard {
                    Some(g) => {
                        let scanned = g.anthropic_frame(
                            core,
                            frame.event.as_deref(),
                            frame.data.as_deref(),
                            &frame.raw,
                            &mut batch,
                        );
                        blocked = scanned.err().or_else(|| g.take_blocked());
                    }
                    None => batch.extend_from_slice(&frame.raw),
                }
            })
            .await;
        if let Some(e) = blocked.take() {
            // What was decided before the match goes out; the error ends the stream.
            failure = Some(e);
            stopped = false;
        }
        if let Some(u) = usage.usage() {
            ctx.meter.report_chat(&u);
        }
        if error_event {
            failure.get_or_insert(GatewayError::UpstreamStreamError {
                provider: provider.clone(),
                status: 500,
                message: "error event in the upstream stream".into(),
            });
        }
        let finished = ended || failure.is_some();
        let framing = match held.commit(conn, events > 0, finished, &mut failure) {
            Commit::Wait => continue,
            Commit::FailedBeforeFirstEvent(e) => return failed(e, AttemptResult::Failure),
            Commit::Ready(framing) => framing,
        };
        // Read to the end of the body (so the connection can be pooled); the stream is
        // complete only if `message_stop` came. A guardrail block ends it at once.
        let guard_blocked = matches!(failure, Some(GatewayError::ContentPolicy { .. }));
        let done = ended || guard_blocked;
        if done && !stopped && failure.is_none() {
            failure = Some(GatewayError::UpstreamClosed {
                provider: provider.clone(),
                when: "mid-stream",
            });
        }
        if done && !stopped {
            if let Some(e) = &failure {
                let kind = error_type_for(e.error_type(), e.status());
                encode_error_event(kind, &e.to_string(), &mut batch);
            }
        }
        if !batch.is_empty() {
            conn.stream_data(framing, &batch);
            batch.clear();
        }
        if done {
            conn.end_stream(framing);
            let flushed = conn.flush().await.is_ok();
            // A guardrail ending the stream says nothing about the upstream's health.
            let result = if failure.as_ref().is_some_and(|e| !e.is_content_policy()) {
                AttemptResult::Failure
            } else {
                AttemptResult::Success
            };
            let mut done = answered(
                Outcome {
                    keep_alive: ctx.keep_alive && flushed && framing == StreamFraming::Chunked,
                },
                result,
                None,
            );
            done.first_event_at = held.first_event_at();
            return done;
        }
        if conn.flush().await.is_err() {
            return answered(Outcome { keep_alive: false }, AttemptResult::Neutral, None);
        }
    }
}
