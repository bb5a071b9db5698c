//! The parts of the OpenAI wire format the gateway itself reads or changes: request validation
//! and the fields policy needs ([`inspect_request`]), the upstream body with only the model
//! (and, when asked, `stream_options.include_usage`) spliced in ([`rewrite_request`]), and token
//! usage from responses and stream chunks. JSON is parsed with simd-json in a caller-provided
//! scratch buffer; bytes the gateway did not change are never re-encoded.

use bytes::{BufMut, Bytes, BytesMut};
use simd_json::prelude::*;
use simd_json::tape::Value as JsonValue;

use crate::error_body::write_json_string;

/// Which OpenAI endpoint a request body was sent to; it decides the required payload field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/chat/completions`: needs a non-empty `messages` array.
    ChatCompletions,
    /// `POST /v1/completions` (legacy): needs `prompt`, a string or an array.
    Completions,
    /// `POST /v1/embeddings`: needs `input`, a string or an array.
    Embeddings,
}

// === impl Endpoint ===

impl Endpoint {
    fn payload_key(self) -> &'static str {
        match self {
            Self::ChatCompletions => "messages",
            Self::Completions => "prompt",
            Self::Embeddings => "input",
        }
    }
}

/// A byte range `start..end` in a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    end: usize,
}

/// Where the client's `stream_options` value sits, in the shape the rewrite needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamOptionsSpan {
    /// `"stream_options": null`: the whole `null` literal.
    Null(Span),
    /// An object: its span, whether it has no members, and the `include_usage` value if present.
    Object {
        value: Span,
        empty: bool,
        include_usage: Option<Span>,
    },
}

/// What policy and routing need from a request body, plus byte spans into the ORIGINAL body for
/// splicing. Only valid together with the exact body it was produced from.
#[derive(Debug, Clone)]
pub struct RequestSummary {
    /// The model the client asked for (unescaped).
    pub model: String,
    /// Whether the client asked for a streamed response (`stream: true`).
    pub stream: bool,
    /// The client's own `stream_options.include_usage`, so the gateway knows whether to pass the
    /// usage-only chunk through after forcing it on.
    pub include_usage: Option<bool>,
    /// `max_completion_tokens` if present, else `max_tokens`.
    pub max_tokens: Option<u64>,
    /// The model value including its quotes.
    model_span: Span,
    stream_options: Option<StreamOptionsSpan>,
    /// Offset just after the top-level `{`, where a missing member can be inserted.
    body_open: usize,
    /// Length of the inspected body, to catch a caller passing a different body to the rewrite.
    body_len: usize,
}

/// Why a request body was rejected; rendered by the caller as a 400 `invalid_request_error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RequestError {
    /// Client-facing explanation.
    pub message: String,
    /// The field at fault, e.g. `"model"`, `"messages"`, `"stream"`.
    pub param: Option<&'static str>,
    /// OpenAI-style machine-readable code, e.g. `"missing_required_parameter"`.
    pub code: Option<&'static str>,
}

// === impl RequestError ===

impl RequestError {
    fn new(message: String, param: Option<&'static str>, code: Option<&'static str>) -> Self {
        Self {
            message,
            param,
            code,
        }
    }

    fn invalid_json() -> Self {
        Self::new(
            "We could not parse the JSON body of your request: it is not valid JSON. \
             The API expects a JSON object as the request body."
                .to_owned(),
            None,
            None,
        )
    }

    fn missing(param: &'static str) -> Self {
        Self::new(
            format!("Missing required parameter: '{param}'."),
            Some(param),
            Some("missing_required_parameter"),
        )
    }

    fn invalid_type(
        param: &'static str,
        name: &str,
        expected: &str,
        got: JsonValue<'_, '_>,
    ) -> Self {
        Self::new(
            format!(
                "Invalid type for '{name}': expected {expected}, but got {} instead.",
                type_name(got)
            ),
            Some(param),
            Some("invalid_type"),
        )
    }

    fn duplicate(param: &'static str) -> Self {
        Self::new(
            format!("Duplicate key '{param}' in the request body; each parameter may appear once."),
            Some(param),
            Some("invalid_value"),
        )
    }

    /// Our span scanner and simd-json read the body differently. That should be impossible for
    /// valid JSON, so refusing is the only safe answer: forwarding could splice the wrong bytes.
    fn ambiguous() -> Self {
        Self::new(
            "The request body could not be read unambiguously; send a plain JSON object."
                .to_owned(),
            None,
            None,
        )
    }
}

fn type_name(v: JsonValue<'_, '_>) -> &'static str {
    match v.value_type() {
        ValueType::Null => "null",
        ValueType::Bool => "a boolean",
        ValueType::I64 | ValueType::U64 | ValueType::I128 | ValueType::U128 => "an integer",
        ValueType::F64 => "a decimal number",
        ValueType::String => "a string",
        ValueType::Array => "an array",
        ValueType::Object => "an object",
        _ => "an unsupported value",
    }
}

/// Copies `json` into `scratch` and parses it there with simd-json (which mutates its input).
///
/// A raw NUL byte is never valid JSON (control characters must be escaped, and NUL is not
/// whitespace), but simd-json 0.17 accepts one after a number or literal (`[1\0]`), so such
/// input is refused before simd-json can read it differently from the upstream's parser.
fn parse_in<'s>(scratch: &'s mut Vec<u8>, json: &[u8]) -> Option<simd_json::Tape<'s>> {
    if memchr::memchr(0, json).is_some() {
        return None;
    }
    scratch.clear();
    scratch.extend_from_slice(json);
    simd_json::to_tape(scratch.as_mut_slice()).ok()
}

/// One top-level member found by both simd-json (the value) and our scanner (the span).
type Found<'t, 'i> = Option<(JsonValue<'t, 'i>, Span)>;

/// The `GET /v1/models` body: an OpenAI model list with one entry per name, each marked
/// `owned_by` and `created` as given.
pub fn models_list(names: &[&str], owned_by: &str, created: u64) -> Bytes {
    let mut out = BytesMut::with_capacity(32 + names.len() * 96);
    out.put_slice(b"{\"object\":\"list\",\"data\":[");
    let mut num = itoa::Buffer::new();
    for (i, name) in names.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(b"{\"id\":");
        write_json_string(&mut out, name);
        out.put_slice(b",\"object\":\"model\",\"created\":");
        out.put_slice(num.format(created).as_bytes());
        out.put_slice(b",\"owned_by\":");
        write_json_string(&mut out, owned_by);
        out.put_u8(b'}');
    }
    out.put_slice(b"]}");
    out.freeze()
}

