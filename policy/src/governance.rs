//! Identities and admission: the org > team > user > key records, the compiled [`Directory`]
//! every core authenticates against, and the [`Admission`] a request holds from the moment its
//! limits and budgets let it in until its actual usage is settled.
//!
//! A directory is immutable; a change (a key created or revoked) builds a new one that reuses the
//! live counters of every scope whose limits did not change, so spend and rate windows carry
//! over. Nothing here does I/O: the engine persists records and publishes directories.

use std::collections::HashMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tollgate_config::governance::{Budget, KeyOwner, Limits, Nanos, TokenCount};

use crate::keys::{digest_key, KeyDigest};
use crate::limits::{
    BudgetCounter, BudgetRefusal, ConcurrencyLimit, Refusal, Reservation, WindowLimit,
};

/// Length of a rate-limit window.
pub const MINUTE_MS: u64 = 60_000;

/// Which level of the hierarchy a scope is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// A virtual key.
    Key,
    /// A user.
    User,
    /// A team.
    Team,
    /// An org.
    Org,
}

impl Level {
    /// Lowercase name (`key`, `user`, `team`, `org`).
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Key => "key",
            Level::User => "user",
            Level::Team => "team",
            Level::Org => "org",
        }
    }
}

// === records ===

/// An org as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgRecord {
    /// Unique name.
    pub name: String,
    /// Limits and budgets.
    #[serde(default)]
    pub limits: Limits,
    /// Guardrails profile for its requests (the nearest level that names one wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: u64,
}

/// A team as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamRecord {
    /// Unique name.
    pub name: String,
    /// Owning org.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Limits and budgets.
    #[serde(default)]
    pub limits: Limits,
    /// Guardrails profile for its requests (the nearest level that names one wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: u64,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// Unique name.
    pub name: String,
    /// Owning team.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Owning org (when no team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    /// Limits and budgets.
    #[serde(default)]
    pub limits: Limits,
    /// Guardrails profile for its requests (the nearest level that names one wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: u64,
}

/// A secret a key was rotated away from, still accepted until `valid_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetiredSecret {
    /// SHA-256 of the old secret, hex.
    pub digest: String,
    /// Display form of the old secret.
    pub display: String,
    /// Unix seconds; refused from then on.
    pub valid_until: u64,
}

/// A virtual key as stored: never the secret, only its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Unique name (safe to log).
    pub name: String,
    /// SHA-256 of the secret, hex.
    pub digest: String,
    /// Display form: `sk-tg-...abcd`.
    pub display: String,
    /// Owner: a user, team or org.
    #[serde(default)]
    pub owner: KeyOwner,
    /// Models it may use; `None` = all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Unix seconds after which it is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
    /// Unix seconds it was revoked at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<u64>,
    /// Secrets it was rotated away from, still valid for a grace period.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredSecret>,
    /// Its own limits and budgets.
    #[serde(default)]
    pub limits: Limits,
    /// Guardrails profile for its requests (the nearest level that names one wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardrails: Option<String>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: u64,
    /// Declared in the config file (read-only through the admin API).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub declared: bool,
}

/// Hex form of a key digest.
pub fn digest_hex(digest: &KeyDigest) -> String {
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Parse the hex form of a digest.
pub fn parse_digest_hex(text: &str) -> Option<KeyDigest> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let nibble = |c: u8| (c as char).to_digit(16);
        out[i] = (nibble(pair[0])? * 16 + nibble(pair[1])?) as u8;
    }
    Some(out)
}

/// Every identity record, by name: the input a [`Directory`] is compiled from.
#[derive(Debug, Clone, Default)]
pub struct Records {
    /// Orgs.
    pub orgs: HashMap<String, OrgRecord>,
    /// Teams.
    pub teams: HashMap<String, TeamRecord>,
    /// Users.
    pub users: HashMap<String, UserRecord>,
    /// Keys.
    pub keys: HashMap<String, KeyRecord>,
}

