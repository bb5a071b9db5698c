//! Anthropic Messages API adapter: canonical chat requests become `POST /v1/messages` bodies,
//! Messages responses and SSE streams become canonical responses and chunks, and Anthropic's
//! error bodies become [`ProviderError`]s. Pure conversion: it never touches a socket or a clock.
//!
//! Choices the contract leaves to us, documented once here:
//! - System and developer messages anywhere in the conversation are joined (blank line between)
//!   into the top-level `system`; consecutive turns of the same Anthropic role are merged, because
//!   Anthropic needs user/assistant alternation (tool results travel in user turns).
//! - Anthropic has no JSON mode. `json_object` appends [`JSON_OBJECT_INSTRUCTION`] to the system
//!   prompt. `json_schema` offers one extra tool, named [`JSON_TOOL_PREFIX`] + the schema name,
//!   whose `input_schema` is the schema, and forces it (or, when the client also offers tools,
//!   forces "some tool"); the decoders turn that tool's input back into message text. The
//!   prefix is how the stateless decoders recognise it, since `decode_response` gets no request.
//! - Assistant `reasoning_content` is not sent back: Anthropic only accepts thinking blocks with
//!   their signature, which the canonical model does not carry.
//! - A temperature above 1 is refused (Anthropic's range is 0..=1, OpenAI's 0..=2); `n` > 1
//!   is refused; other OpenAI-only extras (seed, penalties, logprobs...) are not sent, while
//!   `top_k` and `thinking` pass through. Without an output cap, `max_tokens` is
//!   [`DEFAULT_MAX_TOKENS`] plus any thinking budget.
//! - `created` is 0 on decoded responses and chunks: Anthropic sends no timestamp and adapters
//!   have no clock; the engine stamps it if it wants one.

use bytes::{Bytes, BytesMut};
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{
    kind_for_status, looks_like_context_length, Adapter, ErrorKind, ProviderError, StreamDecoder,
    Target, TranslateError, UpstreamRequest,
};
use crate::chat::{
    ChatChunk, ChatRequest, ChatResponse, ChatUsage, Choice, Content, ContentPart, Delta,
    FinishReason, FunctionCall, FunctionCallDelta, Message, ResponseFormat, Role, Stop, ToolCall,
    ToolCallDelta, ToolChoice,
};
use crate::sse::SseDecoder;

/// `anthropic-version` sent when the target does not name one.
pub const DEFAULT_API_VERSION: &str = "2023-06-01";

/// `max_tokens` sent when the client gave no output cap (Anthropic requires one).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Prefix of the tool that carries a `json_schema` response format (see the module doc).
pub const JSON_TOOL_PREFIX: &str = "json_response_";

/// Added to the system prompt for `response_format: json_object`.
pub const JSON_OBJECT_INSTRUCTION: &str =
    "Respond only with a single valid JSON object. Do not add any text before or after it.";

/// Anthropic tool names are at most this long.
const MAX_TOOL_NAME: usize = 64;

/// The Messages endpoint, after the target's base path.
const MESSAGES_PATH: &str = "/v1/messages";

/// Largest SSE block accepted from the upstream.
const MAX_FRAME_BYTES: usize = 4 << 20;

/// The Anthropic Messages API.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnthropicAdapter;

// === impl AnthropicAdapter ===

impl Adapter for AnthropicAdapter {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, TranslateError> {
        let body = encode_body(req, target.model)?;
        let mut headers = Vec::with_capacity(5);
        headers.push(("host", target.authority.to_owned()));
        headers.push(("content-type", "application/json".to_owned()));
        if let Some(key) = target.api_key {
            headers.push(("x-api-key", key.to_owned()));
        }
        headers.push((
            "anthropic-version",
            target.api_version.unwrap_or(DEFAULT_API_VERSION).to_owned(),
        ));
        if req.is_stream() {
            headers.push(("accept", "text/event-stream".to_owned()));
        }
        let mut path = String::with_capacity(target.base_path.len() + MESSAGES_PATH.len());
        path.push_str(target.base_path);
        path.push_str(MESSAGES_PATH);
        Ok(UpstreamRequest {
            method: "POST",
            path,
            headers,
            body,
        })
    }

    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, ProviderError> {
        let wire: WireMessage = serde_json::from_slice(body).map_err(|e| {
            ProviderError::bad_response(format!("unreadable Anthropic response: {e}"))
        })?;
        Ok(response_from_wire(wire, model))
    }

    fn stream_decoder(&self, model: &str) -> Box<dyn StreamDecoder> {
        Box::new(AnthropicStreamDecoder::new(model))
    }

