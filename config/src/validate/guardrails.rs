//! Validation of `[guardrails]`: profiles, their rules and the default profile, and the
//! `guardrails = "profile"` references of keys, users, teams and orgs. Word files are read and
//! regexes parsed here, so a bad list or pattern stops start-up with its key path; matching text
//! is `policy`'s job and never happens here.

use std::collections::HashMap;

use regex_syntax::ParserBuilder;
use toml::Value;

use super::{describe, join, Validator};
use crate::guardrails::{
    Detector, GuardAction, GuardrailProfile, GuardrailRule, GuardrailsConfig, RegexRule, WordList,
};
use crate::raw::{RawGuardrailProfile, RawGuardrailRule, RawGuardrails};
use crate::units::quote;

/// Longest placeholder label, in bytes (labels are ASCII).
const MAX_LABEL: usize = 32;

/// `[guardrails]` as validated: the config (`None` after an error) and the names of the
/// declared profiles, which references resolve against even when a profile has another mistake.
pub(super) struct Guardrails {
    pub config: Option<GuardrailsConfig>,
    pub names: Vec<String>,
}

/// A `detector` as named in the file, before the keys that go with it are read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum DetectorKind {
    Email,
    Phone,
    PaymentCard,
    Iban,
    UsSsn,
    IpAddress,
    Secrets,
    PromptInjection,
    Words,
    Regex,
}

const DETECTORS: &[(&str, DetectorKind)] = &[
    ("email", DetectorKind::Email),
    ("phone", DetectorKind::Phone),
    ("payment_card", DetectorKind::PaymentCard),
    ("iban", DetectorKind::Iban),
    ("us_ssn", DetectorKind::UsSsn),
    ("ip_address", DetectorKind::IpAddress),
    ("secrets", DetectorKind::Secrets),
    ("prompt_injection", DetectorKind::PromptInjection),
    ("words", DetectorKind::Words),
    ("regex", DetectorKind::Regex),
];

impl DetectorKind {
    fn name(self) -> &'static str {
        DETECTORS
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("?", |(name, _)| name)
    }
}

