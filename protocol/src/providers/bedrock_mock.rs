//! The mock provider speaking Bedrock Runtime natively: plans answers to `Converse` (JSON) and
//! `ConverseStream` (`application/vnd.amazon.eventstream` frames with correct CRCs), with
//! Bedrock's own error bodies, so the Bedrock adapter can be exercised end to end without AWS.
//!
//! Like `crate::mock`, it must never read a clock, draw randomness or touch a socket: the same
//! request sequence always yields the same plans. It cannot see request headers, so it does not
//! check signatures. Faults and knobs follow `crate::mock` (`fault_for`); tool calls follow the
//! conformance convention shared by every vendor mock (see [`plan`]).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use super::bedrock::CONTENT_TYPE_EVENTSTREAM;
use super::eventstream::write_event;
use crate::mock::{
    body_plan, cap_tokens, estimate_tokens, fault_answer, fault_for, json_answer, pace_stream,
    padded_words, slow_body_if, usage, FaultKind, MockKnobs, MockPlan, MockRequest, MockStep,
    ToolTurn, CONTENT_TYPE_JSON, MOCK_TOOL_ARGUMENTS, MOCK_TOOL_ARGUMENT_HALVES, MOCK_TOOL_CALL_ID,
    MOCK_TOOL_RESULT_PREFIX,
};

/// `toolUseId` of the tool call the mock makes (the shared conformance convention).
pub const MOCK_TOOL_USE_ID: &str = MOCK_TOOL_CALL_ID;

/// Input of the tool call the mock makes, as JSON text (the shared conformance convention).
pub const MOCK_TOOL_INPUT: &str = MOCK_TOOL_ARGUMENTS;

/// The answer before framing: streamed deltas (each with the tokens it counts for) and the
/// stop reason.
struct Answer {
    kind: AnswerKind,
    deltas: Vec<(String, u64)>,
    stop_reason: &'static str,
}

enum AnswerKind {
    Text,
    Tool(String),
}

impl Answer {
    fn completion_tokens(&self) -> u64 {
        self.deltas.iter().map(|d| d.1).sum()
    }
}

// === plan ===

/// Plans the answer to one Bedrock Runtime request: `path` is the request path
/// (`[base]/model/<percent-encoded model id>/converse` or `.../converse-stream`), `body` the
/// Converse request, `request_index` counts requests from 0 (it drives the fault rate).
///
/// Model-name conventions and knob faults come from [`crate::mock::fault_for`]:
/// `mock-error-<status>` answers that status with Bedrock's `{"message": ...}` body,
/// `mock-reset` resets before any byte, `mock-cut` sends half the stream (never `messageStop`)
/// or half the JSON body and resets, `mock-hang` never answers, `mock-slow` waits longer,
/// `mock-slow-body` trickles the body. A body Bedrock would refuse gets a 400; an unknown
/// operation a 404.
///
/// Tool convention shared by every vendor mock: when the request offers tools and the last
/// message is a user turn with text, the answer is exactly one `toolUse` of the first tool, id
/// [`MOCK_TOOL_USE_ID`], input [`MOCK_TOOL_INPUT`], stop reason `tool_use` (streamed in
/// [`MOCK_TOOL_ARGUMENT_HALVES`]); when the last user turn carries a `toolResult`, the answer
/// is the text `Tool said: <tool result text>`; otherwise the usual mock text.
pub fn plan(path: &str, body: &[u8], knobs: &MockKnobs, request_index: u64) -> MockPlan {
    let (model, stream) = match parse_path(path) {
        Ok(call) => call,
        Err((status, message)) => return error_plan(status, &message, knobs.latency),
    };
    let inspected = match serde_json::from_slice::<Value>(body)
        .map_err(|e| format!("Malformed input request: {e}"))
        .and_then(|req| inspect(&req))
    {
        Ok(inspected) => inspected,
        Err(message) => return error_plan(400, &message, knobs.latency),
    };

    let (fault, latency) = fault_for(&model, knobs, request_index);
    if let Some(answer) = fault_answer(fault, |status| {
        error_plan(status, &injected_message(status), latency)
    }) {
        return answer;
    }

    let requested = knobs.requested_tokens(stream);
    let answer = answer(&inspected, requested, knobs.response_bytes, stream);
    let cut = fault == Some(FaultKind::CutStream);
    let plan = if stream {
        stream_plan(&answer, inspected.prompt_tokens, knobs, latency, cut)
    } else {
        json_plan(&answer, inspected.prompt_tokens, latency, cut)
    };
    slow_body_if(fault, plan)
}

/// Bedrock's error body: `{"message": ...}`.
pub fn error_body(message: &str) -> Bytes {
    Bytes::from(json!({ "message": message }).to_string())
}

fn error_plan(status: u16, message: &str, delay: Duration) -> MockPlan {
    body_plan(status, CONTENT_TYPE_JSON, error_body(message), delay)
}

fn injected_message(status: u16) -> String {
    match status {
        429 => {
            "Too many requests, please wait before trying again. (injected by the mock)".to_owned()
        }
        400 => "The mock provider was asked to fail with status 400 (validation).".to_owned(),
        _ => format!("The mock provider was asked to fail with status {status}."),
    }
}

