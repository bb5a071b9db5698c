//! `tollgate-bench`: the end-to-end benchmark runner.
//!
//! Builds the release binaries, then for each run starts the mock provider, a one-worker
//! Tollgate and a one-worker nginx, and measures every scenario directly against the mock,
//! through Tollgate and through nginx back to back, on pinned cores (proxies on CPU 0, mock and
//! load generator on CPU 1). Then, with a second gateway that serves one model pass-through and
//! one translated to an Anthropic-format upstream, measures what translation costs (scenario f);
//! with a fresh plain gateway and one enforcing key and team limits and pricing every request,
//! what governance costs (scenario g); with a fresh plain gateway and one scanning every prompt
//! and answer with the default guardrails profile, what guardrails cost (scenario h; and,
//! informational, the same streams through two more such gateways to a second mock paced like a
//! hosted model); with a fresh quiet gateway (no metrics, no access log) and one counting
//! metrics and writing the JSON access log to a file, what observability costs (scenario i).
//! Every gateway writes its usage ledger (one record per request, always on) to a store of its
//! own in the scratch directory. `--only` picks scenarios by letter (a to i).
//! Writes medians, ratios against nginx and the goals to `bench/RESULTS.md`. Load only ever goes
//! to 127.0.0.1, bounded in time and count; every process it starts is stopped on the way out,
//! on errors and on Ctrl-C too, and the governed gateway's store directory and the observed
//! gateway's access log are removed.

mod corpus;
mod guardrails;
mod idle;
mod loadgen;
mod machine;
mod nginx;
mod observability;
mod procs;
mod results;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::Parser;

use crate::guardrails::{BodyLoadgen, GUARDRAILS_SECTION};
use crate::loadgen::{
    LoadSpec, Outcome, RequestKind, Watch, ANTHROPIC_BODY, ANTHROPIC_KEY, MODEL, TRANSLATED_MODEL,
};
use crate::machine::Machine;
use crate::nginx::Availability;
use crate::observability::{AccessLogFile, QUIET_SERVER_LINES};
use crate::procs::{Proc, Scratch, Spawn};
use crate::results::{
    MockPacing, ObservabilityChecks, Results, RunResult, Scenario, Settings, Target,
};

/// The CPU the proxies (Tollgate or nginx) run on.
const PROXY_CPU: usize = 0;

/// The CPU the mock provider and the load generator share.
const CLIENT_CPU: usize = 1;

/// Open-file limit the runner asks for (children inherit it).
const NOFILE_WANTED: u64 = 65_536;

/// Time to first token of scenario h's paced mock: the order of a hosted small model's (a few
/// hundred ms). The guarded gateway holds the first token back for one chunk interval; the
/// informational row shows that hold at the scale it has behind such a model, which the bench
/// mock's TTFT of 0 magnifies.
const PACED_MOCK_TTFT: Duration = Duration::from_millis(300);

/// Pause between the paced mock's chunks: the order of a hosted small model's token rate (~50
/// tokens a second), one chunk standing for one token.
const PACED_MOCK_CHUNK_DELAY: Duration = Duration::from_millis(20);

/// Content chunks of each of the paced mock's streams: as many as the bench mock's, so that
/// both streaming loads carry the same answer.
const PACED_MOCK_CHUNKS: u32 = 16;

/// Run the end-to-end benchmark: direct-to-mock vs Tollgate vs nginx, on pinned cores.
#[derive(Debug, Parser)]
#[command(name = "tollgate-bench", about, long_about = None)]
struct Cli {
    /// Runs of every scenario; medians across runs are reported.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Measured duration of each load (after the warm-up), e.g. 10s, 2500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up before each measured load.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Smoke test: 1 run, 2 s loads, 500 ms warm-up, 2,000 idle connections (overrides
    /// --runs, --duration, --warmup and --idle-connections).
    #[arg(long)]
    quick: bool,
    /// Where to write the results (default: bench/RESULTS.md in the workspace; with --only,
    /// bench/RESULTS-<letters>.md).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Do not measure nginx (and do not install it).
    #[arg(long)]
    skip_nginx: bool,
    /// Idle keep-alive connections held open for the memory scenario.
    #[arg(long, default_value_t = 10_000)]
    idle_connections: usize,
    /// Connections of the closed-loop throughput scenarios (a, f, g, h and i).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Request rate of the open-loop scenario (requests per second).
    #[arg(long, default_value_t = 5_000)]
    rate: u32,
    /// Concurrent streams in the streaming scenarios (d, and f's and h's streaming loads).
    #[arg(long, default_value_t = 16)]
    stream_connections: usize,
    /// Run only these scenarios, by letter, comma-separated (default: all): a throughput,
    /// b latency, c open loop, d streaming, e memory, f translation, g governance,
    /// h guardrails, i observability; e.g. `--only g`. A partial run writes
    /// bench/RESULTS-<letters>.md unless --out is given, so the full results are not
    /// overwritten; nginx is only started (and installed) for a–d.
    #[arg(long, visible_alias = "scenarios", value_delimiter = ',', value_parser = parse_scenario_letter)]
    only: Vec<char>,
}

/// Every scenario letter `--only` accepts.
const SCENARIO_LETTERS: &str = "abcdefghi";

fn parse_scenario_letter(s: &str) -> Result<char, String> {
    let s = s.trim().to_ascii_lowercase();
    let mut chars = s.chars();
    match (chars.next(), chars.next()) {
        (Some(c), None) if SCENARIO_LETTERS.contains(c) => Ok(c),
        _ => Err(format!(
            "unknown scenario {s:?}: expected letters a to i (a throughput, b latency, c open loop, d streaming, e memory, f translation, g governance, h guardrails, i observability)"
        )),
    }
}

