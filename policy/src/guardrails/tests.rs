#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use tollgate_config::guardrails::{
    Detector, GuardAction, GuardrailProfile, GuardrailRule, GuardrailsConfig, RegexRule, WordList,
};

use super::*;

fn rule(id: &str, detector: Detector, action: GuardAction) -> GuardrailRule {
    let placeholder = detector
        .default_label()
        .map(str::to_owned)
        .unwrap_or_else(|| id.to_uppercase().replace('-', "_"));
    GuardrailRule {
        id: id.into(),
        detector,
        action,
        input: true,
        output: true,
        placeholder,
    }
}

fn words(phrases: &[&str], whole_word: bool) -> Detector {
    Detector::Words(WordList {
        phrases: phrases.iter().map(|p| p.to_string()).collect(),
        whole_word,
        case_sensitive: false,
    })
}

fn regex(pattern: &str, max_len: usize) -> Detector {
    Detector::Regex(RegexRule {
        pattern: pattern.into(),
        max_len,
    })
}

fn compile(rules: Vec<GuardrailRule>, allow: &[&str], restore: bool) -> Guardrails {
    Guardrails::compile(&GuardrailsConfig {
        default_profile: Some("p".into()),
        profiles: vec![GuardrailProfile {
            name: "p".into(),
            allow: allow.iter().map(|a| a.to_string()).collect(),
            restore_masked: restore,
            rules,
        }],
    })
    .unwrap()
}

/// Masks codenames and order ids, audits "falcon", blocks "launch code", allows one id.
fn sample() -> Guardrails {
    compile(
        vec![
            rule(
                "codename",
                words(&["project falcon", "blue harbor"], true),
                GuardAction::Mask,
            ),
            rule("order", regex(r"\bORD-[0-9]{4,8}\b", 13), GuardAction::Mask),
            rule("bird", words(&["falcon"], true), GuardAction::Audit),
            rule("secret", words(&["launch code"], false), GuardAction::Block),
        ],
        &["ORD-0000"],
        true,
    )
}

fn scan_whole(
    g: &Guardrails,
    side: Side,
    text: &str,
    session: &mut Session,
) -> Result<String, Blocked> {
    let p = g.default_profile().unwrap();
    let mut scratch = ScanScratch::new();
    Ok(p.scan_text(side, text, session, &mut scratch)?
        .unwrap_or_else(|| text.to_owned()))
}

fn scan_pieces(
    g: &Guardrails,
    side: Side,
    pieces: &[&str],
    session: &mut Session,
) -> Result<String, Blocked> {
    let p = g.default_profile().unwrap();
    let mut scratch = ScanScratch::new();
    let mut scan = TextScan::new(side);
    let mut out = String::new();
    for piece in pieces {
        scan.push(p, piece, session, &mut scratch, &mut out)?;
        assert!(
            scan.held() <= p.hold_back(side),
            "held {} > {}",
            scan.held(),
            p.hold_back(side)
        );
    }
    scan.finish(p, session, &mut scratch, &mut out)?;
    Ok(out)
}

#[test]
fn masks_with_numbered_placeholders_and_keeps_clean_text() {
    let g = sample();
    let mut s = Session::new();
    let out = scan_whole(
        &g,
        Side::Input,
        "Ship project falcon with ORD-1234, then ORD-98765 and project FALCON again; ORD-0000 is public.",
        &mut s,
    )
    .unwrap();
    assert_eq!(
        out,
        "Ship [CODENAME_1] with [ORDER_1], then [ORDER_2] and [CODENAME_2] again; ORD-0000 is public."
    );
    let hits: Vec<(usize, u32)> = s.hits().iter().map(|h| (h.rule, h.count)).collect();
    assert_eq!(hits, vec![(0, 2), (1, 2)]);

    let mut clean = Session::new();
    let p = g.default_profile().unwrap();
    let unchanged = p
        .scan_text(
            Side::Input,
            "nothing to see: falconry, ORD-12",
            &mut clean,
            &mut ScanScratch::new(),
        )
        .unwrap();
    assert_eq!(unchanged, None);
    assert!(clean.hits().is_empty());
}

