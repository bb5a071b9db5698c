//! The Anthropic-format front door (`POST /v1/messages` from Anthropic SDK clients), sans-IO:
//! Messages requests into the canonical [`ChatRequest`], canonical responses and chunks back
//! into Messages JSON and SSE, Anthropic-shaped errors, and the pieces the native pass-through
//! needs (validate, splice `model`, read usage) when the upstream speaks Anthropic itself.
//!
//! Never performs I/O and never re-encodes a pass-through body: only the `model` value changes.
//!
//! Lossy corners, chosen on purpose: thinking signatures and `cache_control` markers are dropped
//! on translation (the canonical model has no place for them; native pass-through keeps them);
//! `tool_result.is_error` becomes an `Error: ` prefix on the tool message text; unknown
//! top-level fields (`thinking`, `service_tier`...) are kept in `ChatRequest::extra`.

use std::ops::Range;

use bytes::{BufMut, BytesMut};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::chat::{
    ChatChunk, ChatRequest, ChatResponse, ChatUsage, Content, ContentPart, FinishReason,
    FunctionCall, FunctionDef, FunctionName, ImageUrl, Message, NamedToolChoice, Role, Stop,
    StreamOptions, Tool, ToolCall, ToolChoice,
};
use crate::providers::anthropic::WireUsage;
use crate::sse::write_event;

/// Prefix of the tool-result text when the client marked it `is_error`.
pub const TOOL_ERROR_PREFIX: &str = "Error: ";

/// Why an Anthropic request body was rejected (answered with 400 `invalid_request_error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AnthropicRequestError {
    /// Client-facing explanation.
    pub message: String,
    /// The field at fault, e.g. `messages.1.content.0.source`.
    pub param: Option<String>,
}

// === impl AnthropicRequestError ===

impl AnthropicRequestError {
    fn new(message: impl Into<String>, param: Option<&str>) -> Self {
        AnthropicRequestError {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    fn missing(param: &str) -> Self {
        Self::new(format!("{param}: Field required"), Some(param))
    }

    fn invalid(param: &str, expected: &str) -> Self {
        Self::new(format!("{param}: Input should be {expected}"), Some(param))
    }
}

// === request ===

/// Reads an Anthropic Messages request into the canonical chat request.
pub fn decode_request(body: &[u8]) -> Result<ChatRequest, AnthropicRequestError> {
    let root: Value = serde_json::from_slice(body).map_err(|e| {
        AnthropicRequestError::new(format!("The request body is not valid JSON: {e}"), None)
    })?;
    let Value::Object(mut obj) = root else {
        return Err(AnthropicRequestError::new(
            "The request body must be a JSON object.",
            None,
        ));
    };
    let mut take = |key: &str| obj.remove(key).filter(|v| !v.is_null());

    let model = match take("model") {
        None => return Err(AnthropicRequestError::missing("model")),
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(_) => {
            return Err(AnthropicRequestError::invalid(
                "model",
                "a non-empty string",
            ))
        }
    };
    let max_tokens = match take("max_tokens") {
        None => return Err(AnthropicRequestError::missing("max_tokens")),
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| AnthropicRequestError::invalid("max_tokens", "a positive integer"))?,
    };
    let raw_messages = match take("messages") {
        None => return Err(AnthropicRequestError::missing("messages")),
        Some(Value::Array(m)) => m,
        Some(_) => return Err(AnthropicRequestError::invalid("messages", "a list")),
    };

    let mut messages = Vec::with_capacity(raw_messages.len() + 1);
    if let Some(system) = take("system") {
        messages.push(decode_system(system)?);
    }
    for (i, m) in raw_messages.into_iter().enumerate() {
        decode_message(m, i, &mut messages)?;
    }

    let tools = take("tools").map(decode_tools).transpose()?;
    let (tool_choice, parallel_tool_calls) = match take("tool_choice") {
        Some(v) => decode_tool_choice(&v)?,
        None => (None, None),
    };
    let stop = match take("stop_sequences") {
        None => None,
        Some(Value::Array(items)) => Some(Stop::Many(
            items
                .into_iter()
                .enumerate()
                .map(|(i, s)| match s {
                    Value::String(s) => Ok(s),
                    _ => Err(AnthropicRequestError::invalid(
                        &format!("stop_sequences.{i}"),
                        "a valid string",
                    )),
                })
                .collect::<Result<_, _>>()?,
        )),
        Some(_) => return Err(AnthropicRequestError::invalid("stop_sequences", "a list")),
    };
    let temperature = number(take("temperature"), "temperature")?;
    let top_p = number(take("top_p"), "top_p")?;
    let top_k = match take("top_k") {
        None => None,
        Some(v) if v.as_u64().is_some() => Some(v),
        Some(_) => return Err(AnthropicRequestError::invalid("top_k", "a valid integer")),
    };
    let stream = match take("stream") {
        None => None,
        Some(Value::Bool(b)) => Some(b),
        Some(_) => return Err(AnthropicRequestError::invalid("stream", "a valid boolean")),
    };
    let user = match take("metadata") {
        None => None,
        Some(Value::Object(meta)) => match meta.get("user_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(u)) => Some(u.clone()),
            Some(_) => {
                return Err(AnthropicRequestError::invalid(
                    "metadata.user_id",
                    "a valid string",
                ))
            }
        },
        Some(_) => return Err(AnthropicRequestError::invalid("metadata", "an object")),
    };

    let mut extra = obj;
    if let Some(k) = top_k {
        extra.insert("top_k".into(), k);
    }
    Ok(ChatRequest {
        model,
        messages,
        stream,
        // Anthropic streams always end with usage; ask OpenAI-style upstreams for it too.
        stream_options: (stream == Some(true)).then(|| StreamOptions {
            include_usage: Some(true),
            extra: Map::new(),
        }),
        temperature,
        top_p,
        max_tokens: Some(max_tokens),
        max_completion_tokens: None,
        stop,
        tools,
        tool_choice,
        parallel_tool_calls,
        response_format: None,
        user,
        extra,
    })
}

fn number(v: Option<Value>, param: &str) -> Result<Option<f64>, AnthropicRequestError> {
    match v {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| AnthropicRequestError::invalid(param, "a valid number")),
    }
}

