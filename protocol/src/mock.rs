//! The mock provider's brain: given an OpenAI request and a set of knobs, plan the exact bytes a
//! provider would send back and the pauses between them. Shared by the standalone mock server
//! (`tollgate-loadgen`) and the gateway's built-in `kind = "mock"` provider, each of which drives
//! the plan with its own timers and sockets. It also holds the one copy of what the
//! vendor-format mocks (`providers::*_mock`) share: the generated text, token estimates, fault
//! answers, JSON and stream pacing, slow bodies and the tool convention.
//!
//! Must never read a clock, draw randomness or touch a socket: the same request sequence always
//! yields the same plans, byte for byte.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use crate::error_body::{write_json_string, ErrorBody};
use crate::openai::{inspect_request, Endpoint, Usage};

/// `created` timestamp stamped on every mock object (there is no clock here, by design).
pub const MOCK_CREATED: u64 = 1_700_000_000;

/// Latency applied to the `mock-slow` model.
pub const SLOW_MODEL_LATENCY: Duration = Duration::from_millis(200);

/// Pause between the pieces of a slow body (`mock-slow-body`, [`FaultKind::SlowBody`]).
pub const SLOW_BODY_PIECE_DELAY: Duration = Duration::from_millis(50);

/// Size of one piece of a slow body.
pub const SLOW_BODY_PIECE_BYTES: usize = 32;

/// A slow body is cut into at most this many pieces (the last one carries the rest), so it never
/// takes longer than `SLOW_BODY_MAX_PIECES * SLOW_BODY_PIECE_DELAY`.
pub const SLOW_BODY_MAX_PIECES: usize = 20;

/// Model names the standalone mock lists on `GET /v1/models`. Any model name is accepted; these
/// are the ones whose behaviour is special (see [`plan`]) plus a plain one.
pub const MOCK_MODELS: &[&str] = &[
    "mock",
    "mock-slow",
    "mock-slow-body",
    "mock-cut",
    "mock-reset",
    "mock-hang",
    "mock-error-400",
    "mock-error-429",
    "mock-error-500",
    "mock-error-503",
];

/// Content-Type of JSON responses.
pub const CONTENT_TYPE_JSON: &str = "application/json";

/// Content-Type of streamed responses.
pub const CONTENT_TYPE_SSE: &str = "text/event-stream";

/// Shared tool convention (every vendor mock): id of the one tool call the mock makes.
pub const MOCK_TOOL_CALL_ID: &str = "call_mock_1";

/// Shared tool convention: the arguments of the mock's tool call, as JSON text.
pub const MOCK_TOOL_ARGUMENTS: &str = "{\"city\":\"Paris\"}";

/// Shared tool convention: how a streamed tool call's arguments are cut (joined, they are
/// [`MOCK_TOOL_ARGUMENTS`]), so clients must reassemble at least two pieces.
pub const MOCK_TOOL_ARGUMENT_PIECES: &[&str] = &["{\"city\"", ":\"Par", "is\"}"];

/// Shared tool convention: the answer to a tool result is this prefix and the result's text.
pub const MOCK_TOOL_RESULT_PREFIX: &str = "Tool said: ";

/// Shared tool convention as the Anthropic and Bedrock mocks stream it: [`MOCK_TOOL_ARGUMENTS`]
/// cut in two halves.
pub const MOCK_TOOL_ARGUMENT_HALVES: [&str; 2] = ["{\"city\":", "\"Paris\"}"];

/// The generated text cycles through these pieces; one piece is one completion "token".
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

/// Keys whose string values count as prompt text when estimating prompt tokens.
const TEXT_KEYS: &[&[u8]] = &[b"content", b"text", b"prompt", b"input"];

/// Nesting deeper than this is not followed by the prompt-text scanner (it stops counting).
const MAX_SCAN_DEPTH: usize = 64;

/// Behaviour knobs of the mock provider. Model-name conventions (see [`plan`]) override them per
/// request.
#[derive(Debug, Clone)]
pub struct MockKnobs {
    /// Pause before the response head.
    pub latency: Duration,
    /// Streams only: pause between the head and the first content chunk.
    pub ttft: Duration,
    /// Streams only: number of content chunks (capped by the request's `max_tokens`).
    pub chunks: u32,
    /// Streams only: pause between content chunks.
    pub chunk_delay: Duration,
    /// Non-streamed completions: number of generated tokens (capped by `max_tokens`).
    pub completion_tokens: u32,
    /// Length of every embedding vector.
    pub embedding_dims: u32,
    /// Pad the generated content (more tokens) until it is exactly this many bytes long. Content
    /// already longer is left alone.
    pub response_bytes: Option<usize>,
    /// A fault injected into a deterministic fraction of requests.
    pub fault: Option<FaultSpec>,
}

/// A fault injected into a deterministic fraction of requests.
#[derive(Debug, Clone)]
pub struct FaultSpec {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Fraction of requests, `0..=1`. Request `n` (0-based) faults when
    /// `floor((n+1)*rate) > floor(n*rate)`, so exactly `floor(N*rate)` of the first `N` do.
    pub rate: f64,
}

/// What an injected fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Answer with this status and an OpenAI error body.
    Status(u16),
    /// Close the connection abruptly (RST) before sending any byte.
    Reset,
    /// Send half the response, then reset: streams lose their tail and `[DONE]`, JSON bodies
    /// fall short of their Content-Length.
    CutStream,
    /// Send the head at once, then the body in small pieces [`SLOW_BODY_PIECE_DELAY`] apart.
    SlowBody,
    /// Never answer.
    Hang,
}

/// One thing the driver does, in order. The driver sleeps `delay` before each step that has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MockStep {
    /// Send the response head.
    Head {
        /// Pause before sending.
        delay: Duration,
        /// HTTP status.
        status: u16,
        /// Content-Type header value.
        content_type: &'static str,
        /// `Some(n)`: `Content-Length: n`. `None`: chunked transfer encoding.
        body_len: Option<usize>,
    },
    /// Send body bytes (one HTTP chunk when the body is chunked).
    Body {
        /// Pause before sending.
        delay: Duration,
        /// The bytes.
        bytes: Bytes,
    },
    /// The response is complete (send the last chunk when chunked).
    End,
    /// Close the connection abruptly (RST) now.
    Reset,
    /// Never answer; keep the connection open until the peer leaves.
    Hang,
}

/// The mock's answer to one request.
#[derive(Debug)]
pub struct MockPlan {
    /// What to send, in order. Always ends with `End`, `Reset` or `Hang`.
    pub steps: Vec<MockStep>,
    /// Status of the head, `None` when no head is sent (`Reset`/`Hang` before any byte).
    pub status: Option<u16>,
    /// Tokens the mock served. Zero for errors; for a cut stream, the tokens of the chunks that
    /// were sent; for a cut JSON body, zero completion tokens (the client cannot use any of it).
    pub usage: Usage,
}

/// A fault kind that failed to parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid fault {0:?}: expected status:<100-599>, reset, cut, slow-body or hang")]
pub struct ParseFaultError(pub String);

// === impl MockPlan ===

impl MockPlan {
    /// A 200 answer made of `steps`, serving `usage`.
    pub fn success(steps: Vec<MockStep>, usage: Usage) -> Self {
        Self {
            steps,
            status: Some(200),
            usage,
        }
    }
}

// === impl MockKnobs ===

impl Default for MockKnobs {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            ttft: Duration::ZERO,
            chunks: 16,
            chunk_delay: Duration::ZERO,
            completion_tokens: 16,
            embedding_dims: 16,
            response_bytes: None,
            fault: None,
        }
    }
}

impl MockKnobs {
    /// How many tokens an answer generates before any `max_tokens` cap: [`Self::chunks`] for a
    /// stream, [`Self::completion_tokens`] for one body.
    pub fn requested_tokens(&self, stream: bool) -> u32 {
        if stream {
            self.chunks
        } else {
            self.completion_tokens
        }
    }
}

// === impl FaultSpec ===

impl FaultSpec {
    /// Whether request `request_index` (0-based) is one of the faulty ones.
    pub fn applies_to(&self, request_index: u64) -> bool {
        let rate = if self.rate.is_nan() {
            0.0
        } else {
            self.rate.clamp(0.0, 1.0)
        };
        let n = request_index as f64;
        ((n + 1.0) * rate).floor() > (n * rate).floor()
    }
}

// === impl FaultKind ===

impl FromStr for FaultKind {
    type Err = ParseFaultError;