impl Records {
    /// The owner chain of a key: `(level, name, limits)` from the key up to its org. Names
    /// that do not resolve end the chain there.
    pub fn chain<'a>(&'a self, key: &'a KeyRecord) -> Vec<(Level, &'a str, &'a Limits)> {
        let (user, team, org) = self.owners(key);
        let mut chain = vec![(Level::Key, key.name.as_str(), &key.limits)];
        chain.extend(user.map(|u| (Level::User, u.name.as_str(), &u.limits)));
        chain.extend(team.map(|t| (Level::Team, t.name.as_str(), &t.limits)));
        chain.extend(org.map(|o| (Level::Org, o.name.as_str(), &o.limits)));
        chain
    }

    /// The guardrails profile a key's requests use: the key's own, else its user's, team's
    /// or org's, the nearest level that names one. `None`: the configured default.
    pub fn guardrails<'a>(&'a self, key: &'a KeyRecord) -> Option<&'a str> {
        let (user, team, org) = self.owners(key);
        key.guardrails
            .as_deref()
            .or_else(|| user.and_then(|u| u.guardrails.as_deref()))
            .or_else(|| team.and_then(|t| t.guardrails.as_deref()))
            .or_else(|| org.and_then(|o| o.guardrails.as_deref()))
    }

    /// The user, team and org above a key, those that exist.
    fn owners(
        &self,
        key: &KeyRecord,
    ) -> (Option<&UserRecord>, Option<&TeamRecord>, Option<&OrgRecord>) {
        let mut team = key.owner.team.as_deref();
        let mut org = key.owner.org.as_deref();
        let user = key.owner.user.as_deref().and_then(|u| self.users.get(u));
        if let Some(user) = user {
            team = user.team.as_deref();
            org = user.org.as_deref();
        }
        let team = team.and_then(|t| self.teams.get(t));
        if let Some(team) = team {
            org = team.org.as_deref().or(org);
        }
        (user, team, org.and_then(|o| self.orgs.get(o)))
    }
}

// === live state ===

/// One budget's live counter.
#[derive(Debug)]
pub struct LiveBudget {
    /// The budget as configured.
    pub budget: Budget,
    /// Committed spend in the current period.
    pub counter: BudgetCounter,
}

/// The live counters of one scope (all models, or one model).
#[derive(Debug)]
pub struct Counters {
    rpm: Option<WindowLimit>,
    tpm: Option<WindowLimit>,
    tpm_counts: TokenCount,
    parallel: Option<ConcurrencyLimit>,
    budgets: Vec<LiveBudget>,
}

impl Counters {
    fn new(limits: &Limits, cores: usize, spent: &dyn Fn(&Budget) -> Nanos, now_ms: u64) -> Self {
        Counters {
            rpm: limits.rpm.map(|n| WindowLimit::new(n, MINUTE_MS, cores)),
            tpm: limits.tpm.map(|n| WindowLimit::new(n, MINUTE_MS, cores)),
            tpm_counts: limits.tpm_counts,
            parallel: limits.max_parallel.map(ConcurrencyLimit::new),
            budgets: limits
                .budgets
                .iter()
                .map(|b| LiveBudget {
                    budget: *b,
                    counter: BudgetCounter::new(b.amount, b.period, spent(b), now_ms),
                })
                .collect(),
        }
    }

    fn is_empty(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.parallel.is_none()
            && self.budgets.is_empty()
    }

    /// The live budgets.
    pub fn budgets(&self) -> &[LiveBudget] {
        &self.budgets
    }

    fn reclaim_idle(&self, now_ms: u64, idle_ms: u64) {
        for limit in [&self.rpm, &self.tpm].into_iter().flatten() {
            limit.reclaim_idle(now_ms, idle_ms);
        }
    }
}

/// Live state of one org, team, user or key: counters over all models and per model. Shared by
/// every core and carried from one directory to the next while its limits stay the same.
#[derive(Debug)]
pub struct ScopeState {
    /// Level in the hierarchy.
    pub level: Level,
    /// Entity name.
    pub name: String,
    /// The limits it was built from.
    pub limits: Limits,
    /// Counters over all models.
    pub all: Counters,
    /// Counters per client-facing model.
    pub models: HashMap<String, Counters>,
}

impl ScopeState {
    /// Build fresh counters. `spent(model, budget)` gives spend already recorded in the
    /// budget's current period (from the ledger).
    pub fn new(
        level: Level,
        name: &str,
        limits: &Limits,
        cores: usize,
        spent: &dyn Fn(Option<&str>, &Budget) -> Nanos,
        now_ms: u64,
    ) -> Self {
        ScopeState {
            level,
            name: name.to_owned(),
            limits: limits.clone(),
            all: Counters::new(limits, cores, &|b| spent(None, b), now_ms),
            models: limits
                .models
                .iter()
                .map(|(model, l)| {
                    let counters = Counters::new(l, cores, &|b| spent(Some(model), b), now_ms);
                    (model.clone(), counters)
                })
                .collect(),
        }
    }

