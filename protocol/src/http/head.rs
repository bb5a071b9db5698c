//! Request and response heads: one `httparse` pass, then one pass over the fields that decides
//! framing, keep-alive, `Host` and `Expect` and records each field as offsets into the head.
//! A head owns its bytes (split off the read buffer, zero-copy); it never copies a field.

use std::fmt;
use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

use super::{BodyFraming, HttpError, Limits, Method, Version, MAX_HEADERS_CAP};

// === spans into the head bytes ===

/// A byte range inside a head's `raw` bytes. `u32` keeps a span at 8 bytes (a field at 16);
/// heads are clamped to `u32::MAX` bytes before parsing so every offset fits.
#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

impl Span {
    /// Where `part` (a sub-slice returned by httparse) sits inside `base`. Anything not inside
    /// `base` (httparse returns a static `""` for obs-text reasons) becomes an empty span.
    fn of(base: &[u8], part: &[u8]) -> Span {
        let start = (part.as_ptr() as usize).wrapping_sub(base.as_ptr() as usize);
        match start.checked_add(part.len()) {
            Some(end) if !part.is_empty() && end <= base.len() => Span {
                // Both fit: `end <= base.len() <= u32::MAX` (the window is clamped).
                start: start as u32,
                len: part.len() as u32,
            },
            _ => Span::default(),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Field {
    name: Span,
    value: Span,
}

/// The bytes of one head plus where its fields are. Shared by requests and responses.
#[derive(Clone)]
struct RawHead {
    raw: Bytes,
    fields: Vec<Field>,
}

impl RawHead {
    fn bytes(&self, span: Span) -> &[u8] {
        let start = span.start as usize;
        self.raw
            .get(start..start + span.len as usize)
            .unwrap_or_default()
    }

    /// Spans handed to this come from `&str`s httparse produced, so they are valid UTF-8; the
    /// fallback only keeps this total.
    fn text(&self, span: Span) -> &str {
        std::str::from_utf8(self.bytes(span)).unwrap_or_default()
    }

    fn header(&self, name: &str) -> Option<&[u8]> {
        let name = name.as_bytes();
        self.fields
            .iter()
            .find(|f| {
                f.name.len as usize == name.len() && self.bytes(f.name).eq_ignore_ascii_case(name)
            })
            .map(|f| self.bytes(f.value))
    }

    fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields
            .iter()
            .map(move |f| (self.text(f.name), self.bytes(f.value)))
    }

    /// Header names only: values may carry credentials and must not reach logs.
    fn debug_names(&self) -> impl fmt::Debug + '_ {
        struct Names<'a>(&'a RawHead);
        impl fmt::Debug for Names<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_list()
                    .entries(self.0.fields.iter().map(|h| self.0.text(h.name)))
                    .finish()
            }
        }
        Names(self)
    }
}

// === the single pass over fields ===

/// What the field pass learned about framing and connection management.
#[derive(Default)]
struct FieldFacts {
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// Exactly one Transfer-Encoding field whose value is exactly `chunked`.
    te_is_chunked: bool,
    host_count: u32,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
}

/// Record every field's span and judge the ones that affect framing, in one pass.
fn scan_fields(
    base: &[u8],
    headers: &[httparse::Header<'_>],
) -> Result<(Vec<Field>, FieldFacts), HttpError> {
    let mut fields = Vec::with_capacity(headers.len());
    let mut facts = FieldFacts::default();
    for h in headers {
        let name_span = Span::of(base, h.name.as_bytes());
        // The previous line ends just before this name: its LF must be preceded by CR.
        if base.get((name_span.start as usize).wrapping_sub(2)) != Some(&b'\r') {
            debug_assert!(has_bare_lf(base));
            return Err(BARE_LF);
        }
        fields.push(Field {
            name: name_span,
            value: Span::of(base, h.value),
        });
        let name = h.name.as_bytes();
        // Dispatch on length first: most fields are none of these and fail one compare.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => facts.host_count += 1,
            6 if name.eq_ignore_ascii_case(b"expect") => {
                facts.expect_continue |= trim_ows(h.value).eq_ignore_ascii_case(b"100-continue");
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                for token in list_elements(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        facts.close = true;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        facts.keep_alive = true;
                    }
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                let n = parse_content_length(h.value)?;
                match facts.content_length {
                    Some(prev) if prev != n => {
                        return Err(HttpError::Malformed("differing content-length values"))
                    }
                    _ => facts.content_length = Some(n),
                }
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                // A second field makes the coding list `chunked, chunked` (or worse): never
                // exactly `chunked`.
                facts.te_is_chunked =
                    !facts.transfer_encoding && trim_ows(h.value).eq_ignore_ascii_case(b"chunked");
                facts.transfer_encoding = true;
            }
            _ => {}
        }
    }
    Ok((fields, facts))
}