    /// Parses `status:503`, `reset`, `cut`, `slow-body` or `hang`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseFaultError(s.to_owned());
        match s {
            "reset" => Ok(Self::Reset),
            "cut" | "cut-stream" => Ok(Self::CutStream),
            "slow-body" => Ok(Self::SlowBody),
            "hang" => Ok(Self::Hang),
            _ => {
                let code = s.strip_prefix("status:").ok_or_else(err)?;
                match code.parse::<u16>() {
                    Ok(status) if (100..=599).contains(&status) => Ok(Self::Status(status)),
                    _ => Err(err()),
                }
            }
        }
    }
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(status) => write!(f, "status:{status}"),
            Self::Reset => f.write_str("reset"),
            Self::CutStream => f.write_str("cut"),
            Self::SlowBody => f.write_str("slow-body"),
            Self::Hang => f.write_str("hang"),
        }
    }
}

// === plan ===

/// Plans the mock's answer to one request.
///
/// `request_index` counts requests from 0 (it drives the fault rate and the response ids);
/// `scratch` is reused between calls for JSON parsing.
///
/// Model-name conventions override `knobs` for that request:
/// `mock-error-<status>` answers that status with an OpenAI error body; `mock-reset` resets
/// before any byte; `mock-cut` sends half the response then resets; `mock-hang` never answers;
/// `mock-slow` waits [`SLOW_MODEL_LATENCY`] before the head; `mock-slow-body` sends the head at
/// once and the body in small pieces. A body that [`inspect_request`] rejects gets a 400.
///
/// Chat requests follow the shared tool convention (see [`ToolTurn`]): with `tools` offered
/// and a user message last, the answer is one call of the first tool ([`MOCK_TOOL_CALL_ID`],
/// arguments [`MOCK_TOOL_ARGUMENTS`], finish `tool_calls`; streamed, the first delta carries
/// id, type and name and the arguments follow in [`MOCK_TOOL_ARGUMENT_PIECES`]); with a
/// `role: tool` message last, the answer is [`MOCK_TOOL_RESULT_PREFIX`] and that message's text.
pub fn plan(
    endpoint: Endpoint,
    body: &[u8],
    knobs: &MockKnobs,
    request_index: u64,
    scratch: &mut Vec<u8>,
) -> MockPlan {
    let embeddings = matches!(endpoint, Endpoint::Embeddings);
    let chat = matches!(endpoint, Endpoint::ChatCompletions);
    let summary = match inspect_request(endpoint, body, scratch) {
        Ok(summary) => summary,
        Err(err) => {
            let error = ErrorBody {
                message: &err.message,
                error_type: "invalid_request_error",
                param: err.param,
                code: err.code,
            };
            return error_body_plan(400, &error, knobs.latency);
        }
    };
    let model: &str = &summary.model;

    if model == CONTEXT_OVERFLOW_MODEL {
        // OpenAI's shape for a prompt longer than the model's window, so gateways can test
        // their context-window fallbacks.
        let error = ErrorBody {
            message: "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens. Please reduce the length of the messages.",
            error_type: "invalid_request_error",
            param: Some("messages"),
            code: Some("context_length_exceeded"),
        };
        return error_body_plan(400, &error, knobs.latency);
    }
    let (fault, latency) = fault_for(model, knobs, request_index);
    if let Some(answer) = fault_answer(fault, |status| {
        error_plan_with_delay(status, &injected_error_message(status), latency)
    }) {
        return answer;
    }

    let text = scan_text(body);
    let prompt_tokens = estimate_tokens(text.text_bytes);
    let max_tokens = summary.max_tokens;
    let response = Response {
        id: request_index,
        model,
        chat,
        include_usage: summary.include_usage.unwrap_or(false),
        prompt_tokens,
        latency,
        cut: fault == Some(FaultKind::CutStream),
    };

    let tool = if chat { tool_turn(body) } else { None };
    let plan = if let Some(turn) = tool {
        response.tool_turn(&turn, summary.stream, knobs)
    } else if embeddings {
        response.embeddings(text.inputs.max(1), knobs.embedding_dims)
    } else if summary.stream {
        let chunks = cap_tokens(knobs.chunks, max_tokens);
        let pieces = padded_pieces(chunks, knobs.response_bytes);
        response.stream(knobs, chunks, pieces, chunks < knobs.chunks)
    } else {
        let tokens = cap_tokens(knobs.completion_tokens, max_tokens);
        let pieces = padded_pieces(tokens, knobs.response_bytes);
        response.json(pieces, tokens < knobs.completion_tokens)
    };
    slow_body_if(fault, plan)
}

/// Model name for which the OpenAI-format mock answers 400 `context_length_exceeded`.
pub const CONTEXT_OVERFLOW_MODEL: &str = "mock-context-overflow";

/// The fault (if any) and head latency for a request to `model`: the model-name conventions
/// (`mock-error-<status>`, `mock-reset`, `mock-cut`, `mock-hang`, `mock-slow`, `mock-slow-body`)
/// win over the knobs' fault rate. Shared by every vendor format the mock speaks.
pub fn fault_for(
    model: &str,
    knobs: &MockKnobs,
    request_index: u64,
) -> (Option<FaultKind>, Duration) {
    match model_convention(model) {
        Some(Convention::Fault(kind)) => (Some(kind), knobs.latency),
        Some(Convention::Slow) => (None, SLOW_MODEL_LATENCY),
        None => (
            knobs
                .fault
                .as_ref()
                .filter(|spec| spec.applies_to(request_index))
                .map(|spec| spec.kind),
            knobs.latency,
        ),
    }
}

/// A plan answering `status` with a complete body after `delay`.
pub fn body_plan(
    status: u16,
    content_type: &'static str,
    body: Bytes,
    delay: Duration,
) -> MockPlan {
    MockPlan {
        status: Some(status),
        usage: Usage::default(),
        steps: vec![
            MockStep::Head {
                delay,
                status,
                content_type,
                body_len: Some(body.len()),
            },
            MockStep::Body {
                delay: Duration::ZERO,
                bytes: body,
            },
            MockStep::End,
        ],
    }
}

/// A plan that sends nothing and then does `step` (`Reset` or `Hang`).
pub fn no_answer_plan(step: MockStep) -> MockPlan {
    no_answer(step)
}

/// The whole answer when `fault` leaves no room for a normal one: `Status` is answered by
/// `error(status)` (in the vendor's error shape), `Reset` and `Hang` send nothing. `None` for a
/// cut, a slow body or no fault: the caller plans the answer (see [`json_answer`],
/// [`pace_stream`], [`slow_body_if`]).
pub fn fault_answer(
    fault: Option<FaultKind>,
    error: impl FnOnce(u16) -> MockPlan,
) -> Option<MockPlan> {
    match fault? {
        FaultKind::Status(status) => Some(error(status)),
        FaultKind::Reset => Some(no_answer(MockStep::Reset)),
        FaultKind::Hang => Some(no_answer(MockStep::Hang)),
        FaultKind::CutStream | FaultKind::SlowBody => None,
    }
}

/// A 200 JSON answer after `latency`: all of `body` then `End`, serving `served`; or, when
/// `cut`, only its first half (short of the Content-Length the head announces) then `Reset`,
/// serving `cut_served`.
pub fn json_answer(
    body: Bytes,
    latency: Duration,
    cut: bool,
    served: Usage,
    cut_served: Usage,
) -> MockPlan {
    let len = body.len();
    let (body, last, usage) = if cut {
        (body.slice(..len / 2), MockStep::Reset, cut_served)
    } else {
        (body, MockStep::End, served)
    };
    let head = MockStep::Head {
        delay: latency,
        status: 200,
        content_type: CONTENT_TYPE_JSON,
        body_len: Some(len),
    };
    let body = MockStep::Body {
        delay: Duration::ZERO,
        bytes: body,
    };
    MockPlan::success(vec![head, body, last], usage)
}

/// Paces a streamed answer the way every mock format does, appending to `steps` (the head and
/// whatever goes out at once). `opening` (such as OpenAI's role chunk) goes out with chunk 0
/// after `knobs.ttft`, chunks `1..count` follow `knobs.chunk_delay` apart, then the bytes
/// `closing` writes (finish, usage, terminator) at once, or after `ttft` when `count` is 0, and
/// `End`; no step is added when there is nothing to close with. A `cut` stream sends only
/// chunks `0..count / 2` (the opening alone, after `ttft`, when that is none) and then `Reset`.
/// `write_chunk(i, out)` appends chunk `i` to `out`.
pub fn pace_stream(
    steps: &mut Vec<MockStep>,
    knobs: &MockKnobs,
    mut out: BytesMut,
    count: usize,
    cut: bool,
    mut write_chunk: impl FnMut(usize, &mut BytesMut),
    closing: impl FnOnce(&mut BytesMut),
) {
    let sent = if cut { count / 2 } else { count };
    for i in 0..sent {
        write_chunk(i, &mut out);
        steps.push(MockStep::Body {
            delay: if i == 0 {
                knobs.ttft
            } else {
                knobs.chunk_delay
            },
            bytes: out.split().freeze(),
        });
    }
    if cut {
        if !out.is_empty() {
            steps.push(MockStep::Body {
                delay: knobs.ttft,
                bytes: out.freeze(),
            });
        }
        steps.push(MockStep::Reset);
        return;
    }
    closing(&mut out);
    if !out.is_empty() {
        steps.push(MockStep::Body {
            delay: if count == 0 {
                knobs.ttft
            } else {
                Duration::ZERO
            },
            bytes: out.freeze(),
        });
    }
    steps.push(MockStep::End);
}

