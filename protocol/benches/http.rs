//! Micro-benchmarks for the HTTP/1.1 codec's hot path: parsing a realistic OpenAI SDK request
//! head, decoding a chunked body, and re-serializing a head. `httparse_baseline` is httparse
//! alone on the same bytes, so the cost of our strictness shows up as a ratio.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::mem::MaybeUninit;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tollgate_protocol::http::{
    write_chunk, write_last_chunk, write_request_head, BodyChunk, BodyDecoder, BodyFraming, Limits,
    RequestHead,
};

/// What the OpenAI Python SDK sends for `client.chat.completions.create(...)` (trimmed of the
/// rarer x-stainless fields), about 400 bytes.
const CHAT_HEAD: &[u8] = b"POST /v1/chat/completions HTTP/1.1\r\n\
Host: api.openai.com\r\n\
Accept: application/json\r\n\
Content-Type: application/json\r\n\
User-Agent: OpenAI/Python 1.54.4\r\n\
X-Stainless-Lang: python\r\n\
X-Stainless-Package-Version: 1.54.4\r\n\
X-Stainless-OS: Linux\r\n\
X-Stainless-Arch: x64\r\n\
X-Stainless-Runtime: CPython\r\n\
X-Stainless-Runtime-Version: 3.12.7\r\n\
Authorization: Bearer sk-tollgate-demo-0123456789abcdef\r\n\
Content-Length: 97\r\n\
\r\n";

fn parse_request_head(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Bytes(CHAT_HEAD.len() as u64));
    // A long-lived read buffer, as on a keep-alive connection: each iteration "reads" the head
    // into it (a ~400-byte copy) and parses it; dropping the head lets the buffer reuse its
    // space, so there is no allocation except the head's field table.
    let mut buf = BytesMut::with_capacity(4096);
    g.bench_function("parse_request_head", |b| {
        b.iter(|| {
            buf.extend_from_slice(CHAT_HEAD);
            let head = RequestHead::parse(&mut buf, &limits).unwrap().unwrap();
            black_box(head.framing);
            black_box(head.header("authorization"));
        })
    });
    g.bench_function("httparse_baseline", |b| {
        b.iter(|| {
            let mut table = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; 128];
            let mut req = httparse::Request::new(&mut []);
            let n = req
                .parse_with_uninit_headers(black_box(CHAT_HEAD), &mut table[..100])
                .unwrap();
            black_box((n, req.headers.len()));
        })
    });
    g.bench_function("write_request_head", |b| {
        let mut out = BytesMut::with_capacity(1024);
        let fields: [(&str, &[u8]); 6] = [
            ("host", b"api.openai.com"),
            ("accept", b"application/json"),
            ("content-type", b"application/json"),
            ("user-agent", b"OpenAI/Python 1.54.4"),
            ("authorization", b"Bearer sk-upstream-0123456789abcdef"),
            ("content-length", b"97"),
        ];
        b.iter(|| {
            out.clear();
            write_request_head(&mut out, "POST", "/v1/chat/completions", black_box(&fields));
            black_box(out.len());
        })
    });
    g.finish();
}

fn chunked_decode(c: &mut Criterion) {
    let body = vec![b'x'; 64 * 1024];
    let mut wire = BytesMut::new();
    for chunk in body.chunks(1024) {
        write_chunk(&mut wire, chunk);
    }
    write_last_chunk(&mut wire);
    let wire = wire.freeze();

    let mut g = c.benchmark_group("http");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("chunked_decode", |b| {
        b.iter_batched_ref(
            || BytesMut::from(&wire[..]),
            |buf| {
                let mut dec = BodyDecoder::new(BodyFraming::Chunked, 1 << 20).unwrap();
                let mut total = 0;
                loop {
                    match dec.decode(buf).unwrap() {
                        BodyChunk::Data(d) => total += d.len(),
                        BodyChunk::Done => break,
                        BodyChunk::NeedMore => unreachable!("whole body is buffered"),
                    }
                }
                assert_eq!(total, 64 * 1024);
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, parse_request_head, chunked_decode);
criterion_main!(benches);