fn decode_system(system: Value) -> Result<Message, AnthropicRequestError> {
    match system {
        Value::String(s) => Ok(Message::text(Role::System, s)),
        Value::Array(blocks) => {
            let mut parts = Vec::with_capacity(blocks.len());
            for (j, b) in blocks.iter().enumerate() {
                let param = format!("system.{j}");
                if b.get("type").and_then(Value::as_str) != Some("text") {
                    return Err(AnthropicRequestError::invalid(&param, "a text block"));
                }
                parts.push(text_of(b, &param)?);
            }
            Ok(Message::text(Role::System, parts.join("\n")))
        }
        _ => Err(AnthropicRequestError::invalid(
            "system",
            "a string or a list of text blocks",
        )),
    }
}

fn text_of(block: &Value, param: &str) -> Result<String, AnthropicRequestError> {
    match block.get("text") {
        Some(Value::String(t)) => Ok(t.clone()),
        _ => Err(AnthropicRequestError::invalid(
            &format!("{param}.text"),
            "a valid string",
        )),
    }
}

fn block_type<'v>(block: &'v Value, param: &str) -> Result<&'v str, AnthropicRequestError> {
    block
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| AnthropicRequestError::missing(&format!("{param}.type")))
}

fn decode_message(m: Value, i: usize, out: &mut Vec<Message>) -> Result<(), AnthropicRequestError> {
    let param = format!("messages.{i}");
    let role = match m.get("role").and_then(Value::as_str) {
        Some("user") => Role::User,
        Some("assistant") => Role::Assistant,
        Some(_) => {
            return Err(AnthropicRequestError::invalid(
                &format!("{param}.role"),
                "'user' or 'assistant'",
            ))
        }
        None => return Err(AnthropicRequestError::missing(&format!("{param}.role"))),
    };
    let blocks = match m.get("content") {
        Some(Value::String(s)) => {
            out.push(Message::text(role, s.clone()));
            return Ok(());
        }
        Some(Value::Array(blocks)) => blocks,
        Some(_) => {
            return Err(AnthropicRequestError::invalid(
                &format!("{param}.content"),
                "a string or a list of content blocks",
            ))
        }
        None => return Err(AnthropicRequestError::missing(&format!("{param}.content"))),
    };
    match role {
        Role::Assistant => out.push(decode_assistant(blocks, &param)?),
        _ => decode_user(blocks, &param, out)?,
    }
    Ok(())
}