/// Plans an error answer: `status` with an OpenAI error body whose type matches the status
/// (see [`error_type_for_status`]). For the mock server's own errors (unknown route, bad HTTP).
pub fn error_plan(status: u16, message: &str) -> MockPlan {
    error_plan_with_delay(status, message, Duration::ZERO)
}

/// The OpenAI error `type` that goes with an HTTP status.
pub fn error_type_for_status(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_exceeded",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    }
}

/// The body of `GET /v1/models` listing `names`.
pub fn models_body(names: &[&str]) -> Bytes {
    crate::openai::models_list(names, "tollgate-mock", MOCK_CREATED)
}

// === model conventions ===

enum Convention {
    Fault(FaultKind),
    Slow,
}

fn model_convention(model: &str) -> Option<Convention> {
    let kind = match model {
        "mock-reset" => FaultKind::Reset,
        "mock-cut" => FaultKind::CutStream,
        "mock-hang" => FaultKind::Hang,
        "mock-slow-body" => FaultKind::SlowBody,
        "mock-slow" => return Some(Convention::Slow),
        _ => {
            let status = model.strip_prefix("mock-error-")?.parse::<u16>().ok()?;
            if !(100..=599).contains(&status) {
                return None;
            }
            FaultKind::Status(status)
        }
    };
    Some(Convention::Fault(kind))
}

/// The message of an injected error status (OpenAI and Anthropic wording).
pub fn injected_error_message(status: u16) -> String {
    match status {
        429 => "Rate limit reached (injected by the mock provider).".to_owned(),
        _ => format!("The mock provider was asked to fail with status {status}."),
    }
}

fn error_code_for_status(status: u16) -> Option<&'static str> {
    match status {
        401 => Some("invalid_api_key"),
        429 => Some("rate_limit_exceeded"),
        _ => None,
    }
}

fn error_plan_with_delay(status: u16, message: &str, delay: Duration) -> MockPlan {
    let error = ErrorBody {
        message,
        error_type: error_type_for_status(status),
        param: None,
        code: error_code_for_status(status),
    };
    error_body_plan(status, &error, delay)
}

fn error_body_plan(status: u16, error: &ErrorBody<'_>, delay: Duration) -> MockPlan {
    let mut out = BytesMut::with_capacity(192);
    error.write_json(&mut out);
    body_plan(status, CONTENT_TYPE_JSON, out.freeze(), delay)
}

fn no_answer(step: MockStep) -> MockPlan {
    MockPlan {
        steps: vec![step],
        status: None,
        usage: usage(0, 0),
    }
}

/// The usage a mock answer serves: these counts, their total, nothing cached.
pub fn usage(prompt_tokens: u64, completion_tokens: u64) -> Usage {
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens + completion_tokens,
        cached_tokens: 0,
    }
}

/// The mock's token estimate for `text_bytes` bytes of text: a quarter, rounded up, at least 1.
pub fn estimate_tokens(text_bytes: usize) -> u64 {
    text_bytes.div_ceil(4).max(1) as u64
}

// === generated text ===

/// `requested` capped by the request's `max_tokens`.
pub fn cap_tokens(requested: u32, max_tokens: Option<u64>) -> u32 {
    match max_tokens {
        Some(max) if max < u64::from(requested) => max as u32,
        _ => requested,
    }
}

/// The `i`-th piece ("token") of the text every mock format generates: the words cycle, and the
/// first has no leading space.
pub fn generated_piece(i: usize) -> &'static str {
    let word = WORDS[i % WORDS.len()];
    if i == 0 {
        &word[1..]
    } else {
        word
    }
}

/// How many pieces the content has (at least `base`, more to reach `target` bytes) and the
/// content length limit: when padding, the last piece is truncated so the content is exactly
/// `target` bytes long.
fn padded_pieces(base: u32, target: Option<usize>) -> (usize, usize) {
    let base = base as usize;
    let Some(target) = target else {
        return (base, usize::MAX);
    };
    let mut len: usize = (0..base).map(|i| generated_piece(i).len()).sum();
    if len >= target {
        return (base, usize::MAX);
    }
    let mut count = base;
    while len < target {
        len += generated_piece(count).len();
        count += 1;
    }
    (count, target)
}

/// The generated pieces `0..base`, and more until the text is exactly `target` bytes long when
/// a target is set and not yet reached (the last piece is truncated to fit).
pub fn padded_words(base: u32, target: Option<usize>) -> Vec<&'static str> {
    let (count, limit) = padded_pieces(base, target);
    let mut written = 0;
    (0..count)
        .map(|i| {
            let p = generated_piece(i);
            let take = p.len().min(limit.saturating_sub(written));
            written += take;
            &p[..take]
        })
        .collect()
}

/// Appends pieces `range` to `out`, stopping once the whole content (whose bytes so far are
/// `*written`) reaches `limit`.
fn push_pieces(
    out: &mut BytesMut,
    range: std::ops::Range<usize>,
    written: &mut usize,
    limit: usize,
) {
    for i in range {
        let p = generated_piece(i).as_bytes();
        let take = p.len().min(limit.saturating_sub(*written));
        out.extend_from_slice(&p[..take]);
        *written += take;
    }
}

// === responses ===

/// The first choice of a chat stream: the assistant's role and empty content.
const ROLE_CHOICE: &[u8] = b"{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}";

/// What every response of one request shares.
struct Response<'a> {
    id: u64,
    model: &'a str,
    chat: bool,
    include_usage: bool,
    prompt_tokens: u64,
    latency: Duration,
    cut: bool,
}