/// A Content-Length value: one or more comma-separated copies of 1-19 ASCII digits, all equal.
/// 19 digits always fit in a `u64`, so overflow is impossible by construction.
fn parse_content_length(value: &[u8]) -> Result<u64, HttpError> {
    let mut result: Option<u64> = None;
    for element in value.split(|&b| b == b',') {
        let digits = trim_ows(element);
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(HttpError::Malformed("invalid content-length"));
        }
        let n = digits
            .iter()
            .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
        match result {
            Some(prev) if prev != n => {
                return Err(HttpError::Malformed("differing content-length values"))
            }
            _ => result = Some(n),
        }
    }
    result.ok_or(HttpError::Malformed("invalid content-length"))
}

/// Elements of a comma-separated list, OWS trimmed, empty elements skipped (RFC 9110 §5.6.1).
fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// httparse accepts a lone LF as a line end; we do not (request smuggling through parser
/// disagreement). In a head httparse has completed, every LF ends a line and every CR is
/// followed by an LF (it rejects any other CR), so checking the byte before each line's LF is
/// enough, and the line ends are all at known places: the empty lines httparse skipped before
/// the start line, just before each field name (checked in [`scan_fields`]) and the last two
/// lines (checked here). That makes the check O(fields) instead of a scan of the head, which
/// benchmarks showed cost ~15% of a parse.
fn reject_bare_lf_outside_fields(head: &[u8]) -> Result<(), HttpError> {
    let lead = head
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    let n = head.len();
    // `n >= 4`: a complete head has a start line and a blank line, but stay total regardless.
    if head[..lead].chunks(2).any(|pair| pair != b"\r\n")
        || n < 4
        || head[n - 2] != b'\r'
        || head[n - 4] != b'\r'
    {
        return Err(BARE_LF);
    }
    Ok(())
}

const BARE_LF: HttpError = HttpError::Malformed("bare LF in head");

/// The obvious scan, kept to cross-check the structural check in debug builds and tests.
fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i == 0 || head[i - 1] != b'\r')
}

fn map_httparse_error(e: httparse::Error) -> HttpError {
    match e {
        httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
        httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
        httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
        httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
        httparse::Error::Status => HttpError::Malformed("invalid status line"),
        httparse::Error::Token => HttpError::Malformed("invalid request line"),
        httparse::Error::Version => HttpError::Malformed("invalid HTTP version"),
    }
}

fn version_of(v: Option<u8>) -> Version {
    // httparse only completes a head for HTTP/1.0 and HTTP/1.1.
    if v == Some(0) {
        Version::Http10
    } else {
        Version::Http11
    }
}

/// The window httparse may look at: at most `max_head_bytes` (clamped so spans fit in `u32`),
/// so a slow client cannot make us rescan an unbounded buffer.
fn head_window<'b>(buf: &'b [u8], limits: &Limits) -> (usize, &'b [u8]) {
    let max = limits.max_head_bytes.min(u32::MAX as usize);
    (max, &buf[..buf.len().min(max)])
}

/// What to do when httparse needs more bytes: wait, unless the window is already full.
fn partial<T>(buf_len: usize, max: usize) -> Result<Option<T>, HttpError> {
    if buf_len > max {
        Err(HttpError::HeadTooLarge)
    } else {
        Ok(None)
    }
}

type HeaderTable<'b> = [MaybeUninit<httparse::Header<'b>>; MAX_HEADERS_CAP];

fn header_table<'b>() -> HeaderTable<'b> {
    [const { MaybeUninit::uninit() }; MAX_HEADERS_CAP]
}

// === impl RequestHead ===

/// A parsed request head. Owns the head bytes (a `Bytes` split from the read buffer, zero-copy)
/// and keeps header name/value ranges into them.
#[derive(Clone)]
pub struct RequestHead {
    head: RawHead,
    method_span: Span,
    path_span: Span,
    /// The method; for `Other`, [`RequestHead::method_str`] has the token.
    pub method: Method,
    /// Protocol version of the request line.
    pub version: Version,
    /// How the request body is delimited (`Empty` when neither CL nor TE is present).
    pub framing: BodyFraming,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// The client sent `Expect: 100-continue` on an HTTP/1.1 request that has a body.
    pub expect_continue: bool,
}