    fn map_error(&self, status: u16, body: &[u8]) -> ProviderError {
        let parsed: Option<WireErrorBody> = serde_json::from_slice(body).ok();
        match parsed {
            Some(WireErrorBody { error }) => {
                let kind = kind_for_error_type(&error.kind, &error.message, status);
                ProviderError::new(kind, status, error.message)
            }
            None => {
                let text = String::from_utf8_lossy(body);
                let text = text.trim();
                let message = if text.is_empty() {
                    format!("Anthropic answered with status {status}")
                } else {
                    format!(
                        "Anthropic answered with status {status}: {}",
                        truncate(text, 200)
                    )
                };
                ProviderError::new(kind_for_status(status), status, message)
            }
        }
    }
}

/// Classifies an Anthropic error `type` (falling back to the status for unknown types).
pub fn kind_for_error_type(error_type: &str, message: &str, status: u16) -> ErrorKind {
    match error_type {
        "invalid_request_error" | "request_too_large" => {
            if looks_like_context_length(message) {
                ErrorKind::ContextLength
            } else {
                ErrorKind::InvalidRequest
            }
        }
        "authentication_error" | "permission_error" => ErrorKind::Authentication,
        "not_found_error" => ErrorKind::NotFound,
        "rate_limit_error" | "billing_error" => ErrorKind::RateLimited,
        "overloaded_error" | "api_error" | "timeout_error" => ErrorKind::Unavailable,
        _ if looks_like_context_length(message) => ErrorKind::ContextLength,
        _ => kind_for_status(status),
    }
}

/// The HTTP status Anthropic uses for an error `type` (for errors delivered inside a stream).
pub fn status_for_error_type(error_type: &str) -> u16 {
    match error_type {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "timeout_error" => 504,
        "overloaded_error" => 529,
        _ => 500,
    }
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or(text)
}

// === request ===

// The request body is written straight from typed wire structs that borrow from the canonical
// request, instead of building a `serde_json::Value` tree first. Fields are declared in
// alphabetical order on purpose: that is the order the former `Value` (a `BTreeMap`) wrote, so
// upstreams and recorded fixtures see byte-identical bodies.

/// `POST /v1/messages` body.
#[derive(Serialize)]
struct WireRequest<'a> {
    max_tokens: u64,
    messages: Vec<WireTurn<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata: Option<WireMetadata<'a>>,
    model: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop_sequences: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    system: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_choice: Option<WireToolChoice<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tools: Vec<WireTool<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
}

#[derive(Serialize)]
struct WireMetadata<'a> {
    user_id: &'a str,
}

/// One Anthropic turn.
#[derive(Serialize)]
struct WireTurn<'a> {
    content: Vec<WireBlockOut<'a>>,
    role: &'static str,
}

/// A content block of a request turn; each variant writes its own `type`.
#[derive(Serialize)]
#[serde(untagged)]
enum WireBlockOut<'a> {
    Text {
        text: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    Image {
        source: WireImageSource<'a>,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    /// An Anthropic-native block, sent as the client wrote it.
    Native(&'a Value),
    ToolUse {
        id: &'a str,
        input: Value,
        name: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    ToolResult {
        #[serde(skip_serializing_if = "Option::is_none")]
        content: Option<WireToolResultContent<'a>>,
        tool_use_id: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
}

impl<'a> WireBlockOut<'a> {
    fn text(text: &'a str) -> Self {
        WireBlockOut::Text { text, kind: "text" }
    }
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireToolResultContent<'a> {
    Text(&'a str),
    Blocks(Vec<WireBlockOut<'a>>),
}

#[derive(Serialize)]
#[serde(untagged)]
enum WireImageSource<'a> {
    Base64 {
        data: &'a str,
        media_type: &'a str,
        #[serde(rename = "type")]
        kind: &'static str,
    },
    Url {
        #[serde(rename = "type")]
        kind: &'static str,
        url: &'a str,
    },
}

#[derive(Serialize)]
struct WireTool<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    input_schema: WireSchema<'a>,
    name: Cow<'a, str>,
}

/// A tool's `input_schema`.
enum WireSchema<'a> {
    Given(&'a Value),
    /// `{"properties":{},"type":"object"}`: a function declared without parameters.
    NoParameters,
    /// `{"type":"object"}`: a `json_schema` format that carried no schema.
    AnyObject,
}

impl Serialize for WireSchema<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            WireSchema::Given(v) => v.serialize(serializer),
            WireSchema::NoParameters => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("properties", &EmptyObject)?;
                map.serialize_entry("type", "object")?;
                map.end()
            }
            WireSchema::AnyObject => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("type", "object")?;
                map.end()
            }
        }
    }
}

/// `{}`.
struct EmptyObject;

impl Serialize for EmptyObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_map(Some(0))?.end()
    }
}

#[derive(Serialize)]
struct WireToolChoice<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_parallel_tool_use: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<Cow<'a, str>>,
    #[serde(rename = "type")]
    kind: &'static str,
}