impl Validator<'_> {
    /// `[guardrails]`. Absent: no profiles, no default.
    pub(super) fn guardrails(&mut self, value: Option<Value>) -> Guardrails {
        let Some(value) = value else {
            return Guardrails {
                config: Some(GuardrailsConfig::default()),
                names: Vec::new(),
            };
        };
        let Some(raw) = self.shape::<RawGuardrails>("guardrails", value) else {
            return Guardrails {
                config: None,
                names: Vec::new(),
            };
        };

        let mut names: Vec<String> = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut profiles = Vec::new();
        let values = self.array_of_tables("guardrails.profiles", raw.profiles);
        for (i, value) in values.into_iter().enumerate() {
            let path = format!("guardrails.profiles[{i}]");
            let Some(mut raw) = self.shape::<RawGuardrailProfile>(&path, value) else {
                profiles.push(None);
                continue;
            };
            let name_path = join(&path, "name");
            let name = self.required(&name_path, raw.name.take());
            let name = self.name(&name_path, name);
            if let Some(name) = &name {
                if let Some(first) = seen.get(name) {
                    self.error(
                        &name_path,
                        format!(
                            "duplicate profile name {} (also guardrails.profiles[{first}])",
                            quote(name)
                        ),
                    );
                } else {
                    seen.insert(name.clone(), i);
                    names.push(name.clone());
                }
            }
            profiles.push(self.profile(&path, name, raw));
        }

        let default_profile =
            self.profile_reference("guardrails.default_profile", raw.default_profile, &names);
        let config = profiles
            .into_iter()
            .collect::<Option<Vec<_>>>()
            .map(|profiles| GuardrailsConfig {
                default_profile,
                profiles,
            });
        Guardrails { config, names }
    }

    /// A `guardrails = "profile"` reference (of a key, user, team or org, or the default).
    pub(super) fn profile_reference(
        &mut self,
        path: &str,
        value: Option<Value>,
        profiles: &[String],
    ) -> Option<String> {
        let name = self.name(path, value)?;
        let known: Vec<&str> = profiles.iter().map(String::as_str).collect();
        self.reference(path, Some(&name), "guardrail profile", &known);
        Some(name)
    }

    /// One profile; `name` has been checked (and is `None` if it is missing or bad).
    fn profile(
        &mut self,
        path: &str,
        name: Option<String>,
        raw: RawGuardrailProfile,
    ) -> Option<GuardrailProfile> {
        let p = |key: &str| join(path, key);
        let allow = match raw.allow {
            None => Some(Vec::new()),
            Some(value) => self.phrase_list(&p("allow"), value).filter(|phrases| {
                let within = phrases.len() <= WordList::MAX_PHRASES;
                if !within {
                    self.too_many_phrases(&p("allow"), phrases.len(), "in one profile's allow");
                }
                within
            }),
        };
        let restore_masked = match raw.restore_masked {
            None => Some(false),
            value => self.boolean(&p("restore_masked"), value),
        };

        let rules_path = p("rules");
        let mut rules = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let values = self.array_of_tables(&rules_path, raw.rules);
        for (j, value) in values.into_iter().enumerate() {
            let path = format!("{rules_path}[{j}]");
            let Some(mut raw) = self.shape::<RawGuardrailRule>(&path, value) else {
                rules.push(None);
                continue;
            };
            let id_path = join(&path, "id");
            let id = self.required(&id_path, raw.id.take());
            let id = self.name(&id_path, id);
            if let Some(id) = &id {
                if let Some(first) = seen.get(id) {
                    self.error(
                        &id_path,
                        format!(
                            "duplicate rule id {} in this profile (also {rules_path}[{first}])",
                            quote(id)
                        ),
                    );
                } else {
                    seen.insert(id.clone(), j);
                }
            }
            rules.push(self.rule(&path, id, raw));
        }

        Some(GuardrailProfile {
            name: name?,
            allow: allow?,
            restore_masked: restore_masked?,
            rules: rules.into_iter().collect::<Option<Vec<_>>>()?,
        })
    }

    /// One rule; `id` has been checked (and is `None` if it is missing or bad).
    fn rule(
        &mut self,
        path: &str,
        id: Option<String>,
        raw: RawGuardrailRule,
    ) -> Option<GuardrailRule> {
        let p = |key: &str| join(path, key);
        let detector = self.required(&p("detector"), raw.detector);
        // `None` when missing or unknown (already reported): every detector key is then let
        // through and checked on its own, so its other mistakes are still found.
        let kind = self.choice(&p("detector"), detector, DETECTORS);
        let action = self.required(&p("action"), raw.action);
        let action = self.choice(
            &p("action"),
            action,
            &[
                ("block", GuardAction::Block),
                ("mask", GuardAction::Mask),
                ("audit", GuardAction::Audit),
            ],
        );
        let sides = match raw.on {
            None => Some((true, true)),
            value => self.choice(
                &p("on"),
                value,
                &[
                    ("input", (true, false)),
                    ("output", (false, true)),
                    ("both", (true, true)),
                ],
            ),
        };
        let placeholder = match raw.placeholder {
            None => Some(None),
            value => self.placeholder(&p("placeholder"), value).map(Some),
        };

        let words = self.for_detector(&p("words"), raw.words, kind, DetectorKind::Words);
        let words_file =
            self.for_detector(&p("words_file"), raw.words_file, kind, DetectorKind::Words);
        let whole_word =
            self.for_detector(&p("whole_word"), raw.whole_word, kind, DetectorKind::Words);
        let case_sensitive = self.for_detector(
            &p("case_sensitive"),
            raw.case_sensitive,
            kind,
            DetectorKind::Words,
        );
        let pattern = self.for_detector(&p("pattern"), raw.pattern, kind, DetectorKind::Regex);
        let word_list = self.word_list(
            path,
            (words, words_file),
            (whole_word, case_sensitive),
            kind == Some(DetectorKind::Words),
        );
        let regex = self.pattern(&p("pattern"), pattern, kind == Some(DetectorKind::Regex));

        let detector = match kind? {
            DetectorKind::Email => Detector::Email,
            DetectorKind::Phone => Detector::Phone,
            DetectorKind::PaymentCard => Detector::PaymentCard,
            DetectorKind::Iban => Detector::Iban,
            DetectorKind::UsSsn => Detector::UsSsn,
            DetectorKind::IpAddress => Detector::IpAddress,
            DetectorKind::Secrets => Detector::Secrets,
            DetectorKind::PromptInjection => Detector::PromptInjection,
            DetectorKind::Words => Detector::Words(word_list?),
            DetectorKind::Regex => Detector::Regex(regex?),
        };
        let id = id?;
        let placeholder = placeholder?.unwrap_or_else(|| default_label(&detector, &id));
        let (input, output) = sides?;
        Some(GuardrailRule {
            id,
            detector,
            action: action?,
            input,
            output,
            placeholder,
        })
    }

    /// Lets `value` through when the rule's detector is `allowed` (or unknown); otherwise
    /// reports it, naming both detectors, and drops it.
    fn for_detector(
        &mut self,
        path: &str,
        value: Option<Value>,
        kind: Option<DetectorKind>,
        allowed: DetectorKind,
    ) -> Option<Value> {
        match kind {
            Some(kind) if value.is_some() && kind != allowed => {
                self.error(
                    path,
                    format!(
                        "not allowed for detector {} (only for detector {})",
                        quote(kind.name()),
                        quote(allowed.name())
                    ),
                );
                None
            }
            _ => value,
        }
    }

    /// `placeholder`: `[A-Z0-9_]{1,32}`.
    fn placeholder(&mut self, path: &str, value: Option<Value>) -> Option<String> {
        let label = self.string(path, value)?;
        let valid = (1..=MAX_LABEL).contains(&label.len())
            && label
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if valid {
            Some(label)
        } else {
            self.error(
                path,
                format!(
                    "expected 1 to {MAX_LABEL} upper-case letters, digits and '_' like \"CARD\", got {}",
                    quote(&label)
                ),
            );
            None
        }
    }

    /// The phrases of a `words` rule, from `words` and `words_file` together, and its flags.
    /// `required` (the detector is "words") makes a rule without phrases an error.
    fn word_list(
        &mut self,
        path: &str,
        (words, words_file): (Option<Value>, Option<Value>),
        (whole_word, case_sensitive): (Option<Value>, Option<Value>),
        required: bool,
    ) -> Option<WordList> {
        let p = |key: &str| join(path, key);
        let whole_word = match whole_word {
            None => Some(true),
            value => self.boolean(&p("whole_word"), value),
        };
        let case_sensitive = match case_sensitive {
            None => Some(false),
            value => self.boolean(&p("case_sensitive"), value),
        };
        let (has_words, has_file) = (words.is_some(), words_file.is_some());
        if !has_words && !has_file {
            if required {
                self.error(
                    &p("words"),
                    "required for detector \"words\": give `words`, `words_file` or both",
                );
            }
            return None;
        }
        let listed = words.map(|value| self.phrase_list(&p("words"), value));
        let from_file = words_file.map(|value| self.phrase_file(&p("words_file"), value));
        let mut phrases = Vec::new();
        for part in [listed, from_file].into_iter().flatten() {
            phrases.extend(part?);
        }
        // Counts and emptiness are about both keys; report them where the phrases came from.
        if phrases.is_empty() {
            let (path, message) = match (has_words, has_file) {
                (true, true) => (
                    p("words"),
                    "`words` and `words_file` hold no phrases; give at least one",
                ),
                (true, false) => (p("words"), "must hold at least one phrase"),
                _ => (
                    p("words_file"),
                    "the file holds no phrases (blank lines and lines starting with '#' are skipped)",
                ),
            };
            self.error(&path, message);
            return None;
        }
        if phrases.len() > WordList::MAX_PHRASES {
            let (path, scope) = if has_file {
                (
                    p("words_file"),
                    "in one rule (`words` and `words_file` together)",
                )
            } else {
                (p("words"), "in one rule")
            };
            self.too_many_phrases(&path, phrases.len(), scope);
            return None;
        }
        Some(WordList {
            phrases,
            whole_word: whole_word?,
            case_sensitive: case_sensitive?,
        })
    }

    /// An array of phrases (`words`, `allow`): each trimmed, non-empty and not too long.
    fn phrase_list(&mut self, path: &str, value: Value) -> Option<Vec<String>> {
        let Value::Array(items) = value else {
            self.error(
                path,
                format!(
                    "expected an array of phrases like [\"project falcon\"], got {}",
                    describe(&value)
                ),
            );
            return None;
        };
        let mut phrases = Vec::with_capacity(items.len());
        let mut all_valid = true;
        for (i, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(text) = self.string(&item_path, Some(item)) else {
                all_valid = false;
                continue;
            };
            let phrase = text.trim();
            if phrase.is_empty() {
                self.error(&item_path, "must not be empty or only whitespace");
                all_valid = false;
            } else if phrase.len() > WordList::MAX_PHRASE_BYTES {
                self.error(
                    &item_path,
                    format!(
                        "is {} bytes long; the limit is {} bytes",
                        phrase.len(),
                        WordList::MAX_PHRASE_BYTES
                    ),
                );
                all_valid = false;
            } else {
                phrases.push(phrase.to_owned());
            }
        }
        all_valid.then_some(phrases)
    }

    /// `words_file`: one phrase per line, read now. Blank lines and lines whose first character
    /// is `#` are skipped; each phrase is trimmed.
    fn phrase_file(&mut self, path: &str, value: Value) -> Option<Vec<String>> {
        let file = self.string(path, Some(value))?;
        if file.trim().is_empty() {
            self.error(path, "must name a file of phrases, one per line");
            return None;
        }
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(error) => {
                self.error(path, format!("cannot read {}: {error}", quote(&file)));
                return None;
            }
        };
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let mut phrases = Vec::new();
        let mut too_long: Vec<usize> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let phrase = line.trim_start();
            if phrase.len() > WordList::MAX_PHRASE_BYTES {
                too_long.push(n + 1);
            } else {
                phrases.push(phrase.to_owned());
            }
        }
        if too_long.is_empty() {
            return Some(phrases);
        }
        // One error per file, not per line: a wrong file could otherwise flood the report.
        const SHOWN: usize = 10;
        let mut lines: Vec<String> = too_long.iter().take(SHOWN).map(usize::to_string).collect();
        if too_long.len() > SHOWN {
            lines.push(format!("... ({} lines in all)", too_long.len()));
        }
        let (which, verb) = if too_long.len() == 1 {
            ("the phrase on line", "is")
        } else {
            ("the phrases on lines", "are")
        };
        self.error(
            path,
            format!(
                "{}: {which} {} {verb} longer than {} bytes, the limit",
                quote(&file),
                lines.join(", "),
                WordList::MAX_PHRASE_BYTES
            ),
        );
        None
    }

    fn too_many_phrases(&mut self, path: &str, count: usize, scope: &str) {
        self.error(
            path,
            format!(
                "{count} phrases; the limit is {} {scope}",
                WordList::MAX_PHRASES
            ),
        );
    }

    /// `pattern`: a regex that cannot match empty text and whose matches have a known, small
    /// maximum length, so a stream never has to hold back more than [`RegexRule::MAX_LEN`] bytes.
    /// `required` (the detector is "regex") makes a missing pattern an error.
    fn pattern(&mut self, path: &str, value: Option<Value>, required: bool) -> Option<RegexRule> {
        let Some(value) = value else {
            if required {
                self.error(path, "required for detector \"regex\"");
            }
            return None;
        };
        let pattern = self.string(path, Some(value))?;
        let parsed = ParserBuilder::new()
            .unicode(false)
            .utf8(false)
            .build()
            .parse(&pattern);
        let hir = match parsed {
            Ok(hir) => hir,
            Err(error) => {
                self.error(path, regex_error(&error));
                return None;
            }
        };
        let properties = hir.properties();
        let Some(min_len) = properties.minimum_len() else {
            // Only a pattern that matches no text at all has no shortest match.
            self.error(path, "pattern can never match any text");
            return None;
        };
        if min_len == 0 {
            self.error(path, "pattern can match empty text");
        }
        let max_len = match properties.maximum_len() {
            None => {
                self.error(
                    path,
                    "pattern can match unboundedly long text: bound every repetition, e.g. `\\d{1,64}` instead of `\\d+`",
                );
                None
            }
            Some(n) if n > RegexRule::MAX_LEN => {
                self.error(
                    path,
                    format!(
                        "pattern can match up to {n} bytes; the limit is {} (streams hold back this much text)",
                        RegexRule::MAX_LEN
                    ),
                );
                None
            }
            Some(n) => Some(n),
        };
        let max_len = max_len.filter(|_| min_len > 0)?;
        Some(RegexRule { pattern, max_len })
    }
}

/// The placeholder label a rule gets when it names none: its detector's, or for word lists and
/// regexes its id in upper case with every character outside `[A-Z0-9_]` turned into `_`.
fn default_label(detector: &Detector, id: &str) -> String {
    match detector.default_label() {
        Some(label) => label.to_owned(),
        None => id
            .chars()
            .take(MAX_LABEL)
            .map(|c| {
                let c = c.to_ascii_uppercase();
                if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    }
}

/// regex-syntax's error on one line: what is wrong and where (its own `Display` draws the
/// pattern with a caret under the spot, over several lines).
fn regex_error(error: &regex_syntax::Error) -> String {
    let (what, start) = match error {
        regex_syntax::Error::Parse(error) => (error.kind().to_string(), error.span().start),
        regex_syntax::Error::Translate(error) => (error.kind().to_string(), error.span().start),
        other => {
            let text = other.to_string();
            return format!(
                "invalid regex: {}",
                text.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    };
    let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
    if start.line > 1 {
        format!(
            "invalid regex at line {}, column {}: {what}",
            start.line, start.column
        )
    } else {
        format!("invalid regex at column {}: {what}", start.column)
    }
}
