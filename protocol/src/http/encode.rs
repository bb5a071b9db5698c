//! Encoders for heads and chunks, appending to an output buffer. Every forwarded head is
//! re-serialized through here, never copied from the peer. Inputs are trusted (callers
//! validate); debug builds assert that nothing could break a line.

use bytes::{BufMut, BytesMut};

/// Debug-only guard: a CR or LF in a trusted input would let it inject lines.
fn debug_assert_no_newline(s: &[u8]) {
    debug_assert!(
        !s.iter().any(|&b| b == b'\r' || b == b'\n'),
        "CR/LF in head input"
    );
}

/// Bytes the header lines will take, so the buffer grows once.
fn headers_len(headers: &[(&str, &[u8])]) -> usize {
    headers
        .iter()
        .map(|(name, value)| name.len() + 2 + value.len() + 2)
        .sum()
}

fn put_headers(out: &mut BytesMut, headers: &[(&str, &[u8])]) {
    for (name, value) in headers {
        debug_assert_no_newline(name.as_bytes());
        debug_assert_no_newline(value);
        out.put_slice(name.as_bytes());
        out.put_slice(b": ");
        out.put_slice(value);
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"\r\n");
}

/// Append `METHOD path HTTP/1.1\r\n`, the header lines and the blank line.
pub fn write_request_head(out: &mut BytesMut, method: &str, path: &str, headers: &[(&str, &[u8])]) {
    debug_assert_no_newline(method.as_bytes());
    debug_assert_no_newline(path.as_bytes());
    out.reserve(method.len() + 1 + path.len() + 11 + headers_len(headers) + 2);
    out.put_slice(method.as_bytes());
    out.put_u8(b' ');
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\n");
    put_headers(out, headers);
}

/// Append `HTTP/1.1 <status> <reason>\r\n`, the header lines and the blank line. The reason
/// comes from [`reason_phrase`] (empty for unknown codes, which RFC 9112 allows).
pub fn write_response_head(out: &mut BytesMut, status: u16, headers: &[(&str, &[u8])]) {
    debug_assert!((100..=999).contains(&status), "status out of range");
    let reason = reason_phrase(status);
    let mut code = itoa::Buffer::new();
    let code = code.format(status);
    out.reserve(9 + code.len() + 1 + reason.len() + 2 + headers_len(headers) + 2);
    out.put_slice(b"HTTP/1.1 ");
    out.put_slice(code.as_bytes());
    out.put_u8(b' ');
    out.put_slice(reason.as_bytes());
    out.put_slice(b"\r\n");
    put_headers(out, headers);
}

/// Append one chunk: lowercase hex size, CRLF, data, CRLF. Writes nothing for empty data,
/// because an empty chunk would end the body.
pub fn write_chunk(out: &mut BytesMut, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut digits = [0u8; 16];
    let mut len = data.len();
    let mut start = digits.len();
    while len > 0 {
        start -= 1;
        digits[start] = b"0123456789abcdef"[len & 0xf];
        len >>= 4;
    }
    let size = &digits[start..];
    out.reserve(size.len() + 2 + data.len() + 2);
    out.put_slice(size);
    out.put_slice(b"\r\n");
    out.put_slice(data);
    out.put_slice(b"\r\n");
}

/// Append the last chunk with an empty trailer section: `0\r\n\r\n`.
pub fn write_last_chunk(out: &mut BytesMut) {
    out.put_slice(b"0\r\n\r\n");
}

/// The standard reason phrase for `status` (RFC 9110 §15), or `""` for codes it does not name.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        203 => "Non-Authoritative Information",
        204 => "No Content",
        205 => "Reset Content",
        206 => "Partial Content",
        300 => "Multiple Choices",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        422 => "Unprocessable Content",
        425 => "Too Early",
        426 => "Upgrade Required",
        428 => "Precondition Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        451 => "Unavailable For Legal Reasons",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// connection, keep-alive, proxy-connection, proxy-authenticate, proxy-authorization, te,
