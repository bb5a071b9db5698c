//! One worker: a pinned thread running its own monoio runtime with its own `SO_REUSEPORT`
//! listener and its own `CoreState`. Owns the accept loop, the control-message loop (config
//! generations are prepared and committed here), and the graceful drain. Nothing here is shared
//! with another core except through the control channel and the atomics in `WorkerStatus`.
//!
//! A request runs against one [`Generation`] from start to end: [`CoreState::pin`] hands it a
//! [`Core`], which holds the generation in force when the request began. A reload swaps the
//! core's generation; requests already running keep theirs until they finish.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use monoio::net::TcpListener;

use crate::conn::serve_connection;
use crate::router::Router;
use crate::shared::Shared;
use crate::upstream::Pools;

/// Messages from the control thread to a worker.
#[derive(Debug)]
pub enum Control {
    /// Stop accepting, finish in-flight requests within `grace`, then exit.
    Shutdown {
        /// Longest time in-flight requests get to finish.
        grace: Duration,
    },
    /// Authenticate against this directory from now on (an admin change was made).
    Directory(Arc<tollgate_policy::governance::Directory>),
    /// Build this core's state for a new config generation and hold it, unused, until
    /// `Commit`; say so on `ready`.
    Prepare {
        /// The generation's number (increasing).
        number: u64,
        /// The compiled config.
        shared: Arc<Shared>,
        /// Where to say it is built (a channel of this reload only).
        ready: crossbeam_channel::Sender<()>,
    },
    /// Serve new requests from prepared generation `number`, and authenticate against
    /// `directory` (compiled for it).
    Commit {
        /// The generation prepared earlier.
        number: u64,
        /// The directory compiled with the new config's identities.
        directory: Arc<tollgate_policy::governance::Directory>,
        /// Where to say this core serves the new generation (a channel of this reload only).
        done: crossbeam_channel::Sender<()>,
    },
    /// Drop prepared generation `number`: another core could not prepare it.
    Abort {
        /// The generation prepared earlier.
        number: u64,
    },
}

/// Which I/O driver a worker's runtime uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Driver {
    /// Not started yet.
    Unknown = 0,
    /// io_uring.
    IoUring = 1,
    /// monoio's legacy epoll driver.
    Legacy = 2,
}

impl Driver {
    /// The driver a `WorkerStatus::driver` value stands for.
    pub fn from_u8(value: u8) -> Driver {
        match value {
            1 => Driver::IoUring,
            2 => Driver::Legacy,
            _ => Driver::Unknown,
        }
    }

    /// Lowercase name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Driver::Unknown => "unknown",
            Driver::IoUring => "io_uring",
            Driver::Legacy => "legacy",
        }
    }
}

/// A worker's externally visible status: atomics another thread may read.
#[derive(Debug, Default)]
pub struct WorkerStatus {
    /// Requests answered (any status).
    pub requests: AtomicU64,
    /// Client connections accepted.
    pub connections: AtomicU64,
    /// Connections closed at once because the worker was at `max_connections_per_worker`.
    pub connections_refused: AtomicU64,
    /// The worker's driver (`Driver as u8`).
    pub driver: AtomicU8,
    /// Set while draining for shutdown.
    pub draining: AtomicBool,
}

/// One config generation as one core runs it: the compiled config and the per-core state
/// whose shape follows it (deployment health per model, idle connections per provider).
#[derive(Debug)]
pub struct Generation {
    /// Increases by one per successful reload (0 at start).
    pub number: u64,
    /// The compiled config.
    pub shared: Arc<Shared>,
    /// Deployment health and balancing state, per model.
    pub router: RefCell<Router>,
    /// Idle upstream connections, per provider.
    pub pools: Rc<Pools>,
}

// === impl Generation ===

impl Generation {
    /// This core's state for `shared`, empty: fresh health, no pooled connections.
    pub fn new(number: u64, shared: Arc<Shared>, core_id: usize) -> Generation {
        Generation {
            number,
            router: RefCell::new(shared.new_router(core_id as u64)),
            pools: Rc::new(Pools::new(shared.providers.len())),
            shared,
        }
    }

