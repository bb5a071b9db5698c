//! The mock provider speaking Anthropic's Messages API natively: plans the exact bytes (JSON or
//! SSE) and pauses Anthropic would send for one `POST /v1/messages`, honouring the shared
//! model-name faults (`crate::mock::fault_for`), the mock knobs and the shared tool convention
//! every vendor mock implements (see [`plan`]).
//!
//! Like `crate::mock`, it never reads a clock, draws randomness or touches a socket.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use crate::anthropic_api::{decode_request, error_type_for};
use crate::chat::{ChatRequest, Role};
use crate::mock::{
    body_plan, fault_for, no_answer_plan, FaultKind, MockKnobs, MockPlan, MockStep,
    CONTENT_TYPE_JSON, CONTENT_TYPE_SSE, SLOW_BODY_MAX_PIECES, SLOW_BODY_PIECE_BYTES,
    SLOW_BODY_PIECE_DELAY,
};
use crate::openai::Usage;
use crate::sse::write_event;

/// The path the mock answers.
pub const MESSAGES_PATH: &str = "/v1/messages";

/// Arguments of the shared tool convention's call.
pub const TOOL_ARGUMENTS: &str = r#"{"city":"Paris"}"#;

/// Call id of the shared tool convention's call.
pub const TOOL_CALL_ID: &str = "call_mock_1";

/// The generated text cycles through these pieces, one completion "token" each (the same words
/// as the OpenAI-format mock, so every format serves the same text).
const WORDS: &[&str] = &[
    " Tollgate",
    " mock",
    " tokens",
    " flow",
    " through",
    " the",
    " gateway",
    " like",
    " water",
    " through",
    " well",
    " placed",
    " pipes",
    ".",
];

/// Plans the answer to one Messages request.
///
/// Faults by model name and knobs as in `crate::mock::plan` (errors use Anthropic's native
/// body and type, e.g. 429 `rate_limit_error`, 529 `overloaded_error`). Shared tool convention:
/// when the request offers tools and the last message is the user's, the answer is one call to
/// the first tool with [`TOOL_ARGUMENTS`] (id [`TOOL_CALL_ID`], `stop_reason: tool_use`,
/// streamed in two pieces); when the last message is a tool result, the answer is
/// `Tool said: <result text>`; otherwise the usual mock text. A request that does not decode
/// gets a 400 `invalid_request_error`; a path not ending in [`MESSAGES_PATH`] gets a 404
/// `not_found_error`. Knobs `response_bytes` and `embedding_dims` do not apply here.
pub fn plan(path: &str, body: &[u8], knobs: &MockKnobs, request_index: u64) -> MockPlan {
    let route = path.split('?').next().unwrap_or(path);
    // A gateway may mount the mock under a prefix (`/anthropic/v1/messages`).
    if !route.ends_with(MESSAGES_PATH) {
        return error_plan(404, &format!("Not found: {route}"), knobs.latency);
    }
    let req = match decode_request(body) {
        Ok(req) => req,
        Err(e) => return error_plan(400, &e.message, knobs.latency),
    };
    let (fault, latency) = fault_for(&req.model, knobs, request_index);
    match fault {
        Some(FaultKind::Status(status)) => {
            let message = if status == 429 {
                "Rate limit reached (injected by the mock provider).".to_owned()
            } else {
                format!("The mock provider was asked to fail with status {status}.")
            };
            return error_plan(status, &message, latency);
        }
        Some(FaultKind::Reset) => return no_answer_plan(MockStep::Reset),
        Some(FaultKind::Hang) => return no_answer_plan(MockStep::Hang),
        Some(FaultKind::CutStream | FaultKind::SlowBody) | None => {}
    }

    let answer = Answer::for_request(&req, knobs);
    let reply = Reply {
        id: format!("msg_mock_{request_index}"),
        model: &req.model,
        prompt_tokens: prompt_tokens(&req),
        latency,
        cut: fault == Some(FaultKind::CutStream),
    };
    let plan = if req.is_stream() {
        reply.stream(&answer, knobs)
    } else {
        reply.json(&answer)
    };
    if fault == Some(FaultKind::SlowBody) {
        slow_body(plan)
    } else {
        plan
    }
}

/// An Anthropic error answer (`{"type":"error","error":{..}}`) with the type for `status`.
pub fn error_plan(status: u16, message: &str, delay: Duration) -> MockPlan {
    let mut out = BytesMut::with_capacity(128);
    crate::anthropic_api::encode_error(error_type_for("", status), message, &mut out);
    body_plan(status, CONTENT_TYPE_JSON, out.freeze(), delay)
}

/// What the mock says.
enum Answer {
    /// Text pieces, their token count, and whether the output cap cut them short.
    Text {
        pieces: Vec<String>,
        tokens: u64,
        capped: bool,
    },
    /// One call to this tool.
    ToolCall { name: String },
}