/// Validates a request body for `endpoint` and extracts what policy and routing need.
///
/// The body is copied into `scratch` (reused across calls so the copy does not allocate once it
/// has grown) and parsed there by simd-json, which mutates its input. Byte spans come from a
/// small scanner over the original `body` walking the top-level members in lockstep with
/// simd-json, so both always agree on which member is `model`, even with escaped keys; any
/// disagreement is a 400. Duplicate interpreted keys (`model`, `stream`, `stream_options`, the
/// payload field, the token limits) are rejected so nobody can smuggle a second value past
/// policy to an upstream that keeps the last one.
pub fn inspect_request(
    endpoint: Endpoint,
    body: &[u8],
    scratch: &mut Vec<u8>,
) -> Result<RequestSummary, RequestError> {
    let tape = parse_in(scratch, body).ok_or_else(RequestError::invalid_json)?;
    let root = tape.as_value();
    let Some(object) = root.as_object() else {
        return Err(RequestError::new(
            format!(
                "The request body must be a JSON object, but got {} instead.",
                type_name(root)
            ),
            None,
            Some("invalid_type"),
        ));
    };

    let open = skip_ws(body, 0);
    if body.get(open) != Some(&b'{') {
        return Err(RequestError::ambiguous());
    }
    let payload_key = endpoint.payload_key();
    let mut scan = ObjectScan::new(body, open);
    let mut model: Found<'_, '_> = None;
    let mut stream: Found<'_, '_> = None;
    let mut stream_options: Found<'_, '_> = None;
    let mut payload: Found<'_, '_> = None;
    let mut max_tokens: Found<'_, '_> = None;
    let mut max_completion_tokens: Found<'_, '_> = None;
    for (key, value) in object.iter() {
        let member = match scan.next_member() {
            Ok(Some(member)) if member.key_matches(body, key) => member,
            _ => return Err(RequestError::ambiguous()),
        };
        let (slot, param) = match key {
            "model" => (&mut model, "model"),
            "stream" => (&mut stream, "stream"),
            "stream_options" => (&mut stream_options, "stream_options"),
            "max_tokens" => (&mut max_tokens, "max_tokens"),
            "max_completion_tokens" => (&mut max_completion_tokens, "max_completion_tokens"),
            k if k == payload_key => (&mut payload, payload_key),
            _ => continue,
        };
        if slot.is_some() {
            return Err(RequestError::duplicate(param));
        }
        *slot = Some((value, member.value));
    }
    if !matches!(scan.next_member(), Ok(None)) {
        return Err(RequestError::ambiguous());
    }

    let (model, model_span) = check_model(body, model)?;
    let stream = match stream.map(|(v, _)| v) {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| RequestError::invalid_type("stream", "stream", "a boolean", v))?,
    };
    let (include_usage, stream_options) = check_stream_options(body, stream_options)?;
    check_payload(endpoint, payload)?;
    let max_tokens_value = check_token_limit("max_tokens", max_tokens)?;
    let max_completion_value = check_token_limit("max_completion_tokens", max_completion_tokens)?;

    Ok(RequestSummary {
        model,
        stream,
        include_usage,
        max_tokens: max_completion_value.or(max_tokens_value),
        model_span,
        stream_options,
        body_open: open + 1,
        body_len: body.len(),
    })
}

fn check_model(body: &[u8], found: Found<'_, '_>) -> Result<(String, Span), RequestError> {
    let Some((value, span)) = found else {
        return Err(RequestError::missing("model"));
    };
    let Some(model) = value.as_str() else {
        return Err(RequestError::invalid_type(
            "model", "model", "a string", value,
        ));
    };
    if model.is_empty() {
        return Err(RequestError::new(
            "Invalid 'model': empty string. Expected a non-empty model name.".to_owned(),
            Some("model"),
            Some("invalid_value"),
        ));
    }
    // Belt and braces: the span we will overwrite must hold the very string simd-json read.
    let raw = span
        .start
        .checked_add(1)
        .and_then(|s| body.get(s..span.end.checked_sub(1)?));
    let consistent = match raw {
        Some(raw) if body.get(span.start) == Some(&b'"') => {
            raw.contains(&b'\\') || raw == model.as_bytes()
        }
        _ => false,
    };
    if !consistent {
        return Err(RequestError::ambiguous());
    }
    Ok((model.to_owned(), span))
}

fn check_stream_options(
    body: &[u8],
    found: Found<'_, '_>,
) -> Result<(Option<bool>, Option<StreamOptionsSpan>), RequestError> {
    let Some((value, span)) = found else {
        return Ok((None, None));
    };
    if value.is_null() {
        if body.get(span.start) != Some(&b'n') {
            return Err(RequestError::ambiguous());
        }
        return Ok((None, Some(StreamOptionsSpan::Null(span))));
    }
    let Some(object) = value.as_object() else {
        return Err(RequestError::invalid_type(
            "stream_options",
            "stream_options",
            "an object",
            value,
        ));
    };
    if body.get(span.start) != Some(&b'{') {
        return Err(RequestError::ambiguous());
    }
    let mut scan = ObjectScan::new(body, span.start);
    let mut include_usage: Found<'_, '_> = None;
    for (key, value) in object.iter() {
        let member = match scan.next_member() {
            Ok(Some(member)) if member.key_matches(body, key) => member,
            _ => return Err(RequestError::ambiguous()),
        };
        if key == "include_usage" {
            if include_usage.is_some() {
                return Err(RequestError::duplicate("stream_options"));
            }
            include_usage = Some((value, member.value));
        }
    }
    if !matches!(scan.next_member(), Ok(None)) {
        return Err(RequestError::ambiguous());
    }
    let flag = match include_usage.map(|(v, _)| v) {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => Some(v.as_bool().ok_or_else(|| {
            RequestError::invalid_type(
                "stream_options",
                "stream_options.include_usage",
                "a boolean",
                v,
            )
        })?),
    };
    Ok((
        flag,
        Some(StreamOptionsSpan::Object {
            value: span,
            empty: object.is_empty(),
            include_usage: include_usage.map(|(_, s)| s),
        }),
    ))
}

fn check_payload(endpoint: Endpoint, found: Found<'_, '_>) -> Result<(), RequestError> {
    let key = endpoint.payload_key();
    let Some((value, _)) = found else {
        return Err(RequestError::missing(key));
    };
    match endpoint {
        Endpoint::ChatCompletions => {
            let Some(messages) = value.as_array() else {
                return Err(RequestError::invalid_type(key, key, "an array", value));
            };
            if messages.is_empty() {
                return Err(RequestError::new(
                    "Invalid 'messages': empty array. Expected an array with minimum length 1, \
                     but got an empty array instead."
                        .to_owned(),
                    Some("messages"),
                    Some("empty_array"),
                ));
            }
        }
        Endpoint::Completions | Endpoint::Embeddings => {
            if !value.is_str() && !value.is_array() {
                return Err(RequestError::invalid_type(
                    key,
                    key,
                    "a string or an array",
                    value,
                ));
            }
        }
    }
    Ok(())
}

fn check_token_limit(
    param: &'static str,
    found: Found<'_, '_>,
) -> Result<Option<u64>, RequestError> {
    let Some((value, _)) = found else {
        return Ok(None);
    };
    if value.is_null() {
        return Ok(None);
    }
    if let Some(n) = value.as_u64() {
        return Ok(Some(n));
    }
    if let Some(n) = value.as_i64() {
        return Err(RequestError::new(
            format!(
                "Invalid '{param}': integer below minimum value. Expected a value >= 0, but got {n} instead."
            ),
            Some(param),
            Some("integer_below_min_value"),
        ));
    }
    Err(RequestError::invalid_type(
        param,
        param,
        "an integer",
        value,
    ))
}

