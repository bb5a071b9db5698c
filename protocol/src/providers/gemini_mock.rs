//! The mock provider speaking Gemini natively: plans answers to `generateContent` and
//! `streamGenerateContent?alt=sse` in Google's own shapes (bodies, SSE events, error bodies with
//! their status strings), so the Gemini adapter can be exercised end to end without Google.
//!
//! Like `crate::mock`, it must never read a clock, draw randomness or touch a socket: the same
//! request sequence always yields the same plans. Faults and knobs follow `crate::mock`
//! (`fault_for`), and tool calls follow the conformance convention shared by every vendor mock
//! (see [`plan`]).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};

use crate::mock::{
    body_plan, cap_tokens, estimate_tokens, fault_answer, fault_for, generated_piece, json_answer,
    pace_stream, slow_body_if, usage, word_pieces, FaultKind, MockKnobs, MockPlan, MockRequest,
    MockStep, ToolTurn, CONTENT_TYPE_JSON, CONTENT_TYPE_SSE, MOCK_TOOL_ARGUMENTS,
    MOCK_TOOL_ARGUMENT_PIECES, MOCK_TOOL_RESULT_PREFIX,
};
use crate::sse::write_event;

/// Which Gemini method a path names.
struct Call<'a> {
    model: &'a str,
    stream: bool,
}

/// One piece of the answer: a Gemini part and the completion tokens it counts for. A stream
/// sends one piece per event.
struct Piece {
    part: Value,
    tokens: u64,
}

// === plan ===

/// Plans the answer to one Gemini request: `path` is the request path with its query
/// (`/v1beta/models/<model>:generateContent` or `...:streamGenerateContent?alt=sse`), `body` the
/// `GenerateContentRequest`, `request_index` counts requests from 0 (fault rate, response ids).
///
/// Model-name conventions and knob faults come from [`crate::mock::fault_for`]:
/// `mock-error-<status>` answers that status with Google's error body and status string,
/// `mock-reset` resets before any byte, `mock-cut` sends half the stream (never the event with
/// `finishReason`) or half the body and resets, `mock-hang` never answers, `mock-slow` waits
/// longer, `mock-slow-body` trickles the body. A body Gemini would refuse gets
/// 400 `INVALID_ARGUMENT`; an unknown method 404 `NOT_FOUND`.
///
/// Tool convention shared by every vendor mock: when the request declares functions and the last
/// turn is a user turn with text, the answer is one call to the first declared function with
/// `{"city":"Paris"}` (finish `STOP`); when the last turn carries a `functionResponse`, the
/// answer is the text `Tool said: <response content>`; otherwise the usual mock text.
pub fn plan(path: &str, body: &[u8], knobs: &MockKnobs, request_index: u64) -> MockPlan {
    let call = match parse_path(path) {
        Ok(call) => call,
        Err((status, message)) => return error_plan(status, &message, knobs.latency),
    };
    let inspected = match serde_json::from_slice::<Value>(body)
        .map_err(|e| format!("Invalid JSON payload received. {e}"))
        .and_then(|req| inspect(&req))
    {
        Ok(inspected) => inspected,
        Err(message) => return error_plan(400, &message, knobs.latency),
    };

    let (fault, latency) = fault_for(call.model, knobs, request_index);
    if let Some(answer) = fault_answer(fault, |status| {
        error_plan(status, &injected_message(status), latency)
    }) {
        return answer;
    }

    let (pieces, finish) = answer(&inspected, knobs.requested_tokens(call.stream));
    let response = Response {
        model: call.model,
        id: format!("mock-{request_index}"),
        prompt_tokens: inspected.prompt_tokens,
        finish,
        latency,
        cut: fault == Some(FaultKind::CutStream),
    };
    let plan = if call.stream {
        response.stream(&pieces, knobs)
    } else {
        response.json(&pieces)
    };
    slow_body_if(fault, plan)
}

/// Google's error body: `{"error":{"code","message","status"}}`.
pub fn error_body(status: u16, message: &str) -> Bytes {
    let body = json!({
        "error": {"code": status, "message": message, "status": status_name(status)}
    });
    Bytes::from(body.to_string())
}

/// The `google.rpc.Code` name Google pairs with an HTTP status.
pub fn status_name(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "UNKNOWN",
    }
}

fn error_plan(status: u16, message: &str, delay: Duration) -> MockPlan {
    body_plan(
        status,
        CONTENT_TYPE_JSON,
        error_body(status, message),
        delay,
    )
}

fn injected_message(status: u16) -> String {
    match status {
        429 => "Resource has been exhausted (injected by the mock provider).".to_owned(),
        _ => format!("The mock provider was asked to fail with status {status}."),
    }
}

// === request reading ===

