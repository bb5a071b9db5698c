//! Amazon Bedrock Runtime adapter (Converse and ConverseStream): translates the canonical chat
//! model to Converse JSON, signs the call with SigV4 (`sigv4`), and reads the JSON answer or the
//! `application/vnd.amazon.eventstream` stream (`eventstream`) back into OpenAI shapes.
//!
//! Pure conversion: no I/O and no clock (the engine passes the signing time in
//! `Target::now_unix`), so `created` is 0 on everything decoded here, as the decoders get no
//! time. Response ids are derived from the upstream bytes (Converse returns no id of its own).
//!
//! Choices made where the canonical model and Converse disagree:
//! - `response_format` `json_object`/`json_schema` are refused (`TranslateError`): Converse has
//!   no JSON mode, and the forced-tool trick cannot be undone on the way back because decoders
//!   are not told what the request asked for.
//! - `tool_choice: "none"` has no Converse equivalent: the tools are left out, unless the
//!   conversation already holds tool calls or results (Bedrock then requires a `toolConfig`), in
//!   which case the tools are sent without a `toolChoice`.
//! - A conversation with tool calls but no `tools` gets placeholder tool specs named after the
//!   calls, for the same reason.
//! - Tool results are sent as `[{text}]` blocks, byte for byte as the client sent them (JSON
//!   blocks are not accepted by every Bedrock model).
//! - Images must be `data:` URLs (Converse takes bytes, not URLs); other URLs are refused.
//! - `parallel_tool_calls`, `seed`, penalties, `logprobs` and `user` have no Converse field and
//!   are not sent; `n` other than 1 is refused.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use super::eventstream::{EventStreamDecoder, Message as Frame};
use super::sigv4::{self, Credentials, SignableRequest};
use super::{
    kind_for_status, looks_like_context_length, Adapter, ErrorKind, ProviderError, StreamDecoder,
    Target, TranslateError, UpstreamRequest,
};
use crate::chat::{
    ChatChunk, ChatRequest, ChatResponse, ChatUsage, Choice, Content, ContentPart, Delta,
    FinishReason, FunctionCall, FunctionCallDelta, Message, ResponseFormat, Role, ToolCall,
    ToolCallDelta, ToolChoice,
};

/// SigV4 service name Bedrock Runtime is signed for.
pub const SIGNING_SERVICE: &str = "bedrock";

/// Content type of a ConverseStream response body.
pub const CONTENT_TYPE_EVENTSTREAM: &str = "application/vnd.amazon.eventstream";

/// Bound on one event stream message of a ConverseStream body.
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// The Bedrock Runtime (Converse) adapter.
#[derive(Debug, Clone, Copy, Default)]
pub struct BedrockAdapter;

impl BedrockAdapter {
    /// The adapter (it holds no state).
    pub const fn new() -> Self {
        BedrockAdapter
    }
}

// === impl Adapter ===

impl Adapter for BedrockAdapter {
    fn name(&self) -> &'static str {
        "bedrock"
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, TranslateError> {
        let aws = target.aws.as_ref().ok_or_else(|| {
            TranslateError::new(
                "this Bedrock deployment has no AWS credentials to sign requests with",
                None,
            )
        })?;
        let body = encode_body(req)?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| TranslateError::new(format!("cannot encode request: {e}"), None))?;
        let model = if target.model.is_empty() {
            req.model.as_str()
        } else {
            target.model
        };
        let stream = req.is_stream();
        let path = request_path(target.base_path, model, stream);
        let signable = SignableRequest {
            method: "POST",
            path: &path,
            query: &[],
            headers: &[
                ("host", target.authority),
                ("content-type", "application/json"),
            ],
            payload: &body,
            content_sha256_header: false,
        };
        let creds = Credentials {
            access_key_id: aws.access_key_id,
            secret_access_key: aws.secret_access_key,
            session_token: aws.session_token,
        };
        let signed = sigv4::sign(
            &signable,
            &creds,
            aws.region,
            SIGNING_SERVICE,
            target.now_unix,
        );
        let accept = if stream {
            CONTENT_TYPE_EVENTSTREAM
        } else {
            "application/json"
        };
        let mut headers = vec![
            ("host", target.authority.to_owned()),
            ("content-type", "application/json".to_owned()),
            ("accept", accept.to_owned()),
        ];
        headers.extend(signed.into_pairs());
        Ok(UpstreamRequest {
            method: "POST",
            path,
            headers,
            body: body.into(),
        })
    }

    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, ProviderError> {
        decode_response(body, model)
    }

    fn stream_decoder(&self, model: &str) -> Box<dyn StreamDecoder> {
        Box::new(BedrockStreamDecoder::new(model))
    }

    fn map_error(&self, status: u16, body: &[u8]) -> ProviderError {
        map_error(status, body)
    }
}