impl Response<'_> {
    fn json(&self, (pieces, limit): (usize, usize), capped: bool) -> MockPlan {
        let finish: &[u8] = if capped { b"length" } else { b"stop" };
        if self.chat {
            return self.chat_json(finish, pieces as u64, |out| {
                out.extend_from_slice(b"{\"role\":\"assistant\",\"content\":\"");
                push_pieces(out, 0..pieces, &mut 0, limit);
                out.extend_from_slice(b"\",\"refusal\":null}");
            });
        }
        self.completion_json(finish, pieces as u64, |out| {
            out.extend_from_slice(b"{\"text\":\"");
            push_pieces(out, 0..pieces, &mut 0, limit);
            out.extend_from_slice(b"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"");
        })
    }

    /// A streamed completion: role chunk (chat only) and the first content chunk after `ttft`,
    /// the other content chunks `chunk_delay` apart, then the finish chunk, the usage chunk when
    /// asked for, and `[DONE]`.
    fn stream(
        &self,
        knobs: &MockKnobs,
        chunks: u32,
        (pieces, limit): (usize, usize),
        capped: bool,
    ) -> MockPlan {
        let chunks = chunks as usize;
        let mut written = 0;
        let mut sent_pieces = 0;
        let finish: &[u8] = if capped { b"length" } else { b"stop" };
        let write_choice = |c: usize, out: &mut BytesMut| {
            // Chunk c carries pieces [c*P/n, (c+1)*P/n): every chunk at least one piece.
            let range = (c * pieces / chunks)..((c + 1) * pieces / chunks);
            sent_pieces = range.end;
            if self.chat {
                out.extend_from_slice(b"{\"index\":0,\"delta\":{\"content\":\"");
                push_pieces(out, range, &mut written, limit);
                out.extend_from_slice(b"\"},\"logprobs\":null,\"finish_reason\":null}");
            } else {
                out.extend_from_slice(b"{\"text\":\"");
                push_pieces(out, range, &mut written, limit);
                out.extend_from_slice(b"\",\"index\":0,\"logprobs\":null,\"finish_reason\":null}");
            }
        };
        let opening = self.chat.then_some(ROLE_CHOICE);
        let steps = self.sse_steps(knobs, opening, chunks, write_choice, finish, pieces as u64);
        let served = if self.cut { sent_pieces } else { pieces };
        MockPlan::success(steps, usage(self.prompt_tokens, served as u64))
    }

    fn embeddings(&self, inputs: usize, dims: u32) -> MockPlan {
        let mut out = BytesMut::with_capacity(128 + inputs * (64 + dims as usize * 8));
        out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
        for i in 0..inputs {
            if i > 0 {
                out.extend_from_slice(b",");
            }
            out.extend_from_slice(b"{\"object\":\"embedding\",\"index\":");
            push_u64(&mut out, i as u64);
            out.extend_from_slice(b",\"embedding\":[");
            for d in 0..dims as usize {
                if d > 0 {
                    out.extend_from_slice(b",");
                }
                push_embedding_value(&mut out, i, d);
            }
            out.extend_from_slice(b"]}");
        }
        out.extend_from_slice(b"],\"model\":");
        write_json_string(&mut out, self.model);
        out.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
        push_u64(&mut out, self.prompt_tokens);
        out.extend_from_slice(b",\"total_tokens\":");
        push_u64(&mut out, self.prompt_tokens);
        out.extend_from_slice(b"}}");
        // A cut embedding is of no use to the client: nothing served.
        let served = usage(self.prompt_tokens, 0);
        json_answer(out.freeze(), self.latency, self.cut, served, usage(0, 0))
    }

    /// `{"id":..,"object":..,"created":..,"model":..[,"system_fingerprint":..]` without the
    /// closing brace.
    fn object_prefix(&self, out: &mut BytesMut, chunk: bool) {
        let (id_prefix, object): (&[u8], &[u8]) = match (self.chat, chunk) {
            (true, false) => (b"chatcmpl-mock-", b"chat.completion"),
            (true, true) => (b"chatcmpl-mock-", b"chat.completion.chunk"),
            (false, _) => (b"cmpl-mock-", b"text_completion"),
        };
        out.extend_from_slice(b"{\"id\":\"");
        out.extend_from_slice(id_prefix);
        push_u64(out, self.id);
        out.extend_from_slice(b"\",\"object\":\"");
        out.extend_from_slice(object);
        out.extend_from_slice(b"\",\"created\":");
        push_u64(out, MOCK_CREATED);
        out.extend_from_slice(b",\"model\":");
        write_json_string(out, self.model);
        if self.chat {
            out.extend_from_slice(b",\"system_fingerprint\":\"fp_mock\"");
        }
    }

    /// One `data:` event: `prefix`, the choice written by `choice`, `]`, `"usage":null` when the
    /// request asked for usage (OpenAI then puts it on every chunk), `}`.
    fn chunk(&self, out: &mut BytesMut, prefix: &[u8], choice: impl FnOnce(&mut BytesMut)) {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(prefix);
        choice(out);
        out.extend_from_slice(b"]");
        if self.include_usage {
            out.extend_from_slice(b",\"usage\":null");
        }
        out.extend_from_slice(b"}\n\n");
    }

    /// A completion body with one choice, written by `choice` up to the value of its
    /// `finish_reason` (which is `finish`), serving `completion` tokens (see [`json_answer`]
    /// for a cut).
    fn completion_json(
        &self,
        finish: &[u8],
        completion: u64,
        choice: impl FnOnce(&mut BytesMut),
    ) -> MockPlan {
        let mut out = BytesMut::with_capacity(384 + completion as usize * 8);
        self.object_prefix(&mut out, false);
        out.extend_from_slice(b",\"choices\":[");
        choice(&mut out);
        out.extend_from_slice(finish);
        out.extend_from_slice(b"\"}],\"usage\":");
        push_usage(&mut out, self.prompt_tokens, completion);
        out.extend_from_slice(b"}");
        let served = usage(self.prompt_tokens, completion);
        let unusable = usage(self.prompt_tokens, 0);
        json_answer(out.freeze(), self.latency, self.cut, served, unusable)
    }

    /// The steps of a stream: the head; `opening` (a choice, such as [`ROLE_CHOICE`]) with
    /// chunk 0 and the `count` chunks whose choices `write_choice(i, out)` writes, paced by
    /// [`pace_stream`]; then the `finish` chunk, the usage chunk (`completion` tokens) when the
    /// request asked for it, and `[DONE]`.
    fn sse_steps(
        &self,
        knobs: &MockKnobs,
        opening: Option<&[u8]>,
        count: usize,
        mut write_choice: impl FnMut(usize, &mut BytesMut),
        finish: &[u8],
        completion: u64,
    ) -> Vec<MockStep> {
        let mut prefix = BytesMut::with_capacity(160);
        self.object_prefix(&mut prefix, true);
        prefix.extend_from_slice(b",\"choices\":[");
        let mut steps = Vec::with_capacity(count + 4);
        steps.push(MockStep::Head {
            delay: self.latency,
            status: 200,
            content_type: CONTENT_TYPE_SSE,
            body_len: None,
        });
        let mut first = BytesMut::new();
        if let Some(choice) = opening {
            self.chunk(&mut first, &prefix, |out| out.extend_from_slice(choice));
        }
        let closing = |out: &mut BytesMut| {
            self.chunk(out, &prefix, |out| {
                if self.chat {
                    out.extend_from_slice(
                        b"{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"",
                    );
                } else {
                    out.extend_from_slice(
                        b"{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"",
                    );
                }
                out.extend_from_slice(finish);
                out.extend_from_slice(b"\"}");
            });
            if self.include_usage {
                out.extend_from_slice(b"data: ");
                out.extend_from_slice(&prefix);
                out.extend_from_slice(b"],\"usage\":");
                push_usage(out, self.prompt_tokens, completion);
                out.extend_from_slice(b"}\n\n");
            }
            out.extend_from_slice(b"data: [DONE]\n\n");
        };
        pace_stream(
            &mut steps,
            knobs,
            first,
            count,
            self.cut,
            |i, out| self.chunk(out, &prefix, |out| write_choice(i, out)),
            closing,
        );
        steps
    }
}

/// `plan` as [`slow_body`] sends it when `fault` is [`FaultKind::SlowBody`], else unchanged.
pub fn slow_body_if(fault: Option<FaultKind>, plan: MockPlan) -> MockPlan {
    if fault == Some(FaultKind::SlowBody) {
        slow_body(plan)
    } else {
        plan
    }
}

/// Turns a plan into: head at once, then every body byte in small pieces
/// [`SLOW_BODY_PIECE_DELAY`] apart (at most [`SLOW_BODY_MAX_PIECES`]), then the plan's last step.
pub fn slow_body(plan: MockPlan) -> MockPlan {
    let mut head = None;
    let mut body = BytesMut::new();
    let mut last = MockStep::End;
    for step in plan.steps {
        match step {
            MockStep::Head {
                status,
                content_type,
                body_len,
                ..
            } => {
                head = Some(MockStep::Head {
                    delay: Duration::ZERO,
                    status,
                    content_type,
                    body_len,
                })
            }
            MockStep::Body { bytes, .. } => body.extend_from_slice(&bytes),
            other => last = other,
        }
    }
    let mut steps = Vec::with_capacity(SLOW_BODY_MAX_PIECES + 2);
    steps.extend(head);
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

// === tool convention ===

/// What the shared tool convention asks of the mock for one chat request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolTurn {
    /// Tools were offered and a user message is last: call the first tool.
    Call {
        /// Name of the first offered tool.
        name: String,
    },
    /// A `role: tool` message is last: answer with its text.
    Result {
        /// The tool result's text (text parts joined).
        text: String,
    },
}

/// What a vendor-format mock reads from a request before planning its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockRequest {
    /// Estimated prompt tokens (see [`estimate_tokens`]).
    pub prompt_tokens: u64,
    /// The request's cap on generated tokens, if any.
    pub max_tokens: Option<u64>,
    /// The tool turn the request asks for; `None` for the usual generated text.
    pub tool_turn: Option<ToolTurn>,
}

/// The tool turn an OpenAI chat body asks for, if any. Bodies without the bytes `"tool` are
/// never parsed, so plain benchmark traffic pays one substring search.
pub fn tool_turn(body: &[u8]) -> Option<ToolTurn> {
    #[derive(serde::Deserialize)]
    struct Request {
        #[serde(default)]
        tools: Option<Vec<serde_json::Value>>,
        #[serde(default)]
        messages: Vec<RequestMessage>,
    }
    #[derive(serde::Deserialize)]
    struct RequestMessage {
        role: String,
        #[serde(default)]
        content: Option<serde_json::Value>,
    }

    memchr::memmem::find(body, b"\"tool")?;
    let request: Request = serde_json::from_slice(body).ok()?;
    let last = request.messages.last()?;
    match last.role.as_str() {
        "tool" => Some(ToolTurn::Result {
            text: content_text(last.content.as_ref()),
        }),
        "user" => {
            let first = request.tools?.into_iter().next()?;
            let name = first.get("function")?.get("name")?.as_str()?.to_owned();
            Some(ToolTurn::Call { name })
        }
        _ => None,
    }
}

/// Text of OpenAI message content: a string, or the `text` of its parts joined.
fn content_text(content: Option<&serde_json::Value>) -> String {
    match content {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(serde_json::Value::as_str))
            .collect(),
        _ => String::new(),
    }
}