fn decode_user(
    blocks: &[Value],
    param: &str,
    out: &mut Vec<Message>,
) -> Result<(), AnthropicRequestError> {
    let mut parts: Vec<ContentPart> = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let bparam = format!("{param}.content.{j}");
        match block_type(block, &bparam)? {
            "text" => parts.push(ContentPart::Text {
                text: text_of(block, &bparam)?,
            }),
            "image" => parts.push(decode_image(block, &bparam)?),
            "tool_result" => {
                if !parts.is_empty() {
                    out.push(user_message(std::mem::take(&mut parts)));
                }
                out.push(decode_tool_result(block, &bparam)?);
            }
            "tool_use" | "thinking" | "redacted_thinking" => {
                return Err(AnthropicRequestError::new(
                    format!("{bparam}: this block type is only allowed in assistant turns"),
                    Some(&bparam),
                ))
            }
            // Documents and other Anthropic-native blocks travel as opaque parts; the Anthropic
            // adapter sends documents on, other adapters refuse what they cannot express.
            _ => parts.push(ContentPart::Other(block.clone())),
        }
    }
    if !parts.is_empty() {
        out.push(user_message(parts));
    }
    Ok(())
}

fn user_message(mut parts: Vec<ContentPart>) -> Message {
    let mut msg = Message::text(Role::User, String::new());
    msg.content = Some(match parts.as_mut_slice() {
        [ContentPart::Text { text }] => Content::Text(std::mem::take(text)),
        _ => Content::Parts(parts),
    });
    msg
}

fn decode_image(block: &Value, param: &str) -> Result<ContentPart, AnthropicRequestError> {
    let sparam = format!("{param}.source");
    let source = block
        .get("source")
        .ok_or_else(|| AnthropicRequestError::missing(&sparam))?;
    let field = |name: &str| {
        source
            .get(name)
            .and_then(Value::as_str)
            .ok_or_else(|| AnthropicRequestError::missing(&format!("{sparam}.{name}")))
    };
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!("data:{};base64,{}", field("media_type")?, field("data")?),
        Some("url") => field("url")?.to_owned(),
        _ => {
            return Err(AnthropicRequestError::invalid(
                &format!("{sparam}.type"),
                "'base64' or 'url'",
            ))
        }
    };
    Ok(ContentPart::ImageUrl {
        image_url: ImageUrl { url, detail: None },
    })
}

fn decode_tool_result(block: &Value, param: &str) -> Result<Message, AnthropicRequestError> {
    let id = block
        .get("tool_use_id")
        .and_then(Value::as_str)
        .ok_or_else(|| AnthropicRequestError::missing(&format!("{param}.tool_use_id")))?;
    let is_error = block.get("is_error").and_then(Value::as_bool) == Some(true);
    let mut parts = Vec::new();
    match block.get("content") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => parts.push(ContentPart::Text { text: s.clone() }),
        Some(Value::Array(inner)) => {
            for (k, b) in inner.iter().enumerate() {
                let iparam = format!("{param}.content.{k}");
                match block_type(b, &iparam)? {
                    "text" => parts.push(ContentPart::Text {
                        text: text_of(b, &iparam)?,
                    }),
                    "image" => parts.push(decode_image(b, &iparam)?),
                    _ => parts.push(ContentPart::Other(b.clone())),
                }
            }
        }
        Some(_) => {
            return Err(AnthropicRequestError::invalid(
                &format!("{param}.content"),
                "a string or a list of content blocks",
            ))
        }
    }
    if is_error {
        match parts.first_mut() {
            Some(ContentPart::Text { text }) => text.insert_str(0, TOOL_ERROR_PREFIX),
            _ => parts.insert(
                0,
                ContentPart::Text {
                    text: TOOL_ERROR_PREFIX.trim_end().to_owned(),
                },
            ),
        }
    }
    let all_text = parts.iter().all(|p| matches!(p, ContentPart::Text { .. }));
    let mut msg = Message::text(Role::Tool, String::new());
    if !all_text {
        msg.content = Some(Content::Parts(parts));
    } else {
        msg.content = Some(Content::Text(
            parts
                .into_iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join("\n"),
        ));
    }
    msg.tool_call_id = Some(id.to_owned());
    Ok(msg)
}

