//! Governance on the engine side: loads identities from the store and the config, compiles the
//! [`Directory`] every core authenticates against, prices deployments, publishes a new
//! directory to every worker after an admin change, and turns a request's usage into a ledger
//! record. Admin changes run on the storage thread, one at a time, so the store and the
//! published directory never disagree.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::Sender;
use tollgate_config::governance::{format_usd, Budget, BudgetPeriod, Nanos};
use tollgate_config::{Config, UnknownPrice};
use tollgate_policy::governance::{
    digest_hex, Actual, Admission, Denial, Directory, Estimate, KeyEntry, KeyRecord, Level,
    OrgRecord, Records, TeamRecord, UserRecord,
};
use tollgate_policy::keys::{digest_key, display_form};
use tollgate_policy::period::first_day;
use tollgate_policy::price::{Price, PriceTable};
use tollgate_protocol::openai::Usage;

use crate::error::{GatewayError, LimitRefusal};
use crate::pipeline::RequestCtx;
use crate::storage::StorageHandle;
use crate::store::{day_of, AlertRecord, EntityKind, Scope, Store, StoreError, UsageRecord};
use crate::worker::{Control, Core};

/// Unix milliseconds now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How one client-facing model is priced.
#[derive(Debug, Clone)]
pub struct ModelPricing {
    /// The dearest price among every deployment the request may reach (fallbacks included),
    /// used to reserve the worst case. `None` when none is priced.
    pub reserve: Option<Price>,
    /// Every deployment of the model itself has a price.
    pub all_priced: bool,
    /// Each deployment's price, by deployment index.
    pub deployments: Vec<Option<Price>>,
}

/// What admin changes share: the records and the directory compiled from them.
#[derive(Debug)]
struct State {
    records: Records,
    directory: Arc<Directory>,
    subscribers: Vec<Sender<Control>>,
}

/// Governance for one running gateway: the storage thread and the identity records with the
/// directory compiled from them. Everything derived from the config file (pricing, settings,
/// the master key) lives in [`crate::Shared`], so a config reload swaps it with the rest.
#[derive(Debug)]
pub struct Governance {
    /// The storage thread.
    pub storage: StorageHandle,
    cores: usize,
    state: Mutex<State>,
}

/// Why governance could not start.
#[derive(Debug, thiserror::Error)]
pub enum GovernanceError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A stored record is not valid JSON for its kind.
    #[error("stored {kind} `{name}` is unreadable: {reason}")]
    Corrupt {
        /// Entity kind.
        kind: &'static str,
        /// Entity name.
        name: String,
        /// Parser message.
        reason: String,
    },
}

fn decode<T: serde::de::DeserializeOwned>(
    kind: EntityKind,
    name: &str,
    bytes: &[u8],
) -> Result<T, GovernanceError> {
    serde_json::from_slice(bytes).map_err(|e| GovernanceError::Corrupt {
        kind: kind.as_str(),
        name: name.to_owned(),
        reason: e.to_string(),
    })
}

/// Load every stored record, then lay the config's declarations over them (the file wins for
/// the names it declares).
pub fn load_records(store: &dyn Store, config: &Config) -> Result<Records, GovernanceError> {
    let mut records = Records::default();
    for (name, bytes) in store.entities(EntityKind::Org)? {
        records
            .orgs
            .insert(name.clone(), decode(EntityKind::Org, &name, &bytes)?);
    }
    for (name, bytes) in store.entities(EntityKind::Team)? {
        records
            .teams
            .insert(name.clone(), decode(EntityKind::Team, &name, &bytes)?);
    }
    for (name, bytes) in store.entities(EntityKind::User)? {
        records
            .users
            .insert(name.clone(), decode(EntityKind::User, &name, &bytes)?);
    }
    for (name, bytes) in store.entities(EntityKind::Key)? {
        records
            .keys
            .insert(name.clone(), decode(EntityKind::Key, &name, &bytes)?);
    }
    declare(&mut records, config);
    Ok(records)
}

