//! Tollgate's engine: the runtime bootstrap and the request path. `Gateway::start` compiles a
//! validated config, binds one `SO_REUSEPORT` listener per worker, and starts the workers, each
//! pinned to one CPU of the process's allowed set and running its own monoio runtime (io_uring,
//! or the legacy epoll driver where io_uring cannot be set up). Workers share nothing mutable;
//! the control side reaches them through channels and reads their atomics.

pub mod access_log;
pub mod admin;
pub mod builtin_mock;
pub mod conn;
mod dashboard;
pub mod error;
pub mod governor;
mod guard;
pub mod io;
pub mod manage;
pub mod metrics;
pub mod pipeline;
pub mod reload;
pub mod router;
pub mod shared;
pub mod storage;
pub mod store;
pub mod trace;
pub mod translate;
pub mod upstream;
pub mod worker;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;
use monoio::time::TimeDriver;
use monoio::{FusionRuntime, IoUringDriver, LegacyDriver, RuntimeBuilder};
use tollgate_config::{Config, IoDriver};

pub use crate::error::GatewayError;
use crate::reload::{ConfigSource, ReloadHandle};
pub use crate::shared::{BuildError, Shared};
use crate::worker::{Control, CoreState, Generation};
pub use crate::worker::{Driver, WorkerStatus};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config could not be compiled.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// Binding a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The access log's file could not be opened.
    #[error("access log: {0}")]
    AccessLog(std::io::Error),
    /// The store could not be opened or read.
    #[error("store {path}: {reason}")]
    Store {
        /// The store directory.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// A stored identity does not fit the config (e.g. it names a guardrails profile the file
    /// does not declare).
    #[error("the stored identities do not fit this config:\n{0}")]
    Identities(tollgate_config::ConfigErrors),
    /// The reloader thread could not start.
    #[error("cannot start the reloader thread: {0}")]
    Reloader(std::io::Error),
    /// A worker could not start its runtime.
    #[error("worker {worker}: {reason}")]
    Worker {
        /// Worker index.
        worker: usize,
        /// Why.
        reason: String,
    },
}

/// io_uring submission queue size per worker.
const URING_ENTRIES: u32 = 4096;

/// Listen backlog per worker socket.
const BACKLOG: i32 = 4096;

/// A random non-zero seed for worker `id`'s span ids (distinct per worker even if the system
/// random source failed).
fn span_seed(id: usize) -> u64 {
    let mut bytes = [0u8; 8];
    let _ = getrandom::getrandom(&mut bytes);
    (u64::from_le_bytes(bytes) ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)) | 1
}

/// A running gateway: its workers and the handles to stop them.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    controls: Vec<Sender<Control>>,
    threads: Vec<JoinHandle<()>>,
    statuses: Vec<Arc<WorkerStatus>>,
    grace: Duration,
    gov: Arc<governor::Governance>,
    storage_thread: Option<JoinHandle<()>>,
    reconciler: Option<(Arc<std::sync::atomic::AtomicBool>, JoinHandle<()>)>,
    access_writer: Option<access_log::AccessLogWriter>,
    reloader: ReloadHandle,
    reload_thread: Option<JoinHandle<()>>,
}

// === impl Gateway ===

impl Gateway {
    /// Compile `config` and start serving. Returns once every worker is accepting. A gateway
    /// started this way cannot reload (there is no file to reread): see [`Gateway::start_with`].
    pub fn start(config: Config) -> Result<Gateway, StartError> {
        Self::start_with(config, None)
    }

