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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    /// Decode everything available; returns the data and the final step (NeedMore or Done).
    fn drain(dec: &mut BodyDecoder, buf: &mut BytesMut) -> Result<(Vec<u8>, BodyChunk), HttpError> {
        let mut out = Vec::new();
        loop {
            match dec.decode(buf)? {
                BodyChunk::Data(d) => {
                    assert!(!d.is_empty(), "Data is never empty");
                    out.extend_from_slice(&d);
                }
                end => return Ok((out, end)),
            }
        }
    }

    fn chunked(input: &[u8]) -> Result<(Vec<u8>, BodyChunk, BytesMut), HttpError> {
        let mut dec = BodyDecoder::new(BodyFraming::Chunked, 1 << 20)?;
        let mut buf = BytesMut::from(input);
        let (data, end) = drain(&mut dec, &mut buf)?;
        Ok((data, end, buf))
    }

    fn chunked_err(input: &[u8]) -> HttpError {
        chunked(input).expect_err("chunked body must be rejected")
    }

    fn malformed(msg: &'static str) -> HttpError {
        HttpError::Malformed(msg)
    }

    // --- Content-Length ---

    #[test]
    fn length_body_is_split_off_without_copying() {
        let mut buf = BytesMut::from(&b"helloGET / HTTP/1.1\r\n"[..]);
        let start = buf.as_ptr();
        let mut dec = BodyDecoder::new(BodyFraming::Length(5), 100).unwrap();
        assert!(!dec.is_done());
        match dec.decode(&mut buf).unwrap() {
            BodyChunk::Data(d) => {
                assert_eq!(&d[..], b"hello");
                assert_eq!(d.as_ptr(), start, "zero-copy: same allocation, same offset");
            }
            other => panic!("expected data, got {other:?}"),
        }
        assert!(dec.is_done());
        assert_eq!(dec.decode(&mut buf).unwrap(), BodyChunk::Done);
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
    }

    #[test]
    fn length_body_across_reads() {
        let mut dec = BodyDecoder::new(BodyFraming::Length(6), 100).unwrap();
        let mut buf = BytesMut::new();
        assert_eq!(dec.decode(&mut buf).unwrap(), BodyChunk::NeedMore);
        buf.extend_from_slice(b"abc");
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            BodyChunk::Data(Bytes::from_static(b"abc"))
        );
        assert_eq!(dec.decode(&mut buf).unwrap(), BodyChunk::NeedMore);
        assert_eq!(dec.on_eof(), Err(HttpError::UnexpectedEof));
        buf.extend_from_slice(b"defg");
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            BodyChunk::Data(Bytes::from_static(b"def"))
        );
        assert_eq!(dec.decode(&mut buf).unwrap(), BodyChunk::Done);
        assert_eq!(&buf[..], b"g");
        assert_eq!(dec.on_eof(), Ok(()));
    }

    #[test]
    fn length_above_limit_fails_up_front() {
        assert_eq!(
            BodyDecoder::new(BodyFraming::Length(101), 100).unwrap_err(),
            HttpError::BodyTooLarge
        );
        assert!(BodyDecoder::new(BodyFraming::Length(100), 100).is_ok());
        assert_eq!(HttpError::BodyTooLarge.status(), 413);
    }

    #[test]
    fn empty_and_zero_length_are_done_immediately() {
        for framing in [BodyFraming::Empty, BodyFraming::Length(0)] {
            let mut dec = BodyDecoder::new(framing, 0).unwrap();
            assert!(dec.is_done());
            let mut buf = BytesMut::from(&b"next"[..]);
            assert_eq!(dec.decode(&mut buf).unwrap(), BodyChunk::Done);
            assert_eq!(&buf[..], b"next");
        }
    }

    // --- close-delimited ---

    #[test]
    fn close_delimited_reads_to_eof() {
        let mut dec = BodyDecoder::new(BodyFraming::CloseDelimited, 10).unwrap();
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert_eq!(
            dec.decode(&mut buf).unwrap(),
            BodyChunk::Data(Bytes::from_static(b"abc"))
        );
        assert_eq!(dec.decode(&mut buf).unwrap(), BodyChunk::NeedMore);
        assert!(!dec.is_done());
        assert_eq!(dec.on_eof(), Ok(()));
        assert!(dec.is_done());
        assert_eq!(dec.decode(&mut buf).unwrap(), BodyChunk::Done);
    }

    #[test]
    fn close_delimited_is_bounded() {
        let mut dec = BodyDecoder::new(BodyFraming::CloseDelimited, 4).unwrap();
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert!(matches!(dec.decode(&mut buf).unwrap(), BodyChunk::Data(_)));
        buf.extend_from_slice(b"de");
        assert_eq!(dec.decode(&mut buf).unwrap_err(), HttpError::BodyTooLarge);
    }

    // --- chunked: good paths ---

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let (data, end, rest) = chunked(
            b"5;name=value\r\nhello\r\n6 ;a=\"b c\"\t;x\r\n world\r\nA\r\n0123456789\r\n0;last\r\nX-Checksum: abc\r\nX-Other:\t1\r\n\r\nGET /next",
        )
        .unwrap();
        assert_eq!(data, b"hello world0123456789");
        assert_eq!(end, BodyChunk::Done);
        assert_eq!(&rest[..], b"GET /next");
    }

    #[test]
    fn chunked_yields_each_chunk_zero_copy() {
        let mut dec = BodyDecoder::new(BodyFraming::Chunked, 100).unwrap();
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"[..]);
        let base = buf.as_ptr() as usize;
        let BodyChunk::Data(a) = dec.decode(&mut buf).unwrap() else {
            panic!("data")
        };
        assert_eq!((&a[..], a.as_ptr() as usize - base), (&b"abc"[..], 3));
        let BodyChunk::Data(b) = dec.decode(&mut buf).unwrap() else {
            panic!("data")
        };
        assert_eq!((&b[..], b.as_ptr() as usize - base), (&b"de"[..], 11));
        assert!(!dec.is_done());
        assert_eq!(dec.decode(&mut buf).unwrap(), BodyChunk::Done);
        assert!(dec.is_done());
        assert!(buf.is_empty());
    }

    #[test]
    fn chunk_sizes_accept_upper_case_and_16_digits() {
        let mut input = b"0000000000000003\r\nabc\r\nA\r\n".to_vec();
        input.extend_from_slice(&[b'x'; 10]);
        input.extend_from_slice(b"\r\n0\r\n\r\n");
        let (data, end, _) = chunked(&input).unwrap();
        assert_eq!(data.len(), 13);
        assert_eq!(end, BodyChunk::Done);
    }

    #[test]
    fn chunked_partial_pieces_need_more() {
        for input in [
            &b""[..],
            b"5",
            b"5;ext",
            b"5\r",
            b"5\r\nhello",
            b"5\r\nhello\r",
            b"0\r\n",
            b"0\r\nX-T: 1",
            b"0\r\nX-T: 1\r\n",
            b"0\r\n\r",
        ] {
            let (_, end, _) = chunked(input).unwrap();
            assert_eq!(
                end,
                BodyChunk::NeedMore,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn chunked_eof_before_the_end_is_an_error() {
        let mut dec = BodyDecoder::new(BodyFraming::Chunked, 100).unwrap();
        let mut buf = BytesMut::from(&b"5\r\nhel"[..]);
        let _ = drain(&mut dec, &mut buf).unwrap();
        assert_eq!(dec.on_eof(), Err(HttpError::UnexpectedEof));
        assert_eq!(HttpError::UnexpectedEof.status(), 400);
    }

    // --- chunked: strictness ---

    #[test]
    fn empty_chunk_size_is_malformed() {
        assert_eq!(chunked_err(b"\r\nhello\r\n"), malformed("empty chunk size"));
        assert_eq!(chunked_err(b";ext\r\n"), malformed("empty chunk size"));
        assert_eq!(chunked_err(b"\n"), malformed("empty chunk size"));
        assert_eq!(chunked_err(b" 5\r\n"), malformed("empty chunk size"));
        // After a chunk, too: httparse would read this as the last chunk.
        assert_eq!(
            chunked_err(b"1\r\na\r\n\r\n\r\n"),
            malformed("empty chunk size")
        );
    }

    #[test]
    fn invalid_chunk_sizes_are_malformed() {
        let invalid = malformed("invalid chunk size");
        assert_eq!(chunked_err(b"x\r\n"), invalid);
        assert_eq!(chunked_err(b"0x5\r\n"), invalid);
        assert_eq!(chunked_err(b"5x\r\n"), invalid);
        assert_eq!(chunked_err(b"5 \r\n"), invalid);
        assert_eq!(chunked_err(b"5 5\r\n"), invalid);
        assert_eq!(chunked_err(b"-5\r\n"), invalid);
    }

    #[test]
    fn chunk_size_is_at_most_16_hex_digits() {
        assert_eq!(
            chunked_err(b"00000000000000005\r\n"),
            malformed("chunk size too long")
        );
        // Detected before the line ends.
        assert_eq!(
            chunked_err(b"00000000000000000"),
            malformed("chunk size too long")
        );
    }

    #[test]
    fn chunk_sizes_are_bounded_by_the_limit() {
        let mut dec = BodyDecoder::new(BodyFraming::Chunked, 10).unwrap();
        let mut buf = BytesMut::from(&b"ffffffffffffffff\r\n"[..]);
        assert_eq!(dec.decode(&mut buf).unwrap_err(), HttpError::BodyTooLarge);

        let mut dec = BodyDecoder::new(BodyFraming::Chunked, 10).unwrap();
        let mut buf = BytesMut::from(&b"6\r\nabcdef\r\n5\r\n"[..]);
        assert!(matches!(dec.decode(&mut buf).unwrap(), BodyChunk::Data(_)));
        assert_eq!(dec.decode(&mut buf).unwrap_err(), HttpError::BodyTooLarge);

        let mut dec = BodyDecoder::new(BodyFraming::Chunked, 10).unwrap();
        let mut buf = BytesMut::from(&b"6\r\nabcdef\r\n4\r\nghij\r\n0\r\n\r\n"[..]);
        assert_eq!(drain(&mut dec, &mut buf).unwrap().0, b"abcdefghij");
    }

    #[test]
    fn chunk_extensions_are_bounded() {
        let limits = Limits {
            max_chunk_ext_bytes: 8,
            ..Limits::default()
        };
        let run = |input: &[u8]| {
            let mut dec = BodyDecoder::with_limits(BodyFraming::Chunked, &limits).unwrap();
            drain(&mut dec, &mut BytesMut::from(input))
        };
        // ";a=12345" is exactly 8 bytes.
        assert!(run(b"1;a=12345\r\nx\r\n0\r\n\r\n").is_ok());
        assert_eq!(
            run(b"1;a=123456\r\nx\r\n").unwrap_err(),
            malformed("chunk extension too long")
        );
        // Detected before the line ends, so an endless extension cannot pin memory.
        assert_eq!(
            run(b"1;a=123456789").unwrap_err(),
            malformed("chunk extension too long")
        );
        // Default bound is 256.
        let mut long = b"1;".to_vec();
        long.extend_from_slice(&[b'a'; 255]);
        long.extend_from_slice(b"\r\nx\r\n0\r\n\r\n");
        assert!(chunked(&long).is_ok());
        long.insert(3, b'a');
        assert_eq!(chunked_err(&long), malformed("chunk extension too long"));
    }

    #[test]
    fn chunk_extensions_reject_control_characters() {
        let ctl = malformed("control character in chunk extension");
        assert_eq!(chunked_err(b"1;a=\x01\r\nx\r\n"), ctl);
        assert_eq!(chunked_err(b"1;a\x00\r\nx\r\n"), ctl);
        assert_eq!(chunked_err(b"1;a\x7f\r\nx\r\n"), ctl);
        assert!(chunked(b"1;a=\tb\r\nx\r\n0\r\n\r\n").is_ok());
    }

    #[test]
    fn chunk_size_line_must_end_in_crlf() {
        assert_eq!(
            chunked_err(b"5\nhello\r\n"),
            malformed("bare LF in chunk size line")
        );
        assert_eq!(
            chunked_err(b"5;x\nhello\r\n"),
            malformed("bare LF in chunk size line")
        );
        assert_eq!(
            chunked_err(b"5\rhello\r\n"),
            malformed("bare CR in chunk size line")
        );
        assert_eq!(
            chunked_err(b"0\n\r\n"),
            malformed("bare LF in chunk size line")
        );
    }

    #[test]
    fn chunk_data_must_be_followed_by_crlf() {
        let no_crlf = malformed("chunk data not followed by CRLF");
        assert_eq!(chunked_err(b"5\r\nhelloX\r\n"), no_crlf);
        assert_eq!(chunked_err(b"5\r\nhello\n0\r\n\r\n"), no_crlf);
        assert_eq!(chunked_err(b"5\r\nhello\rX"), no_crlf);
        assert_eq!(chunked_err(b"5\r\nhello world\r\n"), no_crlf);
    }

    #[test]
    fn trailers_reject_bare_lf_and_bad_lines() {
        assert_eq!(
            chunked_err(b"0\r\nX-T: 1\n\r\n"),
            malformed("bare LF in trailers")
        );
        assert_eq!(chunked_err(b"0\r\n\n"), malformed("bare LF in trailers"));
        let bad = malformed("invalid trailer field");
        assert_eq!(chunked_err(b"0\r\nno colon\r\n\r\n"), bad);
        assert_eq!(chunked_err(b"0\r\n folded: x\r\n\r\n"), bad);
        assert_eq!(chunked_err(b"0\r\n: empty name\r\n\r\n"), bad);
        assert_eq!(chunked_err(b"0\r\nX-T: a\rb\r\n\r\n"), bad);
        assert_eq!(chunked_err(b"0\r\nX-T: a\x00\r\n\r\n"), bad);
    }

    #[test]
    fn trailers_are_bounded() {
        let limits = Limits {
            max_trailer_bytes: 16,
            ..Limits::default()
        };
        let run = |input: &[u8]| {
            let mut dec = BodyDecoder::with_limits(BodyFraming::Chunked, &limits).unwrap();
            let mut buf = BytesMut::from(input);
            drain(&mut dec, &mut buf).map(|(_, end)| end)
        };
        // "X-A: 1\r\n" + "X-B: 12\r\n" = 8 + 9 = 17 > 16.
        assert_eq!(run(b"0\r\nX-A: 1\r\nX-B: 1\r\n\r\n"), Ok(BodyChunk::Done));
        assert_eq!(
            run(b"0\r\nX-A: 1\r\nX-B: 12\r\n\r\n"),
            Err(HttpError::BodyTooLarge)
        );
        // An unfinished line that is already too long fails without waiting for its end.
        assert_eq!(
            run(b"0\r\nX-Long: 0123456789"),
            Err(HttpError::BodyTooLarge)
        );
        // A zero bound still admits the empty trailer section.
        let none = Limits {
            max_trailer_bytes: 0,
            ..Limits::default()
        };
        let mut dec = BodyDecoder::with_limits(BodyFraming::Chunked, &none).unwrap();
        let mut buf = BytesMut::from(&b"0\r\n\r"[..]);
        assert_eq!(dec.decode(&mut buf), Ok(BodyChunk::NeedMore));
        buf.extend_from_slice(b"\n");
        assert_eq!(dec.decode(&mut buf), Ok(BodyChunk::Done));
    }
}