#[test]
fn same_value_same_placeholder_and_restored_in_output() {
    let g = sample();
    let mut s = Session::new();
    let masked = scan_whole(
        &g,
        Side::Input,
        "ORD-1111 and ORD-2222 and ORD-1111",
        &mut s,
    )
    .unwrap();
    assert_eq!(masked, "[ORDER_1] and [ORDER_2] and [ORDER_1]");
    let restored = scan_whole(&g, Side::Output, "About [ORDER_2] and [ORDER_9].", &mut s).unwrap();
    assert_eq!(restored, "About ORD-2222 and [ORDER_9].");
}

#[test]
fn audit_records_without_changing_and_block_names_the_rule() {
    let g = sample();
    let mut s = Session::new();
    let out = scan_whole(&g, Side::Output, "a falcon flew", &mut s).unwrap();
    assert_eq!(out, "a falcon flew");
    assert_eq!(
        s.hits(),
        &[Hit {
            rule: 2,
            side: Side::Output,
            count: 1
        }]
    );
    let blocked = scan_whole(&g, Side::Input, "here is the LAUNCH CODE: 0000", &mut s).unwrap_err();
    assert_eq!(
        blocked,
        Blocked {
            rule: 3,
            side: Side::Input
        }
    );
    assert_eq!(
        g.default_profile().unwrap().rules()[blocked.rule].id,
        "secret"
    );
}

/// The per-core memo of clean prompts answers a repeated clean text without scanning it, and
/// never remembers a text that was rewritten, audited or blocked.
#[test]
fn repeated_prompts_get_the_same_verdict_from_the_memo() {
    let g = sample();
    let p = g.default_profile().unwrap();
    let mut scratch = ScanScratch::new();
    let clean = "A clean system prompt that is long enough to be remembered by the memo.";
    let audited = "An audited prompt: a falcon flew over the harbor, long enough for the memo.";
    let masked = "A prompt with project falcon in it, long enough to be remembered by the memo.";
    let blocked =
        "A prompt that asks for the launch code, long enough to be remembered by the memo.";
    for round in 0..3 {
        let mut s = Session::new();
        assert_eq!(
            p.scan_text(Side::Input, clean, &mut s, &mut scratch),
            Ok(None)
        );
        assert_eq!(
            p.scan_text(Side::Input, audited, &mut s, &mut scratch),
            Ok(None)
        );
        let out = p
            .scan_text(Side::Input, masked, &mut s, &mut scratch)
            .unwrap();
        assert_eq!(
            out.as_deref(),
            Some("A prompt with [CODENAME_1] in it, long enough to be remembered by the memo.")
        );
        let refused = p.scan_text(Side::Input, blocked, &mut s, &mut scratch);
        assert_eq!(refused.map_err(|b| b.rule), Err(3), "round {round}");
        let hits: Vec<(usize, u32)> = s.hits().iter().map(|h| (h.rule, h.count)).collect();
        assert_eq!(hits, vec![(2, 1), (0, 1), (3, 1)], "round {round}");
    }
    assert!(scratch.memo.contains(p.id, clean));
    assert!(!scratch.memo.contains(p.id, audited));
    // After a reload the old profile's texts are forgotten.
    scratch.retain(&sample());
    assert!(!scratch.memo.contains(p.id, clean));
}

/// Texts shorter than any match are passed without a scan; one byte more is scanned.
#[test]
fn texts_shorter_than_every_rule_are_not_scanned() {
    let g = compile(
        vec![rule(
            "order",
            regex(r"\bORD-[0-9]{4}\b", 8),
            GuardAction::Block,
        )],
        &[],
        false,
    );
    let p = g.default_profile().unwrap();
    assert_eq!(p.input.min_len(), 8);
    let mut scratch = ScanScratch::new();
    let mut s = Session::new();
    assert_eq!(
        p.scan_text(Side::Input, "ORD-123", &mut s, &mut scratch),
        Ok(None)
    );
    assert!(p
        .scan_text(Side::Input, "ORD-1234", &mut s, &mut scratch)
        .is_err());
}