/// Writes `body` to `out` with the model value replaced by the JSON-escaped `upstream_model`.
/// When `force_include_usage` is set and the request streams, it also guarantees
/// `stream_options.include_usage == true` so the upstream reports usage: a missing
/// `stream_options` is inserted right after the opening brace, a `null` one is replaced by
/// `{"include_usage":true}`, and an object keeps the client's other members byte for byte while
/// its `include_usage` is set (or inserted). Every other byte is copied unchanged.
///
/// `summary` must come from [`inspect_request`] on this same `body`. If it visibly does not
/// (different length, spans out of range), nothing is written: an empty upstream body fails
/// loudly, whereas forwarding the unrewritten client model could reach the wrong model.
pub fn rewrite_request(
    body: &[u8],
    summary: &RequestSummary,
    upstream_model: &str,
    force_include_usage: bool,
    out: &mut BytesMut,
) {
    let mut edits: [Option<Edit>; 2] = [
        Some(Edit::new(summary.model_span, Replacement::Model)),
        None,
    ];
    if force_include_usage && summary.stream {
        edits[1] = stream_options_edit(summary);
    }
    let [first, second] = edits;
    let (first, second) = match (first, second) {
        (Some(a), Some(b)) if b.span.start < a.span.start => (Some(b), Some(a)),
        pair => pair,
    };
    let edits = [first, second];
    if !edits_fit(body, summary, &edits) {
        return;
    }

    out.reserve(body.len() + upstream_model.len() + 40);
    let mut copied = 0;
    for edit in edits.iter().flatten() {
        out.put_slice(body.get(copied..edit.span.start).unwrap_or_default());
        match edit.replacement {
            Replacement::Model => write_json_string(out, upstream_model),
            Replacement::Bytes(bytes) => out.put_slice(bytes),
        }
        copied = edit.span.end;
    }
    out.put_slice(body.get(copied..).unwrap_or_default());
}

/// A splice: replace `span` of the original body (empty span = insert).
#[derive(Debug, Clone, Copy)]
struct Edit {
    span: Span,
    replacement: Replacement,
}

#[derive(Debug, Clone, Copy)]
enum Replacement {
    Model,
    Bytes(&'static [u8]),
}

impl Edit {
    fn new(span: Span, replacement: Replacement) -> Self {
        Self { span, replacement }
    }

    fn insert(at: usize, bytes: &'static [u8]) -> Self {
        Self::new(Span { start: at, end: at }, Replacement::Bytes(bytes))
    }
}

fn stream_options_edit(summary: &RequestSummary) -> Option<Edit> {
    match summary.stream_options {
        None => Some(Edit::insert(
            summary.body_open,
            b"\"stream_options\":{\"include_usage\":true},",
        )),
        Some(StreamOptionsSpan::Null(span)) => Some(Edit::new(
            span,
            Replacement::Bytes(b"{\"include_usage\":true}"),
        )),
        Some(StreamOptionsSpan::Object {
            include_usage: Some(span),
            ..
        }) => {
            // Already `true`: leave the client's bytes alone.
            (summary.include_usage != Some(true))
                .then(|| Edit::new(span, Replacement::Bytes(b"true")))
        }
        Some(StreamOptionsSpan::Object {
            value,
            empty,
            include_usage: None,
        }) => Some(Edit::insert(
            value.start + 1,
            if empty {
                b"\"include_usage\":true"
            } else {
                b"\"include_usage\":true,"
            },
        )),
    }
}

/// Best-effort check that `body` is the one `summary` describes: same length, and the model span
/// still holds the model (compared raw when it has no escapes). A hash of the whole body would
/// cost another pass over it on every request for a caller bug this already catches in practice.
fn edits_fit(body: &[u8], summary: &RequestSummary, edits: &[Option<Edit>; 2]) -> bool {
    let span = summary.model_span;
    let raw_model = body.get(span.start..span.end).and_then(|quoted| {
        quoted
            .strip_prefix(b"\"")
            .and_then(|q| q.strip_suffix(b"\""))
    });
    let model_still_there =
        raw_model.is_some_and(|raw| raw.contains(&b'\\') || raw == summary.model.as_bytes());
    if body.len() != summary.body_len || !model_still_there {
        return false;
    }
    let mut floor = 0;
    for edit in edits.iter().flatten() {
        if edit.span.start < floor || edit.span.end < edit.span.start || edit.span.end > body.len()
        {
            return false;
        }
        floor = edit.span.end;
    }
    true
}

/// Token usage as OpenAI reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// `usage.prompt_tokens`.
    pub prompt_tokens: u64,
    /// `usage.completion_tokens` (0 for embeddings, which have none).
    pub completion_tokens: u64,
    /// `usage.total_tokens`, or prompt + completion when the upstream omitted it.
    pub total_tokens: u64,
    /// `usage.prompt_tokens_details.cached_tokens`.
    pub cached_tokens: u64,
}

fn usage_from(value: JsonValue<'_, '_>) -> Option<Usage> {
    let usage = value.as_object()?;
    let count = |key: &str| usage.get(key).and_then(|v| v.as_u64()).unwrap_or(0);
    let prompt_tokens = count("prompt_tokens");
    let completion_tokens = count("completion_tokens");
    let total_tokens = usage
        .get("total_tokens")
        .and_then(|v| v.as_u64())
        .unwrap_or_else(|| prompt_tokens.saturating_add(completion_tokens));
    let cached_tokens = usage
        .get("prompt_tokens_details")
        .and_then(|d| d.get("cached_tokens"))
        .and_then(|v| v.as_u64())
        .unwrap_or(0);
    Some(Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens,
        cached_tokens,
    })
}

/// Non-streaming response body -> its usage, if present.
///
/// Only the top-level `usage` value is handed to simd-json (copied into `scratch`): the scanner
/// skips everything else, so a multi-megabyte embeddings response costs a byte scan rather than
/// a full float-parsing pass. The rest of the body is not validated here; it is forwarded as is.
/// With duplicate `usage` keys the last wins, as in most JSON parsers clients use.
pub fn response_usage(body: &[u8], scratch: &mut Vec<u8>) -> Option<Usage> {
    let open = skip_ws(body, 0);
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let mut scan = ObjectScan::new(body, open);
    let mut usage = None;
    while let Some(member) = scan.next_member().ok()? {
        if body.get(member.key.start..member.key.end) == Some(&b"\"usage\""[..]) {
            usage = Some(member.value);
        }
    }
    let span = usage?;
    let tape = parse_in(scratch, body.get(span.start..span.end)?)?;
    usage_from(tape.as_value())
}

/// Byte ranges `(key, value)` of every top-level member of the JSON object in `body`, keys with
/// their quotes, in order. `None` when the scanner cannot walk `body` as an object. Lenient like
/// the scanner itself: pair it with a validating parser. For other wire formats' splicing (the
/// Anthropic front door rewrites `model` with it).
pub(crate) fn top_level_members(
    body: &[u8],
) -> Option<Vec<(std::ops::Range<usize>, std::ops::Range<usize>)>> {
    let open = skip_ws(body, 0);
    if body.get(open) != Some(&b'{') {
        return None;
    }
    let mut scan = ObjectScan::new(body, open);
    let mut members = Vec::new();
    while let Some(member) = scan.next_member().ok()? {
        members.push((
            member.key.start..member.key.end,
            member.value.start..member.value.end,
        ));
    }
    Some(members)
}

/// What one streamed chunk says about usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChunkInfo {
    /// The chunk's `usage`, if present and not null.
    pub usage: Option<Usage>,
    /// Whether this is the usage-only chunk OpenAI sends last when
    /// `stream_options.include_usage` is set (`choices` is an empty array), which the gateway
    /// drops when it forced usage on for a client that did not ask for it.
    pub usage_only: bool,
    /// Whether the chunk carries generated output (non-empty `content`, `refusal`, reasoning
    /// or tool-call `arguments`): what the gateway counts when an upstream reports no usage.
    /// The role announcement and the bare `finish_reason` chunk carry none.
    pub output: bool,
}

