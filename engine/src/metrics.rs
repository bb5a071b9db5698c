//! Metrics: what each core counts about the requests it serves, and `/metrics` in the
//! Prometheus text format (version 0.0.4).
//!
//! Each core owns its [`CoreMetrics`] (plain maps and HDR histograms, no atomics, no locks on
//! the request path). A scrape asks every core for a copy through [`Telemetry`]: the core
//! answering the scrape raises the wanted generation, every other core copies its metrics into
//! its slot on its next control tick (a lock taken only there and by the scrape), and the
//! copies are merged and rendered. Label values are names from the config or the key directory
//! (models, deployments, teams, guardrail profiles and rules) and fixed words: never anything a
//! client sent, never a key.
//!
//! The same copies carry what the admin dashboard shows live (`crate::dashboard`): requests per
//! second and latency over the last minute ([`Recent`]), each core's last guardrail hits (a
//! bounded ring, never the matched text) and, filled in when a copy is taken, what the core's
//! router knows about every deployment's health.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::store::record::GuardHit;
use crate::worker::WorkerStatus;

/// Histogram bounds: 1 µs to 10 minutes, two significant digits.
const HISTOGRAM_MAX_US: u64 = 600_000_000;
/// Bucket bounds (seconds) of the latency histograms as exposed.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0,
];
/// Bucket bounds (seconds) of the time-per-output-token histogram.
const TOKEN_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
];
/// How long a scrape waits for the other cores' copies before rendering what it has.
const SCRAPE_WAIT: Duration = Duration::from_millis(500);
/// Seconds of per-second request counts each core keeps.
pub(crate) const RECENT_SECONDS: u64 = 60;
/// Recent latency is kept in slices of this many seconds...
const SLICE_SECONDS: u64 = 10;
/// ...this many of them (the current one included), so it covers the last 50 to 60 seconds.
const SLICES: u64 = 6;
/// Guardrail hits each core remembers (the newest; older ones are in the usage ledger).
pub(crate) const RECENT_HITS: usize = 128;

/// Index of an interned name in one core's [`Names`].
type NameId = u32;

/// Maps on the request path hash with foldhash: several lookups per request, keys never
/// chosen by clients (config and directory names, fixed words).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Names used as label values on one core, each stored once.
#[derive(Debug, Clone, Default)]
struct Names {
    names: Vec<String>,
    ids: Map<String, NameId>,
}

impl Names {
    fn id(&mut self, name: &str) -> NameId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len() as NameId;
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    fn name(&self, id: NameId) -> &str {
        self.names.get(id as usize).map_or("", String::as_str)
    }
}

/// Labels of one model-request series: model, deployment, team (ids) and HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ModelKey {
    model: NameId,
    deployment: NameId,
    team: NameId,
    status: u16,
}

/// Counters of one model-request series.
#[derive(Debug, Clone, Copy, Default)]
struct ModelCounts {
    requests: u64,
    input_tokens: u64,
    output_tokens: u64,
    cached_tokens: u64,
    cost_nanos: u64,
}

impl ModelCounts {
    fn add(&mut self, other: &ModelCounts) {
        self.requests += other.requests;
        self.input_tokens += other.input_tokens;
        self.output_tokens += other.output_tokens;
        self.cached_tokens += other.cached_tokens;
        self.cost_nanos += other.cost_nanos;
    }
}

/// A histogram and the exact sum of what it recorded (HDR keeps no sum).
#[derive(Debug, Clone)]
struct Timing {
    histogram: Histogram<u64>,
    sum_us: u64,
}

impl Timing {
    fn new() -> Option<Timing> {
        Histogram::new_with_bounds(1, HISTOGRAM_MAX_US, 2)
            .ok()
            .map(|histogram| Timing {
                histogram,
                sum_us: 0,
            })
    }

    fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(us.max(1));
        self.sum_us = self.sum_us.saturating_add(us);
    }

    fn add(&mut self, other: &Timing) {
        // Same bounds on every core: adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        self.sum_us = self.sum_us.saturating_add(other.sum_us);
    }

    fn reset(&mut self) {
        self.histogram.reset();
        self.sum_us = 0;
    }

    /// Percentiles of what was recorded; `None` when nothing was.
    fn percentiles(&self) -> Option<Percentiles> {
        let h = &self.histogram;
        (!h.is_empty()).then(|| Percentiles {
            count: h.len(),
            p50: Duration::from_micros(h.value_at_quantile(0.5)),
            p90: Duration::from_micros(h.value_at_quantile(0.9)),
            p99: Duration::from_micros(h.value_at_quantile(0.99)),
            max: Duration::from_micros(h.max()),
        })
    }
}

/// Percentiles of a latency distribution (two significant digits, HDR's resolution).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Largest.
    pub max: Duration,
}

/// Model requests that finished in one unix second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SecondCount {
    /// Unix second.
    pub second: u64,
    /// Model requests answered.
    pub requests: u64,
    /// Of those, answered with a status of 400 or more (or none).
    pub errors: u64,
}

/// Latency of the requests that finished in one slice of [`SLICE_SECONDS`].
#[derive(Debug, Clone)]
struct LatencySlice {
    /// Unix second / `SLICE_SECONDS`.
    slice: u64,
    duration: Timing,
    first_token: Timing,
}

/// The last minute of model requests on one core: counts per second in a ring indexed by
/// unix second, latency in a ring of slices. A slot is reused (reset) when its second or slice
/// comes round again, so recording is a few arithmetic operations and no allocation after the
/// first minute.
#[derive(Debug, Clone, Default)]
struct Recent {
    /// `RECENT_SECONDS` slots once anything was recorded.
    seconds: Vec<SecondCount>,
    /// `SLICES` slots, each made on first use.
    slices: Vec<Option<LatencySlice>>,
}

