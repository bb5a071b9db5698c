//! Fixture-driven checks of the public SSE and OpenAI API, used the way the proxy uses it:
//! decode an upstream stream in network-sized reads, forward raw frames, take usage from the
//! chunks, and render an error as a terminal event the same decoder accepts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bytes::BytesMut;
use tollgate_protocol::error_body::ErrorBody;
use tollgate_protocol::openai::{
    inspect_request, inspect_stream_chunk, response_usage, rewrite_request, Endpoint, Usage,
};
use tollgate_protocol::sse::{SseDecoder, SseFrame};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

fn decode(stream: &[u8], read: usize) -> (Vec<SseFrame>, bool) {
    let mut dec = SseDecoder::new(64 * 1024);
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in stream.chunks(read) {
        buf.extend_from_slice(chunk);
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            frames.push(f);
        }
    }
    while let Some(f) = dec.decode_final(&mut buf).unwrap() {
        frames.push(f);
    }
    let truncated = dec.finish(&mut buf);
    (frames, truncated)
}

#[test]
fn proxying_a_usage_stream_forwards_bytes_and_finds_usage() {
    let stream = fixture("openai_chat_stream_usage.sse");
    for read in [1, 7, 64, 1500] {
        let (frames, truncated) = decode(&stream, read);
        assert!(!truncated);
        let mut forwarded = Vec::new();
        let mut usage = None;
        let mut dropped = 0;
        let mut scratch = Vec::new();
        for f in &frames {
            if !f.is_done() {
                let info =
                    inspect_stream_chunk(f.data.as_deref().unwrap().as_bytes(), &mut scratch)
                        .unwrap();
                if info.usage.is_some() {
                    usage = info.usage;
                }
                // A client that did not ask for usage does not get the usage-only chunk.
                if info.usage_only {
                    dropped += 1;
                    continue;
                }
            }
            forwarded.extend_from_slice(&f.raw);
        }
        assert_eq!(dropped, 1);
        assert_eq!(
            usage,
            Some(Usage {
                prompt_tokens: 9,
                completion_tokens: 5,
                total_tokens: 14,
                cached_tokens: 3
            })
        );
        assert!(forwarded.ends_with(b"data: [DONE]\n\n"));
        assert_eq!(
            forwarded.len() + frames[frames.len() - 2].raw.len(),
            stream.len()
        );
    }
}

#[test]
fn mid_stream_error_then_our_terminal_event() {
    let stream = fixture("openai_stream_error.sse");
    let (frames, truncated) = decode(&stream, 100);
    assert!(!truncated);
    assert!(
        !frames.iter().any(SseFrame::is_done),
        "no [DONE] after an error"
    );
    let last: serde_json::Value = serde_json::from_str(frames[2].data.as_deref().unwrap()).unwrap();
    assert_eq!(last["error"]["type"], "server_error");

    // What the gateway appends for a cut stream decodes as one more frame of the same shape.
    let mut out = BytesMut::new();
    ErrorBody {
        message: "upstream closed the stream early",
        error_type: "server_error",
        param: None,
        code: Some("upstream_closed"),
    }
    .write_sse(&mut out);
    let (ours, truncated) = decode(&out, 3);
    assert!(!truncated);
    assert_eq!(ours.len(), 1);
    let v: serde_json::Value = serde_json::from_str(ours[0].data.as_deref().unwrap()).unwrap();
    assert_eq!(v["error"]["code"], "upstream_closed");
    assert_eq!(v["error"]["param"], serde_json::Value::Null);
}

#[test]
fn truncated_fixture_is_reported() {
    let stream = fixture("openai_chat_stream.sse");
    let cut = &stream[..stream.len() - 5];
    let (frames, truncated) = decode(cut, 1500);
    assert!(truncated);
    assert!(!frames.iter().any(SseFrame::is_done));
}

#[test]
fn request_fixture_round_trip() {
    let body = fixture("chat_request.json");
    let mut scratch = Vec::new();
    let summary = inspect_request(Endpoint::ChatCompletions, &body, &mut scratch).unwrap();
    assert_eq!(summary.model, "gpt-4o-mini");
    let mut out = BytesMut::new();
    rewrite_request(&body, &summary, "gpt-4o-mini", false, &mut out);
    assert_eq!(
        &out[..],
        &body[..],
        "same model, no forcing: byte-identical"
    );
}

#[test]
fn response_fixtures_usage() {
    let mut scratch = Vec::new();
    let u = response_usage(&fixture("chat_completion_response.json"), &mut scratch).unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (9, 12, 21)
    );
    let u = response_usage(&fixture("embeddings_response.json"), &mut scratch).unwrap();
    assert_eq!(
        (u.prompt_tokens, u.completion_tokens, u.total_tokens),
        (8, 0, 8)
    );
}
