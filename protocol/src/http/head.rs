//! Request and response heads: one `httparse` pass, then one pass over the fields that decides
//! framing, keep-alive, `Host` and `Expect` and records each field as offsets into the head.
//! A head owns its bytes (split off the read buffer, zero-copy); it never copies a field.

use std::fmt;
use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};

use super::{BodyFraming, HttpError, Limits, Method, Version, MAX_HEADERS_CAP};

// === spans into the head bytes ===

/// A byte range inside a head's `raw` bytes. `u32` keeps a field at 8 bytes; heads are clamped
/// to `u32::MAX` bytes before parsing so every offset fits.
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
        fields.push(Field {
            name: Span::of(base, h.name.as_bytes()),
            value: Span::of(base, h.value),
        });
        let name = h.name.as_bytes();
        // Dispatch on length first: most fields are none of these and fail one compare.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => facts.host_count += 1,
            6 if name.eq_ignore_ascii_case(b"expect") => {
                if trim_ows(h.value).eq_ignore_ascii_case(b"100-continue") {
                    facts.expect_continue = true;
                }
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

/// httparse accepts a lone LF as a line end; we do not (request smuggling via parser
/// disagreement). Lines are few, so walking the LFs is cheaper than a byte-wise scan.
fn reject_bare_lf(head: &[u8]) -> Result<(), HttpError> {
    for i in memchr::memchr_iter(b'\n', head) {
        if i == 0 || head[i - 1] != b'\r' {
            return Err(HttpError::Malformed("bare LF in head"));
        }
    }
    Ok(())
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
        reject_bare_lf(base)?;

        let method_str = req.method.unwrap_or_default();
        let path = req.path.unwrap_or_default();
        let method = Method::from_token(method_str.as_bytes());
        let version = version_of(req.version);
        let (fields, facts) = scan_fields(base, req.headers)?;

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
            .field("path", &self.path())
            .field("version", &self.version)
            .field("framing", &self.framing)
            .field("keep_alive", &self.keep_alive)
            .field("expect_continue", &self.expect_continue)
            .field("header_names", &self.head.debug_names())
            .finish()
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
        reject_bare_lf(base)?;

        let status = res.code.unwrap_or_default();
        let version = version_of(res.version);
        let reason = res.reason.unwrap_or_default();
        let (fields, facts) = scan_fields(base, res.headers)?;

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
