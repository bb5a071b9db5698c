//! Finds every string of a JSON document (object keys and values) without building a tree,
//! decodes and re-encodes JSON string contents, and splices replacements into the original
//! bytes. Guardrails use it to read every text a model sees and to rewrite masked strings in
//! place. It validates the whole document (RFC 8259) as it goes, never allocates per byte,
//! never recurses (nesting is an explicit stack bounded by [`MAX_DEPTH`]) and never panics.

use std::ops::Range;

/// Deepest nesting of objects and arrays [`for_each_string`] accepts; one more level is
/// [`JsonTextError::TooDeep`]. Bounds the explicit stack, so hostile bodies cost memory
/// proportional to this, not to their size.
pub const MAX_DEPTH: usize = 512;

/// Why a document or a string's contents could not be read. Every variant carries the byte
/// offset of the problem: into the document for [`for_each_string`], into `raw` for
/// [`unescape_into`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JsonTextError {
    /// The input ended inside a value (a truncated document).
    #[error("JSON ends early at byte {offset}")]
    UnexpectedEnd {
        /// Length of the input.
        offset: usize,
    },
    /// A byte that cannot appear here.
    #[error("invalid JSON at byte {offset}: expected {expected}")]
    Unexpected {
        /// Offset of the offending byte.
        offset: usize,
        /// What the grammar allows at this point.
        expected: &'static str,
    },
    /// A complete value followed by something other than whitespace.
    #[error("bytes after the JSON value at byte {offset}")]
    TrailingBytes {
        /// Offset of the first trailing byte.
        offset: usize,
    },
    /// Objects and arrays nested deeper than [`MAX_DEPTH`].
    #[error("JSON nested deeper than {MAX_DEPTH} levels at byte {offset}")]
    TooDeep {
        /// Offset of the `{` or `[` that would open level `MAX_DEPTH + 1`.
        offset: usize,
    },
    /// A raw control character (below U+0020) inside a string; JSON requires it escaped.
    #[error("raw control character in a JSON string at byte {offset}")]
    ControlCharacter {
        /// Offset of the control character.
        offset: usize,
    },
    /// A backslash not followed by one of `" \ / b f n r t` or by `u` and four hex digits.
    #[error("invalid escape in a JSON string at byte {offset}")]
    BadEscape {
        /// Offset of the backslash.
        offset: usize,
    },
    /// A `\uD800`-`\uDFFF` escape that is not part of a high-then-low surrogate pair.
    #[error("lone UTF-16 surrogate escape at byte {offset}")]
    LoneSurrogate {
        /// Offset of the backslash of the unpaired escape.
        offset: usize,
    },
    /// String contents that are not valid UTF-8.
    #[error("invalid UTF-8 at byte {offset}")]
    InvalidUtf8 {
        /// Offset of the first byte that is not part of a valid sequence.
        offset: usize,
    },
}

// === impl JsonTextError ===

impl JsonTextError {
    /// The byte offset the error points at.
    pub fn offset(&self) -> usize {
        match *self {
            Self::UnexpectedEnd { offset }
            | Self::Unexpected { offset, .. }
            | Self::TrailingBytes { offset }
            | Self::TooDeep { offset }
            | Self::ControlCharacter { offset }
            | Self::BadEscape { offset }
            | Self::LoneSurrogate { offset }
            | Self::InvalidUtf8 { offset } => offset,
        }
    }
}

/// One string in a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonString<'a> {
    /// Byte range of the string's contents in the document, between (not including) the quotes.
    pub span: Range<usize>,
    /// The raw (still escaped) contents: `&doc[span]`.
    pub raw: &'a [u8],
    /// An object key rather than a value.
    pub is_key: bool,
    /// For a value: the raw key of the nearest enclosing object member (for elements of an
    /// array, the key the array is under; `None` at top level or inside a top-level array).
    /// For a key: `None`.
    pub key: Option<&'a [u8]>,
    /// Contents contain a backslash (must be unescaped to be read as text).
    pub escaped: bool,
}

/// One open object or array.
#[derive(Debug, Clone, Copy)]
struct Frame<'a> {
    is_object: bool,
    /// For an object, the raw key of the member being read; for an array, the key it is under.
    key: Option<&'a [u8]>,
}

