//! What the runs measured and how it is reported: medians across runs, latency added over the
//! direct-to-mock baseline of the same run, ratios against nginx, of translated against
//! pass-through (scenario f), of governed against plain (scenario g), of guarded against plain
//! (scenario h) and of observed against quiet (scenario i), the goals met or missed, and the
//! problems seen. Renders `bench/RESULTS.md` and the stdout summary; does no I/O itself.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::idle::IdleReport;
use crate::loadgen::{fmt_duration, Outcome, Report, Sample};
use crate::machine::{self, Machine};
use crate::nginx::Availability;
use crate::observability::AccessLogContents;

/// The memory goal: VmRSS with the idle connections open, MiB.
const MEMORY_GOAL_MIB: f64 = 100.0;

/// Added-latency goal: Tollgate's added latency over nginx's.
const LATENCY_RATIO_GOAL: f64 = 0.5;

/// Throughput goal: Tollgate's req/s over nginx's.
const THROUGHPUT_RATIO_GOAL: f64 = 1.0;

/// Translation goal: translated req/s over pass-through req/s, same gateway, same run.
const TRANSLATION_RATIO_GOAL: f64 = 0.85;

/// Governance goal: req/s of the governed gateway over the plain one, same run.
const GOVERNANCE_RATIO_GOAL: f64 = 0.90;

/// Guardrails goal: req/s of the guarded gateway over the plain one, same run.
const GUARDRAILS_RATIO_GOAL: f64 = 0.90;

/// Guardrails streaming goal: TTFT p50 of the guarded gateway over the plain one, same run (at
/// most 10% more).
const GUARDRAILS_TTFT_RATIO_GOAL: f64 = 1.10;

/// Observability goal: req/s of the gateway with metrics and the access log on over the one
/// with both off, same run (at most 5% less).
const OBSERVABILITY_RATIO_GOAL: f64 = 0.95;

/// How far the observed gateway's access log may be from one line per request answered, as a
/// fraction of the requests: the log drops an entry rather than wait when its queue is full.
const ACCESS_LOG_TOLERANCE: f64 = 0.01;

/// An open-loop run that achieved less than this fraction of its rate is flagged.
const OPEN_LOOP_MIN_ACHIEVED: f64 = 0.95;

/// Where requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Target {
    /// Straight to the mock provider (the baseline).
    Direct,
    /// Through Tollgate.
    Tollgate,
    /// Through nginx.
    Nginx,
    /// Scenario f: straight to the mock's Anthropic Messages API (native Anthropic body).
    DirectAnthropic,
    /// Scenario f: through Tollgate to a `kind = "openai"` provider (no translation).
    PassThrough,
    /// Scenario f: through Tollgate to a `kind = "anthropic"` provider (OpenAI in, Anthropic
    /// upstream, OpenAI out).
    Translated,
    /// Scenario g: a fresh gateway with the scenario-a configuration (no limits or prices;
    /// the usage ledger is always on).
    Plain,
    /// Scenario g: a fresh gateway with a key, team budget, RPM and TPM limits, prices and the
    /// usage ledger's store.
    Governed,
    /// Scenario h: a fresh gateway with the scenario-a configuration plus the default
    /// guardrails profile (every prompt and answer scanned).
    Guarded,
    /// Scenario i: a fresh gateway with the scenario-a configuration, metrics off and no access
    /// log.
    Quiet,
    /// Scenario i: a fresh gateway with the scenario-a configuration, metrics on and the JSON
    /// access log written to a file.
    Observed,
}

/// A load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// a. closed-loop throughput, non-streaming.
    Throughput,
    /// b. one connection, back to back: latency.
    Latency,
    /// c. open loop at a fixed rate: latency under load.
    OpenLoop,
    /// d. streaming: time to first token.
    Streaming,
    /// f. closed-loop throughput, pass-through vs translated to an Anthropic upstream.
    Translation,
    /// f. streaming, pass-through vs translated (informational).
    TranslationStreaming,
    /// g. closed-loop throughput, plain gateway vs one enforcing key and team limits.
    Governance,
    /// h. closed-loop throughput, plain gateway vs one scanning with the default guardrails
    /// profile.
    Guardrails,
    /// h. streaming, plain vs guarded: time to first token.
    GuardrailsStreaming,
    /// h. streaming, plain vs guarded, against a second mock paced like a hosted model: time
    /// to first token (informational).
    GuardrailsStreamingPaced,
    /// i. closed-loop throughput, a gateway with metrics and the access log off vs one with
    /// both on.
    Observability,
}

/// What every run used.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Runs.
    pub runs: usize,
    /// Measured duration of each load.
    pub duration: Duration,
    /// Warm-up of each load.
    pub warmup: Duration,
    /// `--quick`.
    pub quick: bool,
    /// Idle connections of the memory scenario.
    pub idle_connections: usize,
    /// Idle connections the memory goal is stated for.
    pub idle_goal_connections: usize,
    /// Closed-loop throughput connections.
    pub connections: usize,
    /// Open-loop rate.
    pub rate: u32,
    /// Open-loop connection pool.
    pub open_pool: usize,
    /// Concurrent streams.
    pub stream_connections: usize,
    /// Mock: content chunks per stream.
    pub mock_chunks: u32,
    /// Mock: pause between chunks.
    pub mock_chunk_delay: Duration,
    /// Scenario h's second mock, paced like a hosted model (its informational load).
    pub paced_mock: MockPacing,
    /// CPU of the proxies.
    pub proxy_cpu: usize,
    /// CPU of the mock and the load generator.
    pub client_cpu: usize,
    /// `--only`: the letters of the scenarios to run (sorted, no repeats); `None` runs all.
    pub only: Option<String>,
}

/// How a mock provider paces its streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MockPacing {
    /// Content chunks per stream.
    pub chunks: u32,
    /// Pause between the response head and the first content chunk.
    pub ttft: Duration,
    /// Pause between content chunks.
    pub chunk_delay: Duration,
}

/// Everything one run measured.
#[derive(Debug)]
pub struct RunResult {
    /// Every load measurement.
    pub load: BTreeMap<(Scenario, Target), Outcome>,
    /// The memory scenario.
    pub memory: Result<IdleReport, String>,
    /// The io driver the gateway logged.
    pub gateway_driver: Option<String>,
    /// WARN/ERROR lines the gateways logged.
    pub gateway_warnings: Vec<String>,
    /// Scenario g: bytes in the governed gateway's store directory once it stopped (`None`
    /// when scenario g did not run or the size could not be read).
    pub governance_store_bytes: Option<u64>,
    /// Scenario g: bytes the plain gateway left in its own (initially empty) working directory,
    /// outside the store its config names; anything but 0 is flagged.
    pub governance_plain_cwd_bytes: Option<u64>,
    /// Scenario i's checks beside the load (`None` when scenario i did not run).
    pub observability: Option<ObservabilityChecks>,
    /// error-level lines in nginx's error log.
    pub nginx_errors: Vec<String>,
}

/// Scenario i's checks of one run: whether each gateway logged and served what its
/// configuration says. `None` fields: that gateway did not start.
#[derive(Debug, Clone, Default)]
pub struct ObservabilityChecks {
    /// The observed gateway's access log once the gateway stopped, or why it could not be read.
    pub access_log: Option<Result<AccessLogContents, String>>,
    /// Access log entries the quiet gateway wrote to its stdout or stderr (0 expected).
    pub quiet_access_lines: Option<u64>,
    /// Bytes the quiet gateway left in its own, initially empty, working directory (0
    /// expected: its store is elsewhere).
    pub quiet_cwd_bytes: Option<u64>,
    /// The quiet gateway's answer to `GET /metrics` after the load (404 expected).
    pub quiet_metrics: Option<Result<u16, String>>,
    /// The observed gateway's answer to `GET /metrics` after the load (200 expected).
    pub observed_metrics: Option<Result<u16, String>>,
}

/// A goal's outcome.
#[derive(Debug, Clone)]
enum Verdict {
    Met(String),
    Missed(String),
    NotEvaluated(String),
    /// A number reported beside the goals, with no goal of its own.
    Info,
}

/// One row of the summary.
#[derive(Debug, Clone)]
struct Goal {
    scenario: &'static str,
    metric: String,
    goal: String,
    value: String,
    verdict: Verdict,
}

/// The whole benchmark: settings, machine, runs; renders the report.
#[derive(Debug)]
pub struct Results {
    /// What every run used.
    pub settings: Settings,
    /// Where it ran.
    pub machine: Machine,
    /// Whether nginx was measured.
    pub nginx: Availability,
    /// How the runner was invoked.
    pub command: String,
    /// When it started.
    pub date: String,
    /// Load average before the first run.
    pub load_at_start: Option<[f64; 3]>,
    /// Load average after the last run.
    pub load_at_end: Option<[f64; 3]>,
    /// Cores' worth of the two pinned CPUs busy in a 1 s sample before the first run.
    pub busy_at_start: Option<f64>,
    /// The open-file limit children inherited.
    pub nofile: u64,
    /// The runs.
    pub runs: Vec<RunResult>,
    /// How each kind of process was started (first run).
    commands: BTreeMap<String, String>,
    /// The load generator command of each measurement (first run).
    loadgen_commands: BTreeMap<(Scenario, Target), String>,
    /// The gateway configuration file of the first run.
    gateway_config: Option<String>,
    /// The scenario-f gateway's configuration file of the first run.
    translation_config: Option<String>,
    /// The scenario-g governed gateway's configuration file of the first run.
    governance_config: Option<String>,
    /// The scenario-h guarded gateway's configuration file of the first run.
    guardrails_config: Option<String>,
    /// The scenario-i gateways' configuration files of the first run, by target.
    observability_configs: BTreeMap<Target, String>,
    /// Guardrail detectors against the labelled corpus (not a load scenario; always run).
    pub accuracy: Option<Result<crate::corpus::Accuracy, String>>,
}

// === impl Target / Scenario ===

impl Target {
    /// The targets of scenarios a–d, baseline first.
    pub const ALL: [Target; 3] = [Target::Direct, Target::Tollgate, Target::Nginx];

    /// Short lowercase name.
    pub fn slug(self) -> &'static str {
        match self {
            Target::Direct => "direct",
            Target::Tollgate => "tollgate",
            Target::Nginx => "nginx",
            Target::DirectAnthropic => "direct-anthropic",
            Target::PassThrough => "pass-through",
            Target::Translated => "translated",
            Target::Plain => "plain",
            Target::Governed => "governed",
            Target::Guarded => "guarded",
            Target::Quiet => "quiet",
            Target::Observed => "observed",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Target::Direct => "direct to mock",
            Target::Tollgate => "through Tollgate",
            Target::Nginx => "through nginx",
            Target::DirectAnthropic => "direct to mock, Anthropic format",
            Target::PassThrough => "Tollgate pass-through (`openai` provider)",
            Target::Translated => "Tollgate translated (`anthropic` provider)",
            Target::Plain => "Tollgate plain (no limits, no prices)",
            Target::Governed => "Tollgate governed (key + team limits, priced)",
            Target::Guarded => "Tollgate guarded (default guardrails profile)",
            Target::Quiet => "Tollgate quiet (no metrics, no access log)",
            Target::Observed => "Tollgate observed (metrics, JSON access log to a file)",
        }
    }
}

impl Scenario {
    /// The load scenarios, in the order they run.
    pub const LOAD: [Scenario; 4] = [
        Scenario::Throughput,
        Scenario::Latency,
        Scenario::OpenLoop,
        Scenario::Streaming,
    ];

    /// Scenario f's loads, run after a–d with their own gateway.
    pub const TRANSLATION: [Scenario; 2] = [Scenario::Translation, Scenario::TranslationStreaming];

    /// Scenario g's load, run after f with its own two gateways.
    pub const GOVERNANCE: [Scenario; 1] = [Scenario::Governance];

    /// Scenario h's loads, run after g with their own two gateways.
    pub const GUARDRAILS: [Scenario; 2] = [Scenario::Guardrails, Scenario::GuardrailsStreaming];

    /// Scenario h's informational load, run after h's other loads with a paced mock and two
    /// gateways of its own in front of it.
    pub const GUARDRAILS_PACED: [Scenario; 1] = [Scenario::GuardrailsStreamingPaced];

    /// Scenario i's load, run after h with its own two gateways.
    pub const OBSERVABILITY: [Scenario; 1] = [Scenario::Observability];

    /// Short lowercase name.
    pub fn slug(self) -> &'static str {
        match self {
            Scenario::Throughput => "throughput",
            Scenario::Latency => "latency",
            Scenario::OpenLoop => "open-loop",
            Scenario::Streaming => "streaming",
            Scenario::Translation => "translation",
            Scenario::TranslationStreaming => "translation-stream",
            Scenario::Governance => "governance",
            Scenario::Guardrails => "guardrails",
            Scenario::GuardrailsStreaming => "guardrails-stream",
            Scenario::GuardrailsStreamingPaced => "guardrails-paced",
            Scenario::Observability => "observability",
        }
    }

    /// The letter `--only` selects it by (the memory scenario, e, is not a load).
    pub fn letter(self) -> char {
        match self {
            Scenario::Throughput => 'a',
            Scenario::Latency => 'b',
            Scenario::OpenLoop => 'c',
            Scenario::Streaming => 'd',
            Scenario::Translation | Scenario::TranslationStreaming => 'f',
            Scenario::Governance => 'g',
            Scenario::Guardrails
            | Scenario::GuardrailsStreaming
            | Scenario::GuardrailsStreamingPaced => 'h',
            Scenario::Observability => 'i',
        }
    }

    /// Whether the load is streamed.
    pub fn is_stream(self) -> bool {
        matches!(
            self,
            Scenario::Streaming
                | Scenario::TranslationStreaming
                | Scenario::GuardrailsStreaming
                | Scenario::GuardrailsStreamingPaced
        )
    }

    /// The targets of each scenario (a–d: [`Target::ALL`]). Scenario f's streams are not sent
    /// straight to the mock in Anthropic format: the load generator decodes OpenAI streams only
    /// (a stream must end with `data: [DONE]`, which Anthropic's never sends).
    pub fn targets(self) -> Vec<Target> {
        match self {
            Scenario::Translation => vec![
                Target::Direct,
                Target::DirectAnthropic,
                Target::PassThrough,
                Target::Translated,
            ],
            Scenario::TranslationStreaming => {
                vec![Target::Direct, Target::PassThrough, Target::Translated]
            }
            Scenario::Governance => vec![Target::Direct, Target::Plain, Target::Governed],
            Scenario::Guardrails
            | Scenario::GuardrailsStreaming
            | Scenario::GuardrailsStreamingPaced => {
                vec![Target::Direct, Target::Plain, Target::Guarded]
            }
            Scenario::Observability => vec![Target::Direct, Target::Quiet, Target::Observed],
            _ => Target::ALL.to_vec(),
        }
    }
}

// === impl Settings ===

impl Settings {
    /// Whether the scenario with this letter runs (`--only`; every scenario without it).
    pub fn includes(&self, letter: char) -> bool {
        self.only.as_deref().is_none_or(|o| o.contains(letter))
    }
}

