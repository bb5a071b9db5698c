//! Config reload (SIGHUP and `POST /admin/reload`), prepare-then-commit. One thread, the
//! reloader, runs reloads one at a time: it reads and validates the file, compiles it (TLS
//! clients, guardrail automata, DNS), has every core build its per-core state for it (phase
//! one, `Control::Prepare`), then on the storage thread re-reads the identities the file
//! declares, compiles the key directory for them and tells every core to switch (phase two,
//! `Control::Commit`). Any failure before the commit leaves the running config untouched and
//! reports every error found. Requests already running finish under the generation they
//! started with; nothing is closed or refused by a reload.
//!
//! Settings the running process cannot change in place (listen address, worker count, I/O
//! driver, metrics on/off, access-log target, store, reconcile interval) keep their running
//! values; a reload that changes them says so in `not_applied` and the log.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use serde_json::{json, Value};
use tollgate_config::{Config, ConfigError, ConfigErrors};

use crate::governor::Governance;
use crate::shared::{BuildError, Shared};
use crate::worker::Control;

/// Reads, interpolates and validates the config again (the file the gateway started from, with
/// the command line's overrides applied).
pub type ConfigSource = Box<dyn FnMut() -> Result<Config, ConfigErrors> + Send>;

/// How long every core gets to build a prepared generation (each looks at its control channel
/// every 25 ms).
const PREPARE_DEADLINE: Duration = Duration::from_secs(10);

/// How long the storage thread gets to re-read identities and compile the directory.
const COMMIT_DEADLINE: Duration = Duration::from_secs(30);

/// What a reload changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    /// The generation now in force (0 is the config the gateway started with).
    pub generation: u64,
    /// Settings that differ in the file but need a restart; their running values were kept.
    pub not_applied: Vec<String>,
    /// Providers in the new config.
    pub providers: usize,
    /// Client-facing models in the new config.
    pub models: usize,
}

impl ReloadReport {
    /// The `POST /admin/reload` answer.
    pub fn to_json(&self) -> Value {
        json!({
            "reloaded": true,
            "generation": self.generation,
            "providers": self.providers,
            "models": self.models,
            "not_applied": self.not_applied,
        })
    }
}

/// Why a reload did not happen. The running config is unchanged in every case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReloadError {
    /// The gateway was started from a config value, not a file, so there is nothing to reread.
    #[error("this gateway was not started from a config file; nothing to reload")]
    Unavailable,
    /// The new config is invalid: every problem found.
    #[error("the new config is invalid ({} problems); the running config is unchanged", .0.len())]
    Invalid(ConfigErrors),
    /// A core did not build its state in time, or the storage thread did not answer.
    #[error("{0}; the running config is unchanged")]
    Stalled(String),
    /// The gateway is shutting down.
    #[error("the gateway is shutting down")]
    Stopping,
}

impl ReloadError {
    /// HTTP status for the admin API.
    pub fn status(&self) -> u16 {
        match self {
            ReloadError::Unavailable => 409,
            ReloadError::Invalid(_) => 400,
            ReloadError::Stalled(_) | ReloadError::Stopping => 503,
        }
    }

    /// Machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ReloadError::Unavailable => "reload_unavailable",
            ReloadError::Invalid(_) => "invalid_config",
            ReloadError::Stalled(_) => "reload_stalled",
            ReloadError::Stopping => "shutting_down",
        }
    }

    /// The OpenAI-style error body; an invalid config lists every error with its key path
    /// under `error.errors` (and the first path as `param`).
    pub fn to_json(&self) -> Value {
        let (param, errors) = match self {
            ReloadError::Invalid(errors) => (
                errors.iter().next().map(|e| e.path.clone()),
                errors
                    .iter()
                    .map(|e| json!({"path": e.path, "message": e.message}))
                    .collect(),
            ),
            _ => (None, Vec::new()),
        };
        let mut message = self.to_string();
        if let ReloadError::Invalid(errors) = self {
            for e in errors {
                message.push('\n');
                message.push_str(&e.to_string());
            }
        }
        json!({"error": {
            "message": message,
            "type": if self.status() == 400 { "invalid_request_error" } else { "server_error" },
            "param": param,
            "code": self.code(),
            "errors": errors,
        }})
    }
}