fn decode_assistant(blocks: &[Value], param: &str) -> Result<Message, AnthropicRequestError> {
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let bparam = format!("{param}.content.{j}");
        match block_type(block, &bparam)? {
            "text" => text.push_str(&text_of(block, &bparam)?),
            "thinking" => {
                if let Some(t) = block.get("thinking").and_then(Value::as_str) {
                    reasoning.push_str(t);
                }
            }
            "redacted_thinking" => {}
            "tool_use" => {
                let field = |name: &str| {
                    block
                        .get(name)
                        .and_then(Value::as_str)
                        .ok_or_else(|| AnthropicRequestError::missing(&format!("{bparam}.{name}")))
                };
                let input = match block.get("input") {
                    None | Some(Value::Null) => "{}".to_owned(),
                    Some(v @ Value::Object(_)) => v.to_string(),
                    Some(_) => {
                        return Err(AnthropicRequestError::invalid(
                            &format!("{bparam}.input"),
                            "an object",
                        ))
                    }
                };
                calls.push(ToolCall {
                    id: field("id")?.to_owned(),
                    kind: "function".to_owned(),
                    function: FunctionCall {
                        name: field("name")?.to_owned(),
                        arguments: input,
                    },
                });
            }
            _ => {
                return Err(AnthropicRequestError::new(
                    format!("{bparam}: this block type is not supported in assistant turns"),
                    Some(&bparam),
                ))
            }
        }
    }
    let mut msg = Message::text(Role::Assistant, text);
    if !calls.is_empty() {
        if msg.text_content().is_empty() {
            msg.content = None;
        }
        msg.tool_calls = Some(calls);
    }
    if !reasoning.is_empty() {
        msg.reasoning_content = Some(reasoning);
    }
    Ok(msg)
}

fn decode_tools(v: Value) -> Result<Vec<Tool>, AnthropicRequestError> {
    let Value::Array(items) = v else {
        return Err(AnthropicRequestError::invalid("tools", "a list"));
    };
    let mut tools = Vec::with_capacity(items.len());
    for (i, t) in items.into_iter().enumerate() {
        let param = format!("tools.{i}");
        match t.get("type").and_then(Value::as_str) {
            None | Some("custom") => {}
            Some(other) => {
                return Err(AnthropicRequestError::new(
                    format!("{param}.type: tool type '{other}' is not supported by this gateway"),
                    Some(&format!("{param}.type")),
                ))
            }
        }
        let name = t
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| AnthropicRequestError::missing(&format!("{param}.name")))?;
        let schema = match t.get("input_schema") {
            Some(s @ Value::Object(_)) => s.clone(),
            Some(_) => {
                return Err(AnthropicRequestError::invalid(
                    &format!("{param}.input_schema"),
                    "an object",
                ))
            }
            None => {
                return Err(AnthropicRequestError::missing(&format!(
                    "{param}.input_schema"
                )))
            }
        };
        tools.push(Tool {
            kind: "function".to_owned(),
            function: FunctionDef {
                name: name.to_owned(),
                description: t
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                parameters: Some(schema),
                strict: None,
            },
        });
    }
    Ok(tools)
}

type DecodedChoice = (Option<ToolChoice>, Option<bool>);

fn decode_tool_choice(v: &Value) -> Result<DecodedChoice, AnthropicRequestError> {
    let parallel = (v.get("disable_parallel_tool_use").and_then(Value::as_bool) == Some(true))
        .then_some(false);
    let choice = match v.get("type").and_then(Value::as_str) {
        Some("auto") => ToolChoice::Mode("auto".to_owned()),
        Some("any") => ToolChoice::Mode("required".to_owned()),
        Some("none") => ToolChoice::Mode("none".to_owned()),
        Some("tool") => {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| AnthropicRequestError::missing("tool_choice.name"))?;
            ToolChoice::Named(NamedToolChoice {
                kind: "function".to_owned(),
                function: FunctionName {
                    name: name.to_owned(),
                },
            })
        }
        _ => {
            return Err(AnthropicRequestError::invalid(
                "tool_choice.type",
                "'auto', 'any', 'tool' or 'none'",
            ))
        }
    };
    Ok((Some(choice), parallel))
}

// === response ===

/// The Anthropic `stop_reason` for a canonical finish reason.
pub fn stop_reason(finish: Option<FinishReason>) -> &'static str {
    match finish {
        Some(FinishReason::Length) => "max_tokens",
        Some(FinishReason::ToolCalls) => "tool_use",
        Some(FinishReason::ContentFilter) => "refusal",
        Some(FinishReason::Stop) | None => "end_turn",
    }
}

fn usage_json(usage: Option<&ChatUsage>) -> Value {
    let u = usage.copied().unwrap_or_default();
    let cached = u.cached_tokens();
    json!({
        "input_tokens": u.prompt_tokens.saturating_sub(cached),
        "output_tokens": u.completion_tokens,
        "cache_read_input_tokens": cached,
    })
}