// === impl RunResult ===

impl Default for RunResult {
    fn default() -> Self {
        Self {
            load: BTreeMap::new(),
            memory: Err("not run".into()),
            gateway_driver: None,
            gateway_warnings: Vec::new(),
            governance_store_bytes: None,
            governance_plain_cwd_bytes: None,
            observability: None,
            nginx_errors: Vec::new(),
        }
    }
}

impl RunResult {
    /// The successful measurement of one scenario and target (`None` if it failed or did not
    /// run).
    fn sample(&self, s: Scenario, t: Target) -> Option<&Sample> {
        self.load.get(&(s, t)).and_then(|o| o.as_ref().ok())
    }

    /// Requests the observed gateway of scenario i answered, warm-up included (`None` if its
    /// load failed or did not run): what its access log should hold a line for each of.
    fn observed_answered(&self) -> Option<u64> {
        self.sample(Scenario::Observability, Target::Observed)
            .map(|x| x.report.warmup_requests + x.report.requests)
    }
}

// === impl ObservabilityChecks ===

impl ObservabilityChecks {
    /// What these checks found wrong, given how many requests the observed gateway answered
    /// (warm-up included; `None` when its load failed, and then only an empty log is judged).
    fn problems(&self, answered: Option<u64>) -> Vec<String> {
        let mut out = Vec::new();
        match &self.access_log {
            None => {}
            Some(Err(e)) => out.push(format!(
                "could not read the observed gateway's access log: {e}"
            )),
            Some(Ok(log)) if log.lines == 0 => out.push(
                "the observed gateway left its access log empty (was server.access_log honoured?)"
                    .into(),
            ),
            Some(Ok(log)) => {
                if !log.first_is_entry {
                    out.push(
                        "the observed gateway's access log does not start with a JSON entry".into(),
                    );
                }
                let off = |n: u64| log.lines.abs_diff(n) as f64 > n as f64 * ACCESS_LOG_TOLERANCE;
                if let Some(n) = answered.filter(|&n| off(n)) {
                    out.push(format!(
                        "the observed gateway's access log holds {} lines for {n} requests answered (warm-up included); expected one per request, within {:.0}%",
                        log.lines,
                        ACCESS_LOG_TOLERANCE * 100.0
                    ));
                }
            }
        }
        if let Some(k) = self.quiet_access_lines.filter(|&k| k > 0) {
            out.push(format!(
                "the quiet gateway wrote {k} access log entries to stdout or stderr (its access_log is \"off\")"
            ));
        }
        if let Some(b) = self.quiet_cwd_bytes.filter(|&b| b > 0) {
            out.push(format!(
                "the quiet gateway wrote {b} bytes in its working directory (its access_log is \"off\", its store elsewhere)"
            ));
        }
        for (who, answer, want, metrics) in [
            ("quiet", &self.quiet_metrics, 404, false),
            ("observed", &self.observed_metrics, 200, true),
        ] {
            match answer {
                Some(Ok(status)) if *status != want => out.push(format!(
                    "GET /metrics on the {who} gateway answered {status}, expected {want} (server.metrics = {metrics})"
                )),
                Some(Err(e)) => out.push(format!("the {who} gateway did not answer: {e}")),
                Some(Ok(_)) | None => {}
            }
        }
        out
    }
}

// === impl Results: collection ===

impl Results {
    /// An empty result set.
    pub fn new(
        settings: Settings,
        machine: Machine,
        nginx: Availability,
        command: String,
        load_at_start: Option<[f64; 3]>,
        nofile: u64,
    ) -> Self {
        Self {
            settings,
            machine,
            nginx,
            command,
            date: machine::utc_now(),
            load_at_start,
            load_at_end: None,
            busy_at_start: None,
            nofile,
            runs: Vec::new(),
            commands: BTreeMap::new(),
            loadgen_commands: BTreeMap::new(),
            gateway_config: None,
            translation_config: None,
            governance_config: None,
            guardrails_config: None,
            observability_configs: BTreeMap::new(),
            accuracy: None,
        }
    }

    /// Records how a kind of process was started (the first time only).
    pub fn note_command(&mut self, kind: &str, line: String) {
        self.commands.entry(kind.to_owned()).or_insert(line);
    }

    /// Records the gateway's configuration file (the first time only).
    pub fn note_gateway_config(&mut self, toml: String) {
        self.gateway_config.get_or_insert(toml);
    }

    /// Records the scenario-f gateway's configuration file (the first time only).
    pub fn note_translation_config(&mut self, toml: String) {
        self.translation_config.get_or_insert(toml);
    }

    /// Records the configuration file of one of the two gateways of scenario g, h or i,
    /// measured as `target` (the first time only): g's governed gateway, h's guarded one and
    /// each of i's two have their own; a plain gateway (g's and h's baseline) has the
    /// configuration of a–d, recorded as [`Self::note_gateway_config`] does.
    pub fn note_pair_config(&mut self, target: Target, toml: String) {
        match target {
            Target::Governed => {
                self.governance_config.get_or_insert(toml);
            }
            Target::Guarded => {
                self.guardrails_config.get_or_insert(toml);
            }
            Target::Quiet | Target::Observed => {
                self.observability_configs.entry(target).or_insert(toml);
            }
            _ => self.note_gateway_config(toml),
        }
    }

    /// Records a load generator command line (the first time only).
    pub fn note_loadgen_command(&mut self, scenario: Scenario, target: Target, line: String) {
        self.loadgen_commands
            .entry((scenario, target))
            .or_insert(line);
    }

    fn nginx_measured(&self) -> bool {
        matches!(self.nginx, Availability::Ready { .. })
    }

    fn targets(&self) -> Vec<Target> {
        Target::ALL
            .into_iter()
            .filter(|&t| t != Target::Nginx || self.nginx_measured())
            .collect()
    }

    /// Successful samples of one scenario and target, one per run (`None` where it failed).
    fn samples(&self, s: Scenario, t: Target) -> Vec<Option<&Sample>> {
        self.runs.iter().map(|r| r.sample(s, t)).collect()
    }

    /// Median of `f` over the runs where the measurement succeeded.
    fn median_of(&self, s: Scenario, t: Target, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        median(
            self.samples(s, t)
                .into_iter()
                .flatten()
                .filter_map(f)
                .collect(),
        )
    }

    /// Median over runs of `f(target) - f(direct)`, both from the same run.
    fn added(&self, s: Scenario, t: Target, f: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
        let direct = self.samples(s, Target::Direct);
        let proxied = self.samples(s, t);
        let diffs = direct
            .iter()
            .zip(&proxied)
            .filter_map(|(d, p)| Some(f((*p)?)? - f((*d)?)?))
            .collect();
        median(diffs)
    }

    /// Per run, `f(num) / f(den)` of two measurements of that run (runs where either failed
    /// or the denominator is not positive are left out).
    fn per_run_ratios(
        &self,
        s: Scenario,
        num: Target,
        den: Target,
        f: impl Fn(&Sample) -> Option<f64>,
    ) -> Vec<f64> {
        self.samples(s, num)
            .into_iter()
            .zip(self.samples(s, den))
            .filter_map(|(n, d)| {
                let (n, d) = (f(n?)?, f(d?)?);
                (d > 0.0).then(|| n / d)
            })
            .collect()
    }

    fn memory_median(&self, f: impl Fn(&IdleReport) -> f64) -> Option<f64> {
        median(
            self.runs
                .iter()
                .filter_map(|r| r.memory.as_ref().ok())
                .map(f)
                .collect(),
        )
    }

    fn drivers(&self) -> String {
        let mut seen: Vec<String> = Vec::new();
        for r in &self.runs {
            let d = r
                .gateway_driver
                .clone()
                .unwrap_or_else(|| "not logged".into());
            if !seen.contains(&d) {
                seen.push(d);
            }
        }
        if seen.is_empty() {
            "unknown".into()
        } else {
            seen.join(", ")
        }
    }

    /// `median 0.02, max 0.31 cores`: CPU others used on the pinned cores during loads.
    fn interference(&self) -> String {
        let v: Vec<f64> = self
            .runs
            .iter()
            .flat_map(|r| r.load.values().flatten())
            .filter_map(|x| x.foreign_cpu)
            .collect();
        let max = v.iter().copied().fold(f64::NAN, f64::max);
        match median(v) {
            Some(m) => format!("median {m:.2} cores, max {max:.2} cores (0 on a quiet machine)"),
            None => "unknown".into(),
        }
    }

    fn loadgen_drivers(&self) -> String {
        let mut seen: Vec<&str> = Vec::new();
        for r in &self.runs {
            for s in r.load.values().flatten() {
                if !seen.contains(&s.report.driver.as_str()) {
                    seen.push(&s.report.driver);
                }
            }
        }
        if seen.is_empty() {
            "unknown".into()
        } else {
            seen.join(", ")
        }
    }
}

// === impl Results: judging ===

impl Results {
    /// Every problem seen: failed or unclean measurements, incomplete streams, a missed rate,
    /// closed idle connections, an empty governed store, an access log missing or off by more
    /// than [`ACCESS_LOG_TOLERANCE`] of the requests (or written by the quiet gateway), a
    /// `/metrics` that is not off or on as configured, gateway warnings, nginx errors.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let rate = f64::from(self.settings.rate);
        for (i, run) in self.runs.iter().enumerate() {
            let n = i + 1;
            for ((s, t), outcome) in &run.load {
                let at = format!("run {n}, {}, {}", s.slug(), t.slug());
                match outcome {
                    Err(e) => out.push(format!("{at}: measurement failed: {e}")),
                    Ok(sample) => {
                        if let Some(p) = sample.report.problem() {
                            out.push(format!("{at}: {p}"));
                        }
                        if *s == Scenario::OpenLoop
                            && sample.report.requests_per_sec < rate * OPEN_LOOP_MIN_ACHIEVED
                        {
                            out.push(format!(
                                "{at}: achieved {:.0} req/s of the {rate:.0} asked (the target could not keep up; latency is then queueing)",
                                sample.report.requests_per_sec
                            ));
                        }
                    }
                }
            }
            // Streams: every proxied target must deliver as many content events per stream as
            // the mock sends directly. In h only the plain gateway is judged: the guarded one
            // may hold text that could still be part of a match back for a later event, so its
            // count is shown, not judged.
            for (sc, judged) in [
                (Scenario::Streaming, &[Target::Tollgate, Target::Nginx][..]),
                (
                    Scenario::TranslationStreaming,
                    &[Target::PassThrough, Target::Translated],
                ),
                (Scenario::GuardrailsStreaming, &[Target::Plain]),
                (Scenario::GuardrailsStreamingPaced, &[Target::Plain]),
            ] {
                let events = |t: Target| run.sample(sc, t).and_then(metric::events_per_stream);
                let Some(d) = events(Target::Direct) else {
                    continue;
                };
                for &t in judged {
                    if let Some(p) = events(t).filter(|p| (d - p).abs() > 0.01) {
                        out.push(format!(
                            "run {n}, {}, {}: {p:.2} content events per stream, direct had {d:.2} (chunks lost or merged)",
                            sc.slug(),
                            t.slug()
                        ));
                    }
                }
            }
            if run.governance_store_bytes == Some(0) {
                out.push(format!(
                    "run {n}, governance: the governed gateway left its store directory empty (was the usage ledger written?)"
                ));
            }
            if let Some(b) = run.governance_plain_cwd_bytes.filter(|&b| b > 0) {
                out.push(format!(
                    "run {n}, governance: the plain gateway wrote {} in its working directory, outside the store its config names",
                    fmt_mib(b / 1024)
                ));
            }
            if let Some(checks) = &run.observability {
                out.extend(
                    checks
                        .problems(run.observed_answered())
                        .into_iter()
                        .map(|p| format!("run {n}, observability: {p}")),
                );
            }
            match &run.memory {
                Err(_) if !self.settings.includes('e') => {}
                Err(e) => out.push(format!("run {n}, memory: failed: {e}")),
                Ok(m) => {
                    if m.still_open < m.opened {
                        out.push(format!(
                            "run {n}, memory: the gateway closed {} of {} idle connections before memory was read",
                            m.opened - m.still_open,
                            m.opened
                        ));
                    }
                }
            }
            for w in &run.gateway_warnings {
                out.push(format!("run {n}, tollgate logged: {w}"));
            }
            for e in &run.nginx_errors {
                out.push(format!("run {n}, nginx logged: {e}"));
            }
        }
        out
    }

    fn goals(&self) -> Vec<Goal> {
        let mut goals = Vec::new();
        let nginx_missing = || match &self.nginx {
            Availability::Unavailable(why) => {
                Verdict::NotEvaluated(format!("nginx not measured: {why}"))
            }
            Availability::Ready { .. } => {
                Verdict::NotEvaluated("no successful nginx measurement".into())
            }
        };

        if self.settings.includes('a') {
            goals.push(self.throughput_goal(nginx_missing));
        }

        // b, c. added latency ratios
        for (scenario, label) in [
            (Scenario::Latency, "b. latency, 1 conn"),
            (Scenario::OpenLoop, "c. open loop"),
        ] {
            if !self.settings.includes(scenario.letter()) {
                continue;
            }
            for (pct, f) in [
                ("p50", metric::p50 as fn(&Sample) -> Option<f64>),
                ("p99", metric::p99),
            ] {
                let tg = self.added(scenario, Target::Tollgate, f);
                let ng = self.added(scenario, Target::Nginx, f);
                let (value, verdict) = added_ratio(tg, ng, nginx_missing);
                goals.push(Goal {
                    scenario: label,
                    metric: format!("added {pct} Tollgate / nginx"),
                    goal: format!("≤ {LATENCY_RATIO_GOAL:.2}"),
                    value,
                    verdict,
                });
            }
        }

        if self.settings.includes('d') {
            goals.push(self.streaming_goal(nginx_missing));
        }
        if self.settings.includes('e') {
            goals.push(self.memory_goal());
        }
        if self.settings.includes('f') {
            goals.extend(self.translation_goals());
        }
        if self.settings.includes('g') {
            goals.extend(self.governance_goals());
        }
        if self.settings.includes('h') {
            goals.extend(self.guardrails_goals());
        }
        if self.settings.includes('i') {
            goals.extend(self.observability_goals());
        }

        // Clean runs.
        let measured: usize = self.runs.iter().map(|r| r.load.len()).sum();
        let problems = self.problems().len();
        goals.push(Goal {
            scenario: "all",
            metric: "measurements without errors, complete streams".into(),
            goal: "no problem".into(),
            value: format!("{measured} load measurements, {problems} problems"),
            verdict: if problems == 0 {
                Verdict::Met(String::new())
            } else {
                Verdict::Missed(format!("{problems} problems (see Problems)"))
            },
        });
        goals
    }

    /// a. Tollgate / nginx req/s, closed loop.
    fn throughput_goal(&self, nginx_missing: impl Fn() -> Verdict) -> Goal {
        let tg = self.median_of(Scenario::Throughput, Target::Tollgate, metric::rps);
        let ng = self.median_of(Scenario::Throughput, Target::Nginx, metric::rps);
        let (value, verdict) = match (tg, ng) {
            (Some(tg), Some(ng)) if ng > 0.0 => {
                let r = tg / ng;
                let pct = (r - THROUGHPUT_RATIO_GOAL) * 100.0;
                let v = if r >= THROUGHPUT_RATIO_GOAL {
                    Verdict::Met(format!("by {pct:+.1}%"))
                } else {
                    Verdict::Missed(format!(
                        "by {pct:.1}% ({:.0} req/s short)",
                        ng * THROUGHPUT_RATIO_GOAL - tg
                    ))
                };
                (format!("{r:.2} ({tg:.0} vs {ng:.0} req/s)"), v)
            }
            _ => ("—".into(), nginx_missing()),
        };
        Goal {
            scenario: "a. throughput",
            metric: format!(
                "req/s Tollgate / nginx, {} conns",
                self.settings.connections
            ),
            goal: format!("≥ {THROUGHPUT_RATIO_GOAL:.2}"),
            value,
            verdict,
        }
    }

    /// d. added TTFT, Tollgate against nginx.
    fn streaming_goal(&self, nginx_missing: impl Fn() -> Verdict) -> Goal {
        let tg = self.added(Scenario::Streaming, Target::Tollgate, metric::ttft_p50);
        let ng = self.added(Scenario::Streaming, Target::Nginx, metric::ttft_p50);
        let (value, verdict) = match (tg, ng) {
            (Some(tg), Some(ng)) => {
                let v = if tg <= ng {
                    Verdict::Met(format!("by {}", fmt_us(ng - tg)))
                } else {
                    Verdict::Missed(format!("by {}", fmt_us(tg - ng)))
                };
                (
                    format!("Tollgate {}, nginx {}", fmt_added(tg), fmt_added(ng)),
                    v,
                )
            }
            (Some(tg), None) => (format!("Tollgate {}", fmt_added(tg)), nginx_missing()),
            _ => (
                "—".into(),
                Verdict::NotEvaluated("no successful measurement".into()),
            ),
        };
        Goal {
            scenario: "d. streaming",
            metric: "added TTFT p50".into(),
            goal: "Tollgate ≤ nginx".into(),
            value,
            verdict,
        }
    }

    /// e. VmRSS with the idle connections open.
    fn memory_goal(&self) -> Goal {
        let n = self.settings.idle_connections;
        let goal_n = self.settings.idle_goal_connections;
        let rss = self.memory_median(|m| m.rss_idle_kib as f64 / 1024.0);
        let (value, verdict) = match rss {
            None => (
                "—".into(),
                Verdict::NotEvaluated("no successful memory run".into()),
            ),
            Some(mib) => {
                let (judged, how) = if n >= goal_n {
                    (mib, String::new())
                } else {
                    let projected = self
                        .memory_median(|m| m.projected_kib(goal_n) / 1024.0)
                        .unwrap_or(mib);
                    (
                        projected,
                        format!(", projected to {goal_n} from {n}: {projected:.1} MiB"),
                    )
                };
                let v = if judged <= MEMORY_GOAL_MIB {
                    Verdict::Met(format!("by {:.1} MiB", MEMORY_GOAL_MIB - judged))
                } else {
                    Verdict::Missed(format!("by {:.1} MiB", judged - MEMORY_GOAL_MIB))
                };
                (format!("{mib:.1} MiB at {n} connections{how}"), v)
            }
        };
        Goal {
            scenario: "e. memory",
            metric: format!("Tollgate VmRSS, {goal_n} idle keep-alive conns"),
            goal: format!("≤ {MEMORY_GOAL_MIB:.0} MiB"),
            value,
            verdict,
        }
    }
}