/// `(model id, stream?)` from the request path.
fn parse_path(path: &str) -> Result<(String, bool), (u16, String)> {
    let path = path.split('?').next().unwrap_or(path);
    let not_found = || (404, format!("Unknown operation: {path}"));
    let start = path.find("/model/").ok_or_else(not_found)? + "/model/".len();
    let rest = &path[start..];
    let (encoded, action) = rest.rsplit_once('/').ok_or_else(not_found)?;
    let stream = match action {
        "converse" => false,
        "converse-stream" => true,
        _ => return Err(not_found()),
    };
    let model = percent_decode(encoded).ok_or_else(|| {
        (
            400,
            "The model identifier is not validly encoded.".to_owned(),
        )
    })?;
    if model.is_empty() {
        return Err(not_found());
    }
    Ok((model, stream))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn inspect(req: &Value) -> Result<MockRequest, String> {
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| "1 validation error detected: 'messages' must not be null".to_owned())?;
    let mut text_bytes = 0usize;
    let mut count = |blocks: Option<&Value>| {
        for block in blocks.and_then(Value::as_array).into_iter().flatten() {
            if let Some(t) = block.get("text").and_then(Value::as_str) {
                text_bytes += t.len();
            }
            if let Some(results) = block.pointer("/toolResult/content") {
                for r in results.as_array().into_iter().flatten() {
                    if let Some(t) = r.get("text").and_then(Value::as_str) {
                        text_bytes += t.len();
                    }
                }
            }
        }
    };
    count(req.get("system"));
    for m in messages {
        count(m.get("content"));
    }
    let prompt_tokens = estimate_tokens(text_bytes);
    let max_tokens = req
        .pointer("/inferenceConfig/maxTokens")
        .and_then(Value::as_u64);
    let first_tool = req
        .pointer("/toolConfig/tools/0/toolSpec/name")
        .and_then(Value::as_str);

    let mut tool_turn = None;
    if let Some(last) = messages.last() {
        if last.get("role").and_then(Value::as_str) == Some("user") {
            let blocks = last
                .get("content")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let results: Vec<String> = blocks
                .iter()
                .filter_map(|b| b.get("toolResult"))
                .map(tool_result_text)
                .collect();
            let has_text = blocks
                .iter()
                .any(|b| b.get("text").and_then(Value::as_str).is_some());
            if !results.is_empty() {
                tool_turn = Some(ToolTurn::Result {
                    text: results.join(" "),
                });
            } else if let (Some(tool), true) = (first_tool, has_text) {
                tool_turn = Some(ToolTurn::Call {
                    name: tool.to_owned(),
                });
            }
        }
    }
    Ok(MockRequest {
        prompt_tokens,
        max_tokens,
        tool_turn,
    })
}

/// The text of a `toolResult`: its text blocks, or its JSON blocks serialised.
fn tool_result_text(result: &Value) -> String {
    let mut out = String::new();
    for block in result
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(t) = block.get("text").and_then(Value::as_str) {
            out.push_str(t);
        } else if let Some(j) = block.get("json") {
            out.push_str(&j.to_string());
        }
    }
    out
}

// === answers ===

fn answer(
    inspected: &MockRequest,
    requested: u32,
    response_bytes: Option<usize>,
    stream: bool,
) -> Answer {
    match &inspected.tool_turn {
        Some(ToolTurn::Call { name }) => {
            let deltas = MOCK_TOOL_ARGUMENT_HALVES
                .iter()
                .map(|half| (half.to_string(), estimate_tokens(half.len())))
                .collect();
            Answer {
                kind: AnswerKind::Tool(name.clone()),
                deltas,
                stop_reason: "tool_use",
            }
        }
        Some(ToolTurn::Result { text: result }) => {
            let prefix = MOCK_TOOL_RESULT_PREFIX;
            let mut deltas = vec![(prefix.to_owned(), estimate_tokens(prefix.len()))];
            if !result.is_empty() {
                deltas.push((result.clone(), estimate_tokens(result.len())));
            }
            Answer {
                kind: AnswerKind::Text,
                deltas,
                stop_reason: "end_turn",
            }
        }
        None => {
            let capped = cap_tokens(requested, inspected.max_tokens);
            let words = padded_words(capped, response_bytes);
            let chunks = if stream { capped as usize } else { 1 };
            let mut deltas = Vec::with_capacity(chunks);
            if !words.is_empty() {
                // With padding there are more words than chunks: chunk c carries words
                // [c*W/n, (c+1)*W/n), at least one each.
                let n = chunks.max(1);
                for c in 0..n {
                    let range = (c * words.len() / n)..((c + 1) * words.len() / n);
                    let text: String = words[range.clone()].concat();
                    deltas.push((text, range.len() as u64));
                }
            }
            Answer {
                kind: AnswerKind::Text,
                deltas,
                stop_reason: if capped < requested {
                    "max_tokens"
                } else {
                    "end_turn"
                },
            }
        }
    }
}