    /// `level:name`, as shown in errors and headers.
    pub fn label(&self) -> String {
        format!("{}:{}", self.level.as_str(), self.name)
    }

    /// The counters for one model, if it has its own limits.
    pub fn model(&self, model: &str) -> Option<&Counters> {
        self.models.get(model)
    }

    fn reclaim_idle(&self, now_ms: u64, idle_ms: u64) {
        self.all.reclaim_idle(now_ms, idle_ms);
        for c in self.models.values() {
            c.reclaim_idle(now_ms, idle_ms);
        }
    }
}

/// A key ready for requests: its record and the live state of every level above it.
#[derive(Debug)]
pub struct KeyEntry {
    /// The stored record.
    pub record: KeyRecord,
    /// Key, user, team, org (those that exist), each with counters; scopes without any limit
    /// are left out so admission skips them.
    pub chain: Vec<Arc<ScopeState>>,
    /// Names of the user, team and org, for usage records.
    pub user: Option<String>,
    /// Team name.
    pub team: Option<String>,
    /// Org name.
    pub org: Option<String>,
    /// The guardrails profile its requests use (`None`: the default), see
    /// [`Records::guardrails`].
    pub guardrails: Option<String>,
}

/// How a presented secret matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SecretState {
    Current,
    /// A rotated-away secret, accepted until this unix second.
    Retired(u64),
}

/// Why a key is refused before any limit is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRefusal {
    /// No key matches (401).
    Unknown,
    /// Revoked (401).
    Revoked,
    /// Past its expiry (401).
    Expired,
    /// A rotated-away secret past its grace period (401).
    Rotated,
    /// The model is not on the key's allow-list (403).
    ModelNotAllowed,
}

/// Spend already recorded for `(level, name, model or all, budget)` in the budget's current
/// period: how a new directory learns what the ledger holds.
pub type SpentInPeriod<'a> = dyn Fn(Level, &str, Option<&str>, &Budget) -> Nanos + 'a;

/// The compiled, immutable table every core authenticates against.
#[derive(Debug, Default)]
pub struct Directory {
    by_digest: HashMap<KeyDigest, (Arc<KeyEntry>, SecretState)>,
    scopes: HashMap<(Level, String), Arc<ScopeState>>,
    /// Which generation this is (increases with every change).
    pub generation: u64,
}

impl Directory {
    /// Compile records into a directory. Scopes whose limits equal those in `previous` keep
    /// their live counters; new ones start from `spent` (the ledger's spend in each budget's
    /// current period).
    pub fn build(
        records: &Records,
        previous: Option<&Directory>,
        cores: usize,
        spent: &SpentInPeriod<'_>,
        now_ms: u64,
    ) -> Directory {
        let mut scopes: HashMap<(Level, String), Arc<ScopeState>> = HashMap::new();
        let mut scope = |level: Level, name: &str, limits: &Limits| -> Option<Arc<ScopeState>> {
            if limits.is_empty() {
                return None;
            }
            let id = (level, name.to_owned());
            if let Some(s) = scopes.get(&id) {
                return Some(s.clone());
            }
            let state = previous
                .and_then(|p| p.scopes.get(&id))
                .filter(|s| s.limits == *limits)
                .cloned()
                .unwrap_or_else(|| {
                    let spent = |model: Option<&str>, b: &Budget| spent(level, name, model, b);
                    Arc::new(ScopeState::new(level, name, limits, cores, &spent, now_ms))
                });
            scopes.insert(id, state.clone());
            Some(state)
        };
        let mut by_digest = HashMap::new();
        for key in records.keys.values() {
            let chain = records.chain(key);
            let mut user = None;
            let mut team = None;
            let mut org = None;
            let mut states = Vec::new();
            for (level, name, limits) in chain {
                match level {
                    Level::User => user = Some(name.to_owned()),
                    Level::Team => team = Some(name.to_owned()),
                    Level::Org => org = Some(name.to_owned()),
                    Level::Key => {}
                }
                states.extend(scope(level, name, limits));
            }
            // Parents the key names directly but that do not exist stay recorded as named.
            user = user.or_else(|| key.owner.user.clone());
            team = team.or_else(|| key.owner.team.clone());
            org = org.or_else(|| key.owner.org.clone());
            let entry = Arc::new(KeyEntry {
                record: key.clone(),
                chain: states,
                user,
                team,
                org,
                guardrails: records.guardrails(key).map(str::to_owned),
            });
            if let Some(digest) = parse_digest_hex(&key.digest) {
                by_digest.insert(digest, (entry.clone(), SecretState::Current));
            }
            for retired in &key.retired {
                if let Some(digest) = parse_digest_hex(&retired.digest) {
                    by_digest.insert(
                        digest,
                        (entry.clone(), SecretState::Retired(retired.valid_until)),
                    );
                }
            }
        }
        Directory {
            by_digest,
            scopes,
            generation: previous.map_or(1, |p| p.generation + 1),
        }
    }

