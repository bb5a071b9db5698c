//! The storage thread: the only owner of the `Store`. Workers hand it usage records and alerts
//! with `try_send` (a full channel is counted and logged, never awaited); it batches records and
//! writes them with one atomic `append_usage` per flush interval. Admin reads run as closures on
//! the thread, after everything sent before them has been written. Nothing here may block a
//! worker or panic the thread.

use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::store::{AlertRecord, Store, UsageRecord};

/// Pending records that trigger a write before the interval ends.
const MAX_BATCH: usize = 8192;
/// Pending records kept while writes fail; beyond this the oldest are dropped.
const MAX_PENDING: usize = 8 * MAX_BATCH;
/// Failed attempts at writing one batch before it is dropped.
const MAX_ATTEMPTS: u32 = 10;
/// At most one "dropped" warning per this many milliseconds.
const WARN_EVERY_MS: u64 = 1000;

/// A closure run on the storage thread with the store.
pub type StoreCall = Box<dyn FnOnce(&dyn Store) + Send>;

/// A message to the storage thread.
pub enum StorageCmd {
    /// One finished request, to be batched.
    Usage(UsageRecord),
    /// A budget alert, written at once.
    Alert(AlertRecord),
    /// Run a closure on the store, after writing every record received before it.
    Call(StoreCall),
    /// Write and flush everything received before it, then answer on the sender. The sender
    /// is dropped unanswered if the write failed.
    Flush(Sender<()>),
    /// Write and flush what is held, then exit.
    Shutdown,
}

impl fmt::Debug for StorageCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageCmd::Usage(r) => f.debug_tuple("Usage").field(r).finish(),
            StorageCmd::Alert(a) => f.debug_tuple("Alert").field(a).finish(),
            StorageCmd::Call(_) => f.write_str("Call(..)"),
            StorageCmd::Flush(_) => f.write_str("Flush(..)"),
            StorageCmd::Shutdown => f.write_str("Shutdown"),
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    dropped: AtomicU64,
    written: AtomicU64,
    last_warn_ms: AtomicU64,
}

impl Counters {
    fn drop_some(&self, n: u64, why: &'static str) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let now = unix_ms();
        let last = self.last_warn_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_MS
            && self
                .last_warn_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(dropped_total = total, why, "usage records dropped");
        }
    }
}

/// The senders' side of the storage thread. Cheap to clone: a channel sender and shared
/// counters.
#[derive(Debug, Clone)]
pub struct StorageHandle {
    tx: Sender<StorageCmd>,
    counters: Arc<Counters>,
    /// Most messages waiting for the thread before usage records are dropped.
    capacity: usize,
}

/// Start the storage thread owning `store`. It writes pending usage every `flush_interval`;
/// `capacity` bounds the messages waiting for it (at least 1). The channel itself is
/// unbounded, so its memory follows the actual backlog: a bounded one would allocate (and,
/// as it cycles, touch) `capacity` slots of a few hundred bytes each up front.
pub fn spawn_storage(
    store: Box<dyn Store>,
    flush_interval: Duration,
    capacity: usize,
) -> std::io::Result<(StorageHandle, JoinHandle<()>)> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let counters = Arc::new(Counters::default());
    let thread = StorageThread {
        store,
        rx,
        counters: counters.clone(),
        interval: flush_interval.max(Duration::from_millis(1)),
        pending: Vec::new(),
        attempts: 0,
    };
    let join = std::thread::Builder::new()
        .name("tollgate-storage".into())
        .spawn(move || {
            yield_to_workers();
            thread.run()
        })?;
    Ok((
        StorageHandle {
            tx,
            counters,
            capacity: capacity.max(1),
        },
        join,
    ))
}

/// Nice value of the storage thread: it shares CPUs with the workers, and its batch writes
/// can wait a few milliseconds where a request cannot.
const STORAGE_NICE: libc::c_int = 10;

/// Lower the calling thread's scheduling priority to [`STORAGE_NICE`], so a worker on the same
/// CPU preempts a batch write rather than queueing behind it. Linux keeps the nice value per
/// thread. Failing (a seccomp filter, say) only costs tail latency: logged, not fatal.
fn yield_to_workers() {
    // SAFETY: gettid has no preconditions.
    let tid = unsafe { libc::gettid() };
    // SAFETY: PRIO_PROCESS with a thread id changes only that thread's nice value.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, STORAGE_NICE) };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not lower the storage thread's priority"
        );
    }
}

// === impl StorageHandle ===

