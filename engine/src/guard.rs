//! Guardrails on the request path: which profile a request runs under, its request body
//! scanned before any upstream call (a `block` rule answers 400, masked values are spliced
//! in), response bodies scanned before they are sent, and the hits that go into the usage
//! record. The scanning itself is `tollgate_policy::guardrails`; this module finds the text in
//! JSON bodies: every string, keys included, except values the model never reads as text
//! (ids, enums, URLs, base64 payloads).

use std::cell::RefCell;
use std::ops::Range;

use tollgate_policy::governance::KeyEntry;
use tollgate_policy::guardrails::{Profile, Session, Side};
use tollgate_protocol::json_text::{escape_into, for_each_string, splice, unescape_into};

use crate::error::GatewayError;
use crate::shared::Shared;
use crate::store::record::GuardHit;
use crate::worker::Core;

/// Values under these keys are identifiers, enums, URLs or binary payloads, not text a model
/// reads. Skipping them saves time and, for base64 (`data`, image `url`s), keeps a digit run
/// that happens to look like a phone number from being rewritten.
const NOT_TEXT: &[&[u8]] = &[
    b"model",
    b"role",
    b"type",
    b"id",
    b"object",
    b"tool_call_id",
    b"tool_use_id",
    b"url",
    b"data",
    b"media_type",
    b"detail",
    b"format",
    b"encoding_format",
    b"finish_reason",
    b"stop_reason",
    b"system_fingerprint",
    b"service_tier",
    b"signature",
    b"user",
];

/// Why a body was not passed on.
enum Unscanned {
    /// A `block` rule matched.
    Blocked(GatewayError),
    /// Not JSON: nothing could be scanned.
    NotJson(String),
}

/// Field names of the OpenAI and Anthropic APIs (and of JSON schemas in tool definitions):
/// as object keys they are protocol, not text anyone wrote, so they are not scanned (their
/// values are). Any other key, a tool parameter's name say, is scanned like a value.
fn is_protocol_key(key: &[u8]) -> bool {
    matches!(
        key,
        b"model"
            | b"messages"
            | b"role"
            | b"content"
            | b"name"
            | b"tool_calls"
            | b"tool_call_id"
            | b"function"
            | b"arguments"
            | b"type"
            | b"id"
            | b"text"
            | b"image_url"
            | b"url"
            | b"detail"
            | b"input_audio"
            | b"data"
            | b"format"
            | b"tools"
            | b"tool_choice"
            | b"parameters"
            | b"description"
            | b"properties"
            | b"required"
            | b"items"
            | b"enum"
            | b"stream"
            | b"stream_options"
            | b"include_usage"
            | b"max_tokens"
            | b"max_completion_tokens"
            | b"temperature"
            | b"top_p"
            | b"top_k"
            | b"n"
            | b"stop"
            | b"presence_penalty"
            | b"frequency_penalty"
            | b"logit_bias"
            | b"logprobs"
            | b"top_logprobs"
            | b"user"
            | b"seed"
            | b"response_format"
            | b"json_schema"
            | b"schema"
            | b"strict"
            | b"parallel_tool_calls"
            | b"service_tier"
            | b"metadata"
            | b"store"
            | b"reasoning_effort"
            | b"prompt"
            | b"suffix"
            | b"input"
            | b"encoding_format"
            | b"dimensions"
            | b"system"
            | b"stop_sequences"
            | b"tool_use_id"
            | b"is_error"
            | b"source"
            | b"media_type"
            | b"cache_control"
            | b"thinking"
            | b"budget_tokens"
            | b"signature"
            | b"object"
            | b"created"
            | b"choices"
            | b"index"
            | b"message"
            | b"finish_reason"
            | b"usage"
            | b"prompt_tokens"
            | b"completion_tokens"
            | b"total_tokens"
            | b"prompt_tokens_details"
            | b"completion_tokens_details"
            | b"cached_tokens"
            | b"reasoning_tokens"
            | b"system_fingerprint"
            | b"refusal"
            | b"delta"
            | b"input_tokens"
            | b"output_tokens"
            | b"stop_reason"
            | b"stop_sequence"
            | b"cache_creation_input_tokens"
            | b"cache_read_input_tokens"
            | b"embedding"
            | b"title"
            | b"default"
            | b"minimum"
            | b"maximum"
            | b"additionalProperties"
            | b"anyOf"
            | b"oneOf"
            | b"allOf"
    )
}

