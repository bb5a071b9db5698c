//! Strict, sans-IO HTTP/1.1 codec: request heads (server side), response heads (client side),
//! incremental body framing (Content-Length, chunked, close-delimited) and head/chunk encoders.
//!
//! It owns every framing decision the proxy makes, so it must never guess: anything ambiguous
//! (CL + TE, differing Content-Length, bare LF, unbounded chunk lines) is an error, and nothing
//! here performs I/O, allocates per byte, or panics on peer input.
//!
//! `httparse` tokenizes heads; the rules it leaves to its caller (see `ARCHITECTURE.md`,
//! "Reliability rules") are enforced here: head rules in `head.rs`, body framing in `body.rs`,
//! serialization in `encode.rs`.

mod body;
mod encode;
mod head;

#[cfg(test)]
mod proptests;

pub use body::{BodyChunk, BodyDecoder};
pub use encode::{
    is_hop_by_hop, reason_phrase, write_chunk, write_last_chunk, write_request_head,
    write_response_head,
};
pub use head::{RequestHead, ResponseHead};

/// Upper bound on header fields per head, whatever [`Limits::max_headers`] asks for: the
/// parser keeps its header table on the stack, so the table size is fixed at compile time.
pub const MAX_HEADERS_CAP: usize = 128;

/// Framing limits, one set per listener / upstream.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request/response head (start line + fields + blank line) in bytes.
    pub max_head_bytes: usize,
    /// Most header fields in one head; capped at [`MAX_HEADERS_CAP`].
    pub max_headers: usize,
    /// Largest decoded body in bytes (callers pass it to [`BodyDecoder`]).
    pub max_body_bytes: u64,
    /// Longest chunk extension (everything between the size digits and CRLF).
    pub max_chunk_ext_bytes: usize,
    /// Largest trailer section after the last chunk, excluding the final blank line.
    pub max_trailer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: 16 * 1024,
            max_headers: 100,
            max_body_bytes: 16 * 1024 * 1024,
            max_chunk_ext_bytes: 256,
            max_trailer_bytes: 8 * 1024,
        }
    }
}

/// Why a message could not be framed. After any of these the connection must be closed:
/// the codec no longer knows where the next message starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    /// The head exceeded [`Limits::max_head_bytes`] (431 for requests).
    #[error("message head too large")]
    HeadTooLarge,
    /// The head had more fields than [`Limits::max_headers`] (431 for requests).
    #[error("too many header fields")]
    TooManyHeaders,
    /// The body (or a chunked trailer section) exceeded its limit (413).
    #[error("message body too large")]
    BodyTooLarge,
    /// The message violates HTTP/1.1 syntax or our framing rules; the text names the rule (400).
    #[error("malformed HTTP message: {0}")]
    Malformed(&'static str),
    /// A Transfer-Encoding other than exactly `chunked` (501).
    #[error("unsupported transfer-encoding")]
    UnsupportedTransferEncoding,
    /// The peer closed the connection before the message was complete (400).
    #[error("connection closed before the message was complete")]
    UnexpectedEof,
}

impl HttpError {
    /// The status a server answers with when a *request* fails this way.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::BodyTooLarge => 413,
            HttpError::Malformed(_) | HttpError::UnexpectedEof => 400,
            HttpError::UnsupportedTransferEncoding => 501,
        }
    }
}

/// Request method. Methods without a variant are `Other`; their text is on the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
    /// `PATCH`
    Patch,
    /// Any other token (`CONNECT`, `TRACE`, extension methods).
    Other,
}

impl Method {
    /// Classify a method token. Methods are case-sensitive (RFC 9110 §9.1), so `get` is `Other`.
    pub fn from_token(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"PATCH" => Method::Patch,
            _ => Method::Other,
        }
    }

    /// The canonical token, or `None` for `Other` (whose text only the parsed head knows).
    pub fn as_str(&self) -> Option<&'static str> {
        Some(match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Other => return None,
        })
    }
}

/// Protocol version of a parsed head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `HTTP/1.0`
    Http10,
    /// `HTTP/1.1`
    Http11,
}

impl Version {
    /// The version as it appears on the wire.
    pub fn as_str(&self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// How the body following a head is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Responses only: the body runs until the peer closes the connection.
    CloseDelimited,
}