/// trailer, transfer-encoding, upgrade (case-insensitive). These describe one hop and must be
/// dropped (and regenerated where needed) when a head is re-serialized.
pub fn is_hop_by_hop(name: &str) -> bool {
    let n = name.as_bytes();
    // Length first: almost every forwarded header fails here without a byte compare.
    match n.len() {
        2 => n.eq_ignore_ascii_case(b"te"),
        7 => n.eq_ignore_ascii_case(b"trailer") || n.eq_ignore_ascii_case(b"upgrade"),
        10 => n.eq_ignore_ascii_case(b"connection") || n.eq_ignore_ascii_case(b"keep-alive"),
        16 => n.eq_ignore_ascii_case(b"proxy-connection"),
        17 => n.eq_ignore_ascii_case(b"transfer-encoding"),
        18 => n.eq_ignore_ascii_case(b"proxy-authenticate"),
        19 => n.eq_ignore_ascii_case(b"proxy-authorization"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::http::{
        BodyChunk, BodyDecoder, BodyFraming, Limits, Method, RequestHead, ResponseHead,
    };

    #[test]
    fn request_head_bytes() {
        let mut out = BytesMut::new();
        write_request_head(
            &mut out,
            "POST",
            "/v1/chat/completions",
            &[("host", b"api.openai.com"), ("content-length", b"2")],
        );
        assert_eq!(
            &out[..],
            b"POST /v1/chat/completions HTTP/1.1\r\nhost: api.openai.com\r\ncontent-length: 2\r\n\r\n"
        );
        let h = RequestHead::parse(&mut out, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.framing, BodyFraming::Length(2));
    }

    #[test]
    fn response_head_bytes() {
        let mut out = BytesMut::new();
        write_response_head(&mut out, 200, &[("content-length", b"0")]);
        assert_eq!(&out[..], b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
        out.clear();
        write_response_head(&mut out, 599, &[]);
        assert_eq!(&out[..], b"HTTP/1.1 599 \r\n\r\n");
        let h = ResponseHead::parse(&mut out, &Limits::default(), Method::Get)
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.reason()), (599, ""));
        out.clear();
        write_response_head(&mut out, 429, &[("retry-after", b"1")]);
        assert_eq!(
            &out[..],
            b"HTTP/1.1 429 Too Many Requests\r\nretry-after: 1\r\n\r\n"
        );
    }

    #[test]
    fn chunks() {
        let mut out = BytesMut::new();
        write_chunk(&mut out, b"");
        assert!(out.is_empty(), "an empty chunk would end the body");
        write_chunk(&mut out, b"hello");
        write_chunk(&mut out, &[b'x'; 255]);
        write_chunk(&mut out, &[b'y'; 4096]);
        write_last_chunk(&mut out);
        assert!(out.starts_with(b"5\r\nhello\r\nff\r\n"));
        assert!(out.ends_with(b"y\r\n0\r\n\r\n"));
        assert!(memchr::memmem::find(&out, b"\r\n1000\r\n").is_some());
        let mut dec = BodyDecoder::new(BodyFraming::Chunked, 1 << 20).unwrap();
        let mut body = Vec::new();
        loop {
            match dec.decode(&mut out).unwrap() {
                BodyChunk::Data(d) => body.extend_from_slice(&d),
                BodyChunk::Done => break,
                BodyChunk::NeedMore => panic!("complete body"),
            }
        }
        assert_eq!(body.len(), 5 + 255 + 4096);
        assert!(out.is_empty());
    }

    #[test]
    fn hop_by_hop_names() {
        for name in [
            "connection",
            "Keep-Alive",
            "PROXY-CONNECTION",
            "proxy-authenticate",
            "Proxy-Authorization",
            "te",
            "TE",
            "trailer",
            "Transfer-Encoding",
            "upgrade",
        ] {
            assert!(is_hop_by_hop(name), "{name}");
        }
        for name in [
            "content-length",
            "host",
            "tes",
            "trailers",
            "authorization",
            "",
            "x-upgrade",
        ] {
            assert!(!is_hop_by_hop(name), "{name}");
        }
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(404), "Not Found");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(502), "Bad Gateway");
        assert_eq!(reason_phrase(299), "");
    }
}