/// `--only`'s letters sorted, without repeats, comma-separated (`"a,g"`); `None` for all.
fn selection(only: &[char]) -> Option<String> {
    let mut letters: Vec<char> = only.to_vec();
    letters.sort_unstable();
    letters.dedup();
    if letters.is_empty() || letters.len() == SCENARIO_LETTERS.len() {
        return None;
    }
    Some(
        letters
            .iter()
            .map(char::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Why the runner stopped.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        source: std::io::Error,
    },
    /// Something the run depends on failed.
    #[error("{0}")]
    Failed(String),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
}

impl BenchError {
    /// An I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (number, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 10s, 2m"))?;
    let d = Duration::try_from_secs_f64(value * scale)
        .map_err(|_| format!("duration {s:?} is out of range"))?;
    if d < Duration::from_millis(100) && !d.is_zero() {
        return Err(format!("duration {s:?} is too short (at least 100ms)"));
    }
    Ok(d)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(BenchError::Interrupted) => {
            eprintln!("tollgate-bench: interrupted; every started process was stopped");
            ExitCode::from(130)
        }
        Err(e) => {
            eprintln!("tollgate-bench: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs everything; `Ok(false)` when some measurement had errors (results are still written).
fn run(cli: Cli) -> Result<bool, BenchError> {
    procs::install_signal_handlers()
        .map_err(|e| BenchError::io("installing signal handlers", e))?;
    let root = workspace_root();
    let settings = Settings::from_cli(&cli);
    // A partial run must not replace the full results.
    let out = cli.out.clone().unwrap_or_else(|| {
        let name = match &settings.only {
            None => "RESULTS.md".to_owned(),
            Some(only) => format!("RESULTS-{}.md", only.replace(',', "")),
        };
        root.join("bench").join(name)
    });

    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus <= CLIENT_CPU {
        return Err(BenchError::Failed(format!(
            "needs at least 2 CPUs (proxy on CPU {PROXY_CPU}, clients on CPU {CLIENT_CPU}); this process may use {cpus}"
        )));
    }
    let nofile = match procs::raise_nofile_limit(NOFILE_WANTED) {
        Ok(n) => n,
        Err(e) => {
            eprintln!("tollgate-bench: could not raise RLIMIT_NOFILE: {e}");
            0
        }
    };
    if nofile > 0 && (nofile as usize) < settings.idle_connections + 1024 {
        return Err(BenchError::Failed(format!(
            "the open-file limit is {nofile}, too low for {} idle connections",
            settings.idle_connections
        )));
    }

    let load_at_start = machine::load_average();
    let busy_at_start = machine::busy_cores(&[PROXY_CPU, CLIENT_CPU], Duration::from_secs(1));
    if let Some(busy) = busy_at_start.filter(|&b| b > 0.2) {
        eprintln!(
            "tollgate-bench: warning: CPUs {PROXY_CPU} and {CLIENT_CPU} are already {busy:.2} cores busy (load average {}); numbers from a busy machine are noisy (recorded in the results)",
            machine::fmt_load(load_at_start)
        );
    }

    let bins = build(&root)?;
    let nginx = if cli.skip_nginx {
        Availability::Unavailable("skipped (--skip-nginx)".into())
    } else if !"abcd".chars().any(|c| settings.includes(c)) {
        Availability::Unavailable("no scenario a–d selected (--only)".into())
    } else {
        nginx::ensure()
    };
    if let Availability::Unavailable(why) = &nginx {
        eprintln!("tollgate-bench: nginx will not be measured: {why}");
    }

    let mut scratch = Scratch::create()?;
    let mut results = Results::new(
        settings.clone(),
        Machine::describe(&root),
        nginx.clone(),
        command_line(),
        load_at_start,
        nofile,
    );
    results.busy_at_start = busy_at_start;
    let mut finished = Ok(());
    for run in 0..settings.runs {
        eprintln!("tollgate-bench: run {} of {}", run + 1, settings.runs);
        match one_run(run, &settings, &bins, &nginx, &scratch, &mut results) {
            Ok(r) => results.runs.push(r),
            Err(e) => {
                finished = Err(e);
                break;
            }
        }
    }
    results.load_at_end = machine::load_average();
    results.accuracy = Some(corpus::evaluate(&root));
    if let Err(e) = finished {
        // Keep the logs of a broken run; write nothing over a previous RESULTS.md.
        scratch.keep();
        eprintln!("tollgate-bench: logs kept in {}", scratch.path().display());
        return Err(e);
    }
    let markdown = results.render_markdown();
    std::fs::write(&out, &markdown)
        .map_err(|e| BenchError::io(format!("writing {}", out.display()), e))?;
    println!("{}", results.render_summary());
    eprintln!("tollgate-bench: wrote {}", out.display());
    let clean = results.problems().is_empty();
    if !clean {
        scratch.keep();
        eprintln!(
            "tollgate-bench: some measurements were flagged (see Problems in {}); logs kept in {}",
            out.display(),
            scratch.path().display()
        );
    }
    Ok(clean)
}

/// The workspace root (this crate's parent directory).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// How the runner was invoked, as a `cargo run` line.
fn command_line() -> String {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .map(|a| procs::shell_quote(&a))
        .collect();
    let mut line = "cargo run --release -p tollgate-bench --".to_owned();
    for a in args {
        line.push(' ');
        line.push_str(&a);
    }
    line
}

/// Paths of the binaries under test.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `tollgate`.
    pub gateway: PathBuf,
    /// `tollgate-mock`.
    pub mock: PathBuf,
    /// `tollgate-loadgen`.
    pub loadgen: PathBuf,
}

/// `cargo build --release -p tollgate-engine -p tollgate-loadgen`, output on stderr.
fn build(root: &Path) -> Result<Binaries, BenchError> {
    eprintln!("tollgate-bench: cargo build --release -p tollgate-engine -p tollgate-loadgen");
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(root)
        .args([
            "build",
            "--release",
            "-p",
            "tollgate-engine",
            "-p",
            "tollgate-loadgen",
        ])
        .status()
        .map_err(|e| BenchError::io("running cargo build", e))?;
    if !status.success() {
        return Err(BenchError::Failed(format!("cargo build failed ({status})")));
    }
    // Absolute (a relative CARGO_TARGET_DIR is relative to the root cargo ran in): children
    // run in the scratch directory.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(|d| root.join(d))
        .unwrap_or_else(|| root.join("target"))
        .join("release");
    let bins = Binaries {
        gateway: target.join("tollgate"),
        mock: target.join("tollgate-mock"),
        loadgen: target.join("tollgate-loadgen"),
    };
    for b in [&bins.gateway, &bins.mock, &bins.loadgen] {
        if !b.is_file() {
            return Err(BenchError::Failed(format!(
                "{} is missing after the build",
                b.display()
            )));
        }
    }
    Ok(bins)
}

/// A mock provider pinned to the client CPU: one thread, streams paced as `pacing` says.
fn start_mock(
    bins: &Binaries,
    pacing: MockPacing,
    dir: &Path,
    name: &str,
) -> Result<(Proc, SocketAddr, String), BenchError> {
    let port = procs::free_port()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let spawn = Spawn::new(name, Some(CLIENT_CPU), &bins.mock, mock_args(addr, pacing));
    let mut proc = Proc::start(&spawn, dir)?;
    procs::wait_for_port(&mut proc, addr, Duration::from_secs(10))?;
    Ok((proc, addr, spawn.command_line()))
}

/// The mock's arguments: listen on `addr`, one thread, streams paced as `pacing` says.
fn mock_args(addr: SocketAddr, pacing: MockPacing) -> Vec<String> {
    vec![
        "--listen".to_owned(),
        addr.to_string(),
        "--threads".to_owned(),
        "1".to_owned(),
        "--chunks".to_owned(),
        pacing.chunks.to_string(),
        "--chunk-delay".to_owned(),
        loadgen::fmt_duration(pacing.chunk_delay),
        "--ttft".to_owned(),
        // Always in ms (`0ms` for the bench mock), as the recorded command lines always were.
        format!("{}ms", pacing.ttft.as_millis()),
    ]
}

/// Which configuration a gateway runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum GatewayRole {
    /// Scenarios a–e (and g's plain gateway): one OpenAI-format model in front of the mock.
    PassThrough,
    /// Scenario f: the same pass-through model, plus [`TRANSLATED_MODEL`] served by an
    /// Anthropic-format provider pointing at the same mock (its `/v1/messages`).
    Translation,
    /// Scenario g: the pass-through configuration with governance: the key belongs to a team
    /// with a budget, RPM and TPM limits, the key has RPM and TPM limits, the model has a
    /// price, and usage is written to a store in `store`.
    Governed {
        /// The store's directory (fresh, inside the scratch directory).
        store: PathBuf,
    },
    /// Scenario h: the pass-through configuration plus [`GUARDRAILS_SECTION`], the default
    /// guardrails profile scanning every prompt and answer.
    Guarded,
    /// Scenario i: the pass-through configuration with metrics and the access log switched off
    /// in `[server]` ([`QUIET_SERVER_LINES`]).
    Quiet,
    /// Scenario i: the pass-through configuration with metrics on and the access log written to
    /// `access_log` ([`observability::observed_server_lines`]).
    Observed {
        /// The access log file (fresh, in the scratch directory).
        access_log: PathBuf,
    },
}

/// The gateway's configuration: one worker in front of the mock.
fn gateway_config(
    listen: SocketAddr,
    mock: SocketAddr,
    max_connections: usize,
    role: &GatewayRole,
    ledger: &Path,
) -> String {
    // The governed role names its own store (kept apart so the bench can size it).
    match role {
        GatewayRole::PassThrough => plain_gateway_config(listen, mock, max_connections, ledger, ""),
        GatewayRole::Translation => {
            translation_gateway_config(listen, mock, max_connections, ledger)
        }
        GatewayRole::Governed { store } => {
            governed_gateway_config(listen, mock, max_connections, store)
        }
        GatewayRole::Guarded => guarded_gateway_config(listen, mock, max_connections, ledger),
        GatewayRole::Quiet => {
            plain_gateway_config(listen, mock, max_connections, ledger, QUIET_SERVER_LINES)
        }
        GatewayRole::Observed { access_log } => plain_gateway_config(
            listen,
            mock,
            max_connections,
            ledger,
            &observability::observed_server_lines(access_log),
        ),
    }
}

/// `[store]` pointing at `path`: every gateway keeps a usage ledger (one record per request),
/// so each gets its own, in the scratch directory, rather than a default one in its cwd.
fn store_section(path: &Path) -> String {
    format!(
        "[store]\npath = {}\nflush_interval = \"200ms\"\n",
        toml_path(path)
    )
}

/// `path` as a TOML string.
fn toml_path(path: &Path) -> String {
    // A JSON string is a valid TOML basic string (same escapes), whatever the path holds.
    serde_json::Value::String(path.display().to_string()).to_string()
}

/// Scenarios a–e's configuration: one model passed through to the mock, one key, and the
/// usage ledger every gateway keeps. `server_lines` go at the end of `[server]` (whole lines;
/// empty for a–e, so scenarios that add settings there compare against exactly a's gateway).
fn plain_gateway_config(
    listen: SocketAddr,
    mock: SocketAddr,
    max_connections: usize,
    ledger: &Path,
    server_lines: &str,
) -> String {
    format!(
        r#"# Written by tollgate-bench: one worker in front of the mock provider.
[server]
listen = "{listen}"
workers = 1
shutdown_grace = "1s"
keepalive_timeout = "120s"
max_connections_per_worker = {max_connections}
{server_lines}
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://{mock}/v1"

[[models]]
name = "{MODEL}"
deployments = [{{ provider = "mock", model = "{MODEL}" }}]

[[keys]]
name = "bench"
key = "{key}"

{store}"#,
        key = loadgen::DEMO_KEY,
        store = store_section(ledger),
    )
}

/// Far above anything the load reaches: scenario g measures what enforcing limits costs, not
/// what refusing costs.
const GOVERNED_BUDGET: &str = "1000000usd/month";
/// Requests per minute of the governed key and team (see [`GOVERNED_BUDGET`]).
const GOVERNED_RPM: u64 = 100_000_000;
/// Tokens per minute of the governed key and team (see [`GOVERNED_BUDGET`]).
const GOVERNED_TPM: u64 = 100_000_000_000;

/// Scenario g's governed configuration: the plain one with its key moved into a team with a
/// budget, RPM and TPM limits, limits on the key itself, a price for the model (so every
/// request is charged) and the store holding the usage ledger.
fn governed_gateway_config(
    listen: SocketAddr,
    mock: SocketAddr,
    max_connections: usize,
    store: &Path,
) -> String {
    format!(
        r#"# Written by tollgate-bench (scenario g): the plain gateway plus governance: the key
# belongs to a team with a budget, RPM and TPM limits, every request is priced and charged,
# and usage records go to the store. The limits are never reached: this measures their cost.
[server]
listen = "{listen}"
workers = 1
shutdown_grace = "1s"
keepalive_timeout = "120s"
max_connections_per_worker = {max_connections}

[[providers]]
name = "mock"
kind = "openai"
base_url = "http://{mock}/v1"

[[models]]
name = "{MODEL}"
deployments = [{{ provider = "mock", model = "{MODEL}" }}]

{store}
[[orgs]]
name = "bench-org"

[[teams]]
name = "bench"
org = "bench-org"
limits = {{ budget = "{GOVERNED_BUDGET}", rpm = {GOVERNED_RPM}, tpm = {GOVERNED_TPM} }}

[[keys]]
name = "bench"
key = "{key}"
team = "bench"
limits = {{ rpm = {GOVERNED_RPM}, tpm = {GOVERNED_TPM} }}

[[prices]]
model = "{MODEL}"
input = 0.15
output = 0.60
"#,
        key = loadgen::DEMO_KEY,
        store = store_section(store),
    )
}

/// Scenario h's guarded configuration: the plain one, byte for byte, then the default
/// guardrails profile; ports and store paths aside, nothing else differs between the two
/// gateways h compares.
fn guarded_gateway_config(
    listen: SocketAddr,
    mock: SocketAddr,
    max_connections: usize,
    ledger: &Path,
) -> String {
    format!(
        "{}\n{GUARDRAILS_SECTION}",
        plain_gateway_config(listen, mock, max_connections, ledger, "")
    )
}

/// Scenario f's configuration: two models on one worker, one per upstream format, both
/// answered by the same mock process.
fn translation_gateway_config(
    listen: SocketAddr,
    mock: SocketAddr,
    max_connections: usize,
    ledger: &Path,
) -> String {
    format!(
        r#"# Written by tollgate-bench (scenario f): one worker, one model passed through to the
# mock's OpenAI API and one translated to the mock's Anthropic Messages API.
[server]
listen = "{listen}"
workers = 1
shutdown_grace = "1s"
keepalive_timeout = "120s"
max_connections_per_worker = {max_connections}

[[providers]]
name = "mock-openai"
kind = "openai"
base_url = "http://{mock}/v1"

[[providers]]
name = "mock-anthropic"
kind = "anthropic"
base_url = "http://{mock}"
api_key = "{ANTHROPIC_KEY}"

[[models]]
name = "{MODEL}"
deployments = [{{ provider = "mock-openai", model = "{MODEL}" }}]

[[models]]
name = "{TRANSLATED_MODEL}"
deployments = [{{ provider = "mock-anthropic", model = "{TRANSLATED_MODEL}" }}]

[[keys]]
name = "bench"
key = "{key}"

# The mock's Anthropic model has no built-in price; without one every request would be
# flagged `price_unknown` (and warned about).
[[prices]]
model = "{TRANSLATED_MODEL}"
input = 3.0
output = 15.0

{store}"#,
        key = loadgen::DEMO_KEY,
        store = store_section(ledger),
    )
}

/// A running gateway.
#[derive(Debug)]
struct Gateway {
    proc: Proc,
    addr: SocketAddr,
    command_line: String,
    config: String,
}

/// Starts a one-worker gateway pinned to the proxy CPU and waits for `/health/ready`. It runs
/// in `cwd`, else in `dir`.
fn start_gateway(
    bins: &Binaries,
    settings: &Settings,
    mock: SocketAddr,
    dir: &Path,
    name: &str,
    role: &GatewayRole,
    cwd: Option<&Path>,
) -> Result<Gateway, BenchError> {
    let addr = SocketAddr::from(([127, 0, 0, 1], procs::free_port()?));
    let config = dir.join(format!("{name}.toml"));
    let max_connections = (settings.idle_connections + 1_000).max(25_000);
    let toml = gateway_config(
        addr,
        mock,
        max_connections,
        role,
        &dir.join(format!("{name}-store")),
    );
    std::fs::write(&config, &toml)
        .map_err(|e| BenchError::io(format!("writing {}", config.display()), e))?;
    let mut spawn = Spawn::new(
        name,
        Some(PROXY_CPU),
        &bins.gateway,
        vec![
            "serve".to_owned(),
            "--config".to_owned(),
            config.display().to_string(),
        ],
    );
    spawn.env = vec![
        ("TOLLGATE_LOG".into(), "info".into()),
        ("NO_COLOR".into(), "1".into()),
    ];
    spawn.cwd = cwd.map(Path::to_path_buf);
    let mut proc = Proc::start(&spawn, dir)?;
    wait_ready(&mut proc, addr, Duration::from_secs(15))?;
    Ok(Gateway {
        proc,
        addr,
        command_line: spawn.command_line(),
        config: toml,
    })
}

/// The status line of `GET path` at `addr` (one request on a connection of its own).
fn get_status_line(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned())
}

/// The status code of `GET path` at `addr`, or why there is none.
fn get_status(addr: SocketAddr, path: &str) -> Result<u16, String> {
    let line = get_status_line(addr, path).map_err(|e| format!("GET {path}: {e}"))?;
    line.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET {path}: no status in {line:?}"))
}

/// Polls `GET /health/ready` until it answers 200.
fn wait_ready(proc: &mut Proc, addr: SocketAddr, limit: Duration) -> Result<(), BenchError> {
    let end = std::time::Instant::now() + limit;
    loop {
        proc.check_alive().map_err(BenchError::Failed)?;
        procs::check_interrupted()?;
        let attempt = get_status_line(addr, "/health/ready");
        let last = match attempt {
            Ok(status) if status.split(' ').nth(1) == Some("200") => return Ok(()),
            Ok(status) => status,
            Err(e) => e.to_string(),
        };
        if std::time::Instant::now() >= end {
            return Err(BenchError::Failed(format!(
                "{} at {addr} was not ready within {limit:?} (last: {last}); stderr: {}",
                proc.name(),
                proc.stderr_tail(600)
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The io driver the gateway logged at start (`driver=io_uring`), if it did.
fn logged_driver(stderr: &str) -> Option<String> {
    let clean = results::strip_ansi(stderr);
    let line = clean.lines().find(|l| l.contains("tollgate listening"))?;
    let value = line.split("driver=").nth(1)?.split_whitespace().next()?;
    Some(value.trim_matches('"').to_owned())
}

/// A process that failed to start, for any reason but an interrupt, is an outcome: every load
/// through it fails with its error, and the run goes on. An interrupt stops the run.
fn started<T>(start: Result<T, BenchError>) -> Result<Result<T, String>, BenchError> {
    match start {
        Ok(p) => Ok(Ok(p)),
        Err(BenchError::Interrupted) => Err(BenchError::Interrupted),
        Err(e) => Ok(Err(e.to_string())),
    }
}

/// What every load of one run is measured with: the run's number, the settings, the
/// binaries, the mock every scenario also loads directly, and the scratch directory.
#[derive(Debug)]
struct RunEnv<'a> {
    /// 0 for the first run.
    run: usize,
    settings: &'a Settings,
    bins: &'a Binaries,
    mock: &'a mut Proc,
    mock_addr: SocketAddr,
    dir: &'a Path,
}

// === impl RunEnv ===

impl RunEnv<'_> {
    /// `run1` for the first run: part of the name of every process and file of the run.
    fn tag(&self) -> String {
        format!("run{}", self.run + 1)
    }

    /// A gateway in front of this run's mock ([`start_gateway`]).
    fn start_gateway(
        &self,
        name: &str,
        role: &GatewayRole,
        cwd: Option<&Path>,
    ) -> Result<Gateway, BenchError> {
        start_gateway(
            self.bins,
            self.settings,
            self.mock_addr,
            self.dir,
            name,
            role,
            cwd,
        )
    }

    /// The same run measured against another mock: `mock`, listening on `mock_addr`, is what
    /// loads go straight to, what new gateways point at and whose CPU is accounted.
    fn with_mock<'b>(&'b self, mock: &'b mut Proc, mock_addr: SocketAddr) -> RunEnv<'b> {
        RunEnv {
            run: self.run,
            settings: self.settings,
            bins: self.bins,
            mock,
            mock_addr,
            dir: self.dir,
        }
    }

    /// `targets` rotated by the run's number, so that no target always runs first (warmest
    /// caches, coolest CPU).
    fn rotated(&self, mut targets: Vec<Target>) -> Vec<Target> {
        let shift = self.run % targets.len();
        targets.rotate_left(shift);
        targets
    }

    /// One load of `scenario` to `target`: `spec` sent by the load generator (with `body`, by
    /// the one that sends that body) to the address `resolve` gives, with the pid of the
    /// proxy in between (`None`: straight to the mock), and its progress line on stderr. The
    /// first run records the command line. A mock or proxy that has exited, or a load that
    /// failed, is the outcome's error; an interrupt stops the run.
    fn measure_load(
        &mut self,
        results: &mut Results,
        (scenario, target): (Scenario, Target),
        spec: &LoadSpec,
        body: Option<&BodyLoadgen>,
        resolve: impl FnOnce() -> Result<(SocketAddr, Option<u32>), String>,
    ) -> Result<Outcome, BenchError> {
        procs::check_interrupted()?;
        let name = format!(
            "loadgen-{}-{}-{}",
            self.tag(),
            scenario.slug(),
            target.slug()
        );
        let outcome: Outcome = (|| {
            self.mock.check_alive()?;
            let (addr, proxy) = resolve()?;
            let url = spec.url(addr);
            if self.run == 0 {
                // What actually runs: with a body, the load generator and the body file.
                let args = spec.args(&url);
                let args = match body {
                    Some(b) => b.effective_args(args),
                    None => args,
                };
                let spawn = Spawn::new(&name, Some(CLIENT_CPU), &self.bins.loadgen, args);
                results.note_loadgen_command(scenario, target, spawn.command_line());
            }
            let watch = Watch {
                proxy_core: PROXY_CPU,
                client_core: CLIENT_CPU,
                proxy_pid: proxy,
                mock_pid: self.mock.pid(),
            };
            let program = body.map_or(&self.bins.loadgen, |b| &b.program);
            loadgen::measure(program, spec, &url, &name, &watch, self.dir).map_err(|e| match e {
                BenchError::Interrupted => "interrupted".to_owned(),
                other => other.to_string(),
            })?
        })();
        procs::check_interrupted()?;
        eprintln!("{}", progress_line(scenario, target, &outcome));
        Ok(outcome)
    }
}

/// The line on stderr that says what one load measured.
fn progress_line(scenario: Scenario, target: Target, outcome: &Outcome) -> String {
    // a–d's columns fit their shorter names.
    let (scenario_width, target_width) = if Scenario::LOAD.contains(&scenario) {
        (11, 8)
    } else {
        (18, 16)
    };
    format!(
        "tollgate-bench:   {:<scenario_width$} {:<target_width$} {}",
        scenario.slug(),
        target.slug(),
        results::one_line(scenario, outcome)
    )
}

/// One run: every load scenario against every target, then the memory scenario.
fn one_run(
    run: usize,
    settings: &Settings,
    bins: &Binaries,
    nginx_bin: &Availability,
    scratch: &Scratch,
    results: &mut Results,
) -> Result<RunResult, BenchError> {
    let dir = scratch.path();
    let tag = format!("run{}", run + 1);
    let (mut mock, mock_addr, mock_cmd) =
        start_mock(bins, settings.bench_mock(), dir, &format!("mock-{tag}"))?;
    results.note_command("mock", mock_cmd);
    let mut env = RunEnv {
        run,
        settings,
        bins,
        mock: &mut mock,
        mock_addr,
        dir,
    };

    let load_scenarios: Vec<Scenario> = Scenario::LOAD
        .into_iter()
        .filter(|s| settings.includes(s.letter()))
        .collect();
    let mut gateway = started(if load_scenarios.is_empty() {
        Err(BenchError::Failed("no scenario a–d selected".into()))
    } else {
        env.start_gateway(&format!("tollgate-{tag}"), &GatewayRole::PassThrough, None)
    })?;
    if let Ok(g) = &gateway {
        results.note_command("tollgate", g.command_line.clone());
        results.note_gateway_config(g.config.clone());
    }
    let mut nginx = match nginx_bin {
        Availability::Ready { bin, .. } => Some(started(nginx::start(
            bin,
            dir,
            &format!("nginx-{tag}"),
            PROXY_CPU,
            mock_addr.port(),
        ))?),
        Availability::Unavailable(_) => None,
    };
    if let Some(Ok(n)) = &nginx {
        results.note_command("nginx", n.command_line.clone());
    }

    let mut out = RunResult::default();
    if let Ok(g) = &gateway {
        out.gateway_driver = logged_driver(&g.proc.stderr());
    }
    let mut targets = vec![Target::Direct, Target::Tollgate];
    if nginx.is_some() {
        targets.push(Target::Nginx);
    }
    let targets = env.rotated(targets);

    for scenario in load_scenarios {
        let spec = settings.spec(scenario);
        for &target in &targets {
            let resolve = || match target {
                Target::Direct => Ok((mock_addr, None)),
                Target::Tollgate => {
                    let g = gateway.as_mut().map_err(|e| e.clone())?;
                    g.proc.check_alive()?;
                    Ok((g.addr, Some(g.proc.pid())))
                }
                Target::Nginx => {
                    let n = match nginx.as_mut() {
                        Some(Ok(n)) => n,
                        Some(Err(e)) => return Err(e.clone()),
                        None => return Err("nginx is not measured".into()),
                    };
                    n.proc.check_alive()?;
                    let addr = if spec.stream { n.streaming } else { n.buffered };
                    Ok((addr, Some(n.proc.pid())))
                }
                Target::DirectAnthropic
                | Target::PassThrough
                | Target::Translated
                | Target::Plain
                | Target::Governed
                | Target::Guarded
                | Target::Quiet
                | Target::Observed => Err("a target of scenario f, g, h or i only".into()),
            };
            let outcome = env.measure_load(results, (scenario, target), &spec, None, resolve)?;
            out.load.insert((scenario, target), outcome);
        }
    }

    // Memory: a fresh gateway, so what is measured is idle connections, not what the load
    // scenarios left in its allocator.
    if let Ok(g) = gateway.as_mut() {
        out.gateway_warnings = results::warnings(&g.proc.stderr());
        g.proc.stop();
    }
    drop(gateway);

    // f. translation: its own gateway, so scenarios a–e keep their one-model configuration.
    if settings.includes('f') {
        translation_run(&mut env, results, &mut out)?;
    }
    // g. governance: two fresh gateways of their own, plain and governed.
    if settings.includes('g') {
        governance_run(&mut env, results, &mut out)?;
    }
    // h. guardrails: two fresh gateways of their own, plain and guarded.
    if settings.includes('h') {
        guardrails_run(&mut env, results, &mut out)?;
    }
    // i. observability: two fresh gateways of their own, quiet and observed.
    if settings.includes('i') {
        observability_run(&mut env, results, &mut out)?;
    }
    if let Some(Ok(n)) = nginx.as_mut() {
        out.nginx_errors = results::nginx_errors(&procs::tail(
            &dir.join(n.proc.name()).join("nginx-error.log"),
            4096,
        ));
    }
    let start = if settings.includes('e') {
        env.start_gateway(
            &format!("tollgate-mem-{tag}"),
            &GatewayRole::PassThrough,
            None,
        )
    } else {
        Err(BenchError::Failed("not selected (--only)".into()))
    };
    out.memory = started(start)?.and_then(|mut g| {
        let r = idle::hold_idle(&mut g.proc, g.addr, settings.idle_connections);
        out.gateway_warnings
            .extend(results::warnings(&g.proc.stderr()));
        r
    });
    procs::check_interrupted()?;
    match &out.memory {
        Err(_) if !settings.includes('e') => {}
        Ok(m) => eprintln!(
            "tollgate-bench:   memory      tollgate {} idle connections: VmRSS {:.1} MiB ({:.1} MiB before)",
            m.opened,
            m.rss_idle_kib as f64 / 1024.0,
            m.rss_before_kib as f64 / 1024.0
        ),
        Err(e) => eprintln!("tollgate-bench:   memory      tollgate FAILED: {e}"),
    }
    drop(nginx);
    mock.stop();
    Ok(out)
}

/// Scenario f: a fresh two-model gateway ([`GatewayRole::Translation`]); closed-loop and
/// streaming load through it to the pass-through and to the translated model, and straight to
/// the mock in OpenAI and (non-streamed) Anthropic format, back to back in rotating order.
fn translation_run(
    env: &mut RunEnv,
    results: &mut Results,
    out: &mut RunResult,
) -> Result<(), BenchError> {
    let tag = env.tag();
    let body_file = env.dir.join("anthropic-messages.json");
    std::fs::write(&body_file, ANTHROPIC_BODY)
        .map_err(|e| BenchError::io(format!("writing {}", body_file.display()), e))?;
    let mut gateway = started(env.start_gateway(
        &format!("tollgate-translation-{tag}"),
        &GatewayRole::Translation,
        None,
    ))?;
    if let Ok(g) = &gateway {
        results.note_command("tollgate (scenario f)", g.command_line.clone());
        results.note_translation_config(g.config.clone());
    }

    let mock_addr = env.mock_addr;
    for scenario in Scenario::TRANSLATION {
        // Rotated as the other scenarios are: neither model always runs first.
        for target in env.rotated(scenario.targets()) {
            let mut spec = env.settings.spec(scenario);
            spec.request = match target {
                Target::DirectAnthropic => RequestKind::AnthropicMessages {
                    body_file: body_file.clone(),
                },
                Target::Translated => RequestKind::OpenAi {
                    model: TRANSLATED_MODEL,
                },
                _ => RequestKind::OpenAi { model: MODEL },
            };
            let resolve = || match target {
                Target::Direct | Target::DirectAnthropic => Ok((mock_addr, None)),
                Target::PassThrough | Target::Translated => {
                    let g = gateway.as_mut().map_err(|e| e.clone())?;
                    g.proc.check_alive()?;
                    Ok((g.addr, Some(g.proc.pid())))
                }
                Target::Tollgate
                | Target::Nginx
                | Target::Plain
                | Target::Governed
                | Target::Guarded
                | Target::Quiet
                | Target::Observed => Err("not a target of scenario f".into()),
            };
            let outcome = env.measure_load(results, (scenario, target), &spec, None, resolve)?;
            out.load.insert((scenario, target), outcome);
        }
    }
    if let Ok(g) = gateway.as_mut() {
        out.gateway_warnings
            .extend(results::warnings(&g.proc.stderr()));
        g.proc.stop();
    }
    Ok(())
}

/// Scenario g: a fresh plain gateway ([`GatewayRole::PassThrough`]) and a fresh governed one
/// ([`GatewayRole::Governed`]), both on the proxy CPU; the throughput scenario's load to each and
/// straight to the mock, back to back in rotating order. The governed gateway's store is a fresh
/// directory in the scratch directory, removed once the gateway has stopped.
fn governance_run(
    env: &mut RunEnv,
    results: &mut Results,
    out: &mut RunResult,
) -> Result<(), BenchError> {
    let tag = env.tag();
    // Declared before the gateways so it is dropped (removed) after they are (stopped), on
    // every path out of this function.
    let store = StoreDir::create(env.dir.join(format!("governance-store-{tag}")))?;
    // The plain gateway runs in an empty directory of its own, so that anything it writes
    // there, outside the store its config names, shows.
    let plain_cwd = StoreDir::create(env.dir.join(format!("governance-plain-cwd-{tag}")))?;
    let [plain, governed] = measure_gateway_pair(
        env,
        results,
        out,
        &Scenario::GOVERNANCE,
        [
            PairMember {
                target: Target::Plain,
                name: format!("tollgate-plain-{tag}"),
                role: GatewayRole::PassThrough,
                kind: "tollgate (scenario g, plain)",
                cwd: Some(&plain_cwd.path),
            },
            PairMember {
                target: Target::Governed,
                name: format!("tollgate-governed-{tag}"),
                role: GatewayRole::Governed {
                    store: store.path.clone(),
                },
                kind: "tollgate (scenario g, governed)",
                cwd: None,
            },
        ],
        |_| None,
        |_| {},
    )?;
    if governed.is_ok() {
        out.governance_store_bytes = store.bytes();
    }
    if plain.is_ok() {
        out.governance_plain_cwd_bytes = plain_cwd.bytes();
    }
    drop((plain, governed));
    drop((store, plain_cwd));
    Ok(())
}

/// One outcome per scenario and target, in the order measured.
type Measured = Vec<((Scenario, Target), Outcome)>;

/// One of the two fresh gateways scenario g, h or i compares.
#[derive(Debug)]
struct PairMember<'p> {
    /// What its loads are recorded as.
    target: Target,
    /// Its process's name, which its log, configuration and store files are named after.
    name: String,
    role: GatewayRole,
    /// What its command line is listed as in RESULTS.md.
    kind: &'static str,
    /// Its working directory (`None`: the scratch directory).
    cwd: Option<&'p Path>,
}

/// Scenarios g, h and i: starts the two gateways, first then second, on the proxy CPU
/// (recording each one's command line and configuration), measures `scenarios` through both
/// and straight to the mock with [`measure_against_gateways`], lets `while_running` look at
/// them, then stops both. Adds the outcomes, and the warnings the gateways logged, to `out`.
/// Returns the two gateways, stopped (or why each did not start), in the same order.
fn measure_gateway_pair<'b>(
    env: &mut RunEnv,
    results: &mut Results,
    out: &mut RunResult,
    scenarios: &[Scenario],
    [first, second]: [PairMember<'_>; 2],
    body: impl Fn(Scenario) -> Option<&'b BodyLoadgen>,
    while_running: impl FnOnce(&[Result<Gateway, String>; 2]),
) -> Result<[Result<Gateway, String>; 2], BenchError> {
    let mut start = |m: &PairMember| {
        let gateway = started(env.start_gateway(&m.name, &m.role, m.cwd))?;
        if let Ok(g) = &gateway {
            results.note_command(m.kind, g.command_line.clone());
            results.note_pair_config(m.target, g.config.clone());
        }
        Ok::<_, BenchError>(gateway)
    };
    let mut gateways = [start(&first)?, start(&second)?];

    let [a, b] = &mut gateways;
    let gateways_by_target = [(first.target, a.as_mut()), (second.target, b.as_mut())];
    out.load.extend(measure_against_gateways(
        env,
        results,
        scenarios,
        gateways_by_target,
        body,
    )?);
    while_running(&gateways);
    for g in gateways.iter_mut().flatten() {
        out.gateway_warnings
            .extend(results::warnings(&g.proc.stderr()));
        g.proc.stop();
    }
    Ok(gateways)
}

/// The load of each of `scenarios` straight to the mock and to each of two gateways (a
/// gateway that failed to start gives its error as the outcome), back to back, rotating which
/// goes first each run. `body` picks the load generator with a request body of its own for a
/// scenario (`None`: the load generator's default body).
fn measure_against_gateways<'b>(
    env: &mut RunEnv,
    results: &mut Results,
    scenarios: &[Scenario],
    mut gateways: [(Target, Result<&mut Gateway, &mut String>); 2],
    body: impl Fn(Scenario) -> Option<&'b BodyLoadgen>,
) -> Result<Measured, BenchError> {
    let mock_addr = env.mock_addr;
    let mut load = Vec::new();
    for &scenario in scenarios {
        let body = body(scenario);
        // Rotated as the other scenarios are: neither gateway always runs first.
        for target in env.rotated(scenario.targets()) {
            let spec = env.settings.spec(scenario);
            let resolve = || match target {
                Target::Direct => Ok((mock_addr, None)),
                _ => {
                    let Some((_, g)) = gateways.iter_mut().find(|(t, _)| *t == target) else {
                        return Err(format!("not a target of scenario {}", scenario.letter()));
                    };
                    let g = g.as_mut().map_err(|e| e.clone())?;
                    g.proc.check_alive()?;
                    Ok((g.addr, Some(g.proc.pid())))
                }
            };
            let outcome = env.measure_load(results, (scenario, target), &spec, body, resolve)?;
            load.push(((scenario, target), outcome));
        }
    }
    Ok(load)
}

/// Scenario h: a fresh plain gateway ([`GatewayRole::PassThrough`]) and a fresh guarded one
/// ([`GatewayRole::Guarded`]), both on the proxy CPU, each writing the usage ledger to a store of
/// its own; the throughput scenario's load and the streaming scenario's load, every request
/// carrying the same ~1.5 KiB chat body ([`guardrails::chat_body`]), to each and straight to
/// the mock, back to back in rotating order. Then the streaming load against a paced mock
/// ([`guardrails_paced_run`]).
fn guardrails_run(
    env: &mut RunEnv,
    results: &mut Results,
    out: &mut RunResult,
) -> Result<(), BenchError> {
    let tag = env.tag();
    let chat = BodyLoadgen::write(env.dir, &env.bins.loadgen, false)?;
    let chat_stream = BodyLoadgen::write(env.dir, &env.bins.loadgen, true)?;
    // Nothing to look at in the stopped gateways: h is its loads.
    let _stopped = measure_gateway_pair(
        env,
        results,
        out,
        &Scenario::GUARDRAILS,
        [
            PairMember {
                target: Target::Plain,
                name: format!("tollgate-h-plain-{tag}"),
                role: GatewayRole::PassThrough,
                kind: "tollgate (scenario h, plain)",
                cwd: None,
            },
            PairMember {
                target: Target::Guarded,
                name: format!("tollgate-h-guarded-{tag}"),
                role: GatewayRole::Guarded,
                kind: "tollgate (scenario h, guarded)",
                cwd: None,
            },
        ],
        |scenario| {
            Some(if scenario.is_stream() {
                &chat_stream
            } else {
                &chat
            })
        },
        |_| {},
    )?;
    guardrails_paced_run(env, results, out, &chat_stream)
}

/// Scenario h's informational load: a second mock process, pinned as the first and paced like a
/// hosted model ([`Settings::paced_mock`]), a fresh plain and a fresh guarded gateway with h's
/// two configurations but pointing at that mock, and h's streaming load (`chat_stream`'s body)
/// to each and straight to that mock, back to back in rotating order; the mock is stopped after.
/// A paced mock that does not start fails these three loads, not the run.
fn guardrails_paced_run(
    env: &mut RunEnv,
    results: &mut Results,
    out: &mut RunResult,
    chat_stream: &BodyLoadgen,
) -> Result<(), BenchError> {
    let tag = env.tag();
    let sc = Scenario::GuardrailsStreamingPaced;
    let name = format!("mock-h-paced-{tag}");
    let (mut mock, mock_addr) = match started(start_mock(
        env.bins,
        env.settings.paced_mock,
        env.dir,
        &name,
    ))? {
        Ok((mock, addr, command_line)) => {
            results.note_command("mock (scenario h, paced)", command_line);
            (mock, addr)
        }
        Err(e) => {
            for target in env.rotated(sc.targets()) {
                let outcome: Outcome = Err(format!("the paced mock did not start: {e}"));
                eprintln!("{}", progress_line(sc, target, &outcome));
                out.load.insert((sc, target), outcome);
            }
            return Ok(());
        }
    };
    // Nothing to look at in the stopped gateways: the paced load is all there is.
    let _stopped = measure_gateway_pair(
        &mut env.with_mock(&mut mock, mock_addr),
        results,
        out,
        &Scenario::GUARDRAILS_PACED,
        [
            PairMember {
                target: Target::Plain,
                name: format!("tollgate-h-paced-plain-{tag}"),
                role: GatewayRole::PassThrough,
                kind: "tollgate (scenario h, paced upstream, plain)",
                cwd: None,
            },
            PairMember {
                target: Target::Guarded,
                name: format!("tollgate-h-paced-guarded-{tag}"),
                role: GatewayRole::Guarded,
                kind: "tollgate (scenario h, paced upstream, guarded)",
                cwd: None,
            },
        ],
        |_| Some(chat_stream),
        |_| {},
    )?;
    mock.stop();
    Ok(())
}

/// Scenario i: a fresh quiet gateway ([`GatewayRole::Quiet`]: no metrics, no access log) and a
/// fresh observed one ([`GatewayRole::Observed`]: metrics, and the JSON access log appended to
/// `access-<run>.log` in the scratch directory), both on the proxy CPU, each writing the usage
/// ledger to a store of its own; the throughput scenario's load to each and straight to the
/// mock, back to back in rotating order. Then, while both still run, `GET /metrics` on each
/// (404 from the quiet one, 200 from the observed one); once both have stopped, the lines of
/// the observed gateway's access log (the file is removed after) and what the quiet gateway
/// wrote that looks like an access log.
fn observability_run(
    env: &mut RunEnv,
    results: &mut Results,
    out: &mut RunResult,
) -> Result<(), BenchError> {
    let tag = env.tag();
    // Declared before the gateways so they are dropped (removed) after the gateways are
    // (stopped), on every path out of this function.
    let access_log = AccessLogFile::create(env.dir.join(format!("access-{tag}.log")))?;
    // The quiet gateway runs in an empty directory of its own, so that a log it should not
    // write there (`"off"` taken for a file name, say) shows.
    let quiet_cwd = StoreDir::create(env.dir.join(format!("observability-quiet-cwd-{tag}")))?;
    let mut checks = ObservabilityChecks::default();
    let [quiet, observed] = measure_gateway_pair(
        env,
        results,
        out,
        &Scenario::OBSERVABILITY,
        [
            PairMember {
                target: Target::Quiet,
                name: format!("tollgate-i-quiet-{tag}"),
                role: GatewayRole::Quiet,
                kind: "tollgate (scenario i, quiet)",
                cwd: Some(&quiet_cwd.path),
            },
            PairMember {
                target: Target::Observed,
                name: format!("tollgate-i-observed-{tag}"),
                role: GatewayRole::Observed {
                    access_log: access_log.path().to_path_buf(),
                },
                kind: "tollgate (scenario i, observed)",
                cwd: None,
            },
        ],
        |_| None,
        |[quiet, observed]| {
            // What the two configurations claim to switch, seen from outside.
            if let Ok(g) = quiet {
                checks.quiet_metrics = Some(get_status(g.addr, "/metrics"));
            }
            if let Ok(g) = observed {
                checks.observed_metrics = Some(get_status(g.addr, "/metrics"));
            }
        },
    )?;
    // Stopped: on SIGTERM the gateway waits for its log writer to drain the queue into the
    // file before it exits (one killed after the stop grace may have lost its last lines).
    if observed.is_ok() {
        checks.access_log = Some(
            access_log
                .read()
                .map_err(|e| format!("reading {}: {e}", access_log.path().display())),
        );
    }
    if let Ok(g) = &quiet {
        let stdio = [g.proc.stdout(), g.proc.stderr()];
        checks.quiet_access_lines = Some(stdio.iter().map(|t| observability::entries_in(t)).sum());
        checks.quiet_cwd_bytes = quiet_cwd.bytes();
    }
    out.observability = Some(checks);
    drop((quiet, observed));
    drop((access_log, quiet_cwd));
    Ok(())
}

/// A directory a gateway writes into (the governed gateway's store, or a gateway's own working
/// directory): created empty, removed (with everything the gateway wrote) on drop, also when
/// the run fails or is interrupted. Kept out of the scratch directory's fate: a failed run
/// keeps its logs, never a ledger.
#[derive(Debug)]
struct StoreDir {
    path: PathBuf,
}

impl StoreDir {
    fn create(path: PathBuf) -> Result<Self, BenchError> {
        if path.exists() {
            std::fs::remove_dir_all(&path)
                .map_err(|e| BenchError::io(format!("clearing {}", path.display()), e))?;
        }
        std::fs::create_dir_all(&path)
            .map_err(|e| BenchError::io(format!("creating {}", path.display()), e))?;
        Ok(Self { path })
    }

    /// Bytes of every file under the directory (`None` if it could not be read).
    fn bytes(&self) -> Option<u64> {
        fn walk(dir: &Path) -> std::io::Result<u64> {
            let mut total = 0;
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let meta = entry.metadata()?;
                total += if meta.is_dir() {
                    walk(&entry.path())?
                } else {
                    meta.len()
                };
            }
            Ok(total)
        }
        walk(&self.path).ok()
    }
}

impl Drop for StoreDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path) {
            eprintln!(
                "tollgate-bench: could not remove {}: {e}",
                self.path.display()
            );
        }
    }
}