/// One streamed chat/completions chunk (the SSE `data` payload) -> its usage, if present and
/// non-null, and whether it is the usage-only chunk. `None` if the payload is not JSON.
///
/// Fast path: most chunks carry no usage (or `"usage":null`), so unless the bytes contain
/// `"usage"` followed by a non-null value the chunk is not parsed at all, only checked to look
/// like an object (`{` ... `}`); such a chunk yields the default `ChunkInfo`.
pub fn inspect_stream_chunk(data: &[u8], scratch: &mut Vec<u8>) -> Option<ChunkInfo> {
    if !has_non_null_usage(data) {
        let first = skip_ws(data, 0);
        let last = data.iter().rposition(|b| !is_ws(*b))?;
        return (data.get(first) == Some(&b'{') && data.get(last) == Some(&b'}')).then(|| {
            ChunkInfo {
                output: carries_output(data),
                ..ChunkInfo::default()
            }
        });
    }
    let tape = parse_in(scratch, data)?;
    let root = tape.as_value();
    let usage = root.get("usage").and_then(usage_from);
    let usage_only = root
        .get("choices")
        .and_then(|c| c.as_array())
        .is_some_and(|c| c.is_empty());
    Some(ChunkInfo {
        usage,
        usage_only,
        output: carries_output(data),
    })
}

/// Whether any output field of a chunk holds a non-empty string. Like [`has_non_null_usage`]
/// this scans bytes: a key inside string content is escaped and cannot match.
fn carries_output(data: &[u8]) -> bool {
    const KEYS: [&[u8]; 5] = [
        b"\"content\"",
        b"\"arguments\"",
        b"\"refusal\"",
        b"\"reasoning_content\"",
        b"\"reasoning\"",
    ];
    KEYS.iter().any(|key| {
        memchr::memmem::find_iter(data, key).any(|at| {
            let colon = skip_ws(data, at + key.len());
            if data.get(colon) != Some(&b':') {
                return false;
            }
            let value = skip_ws(data, colon + 1);
            data.get(value) == Some(&b'"') && data.get(value + 1).is_some_and(|&b| b != b'"')
        })
    })
}

/// Whether `data` contains `"usage"` as a key with a value other than `null`. A literal
/// `"usage"` inside string content is always escaped (`\"usage\"`) and so cannot match; a key
/// spelled with escapes (`"us\u0061ge"`) is missed, which no upstream does.
fn has_non_null_usage(data: &[u8]) -> bool {
    const KEY: &[u8] = b"\"usage\"";
    memchr::memmem::find_iter(data, KEY).any(|at| {
        let colon = skip_ws(data, at + KEY.len());
        if data.get(colon) != Some(&b':') {
            return false;
        }
        let value = skip_ws(data, colon + 1);
        !data
            .get(value..)
            .is_some_and(|rest| rest.starts_with(b"null"))
    })
}

// === span scanner ===
//
// simd-json does not report byte offsets, so this walks the members of one object in the
// original bytes, skipping nested values and strings (with escapes) without decoding them. It
// is lenient (it does not validate scalars): callers pair it with simd-json, which validates.

/// The scanner met bytes that are not a JSON object.
#[derive(Debug)]
struct Malformed;

/// One member of an object: the key including its quotes and the value.
#[derive(Debug, Clone, Copy)]
struct Member {
    key: Span,
    value: Span,
}

impl Member {
    /// Whether this member's raw key is the key simd-json reported at the same position. An
    /// escaped key cannot be compared without decoding it; position already pins it to the same
    /// member, so it is trusted, and simd-json's decoded form decides what it means.
    fn key_matches(&self, body: &[u8], decoded: &str) -> bool {
        match body.get(self.key.start + 1..self.key.end.saturating_sub(1)) {
            Some(raw) => raw.contains(&b'\\') || raw == decoded.as_bytes(),
            None => false,
        }
    }
}

/// Iterates the members of the object whose `{` is at a given offset.
#[derive(Debug)]
struct ObjectScan<'a> {
    bytes: &'a [u8],
    pos: usize,
    first: bool,
    done: bool,
}

impl<'a> ObjectScan<'a> {
    fn new(bytes: &'a [u8], open: usize) -> Self {
        Self {
            bytes,
            pos: open + 1,
            first: true,
            done: false,
        }
    }

    fn next_member(&mut self) -> Result<Option<Member>, Malformed> {
        if self.done {
            return Ok(None);
        }
        let b = self.bytes;
        let mut i = skip_ws(b, self.pos);
        match b.get(i) {
            Some(b'}') => {
                self.done = true;
                return Ok(None);
            }
            Some(b',') if !self.first => i = skip_ws(b, i + 1),
            Some(b'"') if self.first => {}
            _ => return Err(Malformed),
        }
        self.first = false;
        if b.get(i) != Some(&b'"') {
            return Err(Malformed);
        }
        let key_end = skip_string(b, i)?;
        let colon = skip_ws(b, key_end);
        if b.get(colon) != Some(&b':') {
            return Err(Malformed);
        }
        let value_start = skip_ws(b, colon + 1);
        let value_end = skip_value(b, value_start)?;
        self.pos = value_end;
        Ok(Some(Member {
            key: Span {
                start: i,
                end: key_end,
            },
            value: Span {
                start: value_start,
                end: value_end,
            },
        }))
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while b.get(i).is_some_and(|c| is_ws(*c)) {
        i += 1;
    }
    i
}

/// `open` is at a `"`; returns the offset just past the closing quote.
fn skip_string(b: &[u8], open: usize) -> Result<usize, Malformed> {
    let mut i = open + 1;
    loop {
        let rest = b.get(i..).ok_or(Malformed)?;
        let rel = memchr::memchr2(b'"', b'\\', rest).ok_or(Malformed)?;
        let at = i + rel;
        if b.get(at) == Some(&b'"') {
            return Ok(at + 1);
        }
        // A backslash escapes exactly one byte; the hex digits of `\uXXXX` are never a quote
        // or backslash, so skipping one byte is enough.
        i = at + 2;
    }
}

/// Returns the offset just past the value starting at `start`.
fn skip_value(b: &[u8], start: usize) -> Result<usize, Malformed> {
    match b.get(start) {
        Some(b'"') => skip_string(b, start),
        Some(b'{' | b'[') => skip_container(b, start),
        Some(_) => {
            let mut i = start;
            while b
                .get(i)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b':') && !is_ws(*c))
            {
                i += 1;
            }
            if i == start {
                Err(Malformed)
            } else {
                Ok(i)
            }
        }
        None => Err(Malformed),
    }
}

