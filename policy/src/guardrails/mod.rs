//! Guardrails: the rules of `[guardrails]` compiled into matchers, and the scans that apply
//! them to text a model sees (input) or writes (output), whole or as a stream.
//!
//! Sans-IO: the engine hands text in and gets back text (masked or restored), a list of hits
//! and, when a `block` rule fires, [`Blocked`]. A whole text and the same text cut into stream
//! pieces anywhere give the same verdict, hits and output: both go through one scanner
//! ([`scan::TextScan`]), and the scanner never acts on a match that later bytes could change.
//! Compiled profiles are shared by every core (`Arc`); the mutable search caches live in a
//! per-core [`ScanScratch`], so no search takes a lock.

mod builtin;
mod matcher;
mod memo;
mod scan;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tollgate_config::guardrails::{GuardAction, GuardrailProfile, GuardrailsConfig};

pub use scan::TextScan;

use matcher::{SideCache, SideMatcher};
use memo::CleanMemo;

/// Which way text is going: to the model (prompts, system prompts, tool results and
/// definitions) or from it (completions, tool-call arguments).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// Request text, before the upstream call.
    Input,
    /// Response text, non-streamed or streamed.
    Output,
}

impl Side {
    /// `"input"` or `"output"`, for usage records and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Input => "input",
            Side::Output => "output",
        }
    }
}

/// What a rule does with a match.
pub type Action = GuardAction;

/// A rule of a compiled profile, as errors, metrics and usage records name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleInfo {
    /// The rule's `id` from config.
    pub id: String,
    /// Its detector's config name (`email`, `words`, ...).
    pub detector: &'static str,
    /// What it does with a match.
    pub action: Action,
    /// Label of its mask placeholders (`EMAIL` gives `[EMAIL_1]`).
    pub label: String,
}

/// A `block` rule fired: the request is refused, or the response replaced by an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Blocked {
    /// Index of the rule in [`Profile::rules`].
    pub rule: usize,
    /// Where it fired.
    pub side: Side,
}

/// Why a guardrails configuration could not be compiled. Config validation already checked
/// every pattern; this is what is left (an automaton too large to build, say).
#[derive(Debug, thiserror::Error)]
#[error("guardrails profile {profile:?}: {message}")]
pub struct CompileError {
    /// The profile at fault.
    pub profile: String,
    /// What went wrong.
    pub message: String,
}

/// Every profile of `[guardrails]`, compiled once and shared by all cores.
#[derive(Debug, Clone, Default)]
pub struct Guardrails {
    profiles: Vec<Arc<Profile>>,
    default: Option<usize>,
}

impl Guardrails {
    /// Compiles every profile. An empty config compiles to no profiles (guardrails off).
    pub fn compile(config: &GuardrailsConfig) -> Result<Self, CompileError> {
        let mut profiles = Vec::with_capacity(config.profiles.len());
        for raw in &config.profiles {
            profiles.push(Arc::new(Profile::compile(raw)?));
        }
        let default = config
            .default_profile
            .as_deref()
            .and_then(|name| profiles.iter().position(|p| p.name == name));
        Ok(Guardrails { profiles, default })
    }

    /// The profile with this name.
    pub fn profile(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The profile for requests whose key, user, team and org name none.
    pub fn default_profile(&self) -> Option<&Arc<Profile>> {
        self.default.map(|i| &self.profiles[i])
    }

    /// True when no profile is configured.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }
}

/// One compiled profile: its rules and a matcher per side.
pub struct Profile {
    name: String,
    /// Unique among all profiles ever compiled in this process: tells a scratch whose caches
    /// it holds.
    id: u64,
    rules: Vec<RuleInfo>,
    labels: Vec<String>,
    /// Per rule: index into `labels`.
    rule_label: Vec<usize>,
    input: SideMatcher,
    output: SideMatcher,
}

impl fmt::Debug for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl Profile {
    fn compile(raw: &GuardrailProfile) -> Result<Self, CompileError> {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let error = |message: String| CompileError {
            profile: raw.name.clone(),
            message,
        };
        let mut labels: Vec<String> = Vec::new();
        let mut rule_label = Vec::with_capacity(raw.rules.len());
        let rules = raw
            .rules
            .iter()
            .map(|r| {
                let label = match labels.iter().position(|l| *l == r.placeholder) {
                    Some(i) => i,
                    None => {
                        labels.push(r.placeholder.clone());
                        labels.len() - 1
                    }
                };
                rule_label.push(label);
                RuleInfo {
                    id: r.id.clone(),
                    detector: r.detector.name(),
                    action: r.action,
                    label: r.placeholder.clone(),
                }
            })
            .collect();
        let input = SideMatcher::compile(raw, Side::Input).map_err(error)?;
        let output = SideMatcher::compile(raw, Side::Output).map_err(error)?;
        Ok(Profile {
            name: raw.name.clone(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            rules,
            labels,
            rule_label,
            input,
            output,
        })
    }

    /// The profile's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its rules, in config order; [`Blocked::rule`] and [`Hit::rule`] index this.
    pub fn rules(&self) -> &[RuleInfo] {
        &self.rules
    }

    /// True when no rule looks at this side (and nothing is restored there): the engine can
    /// skip extracting text.
    pub fn is_idle(&self, side: Side) -> bool {
        self.matcher(side).is_empty()
    }

    /// Longest text a stream holds back on this side while a match may still be completing.
    pub fn hold_back(&self, side: Side) -> usize {
        self.matcher(side).max_len()
    }

    fn matcher(&self, side: Side) -> &SideMatcher {
        match side {
            Side::Input => &self.input,
            Side::Output => &self.output,
        }
    }

    /// Scans one complete text. `Ok(None)`: unchanged. `Ok(Some(text))`: rewritten (masked
    /// values replaced by placeholders, or placeholders restored). Hits are added to
    /// `session`.
    pub fn scan_text(
        &self,
        side: Side,
        text: &str,
        session: &mut Session,
        scratch: &mut ScanScratch,
    ) -> Result<Option<String>, Blocked> {
        // Shorter than any match: nothing to find.
        if text.len() < self.matcher(side).min_len() {
            return Ok(None);
        }
        // Prompts repeat (system prompts, tool definitions, the conversation so far); answers
        // do not, so only input texts are remembered.
        let memo = side == Side::Input && CleanMemo::fits(text);
        if memo && scratch.memo.contains(self.id, text) {
            return Ok(None);
        }
        let hits = session.hit_total();
        let mut scan = TextScan::new(side);
        let mut out = String::new();
        let changed = scan.scan_whole(self, text, session, scratch, &mut out)?;
        if memo && !changed && session.hit_total() == hits {
            scratch.memo.insert(self.id, text);
        }
        Ok(changed.then_some(out))
    }

    /// This profile's caches for `side` in `scratch`, made on first use (or when the slot
    /// held another profile's, after a reload).
    fn cache<'s>(&self, side: Side, scratch: &'s mut ScanScratch) -> &'s mut SideCache {
        let slot = match scratch.caches.iter().position(|(id, _)| *id == self.id) {
            Some(i) => i,
            None => {
                scratch
                    .caches
                    .push((self.id, [self.input.new_cache(), self.output.new_cache()]));
                scratch.caches.len() - 1
            }
        };
        let pair = &mut scratch.caches[slot].1;
        match side {
            Side::Input => &mut pair[0],
            Side::Output => &mut pair[1],
        }
    }
}

