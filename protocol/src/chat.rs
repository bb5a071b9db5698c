//! The canonical chat model every provider adapter translates to and from: OpenAI's Chat
//! Completions shapes as typed serde structs (request, response, stream chunk, usage, errors).
//!
//! Only translated traffic goes through these types. An OpenAI-compatible upstream still gets
//! the client's original bytes with `model` spliced (see `openai`), never a re-encoding.
//! Fields the gateway does not model are kept in `extra` maps so a translation never silently
//! drops what a client sent; an adapter decides what its provider can take.

use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A chat completion request (`POST /v1/chat/completions`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatRequest {
    /// The model the client asked for (the gateway rewrites it per deployment).
    pub model: String,
    /// The conversation, oldest first.
    pub messages: Vec<Message>,
    /// Stream the answer as server-sent events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    /// Streaming options (`include_usage`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<StreamOptions>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    /// Legacy output cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Output cap (newer name; wins over `max_tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    /// Stop sequences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Stop>,
    /// Tools the model may call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    /// How the model should use tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    /// Whether several tool calls may come in one turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    /// Plain text, JSON mode or a JSON schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<ResponseFormat>,
    /// End-user identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Everything else the client sent (n, seed, penalties, logprobs, metadata...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ChatRequest {
    /// The effective output cap: `max_completion_tokens`, else `max_tokens`.
    pub fn output_cap(&self) -> Option<u64> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    /// True when the client asked for a stream.
    pub fn is_stream(&self) -> bool {
        self.stream == Some(true)
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StreamOptions {
    /// Send a final usage chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_usage: Option<bool>,
    /// Anything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One or several stop sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// A single sequence.
    One(String),
    /// Several sequences.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences as a list.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s.clone()],
            Stop::Many(v) => v.clone(),
        }
    }
}

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// Instructions (OpenAI's newer name for system on reasoning models).
    Developer,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool result.
    Tool,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    /// Who said it.
    pub role: Role,
    /// Text or parts; `None` for an assistant turn that only calls tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Content>,
    /// Optional participant name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tool calls made by an assistant turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
    /// For `role: tool`: which call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// The model's refusal text, if it refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Reasoning ("thinking") text, passed through from providers that expose it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Anything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Message {
    /// A plain text message.
    pub fn text(role: Role, text: impl Into<String>) -> Self {
        Message {
            role,
            content: Some(Content::Text(text.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            refusal: None,
            reasoning_content: None,
            extra: Map::new(),
        }
    }

    /// All text of the message joined (parts other than text are skipped).
    pub fn text_content(&self) -> String {
        match &self.content {
            None => String::new(),
            Some(Content::Text(t)) => t.clone(),
            Some(Content::Parts(parts)) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::Text { text } => Some(text.as_str()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .join(""),
        }
    }
}

/// Message content: a string or a list of typed parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Typed parts (text, images...).
    Parts(Vec<ContentPart>),
}

/// One typed part of message content.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// An image by URL or `data:` URL.
    ImageUrl {
        /// The image.
        image_url: ImageUrl,
    },
    /// Any other part type, kept as sent.
    #[serde(untagged)]
    Other(Value),
}

/// An image reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageUrl {
    /// `https://...` or `data:<media type>;base64,<data>`.
    pub url: String,
    /// `low`, `high` or `auto`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ImageUrl {
    /// For a `data:` URL: (media type, base64 data).
    pub fn as_data(&self) -> Option<(&str, &str)> {
        let rest = self.url.strip_prefix("data:")?;
        let (media, data) = rest.split_once(";base64,")?;
        Some((media, data))
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tool {
    /// Always `function` today.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDef,
}

/// A callable function's definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionDef {
    /// Name the model calls it by.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    /// Strict schema adherence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
}

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `"none"`, `"auto"` or `"required"`.
    Mode(String),
    /// A specific function.
    Named(NamedToolChoice),
}

/// `{"type":"function","function":{"name":...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedToolChoice {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function to call.
    pub function: FunctionName,
}

/// A function named by a tool choice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionName {
    /// Its name.
    pub name: String,
}

/// A tool call made by the model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Call id, echoed by the tool result.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Which function, with what arguments.
    pub function: FunctionCall,
}

/// The function half of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// Function name.
    pub name: String,
    /// Arguments as a JSON text.
    pub arguments: String,
}

