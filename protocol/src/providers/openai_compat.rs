//! OpenAI-compatible upstreams (OpenAI itself, Groq, Mistral, vLLM, Ollama...) reached through
//! the canonical chat model, for when the gateway must translate (an Anthropic-format client in
//! front of an OpenAI upstream). The pure OpenAI -> OpenAI path never comes here: it forwards the
//! client's bytes with the model spliced (`crate::openai`).
//!
//! Reading is deliberately tolerant: compatible servers omit `id`, `object`, `created` or
//! `usage`, send unknown finish reasons, tool arguments as objects, or usage under a vendor key.
//! Must never perform I/O or echo a credential into an error message.

use std::borrow::Cow;

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    kind_for_status, looks_like_context_length, Adapter, ErrorKind, ProviderError, StreamDecoder,
    Target, TranslateError, UpstreamRequest,
};
use crate::chat::{
    ChatChunk, ChatRequest, ChatResponse, ChatUsage, Choice, ChunkChoice, Content, Delta,
    FinishReason, FunctionCall, FunctionCallDelta, Message, Role, StreamOptions, ToolCall,
    ToolCallDelta,
};
use crate::sse::{SseDecoder, SseFrame};

/// Path of the chat endpoint below the base URL (which already includes `/v1`).
const CHAT_PATH: &str = "/chat/completions";

/// Largest single SSE block accepted from an upstream. A block is one chunk; even a provider
/// that sends a whole long answer in one chunk stays far below this.
const MAX_SSE_FRAME_BYTES: usize = 8 << 20;

/// Upstream error messages are cut to this many bytes before they reach a client or a log.
const MAX_ERROR_MESSAGE_BYTES: usize = 1024;

/// `id` given to a response or chunk whose upstream sent none.
const FALLBACK_ID: &str = "chatcmpl-upstream";

/// How a compatible upstream wants its API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI and nearly every compatible server).
    Bearer,
    /// The key as the whole value of this header (e.g. Azure's `api-key`).
    Header(&'static str),
    /// Send no credential even when one is configured (local servers that ignore it).
    None,
}

/// Adapter for OpenAI-compatible Chat Completions upstreams. Stateless apart from how it
/// authenticates; cheap to copy into every deployment that needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenAiCompatAdapter {
    auth: AuthStyle,
}

// === impl OpenAiCompatAdapter ===

impl OpenAiCompatAdapter {
    /// An adapter that authenticates with `auth`.
    pub const fn new(auth: AuthStyle) -> Self {
        OpenAiCompatAdapter { auth }
    }

    /// How this adapter sends the API key.
    pub const fn auth(&self) -> AuthStyle {
        self.auth
    }

    /// Builds the upstream request for `req` at `path` (path and query, starting with `/`).
    /// The body is the canonical request as OpenAI reads it, with the deployment's model, and
    /// with `stream_options.include_usage` forced on for streams (so usage can be settled) and
    /// `stream_options` dropped otherwise (OpenAI rejects it on non-streaming calls).
    /// Shared with adapters that only differ in addressing (Azure).
    pub fn encode_at(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
        path: String,
    ) -> Result<UpstreamRequest, TranslateError> {
        if req.messages.is_empty() {
            return Err(TranslateError::new(
                "messages must contain at least one message",
                Some("messages"),
            ));
        }
        let body = serde_json::to_vec(&*upstream_body(req, target))
            .map_err(|e| TranslateError::new(format!("cannot encode request: {e}"), None))?;

        let mut headers: Vec<(&'static str, String)> = Vec::with_capacity(5);
        headers.push(("host", target.authority.to_owned()));
        headers.push(("content-type", "application/json".to_owned()));
        let accept = if req.is_stream() {
            "text/event-stream"
        } else {
            "application/json"
        };
        headers.push(("accept", accept.to_owned()));
        if let Some(key) = target.api_key.filter(|k| !k.is_empty()) {
            match self.auth {
                AuthStyle::Bearer => headers.push(("authorization", format!("Bearer {key}"))),
                AuthStyle::Header(name) => headers.push((name, key.to_owned())),
                AuthStyle::None => {}
            }
        }
        Ok(UpstreamRequest {
            method: "POST",
            path,
            headers,
            body: Bytes::from(body),
        })
    }
}

impl Default for OpenAiCompatAdapter {
    /// Bearer authentication, what OpenAI and most compatible servers expect.
    fn default() -> Self {
        Self::new(AuthStyle::Bearer)
    }
}

impl Adapter for OpenAiCompatAdapter {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, TranslateError> {
        self.encode_at(req, target, format!("{}{CHAT_PATH}", target.base_path))
    }

    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, ProviderError> {
        decode_response(body, model)
    }

