//! Micro-benchmarks for the streaming hot path: SSE decoding of a realistic OpenAI chat stream
//! arriving in 1500-byte reads (alone, and with the per-chunk usage check the proxy runs), and
//! request inspection plus model rewrite on a ~1 KiB chat request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate_protocol::openai::{inspect_request, inspect_stream_chunk, rewrite_request, Endpoint};
use tollgate_protocol::sse::{write_event, SseDecoder};

const READ_SIZE: usize = 1500;

/// 200 content chunks shaped like gpt-4o-mini with `include_usage` (so every chunk carries
/// `"usage":null`), the finish chunk, the usage-only chunk and `[DONE]`.
fn openai_stream() -> Vec<u8> {
    const HEAD: &str = r#""id":"chatcmpl-AQ7Zk9bX2cDqXoH1ZyXwVuTs","object":"chat.completion.chunk","created":1730000000,"model":"gpt-4o-mini-2024-07-18","system_fingerprint":"fp_0ba0d124f1""#;
    let words = [
        "Hello",
        " there",
        ",",
        " the",
        " quick",
        " brown",
        " fox",
        " jumps",
        " over",
        " lazy",
        " dogs",
        ".",
        " Here",
        "'s",
        " some",
        " \\\"quoted\\\"",
        " text",
        "\\n",
        " café",
        " 🦀",
    ];
    let mut out = BytesMut::new();
    write_event(
        &mut out,
        None,
        &format!(
            r#"{{{HEAD},"choices":[{{"index":0,"delta":{{"role":"assistant","content":"","refusal":null}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
        ),
    );
    for i in 0..200 {
        let word = words[i % words.len()];
        write_event(
            &mut out,
            None,
            &format!(
                r#"{{{HEAD},"choices":[{{"index":0,"delta":{{"content":"{word}"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
            ),
        );
    }
    write_event(
        &mut out,
        None,
        &format!(
            r#"{{{HEAD},"choices":[{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"stop"}}],"usage":null}}"#
        ),
    );
    write_event(
        &mut out,
        None,
        &format!(
            r#"{{{HEAD},"choices":[],"usage":{{"prompt_tokens":812,"completion_tokens":201,"total_tokens":1013,"prompt_tokens_details":{{"cached_tokens":512,"audio_tokens":0}},"completion_tokens_details":{{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}}}}"#
        ),
    );
    write_event(&mut out, None, "[DONE]");
    out.to_vec()
}

/// A ~1 KiB chat request: system + user + assistant turns, a tool, sampling parameters.
fn chat_request() -> Vec<u8> {
    let body = r#"{
  "model": "gpt-4o-mini",
  "messages": [
    {"role": "system", "content": "You are a concise assistant for an internal support desk. Answer in plain English, cite the ticket id when one is given, and never invent policy. If unsure, say so and suggest who to ask."},
    {"role": "user", "content": "Ticket #48213: the VPN client on my laptop disconnects every ten minutes since the update on Monday. I already reinstalled it and rebooted twice. What should I try next?"},
    {"role": "assistant", "content": "Thanks. Two quick checks: is the disconnect exactly every ten minutes, and does it also happen on a different network (for example a phone hotspot)?"},
    {"role": "user", "content": "Yes, almost exactly ten minutes, and it also happens on my hotspot. The log says \"rekey timeout\" right before each drop."}
  ],
  "tools": [{"type": "function", "function": {"name": "lookup_ticket", "description": "Fetch a support ticket by id", "parameters": {"type": "object", "properties": {"id": {"type": "string"}}, "required": ["id"]}}}],
  "temperature": 0.3,
  "top_p": 1,
  "max_completion_tokens": 400,
  "user": "employee-5521",
  "stream": true
}"#;
    body.as_bytes().to_vec()
}

fn sse(c: &mut Criterion) {
    let stream = openai_stream();
    let mut group = c.benchmark_group("sse");
    group.throughput(Throughput::Bytes(stream.len() as u64));
    group.bench_function("sse_decode", |b| {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        b.iter(|| {
            let mut dec = SseDecoder::new(1 << 20);
            let mut frames = 0usize;
            for read in stream.chunks(READ_SIZE) {
                buf.extend_from_slice(read);
                while let Some(frame) = dec.decode(&mut buf).unwrap() {
                    frames += 1;
                    black_box(&frame);
                }
            }
            assert!(!dec.finish(&mut buf));
            assert_eq!(frames, 204);
        });
    });
    group.bench_function("sse_decode_inspect", |b| {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        let mut scratch = Vec::with_capacity(4096);
        b.iter(|| {
            let mut dec = SseDecoder::new(1 << 20);
            let mut usage = None;
            for read in stream.chunks(READ_SIZE) {
                buf.extend_from_slice(read);
                while let Some(frame) = dec.decode(&mut buf).unwrap() {
                    if frame.is_done() {
                        continue;
                    }
                    if let Some(data) = frame.data.as_deref() {
                        let info = inspect_stream_chunk(data.as_bytes(), &mut scratch).unwrap();
                        if info.usage.is_some() {
                            usage = info.usage;
                        }
                    }
                }
            }
            assert_eq!(usage.map(|u| u.total_tokens), Some(1013));
        });
    });
    group.finish();
}

fn request(c: &mut Criterion) {
    let body = chat_request();
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("request_extract", |b| {
        let mut scratch = Vec::with_capacity(4096);
        let mut out = BytesMut::with_capacity(4096);
        b.iter(|| {
            let summary =
                inspect_request(Endpoint::ChatCompletions, black_box(&body), &mut scratch).unwrap();
            out.clear();
            rewrite_request(&body, &summary, "gpt-4o-mini-2024-07-18", true, &mut out);
            black_box(&out);
        });
    });
    group.finish();
}

criterion_group!(benches, sse, request);
criterion_main!(benches);