/// `response_format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON matching a schema.
    JsonSchema {
        /// `{name, schema, strict?, description?}`.
        json_schema: Value,
    },
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Natural end or a stop sequence.
    Stop,
    /// Hit the output cap.
    Length,
    /// The model called tools.
    ToolCalls,
    /// Withheld by a content filter.
    ContentFilter,
}

/// Token usage as OpenAI reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatUsage {
    /// Input tokens (including cached ones).
    pub prompt_tokens: u64,
    /// Output tokens.
    pub completion_tokens: u64,
    /// Sum of the two.
    pub total_tokens: u64,
    /// Cached input breakdown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptTokensDetails>,
}

impl ChatUsage {
    /// Usage from input/output/cached counts.
    pub fn new(prompt: u64, completion: u64, cached: u64) -> Self {
        ChatUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt + completion,
            prompt_tokens_details: (cached > 0).then_some(PromptTokensDetails {
                cached_tokens: cached,
            }),
        }
    }

    /// Cached input tokens (0 when not reported).
    pub fn cached_tokens(&self) -> u64 {
        self.prompt_tokens_details.map_or(0, |d| d.cached_tokens)
    }
}

/// `usage.prompt_tokens_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptTokensDetails {
    /// Input tokens served from the provider's prompt cache.
    #[serde(default)]
    pub cached_tokens: u64,
}

/// A non-streaming chat completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatResponse {
    /// Response id.
    pub id: String,
    /// Always `chat.completion`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// Answers (one unless `n` > 1).
    pub choices: Vec<Choice>,
    /// Token usage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
}

/// One answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Choice {
    /// Position among the choices.
    pub index: u32,
    /// The assistant message.
    pub message: Message,
    /// Why it stopped.
    pub finish_reason: Option<FinishReason>,
}

/// One streamed chunk (`chat.completion.chunk`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatChunk {
    /// Same id on every chunk of a stream.
    pub id: String,
    /// Always `chat.completion.chunk`.
    pub object: String,
    /// Unix seconds.
    pub created: u64,
    /// The model answering.
    pub model: String,
    /// Deltas (empty on the final usage chunk).
    pub choices: Vec<ChunkChoice>,
    /// Usage, on the final chunk only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
}

/// The delta of one choice in a chunk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChunkChoice {
    /// Which choice.
    pub index: u32,
    /// What was added.
    pub delta: Delta,
    /// Set on the choice's last chunk.
    pub finish_reason: Option<FinishReason>,
}

/// What a chunk adds to the assistant message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Delta {
    /// `assistant` on the first chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
    /// More text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// More reasoning text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Tool call pieces: the first piece of a call has id and name, later ones argument text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a streamed tool call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolCallDelta {
    /// Which tool call of this turn (0-based).
    pub index: u32,
    /// Call id (first piece only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function` (first piece only).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name (first piece) and argument text.
    pub function: FunctionCallDelta,
}

/// The function half of a tool-call piece.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionCallDelta {
    /// Function name (first piece only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// More argument text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
}

impl ChatChunk {
    /// A chunk with one choice carrying `delta`.
    pub fn delta(
        id: &str,
        model: &str,
        created: u64,
        delta: Delta,
        finish: Option<FinishReason>,
    ) -> Self {
        ChatChunk {
            id: id.to_owned(),
            object: "chat.completion.chunk".to_owned(),
            created,
            model: model.to_owned(),
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                finish_reason: finish,
            }],
            usage: None,
        }
    }

    /// The final usage-only chunk (`choices: []`).
    pub fn usage(id: &str, model: &str, created: u64, usage: ChatUsage) -> Self {
        ChatChunk {
            id: id.to_owned(),
            object: "chat.completion.chunk".to_owned(),
            created,
            model: model.to_owned(),
            choices: Vec::new(),
            usage: Some(usage),
        }
    }
}

// === impl Deserialize for ChatRequest, Message ===
//
// Hand-written because `#[serde(flatten)]` on `extra` makes serde buffer every field (the
// whole conversation) into an intermediate tree before reading it. Same contract as the
// derive: required fields, `null` as absent for optional ones, a repeated known field is an
// error, and every unknown field lands in `extra` (the last of repeated ones wins).

/// A key of a JSON object: one of the struct's fields (by position) or an unknown name.
enum FieldKey {
    Known(usize),
    Unknown(String),
}

/// Reads a key, matching it against a struct's field names.
struct FieldKeySeed(&'static [&'static str]);