/// Reload outcomes, for `/metrics` (written by the reloader thread, read by scrapes).
#[derive(Debug)]
pub struct ReloadStats {
    generation: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    last_succeeded: AtomicBool,
    /// Unix seconds of the last successful reload (of the start, before any).
    last_success_unix: AtomicU64,
}

/// A copy of [`ReloadStats`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadCounts {
    /// Generation in force (0: the config the gateway started with).
    pub generation: u64,
    /// Reloads that took effect.
    pub succeeded: u64,
    /// Reloads refused or failed (the running config was kept).
    pub failed: u64,
    /// Whether the last reload (if any) took effect.
    pub last_succeeded: bool,
    /// Unix seconds of the last successful reload, or of the start.
    pub last_success_unix: u64,
}

impl ReloadStats {
    /// Nothing reloaded yet; the config in force was loaded at `started_unix`.
    pub fn new(started_unix: u64) -> Self {
        ReloadStats {
            generation: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            last_succeeded: AtomicBool::new(true),
            last_success_unix: AtomicU64::new(started_unix),
        }
    }

    /// A copy of the counts.
    pub fn counts(&self) -> ReloadCounts {
        ReloadCounts {
            generation: self.generation.load(Ordering::Relaxed),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            last_succeeded: self.last_succeeded.load(Ordering::Relaxed),
            last_success_unix: self.last_success_unix.load(Ordering::Relaxed),
        }
    }

    fn record(&self, outcome: &Result<ReloadReport, ReloadError>, now_unix: u64) {
        match outcome {
            Ok(report) => {
                self.generation.store(report.generation, Ordering::Relaxed);
                self.succeeded.fetch_add(1, Ordering::Relaxed);
                self.last_success_unix.store(now_unix, Ordering::Relaxed);
                self.last_succeeded.store(true, Ordering::Relaxed);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.last_succeeded.store(false, Ordering::Relaxed);
            }
        }
    }
}

type Reply = Sender<Result<ReloadReport, ReloadError>>;

/// Asks the reloader for a reload; cheap to clone (one per core).
#[derive(Debug, Clone)]
pub struct ReloadHandle {
    requests: Option<Sender<Reply>>,
}

// === impl ReloadHandle ===

impl ReloadHandle {
    /// A handle for a gateway that cannot reload (started without a config source).
    pub fn unavailable() -> Self {
        ReloadHandle { requests: None }
    }

    /// Queue a reload; its outcome arrives on the returned channel.
    pub fn request(&self) -> Receiver<Result<ReloadReport, ReloadError>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        match &self.requests {
            None => {
                let _ = tx.send(Err(ReloadError::Unavailable));
            }
            Some(requests) => {
                if let Err(e) = requests.send(tx) {
                    let _ = e.into_inner().send(Err(ReloadError::Stopping));
                }
            }
        }
        rx
    }

    /// Reload and wait for the outcome (blocks: not for a worker thread).
    pub fn reload(&self) -> Result<ReloadReport, ReloadError> {
        self.request().recv().unwrap_or(Err(ReloadError::Stopping))
    }
}

/// The reloader's state: the running config and how to reach every core.
struct Reloader {
    source: ConfigSource,
    current: Arc<Shared>,
    generation: u64,
    controls: Vec<Sender<Control>>,
    gov: Arc<Governance>,
}

