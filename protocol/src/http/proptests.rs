//! Property tests for the codec as a whole: a connection's bytes decode to the same heads and
//! bodies however they are split across reads, and no input makes the codec panic.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

// === a connection driver ===

/// One decoded message as the proxy would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Msg {
    /// `METHOD path` for requests, the status for responses.
    start: String,
    headers: Vec<(String, Vec<u8>)>,
    framing: BodyFraming,
    keep_alive: bool,
    expect_continue: bool,
    body: Vec<u8>,
    complete: bool,
}

/// Everything a connection produced: finished messages, then the one in progress (if any),
/// then bytes still unparsed.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    msgs: Vec<Msg>,
    leftover: Vec<u8>,
}

fn request_msg(h: &RequestHead) -> Msg {
    Msg {
        start: format!("{} {}", h.method_str(), h.path()),
        headers: h
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect(),
        framing: h.framing,
        keep_alive: h.keep_alive,
        expect_continue: h.expect_continue,
        body: Vec::new(),
        complete: false,
    }
}

fn response_msg(h: &ResponseHead) -> Msg {
    Msg {
        start: h.status.to_string(),
        headers: h
            .headers()
            .map(|(n, v)| (n.to_owned(), v.to_vec()))
            .collect(),
        framing: h.framing,
        keep_alive: h.keep_alive,
        expect_continue: false,
        body: Vec::new(),
        complete: false,
    }
}

/// Feeds `parts` one read at a time, parsing heads with `parse_head(buf, message_index)` and
/// bodies with a [`BodyDecoder`]; at the end, tells the decoder about EOF if `eof`.
fn drive<'a>(
    parts: impl IntoIterator<Item = &'a [u8]>,
    limits: &Limits,
    eof: bool,
    mut parse_head: impl FnMut(&mut BytesMut, usize) -> Result<Option<Msg>, HttpError>,
) -> Result<Outcome, HttpError> {
    let mut buf = BytesMut::new();
    let mut msgs: Vec<Msg> = Vec::new();
    let mut cur: Option<(Msg, BodyDecoder)> = None;
    for part in parts {
        buf.extend_from_slice(part);
        loop {
            match cur.as_mut() {
                None => match parse_head(&mut buf, msgs.len())? {
                    None => break,
                    Some(msg) => {
                        let dec = BodyDecoder::with_limits(msg.framing, limits)?;
                        cur = Some((msg, dec));
                    }
                },
                Some((msg, dec)) => match dec.decode(&mut buf)? {
                    BodyChunk::Data(d) => {
                        assert!(!d.is_empty(), "Data is never empty");
                        msg.body.extend_from_slice(&d);
                    }
                    BodyChunk::NeedMore => break,
                    BodyChunk::Done => {
                        if let Some((mut msg, _)) = cur.take() {
                            msg.complete = true;
                            msgs.push(msg);
                        }
                    }
                },
            }
        }
    }
    if let Some((mut msg, mut dec)) = cur {
        if eof {
            dec.on_eof()?;
            msg.complete = true;
        }
        msgs.push(msg);
    }
    Ok(Outcome {
        msgs,
        leftover: buf.to_vec(),
    })
}

fn drive_requests<'a>(
    parts: impl IntoIterator<Item = &'a [u8]>,
    limits: &Limits,
) -> Result<Outcome, HttpError> {
    drive(parts, limits, false, |buf, _| {
        Ok(RequestHead::parse(buf, limits)?.map(|h| request_msg(&h)))
    })
}

/// `methods[i]` is the method of the request the i-th response answers.
fn drive_responses<'a>(
    parts: impl IntoIterator<Item = &'a [u8]>,
    limits: &Limits,
    methods: &[Method],
) -> Result<Outcome, HttpError> {
    drive(parts, limits, true, |buf, i| {
        let method = methods.get(i).copied().unwrap_or(Method::Get);
        Ok(ResponseHead::parse(buf, limits, method)?.map(|h| response_msg(&h)))
    })
}