/// One request's guardrails: the profile it runs under and what the scans found.
#[derive(Debug)]
pub(crate) struct Guard<'a> {
    /// Borrowed from the core's compiled config, which outlives the request: no reference
    /// count shared between cores is touched per request.
    profile: &'a Profile,
    session: RefCell<Session>,
}

impl<'a> Guard<'a> {
    /// The guard for a request made with `entry`: the profile the key (or its user, team or
    /// org) names, else the default profile; `None` when there is neither, or the profile has
    /// no rules.
    pub(crate) fn for_key(shared: &'a Shared, entry: &KeyEntry) -> Option<Guard<'a>> {
        let guardrails = &shared.guardrails;
        let profile = match entry.guardrails.as_deref() {
            Some(name) => guardrails.profile(name),
            None => guardrails.default_profile(),
        }?;
        if profile.is_idle(Side::Input) && profile.is_idle(Side::Output) {
            return None;
        }
        Some(Guard {
            profile: profile.as_ref(),
            session: RefCell::new(Session::new()),
        })
    }

    /// Scans a request body before any upstream call. `Ok(None)`: send it as it is.
    /// `Ok(Some(body))`: send this instead (masked values replaced by placeholders). A
    /// `block` rule gives 400 `content_policy_violation`; a body that is not JSON cannot be
    /// scanned and is refused.
    pub(crate) fn scan_request(
        &self,
        core: &Core<'_>,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        self.scan(core, Side::Input, body).map_err(|e| match e {
            Unscanned::Blocked(e) => e,
            Unscanned::NotJson(why) => {
                GatewayError::InvalidRequest(tollgate_protocol::openai::RequestError {
                    message: format!("The request body is not valid JSON: {why}"),
                    param: None,
                    code: None,
                })
            }
        })
    }

    /// Scans a complete (non-streamed) response body from `provider` before it is sent: the
    /// same answers as [`Guard::scan_request`], masking or restoring placeholders; a body that
    /// is not JSON is an upstream protocol error rather than text let through unscanned.
    pub(crate) fn scan_response(
        &self,
        core: &Core<'_>,
        provider: &str,
        body: &[u8],
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        self.scan(core, Side::Output, body).map_err(|e| match e {
            Unscanned::Blocked(e) => e,
            Unscanned::NotJson(why) => GatewayError::UpstreamProtocol {
                provider: provider.to_owned(),
                reason: format!("the response body could not be scanned: {why}"),
            },
        })
    }

    fn scan(&self, core: &Core<'_>, side: Side, body: &[u8]) -> Result<Option<Vec<u8>>, Unscanned> {
        if self.profile.is_idle(side) {
            return Ok(None);
        }
        let mut scratch = core.guard_scratch.borrow_mut();
        let mut session = self.session.borrow_mut();
        let mut edits: Vec<(Range<usize>, Vec<u8>)> = Vec::new();
        let mut blocked = None;
        let mut text = String::new();
        let walked = for_each_string(body, |s| {
            let skip = if s.is_key {
                is_protocol_key(s.raw)
            } else {
                s.key.is_some_and(|k| NOT_TEXT.contains(&k))
            };
            if blocked.is_some() || skip {
                return;
            }
            let t = if s.escaped {
                text.clear();
                // The walker only reports strings that decode.
                if unescape_into(s.raw, &mut text).is_err() {
                    return;
                }
                text.as_str()
            } else {
                match std::str::from_utf8(s.raw) {
                    Ok(t) => t,
                    Err(_) => return,
                }
            };
            match self.profile.scan_text(side, t, &mut session, &mut scratch) {
                Ok(None) => {}
                Ok(Some(rewritten)) => {
                    let mut escaped = Vec::with_capacity(rewritten.len() + 8);
                    escape_into(&rewritten, &mut escaped);
                    edits.push((s.span.clone(), escaped));
                }
                Err(b) => blocked = Some(b),
            }
        });
        if let Some(b) = blocked {
            return Err(Unscanned::Blocked(GatewayError::ContentPolicy {
                rule: self.profile.rules()[b.rule].id.clone(),
                what: match side {
                    Side::Input => "request",
                    Side::Output => "response",
                },
            }));
        }
        walked.map_err(|e| Unscanned::NotJson(e.to_string()))?;
        Ok((!edits.is_empty()).then(|| splice(body, &edits)))
    }

    /// The profile's name, for metrics.
    pub(crate) fn profile_name(&self) -> &'a str {
        self.profile.name()
    }

    /// The rules that fired, for the usage record.
    pub(crate) fn hits(&self) -> Vec<GuardHit> {
        let session = self.session.borrow();
        session
            .hits()
            .iter()
            .map(|h| {
                let rule = &self.profile.rules()[h.rule];
                GuardHit {
                    rule: rule.id.clone(),
                    action: rule.action.as_str(),
                    side: h.side.as_str(),
                    count: h.count,
                }
            })
            .collect()
    }
}