/// Start the reloader thread. It exits once every [`ReloadHandle`] is dropped.
pub fn spawn(
    source: Option<ConfigSource>,
    current: Arc<Shared>,
    controls: Vec<Sender<Control>>,
    gov: Arc<Governance>,
    stats: Arc<ReloadStats>,
) -> std::io::Result<(ReloadHandle, Option<JoinHandle<()>>)> {
    let Some(source) = source else {
        return Ok((ReloadHandle::unavailable(), None));
    };
    let (tx, rx) = crossbeam_channel::unbounded::<Reply>();
    let mut reloader = Reloader {
        source,
        current,
        generation: 0,
        controls,
        gov,
    };
    let thread = std::thread::Builder::new()
        .name("tollgate-reload".into())
        .spawn(move || {
            while let Ok(reply) = rx.recv() {
                let started = Instant::now();
                let outcome = reloader.reload();
                match &outcome {
                    Ok(report) => tracing::info!(
                        generation = report.generation,
                        not_applied = ?report.not_applied,
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "config reloaded"
                    ),
                    Err(ReloadError::Invalid(errors)) => {
                        tracing::error!("config reload refused; the running config is unchanged");
                        for e in errors {
                            tracing::error!(path = %e.path, "{}", e.message);
                        }
                    }
                    Err(e) => tracing::error!(%e, "config reload failed"),
                }
                stats.record(&outcome, crate::governor::now_ms() / 1000);
                let _ = reply.send(outcome);
            }
        })?;
    Ok((ReloadHandle { requests: Some(tx) }, Some(thread)))
}

// === impl Reloader ===

impl Reloader {
    fn reload(&mut self) -> Result<ReloadReport, ReloadError> {
        let mut config = (self.source)().map_err(ReloadError::Invalid)?;
        let not_applied = keep_restart_settings(&mut config, &self.current.config);
        let shared = Shared::build(config).map_err(|e| ReloadError::Invalid(build_errors(e)))?;
        let number = self.generation + 1;

        // Phase one: every core builds its state for the new generation and holds it.
        let (ready_tx, ready_rx) = crossbeam_channel::unbounded();
        for tx in &self.controls {
            let prepare = Control::Prepare {
                number,
                shared: shared.clone(),
                ready: ready_tx.clone(),
            };
            if tx.send(prepare).is_err() {
                self.abort(number);
                return Err(ReloadError::Stopping);
            }
        }
        drop(ready_tx);
        let deadline = Instant::now() + PREPARE_DEADLINE;
        let mut ready = 0;
        while ready < self.controls.len() {
            let wait = deadline.saturating_duration_since(Instant::now());
            match ready_rx.recv_timeout(wait) {
                Ok(()) => ready += 1,
                Err(_) => {
                    self.abort(number);
                    return Err(ReloadError::Stalled(format!(
                        "{} of {} workers did not prepare the new config within {:?}",
                        self.controls.len() - ready,
                        self.controls.len(),
                        PREPARE_DEADLINE
                    )));
                }
            }
        }

        // Phase two, on the storage thread (where admin changes run, so none interleaves):
        // the identities under the new config, then the switch on every core.
        let gov = self.gov.clone();
        let for_store = shared.clone();
        let (done_tx, done_rx) = crossbeam_channel::unbounded();
        let reply = self
            .gov
            .storage
            .call(move |store| gov.reload(store, &for_store.config, number, &done_tx));
        let told = match reply.recv_timeout(COMMIT_DEADLINE) {
            Ok(Ok(told)) => told,
            Ok(Err(errors)) => {
                self.abort(number);
                return Err(ReloadError::Invalid(errors));
            }
            Err(_) => {
                self.abort(number);
                return Err(ReloadError::Stalled(
                    "the storage thread did not answer".into(),
                ));
            }
        };
        // The switch is made; answer once every core serves the new generation, so a client
        // that reloads and then sends a request sees the new config.
        let deadline = Instant::now() + PREPARE_DEADLINE;
        for _ in 0..told {
            let wait = deadline.saturating_duration_since(Instant::now());
            if done_rx.recv_timeout(wait).is_err() {
                tracing::warn!(number, "a worker has not confirmed the switch yet");
                break;
            }
        }
        self.generation = number;
        let report = ReloadReport {
            generation: number,
            not_applied,
            providers: shared.config.providers.len(),
            models: shared.config.models.len(),
        };
        self.current = shared;
        Ok(report)
    }