    /// Take over what `old` learnt that still holds under this config: the idle connections
    /// of every provider that still reaches the same place the same way (and those that
    /// requests still running under `old` finish with later), and the health of every
    /// deployment of an unchanged model name on such a provider, with the same upstream model.
    fn inherit(&self, old: &Generation) {
        let (new_shared, old_shared) = (&*self.shared, &*old.shared);
        // Old provider index -> new one, for providers whose connections carry over.
        let carried: Vec<Option<usize>> = old_shared
            .config
            .providers
            .iter()
            .enumerate()
            .map(|(op, provider)| {
                new_shared
                    .config
                    .providers
                    .iter()
                    .position(|p| p.name == provider.name)
                    .filter(|&p| new_shared.same_connections(p, old_shared, op))
            })
            .collect();
        let mut router = self.router.borrow_mut();
        let old_router = old.router.borrow();
        for (m, model) in new_shared.config.models.iter().enumerate() {
            let Some(old_model) = old_shared
                .models
                .get(&model.name)
                .and_then(|&om| old_shared.config.models.get(om).map(|c| (om, c)))
            else {
                continue;
            };
            for (d, deployment) in model.deployments.iter().enumerate() {
                let same = old_model.1.deployments.iter().position(|o| {
                    o.model == deployment.model
                        && carried.get(o.provider).copied().flatten() == Some(deployment.provider)
                });
                if let Some(od) = same {
                    router.inherit_health((m, d), &old_router, (old_model.0, od));
                }
            }
        }
        self.pools.succeed(&old.pools, carried);
    }
}

/// Per-core state: owned by one worker thread, never `Send`.
#[derive(Debug)]
pub struct CoreState {
    /// Index of this worker.
    pub id: usize,
    /// The config generation new requests start under (`Rc`: pinning it is not an atomic
    /// operation shared with other cores).
    generation: RefCell<Rc<Generation>>,
    /// A generation built by `Control::Prepare`, waiting for its commit.
    prepared: RefCell<Option<Generation>>,
    /// Reusable JSON scratch space (simd-json parses in place).
    pub scratch: RefCell<Vec<u8>>,
    /// Requests currently being handled.
    pub in_flight: Cell<usize>,
    /// Client connections currently open on this core.
    pub open_connections: Cell<usize>,
    /// Counts mock-provider requests so fault rates are deterministic per core.
    pub mock_requests: Cell<u64>,
    /// Set once shutdown begins: responses close their connections.
    pub draining: Cell<bool>,
    /// Set when the shutdown grace has run out: running streams end at their next upstream
    /// read with a terminal `shutting_down` error, and are settled and recorded as usual.
    pub cut_off: Cell<bool>,
    /// Counters visible to other threads.
    pub status: Arc<WorkerStatus>,
    /// Governance: pricing, settings, the storage thread.
    pub gov: Arc<crate::governor::Governance>,
    /// The key directory in force on this core (`Rc` so a request's clone is not an atomic
    /// operation shared with other cores).
    pub directory: RefCell<Rc<Arc<tollgate_policy::governance::Directory>>>,
    /// Requests seen on this core, for request ids.
    pub request_seq: Cell<u64>,
    /// State of the generator of span ids for upstream `traceparent`s (xorshift, seeded
    /// randomly at start).
    pub span_state: Cell<u64>,
    /// Guardrail search caches of this core (never borrowed across an await).
    pub guard_scratch: RefCell<tollgate_policy::guardrails::ScanScratch>,
    /// What this core counts for `/metrics` (never borrowed across an await).
    pub metrics: RefCell<crate::metrics::CoreMetrics>,
    /// Every core's metric slots, for scrapes.
    pub telemetry: Arc<crate::metrics::Telemetry>,
    /// This core's access-log lines on their way to the writer.
    pub access: crate::access_log::CoreAccessLog,
    /// Where `POST /admin/reload` asks for a reload.
    pub reloader: crate::reload::ReloadHandle,
}

/// A core as one request sees it: the core's state, and the config generation the request
/// started under (kept until it ends, whatever reloads happen meanwhile).
#[derive(Debug)]
pub struct Core<'a> {
    state: &'a CoreState,
    generation: Rc<Generation>,
}

impl std::ops::Deref for Core<'_> {
    type Target = CoreState;

    fn deref(&self) -> &CoreState {
        self.state
    }
}

// === impl Core ===