/// The config file's orgs, teams, users and keys as records.
pub fn declare(records: &mut Records, config: &Config) {
    for org in &config.orgs {
        records.orgs.insert(
            org.name.clone(),
            OrgRecord {
                name: org.name.clone(),
                limits: org.limits.clone(),
                guardrails: org.guardrails.clone(),
                created_at: 0,
            },
        );
    }
    for team in &config.teams {
        records.teams.insert(
            team.name.clone(),
            TeamRecord {
                name: team.name.clone(),
                org: team.org.clone(),
                limits: team.limits.clone(),
                guardrails: team.guardrails.clone(),
                created_at: 0,
            },
        );
    }
    for user in &config.users {
        records.users.insert(
            user.name.clone(),
            UserRecord {
                name: user.name.clone(),
                team: user.team.clone(),
                org: user.org.clone(),
                limits: user.limits.clone(),
                guardrails: user.guardrails.clone(),
                created_at: 0,
            },
        );
    }
    for key in &config.keys {
        let secret = key.key.expose();
        records.keys.insert(
            key.name.clone(),
            KeyRecord {
                name: key.name.clone(),
                digest: digest_hex(&digest_key(secret.as_bytes())),
                display: display_form(secret),
                owner: key.owner.clone(),
                models: key.models.clone(),
                expires_at: key.expires_at,
                revoked_at: None,
                retired: Vec::new(),
                limits: key.limits.clone(),
                guardrails: key.guardrails.clone(),
                created_at: 0,
                declared: true,
            },
        );
    }
}

fn scope_of(level: Level) -> Scope {
    match level {
        Level::Key => Scope::Key,
        Level::User => Scope::User,
        Level::Team => Scope::Team,
        Level::Org => Scope::Org,
    }
}

/// Spend already on the ledger in a budget's current period.
pub fn spent_in_period(
    store: &dyn Store,
    level: Level,
    name: &str,
    model: Option<&str>,
    budget: &Budget,
    now_ms: u64,
) -> Nanos {
    let scope = scope_of(level);
    let totals = if budget.period == BudgetPeriod::Total {
        store.lifetime(scope, name, model)
    } else {
        store.totals(
            scope,
            name,
            model,
            first_day(budget.period, now_ms),
            day_of(now_ms),
        )
    };
    match totals {
        Ok(t) => t.cost,
        Err(e) => {
            // Refusing to start over one unreadable total would be worse than starting the
            // budget from the spend we can read; say so loudly.
            tracing::error!(%e, scope = scope.as_str(), name, "cannot read spend; budget starts at 0");
            0
        }
    }
}

/// Compile a directory against the store's spend.
pub fn compile(
    store: &dyn Store,
    records: &Records,
    previous: Option<&Directory>,
    cores: usize,
    now_ms: u64,
) -> Directory {
    Directory::build(
        records,
        previous,
        cores,
        &|level, name, model, budget| spent_in_period(store, level, name, model, budget, now_ms),
        now_ms,
    )
}

/// Prices of every model's deployments, and what to reserve.
pub fn price_models(config: &Config, table: &PriceTable) -> Vec<ModelPricing> {
    let deployment_prices: Vec<Vec<Option<Price>>> = config
        .models
        .iter()
        .map(|m| {
            m.deployments
                .iter()
                .map(|d| {
                    let provider = &config.providers[d.provider].name;
                    table.lookup(provider, &d.model)
                })
                .collect()
        })
        .collect();
    config
        .models
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let mut reach = vec![i];
            reach.extend(m.fallbacks.iter().copied());
            reach.extend(m.context_fallbacks.iter().copied());
            let reserve = reach
                .iter()
                .flat_map(|&j| deployment_prices[j].iter().flatten())
                .fold(None::<Price>, |acc, p| {
                    Some(match acc {
                        None => *p,
                        Some(a) => Price {
                            input: a.input.max(p.input),
                            output: a.output.max(p.output),
                            cached_input: match (a.cached_input, p.cached_input) {
                                (Some(x), Some(y)) => Some(x.max(y)),
                                (x, y) => x.or(y),
                            },
                        },
                    })
                });
            ModelPricing {
                reserve,
                all_priced: deployment_prices[i].iter().all(Option::is_some),
                deployments: deployment_prices[i].clone(),
            }
        })
        .collect()
}