// === request ===

/// `{base_path}/model/{model id, percent-encoded}/converse` (or `/converse-stream`).
pub fn request_path(base_path: &str, model: &str, stream: bool) -> String {
    let action = if stream {
        "converse-stream"
    } else {
        "converse"
    };
    format!(
        "{}/model/{}/{action}",
        base_path.trim_end_matches('/'),
        sigv4::uri_encode(model)
    )
}

/// The Converse request body for `req` (the model goes in the path, not the body).
pub fn encode_body(req: &ChatRequest) -> Result<Value, TranslateError> {
    if let Some(n) = req.extra.get("n") {
        if !(n.is_null() || n.as_u64() == Some(1)) {
            return Err(TranslateError::new(
                "Bedrock returns a single choice; `n` must be 1",
                Some("n"),
            ));
        }
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(_) => {
            return Err(TranslateError::new(
                "Bedrock Converse has no JSON output mode; `response_format` json_object and \
                 json_schema are not supported for this model",
                Some("response_format"),
            ))
        }
    }

    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut tool_names_used: Vec<String> = Vec::new();
    let mut has_tool_blocks = false;
    for (i, m) in req.messages.iter().enumerate() {
        match m.role {
            Role::System | Role::Developer => {
                system_blocks(m, i, &mut system)?;
            }
            Role::User => push_turn(&mut turns, "user", user_blocks(m, i)?),
            Role::Assistant => {
                let blocks = assistant_blocks(m, i)?;
                if let Some(calls) = &m.tool_calls {
                    has_tool_blocks |= !calls.is_empty();
                    for call in calls {
                        if !tool_names_used.contains(&call.function.name) {
                            tool_names_used.push(call.function.name.clone());
                        }
                    }
                }
                push_turn(&mut turns, "assistant", blocks);
            }
            Role::Tool => {
                has_tool_blocks = true;
                push_turn(&mut turns, "user", vec![tool_result_block(m, i)?]);
            }
        }
    }

    let mut body = Map::new();
    body.insert(
        "messages".into(),
        Value::Array(
            turns
                .into_iter()
                .map(|(role, content)| json!({ "role": role, "content": content }))
                .collect(),
        ),
    );
    if !system.is_empty() {
        body.insert("system".into(), Value::Array(system));
    }
    let inference = inference_config(req);
    if !inference.is_empty() {
        body.insert("inferenceConfig".into(), Value::Object(inference));
    }
    if let Some(tool_config) = tool_config(req, has_tool_blocks, &tool_names_used)? {
        body.insert("toolConfig".into(), tool_config);
    }
    Ok(Value::Object(body))
}

/// Appends `blocks` as a turn of `role`, merged into the previous turn when it has the same role
/// (Converse requires alternating turns).
fn push_turn(turns: &mut Vec<(&'static str, Vec<Value>)>, role: &'static str, blocks: Vec<Value>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some((last, content)) if *last == role => content.extend(blocks),
        _ => turns.push((role, blocks)),
    }
}

fn param(i: usize, rest: &str) -> String {
    format!("messages[{i}]{rest}")
}

fn unsupported_part(i: usize, j: usize, part: &Value) -> TranslateError {
    let kind = part
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("unknown");
    TranslateError::new(
        format!("content part type `{kind}` is not supported by Bedrock"),
        Some(&param(i, &format!(".content[{j}]"))),
    )
}

fn system_blocks(m: &Message, i: usize, out: &mut Vec<Value>) -> Result<(), TranslateError> {
    match &m.content {
        None => {}
        Some(Content::Text(text)) => out.push(json!({ "text": text })),
        Some(Content::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                match part {
                    ContentPart::Text { text } => out.push(json!({ "text": text })),
                    ContentPart::ImageUrl { .. } => {
                        return Err(TranslateError::new(
                            "Bedrock system prompts take text only",
                            Some(&param(i, &format!(".content[{j}]"))),
                        ))
                    }
                    ContentPart::Other(v) => return Err(unsupported_part(i, j, v)),
                }
            }
        }
    }
    Ok(())
}