/// `text` cut into word pieces, each space starting a new piece (one piece, one "token"), as the
/// mocks stream their answer to a tool result.
pub fn word_pieces(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    for (i, c) in text.char_indices() {
        if c == ' ' && i > start {
            pieces.push(&text[start..i]);
            start = i;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

impl Response<'_> {
    /// The answer to a tool turn (chat only), streamed or as one JSON body.
    fn tool_turn(&self, turn: &ToolTurn, stream: bool, knobs: &MockKnobs) -> MockPlan {
        match turn {
            ToolTurn::Call { name } => {
                let tokens = MOCK_TOOL_ARGUMENT_PIECES.len() as u64;
                if stream {
                    let mut first = BytesMut::new();
                    first.extend_from_slice(
                        b"{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"index\":0,\"id\":",
                    );
                    write_json_string(&mut first, MOCK_TOOL_CALL_ID);
                    first.extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                    write_json_string(&mut first, name);
                    first.extend_from_slice(
                        b",\"arguments\":\"\"}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}",
                    );
                    let pieces = MOCK_TOOL_ARGUMENT_PIECES
                        .iter()
                        .map(|piece| {
                            let mut c = BytesMut::new();
                            c.extend_from_slice(
                                b"{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":",
                            );
                            write_json_string(&mut c, piece);
                            c.extend_from_slice(b"}}]},\"logprobs\":null,\"finish_reason\":null}");
                            c
                        })
                        .collect();
                    self.custom_stream(knobs, &first, pieces, b"tool_calls", tokens)
                } else {
                    self.chat_json(b"tool_calls", tokens, |message| {
                        message.extend_from_slice(
                            b"{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":",
                        );
                        write_json_string(message, MOCK_TOOL_CALL_ID);
                        message
                            .extend_from_slice(b",\"type\":\"function\",\"function\":{\"name\":");
                        write_json_string(message, name);
                        message.extend_from_slice(b",\"arguments\":");
                        write_json_string(message, MOCK_TOOL_ARGUMENTS);
                        message.extend_from_slice(b"}}],\"refusal\":null}");
                    })
                }
            }
            ToolTurn::Result { text } => {
                let answer = format!("{MOCK_TOOL_RESULT_PREFIX}{text}");
                let words = word_pieces(&answer);
                let tokens = words.len() as u64;
                if stream {
                    let pieces = words
                        .iter()
                        .map(|word| {
                            let mut c = BytesMut::new();
                            c.extend_from_slice(b"{\"index\":0,\"delta\":{\"content\":");
                            write_json_string(&mut c, word);
                            c.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":null}");
                            c
                        })
                        .collect();
                    self.custom_stream(knobs, ROLE_CHOICE, pieces, b"stop", tokens)
                } else {
                    self.chat_json(b"stop", tokens, |message| {
                        message.extend_from_slice(b"{\"role\":\"assistant\",\"content\":");
                        write_json_string(message, &answer);
                        message.extend_from_slice(b",\"refusal\":null}");
                    })
                }
            }
        }
    }

    /// A chat completion body around the message (a JSON object) that `message` writes. A cut
    /// plan sends half of it.
    fn chat_json(
        &self,
        finish: &[u8],
        completion: u64,
        message: impl FnOnce(&mut BytesMut),
    ) -> MockPlan {
        self.completion_json(finish, completion, |out| {
            out.extend_from_slice(b"{\"index\":0,\"message\":");
            message(out);
            out.extend_from_slice(b",\"logprobs\":null,\"finish_reason\":\"");
        })
    }

    /// A chat stream: `first` (the role choice) and the first of `pieces` after `ttft`, the
    /// other pieces `chunk_delay` apart, then the `finish` chunk, the usage chunk when asked
    /// for, and `[DONE]`. A cut plan stops after half the pieces and resets.
    fn custom_stream(
        &self,
        knobs: &MockKnobs,
        first: &[u8],
        pieces: Vec<BytesMut>,
        finish: &[u8],
        completion: u64,
    ) -> MockPlan {
        let write_choice = |i: usize, out: &mut BytesMut| out.extend_from_slice(&pieces[i]);
        let steps = self.sse_steps(
            knobs,
            Some(first),
            pieces.len(),
            write_choice,
            finish,
            completion,
        );
        let served = if self.cut {
            pieces.len() as u64 / 2
        } else {
            completion
        };
        MockPlan::success(steps, usage(self.prompt_tokens, served))
    }
}

// === JSON writing ===

fn push_u64(out: &mut BytesMut, n: u64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(n).as_bytes());
}

fn push_usage(out: &mut BytesMut, prompt: u64, completion: u64) {
    out.extend_from_slice(b"{\"prompt_tokens\":");
    push_u64(out, prompt);
    out.extend_from_slice(b",\"completion_tokens\":");
    push_u64(out, completion);
    out.extend_from_slice(b",\"total_tokens\":");
    push_u64(out, prompt + completion);
    out.extend_from_slice(
        b",\"prompt_tokens_details\":{\"cached_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}",
    );
}

/// A deterministic value in `(-1, 1)` with four decimals.
fn push_embedding_value(out: &mut BytesMut, input: usize, dim: usize) {
    let h = (input as u64)
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add((dim as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F));
    let h = (h ^ (h >> 29)) % 19_999;
    let (sign, magnitude): (&[u8], u64) = if h >= 9_999 {
        (b"", h - 9_999)
    } else {
        (b"-", 9_999 - h)
    };
    out.extend_from_slice(sign);
    out.extend_from_slice(b"0.");
    let digits = [
        b'0' + (magnitude / 1000 % 10) as u8,
        b'0' + (magnitude / 100 % 10) as u8,
        b'0' + (magnitude / 10 % 10) as u8,
        b'0' + (magnitude % 10) as u8,
    ];
    out.extend_from_slice(&digits);
}

// === prompt text scan ===

/// What the prompt-token estimate needs from a request body.
#[derive(Debug, Default, PartialEq, Eq)]
struct TextScan {
    /// Bytes inside string values of [`TEXT_KEYS`] (at any depth, including arrays under them).
    text_bytes: usize,
    /// Embeddings: how many inputs the top-level `input` holds (0 when absent).
    inputs: usize,
}

/// One open JSON container while scanning.
struct Frame {
    object: bool,
    /// Strings directly inside count as text (arrays under a text key, and their sub-arrays).
    counts: bool,
    /// The array is the top-level `input`: count its elements.
    input_array: bool,
}

/// A single linear pass over an (already validated) JSON body; lenient on malformed input.
fn scan_text(body: &[u8]) -> TextScan {
    let mut scan = TextScan::default();
    let mut stack: Vec<Frame> = Vec::with_capacity(8);
    let mut expect_key = false;
    // Whether the value after the current key counts, and whether the key is top-level `input`.
    let mut key_counts = false;
    let mut key_is_input = false;
    let mut input_elements = 0usize;
    let mut input_first_is_number = false;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        match b {
            b'"' => {
                let start = i + 1;
                let end = string_end(body, start);
                let in_object = stack.last().is_some_and(|f| f.object);
                if in_object && expect_key {
                    let key = &body[start..end];
                    key_counts = TEXT_KEYS.contains(&key);
                    key_is_input = stack.len() == 1 && key == b"input";
                } else {
                    count_element(
                        &stack,
                        &mut input_elements,
                        &mut input_first_is_number,
                        false,
                    );
                    let counts = match stack.last() {
                        Some(f) if f.object => key_counts,
                        Some(f) => f.counts,
                        None => false,
                    };
                    if counts {
                        scan.text_bytes += end - start;
                    }
                    if in_object && key_is_input {
                        scan.inputs = 1;
                    }
                }
                i = end + 1;
                continue;
            }
            b'{' | b'[' => {
                count_element(
                    &stack,
                    &mut input_elements,
                    &mut input_first_is_number,
                    false,
                );
                if stack.len() >= MAX_SCAN_DEPTH {
                    break;
                }
                let parent_counts = match stack.last() {
                    Some(f) if f.object => key_counts,
                    Some(f) => f.counts,
                    None => false,
                };
                let input_array = b == b'[' && key_is_input && stack.len() == 1;
                stack.push(Frame {
                    object: b == b'{',
                    counts: b == b'[' && parent_counts,
                    input_array,
                });
                expect_key = b == b'{';
                key_is_input = false;
            }
            b'}' | b']' => {
                if let Some(frame) = stack.pop() {
                    if frame.input_array {
                        scan.inputs = if input_first_is_number {
                            1
                        } else {
                            input_elements
                        };
                    }
                }
                expect_key = false;
            }
            b':' => expect_key = false,
            b',' => expect_key = stack.last().is_some_and(|f| f.object),
            b' ' | b'\t' | b'\n' | b'\r' => {}
            _ => {
                // A number or a literal: skip to the next structural byte.
                count_element(
                    &stack,
                    &mut input_elements,
                    &mut input_first_is_number,
                    b == b'-' || b.is_ascii_digit(),
                );
                while i + 1 < body.len() && !b",]}: \t\r\n".contains(&body[i + 1]) {
                    i += 1;
                }
            }
        }
        i += 1;
    }
    scan
}

