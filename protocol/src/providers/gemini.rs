//! Google Gemini API adapter (generativelanguage, `v1beta` by default): canonical chat requests to
//! `generateContent` / `streamGenerateContent?alt=sse` bodies, Gemini responses and SSE events
//! back to canonical responses and chunks, and Google error bodies to [`ProviderError`].
//!
//! Must never put the API key in the URL (URLs get logged): it travels in `x-goog-api-key`.
//! Pure conversion: no I/O and no clock, so `created` is 0 on everything decoded here (Gemini
//! does not report a creation time; the engine stamps its own).

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{
    kind_for_status, looks_like_context_length, Adapter, ErrorKind, ProviderError, StreamDecoder,
    Target, TranslateError, UpstreamRequest,
};
use crate::chat::{
    ChatChunk, ChatRequest, ChatResponse, ChatUsage, Choice, Content, ContentPart, Delta,
    FinishReason, FunctionCall, FunctionCallDelta, Message, ResponseFormat, Role, ToolCall,
    ToolCallDelta, ToolChoice,
};
use crate::sse::SseDecoder;

/// API version used when the deployment does not name one.
pub const DEFAULT_API_VERSION: &str = "v1beta";

/// Header that carries the API key.
pub const API_KEY_HEADER: &str = "x-goog-api-key";

/// Largest single SSE event accepted from Gemini (inline image output can be large).
pub const MAX_EVENT_BYTES: usize = 16 << 20;

/// Thought signature Google documents for function calls replayed from history it did not sign
/// (the OpenAI format has nowhere to carry the real one). Gemini 3 rejects unsigned calls.
pub const SKIP_THOUGHT_SIGNATURE: &str = "skip_thought_signature_validator";

/// Nesting depth after which schema conversion (and `$ref` inlining) stops descending.
const SCHEMA_MAX_DEPTH: usize = 24;

/// Schema keys copied unchanged into Gemini's OpenAPI-subset `Schema`.
const SCHEMA_KEPT_KEYS: &[&str] = &[
    "title",
    "description",
    "nullable",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "minimum",
    "maximum",
    "example",
    "default",
    "propertyOrdering",
];

/// The Gemini adapter. Stateless: one value serves every Gemini deployment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GeminiAdapter;

// === impl GeminiAdapter ===

impl GeminiAdapter {
    /// A Gemini adapter.
    pub const fn new() -> Self {
        GeminiAdapter
    }
}

impl Adapter for GeminiAdapter {
    fn name(&self) -> &'static str {
        "gemini"
    }

    fn encode_request(
        &self,
        req: &ChatRequest,
        target: &Target<'_>,
    ) -> Result<UpstreamRequest, TranslateError> {
        let model = if target.model.is_empty() {
            req.model.as_str()
        } else {
            target.model
        };
        let path = request_path(
            target.base_path,
            target.api_version.unwrap_or(DEFAULT_API_VERSION),
            model,
            req.is_stream(),
        )?;
        let body = encode_body(req)?;
        let body = serde_json::to_vec(&body)
            .map_err(|e| TranslateError::new(format!("cannot encode request: {e}"), None))?;
        let mut headers = vec![
            ("host", target.authority.to_owned()),
            ("content-type", "application/json".to_owned()),
        ];
        if req.is_stream() {
            headers.push(("accept", "text/event-stream".to_owned()));
        }
        if let Some(key) = target.api_key {
            headers.push((API_KEY_HEADER, key.to_owned()));
        }
        Ok(UpstreamRequest {
            method: "POST",
            path,
            headers,
            body: Bytes::from(body),
        })
    }

    fn decode_response(&self, body: &[u8], model: &str) -> Result<ChatResponse, ProviderError> {
        let resp: WireResponse = serde_json::from_slice(body)
            .map_err(|e| ProviderError::bad_response(format!("unreadable Gemini response: {e}")))?;
        if let Some(err) = resp.error {
            return Err(google_error(err.code.unwrap_or(500), &err));
        }
        let mut choices = Vec::with_capacity(resp.candidates.len().max(1));
        for cand in &resp.candidates {
            choices.push(candidate_choice(cand));
        }
        if choices.is_empty() {
            let blocked = resp
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_deref())
                .is_some();
            if !blocked {
                return Err(ProviderError::bad_response(
                    "Gemini response has no candidates and no block reason",
                ));
            }
            // The prompt itself was blocked: an empty, filtered answer, as OpenAI reports it.
            choices.push(Choice {
                index: 0,
                message: assistant_message(Some(String::new()), None, None),
                finish_reason: Some(FinishReason::ContentFilter),
            });
        }
        Ok(ChatResponse {
            id: response_id(resp.response_id.as_deref()),
            object: "chat.completion".to_owned(),
            created: 0,
            model: model.to_owned(),
            choices,
            usage: resp.usage_metadata.map(WireUsage::to_usage),
        })
    }

    fn stream_decoder(&self, model: &str) -> Box<dyn StreamDecoder> {
        Box::new(GeminiStreamDecoder::new(model))
    }

    fn map_error(&self, status: u16, body: &[u8]) -> ProviderError {
        map_error_body(status, body)
    }
}

// === request ===