/// Calls `visit` for every string of `doc`, in document order. Returns an error (with the byte
/// offset) if `doc` is not one well-formed JSON value (trailing whitespace allowed; trailing
/// bytes not).
///
/// Well-formed is RFC 8259 in full: number and literal grammar, no raw control characters in
/// strings, valid escapes with paired surrogates, valid UTF-8 inside strings, nesting at most
/// [`MAX_DEPTH`]. So every `raw` visited decodes with [`unescape_into`]. Strings are visited as
/// they are met: on an error, `visit` has already seen the strings before it.
pub fn for_each_string<'a>(
    doc: &'a [u8],
    mut visit: impl FnMut(JsonString<'a>),
) -> Result<(), JsonTextError> {
    let mut stack: Vec<Frame<'a>> = Vec::new();
    let mut i = skip_ws(doc, 0);
    loop {
        // `i` is at the first byte of a value.
        match doc.get(i) {
            Some(b'"') => {
                let (close, escaped) = scan_string(doc, i)?;
                let span = i + 1..close;
                visit(JsonString {
                    raw: doc.get(span.clone()).unwrap_or_default(),
                    span,
                    is_key: false,
                    key: stack.last().and_then(|f| f.key),
                    escaped,
                });
                i = close + 1;
            }
            Some(&open @ (b'{' | b'[')) => {
                if stack.len() == MAX_DEPTH {
                    return Err(JsonTextError::TooDeep { offset: i });
                }
                let is_object = open == b'{';
                let close = if is_object { b'}' } else { b']' };
                let key = stack.last().and_then(|f| f.key);
                i = skip_ws(doc, i + 1);
                if doc.get(i) == Some(&close) {
                    i += 1;
                } else {
                    stack.push(Frame { is_object, key });
                    if is_object {
                        i = member_key(doc, i, &mut stack, &mut visit)?;
                    }
                    continue;
                }
            }
            Some(b't') => i = literal(doc, i, b"true")?,
            Some(b'f') => i = literal(doc, i, b"false")?,
            Some(b'n') => i = literal(doc, i, b"null")?,
            Some(b'-' | b'0'..=b'9') => i = number(doc, i)?,
            Some(_) => {
                return Err(JsonTextError::Unexpected {
                    offset: i,
                    expected: "a JSON value",
                })
            }
            None => return Err(JsonTextError::UnexpectedEnd { offset: doc.len() }),
        }
        // A value ended just before `i`: close containers until a comma leads to the next one.
        loop {
            i = skip_ws(doc, i);
            let Some(&Frame { is_object, .. }) = stack.last() else {
                return if i == doc.len() {
                    Ok(())
                } else {
                    Err(JsonTextError::TrailingBytes { offset: i })
                };
            };
            match doc.get(i) {
                Some(b',') => {
                    i = skip_ws(doc, i + 1);
                    if is_object {
                        i = member_key(doc, i, &mut stack, &mut visit)?;
                    }
                    break;
                }
                Some(b'}') if is_object => {
                    stack.pop();
                    i += 1;
                }
                Some(b']') if !is_object => {
                    stack.pop();
                    i += 1;
                }
                Some(_) => {
                    return Err(JsonTextError::Unexpected {
                        offset: i,
                        expected: if is_object {
                            "',' or '}'"
                        } else {
                            "',' or ']'"
                        },
                    })
                }
                None => return Err(JsonTextError::UnexpectedEnd { offset: doc.len() }),
            }
        }
    }
}