/// One core's search caches, per profile, made on first use. Regex searches need mutable
/// caches; keeping them here, owned by the core, keeps every search lock-free. After a
/// reload, [`ScanScratch::retain`] drops the caches of profiles that are gone.
#[derive(Debug, Default)]
pub struct ScanScratch {
    caches: Vec<(u64, [SideCache; 2])>,
    /// Input texts found clean, per profile.
    memo: CleanMemo,
}

impl ScanScratch {
    /// Empty caches.
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps only the caches of `guardrails`' profiles.
    pub fn retain(&mut self, guardrails: &Guardrails) {
        let alive = |id: u64| guardrails.profiles.iter().any(|p| p.id == id);
        self.caches.retain(|(id, _)| alive(*id));
        self.memo.retain(alive);
    }
}

/// How often one rule fired on one side of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    /// Index of the rule in [`Profile::rules`].
    pub rule: usize,
    /// Where it fired.
    pub side: Side,
    /// Matches.
    pub count: u32,
}

/// One request's guardrail state: its hits, and the values masked on input so that the
/// same value always gets the same placeholder and the output can restore it.
#[derive(Debug, Default)]
pub struct Session {
    hits: Vec<Hit>,
    /// (label index, original value) -> placeholder number.
    numbers: HashMap<(usize, String), u32>,
    /// Placeholder text -> original value.
    originals: HashMap<String, String>,
    /// Next placeholder number per label index.
    next: Vec<u32>,
}

impl Session {
    /// A fresh session.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every rule that fired, with counts, in the order they first fired.
    pub fn hits(&self) -> &[Hit] {
        &self.hits
    }

    /// Values masked so far.
    pub fn masked(&self) -> usize {
        self.originals.len()
    }

    /// Matches counted so far, over every rule and side.
    fn hit_total(&self) -> u64 {
        self.hits.iter().map(|h| u64::from(h.count)).sum()
    }

    fn hit(&mut self, rule: usize, side: Side) {
        match self
            .hits
            .iter_mut()
            .find(|h| h.rule == rule && h.side == side)
        {
            Some(h) => h.count = h.count.saturating_add(1),
            None => self.hits.push(Hit {
                rule,
                side,
                count: 1,
            }),
        }
    }

    /// The placeholder for `original` under `label` (`[EMAIL_2]`), numbered per label in the
    /// order values first appear.
    fn placeholder(&mut self, label_index: usize, label: &str, original: &str, out: &mut String) {
        let key = (label_index, original.to_owned());
        let number = match self.numbers.get(&key) {
            Some(&n) => n,
            None => {
                if self.next.len() <= label_index {
                    self.next.resize(label_index + 1, 0);
                }
                self.next[label_index] += 1;
                let n = self.next[label_index];
                self.numbers.insert(key, n);
                self.originals
                    .insert(format!("[{label}_{n}]"), original.to_owned());
                n
            }
        };
        out.push('[');
        out.push_str(label);
        out.push('_');
        out.push_str(itoa::Buffer::new().format(number));
        out.push(']');
    }

    /// The value a placeholder stands for, if this session made it.
    fn original(&self, placeholder: &str) -> Option<&str> {
        self.originals.get(placeholder).map(String::as_str)
    }
}