impl Core<'_> {
    /// The compiled config of this request's generation.
    pub fn shared(&self) -> &Shared {
        &self.generation.shared
    }

    /// Deployment health and balancing state of this request's generation.
    pub fn router(&self) -> &RefCell<Router> {
        &self.generation.router
    }

    /// Idle upstream connections of this request's generation.
    pub fn pools(&self) -> &Pools {
        &self.generation.pools
    }

    /// The next piece of an upstream body (`None` at its end). Once the shutdown grace has
    /// run out, the body ends here with `ShuttingDown` instead, so the request is settled and
    /// its client told rather than cut off silently.
    pub async fn read_upstream(
        &self,
        response: &mut crate::upstream::UpstreamResponse,
    ) -> Result<Option<bytes::Bytes>, crate::error::GatewayError> {
        if self.cut_off.get() {
            return Err(crate::error::GatewayError::ShuttingDown);
        }
        response.next_chunk(self.pools()).await
    }
}

// === impl CoreState ===

impl CoreState {
    /// Fresh state for worker `id` serving generation `generation`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        generation: Generation,
        status: Arc<WorkerStatus>,
        gov: Arc<crate::governor::Governance>,
        telemetry: Arc<crate::metrics::Telemetry>,
        access: crate::access_log::AccessLogger,
        reloader: crate::reload::ReloadHandle,
        span_seed: u64,
    ) -> CoreState {
        let count_metrics = generation.shared.config.server.metrics;
        CoreState {
            id,
            generation: RefCell::new(Rc::new(generation)),
            prepared: RefCell::new(None),
            scratch: Default::default(),
            in_flight: Default::default(),
            open_connections: Default::default(),
            mock_requests: Default::default(),
            draining: Default::default(),
            cut_off: Default::default(),
            status,
            directory: RefCell::new(Rc::new(gov.directory())),
            gov,
            request_seq: Default::default(),
            span_state: Cell::new(span_seed),
            guard_scratch: Default::default(),
            metrics: RefCell::new(crate::metrics::CoreMetrics::new(count_metrics)),
            telemetry,
            access: crate::access_log::CoreAccessLog::new(access),
            reloader,
        }
    }

    /// This core as a request starting now sees it: the generation in force is kept for the
    /// request's whole life.
    pub fn pin(&self) -> Core<'_> {
        Core {
            state: self,
            generation: self.current(),
        }
    }

    /// The generation new requests start under.
    pub fn current(&self) -> Rc<Generation> {
        self.generation.borrow().clone()
    }

    /// Build and hold generation `number` (phase one of a reload).
    fn prepare(&self, number: u64, shared: Arc<Shared>) {
        *self.prepared.borrow_mut() = Some(Generation::new(number, shared, self.id));
    }

    /// Switch to prepared generation `number` (phase two). Returns false when it was not the
    /// one prepared here.
    fn commit(&self, number: u64) -> bool {
        let prepared = self.prepared.borrow_mut().take();
        let Some(next) = prepared.filter(|g| g.number == number) else {
            return false;
        };
        let old = self.current();
        next.inherit(&old);
        self.guard_scratch
            .borrow_mut()
            .retain(&next.shared.guardrails);
        *self.generation.borrow_mut() = Rc::new(next);
        true
    }

    /// A fresh span id for an upstream `traceparent` (never zero).
    pub fn next_span_id(&self) -> u64 {
        // xorshift64*: fast, and unpredictable enough for ids that only need to be unique.
        let mut x = self.span_state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.span_state.set(x);
        x.wrapping_mul(0x2545_f491_4f6c_dd1d).max(1)
    }
}

/// Marks a request in flight for the drain; decremented on drop.
#[derive(Debug)]
pub struct InFlight<'a>(&'a CoreState);

/// Counts an open client connection; decremented on drop.
#[derive(Debug)]
pub struct OpenConnection(Rc<CoreState>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let open = &self.0.open_connections;
        open.set(open.get() - 1);
    }
}

impl CoreState {
    /// Count a request as in flight until the guard drops.
    pub fn begin_request(&self) -> InFlight<'_> {
        self.in_flight.set(self.in_flight.get() + 1);
        InFlight(self)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.set(self.0.in_flight.get() - 1);
        self.0.status.requests.fetch_add(1, Ordering::Relaxed);
    }
}