impl<'a> WireToolChoice<'a> {
    fn of(kind: &'static str) -> Self {
        WireToolChoice {
            disable_parallel_tool_use: None,
            name: None,
            kind,
        }
    }
}

fn encode_body(req: &ChatRequest, model: &str) -> Result<Bytes, TranslateError> {
    if let Some(n) = req.extra.get("n").and_then(Value::as_u64) {
        if n > 1 {
            return Err(TranslateError::new(
                "Anthropic returns one answer per request; 'n' must be 1.",
                Some("n"),
            ));
        }
    }
    let max_tokens = req.output_cap().unwrap_or_else(|| default_max_tokens(req));

    let (mut system, messages) = encode_messages(&req.messages)?;
    let mut tools = encode_tools(req)?;
    let mut tool_choice = encode_tool_choice(req, &tools);

    match &req.response_format {
        Some(ResponseFormat::JsonObject) => system.push(Cow::Borrowed(JSON_OBJECT_INSTRUCTION)),
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            let tool = json_schema_tool(json_schema);
            let client_tools = !tools.is_empty();
            let mode = tool_choice.as_ref().map(|c| c.kind);
            if !matches!(mode, Some("tool" | "any")) {
                tool_choice = Some(if client_tools && mode != Some("none") {
                    WireToolChoice::of("any")
                } else {
                    WireToolChoice {
                        name: Some(tool.name.clone()),
                        ..WireToolChoice::of("tool")
                    }
                });
            }
            tools.push(tool);
        }
        Some(ResponseFormat::Text) | None => {}
    }

    let system = match system.len() {
        0 => None,
        1 => system.pop(),
        _ => Some(Cow::Owned(system.join("\n\n"))),
    };
    if tools.is_empty() {
        tool_choice = None;
    }
    let stop_sequences = match &req.stop {
        Some(Stop::One(s)) => Some(std::slice::from_ref(s)),
        Some(Stop::Many(v)) if !v.is_empty() => Some(v.as_slice()),
        _ => None,
    };
    if let Some(t) = req.temperature {
        // OpenAI allows 0..=2, Anthropic 0..=1; halving would change every other value's meaning.
        if !(0.0..=1.0).contains(&t) {
            return Err(TranslateError::new(
                format!("Anthropic accepts a temperature between 0 and 1, not {t}."),
                Some("temperature"),
            ));
        }
    }
    let body = WireRequest {
        max_tokens,
        messages,
        metadata: req.user.as_deref().map(|user_id| WireMetadata { user_id }),
        model,
        stop_sequences,
        stream: req.is_stream().then_some(true),
        system,
        temperature: req.temperature,
        // Top-level extras that mean the same to Anthropic are passed through as sent.
        thinking: req.extra.get("thinking"),
        tool_choice,
        tools,
        top_k: req.extra.get("top_k"),
        top_p: req.top_p,
    };
    let mut out = Vec::with_capacity(body_capacity(req));
    serde_json::to_writer(&mut out, &body)
        .map_err(|e| TranslateError::new(format!("cannot encode the request: {e}"), None))?;
    Ok(Bytes::from(out))
}

/// A first guess at the encoded size, so the common body is written without regrowing.
fn body_capacity(req: &ChatRequest) -> usize {
    let text: usize = req
        .messages
        .iter()
        .map(|m| match &m.content {
            Some(Content::Text(t)) => t.len() + 48,
            _ => 128,
        })
        .sum();
    256 + text + text / 8
}

/// `max_tokens` when the client set no cap: [`DEFAULT_MAX_TOKENS`], or more when an extended
/// thinking budget (passed through in `thinking`) needs room, since the budget must be below it.
fn default_max_tokens(req: &ChatRequest) -> u64 {
    let budget = req
        .extra
        .get("thinking")
        .and_then(|t| t.get("budget_tokens"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    DEFAULT_MAX_TOKENS.saturating_add(budget)
}

/// The forced tool for a `json_schema` response format.
fn json_schema_tool(json_schema: &Value) -> WireTool<'_> {
    let schema_name = json_schema
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("response");
    let name = format!("{JSON_TOOL_PREFIX}{schema_name}");
    let name = truncate(&name, MAX_TOOL_NAME).to_owned();
    let input_schema = json_schema
        .get("schema")
        .map_or(WireSchema::AnyObject, WireSchema::Given);
    let description = json_schema
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("Give the final answer as the input of this tool.");
    WireTool {
        description: Some(description),
        input_schema,
        name: Cow::Owned(name),
    }
}

fn push_turn<'a>(turns: &mut Vec<WireTurn<'a>>, role: &'static str, blocks: Vec<WireBlockOut<'a>>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.content.extend(blocks),
        _ => turns.push(WireTurn {
            content: blocks,
            role,
        }),
    }
}