impl Results {
    /// Scenario f: the goal on translated / pass-through req/s, and beside it (no goal) the
    /// proxy's CPU per request and the streaming ratio.
    fn translation_goals(&self) -> Vec<Goal> {
        let sc = Scenario::Translation;
        let mut goals = vec![
            self.rps_ratio_goal(
                (sc, "f. translation"),
                format!(
                    "req/s translated / pass-through, {} conns, same gateway and run",
                    self.settings.connections
                ),
                (Target::Translated, Target::PassThrough),
                TRANSLATION_RATIO_GOAL,
                "no run measured both models",
            ),
            self.cpu_per_request_info(
                (sc, "f. translation"),
                (Target::Translated, Target::PassThrough),
            ),
        ];

        let st = Scenario::TranslationStreaming;
        let ratios = self.per_run_ratios(st, Target::Translated, Target::PassThrough, metric::rps);
        let per_run = fmt_ratios(&ratios);
        let t_cpu = self.median_of(st, Target::Translated, metric::cpu_per_request);
        let p_cpu = self.median_of(st, Target::PassThrough, metric::cpu_per_request);
        goals.push(Goal {
            scenario: "f. translation, streaming",
            metric: format!(
                "streams/s translated / pass-through, {} streams",
                self.settings.stream_connections
            ),
            goal: "—".into(),
            value: match (median(ratios), t_cpu, p_cpu) {
                (Some(r), Some(t), Some(p)) => {
                    format!("{r:.2} (per run {per_run}); proxy CPU / stream {t:.0} vs {p:.0} µs")
                }
                (Some(r), _, _) => format!("{r:.2} (per run {per_run})"),
                _ => "—".into(),
            },
            verdict: Verdict::Info,
        });
        goals
    }

