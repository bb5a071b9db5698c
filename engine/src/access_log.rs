//! The JSON access log: one line per request. Each core formats its lines into a buffer of its
//! own ([`CoreAccessLog`]: no allocation or message per line) and hands the buffer, about 32 KiB
//! of lines or whatever is there at its next control tick, to the writer thread with `try_send`
//! on a bounded queue; when the queue is full the batch is dropped and its lines counted, never
//! waited for, so a slow disk or a blocked stdout can never hold up a request. The thread only
//! writes.

use std::cell::{Cell, RefCell};
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};
use tollgate_config::AccessLog;

/// A core hands its lines over once it holds this many bytes of them (or at its next tick).
const BATCH: usize = 32 * 1024;
/// Batches queued at most (16 MiB of lines, over a second of every core's traffic); beyond
/// this they are dropped and their lines counted.
const QUEUE: usize = 512;
/// How often the writer wakes to write what was queued.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// One finished request, as it is logged (borrowed: it is formatted at once). Requests that
/// are not model requests (or were refused before a key or model was known) leave the key,
/// model and usage fields empty.
#[derive(Debug, Clone, Default)]
pub struct AccessEntry<'a> {
    /// Unix milliseconds when it finished.
    pub time_ms: u64,
    pub request_id: &'a str,
    /// The route's metric label (`chat_completions`, `messages`, `health`, `unknown`, ...).
    pub route: &'static str,
    /// The key's name.
    pub key: &'a str,
    /// The key's display form (`sk-tg-...abcd`).
    pub key_prefix: &'a str,
    /// The key's team, `""` for none.
    pub team: &'a str,
    pub model: &'a str,
    /// `provider/upstream-model`, `""` when no upstream answered.
    pub deployment: &'a str,
    pub status: u16,
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub cached_tokens: u64,
    /// Cost in nano-dollars.
    pub cost_nanos: u64,
    /// From the request being read to its last byte sent.
    pub latency_us: u64,
    /// Streams: to the first event sent.
    pub ttft_us: Option<u64>,
    /// Upstream calls made.
    pub attempts: u32,
}

/// Lines formatted by one core, on their way to the writer.
#[derive(Debug)]
struct Batch {
    bytes: Vec<u8>,
    lines: u64,
}

/// Where every core's batches go, and how many lines were dropped (shared by the cores and
/// `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct AccessLogger {
    tx: Option<Sender<Batch>>,
    dropped: Arc<AtomicU64>,
}

impl AccessLogger {
    /// Whether lines are written at all.
    pub fn is_on(&self) -> bool {
        self.tx.is_some()
    }

    /// Lines dropped because the queue was full (or the writer was gone).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    fn send(&self, batch: Batch) {
        let Some(tx) = &self.tx else {
            return;
        };
        match tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(b)) | Err(TrySendError::Disconnected(b)) => {
                self.dropped.fetch_add(b.lines, Ordering::Relaxed);
            }
        }
    }
}

/// One core's side of the log: its lines formatted so far (never borrowed across an await).
/// Dropping it hands over what it holds.
#[derive(Debug, Default)]
pub struct CoreAccessLog {
    logger: AccessLogger,
    buf: RefCell<Vec<u8>>,
    lines: Cell<u64>,
}

impl CoreAccessLog {
    /// A core's buffer in front of `logger`.
    pub fn new(logger: AccessLogger) -> Self {
        CoreAccessLog {
            logger,
            buf: RefCell::default(),
            lines: Cell::new(0),
        }
    }

    /// Formats the entry `entry` builds, if the log is on (it is not even built otherwise).
    pub fn log<'a>(&self, entry: impl FnOnce() -> AccessEntry<'a>) {
        if !self.logger.is_on() {
            return;
        }
        let full = {
            let mut buf = self.buf.borrow_mut();
            if buf.capacity() == 0 {
                buf.reserve(BATCH + 1024);
            }
            format_line(&entry(), &mut buf);
            buf.len() >= BATCH
        };
        self.lines.set(self.lines.get() + 1);
        if full {
            self.flush();
        }
    }

    /// Hands the lines formatted so far to the writer (the worker calls this every tick).
    pub fn flush(&self) {
        let bytes = std::mem::take(&mut *self.buf.borrow_mut());
        if bytes.is_empty() {
            return;
        }
        let lines = self.lines.replace(0);
        self.logger.send(Batch { bytes, lines });
    }
}

impl Drop for CoreAccessLog {
    fn drop(&mut self) {
        self.flush();
    }
}