/// (system pieces, Anthropic messages).
#[allow(clippy::type_complexity)]
fn encode_messages(
    messages: &[Message],
) -> Result<(Vec<Cow<'_, str>>, Vec<WireTurn<'_>>), TranslateError> {
    let mut system = Vec::new();
    let mut turns: Vec<WireTurn<'_>> = Vec::with_capacity(messages.len());
    for (i, msg) in messages.iter().enumerate() {
        match msg.role {
            Role::System | Role::Developer => {
                let text = system_text(msg, i)?;
                if !text.is_empty() {
                    system.push(text);
                }
            }
            Role::User => {
                let blocks = content_blocks(msg.content.as_ref(), i, true)?;
                push_turn(&mut turns, "user", blocks);
            }
            Role::Assistant => {
                let mut blocks = content_blocks(msg.content.as_ref(), i, false)?;
                for (j, call) in msg.tool_calls.iter().flatten().enumerate() {
                    let input = tool_input(&call.function.arguments, "").map_err(|mut e| {
                        e.param = Some(format!("messages[{i}].tool_calls[{j}].function.arguments"));
                        e
                    })?;
                    blocks.push(WireBlockOut::ToolUse {
                        id: &call.id,
                        input,
                        name: &call.function.name,
                        kind: "tool_use",
                    });
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            Role::Tool => {
                let Some(id) = msg.tool_call_id.as_deref() else {
                    let param = format!("messages[{i}].tool_call_id");
                    return Err(TranslateError::new(
                        "A tool message needs the 'tool_call_id' of the call it answers.",
                        Some(&param),
                    ));
                };
                let content = match &msg.content {
                    Some(Content::Text(t)) if !t.is_empty() => Some(WireToolResultContent::Text(t)),
                    Some(Content::Parts(_)) => {
                        let inner = content_blocks(msg.content.as_ref(), i, true)?;
                        (!inner.is_empty()).then_some(WireToolResultContent::Blocks(inner))
                    }
                    _ => None,
                };
                let block = WireBlockOut::ToolResult {
                    content,
                    tool_use_id: id,
                    kind: "tool_result",
                };
                push_turn(&mut turns, "user", vec![block]);
            }
        }
    }
    Ok((system, turns))
}

fn system_text(msg: &Message, i: usize) -> Result<Cow<'_, str>, TranslateError> {
    match &msg.content {
        None => Ok(Cow::Borrowed("")),
        Some(Content::Text(t)) => Ok(Cow::Borrowed(t)),
        Some(Content::Parts(parts)) => {
            if let Some(j) = parts
                .iter()
                .position(|p| !matches!(p, ContentPart::Text { .. }))
            {
                let param = format!("messages[{i}].content[{j}]");
                return Err(TranslateError::new(
                    "Anthropic system prompts take text only.",
                    Some(&param),
                ));
            }
            Ok(Cow::Owned(msg.text_content()))
        }
    }
}

/// Content as Anthropic blocks; images only where `images` (user turns and tool results).
fn content_blocks(
    content: Option<&Content>,
    i: usize,
    images: bool,
) -> Result<Vec<WireBlockOut<'_>>, TranslateError> {
    let mut blocks = Vec::new();
    match content {
        None => {}
        Some(Content::Text(t)) if t.is_empty() => {}
        Some(Content::Text(t)) => blocks.push(WireBlockOut::text(t)),
        Some(Content::Parts(parts)) => {
            blocks.reserve(parts.len());
            for (j, part) in parts.iter().enumerate() {
                match part {
                    ContentPart::Text { text } => {
                        if !text.is_empty() {
                            blocks.push(WireBlockOut::text(text));
                        }
                    }
                    ContentPart::ImageUrl { image_url } if images => {
                        let source = if let Some((media, data)) = image_url.as_data() {
                            WireImageSource::Base64 {
                                data,
                                media_type: media,
                                kind: "base64",
                            }
                        } else if image_url.url.starts_with("https://")
                            || image_url.url.starts_with("http://")
                        {
                            WireImageSource::Url {
                                kind: "url",
                                url: &image_url.url,
                            }
                        } else {
                            let param = format!("messages[{i}].content[{j}].image_url.url");
                            return Err(TranslateError::new(
                                "Images must be an http(s) URL or a base64 data: URL.",
                                Some(&param),
                            ));
                        };
                        blocks.push(WireBlockOut::Image {
                            source,
                            kind: "image",
                        });
                    }
                    ContentPart::Other(v)
                        if images && v.get("type").and_then(Value::as_str) == Some("document") =>
                    {
                        // An Anthropic-native block kept by the Anthropic front door.
                        blocks.push(WireBlockOut::Native(v));
                    }
                    _ => {
                        let param = format!("messages[{i}].content[{j}]");
                        return Err(TranslateError::new(
                            "This content part cannot be sent to Anthropic in this message.",
                            Some(&param),
                        ));
                    }
                }
            }
        }
    }
    Ok(blocks)
}