    /// Number of secrets (current and in grace) that authenticate.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// True when no key exists.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Authenticate a presented secret at `now_s` (unix seconds): the key, or why not.
    pub fn authenticate(&self, presented: &[u8], now_s: u64) -> Result<&Arc<KeyEntry>, KeyRefusal> {
        let digest = digest_key(presented);
        let Some((stored, (entry, state))) = self.by_digest.get_key_value(&digest) else {
            return Err(KeyRefusal::Unknown);
        };
        // The map lookup matched; confirm in constant time so the decision does not depend
        // on where two digests first differ.
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&stored[..], &digest[..])) {
            return Err(KeyRefusal::Unknown);
        }
        let record = &entry.record;
        if record.revoked_at.is_some_and(|t| t <= now_s) {
            return Err(KeyRefusal::Revoked);
        }
        if record.expires_at.is_some_and(|t| t <= now_s) {
            return Err(KeyRefusal::Expired);
        }
        if let SecretState::Retired(until) = state {
            if *until <= now_s {
                return Err(KeyRefusal::Rotated);
            }
        }
        Ok(entry)
    }

    /// Every scope with live counters, for the reconciler.
    pub fn scopes(&self) -> impl Iterator<Item = &Arc<ScopeState>> {
        self.scopes.values()
    }

    /// The live state of one scope, if it has limits.
    pub fn scope(&self, level: Level, name: &str) -> Option<&Arc<ScopeState>> {
        self.scopes.get(&(level, name.to_owned()))
    }

    /// Return every idle core's leases to the pools (the reconciler's periodic job).
    pub fn reclaim_idle(&self, now_ms: u64, idle_ms: u64) {
        for s in self.scopes.values() {
            s.reclaim_idle(now_ms, idle_ms);
        }
    }
}

impl KeyEntry {
    /// Check the model allow-list.
    pub fn allows(&self, model: &str) -> bool {
        self.record
            .models
            .as_ref()
            .is_none_or(|list| list.iter().any(|m| m == model))
    }
}

// === admission ===

/// What a request is expected to use, decided before the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    /// Prompt tokens (an over-estimate from the request size).
    pub input_tokens: u64,
    /// Most output tokens it may produce (`max_tokens`, or the default cap).
    pub max_output_tokens: u64,
    /// Worst-case cost: input estimate plus max output at the dearest deployment's prices.
    pub worst_cost: Nanos,
}

/// Which limit refused a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Requests per minute.
    Requests {
        /// `level:name`, plus ` model` for a per-model limit.
        scope: String,
        /// The window's limit, remaining and reset.
        refusal: Refusal,
    },
    /// Tokens per minute.
    Tokens {
        /// Scope label.
        scope: String,
        /// Refusal details.
        refusal: Refusal,
        /// Tokens this request needed.
        requested: u64,
    },
    /// Requests in flight.
    Parallel {
        /// Scope label.
        scope: String,
        /// The limit.
        limit: u64,
    },
    /// A hard budget.
    Budget {
        /// Scope label.
        scope: String,
        /// The budget.
        budget: Budget,
        /// Refusal details.
        refusal: BudgetRefusal,
        /// Worst-case cost of this request.
        requested: Nanos,
    },
}

/// One thing an admission holds and must give back or settle.
#[derive(Debug)]
enum Hold {
    Request {
        scope: Arc<ScopeState>,
        model: bool,
    },
    Tokens {
        scope: Arc<ScopeState>,
        model: bool,
        taken: u64,
    },
    Parallel {
        scope: Arc<ScopeState>,
        model: bool,
    },
    Budget {
        scope: Arc<ScopeState>,
        model: bool,
        index: usize,
        reservation: Reservation,
    },
}