/// Tool-call arguments as an input object: `{}` when empty or not a JSON object.
fn input_object(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => Value::Object(Map::new()),
    }
}

/// Appends the Anthropic Messages response JSON for a canonical response (first choice).
pub fn encode_response(resp: &ChatResponse, out: &mut BytesMut) {
    let choice = resp.choices.first();
    let mut content = Vec::new();
    if let Some(c) = choice {
        let msg = &c.message;
        if let Some(r) = msg.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
            content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
        }
        let mut text = msg.text_content();
        if text.is_empty() {
            if let Some(refusal) = &msg.refusal {
                text.clone_from(refusal);
            }
        }
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
        for call in msg.tool_calls.iter().flatten() {
            content.push(json!({
                "type": "tool_use",
                "id": call.id,
                "name": call.function.name,
                "input": input_object(&call.function.arguments),
            }));
        }
    }
    let body = json!({
        "id": resp.id,
        "type": "message",
        "role": "assistant",
        "model": resp.model,
        "content": content,
        "stop_reason": stop_reason(choice.and_then(|c| c.finish_reason)),
        "stop_sequence": null,
        "usage": usage_json(resp.usage.as_ref()),
    });
    write_json(out, &body);
}

fn write_json(out: &mut BytesMut, v: &Value) {
    // Writing a `Value` into memory cannot fail: every key is a string and there is no I/O.
    let _ = serde_json::to_writer(out.writer(), v);
}

fn write_sse(out: &mut BytesMut, event: &str, v: &Value) {
    let mut data = BytesMut::with_capacity(128);
    write_json(&mut data, v);
    // serde_json output is UTF-8 and has no raw line breaks, so it is one `data:` line.
    write_event(
        out,
        Some(event),
        std::str::from_utf8(&data).unwrap_or_default(),
    );
}

// === stream ===

/// The content block the encoder has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OpenBlock {
    Text,
    Thinking,
    /// Tool call with this canonical index.
    Tool(u32),
}

/// Turns canonical stream chunks into Anthropic Messages SSE: `message_start`, one
/// `content_block_start`/`_delta`/`_stop` run per block as the content switches between text,
/// thinking and each tool call, then `message_delta` (held until the usage chunk or
/// [`MessagesStreamEncoder::finish`], so it carries the final usage) and `message_stop`.
#[derive(Debug)]
pub struct MessagesStreamEncoder {
    model: String,
    started: bool,
    open: Option<OpenBlock>,
    next_index: u32,
    /// Canonical tool index -> (id, name), for blocks that must be reopened.
    tools: Vec<(u32, String, String)>,
    finish: Option<FinishReason>,
    finish_seen: bool,
    usage: Option<ChatUsage>,
    done: bool,
}

// === impl MessagesStreamEncoder ===

impl MessagesStreamEncoder {
    /// An encoder whose `message_start` names `model`.
    pub fn new(model: &str) -> Self {
        MessagesStreamEncoder {
            model: model.to_owned(),
            started: false,
            open: None,
            next_index: 0,
            tools: Vec::new(),
            finish: None,
            finish_seen: false,
            usage: None,
            done: false,
        }
    }

    /// Converts one canonical chunk, appending the SSE events it completes to `out`.
    pub fn push(&mut self, chunk: &ChatChunk, out: &mut BytesMut) {
        if self.done {
            return;
        }
        if !self.started {
            self.start(&chunk.id, chunk.usage.as_ref(), out);
        }
        for choice in chunk.choices.iter().filter(|c| c.index == 0) {
            let d = &choice.delta;
            if let Some(r) = d.reasoning_content.as_deref().filter(|r| !r.is_empty()) {
                self.open_block(OpenBlock::Thinking, out);
                self.delta(json!({"type": "thinking_delta", "thinking": r}), out);
            }
            if let Some(t) = d.content.as_deref().filter(|t| !t.is_empty()) {
                self.open_block(OpenBlock::Text, out);
                self.delta(json!({"type": "text_delta", "text": t}), out);
            }
            for tc in d.tool_calls.iter().flatten() {
                if tc.id.is_some() || tc.function.name.is_some() {
                    if !self.tools.iter().any(|(i, _, _)| *i == tc.index) {
                        self.tools.push((
                            tc.index,
                            tc.id.clone().unwrap_or_default(),
                            tc.function.name.clone().unwrap_or_default(),
                        ));
                    }
                    self.open_block(OpenBlock::Tool(tc.index), out);
                }
                if let Some(args) = tc.function.arguments.as_deref().filter(|a| !a.is_empty()) {
                    self.open_block(OpenBlock::Tool(tc.index), out);
                    self.delta(
                        json!({"type": "input_json_delta", "partial_json": args}),
                        out,
                    );
                }
            }
            if let Some(f) = choice.finish_reason {
                self.finish = Some(f);
                self.finish_seen = true;
                self.close_block(out);
            }
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
            if self.finish_seen {
                self.tail(out);
            }
        }
    }