/// Tool-call arguments (JSON text) as a `tool_use` input object.
fn tool_input(arguments: &str, param: &str) -> Result<Value, TranslateError> {
    if arguments.trim().is_empty() {
        return Ok(Value::Object(Map::new()));
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(TranslateError::new(
            "Tool call arguments must be a JSON object for Anthropic.",
            Some(param),
        )),
        Err(e) => Err(TranslateError::new(
            format!("Tool call arguments are not valid JSON: {e}"),
            Some(param),
        )),
    }
}

fn encode_tools(req: &ChatRequest) -> Result<Vec<WireTool<'_>>, TranslateError> {
    let Some(client_tools) = &req.tools else {
        return Ok(Vec::new());
    };
    let mut tools = Vec::with_capacity(client_tools.len() + 1);
    for (i, tool) in client_tools.iter().enumerate() {
        if tool.kind != "function" {
            let param = format!("tools[{i}].type");
            return Err(TranslateError::new(
                format!("Tool type '{}' is not supported by Anthropic.", tool.kind),
                Some(&param),
            ));
        }
        let f = &tool.function;
        tools.push(WireTool {
            description: f.description.as_deref(),
            input_schema: f
                .parameters
                .as_ref()
                .map_or(WireSchema::NoParameters, WireSchema::Given),
            name: Cow::Borrowed(&f.name),
        });
    }
    Ok(tools)
}

fn encode_tool_choice<'a>(
    req: &'a ChatRequest,
    tools: &[WireTool<'_>],
) -> Option<WireToolChoice<'a>> {
    if tools.is_empty() {
        return None;
    }
    let no_parallel = req.parallel_tool_calls == Some(false);
    let mut choice = match &req.tool_choice {
        None if no_parallel => WireToolChoice::of("auto"),
        None => return None,
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "none" => return Some(WireToolChoice::of("none")),
            "required" => WireToolChoice::of("any"),
            _ => WireToolChoice::of("auto"),
        },
        Some(ToolChoice::Named(named)) => WireToolChoice {
            name: Some(Cow::Borrowed(&named.function.name)),
            ..WireToolChoice::of("tool")
        },
    };
    if no_parallel {
        choice.disable_parallel_tool_use = Some(true);
    }
    Some(choice)
}

// === wire types ===

#[derive(Deserialize)]
struct WireMessage<'a> {
    #[serde(default)]
    id: String,
    #[serde(default, borrow)]
    content: Vec<WireBlock<'a>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: WireUsage,
}

/// A content block of a response or of `content_block_start`. Read by hand in one pass
/// (`type` may come in any position): a serde internally tagged enum would first buffer every
/// block into an intermediate tree. Text borrows from the body when it has no escapes.
enum WireBlock<'a> {
    Text {
        text: Cow<'a, str>,
    },
    Thinking {
        thinking: Cow<'a, str>,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Other,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum WireBlockType {
    Text,
    Thinking,
    ToolUse,
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum WireBlockKey {
    Type,
    Text,
    Thinking,
    Id,
    Name,
    Input,
    #[serde(other)]
    Other,
}

/// A field that must be a string for some block types and is ignored for the rest, so its
/// value is read before the type may be known.
enum LenientStr<'a> {
    Str(Cow<'a, str>),
    NotStr,
}

impl<'de: 'a, 'a> Deserialize<'de> for LenientStr<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(LenientStrVisitor(PhantomData))
    }
}