    fn abort(&self, number: u64) {
        for tx in &self.controls {
            let _ = tx.send(Control::Abort { number });
        }
    }
}

/// Put the running values back into `new` for every setting a reload cannot change, and name
/// those that differed.
fn keep_restart_settings(new: &mut Config, running: &Config) -> Vec<String> {
    let mut kept = Vec::new();
    macro_rules! keep {
        ($($field:ident).+) => {
            if new.$($field).+ != running.$($field).+ {
                kept.push(stringify!($($field).+).replace(' ', ""));
                new.$($field).+ = running.$($field).+.clone();
            }
        };
    }
    keep!(server.listen);
    keep!(server.workers);
    keep!(server.io_driver);
    keep!(server.metrics);
    keep!(server.access_log);
    keep!(server.shutdown_grace);
    keep!(store);
    keep!(governance.reconcile_interval);
    if !kept.is_empty() {
        tracing::warn!(
            settings = ?kept,
            "these settings changed in the file but need a restart; running values kept"
        );
    }
    kept
}

/// A compile failure as config errors (with the key path the build error names).
fn build_errors(e: BuildError) -> ConfigErrors {
    let path = match &e {
        BuildError::Tls { index, .. } => format!("providers[{index}]"),
        BuildError::Guardrails(_) => "guardrails".to_owned(),
    };
    ConfigErrors::from(ConfigError::new(path, e.to_string()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::from_toml_str(text, &|_| None).unwrap()
    }

    const BASE: &str = r#"
        [server]
        listen = "127.0.0.1:0"
        workers = 1
        [[providers]]
        name = "mock"
        kind = "mock"
        [[models]]
        name = "m"
        deployments = [{ provider = "mock", model = "m" }]
    "#;

    #[test]
    fn restart_settings_keep_their_running_values_and_are_named() {
        let running = config(BASE);
        let text = BASE.replace("127.0.0.1:0", "127.0.0.1:9999").replace(
            "workers = 1",
            "workers = 2\nmetrics = false\nmax_body_bytes = 1024",
        );
        let mut new = config(&text);
        let kept = keep_restart_settings(&mut new, &running);
        assert_eq!(kept, ["server.listen", "server.workers", "server.metrics"]);
        assert_eq!(new.server.listen, running.server.listen);
        assert_eq!(new.server.workers, 1);
        assert!(new.server.metrics);
        // A reloadable setting is taken from the file.
        assert_eq!(new.server.max_body_bytes, 1024);
    }

    #[test]
    fn an_unchanged_file_keeps_nothing() {
        let running = config(BASE);
        let mut new = config(BASE);
        assert!(keep_restart_settings(&mut new, &running).is_empty());
    }

    #[test]
    fn invalid_config_renders_every_error_with_its_path() {
        let errors = ConfigErrors {
            errors: vec![
                ConfigError::new("models[0].deployments[0].provider", "unknown provider `x`"),
                ConfigError::new("server.listen", "not an address"),
            ],
        };
        let e = ReloadError::Invalid(errors);
        assert_eq!(e.status(), 400);
        let body = e.to_json();
        assert_eq!(body["error"]["code"], "invalid_config");
        assert_eq!(body["error"]["param"], "models[0].deployments[0].provider");
        assert_eq!(body["error"]["errors"].as_array().unwrap().len(), 2);
        assert_eq!(body["error"]["errors"][1]["path"], "server.listen");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("server.listen: not an address"),
            "{message}"
        );
    }

    #[test]
    fn a_gateway_without_a_source_says_reload_is_unavailable() {
        let handle = ReloadHandle::unavailable();
        assert_eq!(handle.reload(), Err(ReloadError::Unavailable));
        assert_eq!(ReloadError::Unavailable.status(), 409);
    }
}