impl RequestHead {
    /// Parse one request head from the front of `buf`. Ok(None): need more bytes (but if
    /// `buf.len()` already exceeds `max_head_bytes` without a complete head ->
    /// Err(HeadTooLarge)). On success the head bytes are removed from `buf` (split_to + freeze),
    /// leaving any body/pipelined bytes.
    pub fn parse(buf: &mut BytesMut, limits: &Limits) -> Result<Option<RequestHead>, HttpError> {
        let (max, window) = head_window(buf, limits);
        let mut table = header_table();
        let table_len = limits.max_headers.min(MAX_HEADERS_CAP);
        let mut req = httparse::Request::new(&mut []);
        let head_len = match req.parse_with_uninit_headers(window, &mut table[..table_len]) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return partial(buf.len(), max),
            Err(e) => return Err(map_httparse_error(e)),
        };
        let base = &window[..head_len];
        reject_bare_lf_outside_fields(base).inspect_err(|_| debug_assert!(has_bare_lf(base)))?;

        let method_str = req.method.unwrap_or_default();
        let path = req.path.unwrap_or_default();
        let method = Method::from_token(method_str.as_bytes());
        let version = version_of(req.version);
        let (fields, facts) = scan_fields(base, req.headers)?;
        debug_assert!(!has_bare_lf(base), "bare-LF check missed a line end");

        if path != "*" && !path.starts_with('/') {
            return Err(HttpError::Malformed("request target not origin-form"));
        }
        if path == "*" && method != Method::Options {
            return Err(HttpError::Malformed(
                "asterisk-form target on a non-OPTIONS request",
            ));
        }
        if version == Version::Http11 && facts.host_count != 1 {
            return Err(HttpError::Malformed(if facts.host_count == 0 {
                "missing host header"
            } else {
                "duplicate host header"
            }));
        }
        let framing = match (facts.content_length, facts.transfer_encoding) {
            (Some(_), true) => {
                return Err(HttpError::Malformed(
                    "both content-length and transfer-encoding",
                ))
            }
            (None, true) if version == Version::Http10 => {
                return Err(HttpError::Malformed("transfer-encoding on HTTP/1.0"))
            }
            (None, true) if !facts.te_is_chunked => {
                return Err(HttpError::UnsupportedTransferEncoding)
            }
            (None, true) => BodyFraming::Chunked,
            (Some(n), false) => BodyFraming::Length(n),
            (None, false) => BodyFraming::Empty,
        };
        let keep_alive = match version {
            Version::Http11 => !facts.close,
            Version::Http10 => facts.keep_alive && !facts.close,
        };
        // RFC 9110 §10.1.1: a server must ignore 100-continue from HTTP/1.0 clients, and there
        // is nothing to wait for when there is no body.
        let has_body = matches!(framing, BodyFraming::Chunked)
            || matches!(framing, BodyFraming::Length(n) if n > 0);
        let expect_continue = facts.expect_continue && has_body && version == Version::Http11;

        let method_span = Span::of(base, method_str.as_bytes());
        let path_span = Span::of(base, path.as_bytes());
        let raw = buf.split_to(head_len).freeze();
        Ok(Some(RequestHead {
            head: RawHead { raw, fields },
            method_span,
            path_span,
            method,
            version,
            framing,
            keep_alive,
            expect_continue,
        }))
    }

    /// The method token as sent (useful for `Method::Other`).
    pub fn method_str(&self) -> &str {
        self.head.text(self.method_span)
    }

    /// The request target: origin-form including the query, or `*` for `OPTIONS *`.
    pub fn path(&self) -> &str {
        self.head.text(self.path_span)
    }

    /// The first field named `name` (case-insensitive), OWS trimmed.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(name)
    }

    /// Every field in wire order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.head.headers()
    }

    /// Whether the `Connection` header nominates `name` (case-insensitive) as a hop-by-hop
    /// field that must not be forwarded (RFC 9110 §7.6.1).
    pub fn connection_lists(&self, name: &str) -> bool {
        connection_lists(&self.head, name)
    }

    /// Size of the head on the wire, including the blank line.
    pub fn head_len(&self) -> usize {
        self.head.raw.len()
    }
}

impl fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestHead")
            .field("method", &self.method_str())
            // The query may carry credentials (`?key=` style APIs): show only that there is one.
            .field("path", &redact_query(self.path()))
            .field("version", &self.version)
            .field("framing", &self.framing)
            .field("keep_alive", &self.keep_alive)
            .field("expect_continue", &self.expect_continue)
            .field("header_names", &self.head.debug_names())
            .finish()
    }
}

fn redact_query(path: &str) -> std::borrow::Cow<'_, str> {
    match path.split_once('?') {
        Some((before, _)) => format!("{before}?<redacted>").into(),
        None => path.into(),
    }
}

