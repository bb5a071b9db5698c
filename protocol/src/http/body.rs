//! Incremental body decoding for Content-Length, chunked and close-delimited framing.
//! Data is split off the caller's buffer (zero-copy); chunk extensions and trailers are
//! validated, bounded and dropped, never surfaced, so they can never be forwarded.

use bytes::{Buf, Bytes, BytesMut};

use super::{BodyFraming, HttpError, Limits};

/// One step of body decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BodyChunk {
    /// Body bytes, in order. Never empty.
    Data(Bytes),
    /// The buffer holds no further complete piece; read more and call again.
    NeedMore,
    /// The body is complete; bytes after it (the next pipelined message) stay in the buffer.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Content-Length body with this many bytes still to come (never 0: that is `Done`).
    Length {
        remaining: u64,
    },
    /// Read until the peer closes.
    Close,
    /// Expecting a chunk-size line.
    ChunkSize,
    /// Inside chunk data.
    ChunkData {
        remaining: u64,
    },
    /// Expecting the CRLF after chunk data.
    ChunkDataEnd,
    /// After the last chunk: trailer lines so far (bytes), until the blank line.
    Trailers {
        bytes: usize,
    },
    Done,
}

/// Incremental body decoder. Zero-copy: data is split off the caller's buffer.
///
/// After an error the message boundary is lost: the caller must close the connection.
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    /// Bound on the decoded body (chunked and close-delimited; Length is checked up front).
    limit: u64,
    /// Decoded bytes so far, including the whole of the current chunk once its size is read.
    decoded: u64,
    max_chunk_ext_bytes: usize,
    max_trailer_bytes: usize,
}

impl BodyDecoder {
    /// `limit` bounds the total decoded body (Length above limit fails immediately with
    /// BodyTooLarge). Chunk extensions and trailers get the [`Limits::default`] bounds; use
    /// [`BodyDecoder::with_limits`] to take them from a listener's limits.
    pub fn new(framing: BodyFraming, limit: u64) -> Result<BodyDecoder, HttpError> {
        let defaults = Limits::default();
        Self::build(
            framing,
            limit,
            defaults.max_chunk_ext_bytes,
            defaults.max_trailer_bytes,
        )
    }

    /// Like [`BodyDecoder::new`] with every bound (body, chunk extension, trailers) from
    /// `limits`.
    pub fn with_limits(framing: BodyFraming, limits: &Limits) -> Result<BodyDecoder, HttpError> {
        Self::build(
            framing,
            limits.max_body_bytes,
            limits.max_chunk_ext_bytes,
            limits.max_trailer_bytes,
        )
    }

    fn build(
        framing: BodyFraming,
        limit: u64,
        max_chunk_ext_bytes: usize,
        max_trailer_bytes: usize,
    ) -> Result<BodyDecoder, HttpError> {
        let state = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) if n > limit => return Err(HttpError::BodyTooLarge),
            BodyFraming::Length(n) => State::Length { remaining: n },
            BodyFraming::Chunked => State::ChunkSize,
            BodyFraming::CloseDelimited => State::Close,
        };
        Ok(BodyDecoder {
            state,
            limit,
            decoded: 0,
            max_chunk_ext_bytes,
            max_trailer_bytes,
        })
    }

    /// Decode from the front of `buf`, removing what it consumed. Call repeatedly until NeedMore
    /// or Done. Bytes after the end of the body stay in buf (pipelining / keep-alive).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<BodyChunk, HttpError> {
        loop {
            match self.state {
                State::Done => return Ok(BodyChunk::Done),
                State::Length { remaining } => {
                    if buf.is_empty() {
                        return Ok(BodyChunk::NeedMore);
                    }
                    let (data, left) = take(buf, remaining);
                    self.state = if left == 0 {
                        State::Done
                    } else {
                        State::Length { remaining: left }
                    };
                    return Ok(BodyChunk::Data(data));
                }
                State::Close => {
                    if buf.is_empty() {
                        return Ok(BodyChunk::NeedMore);
                    }
                    self.decoded = self
                        .decoded
                        .checked_add(buf.len() as u64)
                        .filter(|&total| total <= self.limit)
                        .ok_or(HttpError::BodyTooLarge)?;
                    return Ok(BodyChunk::Data(buf.split().freeze()));
                }
                State::ChunkSize => {
                    let Some((line_len, size)) =
                        parse_chunk_size_line(buf, self.max_chunk_ext_bytes)?
                    else {
                        return Ok(BodyChunk::NeedMore);
                    };
                    // Checked before any data of this chunk is surfaced, so an oversized body
                    // fails at the size line, not after the proxy has forwarded most of it.
                    self.decoded = self
                        .decoded
                        .checked_add(size)
                        .filter(|&total| total <= self.limit)
                        .ok_or(HttpError::BodyTooLarge)?;
                    buf.advance(line_len);
                    self.state = if size == 0 {
                        State::Trailers { bytes: 0 }
                    } else {
                        State::ChunkData { remaining: size }
                    };
                }
                State::ChunkData { remaining } => {
                    if buf.is_empty() {
                        return Ok(BodyChunk::NeedMore);
                    }
                    let (data, left) = take(buf, remaining);
                    self.state = if left == 0 {
                        State::ChunkDataEnd
                    } else {
                        State::ChunkData { remaining: left }
                    };
                    return Ok(BodyChunk::Data(data));
                }
                State::ChunkDataEnd => match buf.get(..2) {
                    Some(b"\r\n") => {
                        buf.advance(2);
                        self.state = State::ChunkSize;
                    }
                    // Only a lone CR may still become CRLF; anything else already cannot.
                    None if buf.first().is_none_or(|&b| b == b'\r') => {
                        return Ok(BodyChunk::NeedMore)
                    }
                    _ => return Err(HttpError::Malformed("chunk data not followed by CRLF")),
                },
                State::Trailers { bytes } => {
                    let Some(lf) = memchr::memchr(b'\n', buf) else {
                        // An unfinished line still counts, so an endless one fails early. A lone
                        // CR may be the start of the blank line, which is not counted.
                        if buf[..] != b"\r"[..] && bytes + buf.len() > self.max_trailer_bytes {
                            return Err(HttpError::BodyTooLarge);
                        }
                        return Ok(BodyChunk::NeedMore);
                    };
                    if lf == 0 || buf[lf - 1] != b'\r' {
                        return Err(HttpError::Malformed("bare LF in trailers"));
                    }
                    if lf == 1 {
                        buf.advance(2);
                        self.state = State::Done;
                        continue;
                    }
                    let bytes = bytes + lf + 1;
                    if bytes > self.max_trailer_bytes {
                        return Err(HttpError::BodyTooLarge);
                    }
                    validate_trailer_line(&buf[..lf - 1])?;
                    buf.advance(lf + 1);
                    self.state = State::Trailers { bytes };
                }
            }
        }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The peer closed the connection: Ok for CloseDelimited (now Done) or already Done, else
    /// Err(UnexpectedEof).
    pub fn on_eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::Done => Ok(()),
            State::Close => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(HttpError::UnexpectedEof),
        }
    }
}