/// The request path for `model`: `{base_path}/{version}/models/{model}:generateContent`, or
/// `:streamGenerateContent?alt=sse` when streaming. `model` may carry its `models/` prefix, or be
/// a `tunedModels/...` name. Anything but letters, digits, `-`, `.` and `_` in the id is refused,
/// so a model id can never reshape the path or query.
pub fn request_path(
    base_path: &str,
    api_version: &str,
    model: &str,
    stream: bool,
) -> Result<String, TranslateError> {
    let (collection, id) = match model.split_once('/') {
        Some(("models", id)) => ("models", id),
        Some(("tunedModels", id)) => ("tunedModels", id),
        Some(_) => ("", ""),
        None => ("models", model),
    };
    let id_ok = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if collection.is_empty() || !id_ok {
        return Err(TranslateError::new(
            format!("{model:?} is not a valid Gemini model id"),
            Some("model"),
        ));
    }
    if api_version.is_empty() || !api_version.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(TranslateError::new(
            format!("{api_version:?} is not a valid Gemini API version"),
            Some("api_version"),
        ));
    }
    let method = if stream {
        "streamGenerateContent?alt=sse"
    } else {
        "generateContent"
    };
    Ok(format!(
        "{}/{api_version}/{collection}/{id}:{method}",
        base_path.trim_end_matches('/')
    ))
}

/// One `contents` entry being built.
struct Turn {
    role: &'static str,
    parts: Vec<Value>,
}

/// Translates the canonical request into a Gemini `GenerateContentRequest` body.
///
/// Fields Gemini cannot express are left out rather than refused: `parallel_tool_calls`,
/// `user`, `logprobs`, `logit_bias`, `metadata`, `stream_options` (Gemini always reports
/// usage). `n`, `seed`, `presence_penalty`, `frequency_penalty`, `top_k` and
/// `reasoning_effort` are carried from the request's extra fields.
pub fn encode_body(req: &ChatRequest) -> Result<Value, TranslateError> {
    let mut system_parts = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, msg) in req.messages.iter().enumerate() {
        match msg.role {
            Role::System | Role::Developer => {
                system_parts.extend(content_parts(msg.content.as_ref(), i)?);
            }
            Role::User => push_turn(&mut turns, "user", content_parts(msg.content.as_ref(), i)?),
            Role::Assistant => push_turn(&mut turns, "model", assistant_parts(msg, i)?),
            Role::Tool => {
                let part = function_response_part(&req.messages[..i], msg, i)?;
                push_turn(&mut turns, "user", vec![part]);
            }
        }
    }
    if turns.is_empty() {
        return Err(TranslateError::new(
            "Gemini needs at least one user or assistant message with content",
            Some("messages"),
        ));
    }

    let mut body = Map::new();
    body.insert(
        "contents".to_owned(),
        Value::Array(
            turns
                .into_iter()
                .map(|t| json!({"role": t.role, "parts": t.parts}))
                .collect(),
        ),
    );
    if !system_parts.is_empty() {
        body.insert(
            "systemInstruction".to_owned(),
            json!({ "parts": system_parts }),
        );
    }
    if let Some(tools) = req.tools.as_deref().filter(|t| !t.is_empty()) {
        body.insert("tools".to_owned(), encode_tools(tools)?);
        if let Some(choice) = &req.tool_choice {
            body.insert("toolConfig".to_owned(), encode_tool_choice(choice)?);
        }
    }
    let config = generation_config(req)?;
    if !config.is_empty() {
        body.insert("generationConfig".to_owned(), Value::Object(config));
    }
    Ok(Value::Object(body))
}

/// Appends `parts` to the last turn when it has the same role (Gemini wants strictly
/// alternating turns), else starts a new turn. Empty part lists add nothing.
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, parts: Vec<Value>) {
    if parts.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.parts.extend(parts),
        _ => turns.push(Turn { role, parts }),
    }
}

/// Gemini parts for user or system content.
fn content_parts(content: Option<&Content>, i: usize) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        None => return Ok(Vec::new()),
        Some(Content::Text(text)) => return Ok(text_part(text).into_iter().collect()),
        Some(Content::Parts(parts)) => parts,
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        match part {
            ContentPart::Text { text } => out.extend(text_part(text)),
            ContentPart::ImageUrl { image_url } => {
                let param = format!("messages[{i}].content[{j}].image_url.url");
                out.push(media_part(&image_url.url, &param)?);
            }
            ContentPart::Other(value) => out.push(other_part(value, i, j)?),
        }
    }
    Ok(out)
}

fn text_part(text: &str) -> Option<Value> {
    // Gemini rejects empty text parts.
    (!text.is_empty()).then(|| json!({ "text": text }))
}

/// A `data:` URL becomes `inlineData`, an http(s) URL `fileData` with a guessed MIME type.
fn media_part(url: &str, param: &str) -> Result<Value, TranslateError> {
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((mime, data)) = rest.split_once(";base64,") else {
            return Err(TranslateError::new(
                "only base64 data: URLs are supported",
                Some(param),
            ));
        };
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(json!({"fileData": {"mimeType": guess_mime(url), "fileUri": url}}));
    }
    Err(TranslateError::new(
        "media must be an http(s) URL or a base64 data: URL",
        Some(param),
    ))
}

