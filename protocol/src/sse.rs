//! Incremental server-sent events codec (WHATWG EventSource framing): [`SseDecoder`] cuts a byte
//! stream into blank-line-terminated blocks, keeping each block's exact bytes so a proxy can
//! forward it untouched, and [`write_event`] / [`write_comment`] produce blocks. Sans-IO: the
//! caller owns the read buffer. The decoder never rescans bytes and never grows a block past
//! its configured limit.

use bytes::{BufMut, Bytes, BytesMut};

/// The UTF-8 byte order mark, which the spec skips once at the start of a stream.
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// One blank-line-terminated block, with its raw bytes so a proxy can forward it untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseFrame {
    /// The exact input bytes of the block, including its terminating blank line (a stream-start
    /// byte order mark is not part of any block).
    pub raw: Bytes,
    /// The last `event` field of the block, if any.
    pub event: Option<String>,
    /// All `data` fields of the block joined with `"\n"`; `None` when the block had no `data`
    /// line (comment-only keep-alives, or a stray blank line).
    pub data: Option<String>,
    /// The last `id` field of the block that did not contain NUL. Unlike a browser, the decoder
    /// does not carry the id over to later blocks: each frame reports only its own fields.
    pub id: Option<String>,
    /// The last `retry` field of the block that was all ASCII digits and fit in a `u64`.
    pub retry: Option<u64>,
}

// === impl SseFrame ===

impl SseFrame {
    /// Whether this is OpenAI's end-of-stream sentinel, `data: [DONE]`. Trailing whitespace is
    /// tolerated because some OpenAI-compatible servers emit `[DONE] `.
    pub fn is_done(&self) -> bool {
        self.data
            .as_deref()
            .is_some_and(|d| d.trim_ascii_end() == "[DONE]")
    }
}

/// Why a stream cannot be decoded. Both are terminal: the decoder keeps returning the error
/// until [`SseDecoder::finish`] resets it, because a proxy must abort such a stream rather than
/// guess where the next block starts.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    /// A block grew past the decoder's `max_frame_bytes` before its blank line arrived.
    #[error("server-sent event block exceeds the frame size limit")]
    FrameTooLarge,
    /// A `data`, `event`, `id` or `retry` field was not valid UTF-8.
    #[error("server-sent event field is not valid UTF-8")]
    InvalidUtf8,
}

/// Incremental SSE decoder. Feed it by appending bytes to one `BytesMut` and calling
/// [`SseDecoder::decode`] until it returns `Ok(None)`; between calls the caller may only append
/// to that buffer, because the decoder remembers how far it has scanned.
#[derive(Debug)]
pub struct SseDecoder {
    max_frame_bytes: usize,
    /// Offset in the buffer up to which line ends have been searched. Everything before it
    /// belongs to the current (incomplete) block, which always starts at offset 0.
    scan_pos: usize,
    /// Offset where the current, not yet terminated, line starts.
    line_start: usize,
    /// Whether the stream-start byte order mark check has been done.
    bom_checked: bool,
    event: Option<String>,
    data: Option<String>,
    id: Option<String>,
    retry: Option<u64>,
    failed: Option<SseError>,
    /// Bytes handed to the line-end search, so a test can prove decoding stays linear.
    #[cfg(test)]
    scanned: usize,
}

// === impl SseDecoder ===