/// Reads the key of an object member at `i` (visiting it), records it as the innermost frame's
/// key and returns the offset of the member's value.
#[inline]
fn member_key<'a>(
    doc: &'a [u8],
    i: usize,
    stack: &mut [Frame<'a>],
    visit: &mut impl FnMut(JsonString<'a>),
) -> Result<usize, JsonTextError> {
    match doc.get(i) {
        Some(b'"') => {}
        Some(_) => {
            return Err(JsonTextError::Unexpected {
                offset: i,
                expected: "a string key",
            })
        }
        None => return Err(JsonTextError::UnexpectedEnd { offset: doc.len() }),
    }
    let (close, escaped) = scan_string(doc, i)?;
    let span = i + 1..close;
    let raw = doc.get(span.clone()).unwrap_or_default();
    visit(JsonString {
        span,
        raw,
        is_key: true,
        key: None,
        escaped,
    });
    if let Some(frame) = stack.last_mut() {
        frame.key = Some(raw);
    }
    let colon = skip_ws(doc, close + 1);
    match doc.get(colon) {
        Some(b':') => Ok(skip_ws(doc, colon + 1)),
        Some(_) => Err(JsonTextError::Unexpected {
            offset: colon,
            expected: "':'",
        }),
        None => Err(JsonTextError::UnexpectedEnd { offset: doc.len() }),
    }
}

#[inline]
fn skip_ws(doc: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = doc.get(i) {
        i += 1;
    }
    i
}

/// `open` is at a `"`; returns the offset of the closing quote and whether the contents hold
/// an escape. Validates escapes, control characters and UTF-8 on the way.
#[inline]
fn scan_string(doc: &[u8], open: usize) -> Result<(usize, bool), JsonTextError> {
    let mut run = open + 1;
    let mut escaped = false;
    loop {
        // memchr jumps over the text (most of a chat body) at vector speed; the run before the
        // quote or backslash is then checked in one more branch-free pass.
        let rest = doc.get(run..).unwrap_or_default();
        let Some(rel) = memchr::memchr2(b'"', b'\\', rest) else {
            return Err(JsonTextError::UnexpectedEnd { offset: doc.len() });
        };
        let at = run + rel;
        check_run(doc, run, at)?;
        if doc.get(at) == Some(&b'"') {
            return Ok((at, escaped));
        }
        escaped = true;
        run = decode_escape(doc, at)?.1;
    }
}

/// Checks string bytes `doc[start..end]` that hold no quote or backslash: no raw control
/// characters, valid UTF-8. Error offsets are into `doc`.
#[inline]
fn check_run(doc: &[u8], start: usize, end: usize) -> Result<(), JsonTextError> {
    let run = doc.get(start..end).unwrap_or_default();
    if is_printable_ascii(run) {
        return Ok(());
    }
    if let Some(p) = run.iter().position(|&b| b < 0x20) {
        return Err(JsonTextError::ControlCharacter { offset: start + p });
    }
    match std::str::from_utf8(run) {
        Ok(_) => Ok(()),
        Err(e) => Err(JsonTextError::InvalidUtf8 {
            offset: start + e.valid_up_to(),
        }),
    }
}

/// Whether every byte is in `0x20..=0x7f` (no control character, nothing to validate as UTF-8).
#[inline]
fn is_printable_ascii(run: &[u8]) -> bool {
    const LOW: u64 = u64::from_ne_bytes([0x20; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Eight bytes at a time: bit 7 of a byte of `w - LOW | w` is set for a byte >= 0x80, and the
    // lowest byte below 0x20 wraps to >= 0xe0 (a borrow only ever starts at such a byte), so the
    // OR of all words is clean exactly when every byte is printable ASCII. No early exit, so it
    // vectorizes. The tail is the run's last eight bytes, overlapping the words before it
    // (assembling a padded word in memory costs a store-forwarding stall per string).
    let word = |acc: u64, w: &[u8; 8]| {
        let w = u64::from_ne_bytes(*w);
        acc | w.wrapping_sub(LOW) | w
    };
    let (words, tail) = run.as_chunks::<8>();
    let mut flags = words.iter().fold(0, word);
    if !tail.is_empty() {
        flags = match run.last_chunk::<8>() {
            Some(last) => word(flags, last),
            None => tail.iter().fold(flags, |acc, &b| {
                let b = u64::from(b);
                acc | b.wrapping_sub(0x20) & 0x80 | b
            }),
        };
    }
    flags & HIGH == 0
}

/// Whether `raw` is ASCII and holds no backslash: text that decodes to itself.
#[inline]
fn is_ascii_without_backslash(raw: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // `x - ONES & !x` flags (exactly, as to whether any is) the zero bytes of `x = w ^ '\\'`, the
    // backslashes; `| w` adds the non-ASCII bytes. Same word walk as `is_printable_ascii`.
    let word = |acc: u64, w: &[u8; 8]| {
        let w = u64::from_ne_bytes(*w);
        let x = w ^ BACKSLASHES;
        acc | x.wrapping_sub(ONES) & !x | w
    };
    let (words, tail) = raw.as_chunks::<8>();
    let mut flags = words.iter().fold(0, word);
    if !tail.is_empty() {
        flags = match raw.last_chunk::<8>() {
            Some(last) => word(flags, last),
            None => tail.iter().fold(flags, |acc, &b| {
                acc | u64::from(b | u8::from(b == b'\\') << 7)
            }),
        };
    }
    flags & HIGH == 0
}

/// `i` is at `t`, `f` or `n`; returns the offset after the literal.
fn literal(doc: &[u8], i: usize, word: &'static [u8]) -> Result<usize, JsonTextError> {
    let rest = doc.get(i..).unwrap_or_default();
    if rest.starts_with(word) {
        Ok(i + word.len())
    } else if rest.len() < word.len() && word.starts_with(rest) {
        Err(JsonTextError::UnexpectedEnd { offset: doc.len() })
    } else {
        Err(JsonTextError::Unexpected {
            offset: i,
            expected: "a JSON value",
        })
    }
}

/// `i` is at `-` or a digit; returns the offset after the number
/// (`-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`).
fn number(doc: &[u8], mut i: usize) -> Result<usize, JsonTextError> {
    if doc.get(i) == Some(&b'-') {
        i += 1;
    }
    match doc.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => i = skip_digits(doc, i + 1),
        _ => return digit_error(doc, i),
    }
    if doc.get(i) == Some(&b'.') {
        i = one_or_more_digits(doc, i + 1)?;
    }
    if let Some(b'e' | b'E') = doc.get(i) {
        i += 1;
        if let Some(b'+' | b'-') = doc.get(i) {
            i += 1;
        }
        i = one_or_more_digits(doc, i)?;
    }
    Ok(i)
}

fn skip_digits(doc: &[u8], mut i: usize) -> usize {
    while doc.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    i
}

fn one_or_more_digits(doc: &[u8], i: usize) -> Result<usize, JsonTextError> {
    let end = skip_digits(doc, i);
    if end == i {
        digit_error(doc, i)
    } else {
        Ok(end)
    }
}

fn digit_error(doc: &[u8], i: usize) -> Result<usize, JsonTextError> {
    if i >= doc.len() {
        Err(JsonTextError::UnexpectedEnd { offset: doc.len() })
    } else {
        Err(JsonTextError::Unexpected {
            offset: i,
            expected: "a digit",
        })
    }
}

/// Decodes the escape whose backslash is at `at`; returns the character and the offset just
/// past the escape (past both halves of a surrogate pair). Offsets in errors are into `b`.
#[inline]
fn decode_escape(b: &[u8], at: usize) -> Result<(char, usize), JsonTextError> {
    let ch = match b.get(at + 1) {
        Some(b'"') => '"',
        Some(b'\\') => '\\',
        Some(b'/') => '/',
        Some(b'b') => '\u{8}',
        Some(b'f') => '\u{c}',
        Some(b'n') => '\n',
        Some(b'r') => '\r',
        Some(b't') => '\t',
        Some(b'u') => return decode_unicode(b, at),
        _ => return Err(JsonTextError::BadEscape { offset: at }),
    };
    Ok((ch, at + 2))
}

/// `\uXXXX` at `at`, with the low half that must follow a high surrogate.
fn decode_unicode(b: &[u8], at: usize) -> Result<(char, usize), JsonTextError> {
    let first = hex4(b, at + 2).ok_or(JsonTextError::BadEscape { offset: at })?;
    let (code, next) = match first {
        0xD800..=0xDBFF => {
            if b.get(at + 6..at + 8) != Some(b"\\u") {
                return Err(JsonTextError::LoneSurrogate { offset: at });
            }
            let second = hex4(b, at + 8).ok_or(JsonTextError::BadEscape { offset: at + 6 })?;
            if !(0xDC00..=0xDFFF).contains(&second) {
                return Err(JsonTextError::LoneSurrogate { offset: at });
            }
            (
                0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00),
                at + 12,
            )
        }
        0xDC00..=0xDFFF => return Err(JsonTextError::LoneSurrogate { offset: at }),
        _ => (first, at + 6),
    };
    // Every code outside the surrogate range is a char; the error is unreachable.
    char::from_u32(code)
        .map(|c| (c, next))
        .ok_or(JsonTextError::LoneSurrogate { offset: at })
}

fn hex4(b: &[u8], at: usize) -> Option<u32> {
    let digits = b.get(at..at + 4)?;
    digits.iter().try_fold(0u32, |acc, &d| {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            b'A'..=b'F' => d - b'A' + 10,
            _ => return None,
        };
        Some(acc << 4 | u32::from(v))
    })
}