/// MIME type from a URL's file extension (query and fragment ignored); `image/jpeg` otherwise.
pub fn guess_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name = path.rsplit('/').next().unwrap_or(path);
    let ext = name
        .rsplit_once('.')
        .map(|(_, ext)| ext.to_ascii_lowercase());
    match ext.as_deref() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        Some("heif") => "image/heif",
        Some("pdf") => "application/pdf",
        Some("mp3") => "audio/mp3",
        Some("wav") => "audio/wav",
        Some("mp4") => "video/mp4",
        _ => "image/jpeg",
    }
}

/// Part types the canonical model keeps as raw JSON: `input_audio` and `file` with inline data
/// are expressible; anything else is refused by name.
fn other_part(value: &Value, i: usize, j: usize) -> Result<Value, TranslateError> {
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
    match kind {
        "input_audio" => {
            let audio = value.get("input_audio");
            let data = audio.and_then(|a| a.get("data")).and_then(Value::as_str);
            let format = audio.and_then(|a| a.get("format")).and_then(Value::as_str);
            match (data, format) {
                (Some(data), Some(format)) => Ok(json!({
                    "inlineData": {"mimeType": format!("audio/{format}"), "data": data}
                })),
                _ => Err(TranslateError::new(
                    "input_audio needs data and format",
                    Some(&format!("messages[{i}].content[{j}].input_audio")),
                )),
            }
        }
        "file" => {
            let param = format!("messages[{i}].content[{j}].file.file_data");
            match value
                .get("file")
                .and_then(|f| f.get("file_data"))
                .and_then(Value::as_str)
            {
                Some(data) => media_part(data, &param),
                None => Err(TranslateError::new(
                    "Gemini takes files only as inline file_data (file_id is not supported)",
                    Some(&param),
                )),
            }
        }
        _ => Err(TranslateError::new(
            format!("content part type {kind:?} is not supported by Gemini"),
            Some(&format!("messages[{i}].content[{j}].type")),
        )),
    }
}

/// An assistant turn: its text, then one `functionCall` part per tool call.
fn assistant_parts(msg: &Message, i: usize) -> Result<Vec<Value>, TranslateError> {
    let mut parts = content_parts(msg.content.as_ref(), i)?;
    for (j, call) in msg.tool_calls.iter().flatten().enumerate() {
        let param = format!("messages[{i}].tool_calls[{j}].function.arguments");
        let raw = call.function.arguments.trim();
        let args: Value = if raw.is_empty() {
            Value::Object(Map::new())
        } else {
            serde_json::from_str(raw).map_err(|e| {
                TranslateError::new(
                    format!("tool call arguments are not JSON: {e}"),
                    Some(&param),
                )
            })?
        };
        if !args.is_object() {
            return Err(TranslateError::new(
                "tool call arguments must be a JSON object",
                Some(&param),
            ));
        }
        let mut part = json!({"functionCall": {"name": call.function.name, "args": args}});
        if j == 0 {
            if let Some(obj) = part.as_object_mut() {
                obj.insert(
                    "thoughtSignature".to_owned(),
                    Value::from(SKIP_THOUGHT_SIGNATURE),
                );
            }
        }
        parts.push(part);
    }
    Ok(parts)
}

/// A tool result as a `functionResponse`. Gemini matches results by function name, so the name
/// comes from the latest earlier assistant call with this `tool_call_id`. Content that is a JSON
/// object or array is sent parsed; anything else as text.
fn function_response_part(
    earlier: &[Message],
    msg: &Message,
    i: usize,
) -> Result<Value, TranslateError> {
    let param = format!("messages[{i}].tool_call_id");
    let Some(id) = msg.tool_call_id.as_deref() else {
        return Err(TranslateError::new(
            "a tool message needs tool_call_id",
            Some(&param),
        ));
    };
    let name = earlier
        .iter()
        .rev()
        .filter(|m| m.role == Role::Assistant)
        .flat_map(|m| m.tool_calls.iter().flatten())
        .find(|c| c.id == id)
        .map(|c| c.function.name.as_str());
    let Some(name) = name else {
        return Err(TranslateError::new(
            format!("tool_call_id {id:?} does not match any earlier assistant tool call"),
            Some(&param),
        ));
    };
    let text = msg.text_content();
    let trimmed = text.trim_start();
    let content = if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    } else {
        Value::String(text)
    };
    Ok(json!({"functionResponse": {"name": name, "response": {"content": content}}}))
}

fn encode_tools(tools: &[crate::chat::Tool]) -> Result<Value, TranslateError> {
    let mut decls = Vec::with_capacity(tools.len());
    for (i, tool) in tools.iter().enumerate() {
        if tool.kind != "function" {
            return Err(TranslateError::new(
                format!("tool type {:?} is not supported by Gemini", tool.kind),
                Some(&format!("tools[{i}].type")),
            ));
        }
        let f = &tool.function;
        let mut decl = Map::new();
        decl.insert("name".to_owned(), Value::from(f.name.as_str()));
        if let Some(d) = &f.description {
            decl.insert("description".to_owned(), Value::from(d.as_str()));
        }
        if let Some(params) = &f.parameters {
            let mut schema = to_gemini_schema(params);
            // Function parameters must be an OBJECT schema; tools often leave `type` out.
            if let Some(obj) = schema.as_object_mut() {
                if obj.contains_key("properties") && !obj.contains_key("type") {
                    obj.insert("type".to_owned(), Value::from("OBJECT"));
                }
            }
            // Gemini rejects an OBJECT schema without properties; a function without
            // arguments is declared without `parameters` instead.
            let empty_object = schema.get("type").and_then(Value::as_str) == Some("OBJECT")
                && schema
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty);
            if !empty_object {
                decl.insert("parameters".to_owned(), schema);
            }
        }
        decls.push(Value::Object(decl));
    }
    Ok(json!([{ "functionDeclarations": decls }]))
}

