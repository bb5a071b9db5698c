//! The AWS event stream binary framing (`application/vnd.amazon.eventstream`): an incremental
//! decoder that accepts the body split anywhere, and an encoder for the mock provider.
//!
//! Wire format of one message (all integers big-endian):
//! `total length u32 | headers length u32 | prelude CRC32 | headers | payload | message CRC32`,
//! where the prelude CRC covers the first 8 bytes and the message CRC everything before it.
//! A header is `name length u8 | name | value type u8 | value`.
//!
//! Never trusts a length before its CRC has been checked, and never buffers more than one
//! bounded message.

use bytes::Bytes;

/// Bytes of the prelude (two lengths and the prelude CRC).
pub const PRELUDE_LEN: usize = 12;

/// The smallest possible message: a prelude and the message CRC.
pub const MIN_MESSAGE_LEN: usize = PRELUDE_LEN + 4;

/// Default bound on one message (the limit AWS documents for the format: 16 MiB).
pub const DEFAULT_MAX_MESSAGE_LEN: usize = 16 * 1024 * 1024;

/// Bound on the headers of one message (AWS documents 128 KiB).
pub const MAX_HEADERS_LEN: usize = 128 * 1024;

/// What went wrong while framing or encoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventStreamError {
    /// The prelude CRC does not match its 8 bytes.
    #[error("event stream prelude CRC mismatch (expected {expected:#010x}, got {actual:#010x})")]
    PreludeCrc {
        /// CRC carried by the message.
        expected: u32,
        /// CRC computed over the bytes.
        actual: u32,
    },
    /// The message CRC does not match the message.
    #[error("event stream message CRC mismatch (expected {expected:#010x}, got {actual:#010x})")]
    MessageCrc {
        /// CRC carried by the message.
        expected: u32,
        /// CRC computed over the bytes.
        actual: u32,
    },
    /// Lengths that cannot describe a message or exceed the bounds.
    #[error(
        "event stream message length {total} (headers {headers}) is invalid or over the limit"
    )]
    BadLength {
        /// Total length from the prelude.
        total: u32,
        /// Headers length from the prelude.
        headers: u32,
    },
    /// A header that cannot be parsed (or, when encoding, written).
    #[error("event stream header invalid: {0}")]
    BadHeader(&'static str),
    /// The input ended inside a message.
    #[error("event stream truncated: {0} bytes of an incomplete message")]
    Truncated(usize),
}

/// A header value, one variant per wire type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderValue {
    /// Types 0 (true) and 1 (false).
    Bool(bool),
    /// Type 2.
    Byte(i8),
    /// Type 3.
    Short(i16),
    /// Type 4.
    Int(i32),
    /// Type 5.
    Long(i64),
    /// Type 6 (u16 length prefix).
    Bytes(Bytes),
    /// Type 7 (u16 length prefix, UTF-8).
    String(String),
    /// Type 8: milliseconds since the Unix epoch.
    Timestamp(i64),
    /// Type 9.
    Uuid([u8; 16]),
}

/// One header of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Header name (at most 255 bytes).
    pub name: String,
    /// Header value.
    pub value: HeaderValue,
}

impl Header {
    /// A string header.
    pub fn string(name: impl Into<String>, value: impl Into<String>) -> Self {
        Header {
            name: name.into(),
            value: HeaderValue::String(value.into()),
        }
    }
}

/// One decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Headers in wire order.
    pub headers: Vec<Header>,
    /// The payload.
    pub payload: Bytes,
}

impl Message {
    /// The value of the string header `name` (e.g. `:event-type`), if present.
    pub fn header_str(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| match &h.value {
            HeaderValue::String(s) if h.name == name => Some(s.as_str()),
            _ => None,
        })
    }
}

// === decoding ===

/// Incremental decoder: feed body bytes as they arrive, get back the messages they complete.
/// After an error it keeps returning that error (the stream cannot be resynchronised).
#[derive(Debug)]
pub struct EventStreamDecoder {
    buf: Vec<u8>,
    max_message_len: usize,
    failed: Option<EventStreamError>,
}

impl Default for EventStreamDecoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_MESSAGE_LEN)
    }
}

impl EventStreamDecoder {
    /// A decoder refusing messages longer than `max_message_len` bytes.
    pub fn new(max_message_len: usize) -> Self {
        EventStreamDecoder {
            buf: Vec::new(),
            max_message_len,
            failed: None,
        }
    }

