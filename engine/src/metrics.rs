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

use std::collections::HashMap;
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
            }
        }
    }

    /// A copy for a scrape, with the core's open connections.
    pub(crate) fn snapshot(&self, open_connections: usize) -> CoreMetrics {
        let mut copy = self.clone();
        copy.open_connections = open_connections as u64;
        copy
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
}

impl Telemetry {
    /// Slots for the cores whose statuses these are, in worker order.
    pub fn new(statuses: &[Arc<WorkerStatus>], access: crate::access_log::AccessLogger) -> Self {
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
        }
    }

    /// Called by core `worker` on every control tick: publishes a copy when a scrape wants one.
    pub(crate) fn tick(&self, worker: usize, metrics: &CoreMetrics, open_connections: usize) {
        let Some(slot) = self.slots.get(worker) else {
            return;
        };
        let wanted = self.wanted.load(Ordering::Acquire);
        if slot.published.load(Ordering::Acquire) >= wanted {
            return;
        }
        let copy = metrics.snapshot(open_connections);
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
            "Every response by route (chat_completions, completions, embeddings, messages, models, health, admin, metrics, unknown) and status; status 0: the connection ended first.",
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
        }
    }

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
}