fn encode_tool_choice(choice: &ToolChoice) -> Result<Value, TranslateError> {
    let config = match choice {
        ToolChoice::Mode(mode) => {
            let mode = match mode.as_str() {
                "auto" => "AUTO",
                "none" => "NONE",
                "required" => "ANY",
                other => {
                    return Err(TranslateError::new(
                        format!("tool_choice {other:?} is not one of none, auto, required"),
                        Some("tool_choice"),
                    ))
                }
            };
            json!({ "mode": mode })
        }
        ToolChoice::Named(named) => {
            json!({"mode": "ANY", "allowedFunctionNames": [named.function.name]})
        }
    };
    Ok(json!({ "functionCallingConfig": config }))
}

fn generation_config(req: &ChatRequest) -> Result<Map<String, Value>, TranslateError> {
    let mut config = Map::new();
    if let Some(stop) = &req.stop {
        let stops = stop.to_vec();
        if !stops.is_empty() {
            config.insert("stopSequences".to_owned(), Value::from(stops));
        }
    }
    if let Some(t) = req.temperature {
        config.insert("temperature".to_owned(), Value::from(t));
    }
    if let Some(p) = req.top_p {
        config.insert("topP".to_owned(), Value::from(p));
    }
    if let Some(cap) = req.output_cap() {
        config.insert("maxOutputTokens".to_owned(), Value::from(cap));
    }
    for (from, to) in [
        ("n", "candidateCount"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
        ("top_k", "topK"),
    ] {
        if let Some(v) = req.extra.get(from).filter(|v| v.is_number()) {
            config.insert(to.to_owned(), v.clone());
        }
    }
    if let Some(effort) = req.extra.get("reasoning_effort").and_then(Value::as_str) {
        // The budgets Google's own OpenAI-compatible endpoint uses for these efforts.
        let budget: u64 = match effort {
            "none" => 0,
            "minimal" | "low" => 1024,
            "medium" => 8192,
            "high" => 24576,
            other => {
                return Err(TranslateError::new(
                    format!(
                        "reasoning_effort {other:?} is not one of none, minimal, low, medium, high"
                    ),
                    Some("reasoning_effort"),
                ))
            }
        };
        config.insert(
            "thinkingConfig".to_owned(),
            json!({"thinkingBudget": budget, "includeThoughts": budget > 0}),
        );
    }
    match &req.response_format {
        None | Some(ResponseFormat::Text) => {}
        Some(ResponseFormat::JsonObject) => {
            config.insert(
                "responseMimeType".to_owned(),
                Value::from("application/json"),
            );
        }
        Some(ResponseFormat::JsonSchema { json_schema }) => {
            config.insert(
                "responseMimeType".to_owned(),
                Value::from("application/json"),
            );
            if let Some(schema) = json_schema.get("schema") {
                config.insert("responseSchema".to_owned(), to_gemini_schema(schema));
            }
        }
    }
    Ok(config)
}

// === schema conversion ===

/// Converts a JSON Schema into the OpenAPI 3.0 subset Gemini's `Schema` accepts.
///
/// Kept: `type` (upper-cased; a `["T", "null"]` list becomes `T` + `nullable`), `properties`,
/// `required` (only names that are declared properties), `items`, `enum` (string values only),
/// `anyOf` (`oneOf` is read as `anyOf`; a `null` branch becomes `nullable`), `format` (only the
/// ones Gemini takes: `enum`/`date-time` on strings, `int32`/`int64` on integers,
/// `float`/`double` on numbers), and the keys in `title`, `description`, `nullable`,
/// `min/maxItems`, `min/maxProperties`, `min/maxLength`, `pattern`, `minimum`, `maximum`,
/// `example`, `default`, `propertyOrdering`.
///
/// Rewritten: local `$ref`s into `$defs`/`definitions` are inlined (to a bounded depth, so
/// recursive schemas are cut off as an empty schema); `const` becomes a one-value string
/// `enum`; `allOf` branches are merged into the schema; the first of `examples` becomes
/// `example`.
///
/// Dropped, because Gemini rejects them: `$schema`, `$id`, `$comment`, `$defs`,
/// `definitions`, `additionalProperties`, `strict`, `patternProperties`,
/// `unevaluatedProperties`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`,
/// `uniqueItems`, `not`, `if`/`then`/`else`, `dependentRequired`, `readOnly`, `writeOnly`,
/// `deprecated`, non-string `enum`s and every other key not listed as kept.
pub fn to_gemini_schema(schema: &Value) -> Value {
    let defs = schema
        .get("$defs")
        .or_else(|| schema.get("definitions"))
        .and_then(Value::as_object);
    convert_schema(schema, defs, 0)
}

fn convert_schema(schema: &Value, defs: Option<&Map<String, Value>>, depth: usize) -> Value {
    let Some(src) = schema.as_object() else {
        // `true` or anything unreadable: any value.
        return Value::Object(Map::new());
    };
    if depth > SCHEMA_MAX_DEPTH {
        return Value::Object(Map::new());
    }
    if let Some(target) = src.get("$ref").and_then(Value::as_str) {
        let name = target
            .strip_prefix("#/$defs/")
            .or_else(|| target.strip_prefix("#/definitions/"));
        let mut out = match name.and_then(|n| defs?.get(n)) {
            Some(def) => convert_schema(def, defs, depth + 1),
            None => Value::Object(Map::new()),
        };
        // Siblings of `$ref` (often a description) still apply.
        if let Some(obj) = out.as_object_mut() {
            for key in ["description", "title"] {
                if let Some(v) = src.get(key) {
                    obj.insert(key.to_owned(), v.clone());
                }
            }
        }
        return out;
    }

    let mut out = Map::new();
    for key in SCHEMA_KEPT_KEYS {
        if let Some(v) = src.get(*key) {
            out.insert((*key).to_owned(), v.clone());
        }
    }
    if !out.contains_key("example") {
        if let Some(first) = src
            .get("examples")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            out.insert("example".to_owned(), first.clone());
        }
    }

    let mut extra_types = Vec::new();
    match src.get("type") {
        Some(Value::String(t)) => {
            if t == "null" {
                out.insert("nullable".to_owned(), Value::Bool(true));
            } else {
                out.insert("type".to_owned(), Value::from(t.to_ascii_uppercase()));
            }
        }
        Some(Value::Array(types)) => {
            let mut names = types.iter().filter_map(Value::as_str);
            let mut first = true;
            for t in names.by_ref() {
                if t == "null" {
                    out.insert("nullable".to_owned(), Value::Bool(true));
                } else if first {
                    out.insert("type".to_owned(), Value::from(t.to_ascii_uppercase()));
                    first = false;
                } else {
                    extra_types.push(t.to_ascii_uppercase());
                }
            }
        }
        _ => {}
    }
    if !extra_types.is_empty() {
        // Several non-null types: an anyOf of bare types (other keywords stay on the parent).
        let mut branches = Vec::new();
        if let Some(t) = out.remove("type") {
            branches.push(json!({ "type": t }));
        }
        branches.extend(extra_types.into_iter().map(|t| json!({ "type": t })));
        out.insert("anyOf".to_owned(), Value::Array(branches));
    }

    if let Some(Value::String(c)) = src.get("const") {
        out.insert("enum".to_owned(), json!([c]));
        out.entry("type").or_insert_with(|| Value::from("STRING"));
    }
    if let Some(values) = src.get("enum").and_then(Value::as_array) {
        if !values.is_empty() && values.iter().all(Value::is_string) {
            out.insert("enum".to_owned(), Value::Array(values.clone()));
            out.entry("type").or_insert_with(|| Value::from("STRING"));
        }
    }
    if let (Some(Value::String(format)), Some(Value::String(t))) =
        (src.get("format"), out.get("type"))
    {
        let ok = matches!(
            (t.as_str(), format.as_str()),
            ("STRING", "enum" | "date-time")
                | ("INTEGER", "int32" | "int64")
                | ("NUMBER", "float" | "double")
        );
        if ok {
            out.insert("format".to_owned(), Value::from(format.as_str()));
        }
    }

    if let Some(props) = src.get("properties").and_then(Value::as_object) {
        let converted: Map<String, Value> = props
            .iter()
            .map(|(k, v)| (k.clone(), convert_schema(v, defs, depth + 1)))
            .collect();
        if let Some(required) = src.get("required").and_then(Value::as_array) {
            let required: Vec<Value> = required
                .iter()
                .filter(|r| r.as_str().is_some_and(|r| converted.contains_key(r)))
                .cloned()
                .collect();
            if !required.is_empty() {
                out.insert("required".to_owned(), Value::Array(required));
            }
        }
        out.insert("properties".to_owned(), Value::Object(converted));
    }
    if let Some(items) = src.get("items") {
        if items.is_object() {
            out.insert("items".to_owned(), convert_schema(items, defs, depth + 1));
        }
    }

    let branches = src
        .get("anyOf")
        .or_else(|| src.get("oneOf"))
        .and_then(Value::as_array);
    if let Some(branches) = branches {
        let mut kept = Vec::new();
        for b in branches {
            if b.get("type").and_then(Value::as_str) == Some("null") {
                out.insert("nullable".to_owned(), Value::Bool(true));
            } else {
                kept.push(convert_schema(b, defs, depth + 1));
            }
        }
        if kept.len() == 1 {
            // `anyOf: [X, null]` is just a nullable X.
            if let Some(Value::Object(only)) = kept.pop() {
                for (k, v) in only {
                    out.entry(k).or_insert(v);
                }
            }
        } else if !kept.is_empty() {
            out.insert("anyOf".to_owned(), Value::Array(kept));
        }
    }
    if let Some(all) = src.get("allOf").and_then(Value::as_array) {
        for b in all {
            if let Value::Object(part) = convert_schema(b, defs, depth + 1) {
                merge_schema(&mut out, part);
            }
        }
    }
    Value::Object(out)
}