    /// Appends `bytes` and returns every message now complete, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<Message>, EventStreamError> {
        let mut out = Vec::new();
        self.feed_into(bytes, &mut out)?;
        Ok(out)
    }

    /// [`Self::feed`] appending to `out`; messages completed before an error stay in `out`.
    pub fn feed_into(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<Message>,
    ) -> Result<(), EventStreamError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        self.buf.extend_from_slice(bytes);
        let mut start = 0;
        let result = loop {
            match parse_message(&self.buf[start..], self.max_message_len) {
                Ok(Some((message, used))) => {
                    out.push(message);
                    start += used;
                }
                Ok(None) => break Ok(()),
                Err(err) => break Err(err),
            }
        };
        self.buf.drain(..start);
        if let Err(err) = &result {
            self.failed = Some(err.clone());
            self.buf.clear();
        }
        result
    }

    /// The input ended: an error if it stopped inside a message (or an error was seen).
    pub fn finish(&self) -> Result<(), EventStreamError> {
        match &self.failed {
            Some(err) => Err(err.clone()),
            None if self.buf.is_empty() => Ok(()),
            None => Err(EventStreamError::Truncated(self.buf.len())),
        }
    }

    /// Bytes held of an incomplete message.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(word)
}

/// One message from the front of `buf`: `Ok(None)` when more bytes are needed.
fn parse_message(
    buf: &[u8],
    max_message_len: usize,
) -> Result<Option<(Message, usize)>, EventStreamError> {
    if buf.len() < PRELUDE_LEN {
        return Ok(None);
    }
    let total = be32(buf, 0);
    let headers_len = be32(buf, 4);
    let prelude_crc = be32(buf, 8);
    let actual = crc32fast::hash(&buf[..8]);
    if actual != prelude_crc {
        return Err(EventStreamError::PreludeCrc {
            expected: prelude_crc,
            actual,
        });
    }
    let total_len = total as usize;
    let hlen = headers_len as usize;
    if total_len < MIN_MESSAGE_LEN
        || total_len > max_message_len
        || hlen > MAX_HEADERS_LEN
        || hlen > total_len - MIN_MESSAGE_LEN
    {
        return Err(EventStreamError::BadLength {
            total,
            headers: headers_len,
        });
    }
    if buf.len() < total_len {
        return Ok(None);
    }
    let message_crc = be32(buf, total_len - 4);
    let actual = crc32fast::hash(&buf[..total_len - 4]);
    if actual != message_crc {
        return Err(EventStreamError::MessageCrc {
            expected: message_crc,
            actual,
        });
    }
    let headers = parse_headers(&buf[PRELUDE_LEN..PRELUDE_LEN + hlen])?;
    let payload = Bytes::copy_from_slice(&buf[PRELUDE_LEN + hlen..total_len - 4]);
    Ok(Some((Message { headers, payload }, total_len)))
}

/// A cursor over the header block that fails instead of reading past its end.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EventStreamError> {
        if self.buf.len() < n {
            return Err(EventStreamError::BadHeader(
                "header runs past the header block",
            ));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], EventStreamError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u16_len(&mut self) -> Result<usize, EventStreamError> {
        Ok(usize::from(u16::from_be_bytes(self.array()?)))
    }
}

fn parse_headers(block: &[u8]) -> Result<Vec<Header>, EventStreamError> {
    let mut r = Reader { buf: block };
    let mut headers = Vec::new();
    while !r.buf.is_empty() {
        let name_len = usize::from(r.array::<1>()?[0]);
        if name_len == 0 {
            return Err(EventStreamError::BadHeader("empty header name"));
        }
        let name = std::str::from_utf8(r.take(name_len)?)
            .map_err(|_| EventStreamError::BadHeader("header name is not UTF-8"))?
            .to_owned();
        let value = match r.array::<1>()?[0] {
            0 => HeaderValue::Bool(true),
            1 => HeaderValue::Bool(false),
            2 => HeaderValue::Byte(i8::from_be_bytes(r.array()?)),
            3 => HeaderValue::Short(i16::from_be_bytes(r.array()?)),
            4 => HeaderValue::Int(i32::from_be_bytes(r.array()?)),
            5 => HeaderValue::Long(i64::from_be_bytes(r.array()?)),
            6 => {
                let len = r.u16_len()?;
                HeaderValue::Bytes(Bytes::copy_from_slice(r.take(len)?))
            }
            7 => {
                let len = r.u16_len()?;
                let text = std::str::from_utf8(r.take(len)?)
                    .map_err(|_| EventStreamError::BadHeader("string header is not UTF-8"))?;
                HeaderValue::String(text.to_owned())
            }
            8 => HeaderValue::Timestamp(i64::from_be_bytes(r.array()?)),
            9 => HeaderValue::Uuid(r.array()?),
            _ => return Err(EventStreamError::BadHeader("unknown header value type")),
        };
        headers.push(Header { name, value });
    }
    Ok(headers)
}