impl StorageHandle {
    /// Queue a usage record. Never blocks: if `capacity` messages are already waiting (or the
    /// thread is gone) the record is counted in `dropped` and a rate-limited warning is
    /// logged. The check races with other cores' sends, so the bound holds to within a few
    /// records per worker.
    pub fn record(&self, r: UsageRecord) {
        if self.tx.len() >= self.capacity {
            self.counters.drop_some(1, "storage channel full");
            return;
        }
        match self.tx.try_send(StorageCmd::Usage(r)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.counters.drop_some(1, "storage channel full"),
            Err(TrySendError::Disconnected(_)) => {
                self.counters.drop_some(1, "storage thread stopped")
            }
        }
    }

    /// Queue an alert. Never blocks; a full channel drops it with a warning.
    pub fn alert(&self, a: AlertRecord) {
        if let Err(e) = self.tx.try_send(StorageCmd::Alert(a)) {
            tracing::warn!(alert = ?e.into_inner(), "storage channel full or closed; alert dropped");
        }
    }

    /// Run `f` on the storage thread once everything sent before it is written; its result
    /// arrives on the returned receiver. Never blocks: if the channel is full or the thread is
    /// gone (or `f` panics), the receiver reports disconnection instead of a value.
    pub fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> R + Send + 'static,
    ) -> Receiver<R> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let job = Box::new(move |store: &dyn Store| {
            let _ = tx.send(f(store));
        });
        if self.tx.try_send(StorageCmd::Call(job)).is_err() {
            tracing::warn!("storage channel full or closed; call not run");
        }
        rx
    }

    /// Wait (up to `timeout`) until everything sent before this call is durable. `false` on
    /// timeout, a failed write, or a stopped thread.
    pub fn flush_blocking(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self
            .tx
            .send_timeout(StorageCmd::Flush(tx), timeout)
            .is_err()
        {
            return false;
        }
        rx.recv_deadline(deadline).is_ok()
    }

    /// Ask the thread to write what it holds, flush and exit. Messages sent after this are
    /// dropped. Join the thread's handle to wait for it.
    pub fn shutdown(&self) {
        let _ = self.tx.send(StorageCmd::Shutdown);
    }

    /// Usage records lost so far: channel full, thread gone, or dropped after failed writes.
    pub fn dropped(&self) -> u64 {
        self.counters.dropped.load(Ordering::Relaxed)
    }

    /// Usage records durably written so far.
    pub fn written(&self) -> u64 {
        self.counters.written.load(Ordering::Relaxed)
    }
}

// === the thread ===

struct StorageThread {
    store: Box<dyn Store>,
    rx: Receiver<StorageCmd>,
    counters: Arc<Counters>,
    interval: Duration,
    pending: Vec<UsageRecord>,
    /// Failed attempts at writing the current `pending`.
    attempts: u32,
}

