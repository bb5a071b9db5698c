//! Throughput of the guardrails' text scan: every string of a ~64 KiB chat-completions request
//! found with `for_each_string` and decoded with `unescape_into`, next to scanning alone and to
//! serde_json building a `Value` from the same bytes (the baseline, measured in the same run).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tollgate_protocol::json_text::{escape_into, for_each_string, unescape_into};

const TARGET_LEN: usize = 64 * 1024;

/// A chat-completions request of about 64 KiB: a system prompt, alternating user and assistant
/// turns of a few hundred bytes (some as content parts), a tool, sampling parameters. About one
/// turn in three carries escapes: quotes, newlines, a tab, a `\u00e9` and a surrogate pair.
fn chat_body() -> Vec<u8> {
    const PLAIN: &[&str] = &[
        "Ticket 48213: the VPN client on my laptop disconnects every ten minutes since the update on Monday. I already reinstalled it and rebooted twice, and the problem persists on both the office network and at home. What should I try next before I escalate?",
        "Thanks for the details. Two quick checks would narrow this down: is the disconnect exactly every ten minutes, and does it also happen on a different network such as a phone hotspot? If both are true, the rekey interval on the client profile is the likely cause.",
        "Summarise the attached meeting notes in five bullet points for the weekly status email, keeping names of owners and due dates, and leave out anything about the budget discussion because that is still confidential until the board meets next month.",
        "Here is the summary: the migration is on track for the end of the quarter, the load test found one slow query that Priya is fixing, the on-call rota changes next week, the design review moved to Thursday, and the team agreed to retire the old dashboard.",
    ];
    const ESCAPED: &[&str] = &[
        "The log says \"rekey timeout\" right before each drop.\nLines:\n\t10:01:07 rekey start\n\t10:01:37 rekey timeout\nDoes that match what you expected? Caf\u{e9} wifi too.",
        "Use this config:\n```json\n{\"rekey_interval\": 3600, \"dpd\": \"30s\"}\n```\nThen restart the client with `vpnctl restart` and watch the log. \u{1f980} Let me know.",
    ];
    let mut messages = Vec::new();
    messages.push(r#"{"role":"system","content":"You are a concise assistant for an internal support desk. Answer in plain English, cite the ticket id when one is given, and never invent policy. If unsure, say so and suggest who to ask."}"#.to_owned());
    let mut turn = 0usize;
    let mut len = 1024;
    while len < TARGET_LEN {
        let role = if turn.is_multiple_of(2) {
            "user"
        } else {
            "assistant"
        };
        let text = if turn % 3 == 2 {
            ESCAPED[turn % ESCAPED.len()]
        } else {
            PLAIN[turn % PLAIN.len()]
        };
        let mut escaped = Vec::new();
        escape_into(text, &mut escaped);
        let mut escaped = String::from_utf8(escaped).unwrap();
        if turn % 3 == 2 {
            // serde-style writers leave non-ASCII raw; some clients send \u escapes instead.
            escaped = escaped
                .replace('é', "\\u00e9")
                .replace('🦀', "\\ud83e\\udd80");
        }
        let message = if turn % 5 == 4 {
            format!(
                r#"{{"role":"{role}","content":[{{"type":"text","text":"{escaped}"}},{{"type":"image_url","image_url":{{"url":"https://example.invalid/screenshots/{turn}.png","detail":"low"}}}}]}}"#
            )
        } else {
            format!(r#"{{"role":"{role}","content":"{escaped}","name":"employee-{turn}"}}"#)
        };
        len += message.len() + 1;
        messages.push(message);
        turn += 1;
    }
    let body = format!(
        r#"{{"model":"gpt-4o-mini","messages":[{}],"tools":[{{"type":"function","function":{{"name":"lookup_ticket","description":"Fetch a support ticket by id","parameters":{{"type":"object","properties":{{"id":{{"type":"string"}}}},"required":["id"]}}}}}}],"temperature":0.3,"top_p":1,"max_completion_tokens":400,"user":"employee-5521","stream":true}}"#,
        messages.join(",")
    );
    let _: serde_json::Value = serde_json::from_str(&body).expect("bench body is valid JSON");
    body.into_bytes()
}

fn json_text(c: &mut Criterion) {
    let body = chat_body();
    let mut strings = 0usize;
    for_each_string(&body, |_| strings += 1).unwrap();
    let mut group = c.benchmark_group("json_text");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("scan_unescape", |b| {
        let mut text = String::with_capacity(4096);
        b.iter(|| {
            let mut chars = 0usize;
            let mut failed = false;
            for_each_string(black_box(&body), |s| {
                text.clear();
                failed |= unescape_into(s.raw, &mut text).is_err();
                chars += text.len();
            })
            .unwrap();
            assert!(!failed);
            black_box(chars)
        });
    });
    group.bench_function("scan_only", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for_each_string(black_box(&body), |_| n += 1).unwrap();
            assert_eq!(n, strings);
        });
    });
    group.bench_function("serde_json_value_baseline", |b| {
        b.iter(|| {
            let value: serde_json::Value = serde_json::from_slice(black_box(&body)).unwrap();
            black_box(value)
        });
    });
    group.finish();
}

criterion_group!(benches, json_text);
criterion_main!(benches);
