//! The parts of the OpenAI wire format the gateway itself reads or changes: request validation
//! and the fields policy needs ([`inspect_request`]), the upstream body with only the model
//! (and, when asked, `stream_options.include_usage`) spliced in ([`rewrite_request`]), and token
//! usage from responses and stream chunks. JSON is parsed with simd-json in a caller-provided
//! scratch buffer; bytes the gateway did not change are never re-encoded.

use bytes::{BufMut, BytesMut};
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

    fn invalid_type(param: &'static str, name: &str, expected: &str, got: JsonValue<'_, '_>) -> Self {
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
            "The request body could not be read unambiguously; send a plain JSON object.".to_owned(),
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

/// One top-level member found by both simd-json (the value) and our scanner (the span).
type Found<'t, 'i> = Option<(JsonValue<'t, 'i>, Span)>;

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
    scratch.clear();
    scratch.extend_from_slice(body);
    let tape = simd_json::to_tape(scratch.as_mut_slice()).map_err(|_| RequestError::invalid_json())?;
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
        return Err(RequestError::invalid_type("model", "model", "a string", value));
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

fn check_token_limit(param: &'static str, found: Found<'_, '_>) -> Result<Option<u64>, RequestError> {
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
    Err(RequestError::invalid_type(param, param, "an integer", value))
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
    let mut edits: [Option<Edit>; 2] = [Some(Edit::new(summary.model_span, Replacement::Model)), None];
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

fn edits_fit(body: &[u8], summary: &RequestSummary, edits: &[Option<Edit>; 2]) -> bool {
    if body.len() != summary.body_len || body.get(summary.model_span.start) != Some(&b'"') {
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
    scratch.clear();
    scratch.extend_from_slice(body.get(span.start..span.end)?);
    let tape = simd_json::to_tape(scratch.as_mut_slice()).ok()?;
    usage_from(tape.as_value())
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
        return (data.get(first) == Some(&b'{') && data.get(last) == Some(&b'}'))
            .then(ChunkInfo::default);
    }
    scratch.clear();
    scratch.extend_from_slice(data);
    let tape = simd_json::to_tape(scratch.as_mut_slice()).ok()?;
    let root = tape.as_value();
    let usage = root.get("usage").and_then(usage_from);
    let usage_only = root
        .get("choices")
        .and_then(|c| c.as_array())
        .is_some_and(|c| c.is_empty());
    Some(ChunkInfo { usage, usage_only })
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
}