impl SseDecoder {
    /// A decoder that rejects any block (including its blank line) longer than
    /// `max_frame_bytes`, so a hostile or broken upstream cannot make it buffer without bound.
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            max_frame_bytes,
            scan_pos: 0,
            line_start: 0,
            bom_checked: false,
            event: None,
            data: None,
            id: None,
            retry: None,
            failed: None,
            #[cfg(test)]
            scanned: 0,
        }
    }

    /// Takes the next complete block from the front of `buf`; its `raw` bytes are split off
    /// without copying. `Ok(None)` means more bytes are needed. A CR at the very end of `buf`
    /// waits for the next byte because it may be the first half of a CRLF; at end of stream use
    /// [`SseDecoder::decode_final`], which treats it as a line end.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<SseFrame>, SseError> {
        self.decode_inner(buf, false)
    }

    /// Like [`SseDecoder::decode`], for use once the stream has ended: a CR at the end of `buf`
    /// terminates its line instead of waiting for a possible LF. Call it until `Ok(None)`, then
    /// [`SseDecoder::finish`]. Only needed for CR-only line endings; an addition to the plain
    /// `decode`/`finish` pair so a stream ending in `\r\r` does not lose its last block.
    pub fn decode_final(&mut self, buf: &mut BytesMut) -> Result<Option<SseFrame>, SseError> {
        self.decode_inner(buf, true)
    }

    /// End of stream: returns `true` if unterminated bytes were left in `buf` (a truncated
    /// stream; per the spec they are not dispatched). Clears `buf` and resets the decoder,
    /// including any error, so it can decode a new stream.
    pub fn finish(&mut self, buf: &mut BytesMut) -> bool {
        if !self.bom_checked && buf.starts_with(BOM) {
            let _ = buf.split_to(BOM.len());
        }
        let truncated = !buf.is_empty();
        buf.clear();
        *self = Self::new(self.max_frame_bytes);
        truncated
    }

    fn decode_inner(
        &mut self,
        buf: &mut BytesMut,
        eof: bool,
    ) -> Result<Option<SseFrame>, SseError> {
        if let Some(err) = self.failed {
            return Err(err);
        }
        if !self.bom_checked && !self.skip_bom(buf, eof) {
            return Ok(None);
        }
        if buf.len() < self.scan_pos {
            // The caller consumed bytes behind our back; offsets are meaningless now, so start
            // the block over rather than index out of range.
            self.reset_block();
        }
        loop {
            let hay = buf.get(self.scan_pos..).unwrap_or_default();
            #[cfg(test)]
            {
                self.scanned += hay.len();
            }
            let Some(rel) = memchr::memchr2(b'\n', b'\r', hay) else {
                self.scan_pos = buf.len();
                break;
            };
            let line_end = self.scan_pos + rel;
            let next = if buf.get(line_end) == Some(&b'\n') {
                line_end + 1
            } else {
                match buf.get(line_end + 1) {
                    Some(b'\n') => line_end + 2,
                    Some(_) => line_end + 1,
                    None if eof => line_end + 1,
                    None => {
                        // A lone CR at the end may be half of a CRLF: look at it again next time.
                        self.scan_pos = line_end;
                        break;
                    }
                }
            };
            if next > self.max_frame_bytes {
                return Err(self.fail(SseError::FrameTooLarge));
            }
            if line_end == self.line_start {
                let raw = buf.split_to(next).freeze();
                return Ok(Some(self.take_frame(raw)));
            }
            let line = buf.get(self.line_start..line_end).unwrap_or_default();
            if let Err(err) = self.process_line(line) {
                return Err(self.fail(err));
            }
            self.line_start = next;
            self.scan_pos = next;
        }
        if buf.len() > self.max_frame_bytes {
            // The block starts at offset 0 and has not ended, so it is at least this long.
            return Err(self.fail(SseError::FrameTooLarge));
        }
        Ok(None)
    }

    /// Drops a leading byte order mark. Returns `false` when `buf` holds only a prefix of one
    /// and more bytes are needed to tell.
    fn skip_bom(&mut self, buf: &mut BytesMut, eof: bool) -> bool {
        let n = buf.len().min(BOM.len());
        if buf.get(..n) == BOM.get(..n) {
            if n < BOM.len() && !eof {
                return false;
            }
            if n == BOM.len() {
                let _ = buf.split_to(n);
            }
        }
        self.bom_checked = true;
        true
    }

    fn process_line(&mut self, line: &[u8]) -> Result<(), SseError> {
        let (name, value) = match memchr::memchr(b':', line) {
            // A line starting with a colon is a comment.
            Some(0) => return Ok(()),
            Some(colon) => {
                let value = line.get(colon + 1..).unwrap_or_default();
                let value = value.strip_prefix(b" ").unwrap_or(value);
                (line.get(..colon).unwrap_or_default(), value)
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                let value = utf8(value)?;
                match &mut self.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(value);
                    }
                    None => self.data = Some(value.to_owned()),
                }
            }
            b"event" => self.event = Some(utf8(value)?.to_owned()),
            // An id containing NUL is ignored entirely, as the spec says.
            b"id" if memchr::memchr(0, value).is_none() => {
                self.id = Some(utf8(value)?.to_owned());
            }
            b"retry" if !value.is_empty() && value.iter().all(u8::is_ascii_digit) => {
                // An overflowing value is ignored like any other unusable retry field.
                if let Some(ms) = value.iter().try_fold(0u64, |acc, d| {
                    acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                }) {
                    self.retry = Some(ms);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn take_frame(&mut self, raw: Bytes) -> SseFrame {
        let frame = SseFrame {
            raw,
            event: self.event.take(),
            data: self.data.take(),
            id: self.id.take(),
            retry: self.retry.take(),
        };
        self.scan_pos = 0;
        self.line_start = 0;
        frame
    }

    fn reset_block(&mut self) {
        self.scan_pos = 0;
        self.line_start = 0;
        self.event = None;
        self.data = None;
        self.id = None;
        self.retry = None;
    }

    fn fail(&mut self, err: SseError) -> SseError {
        self.failed = Some(err);
        err
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, SseError> {
    std::str::from_utf8(bytes).map_err(|_| SseError::InvalidUtf8)
}

/// Calls `f` with each line of `text`, splitting on CRLF, LF and CR exactly as the decoder
/// does, so nothing written can introduce an extra field or end a block early.
fn for_each_line(text: &str, mut f: impl FnMut(&[u8])) {
    let bytes = text.as_bytes();
    let mut start = 0;
    while let Some(rel) = memchr::memchr2(b'\n', b'\r', bytes.get(start..).unwrap_or_default()) {
        let end = start + rel;
        f(bytes.get(start..end).unwrap_or_default());
        start = if bytes.get(end) == Some(&b'\r') && bytes.get(end + 1) == Some(&b'\n') {
            end + 2
        } else {
            end + 1
        };
    }
    f(bytes.get(start..).unwrap_or_default());
}

/// Appends one event block: an optional `event:` line, one `data:` line per line of `data`
/// (so a decoder joins them back with `"\n"`; CRLF and CR in `data` come back as `"\n"`), and
/// the terminating blank line. Line breaks in `event` are written as spaces, since they would
/// otherwise start new fields.
pub fn write_event(out: &mut BytesMut, event: Option<&str>, data: &str) {
    out.reserve(data.len() + event.map_or(0, str::len) + 16);
    if let Some(event) = event {
        out.put_slice(b"event: ");
        for &b in event.as_bytes() {
            out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
        }
        out.put_u8(b'\n');
    }
    for_each_line(data, |line| {
        out.put_slice(b"data: ");
        out.put_slice(line);
        out.put_u8(b'\n');
    });
    out.put_u8(b'\n');
}

/// Appends a comment-only block (`: text` per line, then a blank line), the usual keep-alive.
/// It is a complete block so it never merges with the event written after it.
pub fn write_comment(out: &mut BytesMut, text: &str) {
    out.reserve(text.len() + 4);
    for_each_line(text, |line| {
        out.put_slice(b": ");
        out.put_slice(line);
        out.put_u8(b'\n');
    });
    out.put_u8(b'\n');
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OPENAI: &[u8] = include_bytes!("../tests/fixtures/openai_chat_stream.sse");
    const OPENAI_USAGE: &[u8] = include_bytes!("../tests/fixtures/openai_chat_stream_usage.sse");
    const OPENAI_COMPLETIONS: &[u8] =
        include_bytes!("../tests/fixtures/openai_completions_stream.sse");
    const OPENAI_ERROR: &[u8] = include_bytes!("../tests/fixtures/openai_stream_error.sse");
    const ANTHROPIC: &[u8] = include_bytes!("../tests/fixtures/anthropic_messages_stream.sse");
    const FIELDS: &[u8] = include_bytes!("../tests/fixtures/sse_fields.sse");

    const FIXTURES: &[&[u8]] = &[
        OPENAI,
        OPENAI_USAGE,
        OPENAI_COMPLETIONS,
        OPENAI_ERROR,
        ANTHROPIC,
        FIELDS,
    ];

    /// What decoding a whole stream produced: frames, then how it ended.
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        frames: Vec<SseFrame>,
        error: Option<SseError>,
        truncated: bool,
    }

    fn decode_chunks(max: usize, chunks: &[&[u8]]) -> Outcome {
        let mut dec = SseDecoder::new(max);
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match dec.decode(&mut buf) {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => {
                        return Outcome {
                            frames,
                            error: Some(e),
                            truncated: false,
                        }
                    }
                }
            }
        }
        loop {
            match dec.decode_final(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    return Outcome {
                        frames,
                        error: Some(e),
                        truncated: false,
                    }
                }
            }
        }
        Outcome {
            frames,
            error: None,
            truncated: dec.finish(&mut buf),
        }
    }

    fn decode_all(input: &[u8]) -> Outcome {
        decode_chunks(1 << 20, &[input])
    }

    fn frame(raw: &str) -> SseFrame {
        let out = decode_all(raw.as_bytes());
        assert_eq!(out.frames.len(), 1, "{raw:?} -> {out:?}");
        out.frames.into_iter().next().unwrap()
    }

    fn to_line_ending(input: &[u8], ending: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() * 2);
        for &b in input {
            if b == b'\n' {
                out.extend_from_slice(ending);
            } else {
                out.push(b);
            }
        }
        out
    }

    fn all_fixture_variants() -> Vec<Vec<u8>> {
        let mut v = Vec::new();
        for f in FIXTURES {
            v.push(f.to_vec());
            v.push(to_line_ending(f, b"\r\n"));
            v.push(to_line_ending(f, b"\r"));
        }
        v
    }

    #[test]
    fn data_with_and_without_space() {
        let f = frame("data: hello\n\n");
        assert_eq!(f.data.as_deref(), Some("hello"));
        assert_eq!(&f.raw[..], b"data: hello\n\n");
        assert_eq!(frame("data:hello\n\n").data.as_deref(), Some("hello"));
        // Only one leading space is stripped.
        assert_eq!(frame("data:  two\n\n").data.as_deref(), Some(" two"));
        assert_eq!(frame("data: trail \n\n").data.as_deref(), Some("trail "));
    }

    #[test]
    fn multiple_data_lines_join_with_lf() {
        let f = frame("data: a\ndata:\ndata: b\n\n");
        assert_eq!(f.data.as_deref(), Some("a\n\nb"));
    }

    #[test]
    fn field_without_colon_has_empty_value() {
        assert_eq!(frame("data\n\n").data.as_deref(), Some(""));
        assert_eq!(frame("data\ndata\n\n").data.as_deref(), Some("\n"));
        assert_eq!(frame("event\ndata: x\n\n").event.as_deref(), Some(""));
    }

    #[test]
    fn value_may_contain_colons() {
        let f = frame("data: {\"a\":\"b:c\"}\n\n");
        assert_eq!(f.data.as_deref(), Some("{\"a\":\"b:c\"}"));
    }

    #[test]
    fn event_id_retry() {
        let f = frame("event: delta\nid: 42\nretry: 3000\ndata: x\n\n");
        assert_eq!(f.event.as_deref(), Some("delta"));
        assert_eq!(f.id.as_deref(), Some("42"));
        assert_eq!(f.retry, Some(3000));
        assert_eq!(f.data.as_deref(), Some("x"));
    }

    #[test]
    fn last_event_and_id_win() {
        let f = frame("event: a\nevent: b\nid: 1\nid: 2\ndata: x\n\n");
        assert_eq!(f.event.as_deref(), Some("b"));
        assert_eq!(f.id.as_deref(), Some("2"));
    }

    #[test]
    fn id_with_nul_is_ignored() {
        let f = frame("id: 7\nid: a\0b\ndata: x\n\n");
        assert_eq!(f.id.as_deref(), Some("7"));
        assert_eq!(frame("id: a\0b\ndata: x\n\n").id, None);
        assert_eq!(frame("id\ndata: x\n\n").id.as_deref(), Some(""));
    }

    #[test]
    fn retry_must_be_digits() {
        assert_eq!(frame("retry: 10x\ndata: x\n\n").retry, None);
        assert_eq!(frame("retry: -1\ndata: x\n\n").retry, None);
        assert_eq!(frame("retry:\ndata: x\n\n").retry, None);
        assert_eq!(frame("retry:  5\ndata: x\n\n").retry, None);
        assert_eq!(
            frame("retry: 99999999999999999999999\ndata: x\n\n").retry,
            None
        );
        assert_eq!(frame("retry: 5\nretry: bad\ndata: x\n\n").retry, Some(5));
        assert_eq!(frame("retry:0\n\n").retry, Some(0));
    }

    #[test]
    fn comments_and_unknown_fields_are_ignored() {
        let f = frame(": keep-alive\nfoo: bar\nDATA: no\n data: no\ndata: yes\n\n");
        assert_eq!(f.data.as_deref(), Some("yes"));
        assert_eq!(f.event, None);
        let ka = frame(": ping\n\n");
        assert_eq!(ka.data, None);
        assert_eq!(&ka.raw[..], b": ping\n\n");
        assert!(!ka.is_done());
    }

    #[test]
    fn stray_blank_line_is_an_empty_frame_so_raw_bytes_are_kept() {
        let out = decode_all(b"\ndata: x\n\n\r\n");
        assert_eq!(out.frames.len(), 3);
        assert_eq!(&out.frames[0].raw[..], b"\n");
        assert_eq!(out.frames[0].data, None);
        assert_eq!(out.frames[1].data.as_deref(), Some("x"));
        assert_eq!(&out.frames[2].raw[..], b"\r\n");
        assert!(!out.truncated);
    }

    #[test]
    fn all_line_endings() {
        for input in [
            &b"data: a\r\ndata: b\r\n\r\n"[..],
            b"data: a\rdata: b\r\r",
            b"data: a\ndata: b\n\n",
            b"data: a\r\ndata: b\rdata: c\n\r\n",
        ] {
            let out = decode_all(input);
            assert_eq!(out.frames.len(), 1, "{input:?}");
            assert!(out.frames[0].data.as_deref().unwrap().starts_with("a\nb"));
            assert_eq!(&out.frames[0].raw[..], input);
            assert!(!out.truncated);
        }
    }

    #[test]
    fn trailing_cr_waits_for_next_byte() {
        let mut dec = SseDecoder::new(1024);
        let mut buf = BytesMut::from(&b"data: x\r"[..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\n\r");
        assert_eq!(dec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\n");
        let f = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&f.raw[..], b"data: x\r\n\r\n");
        assert!(buf.is_empty());
        // CR CR: the second CR is the blank line, but only once the byte after it is known.
        buf.extend_from_slice(b"data: y\r\r");
        assert_eq!(dec.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"d");
        let f = dec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(f.data.as_deref(), Some("y"));
        assert_eq!(&buf[..], b"d");
    }

    #[test]
    fn decode_final_ends_a_trailing_cr_line() {
        let mut dec = SseDecoder::new(1024);
        let mut buf = BytesMut::from(&b"data: z\r\r"[..]);
        assert_eq!(dec.decode(&mut buf), Ok(None));
        let f = dec.decode_final(&mut buf).unwrap().unwrap();
        assert_eq!(f.data.as_deref(), Some("z"));
        assert!(!dec.finish(&mut buf));
    }

    #[test]
    fn leading_bom_is_skipped_once() {
        let out = decode_chunks(
            1024,
            &[b"\xEF", b"\xBB", b"\xBFdata: a\n\n\xEF\xBB\xBFdata: b\n\n"],
        );
        assert_eq!(out.frames.len(), 2);
        assert_eq!(&out.frames[0].raw[..], b"data: a\n\n");
        assert_eq!(out.frames[0].data.as_deref(), Some("a"));
        // A second BOM is not special: it becomes part of the field name, which is unknown.
        assert_eq!(out.frames[1].data, None);
        // A lone partial BOM at the end of the stream is just truncated garbage.
        let out = decode_all(b"\xEF\xBB");
        assert!(out.frames.is_empty());
        assert!(out.truncated);
    }

    #[test]
    fn truncated_stream_is_reported_and_not_dispatched() {
        let out = decode_all(b"data: a\n\ndata: partial\n");
        assert_eq!(out.frames.len(), 1);
        assert!(out.truncated);
        let out = decode_all(b"data: a\n\ndata: partial");
        assert!(out.truncated);
        let out = decode_all(b"data: a\n\n");
        assert!(!out.truncated);
    }

    #[test]
    fn frame_too_large_is_terminal() {
        // Exactly at the limit is fine.
        let ok = b"data: 12345\n\n";
        let out = decode_chunks(ok.len(), &[ok]);
        assert_eq!(out.frames.len(), 1);
        assert_eq!(out.error, None);

        let out = decode_chunks(ok.len() - 1, &[ok]);
        assert_eq!(out.error, Some(SseError::FrameTooLarge));

        // An endless block without a blank line is cut off once the buffer passes the limit.
        let mut dec = SseDecoder::new(64);
        let mut buf = BytesMut::new();
        let mut err = None;
        for _ in 0..100 {
            buf.extend_from_slice(b": keep-alive without blank line\n");
            if let Err(e) = dec.decode(&mut buf) {
                err = Some(e);
                break;
            }
        }
        assert_eq!(err, Some(SseError::FrameTooLarge));
        assert_eq!(dec.decode(&mut buf), Err(SseError::FrameTooLarge));
        // finish resets the decoder for a new stream.
        assert!(dec.finish(&mut buf));
        buf.extend_from_slice(b"data: ok\n\n");
        assert_eq!(
            dec.decode(&mut buf).unwrap().unwrap().data.as_deref(),
            Some("ok")
        );
    }

    #[test]
    fn invalid_utf8_in_data_is_an_error_but_not_in_comments() {
        assert_eq!(
            decode_all(b"data: \xff\n\n").error,
            Some(SseError::InvalidUtf8)
        );
        assert_eq!(
            decode_all(b"event: \xc3\n\n").error,
            Some(SseError::InvalidUtf8)
        );
        let out = decode_all(b": \xff\n\n");
        assert_eq!(out.error, None);
        assert_eq!(out.frames.len(), 1);
    }

    #[test]
    fn done_sentinel() {
        assert!(frame("data: [DONE]\n\n").is_done());
        assert!(frame("data: [DONE] \n\n").is_done());
        assert!(!frame("data: [DONE]x\n\n").is_done());
        assert!(!frame("data: {\"x\":1}\n\n").is_done());
        assert!(!frame(": [DONE]\n\n").is_done());
    }

    #[test]
    fn openai_stream_fixture() {
        let out = decode_all(OPENAI);
        assert_eq!(out.error, None);
        assert!(!out.truncated);
        let frames = &out.frames;
        assert!(frames.len() >= 4);
        assert!(frames.last().unwrap().is_done());
        for f in &frames[..frames.len() - 1] {
            assert_eq!(f.event, None);
            let v: serde_json::Value = serde_json::from_str(f.data.as_deref().unwrap()).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk");
        }
        let text: String = frames[..frames.len() - 1]
            .iter()
            .filter_map(|f| {
                let v: serde_json::Value = serde_json::from_str(f.data.as_deref()?).ok()?;
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect();
        assert_eq!(text, "Hello! How can I help you today?");
        let raw: Vec<u8> = frames.iter().flat_map(|f| f.raw.to_vec()).collect();
        assert_eq!(raw, OPENAI);
    }

    #[test]
    fn anthropic_stream_fixture() {
        let out = decode_all(ANTHROPIC);
        assert_eq!(out.error, None);
        let events: Vec<&str> = out
            .frames
            .iter()
            .map(|f| f.event.as_deref().unwrap())
            .collect();
        assert_eq!(
            events,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        for f in &out.frames {
            let v: serde_json::Value = serde_json::from_str(f.data.as_deref().unwrap()).unwrap();
            assert_eq!(Some(v["type"].as_str().unwrap()), f.event.as_deref());
        }
    }

    #[test]
    fn fields_fixture() {
        let out = decode_all(FIELDS);
        assert_eq!(out.error, None);
        assert!(!out.truncated);
        let f = &out.frames;
        assert_eq!(f[0].data, None, "comment-only keep-alive");
        assert_eq!(f[1].event.as_deref(), Some("update"));
        assert_eq!(f[1].id.as_deref(), Some("evt-1"));
        assert_eq!(f[1].retry, Some(2500));
        assert_eq!(f[1].data.as_deref(), Some("first line\nsecond line"));
        assert_eq!(f[2].data.as_deref(), Some("  indented"));
        assert_eq!(f[3].data.as_deref(), Some(""));
    }

    #[test]
    fn decoding_byte_by_byte_is_linear() {
        let mut payload = vec![b'x'; 200_000];
        payload.splice(0..0, b"data: ".iter().copied());
        payload.extend_from_slice(b"\n\n");
        let mut dec = SseDecoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut frames = 0;
        for &b in &payload {
            buf.extend_from_slice(&[b]);
            while dec.decode(&mut buf).unwrap().is_some() {
                frames += 1;
            }
        }
        assert_eq!(frames, 1);
        assert!(dec.scanned <= 2 * payload.len(), "scanned {}", dec.scanned);
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        for input in all_fixture_variants() {
            let whole = decode_all(&input);
            assert_eq!(whole.error, None);
            for at in 0..=input.len() {
                let (a, b) = input.split_at(at);
                assert_eq!(decode_chunks(1 << 20, &[a, b]), whole, "split at {at}");
            }
        }
    }

    #[test]
    fn byte_at_a_time_gives_the_same_frames() {
        for input in all_fixture_variants() {
            let whole = decode_all(&input);
            let bytes: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(decode_chunks(1 << 20, &bytes), whole);
        }
    }

    #[test]
    fn encoder_output_shape() {
        let mut out = BytesMut::new();
        write_event(&mut out, Some("message_start"), "{\"a\":1}");
        write_event(&mut out, None, "l1\nl2\r\nl3");
        write_comment(&mut out, "keep-alive");
        assert_eq!(
            &out[..],
            &b"event: message_start\ndata: {\"a\":1}\n\ndata: l1\ndata: l2\ndata: l3\n\n: keep-alive\n\n"[..]
        );
        let mut out = BytesMut::new();
        write_event(&mut out, Some("a\nretry: 1"), "");
        assert_eq!(&out[..], b"event: a retry: 1\ndata: \n\n");
    }

    fn split_points(len: usize, cuts: &[usize]) -> Vec<usize> {
        let mut points: Vec<usize> = cuts.iter().map(|c| c % (len + 1)).collect();
        points.sort_unstable();
        points
    }

    fn chunks_at<'a>(input: &'a [u8], points: &[usize]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        let mut prev = 0;
        for &p in points {
            out.push(&input[prev..p]);
            prev = p;
        }
        out.push(&input[prev..]);
        out
    }

    proptest! {
        #[test]
        fn random_multi_splits_give_the_same_frames(
            which in 0usize..18,
            cuts in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let variants = all_fixture_variants();
            let input = &variants[which % variants.len()];
            let points = split_points(input.len(), &cuts);
            let chunks = chunks_at(input, &points);
            prop_assert_eq!(decode_chunks(1 << 20, &chunks), decode_all(input));
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_splits_agree(
            input in proptest::collection::vec(
                prop_oneof![
                    Just(b'\n'), Just(b'\r'), Just(b':'), Just(b' '), Just(0u8), Just(0xEF),
                    Just(b'd'), Just(b'a'), Just(b't'), any::<u8>()
                ],
                0..300,
            ),
            max in 1usize..400,
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let whole = decode_chunks(max, &[&input]);
            let points = split_points(input.len(), &cuts);
            let chunks = chunks_at(&input, &points);
            let split = decode_chunks(max, &chunks);
            // The frames before any error are the same however the bytes arrive; a size error
            // may surface a little earlier in a split stream, never later than a whole read.
            prop_assert_eq!(&split.frames, &whole.frames);
            prop_assert_eq!(split.error, whole.error);
            if whole.error.is_none() {
                prop_assert_eq!(split.truncated, whole.truncated);
                let mut raw = Vec::new();
                for f in &whole.frames {
                    raw.extend_from_slice(&f.raw);
                }
                let body = input.strip_prefix(&BOM[..]).unwrap_or(&input);
                prop_assert!(body.starts_with(&raw));
            }
        }

        #[test]
        fn encode_then_decode_round_trips(
            events in proptest::collection::vec(
                (proptest::option::of("[^\r\n]{0,12}"), "[^\r]{0,40}"),
                1..8,
            ),
            split in any::<usize>(),
        ) {
            let mut out = BytesMut::new();
            for (event, data) in &events {
                write_event(&mut out, event.as_deref(), data);
            }
            write_comment(&mut out, "keep-alive");
            let at = split % (out.len() + 1);
            let decoded = decode_chunks(1 << 20, &[&out[..at], &out[at..]]);
            prop_assert_eq!(decoded.error, None);
            prop_assert!(!decoded.truncated);
            prop_assert_eq!(decoded.frames.len(), events.len() + 1);
            for ((event, data), f) in events.iter().zip(&decoded.frames) {
                prop_assert_eq!(f.event.as_deref(), event.as_deref());
                prop_assert_eq!(f.data.as_deref(), Some(data.as_str()));
            }
            prop_assert_eq!(decoded.frames[events.len()].data.as_deref(), None);
        }
    }
}