impl Recent {
    fn record(&mut self, time_ms: u64, status: u16, duration: Duration, first: Option<Duration>) {
        let second = time_ms / 1000;
        if self.seconds.is_empty() {
            self.seconds = vec![SecondCount::default(); RECENT_SECONDS as usize];
            self.slices = vec![None; SLICES as usize];
        }
        let slot = &mut self.seconds[(second % RECENT_SECONDS) as usize];
        if slot.second != second {
            *slot = SecondCount {
                second,
                ..SecondCount::default()
            };
        }
        slot.requests += 1;
        if status >= 400 || status == 0 {
            slot.errors += 1;
        }
        let slice = second / SLICE_SECONDS;
        let entry = &mut self.slices[(slice % SLICES) as usize];
        match entry {
            Some(s) if s.slice == slice => {}
            Some(s) => {
                s.slice = slice;
                s.duration.reset();
                s.first_token.reset();
            }
            None => {
                let (Some(duration), Some(first_token)) = (Timing::new(), Timing::new()) else {
                    return;
                };
                *entry = Some(LatencySlice {
                    slice,
                    duration,
                    first_token,
                });
            }
        }
        if let Some(s) = entry {
            s.duration.record(duration);
            if let Some(first) = first {
                s.first_token.record(first);
            }
        }
    }

    /// Adds another core's: slots holding the same second (slice) add up, a newer one wins.
    fn merge(&mut self, other: &Recent) {
        if other.seconds.is_empty() {
            return;
        }
        if self.seconds.is_empty() {
            *self = other.clone();
            return;
        }
        for (mine, theirs) in self.seconds.iter_mut().zip(&other.seconds) {
            if theirs.second > mine.second {
                *mine = *theirs;
            } else if theirs.second == mine.second {
                mine.requests += theirs.requests;
                mine.errors += theirs.errors;
            }
        }
        for (mine, theirs) in self.slices.iter_mut().zip(&other.slices) {
            let Some(theirs) = theirs else { continue };
            match mine {
                Some(m) if m.slice == theirs.slice => {
                    m.duration.add(&theirs.duration);
                    m.first_token.add(&theirs.first_token);
                }
                Some(m) if m.slice > theirs.slice => {}
                _ => *mine = Some(theirs.clone()),
            }
        }
    }

    /// Counts of the `RECENT_SECONDS` seconds up to and including `now_s`, oldest first.
    fn per_second(&self, now_s: u64) -> Vec<SecondCount> {
        (now_s.saturating_sub(RECENT_SECONDS - 1)..=now_s)
            .map(|second| {
                self.seconds
                    .get((second % RECENT_SECONDS) as usize)
                    .filter(|slot| slot.second == second)
                    .copied()
                    .unwrap_or(SecondCount {
                        second,
                        ..SecondCount::default()
                    })
            })
            .collect()
    }

    /// Latency of the slices still current at `now_s` (the last 50 to 60 seconds): request
    /// duration and time to first token, and the unix second the oldest slice began.
    fn latency(&self, now_s: u64) -> (Option<Percentiles>, Option<Percentiles>, u64) {
        let now_slice = now_s / SLICE_SECONDS;
        let oldest = now_slice.saturating_sub(SLICES - 1);
        let (Some(mut duration), Some(mut first_token)) = (Timing::new(), Timing::new()) else {
            return (None, None, oldest * SLICE_SECONDS);
        };
        for s in self.slices.iter().flatten() {
            if s.slice >= oldest && s.slice <= now_slice {
                duration.add(&s.duration);
                first_token.add(&s.first_token);
            }
        }
        (
            duration.percentiles(),
            first_token.percentiles(),
            oldest * SLICE_SECONDS,
        )
    }
}

/// One guardrail rule that fired on one request, as the dashboard lists it: names only,
/// never the matched text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HitEvent {
    /// When the request finished (unix ms).
    pub time_ms: u64,
    /// The profile the request ran under.
    pub profile: String,
    /// The rule's id.
    pub rule: String,
    /// `block`, `mask` or `audit`.
    pub action: &'static str,
    /// `input` or `output`.
    pub side: &'static str,
    /// Matches in this request.
    pub count: u32,
    /// The key's name.
    pub key: String,
    /// The request's id.
    pub request_id: String,
}

/// One deployment's health on one core, named, as of when the core's copy was taken.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct DeploymentHealth {
    /// The core.
    pub worker: usize,
    /// Client-facing model name.
    pub model: String,
    /// `provider/upstream-model`.
    pub deployment: String,
    /// The provider's name.
    pub provider: String,
    /// What the core's router knows.
    pub view: crate::router::HealthView,
    /// When a cooldown ends (unix ms), fixed when the copy was taken.
    pub cooling_until_ms: Option<u64>,
    /// Length of the window `view.recent_*` count over.
    pub window: Duration,
}

/// Labels of a guardrail-hit series: profile and rule (ids), action, side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct HitKey {
    profile: NameId,
    rule: NameId,
    action: &'static str,
    side: &'static str,
}

/// Labels of a refusal by a limit or budget: what kind of limit, at which level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct RefusalKey {
    limit: &'static str,
    level: &'static str,
}

/// One finished model request, as [`CoreMetrics::model_request`] counts it.
#[derive(Debug)]
pub(crate) struct ModelSample<'a> {
    /// The configured model the client asked for.
    pub model: &'a str,
    /// `provider/upstream-model` that answered, `""` when none did.
    pub deployment: &'a str,
    /// The key's team, `""` when it has none.
    pub team: &'a str,
    /// Status sent to the client.
    pub status: u16,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    pub cost_nanos: u64,
    /// From the request being read to its last byte sent.
    pub duration: Duration,
    /// Streams: from the request being read to the first event sent.
    pub first_token: Option<Duration>,
    /// The guardrail profile the request ran under, and what fired.
    pub guardrails: Option<(&'a str, &'a [GuardHit])>,
    /// When the request finished (unix ms).
    pub time_ms: u64,
    /// The key's name (for the dashboard's guardrail hits; never a label).
    pub key: &'a str,
    /// The request's id (likewise).
    pub request_id: &'a str,
}