/// The price table: built-in prices with the config's `[[prices]]` on top.
pub fn price_table(config: &Config) -> PriceTable {
    PriceTable::with_overrides(config.prices.iter().map(|p| {
        (
            p.model.as_str(),
            Price {
                input: p.input,
                output: p.output,
                cached_input: p.cached_input,
            },
        )
    }))
}

/// Log every deployment without a price, and what happens to its requests.
pub fn warn_unpriced(config: &Config, pricing: &[ModelPricing]) {
    for (model, pricing) in config.models.iter().zip(pricing) {
        for (d, price) in model.deployments.iter().zip(&pricing.deployments) {
            if price.is_none() {
                let what = match config.governance.unknown_price {
                    UnknownPrice::Allow => "served at cost 0 and flagged `price_unknown`",
                    UnknownPrice::Block => "refused (`unknown_price = \"block\"`)",
                };
                tracing::warn!(
                    model = %model.name,
                    deployment = %format!("{}/{}", config.providers[d.provider].name, d.model),
                    "no price known; requests are {what}; add a [[prices]] entry"
                );
            }
        }
    }
}

// === impl Governance ===

impl Governance {
    /// Build governance from `records` (already loaded) and its first directory.
    pub fn new(
        records: Records,
        directory: Directory,
        storage: StorageHandle,
        cores: usize,
    ) -> Self {
        Governance {
            storage,
            cores,
            state: Mutex::new(State {
                records,
                directory: Arc::new(directory),
                subscribers: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the records half-changed (changes are
        // built aside and swapped in), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The directory in force.
    pub fn directory(&self) -> Arc<Directory> {
        self.state().directory.clone()
    }

    /// Register a worker's control channel for directory updates.
    pub fn subscribe(&self, tx: Sender<Control>) {
        self.state().subscribers.push(tx);
    }

    /// Number of workers (cores) limits are leased across.
    pub fn cores(&self) -> usize {
        self.cores
    }

    /// Run an admin change on the storage thread's side: `change` edits a copy of the records
    /// and says which entities to write or delete; on success the records are swapped in, the
    /// directory recompiled and published to every worker. Must be called on the storage
    /// thread (through [`StorageHandle::call`]).
    pub fn change<R>(
        &self,
        store: &dyn Store,
        change: impl FnOnce(&mut Records) -> Result<(R, Vec<Write>), crate::admin::AdminError>,
    ) -> Result<R, crate::admin::AdminError> {
        let mut state = self.state();
        let mut records = state.records.clone();
        let (result, writes) = change(&mut records)?;
        persist(store, &records, &writes)?;
        let now = now_ms();
        let directory = Arc::new(compile(
            store,
            &records,
            Some(&state.directory),
            self.cores,
            now,
        ));
        state.records = records;
        state.directory = directory.clone();
        state
            .subscribers
            .retain(|tx| tx.send(Control::Directory(directory.clone())).is_ok());
        Ok(result)
    }

    /// A config reload's phase two (on the storage thread): the stored identities with the
    /// new file's declarations laid over them, checked against the new file, compiled into a
    /// directory (keeping the limit state of every scope whose limits did not change) and
    /// committed to every core together with generation `number`; each core reports on
    /// `done` once it switched. Returns how many cores were told. On error nothing changes.
    pub fn reload(
        &self,
        store: &dyn Store,
        config: &Config,
        number: u64,
        done: &Sender<()>,
    ) -> Result<usize, tollgate_config::ConfigErrors> {
        let records = load_records(store, config).map_err(|e| {
            tollgate_config::ConfigErrors::from(tollgate_config::ConfigError::new(
                "store",
                e.to_string(),
            ))
        })?;
        check_profiles(&records, config)?;
        let mut state = self.state();
        let directory = Arc::new(compile(
            store,
            &records,
            Some(&state.directory),
            self.cores,
            now_ms(),
        ));
        state.records = records;
        state.directory = directory.clone();
        state.subscribers.retain(|tx| {
            tx.send(Control::Commit {
                number,
                directory: directory.clone(),
                done: done.clone(),
            })
            .is_ok()
        });
        Ok(state.subscribers.len())
    }

    /// Read the records (admin reads).
    pub fn read<R>(&self, f: impl FnOnce(&Records) -> R) -> R {
        f(&self.state().records)
    }
}

/// Every guardrails profile an identity names must exist in `config`: a request of an identity
/// whose profile is gone would otherwise go unscanned. Checked at start and on every reload.
pub fn check_profiles(
    records: &Records,
    config: &Config,
) -> Result<(), tollgate_config::ConfigErrors> {
    let known = |name: &Option<String>| {
        name.as_ref()
            .is_none_or(|n| config.guardrails.profiles.iter().any(|p| &p.name == n))
    };
    let mut errors = Vec::new();
    let mut check = |kind: &str, name: &str, profile: &Option<String>| {
        if !known(profile) {
            errors.push(tollgate_config::ConfigError::new(
                "guardrails.profiles",
                format!(
                    "the stored {kind} `{name}` uses guardrails profile `{}`, which this config does not declare; declare it, or change the {kind} first",
                    profile.as_deref().unwrap_or_default()
                ),
            ));
        }
    };
    for o in records.orgs.values() {
        check("org", &o.name, &o.guardrails);
    }
    for t in records.teams.values() {
        check("team", &t.name, &t.guardrails);
    }
    for u in records.users.values() {
        check("user", &u.name, &u.guardrails);
    }
    for k in records.keys.values() {
        check("key", &k.name, &k.guardrails);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(tollgate_config::ConfigErrors { errors })
    }
}

/// Write the entities a change touched, as they now stand in `records`.
pub fn persist(store: &dyn Store, records: &Records, writes: &[Write]) -> Result<(), StoreError> {
    for write in writes {
        match write {
            Write::Put(kind, name) => {
                let bytes = match kind {
                    EntityKind::Org => records.orgs.get(name).map(serde_json::to_vec),
                    EntityKind::Team => records.teams.get(name).map(serde_json::to_vec),
                    EntityKind::User => records.users.get(name).map(serde_json::to_vec),
                    EntityKind::Key => records.keys.get(name).map(serde_json::to_vec),
                };
                if let Some(Ok(bytes)) = bytes {
                    store.put_entity(*kind, name, &bytes)?;
                }
            }
            Write::Delete(kind, name) => {
                store.delete_entity(*kind, name)?;
            }
        }
    }
    Ok(())
}

/// One entity an admin change writes to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Store the entity's current record.
    Put(EntityKind, String),
    /// Remove it.
    Delete(EntityKind, String),
}

// === request-path helpers ===

/// Metric labels of a refusal: the kind of limit, and the level (`key`, `user`, `team`,
/// `org`) that set it.
pub fn refusal_labels(denial: &Denial) -> (&'static str, &'static str) {
    let (limit, scope) = match denial {
        Denial::Requests { scope, .. } => ("requests", scope),
        Denial::Tokens { scope, .. } => ("tokens", scope),
        Denial::Parallel { scope, .. } => ("parallel", scope),
        Denial::Budget { scope, .. } => ("budget", scope),
    };
    let level = match scope.split(':').next() {
        Some("key") => "key",
        Some("user") => "user",
        Some("team") => "team",
        Some("org") => "org",
        _ => "other",
    };
    (limit, level)
}

/// The 429 for a limit or budget that refused a request, with headers naming the limit.
pub fn refusal(denial: &Denial, now_ms: u64) -> GatewayError {
    let seconds = |ms: u64| ms.div_ceil(1000).max(1);
    let (message, error_type, code, mut headers) = match denial {
        Denial::Requests { scope, refusal } => (
            format!(
                "Rate limit reached for {scope} on requests per minute: limit {}, remaining {}. Try again in {}s.",
                refusal.limit,
                refusal.remaining,
                seconds(refusal.reset_ms)
            ),
            "requests",
            "rate_limit_exceeded",
            vec![
                ("retry-after", seconds(refusal.reset_ms).to_string()),
                ("x-ratelimit-limit-requests", refusal.limit.to_string()),
                ("x-ratelimit-remaining-requests", refusal.remaining.to_string()),
                ("x-ratelimit-reset-requests", format!("{}s", seconds(refusal.reset_ms))),
            ],
        ),
        Denial::Tokens {
            scope,
            refusal,
            requested,
        } => {
            let message = if *requested > refusal.limit {
                format!(
                    "Request too large for {scope} on tokens per minute: it may use {requested} tokens (prompt estimate plus max_tokens) and the limit is {}. Lower max_tokens or shorten the prompt.",
                    refusal.limit
                )
            } else {
                format!(
                    "Rate limit reached for {scope} on tokens per minute: limit {}, remaining {}, requested {requested}. Try again in {}s.",
                    refusal.limit,
                    refusal.remaining,
                    seconds(refusal.reset_ms)
                )
            };
            (
                message,
                "tokens",
                "rate_limit_exceeded",
                vec![
                    ("retry-after", seconds(refusal.reset_ms).to_string()),
                    ("x-ratelimit-limit-tokens", refusal.limit.to_string()),
                    ("x-ratelimit-remaining-tokens", refusal.remaining.to_string()),
                    ("x-ratelimit-reset-tokens", format!("{}s", seconds(refusal.reset_ms))),
                ],
            )
        }
        Denial::Parallel { scope, limit } => (
            format!("Too many requests in flight for {scope}: the limit is {limit} at once."),
            "parallel_requests",
            "rate_limit_exceeded",
            vec![
                ("retry-after", "1".to_owned()),
                ("x-ratelimit-limit-parallel", limit.to_string()),
                ("x-ratelimit-remaining-parallel", "0".to_owned()),
            ],
        ),
        Denial::Budget {
            scope,
            budget,
            refusal,
            requested,
        } => {
            let remaining = refusal.limit.saturating_sub(refusal.committed);
            let mut headers = vec![
                ("x-tollgate-budget-limit-usd", format_usd(refusal.limit)),
                ("x-tollgate-budget-remaining-usd", format_usd(remaining)),
            ];
            if budget.period != BudgetPeriod::Total {
                let reset = seconds(refusal.period_end_ms.saturating_sub(now_ms));
                headers.push(("retry-after", reset.to_string()));
                headers.push(("x-tollgate-budget-reset", format!("{reset}s")));
            }
            (
                format!(
                    "Budget exceeded for {scope}: {budget} with ${} spent or reserved; this request could cost up to ${}.",
                    format_usd(refusal.committed),
                    format_usd(*requested)
                ),
                "insufficient_quota",
                "budget_exceeded",
                headers,
            )
        }
    };
    let scope = match denial {
        Denial::Requests { scope, .. }
        | Denial::Tokens { scope, .. }
        | Denial::Parallel { scope, .. }
        | Denial::Budget { scope, .. } => scope.clone(),
    };
    headers.push(("x-tollgate-limit-scope", scope));
    GatewayError::Limited(Box::new(LimitRefusal {
        message,
        error_type,
        code,
        headers,
    }))
}

/// Settle a request's admission against what it used and write its ledger record. `reached`
/// is false for a request refused before any upstream call.
pub(crate) fn record(
    core: &Core<'_>,
    ctx: &RequestCtx<'_>,
    entry: &KeyEntry,
    admission: Option<Admission>,
    estimate: Estimate,
    started_ms: u64,
    reached: bool,
) {
    let gov = &*core.gov;
    let shared = core.shared();
    let meter = &ctx.meter;
    let served_by = if reached { meter.served_by.get() } else { None };
    let (usage, estimated) = match (meter.usage.get(), served_by) {
        (Some(u), _) => (u, false),
        // The upstream was reached but never said what it used: charge the prompt estimate
        // and the output events counted on the way to the client.
        (None, Some(_)) if meter.counted_output.get() > 0 || meter.status.get() == 200 => (
            Usage {
                prompt_tokens: estimate.input_tokens,
                completion_tokens: meter.counted_output.get(),
                total_tokens: estimate.input_tokens + meter.counted_output.get(),
                cached_tokens: 0,
            },
            true,
        ),
        _ => (Usage::default(), false),
    };
    let price = served_by.and_then(|(m, d)| {
        shared
            .pricing
            .get(m)
            .and_then(|p| p.deployments.get(d).copied().flatten())
    });
    let used = usage.prompt_tokens + usage.completion_tokens > 0;
    let cost = price.map_or(0, |p| {
        p.cost(
            usage.prompt_tokens,
            usage.cached_tokens,
            usage.completion_tokens,
        )
    });
    let now = now_ms();
    if let Some(admission) = admission {
        let crossings = admission.settle(
            entry,
            Actual {
                input_tokens: usage.prompt_tokens,
                output_tokens: usage.completion_tokens,
                cost,
            },
            now,
        );
        for c in crossings {
            tracing::warn!(
                target: "tollgate::alert",
                scope = %c.scope,
                model = c.model.as_deref().unwrap_or("*"),
                budget = %c.budget,
                committed_usd = %format_usd(c.committed),
                "budget reached"
            );
            gov.storage.alert(AlertRecord {
                time_ms: now,
                scope: c.level.as_str().to_owned(),
                name: c.name,
                model: c.model,
                budget: c.budget.to_string(),
                committed: c.committed,
                limit: c.budget.amount,
            });
        }
    }
    let hits = ctx
        .guard
        .as_ref()
        .map(crate::guard::Guard::hits)
        .unwrap_or_default();
    let deployment = served_by
        .map(|(m, d)| shared.deployment_label(m, d))
        .unwrap_or_default();
    let first_token = ctx
        .meter
        .first_event
        .get()
        .map(|t| t.saturating_duration_since(ctx.meter.started));
    core.metrics
        .borrow_mut()
        .model_request(&crate::metrics::ModelSample {
            model: &ctx.model,
            deployment,
            team: entry.team.as_deref().unwrap_or_default(),
            status: meter.status.get(),
            input_tokens: usage.prompt_tokens,
            output_tokens: usage.completion_tokens,
            cached_tokens: usage.cached_tokens,
            cost_nanos: cost,
            duration: ctx.meter.started.elapsed(),
            first_token,
            guardrails: ctx
                .guard
                .as_ref()
                .map(|g| (g.profile_name(), hits.as_slice())),
            time_ms: now,
            key: &entry.record.name,
            request_id: ctx.request_id.as_str(),
        });
    core.access.log(|| crate::access_log::AccessEntry {
        time_ms: now,
        request_id: ctx.request_id.as_str(),
        route: ctx.route_label(),
        key: &entry.record.name,
        key_prefix: &entry.record.display,
        team: entry.team.as_deref().unwrap_or_default(),
        model: &ctx.model,
        deployment,
        status: meter.status.get(),
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
        cached_tokens: usage.cached_tokens,
        cost_nanos: cost,
        latency_us: u64::try_from(ctx.meter.started.elapsed().as_micros()).unwrap_or(u64::MAX),
        ttft_us: first_token.map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
        attempts: ctx.meter.attempts.get(),
    });
    gov.storage.record(UsageRecord {
        time_ms: now,
        request_id: ctx.request_id.as_str().to_owned(),
        key: entry.record.name.clone(),
        user: entry.user.clone(),
        team: entry.team.clone(),
        org: entry.org.clone(),
        model: ctx.model.clone(),
        deployment: deployment.to_owned(),
        input_tokens: usage.prompt_tokens,
        output_tokens: usage.completion_tokens,
        cached_tokens: usage.cached_tokens,
        cost,
        latency_us: now.saturating_sub(started_ms) * 1000,
        status: meter.status.get(),
        estimated,
        price_unknown: used && price.is_none(),
        guardrails: hits,
    });
}
