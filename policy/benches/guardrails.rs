//! Guardrail scanning throughput on one core: a 1,000-phrase deny list, and the default
//! profile of `config/examples/guardrails.toml` (prompt-injection phrases and payment cards
//! blocked, emails and phone numbers masked, secrets blocked), over prose-like text.
//!
//! `cargo bench -p tollgate-policy --bench guardrails`

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tollgate_config::guardrails::{
    Detector, GuardAction, GuardrailProfile, GuardrailRule, GuardrailsConfig, WordList,
};
use tollgate_policy::guardrails::{Guardrails, ScanScratch, Session, Side, TextScan};

/// Deterministic pseudo-random numbers (xorshift), so every run scans the same text.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "for",
    "that",
    "with",
    "on",
    "as",
    "are",
    "this",
    "be",
    "by",
    "from",
    "or",
    "at",
    "an",
    "it",
    "we",
    "can",
    "you",
    "your",
    "our",
    "request",
    "service",
    "model",
    "response",
    "token",
    "latency",
    "error",
    "config",
    "deploy",
    "cluster",
    "customer",
    "invoice",
    "report",
    "quarter",
    "revenue",
    "summary",
    "please",
    "review",
    "function",
    "returns",
    "value",
    "string",
    "number",
    "list",
    "table",
    "query",
    "database",
    "index",
    "cache",
    "memory",
    "thread",
    "worker",
    "queue",
    "message",
    "stream",
    "chunk",
    "header",
    "payload",
    "schema",
    "field",
    "version",
    "release",
    "notes",
    "changes",
    "fixed",
    "issue",
    "ticket",
    "team",
    "meeting",
    "tomorrow",
    "morning",
    "project",
    "budget",
    "cost",
    "price",
    "order",
    "shipping",
    "address",
    "delivery",
    "weather",
    "travel",
    "hotel",
    "flight",
    "translate",
    "French",
    "German",
    "explain",
    "example",
    "simple",
    "detailed",
    "steps",
    "first",
    "second",
    "finally",
    "because",
    "however",
    "therefore",
    "about",
    "between",
];

/// About `len` bytes of sentences: words, some numbers, punctuation, line breaks.
fn prose(len: usize, seed: u64) -> String {
    let mut rng = Rng(seed);
    let mut s = String::with_capacity(len + 64);
    while s.len() < len {
        let words = 6 + rng.below(14);
        for i in 0..words {
            if i > 0 {
                s.push(' ');
            }
            match rng.below(20) {
                0 => s.push_str(&(rng.below(10_000)).to_string()),
                1 => s.push_str(&format!("{}.{}", rng.below(100), rng.below(100))),
                _ => s.push_str(WORDS[rng.below(WORDS.len())]),
            }
        }
        s.push_str(if rng.below(8) == 0 { ".\n" } else { ". " });
    }
    s
}

/// `n` distinct made-up phrases of one to three pseudo-words (none occurs in [`prose`]).
fn deny_phrases(n: usize) -> Vec<String> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let syllables = [
        "zor", "quix", "vel", "tranz", "obb", "kly", "murn", "praq", "dex", "wyl",
    ];
    let mut out = std::collections::BTreeSet::new();
    while out.len() < n {
        let words = 1 + rng.below(3);
        let phrase: Vec<String> = (0..words)
            .map(|_| {
                (0..2 + rng.below(2))
                    .map(|_| syllables[rng.below(syllables.len())])
                    .collect()
            })
            .collect();
        out.insert(phrase.join(" "));
    }
    out.into_iter().collect()
}

fn rule(id: &str, detector: Detector, action: GuardAction) -> GuardrailRule {
    let placeholder = detector.default_label().unwrap_or("DENY").to_owned();
    GuardrailRule {
        id: id.into(),
        detector,
        action,
        input: true,
        output: true,
        placeholder,
    }
}

fn compile(rules: Vec<GuardrailRule>) -> Guardrails {
    Guardrails::compile(&GuardrailsConfig {
        default_profile: Some("bench".into()),
        profiles: vec![GuardrailProfile {
            name: "bench".into(),
            allow: Vec::new(),
            restore_masked: false,
            rules,
        }],
    })
    .unwrap()
}

fn deny_list() -> Guardrails {
    compile(vec![rule(
        "deny",
        Detector::Words(WordList {
            phrases: deny_phrases(1_000),
            whole_word: true,
            case_sensitive: false,
        }),
        GuardAction::Block,
    )])
}

/// The default profile of `config/examples/guardrails.toml`.
fn default_profile() -> Guardrails {
    compile(vec![
        rule(
            "prompt-injection",
            Detector::PromptInjection,
            GuardAction::Block,
        ),
        rule("payment-cards", Detector::PaymentCard, GuardAction::Block),
        rule("emails", Detector::Email, GuardAction::Mask),
        rule("phones", Detector::Phone, GuardAction::Mask),
        rule("secrets", Detector::Secrets, GuardAction::Block),
    ])
}

fn scan(c: &mut Criterion) {
    let text = prose(1 << 20, 7);
    let mut group = c.benchmark_group("guardrails");
    group.throughput(Throughput::Bytes(text.len() as u64));
    for (name, guardrails) in [
        ("deny_list_1000", deny_list()),
        ("default_profile", default_profile()),
    ] {
        let profile = guardrails.default_profile().unwrap().clone();
        let mut scratch = ScanScratch::new();
        // Clean text: the verdict is "pass" and nothing is rewritten.
        let mut session = Session::new();
        assert_eq!(
            profile.scan_text(Side::Input, &text, &mut session, &mut scratch),
            Ok(None),
            "{name}: the bench text must be clean"
        );
        group.bench_function(format!("{name}/whole_1MiB"), |b| {
            b.iter(|| {
                let mut session = Session::new();
                black_box(profile.scan_text(
                    Side::Input,
                    black_box(&text),
                    &mut session,
                    &mut scratch,
                ))
            })
        });
        // A stream of ~4-byte deltas, as models send them.
        let pieces: Vec<&str> = {
            let mut v = Vec::new();
            let mut last = 0;
            for (i, _) in text.char_indices().step_by(4).skip(1) {
                v.push(&text[last..i]);
                last = i;
            }
            v.push(&text[last..]);
            v
        };
        group.bench_function(format!("{name}/stream_4B_deltas_1MiB"), |b| {
            let mut out = String::with_capacity(text.len());
            b.iter(|| {
                out.clear();
                let mut session = Session::new();
                let mut scan = TextScan::new(Side::Output);
                for piece in &pieces {
                    scan.push(&profile, piece, &mut session, &mut scratch, &mut out)
                        .unwrap();
                }
                scan.finish(&profile, &mut session, &mut scratch, &mut out)
                    .unwrap();
                black_box(out.len())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, scan);
criterion_main!(benches);