impl<'de> DeserializeSeed<'de> for FieldKeySeed {
    type Value = FieldKey;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<FieldKey, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for FieldKeySeed {
    type Value = FieldKey;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldKey, E> {
        Ok(match self.0.iter().position(|name| *name == v) {
            Some(i) => FieldKey::Known(i),
            None => FieldKey::Unknown(v.to_owned()),
        })
    }
}

/// Reads the value of a known field into its slot, refusing a repeat.
fn put_field<'de, T: Deserialize<'de>, A: MapAccess<'de>>(
    slot: &mut Option<T>,
    name: &'static str,
    map: &mut A,
) -> Result<(), A::Error> {
    if slot.is_some() {
        return Err(de::Error::duplicate_field(name));
    }
    *slot = Some(map.next_value()?);
    Ok(())
}

const REQUEST_FIELDS: &[&str] = &[
    "model",
    "messages",
    "stream",
    "stream_options",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "response_format",
    "user",
];

impl<'de> Deserialize<'de> for ChatRequest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(ChatRequestVisitor)
    }
}

struct ChatRequestVisitor;

impl<'de> Visitor<'de> for ChatRequestVisitor {
    type Value = ChatRequest;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct ChatRequest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ChatRequest, A::Error> {
        let mut model = None;
        let mut messages = None;
        let mut stream = None;
        let mut stream_options = None;
        let mut temperature = None;
        let mut top_p = None;
        let mut max_tokens = None;
        let mut max_completion_tokens = None;
        let mut stop = None;
        let mut tools = None;
        let mut tool_choice = None;
        let mut parallel_tool_calls = None;
        let mut response_format = None;
        let mut user = None;
        let mut extra = Map::new();
        while let Some(key) = map.next_key_seed(FieldKeySeed(REQUEST_FIELDS))? {
            let m = &mut map;
            match key {
                FieldKey::Known(0) => put_field(&mut model, "model", m)?,
                FieldKey::Known(1) => put_field(&mut messages, "messages", m)?,
                FieldKey::Known(2) => put_field(&mut stream, "stream", m)?,
                FieldKey::Known(3) => put_field(&mut stream_options, "stream_options", m)?,
                FieldKey::Known(4) => put_field(&mut temperature, "temperature", m)?,
                FieldKey::Known(5) => put_field(&mut top_p, "top_p", m)?,
                FieldKey::Known(6) => put_field(&mut max_tokens, "max_tokens", m)?,
                FieldKey::Known(7) => {
                    put_field(&mut max_completion_tokens, "max_completion_tokens", m)?
                }
                FieldKey::Known(8) => put_field(&mut stop, "stop", m)?,
                FieldKey::Known(9) => put_field(&mut tools, "tools", m)?,
                FieldKey::Known(10) => put_field(&mut tool_choice, "tool_choice", m)?,
                FieldKey::Known(11) => {
                    put_field(&mut parallel_tool_calls, "parallel_tool_calls", m)?
                }
                FieldKey::Known(12) => put_field(&mut response_format, "response_format", m)?,
                FieldKey::Known(_) => put_field(&mut user, "user", m)?,
                FieldKey::Unknown(name) => {
                    extra.insert(name, m.next_value()?);
                }
            }
        }
        Ok(ChatRequest {
            model: model.ok_or_else(|| de::Error::missing_field("model"))?,
            messages: messages.ok_or_else(|| de::Error::missing_field("messages"))?,
            stream: stream.flatten(),
            stream_options: stream_options.flatten(),
            temperature: temperature.flatten(),
            top_p: top_p.flatten(),
            max_tokens: max_tokens.flatten(),
            max_completion_tokens: max_completion_tokens.flatten(),
            stop: stop.flatten(),
            tools: tools.flatten(),
            tool_choice: tool_choice.flatten(),
            parallel_tool_calls: parallel_tool_calls.flatten(),
            response_format: response_format.flatten(),
            user: user.flatten(),
            extra,
        })
    }
}

const MESSAGE_FIELDS: &[&str] = &[
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "refusal",
    "reasoning_content",
];