fn user_blocks(m: &Message, i: usize) -> Result<Vec<Value>, TranslateError> {
    match &m.content {
        None => Ok(Vec::new()),
        Some(Content::Text(text)) => Ok(vec![json!({ "text": text })]),
        Some(Content::Parts(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, part)| match part {
                ContentPart::Text { text } => Ok(json!({ "text": text })),
                ContentPart::ImageUrl { image_url } => {
                    let at = param(i, &format!(".content[{j}].image_url"));
                    let Some((media, data)) = image_url.as_data() else {
                        return Err(TranslateError::new(
                            "Bedrock needs image bytes: send the image as a base64 `data:` URL",
                            Some(&at),
                        ));
                    };
                    let format = image_format(media).ok_or_else(|| {
                        TranslateError::new(
                            format!(
                                "image type `{media}` is not supported by Bedrock \
                                 (png, jpeg, gif, webp)"
                            ),
                            Some(&at),
                        )
                    })?;
                    Ok(json!({
                        "image": { "format": format, "source": { "bytes": data } }
                    }))
                }
                ContentPart::Other(v) => Err(unsupported_part(i, j, v)),
            })
            .collect(),
    }
}

/// The Converse image `format` for a media type.
pub fn image_format(media_type: &str) -> Option<&'static str> {
    match media_type.to_ascii_lowercase().as_str() {
        "image/png" => Some("png"),
        "image/jpeg" | "image/jpg" => Some("jpeg"),
        "image/gif" => Some("gif"),
        "image/webp" => Some("webp"),
        _ => None,
    }
}

fn assistant_blocks(m: &Message, i: usize) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    match &m.content {
        None => {}
        // Bedrock rejects blank text blocks; an assistant turn that only calls tools often
        // carries `""`.
        Some(Content::Text(text)) if text.is_empty() => {}
        Some(Content::Text(text)) => blocks.push(json!({ "text": text })),
        Some(Content::Parts(parts)) => {
            for (j, part) in parts.iter().enumerate() {
                match part {
                    ContentPart::Text { text } if text.is_empty() => {}
                    ContentPart::Text { text } => blocks.push(json!({ "text": text })),
                    ContentPart::ImageUrl { .. } => {
                        return Err(TranslateError::new(
                            "assistant turns cannot carry images",
                            Some(&param(i, &format!(".content[{j}]"))),
                        ))
                    }
                    ContentPart::Other(v) => return Err(unsupported_part(i, j, v)),
                }
            }
        }
    }
    for (j, call) in m.tool_calls.iter().flatten().enumerate() {
        let args = call.function.arguments.trim();
        let input: Value = if args.is_empty() {
            json!({})
        } else {
            serde_json::from_str(args).map_err(|_| {
                TranslateError::new(
                    "tool call arguments must be a JSON text",
                    Some(&param(i, &format!(".tool_calls[{j}].function.arguments"))),
                )
            })?
        };
        blocks.push(json!({
            "toolUse": {
                "toolUseId": call.id,
                "name": call.function.name,
                "input": input,
            }
        }));
    }
    Ok(blocks)
}

fn tool_result_block(m: &Message, i: usize) -> Result<Value, TranslateError> {
    let id = m.tool_call_id.as_deref().ok_or_else(|| {
        TranslateError::new(
            "a tool message needs the `tool_call_id` it answers",
            Some(&param(i, ".tool_call_id")),
        )
    })?;
    if let Some(Content::Parts(parts)) = &m.content {
        if let Some((j, ContentPart::ImageUrl { .. } | ContentPart::Other(_))) = parts
            .iter()
            .enumerate()
            .find(|(_, p)| !matches!(p, ContentPart::Text { .. }))
        {
            return Err(TranslateError::new(
                "tool results are sent to Bedrock as text only",
                Some(&param(i, &format!(".content[{j}]"))),
            ));
        }
    }
    Ok(json!({
        "toolResult": {
            "toolUseId": id,
            "content": [{ "text": m.text_content() }],
        }
    }))
}