/// Merges an `allOf` branch into `out`: properties and required lists are unioned, other keys
/// keep the value already there.
fn merge_schema(out: &mut Map<String, Value>, part: Map<String, Value>) {
    for (k, v) in part {
        match (k.as_str(), out.get_mut(&k), v) {
            ("properties", Some(Value::Object(mine)), Value::Object(theirs)) => {
                for (pk, pv) in theirs {
                    mine.entry(pk).or_insert(pv);
                }
            }
            ("required", Some(Value::Array(mine)), Value::Array(theirs)) => {
                for r in theirs {
                    if !mine.contains(&r) {
                        mine.push(r);
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, v) => {
                out.insert(k, v);
            }
        }
    }
}

// === responses ===

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireResponse {
    #[serde(default)]
    candidates: Vec<WireCandidate>,
    #[serde(default)]
    prompt_feedback: Option<WirePromptFeedback>,
    #[serde(default)]
    usage_metadata: Option<WireUsage>,
    #[serde(default)]
    response_id: Option<String>,
    /// Errors delivered inside a stream (or a 200 body) use the same envelope as error bodies.
    #[serde(default)]
    error: Option<GoogleError>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireCandidate {
    #[serde(default)]
    content: Option<WireContent>,
    #[serde(default)]
    finish_reason: Option<String>,
    #[serde(default)]
    index: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
struct WireContent {
    #[serde(default)]
    parts: Vec<WirePart>,
}

/// One part of a candidate. Parts other than text and function calls (inline images,
/// executable code and its results) are not expressible in the chat model and are skipped.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePart {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    thought: bool,
    #[serde(default)]
    function_call: Option<WireFunctionCall>,
}

#[derive(Debug, Default, Deserialize)]
struct WireFunctionCall {
    #[serde(default)]
    name: String,
    #[serde(default)]
    args: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WirePromptFeedback {
    #[serde(default)]
    block_reason: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireUsage {
    #[serde(default)]
    prompt_token_count: u64,
    #[serde(default)]
    candidates_token_count: u64,
    #[serde(default)]
    thoughts_token_count: u64,
    #[serde(default)]
    cached_content_token_count: u64,
    #[serde(default)]
    tool_use_prompt_token_count: u64,
}

impl WireUsage {
    /// Thinking tokens are billed as output, tool-use prompt tokens as input.
    fn to_usage(self) -> ChatUsage {
        ChatUsage::new(
            self.prompt_token_count
                .saturating_add(self.tool_use_prompt_token_count),
            self.candidates_token_count
                .saturating_add(self.thoughts_token_count),
            self.cached_content_token_count,
        )
    }
}

/// The id of the `index`-th function call of a turn. Gemini does not id its calls (it matches
/// results by name), so the gateway makes them up.
pub fn tool_call_id(index: u32) -> String {
    format!("call_{index}")
}

fn response_id(upstream: Option<&str>) -> String {
    match upstream {
        Some(id) if !id.is_empty() => format!("chatcmpl-{id}"),
        _ => "chatcmpl-gemini".to_owned(),
    }
}

/// Maps a Gemini `finishReason`; `has_calls` turns a natural stop into `tool_calls`.
pub fn map_finish_reason(reason: &str, has_calls: bool) -> FinishReason {
    match reason {
        "MAX_TOKENS" => FinishReason::Length,
        "SAFETY"
        | "RECITATION"
        | "BLOCKLIST"
        | "PROHIBITED_CONTENT"
        | "SPII"
        | "IMAGE_SAFETY"
        | "IMAGE_PROHIBITED_CONTENT" => FinishReason::ContentFilter,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

fn call_arguments(call: &WireFunctionCall) -> String {
    match &call.args {
        None | Some(Value::Null) => "{}".to_owned(),
        Some(args) => args.to_string(),
    }
}

fn assistant_message(
    content: Option<String>,
    reasoning: Option<String>,
    tool_calls: Option<Vec<ToolCall>>,
) -> Message {
    let mut msg = Message::text(Role::Assistant, "");
    msg.content = content.map(Content::Text);
    msg.reasoning_content = reasoning;
    msg.tool_calls = tool_calls;
    msg
}

fn candidate_choice(cand: &WireCandidate) -> Choice {
    let mut text = String::new();
    let mut thoughts = String::new();
    let mut calls = Vec::new();
    for part in cand.content.iter().flat_map(|c| &c.parts) {
        if let Some(call) = &part.function_call {
            calls.push(ToolCall {
                id: tool_call_id(calls.len() as u32),
                kind: "function".to_owned(),
                function: FunctionCall {
                    name: call.name.clone(),
                    arguments: call_arguments(call),
                },
            });
        } else if let Some(t) = &part.text {
            if part.thought {
                thoughts.push_str(t);
            } else {
                text.push_str(t);
            }
        }
    }
    let has_calls = !calls.is_empty();
    let content = if text.is_empty() && has_calls {
        None
    } else {
        Some(text)
    };
    Choice {
        index: cand.index.unwrap_or(0),
        message: assistant_message(
            content,
            (!thoughts.is_empty()).then_some(thoughts),
            has_calls.then_some(calls),
        ),
        finish_reason: cand
            .finish_reason
            .as_deref()
            .map(|r| map_finish_reason(r, has_calls)),
    }
}

// === stream ===

/// Per-candidate progress of a stream.
#[derive(Debug)]
struct CandidateState {
    index: u32,
    role_sent: bool,
    calls: u32,
}

/// Decodes `streamGenerateContent?alt=sse`: every `data:` is a whole `GenerateContentResponse`.
#[derive(Debug)]
struct GeminiStreamDecoder {
    model: String,
    sse: SseDecoder,
    buf: BytesMut,
    id: Option<String>,
    candidates: Vec<CandidateState>,
    finished: bool,
    usage: Option<ChatUsage>,
    failed: Option<ProviderError>,
}

impl GeminiStreamDecoder {
    fn new(model: &str) -> Self {
        GeminiStreamDecoder {
            model: model.to_owned(),
            sse: SseDecoder::new(MAX_EVENT_BYTES),
            buf: BytesMut::new(),
            id: None,
            candidates: Vec::new(),
            finished: false,
            usage: None,
            failed: None,
        }
    }

    fn drain(&mut self, last: bool, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        loop {
            let frame = if last {
                self.sse.decode_final(&mut self.buf)
            } else {
                self.sse.decode(&mut self.buf)
            };
            let frame = match frame {
                Ok(Some(frame)) => frame,
                Ok(None) => return Ok(()),
                Err(e) => return Err(ProviderError::bad_response(format!("Gemini stream: {e}"))),
            };
            if let Some(data) = frame.data.as_deref() {
                self.on_event(data, out)?;
            }
        }
    }

    fn chunk(&self, index: u32, delta: Delta, finish: Option<FinishReason>) -> ChatChunk {
        let mut chunk = ChatChunk::delta(
            self.id.as_deref().unwrap_or("chatcmpl-gemini"),
            &self.model,
            0,
            delta,
            finish,
        );
        if let Some(choice) = chunk.choices.first_mut() {
            choice.index = index;
        }
        chunk
    }

    fn state(&mut self, index: u32) -> usize {
        match self.candidates.iter().position(|c| c.index == index) {
            Some(pos) => pos,
            None => {
                self.candidates.push(CandidateState {
                    index,
                    role_sent: false,
                    calls: 0,
                });
                self.candidates.len() - 1
            }
        }
    }

    /// Emits the role chunk of candidate `index` once.
    fn role(&mut self, index: u32, out: &mut Vec<ChatChunk>) -> usize {
        let pos = self.state(index);
        if !self.candidates[pos].role_sent {
            self.candidates[pos].role_sent = true;
            let delta = Delta {
                role: Some(Role::Assistant),
                content: Some(String::new()),
                ..Delta::default()
            };
            out.push(self.chunk(index, delta, None));
        }
        pos
    }

    fn on_event(&mut self, data: &str, out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        if data.trim().is_empty() {
            return Ok(());
        }
        let resp: WireResponse = serde_json::from_str(data)
            .map_err(|e| ProviderError::bad_response(format!("unreadable Gemini event: {e}")))?;
        if let Some(err) = &resp.error {
            return Err(google_error(err.code.unwrap_or(500), err));
        }
        if self.id.is_none() {
            self.id = Some(response_id(resp.response_id.as_deref()));
        }
        if let Some(usage) = &resp.usage_metadata {
            self.usage = Some(usage.to_usage());
        }
        if resp.candidates.is_empty() {
            let blocked = resp
                .prompt_feedback
                .as_ref()
                .and_then(|f| f.block_reason.as_deref())
                .is_some();
            if blocked {
                self.role(0, out);
                out.push(self.chunk(0, Delta::default(), Some(FinishReason::ContentFilter)));
                self.finished = true;
            }
            return Ok(());
        }
        for cand in &resp.candidates {
            let index = cand.index.unwrap_or(0);
            let pos = self.role(index, out);
            for part in cand.content.iter().flat_map(|c| &c.parts) {
                let delta = if let Some(call) = &part.function_call {
                    let n = self.candidates[pos].calls;
                    self.candidates[pos].calls += 1;
                    Delta {
                        tool_calls: Some(vec![ToolCallDelta {
                            index: n,
                            id: Some(tool_call_id(n)),
                            kind: Some("function".to_owned()),
                            function: FunctionCallDelta {
                                name: Some(call.name.clone()),
                                arguments: Some(call_arguments(call)),
                            },
                        }]),
                        ..Delta::default()
                    }
                } else {
                    match &part.text {
                        Some(t) if !t.is_empty() && part.thought => Delta {
                            reasoning_content: Some(t.clone()),
                            ..Delta::default()
                        },
                        Some(t) if !t.is_empty() => Delta {
                            content: Some(t.clone()),
                            ..Delta::default()
                        },
                        _ => continue,
                    }
                };
                out.push(self.chunk(index, delta, None));
            }
            if let Some(reason) = cand.finish_reason.as_deref() {
                let has_calls = self.candidates[pos].calls > 0;
                let finish = map_finish_reason(reason, has_calls);
                out.push(self.chunk(index, Delta::default(), Some(finish)));
                self.finished = true;
            }
        }
        Ok(())
    }
}

impl StreamDecoder for GeminiStreamDecoder {
    fn feed(&mut self, bytes: &[u8], out: &mut Vec<ChatChunk>) -> Result<(), ProviderError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.buf.extend_from_slice(bytes);
        let result = self.drain(false, out);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
        }
        result
    }

    fn finish(&mut self, out: &mut Vec<ChatChunk>) -> Result<bool, ProviderError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.drain(true, out)?;
        let truncated = self.sse.finish(&mut self.buf);
        if let Some(usage) = self.usage {
            let id = self.id.as_deref().unwrap_or("chatcmpl-gemini");
            out.push(ChatChunk::usage(id, &self.model, 0, usage));
        }
        Ok(self.finished && !truncated)
    }
}

// === errors ===

#[derive(Debug, Default, Clone, Deserialize)]
struct GoogleError {
    #[serde(default)]
    code: Option<u16>,
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    details: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct ErrorEnvelope {
    error: GoogleError,
}

/// Maps a non-2xx Gemini answer. The body is Google's `{"error":{code,message,status,details}}`
/// (a streaming call may wrap it in a one-element array); its `status` string decides the kind,
/// the HTTP status is the fallback when the body cannot be read.
pub fn map_error_body(status: u16, body: &[u8]) -> ProviderError {
    // Parsed through `Value` first: serde would happily read `[{"error":..}]` positionally
    // into the envelope struct and lose the error.
    let parsed = serde_json::from_slice::<Value>(body).ok().and_then(|v| {
        let first = match v {
            Value::Array(items) => items.into_iter().next()?,
            other => other,
        };
        serde_json::from_value::<ErrorEnvelope>(first).ok()
    });
    match parsed {
        Some(env) => google_error(status, &env.error),
        None => ProviderError::new(
            kind_for_status(status),
            status,
            format!("Gemini answered HTTP {status}"),
        ),
    }
}

fn google_error(status: u16, err: &GoogleError) -> ProviderError {
    let api_key_invalid = err
        .details
        .iter()
        .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"));
    let kind = match err.status.as_str() {
        // An invalid key is reported as 400 INVALID_ARGUMENT with reason API_KEY_INVALID.
        _ if api_key_invalid => ErrorKind::Authentication,
        "RESOURCE_EXHAUSTED" => ErrorKind::RateLimited,
        "UNAVAILABLE" | "INTERNAL" | "DEADLINE_EXCEEDED" => ErrorKind::Unavailable,
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
            if looks_like_context_length(&err.message) {
                ErrorKind::ContextLength
            } else {
                ErrorKind::InvalidRequest
            }
        }
        "PERMISSION_DENIED" | "UNAUTHENTICATED" => ErrorKind::Authentication,
        "NOT_FOUND" => ErrorKind::NotFound,
        _ => kind_for_status(status),
    };
    let message = if err.message.is_empty() {
        format!("Gemini answered HTTP {status}")
    } else {
        err.message.clone()
    };
    let mut error = ProviderError::new(kind, status, message);
    error.retry_after = err.details.iter().find_map(|d| {
        let is_retry_info = d
            .get("@type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"));
        if !is_retry_info {
            return None;
        }
        d.get("retryDelay")
            .and_then(Value::as_str)
            .and_then(parse_duration_secs)
    });
    error
}

/// Reads a protobuf JSON `Duration` ("30s", "1.5s") as whole seconds, rounded up.
pub fn parse_duration_secs(text: &str) -> Option<u64> {
    let secs: f64 = text.trim().strip_suffix('s')?.parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Some(secs.ceil().min(u64::MAX as f64) as u64)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn path_refuses_odd_models() {
        assert_eq!(
            request_path("", "v1beta", "gemini-2.5-flash", false).unwrap(),
            "/v1beta/models/gemini-2.5-flash:generateContent"
        );
        assert_eq!(
            request_path("/g/", "v1", "models/gemini-2.0-flash", true).unwrap(),
            "/g/v1/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
        );
        assert_eq!(
            request_path("", "v1beta", "tunedModels/abc-1", false).unwrap(),
            "/v1beta/tunedModels/abc-1:generateContent"
        );
        for bad in ["", "a/b", "m?key=x", "m:x", "../m", "models/", "m b"] {
            assert!(request_path("", "v1beta", bad, false).is_err(), "{bad}");
        }
        assert!(request_path("", "v1/../x", "m", false).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration_secs("30s"), Some(30));
        assert_eq!(parse_duration_secs("1.2s"), Some(2));
        assert_eq!(parse_duration_secs("0s"), Some(0));
        assert_eq!(parse_duration_secs("30"), None);
        assert_eq!(parse_duration_secs("-1s"), None);
    }

    #[test]
    fn mime_guess() {
        assert_eq!(guess_mime("https://x/a.PNG?x=1"), "image/png");
        assert_eq!(guess_mime("https://x/a"), "image/jpeg");
        assert_eq!(guess_mime("https://x.y/a.pdf#p"), "application/pdf");
    }

    #[test]
    fn finish_reasons() {
        assert_eq!(map_finish_reason("STOP", false), FinishReason::Stop);
        assert_eq!(map_finish_reason("STOP", true), FinishReason::ToolCalls);
        assert_eq!(map_finish_reason("MAX_TOKENS", true), FinishReason::Length);
        assert_eq!(
            map_finish_reason("SPII", false),
            FinishReason::ContentFilter
        );
        assert_eq!(map_finish_reason("OTHER", false), FinishReason::Stop);
    }
}