// === impl Settings ===

impl Settings {
    fn spec(&self, scenario: Scenario) -> LoadSpec {
        let base = LoadSpec {
            connections: 1,
            rate: None,
            stream: false,
            duration: self.duration,
            warmup: self.warmup,
            request: RequestKind::OpenAi { model: MODEL },
        };
        match scenario {
            // g, h and i must be exactly a's load: their baseline gateways stand in for a's
            // Tollgate target (h's requests carry its own body; see `guardrails_run`).
            Scenario::Throughput
            | Scenario::Translation
            | Scenario::Governance
            | Scenario::Guardrails
            | Scenario::Observability => LoadSpec {
                connections: self.connections,
                ..base
            },
            Scenario::Latency => base,
            Scenario::OpenLoop => LoadSpec {
                connections: self.open_pool,
                rate: Some(self.rate),
                ..base
            },
            // h's paced load is exactly h's streaming load; only the mock differs.
            Scenario::Streaming
            | Scenario::TranslationStreaming
            | Scenario::GuardrailsStreaming
            | Scenario::GuardrailsStreamingPaced => LoadSpec {
                connections: self.stream_connections,
                stream: true,
                ..base
            },
        }
    }

    /// The bench mock's pacing: chunks [`Settings::mock_chunk_delay`] apart, the first at once.
    fn bench_mock(&self) -> MockPacing {
        MockPacing {
            chunks: self.mock_chunks,
            ttft: Duration::ZERO,
            chunk_delay: self.mock_chunk_delay,
        }
    }