fn parse_path(path: &str) -> Result<Call<'_>, (u16, String)> {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let last = path.rsplit('/').next().unwrap_or(path);
    let in_models = path.contains("/models/") || path.contains("/tunedModels/");
    let not_found = || (404, format!("Method not found: {path}"));
    let Some((model, method)) = last.split_once(':').filter(|_| in_models) else {
        return Err(not_found());
    };
    if model.is_empty() {
        return Err(not_found());
    }
    match method {
        "generateContent" => Ok(Call {
            model,
            stream: false,
        }),
        "streamGenerateContent" => {
            if query.split('&').any(|kv| kv == "alt=sse") {
                Ok(Call {
                    model,
                    stream: true,
                })
            } else {
                Err((
                    400,
                    "The mock streams only server-sent events: add ?alt=sse.".to_owned(),
                ))
            }
        }
        _ => Err(not_found()),
    }
}

/// Checks the request the way Gemini would at a glance and works out the answer.
fn inspect(req: &Value) -> Result<MockRequest, String> {
    let contents = req
        .get("contents")
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty())
        .ok_or("* GenerateContentRequest.contents: contents is not specified")?;
    let mut text_bytes = 0usize;
    for (i, turn) in contents.iter().enumerate() {
        let role = turn.get("role").and_then(Value::as_str).unwrap_or("user");
        if role != "user" && role != "model" {
            return Err(format!(
                "* GenerateContentRequest.contents[{i}].role: Please use a valid role: user, model."
            ));
        }
        let parts = turn
            .get("parts")
            .and_then(Value::as_array)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                format!("* GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty.")
            })?;
        text_bytes += parts.iter().map(part_bytes).sum::<usize>();
    }
    if let Some(parts) = req
        .get("systemInstruction")
        .and_then(|s| s.get("parts"))
        .and_then(Value::as_array)
    {
        text_bytes += parts.iter().map(part_bytes).sum::<usize>();
    }
    let max_tokens = req
        .get("generationConfig")
        .and_then(|g| g.get("maxOutputTokens"))
        .and_then(Value::as_u64);
    let first_function = req
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("functionDeclarations").and_then(Value::as_array))
        .flatten()
        .find_map(|d| d.get("name").and_then(Value::as_str));

    let tool_turn = match contents.last() {
        Some(last) => {
            let parts = last
                .get("parts")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let result = parts
                .iter()
                .rev()
                .find_map(|p| p.get("functionResponse"))
                .map(function_response_text);
            let is_user = last.get("role").and_then(Value::as_str).unwrap_or("user") == "user";
            let has_text = parts
                .iter()
                .any(|p| p.get("text").and_then(Value::as_str).is_some());
            match (result, first_function) {
                (Some(text), _) => Some(ToolTurn::Result { text }),
                (None, Some(name)) if is_user && has_text => Some(ToolTurn::Call {
                    name: name.to_owned(),
                }),
                _ => None,
            }
        }
        None => None,
    };
    Ok(MockRequest {
        prompt_tokens: estimate_tokens(text_bytes),
        max_tokens,
        tool_turn,
    })
}

/// Bytes of a part that count as prompt text.
fn part_bytes(part: &Value) -> usize {
    if let Some(text) = part.get("text").and_then(Value::as_str) {
        return text.len();
    }
    if let Some(resp) = part.get("functionResponse") {
        return function_response_text(resp).len();
    }
    if let Some(call) = part.get("functionCall") {
        return call.to_string().len();
    }
    0
}

/// The text of a `functionResponse`: its `response.content` when that is a string, else the
/// compact JSON of `response.content` (or of the whole `response`).
fn function_response_text(resp: &Value) -> String {
    let response = resp.get("response");
    match response.and_then(|r| r.get("content")) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => response.map(Value::to_string).unwrap_or_default(),
    }
}

// === answers ===

/// The answer's pieces and its finish reason. `requested` is the knob's token (or chunk) count,
/// capped by `maxOutputTokens`.
fn answer(req: &MockRequest, requested: u32) -> (Vec<Piece>, &'static str) {
    match &req.tool_turn {
        None => {
            let count = cap_tokens(requested, req.max_tokens);
            let finish = if count < requested {
                "MAX_TOKENS"
            } else {
                "STOP"
            };
            let pieces = (0..count as usize)
                .map(|i| Piece {
                    part: json!({ "text": generated_piece(i) }),
                    tokens: 1,
                })
                .collect();
            (pieces, finish)
        }
        Some(ToolTurn::Call { name }) => {
            let args: Value =
                serde_json::from_str(MOCK_TOOL_ARGUMENTS).unwrap_or_else(|_| json!({}));
            let part = json!({"functionCall": {"name": name, "args": args}});
            // Counted like the OpenAI mock counts its streamed argument pieces.
            let tokens = MOCK_TOOL_ARGUMENT_PIECES.len() as u64;
            (vec![Piece { part, tokens }], "STOP")
        }
        Some(ToolTurn::Result { text: result }) => {
            let answer = format!("{MOCK_TOOL_RESULT_PREFIX}{result}");
            let pieces = word_pieces(&answer)
                .into_iter()
                .map(|w| Piece {
                    part: json!({ "text": w }),
                    tokens: 1,
                })
                .collect();
            (pieces, "STOP")
        }
    }
}

