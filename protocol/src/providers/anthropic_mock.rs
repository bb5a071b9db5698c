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
    body_plan, cap_tokens, estimate_tokens, fault_answer, fault_for, generated_piece,
    injected_error_message, json_answer, pace_stream, slow_body_if, usage, FaultKind, MockKnobs,
    MockPlan, MockStep, CONTENT_TYPE_JSON, CONTENT_TYPE_SSE, MOCK_TOOL_ARGUMENTS,
    MOCK_TOOL_ARGUMENT_HALVES, MOCK_TOOL_CALL_ID, MOCK_TOOL_RESULT_PREFIX,
};
use crate::sse::write_event;

/// The path the mock answers.
pub const MESSAGES_PATH: &str = "/v1/messages";

/// Plans the answer to one Messages request.
///
/// Faults by model name and knobs as in `crate::mock::plan` (errors use Anthropic's native
/// body and type, e.g. 429 `rate_limit_error`, 529 `overloaded_error`). Shared tool convention:
/// when the request offers tools and the last message is the user's, the answer is one call to
/// the first tool with [`MOCK_TOOL_ARGUMENTS`] (id [`MOCK_TOOL_CALL_ID`],
/// `stop_reason: tool_use`, streamed in [`MOCK_TOOL_ARGUMENT_HALVES`]); when the last message
/// is a tool result, the answer is `Tool said: <result text>`; otherwise the usual mock text. A request that does not decode
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
    if let Some(answer) = fault_answer(fault, |status| {
        error_plan(status, &injected_error_message(status), latency)
    }) {
        return answer;
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
    slow_body_if(fault, plan)
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
                let text = format!("{MOCK_TOOL_RESULT_PREFIX}{result}");
                // Two pieces so a stream has more than one delta; tokens are counted by bytes.
                let mid = (1..text.len().min(10))
                    .rev()
                    .find(|i| text.is_char_boundary(*i))
                    .unwrap_or(text.len());
                let (a, b) = text.split_at(mid);
                return Answer::Text {
                    pieces: vec![a.to_owned(), b.to_owned()],
                    tokens: estimate_tokens(text.len()),
                    capped: false,
                };
            }
            _ => {}
        }
        let wanted = knobs.requested_tokens(req.is_stream());
        let count = cap_tokens(wanted, req.output_cap());
        let pieces = (0..count as usize)
            .map(|i| generated_piece(i).to_owned())
            .collect();
        Answer::Text {
            pieces,
            tokens: u64::from(count),
            capped: count < wanted,
        }
    }

    fn completion_tokens(&self) -> u64 {
        match self {
            Answer::Text { tokens, .. } => *tokens,
            Answer::ToolCall { name } => estimate_tokens(name.len() + MOCK_TOOL_ARGUMENTS.len()),
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
    estimate_tokens(bytes)
}

/// What every response of one request shares.
struct Reply<'a> {
    id: String,
    model: &'a str,
    prompt_tokens: u64,
    latency: Duration,
    cut: bool,
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
                "id": MOCK_TOOL_CALL_ID,
                "name": name,
                "input": serde_json::from_str::<Value>(MOCK_TOOL_ARGUMENTS).unwrap_or_default(),
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
        json_answer(
            Bytes::from(body.to_string()),
            self.latency,
            self.cut,
            usage(self.prompt_tokens, completion),
            usage(self.prompt_tokens, 0),
        )
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
                json!({"type": "tool_use", "id": MOCK_TOOL_CALL_ID, "name": name, "input": {}}),
                MOCK_TOOL_ARGUMENT_HALVES
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

        let completion = answer.completion_tokens();
        pace_stream(
            &mut steps,
            knobs,
            out,
            deltas.len(),
            self.cut,
            |i, out| {
                let delta = json!({"type": "content_block_delta", "index": 0, "delta": deltas[i]});
                event(out, &delta);
            },
            |out| {
                event(out, &json!({"type": "content_block_stop", "index": 0}));
                event(
                    out,
                    &json!({
                        "type": "message_delta",
                        "delta": {"stop_reason": answer.stop_reason(), "stop_sequence": null},
                        "usage": {"output_tokens": completion},
                    }),
                );
                event(out, &json!({"type": "message_stop"}));
            },
        );
        let served = if self.cut {
            completion * (deltas.len() / 2) as u64 / deltas.len().max(1) as u64
        } else {
            completion
        };
        MockPlan::success(steps, usage(self.prompt_tokens, served))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    use crate::mock::test_support::plan_body;

    #[test]
    fn plain_json_answer() {
        let body = br#"{"model":"claude","max_tokens":100,"messages":[{"role":"user","content":"hello there"}]}"#;
        let plan = plan("/v1/messages", body, &MockKnobs::default(), 3);
        assert_eq!(plan.status, Some(200));
        let v: Value = serde_json::from_slice(&plan_body(&plan)).unwrap();
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
        let v: Value = serde_json::from_slice(&plan_body(&plan)).unwrap();
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
