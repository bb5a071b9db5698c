//! Guardrail vocabulary shared by config and policy: named profiles of rules, each pairing a
//! detector (a built-in one, a word list or a bounded regex) with what to do on a hit. Values here
//! have passed validation (`validate/guardrails.rs`); this module never scans text, `policy` does.

/// `[guardrails]`: the profiles and which one applies when nothing names one.
/// The default value has no profiles and no default, so nothing is scanned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GuardrailsConfig {
    /// The profile used when the key, its user, team and org name none; `None` = no scanning.
    pub default_profile: Option<String>,
    /// Every declared profile (`[[guardrails.profiles]]`), in file order, names unique.
    pub profiles: Vec<GuardrailProfile>,
}

impl GuardrailsConfig {
    /// The profile with this name.
    pub fn profile(&self, name: &str) -> Option<&GuardrailProfile> {
        self.profiles.iter().find(|p| p.name == name)
    }
}

/// `[[guardrails.profiles]]`: a named set of rules. A profile without rules is valid and scans
/// nothing (a way to exempt a key from an org-wide profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailProfile {
    /// Unique name, `[A-Za-z0-9_.-]+`; keys, users, teams and orgs refer to it.
    pub name: String,
    /// Phrases that are never a hit, whatever rule would match them (trimmed, as written).
    pub allow: Vec<String>,
    /// Put masked values back where the response repeats their placeholder. Default false.
    pub restore_masked: bool,
    /// The rules, in file order; ids unique within the profile.
    pub rules: Vec<GuardrailRule>,
}

/// `[[guardrails.profiles.rules]]`: one detector and what to do when it finds something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardrailRule {
    /// Unique within its profile, `[A-Za-z0-9_.-]+`; named in audit records and block messages.
    pub id: String,
    /// What it looks for.
    pub detector: Detector,
    /// What happens on a hit.
    pub action: GuardAction,
    /// Scan what the client sends (`on = "input"` or `"both"`, the default).
    pub input: bool,
    /// Scan what the model answers (`on = "output"` or `"both"`, the default).
    pub output: bool,
    /// Label of the placeholder a masked value is replaced by, `[A-Z0-9_]{1,32}`: as written, or
    /// the detector's [`Detector::default_label`], or for word lists and regexes the id in upper
    /// case with every other character turned into `_` (at most 32 characters).
    pub placeholder: String,
}

/// What a rule looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Detector {
    /// E-mail addresses (`"email"`).
    Email,
    /// Telephone numbers (`"phone"`).
    Phone,
    /// Payment card numbers (`"payment_card"`).
    PaymentCard,
    /// International bank account numbers (`"iban"`).
    Iban,
    /// US social security numbers (`"us_ssn"`).
    UsSsn,
    /// IPv4 and IPv6 addresses (`"ip_address"`).
    IpAddress,
    /// API keys, tokens and other credentials (`"secrets"`).
    Secrets,
    /// Attempts to override the system prompt (`"prompt_injection"`).
    PromptInjection,
    /// A list of phrases (`"words"`).
    Words(WordList),
    /// A regular expression with a bounded match length (`"regex"`).
    Regex(RegexRule),
}

impl Detector {
    /// The name written in config (`detector = "..."`).
    pub fn name(&self) -> &'static str {
        match self {
            Detector::Email => "email",
            Detector::Phone => "phone",
            Detector::PaymentCard => "payment_card",
            Detector::Iban => "iban",
            Detector::UsSsn => "us_ssn",
            Detector::IpAddress => "ip_address",
            Detector::Secrets => "secrets",
            Detector::PromptInjection => "prompt_injection",
            Detector::Words(_) => "words",
            Detector::Regex(_) => "regex",
        }
    }

    /// The placeholder label of a built-in detector; `None` for word lists and regexes, whose
    /// label comes from the rule's id.
    pub fn default_label(&self) -> Option<&'static str> {
        match self {
            Detector::Email => Some("EMAIL"),
            Detector::Phone => Some("PHONE"),
            Detector::PaymentCard => Some("CARD"),
            Detector::Iban => Some("IBAN"),
            Detector::UsSsn => Some("SSN"),
            Detector::IpAddress => Some("IP"),
            Detector::Secrets => Some("SECRET"),
            Detector::PromptInjection => Some("INJECTION"),
            Detector::Words(_) | Detector::Regex(_) => None,
        }
    }
}

/// The phrases of a `detector = "words"` rule: from `words` and `words_file`, together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WordList {
    /// At least one and at most [`WordList::MAX_PHRASES`]; each trimmed, non-empty and at most
    /// [`WordList::MAX_PHRASE_BYTES`] bytes. Kept as written: duplicates are not removed.
    pub phrases: Vec<String>,
    /// Match only at word boundaries ("cat" does not hit "concatenate"). Default true.
    pub whole_word: bool,
    /// Match case exactly. Default false.
    pub case_sensitive: bool,
}

impl WordList {
    /// Longest phrase, in bytes (of `words` and `allow` alike).
    pub const MAX_PHRASE_BYTES: usize = 1024;
    /// Most phrases in one rule (or one profile's `allow`).
    pub const MAX_PHRASES: usize = 100_000;
}

/// The pattern of a `detector = "regex"` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegexRule {
    /// As written. It parses with Unicode mode and UTF-8 mode off (`\w`, `\d` and `(?i)` are
    /// ASCII unless the pattern turns `(?u)` on), cannot match empty text and matches at most
    /// [`RegexRule::MAX_LEN`] bytes.
    pub pattern: String,
    /// The longest text, in bytes, the pattern can match: how much a stream must hold back.
    pub max_len: usize,
}

impl RegexRule {
    /// The longest match a pattern may have, in bytes: streams hold back this much text.
    pub const MAX_LEN: usize = 4096;
}

/// What a rule does on a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GuardAction {
    /// Refuse the request, or end the response (`"block"`).
    Block,
    /// Replace the hit by a placeholder and go on (`"mask"`).
    Mask,
    /// Let it through and record the hit (`"audit"`).
    Audit,
}

impl GuardAction {
    /// The name written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            GuardAction::Block => "block",
            GuardAction::Mask => "mask",
            GuardAction::Audit => "audit",
        }
    }
}