impl<'de> Deserialize<'de> for Message {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(MessageVisitor)
    }
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = Message;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct Message")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Message, A::Error> {
        let mut role = None;
        let mut content = None;
        let mut name = None;
        let mut tool_calls = None;
        let mut tool_call_id = None;
        let mut refusal = None;
        let mut reasoning_content = None;
        let mut extra = Map::new();
        while let Some(key) = map.next_key_seed(FieldKeySeed(MESSAGE_FIELDS))? {
            let m = &mut map;
            match key {
                FieldKey::Known(0) => put_field(&mut role, "role", m)?,
                FieldKey::Known(1) => put_field(&mut content, "content", m)?,
                FieldKey::Known(2) => put_field(&mut name, "name", m)?,
                FieldKey::Known(3) => put_field(&mut tool_calls, "tool_calls", m)?,
                FieldKey::Known(4) => put_field(&mut tool_call_id, "tool_call_id", m)?,
                FieldKey::Known(5) => put_field(&mut refusal, "refusal", m)?,
                FieldKey::Known(_) => put_field(&mut reasoning_content, "reasoning_content", m)?,
                FieldKey::Unknown(name) => {
                    extra.insert(name, m.next_value()?);
                }
            }
        }
        Ok(Message {
            role: role.ok_or_else(|| de::Error::missing_field("role"))?,
            content: content.flatten(),
            name: name.flatten(),
            tool_calls: tool_calls.flatten(),
            tool_call_id: tool_call_id.flatten(),
            refusal: refusal.flatten(),
            reasoning_content: reasoning_content.flatten(),
            extra,
        })
    }
}

// === impl Deserialize for Content ===
//
// By hand for the same reason: `#[serde(untagged)]` buffers the value to try each variant in
// turn, while the JSON type alone tells a string from a list of parts. Anything else gets
// the untagged derive's error.

const CONTENT_MISMATCH: &str = "data did not match any variant of untagged enum Content";

impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ContentVisitor)
    }
}

struct ContentVisitor;

impl<'de> Visitor<'de> for ContentVisitor {
    type Value = Content;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string or a list of content parts")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Content, E> {
        Ok(Content::Text(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Content, E> {
        Ok(Content::Text(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
        let mut parts = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            match seq.next_element::<ContentPart>() {
                Ok(Some(part)) => parts.push(part),
                Ok(None) => return Ok(Content::Parts(parts)),
                Err(_) => return Err(de::Error::custom(CONTENT_MISMATCH)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Content, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Err(de::Error::custom(CONTENT_MISMATCH))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Content, E> {
        Err(E::custom(CONTENT_MISMATCH))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Content, E> {
        Err(E::custom(CONTENT_MISMATCH))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Content, E> {
        Err(E::custom(CONTENT_MISMATCH))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Content, E> {
        Err(E::custom(CONTENT_MISMATCH))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Content, E> {
        Err(E::custom(CONTENT_MISMATCH))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_and_keeps_unknown_fields() {
        let src = r#"{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}},{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]},{"role":"assistant","content":null,"tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}}]},{"role":"tool","tool_call_id":"c1","content":"42"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":{"type":"function","function":{"name":"f"}},"stop":["x","y"],"response_format":{"type":"json_object"},"seed":7,"n":1}"#;
        let req: ChatRequest = serde_json::from_str(src).unwrap();
        assert_eq!(req.messages.len(), 4);
        assert_eq!(req.extra.get("seed"), Some(&Value::from(7)));
        assert_eq!(req.stop.as_ref().unwrap().to_vec(), vec!["x", "y"]);
        let Some(Content::Parts(parts)) = &req.messages[1].content else {
            panic!()
        };
        assert!(matches!(parts[2], ContentPart::Other(_)));
        let ContentPart::ImageUrl { image_url } = &parts[1] else {
            panic!()
        };
        assert_eq!(image_url.as_data(), Some(("image/png", "AAAA")));
        assert_eq!(req.messages[2].content, None);
        let back: Value = serde_json::to_value(&req).unwrap();
        let mut orig: Value = serde_json::from_str(src).unwrap();
        // `"content": null` and an absent content mean the same; it is written as absent.
        orig["messages"][2]
            .as_object_mut()
            .unwrap()
            .remove("content");
        assert_eq!(back, orig);
    }

    #[test]
    fn chunk_shapes() {
        let c = ChatChunk::usage("id", "m", 1, ChatUsage::new(3, 4, 1));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(v["choices"], serde_json::json!([]));
        assert_eq!(v["usage"]["total_tokens"], 7);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 1);
        let d = ChatChunk::delta(
            "id",
            "m",
            1,
            Delta {
                content: Some("x".into()),
                ..Delta::default()
            },
            None,
        );
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["choices"][0]["delta"], serde_json::json!({"content":"x"}));
        assert_eq!(v["choices"][0]["finish_reason"], Value::Null);
    }
}
