//! One measurement: a pinned `tollgate-loadgen` run against one target, its `--json` report
//! read back into [`Report`] (the fields of `LoadReport` this runner uses), plus the CPU the
//! proxy and the client core spent meanwhile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::procs::{self, Proc, Spawn};
use crate::BenchError;

/// The demo key every request carries (the gateway checks it; the mock and nginx ignore it).
pub const DEMO_KEY: &str = "sk-tollgate-demo";

/// The model every request asks for (scenario f: the pass-through model).
pub const MODEL: &str = "gpt-4o-mini";

/// Scenario f: the gateway model served by an Anthropic-format upstream (translated).
pub const TRANSLATED_MODEL: &str = "claude";

/// The API key of the gateway's Anthropic-format provider (the mock ignores it).
pub const ANTHROPIC_KEY: &str = "bench";

/// The Messages request Tollgate sends upstream for the load generator's default chat body
/// (captured from the gateway at commit 1de7cee, byte for byte), so that load sent straight to
/// the mock in Anthropic format asks it for the same work as translated load does.
pub const ANTHROPIC_BODY: &str = r#"{"max_tokens":64,"messages":[{"content":[{"text":"Write a haiku about load testing an AI gateway.","type":"text"}],"role":"user"}],"model":"claude","system":"You are a helpful assistant."}"#;

/// The subset of the load generator's `LoadReport` that the runner reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    /// monoio driver the load generator ran on.
    pub driver: String,
    /// Requests that finished during warm-up (any outcome; in no other figure). The target
    /// answered them too: scenario i counts them against the access log's lines.
    #[serde(default)]
    pub warmup_requests: u64,
    /// Measured requests that finished.
    pub requests: u64,
    /// Open loop: requests due in the window that were never sent (the target fell behind).
    #[serde(default)]
    pub unsent: u64,
    /// Measured requests that succeeded completely.
    pub ok: u64,
    /// Failures by kind.
    pub errors: Errors,
    /// Requests per second over the measured window.
    pub requests_per_sec: f64,
    /// Response body bytes of measured requests.
    pub body_bytes: u64,
    /// Latency of successful requests.
    pub latency: Latency,
    /// Streams: time to the first content event.
    #[serde(default)]
    pub ttft: Option<Latency>,
    /// Streams: gaps between content events.
    #[serde(default)]
    pub itl: Option<Latency>,
}

/// Failures by kind (`ErrorCounts`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Errors {
    /// All failures.
    pub total: u64,
    /// Could not connect.
    pub connect: u64,
    /// No complete response in time.
    pub timeout: u64,
    /// Reset or early EOF.
    pub io: u64,
    /// Bad framing, or a stream without `[DONE]`.
    pub protocol: u64,
    /// A 2xx stream carrying an error event.
    pub stream_error: u64,
    /// Non-2xx responses by status.
    pub status: BTreeMap<String, u64>,
}

/// Percentiles in microseconds (`LatencySummary`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Latency {
    /// Samples.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest sample.
    pub max_us: u64,
}

/// What every request of a load looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestKind {
    /// `POST /v1/chat/completions` with the load generator's default OpenAI body for `model` and
    /// the demo key.
    OpenAi {
        /// The `model` of the body.
        model: &'static str,
    },
    /// `POST /v1/messages` with [`ANTHROPIC_BODY`] read from `body_file`, Anthropic's headers:
    /// only for direct-to-mock, non-streamed (the load generator decodes OpenAI streams only).
    AnthropicMessages {
        /// Where [`ANTHROPIC_BODY`] was written.
        body_file: PathBuf,
    },
}

/// What load to apply.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// Closed loop: connections; open loop: pool size.
    pub connections: usize,
    /// Open loop rate (requests per second).
    pub rate: Option<u32>,
    /// Streamed requests.
    pub stream: bool,
    /// Measured duration.
    pub duration: Duration,
    /// Warm-up before measuring.
    pub warmup: Duration,
    /// The requests sent.
    pub request: RequestKind,
}

/// One successful measurement.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The load generator's report.
    pub report: Report,
    /// Fraction of one core the proxy process used during the run (none when direct).
    pub proxy_cpu: Option<f64>,
    /// Fraction of one core the mock and the load generator used together.
    pub client_cpu: Option<f64>,
    /// Fraction of one core the mock alone used.
    pub mock_cpu: Option<f64>,
    /// CPU (in cores) that processes other than ours used on the two pinned cores meanwhile:
    /// interference from the rest of the machine.
    pub foreign_cpu: Option<f64>,
}

