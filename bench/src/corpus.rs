//! Guardrail accuracy: every built-in detector run over the labelled corpus
//! (`policy/tests/corpus/guardrails.jsonl`) through the same compiled profile and scanner the
//! gateway uses, as precision and recall per detector. Unlike the load scenarios this links
//! the policy library: what is measured is the detectors, not the released binaries.

use std::fmt::Write as _;
use std::path::Path;

use tollgate_config::guardrails::{
    Detector, GuardAction, GuardrailProfile, GuardrailRule, GuardrailsConfig,
};
use tollgate_policy::guardrails::{Guardrails, ScanScratch, Session, Side};

/// The corpus, relative to the workspace root.
pub const CORPUS: &str = "policy/tests/corpus/guardrails.jsonl";

/// Every built-in detector, as the corpus labels it.
const DETECTORS: [Detector; 8] = [
    Detector::Email,
    Detector::Phone,
    Detector::PaymentCard,
    Detector::Iban,
    Detector::UsSsn,
    Detector::IpAddress,
    Detector::Secrets,
    Detector::PromptInjection,
];

/// One detector's counts over the corpus: a line counts once per detector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Score {
    /// Config name of the detector.
    pub detector: &'static str,
    /// Lines labelled with it where it fired.
    pub true_positives: u32,
    /// Lines not labelled with it where it fired.
    pub false_positives: u32,
    /// Lines labelled with it where it did not.
    pub false_negatives: u32,
}

impl Score {
    /// Of the lines it fired on, the share labelled with it (1 when it never fired).
    pub fn precision(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_positives,
        )
    }

    /// Of the lines labelled with it, the share it fired on (1 when none is).
    pub fn recall(&self) -> f64 {
        ratio(
            self.true_positives,
            self.true_positives + self.false_negatives,
        )
    }
}

fn ratio(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        1.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

/// What the corpus run found.
#[derive(Debug, Clone, PartialEq)]
pub struct Accuracy {
    /// Lines scanned.
    pub lines: usize,
    /// Lines with no label.
    pub clean: usize,
    /// Per detector, in [`DETECTORS`] order.
    pub scores: Vec<Score>,
}

/// Scans every line of the corpus at `root` with one `audit` rule per detector.
pub fn evaluate(root: &Path) -> Result<Accuracy, String> {
    let path = root.join(CORPUS);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let profile = GuardrailProfile {
        name: "accuracy".into(),
        allow: Vec::new(),
        restore_masked: false,
        rules: DETECTORS
            .iter()
            .map(|d| GuardrailRule {
                id: d.name().into(),
                detector: d.clone(),
                action: GuardAction::Audit,
                input: true,
                output: false,
                placeholder: d.default_label().unwrap_or("X").into(),
            })
            .collect(),
    };
    let guardrails = Guardrails::compile(&GuardrailsConfig {
        default_profile: Some(profile.name.clone()),
        profiles: vec![profile],
    })
    .map_err(|e| e.to_string())?;
    let profile = guardrails
        .default_profile()
        .ok_or("the accuracy profile did not compile")?;
    let mut scratch = ScanScratch::new();
    let mut scores: Vec<Score> = DETECTORS
        .iter()
        .map(|d| Score {
            detector: d.name(),
            true_positives: 0,
            false_positives: 0,
            false_negatives: 0,
        })
        .collect();
    let mut lines = 0;
    let mut clean = 0;
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let entry: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), n + 1))?;
        let (Some(body), Some(labels)) = (entry["text"].as_str(), entry["labels"].as_array())
        else {
            return Err(format!(
                "{}:{}: needs `text` and `labels`",
                path.display(),
                n + 1
            ));
        };
        let labels: Vec<&str> = labels.iter().filter_map(|l| l.as_str()).collect();
        lines += 1;
        clean += usize::from(labels.is_empty());
        let mut session = Session::new();
        // Audit rules never block and never rewrite.
        let _ = profile.scan_text(Side::Input, body, &mut session, &mut scratch);
        for score in &mut scores {
            let rule = DETECTORS
                .iter()
                .position(|d| d.name() == score.detector)
                .unwrap_or(usize::MAX);
            let fired = session.hits().iter().any(|h| h.rule == rule);
            let labelled = labels.contains(&score.detector);
            match (fired, labelled) {
                (true, true) => score.true_positives += 1,
                (true, false) => score.false_positives += 1,
                (false, true) => score.false_negatives += 1,
                (false, false) => {}
            }
        }
    }
    Ok(Accuracy {
        lines,
        clean,
        scores,
    })
}

/// The RESULTS.md section.
pub fn render(accuracy: &Result<Accuracy, String>, s: &mut String) {
    let _ = writeln!(
        s,
        "## Guardrail detectors: precision and recall on the labelled corpus\n"
    );
    let a = match accuracy {
        Ok(a) => a,
        Err(e) => {
            let _ = writeln!(s, "Not measured: {e}\n");
            return;
        }
    };
    let _ = writeln!(
        s,
        "`{CORPUS}`: {} prompts written for this project ({} clean, {} with at least one label; labelling rules in its README). Each built-in detector runs as an `audit` rule through the gateway's own scanner; a line counts once per detector. The patterns were tuned with this corpus in view, so these figures are optimistic for unseen text.\n",
        a.lines,
        a.clean,
        a.lines - a.clean
    );
    let _ = writeln!(
        s,
        "| detector | labelled lines | true positives | false positives | false negatives | precision | recall |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|");
    for sc in &a.scores {
        let _ = writeln!(
            s,
            "| `{}` | {} | {} | {} | {} | {:.3} | {:.3} |",
            sc.detector,
            sc.true_positives + sc.false_negatives,
            sc.true_positives,
            sc.false_positives,
            sc.false_negatives,
            sc.precision(),
            sc.recall()
        );
    }
    s.push('\n');
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn the_corpus_scores_every_detector() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let a = evaluate(root).unwrap();
        assert!(a.lines >= 400, "{} lines", a.lines);
        assert_eq!(a.scores.len(), DETECTORS.len());
        for sc in &a.scores {
            assert!(sc.true_positives >= 20, "{sc:?}");
            assert!(sc.precision() >= 0.9 && sc.recall() >= 0.9, "{sc:?}");
        }
        let mut s = String::new();
        render(&Ok(a), &mut s);
        assert!(s.contains("| `payment_card` |"), "{s}");
    }

    #[test]
    fn precision_and_recall_arithmetic() {
        let sc = Score {
            detector: "email",
            true_positives: 8,
            false_positives: 2,
            false_negatives: 0,
        };
        assert_eq!(sc.precision(), 0.8);
        assert_eq!(sc.recall(), 1.0);
        let none = Score {
            detector: "email",
            true_positives: 0,
            false_positives: 0,
            false_negatives: 0,
        };
        assert_eq!((none.precision(), none.recall()), (1.0, 1.0));
    }
}