struct LenientStrVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for LenientStrVisitor<'a> {
    type Value = LenientStr<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(LenientStr::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(LenientStr::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(LenientStr::Str(Cow::Owned(v)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(LenientStr::NotStr)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(LenientStr::NotStr)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(LenientStr::NotStr)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(LenientStr::NotStr)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(LenientStr::NotStr)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(LenientStr::NotStr)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(LenientStr::NotStr)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(LenientStr::NotStr)
    }
}

/// One string field of a block as read: absent, once, or more than once.
struct Slot<'a> {
    value: Option<LenientStr<'a>>,
    repeated: bool,
}

impl<'a> Slot<'a> {
    const EMPTY: Slot<'a> = Slot {
        value: None,
        repeated: false,
    };

    fn set(&mut self, value: LenientStr<'a>) {
        self.repeated |= self.value.is_some();
        self.value = Some(value);
    }

    /// The field for a block type that needs it: a string, `""` when absent.
    fn take<E: de::Error>(self, field: &'static str) -> Result<Cow<'a, str>, E> {
        if self.repeated {
            return Err(E::duplicate_field(field));
        }
        match self.value {
            None => Ok(Cow::Borrowed("")),
            Some(LenientStr::Str(s)) => Ok(s),
            Some(LenientStr::NotStr) => Err(E::invalid_type(
                de::Unexpected::Other("a non-string value"),
                &"a string",
            )),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for WireBlock<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(WireBlockVisitor(PhantomData))
    }
}

struct WireBlockVisitor<'a>(PhantomData<&'a ()>);

impl<'de: 'a, 'a> Visitor<'de> for WireBlockVisitor<'a> {
    type Value = WireBlock<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an Anthropic content block")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kind = None;
        let (mut text, mut thinking, mut id, mut name) =
            (Slot::EMPTY, Slot::EMPTY, Slot::EMPTY, Slot::EMPTY);
        let mut input: Option<Value> = None;
        let mut input_repeated = false;
        while let Some(key) = map.next_key::<WireBlockKey>()? {
            match key {
                WireBlockKey::Type => {
                    if kind.is_some() {
                        return Err(de::Error::duplicate_field("type"));
                    }
                    kind = Some(map.next_value::<WireBlockType>()?);
                }
                WireBlockKey::Text => text.set(map.next_value()?),
                WireBlockKey::Thinking => thinking.set(map.next_value()?),
                WireBlockKey::Id => id.set(map.next_value()?),
                WireBlockKey::Name => name.set(map.next_value()?),
                WireBlockKey::Input => {
                    input_repeated |= input.is_some();
                    input = Some(map.next_value()?);
                }
                WireBlockKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match kind {
            None => Err(de::Error::missing_field("type")),
            Some(WireBlockType::Text) => Ok(WireBlock::Text {
                text: text.take("text")?,
            }),
            Some(WireBlockType::Thinking) => Ok(WireBlock::Thinking {
                thinking: thinking.take("thinking")?,
            }),
            Some(WireBlockType::ToolUse) => {
                if input_repeated {
                    return Err(de::Error::duplicate_field("input"));
                }
                Ok(WireBlock::ToolUse {
                    id: id.take("id")?.into_owned(),
                    name: name.take("name")?.into_owned(),
                    input: input.unwrap_or(Value::Null),
                })
            }
            Some(WireBlockType::Other) => Ok(WireBlock::Other),
        }
    }
}

/// Anthropic usage counters as they appear on the wire (also read by the front door's
/// native pass-through accounting).
#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub(crate) struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct WireErrorBody {
    error: WireError,
}

#[derive(Deserialize)]
struct WireError {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireEvent<'a> {
    MessageStart {
        message: WireStart,
    },
    ContentBlockStart {
        index: u32,
        #[serde(borrow)]
        content_block: WireBlock<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: WireDelta,
    },
    ContentBlockStop {},
    MessageDelta {
        #[serde(default)]
        delta: WireMessageDelta,
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    MessageStop {},
    Error {
        error: WireError,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct WireStart {
    #[serde(default)]
    id: String,
    #[serde(default)]
    usage: WireUsage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireDelta {
    TextDelta {
        #[serde(default)]
        text: String,
    },
    InputJsonDelta {
        #[serde(default)]
        partial_json: String,
    },
    ThinkingDelta {
        #[serde(default)]
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct WireMessageDelta {
    #[serde(default)]
    stop_reason: Option<String>,
}

// === impl WireUsage ===

impl WireUsage {
    /// Later values (message_delta) override earlier ones (message_start) where present.
    pub(crate) fn merge(&mut self, later: WireUsage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
    }

    pub(crate) fn to_chat(self) -> ChatUsage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let prompt = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(cached)
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0));
        ChatUsage::new(prompt, self.output_tokens.unwrap_or(0), cached)
    }
}

// === response ===

/// Maps an Anthropic `stop_reason` to the canonical finish reason.
pub fn finish_reason(stop_reason: &str) -> FinishReason {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        _ => FinishReason::Stop,
    }
}

fn response_from_wire(wire: WireMessage<'_>, model: &str) -> ChatResponse {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in wire.content {
        match block {
            WireBlock::Text { text: t } => append(&mut text, t),
            WireBlock::Thinking { thinking } => append(&mut reasoning, thinking),
            WireBlock::ToolUse { id, name, input } => {
                let arguments = compact_json(&input);
                if name.starts_with(JSON_TOOL_PREFIX) {
                    text.push_str(&arguments);
                } else {
                    calls.push(ToolCall {
                        id,
                        kind: "function".to_owned(),
                        function: FunctionCall { name, arguments },
                    });
                }
            }
            WireBlock::Other => {}
        }
    }
    let mut finish = wire.stop_reason.as_deref().map(finish_reason);
    if finish == Some(FinishReason::ToolCalls) && calls.is_empty() {
        // Only the json_schema tool was called: to the client that is a plain answer.
        finish = Some(FinishReason::Stop);
    }
    let mut message = Message::text(Role::Assistant, text);
    if !calls.is_empty() {
        if matches!(&message.content, Some(Content::Text(t)) if t.is_empty()) {
            message.content = None;
        }
        message.tool_calls = Some(calls);
    }
    if !reasoning.is_empty() {
        message.reasoning_content = Some(reasoning);
    }
    ChatResponse {
        id: wire.id,
        object: "chat.completion".to_owned(),
        created: 0,
        model: model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: finish,
        }],
        usage: Some(wire.usage.to_chat()),
    }
}