// === encoding ===

/// Appends one message with `headers` and `payload` to `out`, CRCs included.
pub fn write_message(
    headers: &[Header],
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EventStreamError> {
    let mut block = Vec::with_capacity(64 * headers.len());
    for header in headers {
        write_header(header, &mut block)?;
    }
    let total = PRELUDE_LEN + block.len() + payload.len() + 4;
    let too_long = || EventStreamError::BadLength {
        total: u32::try_from(total).unwrap_or(u32::MAX),
        headers: u32::try_from(block.len()).unwrap_or(u32::MAX),
    };
    if block.len() > MAX_HEADERS_LEN || total > DEFAULT_MAX_MESSAGE_LEN {
        return Err(too_long());
    }
    let total32 = u32::try_from(total).map_err(|_| too_long())?;
    let headers32 = u32::try_from(block.len()).map_err(|_| too_long())?;
    let start = out.len();
    out.extend_from_slice(&total32.to_be_bytes());
    out.extend_from_slice(&headers32.to_be_bytes());
    let prelude_crc = crc32fast::hash(&out[start..start + 8]);
    out.extend_from_slice(&prelude_crc.to_be_bytes());
    out.extend_from_slice(&block);
    out.extend_from_slice(payload);
    let message_crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&message_crc.to_be_bytes());
    Ok(())
}