impl Answer {
    fn for_request(req: &ChatRequest, knobs: &MockKnobs) -> Answer {
        let last = req.messages.last();
        let offers_tools = req.tools.as_ref().and_then(|t| t.first());
        match (last.map(|m| m.role), offers_tools) {
            (Some(Role::User), Some(tool)) => {
                return Answer::ToolCall {
                    name: tool.function.name.clone(),
                }
            }
            (Some(Role::Tool), _) => {
                let result = last.map(|m| m.text_content()).unwrap_or_default();
                let text = format!("Tool said: {result}");
                // Two pieces so a stream has more than one delta; tokens are counted by bytes.
                let mid = (1..text.len().min(10))
                    .rev()
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(text.len());
                let (a, b) = text.split_at(mid);
                return Answer::Text {
                    pieces: vec![a.to_owned(), b.to_owned()],
                    tokens: (text.len() as u64).div_ceil(4),
                    capped: false,
                };
            }
            _ => {}
        }
        let wanted = if req.is_stream() {
            knobs.chunks
        } else {
            knobs.completion_tokens
        };
        let cap = req.output_cap().unwrap_or(u64::MAX);
        let count = u64::from(wanted).min(cap) as usize;
        let pieces = (0..count)
            .map(|i| {
                let w = WORDS[i % WORDS.len()];
                if i == 0 { w.trim_start() } else { w }.to_owned()
            })
            .collect();
        Answer::Text {
            pieces,
            tokens: count as u64,
            capped: (count as u64) < u64::from(wanted),
        }
    }

    fn completion_tokens(&self) -> u64 {
        match self {
            Answer::Text { tokens, .. } => *tokens,
            Answer::ToolCall { name } => ((name.len() + TOOL_ARGUMENTS.len()) as u64).div_ceil(4),
        }
    }

    fn stop_reason(&self) -> &'static str {
        match self {
            Answer::Text { capped: true, .. } => "max_tokens",
            Answer::Text { .. } => "end_turn",
            Answer::ToolCall { .. } => "tool_use",
        }
    }
}

/// Prompt tokens: text bytes of the conversation (system, messages, tool results) / 4, at
/// least 1, like the OpenAI-format mock.
fn prompt_tokens(req: &ChatRequest) -> u64 {
    let bytes: usize = req
        .messages
        .iter()
        .map(|m| {
            m.text_content().len()
                + m.tool_calls
                    .iter()
                    .flatten()
                    .map(|c| c.function.arguments.len())
                    .sum::<usize>()
        })
        .sum();
    (bytes.div_ceil(4) as u64).max(1)
}

/// What every response of one request shares.
struct Reply<'a> {
    id: String,
    model: &'a str,
    prompt_tokens: u64,
    latency: Duration,
    cut: bool,
}

fn usage(prompt: u64, completion: u64) -> Usage {
    Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        total_tokens: prompt + completion,
        cached_tokens: 0,
    }
}

fn wire_usage(prompt: u64, completion: u64) -> Value {
    json!({
        "input_tokens": prompt,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": completion,
    })
}

fn event(out: &mut BytesMut, v: &Value) {
    let name = v.get("type").and_then(Value::as_str).unwrap_or("unknown");
    write_event(out, Some(name), &v.to_string());
}

impl Reply<'_> {
    fn json(&self, answer: &Answer) -> MockPlan {
        let content = match answer {
            Answer::Text { pieces, .. } => json!([{"type": "text", "text": pieces.concat()}]),
            Answer::ToolCall { name } => json!([{
                "type": "tool_use",
                "id": TOOL_CALL_ID,
                "name": name,
                "input": {"city": "Paris"},
            }]),
        };
        let completion = answer.completion_tokens();
        let body = json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": answer.stop_reason(),
            "stop_sequence": null,
            "usage": wire_usage(self.prompt_tokens, completion),
        });
        let bytes = Bytes::from(body.to_string());
        if self.cut {
            let head = MockStep::Head {
                delay: self.latency,
                status: 200,
                content_type: CONTENT_TYPE_JSON,
                body_len: Some(bytes.len()),
            };
            return MockPlan {
                steps: vec![
                    head,
                    MockStep::Body {
                        delay: Duration::ZERO,
                        bytes: bytes.slice(..bytes.len() / 2),
                    },
                    MockStep::Reset,
                ],
                status: Some(200),
                usage: usage(self.prompt_tokens, 0),
            };
        }
        let mut plan = body_plan(200, CONTENT_TYPE_JSON, bytes, self.latency);
        plan.usage = usage(self.prompt_tokens, completion);
        plan
    }

    /// message_start + content_block_start + ping at once, the first delta after `ttft`, the
    /// others `chunk_delay` apart, then block stop, message_delta and message_stop. A cut
    /// stream sends half the deltas and resets.
    fn stream(&self, answer: &Answer, knobs: &MockKnobs) -> MockPlan {
        let mut steps = vec![MockStep::Head {
            delay: self.latency,
            status: 200,
            content_type: CONTENT_TYPE_SSE,
            body_len: None,
        }];
        let mut out = BytesMut::with_capacity(512);
        event(
            &mut out,
            &json!({
                "type": "message_start",
                "message": {
                    "id": self.id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": wire_usage(self.prompt_tokens, 1),
                },
            }),
        );
        let (block, deltas): (Value, Vec<Value>) = match answer {
            Answer::Text { pieces, .. } => (
                json!({"type": "text", "text": ""}),
                pieces
                    .iter()
                    .map(|p| json!({"type": "text_delta", "text": p}))
                    .collect(),
            ),
            Answer::ToolCall { name } => (
                json!({"type": "tool_use", "id": TOOL_CALL_ID, "name": name, "input": {}}),
                [r#"{"city":"#, r#""Paris"}"#]
                    .iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect(),
            ),
        };
        event(
            &mut out,
            &json!({"type": "content_block_start", "index": 0, "content_block": block}),
        );
        event(&mut out, &json!({"type": "ping"}));
        steps.push(MockStep::Body {
            delay: Duration::ZERO,
            bytes: out.split().freeze(),
        });

        let sent = if self.cut {
            deltas.len() / 2
        } else {
            deltas.len()
        };
        for (i, d) in deltas.iter().take(sent).enumerate() {
            event(
                &mut out,
                &json!({"type": "content_block_delta", "index": 0, "delta": d}),
            );
            steps.push(MockStep::Body {
                delay: if i == 0 {
                    knobs.ttft
                } else {
                    knobs.chunk_delay
                },
                bytes: out.split().freeze(),
            });
        }
        let completion = answer.completion_tokens();
        if self.cut {
            steps.push(MockStep::Reset);
            let served = completion * sent as u64 / deltas.len().max(1) as u64;
            return MockPlan {
                steps,
                status: Some(200),
                usage: usage(self.prompt_tokens, served),
            };
        }
        event(&mut out, &json!({"type": "content_block_stop", "index": 0}));
        event(
            &mut out,
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": answer.stop_reason(), "stop_sequence": null},
                "usage": {"output_tokens": completion},
            }),
        );
        event(&mut out, &json!({"type": "message_stop"}));
        steps.push(MockStep::Body {
            delay: if deltas.is_empty() {
                knobs.ttft
            } else {
                Duration::ZERO
            },
            bytes: out.freeze(),
        });
        steps.push(MockStep::End);
        MockPlan {
            steps,
            status: Some(200),
            usage: usage(self.prompt_tokens, completion),
        }
    }
}