/// Everything one core counts. Cloned (off the request path) when a scrape asks.
#[derive(Debug, Clone, Default)]
pub struct CoreMetrics {
    /// `server.metrics`: when off, nothing is counted.
    on: bool,
    names: Names,
    model_requests: Map<ModelKey, ModelCounts>,
    /// Per model: request duration, time to first token, time per output token.
    durations: Map<NameId, Timing>,
    first_token: Map<NameId, Timing>,
    per_token: Map<NameId, Timing>,
    guardrail_hits: Map<HitKey, u64>,
    refusals: Map<RefusalKey, u64>,
    /// Every response by route and status (0: none was written).
    http_responses: Map<(&'static str, u16), u64>,
    /// Failed upstream attempts by provider and cause.
    upstream_failures: Map<(NameId, &'static str), u64>,
    /// Further attempts after a failure, by model and the cause of the failure.
    retries: Map<(NameId, &'static str), u64>,
    /// Filled in when the copy is taken.
    open_connections: u64,
    /// The last minute, for the dashboard.
    recent: Recent,
    /// The newest guardrail hits, oldest first (at most [`RECENT_HITS`] on a core).
    recent_hits: VecDeque<HitEvent>,
    /// Filled in when the copy is taken: the router's view of every deployment.
    deployments: Vec<DeploymentHealth>,
}

// === impl CoreMetrics ===

impl CoreMetrics {
    /// Empty metrics that count (`on`) or ignore everything.
    pub fn new(on: bool) -> Self {
        CoreMetrics {
            on,
            ..Default::default()
        }
    }

    /// Counts one finished model request.
    pub(crate) fn model_request(&mut self, s: &ModelSample<'_>) {
        if !self.on {
            return;
        }
        let model = self.names.id(s.model);
        let key = ModelKey {
            model,
            deployment: self.names.id(s.deployment),
            team: self.names.id(s.team),
            status: s.status,
        };
        let c = self.model_requests.entry(key).or_default();
        c.requests += 1;
        c.input_tokens += s.input_tokens;
        c.output_tokens += s.output_tokens;
        c.cached_tokens += s.cached_tokens;
        c.cost_nanos += s.cost_nanos;
        record(&mut self.durations, model, s.duration);
        self.recent
            .record(s.time_ms, s.status, s.duration, s.first_token);
        if let Some(first) = s.first_token {
            record(&mut self.first_token, model, first);
            if s.output_tokens > 1 {
                let rest = s.duration.saturating_sub(first);
                let per = rest / u32::try_from(s.output_tokens - 1).unwrap_or(u32::MAX);
                record(&mut self.per_token, model, per);
            }
        }
        if let Some((profile, hits)) = s.guardrails {
            let profile = self.names.id(profile);
            for hit in hits {
                let key = HitKey {
                    profile,
                    rule: self.names.id(&hit.rule),
                    action: hit.action,
                    side: hit.side,
                };
                *self.guardrail_hits.entry(key).or_default() += u64::from(hit.count);
                if self.recent_hits.len() == RECENT_HITS {
                    self.recent_hits.pop_front();
                }
                self.recent_hits.push_back(HitEvent {
                    time_ms: s.time_ms,
                    profile: self.names.name(profile).to_owned(),
                    rule: hit.rule.clone(),
                    action: hit.action,
                    side: hit.side,
                    count: hit.count,
                    key: s.key.to_owned(),
                    request_id: s.request_id.to_owned(),
                });
            }
        }
    }

    /// A copy for a scrape, with the core's open connections.
    pub(crate) fn snapshot(&self, open_connections: usize) -> CoreMetrics {
        let mut copy = self.clone();
        copy.open_connections = open_connections as u64;
        copy
    }

    /// This copy, carrying the core's deployment health (see `dashboard::deployment_health`).
    pub(crate) fn with_deployments(mut self, deployments: Vec<DeploymentHealth>) -> CoreMetrics {
        self.deployments = deployments;
        self
    }

    /// Counts a request refused by a rate limit (`requests`, `tokens`, `parallel`) or a budget
    /// (`budget`) set at `level` (`key`, `user`, `team`, `org`).
    pub(crate) fn refused(&mut self, limit: &'static str, level: &'static str) {
        if !self.on {
            return;
        }
        *self
            .refusals
            .entry(RefusalKey { limit, level })
            .or_default() += 1;
    }

    /// Counts a response to any request (health checks, admin and refusals included) by route
    /// and status; `0` when the connection ended before a response was written.
    pub(crate) fn http_response(&mut self, route: &'static str, status: u16) {
        if !self.on {
            return;
        }
        *self.http_responses.entry((route, status)).or_default() += 1;
    }

    /// Counts an upstream attempt of `provider` that failed with `cause`.
    pub(crate) fn upstream_failure(&mut self, provider: &str, cause: &'static str) {
        if !self.on {
            return;
        }
        let provider = self.names.id(provider);
        *self.upstream_failures.entry((provider, cause)).or_default() += 1;
    }

    /// Counts another attempt for `model` after a failure with `cause`.
    pub(crate) fn retry(&mut self, model: &str, cause: &'static str) {
        if !self.on {
            return;
        }
        let model = self.names.id(model);
        *self.retries.entry((model, cause)).or_default() += 1;
    }

    /// Adds `other` (another core's copy), matching series by their names.
    fn merge(&mut self, other: &CoreMetrics) {
        // Other's name ids, translated to ours once.
        let ids: Vec<NameId> = other.names.names.iter().map(|n| self.names.id(n)).collect();
        let id = |theirs: NameId| ids.get(theirs as usize).copied().unwrap_or_default();
        for (k, c) in &other.model_requests {
            let key = ModelKey {
                model: id(k.model),
                deployment: id(k.deployment),
                team: id(k.team),
                status: k.status,
            };
            self.model_requests.entry(key).or_default().add(c);
        }
        for (k, n) in &other.guardrail_hits {
            let key = HitKey {
                profile: id(k.profile),
                rule: id(k.rule),
                ..*k
            };
            *self.guardrail_hits.entry(key).or_default() += n;
        }
        for (mine, theirs) in [
            (&mut self.durations, &other.durations),
            (&mut self.first_token, &other.first_token),
            (&mut self.per_token, &other.per_token),
        ] {
            for (model, t) in theirs {
                match mine.get_mut(&id(*model)) {
                    Some(m) => m.add(t),
                    None => {
                        mine.insert(id(*model), t.clone());
                    }
                }
            }
        }
        for (mine, theirs) in [
            (&mut self.upstream_failures, &other.upstream_failures),
            (&mut self.retries, &other.retries),
        ] {
            for ((name, cause), n) in theirs {
                *mine.entry((id(*name), *cause)).or_default() += n;
            }
        }
        for (k, n) in &other.refusals {
            *self.refusals.entry(*k).or_default() += n;
        }
        for (k, n) in &other.http_responses {
            *self.http_responses.entry(*k).or_default() += n;
        }
        self.open_connections += other.open_connections;
        self.recent.merge(&other.recent);
        self.recent_hits.extend(other.recent_hits.iter().cloned());
        self.deployments.extend(other.deployments.iter().cloned());
    }
}

fn record(map: &mut Map<NameId, Timing>, model: NameId, d: Duration) {
    if let Some(t) = match map.get_mut(&model) {
        Some(t) => Some(t),
        None => Timing::new().map(|t| map.entry(model).or_insert(t)),
    } {
        t.record(d);
    }
}

// === Telemetry ===

/// One core's slot: its status atomics and the copy of its metrics it last published.
#[derive(Debug)]
struct Slot {
    status: Arc<WorkerStatus>,
    /// Generation of the copy in `copy`.
    published: AtomicU64,
    copy: Mutex<Option<CoreMetrics>>,
}

/// What the cores share for scrapes: one slot per core and the generation scrapes want.
#[derive(Debug)]
pub struct Telemetry {
    slots: Vec<Slot>,
    wanted: AtomicU64,
    /// For the count of access-log lines dropped.
    access: crate::access_log::AccessLogger,
    /// Config reload outcomes.
    reloads: Arc<crate::reload::ReloadStats>,
}

impl Telemetry {
    /// Slots for the cores whose statuses these are, in worker order.
    pub fn new(
        statuses: &[Arc<WorkerStatus>],
        access: crate::access_log::AccessLogger,
        reloads: Arc<crate::reload::ReloadStats>,
    ) -> Self {
        Telemetry {
            slots: statuses
                .iter()
                .map(|status| Slot {
                    status: status.clone(),
                    published: AtomicU64::new(0),
                    copy: Mutex::new(None),
                })
                .collect(),
            wanted: AtomicU64::new(0),
            access,
            reloads,
        }
    }

    /// Called by core `worker` on every control tick: publishes a copy when a scrape wants one,
    /// with the core's deployment health (`deployments` runs only then).
    pub(crate) fn tick(
        &self,
        worker: usize,
        metrics: &CoreMetrics,
        open_connections: usize,
        deployments: impl FnOnce() -> Vec<DeploymentHealth>,
    ) {
        let Some(slot) = self.slots.get(worker) else {
            return;
        };
        let wanted = self.wanted.load(Ordering::Acquire);
        if slot.published.load(Ordering::Acquire) >= wanted {
            return;
        }
        let copy = metrics
            .snapshot(open_connections)
            .with_deployments(deployments());
        if let Ok(mut guard) = slot.copy.lock() {
            *guard = Some(copy);
        }
        slot.published.store(wanted, Ordering::Release);
    }

    /// Every core's metrics merged, `own` (the scraping core's, live) included: asks the other
    /// cores for a copy and waits for them (at most [`SCRAPE_WAIT`]; a core that does not
    /// answer in time contributes its previous copy, if any).
    pub(crate) async fn collect(&self, worker: usize, own: CoreMetrics) -> Collected {
        let generation = self.wanted.fetch_add(1, Ordering::AcqRel) + 1;
        let deadline = std::time::Instant::now() + SCRAPE_WAIT;
        let others = || {
            self.slots
                .iter()
                .enumerate()
                .filter(move |(i, _)| *i != worker)
        };
        while others().any(|(_, s)| s.published.load(Ordering::Acquire) < generation)
            && std::time::Instant::now() < deadline
        {
            monoio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut merged = own;
        let mut stale = 0;
        for (_, slot) in others() {
            if slot.published.load(Ordering::Acquire) < generation {
                stale += 1;
            }
            if let Ok(guard) = slot.copy.lock() {
                if let Some(copy) = guard.as_ref() {
                    merged.merge(copy);
                }
            }
        }
        let workers = self
            .slots
            .iter()
            .map(|s| {
                let driver =
                    crate::worker::Driver::from_u8(s.status.driver.load(Ordering::Relaxed));
                (
                    driver.as_str(),
                    s.status.connections_refused.load(Ordering::Relaxed),
                )
            })
            .collect();
        Collected {
            metrics: merged,
            workers,
            stale,
            access_log_dropped: self.access.is_on().then(|| self.access.dropped()),
            reloads: self.reloads.counts(),
        }
    }
}

/// What a scrape renders.
#[derive(Debug)]
pub(crate) struct Collected {
    metrics: CoreMetrics,
    /// Per worker: its io driver and the connections it refused at its limit.
    workers: Vec<(&'static str, u64)>,
    /// Cores that did not answer in time.
    stale: usize,
    /// Access-log lines dropped, when the log is on.
    access_log_dropped: Option<u64>,
    /// Config reload outcomes.
    reloads: crate::reload::ReloadCounts,
}

/// What the dashboard shows live, over every core (see [`Collected::live`]).
#[derive(Debug, Clone)]
pub(crate) struct LiveStats {
    /// `server.metrics`: when off, nothing below is counted.
    pub counting: bool,
    /// Model requests per second over the last [`RECENT_SECONDS`], oldest first (the last
    /// one is the second in progress).
    pub per_second: Vec<SecondCount>,
    /// Request duration over the recent latency window.
    pub latency: Option<Percentiles>,
    /// Time to first token (streams) over the same window.
    pub first_token: Option<Percentiles>,
    /// Unix second the recent latency window began.
    pub latency_since_s: u64,
    /// Since start, per model, by name.
    pub models: Vec<ModelStats>,
    /// Client connections open.
    pub open_connections: u64,
    /// Per worker: its io driver.
    pub drivers: Vec<&'static str>,
    /// Cores whose copy was not fresh.
    pub stale: usize,
}

/// One model's requests since start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ModelStats {
    /// Client-facing name.
    pub model: String,
    /// Requests answered.
    pub requests: u64,
    /// Of those, with a status of 400 or more.
    pub errors: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Spend, nanodollars.
    pub cost_nanos: u64,
    /// Request duration.
    pub latency: Option<Percentiles>,
}

// === dashboard views ===

impl Collected {
    /// Requests per second, recent latency and per-model totals at `now_ms`.
    pub(crate) fn live(&self, now_ms: u64) -> LiveStats {
        let m = &self.metrics;
        let now_s = now_ms / 1000;
        let (latency, first_token, latency_since_s) = m.recent.latency(now_s);
        let mut models: HashMap<&str, ModelStats> = HashMap::new();
        for (k, c) in &m.model_requests {
            let name = m.names.name(k.model);
            let s = models.entry(name).or_insert_with(|| ModelStats {
                model: name.to_owned(),
                requests: 0,
                errors: 0,
                input_tokens: 0,
                output_tokens: 0,
                cost_nanos: 0,
                latency: m.durations.get(&k.model).and_then(Timing::percentiles),
            });
            s.requests += c.requests;
            if k.status >= 400 || k.status == 0 {
                s.errors += c.requests;
            }
            s.input_tokens += c.input_tokens;
            s.output_tokens += c.output_tokens;
            s.cost_nanos += c.cost_nanos;
        }
        let mut models: Vec<ModelStats> = models.into_values().collect();
        models.sort_by(|a, b| a.model.cmp(&b.model));
        LiveStats {
            counting: m.on,
            per_second: m.recent.per_second(now_s),
            latency,
            first_token,
            latency_since_s,
            models,
            open_connections: m.open_connections,
            drivers: self.workers.iter().map(|(driver, _)| *driver).collect(),
            stale: self.stale,
        }
    }

    /// The newest guardrail hits over every core, newest first, at most `limit`.
    pub(crate) fn recent_hits(&self, limit: usize) -> Vec<&HitEvent> {
        // Each core's ring is oldest first: reversed, and sorted stably, hits recorded in the
        // same millisecond keep newest first.
        let mut hits: Vec<&HitEvent> = self.metrics.recent_hits.iter().rev().collect();
        hits.sort_by_key(|h| std::cmp::Reverse(h.time_ms));
        hits.truncate(limit);
        hits
    }

    /// Every core's view of every deployment, by worker.
    pub(crate) fn deployments(&self) -> &[DeploymentHealth] {
        &self.metrics.deployments
    }

    /// Failed upstream attempts since start, per provider name.
    pub(crate) fn upstream_failures(&self) -> HashMap<String, u64> {
        let m = &self.metrics;
        let mut out: HashMap<String, u64> = HashMap::new();
        for ((provider, _cause), n) in &m.upstream_failures {
            *out.entry(m.names.name(*provider).to_owned()).or_default() += n;
        }
        out
    }

    /// Workers, and how many had no fresh copy.
    pub(crate) fn workers(&self) -> (usize, usize) {
        (self.workers.len(), self.stale)
    }
}

// === rendering ===

/// Escapes a label value (backslash, double quote, line feed).
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn seconds(us: u64) -> f64 {
    us as f64 / 1e6
}

/// One histogram family, one series per model.
fn histogram(
    out: &mut String,
    names: &Names,
    name: &str,
    help: &str,
    series: &Map<NameId, Timing>,
    buckets: &[f64],
) {
    header(out, name, "histogram", help);
    let mut models: Vec<(&str, &Timing)> =
        series.iter().map(|(id, t)| (names.name(*id), t)).collect();
    models.sort_by_key(|(m, _)| *m);
    for (model, t) in models {
        let model = escape(model);
        for &le in buckets {
            let bound = (le * 1e6) as u64;
            let count = t.histogram.count_between(0, bound);
            let _ = writeln!(
                out,
                "{name}_bucket{{model=\"{model}\",le=\"{le}\"}} {count}"
            );
        }
        let total = t.histogram.len();
        let _ = writeln!(
            out,
            "{name}_bucket{{model=\"{model}\",le=\"+Inf\"}} {total}"
        );
        let _ = writeln!(out, "{name}_sum{{model=\"{model}\"}} {}", seconds(t.sum_us));
        let _ = writeln!(out, "{name}_count{{model=\"{model}\"}} {total}");
    }
}

impl Collected {
    /// The Prometheus text exposition of everything collected.
    pub(crate) fn render(&self) -> String {
        let m = &self.metrics;
        let n = &m.names;
        let mut out = String::with_capacity(4096);

        let mut series: Vec<(String, String, String, u16, ModelCounts)> = m
            .model_requests
            .iter()
            .map(|(k, c)| {
                (
                    escape(n.name(k.model)),
                    escape(n.name(k.deployment)),
                    escape(n.name(k.team)),
                    k.status,
                    *c,
                )
            })
            .collect();
        series.sort_by(|a, b| (&a.0, &a.1, &a.2, a.3).cmp(&(&b.0, &b.1, &b.2, b.3)));
        header(
            &mut out,
            "tollgate_requests_total",
            "counter",
            "Model requests answered, by model, deployment that answered, key team and HTTP status.",
        );
        for (model, deployment, team, status, c) in &series {
            let _ = writeln!(
                out,
                "tollgate_requests_total{{model=\"{model}\",deployment=\"{deployment}\",team=\"{team}\",status=\"{status}\"}} {}",
                c.requests
            );
        }
        // Tokens and spend by model, deployment and team (status would only split them).
        let mut usage: HashMap<(&str, &str, &str), ModelCounts> = HashMap::new();
        for (model, deployment, team, _, c) in &series {
            usage
                .entry((model.as_str(), deployment.as_str(), team.as_str()))
                .or_default()
                .add(c);
        }
        let mut usage: Vec<_> = usage.into_iter().collect();
        usage.sort_by(|a, b| a.0.cmp(&b.0));
        header(
            &mut out,
            "tollgate_tokens_total",
            "counter",
            "Tokens by model, deployment, key team and kind (input, output, and cached input).",
        );
        for ((model, deployment, team), c) in &usage {
            for (kind, v) in [
                ("input", c.input_tokens),
                ("output", c.output_tokens),
                ("cached", c.cached_tokens),
            ] {
                let _ = writeln!(
                    out,
                    "tollgate_tokens_total{{model=\"{model}\",deployment=\"{deployment}\",team=\"{team}\",kind=\"{kind}\"}} {v}"
                );
            }
        }
        header(
            &mut out,
            "tollgate_spend_usd_total",
            "counter",
            "What requests cost, in US dollars, by model, deployment and key team.",
        );
        for ((model, deployment, team), c) in &usage {
            let _ = writeln!(
                out,
                "tollgate_spend_usd_total{{model=\"{model}\",deployment=\"{deployment}\",team=\"{team}\"}} {}",
                c.cost_nanos as f64 / 1e9
            );
        }
        histogram(
            &mut out,
            n,
            "tollgate_request_duration_seconds",
            "Model requests from being read to the last byte sent, by model.",
            &m.durations,
            LATENCY_BUCKETS,
        );
        histogram(
            &mut out,
            n,
            "tollgate_time_to_first_token_seconds",
            "Streamed model requests from being read to the first event sent, by model.",
            &m.first_token,
            LATENCY_BUCKETS,
        );
        histogram(
            &mut out,
            n,
            "tollgate_time_per_output_token_seconds",
            "Streamed model requests: time after the first event divided by the further output tokens, by model.",
            &m.per_token,
            TOKEN_BUCKETS,
        );

        header(
            &mut out,
            "tollgate_guardrail_hits_total",
            "counter",
            "Guardrail matches by profile, rule, action and side (input: the request, output: the answer).",
        );
        let mut hits: Vec<(String, String, &str, &str, u64)> = m
            .guardrail_hits
            .iter()
            .map(|(k, v)| {
                (
                    escape(n.name(k.profile)),
                    escape(n.name(k.rule)),
                    k.action,
                    k.side,
                    *v,
                )
            })
            .collect();
        hits.sort();
        for (profile, rule, action, side, v) in hits {
            let _ = writeln!(
                out,
                "tollgate_guardrail_hits_total{{profile=\"{profile}\",rule=\"{rule}\",action=\"{action}\",side=\"{side}\"}} {v}"
            );
        }

        header(
            &mut out,
            "tollgate_limit_rejections_total",
            "counter",
            "Requests refused before any upstream call by a rate limit (requests, tokens, parallel) or a budget, by limit and the level that set it.",
        );
        let mut refusals: Vec<(&RefusalKey, &u64)> = m.refusals.iter().collect();
        refusals.sort_by_key(|(k, _)| (k.limit, k.level));
        for (k, v) in refusals {
            let _ = writeln!(
                out,
                "tollgate_limit_rejections_total{{limit=\"{}\",level=\"{}\"}} {v}",
                k.limit, k.level
            );
        }

        header(
            &mut out,
            "tollgate_http_responses_total",
            "counter",
            "Every response by route (chat_completions, completions, embeddings, messages, models, health, admin, metrics, ui, unknown) and status; status 0: the connection ended first.",
        );
        let mut responses: Vec<(&(&str, u16), &u64)> = m.http_responses.iter().collect();
        responses.sort();
        for ((route, status), v) in responses {
            let _ = writeln!(
                out,
                "tollgate_http_responses_total{{route=\"{route}\",status=\"{status}\"}} {v}"
            );
        }
        for (name, label, help, series) in [
            (
                "tollgate_upstream_failures_total",
                "provider",
                "Upstream attempts that failed, by provider and cause (upstream_connect, upstream_timeout, upstream_closed, upstream_protocol, status_429, status_4xx, status_5xx, ...).",
                &m.upstream_failures,
            ),
            (
                "tollgate_upstream_retries_total",
                "model",
                "Further attempts (retries and fallbacks) after a failed one, by model and the cause of that failure.",
                &m.retries,
            ),
        ] {
            header(&mut out, name, "counter", help);
            let mut rows: Vec<(String, &str, u64)> = series
                .iter()
                .map(|((id, cause), v)| (escape(n.name(*id)), *cause, *v))
                .collect();
            rows.sort();
            for (value, cause, v) in rows {
                let _ = writeln!(out, "{name}{{{label}=\"{value}\",cause=\"{cause}\"}} {v}");
            }
        }
        header(
            &mut out,
            "tollgate_open_connections",
            "gauge",
            "Client connections open, over every core.",
        );
        let _ = writeln!(out, "tollgate_open_connections {}", m.open_connections);
        header(
            &mut out,
            "tollgate_connections_refused_total",
            "counter",
            "Client connections closed at once because a core was at max_connections_per_worker, by worker.",
        );
        for (i, (_, refused)) in self.workers.iter().enumerate() {
            let _ = writeln!(
                out,
                "tollgate_connections_refused_total{{worker=\"{i}\"}} {refused}"
            );
        }
        header(
            &mut out,
            "tollgate_worker_info",
            "gauge",
            "One series per worker core, naming its io driver (io_uring, or legacy epoll).",
        );
        for (i, (driver, _)) in self.workers.iter().enumerate() {
            let _ = writeln!(
                out,
                "tollgate_worker_info{{worker=\"{i}\",driver=\"{driver}\"}} 1"
            );
        }
        header(
            &mut out,
            "tollgate_metrics_stale_workers",
            "gauge",
            "Cores whose metrics this scrape could not refresh in time (their previous copy is used).",
        );
        let _ = writeln!(out, "tollgate_metrics_stale_workers {}", self.stale);
        if let Some(dropped) = self.access_log_dropped {
            header(
                &mut out,
                "tollgate_access_log_dropped_total",
                "counter",
                "Access-log lines dropped because the writer's queue was full.",
            );
            let _ = writeln!(out, "tollgate_access_log_dropped_total {dropped}");
        }
        let r = &self.reloads;
        header(
            &mut out,
            "tollgate_config_generation",
            "gauge",
            "Config generation in force (0: the file the gateway started with; +1 per reload).",
        );
        let _ = writeln!(out, "tollgate_config_generation {}", r.generation);
        header(
            &mut out,
            "tollgate_config_reloads_total",
            "counter",
            "Config reloads (SIGHUP, POST /admin/reload) by result; a failure keeps the running config.",
        );
        let _ = writeln!(
            out,
            "tollgate_config_reloads_total{{result=\"success\"}} {}",
            r.succeeded
        );
        let _ = writeln!(
            out,
            "tollgate_config_reloads_total{{result=\"failure\"}} {}",
            r.failed
        );
        header(
            &mut out,
            "tollgate_config_last_reload_successful",
            "gauge",
            "1 when the last reload took effect (or none was tried), 0 when it was refused.",
        );
        let _ = writeln!(
            out,
            "tollgate_config_last_reload_successful {}",
            u8::from(r.last_succeeded)
        );
        header(
            &mut out,
            "tollgate_config_last_reload_success_timestamp_seconds",
            "gauge",
            "Unix time the config in force was loaded.",
        );
        let _ = writeln!(
            out,
            "tollgate_config_last_reload_success_timestamp_seconds {}",
            r.last_success_unix
        );
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn sample<'a>(
        model: &'a str,
        team: &'a str,
        status: u16,
        hits: &'a [GuardHit],
    ) -> ModelSample<'a> {
        ModelSample {
            model,
            deployment: "mock/gpt-4o-mini",
            team,
            status,
            input_tokens: 10,
            output_tokens: 5,
            cached_tokens: 2,
            cost_nanos: 1_500_000,
            duration: Duration::from_millis(3),
            first_token: Some(Duration::from_millis(1)),
            guardrails: Some(("default", hits)),
            time_ms: NOW_MS,
            key: "demo",
            request_id: "req-1",
        }
    }

    /// A fixed unix time (ms) for the recent-window tests.
    const NOW_MS: u64 = 1_790_000_000_500;

    fn collected(cores: &[CoreMetrics]) -> Collected {
        let mut merged = CoreMetrics::new(true);
        for c in cores {
            merged.merge(c);
        }
        Collected {
            metrics: merged,
            workers: vec![("io_uring", 0), ("legacy", 3)],
            stale: 0,
            access_log_dropped: Some(5),
            reloads: crate::reload::ReloadCounts {
                generation: 3,
                succeeded: 3,
                failed: 1,
                last_succeeded: false,
                last_success_unix: 1_790_000_000,
            },
        }
    }

    #[test]
    fn series_from_two_cores_add_up_by_name() {
        let hit = [GuardHit {
            rule: "emails".into(),
            action: "mask",
            side: "input",
            count: 2,
        }];
        let mut a = CoreMetrics::new(true);
        a.model_request(&sample("gpt-4o-mini", "ml", 200, &hit));
        a.refused("requests", "team");
        let mut b = CoreMetrics::new(true);
        // Interned in another order on the other core.
        b.model_request(&sample("other", "", 429, &[]));
        b.model_request(&sample("gpt-4o-mini", "ml", 200, &hit));
        b.refused("requests", "team");
        b.open_connections = 4;
        a.http_response("chat_completions", 200);
        b.http_response("chat_completions", 200);
        b.http_response("unknown", 404);
        a.upstream_failure("up", "status_5xx");
        b.upstream_failure("up", "status_5xx");
        b.retry("gpt-4o-mini", "status_5xx");
        let text = collected(&[a, b]).render();
        for line in [
            "tollgate_requests_total{model=\"gpt-4o-mini\",deployment=\"mock/gpt-4o-mini\",team=\"ml\",status=\"200\"} 2",
            "tollgate_requests_total{model=\"other\",deployment=\"mock/gpt-4o-mini\",team=\"\",status=\"429\"} 1",
            "tollgate_tokens_total{model=\"gpt-4o-mini\",deployment=\"mock/gpt-4o-mini\",team=\"ml\",kind=\"input\"} 20",
            "tollgate_tokens_total{model=\"gpt-4o-mini\",deployment=\"mock/gpt-4o-mini\",team=\"ml\",kind=\"cached\"} 4",
            "tollgate_spend_usd_total{model=\"gpt-4o-mini\",deployment=\"mock/gpt-4o-mini\",team=\"ml\"} 0.003",
            "tollgate_request_duration_seconds_bucket{model=\"gpt-4o-mini\",le=\"0.0025\"} 0",
            "tollgate_request_duration_seconds_bucket{model=\"gpt-4o-mini\",le=\"0.005\"} 2",
            "tollgate_request_duration_seconds_bucket{model=\"gpt-4o-mini\",le=\"+Inf\"} 2",
            "tollgate_request_duration_seconds_sum{model=\"gpt-4o-mini\"} 0.006",
            "tollgate_request_duration_seconds_count{model=\"gpt-4o-mini\"} 2",
            "tollgate_time_to_first_token_seconds_bucket{model=\"gpt-4o-mini\",le=\"0.001\"} 2",
            "tollgate_time_per_output_token_seconds_bucket{model=\"gpt-4o-mini\",le=\"0.0005\"} 2",
            "tollgate_guardrail_hits_total{profile=\"default\",rule=\"emails\",action=\"mask\",side=\"input\"} 4",
            "tollgate_limit_rejections_total{limit=\"requests\",level=\"team\"} 2",
            "tollgate_open_connections 4",
            "tollgate_connections_refused_total{worker=\"1\"} 3",
            "tollgate_worker_info{worker=\"0\",driver=\"io_uring\"} 1",
            "tollgate_access_log_dropped_total 5",
            "tollgate_config_generation 3",
            "tollgate_config_reloads_total{result=\"success\"} 3",
            "tollgate_config_reloads_total{result=\"failure\"} 1",
            "tollgate_config_last_reload_successful 0",
            "tollgate_config_last_reload_success_timestamp_seconds 1790000000",
            "tollgate_http_responses_total{route=\"chat_completions\",status=\"200\"} 2",
            "tollgate_http_responses_total{route=\"unknown\",status=\"404\"} 1",
            "tollgate_upstream_failures_total{provider=\"up\",cause=\"status_5xx\"} 2",
            "tollgate_upstream_retries_total{model=\"gpt-4o-mini\",cause=\"status_5xx\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line:?} in\n{text}");
        }
    }

    #[test]
    fn every_family_is_announced_once_and_every_sample_belongs_to_one() {
        let mut a = CoreMetrics::new(true);
        a.model_request(&sample("m\"odel\\x", "t\nx", 200, &[]));
        let text = collected(&[a]).render();
        let mut families = Vec::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap();
                assert!(!families.contains(&name.to_owned()), "{name} twice");
                families.push(name.to_owned());
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().unwrap();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| families.iter().any(|x| x == f))
                    .unwrap_or(name);
                assert!(families.iter().any(|f| f == family), "{line}");
            }
        }
        // Label values are escaped.
        assert!(text.contains("model=\"m\\\"odel\\\\x\""), "{text}");
        assert!(text.contains("team=\"t\\nx\""), "{text}");
    }

    #[test]
    fn the_last_minute_adds_up_over_cores_and_forgets_older_seconds() {
        let mut a = CoreMetrics::new(true);
        let mut b = CoreMetrics::new(true);
        // Two requests this second on a, one on b (an error), one 70 s ago on b (forgotten:
        // its slot was reused), one 5 s ago on a.
        let at = |core: &mut CoreMetrics, time_ms: u64, status: u16, ms: u64| {
            let mut s = sample("gpt-4o-mini", "ml", status, &[]);
            s.time_ms = time_ms;
            s.duration = Duration::from_millis(ms);
            core.model_request(&s);
        };
        at(&mut b, NOW_MS - 70_000, 200, 900);
        at(&mut a, NOW_MS, 200, 10);
        at(&mut a, NOW_MS, 200, 20);
        at(&mut b, NOW_MS, 500, 30);
        at(&mut a, NOW_MS - 5_000, 200, 40);
        let live = collected(&[a, b]).live(NOW_MS);
        assert_eq!(live.per_second.len(), RECENT_SECONDS as usize);
        let last = live.per_second.last().unwrap();
        assert_eq!(
            (last.second, last.requests, last.errors),
            (NOW_MS / 1000, 3, 1)
        );
        let total: u64 = live.per_second.iter().map(|s| s.requests).sum();
        assert_eq!(total, 4, "the request 70 s ago is out of the window");
        let five_ago = &live.per_second[live.per_second.len() - 6];
        assert_eq!((five_ago.second, five_ago.requests), (NOW_MS / 1000 - 5, 1));
        let latency = live.latency.unwrap();
        assert_eq!(latency.count, 4);
        // 20 ms as HDR keeps it (two significant digits: the top of its bucket).
        assert_eq!(latency.p50, Duration::from_micros(20_095));
        assert!(
            latency.max >= Duration::from_millis(40) && latency.max < Duration::from_millis(41)
        );
        assert_eq!(live.first_token.unwrap().count, 4);
        // Since start, by model: every request, the old one included.
        assert_eq!(live.models.len(), 1);
        let m = &live.models[0];
        assert_eq!(
            (m.model.as_str(), m.requests, m.errors),
            ("gpt-4o-mini", 5, 1)
        );
        assert_eq!(m.latency.unwrap().count, 5);
        // A minute later nothing is recent.
        let later = collected(&[]).live(NOW_MS + 120_000);
        assert!(later.latency.is_none());
        assert!(later.per_second.iter().all(|s| s.requests == 0));
    }

    #[test]
    fn guardrail_hits_are_a_bounded_ring_newest_first_without_text() {
        let hit = [GuardHit {
            rule: "emails".into(),
            action: "mask",
            side: "input",
            count: 1,
        }];
        let mut a = CoreMetrics::new(true);
        for i in 0..(RECENT_HITS as u64 + 10) {
            let mut s = sample("gpt-4o-mini", "ml", 200, &hit);
            s.time_ms = NOW_MS + i;
            a.model_request(&s);
        }
        let mut b = CoreMetrics::new(true);
        let mut s = sample("gpt-4o-mini", "ml", 400, &hit);
        s.time_ms = NOW_MS + 5;
        s.request_id = "req-b";
        b.model_request(&s);
        let c = collected(&[a, b]);
        let hits = c.recent_hits(1000);
        assert_eq!(hits.len(), RECENT_HITS + 1);
        assert_eq!(hits[0].time_ms, NOW_MS + RECENT_HITS as u64 + 9);
        // The oldest ten of core a were dropped; b's is kept.
        assert!(hits
            .iter()
            .all(|h| h.time_ms >= NOW_MS + 10 || h.request_id == "req-b"));
        let h = hits.iter().find(|h| h.request_id == "req-b").unwrap();
        assert_eq!(
            (
                h.profile.as_str(),
                h.rule.as_str(),
                h.action,
                h.side,
                h.key.as_str()
            ),
            ("default", "emails", "mask", "input", "demo")
        );
        assert_eq!(c.recent_hits(3).len(), 3);
        // Off: nothing is kept.
        let mut off = CoreMetrics::new(false);
        off.model_request(&sample("gpt-4o-mini", "ml", 200, &hit));
        assert!(off.recent_hits.is_empty());
    }
}