/// A soft or hard budget crossed by a settlement: the engine raises an alert for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetCrossing {
    /// Scope label.
    pub scope: String,
    /// Level.
    pub level: Level,
    /// Entity name.
    pub name: String,
    /// The model, for a per-model budget.
    pub model: Option<String>,
    /// The budget.
    pub budget: Budget,
    /// Committed spend after the settlement.
    pub committed: Nanos,
}

/// What a request holds between admission and settlement. Dropping it without settling
/// releases everything as if nothing was used.
#[derive(Debug)]
pub struct Admission {
    holds: Vec<Hold>,
    model: String,
    core: usize,
    taken_at_ms: u64,
    settled: bool,
}

fn counters<'a>(scope: &'a ScopeState, model: bool, name: &str) -> Option<&'a Counters> {
    if model {
        scope.model(name)
    } else {
        Some(&scope.all)
    }
}

fn tokens_for(counts: TokenCount, input: u64, output: u64) -> u64 {
    match counts {
        TokenCount::Input => input,
        TokenCount::Output => output,
        TokenCount::Total => input.saturating_add(output),
    }
}

/// Check every level's limits for one request on `core` and take what it needs: a request
/// slot, estimated tokens, an in-flight slot and a worst-case budget reservation at every
/// level that sets them. The first refusal undoes everything taken so far.
pub fn admit(
    entry: &KeyEntry,
    model: &str,
    estimate: Estimate,
    core: usize,
    now_ms: u64,
) -> Result<Admission, Denial> {
    let mut admission = Admission {
        holds: Vec::new(),
        model: model.to_owned(),
        core,
        taken_at_ms: now_ms,
        settled: false,
    };
    for scope in &entry.chain {
        for per_model in [false, true] {
            let Some(c) = counters(scope, per_model, model) else {
                continue;
            };
            if c.is_empty() {
                continue;
            }
            let label = || {
                if per_model {
                    format!("{} model {model}", scope.label())
                } else {
                    scope.label()
                }
            };
            if let Some(rpm) = &c.rpm {
                rpm.try_take(core, 1, now_ms)
                    .map_err(|refusal| Denial::Requests {
                        scope: label(),
                        refusal,
                    })?;
                admission.holds.push(Hold::Request {
                    scope: scope.clone(),
                    model: per_model,
                });
            }
            if let Some(tpm) = &c.tpm {
                let need = tokens_for(
                    c.tpm_counts,
                    estimate.input_tokens,
                    estimate.max_output_tokens,
                );
                tpm.try_take(core, need, now_ms)
                    .map_err(|refusal| Denial::Tokens {
                        scope: label(),
                        refusal,
                        requested: need,
                    })?;
                admission.holds.push(Hold::Tokens {
                    scope: scope.clone(),
                    model: per_model,
                    taken: need,
                });
            }
            if let Some(parallel) = &c.parallel {
                parallel.try_acquire().map_err(|r| Denial::Parallel {
                    scope: label(),
                    limit: r.limit,
                })?;
                admission.holds.push(Hold::Parallel {
                    scope: scope.clone(),
                    model: per_model,
                });
            }
            for (index, live) in c.budgets.iter().enumerate() {
                if live.budget.soft {
                    continue;
                }
                let reservation = live
                    .counter
                    .try_reserve(estimate.worst_cost, now_ms)
                    .map_err(|refusal| Denial::Budget {
                        scope: label(),
                        budget: live.budget,
                        refusal,
                        requested: estimate.worst_cost,
                    })?;
                admission.holds.push(Hold::Budget {
                    scope: scope.clone(),
                    model: per_model,
                    index,
                    reservation,
                });
            }
        }
    }
    Ok(admission)
}

/// What a finished request actually used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Actual {
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Its cost.
    pub cost: Nanos,
}

impl Admission {
    /// Settle against what the request actually used: tokens above or below the estimate are
    /// charged or given back, in-flight slots released, reservations replaced by the actual
    /// cost, and soft budgets charged. Returns every budget this settlement pushed to or over
    /// its limit, for alerts.
    pub fn settle(mut self, entry: &KeyEntry, actual: Actual, now_ms: u64) -> Vec<BudgetCrossing> {
        self.settled = true;
        let mut crossings = Vec::new();
        for hold in std::mem::take(&mut self.holds) {
            self.release(hold, Some(actual), now_ms, &mut crossings);
        }
        // Soft budgets were not reserved: charge them now.
        for scope in &entry.chain {
            for per_model in [false, true] {
                let Some(c) = counters(scope, per_model, &self.model) else {
                    continue;
                };
                for live in c.budgets.iter().filter(|b| b.budget.soft) {
                    if live.counter.charge(actual.cost, now_ms) {
                        crossings.push(crossing(
                            scope,
                            per_model.then(|| self.model.clone()),
                            live,
                            now_ms,
                        ));
                    }
                }
            }
        }
        crossings
    }