/// A one-shot, single-thread event the accept loop waits on.
#[derive(Debug, Default)]
struct LocalEvent {
    fired: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl LocalEvent {
    fn fire(&self) {
        self.fired.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    async fn wait(&self) {
        std::future::poll_fn(|cx| {
            if self.fired.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// How long streams get, once the shutdown grace has run out, to notice it and end properly.
const CUT_OFF_SETTLE: Duration = Duration::from_secs(1);

/// How often a worker looks at its control channel and reaps idle upstream connections.
const CONTROL_TICK: Duration = Duration::from_millis(25);

/// The worker's main future: accept until told to stop, then drain.
pub async fn run(core: Rc<CoreState>, listener: TcpListener, control: Receiver<Control>) {
    let stop = Rc::new(LocalEvent::default());
    let grace = Rc::new(Cell::new(Duration::ZERO));
    monoio::spawn(control_loop(
        core.clone(),
        control,
        stop.clone(),
        grace.clone(),
    ));

    loop {
        monoio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    core.status.connections.fetch_add(1, Ordering::Relaxed);
                    let open = core.open_connections.get();
                    let limit = core.current().shared.config.server.max_connections_per_worker;
                    if open >= limit {
                        // Over the limit: close at once rather than let memory grow unbounded.
                        core.status.connections_refused.fetch_add(1, Ordering::Relaxed);
                        drop(stream);
                        continue;
                    }
                    core.open_connections.set(open + 1);
                    let guard = OpenConnection(core.clone());
                    monoio::spawn(async move {
                        serve_connection(guard.0.clone(), stream).await;
                        drop(guard);
                    });
                }
                Err(e) => {
                    // EMFILE and friends: back off briefly instead of spinning.
                    tracing::warn!(worker = core.id, error = %e, "accept failed");
                    monoio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            _ = stop.wait() => break,
        }
    }
    drop(listener);
    core.draining.set(true);
    core.status.draining.store(true, Ordering::Relaxed);
    let deadline = Instant::now() + grace.get();
    while core.in_flight.get() > 0 && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(5)).await;
    }
    if core.in_flight.get() > 0 {
        // Streams still running end at their next upstream event, with a terminal error
        // event and their usage recorded; give them a moment to do so.
        core.cut_off.set(true);
        let settle = Instant::now() + CUT_OFF_SETTLE;
        while core.in_flight.get() > 0 && Instant::now() < settle {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // What the drained requests logged goes to the writer now, not when the core is dropped.
    core.access.flush();
    if core.in_flight.get() > 0 {
        tracing::warn!(
            worker = core.id,
            abandoned = core.in_flight.get(),
            "shutdown grace expired with requests in flight"
        );
    }
}

async fn control_loop(
    core: Rc<CoreState>,
    control: Receiver<Control>,
    stop: Rc<LocalEvent>,
    grace: Rc<Cell<Duration>>,
) {
    loop {
        monoio::time::sleep(CONTROL_TICK).await;
        let mut stopping = false;
        loop {
            match control.try_recv() {
                Ok(Control::Shutdown { grace: g }) => {
                    grace.set(g);
                    stopping = true;
                }
                Ok(Control::Directory(directory)) => {
                    *core.directory.borrow_mut() = Rc::new(directory);
                }
                Ok(Control::Prepare {
                    number,
                    shared,
                    ready,
                }) => {
                    core.prepare(number, shared);
                    let _ = ready.send(());
                }
                Ok(Control::Commit {
                    number,
                    directory,
                    done,
                }) => {
                    if core.commit(number) {
                        *core.directory.borrow_mut() = Rc::new(directory);
                        let _ = done.send(());
                    } else {
                        tracing::error!(
                            worker = core.id,
                            number,
                            "commit of a generation not prepared here"
                        );
                    }
                }
                Ok(Control::Abort { number }) => {
                    let mut prepared = core.prepared.borrow_mut();
                    if prepared.as_ref().is_some_and(|g| g.number == number) {
                        *prepared = None;
                    }
                }
                Err(crossbeam_channel::TryRecvError::Empty) => break,
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    // The control side is gone: nobody can stop us cleanly any more.
                    grace.set(Duration::ZERO);
                    stopping = true;
                    break;
                }
            }
        }
        if stopping {
            stop.fire();
            return;
        }
        core.telemetry.tick(
            core.id,
            &core.metrics.borrow(),
            core.open_connections.get(),
            || crate::dashboard::deployment_health(&core.pin()),
        );
        core.access.flush();
        let generation = core.current();
        let shared = &generation.shared;
        generation.pools.reap(|p| {
            shared
                .providers
                .get(p)
                .map_or(Duration::ZERO, |t| t.pool_idle_timeout)
        });
    }
}