/// Decodes a string's raw contents into `out` (appending), handling every JSON escape incl.
/// `\uXXXX` surrogate pairs; a lone surrogate or a bad escape is an error; invalid UTF-8 is an
/// error. Fast path: no backslash -> one UTF-8 check + copy.
///
/// On error `out` is left as it was. Raw control characters and quotes are not rejected here
/// ([`for_each_string`] already has): this only decodes.
pub fn unescape_into(raw: &[u8], out: &mut String) -> Result<(), JsonTextError> {
    if is_ascii_without_backslash(raw) {
        debug_assert!(raw.is_ascii());
        // SAFETY: `is_ascii_without_backslash` saw every byte below 0x80, and ASCII is valid
        // UTF-8. Most strings of a body (keys, roles, plain messages) take this path, and
        // checking them again with `str::from_utf8` (mostly its per-call cost, on short keys)
        // took scan-plus-unescape of the 64 KiB bench body from about 1.37 GB/s to 1.05 GB/s
        // (best of 300 runs on one machine; bench `json_text/scan_unescape`).
        out.push_str(unsafe { std::str::from_utf8_unchecked(raw) });
        return Ok(());
    }
    // Escapes are ASCII and a multi-byte sequence never contains an ASCII byte, so the contents
    // are valid UTF-8 exactly when every run between escapes is: validate once, up front.
    let text = std::str::from_utf8(raw).map_err(|e| JsonTextError::InvalidUtf8 {
        offset: e.valid_up_to(),
    })?;
    let Some(first) = memchr::memchr(b'\\', raw) else {
        out.push_str(text);
        return Ok(());
    };
    let before = out.len();
    let result = unescape_escaped(text, first, out);
    if result.is_err() {
        out.truncate(before);
    }
    result
}

/// `first` is the offset of the first backslash of `text`.
fn unescape_escaped(text: &str, first: usize, out: &mut String) -> Result<(), JsonTextError> {
    let raw = text.as_bytes();
    out.reserve(raw.len());
    let mut run = 0;
    let mut backslash = first;
    loop {
        // Runs start after an escape's last byte and end at a backslash, both ASCII, so they
        // lie on char boundaries and `get` always succeeds.
        out.push_str(text.get(run..backslash).unwrap_or_default());
        let (ch, next) = decode_escape(raw, backslash)?;
        out.push(ch);
        run = next;
        match memchr::memchr(b'\\', raw.get(run..).unwrap_or_default()) {
            Some(rel) => backslash = run + rel,
            None => {
                out.push_str(text.get(run..).unwrap_or_default());
                return Ok(());
            }
        }
    }
}

/// What a byte needs inside a JSON string: 0 = copy as is, `u` = `\u00XX`, any other value =
/// that character after a backslash.
static ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        table[i] = b'u';
        i += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `text` JSON-escaped (without quotes): `"` `\\` and control chars < 0x20 (`\n` `\r`
/// `\t` `\b` `\f` as short escapes, others `\u00XX`); everything else (incl. non-ASCII and '/')
/// as is.
pub fn escape_into(text: &str, out: &mut impl bytes::BufMut) {
    let bytes = text.as_bytes();
    let mut run_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = ESCAPE[usize::from(b)];
        if esc == 0 {
            continue;
        }
        // Clean runs are copied in one go rather than byte by byte.
        out.put_slice(bytes.get(run_start..i).unwrap_or_default());
        run_start = i + 1;
        if esc == b'u' {
            out.put_slice(b"\\u00");
            out.put_u8(HEX[usize::from(b >> 4)]);
            out.put_u8(HEX[usize::from(b & 0x0f)]);
        } else {
            out.put_u8(b'\\');
            out.put_u8(esc);
        }
    }
    out.put_slice(bytes.get(run_start..).unwrap_or_default());
}

