//! The cost of translation per request, stage by stage (OpenAI client -> Anthropic upstream):
//! parse the client request, encode it for Anthropic, decode Anthropic's answer, encode the
//! answer for the client. Pass-through skips all four (only `openai::inspect_request` runs).
#![allow(clippy::unwrap_used)]

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tollgate_protocol::chat::ChatRequest;
use tollgate_protocol::openai::{inspect_request, Endpoint};
use tollgate_protocol::providers::anthropic::AnthropicAdapter;
use tollgate_protocol::providers::{Adapter, Target};

const REQUEST: &[u8] = br#"{"model":"claude","messages":[{"role":"system","content":"You are brief."},{"role":"user","content":"Say hello to the gateway, please, in one short sentence."}],"max_tokens":64,"temperature":0.2}"#;
const RESPONSE: &[u8] = br#"{"id":"msg_01","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[{"type":"text","text":"Tollgate mock tokens flow through the gateway like water through well placed pipes. Tollgate mock"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":14,"output_tokens":16,"cache_read_input_tokens":0}}"#;

fn target() -> Target<'static> {
    Target {
        authority: "api.anthropic.com",
        base_path: "",
        model: "claude-sonnet-4-5",
        api_key: Some("sk-ant-bench"),
        api_version: None,
        aws: None,
        now_unix: 1_700_000_000,
    }
}

fn translation(c: &mut Criterion) {
    let adapter = AnthropicAdapter;
    let target = target();
    let request: ChatRequest = serde_json::from_slice(REQUEST).unwrap();
    let response = adapter
        .decode_response(RESPONSE, "claude-sonnet-4-5")
        .unwrap();
    let mut scratch = Vec::new();

    c.bench_function("translate/inspect_only (pass-through)", |b| {
        b.iter(|| {
            inspect_request(Endpoint::ChatCompletions, black_box(REQUEST), &mut scratch).unwrap()
        })
    });
    c.bench_function("translate/parse_request", |b| {
        b.iter(|| serde_json::from_slice::<ChatRequest>(black_box(REQUEST)).unwrap())
    });
    c.bench_function("translate/anthropic_encode_request", |b| {
        b.iter(|| {
            adapter
                .encode_request(black_box(&request), &target)
                .unwrap()
        })
    });
    c.bench_function("translate/anthropic_decode_response", |b| {
        b.iter(|| {
            adapter
                .decode_response(black_box(RESPONSE), "claude-sonnet-4-5")
                .unwrap()
        })
    });
    c.bench_function("translate/encode_openai_response", |b| {
        b.iter(|| serde_json::to_vec(black_box(&response)).unwrap())
    });
    c.bench_function("translate/round_trip", |b| {
        b.iter(|| {
            let req: ChatRequest = serde_json::from_slice(black_box(REQUEST)).unwrap();
            let up = adapter.encode_request(&req, &target).unwrap();
            let resp = adapter
                .decode_response(black_box(RESPONSE), "claude-sonnet-4-5")
                .unwrap();
            (up, serde_json::to_vec(&resp).unwrap())
        })
    });
}

criterion_group!(benches, translation);
criterion_main!(benches);