/// Appends an event message as AWS services send them: `:event-type`, `:content-type`
/// `application/json` and `:message-type` `event`.
pub fn write_event(
    event_type: &str,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EventStreamError> {
    let headers = [
        Header::string(":event-type", event_type),
        Header::string(":content-type", "application/json"),
        Header::string(":message-type", "event"),
    ];
    write_message(&headers, payload, out)
}

/// Appends an exception message: `:exception-type`, `:content-type` `application/json` and
/// `:message-type` `exception`, with a `{"message": ...}` payload.
pub fn write_exception(
    exception_type: &str,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EventStreamError> {
    let headers = [
        Header::string(":exception-type", exception_type),
        Header::string(":content-type", "application/json"),
        Header::string(":message-type", "exception"),
    ];
    write_message(&headers, payload, out)
}

fn write_header(header: &Header, out: &mut Vec<u8>) -> Result<(), EventStreamError> {
    let name = header.name.as_bytes();
    let name_len =
        u8::try_from(name.len())
            .ok()
            .filter(|&n| n > 0)
            .ok_or(EventStreamError::BadHeader(
                "header name must be 1..=255 bytes",
            ))?;
    out.push(name_len);
    out.extend_from_slice(name);
    let with_len = |out: &mut Vec<u8>, kind: u8, bytes: &[u8]| {
        let len = u16::try_from(bytes.len())
            .map_err(|_| EventStreamError::BadHeader("header value longer than 65535 bytes"))?;
        out.push(kind);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(bytes);
        Ok(())
    };
    match &header.value {
        HeaderValue::Bool(true) => out.push(0),
        HeaderValue::Bool(false) => out.push(1),
        HeaderValue::Byte(v) => {
            out.push(2);
            out.extend_from_slice(&v.to_be_bytes());
        }
        HeaderValue::Short(v) => {
            out.push(3);
            out.extend_from_slice(&v.to_be_bytes());
        }
        HeaderValue::Int(v) => {
            out.push(4);
            out.extend_from_slice(&v.to_be_bytes());
        }
        HeaderValue::Long(v) => {
            out.push(5);
            out.extend_from_slice(&v.to_be_bytes());
        }
        HeaderValue::Bytes(v) => with_len(out, 6, v)?,
        HeaderValue::String(v) => with_len(out, 7, v.as_bytes())?,
        HeaderValue::Timestamp(v) => {
            out.push(8);
            out.extend_from_slice(&v.to_be_bytes());
        }
        HeaderValue::Uuid(v) => {
            out.push(9);
            out.extend_from_slice(v);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // Vectors from the AWS SDK event stream marshaller's test suite.
    const EMPTY_MESSAGE: &[u8] = &[0, 0, 0, 16, 0, 0, 0, 0, 5, 194, 72, 235, 125, 152, 200, 255];
    const PAYLOAD_ONE_STR_HEADER: &[u8] = &[
        0, 0, 0, 61, 0, 0, 0, 32, 7, 253, 131, 150, 12, 99, 111, 110, 116, 101, 110, 116, 45, 116,
        121, 112, 101, 7, 0, 16, 97, 112, 112, 108, 105, 99, 97, 116, 105, 111, 110, 47, 106, 115,
        111, 110, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 141, 156, 8, 177,
    ];
    const INT32_HEADER: &[u8] = &[
        0, 0, 0, 43, 0, 0, 0, 14, 52, 139, 236, 123, 8, 101, 118, 101, 110, 116, 45, 105, 100, 4,
        0, 0, 160, 12, 123, 39, 102, 111, 111, 39, 58, 39, 98, 97, 114, 39, 125, 211, 137, 2, 133,
    ];

    fn all_types() -> Vec<Header> {
        let h = |name: &str, value| Header {
            name: name.to_owned(),
            value,
        };
        vec![
            h("t", HeaderValue::Bool(true)),
            h("f", HeaderValue::Bool(false)),
            h("byte", HeaderValue::Byte(-3)),
            h("short", HeaderValue::Short(-300)),
            h("int", HeaderValue::Int(40972)),
            h("long", HeaderValue::Long(-1 << 40)),
            h(
                "bytes",
                HeaderValue::Bytes(Bytes::from_static(b"\x00\x01\xff")),
            ),
            h(":event-type", HeaderValue::String("chunk".into())),
            h("ts", HeaderValue::Timestamp(1_700_000_000_000)),
            h("id", HeaderValue::Uuid(*b"0123456789abcdef")),
        ]
    }

    #[test]
    fn published_vectors_decode_and_encode() {
        let mut d = EventStreamDecoder::default();
        let got = d.feed(EMPTY_MESSAGE).unwrap();
        assert_eq!(
            got,
            [Message {
                headers: vec![],
                payload: Bytes::new()
            }]
        );
        let got = d.feed(PAYLOAD_ONE_STR_HEADER).unwrap();
        assert_eq!(got[0].header_str("content-type"), Some("application/json"));
        assert_eq!(&got[0].payload[..], b"{'foo':'bar'}");
        let got = d.feed(INT32_HEADER).unwrap();
        assert_eq!(got[0].headers[0].value, HeaderValue::Int(0xa00c));
        d.finish().unwrap();

        let mut out = Vec::new();
        write_message(&[], b"", &mut out).unwrap();
        assert_eq!(out, EMPTY_MESSAGE);
        out.clear();
        write_message(
            &[Header::string("content-type", "application/json")],
            b"{'foo':'bar'}",
            &mut out,
        )
        .unwrap();
        assert_eq!(out, PAYLOAD_ONE_STR_HEADER);
    }

    #[test]
    fn hand_computed_vector() {
        // One string header "a" = "b", payload "x":
        // headers = 01 'a' 07 00 01 'b' (6 bytes); total = 12 + 6 + 1 + 4 = 23.
        let mut out = Vec::new();
        write_message(&[Header::string("a", "b")], b"x", &mut out).unwrap();
        let mut expected = vec![0, 0, 0, 23, 0, 0, 0, 6];
        let prelude_crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&prelude_crc.to_be_bytes());
        expected.extend_from_slice(&[1, b'a', 7, 0, 1, b'b', b'x']);
        let crc = crc32fast::hash(&expected);
        expected.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(out, expected);
        // CRC32 (IEEE) of the 8 zero-and-length bytes of the empty message, as published.
        assert_eq!(crc32fast::hash(&EMPTY_MESSAGE[..8]), 0x05c2_48eb);
    }

    #[test]
    fn corrupted_inputs_are_rejected() {
        // Published failure vectors: corrupted headers / header length / length / payload.
        let mut headers = PAYLOAD_ONE_STR_HEADER.to_vec();
        headers[20] = 43;
        assert!(matches!(
            EventStreamDecoder::default().feed(&headers),
            Err(EventStreamError::MessageCrc { .. })
        ));
        let mut header_len = PAYLOAD_ONE_STR_HEADER.to_vec();
        header_len[6] = 1;
        assert!(matches!(
            EventStreamDecoder::default().feed(&header_len),
            Err(EventStreamError::PreludeCrc { .. })
        ));
        let mut payload = PAYLOAD_ONE_STR_HEADER.to_vec();
        payload[56] ^= 0x40;
        let mut d = EventStreamDecoder::default();
        assert!(matches!(
            d.feed(&payload),
            Err(EventStreamError::MessageCrc { .. })
        ));
        // The decoder stays failed.
        assert!(d.feed(EMPTY_MESSAGE).is_err());
        assert!(d.finish().is_err());
    }

    #[test]
    fn absurd_lengths_are_rejected_before_buffering() {
        // A valid prelude claiming 1 GiB.
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&(1u32 << 30).to_be_bytes());
        prelude.extend_from_slice(&0u32.to_be_bytes());
        let crc = crc32fast::hash(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            EventStreamDecoder::default().feed(&prelude),
            Err(EventStreamError::BadLength { .. })
        ));
        // Headers longer than the message.
        let mut prelude = Vec::new();
        prelude.extend_from_slice(&20u32.to_be_bytes());
        prelude.extend_from_slice(&8u32.to_be_bytes());
        let crc = crc32fast::hash(&prelude);
        prelude.extend_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            EventStreamDecoder::default().feed(&prelude),
            Err(EventStreamError::BadLength { .. })
        ));
        // A smaller configured bound.
        let mut out = Vec::new();
        write_message(&[], &[7; 100], &mut out).unwrap();
        assert!(EventStreamDecoder::new(64).feed(&out).is_err());
        assert_eq!(EventStreamDecoder::new(116).feed(&out).unwrap().len(), 1);
    }

    #[test]
    fn truncated_input_is_pending_until_finish() {
        let mut d = EventStreamDecoder::default();
        assert!(d.feed(&PAYLOAD_ONE_STR_HEADER[..40]).unwrap().is_empty());
        assert_eq!(d.pending(), 40);
        assert_eq!(d.finish(), Err(EventStreamError::Truncated(40)));
        let rest = d.feed(&PAYLOAD_ONE_STR_HEADER[40..]).unwrap();
        assert_eq!(rest.len(), 1);
        d.finish().unwrap();
    }

    #[test]
    fn bad_headers_are_rejected() {
        // Header type 10 does not exist; the CRCs are right so only the header parse fails.
        let mut out = Vec::new();
        write_message(&[Header::string("a", "b")], b"", &mut out).unwrap();
        out[12 + 2] = 10;
        let len = out.len();
        let crc = crc32fast::hash(&out[..len - 4]);
        out[len - 4..].copy_from_slice(&crc.to_be_bytes());
        assert_eq!(
            EventStreamDecoder::default().feed(&out),
            Err(EventStreamError::BadHeader("unknown header value type"))
        );
        assert!(write_message(&[Header::string("", "b")], b"", &mut Vec::new()).is_err());
        let long = "x".repeat(70_000);
        assert!(write_message(&[Header::string("a", long)], b"", &mut Vec::new()).is_err());
    }

    #[test]
    fn every_type_round_trips_at_every_split() {
        let mut body = Vec::new();
        write_message(&all_types(), b"{\"a\":1}", &mut body).unwrap();
        write_message(&[], b"", &mut body).unwrap();
        write_event("contentBlockDelta", b"{\"x\":2}", &mut body).unwrap();
        for split in 0..=body.len() {
            let mut d = EventStreamDecoder::default();
            let mut got = d.feed(&body[..split]).unwrap();
            got.extend(d.feed(&body[split..]).unwrap());
            d.finish().unwrap();
            assert_eq!(got.len(), 3, "split {split}");
            assert_eq!(got[0].headers, all_types());
            assert_eq!(&got[0].payload[..], b"{\"a\":1}");
            assert_eq!(got[2].header_str(":event-type"), Some("contentBlockDelta"));
            assert_eq!(got[2].header_str(":message-type"), Some("event"));
        }
    }

    proptest! {
        #[test]
        fn any_split_same_messages(
            payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..6),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let mut body = Vec::new();
            for (i, p) in payloads.iter().enumerate() {
                write_event(&format!("e{i}"), p, &mut body).unwrap();
            }
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            cuts.sort_unstable();
            let mut d = EventStreamDecoder::default();
            let mut got = Vec::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([body.len()]) {
                d.feed_into(&body[at..c], &mut got).unwrap();
                at = c;
            }
            d.finish().unwrap();
            prop_assert_eq!(got.len(), payloads.len());
            for (m, p) in got.iter().zip(&payloads) {
                prop_assert_eq!(&m.payload[..], &p[..]);
            }
        }
    }
}