    fn release(
        &self,
        hold: Hold,
        actual: Option<Actual>,
        now_ms: u64,
        crossings: &mut Vec<BudgetCrossing>,
    ) {
        let model = self.model.as_str();
        match hold {
            Hold::Request {
                scope,
                model: per_model,
            } => {
                // A request slot is spent even when the request fails; only an admission that
                // never ran (dropped unsettled) gives it back.
                if actual.is_none() {
                    if let Some(rpm) =
                        counters(&scope, per_model, model).and_then(|c| c.rpm.as_ref())
                    {
                        rpm.give_back(self.core, 1, self.taken_at_ms, now_ms);
                    }
                }
            }
            Hold::Tokens {
                scope,
                model: per_model,
                taken,
            } => {
                let Some(c) = counters(&scope, per_model, model) else {
                    return;
                };
                let Some(tpm) = &c.tpm else { return };
                let used = actual.map_or(0, |a| {
                    tokens_for(c.tpm_counts, a.input_tokens, a.output_tokens)
                });
                if used < taken {
                    tpm.give_back(self.core, taken - used, self.taken_at_ms, now_ms);
                } else if used > taken {
                    tpm.charge_extra(self.core, used - taken, now_ms);
                }
            }
            Hold::Parallel {
                scope,
                model: per_model,
            } => {
                if let Some(p) =
                    counters(&scope, per_model, model).and_then(|c| c.parallel.as_ref())
                {
                    p.release();
                }
            }
            Hold::Budget {
                scope,
                model: per_model,
                index,
                reservation,
            } => {
                let Some(live) =
                    counters(&scope, per_model, model).and_then(|c| c.budgets.get(index))
                else {
                    return;
                };
                let cost = actual.map_or(0, |a| a.cost);
                if live.counter.settle(reservation, cost, now_ms) {
                    crossings.push(crossing(
                        &scope,
                        per_model.then(|| model.to_owned()),
                        live,
                        now_ms,
                    ));
                }
            }
        }
    }
}

fn crossing(
    scope: &ScopeState,
    model: Option<String>,
    live: &LiveBudget,
    now_ms: u64,
) -> BudgetCrossing {
    BudgetCrossing {
        scope: scope.label(),
        level: scope.level,
        name: scope.name.clone(),
        model,
        budget: live.budget,
        committed: live.counter.committed(now_ms),
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        // Refused part-way, or abandoned: give everything back.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(self.taken_at_ms, |d| d.as_millis() as u64);
        let mut ignored = Vec::new();
        for hold in std::mem::take(&mut self.holds) {
            self.release(hold, None, now_ms, &mut ignored);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(name: &str, secret: &str) -> KeyRecord {
        KeyRecord {
            name: name.to_owned(),
            digest: digest_hex(&digest_key(secret.as_bytes())),
            display: crate::keys::display_form(secret),
            owner: KeyOwner::default(),
            models: None,
            expires_at: None,
            revoked_at: None,
            retired: Vec::new(),
            limits: Limits::default(),
            guardrails: None,
            created_at: 1,
            declared: false,
        }
    }

    fn directory() -> Directory {
        let mut records = Records::default();
        for (name, secret) in [
            ("demo", "sk-tollgate-demo"),
            ("ops", "sk-tollgate-ops-1234"),
        ] {
            records.keys.insert(name.to_owned(), key(name, secret));
        }
        Directory::build(&records, None, 1, &|_, _, _, _| 0, 0)
    }

    #[test]
    fn authenticates_known_keys_only() {
        let d = directory();
        let name = |t: &[u8]| d.authenticate(t, 0).map(|e| e.record.name.clone());
        assert_eq!(name(b"sk-tollgate-demo").unwrap(), "demo");
        assert_eq!(name(b"sk-tollgate-ops-1234").unwrap(), "ops");
        assert_eq!(name(b"sk-tollgate-dem"), Err(KeyRefusal::Unknown));
        assert_eq!(name(b""), Err(KeyRefusal::Unknown));
        assert!(!format!("{d:?}").contains("sk-tollgate-demo"));
    }
}