/// A text field of a streamed answer: each is scanned as one continuous text across events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    /// `delta.content` (chat).
    Content,
    /// `delta.refusal`.
    Refusal,
    /// `delta.reasoning_content`.
    Reasoning,
    /// `text` (completions).
    Text,
    /// `delta.tool_calls[i].function.arguments`, by tool-call index.
    Arguments(u64),
}

/// A channel: one field of one choice.
type Channel = (u64, Field);

/// Output guardrails across the events of one OpenAI-format stream: every text field of
/// every choice is its own continuous text, scanned as it arrives; text that may still turn
/// out to be part of a match is held back and sent with a later event (at the latest with
/// the choice's `finish_reason`, or in one extra event before `[DONE]`).
#[derive(Debug)]
pub(crate) struct StreamGuard<'g> {
    guard: &'g Guard<'g>,
    channels: Vec<(Channel, tollgate_policy::guardrails::TextScan)>,
    /// `id`, `object`, `created`, `model` of the last event: the envelope of an extra event.
    envelope: Option<serde_json::Map<String, serde_json::Value>>,
    /// A `block` rule matched: the event being scanned carries only the text before the
    /// match, and nothing is scanned or sent after it.
    blocked: Option<GatewayError>,
}

use tollgate_protocol::chat::{ChatChunk, Delta, FunctionCallDelta, ToolCallDelta};

impl<'g> StreamGuard<'g> {
    /// A stream guard, when the profile looks at output at all.
    pub(crate) fn new(guard: &'g Guard<'g>) -> Option<Self> {
        (!guard.profile.is_idle(Side::Output)).then(|| StreamGuard {
            guard,
            channels: Vec::new(),
            envelope: None,
            blocked: None,
        })
    }

    /// The error to end the stream with, once a `block` rule has matched: send the event
    /// just scanned (it holds the text before the match), then this.
    pub(crate) fn take_blocked(&mut self) -> Option<GatewayError> {
        self.blocked.take()
    }