/// What every response of one request shares.
struct Response<'a> {
    model: &'a str,
    id: String,
    prompt_tokens: u64,
    finish: &'static str,
    latency: Duration,
    cut: bool,
}

impl Response<'_> {
    /// One `GenerateContentResponse` with `parts`, usage counted so far and maybe the finish.
    fn object(&self, parts: Vec<Value>, completion: u64, finish: bool) -> Value {
        let mut candidate = json!({
            "content": {"parts": parts, "role": "model"},
            "index": 0
        });
        if finish {
            candidate["finishReason"] = Value::from(self.finish);
        }
        json!({
            "candidates": [candidate],
            "usageMetadata": {
                "promptTokenCount": self.prompt_tokens,
                "candidatesTokenCount": completion,
                "totalTokenCount": self.prompt_tokens + completion
            },
            "modelVersion": self.model,
            "responseId": self.id
        })
    }

    fn json(&self, pieces: &[Piece]) -> MockPlan {
        let mut parts: Vec<Value> = Vec::new();
        let mut text = String::new();
        for p in pieces {
            match p.part.get("text").and_then(Value::as_str) {
                Some(t) => text.push_str(t),
                None => parts.push(p.part.clone()),
            }
        }
        if !text.is_empty() || parts.is_empty() {
            parts.insert(0, json!({ "text": text }));
        }
        let completion: u64 = pieces.iter().map(|p| p.tokens).sum();
        json_answer(
            Bytes::from(self.object(parts, completion, true).to_string()),
            self.latency,
            self.cut,
            usage(self.prompt_tokens, completion),
            usage(self.prompt_tokens, 0),
        )
    }

    /// One event per piece: the first after `ttft`, the rest `chunk_delay` apart; the last
    /// carries `finishReason`. A cut stream sends the first half of the events and resets.
    fn stream(&self, pieces: &[Piece], knobs: &MockKnobs) -> MockPlan {
        let mut steps = Vec::with_capacity(pieces.len() + 3);
        steps.push(MockStep::Head {
            delay: self.latency,
            status: 200,
            content_type: CONTENT_TYPE_SSE,
            body_len: None,
        });
        let empty = [Piece {
            part: json!({ "text": "" }),
            tokens: 0,
        }];
        let events = if pieces.is_empty() {
            &empty[..]
        } else {
            pieces
        };
        let mut completion = 0;
        pace_stream(
            &mut steps,
            knobs,
            BytesMut::new(),
            events.len(),
            self.cut,
            |i, out| {
                completion += events[i].tokens;
                let last = i + 1 == events.len();
                let event = self.object(vec![events[i].part.clone()], completion, last);
                write_event(out, None, &event.to_string());
            },
            // The last event carries `finishReason`: nothing follows it.
            |_| {},
        );
        MockPlan::success(steps, usage(self.prompt_tokens, completion))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    use crate::mock::test_support::plan_body;

    const HI: &[u8] = br#"{"contents":[{"role":"user","parts":[{"text":"hello there"}]}]}"#;

    #[test]
    fn paths() {
        let knobs = MockKnobs::default();
        let p = plan("/v1beta/models/mock:generateContent", HI, &knobs, 0);
        assert_eq!(p.status, Some(200));
        assert_eq!(p.usage.completion_tokens, 16);
        assert_eq!(p.usage.prompt_tokens, 3);
        let p = plan("/v1beta/models/mock:streamGenerateContent", HI, &knobs, 0);
        assert_eq!(p.status, Some(400));
        let p = plan("/v1beta/models/mock:embedContent", HI, &knobs, 0);
        assert_eq!(p.status, Some(404));
        let p = plan("/v1beta/other", HI, &knobs, 0);
        assert_eq!(p.status, Some(404));
    }

    #[test]
    fn invalid_bodies_are_400() {
        let knobs = MockKnobs::default();
        for body in [
            &b"{"[..],
            br#"{"contents":[]}"#,
            br#"{"contents":[{"role":"user","parts":[]}]}"#,
            br#"{"contents":[{"role":"assistant","parts":[{"text":"x"}]}]}"#,
        ] {
            let p = plan("/v1beta/models/mock:generateContent", body, &knobs, 0);
            assert_eq!(p.status, Some(400));
            let v: Value = serde_json::from_slice(&plan_body(&p)).unwrap();
            assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
            assert_eq!(v["error"]["code"], 400);
        }
    }

    #[test]
    fn slow_body_trickles() {
        let knobs = MockKnobs::default();
        let p = plan(
            "/v1beta/models/mock-slow-body:generateContent",
            HI,
            &knobs,
            0,
        );
        let bodies = p
            .steps
            .iter()
            .filter(|s| matches!(s, MockStep::Body { .. }))
            .count();
        assert!(bodies > 1);
        assert!(matches!(p.steps.last(), Some(MockStep::End)));
    }
}