/// Appends a block's text, taking it whole (one allocation at most) when it is the first.
fn append(acc: &mut String, piece: Cow<'_, str>) {
    if acc.is_empty() {
        *acc = piece.into_owned();
    } else {
        acc.push_str(&piece);
    }
}

fn compact_json(v: &Value) -> String {
    match v {
        Value::Null => "{}".to_owned(),
        other => other.to_string(),
    }
}

// === stream ===

/// What an open content block turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Text,
    Thinking,
    /// A tool call with this canonical index.
    Tool(u32),
    /// The json_schema tool: its input is the answer text.
    JsonAnswer,
    Ignored,
}

/// Decodes an Anthropic Messages SSE stream into canonical chunks (see the module doc).
#[derive(Debug)]
pub struct AnthropicStreamDecoder {
    sse: SseDecoder,
    buf: BytesMut,
    model: String,
    id: String,
    started: bool,
    blocks: Vec<(u32, BlockKind)>,
    tool_calls: u32,
    usage: WireUsage,
    finish_sent: bool,
    usage_sent: bool,
    stopped: bool,
}

// === impl AnthropicStreamDecoder ===

impl AnthropicStreamDecoder {
    /// A decoder whose chunks carry `model`.
    pub fn new(model: &str) -> Self {
        AnthropicStreamDecoder {
            sse: SseDecoder::new(MAX_FRAME_BYTES),
            buf: BytesMut::new(),
            model: model.to_owned(),
            id: String::new(),
            started: false,
            blocks: Vec::new(),
            tool_calls: 0,
            usage: WireUsage::default(),
            finish_sent: false,
            usage_sent: false,
            stopped: false,
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        ChatChunk::delta(&self.id, &self.model, 0, delta, finish)
    }

    fn kind_of(&self, index: u32) -> BlockKind {
        self.blocks
            .iter()
            .rev()
            .find(|(i, _)| *i == index)
            .map_or(BlockKind::Ignored, |(_, k)| *k)
    }

    fn ensure_started(&mut self, out: &mut Vec<ChatChunk>) {
        if !self.started {
            self.started = true;
            out.push(self.chunk(
                Delta {
                    role: Some(Role::Assistant),
                    content: Some(String::new()),
                    ..Delta::default()
                },
                None,
            ));
        }
    }

    fn push_usage(&mut self, out: &mut Vec<ChatChunk>) {
        if !self.usage_sent {
            self.usage_sent = true;
            out.push(ChatChunk::usage(
                &self.id,
                &self.model,
                0,
                self.usage.to_chat(),
            ));
        }
    }

    fn on_event(&mut self, data: &str, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        let event: WireEvent = serde_json::from_str(data).map_err(|e| {
            ProviderError::bad_response(format!("unreadable Anthropic stream event: {e}"))
        })?;
        match event {
            WireEvent::MessageStart { message } => {
                self.id = message.id;
                self.usage.merge(message.usage);
                self.ensure_started(out);
            }
            WireEvent::ContentBlockStart {
                index,
                content_block,
            } => {
                self.ensure_started(out);
                let kind = match content_block {
                    WireBlock::Text { text } => {
                        if !text.is_empty() {
                            out.push(self.chunk(
                                Delta {
                                    content: Some(text.into_owned()),
                                    ..Delta::default()
                                },
                                None,
                            ));
                        }
                        BlockKind::Text
                    }
                    WireBlock::Thinking { thinking } => {
                        if !thinking.is_empty() {
                            out.push(self.chunk(
                                Delta {
                                    reasoning_content: Some(thinking.into_owned()),
                                    ..Delta::default()
                                },
                                None,
                            ));
                        }
                        BlockKind::Thinking
                    }
                    WireBlock::ToolUse { name, .. } if name.starts_with(JSON_TOOL_PREFIX) => {
                        BlockKind::JsonAnswer
                    }
                    WireBlock::ToolUse { id, name, .. } => {
                        let call = self.tool_calls;
                        self.tool_calls += 1;
                        out.push(self.chunk(
                            Delta {
                                tool_calls: Some(vec![ToolCallDelta {
                                    index: call,
                                    id: Some(id),
                                    kind: Some("function".to_owned()),
                                    function: FunctionCallDelta {
                                        name: Some(name),
                                        arguments: Some(String::new()),
                                    },
                                }]),
                                ..Delta::default()
                            },
                            None,
                        ));
                        BlockKind::Tool(call)
                    }
                    WireBlock::Other => BlockKind::Ignored,
                };
                self.blocks.push((index, kind));
            }
            WireEvent::ContentBlockDelta { index, delta } => {
                let kind = self.kind_of(index);
                let delta = match (delta, kind) {
                    (WireDelta::TextDelta { text }, _) if !text.is_empty() => Delta {
                        content: Some(text),
                        ..Delta::default()
                    },
                    (WireDelta::ThinkingDelta { thinking }, _) if !thinking.is_empty() => Delta {
                        reasoning_content: Some(thinking),
                        ..Delta::default()
                    },
                    (WireDelta::InputJsonDelta { partial_json }, BlockKind::Tool(call))
                        if !partial_json.is_empty() =>
                    {
                        Delta {
                            tool_calls: Some(vec![ToolCallDelta {
                                index: call,
                                function: FunctionCallDelta {
                                    name: None,
                                    arguments: Some(partial_json),
                                },
                                ..ToolCallDelta::default()
                            }]),
                            ..Delta::default()
                        }
                    }
                    (WireDelta::InputJsonDelta { partial_json }, BlockKind::JsonAnswer)
                        if !partial_json.is_empty() =>
                    {
                        Delta {
                            content: Some(partial_json),
                            ..Delta::default()
                        }
                    }
                    _ => return Ok(()),
                };
                out.push(self.chunk(delta, None));
            }
            WireEvent::ContentBlockStop {} => {}
            WireEvent::MessageDelta { delta, usage } => {
                if let Some(usage) = usage {
                    self.usage.merge(usage);
                }
                if let Some(reason) = delta.stop_reason {
                    self.ensure_started(out);
                    let mut finish = finish_reason(&reason);
                    if finish == FinishReason::ToolCalls && self.tool_calls == 0 {
                        finish = FinishReason::Stop;
                    }
                    if !self.finish_sent {
                        self.finish_sent = true;
                        out.push(self.chunk(Delta::default(), Some(finish)));
                    }
                }
            }
            WireEvent::MessageStop {} => {
                self.stopped = true;
                self.push_usage(out);
            }
            WireEvent::Error { error } => {
                let status = status_for_error_type(&error.kind);
                let kind = kind_for_error_type(&error.kind, &error.message, status);
                return Err(ProviderError::new(kind, status, error.message));
            }
            WireEvent::Other => {}
        }
        Ok(())
    }
}

impl StreamDecoder for AnthropicStreamDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        self.buf.extend_from_slice(bytes);
        loop {
            let frame = self
                .sse
                .decode(&mut self.buf)
                .map_err(|e| ProviderError::bad_response(format!("Anthropic stream: {e}")))?;
            let Some(frame) = frame else { return Ok(()) };
            if let Some(data) = frame.data.as_deref() {
                if !data.trim().is_empty() {
                    self.on_event(data, out)?;
                }
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<bool, ProviderError> {
        loop {
            let frame = self
                .sse
                .decode_final(&mut self.buf)
                .map_err(|e| ProviderError::bad_response(format!("Anthropic stream: {e}")))?;
            let Some(frame) = frame else { break };
            if let Some(data) = frame.data.as_deref() {
                if !data.trim().is_empty() {
                    self.on_event(data, out)?;
                }
            }
        }
        self.sse.finish(&mut self.buf);
        if self.started {
            // A cut stream still reports what it knows, so the engine can settle usage.
            self.push_usage(out);
        }
        Ok(self.stopped)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_types_classify() {
        let a = AnthropicAdapter;
        let e = a.map_error(
            429,
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#,
        );
        assert_eq!(
            (e.kind, e.status, e.message.as_str()),
            (ErrorKind::RateLimited, 429, "slow down")
        );
        let e = a.map_error(
            400,
            br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#,
        );
        assert_eq!(e.kind, ErrorKind::ContextLength);
        let e = a.map_error(502, b"<html>bad gateway</html>");
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(e.message.contains("bad gateway"));
    }

    #[test]
    fn tool_input_rejects_non_objects() {
        assert_eq!(tool_input("", "p").unwrap(), json!({}));
        assert_eq!(tool_input(r#"{"a":1}"#, "p").unwrap(), json!({"a":1}));
        assert_eq!(
            tool_input("[1]", "p").unwrap_err().param.as_deref(),
            Some("p")
        );
        assert_eq!(
            tool_input("{", "p").unwrap_err().param.as_deref(),
            Some("p")
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