fn connection_lists(head: &RawHead, name: &str) -> bool {
    head.fields
        .iter()
        .filter(|f| head.bytes(f.name).eq_ignore_ascii_case(b"connection"))
        .any(|f| {
            list_elements(head.bytes(f.value)).any(|t| t.eq_ignore_ascii_case(name.as_bytes()))
        })
}

// === impl ResponseHead ===

/// A parsed response head (client side). Owns its bytes like [`RequestHead`].
#[derive(Clone)]
pub struct ResponseHead {
    head: RawHead,
    reason_span: Span,
    /// Status code (100-999, as httparse accepts three digits).
    pub status: u16,
    /// Protocol version of the status line.
    pub version: Version,
    /// How the response body is delimited.
    pub framing: BodyFraming,
    /// Whether the upstream connection may be reused after this response.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// Client side. `request_method` decides framing for HEAD. 1xx responses are returned as-is
    /// (framing Empty) so the caller can skip `100 Continue`. 204/304/1xx/HEAD -> Empty;
    /// chunked -> Chunked; Content-Length -> Length; neither -> CloseDelimited with
    /// keep_alive=false. Buffer handling and `Ok(None)` are as for [`RequestHead::parse`].
    pub fn parse(
        buf: &mut BytesMut,
        limits: &Limits,
        request_method: Method,
    ) -> Result<Option<ResponseHead>, HttpError> {
        let (max, window) = head_window(buf, limits);
        let mut table = header_table();
        let table_len = limits.max_headers.min(MAX_HEADERS_CAP);
        let mut res = httparse::Response::new(&mut []);
        let head_len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut res,
            window,
            &mut table[..table_len],
        ) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return partial(buf.len(), max),
            Err(e) => return Err(map_httparse_error(e)),
        };
        let base = &window[..head_len];
        reject_bare_lf_outside_fields(base).inspect_err(|_| debug_assert!(has_bare_lf(base)))?;

        let status = res.code.unwrap_or_default();
        let version = version_of(res.version);
        let reason = res.reason.unwrap_or_default();
        let (fields, facts) = scan_fields(base, res.headers)?;
        debug_assert!(!has_bare_lf(base), "bare-LF check missed a line end");

        // CL + TE is ambiguous whatever the status, so it is rejected even where the body is
        // known to be empty; the TE *value* only matters when a body follows.
        if facts.content_length.is_some() && facts.transfer_encoding {
            return Err(HttpError::Malformed(
                "both content-length and transfer-encoding",
            ));
        }
        let bodyless = (100..200).contains(&status)
            || status == 204
            || status == 304
            || request_method == Method::Head;
        let framing = if bodyless {
            BodyFraming::Empty
        } else if facts.transfer_encoding {
            if version == Version::Http10 {
                return Err(HttpError::Malformed("transfer-encoding on HTTP/1.0"));
            }
            if !facts.te_is_chunked {
                return Err(HttpError::UnsupportedTransferEncoding);
            }
            BodyFraming::Chunked
        } else if let Some(n) = facts.content_length {
            BodyFraming::Length(n)
        } else {
            BodyFraming::CloseDelimited
        };
        let keep_alive = framing != BodyFraming::CloseDelimited
            && match version {
                Version::Http11 => !facts.close,
                Version::Http10 => facts.keep_alive && !facts.close,
            };

        let reason_span = Span::of(base, reason.as_bytes());
        let raw = buf.split_to(head_len).freeze();
        Ok(Some(ResponseHead {
            head: RawHead { raw, fields },
            reason_span,
            status,
            version,
            framing,
            keep_alive,
        }))
    }

    /// The reason phrase as sent; empty when absent or when it contained obs-text.
    pub fn reason(&self) -> &str {
        self.head.text(self.reason_span)
    }

    /// The first field named `name` (case-insensitive), OWS trimmed.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.head.header(name)
    }

    /// Every field in wire order, names as sent.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.head.headers()
    }

    /// Whether the `Connection` header nominates `name` (case-insensitive) as hop-by-hop.
    pub fn connection_lists(&self, name: &str) -> bool {
        connection_lists(&self.head, name)
    }

    /// Size of the head on the wire, including the blank line.
    pub fn head_len(&self) -> usize {
        self.head.raw.len()
    }
}

