//! One worker: a pinned thread running its own monoio runtime with its own `SO_REUSEPORT`
//! listener and its own `Core` state. Owns the accept loop, the control-message loop and the
//! graceful drain. Nothing here is shared with another core except through the control channel
//! and the atomics in `WorkerStatus`.

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

/// Per-core state: owned by one worker thread, never `Send`.
#[derive(Debug)]
pub struct Core {
    /// Index of this worker.
    pub id: usize,
    /// The compiled config every request reads.
    pub shared: Arc<Shared>,
    /// Idle upstream connections, per provider.
    pub pools: Pools,
    /// Deployment health and balancing state, per model.
    pub router: RefCell<Router>,
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
    /// Where this core's access-log lines go.
    pub access: crate::access_log::AccessLogger,
}

impl Core {
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
pub struct InFlight<'a>(&'a Core);

/// Counts an open client connection; decremented on drop.
#[derive(Debug)]
pub struct OpenConnection(Rc<Core>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let open = &self.0.open_connections;
        open.set(open.get() - 1);
    }
}

// === impl Core ===

impl Core {
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

/// How often a worker looks at its control channel and reaps idle upstream connections.
const CONTROL_TICK: Duration = Duration::from_millis(25);

/// The worker's main future: accept until told to stop, then drain.
pub async fn run(core: Rc<Core>, listener: TcpListener, control: Receiver<Control>) {
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
                    if open >= core.shared.config.server.max_connections_per_worker {
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
        tracing::warn!(
            worker = core.id,
            abandoned = core.in_flight.get(),
            "shutdown grace expired with requests in flight"
        );
    }
}

async fn control_loop(
    core: Rc<Core>,
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
                    continue;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => {}
                Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    // The control side is gone: nobody can stop us cleanly any more.
                    grace.set(Duration::ZERO);
                    stopping = true;
                }
            }
            break;
        }
        if stopping {
            stop.fire();
            return;
        }
        core.telemetry.tick(
            core.id,
            &core.metrics.borrow(),
            core.open_connections.get(),
            || crate::dashboard::deployment_health(&core),
        );
        let shared = &core.shared;
        core.pools.reap(|p| {
            shared
                .providers
                .get(p)
                .map_or(Duration::ZERO, |t| t.pool_idle_timeout)
        });
    }
}