fn usage_json(prompt: u64, completion: u64) -> Value {
    json!({
        "inputTokens": prompt,
        "outputTokens": completion,
        "totalTokens": prompt + completion,
    })
}

fn json_plan(answer: &Answer, prompt: u64, latency: Duration, cut: bool) -> MockPlan {
    let completion = answer.completion_tokens();
    let content = match &answer.kind {
        AnswerKind::Text => {
            let text: String = answer.deltas.iter().map(|d| d.0.as_str()).collect();
            json!([{ "text": text }])
        }
        AnswerKind::Tool(name) => {
            let input: Value = serde_json::from_str(MOCK_TOOL_INPUT).unwrap_or(Value::Null);
            json!([{ "toolUse": { "toolUseId": MOCK_TOOL_USE_ID, "name": name, "input": input } }])
        }
    };
    let body = json!({
        "output": { "message": { "role": "assistant", "content": content } },
        "stopReason": answer.stop_reason,
        "usage": usage_json(prompt, completion),
        "metrics": { "latencyMs": 0 },
    });
    json_answer(
        Bytes::from(body.to_string()),
        latency,
        cut,
        usage(prompt, completion),
        usage(prompt, 0),
    )
}

fn event(out: &mut Vec<u8>, event_type: &str, payload: &Value) {
    // Encoding fails only for oversized headers or messages, which these small events are not.
    let _ = write_event(event_type, payload.to_string().as_bytes(), out);
}

fn stream_plan(
    answer: &Answer,
    prompt: u64,
    knobs: &MockKnobs,
    latency: Duration,
    cut: bool,
) -> MockPlan {
    let mut prefix = Vec::new();
    event(&mut prefix, "messageStart", &json!({ "role": "assistant" }));
    if let AnswerKind::Tool(name) = &answer.kind {
        event(
            &mut prefix,
            "contentBlockStart",
            &json!({
                "contentBlockIndex": 0,
                "start": { "toolUse": { "toolUseId": MOCK_TOOL_USE_ID, "name": name } }
            }),
        );
    }
    let deltas: Vec<(Vec<u8>, u64)> = answer
        .deltas
        .iter()
        .map(|(text, tokens)| {
            let delta = match answer.kind {
                AnswerKind::Text => json!({ "text": text }),
                AnswerKind::Tool(_) => json!({ "toolUse": { "input": text } }),
            };
            let mut out = Vec::new();
            event(
                &mut out,
                "contentBlockDelta",
                &json!({ "contentBlockIndex": 0, "delta": delta }),
            );
            (out, *tokens)
        })
        .collect();

    let mut steps = Vec::with_capacity(deltas.len() + 3);
    steps.push(MockStep::Head {
        delay: latency,
        status: 200,
        content_type: CONTENT_TYPE_EVENTSTREAM,
        body_len: None,
    });
    let completion = answer.completion_tokens();
    let mut served = 0;
    pace_stream(
        &mut steps,
        knobs,
        BytesMut::from(&prefix[..]),
        deltas.len(),
        cut,
        |i, out| {
            out.extend_from_slice(&deltas[i].0);
            served += deltas[i].1;
        },
        |out| {
            let mut closing = Vec::new();
            event(
                &mut closing,
                "contentBlockStop",
                &json!({ "contentBlockIndex": 0 }),
            );
            event(
                &mut closing,
                "messageStop",
                &json!({ "stopReason": answer.stop_reason }),
            );
            event(
                &mut closing,
                "metadata",
                &json!({ "usage": usage_json(prompt, completion), "metrics": { "latencyMs": 0 } }),
            );
            out.extend_from_slice(&closing);
        },
    );
    let served = if cut { served } else { completion };
    MockPlan::success(steps, usage(prompt, served))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::mock::SLOW_BODY_MAX_PIECES;

    #[test]
    fn paths() {
        assert_eq!(
            parse_path("/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"),
            Ok(("anthropic.claude-3-haiku-20240307-v1:0".to_owned(), true))
        );
        assert_eq!(
            parse_path("/base/model/m/converse"),
            Ok(("m".to_owned(), false))
        );
        assert_eq!(parse_path("/model/m/invoke").unwrap_err().0, 404);
        assert_eq!(parse_path("/model/%zz/converse").unwrap_err().0, 400);
    }

    #[test]
    fn padding_is_exact() {
        let words = padded_words(4, Some(100));
        assert_eq!(words.concat().len(), 100);
        assert_eq!(padded_words(3, None).concat(), "Tollgate mock tokens");
    }

    #[test]
    fn slow_body_trickles() {
        let body = br#"{"messages":[{"role":"user","content":[{"text":"hi"}]}]}"#;
        let p = plan(
            "/model/mock-slow-body/converse",
            body,
            &MockKnobs::default(),
            0,
        );
        let bodies = p
            .steps
            .iter()
            .filter(|s| matches!(s, MockStep::Body { .. }))
            .count();
        assert!(bodies > 3 && bodies <= SLOW_BODY_MAX_PIECES, "{bodies}");
        assert!(matches!(p.steps[0], MockStep::Head { delay, .. } if delay.is_zero()));
    }
}