/// The writer thread; dropping every [`AccessLogger`] clone ends it after the queue drains.
#[derive(Debug)]
pub struct AccessLogWriter {
    thread: Option<JoinHandle<()>>,
}

impl AccessLogWriter {
    /// Waits for the writer to write what is queued (every logger must be dropped first).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Opens the destination `config` names and starts the writer. Off: a logger that logs
/// nothing and no thread.
pub fn start(config: &AccessLog) -> std::io::Result<(AccessLogger, Option<AccessLogWriter>)> {
    let out: Box<dyn Write + Send> = match config {
        AccessLog::Off => return Ok((AccessLogger::default(), None)),
        AccessLog::Stdout => Box::new(std::io::stdout()),
        AccessLog::Stderr => Box::new(std::io::stderr()),
        AccessLog::File(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ),
    };
    let (tx, rx) = crossbeam_channel::bounded(QUEUE);
    let thread = std::thread::Builder::new()
        .name("tollgate-log".into())
        .spawn(move || write_lines(rx, out))?;
    Ok((
        AccessLogger {
            tx: Some(tx),
            dropped: Arc::default(),
        },
        Some(AccessLogWriter {
            thread: Some(thread),
        }),
    ))
}

fn write_lines(rx: Receiver<Batch>, mut out: Box<dyn Write + Send>) {
    // Poll rather than block on the queue: a receiver parked in `recv` makes a send a futex
    // wake-up (a system call and a context switch on the worker's core); a sleeping poller
    // costs the workers nothing.
    loop {
        let mut gone = false;
        loop {
            match rx.try_recv() {
                Ok(batch) => {
                    if out.write_all(&batch.bytes).is_err() {
                        // Nowhere to write: keep draining so workers never see a full queue
                        // because of us, and say so once.
                        tracing::error!("access log: write failed; lines are being discarded");
                        for _ in rx.iter() {}
                        return;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    gone = true;
                    break;
                }
            }
        }
        let _ = out.flush();
        if gone {
            return;
        }
        std::thread::sleep(FLUSH_EVERY);
    }
}

/// One JSON object and a line feed. Written without `format!`: every request the gateway
/// serves is formatted on its core.
pub fn format_line(e: &AccessEntry, out: &mut Vec<u8>) {
    let start = out.len();
    let field = |out: &mut Vec<u8>, name: &str| {
        out.push(if out.len() == start { b'{' } else { b',' });
        out.push(b'"');
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b"\":");
    };
    let text = |out: &mut Vec<u8>, value: &str| {
        out.push(b'"');
        tollgate_protocol::json_text::escape_into(value, out);
        out.push(b'"');
    };
    field(out, "time");
    out.push(b'"');
    push_rfc3339_ms(out, e.time_ms);
    out.push(b'"');
    field(out, "route");
    text(out, e.route);
    for (name, value) in [
        ("request_id", e.request_id),
        ("key", e.key),
        ("key_prefix", e.key_prefix),
        ("team", e.team),
        ("model", e.model),
        ("deployment", e.deployment),
    ] {
        field(out, name);
        text(out, value);
    }
    for (name, value) in [
        ("status", u64::from(e.status)),
        ("input_tokens", e.input_tokens),
        ("output_tokens", e.output_tokens),
        ("cached_tokens", e.cached_tokens),
    ] {
        field(out, name);
        push_u64(out, value);
    }
    field(out, "cost_usd");
    push_decimal(out, e.cost_nanos, 9);
    field(out, "latency_ms");
    push_decimal(out, e.latency_us, 3);
    field(out, "ttft_ms");
    match e.ttft_us {
        Some(us) => push_decimal(out, us, 3),
        None => out.extend_from_slice(b"null"),
    }
    field(out, "attempts");
    push_u64(out, u64::from(e.attempts));
    out.extend_from_slice(b"}\n");
}

fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// `n / 10^places` as a JSON number, trailing zeros of the fraction dropped (`1.5`, `12`).
fn push_decimal(out: &mut Vec<u8>, n: u64, places: u32) {
    let scale = 10u64.pow(places);
    push_u64(out, n / scale);
    let mut frac = n % scale;
    if frac == 0 {
        return;
    }
    let mut digits = places as usize;
    while frac.is_multiple_of(10) {
        frac /= 10;
        digits -= 1;
    }
    out.push(b'.');
    let text = itoa::Buffer::new().format(frac).len();
    out.extend(std::iter::repeat_n(b'0', digits - text));
    push_u64(out, frac);
}

/// `2026-11-21T22:03:54.123Z` for Unix milliseconds.
fn push_rfc3339_ms(out: &mut Vec<u8>, ms: u64) {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let two = |out: &mut Vec<u8>, n: u64| {
        out.push(b'0' + (n / 10 % 10) as u8);
        out.push(b'0' + (n % 10) as u8);
    };
    let year = year.clamp(0, 9999) as u64;
    two(out, year / 100);
    two(out, year % 100);
    for (sep, n) in [
        (b'-', month as u64),
        (b'-', day as u64),
        (b'T', rest / 3600),
        (b':', rest / 60 % 60),
        (b':', rest % 60),
    ] {
        out.push(sep);
        two(out, n);
    }
    out.push(b'.');
    let ms = ms % 1000;
    out.push(b'0' + (ms / 100) as u8);
    out.push(b'0' + (ms / 10 % 10) as u8);
    out.push(b'0' + (ms % 10) as u8);
    out.push(b'Z');
}

#[cfg(test)]
fn rfc3339_ms(ms: u64) -> String {
    let mut out = Vec::new();
    push_rfc3339_ms(&mut out, ms);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn entry() -> AccessEntry<'static> {
        AccessEntry {
            time_ms: 1_763_762_634_123,
            request_id: "client \"7\"",
            route: "chat_completions",
            key: "demo",
            key_prefix: "sk-tg-...abcd",
            team: "ml",
            model: "gpt-4o-mini",
            deployment: "up/gpt-4o-mini",
            status: 200,
            input_tokens: 12,
            output_tokens: 5,
            cached_tokens: 0,
            cost_nanos: 4_800,
            latency_us: 1_234,
            ttft_us: None,
            attempts: 1,
        }
    }