    /// The canonical stream ended: closes any open block and sends `message_delta` (if not yet
    /// sent) and `message_stop`. Safe to call more than once.
    pub fn finish(&mut self, out: &mut BytesMut) {
        if self.done {
            return;
        }
        if !self.started {
            self.start("", None, out);
        }
        self.tail(out);
    }

    fn start(&mut self, id: &str, usage: Option<&ChatUsage>, out: &mut BytesMut) {
        self.started = true;
        let id = if id.is_empty() { "msg_tollgate" } else { id };
        let u = usage.copied().unwrap_or_default();
        let cached = u.cached_tokens();
        let msg = json!({
            "type": "message_start",
            "message": {
                "id": id,
                "type": "message",
                "role": "assistant",
                "model": self.model,
                "content": [],
                "stop_reason": null,
                "stop_sequence": null,
                "usage": {
                    "input_tokens": u.prompt_tokens.saturating_sub(cached),
                    "output_tokens": 0,
                    "cache_read_input_tokens": cached,
                },
            },
        });
        write_sse(out, "message_start", &msg);
    }

    fn open_block(&mut self, want: OpenBlock, out: &mut BytesMut) {
        if self.open == Some(want) {
            return;
        }
        self.close_block(out);
        let block = match want {
            OpenBlock::Text => json!({"type": "text", "text": ""}),
            OpenBlock::Thinking => json!({"type": "thinking", "thinking": ""}),
            OpenBlock::Tool(i) => {
                let (id, name) = self
                    .tools
                    .iter()
                    .find(|(t, _, _)| *t == i)
                    .map(|(_, id, name)| (id.clone(), name.clone()))
                    .unwrap_or_default();
                let id = if id.is_empty() {
                    format!("toolu_tollgate_{i}")
                } else {
                    id
                };
                json!({"type": "tool_use", "id": id, "name": name, "input": {}})
            }
        };
        let ev = json!({
            "type": "content_block_start",
            "index": self.next_index,
            "content_block": block,
        });
        write_sse(out, "content_block_start", &ev);
        self.open = Some(want);
    }

    fn delta(&mut self, delta: Value, out: &mut BytesMut) {
        let ev = json!({"type": "content_block_delta", "index": self.next_index, "delta": delta});
        write_sse(out, "content_block_delta", &ev);
    }

    fn close_block(&mut self, out: &mut BytesMut) {
        if self.open.take().is_some() {
            let ev = json!({"type": "content_block_stop", "index": self.next_index});
            write_sse(out, "content_block_stop", &ev);
            self.next_index += 1;
        }
    }

    fn tail(&mut self, out: &mut BytesMut) {
        self.close_block(out);
        let mut usage = json!({"output_tokens": self.usage.map_or(0, |u| u.completion_tokens)});
        if let Some(u) = self.usage {
            let cached = u.cached_tokens();
            usage["input_tokens"] = json!(u.prompt_tokens.saturating_sub(cached));
            usage["cache_read_input_tokens"] = json!(cached);
        }
        let ev = json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason(self.finish), "stop_sequence": null},
            "usage": usage,
        });
        write_sse(out, "message_delta", &ev);
        write_sse(out, "message_stop", &json!({"type": "message_stop"}));
        self.done = true;
    }
}

// === errors ===

/// The Anthropic error `type` for a gateway error: the HTTP status decides where it is specific,
/// the OpenAI error type otherwise.
pub fn error_type_for(openai_type: &str, status: u16) -> &'static str {
    match status {
        401 => return "authentication_error",
        402 => return "billing_error",
        403 => return "permission_error",
        404 => return "not_found_error",
        413 => return "request_too_large",
        429 => return "rate_limit_error",
        503 | 529 => return "overloaded_error",
        504 => return "timeout_error",
        500..=599 => return "api_error",
        _ => {}
    }
    match openai_type {
        "authentication_error" | "invalid_api_key" => "authentication_error",
        "permission_error" | "permission_denied" => "permission_error",
        "not_found_error" | "model_not_found" => "not_found_error",
        "rate_limit_error" | "rate_limit_exceeded" | "insufficient_quota" => "rate_limit_error",
        "server_error" | "api_error" => "api_error",
        "overloaded_error" => "overloaded_error",
        _ => "invalid_request_error",
    }
}