/// The processes and cores one measurement watches.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// The core the proxy runs on.
    pub proxy_core: usize,
    /// The core the mock and load generator run on.
    pub client_core: usize,
    /// The proxy process, if the load goes through one.
    pub proxy_pid: Option<u32>,
    /// The mock process.
    pub mock_pid: u32,
}

/// A measurement or why it failed.
pub type Outcome = Result<Sample, String>;

// === impl Errors ===

impl Errors {
    /// `io 3, status 502: 1` style summary of the non-zero kinds.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (name, n) in [
            ("connect", self.connect),
            ("timeout", self.timeout),
            ("io", self.io),
            ("protocol", self.protocol),
            ("stream_error", self.stream_error),
        ] {
            if n > 0 {
                parts.push(format!("{name} {n}"));
            }
        }
        for (code, n) in &self.status {
            parts.push(format!("status {code}: {n}"));
        }
        parts.join(", ")
    }
}

// === impl Report ===

impl Report {
    /// Why this report does not count as clean: errors, or fewer successes than requests.
    pub fn problem(&self) -> Option<String> {
        if self.errors.total > 0 {
            return Some(format!(
                "{} of {} requests failed ({})",
                self.errors.total,
                self.requests,
                self.errors.describe()
            ));
        }
        if self.ok != self.requests || self.requests == 0 {
            return Some(format!("{} ok of {} requests", self.ok, self.requests));
        }
        if self.unsent > 0 {
            return Some(format!(
                "{} due requests were never sent (the target fell behind the rate)",
                self.unsent
            ));
        }
        None
    }

    /// Streams: content events per successful stream (inter-token gaps + 1).
    pub fn events_per_stream(&self) -> Option<f64> {
        let itl = self.itl.as_ref()?;
        (self.ok > 0).then(|| itl.count as f64 / self.ok as f64 + 1.0)
    }
}

// === impl LoadSpec ===

impl LoadSpec {
    /// The URL this load's requests go to at `addr`.
    pub fn url(&self, addr: SocketAddr) -> String {
        let path = match self.request {
            RequestKind::OpenAi { .. } => "/v1/chat/completions",
            RequestKind::AnthropicMessages { .. } => "/v1/messages",
        };
        format!("http://{addr}{path}")
    }

    /// The `tollgate-loadgen` arguments for this load against `url`.
    pub fn args(&self, url: &str) -> Vec<String> {
        let mut args = vec![
            "--url".to_owned(),
            url.to_owned(),
            "--connections".to_owned(),
            self.connections.to_string(),
        ];
        if let Some(rate) = self.rate {
            args.extend(["--rate".to_owned(), rate.to_string()]);
        }
        args.extend([
            "--duration".to_owned(),
            fmt_duration(self.duration),
            "--warmup".to_owned(),
            fmt_duration(self.warmup),
        ]);
        if self.stream {
            args.push("--stream".to_owned());
        }
        match &self.request {
            RequestKind::OpenAi { model } => args.extend([
                "--header".to_owned(),
                format!("Authorization: Bearer {DEMO_KEY}"),
                "--model".to_owned(),
                (*model).to_owned(),
            ]),
            RequestKind::AnthropicMessages { body_file } => args.extend([
                "--header".to_owned(),
                format!("x-api-key: {ANTHROPIC_KEY}"),
                "--header".to_owned(),
                "anthropic-version: 2023-06-01".to_owned(),
                "--body-file".to_owned(),
                body_file.display().to_string(),
            ]),
        }
        args.extend([
            "--threads".to_owned(),
            "1".to_owned(),
            "--json".to_owned(),
            "--quiet".to_owned(),
        ]);
        args
    }
}

/// `1500ms`, `10s`: what the load generator's duration parser reads.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// CPU counters at one instant.
#[derive(Debug, Clone, Copy)]
struct CpuSnapshot {
    at: Instant,
    proxy: Option<Duration>,
    mock: Option<Duration>,
    reaped: Duration,
    cores: Option<((u64, u64), (u64, u64))>,
}