#[test]
fn stream_holds_back_only_a_possible_match() {
    let g = sample();
    let p = g.default_profile().unwrap();
    let mut scratch = ScanScratch::new();
    let mut s = Session::new();
    let mut scan = TextScan::new(Side::Output);
    let mut out = String::new();
    scan.push(p, "Hello there, ", &mut s, &mut scratch, &mut out)
        .unwrap();
    assert_eq!(out, "Hello there, ", "nothing here can start a match");
    scan.push(p, "project fal", &mut s, &mut scratch, &mut out)
        .unwrap();
    assert_eq!(out, "Hello there, ", "`project fal` may become a codename");
    scan.push(p, "con is good to go", &mut s, &mut scratch, &mut out)
        .unwrap();
    // The final "o" may begin the allow-listed "ORD-0000".
    assert_eq!(out, "Hello there, [CODENAME_1] is good to g");
    scan.finish(p, &mut s, &mut scratch, &mut out).unwrap();
    assert_eq!(out, "Hello there, [CODENAME_1] is good to go");
}

#[test]
fn block_in_a_stream_fires_across_pieces() {
    let g = sample();
    let mut s = Session::new();
    let r = scan_pieces(&g, Side::Output, &["the laun", "ch c", "ode is"], &mut s);
    assert_eq!(
        r,
        Err(Blocked {
            rule: 3,
            side: Side::Output
        })
    );
}

#[test]
fn multibyte_text_passes_through_intact() {
    let g = compile(
        vec![rule("x", regex(r"[^a-z ]{2,3}", 3), GuardAction::Mask)],
        &[],
        false,
    );
    let mut s = Session::new();
    // The pattern matches bytes; masking covers whole characters.
    let out = scan_whole(&g, Side::Input, "ab é cd", &mut s).unwrap();
    assert_eq!(out, "ab [X_1] cd");
    let out = scan_pieces(&g, Side::Input, &["ab ", "é", " cd"], &mut Session::new()).unwrap();
    assert_eq!(out, "ab [X_1] cd");
}

const ALPHABET: &[&str] = &[
    "project ",
    "falcon",
    "Falcon ",
    "blue ",
    "harbor",
    "ORD-",
    "0000",
    "12",
    "345",
    "678",
    "launch ",
    "code",
    " ",
    ".",
    "é",
    "x",
    "\n",
    "[ORDER_1]",
    "PROJECT",
];

fn text_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(ALPHABET), 0..40).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Same verdict, hits and output for any split of the text into stream pieces.
    #[test]
    fn any_split_gives_the_same_result(text in text_strategy(), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8)) {
        let g = sample();
        for side in [Side::Input, Side::Output] {
            let mut whole_session = Session::new();
            let mut seed = Session::new();
            // Give both sessions the same masked value so restore has something to do.
            let _ = scan_whole(&g, Side::Input, "ORD-4242", &mut whole_session);
            let _ = scan_whole(&g, Side::Input, "ORD-4242", &mut seed);
            let whole = scan_whole(&g, side, &text, &mut whole_session);

            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(text.len() + 1)).collect();
            points.retain(|&i| text.is_char_boundary(i));
            points.sort_unstable();
            points.dedup();
            let mut pieces = Vec::new();
            let mut last = 0;
            for p in points {
                pieces.push(&text[last..p]);
                last = p;
            }
            pieces.push(&text[last..]);
            let split = scan_pieces(&g, side, &pieces, &mut seed);
            prop_assert_eq!(&whole, &split, "pieces {:?}", pieces);
            prop_assert_eq!(whole_session.hits(), seed.hits());
        }
    }
}