/// Skips a nested object or array by depth counting; strings are jumped over with `memchr`
/// because they hold most of a request's bytes (message contents).
fn skip_container(b: &[u8], start: usize) -> Result<usize, Malformed> {
    let mut depth = 0usize;
    let mut i = start;
    loop {
        match b.get(i) {
            Some(b'"') => i = skip_string(b, i)?,
            Some(b'{' | b'[') => {
                depth += 1;
                i += 1;
            }
            Some(b'}' | b']') => {
                depth = depth.checked_sub(1).ok_or(Malformed)?;
                i += 1;
                if depth == 0 {
                    return Ok(i);
                }
            }
            Some(_) => i += 1,
            None => return Err(Malformed),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    const CHAT_REQUEST: &[u8] = include_bytes!("../tests/fixtures/chat_request.json");

    fn inspect(endpoint: Endpoint, body: &str) -> Result<RequestSummary, RequestError> {
        inspect_request(endpoint, body.as_bytes(), &mut Vec::new())
    }

    fn chat(body: &str) -> Result<RequestSummary, RequestError> {
        inspect(Endpoint::ChatCompletions, body)
    }

    fn rejected(endpoint: Endpoint, body: &str) -> RequestError {
        match inspect(endpoint, body) {
            Ok(s) => panic!("accepted {body}: {s:?}"),
            Err(e) => e,
        }
    }

    fn rewrite(body: &str, model: &str, force: bool) -> String {
        let summary = chat(body).unwrap();
        let mut out = BytesMut::new();
        rewrite_request(body.as_bytes(), &summary, model, force, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    }

    const MSGS: &str = r#""messages":[{"role":"user","content":"hi"}]"#;

    #[test]
    fn summary_of_a_plain_chat_request() {
        let s = chat(&format!(
            r#"{{"model":"gpt-4o-mini",{MSGS},"stream":true,"stream_options":{{"include_usage":false}},"max_tokens":100}}"#
        ))
        .unwrap();
        assert_eq!(s.model, "gpt-4o-mini");
        assert!(s.stream);
        assert_eq!(s.include_usage, Some(false));
        assert_eq!(s.max_tokens, Some(100));
    }

    #[test]
    fn max_completion_tokens_wins_and_nulls_are_absent() {
        let s = chat(&format!(
            r#"{{"model":"m",{MSGS},"max_tokens":10,"max_completion_tokens":20,"stream":null,"stream_options":null}}"#
        ))
        .unwrap();
        assert_eq!(s.max_tokens, Some(20));
        assert!(!s.stream);
        assert_eq!(s.include_usage, None);
        let s = chat(&format!(r#"{{"model":"m",{MSGS},"max_tokens":null}}"#)).unwrap();
        assert_eq!(s.max_tokens, None);
        let s = chat(&format!(r#"{{"model":"m",{MSGS},"max_tokens":0}}"#)).unwrap();
        assert_eq!(s.max_tokens, Some(0));
    }

    #[test]
    fn invalid_json_and_non_objects() {
        for body in [
            "",
            "{",
            "{\"model\":\"m\",}",
            "nope",
            "{\"model\":\"m\"} x",
            "\u{feff}{}",
        ] {
            let e = rejected(Endpoint::ChatCompletions, body);
            assert_eq!(e.param, None, "{body}");
            assert!(e.message.contains("not valid JSON"), "{body}: {e}");
        }
        for body in ["[]", "\"x\"", "1", "null"] {
            let e = rejected(Endpoint::ChatCompletions, body);
            assert_eq!(e.param, None);
            assert!(e.message.contains("must be a JSON object"), "{body}: {e}");
        }
        // simd-json alone would accept a NUL after a scalar.
        let e = inspect_request(
            Endpoint::ChatCompletions,
            b"{\"model\":\"m\",\"messages\":[null\0]}",
            &mut Vec::new(),
        )
        .unwrap_err();
        assert!(e.message.contains("not valid JSON"), "{e}");
        // Invalid UTF-8 inside a string is invalid JSON too.
        let e = inspect_request(
            Endpoint::ChatCompletions,
            b"{\"model\":\"\xff\",\"messages\":[1]}",
            &mut Vec::new(),
        )
        .unwrap_err();
        assert_eq!(e.param, None);
    }

    #[test]
    fn model_rules() {
        let e = rejected(Endpoint::ChatCompletions, &format!("{{{MSGS}}}"));
        assert_eq!(e.param, Some("model"));
        assert_eq!(e.code, Some("missing_required_parameter"));
        for bad in ["1", "null", "[\"m\"]", "{}", "true"] {
            let e = rejected(
                Endpoint::ChatCompletions,
                &format!(r#"{{"model":{bad},{MSGS}}}"#),
            );
            assert_eq!(e.param, Some("model"), "{bad}");
            assert_eq!(e.code, Some("invalid_type"), "{bad}");
        }
        let e = rejected(
            Endpoint::ChatCompletions,
            &format!(r#"{{"model":"",{MSGS}}}"#),
        );
        assert_eq!(e.param, Some("model"));
        assert_eq!(e.code, Some("invalid_value"));
    }

    #[test]
    fn duplicate_model_is_rejected_even_when_escaped() {
        for body in [
            format!(r#"{{"model":"a",{MSGS},"model":"b"}}"#),
            format!(r#"{{"model":"a",{MSGS},"mod\u0065l":"b"}}"#),
            format!(r#"{{"m\u006fdel":"a",{MSGS},"model":"b"}}"#),
        ] {
            let e = rejected(Endpoint::ChatCompletions, &body);
            assert_eq!(e.param, Some("model"), "{body}");
        }
        for key in ["stream", "stream_options", "messages", "max_tokens"] {
            let body = format!(r#"{{"model":"a",{MSGS},"{key}":null,"{key}":null}}"#);
            assert_eq!(rejected(Endpoint::ChatCompletions, &body).param, Some(key));
        }
        let body = format!(
            r#"{{"model":"a",{MSGS},"stream_options":{{"include_usage":true,"include_usage":false}}}}"#
        );
        assert_eq!(
            rejected(Endpoint::ChatCompletions, &body).param,
            Some("stream_options")
        );
    }

    #[test]
    fn escaped_model_key_is_the_model_for_both_parsers() {
        let body = format!(r#"{{"mod\u0065l":"gpt-4o",{MSGS}}}"#);
        let s = chat(&body).unwrap();
        assert_eq!(s.model, "gpt-4o");
        let out = rewrite(&body, "up", false);
        assert_eq!(out, format!(r#"{{"mod\u0065l":"up",{MSGS}}}"#));
        // A key that merely looks like model after a backslash is not the model.
        let body = format!(r#"{{"model":"a",{MSGS},"model\\":"b"}}"#);
        assert_eq!(chat(&body).unwrap().model, "a");
    }

    #[test]
    fn escaped_model_value_is_unescaped() {
        let s = chat(&format!(r#"{{"model":"gpt\u002d4o \"x\"",{MSGS}}}"#)).unwrap();
        assert_eq!(s.model, "gpt-4o \"x\"");
    }

    #[test]
    fn stream_and_stream_options_types() {
        let e = rejected(
            Endpoint::ChatCompletions,
            &format!(r#"{{"model":"m",{MSGS},"stream":"yes"}}"#),
        );
        assert_eq!((e.param, e.code), (Some("stream"), Some("invalid_type")));
        assert!(e.message.contains("a string"), "{e}");
        for bad in ["true", "1", "\"x\"", "[]"] {
            let e = rejected(
                Endpoint::ChatCompletions,
                &format!(r#"{{"model":"m",{MSGS},"stream_options":{bad}}}"#),
            );
            assert_eq!(e.param, Some("stream_options"), "{bad}");
        }
        let e = rejected(
            Endpoint::ChatCompletions,
            &format!(r#"{{"model":"m",{MSGS},"stream_options":{{"include_usage":"yes"}}}}"#),
        );
        assert_eq!(e.param, Some("stream_options"));
        let s = chat(&format!(
            r#"{{"model":"m",{MSGS},"stream_options":{{"include_usage":null,"other":1}}}}"#
        ))
        .unwrap();
        assert_eq!(s.include_usage, None);
    }

    #[test]
    fn payload_rules_per_endpoint() {
        let e = rejected(Endpoint::ChatCompletions, r#"{"model":"m"}"#);
        assert_eq!(
            (e.param, e.code),
            (Some("messages"), Some("missing_required_parameter"))
        );
        let e = rejected(Endpoint::ChatCompletions, r#"{"model":"m","messages":[]}"#);
        assert_eq!((e.param, e.code), (Some("messages"), Some("empty_array")));
        let e = rejected(
            Endpoint::ChatCompletions,
            r#"{"model":"m","messages":{"a":1}}"#,
        );
        assert_eq!((e.param, e.code), (Some("messages"), Some("invalid_type")));
        // A chat request carrying `prompt` still needs messages.
        let e = rejected(Endpoint::ChatCompletions, r#"{"model":"m","prompt":"x"}"#);
        assert_eq!(e.param, Some("messages"));

        assert!(inspect(Endpoint::Completions, r#"{"model":"m","prompt":"x"}"#).is_ok());
        assert!(inspect(Endpoint::Completions, r#"{"model":"m","prompt":["a","b"]}"#).is_ok());
        assert!(inspect(Endpoint::Completions, r#"{"model":"m","prompt":[1,2]}"#).is_ok());
        let e = rejected(Endpoint::Completions, r#"{"model":"m","messages":[1]}"#);
        assert_eq!(e.param, Some("prompt"));
        let e = rejected(Endpoint::Completions, r#"{"model":"m","prompt":5}"#);
        assert_eq!((e.param, e.code), (Some("prompt"), Some("invalid_type")));

        assert!(inspect(Endpoint::Embeddings, r#"{"model":"m","input":"x"}"#).is_ok());
        assert!(inspect(Endpoint::Embeddings, r#"{"model":"m","input":[[1,2],[3]]}"#).is_ok());
        let e = rejected(Endpoint::Embeddings, r#"{"model":"m"}"#);
        assert_eq!(e.param, Some("input"));
        let e = rejected(Endpoint::Embeddings, r#"{"model":"m","input":{}}"#);
        assert_eq!(e.param, Some("input"));
    }

    #[test]
    fn token_limits_must_be_non_negative_integers() {
        for (key, bad, code) in [
            ("max_tokens", "-1", "integer_below_min_value"),
            ("max_tokens", "1.5", "invalid_type"),
            ("max_tokens", "\"10\"", "invalid_type"),
            ("max_completion_tokens", "-5", "integer_below_min_value"),
            ("max_completion_tokens", "true", "invalid_type"),
        ] {
            let e = rejected(
                Endpoint::ChatCompletions,
                &format!(r#"{{"model":"m",{MSGS},"{key}":{bad}}}"#),
            );
            assert_eq!(e.param, Some(key), "{key}={bad}");
            assert_eq!(e.code, Some(code), "{key}={bad}");
        }
        let s = chat(&format!(
            r#"{{"model":"m",{MSGS},"max_tokens":18446744073709551615}}"#
        ))
        .unwrap();
        assert_eq!(s.max_tokens, Some(u64::MAX));
    }

    #[test]
    fn rewrite_replaces_only_the_top_level_model() {
        let body = r#"{"messages":[{"role":"user","content":"x","model":"inner"}],"meta":{"model":"deep"},"model":"client"}"#;
        let out = rewrite(body, "gpt-4o-2024-08-06", false);
        assert_eq!(
            out,
            r#"{"messages":[{"role":"user","content":"x","model":"inner"}],"meta":{"model":"deep"},"model":"gpt-4o-2024-08-06"}"#
        );
        let out = rewrite(body, "we\"ird\\\n", false);
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["model"], "we\"ird\\\n");
        assert_eq!(v["meta"]["model"], "deep");
    }

    #[test]
    fn rewrite_forces_include_usage_in_every_shape() {
        // Absent: inserted right after the opening brace.
        let body = format!(" {{ \"model\" : \"m\",{MSGS},\"stream\":true}}");
        assert_eq!(
            rewrite(&body, "u", true),
            format!(" {{\"stream_options\":{{\"include_usage\":true}}, \"model\" : \"u\",{MSGS},\"stream\":true}}")
        );
        // Null: replaced in place, so there is still exactly one stream_options key.
        let body = format!(r#"{{"model":"m",{MSGS},"stream":true,"stream_options":null}}"#);
        assert_eq!(
            rewrite(&body, "u", true),
            format!(
                r#"{{"model":"u",{MSGS},"stream":true,"stream_options":{{"include_usage":true}}}}"#
            )
        );
        // Empty object.
        let body = format!(r#"{{"model":"m",{MSGS},"stream":true,"stream_options":{{ }}}}"#);
        assert_eq!(
            rewrite(&body, "u", true),
            format!(
                r#"{{"model":"u",{MSGS},"stream":true,"stream_options":{{"include_usage":true }}}}"#
            )
        );
        // Other members kept byte for byte.
        let body = format!(
            r#"{{"stream_options":{{ "future" : [1, {{"include_usage":false}}] }},"model":"m",{MSGS},"stream":true}}"#
        );
        assert_eq!(
            rewrite(&body, "u", true),
            format!(
                r#"{{"stream_options":{{"include_usage":true, "future" : [1, {{"include_usage":false}}] }},"model":"u",{MSGS},"stream":true}}"#
            )
        );
        // Explicit false flipped; explicit true and null handled.
        let body = format!(
            r#"{{"model":"m",{MSGS},"stream":true,"stream_options":{{"a":1,"include_usage" : false}}}}"#
        );
        assert_eq!(
            rewrite(&body, "u", true),
            format!(
                r#"{{"model":"u",{MSGS},"stream":true,"stream_options":{{"a":1,"include_usage" : true}}}}"#
            )
        );
        let body = format!(
            r#"{{"model":"m",{MSGS},"stream":true,"stream_options":{{"include_usage":null}}}}"#
        );
        assert!(rewrite(&body, "u", true).ends_with(r#""stream_options":{"include_usage":true}}"#));
        let body = format!(
            r#"{{"model":"m",{MSGS},"stream":true,"stream_options":{{"include_usage":true}}}}"#
        );
        assert_eq!(rewrite(&body, "m", true), body);
        // Not streaming or not forced: stream_options untouched.
        let body = format!(r#"{{"model":"m",{MSGS},"stream":false}}"#);
        assert_eq!(rewrite(&body, "m", true), body);
        let body = format!(r#"{{"model":"m",{MSGS},"stream":true}}"#);
        assert_eq!(rewrite(&body, "m", false), body);
    }

    #[test]
    fn rewrite_with_a_different_body_writes_nothing() {
        let body = format!(r#"{{"model":"m",{MSGS}}}"#);
        let summary = chat(&body).unwrap();
        let mut out = BytesMut::new();
        rewrite_request(b"{}", &summary, "u", true, &mut out);
        assert!(out.is_empty());
        let other = format!(r#"{{"model":"x",{MSGS}}}"#);
        rewrite_request(other.as_bytes(), &summary, "u", true, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn chat_request_fixture() {
        let mut scratch = Vec::new();
        let s = inspect_request(Endpoint::ChatCompletions, CHAT_REQUEST, &mut scratch).unwrap();
        assert_eq!(s.model, "gpt-4o-mini");
        assert!(s.stream);
        assert_eq!(s.include_usage, None);
        assert_eq!(s.max_tokens, Some(256));
        let mut out = BytesMut::new();
        rewrite_request(CHAT_REQUEST, &s, "gpt-4o-mini-2024-07-18", true, &mut out);
        let mut expected: Value = serde_json::from_slice(CHAT_REQUEST).unwrap();
        expected["model"] = json!("gpt-4o-mini-2024-07-18");
        expected["stream_options"] = json!({"include_usage": true});
        let got: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(got, expected);
        // The scratch buffer is reused: a second call does not need to grow it.
        let cap = scratch.capacity();
        inspect_request(Endpoint::ChatCompletions, CHAT_REQUEST, &mut scratch).unwrap();
        assert_eq!(scratch.capacity(), cap);
    }

    // === usage ===

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    #[test]
    fn usage_from_response_fixtures() {
        let mut scratch = Vec::new();
        let cases = [
            ("chat_completion_response.json", Some((9, 12, 21, 0))),
            (
                "chat_completion_cached_response.json",
                Some((2006, 300, 2306, 1920)),
            ),
            ("completion_response.json", Some((5, 7, 12, 0))),
            ("embeddings_response.json", Some((8, 0, 8, 0))),
            ("error_response.json", None),
        ];
        for (name, want) in cases {
            let got = response_usage(&fixture(name), &mut scratch);
            let want = want.map(|(p, c, t, k)| Usage {
                prompt_tokens: p,
                completion_tokens: c,
                total_tokens: t,
                cached_tokens: k,
            });
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn usage_edge_cases() {
        let mut s = Vec::new();
        assert_eq!(response_usage(b"not json", &mut s), None);
        assert_eq!(response_usage(br#"{"usage":null}"#, &mut s), None);
        assert_eq!(
            response_usage(br#"{"usage":{"prompt_tokens":3"#, &mut s),
            None
        );
        assert_eq!(
            response_usage(br#"{"x":{"usage":{"prompt_tokens":3}}}"#, &mut s),
            None
        );
        assert_eq!(
            response_usage(
                br#"{"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
                &mut s
            ),
            Some(Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7,
                cached_tokens: 0
            })
        );
        // Content that mentions usage does not fool the scanner.
        assert_eq!(
            response_usage(
                br#"{"choices":[{"text":"\"usage\":{\"prompt_tokens\":99}"}],"usage":{"prompt_tokens":1,"total_tokens":1}}"#,
                &mut s
            )
            .map(|u| u.prompt_tokens),
            Some(1)
        );
    }

    #[test]
    fn stream_chunks_from_usage_fixture() {
        let mut scratch = Vec::new();
        let stream = fixture("openai_chat_stream_usage.sse");
        let mut decoder = crate::sse::SseDecoder::new(1 << 16);
        let mut buf = BytesMut::from(&stream[..]);
        let mut infos = Vec::new();
        while let Some(frame) = decoder.decode(&mut buf).unwrap() {
            let data = frame.data.unwrap();
            infos.push(inspect_stream_chunk(data.as_bytes(), &mut scratch));
        }
        let (done, chunks) = infos.split_last().unwrap();
        assert_eq!(*done, None, "[DONE] is not JSON");
        let (last, rest) = chunks.split_last().unwrap();
        // The role chunk and the finish chunk carry no output; the four text deltas do.
        let outputs: Vec<bool> = rest.iter().map(|i| i.unwrap().output).collect();
        assert_eq!(outputs, [false, true, true, true, true, false]);
        assert!(rest
            .iter()
            .all(|i| i.is_some_and(|i| i.usage.is_none() && !i.usage_only)));
        assert_eq!(
            *last,
            Some(ChunkInfo {
                usage: Some(Usage {
                    prompt_tokens: 9,
                    completion_tokens: 5,
                    total_tokens: 14,
                    cached_tokens: 3
                }),
                usage_only: true,
                output: false,
            })
        );
    }

    #[test]
    fn stream_chunk_shapes() {
        let mut s = Vec::new();
        let info = inspect_stream_chunk(
            br#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage" : {"prompt_tokens":2,"completion_tokens":3,"total_tokens":5}}"#,
            &mut s,
        )
        .unwrap();
        assert_eq!(info.usage.map(|u| u.total_tokens), Some(5));
        assert!(!info.usage_only);
        assert_eq!(
            inspect_stream_chunk(
                br#"{"error":{"message":"boom","type":"server_error"}}"#,
                &mut s
            ),
            Some(ChunkInfo::default())
        );
        assert_eq!(inspect_stream_chunk(b"[DONE]", &mut s), None);
        assert_eq!(inspect_stream_chunk(b"", &mut s), None);
        assert_eq!(
            inspect_stream_chunk(br#"{"usage":{"prompt_tokens":1"#, &mut s),
            None
        );
        assert_eq!(
            inspect_stream_chunk(br#"{"choices":[],"usage": null }"#, &mut s),
            Some(ChunkInfo::default())
        );
        assert_eq!(
            inspect_stream_chunk(br#"{"delta":{"content":"the \"usage\": 5"}}"#, &mut s),
            Some(ChunkInfo {
                output: true,
                ..ChunkInfo::default()
            })
        );
    }

    #[test]
    fn only_chunks_with_generated_text_count_as_output() {
        let output = |chunk: &str| {
            inspect_stream_chunk(chunk.as_bytes(), &mut Vec::new())
                .unwrap()
                .output
        };
        // The role announcement, the finish chunk and the usage chunk carry none.
        assert!(!output(
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(!output(
            r#"{"choices":[{"index":0,"delta":{"content":null},"finish_reason":"stop"}]}"#
        ));
        assert!(!output(
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}"#
        ));
        assert!(!output(
            r#"{"choices":[{"delta":{"role":"assistant","refusal":null}}]}"#
        ));
        // Text, tool-call arguments, refusals and reasoning do.
        assert!(output(r#"{"choices":[{"delta":{"content" : "Hi"}}]}"#));
        assert!(output(
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a"}}]}}]}"#
        ));
        assert!(output(r#"{"choices":[{"delta":{"refusal":"No."}}]}"#));
        assert!(output(
            r#"{"choices":[{"delta":{"reasoning_content":"hm"}}]}"#
        ));
        // A key named inside content is escaped, so only the real field counts.
        assert!(!output(
            r#"{"choices":[{"delta":{"role":"x \"content\":\"y"}}]}"#
        ));
    }

    #[test]
    fn fast_path_detects_only_non_null_usage() {
        assert!(!has_non_null_usage(br#"{"usage":null}"#));
        assert!(!has_non_null_usage(br#"{"usage" :	null}"#));
        assert!(!has_non_null_usage(br#"{"a":"usage"}"#));
        assert!(has_non_null_usage(br#"{"usage":{}}"#));
        assert!(has_non_null_usage(
            br#"{"usage":null,"x":{"usage":{"a":1}}}"#
        ));
    }

    // === property: rewrite across many shapes ===

    const INTERPRETED: &[&str] = &[
        "model",
        "stream",
        "stream_options",
        "messages",
        "max_tokens",
        "max_completion_tokens",
    ];

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("model".to_owned()),
            Just("stream".to_owned()),
            Just("stream_options".to_owned()),
            Just("include_usage".to_owned()),
            "[a-z_]{1,8}",
            any::<String>(),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|n| json!(n)),
            (-1e6f64..1e6).prop_map(|f| json!(f)),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((key(), inner), 0..4)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop_oneof![
            Just(""),
            Just(""),
            Just(" "),
            Just("\n  "),
            Just("\t"),
            Just("\r\n")
        ]
    }

    /// Writes a key as JSON, optionally with its first letter as a `\u` escape.
    fn key_text(key: &str, escape: bool) -> String {
        match (escape, key.chars().next()) {
            (true, Some(c)) if c.is_ascii_alphabetic() => {
                format!(
                    "\"\\u{:04x}{}",
                    u32::from(c),
                    &serde_json::to_string(key).unwrap()[2..]
                )
            }
            _ => serde_json::to_string(key).unwrap(),
        }
    }

    #[derive(Debug, Clone)]
    enum StreamOptions {
        Null,
        Object(Option<Option<bool>>, Vec<(String, Value)>),
    }

    #[derive(Debug, Clone)]
    struct Shape {
        model: String,
        messages: Vec<Value>,
        stream: Option<Option<bool>>,
        stream_options: Option<StreamOptions>,
        extras: Vec<(String, Value)>,
        order_seed: Vec<usize>,
        ws: Vec<&'static str>,
        escape_keys: Vec<bool>,
        pretty: Vec<bool>,
    }

    fn shape() -> impl Strategy<Value = Shape> {
        let stream_options = proptest::option::of(prop_oneof![
            Just(StreamOptions::Null),
            (
                proptest::option::of(proptest::option::of(any::<bool>())),
                proptest::collection::vec(("[a-z]{1,6}", json_value()), 0..3)
            )
                .prop_map(|(iu, extras)| StreamOptions::Object(iu, extras)),
        ]);
        (
            any::<String>().prop_filter("non-empty", |s| !s.is_empty()),
            proptest::collection::vec(json_value(), 1..3),
            proptest::option::of(proptest::option::of(any::<bool>())),
            stream_options,
            proptest::collection::vec((key(), json_value()), 0..5),
            proptest::collection::vec(any::<usize>(), 12),
            proptest::collection::vec(ws(), 60),
            proptest::collection::vec(any::<bool>(), 12),
            proptest::collection::vec(any::<bool>(), 12),
        )
            .prop_map(
                |(
                    model,
                    messages,
                    stream,
                    stream_options,
                    extras,
                    order_seed,
                    ws,
                    escape_keys,
                    pretty,
                )| Shape {
                    model,
                    messages,
                    stream,
                    stream_options,
                    extras,
                    order_seed,
                    ws,
                    escape_keys,
                    pretty,
                },
            )
    }

    fn render(shape: &Shape) -> String {
        let mut members: Vec<(String, String)> = Vec::new();
        let value_text = |v: &Value, i: usize| {
            if shape.pretty[i % shape.pretty.len()] {
                serde_json::to_string_pretty(v).unwrap()
            } else {
                serde_json::to_string(v).unwrap()
            }
        };
        members.push(("model".into(), serde_json::to_string(&shape.model).unwrap()));
        members.push((
            "messages".into(),
            value_text(&Value::Array(shape.messages.clone()), 0),
        ));
        if let Some(stream) = shape.stream {
            members.push(("stream".into(), serde_json::to_string(&stream).unwrap()));
        }
        match &shape.stream_options {
            None => {}
            Some(StreamOptions::Null) => members.push(("stream_options".into(), "null".into())),
            Some(StreamOptions::Object(iu, extras)) => {
                let mut parts: Vec<String> = Vec::new();
                let mut seen = std::collections::BTreeSet::new();
                for (k, v) in extras {
                    if k != "include_usage" && seen.insert(k.clone()) {
                        parts.push(format!("{}:{}", key_text(k, false), value_text(v, 1)));
                    }
                }
                if let Some(iu) = iu {
                    let at = shape.order_seed[0] % (parts.len() + 1);
                    parts.insert(
                        at,
                        format!("\"include_usage\" : {}", serde_json::to_string(iu).unwrap()),
                    );
                }
                members.push(("stream_options".into(), format!("{{{}}}", parts.join(","))));
            }
        }
        let mut seen: std::collections::BTreeSet<String> =
            INTERPRETED.iter().map(|s| (*s).to_owned()).collect();
        for (i, (k, v)) in shape.extras.iter().enumerate() {
            if seen.insert(k.clone()) {
                members.push((k.clone(), value_text(v, i + 2)));
            }
        }
        // Shuffle deterministically from the seed.
        for i in (1..members.len()).rev() {
            members.swap(i, shape.order_seed[i % shape.order_seed.len()] % (i + 1));
        }
        let mut w = <[&str]>::iter(&shape.ws).cycle();
        let mut text = String::from("{");
        for (i, (k, v)) in members.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(w.next().unwrap());
            text.push_str(&key_text(k, shape.escape_keys[i % shape.escape_keys.len()]));
            text.push_str(w.next().unwrap());
            text.push(':');
            text.push_str(w.next().unwrap());
            text.push_str(v);
        }
        text.push_str(w.next().unwrap());
        text.push('}');
        text
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn rewrite_changes_exactly_the_promised_fields(
            shape in shape(),
            upstream in any::<String>(),
            force in any::<bool>(),
        ) {
            let body = render(&shape);
            let summary = chat(&body).map_err(|e| TestCaseError::fail(format!("{e}: {body}")))?;
            prop_assert_eq!(&summary.model, &shape.model);
            let stream = shape.stream.flatten().unwrap_or(false);
            prop_assert_eq!(summary.stream, stream);
            let client_iu = match &shape.stream_options {
                Some(StreamOptions::Object(iu, _)) => iu.flatten(),
                _ => None,
            };
            prop_assert_eq!(summary.include_usage, client_iu);

            let mut out = BytesMut::new();
            rewrite_request(body.as_bytes(), &summary, &upstream, force, &mut out);
            let got: Value = serde_json::from_slice(&out)
                .map_err(|e| TestCaseError::fail(format!("{e}: {}", String::from_utf8_lossy(&out))))?;
            let mut expected: Value = serde_json::from_str(&body).unwrap();
            expected["model"] = json!(upstream);
            if force && stream {
                match expected.get_mut("stream_options") {
                    Some(Value::Object(o)) => {
                        o.insert("include_usage".into(), json!(true));
                    }
                    _ => expected["stream_options"] = json!({"include_usage": true}),
                }
            }
            prop_assert_eq!(&got, &expected);

            // Outside the model value, nothing moved when nothing else was asked for.
            if !force || !stream {
                let span = summary.model_span;
                let mut new_model = BytesMut::new();
                write_json_string(&mut new_model, &upstream);
                let mut want = body.as_bytes()[..span.start].to_vec();
                want.extend_from_slice(&new_model);
                want.extend_from_slice(&body.as_bytes()[span.end..]);
                prop_assert_eq!(&out[..], &want[..]);
            }
            // The rewritten body is itself a valid request with the new model (an empty model
            // is invalid by our own rules, so that case cannot be re-inspected).
            if !upstream.is_empty() {
                let again = chat(std::str::from_utf8(&out).unwrap()).unwrap();
                prop_assert_eq!(&again.model, &upstream);
                prop_assert_eq!(again.include_usage, if force && stream { Some(true) } else { client_iu });
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut scratch = Vec::new();
            if let Ok(summary) = inspect_request(Endpoint::ChatCompletions, &body, &mut scratch) {
                let mut out = BytesMut::new();
                rewrite_request(&body, &summary, "m", true, &mut out);
                prop_assert!(!out.is_empty());
            }
            let _ = response_usage(&body, &mut scratch);
            let _ = inspect_stream_chunk(&body, &mut scratch);
        }

        #[test]
        fn mutated_requests_never_panic(
            shape in shape(),
            cut in any::<usize>(),
            byte in any::<u8>(),
        ) {
            let mut body = render(&shape).into_bytes();
            let at = cut % body.len();
            body[at] = byte;
            let mut scratch = Vec::new();
            if let Ok(summary) = inspect_request(Endpoint::ChatCompletions, &body, &mut scratch) {
                let mut out = BytesMut::new();
                rewrite_request(&body, &summary, "up", true, &mut out);
                // simd-json accepts a few string contents serde_json refuses (a lone surrogate
                // escape); those never change structure, so judge only what serde_json reads.
                if serde_json::from_slice::<Value>(&body).is_ok() {
                    let v: Value = serde_json::from_slice(&out).unwrap();
                    prop_assert_eq!(&v["model"], &json!("up"));
                }
            }
        }
    }
}