fn inference_config(req: &ChatRequest) -> Map<String, Value> {
    let mut config = Map::new();
    if let Some(max) = req.output_cap() {
        config.insert("maxTokens".into(), json!(max));
    }
    if let Some(t) = req.temperature {
        config.insert("temperature".into(), json!(t));
    }
    if let Some(p) = req.top_p {
        config.insert("topP".into(), json!(p));
    }
    if let Some(stop) = &req.stop {
        let stops = stop.to_vec();
        if !stops.is_empty() {
            config.insert("stopSequences".into(), json!(stops));
        }
    }
    config
}

fn tool_config(
    req: &ChatRequest,
    has_tool_blocks: bool,
    tool_names_used: &[String],
) -> Result<Option<Value>, TranslateError> {
    let mut tools = Vec::new();
    for (k, tool) in req.tools.iter().flatten().enumerate() {
        if tool.kind != "function" {
            return Err(TranslateError::new(
                format!("tool type `{}` is not supported by Bedrock", tool.kind),
                Some(&format!("tools[{k}].type")),
            ));
        }
        let f = &tool.function;
        let mut spec = Map::new();
        spec.insert("name".into(), json!(f.name));
        if let Some(d) = &f.description {
            spec.insert("description".into(), json!(d));
        }
        let schema = f
            .parameters
            .clone()
            .unwrap_or_else(|| json!({ "type": "object", "properties": {} }));
        spec.insert("inputSchema".into(), json!({ "json": schema }));
        tools.push(json!({ "toolSpec": spec }));
    }

    let choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "auto" => Some(json!({ "auto": {} })),
            "required" => Some(json!({ "any": {} })),
            "none" => {
                if !has_tool_blocks {
                    return Ok(None);
                }
                None
            }
            other => {
                return Err(TranslateError::new(
                    format!("unknown tool_choice `{other}`"),
                    Some("tool_choice"),
                ))
            }
        },
        Some(ToolChoice::Named(named)) => Some(json!({ "tool": { "name": named.function.name } })),
    };

    if tools.is_empty() {
        if !has_tool_blocks {
            return Ok(None);
        }
        // Bedrock refuses toolUse/toolResult blocks without a toolConfig.
        tools = tool_names_used
            .iter()
            .map(|name| {
                json!({ "toolSpec": {
                    "name": name,
                    "inputSchema": { "json": { "type": "object", "properties": {} } }
                } })
            })
            .collect();
        if tools.is_empty() {
            return Ok(None);
        }
        return Ok(Some(json!({ "tools": tools })));
    }
    let mut config = Map::new();
    config.insert("tools".into(), Value::Array(tools));
    if let Some(choice) = choice {
        config.insert("toolChoice".into(), choice);
    }
    Ok(Some(Value::Object(config)))
}