fn error_json(error_type: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type, "message": message}})
}

/// Appends an Anthropic error body `{"type":"error","error":{"type","message"}}`.
pub fn encode_error(error_type: &str, message: &str, out: &mut BytesMut) {
    write_json(out, &error_json(error_type, message));
}

/// Appends the same error as a terminal SSE event (`event: error`).
pub fn encode_error_event(error_type: &str, message: &str, out: &mut BytesMut) {
    write_sse(out, "error", &error_json(error_type, message));
}

// === native pass-through ===

/// What the gateway needs from an Anthropic request it forwards untouched, plus where its
/// `model` value sits. Only valid with the exact body it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeSummary {
    /// The requested model (unescaped).
    pub model: String,
    /// `stream: true`.
    pub stream: bool,
    /// `max_tokens` (required by Anthropic).
    pub max_tokens: u64,
    /// The model value including its quotes.
    model_span: Range<usize>,
    body_len: usize,
}

/// Top-level fields of a native request; `serde` rejects duplicates of these.
#[derive(Deserialize)]
struct NativeFields {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    stream: Option<Value>,
    #[serde(default)]
    max_tokens: Option<Value>,
    #[serde(default)]
    messages: Option<Shape>,
}

/// The shape of `messages`, checked without building it (it is most of the body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Null,
    Array,
    Other,
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Shape;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E>(self) -> Result<Shape, E> {
                Ok(Shape::Null)
            }
            fn visit_none<E>(self) -> Result<Shape, E> {
                Ok(Shape::Null)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Shape, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Shape::Array)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Shape, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Shape::Other)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Shape, E> {
                Ok(Shape::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// Validates a native Messages request (JSON object; `model`, `max_tokens`, `messages` present
/// once with the right types) and finds what policy and the model splice need.
pub fn inspect_native(body: &[u8]) -> Result<NativeSummary, AnthropicRequestError> {
    let fields: NativeFields = serde_json::from_slice(body).map_err(|e| {
        AnthropicRequestError::new(format!("The request body is not valid: {e}"), None)
    })?;
    let model = match fields.model {
        None | Some(Value::Null) => return Err(AnthropicRequestError::missing("model")),
        Some(Value::String(m)) if !m.is_empty() => m,
        Some(_) => {
            return Err(AnthropicRequestError::invalid(
                "model",
                "a non-empty string",
            ))
        }
    };
    let max_tokens = match fields.max_tokens {
        None | Some(Value::Null) => return Err(AnthropicRequestError::missing("max_tokens")),
        Some(v) => v
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or_else(|| AnthropicRequestError::invalid("max_tokens", "a positive integer"))?,
    };
    match fields.messages {
        Some(Shape::Array) => {}
        None | Some(Shape::Null) => return Err(AnthropicRequestError::missing("messages")),
        Some(Shape::Other) => return Err(AnthropicRequestError::invalid("messages", "a list")),
    }
    let stream = match fields.stream {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(AnthropicRequestError::invalid("stream", "a valid boolean")),
    };
    let model_span = model_span(body, &model).ok_or_else(|| {
        AnthropicRequestError::new(
            "The request body could not be read unambiguously; send a plain JSON object.",
            None,
        )
    })?;
    Ok(NativeSummary {
        model,
        stream,
        max_tokens,
        model_span,
        body_len: body.len(),
    })
}

/// The span of the one top-level member whose key decodes to `model` and whose value decodes
/// to `model_value`.
fn model_span(body: &[u8], model_value: &str) -> Option<Range<usize>> {
    let members = crate::openai::top_level_members(body)?;
    let mut found = None;
    for (key, value) in members {
        let key: String = serde_json::from_slice(body.get(key)?).ok()?;
        if key != "model" {
            continue;
        }
        if found.is_some() {
            return None;
        }
        let v: String = serde_json::from_slice(body.get(value.clone())?).ok()?;
        if v != model_value {
            return None;
        }
        found = Some(value);
    }
    found
}

/// Appends `body` with only the `model` value replaced by `new_model`. `summary` must come from
/// [`inspect_native`] on this body; if it visibly does not, nothing is written (an empty body
/// fails loudly upstream, whereas the client's model could reach the wrong deployment).
pub fn rewrite_model(body: &[u8], summary: &NativeSummary, new_model: &str, out: &mut BytesMut) {
    let span = &summary.model_span;
    if body.len() != summary.body_len || span.end > body.len() || span.start >= span.end {
        return;
    }
    let (Some(before), Some(after)) = (body.get(..span.start), body.get(span.end..)) else {
        return;
    };
    out.reserve(body.len() + new_model.len());
    out.put_slice(before);
    crate::error_body::write_json_string(out, new_model);
    out.put_slice(after);
}

#[derive(Deserialize)]
struct NativeUsageOnly {
    #[serde(default)]
    usage: Option<WireUsage>,
}

/// Usage of a native non-streaming Messages response (prompt = input + cache read + cache
/// creation tokens). `None` when the body has no readable `usage`.
pub fn native_usage(body: &[u8]) -> Option<ChatUsage> {
    let r: NativeUsageOnly = serde_json::from_slice(body).ok()?;
    r.usage.map(WireUsage::to_chat)
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum NativeEvent {
    MessageStart {
        message: NativeUsageOnly,
    },
    MessageDelta {
        #[serde(default)]
        usage: Option<WireUsage>,
    },
    #[serde(other)]
    Other,
}

/// Reads usage from a native Messages SSE stream as it passes through: `message_start` gives
/// the input and cache counts, `message_delta` the (cumulative) output count.
#[derive(Debug, Clone, Default)]
pub struct NativeUsageTracker {
    counts: WireUsage,
    seen: bool,
}

// === impl NativeUsageTracker ===

impl NativeUsageTracker {
    /// A tracker that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads one event's `data` payload. Events other than `message_start` and `message_delta`
    /// are skipped without being parsed.
    pub fn observe(&mut self, data: &[u8]) {
        if memchr::memmem::find(data, b"\"message_").is_none() {
            return;
        }
        let Ok(event) = serde_json::from_slice::<NativeEvent>(data) else {
            return;
        };
        match event {
            NativeEvent::MessageStart { message } => {
                if let Some(u) = message.usage {
                    self.counts.merge(u);
                    self.seen = true;
                }
            }
            NativeEvent::MessageDelta { usage: Some(u) } => {
                self.counts.merge(u);
                self.seen = true;
            }
            _ => {}
        }
    }

    /// Usage so far; `None` until a usage-bearing event was seen.
    pub fn usage(&self) -> Option<ChatUsage> {
        self.seen.then(|| self.counts.to_chat())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn missing_fields_are_named() {
        let e = decode_request(br#"{"messages":[],"max_tokens":1}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("model"));
        let e = decode_request(br#"{"model":"m","messages":[]}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("max_tokens"));
        let e = decode_request(br#"{"model":"m","max_tokens":5}"#).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages"));
        let e = decode_request(
            br#"{"model":"m","max_tokens":5,"messages":[{"role":"bot","content":"x"}]}"#,
        )
        .unwrap_err();
        assert_eq!(e.param.as_deref(), Some("messages.0.role"));
        assert!(decode_request(b"{").unwrap_err().param.is_none());
    }

    #[test]
    fn model_splice_keeps_everything_else() {
        let body = br#"{ "max_tokens": 9, "model" : "a\"b", "messages": [{"role":"user","content":"model"}]}"#;
        let s = inspect_native(body).unwrap();
        assert_eq!(s.model, "a\"b");
        let mut out = BytesMut::new();
        rewrite_model(body, &s, "claude-x", &mut out);
        assert_eq!(
            &out[..],
            &br#"{ "max_tokens": 9, "model" : "claude-x", "messages": [{"role":"user","content":"model"}]}"#[..]
        );
        let mut out = BytesMut::new();
        rewrite_model(b"{}", &s, "claude-x", &mut out);
        assert!(out.is_empty());
        assert!(
            inspect_native(br#"{"model":"a","model":"b","max_tokens":1,"messages":[]}"#).is_err()
        );
    }

    #[test]
    fn error_type_mapping() {
        assert_eq!(
            error_type_for("invalid_request_error", 400),
            "invalid_request_error"
        );
        assert_eq!(
            error_type_for("rate_limit_exceeded", 429),
            "rate_limit_error"
        );
        assert_eq!(error_type_for("api_error", 503), "overloaded_error");
        assert_eq!(error_type_for("server_error", 502), "api_error");
        assert_eq!(
            error_type_for("authentication_error", 401),
            "authentication_error"
        );
        assert_eq!(
            error_type_for("authentication_error", 200),
            "authentication_error"
        );
    }
}