    #[test]
    fn a_line_is_one_json_object_with_every_field() {
        let mut out = Vec::new();
        format_line(&entry(), &mut out);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["time"], "2025-11-21T22:03:54.123Z");
        assert_eq!(v["request_id"], "client \"7\"");
        assert_eq!(v["key_prefix"], "sk-tg-...abcd");
        assert_eq!(v["status"], 200);
        assert_eq!(v["cost_usd"], 0.0000048);
        assert_eq!(v["latency_ms"], 1.234);
        assert_eq!(v["ttft_ms"], serde_json::Value::Null);
        assert_eq!(v["attempts"], 1);
        assert_eq!(v["route"], "chat_completions");
        assert_eq!(v.as_object().unwrap().len(), 16);
    }

    #[test]
    fn decimals_are_exact_and_short() {
        let text = |n, places| {
            let mut out = Vec::new();
            push_decimal(&mut out, n, places);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(text(4_800, 9), "0.0000048");
        assert_eq!(text(1_234, 3), "1.234");
        assert_eq!(text(1_500, 3), "1.5");
        assert_eq!(text(12_000, 3), "12");
        assert_eq!(text(0, 3), "0");
        assert_eq!(text(1_000_000_001, 9), "1.000000001");
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(4_102_444_799_999), "2099-12-31T23:59:59.999Z");
    }

    #[test]
    fn lines_go_in_batches_and_a_full_queue_drops_and_counts_instead_of_waiting() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let logger = AccessLogger {
            tx: Some(tx),
            dropped: Arc::default(),
        };
        let core = CoreAccessLog::new(logger.clone());
        core.log(entry);
        core.log(entry);
        assert!(rx.is_empty(), "a batch waits for the tick or for 32 KiB");
        core.flush();
        let batch = rx.try_recv().unwrap();
        assert_eq!(batch.lines, 2);
        let text = String::from_utf8(batch.bytes).unwrap();
        assert_eq!(text.lines().count(), 2);
        // Enough lines to fill one batch: handed over without a tick.
        let line_len = text.len() / 2;
        for _ in 0..BATCH / line_len + 1 {
            core.log(entry);
        }
        assert_eq!(rx.len(), 1);
        // The queue is full: the next batch's lines are counted, not waited for.
        core.log(entry);
        core.log(entry);
        core.flush();
        assert_eq!(logger.dropped(), 2);
        assert_eq!(rx.len(), 1);
        // What a core holds when it goes is handed over.
        let _ = rx.try_recv();
        core.log(entry);
        drop(core);
        assert_eq!(rx.try_recv().unwrap().lines, 1);

        let off = CoreAccessLog::new(AccessLogger::default());
        off.log(|| panic!("never built when the log is off"));
        assert_eq!(off.logger.dropped(), 0);
    }
}