impl fmt::Debug for ResponseHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseHead")
            .field("status", &self.status)
            .field("reason", &self.reason())
            .field("version", &self.version)
            .field("framing", &self.framing)
            .field("keep_alive", &self.keep_alive)
            .field("header_names", &self.head.debug_names())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn req(bytes: &[u8]) -> Result<Option<RequestHead>, HttpError> {
        RequestHead::parse(&mut BytesMut::from(bytes), &Limits::default())
    }

    fn req_ok(bytes: &[u8]) -> RequestHead {
        req(bytes).unwrap().expect("complete head")
    }

    fn req_err(bytes: &[u8]) -> HttpError {
        req(bytes).expect_err("head must be rejected")
    }

    fn res(bytes: &[u8], method: Method) -> Result<Option<ResponseHead>, HttpError> {
        ResponseHead::parse(&mut BytesMut::from(bytes), &Limits::default(), method)
    }

    fn res_ok(bytes: &[u8], method: Method) -> ResponseHead {
        res(bytes, method).unwrap().expect("complete head")
    }

    fn malformed(msg: &'static str) -> HttpError {
        HttpError::Malformed(msg)
    }

    // --- good paths ---

    #[test]
    fn get_request() {
        let mut buf = BytesMut::from(
            &b"GET /v1/models?limit=5 HTTP/1.1\r\nHost: gw.local\r\nUser-Agent: t/1\r\nX-Empty:\r\n\r\n"[..],
        );
        let h = RequestHead::parse(&mut buf, &Limits::default())
            .unwrap()
            .unwrap();
        assert!(buf.is_empty());
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.method_str(), "GET");
        assert_eq!(h.path(), "/v1/models?limit=5");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.framing, BodyFraming::Empty);
        assert!(h.keep_alive);
        assert!(!h.expect_continue);
        assert_eq!(h.header("HOST"), Some(&b"gw.local"[..]));
        assert_eq!(h.header("user-agent"), Some(&b"t/1"[..]));
        assert_eq!(h.header("x-empty"), Some(&b""[..]));
        assert_eq!(h.header("accept"), None);
        let all: Vec<_> = h.headers().collect();
        assert_eq!(
            all,
            vec![
                ("Host", &b"gw.local"[..]),
                ("User-Agent", &b"t/1"[..]),
                ("X-Empty", &b""[..])
            ]
        );
        assert_eq!(h.head_len(), 78);
    }

    #[test]
    fn header_returns_first_occurrence_and_trims_ows() {
        let h = req_ok(b"GET / HTTP/1.1\r\nHost: a\r\nX-A:  one \t\r\nx-a: two\r\n\r\n");
        assert_eq!(h.header("X-A"), Some(&b"one"[..]));
        assert_eq!(
            h.headers()
                .filter(|(n, _)| n.eq_ignore_ascii_case("x-a"))
                .count(),
            2
        );
    }

    #[test]
    fn post_with_content_length_leaves_body_in_buffer() {
        let mut buf = BytesMut::from(
            &b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 13\r\n\r\n{\"model\":\"x\"}"[..],
        );
        let h = RequestHead::parse(&mut buf, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.framing, BodyFraming::Length(13));
        assert_eq!(&buf[..], b"{\"model\":\"x\"}");
    }

    #[test]
    fn chunked_request() {
        let h = req_ok(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:  Chunked \r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Chunked);
    }

    #[test]
    fn identical_duplicate_content_length_is_accepted() {
        let h =
            req_ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(5));
        let h = req_ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 ,5\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(5));
        let h =
            req_ok(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0009999999999999999\r\n\r\n");
        assert_eq!(h.framing, BodyFraming::Length(9_999_999_999_999_999));
    }

    #[test]
    fn pipelined_requests_parse_back_to_back() {
        let mut buf = BytesMut::from(
            &b"GET /a HTTP/1.1\r\nHost: a\r\n\r\nPOST /b HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhiGET /c HTTP/1.1\r\nHost: a\r\n\r\n"[..],
        );
        let limits = Limits::default();
        let a = RequestHead::parse(&mut buf, &limits).unwrap().unwrap();
        assert_eq!(a.path(), "/a");
        let b = RequestHead::parse(&mut buf, &limits).unwrap().unwrap();
        assert_eq!(b.path(), "/b");
        assert_eq!(b.framing, BodyFraming::Length(2));
        assert!(buf.starts_with(b"hi"));
        let _ = buf.split_to(2);
        let c = RequestHead::parse(&mut buf, &limits).unwrap().unwrap();
        assert_eq!(c.path(), "/c");
        assert!(buf.is_empty());
        assert!(RequestHead::parse(&mut buf, &limits).unwrap().is_none());
    }

    #[test]
    fn every_prefix_of_a_head_needs_more() {
        let full = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\n";
        for i in 0..full.len() {
            let mut buf = BytesMut::from(&full[..i]);
            assert!(
                RequestHead::parse(&mut buf, &Limits::default())
                    .unwrap()
                    .is_none(),
                "prefix {i}"
            );
            assert_eq!(buf.len(), i, "nothing consumed on a partial head");
        }
    }

    #[test]
    fn leading_empty_line_is_tolerated() {
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before the request line.
        let h = req_ok(b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.path(), "/");
    }

    #[test]
    fn other_methods_and_options_asterisk() {
        let h = req_ok(b"PURGE /cache HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.method, Method::Other);
        assert_eq!(h.method_str(), "PURGE");
        let h = req_ok(b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(h.method, Method::Options);
        assert_eq!(h.path(), "*");
        for (line, m) in [
            ("HEAD", Method::Head),
            ("PUT", Method::Put),
            ("DELETE", Method::Delete),
            ("PATCH", Method::Patch),
        ] {
            let h = req_ok(format!("{line} / HTTP/1.1\r\nHost: a\r\n\r\n").as_bytes());
            assert_eq!(h.method, m);
            assert_eq!(m.as_str(), Some(line));
        }
    }

    #[test]
    fn debug_shows_header_names_but_never_values() {
        let h = req_ok(
            b"GET /v1beta/models?key=AIza-secret HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer sk-secret\r\n\r\n",
        );
        let dbg = format!("{h:?}");
        assert!(dbg.contains("Authorization"));
        assert!(dbg.contains("/v1beta/models?<redacted>"));
        assert!(!dbg.contains("sk-secret"));
        assert!(!dbg.contains("AIza-secret"));
    }

    #[test]
    fn connection_lists_nominated_fields() {
        let h = req_ok(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Foo\r\n\r\n");
        assert!(h.connection_lists("x-foo"));
        assert!(!h.connection_lists("x-bar"));
    }

    // --- keep-alive and expect ---

    #[test]
    fn keep_alive_rules() {
        let ka = |head: &[u8]| req_ok(head).keep_alive;
        assert!(ka(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
        ));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Keep-Alive, CLOSE\r\n\r\n"
        ));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: close\r\n\r\n"
        ));
        assert!(ka(
            b"GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
        assert!(ka(
            b"GET / HTTP/1.0\r\nConnection: upgrade ,\tKEEP-ALIVE\r\n\r\n"
        ));
        assert!(!ka(
            b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n"
        ));
    }

    #[test]
    fn expect_continue_needs_a_body_and_http11() {
        let ec = |head: &[u8]| req_ok(head).expect_continue;
        assert!(ec(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 5\r\n\r\n"
        ));
        assert!(ec(b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n"));
        assert!(!ec(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!ec(
            b"GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n"
        ));
        assert!(!ec(
            b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 200-ok\r\nContent-Length: 5\r\n\r\n"
        ));
        assert!(!ec(
            b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
        ));
    }

    // --- strictness ---

    #[test]
    fn bare_lf_anywhere_in_head_is_malformed() {
        let bare = malformed("bare LF in head");
        assert_eq!(req_err(b"GET / HTTP/1.1\nHost: a\r\n\r\n"), bare);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\n\r\n"), bare);
        assert_eq!(req_err(b"GET / HTTP/1.1\r\nHost: a\r\n\n"), bare);
        assert_eq!(req_err(b"GET / HTTP/1.1\nHost: a\n\n"), bare);
        assert_eq!(req_err(b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), bare);
        assert_eq!(
            ResponseHead::parse(
                &mut BytesMut::from(&b"HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"[..]),
                &Limits::default(),
                Method::Get
            )
            .unwrap_err(),
            bare
        );
    }

    #[test]
    fn bare_cr_is_malformed() {
        assert!(matches!(
            req_err(b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"),
            HttpError::Malformed(_)
        ));
    }

    #[test]
    fn content_length_with_transfer_encoding_is_malformed() {
        let both = malformed("both content-length and transfer-encoding");
        assert_eq!(
            req_err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"),
            both
        );
        assert_eq!(
            req_err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"),
            both
        );
        // Even when the TE value is one we would not support: the ambiguity is the problem.
        assert_eq!(
            req_err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n\r\n"),
            both
        );
    }

    #[test]
    fn differing_content_lengths_are_malformed() {
        let differ = malformed("differing content-length values");
        assert_eq!(
            req_err(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
            ),
            differ
        );
        assert_eq!(
            req_err(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n"),
            differ
        );
        assert_eq!(
            req_err(
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,5\r\ncontent-length: 7\r\n\r\n"
            ),
            differ
        );
    }

    #[test]
    fn content_length_must_be_1_to_19_digits() {
        let invalid = malformed("invalid content-length");
        for value in [
            "+5",
            "-5",
            "5 5",
            "0x5",
            "5a",
            "",
            "5,",
            ",5",
            "5,,5",
            "18446744073709551616",
            "10000000000000000000",
            "1.0",
        ] {
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: {value}\r\n\r\n");
            assert_eq!(req_err(head.as_bytes()), invalid, "value {value:?}");
        }
    }

    #[test]
    fn transfer_encoding_other_than_chunked_is_unsupported() {
        for value in [
            "gzip",
            "gzip, chunked",
            "chunked, gzip",
            "chunked;q=1",
            "identity",
            "",
        ] {
            let head = format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {value}\r\n\r\n");
            assert_eq!(
                req_err(head.as_bytes()),
                HttpError::UnsupportedTransferEncoding,
                "value {value:?}"
            );
        }
        assert_eq!(
            req_err(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
            HttpError::UnsupportedTransferEncoding
        );
    }

    #[test]
    fn chunked_on_http10_is_malformed() {
        assert_eq!(
            req_err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
            malformed("transfer-encoding on HTTP/1.0")
        );
    }

    #[test]
    fn http11_needs_exactly_one_host() {
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\n\r\n"),
            malformed("missing host header")
        );
        assert_eq!(
            req_err(b"GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n"),
            malformed("duplicate host header")
        );
        // HTTP/1.0 predates Host.
        assert_eq!(req_ok(b"GET / HTTP/1.0\r\n\r\n").version, Version::Http10);
    }

    #[test]
    fn request_target_must_be_origin_form() {
        let not_origin = malformed("request target not origin-form");
        assert_eq!(
            req_err(b"GET http://evil/ HTTP/1.1\r\nHost: a\r\n\r\n"),
            not_origin
        );
        assert_eq!(
            req_err(b"CONNECT evil:443 HTTP/1.1\r\nHost: a\r\n\r\n"),
            not_origin
        );
        assert_eq!(
            req_err(b"GET * HTTP/1.1\r\nHost: a\r\n\r\n"),
            malformed("asterisk-form target on a non-OPTIONS request")
        );
    }

    #[test]
    fn head_too_large_even_when_incomplete() {
        let limits = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
        head.resize(64, b'p');
        // Exactly at the limit and incomplete: still waiting.
        assert!(matches!(
            RequestHead::parse(&mut BytesMut::from(&head[..]), &limits),
            Ok(None)
        ));
        head.push(b'p');
        assert_eq!(
            RequestHead::parse(&mut BytesMut::from(&head[..]), &limits).unwrap_err(),
            HttpError::HeadTooLarge
        );
        // Complete but one byte over the limit.
        let mut big = b"GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ".to_vec();
        big.resize(61, b'p');
        big.extend_from_slice(b"\r\n\r\n");
        assert_eq!(big.len(), 65);
        assert_eq!(
            RequestHead::parse(&mut BytesMut::from(&big[..]), &limits).unwrap_err(),
            HttpError::HeadTooLarge
        );
        // Exactly at the limit and complete, with body bytes behind it: fine.
        big.remove(40);
        big.extend_from_slice(b"body");
        let mut buf = BytesMut::from(&big[..]);
        assert!(RequestHead::parse(&mut buf, &limits).unwrap().is_some());
        assert_eq!(&buf[..], b"body");
        assert_eq!(HttpError::HeadTooLarge.status(), 431);
    }

    fn with_headers(n: usize) -> Vec<u8> {
        let mut head = b"GET / HTTP/1.1\r\nHost: a\r\n".to_vec();
        for i in 1..n {
            head.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        head
    }

    #[test]
    fn too_many_headers() {
        let limits = Limits::default();
        assert!(
            RequestHead::parse(&mut BytesMut::from(&with_headers(100)[..]), &limits)
                .unwrap()
                .is_some()
        );
        assert_eq!(
            RequestHead::parse(&mut BytesMut::from(&with_headers(101)[..]), &limits).unwrap_err(),
            HttpError::TooManyHeaders
        );
        let small = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        assert_eq!(
            RequestHead::parse(&mut BytesMut::from(&with_headers(4)[..]), &small).unwrap_err(),
            HttpError::TooManyHeaders
        );
        // A limit above the stack table is capped, not honoured.
        let huge = Limits {
            max_headers: 10_000,
            max_head_bytes: 1 << 20,
            ..Limits::default()
        };
        assert!(RequestHead::parse(
            &mut BytesMut::from(&with_headers(MAX_HEADERS_CAP)[..]),
            &huge
        )
        .unwrap()
        .is_some());
        assert_eq!(
            RequestHead::parse(
                &mut BytesMut::from(&with_headers(MAX_HEADERS_CAP + 1)[..]),
                &huge
            )
            .unwrap_err(),
            HttpError::TooManyHeaders
        );
        assert_eq!(HttpError::TooManyHeaders.status(), 431);
    }

    #[test]
    fn httparse_level_errors_are_malformed() {
        for bad in [
            &b"GET / HTTP/1.2\r\nHost: a\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
            b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n",
            b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        ] {
            assert!(
                matches!(req_err(bad), HttpError::Malformed(_)),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn error_statuses() {
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
        assert_eq!(malformed("x").status(), 400);
        assert_eq!(HttpError::UnsupportedTransferEncoding.status(), 501);
        assert_eq!(HttpError::UnexpectedEof.status(), 400);
    }

    // --- responses ---

    #[test]
    fn response_with_content_length() {
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Req: 1\r\n\r\nhi"[..]);
        let h = ResponseHead::parse(&mut buf, &Limits::default(), Method::Post)
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 200);
        assert_eq!(h.reason(), "OK");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.framing, BodyFraming::Length(2));
        assert!(h.keep_alive);
        assert_eq!(h.header("x-req"), Some(&b"1"[..]));
        assert_eq!(h.headers().count(), 2);
        assert_eq!(&buf[..], b"hi");
    }

    #[test]
    fn continue_then_final_response_in_one_buffer() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"[..],
        );
        let limits = Limits::default();
        let first = ResponseHead::parse(&mut buf, &limits, Method::Post)
            .unwrap()
            .unwrap();
        assert_eq!(first.status, 100);
        assert_eq!(first.framing, BodyFraming::Empty);
        let second = ResponseHead::parse(&mut buf, &limits, Method::Post)
            .unwrap()
            .unwrap();
        assert_eq!(second.status, 201);
        assert_eq!(second.reason(), "Created");
        assert_eq!(second.framing, BodyFraming::Chunked);
        assert!(buf.is_empty());
    }

    #[test]
    fn bodyless_responses_are_empty() {
        assert_eq!(
            res_ok(b"HTTP/1.1 204 No Content\r\n\r\n", Method::Delete).framing,
            BodyFraming::Empty
        );
        assert_eq!(
            res_ok(
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\n\r\n",
                Method::Get
            )
            .framing,
            BodyFraming::Empty
        );
        let h = res_ok(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n",
            Method::Head,
        );
        assert_eq!(h.framing, BodyFraming::Empty);
        assert!(h.keep_alive);
        assert_eq!(
            res_ok(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Method::Head
            )
            .framing,
            BodyFraming::Empty
        );
        assert_eq!(
            res_ok(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                Method::Get
            )
            .framing,
            BodyFraming::Empty
        );
    }

    #[test]
    fn response_without_length_is_close_delimited() {
        let h = res_ok(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n",
            Method::Get,
        );
        assert_eq!(h.framing, BodyFraming::CloseDelimited);
        assert!(!h.keep_alive);
    }

    #[test]
    fn response_keep_alive_rules() {
        assert!(
            !res_ok(
                b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                Method::Get
            )
            .keep_alive
        );
        assert!(!res_ok(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", Method::Get).keep_alive);
        assert!(
            res_ok(
                b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n",
                Method::Get
            )
            .keep_alive
        );
    }

    #[test]
    fn response_without_reason() {
        let h = res_ok(b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", Method::Get);
        assert_eq!(h.reason(), "");
        assert_eq!(h.status, 200);
    }

    #[test]
    fn response_framing_strictness() {
        let e = |b: &[u8]| res(b, Method::Get).unwrap_err();
        assert_eq!(
            e(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            malformed("both content-length and transfer-encoding")
        );
        assert_eq!(
            e(b"HTTP/1.1 204 No Content\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
            malformed("both content-length and transfer-encoding")
        );
        assert_eq!(
            e(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n"),
            malformed("differing content-length values")
        );
        assert_eq!(
            e(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            HttpError::UnsupportedTransferEncoding
        );
        assert_eq!(
            e(b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"),
            malformed("transfer-encoding on HTTP/1.0")
        );
        assert!(matches!(
            e(b"HTTP/1.1 2000 OK\r\n\r\n"),
            HttpError::Malformed(_)
        ));
    }

    #[test]
    fn response_head_too_large_and_partial() {
        let limits = Limits {
            max_head_bytes: 32,
            ..Limits::default()
        };
        let head = b"HTTP/1.1 200 OK\r\nX-Pad: ppppppppppppppppppppppp";
        assert!(matches!(
            ResponseHead::parse(&mut BytesMut::from(&head[..32]), &limits, Method::Get),
            Ok(None)
        ));
        assert_eq!(
            ResponseHead::parse(&mut BytesMut::from(&head[..]), &limits, Method::Get).unwrap_err(),
            HttpError::HeadTooLarge
        );
    }
}