    /// Like [`Gateway::start`], with where a reload rereads the config from (SIGHUP,
    /// `POST /admin/reload`).
    pub fn start_with(config: Config, source: Option<ConfigSource>) -> Result<Gateway, StartError> {
        let grace = config.server.shutdown_grace;
        let io_driver = config.server.io_driver;
        let requested = config.server.listen;
        let shared = Shared::build(config)?;
        let cpus = allowed_cpus();
        let workers = match shared.config.server.workers {
            0 => cpus.len().max(1),
            n => n,
        };
        let listeners = bind_listeners(requested, workers)?;
        let (gov, storage_thread) = open_governance(&shared.config, workers)?;
        let reconciler = spawn_reconciler(gov.clone(), shared.config.governance.reconcile_interval);
        let addr = listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .unwrap_or(requested);

        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Driver, String>>();
        let mut controls = Vec::with_capacity(workers);
        let mut threads = Vec::with_capacity(workers);
        let statuses: Vec<Arc<WorkerStatus>> = (0..workers)
            .map(|_| Arc::new(WorkerStatus::default()))
            .collect();
        let (access, access_writer) =
            access_log::start(&shared.config.server.access_log).map_err(StartError::AccessLog)?;
        let reload_stats = Arc::new(reload::ReloadStats::new(governor::now_ms() / 1000));
        let telemetry = Arc::new(metrics::Telemetry::new(
            &statuses,
            access.clone(),
            reload_stats.clone(),
        ));
        let channels: Vec<_> = (0..workers)
            .map(|_| crossbeam_channel::unbounded::<Control>())
            .collect();
        let (reloader, reload_thread) = reload::spawn(
            source,
            shared.clone(),
            channels.iter().map(|(tx, _)| tx.clone()).collect(),
            gov.clone(),
            reload_stats,
        )
        .map_err(StartError::Reloader)?;
        for ((id, listener), (tx, rx)) in listeners.into_iter().enumerate().zip(channels) {
            let status = statuses[id].clone();
            let telemetry = telemetry.clone();
            let access = access.clone();
            let cpu = cpus.get(id % cpus.len().max(1)).copied();
            let shared = shared.clone();
            let gov = gov.clone();
            let reloader = reloader.clone();
            gov.subscribe(tx.clone());
            let ready = ready_tx.clone();
            let worker_status = status.clone();
            let thread = std::thread::Builder::new()
                .name(format!("tollgate-w{id}"))
                .spawn(move || {
                    if let Some(cpu) = cpu {
                        pin_to_cpu(cpu);
                    }
                    let mut runtime = match build_runtime(io_driver) {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = ready.send(Err(e));
                            return;
                        }
                    };
                    let driver = match runtime {
                        FusionRuntime::Uring(_) => Driver::IoUring,
                        FusionRuntime::Legacy(_) => Driver::Legacy,
                    };
                    worker_status.driver.store(driver as u8, Ordering::Relaxed);
                    let core = Rc::new(CoreState::new(
                        id,
                        Generation::new(0, shared, id),
                        worker_status,
                        gov,
                        telemetry,
                        access,
                        reloader,
                        span_seed(id),
                    ));
                    runtime.block_on(async move {
                        let listener = match monoio::net::TcpListener::from_std(listener) {
                            Ok(l) => l,
                            Err(e) => {
                                let _ = ready.send(Err(format!("listener: {e}")));
                                return;
                            }
                        };
                        let _ = ready.send(Ok(driver));
                        drop(ready);
                        worker::run(core, listener, rx).await;
                    });
                })
                .map_err(|e| StartError::Worker {
                    worker: id,
                    reason: e.to_string(),
                })?;
            controls.push(tx);
            threads.push(thread);
        }
        drop(ready_tx);