/// Head at once, then every body byte in small pieces [`SLOW_BODY_PIECE_DELAY`] apart, then the
/// plan's last step (the same shape as the OpenAI-format mock's slow body).
fn slow_body(plan: MockPlan) -> MockPlan {
    let mut steps = Vec::with_capacity(SLOW_BODY_MAX_PIECES + 2);
    let mut body = BytesMut::new();
    let mut last = MockStep::End;
    for step in plan.steps {
        match step {
            MockStep::Head {
                status,
                content_type,
                body_len,
                ..
            } => steps.push(MockStep::Head {
                delay: Duration::ZERO,
                status,
                content_type,
                body_len,
            }),
            MockStep::Body { bytes, .. } => body.extend_from_slice(&bytes),
            other => last = other,
        }
    }
    let mut body = body.freeze();
    while !body.is_empty() {
        let take = if steps.len() >= SLOW_BODY_MAX_PIECES {
            body.len()
        } else {
            body.len().min(SLOW_BODY_PIECE_BYTES)
        };
        steps.push(MockStep::Body {
            delay: SLOW_BODY_PIECE_DELAY,
            bytes: body.split_to(take),
        });
    }
    steps.push(last);
    MockPlan {
        steps,
        status: plan.status,
        usage: plan.usage,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn body_of(plan: &MockPlan) -> Vec<u8> {
        plan.steps
            .iter()
            .filter_map(|s| match s {
                MockStep::Body { bytes, .. } => Some(bytes.to_vec()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    #[test]
    fn plain_json_answer() {
        let body = br#"{"model":"claude","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}"#;
        let plan = plan("/v1/messages", body, &MockKnobs::default(), 3);
        assert_eq!(plan.status, Some(200));
        let v: Value = serde_json::from_slice(&body_of(&plan)).unwrap();
        assert_eq!(v["id"], "msg_mock_3");
        assert!(v["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Tollgate mock tokens"));
        assert_eq!(v["usage"]["output_tokens"], 16);
        assert_eq!(plan.usage.completion_tokens, 16);
        assert_eq!(plan.usage.prompt_tokens, 3);
    }

    #[test]
    fn errors_are_native() {
        let body = br#"{"model":"mock-error-529","max_tokens":10,"messages":[{"role":"user","content":"x"}]}"#;
        let plan = plan("/v1/messages", body, &MockKnobs::default(), 0);
        assert_eq!(plan.status, Some(529));
        let v: Value = serde_json::from_slice(&body_of(&plan)).unwrap();
        assert_eq!(v["error"]["type"], "overloaded_error");
        let plan = super::plan("/v1/other", body, &MockKnobs::default(), 0);
        assert_eq!(plan.status, Some(404));
        let plan = super::plan(
            "/anthropic/v1/messages?beta=true",
            body,
            &MockKnobs::default(),
            0,
        );
        assert_eq!(plan.status, Some(529));
        let plan = super::plan("/v1/messages", b"{}", &MockKnobs::default(), 0);
        assert_eq!(plan.status, Some(400));
    }
}