    /// One event's JSON (a chat or completions chunk). `Ok(None)`: forward it unchanged.
    /// `Ok(Some(json))`: forward this instead. Then check [`StreamGuard::take_blocked`].
    pub(crate) fn openai_event(
        &mut self,
        core: &Core<'_>,
        data: &str,
    ) -> Result<Option<String>, GatewayError> {
        use serde_json::Value;

        // Not JSON (an upstream's own error text, say): nothing to scan.
        let Ok(mut event) = serde_json::from_str::<Value>(data) else {
            return Ok(None);
        };
        let mut changed = false;
        if let Some(object) = event.as_object() {
            let envelope = ["id", "object", "created", "model"]
                .iter()
                .filter_map(|k| object.get(*k).map(|v| ((*k).to_owned(), v.clone())))
                .collect();
            self.envelope = Some(envelope);
        }
        let Some(choices) = event.get_mut("choices").and_then(Value::as_array_mut) else {
            return Ok(None);
        };
        for choice in choices {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            if let Some(Value::String(text)) = choice.get_mut("text") {
                changed |= self.rewrite(core, (index, Field::Text), text)?;
            }
            if let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) {
                for (name, field) in [
                    ("content", Field::Content),
                    ("refusal", Field::Refusal),
                    ("reasoning_content", Field::Reasoning),
                ] {
                    if let Some(Value::String(text)) = delta.get_mut(name) {
                        changed |= self.rewrite(core, (index, field), text)?;
                    }
                }
                if let Some(calls) = delta.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    for call in calls {
                        let tool = call.get("index").and_then(Value::as_u64).unwrap_or(0);
                        if let Some(Value::String(text)) = call
                            .get_mut("function")
                            .and_then(|f| f.get_mut("arguments"))
                        {
                            changed |= self.rewrite(core, (index, Field::Arguments(tool)), text)?;
                        }
                    }
                }
            }
            if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
                let held = self.finish(core, |c| c.0 == index)?;
                if !held.is_empty() {
                    changed = true;
                    append_held(choice, held);
                }
            }
        }
        Ok(changed.then(|| event.to_string()))
    }

    /// The stream's `[DONE]`: text still held for choices that never sent a `finish_reason`,
    /// as one extra event to send before it.
    pub(crate) fn openai_done(&mut self, core: &Core<'_>) -> Result<Option<String>, GatewayError> {
        use serde_json::Value;

        let held = self.finish(core, |_| true)?;
        if held.is_empty() {
            return Ok(None);
        }
        let mut choices: Vec<Value> = Vec::new();
        for (channel, text) in held {
            let at = match choices
                .iter()
                .position(|c| c["index"].as_u64() == Some(channel.0))
            {
                Some(i) => i,
                None => {
                    choices.push(
                        serde_json::json!({"index": channel.0, "delta": {}, "finish_reason": null}),
                    );
                    choices.len() - 1
                }
            };
            append_held(&mut choices[at], vec![(channel, text)]);
        }
        let mut event = self.envelope.clone().unwrap_or_default();
        event.insert("choices".into(), Value::Array(choices));
        Ok(Some(Value::Object(event).to_string()))
    }

    /// The same for a stream translated from another provider's format, chunk by chunk
    /// before it is encoded for the client.
    pub(crate) fn chat_chunk(
        &mut self,
        core: &Core<'_>,
        chunk: &mut ChatChunk,
    ) -> Result<(), GatewayError> {
        for choice in &mut chunk.choices {
            let index = u64::from(choice.index);
            let delta = &mut choice.delta;
            if let Some(text) = &mut delta.content {
                self.rewrite(core, (index, Field::Content), text)?;
            }
            if let Some(text) = &mut delta.reasoning_content {
                self.rewrite(core, (index, Field::Reasoning), text)?;
            }
            for call in delta.tool_calls.iter_mut().flatten() {
                if let Some(text) = &mut call.function.arguments {
                    let channel = (index, Field::Arguments(u64::from(call.index)));
                    self.rewrite(core, channel, text)?;
                }
            }
            if choice.finish_reason.is_some() {
                for ((_, field), text) in self.finish(core, |c| c.0 == index)? {
                    append_to_delta(delta, field, &text);
                }
            }
        }
        Ok(())
    }

    /// The end of a translated stream: text still held for choices that never finished, as
    /// one extra chunk shaped like `last`.
    pub(crate) fn chat_done(
        &mut self,
        core: &Core<'_>,
        id: &str,
        model: &str,
        created: u64,
    ) -> Result<Option<ChatChunk>, GatewayError> {
        let held = self.finish(core, |_| true)?;
        if held.is_empty() {
            return Ok(None);
        }
        let mut chunk = ChatChunk::delta(id, model, created, Delta::default(), None);
        chunk.choices.clear();
        for ((index, field), text) in held {
            let index = u32::try_from(index).unwrap_or(u32::MAX);
            let at = match chunk.choices.iter().position(|c| c.index == index) {
                Some(i) => i,
                None => {
                    chunk.choices.push(tollgate_protocol::chat::ChunkChoice {
                        index,
                        delta: Delta::default(),
                        finish_reason: None,
                    });
                    chunk.choices.len() - 1
                }
            };
            append_to_delta(&mut chunk.choices[at].delta, field, &text);
        }
        Ok(Some(chunk))
    }

    /// One event of a native Anthropic stream, written to `out` as it should go to the
    /// client: text, thinking and tool-input deltas scanned per content block; at a block's
    /// `content_block_stop`, text it still held goes out first as one more delta. Then check
    /// [`StreamGuard::take_blocked`].
    pub(crate) fn anthropic_frame(
        &mut self,
        core: &Core<'_>,
        event: Option<&str>,
        data: Option<&str>,
        raw: &[u8],
        out: &mut bytes::BytesMut,
    ) -> Result<(), GatewayError> {
        use serde_json::Value;

        let parsed = data.and_then(|d| serde_json::from_str::<Value>(d).ok());
        let index = parsed
            .as_ref()
            .and_then(|v| v.get("index"))
            .and_then(Value::as_u64);
        match (event, parsed, index) {
            (Some("content_block_delta"), Some(mut v), Some(index)) => {
                let kind = v["delta"]["type"].as_str().unwrap_or_default().to_owned();
                let Some((name, field)) = anthropic_field(&kind) else {
                    out.extend_from_slice(raw);
                    return Ok(());
                };
                let mut changed = false;
                if let Some(Value::String(text)) = v["delta"].get_mut(name) {
                    changed = self.rewrite(core, (index, field), text)?;
                }
                if changed {
                    write_named_event(out, "content_block_delta", &v.to_string());
                } else {
                    out.extend_from_slice(raw);
                }
            }
            (Some("content_block_stop"), _, Some(index)) => {
                for ((index, field), text) in self.finish(core, |c| c.0 == index)? {
                    let (name, kind) = match field {
                        Field::Arguments(_) => ("partial_json", "input_json_delta"),
                        Field::Reasoning => ("thinking", "thinking_delta"),
                        _ => ("text", "text_delta"),
                    };
                    let extra = serde_json::json!({
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": kind, name: text},
                    });
                    write_named_event(out, "content_block_delta", &extra.to_string());
                }
                if self.blocked.is_none() {
                    out.extend_from_slice(raw);
                }
            }
            _ => out.extend_from_slice(raw),
        }
        Ok(())
    }

    /// Scans the next piece of a channel in place; true when it changed. After a `block`
    /// match the piece keeps only the text before the match, and later pieces are emptied.
    fn rewrite(
        &mut self,
        core: &Core<'_>,
        channel: Channel,
        text: &mut String,
    ) -> Result<bool, GatewayError> {
        if self.blocked.is_some() {
            let changed = !text.is_empty();
            text.clear();
            return Ok(changed);
        }
        let slot = match self.channels.iter().position(|(c, _)| *c == channel) {
            Some(i) => i,
            None => {
                self.channels.push((
                    channel,
                    tollgate_policy::guardrails::TextScan::new(Side::Output),
                ));
                self.channels.len() - 1
            }
        };
        let mut out = String::with_capacity(text.len());
        let scanned = self.channels[slot].1.push(
            self.guard.profile,
            text,
            &mut self.guard.session.borrow_mut(),
            &mut core.guard_scratch.borrow_mut(),
            &mut out,
        );
        if let Err(b) = scanned {
            self.blocked = Some(self.blocked_error(b));
        }
        if out == *text {
            return Ok(false);
        }
        *text = out;
        Ok(true)
    }

    /// Ends the channels `which` selects; returns the text they still held.
    fn finish(
        &mut self,
        core: &Core<'_>,
        which: impl Fn(&Channel) -> bool,
    ) -> Result<Vec<(Channel, String)>, GatewayError> {
        let mut held = Vec::new();
        if self.blocked.is_some() {
            return Ok(held);
        }
        let mut i = 0;
        while i < self.channels.len() {
            if !which(&self.channels[i].0) {
                i += 1;
                continue;
            }
            let (channel, mut scan) = self.channels.swap_remove(i);
            let mut out = String::new();
            scan.finish(
                self.guard.profile,
                &mut self.guard.session.borrow_mut(),
                &mut core.guard_scratch.borrow_mut(),
                &mut out,
            )
            .map_err(|b| self.blocked_error(b))?;
            if !out.is_empty() {
                held.push((channel, out));
            }
        }
        held.sort_by_key(|(c, _)| match c.1 {
            Field::Arguments(t) => (c.0, 1, t),
            _ => (c.0, 0, 0),
        });
        Ok(held)
    }

    fn blocked_error(&self, b: tollgate_policy::guardrails::Blocked) -> GatewayError {
        GatewayError::ContentPolicy {
            rule: self.guard.profile.rules()[b.rule].id.clone(),
            what: "response",
        }
    }
}