impl CpuSnapshot {
    fn take(w: &Watch) -> Self {
        Self {
            at: Instant::now(),
            proxy: w.proxy_pid.and_then(procs::process_cpu_time),
            mock: procs::process_cpu_time(w.mock_pid),
            reaped: procs::reaped_children_cpu_time(),
            cores: procs::cpu_jiffies(w.proxy_core).zip(procs::cpu_jiffies(w.client_core)),
        }
    }
}

/// Runs the load generator pinned to the client core and measures the CPU the proxy, the
/// mock, the load generator and everything else used meanwhile. `Ok(Err(..))` is a failed
/// measurement (recorded, the run goes on); `Err(..)` stops the run (an interrupt).
pub fn measure(
    loadgen: &Path,
    spec: &LoadSpec,
    url: &str,
    name: &str,
    watch: &Watch,
    dir: &Path,
) -> Result<Outcome, BenchError> {
    let spawn = Spawn::new(name, Some(watch.client_core), loadgen, spec.args(url));
    let before = CpuSnapshot::take(watch);
    let mut proc = match Proc::start(&spawn, dir) {
        Ok(p) => p,
        Err(e) => return Ok(Err(e.to_string())),
    };
    // The load generator bounds itself by its duration and per-request timeout (30 s); this
    // limit only catches a hung load generator.
    let limit = spec.duration + spec.warmup + Duration::from_secs(60);
    let status = match proc.wait(limit) {
        Ok(s) => s,
        Err(BenchError::Interrupted) => return Err(BenchError::Interrupted),
        Err(e) => return Ok(Err(e.to_string())),
    };
    let after = CpuSnapshot::take(watch);
    let CpuUse {
        proxy: proxy_cpu,
        client: client_cpu,
        mock: mock_cpu,
        foreign: foreign_cpu,
    } = cpu_use(&before, &after);
    if !status.success() {
        return Ok(Err(format!(
            "tollgate-loadgen failed ({status}): {}",
            proc.stderr_tail(600)
        )));
    }
    let out = proc.stdout();
    let report: Report = match serde_json::from_str(out.trim()) {
        Ok(r) => r,
        Err(e) => {
            return Ok(Err(format!(
                "could not read tollgate-loadgen's JSON report ({e}); stdout starts with: {}",
                out.chars().take(300).collect::<String>()
            )))
        }
    };
    Ok(Ok(Sample {
        report,
        proxy_cpu,
        client_cpu,
        mock_cpu,
        foreign_cpu,
    }))
}

/// CPU used between two snapshots, each in cores.
#[derive(Debug, Clone, Copy)]
struct CpuUse {
    proxy: Option<f64>,
    client: Option<f64>,
    mock: Option<f64>,
    foreign: Option<f64>,
}

/// Proxy, client (mock + load generator), mock and foreign CPU, each in cores, between two
/// snapshots. Foreign = what the two cores were busy with beyond our processes.
fn cpu_use(before: &CpuSnapshot, after: &CpuSnapshot) -> CpuUse {
    let wall = after.at.duration_since(before.at).as_secs_f64();
    if wall <= 0.0 {
        return CpuUse {
            proxy: None,
            client: None,
            mock: None,
            foreign: None,
        };
    }
    let delta =
        |a: Option<Duration>, b: Option<Duration>| Some(b?.saturating_sub(a?).as_secs_f64());
    let proxy = delta(before.proxy, after.proxy);
    let loadgen = after.reaped.saturating_sub(before.reaped).as_secs_f64();
    let mock = delta(before.mock, after.mock);
    let client = mock.map(|m| m + loadgen);
    let busy = |(b0, t0): (u64, u64), (b1, t1): (u64, u64)| {
        (t1 > t0).then(|| (b1 - b0) as f64 / (t1 - t0) as f64)
    };
    let foreign = (|| {
        let ((p0, c0), (p1, c1)) = (before.cores?, after.cores?);
        let cores_busy = busy(p0, p1)? + busy(c0, c1)?;
        let ours = (proxy.unwrap_or(0.0) + client?) / wall;
        Some((cores_busy - ours).max(0.0))
    })();
    let frac = |v: Option<f64>| v.map(|v| v / wall);
    CpuUse {
        proxy: frac(proxy),
        client: frac(client),
        mock: frac(mock),
        foreign,
    }
}