/// Split up to `remaining` bytes off a non-empty `buf`; returns them and what is still owed.
fn take(buf: &mut BytesMut, remaining: u64) -> (Bytes, u64) {
    // `n <= buf.len()`, so the cast back to usize is lossless.
    let n = remaining.min(buf.len() as u64);
    (buf.split_to(n as usize).freeze(), remaining - n)
}

fn hex_value(b: u8) -> Option<u64> {
    match b {
        b'0'..=b'9' => Some(u64::from(b - b'0')),
        b'a'..=b'f' => Some(u64::from(b - b'a' + 10)),
        b'A'..=b'F' => Some(u64::from(b - b'A' + 10)),
        _ => None,
    }
}

/// Most hex digits in a chunk size: 16 fill a `u64`, and a longer size is an attack, not a body.
const MAX_CHUNK_SIZE_DIGITS: usize = 16;

/// Parse `chunk-size [ BWS ";" ext ] CRLF` from the front of `buf`.
/// `Ok(None)`: incomplete (every bound has been checked on what is there so far).
/// `Ok(Some((line_len, size)))`: the line including its CRLF, and the chunk size.
///
/// The line is at most 16 + `max_ext` + 2 bytes, so rescanning it on every call is bounded.
fn parse_chunk_size_line(buf: &[u8], max_ext: usize) -> Result<Option<(usize, u64)>, HttpError> {
    let mut size = 0u64;
    let mut digits = 0;
    for &b in buf {
        let Some(v) = hex_value(b) else { break };
        if digits == MAX_CHUNK_SIZE_DIGITS {
            return Err(HttpError::Malformed("chunk size too long"));
        }
        size = (size << 4) | v;
        digits += 1;
    }
    let Some(&first) = buf.get(digits) else {
        return Ok(None);
    };
    if digits == 0 {
        // httparse would read an empty size as 0 and end the body early: smuggling bait.
        return Err(HttpError::Malformed(match first {
            b'\r' | b'\n' | b';' | b' ' | b'\t' => "empty chunk size",
            _ => "invalid chunk size",
        }));
    }
    let ext = &buf[digits..];
    let mut in_ext = false;
    for (i, &b) in ext.iter().enumerate() {
        match b {
            b'\r' => {
                if i > 0 && !in_ext {
                    // Whitespace after the size with no `;` is not in the grammar.
                    return Err(HttpError::Malformed("invalid chunk size"));
                }
                return match ext.get(i + 1) {
                    None => Ok(None),
                    Some(b'\n') => Ok(Some((digits + i + 2, size))),
                    Some(_) => Err(HttpError::Malformed("bare CR in chunk size line")),
                };
            }
            b'\n' => return Err(HttpError::Malformed("bare LF in chunk size line")),
            _ if i >= max_ext => return Err(HttpError::Malformed("chunk extension too long")),
            _ if in_ext => {
                if (b < 0x20 && b != b'\t') || b == 0x7f {
                    return Err(HttpError::Malformed("control character in chunk extension"));
                }
            }
            b';' => in_ext = true,
            b' ' | b'\t' => {}
            _ => return Err(HttpError::Malformed("invalid chunk size")),
        }
    }
    Ok(None)
}

/// RFC 9110 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// A trailer field line (without its CRLF): `token ":" value`, value free of controls other
/// than HTAB. Trailers are discarded, but a malformed one still means a confused peer.
fn validate_trailer_line(line: &[u8]) -> Result<(), HttpError> {
    let Some(colon) = memchr::memchr(b':', line) else {
        return Err(HttpError::Malformed("invalid trailer field"));
    };
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::Malformed("invalid trailer field"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(HttpError::Malformed("invalid trailer field"));
    }
    Ok(())
}