    /// The goal on `target`'s req/s over `base`'s in scenario `sc` (named `scenario` in the
    /// table), as the median of per-run ratios against `ratio_goal`, stated as `metric`;
    /// `unmeasured` is the reason given when no run measured both.
    fn rps_ratio_goal(
        &self,
        (sc, scenario): (Scenario, &'static str),
        metric: String,
        (target, base): (Target, Target),
        ratio_goal: f64,
        unmeasured: &str,
    ) -> Goal {
        let ratios = self.per_run_ratios(sc, target, base, metric::rps);
        let per_run = fmt_ratios(&ratios);
        let on = self.median_of(sc, target, metric::rps);
        let baseline = self.median_of(sc, base, metric::rps);
        let (value, verdict) = match (median(ratios), on, baseline) {
            (Some(r), Some(t), Some(b)) => (
                format!("{r:.3} ({t:.0} vs {b:.0} req/s; per run {per_run})"),
                ratio_verdict(r, b, ratio_goal),
            ),
            _ => ("—".into(), Verdict::NotEvaluated(unmeasured.into())),
        };
        Goal {
            scenario,
            metric,
            goal: format!("≥ {ratio_goal:.2}"),
            value,
            verdict,
        }
    }

    /// No goal: the proxy's CPU per request through `target` and through `base` in scenario
    /// `sc` (named `scenario` in the table), and the req/s ratio that would give if the proxy
    /// alone set the pace.
    fn cpu_per_request_info(
        &self,
        (sc, scenario): (Scenario, &'static str),
        (target, base): (Target, Target),
    ) -> Goal {
        let on = self.median_of(sc, target, metric::cpu_per_request);
        let baseline = self.median_of(sc, base, metric::cpu_per_request);
        let bound = median(self.per_run_ratios(sc, base, target, metric::cpu_per_request));
        Goal {
            scenario,
            metric: format!(
                "proxy CPU / request, {} vs {}",
                target.slug(),
                base.slug()
            ),
            goal: "—".into(),
            value: match (on, baseline, bound) {
                (Some(t), Some(b), Some(bound)) if b > 0.0 => format!(
                    "{t:.1} vs {b:.1} µs ({:+.0}%; req/s ratio if the proxy alone set the pace: {bound:.2})",
                    (t / b - 1.0) * 100.0
                ),
                _ => "—".into(),
            },
            verdict: Verdict::Info,
        }
    }
}

impl Results {
    /// Scenario g: the goal on governed / plain req/s, and beside it (no goal) the proxy's CPU
    /// per request and what the governed gateway left in its store.
    fn governance_goals(&self) -> Vec<Goal> {
        self.against_baseline(
            (Scenario::Governance, "g. governance"),
            (Target::Governed, Target::Plain),
            GOVERNANCE_RATIO_GOAL,
        )
    }

    /// A gateway with something switched on (`target`) against the same run's baseline
    /// gateway (`base`) in scenario `sc`: the goal on its req/s over the baseline's (median of
    /// per-run ratios) and, no goal, the proxy's CPU per request for both. The targets' slugs
    /// name them in the table.
    fn against_baseline(
        &self,
        scenario: (Scenario, &'static str),
        (target, base): (Target, Target),
        ratio_goal: f64,
    ) -> Vec<Goal> {
        let metric = format!(
            "req/s {} / {}, {} conns, same run",
            target.slug(),
            base.slug(),
            self.settings.connections
        );
        vec![
            self.rps_ratio_goal(
                scenario,
                metric,
                (target, base),
                ratio_goal,
                "no run measured both gateways",
            ),
            self.cpu_per_request_info(scenario, (target, base)),
        ]
    }

    /// Median bytes the governed gateway left in its store, over the runs that read it.
    fn governance_store_median(&self) -> Option<f64> {
        median(
            self.runs
                .iter()
                .filter_map(|r| r.governance_store_bytes)
                .map(|b| b as f64)
                .collect(),
        )
    }
}

impl Results {
    /// Scenario h: the goals on guarded / plain req/s and on guarded / plain TTFT p50, and
    /// beside them (no goal) the proxy's CPU per request and the TTFT ratio against the paced
    /// mock.
    fn guardrails_goals(&self) -> Vec<Goal> {
        let mut goals = self.against_baseline(
            (Scenario::Guardrails, "h. guardrails"),
            (Target::Guarded, Target::Plain),
            GUARDRAILS_RATIO_GOAL,
        );

        let pair = (Target::Guarded, Target::Plain);
        let (value, verdict) = match self.ttft_ratio(Scenario::GuardrailsStreaming, pair) {
            Some((r, value, plain)) => (
                value,
                ttft_ratio_verdict(r, plain, GUARDRAILS_TTFT_RATIO_GOAL),
            ),
            None => (
                "—".into(),
                Verdict::NotEvaluated("no run measured both gateways".into()),
            ),
        };
        goals.push(Goal {
            scenario: "h. guardrails, streaming",
            metric: format!(
                "TTFT p50 guarded / plain, {} streams, same run",
                self.settings.stream_connections
            ),
            goal: format!("≤ {GUARDRAILS_TTFT_RATIO_GOAL:.2}"),
            value,
            verdict,
        });

        // No goal: the product question is still open whether TTFT should be judged against
        // an upstream paced like a hosted model; every run shows the ratio there beside the goal.
        goals.push(Goal {
            scenario: "h. guardrails, streaming, paced upstream",
            metric: "TTFT p50 guarded / plain".into(),
            goal: "—".into(),
            value: self
                .ttft_ratio(Scenario::GuardrailsStreamingPaced, pair)
                .map_or_else(|| "—".into(), |(_, value, _)| value),
            verdict: Verdict::Info,
        });
        goals
    }

    /// TTFT p50 of `target` over `base` in scenario `sc`, same run: the median of the per-run
    /// ratios, the goals table's value (`1.080 (432 µs vs 400 µs; per run 1.050, 1.200,
    /// 1.080)`) and the baseline's median TTFT p50 (µs); `None` unless a run measured both.
    fn ttft_ratio(
        &self,
        sc: Scenario,
        (target, base): (Target, Target),
    ) -> Option<(f64, String, f64)> {
        let ttft = metric::ttft_p50;
        let ratios = self.per_run_ratios(sc, target, base, ttft);
        let per_run = fmt_ratios(&ratios);
        let on = self.median_of(sc, target, ttft)?;
        let baseline = self.median_of(sc, base, ttft)?;
        let r = median(ratios)?;
        let value = format!(
            "{r:.3} ({} vs {}; per run {per_run})",
            fmt_us(on),
            fmt_us(baseline)
        );
        Some((r, value, baseline))
    }
}

impl Results {
    /// Scenario i: the goal on observed / quiet req/s, and beside it (no goal) the proxy's CPU
    /// per request of both.
    fn observability_goals(&self) -> Vec<Goal> {
        self.against_baseline(
            (Scenario::Observability, "i. observability"),
            (Target::Observed, Target::Quiet),
            OBSERVABILITY_RATIO_GOAL,
        )
    }

    /// Medians over the runs that read the observed gateway's access log: its lines, its
    /// bytes, and its lines per request answered (warm-up included).
    fn access_log_medians(&self) -> (Option<f64>, Option<f64>, Option<f64>) {
        let logs: Vec<(AccessLogContents, Option<u64>)> = self
            .runs
            .iter()
            .filter_map(|r| {
                let log = *r
                    .observability
                    .as_ref()?
                    .access_log
                    .as_ref()?
                    .as_ref()
                    .ok()?;
                Some((log, r.observed_answered()))
            })
            .collect();
        (
            median(logs.iter().map(|(l, _)| l.lines as f64).collect()),
            median(logs.iter().map(|(l, _)| l.bytes as f64).collect()),
            median(
                logs.iter()
                    .filter_map(|(l, n)| n.filter(|&n| n > 0).map(|n| l.lines as f64 / n as f64))
                    .collect(),
            ),
        )
    }
}

/// The verdict on a same-run latency ratio `r` that must stay at most `goal`, with `den` (the
/// baseline's latency, µs) turning the margin into time.
fn ttft_ratio_verdict(r: f64, den: f64, goal: f64) -> Verdict {
    if r <= goal {
        Verdict::Met(format!(
            "by {:.3} (≈ {} to spare)",
            goal - r,
            fmt_us((goal - r) * den)
        ))
    } else {
        Verdict::Missed(format!(
            "by {:.3} (needs ≤ {}, ≈ {} over)",
            r - goal,
            fmt_us(den * goal),
            fmt_us((r - goal) * den)
        ))
    }
}

/// The verdict on a same-run ratio `r` against `goal`, with `den` (the baseline's req/s)
/// turning the margin into req/s.
fn ratio_verdict(r: f64, den: f64, goal: f64) -> Verdict {
    if r >= goal {
        Verdict::Met(format!(
            "by {:.3} (≈ {:.0} req/s to spare)",
            r - goal,
            (r - goal) * den
        ))
    } else {
        Verdict::Missed(format!(
            "by {:.3} (needs ≥ {:.0} req/s, ≈ {:.0} short)",
            goal - r,
            den * goal,
            (goal - r) * den
        ))
    }
}

/// Per-run ratios as `0.812, 0.790, 0.843`.
fn fmt_ratios(v: &[f64]) -> String {
    v.iter()
        .map(|r| format!("{r:.3}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the tables and goals read from one sample, for [`Results::median_of`],
/// [`Results::added`] and [`Results::per_run_ratios`]. Latencies are in µs.
mod metric {
    use crate::loadgen::Sample;

    /// Requests (or streams) per second.
    pub fn rps(x: &Sample) -> Option<f64> {
        Some(x.report.requests_per_sec)
    }

    /// Latency p50 (whole request, or whole stream).
    pub fn p50(x: &Sample) -> Option<f64> {
        Some(x.report.latency.p50_us as f64)
    }

    /// Latency p99.
    pub fn p99(x: &Sample) -> Option<f64> {
        Some(x.report.latency.p99_us as f64)
    }

    /// Latency p99.9.
    pub fn p999(x: &Sample) -> Option<f64> {
        Some(x.report.latency.p999_us as f64)
    }

    /// Time to first token, p50 (streams only).
    pub fn ttft_p50(x: &Sample) -> Option<f64> {
        x.report.ttft.as_ref().map(|l| l.p50_us as f64)
    }

    /// Time to first token, p99 (streams only).
    pub fn ttft_p99(x: &Sample) -> Option<f64> {
        x.report.ttft.as_ref().map(|l| l.p99_us as f64)
    }

    /// Content events per stream (streams only).
    pub fn events_per_stream(x: &Sample) -> Option<f64> {
        x.report.events_per_stream()
    }

    /// Response body bytes per successful request.
    pub fn bytes_per_response(x: &Sample) -> Option<f64> {
        (x.report.ok > 0).then(|| x.report.body_bytes as f64 / x.report.ok as f64)
    }

    /// The proxy's CPU, as a fraction of one core.
    pub fn proxy_cpu(x: &Sample) -> Option<f64> {
        x.proxy_cpu
    }

    /// The mock's and the load generator's CPU together, as a fraction of one core.
    pub fn client_cpu(x: &Sample) -> Option<f64> {
        x.client_cpu
    }

    /// Proxy CPU time per request, µs: how much work one request costs the proxy at this load
    /// (its CPU over the load generator's lifetime, warm-up included, over the measured rate).
    pub fn cpu_per_request(x: &Sample) -> Option<f64> {
        let rps = x.report.requests_per_sec;
        x.proxy_cpu.filter(|_| rps > 0.0).map(|c| c * 1e6 / rps)
    }

    /// The mock's CPU time per request, µs (as [`cpu_per_request`]).
    pub fn mock_cpu_per_request(x: &Sample) -> Option<f64> {
        let rps = x.report.requests_per_sec;
        x.mock_cpu.filter(|_| rps > 0.0).map(|c| c * 1e6 / rps)
    }
}

/// Ratio of added latencies and its verdict against [`LATENCY_RATIO_GOAL`].
fn added_ratio(
    tg: Option<f64>,
    ng: Option<f64>,
    nginx_missing: impl Fn() -> Verdict,
) -> (String, Verdict) {
    match (tg, ng) {
        (Some(tg), Some(ng)) if ng > 0.0 => {
            let r = tg / ng;
            let value = format!(
                "{r:.2} (Tollgate {}, nginx {})",
                fmt_added(tg),
                fmt_added(ng)
            );
            let allowed = ng * LATENCY_RATIO_GOAL;
            let v = if r <= LATENCY_RATIO_GOAL {
                Verdict::Met(format!(
                    "by {:.2} ({} to spare)",
                    LATENCY_RATIO_GOAL - r,
                    fmt_us(allowed - tg)
                ))
            } else {
                Verdict::Missed(format!(
                    "by {:.2} (needs ≤ {} added, {} less)",
                    r - LATENCY_RATIO_GOAL,
                    fmt_us(allowed),
                    fmt_us(tg - allowed)
                ))
            };
            (value, v)
        }
        (Some(tg), Some(ng)) => (
            format!("Tollgate {}, nginx {}", fmt_added(tg), fmt_added(ng)),
            Verdict::NotEvaluated("nginx added no measurable latency".into()),
        ),
        (Some(tg), None) => (format!("Tollgate {}", fmt_added(tg)), nginx_missing()),
        _ => (
            "—".into(),
            Verdict::NotEvaluated("no successful measurement".into()),
        ),
    }
}

// === impl Results: rendering ===

impl Results {
    /// The stdout summary: the goals table and the per-scenario medians.
    pub fn render_summary(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Tollgate benchmark, {} ({} run(s) × {} + {} warm-up), commit {}\n",
            self.date,
            self.runs.len(),
            fmt_duration(self.settings.duration),
            fmt_duration(self.settings.warmup),
            self.machine.commit
        );
        self.write_goals(&mut s);
        s.push('\n');
        self.write_scenarios(&mut s, false);
        let problems = self.problems();
        if !problems.is_empty() {
            let _ = writeln!(s, "Problems:");
            for p in problems {
                let _ = writeln!(s, "- {p}");
            }
        }
        s
    }

    /// The whole RESULTS.md.
    pub fn render_markdown(&self) -> String {
        let mut s = String::new();
        let st = &self.settings;
        let _ = writeln!(s, "# Tollgate end-to-end benchmark results\n");
        let _ = writeln!(
            s,
            "Written by `tollgate-bench` (bench/src); rerun it to replace this file. Recorded {}.\n",
            self.date
        );
        let _ = writeln!(s, "```sh\n{}\n```\n", self.command);
        if st.quick {
            let _ = writeln!(
                s,
                "> **Quick smoke run** (`--quick`): one short run; the numbers show the runner works, they are not a measurement.\n"
            );
        }

        let _ = writeln!(s, "## Machine and build\n");
        let _ = writeln!(s, "| | |\n|---|---|");
        let _ = writeln!(s, "| git commit | `{}` |", self.machine.commit);
        let _ = writeln!(
            s,
            "| CPU | {} ({} CPUs usable) |",
            self.machine.cpu_model, self.machine.cpus
        );
        let _ = writeln!(s, "| memory | {} |", self.machine.memory);
        let _ = writeln!(s, "| kernel | {} |", self.machine.kernel);
        let _ = writeln!(
            s,
            "| gateway io driver (from its log) | {} |",
            self.drivers()
        );
        let _ = writeln!(
            s,
            "| load generator io driver | {} |",
            self.loadgen_drivers()
        );
        let nginx = match &self.nginx {
            Availability::Ready { bin, version } => format!("{version} (`{}`)", bin.display()),
            Availability::Unavailable(why) => format!("not measured: {why}"),
        };
        let _ = writeln!(s, "| nginx | {nginx} |");
        let _ = writeln!(
            s,
            "| load average (1/5/15 min) at start / end | {} / {} |",
            machine::fmt_load(self.load_at_start),
            machine::fmt_load(self.load_at_end)
        );
        let _ = writeln!(
            s,
            "| pinned CPUs busy before the first run (1 s sample) | {} |",
            self.busy_at_start
                .map_or_else(|| "unknown".into(), |b| format!("{b:.2} cores"))
        );
        let _ = writeln!(s, "| open-file limit (inherited) | {} |", self.nofile);
        let _ = writeln!(
            s,
            "| foreign CPU on the pinned cores during loads | {} |\n",
            self.interference()
        );

        let _ = writeln!(s, "## Setup\n");
        let _ = writeln!(
            s,
            "- CPU {}: the proxy under test, one worker: Tollgate (`workers = 1`) or nginx (`worker_processes 1; master_process off`). Both run for the whole run; the one not being measured is idle.",
            st.proxy_cpu
        );
        let _ = writeln!(
            s,
            "- CPU {}: the mock provider (1 thread) and the load generator (1 thread), both pinned with `taskset`.",
            st.client_cpu
        );
        let _ = writeln!(
            s,
            "- Mock: non-streamed answers at once; streams of {} content chunks {} apart, TTFT 0.",
            st.mock_chunks,
            fmt_duration(st.mock_chunk_delay)
        );
        let _ = writeln!(
            s,
            "- Every Tollgate writes its usage ledger (one record per request; always on) to a store of its own in the scratch directory, flushed every 200 ms."
        );
        let _ = writeln!(
            s,
            "- Every load: {} measured after {} warm-up, HTTP/1.1 keep-alive, `POST /v1/chat/completions` with the loadgen's default body{} and `Authorization: Bearer sk-tollgate-demo` (nginx and the mock ignore it).",
            fmt_duration(st.duration),
            fmt_duration(st.warmup),
            if st.includes('h') {
                " (scenario h: its own body, below)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            s,
            "- Each run starts fresh processes and measures direct, Tollgate and nginx back to back for every scenario, rotating which goes first. {} run(s); tables show the median across runs.",
            self.runs.len()
        );
        let _ = writeln!(
            s,
            "- *Added* latency = proxied minus direct **in the same run**; the table shows the median of those per-run differences, and ratios divide the medians."
        );
        let _ = writeln!(
            s,
            "- *Proxy CPU* is the proxy process's CPU time over the load generator's lifetime (warm-up included) as a fraction of one core; *client CPU* the same for the mock and the load generator together (they share CPU {}). A client CPU near 100% means the client side, not the proxy, set the pace. *Foreign CPU* is what else kept the two pinned cores busy meanwhile (other processes, interrupts), in cores: the noise indicator.",
            st.client_cpu
        );
        let _ = writeln!(
            s,
            "- Memory: a fresh gateway; {} connections each send one chat completion and stay open and idle; VmRSS of the gateway process from `/proc/PID/status`.",
            st.idle_connections
        );
        let _ = writeln!(
            s,
            "- Translation (f): after a–d, a second gateway (same settings, config below) serves `{}` from a `kind = \"openai\"` provider (pass-through) and `{}` from a `kind = \"anthropic\"` provider, both pointing at the same mock, which answers the native Messages API at `/v1/messages`. The load generator sends the same OpenAI-format requests to both models, with the same connections, duration and warm-up as scenario a (and as d for the streaming variant), back to back and rotating order each run; direct loads to the mock in OpenAI and in Anthropic format show what the mock itself costs in each format. Ratios are taken per run and the median shown.",
            crate::loadgen::MODEL,
            crate::loadgen::TRANSLATED_MODEL
        );
        let _ = writeln!(
            s,
            "- Governance (g): after f, two fresh gateways: a plain one (the configuration of a–d) and a governed one whose key `{}` belongs to a team with a monthly budget, RPM and TPM limits (the key has RPM and TPM limits too), with a price for `{}`. Both write the usage ledger (always on) to a fresh store of their own, flushed every 200 ms. The same closed-loop load as scenario a goes to both and straight to the mock, back to back and rotating order each run; the ratio governed / plain is taken per run and the median shown.",
            crate::loadgen::DEMO_KEY,
            crate::loadgen::MODEL
        );
        let _ = writeln!(
            s,
            "- Guardrails (h): after g, two fresh gateways: a plain one (the configuration of a–d) and a guarded one, the same plus the default profile of `config/examples/guardrails.toml` (block prompt injection, payment cards and secrets; mask e-mail addresses and phone numbers; `restore_masked`; one allowed address) applied to every key, scanning every prompt and answer. Both write the usage ledger (always on) to a fresh store of their own. Every h request, to both gateways and straight to the mock, carries a clean {}-byte chat body (system prompt and user message, `guardrails-chat.json`, with `\"stream\": true` and usage for streams); the load generator sends it with `--body-file` and writes each request's number over the order number in the user message (`--vary XXXXXXXX`), so the system prompt repeats and every user message is new, as in real traffic (the guarded gateway remembers prompt texts it found clean; only the system prompt can come from that memo). The closed-loop load is scenario a's and the streaming load scenario d's, back to back and rotating order each run; the ratios guarded / plain (req/s, and TTFT p50 for streams) are taken per run and the median shown.",
            crate::guardrails::chat_body(false).len()
        );
        let _ = writeln!(
            s,
            "- Observability (i): after h, two fresh gateways with the configuration of a–d plus two lines in `[server]`: a quiet one (`metrics = false`, `access_log = \"off\"`) and an observed one (`metrics = true`, `access_log` a file `access-runN.log` in the scratch directory, one JSON line appended per request). Both write the usage ledger (always on) to a fresh store of their own. The same closed-loop load as scenario a goes to both and straight to the mock, back to back and rotating order each run; the ratio observed / quiet is taken per run and the median shown."
        );
        if let Some(only) = &st.only {
            let _ = writeln!(
                s,
                "- **Partial run** (`--only {only}`): only scenario(s) {only} ran; the others are left out of this file."
            );
        }
        let _ = writeln!(
            s,
            "- Reading the latency tables: a proxied request crosses cores four times (load generator → proxy → mock → proxy → load generator), so at low load *added* latency includes waking the proxy's idle core twice, for nginx and Tollgate alike. *Proxy CPU / request* separates the proxy's own work from that waiting; compare it with the same column under saturation (scenario a). Why the added-latency goals are out of reach in this layout, with the experiments behind it: [NOTES.md](NOTES.md).\n"
        );

        let _ = writeln!(s, "## Goals\n");
        self.write_goals(&mut s);
        s.push('\n');
        self.write_scenarios(&mut s, true);
        if let Some(accuracy) = &self.accuracy {
            crate::corpus::render(accuracy, &mut s);
        }

        let _ = writeln!(s, "## Problems\n");
        let problems = self.problems();
        if problems.is_empty() {
            let _ = writeln!(
                s,
                "None: every measured request succeeded (errors = 0, ok = requests), every stream was complete with as many content events as direct, every idle connection stayed open, and neither proxy logged a warning or error.\n"
            );
        } else {
            for p in problems {
                let _ = writeln!(s, "- {p}");
            }
            s.push('\n');
        }

        let _ = writeln!(s, "## Commands\n");
        let _ = writeln!(
            s,
            "<details><summary>Every process of the first run (ports are picked free per run), the gateway's config; nginx's is <code>bench/nginx.conf.template</code></summary>\n"
        );
        let _ = writeln!(s, "```sh");
        for (kind, line) in &self.commands {
            let _ = writeln!(s, "# {kind}\n{line}");
        }
        for ((sc, t), line) in &self.loadgen_commands {
            let _ = writeln!(s, "# {} / {}\n{line}", sc.slug(), t.slug());
        }
        let _ = writeln!(s, "```\n");
        if let Some(conf) = &self.gateway_config {
            let _ = writeln!(s, "```toml\n{}\n```\n", conf.trim_end());
        }
        if let Some(conf) = &self.governance_config {
            let _ = writeln!(
                s,
                "Scenario g's governed gateway (its plain one has the configuration above):\n"
            );
            let _ = writeln!(s, "```toml\n{}\n```\n", conf.trim_end());
        }
        if let Some(conf) = &self.guardrails_config {
            let _ = writeln!(
                s,
                "Scenario h's guarded gateway (its plain one has the configuration above):\n"
            );
            let _ = writeln!(s, "```toml\n{}\n```\n", conf.trim_end());
            let _ = writeln!(
                s,
                "The body of every scenario-h request (`guardrails-chat.json`; streams send it with `\"stream\":true,\"stream_options\":{{\"include_usage\":true}}`). The h load generator commands above are what actually runs: a two-line `exec` wrapper in the scratch directory appends `--body-file` to the arguments the runner builds:\n"
            );
            let _ = writeln!(s, "```json\n{}\n```\n", crate::guardrails::chat_body(false));
        }
        for (target, conf) in &self.observability_configs {
            let _ = writeln!(s, "Scenario i's {} gateway:\n", target.slug());
            let _ = writeln!(s, "```toml\n{}\n```\n", conf.trim_end());
        }
        if let Some(conf) = &self.translation_config {
            let _ = writeln!(s, "Scenario f's gateway:\n");
            let _ = writeln!(s, "```toml\n{}\n```\n", conf.trim_end());
            let _ = writeln!(
                s,
                "The body of the direct Anthropic-format load (`anthropic-messages.json`):\n"
            );
            let _ = writeln!(s, "```json\n{}\n```\n", crate::loadgen::ANTHROPIC_BODY);
        }
        let _ = writeln!(s, "</details>\n");

        self.write_raw(&mut s);
        s
    }

    fn write_goals(&self, s: &mut String) {
        let _ = writeln!(s, "| scenario | metric | goal | median result | verdict |");
        let _ = writeln!(s, "|---|---|---|---|---|");
        for g in self.goals() {
            let verdict = match &g.verdict {
                Verdict::Met(m) if m.is_empty() => "**met**".to_owned(),
                Verdict::Met(m) => format!("**met** {m}"),
                Verdict::Missed(m) => format!("**MISSED** {m}"),
                Verdict::NotEvaluated(why) => format!("not evaluated: {why}"),
                Verdict::Info => "informational".to_owned(),
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {verdict} |",
                g.scenario, g.metric, g.goal, g.value
            );
        }
    }

    fn errors_cell(&self, sc: Scenario, t: Target) -> String {
        let mut total = 0;
        let mut failed = 0;
        for r in &self.runs {
            match r.load.get(&(sc, t)) {
                Some(Ok(sample)) => total += sample.report.errors.total,
                Some(Err(_)) => failed += 1,
                None => {}
            }
        }
        match failed {
            0 => total.to_string(),
            n => format!("{total} (+{n} failed runs)"),
        }
    }

    fn write_scenarios(&self, s: &mut String, markdown_headings: bool) {
        let st = &self.settings;
        let targets = self.targets();

        // a.
        if self.settings.includes('a') {
            heading(
                s,
                markdown_headings,
                &format!(
                    "a. Throughput: closed loop, {} connections, non-streaming",
                    st.connections
                ),
            );
            let _ = writeln!(s, "| target | req/s | vs direct | p50 | p99 | proxy CPU | proxy CPU / request | req/s per proxy core | client CPU | errors |");
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
            let direct_rps = self.median_of(Scenario::Throughput, Target::Direct, metric::rps);
            for &t in &targets {
                let sc = Scenario::Throughput;
                let r = self.median_of(sc, t, metric::rps);
                let per_core = self.median_of(sc, t, |x| {
                    x.proxy_cpu
                        .filter(|&c| c > 0.0)
                        .map(|c| x.report.requests_per_sec / c)
                });
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    t.label(),
                    opt(r, |v| format!("{v:.0}")),
                    match (r, direct_rps) {
                        (Some(r), Some(d)) if d > 0.0 => format!("{:.2}", r / d),
                        _ => "—".into(),
                    },
                    opt(self.median_of(sc, t, metric::p50), fmt_us),
                    opt(self.median_of(sc, t, metric::p99), fmt_us),
                    opt(self.median_of(sc, t, metric::proxy_cpu), fmt_pct),
                    opt(self.median_of(sc, t, metric::cpu_per_request), fmt_cpu_us),
                    opt(per_core, |v| format!("{v:.0}")),
                    opt(self.median_of(sc, t, metric::client_cpu), fmt_pct),
                    self.errors_cell(sc, t)
                );
            }
            s.push('\n');
        }

        // b. and c.
        for (sc, title) in [
            (
                Scenario::Latency,
                "b. Latency: 1 connection, back to back, non-streaming".to_owned(),
            ),
            (
                Scenario::OpenLoop,
                format!(
                    "c. Open loop: {} req/s scheduled (pool of {} connections), non-streaming; latency from the scheduled send time",
                    st.rate, st.open_pool
                ),
            ),
        ] {
            if !self.settings.includes(sc.letter()) {
                continue;
            }
            heading(s, markdown_headings, &title);
            let _ = writeln!(s, "| target | req/s | p50 | p99 | p99.9 | added p50 | added p99 | proxy CPU | proxy CPU / request | errors |");
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
            for &t in &targets {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    t.label(),
                    opt(self.median_of(sc, t, metric::rps), |v| format!("{v:.0}")),
                    opt(self.median_of(sc, t, metric::p50), fmt_us),
                    opt(self.median_of(sc, t, metric::p99), fmt_us),
                    opt(self.median_of(sc, t, metric::p999), fmt_us),
                    self.added_cell(sc, t, metric::p50),
                    self.added_cell(sc, t, metric::p99),
                    opt(self.median_of(sc, t, metric::proxy_cpu), fmt_pct),
                    opt(self.median_of(sc, t, metric::cpu_per_request), fmt_cpu_us),
                    self.errors_cell(sc, t)
                );
            }
            s.push('\n');
        }

        // d.
        if self.settings.includes('d') {
            heading(
                s,
                markdown_headings,
                &format!(
                    "d. Streaming: {} concurrent streams, {} chunks {} apart (nginx: its `proxy_buffering off` server)",
                    st.stream_connections,
                    st.mock_chunks,
                    fmt_duration(st.mock_chunk_delay)
                ),
            );
            let _ = writeln!(s, "| target | streams/s | TTFT p50 | TTFT p99 | added TTFT p50 | added TTFT p99 | stream p50 | content events / stream | proxy CPU | errors |");
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
            let sc = Scenario::Streaming;
            for &t in &targets {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    t.label(),
                    opt(self.median_of(sc, t, metric::rps), |v| format!("{v:.0}")),
                    opt(self.median_of(sc, t, metric::ttft_p50), fmt_us),
                    opt(self.median_of(sc, t, metric::ttft_p99), fmt_us),
                    self.added_cell(sc, t, metric::ttft_p50),
                    self.added_cell(sc, t, metric::ttft_p99),
                    opt(self.median_of(sc, t, metric::p50), fmt_us),
                    opt(self.median_of(sc, t, metric::events_per_stream), |v| {
                        format!("{v:.2}")
                    }),
                    opt(self.median_of(sc, t, metric::proxy_cpu), fmt_pct),
                    self.errors_cell(sc, t)
                );
            }
            s.push('\n');
        }

        // e.
        if self.settings.includes('e') {
            heading(
                s,
                markdown_headings,
                &format!(
                    "e. Memory: {} idle keep-alive connections to Tollgate",
                    st.idle_connections
                ),
            );
            let _ = writeln!(s, "| run | connections opened | still open | VmRSS before | VmRSS with idle conns | VmHWM | per connection | VmRSS after closing | time to open |");
            let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
            for (i, r) in self.runs.iter().enumerate() {
                match &r.memory {
                    Ok(m) => {
                        let _ = writeln!(
                            s,
                            "| {} | {} / {} | {} | {} | {} | {} | {:.1} KiB | {} | {:.1} s |",
                            i + 1,
                            m.opened,
                            m.wanted,
                            m.still_open,
                            fmt_mib(m.rss_before_kib),
                            fmt_mib(m.rss_idle_kib),
                            fmt_mib(m.hwm_kib),
                            m.bytes_per_connection() / 1024.0,
                            fmt_mib(m.rss_after_close_kib),
                            m.open_secs
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(
                            s,
                            "| {} | failed: {} | | | | | | | |",
                            i + 1,
                            e.replace('|', "/")
                        );
                    }
                }
            }
            if let Some(mib) = self.memory_median(|m| m.rss_idle_kib as f64 / 1024.0) {
                let _ = writeln!(s, "| **median** | | | | **{mib:.1} MiB** | | | | |");
            }
            s.push('\n');
        }
        if self.settings.includes('f') {
            self.write_translation(s, markdown_headings);
        }
        if self.settings.includes('g') {
            self.write_governance(s, markdown_headings);
        }
        if self.settings.includes('h') {
            self.write_guardrails(s, markdown_headings);
        }
        if self.settings.includes('i') {
            self.write_observability(s, markdown_headings);
        }
    }

    /// An *added* latency cell: the median over runs of `f` through `t` minus `f` direct (`—`
    /// for the direct target itself).
    fn added_cell(&self, sc: Scenario, t: Target, f: fn(&Sample) -> Option<f64>) -> String {
        if t == Target::Direct {
            "—".to_owned()
        } else {
            opt(self.added(sc, t, f), fmt_added)
        }
    }

    /// Scenario f: pass-through vs translated through one gateway, and the mock alone in both
    /// formats.
    fn write_translation(&self, s: &mut String, markdown_headings: bool) {
        let st = &self.settings;

        let sc = Scenario::Translation;
        heading(
            s,
            markdown_headings,
            &format!(
                "f. Translation: closed loop, {} connections, non-streaming; `{}` passed through vs `{}` translated to the mock's Anthropic Messages API, one gateway",
                st.connections,
                crate::loadgen::MODEL,
                crate::loadgen::TRANSLATED_MODEL
            ),
        );
        let _ = writeln!(s, "| target | req/s | vs pass-through (per-run median) | p50 | p99 | proxy CPU | proxy CPU / request | mock CPU / request | client CPU | response bytes | errors |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for t in sc.targets() {
            let ratio = median(self.per_run_ratios(sc, t, Target::PassThrough, metric::rps));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                t.label(),
                opt(self.median_of(sc, t, metric::rps), |v| format!("{v:.0}")),
                opt(ratio, |v| format!("{v:.2}")),
                opt(self.median_of(sc, t, metric::p50), fmt_us),
                opt(self.median_of(sc, t, metric::p99), fmt_us),
                opt(self.median_of(sc, t, metric::proxy_cpu), fmt_pct),
                opt(self.median_of(sc, t, metric::cpu_per_request), fmt_cpu_us),
                opt(
                    self.median_of(sc, t, metric::mock_cpu_per_request),
                    fmt_cpu_us
                ),
                opt(self.median_of(sc, t, metric::client_cpu), fmt_pct),
                opt(self.median_of(sc, t, metric::bytes_per_response), |v| {
                    format!("{v:.0}")
                }),
                self.errors_cell(sc, t)
            );
        }
        s.push('\n');
        let direct_ratio =
            median(self.per_run_ratios(sc, Target::DirectAnthropic, Target::Direct, metric::rps));
        let mock_ratio = median(self.per_run_ratios(
            sc,
            Target::DirectAnthropic,
            Target::Direct,
            metric::mock_cpu_per_request,
        ));
        let _ = writeln!(
            s,
            "- The ratio includes the mock: it answers the Anthropic format more slowly than the OpenAI one (direct, Anthropic / OpenAI req/s: {}; mock CPU per request: {} as much). Both proxied loads share CPU {} with the mock and the load generator, so whichever side saturates first sets the pace. *Proxy CPU / request* is the cleaner measure of what translation costs the gateway; its ratio is in the goals table.",
            opt(direct_ratio, |v| format!("{v:.2}")),
            opt(mock_ratio, |v| format!("{v:.2}×")),
            st.client_cpu
        );
        let _ = writeln!(
            s,
            "- Direct Anthropic load sends the exact body the gateway sends upstream for the load generator's default chat body (`loadgen::ANTHROPIC_BODY`), with `x-api-key` and `anthropic-version`.\n"
        );

        let sc = Scenario::TranslationStreaming;
        heading(
            s,
            markdown_headings,
            &format!(
                "f. Translation, streaming: {} concurrent streams, {} chunks {} apart (informational, no goal)",
                st.stream_connections,
                st.mock_chunks,
                fmt_duration(st.mock_chunk_delay)
            ),
        );
        let _ = writeln!(s, "| target | streams/s | vs pass-through (per-run median) | TTFT p50 | TTFT p99 | stream p50 | content events / stream | proxy CPU | proxy CPU / stream | mock CPU / stream | errors |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|---|");
        for t in sc.targets() {
            let ratio = median(self.per_run_ratios(sc, t, Target::PassThrough, metric::rps));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                t.label(),
                opt(self.median_of(sc, t, metric::rps), |v| format!("{v:.0}")),
                opt(ratio, |v| format!("{v:.2}")),
                opt(self.median_of(sc, t, metric::ttft_p50), fmt_us),
                opt(self.median_of(sc, t, metric::ttft_p99), fmt_us),
                opt(self.median_of(sc, t, metric::p50), fmt_us),
                opt(self.median_of(sc, t, metric::events_per_stream), |v| {
                    format!("{v:.2}")
                }),
                opt(self.median_of(sc, t, metric::proxy_cpu), fmt_pct),
                opt(self.median_of(sc, t, metric::cpu_per_request), fmt_cpu_us),
                opt(
                    self.median_of(sc, t, metric::mock_cpu_per_request),
                    fmt_cpu_us
                ),
                self.errors_cell(sc, t)
            );
        }
        s.push('\n');
        let _ = writeln!(
            s,
            "- Streams/s is paced by the mock's chunk delay ({} chunks {} apart), not by the proxy, so its ratio stays near 1 whatever translation costs; compare *proxy CPU / stream*.",
            st.mock_chunks,
            fmt_duration(st.mock_chunk_delay)
        );
        let _ = writeln!(
            s,
            "- Not measured: streams straight to the mock in Anthropic format. The load generator decodes OpenAI streams only (a stream must end with `data: [DONE]`, which Anthropic's never sends), so every such stream would count as a protocol error.\n"
        );
    }

    /// The closed-loop table of a scenario that compares a gateway with something switched on
    /// against a baseline gateway of the same run (g, h and i), under the heading `title`: a
    /// row per target of `sc`, named by `label`, with its req/s over `base`'s (median of
    /// per-run ratios), latency, CPU and errors. The scenario's notes are the caller's.
    fn write_against_baseline_table(
        &self,
        s: &mut String,
        markdown_headings: bool,
        title: &str,
        (sc, base): (Scenario, Target),
        label: impl Fn(Target) -> &'static str,
    ) {
        heading(s, markdown_headings, title);
        let _ = writeln!(
            s,
            "| target | req/s | vs {} (per-run median) | p50 | p99 | proxy CPU | proxy CPU / request | client CPU | errors |",
            base.slug()
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
        for t in sc.targets() {
            let ratio = median(self.per_run_ratios(sc, t, base, metric::rps));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                label(t),
                opt(self.median_of(sc, t, metric::rps), |v| format!("{v:.0}")),
                opt(ratio, |v| format!("{v:.2}")),
                opt(self.median_of(sc, t, metric::p50), fmt_us),
                opt(self.median_of(sc, t, metric::p99), fmt_us),
                opt(self.median_of(sc, t, metric::proxy_cpu), fmt_pct),
                opt(self.median_of(sc, t, metric::cpu_per_request), fmt_cpu_us),
                opt(self.median_of(sc, t, metric::client_cpu), fmt_pct),
                self.errors_cell(sc, t)
            );
        }
        s.push('\n');
    }

    /// Scenario g: a plain and a governed gateway under the same closed-loop load, and the
    /// mock alone.
    fn write_governance(&self, s: &mut String, markdown_headings: bool) {
        let st = &self.settings;
        self.write_against_baseline_table(
            s,
            markdown_headings,
            &format!(
                "g. Governance: closed loop, {} connections, non-streaming; a plain gateway vs one enforcing a key and a team with budget, RPM and TPM limits",
                st.connections
            ),
            (Scenario::Governance, Target::Plain),
            Target::label,
        );
        let _ = writeln!(
            s,
            "- Both gateways are fresh processes of the same run, pinned to CPU {}, measured back to back in rotating order; the plain one has scenario a's configuration. Both write a usage record per request. The limits are far above what the load can reach, so nothing is refused: the difference is the cost of checking limits, reserving and settling budgets and pricing each request.",
            st.proxy_cpu
        );
        let _ = writeln!(
            s,
            "- The governed gateway's store (a fresh directory per run, removed after it) held {} once the gateway stopped (median over runs).\n",
            opt(self.governance_store_median(), |b| fmt_mib((b / 1024.0) as u64))
        );
    }

    /// Scenario h: a plain and a guarded gateway under the closed-loop and the streaming load,
    /// every request carrying the same chat body but for a numbered order number, and the mock
    /// alone; then the streaming load through two more such gateways to a mock paced like a
    /// hosted model, and that mock alone.
    fn write_guardrails(&self, s: &mut String, markdown_headings: bool) {
        let st = &self.settings;
        let label = |t: Target| match t {
            Target::Plain => "Tollgate plain (no guardrails)",
            other => other.label(),
        };
        let body_bytes = crate::guardrails::chat_body(false).len();

        self.write_against_baseline_table(
            s,
            markdown_headings,
            &format!(
                "h. Guardrails: closed loop, {} connections, non-streaming; a plain gateway vs one scanning every prompt and answer with the default guardrails profile, {body_bytes}-byte chat body",
                st.connections
            ),
            (Scenario::Guardrails, Target::Plain),
            label,
        );

        self.write_guardrails_streams(
            s,
            markdown_headings,
            &format!(
                "h. Guardrails, streaming: {} concurrent streams, {} chunks {} apart, same chat body with `\"stream\": true`",
                st.stream_connections,
                st.mock_chunks,
                fmt_duration(st.mock_chunk_delay)
            ),
            Scenario::GuardrailsStreaming,
            label,
        );
        let _ = writeln!(
            s,
            "- Both gateways are fresh processes of the same run, pinned to CPU {}, measured back to back in rotating order; the plain one has scenario a's configuration, the guarded one the same plus the default guardrails profile. Both write a usage record per request.",
            st.proxy_cpu
        );
        let _ = writeln!(
            s,
            "- The body (a support assistant's system prompt and a customer's message about a missing parcel, with an order number and dates) matches no rule, so every request is scanned and passed on: any refusal would show as an error. The system prompt repeats and is answered from the guarded gateway's memo of clean prompts after the first request; the user message carries a new order number every time and is scanned in full. The guarded gateway also scans every answer; in streams it may hold text that could still be part of a match back for a later event, which is what the TTFT ratio would show.\n"
        );

        let paced = &st.paced_mock;
        self.write_guardrails_streams(
            s,
            markdown_headings,
            &format!(
                "h. Guardrails, streaming against a paced upstream: {} concurrent streams, {} chunks, the first {} after the request and the rest {} apart, same chat body with `\"stream\": true` (informational, no goal)",
                st.stream_connections,
                paced.chunks,
                fmt_duration(paced.ttft),
                fmt_duration(paced.chunk_delay)
            ),
            Scenario::GuardrailsStreamingPaced,
            label,
        );
        let _ = writeln!(
            s,
            "- After h's other loads, a second mock process, pinned to CPU {} beside the first, paces its streams like a hosted small model: first token after {}, then a chunk every {}. Two more fresh gateways, plain and guarded, with the two configurations above but `base_url` pointing at that mock, are measured back to back with it in rotating order, under the same streaming load and body.",
            st.client_cpu,
            fmt_duration(paced.ttft),
            fmt_duration(paced.chunk_delay)
        );
        let _ = writeln!(
            s,
            "- The guarded gateway still holds the word in progress at the end of an event (it may be the start of an e-mail address to mask) until the next one, so its first token comes about one chunk interval ({}) later here too. Against the bench mock, which sends its first token at once, that interval is almost all of the guarded gateway's TTFT; against a hosted model's pacing, a small part of it. Informational: the TTFT goal stays judged against the bench mock, above.\n",
            fmt_duration(paced.chunk_delay)
        );
    }

    /// One of scenario h's streaming tables, under the heading `title`: a row per target of
    /// `sc`, named by `label`, with its TTFT and its TTFT p50 over the plain gateway's (median of
    /// per-run ratios), stream latency, content events, CPU and errors. The notes are the
    /// caller's.
    fn write_guardrails_streams(
        &self,
        s: &mut String,
        markdown_headings: bool,
        title: &str,
        sc: Scenario,
        label: impl Fn(Target) -> &'static str,
    ) {
        heading(s, markdown_headings, title);
        let _ = writeln!(s, "| target | streams/s | TTFT p50 | TTFT p99 | TTFT p50 vs plain (per-run median) | stream p50 | content events / stream | proxy CPU | proxy CPU / stream | errors |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|---|");
        for t in sc.targets() {
            let ratio = median(self.per_run_ratios(sc, t, Target::Plain, metric::ttft_p50));
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                label(t),
                opt(self.median_of(sc, t, metric::rps), |v| format!("{v:.0}")),
                opt(self.median_of(sc, t, metric::ttft_p50), fmt_us),
                opt(self.median_of(sc, t, metric::ttft_p99), fmt_us),
                opt(ratio, |v| format!("{v:.2}")),
                opt(self.median_of(sc, t, metric::p50), fmt_us),
                opt(self.median_of(sc, t, metric::events_per_stream), |v| {
                    format!("{v:.2}")
                }),
                opt(self.median_of(sc, t, metric::proxy_cpu), fmt_pct),
                opt(self.median_of(sc, t, metric::cpu_per_request), fmt_cpu_us),
                self.errors_cell(sc, t)
            );
        }
        s.push('\n');
    }

    /// Scenario i: a quiet and an observed gateway under the same closed-loop load, the mock
    /// alone, and what the observed gateway's access log held.
    fn write_observability(&self, s: &mut String, markdown_headings: bool) {
        let st = &self.settings;
        self.write_against_baseline_table(
            s,
            markdown_headings,
            &format!(
                "i. Observability: closed loop, {} connections, non-streaming; a quiet gateway (no metrics, no access log) vs one counting metrics and writing the JSON access log to a file",
                st.connections
            ),
            (Scenario::Observability, Target::Quiet),
            Target::label,
        );
        let _ = writeln!(
            s,
            "- Both gateways are fresh processes of the same run, pinned to CPU {}, measured back to back in rotating order, with scenario a's configuration plus two lines in `[server]`: the quiet one `metrics = false` and `access_log = \"off\"`, the observed one `metrics = true` and `access_log` naming a file in the scratch directory. Both write a usage record per request. The difference is the cost of counting every request in the worker's metrics and of handing each request's access log entry to the log's writer thread, which formats and appends it off the request path (on the same CPU here, as the gateway is pinned).",
            st.proxy_cpu
        );
        let (lines, bytes, per_request) = self.access_log_medians();
        let _ = writeln!(
            s,
            "- The observed gateway's access log (a fresh file per run, removed once counted) held {} lines ({}) once the gateway stopped, {} lines per request it answered, warm-up included (medians over runs). After each run the runner checks that the log holds one JSON line per request answered (within {:.0}%; the log drops an entry rather than wait when its queue is full), that `GET /metrics` answers 404 on the quiet gateway and 200 on the observed one, and that the quiet gateway wrote no access log entry to stdout or stderr and nothing in its own (initially empty) working directory; anything else is listed under Problems.\n",
            opt(lines, |v| format!("{v:.0}")),
            opt(bytes, |b| fmt_mib((b / 1024.0) as u64)),
            opt(per_request, |v| format!("{v:.3}")),
            ACCESS_LOG_TOLERANCE * 100.0
        );
    }

    fn write_raw(&self, s: &mut String) {
        let _ = writeln!(s, "## Raw per-run numbers\n");
        let _ = writeln!(
            s,
            "<details><summary>Every measurement ({} runs)</summary>\n",
            self.runs.len()
        );
        let _ = writeln!(s, "| run | scenario | target | requests | ok | errors | req/s | p50 | p90 | p99 | p99.9 | max | TTFT p50 | TTFT p99 | events/stream | body bytes/response | proxy CPU | client CPU | mock CPU | foreign CPU |");
        let _ = writeln!(
            s,
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for (i, r) in self.runs.iter().enumerate() {
            for ((sc, t), o) in &r.load {
                match o {
                    Ok(x) => {
                        let rep: &Report = &x.report;
                        let errors = if rep.errors.total == 0 {
                            "0".to_owned()
                        } else {
                            format!("{} ({})", rep.errors.total, rep.errors.describe())
                        };
                        let _ = writeln!(
                            s,
                            "| {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                            i + 1,
                            sc.slug(),
                            t.slug(),
                            rep.requests,
                            rep.ok,
                            errors,
                            rep.requests_per_sec,
                            fmt_us(rep.latency.p50_us as f64),
                            fmt_us(rep.latency.p90_us as f64),
                            fmt_us(rep.latency.p99_us as f64),
                            fmt_us(rep.latency.p999_us as f64),
                            fmt_us(rep.latency.max_us as f64),
                            opt(rep.ttft.as_ref().map(|l| l.p50_us as f64), fmt_us),
                            opt(rep.ttft.as_ref().map(|l| l.p99_us as f64), fmt_us),
                            opt(rep.events_per_stream(), |v| format!("{v:.2}")),
                            if rep.ok > 0 {
                                format!("{:.0}", rep.body_bytes as f64 / rep.ok as f64)
                            } else {
                                "—".to_owned()
                            },
                            opt(x.proxy_cpu, fmt_pct),
                            opt(x.client_cpu, fmt_pct),
                            opt(x.mock_cpu, fmt_pct),
                            opt(x.foreign_cpu, |v| format!("{v:.2}")),
                        );
                    }
                    Err(e) => {
                        let _ = writeln!(
                            s,
                            "| {} | {} | {} | failed: {} | | | | | | | | | | | | | | | | |",
                            i + 1,
                            sc.slug(),
                            t.slug(),
                            e.replace('|', "/")
                        );
                    }
                }
            }
        }
        let _ = writeln!(s, "\n</details>");
    }
}

// === helpers ===

/// One progress line for a finished measurement.
pub fn one_line(scenario: Scenario, outcome: &Outcome) -> String {
    match outcome {
        Err(e) => format!("FAILED: {e}"),
        Ok(x) => {
            let r = &x.report;
            let mut line = format!(
                "{:>8.0} req/s  p50 {:>9}  p99 {:>9}",
                r.requests_per_sec,
                fmt_us(r.latency.p50_us as f64),
                fmt_us(r.latency.p99_us as f64)
            );
            if scenario.is_stream() {
                if let Some(t) = &r.ttft {
                    let _ = write!(line, "  ttft p50 {}", fmt_us(t.p50_us as f64));
                }
            }
            if let Some(c) = x.proxy_cpu {
                let _ = write!(line, "  proxy cpu {}", fmt_pct(c));
            }
            match r.problem() {
                Some(p) => {
                    let _ = write!(line, "  PROBLEM: {p}");
                }
                None => line.push_str("  errors 0"),
            }
            line
        }
    }
}

/// Removes ANSI escape sequences (colored log output).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// WARN and ERROR lines of a tracing log, without timestamps, deduplicated (at most 10).
pub fn warnings(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in strip_ansi(log).lines() {
        let Some(pos) = line.find(" WARN ").or_else(|| line.find(" ERROR ")) else {
            continue;
        };
        let msg = line[pos..].trim().to_owned();
        if !out.contains(&msg) {
            out.push(msg);
        }
        if out.len() == 10 {
            break;
        }
    }
    out
}

/// error-level lines of an nginx error log, without timestamps, deduplicated (at most 10).
pub fn nginx_errors(log: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for line in log.lines() {
        let Some(pos) = ["[error]", "[crit]", "[alert]", "[emerg]"]
            .iter()
            .find_map(|level| line.find(level))
        else {
            continue;
        };
        // Drop the "pid#tid: *conn" counters so repeats collapse.
        let msg = line[pos..].to_owned();
        let msg = match msg.split_once(": ") {
            Some((level, rest)) if level.contains('#') => {
                let level = level.split(' ').next().unwrap_or(level);
                let rest = rest
                    .trim_start_matches(|c: char| c == '*' || c.is_ascii_digit())
                    .trim();
                format!("{level} {rest}")
            }
            _ => msg,
        };
        if !out.contains(&msg) {
            out.push(msg);
        }
        if out.len() == 10 {
            break;
        }
    }
    out
}

/// Median of some values (mean of the middle two for an even count).
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "—".into(), f)
}