/// Rebuilds `doc` with each `(span, replacement)` applied; spans sorted by start and
/// non-overlapping (debug_assert), typically string contents spans from [`for_each_string`].
///
/// In release builds a span that breaks that contract is clamped instead of panicking: to the
/// document, and to start after the previous edit (so an overlapping edit replaces only what
/// the previous one left).
pub fn splice(doc: &[u8], edits: &[(Range<usize>, Vec<u8>)]) -> Vec<u8> {
    debug_assert!(
        edits.windows(2).all(|w| w[0].0.end <= w[1].0.start),
        "splice edits must be sorted by start and non-overlapping"
    );
    debug_assert!(
        edits
            .iter()
            .all(|(span, _)| span.start <= span.end && span.end <= doc.len()),
        "splice edits must lie within the document"
    );
    let removed: usize = edits.iter().map(|(span, _)| span.len()).sum();
    let added: usize = edits.iter().map(|(_, r)| r.len()).sum();
    let mut out = Vec::with_capacity((doc.len() + added).saturating_sub(removed));
    let mut pos = 0;
    for (span, replacement) in edits {
        let start = span.start.clamp(pos, doc.len());
        let end = span.end.clamp(start, doc.len());
        out.extend_from_slice(doc.get(pos..start).unwrap_or_default());
        out.extend_from_slice(replacement);
        pos = end;
    }
    out.extend_from_slice(doc.get(pos..).unwrap_or_default());
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::Value;

    /// (is_key, key, decoded text) of every string, checking `raw == &doc[span]` on the way.
    type Seen = Vec<(bool, Option<String>, String)>;

    fn strings(doc: &[u8]) -> Result<Seen, JsonTextError> {
        let mut seen = Vec::new();
        let mut failure = None;
        for_each_string(doc, |s| {
            assert_eq!(s.raw, &doc[s.span.clone()]);
            assert_eq!(s.escaped, s.raw.contains(&b'\\'));
            if s.is_key {
                assert_eq!(s.key, None);
            }
            let mut text = String::new();
            if let Err(e) = unescape_into(s.raw, &mut text) {
                failure.get_or_insert(e);
            }
            let key = s.key.map(|k| {
                let mut key = String::new();
                unescape_into(k, &mut key).unwrap();
                key
            });
            seen.push((s.is_key, key, text));
        })?;
        assert_eq!(failure, None, "a visited string did not decode");
        Ok(seen)
    }

    fn unescape(raw: &str) -> Result<String, JsonTextError> {
        let mut out = String::new();
        unescape_into(raw.as_bytes(), &mut out).map(|()| out)
    }

    fn escape(text: &str) -> String {
        let mut out = Vec::new();
        escape_into(text, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn key(is_key: bool, key: Option<&str>, text: &str) -> (bool, Option<String>, String) {
        (is_key, key.map(str::to_owned), text.to_owned())
    }

    #[test]
    fn every_escape_decodes() {
        assert_eq!(
            unescape(r#"a\"b\\c\/d\be\ff\ng\rh\ti"#).unwrap(),
            "a\"b\\c/d\u{8}e\u{c}f\ng\rh\ti"
        );
        assert_eq!(
            unescape(r"\u0041\u00e9\u00E9\u20ac\u0000\u001f").unwrap(),
            "Aéé€\0\u{1f}"
        );
        assert_eq!(unescape("plain café 🦀").unwrap(), "plain café 🦀");
        assert_eq!(unescape("").unwrap(), "");
        assert_eq!(unescape(r"\\").unwrap(), "\\");
        // Appends rather than replaces.
        let mut out = String::from("x");
        unescape_into(br"\n", &mut out).unwrap();
        assert_eq!(out, "x\n");
    }

    #[test]
    fn bad_escapes_are_errors_with_offsets() {
        for (raw, offset) in [
            (r"ab\q", 2),
            (r"\x41", 0),
            ("ab\\", 2),
            (r"a\u12", 1),
            (r"a\u12g4", 1),
            (r"\U0041", 0),
            (r"\'", 0),
        ] {
            assert_eq!(
                unescape(raw),
                Err(JsonTextError::BadEscape { offset }),
                "{raw}"
            );
        }
        // On error nothing is appended.
        let mut out = String::from("kept");
        assert!(unescape_into(br"abc\q", &mut out).is_err());
        assert_eq!(out, "kept");
    }

    #[test]
    fn surrogate_pairs_decode() {
        assert_eq!(unescape(r"\ud83e\udd80").unwrap(), "🦀");
        assert_eq!(unescape(r"x\uD83D\uDE00y").unwrap(), "x😀y");
        assert_eq!(unescape(r"\ud800\udc00").unwrap(), "\u{10000}");
        assert_eq!(unescape(r"\udbff\udfff").unwrap(), "\u{10ffff}");
        let seen = strings(br#"{"k":"\ud83e\udd80"}"#).unwrap();
        assert_eq!(seen[1].2, "🦀");
    }

    #[test]
    fn lone_surrogates_are_errors() {
        for (raw, offset) in [
            (r"\ud83e", 0),
            (r"a\ud83ex", 1),
            (r"\ud83e\n", 0),
            (r"\ud83e\ud83e", 0),
            (r"\ud83e\u0041", 0),
            (r"ab\udd80", 2),
            (r"\udfff\ud83e", 0),
        ] {
            assert_eq!(
                unescape(raw),
                Err(JsonTextError::LoneSurrogate { offset }),
                "{raw}"
            );
        }
        assert_eq!(
            unescape(r"\ud83e\u12"),
            Err(JsonTextError::BadEscape { offset: 6 })
        );
        // The scanner rejects them too, with document offsets.
        assert_eq!(
            for_each_string(br#"["\ud83e"]"#, |_| {}),
            Err(JsonTextError::LoneSurrogate { offset: 2 })
        );
        assert_eq!(
            for_each_string(br#"{"\udc00":1}"#, |_| {}),
            Err(JsonTextError::LoneSurrogate { offset: 2 })
        );
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut out = String::new();
        assert_eq!(
            unescape_into(b"ab\xffcd", &mut out),
            Err(JsonTextError::InvalidUtf8 { offset: 2 })
        );
        assert_eq!(
            unescape_into(b"\\n\xc3", &mut out),
            Err(JsonTextError::InvalidUtf8 { offset: 2 })
        );
        assert_eq!(
            unescape_into(b"\xe2\x82\\n", &mut out),
            Err(JsonTextError::InvalidUtf8 { offset: 0 })
        );
        assert_eq!(out, "");
        assert_eq!(
            for_each_string(b"{\"a\":\"x\xed\xa0\x80\"}", |_| {}),
            Err(JsonTextError::InvalidUtf8 { offset: 7 })
        );
        assert_eq!(
            for_each_string(b"[\"\\n\xff\"]", |_| {}),
            Err(JsonTextError::InvalidUtf8 { offset: 4 })
        );
        // Outside strings a non-ASCII byte is simply not JSON.
        assert_eq!(
            for_each_string(b"[\xff]", |_| {}),
            Err(JsonTextError::Unexpected {
                offset: 1,
                expected: "a JSON value"
            })
        );
    }

    #[test]
    fn escape_writes_short_forms_and_leaves_the_rest() {
        assert_eq!(
            escape("a\"b\\c/d\u{8}\u{c}\n\r\t\u{0}\u{1}\u{1f}\u{7f} é🦀"),
            "a\\\"b\\\\c/d\\b\\f\\n\\r\\t\\u0000\\u0001\\u001f\u{7f} é🦀"
        );
        let mut out = b"prefix ".to_vec();
        escape_into("x", &mut out);
        assert_eq!(out, b"prefix x");
    }

    #[test]
    fn keys_values_and_their_keys() {
        let doc = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],
            "stop":["a","b"],"nested":{"inner":{"deep":"v"},"after":"w"},"grid":[["x"]],"n":1,"t":true}"#;
        assert_eq!(
            strings(doc).unwrap(),
            vec![
                key(true, None, "model"),
                key(false, Some("model"), "m"),
                key(true, None, "messages"),
                key(true, None, "role"),
                key(false, Some("role"), "user"),
                key(true, None, "content"),
                key(true, None, "type"),
                key(false, Some("type"), "text"),
                key(true, None, "text"),
                key(false, Some("text"), "hi"),
                key(true, None, "stop"),
                key(false, Some("stop"), "a"),
                key(false, Some("stop"), "b"),
                key(true, None, "nested"),
                key(true, None, "inner"),
                key(true, None, "deep"),
                key(false, Some("deep"), "v"),
                key(true, None, "after"),
                key(false, Some("after"), "w"),
                key(true, None, "grid"),
                key(false, Some("grid"), "x"),
                key(true, None, "n"),
                key(true, None, "t"),
            ]
        );
    }

    #[test]
    fn top_level_strings_and_arrays_have_no_key() {
        assert_eq!(
            strings(br#"  "top\n"  "#).unwrap(),
            vec![key(false, None, "top\n")]
        );
        assert_eq!(
            strings(br#"["a",["b"],{"k":"c"},"d"]"#).unwrap(),
            vec![
                key(false, None, "a"),
                key(false, None, "b"),
                key(true, None, "k"),
                key(false, Some("k"), "c"),
                key(false, None, "d"),
            ]
        );
        // `key` is the raw key, still escaped.
        let mut keys = Vec::new();
        for_each_string(br#"{"a\"b":"v"}"#, |s| {
            keys.push((s.is_key, s.key, s.escaped))
        })
        .unwrap();
        assert_eq!(
            keys,
            vec![(true, None, true), (false, Some(&br#"a\"b"#[..]), false)]
        );
    }

    #[test]
    fn spans_point_between_the_quotes() {
        let doc = br#"{"ab": "c\"d"}"#;
        let mut spans = Vec::new();
        for_each_string(doc, |s| spans.push(s.span)).unwrap();
        assert_eq!(spans, vec![2..4, 8..12]);
    }

    #[test]
    fn scalars_and_structure_are_strict() {
        for ok in [
            "0",
            "-0",
            "1.5",
            "-12.25e+10",
            "1E-2",
            "1e5",
            "true",
            "false",
            "null",
            "[]",
            "{}",
            " [ ] ",
            "{ }",
            "[1,2,{\"a\":[null]}]\n\t\r ",
            "\"\u{7f}\"",
        ] {
            assert!(for_each_string(ok.as_bytes(), |_| {}).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            " ",
            "01",
            "-",
            "1.",
            ".5",
            "+1",
            "1e",
            "1e+",
            "-a",
            "tru",
            "True",
            "nul",
            "nulls",
            "NaN",
            "[1,]",
            "[,1]",
            "{,}",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{1:2}",
            "[1 2]",
            "[1}",
            "{\"a\":1]",
            "[",
            "]",
            "{} {}",
            "{}x",
            "\"a",
            "'a'",
            "\"a\tb\"",
            "\"a\nb\"",
            "\"\u{0}\"",
            "[\"\\q\"]",
            "{\"a\":tru}",
        ] {
            assert!(for_each_string(bad.as_bytes(), |_| {}).is_err(), "{bad:?}");
            assert!(serde_json::from_str::<Value>(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            for_each_string(b"{} x", |_| {}),
            Err(JsonTextError::TrailingBytes { offset: 3 })
        );
        assert_eq!(
            for_each_string(b"[\"a\tb\"]", |_| {}),
            Err(JsonTextError::ControlCharacter { offset: 3 })
        );
        assert_eq!(
            for_each_string(b"[01]", |_| {}),
            Err(JsonTextError::Unexpected {
                offset: 2,
                expected: "',' or ']'"
            })
        );
        assert_eq!(
            for_each_string(b"{\"a\" 1}", |_| {}),
            Err(JsonTextError::Unexpected {
                offset: 5,
                expected: "':'"
            })
        );
        assert_eq!(
            for_each_string(b"[1.]", |_| {}),
            Err(JsonTextError::Unexpected {
                offset: 3,
                expected: "a digit"
            })
        );
        assert_eq!(
            for_each_string(b"{\"a\":[tr", |_| {}),
            Err(JsonTextError::UnexpectedEnd { offset: 8 })
        );
    }

    #[test]
    fn every_truncation_is_an_error() {
        let doc = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"caf\u00e9 \ud83e\udd80 \"q\"\n é🦀"},
            {"role":"assistant","content":[{"type":"text","text":"ok"}]}],"temperature":-0.5e-3,
            "stream":true,"stop":null,"n":10,"tools":[],"x":{}}"#
            .as_bytes();
        let total = strings(doc).unwrap().len();
        for end in 0..doc.len() {
            let mut visited = 0;
            let result = for_each_string(&doc[..end], |s| {
                assert!(s.span.end < end);
                visited += 1;
            });
            let err = result.expect_err("a strict prefix of an object is not a document");
            assert!(err.offset() <= end, "{err:?} at {end}");
            assert!(visited <= total);
        }
    }

    #[test]
    fn depth_limit() {
        let nested = |depth: usize, open: &str, close: &str| {
            format!("{}{}", open.repeat(depth), close.repeat(depth)).into_bytes()
        };
        assert!(for_each_string(&nested(MAX_DEPTH, "[", "]"), |_| {}).is_ok());
        assert_eq!(
            for_each_string(&nested(MAX_DEPTH + 1, "[", "]"), |_| {}),
            Err(JsonTextError::TooDeep { offset: MAX_DEPTH })
        );
        let objects = |depth: usize| nested(depth, "{\"k\":[", "]}");
        // Each repetition opens two levels.
        assert!(for_each_string(&objects(MAX_DEPTH / 2), |_| {}).is_ok());
        assert!(matches!(
            for_each_string(&objects(MAX_DEPTH / 2 + 1), |_| {}),
            Err(JsonTextError::TooDeep { .. })
        ));
        // Far deeper than any stack would survive with recursion, and unterminated.
        let hostile = vec![b'['; 10_000_000];
        assert_eq!(
            for_each_string(&hostile, |_| {}),
            Err(JsonTextError::TooDeep { offset: MAX_DEPTH })
        );
    }

    #[test]
    fn splice_replaces_spans() {
        let doc = br#"{"a":"secret","b":["x","y"]}"#;
        let mut edits = Vec::new();
        for_each_string(doc, |s| {
            if !s.is_key {
                edits.push((s.span, b"[MASKED]".to_vec()));
            }
        })
        .unwrap();
        assert_eq!(
            splice(doc, &edits),
            br#"{"a":"[MASKED]","b":["[MASKED]","[MASKED]"]}"#
        );
        assert_eq!(splice(doc, &[]), doc);
        assert_eq!(
            splice(b"abc", &[(0..0, b"<".to_vec()), (3..3, b">".to_vec())]),
            b"<abc>"
        );
        assert_eq!(splice(b"abc", &[(1..2, Vec::new())]), b"ac");
    }

    // === property tests ===

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![any::<String>(), r#"[a-z"\\/\x00-\x1f\x7fé€🦀 ]{0,12}"#,]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            // Quarters print and parse exactly, so values compare equal after a round trip.
            (-4_000_000i32..4_000_000).prop_map(|n| Value::from(f64::from(n) / 4.0)),
            text().prop_map(Value::String),
        ];
        leaf.prop_recursive(6, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((text(), inner), 0..8)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    fn render(value: &Value, pretty: bool) -> Vec<u8> {
        if pretty {
            serde_json::to_vec_pretty(value).unwrap()
        } else {
            serde_json::to_vec(value).unwrap()
        }
    }

    /// The strings serde_json writes, in the order it writes them.
    fn expected_strings(value: &Value, under: Option<&str>, out: &mut Seen) {
        match value {
            Value::String(s) => out.push(key(false, under, s)),
            Value::Array(items) => {
                for item in items {
                    expected_strings(item, under, out);
                }
            }
            Value::Object(members) => {
                for (k, v) in members {
                    out.push(key(true, None, k));
                    expected_strings(v, Some(k), out);
                }
            }
            _ => {}
        }
    }

    fn replacement(n: usize) -> String {
        format!("masked \"{n}\"\n\\ é\u{1}")
    }

    fn replace_strings(value: &mut Value, n: &mut usize) {
        match value {
            Value::String(s) => {
                *s = replacement(*n);
                *n += 1;
            }
            Value::Array(items) => items.iter_mut().for_each(|v| replace_strings(v, n)),
            Value::Object(members) => members.values_mut().for_each(|v| replace_strings(v, n)),
            _ => {}
        }
    }

    proptest! {
        #[test]
        fn escape_then_unescape_is_identity(s in any::<String>()) {
            let mut escaped = Vec::new();
            escape_into(&s, &mut escaped);
            let mut back = String::new();
            unescape_into(&escaped, &mut back).unwrap();
            prop_assert_eq!(&back, &s);
            // And it is a valid JSON string body that serde_json reads the same way.
            let quoted = [b"\"", &escaped[..], b"\""].concat();
            prop_assert_eq!(serde_json::from_slice::<String>(&quoted).unwrap(), s);
        }

        #[test]
        fn visits_the_strings_serde_json_sees(value in json_value(), pretty in any::<bool>()) {
            let doc = render(&value, pretty);
            let mut expected = Vec::new();
            expected_strings(&value, None, &mut expected);
            prop_assert_eq!(strings(&doc).unwrap(), expected);
        }

        #[test]
        fn splicing_every_value_yields_the_replacements(value in json_value(), pretty in any::<bool>()) {
            let doc = render(&value, pretty);
            let mut edits = Vec::new();
            for_each_string(&doc, |s| {
                if !s.is_key {
                    let mut r = Vec::new();
                    escape_into(&replacement(edits.len()), &mut r);
                    edits.push((s.span, r));
                }
            })
            .unwrap();
            let spliced = splice(&doc, &edits);
            let mut expected = value.clone();
            replace_strings(&mut expected, &mut 0);
            prop_assert_eq!(serde_json::from_slice::<Value>(&spliced).unwrap(), expected);
        }

        #[test]
        fn truncations_agree_with_serde_json(value in json_value()) {
            let doc = render(&value, false);
            for end in 0..doc.len() {
                let prefix = &doc[..end];
                let ours = for_each_string(prefix, |_| {});
                let theirs = serde_json::from_slice::<Value>(prefix);
                prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?} {:?}", String::from_utf8_lossy(prefix), ours);
            }
        }

        #[test]
        fn mutations_agree_with_serde_json(
            value in json_value(),
            pretty in any::<bool>(),
            at in any::<prop::sample::Index>(),
            op in 0u8..3,
            byte in prop::sample::select(b"\"\\{}[],: \t\x01\x00\xff\xc3-.0123456789ntfu/".to_vec()),
        ) {
            let mut doc = render(&value, pretty);
            let i = at.index(doc.len() + 1);
            match op {
                0 if i < doc.len() => doc[i] = byte,
                1 if i < doc.len() => { doc.remove(i); }
                _ => doc.insert(i, byte),
            }
            let ours = for_each_string(&doc, |_| {});
            let theirs = serde_json::from_slice::<Value>(&doc);
            prop_assert_eq!(ours.is_ok(), theirs.is_ok(), "{:?} {:?} {:?}", String::from_utf8_lossy(&doc), ours, theirs);
        }

        #[test]
        fn word_checks_match_byte_checks(
            bytes in prop::collection::vec(
                prop_oneof![any::<u8>(), 0x20u8..0x80, Just(b'\\'), Just(0x1f), Just(0x80)],
                0..40,
            ),
            from in 0usize..8,
        ) {
            // Every length and alignment, with the interesting bytes at every position.
            let bytes = bytes.get(from..).unwrap_or_default();
            prop_assert_eq!(
                is_printable_ascii(bytes),
                bytes.iter().all(|&b| (0x20..0x80).contains(&b))
            );
            prop_assert_eq!(
                is_ascii_without_backslash(bytes),
                bytes.iter().all(|&b| b < 0x80 && b != b'\\')
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(doc in prop::collection::vec(any::<u8>(), 0..256)) {
            let ours = for_each_string(&doc, |_| {});
            prop_assert_eq!(ours.is_ok(), serde_json::from_slice::<Value>(&doc).is_ok());
            let mut out = String::new();
            let _ = unescape_into(&doc, &mut out);
        }
    }
}