    fn from_cli(cli: &Cli) -> Self {
        let quick = cli.quick;
        Settings {
            runs: if quick { 1 } else { cli.runs.max(1) },
            duration: if quick {
                Duration::from_secs(2)
            } else {
                cli.duration
            },
            warmup: if quick {
                Duration::from_millis(500)
            } else {
                cli.warmup
            },
            quick,
            idle_connections: if quick {
                cli.idle_connections.min(2_000)
            } else {
                cli.idle_connections
            },
            idle_goal_connections: 10_000,
            connections: cli.connections.max(1),
            rate: cli.rate.max(1),
            open_pool: 64,
            stream_connections: cli.stream_connections.max(1),
            mock_chunks: 16,
            mock_chunk_delay: Duration::from_millis(1),
            paced_mock: MockPacing {
                chunks: PACED_MOCK_CHUNKS,
                ttft: PACED_MOCK_TTFT,
                chunk_delay: PACED_MOCK_CHUNK_DELAY,
            },
            proxy_cpu: PROXY_CPU,
            client_cpu: CLIENT_CPU,
            only: selection(&cli.only),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("2500ms"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("5ms").is_err());
        assert!(parse_duration("ten").is_err());
    }

    #[test]
    fn gateway_config_is_valid_toml() {
        let ledger = PathBuf::from("/tmp/tollgate-bench-1/tollgate-run1-store");
        let conf = gateway_config(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            30_000,
            &GatewayRole::PassThrough,
            &ledger,
        );
        let config = tollgate_config::Config::from_toml_str(&conf, &|_| None).unwrap();
        assert_eq!(config.server.workers, 1);
        assert_eq!(config.server.max_connections_per_worker, 30_000);
        assert!(config.model(MODEL).is_some());
        assert!(config.model(TRANSLATED_MODEL).is_none());
        assert_eq!(
            config.store.path, ledger,
            "the ledger goes to the scratch directory"
        );
    }

    #[test]
    fn translation_config_is_valid_toml() {
        let ledger = PathBuf::from("/tmp/tollgate-bench-1/tollgate-translation-store");
        let conf = gateway_config(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            30_000,
            &GatewayRole::Translation,
            &ledger,
        );
        let config = tollgate_config::Config::from_toml_str(&conf, &|_| None).unwrap();
        assert_eq!(config.server.workers, 1);
        assert!(config.model(MODEL).is_some());
        assert!(config.model(TRANSLATED_MODEL).is_some());
        assert_eq!(config.providers.len(), 2);
        assert_eq!(config.store.path, ledger);
        assert!(
            config.prices.iter().any(|p| p.model == TRANSLATED_MODEL),
            "the translated model is priced, so no request is flagged price_unknown"
        );
    }

    #[test]
    fn governed_config_is_valid_toml() {
        use tollgate_config::governance::{BudgetPeriod, NANOS_PER_USD};

        // A path that needs escaping in TOML, to check it survives the round trip.
        let store = PathBuf::from("/tmp/tollgate-bench-1/governance \"store\" run1");
        let conf = gateway_config(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            30_000,
            &GatewayRole::Governed {
                store: store.clone(),
            },
            Path::new("/unused: the governed role names its store"),
        );
        let config = tollgate_config::Config::from_toml_str(&conf, &|_| None).unwrap();
        assert_eq!(config.server.workers, 1);
        assert_eq!(config.server.max_connections_per_worker, 30_000);
        assert!(config.model(MODEL).is_some());
        assert_eq!(config.store.path, store);
        assert_eq!(config.store.flush_interval, Duration::from_millis(200));

        assert_eq!(config.orgs.len(), 1);
        assert_eq!(config.teams.len(), 1);
        let team = &config.teams[0];
        assert_eq!(team.name, "bench");
        assert_eq!(team.org.as_deref(), Some("bench-org"));
        assert_eq!(team.limits.rpm, Some(GOVERNED_RPM));
        assert_eq!(team.limits.tpm, Some(GOVERNED_TPM));
        assert_eq!(team.limits.budgets.len(), 1);
        assert_eq!(team.limits.budgets[0].amount, 1_000_000 * NANOS_PER_USD);
        assert_eq!(team.limits.budgets[0].period, BudgetPeriod::Month);
        assert!(!team.limits.budgets[0].soft);

        // The key the load generator sends is the governed one, and it is the only key.
        assert_eq!(config.keys.len(), 1);
        let key = &config.keys[0];
        assert_eq!(key.key.expose(), loadgen::DEMO_KEY);
        assert_eq!(key.owner.team.as_deref(), Some("bench"));
        assert_eq!(key.limits.rpm, Some(GOVERNED_RPM));
        assert_eq!(key.limits.tpm, Some(GOVERNED_TPM));

        assert_eq!(config.prices.len(), 1);
        assert_eq!(config.prices[0].model, MODEL);
        assert!(config.prices[0].input > 0 && config.prices[0].output > 0);
    }

    #[test]
    fn guarded_config_is_the_plain_one_plus_the_default_profile() {
        use tollgate_config::guardrails::{Detector, GuardAction};

        let ledger = PathBuf::from("/tmp/tollgate-bench-1/tollgate-h-guarded-run1-store");
        let (listen, mock) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let conf = gateway_config(listen, mock, 30_000, &GatewayRole::Guarded, &ledger);
        let plain = gateway_config(listen, mock, 30_000, &GatewayRole::PassThrough, &ledger);
        assert!(
            conf.starts_with(&plain),
            "the plain configuration, unchanged"
        );

        let config = tollgate_config::Config::from_toml_str(&conf, &|_| None).unwrap();
        assert_eq!(config.server.workers, 1);
        assert_eq!(config.server.max_connections_per_worker, 30_000);
        assert!(config.model(MODEL).is_some());
        assert_eq!(config.keys.len(), 1);
        assert_eq!(config.keys[0].key.expose(), loadgen::DEMO_KEY);
        assert_eq!(
            config.keys[0].guardrails, None,
            "the default profile applies"
        );
        assert_eq!(
            config.store.path, ledger,
            "the guarded gateway writes the ledger"
        );

        let g = &config.guardrails;
        assert_eq!(g.default_profile.as_deref(), Some("default"));
        assert_eq!(g.profiles.len(), 1);
        let profile = &g.profiles[0];
        assert_eq!(profile.name, "default");
        assert!(profile.restore_masked);
        assert_eq!(profile.allow, ["support@example.com"]);
        let rules: Vec<(&str, &Detector, GuardAction, bool, bool)> = profile
            .rules
            .iter()
            .map(|r| (r.id.as_str(), &r.detector, r.action, r.input, r.output))
            .collect();
        assert_eq!(
            rules,
            [
                (
                    "prompt-injection",
                    &Detector::PromptInjection,
                    GuardAction::Block,
                    true,
                    true
                ),
                (
                    "payment-cards",
                    &Detector::PaymentCard,
                    GuardAction::Block,
                    true,
                    true
                ),
                ("emails", &Detector::Email, GuardAction::Mask, true, true),
                ("phones", &Detector::Phone, GuardAction::Mask, true, true),
                (
                    "secrets",
                    &Detector::Secrets,
                    GuardAction::Block,
                    true,
                    true
                ),
            ]
        );

        // The same profile as the example's default one, as the config parser reads both.
        let example_path = workspace_root().join("config/examples/guardrails.toml");
        let example = std::fs::read_to_string(&example_path).unwrap();
        let example = tollgate_config::Config::from_toml_str(&example, &|name| match name {
            "UPSTREAM_BASE_URL" => Some("http://127.0.0.1:2/v1".into()),
            "TOLLGATE_MASTER_KEY" => Some("master-key-for-tests-0123456789".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(config.guardrails, example.guardrails);
    }

    #[test]
    fn quiet_and_observed_configs_are_the_plain_one_plus_server_lines() {
        use tollgate_config::AccessLog;

        let ledger = PathBuf::from("/tmp/tollgate-bench-1/tollgate-i-run1-store");
        // A path that needs escaping in TOML, to check it survives the round trip.
        let access_log = PathBuf::from("/tmp/tollgate-bench-1/access \"run1\".log");
        let (listen, mock) = (
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        let plain = gateway_config(listen, mock, 30_000, &GatewayRole::PassThrough, &ledger);
        let quiet = gateway_config(listen, mock, 30_000, &GatewayRole::Quiet, &ledger);
        let observed_role = GatewayRole::Observed {
            access_log: access_log.clone(),
        };
        let observed = gateway_config(listen, mock, 30_000, &observed_role, &ledger);
        let observed_lines = observability::observed_server_lines(&access_log);

        // Only the added lines differ, and they are in the one `[server]` table, after its
        // last plain key.
        let after = "max_connections_per_worker = 30000\n";
        assert_eq!(
            quiet,
            plain.replace(after, &format!("{after}{QUIET_SERVER_LINES}"))
        );
        assert_eq!(
            observed,
            plain.replace(after, &format!("{after}{observed_lines}"))
        );
        for conf in [&plain, &quiet, &observed] {
            assert_eq!(conf.matches("[server]").count(), 1, "{conf}");
        }

        let parse = |conf: &str| tollgate_config::Config::from_toml_str(conf, &|_| None).unwrap();
        let (plain, quiet, observed) = (parse(&plain), parse(&quiet), parse(&observed));
        assert!(plain.server.metrics, "metrics are on by default");
        assert_eq!(plain.server.access_log, AccessLog::Off);
        assert!(!quiet.server.metrics);
        assert_eq!(quiet.server.access_log, AccessLog::Off);
        assert!(observed.server.metrics);
        assert_eq!(observed.server.access_log, AccessLog::File(access_log));
        for config in [&quiet, &observed] {
            assert_eq!(config.server.listen, plain.server.listen);
            assert_eq!(config.server.workers, 1);
            assert_eq!(config.server.max_connections_per_worker, 30_000);
            assert!(config.model(MODEL).is_some());
            assert_eq!(config.keys.len(), 1);
            assert_eq!(config.keys[0].key.expose(), loadgen::DEMO_KEY);
            assert_eq!(config.store.path, ledger);
            assert!(config.prices.is_empty() && config.teams.is_empty());
        }
    }

    #[test]
    fn governed_store_is_removed_on_drop() {
        let base = std::env::temp_dir().join(format!("tollgate-bench-test-{}", std::process::id()));
        let store = StoreDir::create(base.join("store")).unwrap();
        std::fs::create_dir_all(store.path.join("db")).unwrap();
        std::fs::write(store.path.join("db").join("ledger"), [0u8; 100]).unwrap();
        assert_eq!(store.bytes(), Some(100));
        let path = store.path.clone();
        drop(store);
        assert!(!path.exists());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn scenario_selection() {
        let cli = Cli::try_parse_from(["tollgate-bench", "--only", "g"]).unwrap();
        let settings = Settings::from_cli(&cli);
        assert_eq!(settings.only.as_deref(), Some("g"));
        assert!(settings.includes('g'));
        assert!(!settings.includes('a') && !settings.includes('e') && !settings.includes('f'));

        let cli =
            Cli::try_parse_from(["tollgate-bench", "--scenarios", "g,A", "--only", "g"]).unwrap();
        assert_eq!(Settings::from_cli(&cli).only.as_deref(), Some("a,g"));

        // Default, and every letter named: everything runs.
        for args in [
            &["tollgate-bench"][..],
            &["tollgate-bench", "--only", "a,b,c,d,e,f,g,h,i"][..],
        ] {
            let settings = Settings::from_cli(&Cli::try_parse_from(args).unwrap());
            assert_eq!(settings.only, None);
            assert!(SCENARIO_LETTERS.chars().all(|c| settings.includes(c)));
        }
        let settings =
            Settings::from_cli(&Cli::try_parse_from(["tollgate-bench", "--only", "H"]).unwrap());
        assert_eq!(settings.only.as_deref(), Some("h"));
        assert!(settings.includes('h') && !settings.includes('g'));
        let settings =
            Settings::from_cli(&Cli::try_parse_from(["tollgate-bench", "--only", "i"]).unwrap());
        assert_eq!(settings.only.as_deref(), Some("i"));
        assert!(settings.includes('i') && !settings.includes('h') && !settings.includes('a'));
        let err = Cli::try_parse_from(["tollgate-bench", "--only", "j"]).unwrap_err();
        assert!(err.to_string().contains("a to i"), "{err}");
        assert!(Cli::try_parse_from(["tollgate-bench", "--only", "ab"]).is_err());
    }

    #[test]
    fn governance_load_is_the_throughput_load() {
        let settings = Settings::from_cli(&Cli::try_parse_from(["tollgate-bench"]).unwrap());
        let a = settings.spec(Scenario::Throughput);
        let g = settings.spec(Scenario::Governance);
        assert_eq!(format!("{a:?}"), format!("{g:?}"));
        assert_eq!(g.connections, 64);
        assert!(!g.stream);
    }

    #[test]
    fn observability_load_is_the_throughput_load() {
        let settings = Settings::from_cli(&Cli::try_parse_from(["tollgate-bench"]).unwrap());
        let a = settings.spec(Scenario::Throughput);
        let i = settings.spec(Scenario::Observability);
        assert_eq!(format!("{a:?}"), format!("{i:?}"));
        assert_eq!(i.connections, 64);
        assert!(!i.stream);
        assert_eq!(Scenario::OBSERVABILITY.map(Scenario::letter), ['i']);
        assert_eq!(
            Scenario::Observability.targets(),
            [Target::Direct, Target::Quiet, Target::Observed]
        );
    }

    #[test]
    fn guardrails_loads_are_the_throughput_and_streaming_loads() {
        let settings = Settings::from_cli(&Cli::try_parse_from(["tollgate-bench"]).unwrap());
        let pairs = [
            (Scenario::Throughput, Scenario::Guardrails),
            (Scenario::Streaming, Scenario::GuardrailsStreaming),
        ];
        for (base, h) in pairs {
            let (base, h) = (settings.spec(base), settings.spec(h));
            assert_eq!(format!("{base:?}"), format!("{h:?}"));
        }
        assert!(!settings.spec(Scenario::Guardrails).stream);
        assert!(settings.spec(Scenario::GuardrailsStreaming).stream);
        assert_eq!(settings.spec(Scenario::GuardrailsStreaming).connections, 16);
        assert_eq!(
            Scenario::GUARDRAILS.map(Scenario::letter),
            ['h', 'h'],
            "`--only h` runs both"
        );
    }

    #[test]
    fn guardrails_paced_load_is_the_streaming_load_against_the_paced_mock() {
        let cli = Cli::try_parse_from(["tollgate-bench", "--duration", "5s"]).unwrap();
        let settings = Settings::from_cli(&cli);
        let (h, paced) = (
            settings.spec(Scenario::GuardrailsStreaming),
            settings.spec(Scenario::GuardrailsStreamingPaced),
        );
        assert_eq!(format!("{h:?}"), format!("{paced:?}"));
        assert!(paced.stream);
        assert_eq!(paced.connections, 16);
        assert_eq!(
            paced.duration,
            Duration::from_secs(5),
            "--duration as given"
        );
        assert_eq!(
            Scenario::GUARDRAILS_PACED.map(Scenario::letter),
            ['h'],
            "`--only h` runs it"
        );
        assert!(Scenario::GuardrailsStreamingPaced.is_stream());
        assert_eq!(
            Scenario::GuardrailsStreamingPaced.targets(),
            [Target::Direct, Target::Plain, Target::Guarded]
        );

        // The paced mock, and the bench mock's arguments as they always were.
        let addr: SocketAddr = "127.0.0.1:9".parse().unwrap();
        assert_eq!(
            mock_args(addr, settings.paced_mock).join(" "),
            "--listen 127.0.0.1:9 --threads 1 --chunks 16 --chunk-delay 20ms --ttft 300ms"
        );
        assert_eq!(
            mock_args(addr, settings.bench_mock()).join(" "),
            "--listen 127.0.0.1:9 --threads 1 --chunks 16 --chunk-delay 1ms --ttft 0ms"
        );
    }

    #[test]
    fn anthropic_body_is_a_messages_request() {
        let body: serde_json::Value = serde_json::from_str(ANTHROPIC_BODY).unwrap();
        assert_eq!(body["model"], TRANSLATED_MODEL);
        assert_eq!(body["max_tokens"], 64);
        assert_eq!(body["messages"][0]["role"], "user");
        assert!(body.get("stream").is_none());
    }

    #[test]
    fn progress_lines() {
        let failed: Outcome = Err("connection refused".into());
        assert_eq!(
            progress_line(Scenario::OpenLoop, Target::Nginx, &failed),
            "tollgate-bench:   open-loop   nginx    FAILED: connection refused"
        );
        assert_eq!(
            progress_line(Scenario::GuardrailsStreaming, Target::Guarded, &failed),
            "tollgate-bench:   guardrails-stream  guarded          FAILED: connection refused"
        );
        assert_eq!(
            progress_line(Scenario::GuardrailsStreamingPaced, Target::Plain, &failed),
            "tollgate-bench:   guardrails-paced   plain            FAILED: connection refused"
        );
    }

    #[test]
    fn failed_starts_are_outcomes_and_interrupts_stop_the_run() {
        assert!(matches!(started(Ok(7)), Ok(Ok(7))));
        match started::<()>(Err(BenchError::Failed("port in use".into()))) {
            Ok(Err(e)) => assert_eq!(e, "port in use"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            started::<()>(Err(BenchError::Interrupted)),
            Err(BenchError::Interrupted)
        ));
    }

    #[test]
    fn driver_from_log() {
        let log = "2026-11-21T14:00:00Z  INFO tollgate_engine: tollgate listening addr=127.0.0.1:1 workers=1 driver=\"io_uring\"\n";
        assert_eq!(logged_driver(log).as_deref(), Some("io_uring"));
        let colored = "\x1b[32m INFO\x1b[0m tollgate listening \x1b[3maddr\x1b[0m\x1b[2m=\x1b[0m127.0.0.1:1 \x1b[3mdriver\x1b[0m\x1b[2m=\x1b[0m\"legacy\"";
        assert_eq!(logged_driver(colored).as_deref(), Some("legacy"));
        assert_eq!(logged_driver("nothing"), None);
    }
}