/// Microseconds, readable: `85 µs`, `1.23 ms`, `2.50 s`.
pub fn fmt_us(us: f64) -> String {
    let a = us.abs();
    if a < 1_000.0 {
        format!("{us:.0} µs")
    } else if a < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

/// A signed added latency: `+12 µs`, `-3 µs`.
fn fmt_added(us: f64) -> String {
    if us >= 0.0 {
        format!("+{}", fmt_us(us))
    } else {
        fmt_us(us)
    }
}

/// CPU time per request or stream, to a tenth of a µs: `4.8 µs`.
fn fmt_cpu_us(us: f64) -> String {
    format!("{us:.1} µs")
}

fn fmt_pct(f: f64) -> String {
    format!("{:.0}%", f * 100.0)
}

/// Writes a section's title: a level-2 heading in RESULTS.md, a plain line in the summary.
fn heading(s: &mut String, markdown: bool, title: &str) {
    if markdown {
        let _ = writeln!(s, "## {title}\n");
    } else {
        let _ = writeln!(s, "{title}\n");
    }
}

fn fmt_mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0]), Some(3.0));
        assert_eq!(median(vec![5.0, 1.0, 3.0]), Some(3.0));
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn units() {
        assert_eq!(fmt_us(85.0), "85 µs");
        assert_eq!(fmt_us(1234.0), "1.23 ms");
        assert_eq!(fmt_added(12.0), "+12 µs");
        assert_eq!(fmt_added(-3.0), "-3 µs");
        assert_eq!(fmt_pct(0.5), "50%");
    }

    #[test]
    fn log_scraping() {
        let log = "\x1b[2m2026-11-21T14:00:00Z\x1b[0m \x1b[33m WARN\x1b[0m tollgate_engine::worker: accept failed\n\
                   2026-11-21T14:00:01Z  WARN tollgate_engine::worker: accept failed\n\
                   2026-11-21T14:00:01Z  INFO tollgate_engine: tollgate listening\n";
        let w = warnings(log);
        assert_eq!(
            w,
            vec!["WARN tollgate_engine::worker: accept failed".to_owned()]
        );
        let ngx = "2026/11/21 14:00:00 [error] 123#123: *45 upstream prematurely closed connection while reading upstream\n\
                   2026/11/21 14:00:01 [error] 123#123: *46 upstream prematurely closed connection while reading upstream\n\
                   2026/11/21 14:00:01 [notice] 123#123: signal process started\n";
        assert_eq!(
            nginx_errors(ngx),
            vec![
                "[error] upstream prematurely closed connection while reading upstream".to_owned()
            ]
        );
    }

    fn sample(rps: f64, proxy_cpu: f64) -> Sample {
        Sample {
            report: Report {
                driver: "io_uring".into(),
                warmup_requests: 100,
                requests: 1000,
                unsent: 0,
                ok: 1000,
                errors: crate::loadgen::Errors::default(),
                requests_per_sec: rps,
                body_bytes: 500_000,
                latency: crate::loadgen::Latency::default(),
                ttft: None,
                itl: None,
            },
            proxy_cpu: Some(proxy_cpu),
            client_cpu: Some(0.98),
            mock_cpu: Some(0.5),
            foreign_cpu: Some(0.0),
        }
    }

    fn results_with(runs: &[(f64, f64)]) -> Results {
        let settings = Settings {
            runs: runs.len(),
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            quick: false,
            idle_connections: 10_000,
            idle_goal_connections: 10_000,
            connections: 64,
            rate: 5_000,
            open_pool: 64,
            stream_connections: 16,
            mock_chunks: 16,
            mock_chunk_delay: Duration::from_millis(1),
            paced_mock: MockPacing {
                chunks: 16,
                ttft: Duration::from_millis(300),
                chunk_delay: Duration::from_millis(20),
            },
            proxy_cpu: 0,
            client_cpu: 1,
            only: None,
        };
        let machine = Machine {
            cpu_model: "test".into(),
            cpus: 2,
            memory: "1 GiB".into(),
            kernel: "test".into(),
            commit: "abc1234".into(),
        };
        let mut r = Results::new(
            settings,
            machine,
            Availability::Unavailable("test".into()),
            "test".into(),
            None,
            65_536,
        );
        for &(pass, translated) in runs {
            let mut run = RunResult::default();
            run.load.insert(
                (Scenario::Translation, Target::PassThrough),
                Ok(sample(pass, 0.97)),
            );
            run.load.insert(
                (Scenario::Translation, Target::Translated),
                Ok(sample(translated, 0.97)),
            );
            r.runs.push(run);
        }
        r
    }

    #[test]
    fn translation_goal_uses_per_run_ratios() {
        // Per run 0.90, 0.80, 0.86: median 0.86, met by 0.010.
        let r = results_with(&[
            (50_000.0, 45_000.0),
            (60_000.0, 48_000.0),
            (50_000.0, 43_000.0),
        ]);
        let goals = r.translation_goals();
        let g = &goals[0];
        assert!(g.value.starts_with("0.860 "), "{}", g.value);
        assert!(
            g.value.contains("per run 0.900, 0.800, 0.860"),
            "{}",
            g.value
        );
        match &g.verdict {
            Verdict::Met(m) => assert!(m.starts_with("by 0.010"), "{m}"),
            other => panic!("{other:?}"),
        }
        // Same proxy CPU share: CPU per request scales with 1/rps, so the proxy-bound ratio
        // equals the req/s ratio.
        assert!(goals[1]
            .value
            .contains("ratio if the proxy alone set the pace: 0.86"));

        let r = results_with(&[(50_000.0, 40_000.0)]);
        match &r.translation_goals()[0].verdict {
            Verdict::Missed(m) => {
                assert!(m.starts_with("by 0.050 (needs ≥ 42500 req/s"), "{m}")
            }
            other => panic!("{other:?}"),
        }

        let r = results_with(&[]);
        assert!(matches!(
            r.translation_goals()[0].verdict,
            Verdict::NotEvaluated(_)
        ));
    }

    #[test]
    fn governance_goal_and_partial_runs() {
        // Per run governed / plain: 0.95, 0.85, 0.92 -> median 0.92, met by 0.020.
        let mut r = results_with(&[]);
        r.settings.only = Some("g".into());
        for (i, &(plain, governed)) in [
            (50_000.0, 47_500.0),
            (60_000.0, 51_000.0),
            (50_000.0, 46_000.0),
        ]
        .iter()
        .enumerate()
        {
            let mut run = RunResult::default();
            run.load.insert(
                (Scenario::Governance, Target::Plain),
                Ok(sample(plain, 0.97)),
            );
            run.load.insert(
                (Scenario::Governance, Target::Governed),
                Ok(sample(governed, 0.97)),
            );
            run.governance_store_bytes = Some(if i == 1 { 0 } else { 4096 });
            run.governance_plain_cwd_bytes = Some(if i == 2 { 2 * 1024 * 1024 } else { 0 });
            r.runs.push(run);
        }
        let goals = r.goals();
        // Only g's goals and the clean-runs line: nothing about a–f.
        let names: Vec<&str> = goals.iter().map(|g| g.scenario).collect();
        assert_eq!(names, ["g. governance", "g. governance", "all"]);
        assert!(goals[0].value.starts_with("0.920 "), "{}", goals[0].value);
        assert!(goals[0].value.contains("per run 0.950, 0.850, 0.920"));
        match &goals[0].verdict {
            Verdict::Met(m) => assert!(m.starts_with("by 0.020"), "{m}"),
            other => panic!("{other:?}"),
        }
        // The memory scenario was not selected, so its absence is no problem; an empty governed
        // store is, and so is a plain gateway that wrote a store of its own.
        assert_eq!(
            r.problems(),
            vec![
                "run 2, governance: the governed gateway left its store directory empty (was the usage ledger written?)".to_owned(),
                "run 3, governance: the plain gateway wrote 2.0 MiB in its working directory, outside the store its config names".to_owned(),
            ]
        );
        let md = r.render_markdown();
        assert!(md.contains("## g. Governance"));
        assert!(!md.contains("## a. Throughput"));
        assert!(!md.contains("## e. Memory"));
        assert!(!md.contains("## f. Translation"));
        assert!(md.contains("`--only g`"));

        let r = results_with(&[(50_000.0, 40_000.0)]);
        match &r.governance_goals()[0].verdict {
            Verdict::NotEvaluated(_) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn observability_goal_and_checks() {
        // Per run observed / quiet: 0.98, 0.93, 0.96 -> median 0.96, met by 0.010.
        let mut r = results_with(&[]);
        r.settings.only = Some("i".into());
        let log = |lines: u64, first_is_entry: bool| {
            Some(Ok(AccessLogContents {
                lines,
                bytes: lines * 330,
                first_is_entry,
            }))
        };
        // Every observed load answers 1000 measured and 100 warm-up requests.
        let checks = [
            // All as it should be: one line per request, 1% off at most.
            ObservabilityChecks {
                access_log: log(1_090, true),
                quiet_access_lines: Some(0),
                quiet_cwd_bytes: Some(0),
                quiet_metrics: Some(Ok(404)),
                observed_metrics: Some(Ok(200)),
            },
            // An empty log, a quiet gateway that logged and counted anyway.
            ObservabilityChecks {
                access_log: log(0, false),
                quiet_access_lines: Some(12),
                quiet_cwd_bytes: Some(4_000),
                quiet_metrics: Some(Ok(200)),
                observed_metrics: Some(Ok(200)),
            },
            // Lines missing, something else first, and /metrics not answering.
            ObservabilityChecks {
                access_log: log(1_000, false),
                quiet_access_lines: Some(0),
                quiet_cwd_bytes: Some(0),
                quiet_metrics: Some(Ok(404)),
                observed_metrics: Some(Err("GET /metrics: connection refused".into())),
            },
        ];
        for ((quiet, observed), checks) in [
            (50_000.0, 49_000.0),
            (60_000.0, 55_800.0),
            (50_000.0, 48_000.0),
        ]
        .into_iter()
        .zip(checks)
        {
            let mut run = RunResult::default();
            let sc = Scenario::Observability;
            run.load
                .insert((sc, Target::Direct), Ok(sample(70_000.0, 0.0)));
            run.load
                .insert((sc, Target::Quiet), Ok(sample(quiet, 0.97)));
            run.load
                .insert((sc, Target::Observed), Ok(sample(observed, 0.97)));
            run.observability = Some(checks);
            r.runs.push(run);
        }
        let goals = r.goals();
        let names: Vec<&str> = goals.iter().map(|g| g.scenario).collect();
        assert_eq!(names, ["i. observability", "i. observability", "all"]);
        assert_eq!(
            goals[0].metric,
            "req/s observed / quiet, 64 conns, same run"
        );
        assert_eq!(goals[0].goal, "≥ 0.95");
        assert!(goals[0].value.starts_with("0.960 "), "{}", goals[0].value);
        assert!(goals[0].value.contains("per run 0.980, 0.930, 0.960"));
        match &goals[0].verdict {
            Verdict::Met(m) => assert!(m.starts_with("by 0.010"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(goals[1].metric, "proxy CPU / request, observed vs quiet");
        assert!(matches!(goals[1].verdict, Verdict::Info));
        assert!(goals[1]
            .value
            .contains("ratio if the proxy alone set the pace: 0.96"));

        assert_eq!(
            r.problems(),
            vec![
                "run 2, observability: the observed gateway left its access log empty (was server.access_log honoured?)".to_owned(),
                "run 2, observability: the quiet gateway wrote 12 access log entries to stdout or stderr (its access_log is \"off\")".to_owned(),
                "run 2, observability: the quiet gateway wrote 4000 bytes in its working directory (its access_log is \"off\", its store elsewhere)".to_owned(),
                "run 2, observability: GET /metrics on the quiet gateway answered 200, expected 404 (server.metrics = false)".to_owned(),
                "run 3, observability: the observed gateway's access log does not start with a JSON entry".to_owned(),
                "run 3, observability: the observed gateway's access log holds 1000 lines for 1100 requests answered (warm-up included); expected one per request, within 1%".to_owned(),
                "run 3, observability: the observed gateway did not answer: GET /metrics: connection refused".to_owned(),
            ]
        );

        let md = r.render_markdown();
        assert!(md.contains(
            "## i. Observability: closed loop, 64 connections, non-streaming; a quiet gateway"
        ));
        assert!(md.contains("| Tollgate quiet (no metrics, no access log) |"));
        assert!(md.contains("| Tollgate observed (metrics, JSON access log to a file) |"));
        assert!(md.contains("- Observability (i): "));
        // Medians over runs: 1090, 0, 1000 lines; 1090/1100, 0, 1000/1100 per request.
        assert!(
            md.contains(
                "held 1000 lines (0.3 MiB) once the gateway stopped, 0.909 lines per request"
            ),
            "{md}"
        );
        assert!(!md.contains("## h. Guardrails"));
        assert!(!md.contains("## a. Throughput"));
        assert!(md.contains("`--only i`"));

        // Without a load to count against, only an empty log is judged; a gateway that did not
        // start is not checked.
        let checks = ObservabilityChecks {
            access_log: log(5, true),
            ..Default::default()
        };
        assert!(checks.problems(None).is_empty());
        assert_eq!(
            checks.problems(Some(1_000)).len(),
            1,
            "5 lines for 1000 requests"
        );
        assert!(ObservabilityChecks::default()
            .problems(Some(1_000))
            .is_empty());
        let checks = ObservabilityChecks {
            access_log: Some(Err("reading /tmp/x: permission denied".into())),
            ..Default::default()
        };
        assert_eq!(
            checks.problems(None),
            ["could not read the observed gateway's access log: reading /tmp/x: permission denied"]
        );

        // No run measured both gateways: not evaluated.
        let r = results_with(&[(50_000.0, 40_000.0)]);
        assert!(matches!(
            r.observability_goals()[0].verdict,
            Verdict::NotEvaluated(_)
        ));
    }

    /// A streaming sample: TTFT p50 of `ttft_us`, `events` content events per stream.
    fn stream_sample(ttft_us: u64, events: u64) -> Sample {
        let mut x = sample(1_000.0, 0.5);
        x.report.ttft = Some(crate::loadgen::Latency {
            count: 1000,
            p50_us: ttft_us,
            ..Default::default()
        });
        x.report.itl = Some(crate::loadgen::Latency {
            count: 1000 * (events - 1),
            ..Default::default()
        });
        x
    }

    #[test]
    fn guardrails_goals_and_problems() {
        // Per run guarded / plain req/s: 0.95, 0.85, 0.92 -> median 0.92, met by 0.020.
        // TTFT p50 guarded / plain: 1.05, 1.20, 1.08 -> median 1.08, met by 0.020.
        let mut r = results_with(&[]);
        r.settings.only = Some("h".into());
        for (i, &((plain, guarded), (plain_ttft, guarded_ttft))) in [
            ((50_000.0, 47_500.0), (400, 420)),
            ((60_000.0, 51_000.0), (500, 600)),
            ((50_000.0, 46_000.0), (400, 432)),
        ]
        .iter()
        .enumerate()
        {
            let mut run = RunResult::default();
            let sc = Scenario::Guardrails;
            run.load
                .insert((sc, Target::Direct), Ok(sample(70_000.0, 0.0)));
            run.load
                .insert((sc, Target::Plain), Ok(sample(plain, 0.97)));
            let mut g = sample(guarded, 0.97);
            if i == 0 {
                // A refused request: the body must pass the profile.
                g.report.ok -= 3;
                g.report.errors.total = 3;
                g.report.errors.status.insert("400".into(), 3);
            }
            run.load.insert((sc, Target::Guarded), Ok(g));
            let st = Scenario::GuardrailsStreaming;
            run.load
                .insert((st, Target::Direct), Ok(stream_sample(300, 16)));
            // Run 2's plain gateway lost events: a problem. The guarded one may hold text
            // back for later events: shown, not judged.
            let plain_events = if i == 1 { 15 } else { 16 };
            run.load.insert(
                (st, Target::Plain),
                Ok(stream_sample(plain_ttft, plain_events)),
            );
            run.load
                .insert((st, Target::Guarded), Ok(stream_sample(guarded_ttft, 12)));
            r.runs.push(run);
        }
        let goals = r.goals();
        let names: Vec<&str> = goals.iter().map(|g| g.scenario).collect();
        assert_eq!(
            names,
            [
                "h. guardrails",
                "h. guardrails",
                "h. guardrails, streaming",
                "h. guardrails, streaming, paced upstream",
                "all"
            ]
        );
        assert_eq!(goals[0].metric, "req/s guarded / plain, 64 conns, same run");
        assert_eq!(goals[0].goal, "≥ 0.90");
        assert!(goals[0].value.starts_with("0.920 "), "{}", goals[0].value);
        assert!(goals[0].value.contains("per run 0.950, 0.850, 0.920"));
        match &goals[0].verdict {
            Verdict::Met(m) => assert!(m.starts_with("by 0.020"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(goals[1].verdict, Verdict::Info));
        assert!(goals[1]
            .value
            .contains("ratio if the proxy alone set the pace: 0.92"));
        assert_eq!(goals[2].goal, "≤ 1.10");
        assert_eq!(
            goals[2].value,
            "1.080 (432 µs vs 400 µs; per run 1.050, 1.200, 1.080)"
        );
        match &goals[2].verdict {
            Verdict::Met(m) => assert_eq!(m, "by 0.020 (≈ 8 µs to spare)"),
            other => panic!("{other:?}"),
        }
        // The paced load did not run: its row is there, empty.
        assert_eq!(goals[3].value, "—");
        assert!(matches!(goals[3].verdict, Verdict::Info));
        assert_eq!(
            r.problems(),
            vec![
                "run 1, guardrails, guarded: 3 of 1000 requests failed (status 400: 3)".to_owned(),
                "run 2, guardrails-stream, plain: 15.00 content events per stream, direct had 16.00 (chunks lost or merged)".to_owned(),
            ]
        );
        let md = r.render_markdown();
        assert!(md.contains("## h. Guardrails: closed loop, 64 connections"));
        assert!(md.contains("## h. Guardrails, streaming: 16 concurrent streams"));
        assert!(md.contains("| Tollgate plain (no guardrails) |"));
        assert!(md.contains("- Guardrails (h): "));
        assert!(!md.contains("## g. Governance"));
        assert!(!md.contains("## a. Throughput"));
        assert!(md.contains("`--only h`"));

        // One run over the TTFT goal, and one where the guarded gateway failed.
        let mut r = results_with(&[]);
        let mut run = RunResult::default();
        let st = Scenario::GuardrailsStreaming;
        run.load
            .insert((st, Target::Plain), Ok(stream_sample(400, 16)));
        run.load
            .insert((st, Target::Guarded), Ok(stream_sample(480, 16)));
        r.runs.push(run);
        let mut run = RunResult::default();
        run.load
            .insert((st, Target::Plain), Ok(stream_sample(400, 16)));
        run.load
            .insert((st, Target::Guarded), Err("gateway did not start".into()));
        r.runs.push(run);
        let goals = r.guardrails_goals();
        assert!(matches!(goals[0].verdict, Verdict::NotEvaluated(_)));
        assert!(
            goals[2].value.contains("per run 1.200)"),
            "{}",
            goals[2].value
        );
        match &goals[2].verdict {
            Verdict::Missed(m) => assert_eq!(m, "by 0.100 (needs ≤ 440 µs, ≈ 40 µs over)"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn guardrails_paced_row_and_table() {
        // TTFT p50 guarded / plain per run: 1.067, 1.070, 1.065 -> median 1.067.
        let mut r = results_with(&[]);
        r.settings.only = Some("h".into());
        let sc = Scenario::GuardrailsStreamingPaced;
        for (i, &(plain, guarded)) in [(300_000, 320_000), (302_100, 323_300), (310_000, 330_000)]
            .iter()
            .enumerate()
        {
            let mut run = RunResult::default();
            run.load
                .insert((sc, Target::Direct), Ok(stream_sample(300_050, 16)));
            // Run 2's plain gateway lost events: a problem. The guarded one's count is shown,
            // not judged, as in h's other streams.
            let plain_events = if i == 1 { 15 } else { 16 };
            run.load
                .insert((sc, Target::Plain), Ok(stream_sample(plain, plain_events)));
            run.load
                .insert((sc, Target::Guarded), Ok(stream_sample(guarded, 12)));
            r.runs.push(run);
        }
        let goals = r.guardrails_goals();
        let paced = goals.last().unwrap();
        assert_eq!(paced.scenario, "h. guardrails, streaming, paced upstream");
        assert_eq!(paced.metric, "TTFT p50 guarded / plain");
        assert_eq!(paced.goal, "—");
        assert_eq!(
            paced.value,
            "1.067 (323.30 ms vs 302.10 ms; per run 1.067, 1.070, 1.065)"
        );
        assert!(matches!(paced.verdict, Verdict::Info));
        // h's TTFT goal is judged against the bench mock only.
        assert!(matches!(goals[2].verdict, Verdict::NotEvaluated(_)));
        assert_eq!(
            r.problems(),
            vec!["run 2, guardrails-paced, plain: 15.00 content events per stream, direct had 16.00 (chunks lost or merged)".to_owned()]
        );

        let md = r.render_markdown();
        assert!(md.contains(
            "| h. guardrails, streaming, paced upstream | TTFT p50 guarded / plain | — | 1.067 (323.30 ms vs 302.10 ms; per run 1.067, 1.070, 1.065) | informational |\n"
        ));
        let heading = "h. Guardrails, streaming against a paced upstream: 16 concurrent streams, 16 chunks, the first 300ms after the request and the rest 20ms apart, same chat body with `\"stream\": true` (informational, no goal)";
        let table = format!(
            "## {heading}\n\n\
             | target | streams/s | TTFT p50 | TTFT p99 | TTFT p50 vs plain (per-run median) | stream p50 | content events / stream | proxy CPU | proxy CPU / stream | errors |\n\
             |---|---|---|---|---|---|---|---|---|---|\n\
             | direct to mock | 1000 | 300.05 ms | 0 µs | 0.99 | 0 µs | 16.00 | 50% | 500.0 µs | 0 |\n\
             | Tollgate plain (no guardrails) | 1000 | 302.10 ms | 0 µs | 1.00 | 0 µs | 16.00 | 50% | 500.0 µs | 0 |\n\
             | Tollgate guarded (default guardrails profile) | 1000 | 323.30 ms | 0 µs | 1.07 | 0 µs | 12.00 | 50% | 500.0 µs | 0 |\n\n\
             - After h's other loads, a second mock process, pinned to CPU 1 beside the first, paces its streams like a hosted small model: first token after 300ms, then a chunk every 20ms."
        );
        assert!(md.contains(&table), "{md}");
        // After h's streaming table, before the problems.
        let at = |text: &str| md.find(text).unwrap();
        assert!(at("## h. Guardrails, streaming: ") < at(&table));
        assert!(at(&table) < at("## Problems"));
        assert!(r
            .render_summary()
            .contains(&format!("\n{heading}\n\n| target |")));
    }

    /// Three runs of every load scenario against every target, with numbers that differ by run,
    /// scenario and target, plus everything else a run records: a failed measurement, request
    /// errors, a failed memory run, g's store, i's checks, configs and commands. Only the
    /// renderers read it, so they can be compared with their output before a change. h's paced
    /// load is left out, so that adding it changed the fixtures by its own section and goal row
    /// only (its numbers: `guardrails_paced_row_and_table`).
    fn synthetic_results() -> Results {
        let mut r = results_with(&[]);
        r.date = "2026-01-02T03:04:05Z".into();
        r.nginx = Availability::Ready {
            bin: "/usr/sbin/nginx".into(),
            version: "nginx/1.24.0".into(),
        };
        r.load_at_start = Some([0.12, 0.34, 0.56]);
        r.load_at_end = Some([1.5, 0.75, 0.25]);
        r.busy_at_start = Some(0.03);
        r.settings.runs = 3;
        let scenarios: Vec<Scenario> = [
            &Scenario::LOAD[..],
            &Scenario::TRANSLATION,
            &Scenario::GOVERNANCE,
            &Scenario::GUARDRAILS,
            &Scenario::OBSERVABILITY,
        ]
        .concat();
        for run in 0..3u64 {
            let mut out = RunResult::default();
            for (i, &sc) in scenarios.iter().enumerate() {
                for (j, t) in sc.targets().into_iter().enumerate() {
                    let k = run * 37 + i as u64 * 11 + j as u64 * 5;
                    let mut x = sample(
                        30_000.0 + 997.0 * k as f64 - 3_000.0 * j as f64,
                        0.5 + (k % 9) as f64 * 0.05,
                    );
                    x.client_cpu = Some(0.6 + (k % 7) as f64 * 0.05);
                    x.mock_cpu = Some(0.3 + (k % 5) as f64 * 0.04);
                    x.foreign_cpu = Some((k % 4) as f64 * 0.01);
                    x.report.body_bytes = 400_000 + 1_013 * k;
                    x.report.latency = crate::loadgen::Latency {
                        count: 1000,
                        p50_us: 300 + 13 * k,
                        p90_us: 500 + 17 * k,
                        p99_us: 900 + 29 * k,
                        p999_us: 1_500 + 41 * k,
                        max_us: 4_000 + 97 * k,
                    };
                    if sc.is_stream() {
                        x.report.ttft = Some(crate::loadgen::Latency {
                            count: 1000,
                            p50_us: 200 + 7 * k,
                            p90_us: 300 + 11 * k,
                            p99_us: 600 + 19 * k,
                            p999_us: 900 + 23 * k,
                            max_us: 2_000 + 31 * k,
                        });
                        x.report.itl = Some(crate::loadgen::Latency {
                            count: 1000 * (15 - (k % 2)),
                            ..Default::default()
                        });
                    }
                    if run == 0 && t == Target::Guarded && !sc.is_stream() {
                        x.report.ok -= 3;
                        x.report.errors.total = 3;
                        x.report.errors.status.insert("400".into(), 3);
                    }
                    let outcome = if run == 1 && t == Target::Observed {
                        Err("tollgate-i-observed-run2 exited: signal 9".to_owned())
                    } else {
                        Ok(x)
                    };
                    out.load.insert((sc, t), outcome);
                }
            }
            out.memory = if run == 1 {
                Err("gateway did not start".into())
            } else {
                Ok(IdleReport {
                    wanted: 10_000,
                    opened: 10_000 - run as usize,
                    still_open: 10_000 - 2 * run as usize,
                    rss_before_kib: 9_000 + run,
                    rss_idle_kib: 80_000 + 1_000 * run,
                    hwm_kib: 85_000 + 1_000 * run,
                    rss_after_close_kib: 20_000 + run,
                    open_secs: 1.25 + run as f64,
                })
            };
            out.gateway_driver = Some(if run == 2 { "legacy" } else { "io_uring" }.into());
            out.gateway_warnings = vec![format!("WARN tollgate_engine: slow run {}", run + 1)];
            out.nginx_errors = vec!["[error] upstream timed out".into()];
            out.governance_store_bytes = Some([0, 123_456, 654_321][run as usize]);
            out.governance_plain_cwd_bytes = Some([0, 0, 2_048][run as usize]);
            out.observability = Some(ObservabilityChecks {
                access_log: Some(Ok(AccessLogContents {
                    lines: [1_100, 0, 1_000][run as usize],
                    bytes: [363_000, 0, 330_000][run as usize],
                    first_is_entry: run != 2,
                })),
                quiet_access_lines: Some(run),
                quiet_cwd_bytes: Some(0),
                quiet_metrics: Some(Ok(if run == 2 { 200 } else { 404 })),
                observed_metrics: Some(Ok(200)),
            });
            r.runs.push(out);
        }
        r.note_command("mock", "taskset -c 1 tollgate-mock --threads 1".into());
        r.note_command(
            "tollgate (scenario g, plain)",
            "taskset -c 0 tollgate serve --config tollgate-plain-run1.toml".into(),
        );
        r.note_loadgen_command(
            Scenario::Governance,
            Target::Plain,
            "taskset -c 1 tollgate-loadgen --connections 64".into(),
        );
        r.note_gateway_config("# plain\n[server]\nworkers = 1\n\n".into());
        r.note_translation_config("# translation\n".into());
        r.note_pair_config(Target::Governed, "# governed\n".into());
        r.note_pair_config(Target::Guarded, "# guarded\n".into());
        r.note_pair_config(Target::Quiet, "# quiet\n".into());
        r.note_pair_config(Target::Observed, "# observed\n".into());
        r.note_pair_config(Target::Plain, "# not recorded: a–d's came first\n".into());
        r
    }

    /// The report of [`synthetic_results`], word for word as it was before g's, h's and i's
    /// writers shared their code, plus (the only change since) h's paced-upstream section and
    /// goal row: people compare RESULTS.md across commits, so a refactor must not change a byte
    /// of it.
    #[test]
    fn rendering_is_unchanged() {
        let r = synthetic_results();
        let expect = |got: &str, want: &str, what: &str| {
            if got != want {
                let line = got
                    .lines()
                    .zip(want.lines())
                    .position(|(g, w)| g != w)
                    .unwrap_or(got.lines().count().min(want.lines().count()));
                panic!(
                    "{what} differs from line {}:\n got: {:?}\nwant: {:?}",
                    line + 1,
                    got.lines().nth(line),
                    want.lines().nth(line)
                );
            }
        };
        expect(
            &r.render_markdown(),
            include_str!("testdata/synthetic-results.md"),
            "RESULTS.md",
        );
        expect(
            &r.render_summary(),
            include_str!("testdata/synthetic-summary.txt"),
            "the summary",
        );

        // Nothing measured: every cell of g's, h's and i's tables and goals without a value.
        let mut r = results_with(&[]);
        r.date = "2026-01-02T03:04:05Z".into();
        r.settings.only = Some("g,h,i".into());
        expect(
            &r.render_markdown(),
            include_str!("testdata/unmeasured-ghi.md"),
            "RESULTS-ghi.md, nothing measured",
        );
    }

    #[test]
    fn pair_configs_go_to_their_scenario() {
        let mut r = results_with(&[]);
        r.note_pair_config(Target::Plain, "plain".into());
        r.note_pair_config(Target::Governed, "governed".into());
        r.note_pair_config(Target::Guarded, "guarded".into());
        r.note_pair_config(Target::Observed, "observed".into());
        r.note_pair_config(Target::Quiet, "quiet".into());
        // The first of each is kept.
        r.note_pair_config(Target::Plain, "plain 2".into());
        r.note_pair_config(Target::Governed, "governed 2".into());
        r.note_pair_config(Target::Observed, "observed 2".into());
        assert_eq!(r.gateway_config.as_deref(), Some("plain"));
        assert_eq!(r.governance_config.as_deref(), Some("governed"));
        assert_eq!(r.guardrails_config.as_deref(), Some("guarded"));
        assert_eq!(
            r.observability_configs,
            BTreeMap::from([
                (Target::Quiet, "quiet".to_owned()),
                (Target::Observed, "observed".to_owned())
            ])
        );
        assert_eq!(r.translation_config, None);
    }

    #[test]
    fn added_latency_verdicts() {
        let missing = || Verdict::NotEvaluated("x".into());
        let (v, verdict) = added_ratio(Some(10.0), Some(40.0), missing);
        assert!(v.starts_with("0.25"), "{v}");
        assert!(matches!(verdict, Verdict::Met(_)));
        let (_, verdict) = added_ratio(Some(30.0), Some(40.0), missing);
        match verdict {
            Verdict::Missed(m) => assert!(m.contains("needs ≤ 20 µs added, 10 µs less"), "{m}"),
            other => panic!("{other:?}"),
        }
        let (_, verdict) = added_ratio(Some(30.0), Some(-1.0), missing);
        assert!(matches!(verdict, Verdict::NotEvaluated(_)));
    }
}