/// The field an Anthropic delta type carries its text in, and the channel field it is.
fn anthropic_field(kind: &str) -> Option<(&'static str, Field)> {
    match kind {
        "text_delta" => Some(("text", Field::Content)),
        "thinking_delta" => Some(("thinking", Field::Reasoning)),
        "input_json_delta" => Some(("partial_json", Field::Arguments(0))),
        _ => None,
    }
}

/// One named SSE event with a JSON payload (which never contains a line break).
fn write_named_event(out: &mut bytes::BytesMut, event: &str, json: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(json.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Adds held-back text to a typed delta (see [`append_held`]).
fn append_to_delta(delta: &mut Delta, field: Field, text: &str) {
    let slot = match field {
        Field::Content | Field::Text | Field::Refusal => &mut delta.content,
        Field::Reasoning => &mut delta.reasoning_content,
        Field::Arguments(tool) => {
            let tool = u32::try_from(tool).unwrap_or(u32::MAX);
            let calls = delta.tool_calls.get_or_insert_with(Vec::new);
            let at = match calls.iter().position(|c| c.index == tool) {
                Some(i) => i,
                None => {
                    calls.push(ToolCallDelta {
                        index: tool,
                        function: FunctionCallDelta::default(),
                        ..ToolCallDelta::default()
                    });
                    calls.len() - 1
                }
            };
            &mut calls[at].function.arguments
        }
    };
    slot.get_or_insert_with(String::new).push_str(text);
}

/// Adds held-back text to a choice of an event: appended to the field's string there, or
/// added as that field.
fn append_held(choice: &mut serde_json::Value, held: Vec<(Channel, String)>) {
    use serde_json::{json, Value};

    fn append(slot: &mut Value, text: &str) {
        match slot {
            Value::String(s) => s.push_str(text),
            other => *other = Value::String(text.to_owned()),
        }
    }
    for ((_, field), text) in held {
        match field {
            Field::Text => append(&mut choice["text"], &text),
            Field::Content | Field::Refusal | Field::Reasoning => {
                let name = match field {
                    Field::Content => "content",
                    Field::Refusal => "refusal",
                    _ => "reasoning_content",
                };
                if !choice["delta"].is_object() {
                    choice["delta"] = json!({});
                }
                append(&mut choice["delta"][name], &text);
            }
            Field::Arguments(tool) => {
                if !choice["delta"].is_object() {
                    choice["delta"] = json!({});
                }
                let delta = &mut choice["delta"];
                if !delta["tool_calls"].is_array() {
                    delta["tool_calls"] = json!([]);
                }
                let Some(calls) = delta["tool_calls"].as_array_mut() else {
                    continue;
                };
                match calls.iter_mut().find(|c| c["index"].as_u64() == Some(tool)) {
                    Some(call) => {
                        if !call["function"].is_object() {
                            call["function"] = json!({});
                        }
                        append(&mut call["function"]["arguments"], &text);
                    }
                    None => calls.push(json!({"index": tool, "function": {"arguments": text}})),
                }
            }
        }
    }
}