        let gateway = Gateway {
            addr,
            controls,
            threads,
            statuses,
            grace,
            gov,
            storage_thread: Some(storage_thread),
            reconciler: Some(reconciler),
            access_writer,
            reloader,
            reload_thread,
        };
        let mut drivers = Vec::with_capacity(workers);
        for worker in 0..workers {
            match ready_rx.recv() {
                Ok(Ok(driver)) => drivers.push(driver),
                Ok(Err(reason)) => {
                    gateway.stop();
                    return Err(StartError::Worker { worker, reason });
                }
                Err(_) => {
                    gateway.stop();
                    return Err(StartError::Worker {
                        worker,
                        reason: "exited during start-up".into(),
                    });
                }
            }
        }
        if drivers.contains(&Driver::Legacy) {
            tracing::warn!("io_uring is unavailable here; workers use the legacy epoll driver");
        }
        tracing::info!(
            %addr,
            workers,
            driver = drivers.first().map_or("none", |d| d.as_str()),
            "tollgate listening"
        );
        Ok(gateway)
    }

    /// The address the gateway listens on (the real port when the config asked for port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Per-worker counters and driver.
    pub fn workers(&self) -> &[Arc<WorkerStatus>] {
        &self.statuses
    }

    /// Stop accepting and let in-flight requests finish (up to the configured grace), then
    /// return once every worker has exited.
    pub fn shutdown(self) {
        self.stop();
    }

    /// Reload the config from its source and wait for the outcome (what SIGHUP does).
    pub fn reload(&self) -> Result<reload::ReloadReport, reload::ReloadError> {
        self.reloader.reload()
    }

    /// Governance state (the storage thread, the directory in force).
    pub fn governance(&self) -> &Arc<governor::Governance> {
        &self.gov
    }

    fn stop(mut self) {
        for tx in &self.controls {
            let _ = tx.send(Control::Shutdown { grace: self.grace });
        }
        for t in std::mem::take(&mut self.threads) {
            let _ = t.join();
        }
        // The cores' handles are gone with them; with ours dropped too, the reloader exits.
        self.reloader = ReloadHandle::unavailable();
        if let Some(thread) = self.reload_thread.take() {
            let _ = thread.join();
        }
        if let Some((stop, thread)) = self.reconciler.take() {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        }
        // Every worker has settled its requests: write what the ledger holds and close.
        self.gov.storage.shutdown();
        if let Some(thread) = self.storage_thread.take() {
            let _ = thread.join();
        }
        // The workers' loggers are gone with them: the writer drains its queue and exits.
        if let Some(writer) = self.access_writer.take() {
            writer.join();
        }
    }
}

/// Open the store, load identities (stored and declared), compile the first directory and
/// start the storage thread.
fn open_governance(
    config: &Config,
    cores: usize,
) -> Result<(Arc<governor::Governance>, JoinHandle<()>), StartError> {
    let path = config.store.path.clone();
    let fail = |reason: String| StartError::Store {
        path: path.clone(),
        reason,
    };
    let store = store::sled_store::SledStore::open(&path).map_err(|e| fail(e.to_string()))?;
    let records = governor::load_records(&store, config).map_err(|e| fail(e.to_string()))?;
    governor::check_profiles(&records, config).map_err(StartError::Identities)?;
    let now = governor::now_ms();
    let directory = governor::compile(&store, &records, None, cores, now);
    let (storage, thread) = storage::spawn_storage(
        Box::new(store),
        config.store.flush_interval,
        config.store.queue,
    )
    .map_err(|e| fail(format!("cannot start the storage thread: {e}")))?;
    let gov = governor::Governance::new(records, directory, storage, cores);
    Ok((Arc::new(gov), thread))
}

/// The reconciler: returns idle cores' rate-limit leases to the shared pools every
/// `interval`, so a core that stopped serving a key does not hold its share.
fn spawn_reconciler(
    gov: Arc<governor::Governance>,
    interval: Duration,
) -> (Arc<std::sync::atomic::AtomicBool>, JoinHandle<()>) {
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = stop.clone();
    let idle_ms = (interval.as_millis() as u64).max(1);
    let thread = std::thread::Builder::new()
        .name("tollgate-reconcile".into())
        .spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                std::thread::sleep(interval);
                gov.directory().reclaim_idle(governor::now_ms(), idle_ms);
            }
        });
    match thread {
        Ok(t) => (stop, t),
        Err(e) => {
            tracing::error!(%e, "cannot start the reconciler; idle leases are not reclaimed");
            (stop, std::thread::spawn(|| {}))
        }
    }
}