impl StorageThread {
    fn run(mut self) {
        let mut deadline = Instant::now() + self.interval;
        loop {
            match self.rx.recv_deadline(deadline) {
                Ok(StorageCmd::Usage(r)) => {
                    if let Err(e) = r.check_names() {
                        tracing::warn!(error = %e, request_id = %r.request_id, "usage record rejected");
                        self.counters.drop_some(1, "invalid name");
                    } else {
                        self.pending.push(r);
                        // While writes fail, wait for the next tick instead of retrying on
                        // every record.
                        if self.pending.len() >= MAX_BATCH && self.attempts == 0 {
                            self.write();
                        }
                    }
                }
                Ok(StorageCmd::Alert(a)) => {
                    if let Err(e) = self.store.append_alert(&a) {
                        tracing::error!(error = %e, "cannot write alert");
                    }
                }
                Ok(StorageCmd::Call(f)) => {
                    self.write();
                    let store: &dyn Store = &*self.store;
                    if catch_unwind(AssertUnwindSafe(|| f(store))).is_err() {
                        tracing::error!("a storage call panicked");
                    }
                }
                Ok(StorageCmd::Flush(ack)) => {
                    if self.write() {
                        let _ = ack.send(());
                    }
                }
                Ok(StorageCmd::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    self.write();
                    if let Err(e) = self.store.flush() {
                        tracing::error!(error = %e, "final storage flush failed");
                    }
                    if !self.pending.is_empty() {
                        let n = self.pending.len() as u64;
                        tracing::error!(records = n, "usage records lost at shutdown");
                        self.counters.drop_some(n, "write failed at shutdown");
                    }
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            if Instant::now() >= deadline {
                self.write();
                deadline = Instant::now() + self.interval;
            }
        }
    }

    /// Write `pending` as one batch. `true` if nothing is left pending. On failure the records
    /// are kept for the next attempt, up to `MAX_ATTEMPTS` and `MAX_PENDING`.
    fn write(&mut self) -> bool {
        if self.pending.is_empty() {
            return true;
        }
        match self.store.append_usage(&self.pending) {
            Ok(()) => {
                self.counters
                    .written
                    .fetch_add(self.pending.len() as u64, Ordering::Relaxed);
                self.pending.clear();
                self.attempts = 0;
                true
            }
            Err(e) => {
                self.attempts += 1;
                tracing::error!(
                    error = %e,
                    records = self.pending.len(),
                    attempt = self.attempts,
                    "cannot write usage batch"
                );
                if self.attempts >= MAX_ATTEMPTS {
                    let n = self.pending.len() as u64;
                    self.pending.clear();
                    self.attempts = 0;
                    self.counters.drop_some(n, "usage batch failed repeatedly");
                } else if self.pending.len() > MAX_PENDING {
                    let excess = self.pending.len() - MAX_PENDING;
                    self.pending.drain(..excess);
                    self.counters
                        .drop_some(excess as u64, "too many records pending while writes fail");
                }
                false
            }
        }
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::store::{Scope, SledStore, StoreError, Totals};

    fn rec(i: u64) -> UsageRecord {
        UsageRecord {
            time_ms: 1_700_000_000_000 + i,
            request_id: format!("r{i}"),
            key: format!("k{}", i % 3),
            user: None,
            team: Some("ml".into()),
            org: None,
            model: "gpt".into(),
            deployment: "local/gpt".into(),
            input_tokens: 10,
            output_tokens: 5,
            cached_tokens: 0,
            cost: 100,
            latency_us: 1,
            status: 200,
            estimated: false,
            price_unknown: false,
            guardrails: Vec::new(),
        }
    }

    fn lifetime_all(h: &StorageHandle) -> Totals {
        h.call(|s| s.lifetime(Scope::All, "", None).unwrap())
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
    }

    #[test]
    fn records_then_flush_then_call_sees_them() {
        let store = SledStore::temporary().unwrap();
        // A long interval: only Flush/Call may write.
        let (h, join) = spawn_storage(Box::new(store), Duration::from_secs(3600), 1024).unwrap();
        for i in 0..10 {
            h.record(rec(i));
        }
        assert!(h.flush_blocking(Duration::from_secs(5)));
        assert_eq!(h.written(), 10);
        let t = lifetime_all(&h);
        assert_eq!((t.requests, t.input_tokens, t.cost), (10, 100, 1000));

        // A Call alone also writes what came before it.
        for i in 10..15 {
            h.record(rec(i));
        }
        assert_eq!(lifetime_all(&h).requests, 15);
        assert_eq!(h.written(), 15);
        let team = h
            .call(|s| s.totals(Scope::Team, "ml", Some("gpt"), 0, u32::MAX))
            .recv_timeout(Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(team.requests, 15);

        h.alert(AlertRecord {
            time_ms: 1,
            scope: "team".into(),
            name: "ml".into(),
            model: None,
            budget: "daily".into(),
            committed: 1,
            limit: 2,
        });
        let alerts = h.call(|s| s.alerts(10).map(|a| a.len()));
        assert_eq!(
            alerts
                .recv_timeout(Duration::from_secs(5))
                .unwrap()
                .unwrap(),
            1
        );

        h.record(rec(99));
        h.shutdown();
        join.join().unwrap();
        assert_eq!(h.written(), 16);
        assert_eq!(h.dropped(), 0);
        // The thread is gone: calls disconnect, flushes fail, records are counted as dropped.
        assert!(h.call(|_| ()).recv_timeout(Duration::from_secs(1)).is_err());
        assert!(!h.flush_blocking(Duration::from_millis(100)));
        h.record(rec(100));
        assert_eq!(h.dropped(), 1);
    }

    #[test]
    fn interval_writes_without_being_asked() {
        let (h, join) = spawn_storage(
            Box::new(SledStore::temporary().unwrap()),
            Duration::from_millis(20),
            64,
        )
        .unwrap();
        h.record(rec(1));
        let start = Instant::now();
        while h.written() == 0 && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(h.written(), 1);
        h.shutdown();
        join.join().unwrap();
    }

    #[test]
    fn full_channel_counts_dropped_and_never_blocks() {
        let (h, join) = spawn_storage(
            Box::new(SledStore::temporary().unwrap()),
            Duration::from_secs(3600),
            1,
        )
        .unwrap();
        // Park the thread inside a call so nothing drains the channel.
        let (entered_tx, entered_rx) = crossbeam_channel::bounded(1);
        let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(1);
        let _parked = h.call(move |_| {
            entered_tx.send(()).unwrap();
            let _ = release_rx.recv();
        });
        entered_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let start = Instant::now();
        for i in 0..10 {
            h.record(rec(i));
        }
        assert!(start.elapsed() < Duration::from_secs(1));
        // Capacity 1: the first record waits in the channel, the other nine are dropped.
        assert_eq!(h.dropped(), 9);
        release_tx.send(()).unwrap();
        assert!(h.flush_blocking(Duration::from_secs(5)));
        assert_eq!(h.written(), 1);
        h.shutdown();
        join.join().unwrap();
    }

    #[test]
    fn invalid_names_and_panicking_calls_do_not_stop_the_thread() {
        let (h, join) = spawn_storage(
            Box::new(SledStore::temporary().unwrap()),
            Duration::from_secs(3600),
            64,
        )
        .unwrap();
        let mut bad = rec(1);
        bad.key = "a\0b".into();
        h.record(bad);
        h.record(rec(2));
        let r = h.call(|_| -> u8 { panic!("boom") });
        assert!(r.recv_timeout(Duration::from_secs(5)).is_err());
        assert!(h.flush_blocking(Duration::from_secs(5)));
        assert_eq!((h.written(), h.dropped()), (1, 1));
        h.shutdown();
        join.join().unwrap();
    }

    /// A store whose writes fail a set number of times.
    struct Flaky {
        inner: SledStore,
        failures: std::sync::atomic::AtomicU32,
    }

    impl Store for Flaky {
        fn entities(
            &self,
            kind: crate::store::EntityKind,
        ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
            self.inner.entities(kind)
        }
        fn put_entity(
            &self,
            kind: crate::store::EntityKind,
            name: &str,
            value: &[u8],
        ) -> Result<(), StoreError> {
            self.inner.put_entity(kind, name, value)
        }
        fn delete_entity(
            &self,
            kind: crate::store::EntityKind,
            name: &str,
        ) -> Result<bool, StoreError> {
            self.inner.delete_entity(kind, name)
        }
        fn append_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
            let left = self.failures.load(Ordering::Relaxed);
            if left > 0 {
                self.failures.store(left - 1, Ordering::Relaxed);
                return Err(StoreError::Io(std::io::Error::other("disk on fire")));
            }
            self.inner.append_usage(records)
        }
        fn totals(
            &self,
            scope: Scope,
            name: &str,
            model: Option<&str>,
            from_day: u32,
            to_day: u32,
        ) -> Result<Totals, StoreError> {
            self.inner.totals(scope, name, model, from_day, to_day)
        }
        fn lifetime(
            &self,
            scope: Scope,
            name: &str,
            model: Option<&str>,
        ) -> Result<Totals, StoreError> {
            self.inner.lifetime(scope, name, model)
        }
        fn report(
            &self,
            scope: Scope,
            name: Option<&str>,
            by_model: bool,
            per_day: bool,
            from_day: u32,
            to_day: u32,
        ) -> Result<Vec<crate::store::ReportRow>, StoreError> {
            self.inner
                .report(scope, name, by_model, per_day, from_day, to_day)
        }
        fn records(
            &self,
            from_ms: u64,
            to_ms: u64,
            limit: usize,
        ) -> Result<Vec<UsageRecord>, StoreError> {
            self.inner.records(from_ms, to_ms, limit)
        }
        fn append_alert(&self, alert: &AlertRecord) -> Result<(), StoreError> {
            self.inner.append_alert(alert)
        }
        fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
            self.inner.alerts(limit)
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.inner.flush()
        }
    }

    #[test]
    fn failed_batches_are_retried_then_bounded() {
        let flaky = Flaky {
            inner: SledStore::temporary().unwrap(),
            failures: 2.into(),
        };
        let (h, join) = spawn_storage(Box::new(flaky), Duration::from_secs(3600), 64).unwrap();
        h.record(rec(1));
        h.record(rec(2));
        assert!(!h.flush_blocking(Duration::from_secs(5))); // failure 1
        assert!(!h.flush_blocking(Duration::from_secs(5))); // failure 2
        assert!(h.flush_blocking(Duration::from_secs(5))); // retried, written
        assert_eq!((h.written(), h.dropped()), (2, 0));
        assert_eq!(lifetime_all(&h).requests, 2);
        h.shutdown();
        join.join().unwrap();

        let flaky = Flaky {
            inner: SledStore::temporary().unwrap(),
            failures: u32::MAX.into(),
        };
        let (h, join) = spawn_storage(Box::new(flaky), Duration::from_secs(3600), 64).unwrap();
        h.record(rec(1));
        for _ in 0..MAX_ATTEMPTS {
            assert!(!h.flush_blocking(Duration::from_secs(5)));
        }
        // Given up: nothing pending, so the next flush succeeds trivially.
        assert!(h.flush_blocking(Duration::from_secs(5)));
        assert_eq!((h.written(), h.dropped()), (0, 1));
        h.shutdown();
        join.join().unwrap();
    }
}