    fn stream_decoder(&self, model: &str) -> Box<dyn StreamDecoder> {
        Box::new(OpenAiStreamDecoder::new(model))
    }

    fn map_error(&self, status: u16, body: &[u8]) -> ProviderError {
        map_error(status, body)
    }
}

/// The request as it goes upstream: borrowed when nothing needs changing. Reasoning text on
/// earlier assistant turns (kept by translations from other vendors) is dropped: OpenAI has no
/// such input field and DeepSeek rejects a request that carries it.
fn upstream_body<'r>(req: &'r ChatRequest, target: &Target<'_>) -> Cow<'r, ChatRequest> {
    let stream = req.is_stream();
    let wrong_model = !target.model.is_empty() && req.model != target.model;
    let usage_missing =
        stream && req.stream_options.as_ref().and_then(|o| o.include_usage) != Some(true);
    let stray_options = !stream && req.stream_options.is_some();
    let reasoning = req.messages.iter().any(|m| m.reasoning_content.is_some());
    if !(wrong_model || usage_missing || stray_options || reasoning) {
        return Cow::Borrowed(req);
    }
    let mut owned = req.clone();
    for message in &mut owned.messages {
        message.reasoning_content = None;
    }
    if wrong_model {
        owned.model = target.model.to_owned();
    }
    if stream {
        owned
            .stream_options
            .get_or_insert_with(StreamOptions::default)
            .include_usage = Some(true);
    } else {
        owned.stream_options = None;
    }
    Cow::Owned(owned)
}

// === responses ===

/// Reads a non-streaming Chat Completions body, filling what a compatible server left out:
/// `id`, `object` and `created` (0: there is no clock here). `model` is echoed, as in every
/// adapter and in streams; the upstream's own name is used only when `model` is empty.
pub(crate) fn decode_response(body: &[u8], model: &str) -> Result<ChatResponse, ProviderError> {
    let wire: WireResponse = serde_json::from_slice(body)
        .map_err(|e| ProviderError::bad_response(format!("unreadable chat completion: {e}")))?;
    if let Some(error) = wire.error {
        // Some servers answer 200 with an error object (vLLM on bad sampling params, proxies).
        return Err(error_from_value(None, &error));
    }
    let Some(choices) = wire.choices else {
        return Err(ProviderError::bad_response(
            "chat completion has no choices",
        ));
    };
    let choices = choices
        .into_iter()
        .enumerate()
        .map(|(i, c)| Choice {
            index: c.index.unwrap_or(i as u32),
            message: c.message.into_message(),
            finish_reason: c.finish_reason.as_deref().and_then(finish_reason),
        })
        .collect();
    let usage = wire
        .usage
        .or_else(|| wire.x_groq.and_then(|g| g.usage))
        .map(WireUsage::into_usage);
    Ok(ChatResponse {
        id: non_empty(wire.id).unwrap_or_else(|| FALLBACK_ID.to_owned()),
        object: "chat.completion".to_owned(),
        created: wire.created.unwrap_or(0),
        model: if model.is_empty() {
            non_empty(wire.model).unwrap_or_default()
        } else {
            model.to_owned()
        },
        choices,
        usage,
    })
}

/// Maps a finish reason as compatible servers spell it. Unknown reasons read as `stop`: the
/// turn did end, and a client cannot act on a reason it does not know either.
fn finish_reason(reason: &str) -> Option<FinishReason> {
    match reason {
        "" => None,
        "length" | "max_tokens" | "model_length" => Some(FinishReason::Length),
        "tool_calls" | "function_call" | "tool_call" => Some(FinishReason::ToolCalls),
        "content_filter" => Some(FinishReason::ContentFilter),
        _ => Some(FinishReason::Stop),
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

/// `reasoning` as some servers send it: text, or an object this adapter does not model.
fn reasoning_text(v: Option<Value>) -> Option<String> {
    match v {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

/// Tool arguments as text: OpenAI sends a JSON string; Ollama and some others an object.
fn arguments_text(v: Option<Value>) -> Option<String> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    }
}

#[derive(Deserialize)]
struct WireResponse {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    choices: Option<Vec<WireChoice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// Groq reports usage here (and in streams, only here).
    #[serde(default)]
    x_groq: Option<WireGroq>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireGroq {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    message: WireMessage,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireMessage {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    /// OpenRouter, Groq and newer vLLM name the reasoning text `reasoning`.
    #[serde(default)]
    reasoning: Option<Value>,
}

impl WireMessage {
    fn into_message(self) -> Message {
        let tool_calls: Option<Vec<ToolCall>> = self
            .tool_calls
            .filter(|calls| !calls.is_empty())
            .map(|calls| {
                calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| ToolCall {
                        id: non_empty(c.id).unwrap_or_else(|| format!("call_{i}")),
                        kind: non_empty(c.kind).unwrap_or_else(|| "function".to_owned()),
                        function: FunctionCall {
                            name: c.function.name.unwrap_or_default(),
                            arguments: arguments_text(c.function.arguments)
                                .unwrap_or_else(|| "{}".to_owned()),
                        },
                    })
                    .collect()
            });
        Message {
            role: self.role.unwrap_or(Role::Assistant),
            content: self.content,
            name: None,
            tool_calls,
            tool_call_id: None,
            refusal: self.refusal,
            reasoning_content: self.reasoning_content.or(reasoning_text(self.reasoning)),
            extra: Map::new(),
        }
    }
}

#[derive(Deserialize)]
struct WireToolCall {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    function: WireFunction,
}

#[derive(Deserialize, Default)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    total_tokens: Option<u64>,
    #[serde(default)]
    prompt_tokens_details: Option<WirePromptDetails>,
    /// DeepSeek's name for cached input.
    #[serde(default)]
    prompt_cache_hit_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

impl WireUsage {
    fn into_usage(self) -> ChatUsage {
        let cached = self
            .prompt_tokens_details
            .and_then(|d| d.cached_tokens)
            .or(self.prompt_cache_hit_tokens)
            .unwrap_or(0);
        let mut usage = ChatUsage::new(self.prompt_tokens, self.completion_tokens, cached);
        if let Some(total) = self.total_tokens.filter(|t| *t >= usage.total_tokens) {
            usage.total_tokens = total;
        }
        usage
    }
}

// === streams ===

/// Decodes an OpenAI-style SSE body (`data: {chunk}` ... `data: [DONE]`) into canonical chunks.
///
/// Chunks that carry nothing (Azure's leading `prompt_filter_results` chunk, empty keep-alive
/// deltas) are dropped. Usage is emitted once as a usage-only chunk: at once when the upstream
/// sends one, otherwise (usage riding on a content chunk, or under `x_groq`) when the stream ends.
pub struct OpenAiStreamDecoder {
    model: String,
    sse: SseDecoder,
    buf: BytesMut,
    id: Option<String>,
    created: u64,
    pending_usage: Option<ChatUsage>,
    usage_sent: bool,
    done: bool,
}

impl std::fmt::Debug for OpenAiStreamDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenAiStreamDecoder")
            .field("model", &self.model)
            .field("buffered", &self.buf.len())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

// === impl OpenAiStreamDecoder ===

impl OpenAiStreamDecoder {
    /// A decoder whose chunks all name `model` (the deployment's, echoed as in every adapter).
    pub fn new(model: &str) -> Self {
        OpenAiStreamDecoder {
            model: model.to_owned(),
            sse: SseDecoder::new(MAX_SSE_FRAME_BYTES),
            buf: BytesMut::new(),
            id: None,
            created: 0,
            pending_usage: None,
            usage_sent: false,
            done: false,
        }
    }

    fn on_frame(
        &mut self,
        frame: &SseFrame,
        out: &mut Vec<ChatChunk>,
    ) -> Result<(), ProviderError> {
        if self.done {
            return Ok(());
        }
        let Some(data) = frame.data.as_deref() else {
            return Ok(()); // comment or keep-alive
        };
        if frame.is_done() {
            self.done = true;
            self.flush_usage(out);
            return Ok(());
        }
        if data.trim().is_empty() {
            return Ok(());
        }
        let wire: WireChunk = serde_json::from_str(data)
            .map_err(|e| ProviderError::bad_response(format!("unreadable stream chunk: {e}")))?;
        if let Some(error) = wire.error {
            return Err(error_from_value(None, &error));
        }
        if self.id.is_none() {
            self.id = non_empty(wire.id);
        }
        if self.created == 0 {
            self.created = wire.created.unwrap_or(0);
        }
        let usage = wire
            .usage
            .or_else(|| wire.x_groq.and_then(|g| g.usage))
            .map(WireUsage::into_usage);
        let usage_only = wire.choices.as_ref().is_none_or(Vec::is_empty);
        let choices: Vec<ChunkChoice> = wire
            .choices
            .unwrap_or_default()
            .into_iter()
            .enumerate()
            .filter_map(|(i, c)| c.into_choice(i))
            .collect();
        if !choices.is_empty() {
            out.push(ChatChunk {
                id: self.id(),
                object: "chat.completion.chunk".to_owned(),
                created: self.created,
                model: self.model.clone(),
                choices,
                usage: None,
            });
        }
        if let Some(usage) = usage {
            self.pending_usage = Some(usage);
            if usage_only {
                self.flush_usage(out);
            }
        }
        Ok(())
    }

    /// The stream's id: the upstream's first non-empty one, or the fallback, fixed from the
    /// first chunk emitted on so every chunk of a stream shares it.
    fn id(&mut self) -> String {
        self.id
            .get_or_insert_with(|| FALLBACK_ID.to_owned())
            .clone()
    }

    fn flush_usage(&mut self, out: &mut Vec<ChatChunk>) {
        if let Some(usage) = self.pending_usage.take() {
            if !self.usage_sent {
                self.usage_sent = true;
                let id = self.id();
                out.push(ChatChunk::usage(&id, &self.model, self.created, usage));
            }
        }
    }
}

impl StreamDecoder for OpenAiStreamDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        self.buf.extend_from_slice(bytes);
        loop {
            match self.sse.decode(&mut self.buf) {
                Ok(Some(frame)) => self.on_frame(&frame, out)?,
                Ok(None) => return Ok(()),
                Err(e) => return Err(ProviderError::bad_response(format!("upstream stream: {e}"))),
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<bool, ProviderError> {
        loop {
            match self.sse.decode_final(&mut self.buf) {
                Ok(Some(frame)) => self.on_frame(&frame, out)?,
                Ok(None) => break,
                Err(e) => return Err(ProviderError::bad_response(format!("upstream stream: {e}"))),
            }
        }
        // Bytes after the last blank line are an unterminated event: never dispatched.
        self.sse.finish(&mut self.buf);
        // Usage that arrived is real usage even when `[DONE]` did not.
        self.flush_usage(out);
        Ok(self.done)
    }
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    created: Option<u64>,
    #[serde(default)]
    choices: Option<Vec<WireChunkChoice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    x_groq: Option<WireGroq>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireChunkChoice {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    delta: Option<WireDelta>,
    /// Some servers put a whole message on the final chunk instead of a delta.
    #[serde(default)]
    message: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
struct WireDelta {
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    reasoning_content: Option<String>,
    #[serde(default)]
    reasoning: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolCall>>,
}

impl WireChunkChoice {
    /// The canonical choice, or `None` when it carries nothing at all.
    fn into_choice(self, position: usize) -> Option<ChunkChoice> {
        let wire = self.delta.or(self.message).unwrap_or_default();
        let tool_calls: Option<Vec<ToolCallDelta>> = wire
            .tool_calls
            .filter(|calls| !calls.is_empty())
            .map(|calls| {
                calls
                    .into_iter()
                    .enumerate()
                    .map(|(i, c)| ToolCallDelta {
                        index: c.index.unwrap_or(i as u32),
                        id: non_empty(c.id),
                        kind: non_empty(c.kind),
                        function: FunctionCallDelta {
                            name: c.function.name,
                            arguments: arguments_text(c.function.arguments),
                        },
                    })
                    .collect()
            });
        let delta = Delta {
            role: wire.role,
            content: wire.content,
            reasoning_content: wire.reasoning_content.or(reasoning_text(wire.reasoning)),
            tool_calls,
        };
        let finish = self.finish_reason.as_deref().and_then(finish_reason);
        if delta == Delta::default() && finish.is_none() {
            return None;
        }
        Some(ChunkChoice {
            index: self.index.unwrap_or(position as u32),
            delta,
            finish_reason: finish,
        })
    }
}

// === errors ===

/// Maps a non-2xx answer of an OpenAI-compatible server.
///
/// Reads `{"error":{"message","type","param","code"}}` and the variants compatible servers use
/// instead (`{"error":"text"}`, vLLM's top-level `{"message","type","code"}`, FastAPI's
/// `{"detail":..}`, a plain-text body). Context overflow wins over the status (its own fallback
/// chain); any 429 is `RateLimited`, with `insufficient_quota` named in the message because
/// retrying elsewhere helps but waiting does not; content-filter codes are `ContentFilter`;
/// the rest goes by status. Authentication messages are not echoed: OpenAI's quotes a key prefix.
pub(crate) fn map_error(status: u16, body: &[u8]) -> ProviderError {
    let parsed = serde_json::from_slice::<Value>(body).ok();
    let detail = match &parsed {
        Some(v) => ErrorDetail::from_body(v),
        None => ErrorDetail {
            message: String::from_utf8_lossy(body).trim().to_owned(),
            ..ErrorDetail::default()
        },
    };
    classify(Some(status), detail)
}

/// An error object found inside a 200 body or a stream (`{"error": ...}` value).
fn error_from_value(status: Option<u16>, error: &Value) -> ProviderError {
    let mut wrapped = Map::new();
    wrapped.insert("error".to_owned(), error.clone());
    classify(status, ErrorDetail::from_body(&Value::Object(wrapped)))
}

/// The fields of an upstream error body that classification reads.
#[derive(Debug, Default)]
pub(crate) struct ErrorDetail {
    /// Human-readable message (possibly empty).
    pub(crate) message: String,
    /// `error.type`.
    pub(crate) error_type: Option<String>,
    /// `error.code`, stringified when numeric.
    pub(crate) code: Option<String>,
    /// A numeric status some servers put in the body (`code: 429`, `status: 400`).
    pub(crate) status: Option<u16>,
    /// Azure's `error.innererror.code`.
    pub(crate) inner_code: Option<String>,
}

impl ErrorDetail {
    /// Reads the error object of a parsed body, whichever variant it is.
    pub(crate) fn from_body(v: &Value) -> Self {
        let obj = match v.get("error") {
            Some(Value::String(s)) => {
                return ErrorDetail {
                    message: s.clone(),
                    ..ErrorDetail::default()
                }
            }
            Some(e @ Value::Object(_)) => e,
            _ => v,
        };
        let text = |key: &str| match obj.get(key) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        let number = |key: &str| {
            obj.get(key)
                .and_then(Value::as_u64)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|n| (100..=599).contains(n))
        };
        let message = text("message")
            .or_else(|| match obj.get("detail") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(other @ (Value::Array(_) | Value::Object(_))) => Some(other.to_string()),
                _ => None,
            })
            .unwrap_or_default();
        ErrorDetail {
            message,
            error_type: text("type"),
            code: text("code"),
            status: number("code").or_else(|| number("status")),
            inner_code: obj
                .get("innererror")
                .and_then(|i| i.get("code"))
                .and_then(Value::as_str)
                .map(str::to_owned),
        }
    }

    fn is(&self, what: &str) -> bool {
        self.code.as_deref() == Some(what) || self.error_type.as_deref() == Some(what)
    }

    /// Whether the body names a content filter (OpenAI's, Azure's or a compatible server's).
    pub(crate) fn is_content_filter(&self) -> bool {
        const CODES: &[&str] = &[
            "content_filter",
            "content_policy_violation",
            "content_filter_error",
            "ResponsibleAIPolicyViolation",
        ];
        CODES.iter().any(|c| self.is(c))
            || self
                .inner_code
                .as_deref()
                .is_some_and(|c| CODES.contains(&c))
    }
}

/// Classifies an upstream error. `status` is the HTTP status (None inside a 200 body or a
/// stream, where the body's own status or type decides).
pub(crate) fn classify(status: Option<u16>, detail: ErrorDetail) -> ProviderError {
    let status = status.or(detail.status).unwrap_or_else(|| {
        match detail.error_type.as_deref().or(detail.code.as_deref()) {
            Some("rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota") => 429,
            Some("invalid_request_error") => 400,
            Some("authentication_error") => 401,
            _ => 500,
        }
    });
    let message = clip(&detail.message);
    let quota = detail.is("insufficient_quota");
    let kind = if detail.is("context_length_exceeded") || looks_like_context_length(&message) {
        ErrorKind::ContextLength
    } else if status == 429 || quota {
        ErrorKind::RateLimited
    } else if detail.is_content_filter() {
        ErrorKind::ContentFilter
    } else {
        kind_for_status(status)
    };
    let message = match kind {
        ErrorKind::Authentication => {
            format!("upstream rejected the gateway's credentials (status {status})")
        }
        ErrorKind::RateLimited if quota => {
            format!("upstream quota exhausted (insufficient_quota): {message}")
        }
        _ if message.is_empty() => format!("upstream answered status {status}"),
        _ => message,
    };
    let retry_after = matches!(kind, ErrorKind::RateLimited | ErrorKind::Unavailable)
        .then(|| retry_after_from_message(&detail.message))
        .flatten();
    let status = if kind == ErrorKind::BadResponse {
        502
    } else {
        status
    };
    let mut error = ProviderError::new(kind, status, message);
    error.retry_after = retry_after;
    error
}

/// Cuts a message to [`MAX_ERROR_MESSAGE_BYTES`] on a character boundary.
fn clip(message: &str) -> String {
    let message = message.trim();
    if message.len() <= MAX_ERROR_MESSAGE_BYTES {
        return message.to_owned();
    }
    let mut end = MAX_ERROR_MESSAGE_BYTES;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// Seconds to wait when the message says so: OpenAI's "Please try again in 1.5s" / "in 20ms",
/// Azure's "Please retry after 6 seconds". Rounded up; at least 1.
pub(crate) fn retry_after_from_message(message: &str) -> Option<u64> {
    let lower = message.to_ascii_lowercase();
    let rest = ["try again in ", "retry after "]
        .iter()
        .find_map(|needle| lower.find(needle).map(|at| &lower[at + needle.len()..]))?;
    let number_len = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let value: f64 = rest[..number_len].parse().ok()?;
    let unit = rest[number_len..].trim_start();
    let seconds = if unit.starts_with("ms") {
        value / 1000.0
    } else if unit.starts_with('m') && !unit.starts_with("ms") {
        value * 60.0
    } else {
        value
    };
    if !seconds.is_finite() || seconds < 0.0 {
        return None;
    }
    Some((seconds.ceil() as u64).max(1))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn target<'a>(model: &'a str, key: Option<&'a str>) -> Target<'a> {
        Target {
            authority: "api.example.com",
            base_path: "/v1",
            model,
            api_key: key,
            api_version: None,
            aws: None,
            now_unix: 0,
        }
    }

    fn request(stream: bool) -> ChatRequest {
        ChatRequest {
            model: "m".into(),
            messages: vec![Message::text(Role::User, "hi")],
            stream: stream.then_some(true),
            ..ChatRequest::default()
        }
    }

    #[test]
    fn encodes_path_headers_and_forces_usage_on_streams() {
        let a = OpenAiCompatAdapter::new(AuthStyle::Bearer);
        let up = a
            .encode_request(&request(true), &target("m", Some("sk-1")))
            .unwrap();
        assert_eq!(up.method, "POST");
        assert_eq!(up.path, "/v1/chat/completions");
        assert!(up
            .headers
            .contains(&("authorization", "Bearer sk-1".into())));
        assert!(up.headers.contains(&("host", "api.example.com".into())));
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["stream"], true);

        let mut req = request(false);
        req.stream_options = Some(StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        });
        let up = a.encode_request(&req, &target("other", None)).unwrap();
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert!(body.get("stream_options").is_none());
        assert_eq!(body["model"], "other");
        assert!(up.headers.iter().all(|(n, _)| *n != "authorization"));
    }

    #[test]
    fn reasoning_is_not_sent_back() {
        let mut req = request(false);
        let mut earlier = Message::text(Role::Assistant, "4");
        earlier.reasoning_content = Some("2+2".into());
        req.messages.insert(0, earlier);
        let up = OpenAiCompatAdapter::default()
            .encode_request(&req, &target("m", None))
            .unwrap();
        let body: Value = serde_json::from_slice(&up.body).unwrap();
        assert!(body["messages"][0].get("reasoning_content").is_none());
        assert_eq!(body["messages"][0]["content"], "4");
    }

    #[test]
    fn auth_styles() {
        let up = OpenAiCompatAdapter::new(AuthStyle::Header("x-key"))
            .encode_request(&request(false), &target("m", Some("k")))
            .unwrap();
        assert!(up.headers.contains(&("x-key", "k".into())));
        let up = OpenAiCompatAdapter::new(AuthStyle::None)
            .encode_request(&request(false), &target("m", Some("k")))
            .unwrap();
        assert!(up
            .headers
            .iter()
            .all(|(_, v)| v != "k" && !v.contains("Bearer")));
    }

    #[test]
    fn empty_messages_is_a_translate_error() {
        let mut req = request(false);
        req.messages.clear();
        let err = OpenAiCompatAdapter::default()
            .encode_request(&req, &target("m", None))
            .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("messages"));
    }

    #[test]
    fn minimal_response_gets_defaults() {
        let r = decode_response(
            br#"{"choices":[{"message":{"content":"hey"},"finish_reason":"eos"}]}"#,
            "dep",
        )
        .unwrap();
        assert_eq!(r.id, FALLBACK_ID);
        assert_eq!(r.object, "chat.completion");
        assert_eq!(r.model, "dep");
        let upstream_named = decode_response(br#"{"model":"up","choices":[]}"#, "").unwrap();
        assert_eq!(upstream_named.model, "up");
        assert_eq!(r.choices[0].message.role, Role::Assistant);
        assert_eq!(r.choices[0].finish_reason, Some(FinishReason::Stop));
        assert!(r.usage.is_none());
    }

    #[test]
    fn stream_id_is_fixed_once_a_chunk_is_out() {
        let mut d = OpenAiStreamDecoder::new("m");
        let mut out = Vec::new();
        d.feed(
            b"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"id\":\"late\",\"choices\":[{\"delta\":{\"content\":\"b\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n",
            &mut out,
        )
        .unwrap();
        assert!(!d.finish(&mut out).unwrap(), "no [DONE]");
        assert_eq!(out.len(), 3, "two deltas and the usage flushed at the end");
        assert!(out.iter().all(|c| c.id == FALLBACK_ID));
        assert_eq!(out[2].usage.map(|u| u.total_tokens), Some(3));
    }

    #[test]
    fn retry_after_phrases() {
        assert_eq!(
            retry_after_from_message("Please try again in 1.5s."),
            Some(2)
        );
        assert_eq!(
            retry_after_from_message("Please try again in 20ms."),
            Some(1)
        );
        assert_eq!(
            retry_after_from_message("Please retry after 6 seconds."),
            Some(6)
        );
        assert_eq!(
            retry_after_from_message("Please try again in 2m0s"),
            Some(120)
        );
        assert_eq!(retry_after_from_message("slow down"), None);
    }

    #[test]
    fn clip_respects_char_boundaries() {
        let long = "é".repeat(MAX_ERROR_MESSAGE_BYTES);
        let c = clip(&long);
        assert!(c.len() <= MAX_ERROR_MESSAGE_BYTES + 3);
        assert!(c.ends_with("..."));
    }

    #[test]
    fn auth_errors_do_not_echo_the_message() {
        let e = map_error(
            401,
            br#"{"error":{"message":"Incorrect API key provided: sk-abc***xyz","type":"invalid_request_error","code":"invalid_api_key"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::Authentication);
        assert!(!e.message.contains("sk-"));
    }
}