type AnyRuntime = FusionRuntime<TimeDriver<IoUringDriver>, TimeDriver<LegacyDriver>>;

/// Build this worker's runtime. io_uring is set up first with `SINGLE_ISSUER | DEFER_TASKRUN`
/// (Linux 6.1+): completions are then posted when the worker asks for them instead of
/// interrupting it, which halved the added p50 latency at a fixed 5,000 req/s in our benchmark
/// without costing throughput (bench/RESULTS.md). Older kernels reject the flags; plain io_uring
/// is tried next, then (for `auto`) the legacy epoll driver.
fn build_runtime(choice: IoDriver) -> Result<AnyRuntime, String> {
    let uring = |deferred: bool| {
        let mut setup = io_uring::IoUring::builder();
        if deferred {
            setup.setup_single_issuer().setup_defer_taskrun();
        }
        RuntimeBuilder::<IoUringDriver>::new()
            .uring_builder(setup)
            .with_entries(URING_ENTRIES)
            .enable_timer()
            .build()
            .map(AnyRuntime::from)
    };
    let any_uring = || {
        uring(true).or_else(|e| {
            tracing::debug!(error = %e, "io_uring without DEFER_TASKRUN");
            uring(false)
        })
    };
    let legacy = || {
        RuntimeBuilder::<LegacyDriver>::new()
            .enable_timer()
            .build()
            .map(AnyRuntime::from)
    };
    match choice {
        IoDriver::IoUring => any_uring().map_err(|e| format!("io_uring runtime: {e}")),
        IoDriver::Legacy => legacy().map_err(|e| format!("legacy runtime: {e}")),
        IoDriver::Auto => {
            if monoio::utils::detect_uring() {
                if let Ok(rt) = any_uring() {
                    return Ok(rt);
                }
            }
            legacy().map_err(|e| format!("legacy runtime: {e}"))
        }
    }
}

/// One listening socket per worker, all on the same address with `SO_REUSEPORT` so the kernel
/// spreads connections across workers. Port 0 is resolved by the first bind.
fn bind_listeners(
    requested: SocketAddr,
    workers: usize,
) -> Result<Vec<std::net::TcpListener>, StartError> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut addr = requested;
    let mut out = Vec::with_capacity(workers);
    for _ in 0..workers {
        let fail = |source| StartError::Listen { addr, source };
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .map_err(fail)?;
        socket.set_reuse_address(true).map_err(fail)?;
        socket.set_reuse_port(true).map_err(fail)?;
        socket.set_nodelay(true).map_err(fail)?;
        socket.set_nonblocking(true).map_err(fail)?;
        socket.bind(&addr.into()).map_err(fail)?;
        socket.listen(BACKLOG).map_err(fail)?;
        let listener: std::net::TcpListener = socket.into();
        if addr.port() == 0 {
            addr = listener.local_addr().map_err(fail)?;
        }
        out.push(listener);
    }
    Ok(out)
}

/// The CPUs this process may run on (so `taskset -c 0 tollgate serve` gives one worker).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data; zeroed is a valid empty set, and sched_getaffinity
    // writes at most `size_of::<cpu_set_t>()` bytes into it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: pid 0 means the calling thread; the pointer and size describe `set`.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        return (0..n).collect();
    }
    (0..libc::CPU_SETSIZE as usize)
        // SAFETY: `i` is below CPU_SETSIZE, the set's capacity.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect()
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: as in `allowed_cpus`; CPU_SET writes inside the set for cpu < CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu < libc::CPU_SETSIZE as usize {
            libc::CPU_SET(cpu, &mut set);
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                tracing::warn!(cpu, "could not pin worker to its CPU");
            }
        }
    }
}