/// Split `bytes` at the given cut points (any order, duplicates allowed).
fn split_at<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|c| c.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    let mut parts = Vec::with_capacity(at.len() + 1);
    let mut prev = 0;
    for i in at {
        parts.push(&bytes[prev..i]);
        prev = i;
    }
    parts.push(&bytes[prev..]);
    parts
}

// === a fixed corpus, split at every offset ===

const PIPELINED_REQUESTS: &[u8] = b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nAccept: */*\r\n\r\n\
POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: 27\r\nExpect: 100-continue\r\n\r\n\
{\"model\":\"m\",\"stream\":true}\
POST /v1/embeddings HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n\
5;ext=\"a b\"\r\nhello\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Checksum: 1\r\nX-More: two words\r\n\r\n\
OPTIONS * HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n";

const RESPONSES: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
HTTP/1.1 204 No Content\r\n\r\n\
HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n0\r\nX-T: 1\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: to the end\n\n";

/// The request each response in [`RESPONSES`] answers (the 100 and 200 share one POST).
const RESPONSE_METHODS: &[Method] = &[
    Method::Post,
    Method::Post,
    Method::Delete,
    Method::Get,
    Method::Head,
    Method::Get,
    Method::Get,
];

#[test]
fn pipelined_requests_decode_as_expected() {
    let out = drive_requests([PIPELINED_REQUESTS], &Limits::default()).unwrap();
    assert!(out.leftover.is_empty());
    let summary: Vec<_> = out
        .msgs
        .iter()
        .map(|m| {
            (
                m.start.as_str(),
                m.framing,
                m.body.as_slice(),
                m.keep_alive,
                m.expect_continue,
                m.complete,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "GET /v1/models",
                BodyFraming::Empty,
                &b""[..],
                true,
                false,
                true
            ),
            (
                "POST /v1/chat/completions?x=1",
                BodyFraming::Length(27),
                &b"{\"model\":\"m\",\"stream\":true}"[..],
                true,
                true,
                true
            ),
            (
                "POST /v1/embeddings",
                BodyFraming::Chunked,
                &b"helloabcdefghijklmnopqrstuvwxyz"[..],
                true,
                false,
                true
            ),
            (
                "OPTIONS *",
                BodyFraming::Empty,
                &b""[..],
                false,
                false,
                true
            ),
        ]
    );
}

#[test]
fn responses_decode_as_expected() {
    let out = drive_responses([RESPONSES], &Limits::default(), RESPONSE_METHODS).unwrap();
    assert!(out.leftover.is_empty());
    let summary: Vec<_> = out
        .msgs
        .iter()
        .map(|m| {
            (
                m.start.as_str(),
                m.framing,
                m.body.as_slice(),
                m.keep_alive,
                m.complete,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("100", BodyFraming::Empty, &b""[..], true, true),
            ("200", BodyFraming::Length(5), &b"hello"[..], true, true),
            ("204", BodyFraming::Empty, &b""[..], true, true),
            ("304", BodyFraming::Empty, &b""[..], true, true),
            ("200", BodyFraming::Empty, &b""[..], true, true),
            ("200", BodyFraming::Chunked, &b"abc"[..], true, true),
            (
                "200",
                BodyFraming::CloseDelimited,
                &b"data: to the end\n\n"[..],
                false,
                true
            ),
        ]
    );
}

#[test]
fn requests_split_at_every_offset_decode_the_same() {
    let limits = Limits::default();
    let whole = drive_requests([PIPELINED_REQUESTS], &limits).unwrap();
    for i in 0..=PIPELINED_REQUESTS.len() {
        let (a, b) = PIPELINED_REQUESTS.split_at(i);
        assert_eq!(
            drive_requests([a, b], &limits).unwrap(),
            whole,
            "split at {i}"
        );
    }
    let bytewise = drive_requests(PIPELINED_REQUESTS.chunks(1), &limits).unwrap();
    assert_eq!(bytewise, whole, "one byte per read");
}

#[test]
fn responses_split_at_every_offset_decode_the_same() {
    let limits = Limits::default();
    let whole = drive_responses([RESPONSES], &limits, RESPONSE_METHODS).unwrap();
    for i in 0..=RESPONSES.len() {
        let (a, b) = RESPONSES.split_at(i);
        assert_eq!(
            drive_responses([a, b], &limits, RESPONSE_METHODS).unwrap(),
            whole,
            "split at {i}"
        );
    }
    let bytewise = drive_responses(RESPONSES.chunks(1), &limits, RESPONSE_METHODS).unwrap();
    assert_eq!(bytewise, whole, "one byte per read");
}

#[test]
fn every_prefix_of_a_connection_is_a_prefix_of_its_outcome() {
    // Cutting the input short never produces an error or a different message: only fewer.
    let limits = Limits::default();
    let whole = drive_requests([PIPELINED_REQUESTS], &limits).unwrap();
    for i in 0..PIPELINED_REQUESTS.len() {
        let part = drive_requests([&PIPELINED_REQUESTS[..i]], &limits).unwrap();
        for (j, m) in part.msgs.iter().enumerate() {
            let full = &whole.msgs[j];
            assert_eq!(
                (&m.start, &m.headers, m.framing),
                (&full.start, &full.headers, full.framing)
            );
            assert!(full.body.starts_with(&m.body), "prefix {i}");
        }
    }
}

// === generated messages ===

#[derive(Debug, Clone)]
enum GenFraming {
    Length,
    Chunked {
        sizes: Vec<usize>,
        ext: bool,
        trailers: Vec<(String, String)>,
    },
    /// Requests without a body; responses read to EOF.
    None,
}

#[derive(Debug, Clone)]
struct GenMessage {
    method: &'static str,
    status: u16,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    framing: GenFraming,
    close: bool,
    expect: bool,
}

fn token_name() -> impl Strategy<Value = String> {
    // `x-` keeps generated names clear of the fields that drive framing.
    "x-[a-z0-9-]{1,12}"
}

fn field_value() -> impl Strategy<Value = String> {
    // No leading/trailing whitespace: httparse trims it, and the test compares values exactly.
    "([!-~]([ -~]{0,24}[!-~])?)?"
}

fn gen_framing(max_body: usize) -> impl Strategy<Value = (Vec<u8>, GenFraming)> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..max_body).prop_map(|b| (b, GenFraming::Length)),
        (
            prop::collection::vec(any::<u8>(), 0..max_body),
            prop::collection::vec(1usize..700, 1..6),
            any::<bool>(),
            prop::collection::vec((token_name(), field_value()), 0..3),
        )
            .prop_map(|(b, sizes, ext, trailers)| (
                b,
                GenFraming::Chunked {
                    sizes,
                    ext,
                    trailers
                }
            )),
        Just((Vec::new(), GenFraming::None)),
    ]
}

fn gen_message(max_body: usize) -> impl Strategy<Value = GenMessage> {
    (
        prop::sample::select(&["GET", "POST", "PUT", "PATCH", "DELETE", "QUERY"][..]),
        prop::sample::select(&[200u16, 201, 202, 400, 404, 429, 500, 503][..]),
        "/[a-zA-Z0-9/._~%-]{0,30}(\\?[a-z0-9=&]{0,20})?",
        prop::collection::vec((token_name(), field_value()), 0..8),
        gen_framing(max_body),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(method, status, path, headers, (body, framing), close, expect)| GenMessage {
                method,
                status,
                path,
                headers,
                body,
                framing,
                close,
                expect,
            },
        )
}

/// Encode `m`'s body (as its framing says) after its head.
fn encode_body(m: &GenMessage, out: &mut BytesMut) {
    match &m.framing {
        GenFraming::Length | GenFraming::None => out.extend_from_slice(&m.body),
        GenFraming::Chunked {
            sizes,
            ext,
            trailers,
        } => {
            let mut rest = &m.body[..];
            for &size in sizes.iter().cycle() {
                if rest.is_empty() {
                    break;
                }
                let (chunk, tail) = rest.split_at(size.min(rest.len()));
                if *ext {
                    // write_chunk never emits extensions; write this line by hand.
                    out.extend_from_slice(
                        format!("{:X} ; name=\"v\\\"al\";flag\r\n", chunk.len()).as_bytes(),
                    );
                    out.extend_from_slice(chunk);
                    out.extend_from_slice(b"\r\n");
                } else {
                    write_chunk(out, chunk);
                }
                rest = tail;
            }
            if trailers.is_empty() {
                write_last_chunk(out);
            } else {
                out.extend_from_slice(if *ext { b"0;last\r\n" } else { b"0\r\n" });
                for (name, value) in trailers {
                    out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
                }
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

fn framing_field(m: &GenMessage) -> Option<(&'static str, String)> {
    match m.framing {
        GenFraming::Length => Some(("Content-Length", m.body.len().to_string())),
        GenFraming::Chunked { .. } => Some(("Transfer-Encoding", "chunked".to_owned())),
        GenFraming::None => None,
    }
}

/// Encode a request and the message the decoder should report for it.
fn encode_request(m: &GenMessage, out: &mut BytesMut) -> Msg {
    let mut fields: Vec<(String, String)> = vec![("Host".to_owned(), "gw.example".to_owned())];
    fields.extend(m.headers.iter().cloned());
    if let Some((name, value)) = framing_field(m) {
        fields.push((name.to_owned(), value));
    }
    if m.close {
        fields.push(("Connection".to_owned(), "close".to_owned()));
    }
    if m.expect {
        fields.push(("Expect".to_owned(), "100-continue".to_owned()));
    }
    let refs: Vec<(&str, &[u8])> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    write_request_head(out, m.method, &m.path, &refs);
    let body = match m.framing {
        GenFraming::None => Vec::new(),
        _ => m.body.clone(),
    };
    let framing = match m.framing {
        GenFraming::Length => BodyFraming::Length(m.body.len() as u64),
        GenFraming::Chunked { .. } => BodyFraming::Chunked,
        GenFraming::None => BodyFraming::Empty,
    };
    let has_body = framing == BodyFraming::Chunked || !body.is_empty();
    // A body-less request carries no body bytes on the wire.
    if !m.framing_is_none() {
        encode_body(m, out);
    }
    Msg {
        start: format!("{} {}", m.method, m.path),
        headers: fields
            .into_iter()
            .map(|(n, v)| (n, v.into_bytes()))
            .collect(),
        framing,
        keep_alive: !m.close,
        expect_continue: m.expect && has_body,
        body,
        complete: true,
    }
}

impl GenMessage {
    fn framing_is_none(&self) -> bool {
        matches!(self.framing, GenFraming::None)
    }
}

/// Encode a response and the message the decoder should report for it. Only the last response
/// on a connection may be close-delimited, so `last` decides what `GenFraming::None` means.
fn encode_response(m: &GenMessage, out: &mut BytesMut, last: bool) -> Msg {
    let mut gm = m.clone();
    if !last && gm.framing_is_none() {
        gm.framing = GenFraming::Length;
    }
    let mut fields: Vec<(String, String)> = gm.headers.clone();
    if let Some((name, value)) = framing_field(&gm) {
        fields.push((name.to_owned(), value));
    }
    if gm.close {
        fields.push(("Connection".to_owned(), "close".to_owned()));
    }
    let refs: Vec<(&str, &[u8])> = fields
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    write_response_head(out, gm.status, &refs);
    encode_body(&gm, out);
    let framing = match gm.framing {
        GenFraming::Length => BodyFraming::Length(gm.body.len() as u64),
        GenFraming::Chunked { .. } => BodyFraming::Chunked,
        GenFraming::None => BodyFraming::CloseDelimited,
    };
    Msg {
        start: gm.status.to_string(),
        headers: fields
            .into_iter()
            .map(|(n, v)| (n, v.into_bytes()))
            .collect(),
        framing,
        keep_alive: !gm.close && framing != BodyFraming::CloseDelimited,
        expect_continue: false,
        body: gm.body.clone(),
        complete: true,
    }
}

fn encode_requests(msgs: &[GenMessage]) -> (Vec<u8>, Vec<Msg>) {
    let mut out = BytesMut::new();
    let expected = msgs.iter().map(|m| encode_request(m, &mut out)).collect();
    (out.to_vec(), expected)
}

fn encode_responses(msgs: &[GenMessage]) -> (Vec<u8>, Vec<Msg>) {
    let mut out = BytesMut::new();
    let expected = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| encode_response(m, &mut out, i + 1 == msgs.len()))
        .collect();
    (out.to_vec(), expected)
}

/// Arbitrary edits of a valid message: overwrite, insert or delete bytes at random places.
fn mutate(bytes: &[u8], edits: &[(Index, u8, u8)]) -> Vec<u8> {
    let mut v = bytes.to_vec();
    for (at, op, byte) in edits {
        let i = at.index(v.len() + 1);
        match op % 3 {
            0 if i < v.len() => v[i] = *byte,
            1 => v.insert(i, *byte),
            _ if i < v.len() => {
                v.remove(i);
            }
            _ => v.push(*byte),
        }
    }
    v
}

/// Bytes that exercise the framing paths far more often than uniform noise does.
fn framing_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        3 => prop::sample::select(&b"0123456789abcdefABCDEF;= \t\r\n:xX\x00\x7f"[..]),
        1 => any::<u8>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Small connections, split at every single offset.
    #[test]
    fn generated_requests_split_at_every_offset(msgs in prop::collection::vec(gen_message(200), 1..3)) {
        let (wire, expected) = encode_requests(&msgs);
        let limits = Limits::default();
        let whole = drive_requests([&wire[..]], &limits).unwrap();
        prop_assert_eq!(&whole.msgs, &expected);
        prop_assert!(whole.leftover.is_empty());
        for i in 0..=wire.len() {
            let (a, b) = wire.split_at(i);
            prop_assert_eq!(&drive_requests([a, b], &limits).unwrap(), &whole, "split at {}", i);
        }
    }

    #[test]
    fn generated_responses_split_at_every_offset(msgs in prop::collection::vec(gen_message(200), 1..3)) {
        let (wire, expected) = encode_responses(&msgs);
        let limits = Limits::default();
        let methods = vec![Method::Get; msgs.len()];
        let whole = drive_responses([&wire[..]], &limits, &methods).unwrap();
        prop_assert_eq!(&whole.msgs, &expected);
        for i in 0..=wire.len() {
            let (a, b) = wire.split_at(i);
            prop_assert_eq!(&drive_responses([a, b], &limits, &methods).unwrap(), &whole, "split at {}", i);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Larger connections, split into many reads at random offsets.
    #[test]
    fn generated_requests_random_multi_splits(
        msgs in prop::collection::vec(gen_message(4000), 1..5),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let (wire, expected) = encode_requests(&msgs);
        let limits = Limits::default();
        let out = drive_requests(split_at(&wire, &cuts), &limits).unwrap();
        prop_assert_eq!(out.msgs, expected);
        prop_assert!(out.leftover.is_empty());
    }

    #[test]
    fn generated_responses_random_multi_splits(
        msgs in prop::collection::vec(gen_message(4000), 1..5),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let (wire, expected) = encode_responses(&msgs);
        let methods = vec![Method::Get; msgs.len()];
        let out = drive_responses(split_at(&wire, &cuts), &Limits::default(), &methods).unwrap();
        prop_assert_eq!(out.msgs, expected);
    }

    /// Arbitrary bytes never panic, and whether they decode (and to what) does not depend on
    /// how they were split.
    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let limits = Limits::default();
        let whole = drive_requests([&bytes[..]], &limits);
        let split = drive_requests(split_at(&bytes, &cuts), &limits);
        prop_assert_eq!(whole.is_ok(), split.is_ok());
        if let (Ok(w), Ok(s)) = (&whole, &split) { prop_assert_eq!(w, s); }
        let whole = drive_responses([&bytes[..]], &limits, &[Method::Get]);
        let split = drive_responses(split_at(&bytes, &cuts), &limits, &[Method::Get]);
        prop_assert_eq!(whole.is_ok(), split.is_ok());
        if let (Ok(w), Ok(s)) = (&whole, &split) { prop_assert_eq!(w, s); }
    }

    /// Valid connections with a few random edits: deep paths of the parser see corrupt input.
    #[test]
    fn mutated_messages_never_panic(
        msgs in prop::collection::vec(gen_message(300), 1..3),
        edits in prop::collection::vec((any::<Index>(), any::<u8>(), framing_byte()), 1..6),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let small = Limits { max_head_bytes: 256, max_headers: 8, max_chunk_ext_bytes: 16, max_trailer_bytes: 32, max_body_bytes: 2000 };
        for limits in [Limits::default(), small] {
            let (wire, _) = encode_requests(&msgs);
            let bad = mutate(&wire, &edits);
            let whole = drive_requests([&bad[..]], &limits);
            let split = drive_requests(split_at(&bad, &cuts), &limits);
            prop_assert_eq!(whole.is_ok(), split.is_ok());
            if let (Ok(w), Ok(s)) = (&whole, &split) { prop_assert_eq!(w, s); }

            let (wire, _) = encode_responses(&msgs);
            let bad = mutate(&wire, &edits);
            let methods = vec![Method::Get; msgs.len()];
            let whole = drive_responses([&bad[..]], &limits, &methods);
            let split = drive_responses(split_at(&bad, &cuts), &limits, &methods);
            prop_assert_eq!(whole.is_ok(), split.is_ok());
            if let (Ok(w), Ok(s)) = (&whole, &split) { prop_assert_eq!(w, s); }
        }
    }

    /// Chunked bodies built from framing-heavy bytes: never panic, same verdict for any split.
    #[test]
    fn arbitrary_chunked_bodies_never_panic(
        bytes in prop::collection::vec(framing_byte(), 0..400),
        cuts in prop::collection::vec(any::<Index>(), 0..8),
    ) {
        let limits = Limits { max_chunk_ext_bytes: 8, max_trailer_bytes: 24, max_body_bytes: 64, ..Limits::default() };
        let run = |parts: Vec<&[u8]>| drive(parts, &limits, false, {
            let mut first = true;
            move |_, _| {
                // One synthetic chunked message, then stop parsing heads.
                Ok(std::mem::take(&mut first).then(|| Msg {
                    start: String::new(),
                    headers: Vec::new(),
                    framing: BodyFraming::Chunked,
                    keep_alive: true,
                    expect_continue: false,
                    body: Vec::new(),
                    complete: false,
                }))
            }
        });
        let whole = run(vec![&bytes[..]]);
        let split = run(split_at(&bytes, &cuts));
        prop_assert_eq!(whole.is_ok(), split.is_ok());
        if let (Ok(w), Ok(s)) = (&whole, &split) { prop_assert_eq!(w, s); }
    }
}

proptest! {
    /// Whichever line ends in a bare LF (leading empty lines, start line, any field, the blank
    /// line), the head is rejected with exactly that error; all-CRLF heads are accepted.
    #[test]
    fn bare_lf_is_rejected_on_any_line(
        bare in prop::collection::vec(prop::bool::weighted(0.15), 12),
        lead in 0usize..3,
        fields in 0usize..8,
        response in any::<bool>(),
    ) {
        let mut head = Vec::new();
        let mut line = 0;
        let mut end = |head: &mut Vec<u8>| {
            head.extend_from_slice(if bare[line] { b"\n" } else { b"\r\n" });
            line += 1;
        };
        for _ in 0..lead {
            end(&mut head);
        }
        head.extend_from_slice(if response { b"HTTP/1.1 200 OK" } else { b"GET /x HTTP/1.1" });
        end(&mut head);
        head.extend_from_slice(b"Host: a");
        end(&mut head);
        for i in 0..fields {
            head.extend_from_slice(format!("X-F{i}: v {i}").as_bytes());
            end(&mut head);
        }
        end(&mut head);
        let any_bare = bare[..line].iter().any(|&b| b);

        let mut buf = BytesMut::from(&head[..]);
        let limits = Limits::default();
        let ok = if response {
            ResponseHead::parse(&mut buf, &limits, Method::Get).map(|h| h.is_some())
        } else {
            RequestHead::parse(&mut buf, &limits).map(|h| h.is_some())
        };
        if any_bare {
            prop_assert_eq!(ok, Err(HttpError::Malformed("bare LF in head")));
        } else {
            prop_assert_eq!(ok, Ok(true));
        }
    }
}