/// Counts one element of the top-level `input` array when `stack`'s top is that array.
fn count_element(stack: &[Frame], elements: &mut usize, first_is_number: &mut bool, number: bool) {
    if stack.last().is_some_and(|f| f.input_array) {
        if *elements == 0 {
            *first_is_number = number;
        }
        *elements += 1;
    }
}

/// Index of the closing quote of the string starting at `start` (or `body.len()`).
fn string_end(body: &[u8], mut i: usize) -> usize {
    while let Some(offset) = memchr::memchr2(b'"', b'\\', &body[i..]) {
        i += offset;
        if body[i] == b'"' {
            return i;
        }
        i += 2;
        if i >= body.len() {
            return body.len();
        }
    }
    body.len()
}

/// Helpers for the unit tests of the mock modules.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{MockPlan, MockStep};

    /// Every body byte of `plan`, in order.
    pub(crate) fn plan_body(plan: &MockPlan) -> Vec<u8> {
        let mut out = Vec::new();
        for step in &plan.steps {
            if let MockStep::Body { bytes, .. } = step {
                out.extend_from_slice(bytes);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::sse::SseDecoder;
    use serde_json::Value;

    const CHAT: &[u8] = br#"{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello to the gateway please."}]}"#;

    fn chat_body(model: &str, stream: bool, include_usage: bool) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(CHAT).unwrap();
        v["model"] = Value::from(model);
        if stream {
            v["stream"] = Value::from(true);
        }
        if include_usage {
            v["stream_options"] = serde_json::json!({"include_usage": true});
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn run(endpoint: Endpoint, body: &[u8], knobs: &MockKnobs, index: u64) -> MockPlan {
        plan(endpoint, body, knobs, index, &mut Vec::new())
    }

    /// (status, content type, body_len) of the head and the concatenated body.
    fn head_and_body(plan: &MockPlan) -> (u16, &'static str, Option<usize>, Vec<u8>) {
        let mut head = None;
        let mut body = Vec::new();
        for step in &plan.steps {
            match step {
                MockStep::Head {
                    status,
                    content_type,
                    body_len,
                    ..
                } => head = Some((*status, *content_type, *body_len)),
                MockStep::Body { bytes, .. } => body.extend_from_slice(bytes),
                _ => {}
            }
        }
        let (status, ct, len) = head.expect("plan has a head");
        (status, ct, len, body)
    }

    fn json_of(plan: &MockPlan) -> Value {
        let (status, ct, len, body) = head_and_body(plan);
        assert_eq!(ct, CONTENT_TYPE_JSON, "status {status}");
        assert_eq!(len, Some(body.len()));
        assert_eq!(plan.steps.last(), Some(&MockStep::End));
        serde_json::from_slice(&body).unwrap()
    }

    /// Decodes a streamed plan's body as SSE, returning each event's data.
    fn sse_data(plan: &MockPlan) -> Vec<String> {
        let (status, ct, len, body) = head_and_body(plan);
        assert_eq!((status, ct, len), (200, CONTENT_TYPE_SSE, None));
        let mut decoder = SseDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&body[..]);
        let mut out = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            out.push(frame.data.clone().expect("every event has data"));
        }
        assert!(buf.is_empty(), "trailing bytes: {buf:?}");
        out
    }

    fn usage_tuple(u: &Usage) -> (u64, u64, u64) {
        (u.prompt_tokens, u.completion_tokens, u.total_tokens)
    }

    const TOOL_CALL: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"Weather in Paris?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}},{"type":"function","function":{"name":"other"}}]}"#;
    const TOOL_RESULT: &[u8] = br#"{"model":"m","messages":[{"role":"user","content":"Weather?"},{"role":"assistant","content":null,"tool_calls":[{"id":"call_mock_1","type":"function","function":{"name":"get_weather","arguments":"{}"}}]},{"role":"tool","tool_call_id":"call_mock_1","content":[{"type":"text","text":"sunny"}]}],"tools":[{"type":"function","function":{"name":"get_weather"}}]}"#;

    fn with_stream(body: &[u8]) -> Vec<u8> {
        let mut v: Value = serde_json::from_slice(body).unwrap();
        v["stream"] = Value::from(true);
        v["stream_options"] = serde_json::json!({"include_usage": true});
        serde_json::to_vec(&v).unwrap()
    }

    #[test]
    fn tool_convention_calls_the_first_tool() {
        assert_eq!(MOCK_TOOL_ARGUMENT_PIECES.concat(), MOCK_TOOL_ARGUMENTS);
        let plan = run(
            Endpoint::ChatCompletions,
            TOOL_CALL,
            &MockKnobs::default(),
            0,
        );
        let v = json_of(&plan);
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "tool_calls");
        assert!(choice["message"]["content"].is_null());
        let calls = choice["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["id"], MOCK_TOOL_CALL_ID);
        assert_eq!(calls[0]["type"], "function");
        assert_eq!(calls[0]["function"]["name"], "get_weather");
        let args: Value =
            serde_json::from_str(calls[0]["function"]["arguments"].as_str().unwrap()).unwrap();
        assert_eq!(args, serde_json::json!({"city": "Paris"}));
        assert!(v["usage"]["completion_tokens"].as_u64().unwrap() > 0);

        let plan = run(
            Endpoint::ChatCompletions,
            &with_stream(TOOL_CALL),
            &MockKnobs::default(),
            0,
        );
        let data = sse_data(&plan);
        assert_eq!(data.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        let first = &chunks[0]["choices"][0]["delta"];
        assert_eq!(first["role"], "assistant");
        assert_eq!(first["tool_calls"][0]["id"], MOCK_TOOL_CALL_ID);
        assert_eq!(first["tool_calls"][0]["type"], "function");
        assert_eq!(first["tool_calls"][0]["function"]["name"], "get_weather");
        let pieces: Vec<&str> = chunks[1..]
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert!(pieces.len() >= 2);
        assert_eq!(pieces.concat(), MOCK_TOOL_ARGUMENTS);
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks.last().unwrap()["choices"], serde_json::json!([]));
        assert!(
            chunks.last().unwrap()["usage"]["completion_tokens"]
                .as_u64()
                .unwrap()
                > 0
        );
    }

    #[test]
    fn tool_convention_answers_a_tool_result() {
        let v = json_of(&run(
            Endpoint::ChatCompletions,
            TOOL_RESULT,
            &MockKnobs::default(),
            0,
        ));
        assert_eq!(v["choices"][0]["message"]["content"], "Tool said: sunny");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");

        let data = sse_data(&run(
            Endpoint::ChatCompletions,
            &with_stream(TOOL_RESULT),
            &MockKnobs::default(),
            0,
        ));
        let text: String = data[..data.len() - 1]
            .iter()
            .filter_map(|d| {
                let c: Value = serde_json::from_str(d).unwrap();
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "Tool said: sunny");
    }

    #[test]
    fn tool_convention_leaves_other_requests_alone() {
        // Tools offered but an assistant message last: ordinary text.
        let body = br#"{"model":"m","messages":[{"role":"assistant","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}"#;
        assert_eq!(tool_turn(body), None);
        assert_eq!(tool_turn(&chat_body("m", false, false)), None);
        let body = br#"{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[]}"#;
        assert_eq!(tool_turn(body), None);
        assert_eq!(
            word_pieces("Tool said: a b"),
            ["Tool", " said:", " a", " b"]
        );
        // A cut tool call falls short and resets.
        let mut v: Value = serde_json::from_slice(TOOL_CALL).unwrap();
        v["model"] = Value::from("mock-cut");
        let plan = run(
            Endpoint::ChatCompletions,
            &serde_json::to_vec(&v).unwrap(),
            &MockKnobs::default(),
            0,
        );
        assert_eq!(plan.steps.last(), Some(&MockStep::Reset));
    }

    #[test]
    fn chat_completion_shape() {
        let plan = run(
            Endpoint::ChatCompletions,
            &chat_body("gpt-4o-mini", false, false),
            &MockKnobs::default(),
            7,
        );
        let v = json_of(&plan);
        assert_eq!(v["id"], "chatcmpl-mock-7");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["created"], MOCK_CREATED);
        assert_eq!(v["model"], "gpt-4o-mini");
        let choice = &v["choices"][0];
        assert_eq!(choice["index"], 0);
        assert_eq!(choice["finish_reason"], "stop");
        assert_eq!(choice["message"]["role"], "assistant");
        let content = choice["message"]["content"].as_str().unwrap();
        assert!(content.starts_with("Tollgate mock tokens"), "{content}");
        assert_eq!(v["usage"]["completion_tokens"], 16);
        // "You are terse." + "Say hello to the gateway please." = 14 + 31 bytes -> 12 tokens.
        assert_eq!(v["usage"]["prompt_tokens"], 12);
        assert_eq!(v["usage"]["total_tokens"], 28);
        assert_eq!(plan.status, Some(200));
        assert_eq!(usage_tuple(&plan.usage), (12, 16, 28));
    }

    #[test]
    fn max_tokens_caps_and_reports_length() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":3}"#;
        let v = json_of(&run(
            Endpoint::ChatCompletions,
            body,
            &MockKnobs::default(),
            0,
        ));
        assert_eq!(v["usage"]["completion_tokens"], 3);
        assert_eq!(v["choices"][0]["finish_reason"], "length");
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "Tollgate mock tokens"
        );
        assert_eq!(v["usage"]["prompt_tokens"], 1);
    }

    #[test]
    fn completion_shape() {
        let body = br#"{"model":"gpt-3.5-turbo-instruct","prompt":"Once upon a time"}"#;
        let v = json_of(&run(Endpoint::Completions, body, &MockKnobs::default(), 3));
        assert_eq!(v["id"], "cmpl-mock-3");
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["model"], "gpt-3.5-turbo-instruct");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert!(v["choices"][0]["text"].as_str().unwrap().len() > 16);
        assert_eq!(v["usage"]["prompt_tokens"], 4);
        assert_eq!(v["usage"]["completion_tokens"], 16);
    }

    #[test]
    fn embeddings_shape() {
        let knobs = MockKnobs {
            embedding_dims: 5,
            ..MockKnobs::default()
        };
        let body = br#"{"model":"text-embedding-3-small","input":["first text","second"]}"#;
        let plan = run(Endpoint::Embeddings, body, &knobs, 0);
        let v = json_of(&plan);
        assert_eq!(v["object"], "list");
        assert_eq!(v["model"], "text-embedding-3-small");
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        for (i, item) in data.iter().enumerate() {
            assert_eq!(item["object"], "embedding");
            assert_eq!(item["index"], i);
            let values = item["embedding"].as_array().unwrap();
            assert_eq!(values.len(), 5);
            assert!(values.iter().all(|x| x.as_f64().unwrap().abs() < 1.0));
        }
        assert_ne!(data[0]["embedding"], data[1]["embedding"]);
        assert_eq!(v["usage"]["prompt_tokens"], 4);
        assert_eq!(v["usage"]["total_tokens"], 4);
        assert_eq!(usage_tuple(&plan.usage), (4, 0, 4));

        let single = br#"{"model":"e","input":"just one"}"#;
        let v = json_of(&run(Endpoint::Embeddings, single, &knobs, 0));
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        let tokens = br#"{"model":"e","input":[1,2,3]}"#;
        let v = json_of(&run(Endpoint::Embeddings, tokens, &knobs, 0));
        assert_eq!(v["data"].as_array().unwrap().len(), 1);
        let token_lists = br#"{"model":"e","input":[[1,2],[3]]}"#;
        let v = json_of(&run(Endpoint::Embeddings, token_lists, &knobs, 0));
        assert_eq!(v["data"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn chat_stream_shape_without_usage() {
        let knobs = MockKnobs {
            chunks: 4,
            ttft: Duration::from_millis(5),
            chunk_delay: Duration::from_millis(2),
            ..MockKnobs::default()
        };
        let plan = run(
            Endpoint::ChatCompletions,
            &chat_body("m", true, false),
            &knobs,
            1,
        );
        let data = sse_data(&plan);
        // role+first content, 3 content, finish, [DONE]
        assert_eq!(data.len(), 7);
        assert_eq!(data.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = data[..6]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        for c in &chunks {
            assert_eq!(c["object"], "chat.completion.chunk");
            assert_eq!(c["id"], "chatcmpl-mock-1");
            assert_eq!(c["model"], "m");
            assert!(
                c.get("usage").is_none(),
                "no usage key without include_usage"
            );
        }
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[0]["choices"][0]["delta"]["content"], "");
        let text: String = chunks[1..5]
            .iter()
            .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(text, "Tollgate mock tokens flow");
        assert!(chunks[1..5]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null()));
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[5]["choices"][0]["delta"], serde_json::json!({}));
        // Delays: head, then ttft, then chunk_delay between content chunks.
        let delays: Vec<Duration> = plan
            .steps
            .iter()
            .filter_map(|s| match s {
                MockStep::Head { delay, .. } | MockStep::Body { delay, .. } => Some(*delay),
                _ => None,
            })
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(delays, [ms(0), ms(5), ms(2), ms(2), ms(2), ms(0)]);
        assert_eq!(usage_tuple(&plan.usage).1, 4);
    }

    #[test]
    fn chat_stream_with_usage_chunk() {
        let plan = run(
            Endpoint::ChatCompletions,
            &chat_body("m", true, true),
            &MockKnobs::default(),
            0,
        );
        let data = sse_data(&plan);
        assert_eq!(data.last().unwrap(), "[DONE]");
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        // role+content, 15 content, finish, usage
        assert_eq!(chunks.len(), 1 + 16 + 1 + 1);
        let (last, rest) = chunks.split_last().unwrap();
        for c in rest {
            assert!(c["usage"].is_null() && c.get("usage").is_some());
            assert_eq!(c["choices"].as_array().unwrap().len(), 1);
        }
        assert_eq!(last["choices"], serde_json::json!([]));
        assert_eq!(last["usage"]["prompt_tokens"], 12);
        assert_eq!(last["usage"]["completion_tokens"], 16);
        assert_eq!(last["usage"]["total_tokens"], 28);
    }

    #[test]
    fn completion_stream_shape() {
        let knobs = MockKnobs {
            chunks: 3,
            ..MockKnobs::default()
        };
        let body = br#"{"model":"i","prompt":"abc","stream":true,"stream_options":{"include_usage":true}}"#;
        let data = sse_data(&run(Endpoint::Completions, body, &knobs, 0));
        assert_eq!(data.len(), 3 + 1 + 1 + 1);
        let chunks: Vec<Value> = data[..5]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap())
            .collect();
        assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
        assert_eq!(chunks[0]["choices"][0]["text"], "Tollgate");
        assert_eq!(chunks[3]["choices"][0]["finish_reason"], "stop");
        assert_eq!(chunks[4]["choices"], serde_json::json!([]));
        assert_eq!(chunks[4]["usage"]["completion_tokens"], 3);
    }

    #[test]
    fn response_bytes_pads_content_exactly() {
        let knobs = MockKnobs {
            response_bytes: Some(1000),
            chunks: 4,
            ..MockKnobs::default()
        };
        let v = json_of(&run(
            Endpoint::ChatCompletions,
            &chat_body("m", false, false),
            &knobs,
            0,
        ));
        let content = v["choices"][0]["message"]["content"].as_str().unwrap();
        assert_eq!(content.len(), 1000);
        let tokens = v["usage"]["completion_tokens"].as_u64().unwrap();
        assert!(tokens > 16, "padding adds tokens: {tokens}");

        let plan = run(
            Endpoint::ChatCompletions,
            &chat_body("m", true, true),
            &knobs,
            0,
        );
        let data = sse_data(&plan);
        let text: String = data[..5]
            .iter()
            .map(|d| {
                let c: Value = serde_json::from_str(d).unwrap();
                c["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(text.len(), 1000);
        assert_eq!(text, content);
        let usage: Value = serde_json::from_str(&data[data.len() - 2]).unwrap();
        assert_eq!(usage["usage"]["completion_tokens"], tokens);
    }

    #[test]
    fn rejected_request_gets_400() {
        let plan = run(
            Endpoint::ChatCompletions,
            b"{not json",
            &MockKnobs::default(),
            0,
        );
        let (status, _, _, body) = head_and_body(&plan);
        assert_eq!(status, 400);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().len() > 3);
        assert_eq!(usage_tuple(&plan.usage), (0, 0, 0));
    }

    #[test]
    fn model_error_conventions() {
        for (status, ty) in [
            (429, "rate_limit_exceeded"),
            (500, "server_error"),
            (503, "server_error"),
            (401, "authentication_error"),
        ] {
            let model = format!("mock-error-{status}");
            for stream in [false, true] {
                let plan = run(
                    Endpoint::ChatCompletions,
                    &chat_body(&model, stream, false),
                    &MockKnobs::default(),
                    0,
                );
                assert_eq!(plan.status, Some(status));
                let v = json_of(&plan);
                assert_eq!(v["error"]["type"], ty, "{model}");
                assert!(v["error"]["message"].is_string());
            }
        }
        let v = json_of(&run(
            Endpoint::ChatCompletions,
            &chat_body("mock-error-429", false, false),
            &MockKnobs::default(),
            0,
        ));
        assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        // Not a status: an ordinary model.
        let plan = run(
            Endpoint::ChatCompletions,
            &chat_body("mock-error-abc", false, false),
            &MockKnobs::default(),
            0,
        );
        assert_eq!(plan.status, Some(200));
    }

    #[test]
    fn model_reset_and_hang() {
        for stream in [false, true] {
            let plan = run(
                Endpoint::ChatCompletions,
                &chat_body("mock-reset", stream, false),
                &MockKnobs::default(),
                0,
            );
            assert_eq!(plan.steps, [MockStep::Reset]);
            assert_eq!(plan.status, None);
            let plan = run(
                Endpoint::ChatCompletions,
                &chat_body("mock-hang", stream, false),
                &MockKnobs::default(),
                0,
            );
            assert_eq!(plan.steps, [MockStep::Hang]);
        }
    }

    #[test]
    fn model_cut_stream_sends_half_and_no_done() {
        let plan = run(
            Endpoint::ChatCompletions,
            &chat_body("mock-cut", true, true),
            &MockKnobs::default(),
            0,
        );
        assert_eq!(plan.steps.last(), Some(&MockStep::Reset));
        let mut body = Vec::new();
        for s in &plan.steps {
            if let MockStep::Body { bytes, .. } = s {
                body.extend_from_slice(bytes);
            }
        }
        let mut decoder = SseDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&body[..]);
        let mut events = 0;
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            assert!(!frame.is_done());
            events += 1;
        }
        assert_eq!(events, 1 + 8, "role chunk + half of 16 content chunks");
        assert_eq!(usage_tuple(&plan.usage).1, 8);
    }

    #[test]
    fn model_cut_json_falls_short_of_content_length() {
        let plan = run(
            Endpoint::ChatCompletions,
            &chat_body("mock-cut", false, false),
            &MockKnobs::default(),
            0,
        );
        let (status, _, len, body) = head_and_body(&plan);
        assert_eq!(status, 200);
        assert_eq!(len.unwrap() / 2, body.len());
        assert_eq!(plan.steps.last(), Some(&MockStep::Reset));
    }

    #[test]
    fn model_slow_and_slow_body() {
        let plan = run(
            Endpoint::ChatCompletions,
            &chat_body("mock-slow", false, false),
            &MockKnobs::default(),
            0,
        );
        assert!(
            matches!(plan.steps[0], MockStep::Head { delay, .. } if delay == SLOW_MODEL_LATENCY)
        );
        json_of(&plan);

        let knobs = MockKnobs {
            latency: Duration::from_secs(3),
            ..MockKnobs::default()
        };
        for stream in [false, true] {
            let plan = run(
                Endpoint::ChatCompletions,
                &chat_body("mock-slow-body", stream, false),
                &knobs,
                0,
            );
            assert!(matches!(plan.steps[0], MockStep::Head { delay, .. } if delay.is_zero()));
            let bodies: Vec<&Bytes> = plan
                .steps
                .iter()
                .filter_map(|s| match s {
                    MockStep::Body { delay, bytes } => {
                        assert_eq!(*delay, SLOW_BODY_PIECE_DELAY);
                        Some(bytes)
                    }
                    _ => None,
                })
                .collect();
            assert!(bodies.len() > 3 && bodies.len() <= SLOW_BODY_MAX_PIECES);
            assert!(bodies[..bodies.len() - 1]
                .iter()
                .all(|b| b.len() == SLOW_BODY_PIECE_BYTES));
            if stream {
                sse_data(&plan);
            } else {
                json_of(&plan);
            }
        }
    }

    #[test]
    fn fault_rate_is_deterministic() {
        let spec = FaultSpec {
            kind: FaultKind::Status(503),
            rate: 0.1,
        };
        let hits: Vec<u64> = (0..100).filter(|&n| spec.applies_to(n)).collect();
        assert_eq!(hits.len(), 10);
        assert_eq!(hits, [9, 19, 29, 39, 49, 59, 69, 79, 89, 99]);
        let all = FaultSpec {
            rate: 1.0,
            ..spec.clone()
        };
        assert!((0..1000).all(|n| all.applies_to(n)));
        let none = FaultSpec {
            rate: 0.0,
            ..spec.clone()
        };
        assert!((0..1000).all(|n| !none.applies_to(n)));
        let odd = FaultSpec { rate: 0.37, ..spec };
        assert_eq!((0..1000).filter(|&n| odd.applies_to(n)).count(), 370);

        let knobs = MockKnobs {
            fault: Some(FaultSpec {
                kind: FaultKind::Status(503),
                rate: 0.1,
            }),
            ..MockKnobs::default()
        };
        let body = chat_body("gpt-4o-mini", false, false);
        let statuses: Vec<Option<u16>> = (0..100)
            .map(|n| run(Endpoint::ChatCompletions, &body, &knobs, n).status)
            .collect();
        assert_eq!(statuses.iter().filter(|s| **s == Some(503)).count(), 10);
        assert_eq!(statuses.iter().filter(|s| **s == Some(200)).count(), 90);
        // Same sequence, same answers.
        let again: Vec<Option<u16>> = (0..100)
            .map(|n| run(Endpoint::ChatCompletions, &body, &knobs, n).status)
            .collect();
        assert_eq!(statuses, again);
    }

    #[test]
    fn plans_are_deterministic() {
        let body = chat_body("m", true, true);
        let a = run(Endpoint::ChatCompletions, &body, &MockKnobs::default(), 5);
        let b = run(Endpoint::ChatCompletions, &body, &MockKnobs::default(), 5);
        assert_eq!(a.steps, b.steps);
    }

    #[test]
    fn fault_kind_parses() {
        assert_eq!("status:503".parse(), Ok(FaultKind::Status(503)));
        assert_eq!("reset".parse(), Ok(FaultKind::Reset));
        assert_eq!("cut".parse(), Ok(FaultKind::CutStream));
        assert_eq!("slow-body".parse(), Ok(FaultKind::SlowBody));
        assert_eq!("hang".parse(), Ok(FaultKind::Hang));
        assert!("status:99".parse::<FaultKind>().is_err());
        assert!("boom".parse::<FaultKind>().is_err());
        for k in [
            FaultKind::Status(429),
            FaultKind::CutStream,
            FaultKind::SlowBody,
        ] {
            assert_eq!(k.to_string().parse(), Ok(k));
        }
    }

    #[test]
    fn models_listing_shape() {
        let v: Value = serde_json::from_slice(&models_body(&["a", "b\"c"])).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][0]["id"], "a");
        assert_eq!(v["data"][1]["id"], "b\"c");
        assert_eq!(v["data"][1]["object"], "model");
        assert_eq!(v["data"][0]["owned_by"], "tollgate-mock");
    }

    #[test]
    fn model_name_is_escaped() {
        let body = br#"{"model":"we\"ird\\name","messages":[{"role":"user","content":"x"}]}"#;
        let v = json_of(&run(
            Endpoint::ChatCompletions,
            body,
            &MockKnobs::default(),
            0,
        ));
        assert_eq!(v["model"], "we\"ird\\name");
    }

    #[test]
    fn gateway_usage_extractors_read_mock_usage() {
        use crate::openai::{inspect_stream_chunk, response_usage};
        let mut scratch = Vec::new();
        let plan = run(
            Endpoint::ChatCompletions,
            &chat_body("m", false, false),
            &MockKnobs::default(),
            0,
        );
        let (_, _, _, body) = head_and_body(&plan);
        assert_eq!(response_usage(&body, &mut scratch), Some(plan.usage));

        let plan = run(
            Endpoint::ChatCompletions,
            &chat_body("m", true, true),
            &MockKnobs::default(),
            0,
        );
        let data = sse_data(&plan);
        let infos: Vec<_> = data[..data.len() - 1]
            .iter()
            .map(|d| inspect_stream_chunk(d.as_bytes(), &mut scratch).unwrap())
            .collect();
        let (last, rest) = infos.split_last().unwrap();
        assert!(rest.iter().all(|i| i.usage.is_none() && !i.usage_only));
        assert!(last.usage_only);
        assert_eq!(last.usage, Some(plan.usage));
    }

    #[test]
    fn text_scan_counts_only_text_values() {
        let body = br#"{"model":"xxxxxxxxxxxxxxxx","messages":[{"role":"user","content":[{"type":"text","text":"abcd"}]},{"role":"assistant","content":"ef\"g"}],"tools":[{"name":"zzzzzzzz"}]}"#;
        assert_eq!(
            scan_text(body),
            TextScan {
                text_bytes: 4 + 5,
                inputs: 0
            }
        );
        let body = br#"{"input":["ab","cd","ef"],"model":"m"}"#;
        assert_eq!(
            scan_text(body),
            TextScan {
                text_bytes: 6,
                inputs: 3
            }
        );
        let body = br#"{"nested":{"input":["a","b"]},"input":"x"}"#;
        assert_eq!(scan_text(body).inputs, 1);
    }
}