// === wire types (responses) ===

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ConverseResponse {
    output: Option<ConverseOutput>,
    stop_reason: Option<String>,
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct ConverseOutput {
    message: Option<WireMessage>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Vec<WireBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireBlock {
    text: Option<String>,
    tool_use: Option<WireToolUse>,
    reasoning_content: Option<WireReasoning>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireToolUse {
    tool_use_id: String,
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireReasoning {
    reasoning_text: Option<WireReasoningText>,
}

#[derive(Deserialize)]
struct WireReasoningText {
    #[serde(default)]
    text: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

impl WireUsage {
    /// Bedrock counts cache reads and writes apart from `inputTokens`; OpenAI's prompt tokens
    /// include cached ones.
    fn to_chat(&self) -> ChatUsage {
        ChatUsage::new(
            self.input_tokens + self.cache_read_input_tokens + self.cache_write_input_tokens,
            self.output_tokens,
            self.cache_read_input_tokens,
        )
    }
}

// === responses ===

/// The OpenAI finish reason for a Converse `stopReason`.
pub fn map_stop_reason(reason: &str) -> FinishReason {
    match reason {
        "tool_use" => FinishReason::ToolCalls,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "content_filtered" | "guardrail_intervened" => FinishReason::ContentFilter,
        // end_turn, stop_sequence and anything newer.
        _ => FinishReason::Stop,
    }
}

/// `chatcmpl-` and 24 hex digits of the SHA-256 of `seed` (Converse answers carry no id).
fn response_id(seed: &[u8]) -> String {
    let digest = Sha256::digest(seed);
    let mut id = String::with_capacity(9 + 24);
    id.push_str("chatcmpl-");
    for b in &digest[..12] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

fn decode_response(body: &[u8], model: &str) -> Result<ChatResponse, ProviderError> {
    let resp: ConverseResponse = serde_json::from_slice(body)
        .map_err(|e| ProviderError::bad_response(format!("Bedrock response is not valid: {e}")))?;
    let message = resp
        .output
        .and_then(|o| o.message)
        .ok_or_else(|| ProviderError::bad_response("Bedrock response has no output message"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in message.content {
        if let Some(t) = block.text {
            text.push_str(&t);
        }
        if let Some(r) = block.reasoning_content.and_then(|r| r.reasoning_text) {
            reasoning.push_str(&r.text);
        }
        if let Some(tool) = block.tool_use {
            calls.push(ToolCall {
                id: tool.tool_use_id,
                kind: "function".into(),
                function: FunctionCall {
                    name: tool.name,
                    arguments: if tool.input.is_null() {
                        "{}".into()
                    } else {
                        tool.input.to_string()
                    },
                },
            });
        }
    }
    let mut out = Message::text(Role::Assistant, text);
    if !calls.is_empty() {
        if out.text_content().is_empty() {
            out.content = None;
        }
        out.tool_calls = Some(calls);
    }
    if !reasoning.is_empty() {
        out.reasoning_content = Some(reasoning);
    }
    Ok(ChatResponse {
        id: response_id(body),
        object: "chat.completion".into(),
        created: 0,
        model: model.to_owned(),
        choices: vec![Choice {
            index: 0,
            message: out,
            finish_reason: Some(map_stop_reason(resp.stop_reason.as_deref().unwrap_or(""))),
        }],
        usage: resp.usage.map(|u| u.to_chat()),
    })
}

// === errors ===

/// The provider error for a Bedrock exception name (`ThrottlingException` as in the HTTP
/// `x-amzn-ErrorType`, or `throttlingException` as in a stream's `:exception-type`).
pub fn exception_error(exception_type: &str, message: &str) -> ProviderError {
    let name = exception_type.to_ascii_lowercase();
    let (kind, status) = match name.as_str() {
        "throttlingexception" => (ErrorKind::RateLimited, 429),
        "servicequotaexceededexception" => (ErrorKind::RateLimited, 429),
        "validationexception" if is_context_length(message) => (ErrorKind::ContextLength, 400),
        "validationexception" => (ErrorKind::InvalidRequest, 400),
        "accessdeniedexception" | "unrecognizedclientexception" => (ErrorKind::Authentication, 403),
        "resourcenotfoundexception" => (ErrorKind::NotFound, 404),
        "modeltimeoutexception" => (ErrorKind::Unavailable, 408),
        "modelstreamerrorexception" | "modelerrorexception" => (ErrorKind::Unavailable, 424),
        "internalserverexception" => (ErrorKind::Unavailable, 500),
        "serviceunavailableexception" | "modelnotreadyexception" => (ErrorKind::Unavailable, 503),
        _ => (ErrorKind::Unavailable, 502),
    };
    let message = if message.is_empty() {
        format!("Bedrock reported {exception_type}")
    } else {
        message.to_owned()
    };
    ProviderError::new(kind, status, message)
}

/// The shared context-length phrases, plus the one Bedrock itself uses for some models.
fn is_context_length(message: &str) -> bool {
    looks_like_context_length(message)
        || message
            .to_ascii_lowercase()
            .contains("too many input tokens")
}

#[derive(Deserialize, Default)]
struct WireError {
    #[serde(alias = "Message")]
    message: Option<String>,
}

fn error_message(body: &[u8]) -> Option<String> {
    serde_json::from_slice::<WireError>(body)
        .ok()
        .and_then(|e| e.message)
}

/// Maps a non-2xx Converse answer (`{"message": ...}`) to a provider error.
pub fn map_error(status: u16, body: &[u8]) -> ProviderError {
    let message = error_message(body).unwrap_or_default();
    let kind = match status {
        400 if is_context_length(&message) => ErrorKind::ContextLength,
        400 => ErrorKind::InvalidRequest,
        401 | 403 => ErrorKind::Authentication,
        404 => ErrorKind::NotFound,
        // ModelTimeoutException (408) and ModelErrorException (424) are the model's trouble,
        // not the caller's: another deployment may well answer.
        408 | 424 => ErrorKind::Unavailable,
        429 => ErrorKind::RateLimited,
        _ => kind_for_status(status),
    };
    let message = if message.is_empty() {
        format!("Bedrock answered with status {status}")
    } else {
        message
    };
    ProviderError::new(kind, status, message)
}

// === stream ===

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStartEvent {
    #[serde(default)]
    content_block_index: u64,
    start: Option<BlockStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockStart {
    tool_use: Option<StartToolUse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartToolUse {
    tool_use_id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDeltaEvent {
    #[serde(default)]
    content_block_index: u64,
    delta: Option<BlockDelta>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BlockDelta {
    text: Option<String>,
    tool_use: Option<DeltaToolUse>,
    reasoning_content: Option<DeltaReasoning>,
}

#[derive(Deserialize)]
struct DeltaToolUse {
    #[serde(default)]
    input: String,
}

#[derive(Deserialize)]
struct DeltaReasoning {
    text: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MessageStopEvent {
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct MetadataEvent {
    usage: Option<WireUsage>,
}

/// Decodes a ConverseStream body into canonical chunks: a role chunk at `messageStart`,
/// content / reasoning / tool-call deltas, a finish chunk at `messageStop` and a usage chunk at
/// `metadata`.
#[derive(Debug)]
pub struct BedrockStreamDecoder {
    model: String,
    frames: EventStreamDecoder,
    scratch: Vec<Frame>,
    id: Option<String>,
    started: bool,
    stopped: bool,
    /// `(contentBlockIndex, tool call index)` of the tool-use blocks seen so far.
    tool_blocks: Vec<(u64, u32)>,
}

impl BedrockStreamDecoder {
    /// A decoder echoing `model` in its chunks.
    pub fn new(model: &str) -> Self {
        BedrockStreamDecoder {
            model: model.to_owned(),
            frames: EventStreamDecoder::new(MAX_EVENT_BYTES),
            scratch: Vec::new(),
            id: None,
            started: false,
            stopped: false,
            tool_blocks: Vec::new(),
        }
    }

    fn chunk(&self, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        let id = self.id.as_deref().unwrap_or("chatcmpl-bedrock");
        ChatChunk::delta(id, &self.model, 0, delta, finish)
    }

    fn ensure_started(&mut self, out: &mut Vec<ChatChunk>) {
        if !self.started {
            self.started = true;
            let delta = Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..Delta::default()
            };
            out.push(self.chunk(delta, None));
        }
    }

    fn on_frame(&mut self, frame: &Frame, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        if self.id.is_none() {
            // Bedrock pads event payloads with random bytes, so the first one is a fine seed.
            self.id = Some(response_id(&frame.payload));
        }
        match frame.header_str(":message-type").unwrap_or("event") {
            "event" => {}
            "exception" => {
                let name = frame.header_str(":exception-type").unwrap_or("unknown");
                let message = error_message(&frame.payload).unwrap_or_default();
                return Err(exception_error(name, &message));
            }
            _ => {
                let code = frame.header_str(":error-code").unwrap_or("unknown");
                let message = frame.header_str(":error-message").unwrap_or("");
                return Err(ProviderError::new(
                    ErrorKind::Unavailable,
                    502,
                    format!("Bedrock stream error {code}: {message}"),
                ));
            }
        }
        let event = frame.header_str(":event-type").unwrap_or("");
        let payload = &frame.payload[..];
        match event {
            "messageStart" => self.ensure_started(out),
            "contentBlockStart" => {
                let ev: BlockStartEvent = parse_event(event, payload)?;
                self.ensure_started(out);
                if let Some(tool) = ev.start.and_then(|s| s.tool_use) {
                    let index = self.tool_blocks.len() as u32;
                    self.tool_blocks.push((ev.content_block_index, index));
                    let delta = Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index,
                            id: Some(tool.tool_use_id),
                            kind: Some("function".into()),
                            function: FunctionCallDelta {
                                name: Some(tool.name),
                                arguments: Some(String::new()),
                            },
                        }]),
                        ..Delta::default()
                    };
                    out.push(self.chunk(delta, None));
                }
            }
            "contentBlockDelta" => {
                let ev: BlockDeltaEvent = parse_event(event, payload)?;
                self.ensure_started(out);
                let Some(d) = ev.delta else { return Ok(()) };
                if let Some(text) = d.text {
                    let delta = Delta {
                        content: Some(text),
                        ..Delta::default()
                    };
                    out.push(self.chunk(delta, None));
                }
                if let Some(text) = d.reasoning_content.and_then(|r| r.text) {
                    let delta = Delta {
                        reasoning_content: Some(text),
                        ..Delta::default()
                    };
                    out.push(self.chunk(delta, None));
                }
                if let Some(tool) = d.tool_use {
                    let index = self
                        .tool_blocks
                        .iter()
                        .find(|(block, _)| *block == ev.content_block_index)
                        .map(|(_, index)| *index)
                        .ok_or_else(|| {
                            ProviderError::bad_response(
                                "Bedrock stream sent tool input for a block it never started",
                            )
                        })?;
                    let delta = Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index,
                            function: FunctionCallDelta {
                                name: None,
                                arguments: Some(tool.input),
                            },
                            ..ToolCallDelta::default()
                        }]),
                        ..Delta::default()
                    };
                    out.push(self.chunk(delta, None));
                }
            }
            "contentBlockStop" => {}
            "messageStop" => {
                let ev: MessageStopEvent = parse_event(event, payload)?;
                self.ensure_started(out);
                self.stopped = true;
                let reason = map_stop_reason(ev.stop_reason.as_deref().unwrap_or(""));
                out.push(self.chunk(Delta::default(), Some(reason)));
            }
            "metadata" => {
                let ev: MetadataEvent = parse_event(event, payload)?;
                if let Some(usage) = ev.usage {
                    let id = self.id.as_deref().unwrap_or("chatcmpl-bedrock");
                    out.push(ChatChunk::usage(id, &self.model, 0, usage.to_chat()));
                }
            }
            // Events added after this adapter was written carry nothing it can forward.
            _ => {}
        }
        Ok(())
    }
}

fn parse_event<'a, T: Deserialize<'a>>(event: &str, payload: &'a [u8]) -> Result<T, ProviderError> {
    serde_json::from_slice(payload).map_err(|e| {
        ProviderError::bad_response(format!("Bedrock `{event}` event is not valid: {e}"))
    })
}

impl StreamDecoder for BedrockStreamDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        let mut frames = std::mem::take(&mut self.scratch);
        frames.clear();
        let framed = self.frames.feed_into(bytes, &mut frames);
        let mut result = Ok(());
        for frame in &frames {
            if let Err(e) = self.on_frame(frame, out) {
                result = Err(e);
                break;
            }
        }
        frames.clear();
        self.scratch = frames;
        result?;
        framed.map_err(|e| ProviderError::bad_response(format!("Bedrock stream: {e}")))
    }

    fn finish(&mut self, _out: &mut Vec<ChatChunk>) -> Result<bool, ProviderError> {
        // A message cut short after `messageStop` can only be the metadata: the answer itself
        // is complete, only its usage is missing.
        Ok(self.stopped)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn path_encodes_the_model_id() {
        assert_eq!(
            request_path("", "anthropic.claude-3-haiku-20240307-v1:0", false),
            "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
        );
        assert_eq!(
            request_path("/x/", "arn:aws:bedrock:us-east-1::foundation-model/m", true),
            "/x/model/arn%3Aaws%3Abedrock%3Aus-east-1%3A%3Afoundation-model%2Fm/converse-stream"
        );
    }

    #[test]
    fn stop_reasons() {
        assert_eq!(map_stop_reason("end_turn"), FinishReason::Stop);
        assert_eq!(map_stop_reason("stop_sequence"), FinishReason::Stop);
        assert_eq!(map_stop_reason("tool_use"), FinishReason::ToolCalls);
        assert_eq!(map_stop_reason("max_tokens"), FinishReason::Length);
        assert_eq!(
            map_stop_reason("guardrail_intervened"),
            FinishReason::ContentFilter
        );
        assert_eq!(
            map_stop_reason("content_filtered"),
            FinishReason::ContentFilter
        );
    }

    #[test]
    fn exceptions() {
        assert_eq!(
            exception_error("throttlingException", "slow down").kind,
            ErrorKind::RateLimited
        );
        assert_eq!(
            exception_error(
                "ValidationException",
                "Input is too long for requested model."
            )
            .kind,
            ErrorKind::ContextLength
        );
        let e = exception_error("modelStreamErrorException", "");
        assert_eq!((e.kind, e.status), (ErrorKind::Unavailable, 424));
        assert!(e.message.contains("modelStreamErrorException"));
    }
}
