//! The load engine: one monoio runtime per thread, each running its share of keep-alive
//! connections in a closed loop (back to back) or an open loop (fixed schedule, latency from
//! the scheduled send time). Every response is read to its end through the protocol crate's
//! framing decoder, and streams through its SSE decoder, so a bad response is counted as an
//! error rather than hidden.
//!
//! Threads share only atomics (request budget, progress counters); histograms are per thread
//! and merged at the end.

use std::cell::{Cell, RefCell};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use monoio::net::TcpStream;
use tollgate_protocol::http::{
    write_request_head, BodyChunk, BodyDecoder, Limits, Method, ResponseHead,
};
use tollgate_protocol::sse::SseDecoder;

use crate::io::{build_runtime, read_more, Driver};
use crate::options::{parse_target, LoadError, LoadOptions, Target};
use crate::report::{new_histogram, ErrorCounts, ErrorKind, LatencySummary, LoadReport};

/// Largest response body accepted (larger is a protocol error).
const MAX_RESPONSE_BODY: u64 = 256 * 1024 * 1024;

/// Largest single SSE event accepted.
const MAX_SSE_FRAME: usize = 1024 * 1024;

/// How late a monoio timer can fire (two ticks of its millisecond wheel).
const TIMER_SLACK: Duration = Duration::from_millis(2);

/// Pause after a failed connect, so a dead target does not spin the CPU.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// Runs a load test to completion (bounded by `opts.duration` after `opts.warmup`, and by
/// `opts.requests` when set) and returns its report.
pub fn run(opts: LoadOptions) -> Result<LoadReport, LoadError> {
    opts.validate()?;
    let target = parse_target(&opts.url)?;
    let request = build_request(&opts, &target);
    let vary = opts
        .vary
        .as_deref()
        .map(|marker| Vary::new(&request, marker));
    let threads = opts.threads;
    let shared = Arc::new(Shared {
        addr: target.addr,
        request,
        vary,
        stream: opts.stream,
        rate: opts.rate,
        threads: threads as u64,
        warmup: opts.warmup,
        duration: opts.duration,
        timeout: opts.timeout,
        budget: AtomicU64::new(opts.requests.unwrap_or(u64::MAX)),
        start: OnceLock::new(),
        barrier: Barrier::new(threads),
        failed: AtomicBool::new(false),
        progress: Progress::default(),
        driver: opts.driver,
    });

    let mut handles: Vec<JoinHandle<Result<ThreadResult, LoadError>>> = Vec::with_capacity(threads);
    for t in 0..threads {
        // Spread connections as evenly as possible.
        let conns = opts.connections / threads + usize::from(t < opts.connections % threads);
        let thread_shared = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name(format!("tollgate-loadgen-{t}"))
            .spawn(move || thread_main(&thread_shared, t as u64, conns));
        match spawned {
            Ok(handle) => handles.push(handle),
            Err(err) => {
                // Threads already waiting at the barrier would wait forever: fail them all.
                shared.failed.store(true, Ordering::Release);
                for _ in handles.len()..threads {
                    shared.barrier.wait();
                }
                return Err(err.into());
            }
        }
    }

    if opts.progress {
        print_progress(&shared, &handles);
    }

    let mut merged: Option<ThreadResult> = None;
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(result)) => match &mut merged {
                Some(m) => m.merge(result),
                None => merged = Some(result),
            },
            Ok(Err(err)) => {
                first_error.get_or_insert(err);
            }
            Err(_) => {
                first_error.get_or_insert(LoadError::Io(io::Error::other(
                    "a load generator thread panicked",
                )));
            }
        }
    }
    if let Some(err) = first_error {
        return Err(err);
    }
    let merged = merged.ok_or_else(|| LoadError::InvalidOption("no threads ran".into()))?;
    Ok(merged.into_report(&opts, &shared))
}

/// The request every connection sends: head and body in one buffer.
fn build_request(opts: &LoadOptions, target: &Target) -> Bytes {
    let body = opts
        .body
        .clone()
        .unwrap_or_else(|| default_body(&target.path, &opts.model, opts.stream));
    let mut len = itoa::Buffer::new();
    let accept: &[u8] = if opts.stream {
        b"text/event-stream"
    } else {
        b"application/json"
    };
    let mut headers: Vec<(&str, &[u8])> = vec![
        ("host", target.host.as_bytes()),
        ("user-agent", b"tollgate-loadgen"),
        ("accept", accept),
        ("content-type", b"application/json"),
        ("content-length", len.format(body.len()).as_bytes()),
    ];
    for (name, value) in &opts.headers {
        // A user header replaces a default of the same name.
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        headers.push((name.as_str(), value.as_bytes()));
    }
    let mut out = BytesMut::with_capacity(256 + body.len());
    write_request_head(&mut out, "POST", &target.path, &headers);
    out.extend_from_slice(&body);
    out.freeze()
}

/// Per-request bodies (see [`LoadOptions::vary`]): the marker's offsets in the request.
#[derive(Debug)]
struct Vary {
    offsets: Vec<usize>,
    width: usize,
    /// Requests numbered so far, over every thread.
    next: AtomicU64,
}

impl Vary {
    /// The marker's occurrences in `request` (options were validated: it is in the body,
    /// which is the end of the request).
    fn new(request: &[u8], marker: &str) -> Self {
        let head_end = memchr::memmem::find(request, b"\r\n\r\n").map_or(0, |i| i + 4);
        let offsets = memchr::memmem::find_iter(&request[head_end..], marker.as_bytes())
            .map(|i| head_end + i)
            .collect();
        Vary {
            offsets,
            width: marker.len(),
            next: AtomicU64::new(0),
        }
    }

    /// `request` with the next sequence number written over every occurrence of the marker.
    fn next(&self, request: &Bytes) -> Bytes {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let mut digits = [b'0'; 20];
        let mut rest = n;
        for d in digits[..self.width].iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let mut out = BytesMut::from(&request[..]);
        for &at in &self.offsets {
            out[at..at + self.width].copy_from_slice(&digits[..self.width]);
        }
        out.freeze()
    }
}

/// A small realistic body for the endpoint the path names (chat completions by default).
pub fn default_body(path: &str, model: &str, stream: bool) -> Bytes {
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let mut body = if path.ends_with("/embeddings") {
        serde_json::json!({
            "model": model,
            "input": "The quick brown fox jumps over the lazy dog.",
        })
    } else if path.ends_with("/completions") && !path.ends_with("/chat/completions") {
        serde_json::json!({
            "model": model,
            "prompt": "Write a haiku about load testing an AI gateway.",
            "max_tokens": 64,
        })
    } else {
        serde_json::json!({
            "model": model,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "Write a haiku about load testing an AI gateway."},
            ],
            "max_tokens": 64,
        })
    };
    if stream && !path.ends_with("/embeddings") {
        body["stream"] = true.into();
        body["stream_options"] = serde_json::json!({"include_usage": true});
    }
    Bytes::from(body.to_string())
}

// === shared state ===

/// What every thread of a run shares.
#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    request: Bytes,
    /// Where each request's sequence number goes, when bodies vary.
    vary: Option<Vary>,
    stream: bool,
    rate: Option<f64>,
    threads: u64,
    warmup: Duration,
    duration: Duration,
    timeout: Duration,
    /// Measured requests still allowed.
    budget: AtomicU64,
    /// Start of the run, set by the first thread past the barrier.
    start: OnceLock<Instant>,
    barrier: Barrier,
    /// A thread could not start: everyone stops.
    failed: AtomicBool,
    progress: Progress,
    driver: Driver,
}

/// Live counters for the progress line (all requests, warm-up included).
#[derive(Debug, Default)]
struct Progress {
    done: AtomicU64,
    errors: AtomicU64,
}

impl Shared {
    /// Takes one request from the budget; `false` when it is spent.
    fn claim(&self) -> bool {
        self.budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }
}

/// The run's fixed instants.
#[derive(Debug, Clone, Copy)]
struct Timeline {
    start: Instant,
    warmup_end: Instant,
    deadline: Instant,
}

// === threads ===

/// One thread's share of the results.
#[derive(Debug)]
struct ThreadResult {
    driver: &'static str,
    latency: Histogram<u64>,
    ttft: Histogram<u64>,
    itl: Histogram<u64>,
    errors: ErrorCounts,
    ok: u64,
    requests: u64,
    warmup: u64,
    body_bytes: u64,
    timeline: Option<Timeline>,
    last_done: Option<Instant>,
}

fn thread_main(shared: &Arc<Shared>, index: u64, conns: usize) -> Result<ThreadResult, LoadError> {
    let built = build_runtime(shared.driver)
        .map_err(LoadError::from)
        .and_then(|rt| Ok((rt, ThreadResult::new()?)));
    if built.is_err() {
        shared.failed.store(true, Ordering::Release);
    }
    shared.barrier.wait();
    let ((mut runtime, driver), mut result) = built?;
    if shared.failed.load(Ordering::Acquire) {
        return Err(LoadError::Io(io::Error::other(
            "another load generator thread failed to start",
        )));
    }
    result.driver = driver;
    let start = *shared.start.get_or_init(Instant::now);
    let warmup_end = start + shared.warmup;
    let timeline = Timeline {
        start,
        warmup_end,
        deadline: warmup_end + shared.duration,
    };
    result.timeline = Some(timeline);
    let ctx = Rc::new(ThreadCtx {
        shared: Arc::clone(shared),
        index,
        timeline,
        next: Cell::new(0),
        result: RefCell::new(result),
    });
    let task_ctx = Rc::clone(&ctx);
    runtime.block_on(async move {
        let handles: Vec<_> = (0..conns)
            .map(|_| monoio::spawn(connection_loop(Rc::clone(&task_ctx))))
            .collect();
        for handle in handles {
            handle.await;
        }
    });
    drop(runtime);
    Rc::try_unwrap(ctx)
        .map(|ctx| ctx.result.into_inner())
        .map_err(|_| LoadError::Io(io::Error::other("connection tasks outlived the runtime")))
}

/// Per-thread state shared by that thread's connection tasks.
struct ThreadCtx {
    shared: Arc<Shared>,
    index: u64,
    timeline: Timeline,
    /// Open loop: this thread's next schedule slot.
    next: Cell<u64>,
    result: RefCell<ThreadResult>,
}

impl ThreadCtx {
    /// The next request's reference instant (its send time, scheduled in open loop) and
    /// whether it is measured; `None` when the run is over for this connection.
    fn next_request(&self) -> Option<(Instant, bool)> {
        let t = &self.timeline;
        let reference = match self.shared.rate {
            None => Instant::now(),
            Some(rate) => {
                let slot = self.next.get();
                self.next.set(slot + 1);
                let global = slot * self.shared.threads + self.index;
                t.start + Duration::from_secs_f64(global as f64 / rate)
            }
        };
        // Open loop: a slot still due when the window closes is not sent (see `unsent`),
        // so an overloaded target cannot stretch the run.
        if reference >= t.deadline
            || Instant::now() >= t.deadline
            || self.shared.failed.load(Ordering::Relaxed)
        {
            return None;
        }
        let measured = reference >= t.warmup_end;
        if measured && !self.shared.claim() {
            return None;
        }
        Some((reference, measured))
    }
}

async fn connection_loop(ctx: Rc<ThreadCtx>) {
    let shared = &ctx.shared;
    let mut conn = Connection::new(shared.addr, shared.stream);
    let mut times = StreamTimes::default();
    while let Some((scheduled, measured)) = ctx.next_request() {
        let mut reference = scheduled;
        if shared.rate.is_some() {
            // monoio's timers tick in whole milliseconds: a deadline is rounded up to the next
            // tick and the park timeout is counted from the truncated current tick, so a sleep
            // can end up to two milliseconds late, lag that would be counted as latency. Wake
            // that much early instead, and measure from the earlier of the scheduled and the
            // actual send time: early sends measure the true service time, late ones keep
            // counting from the schedule (coordinated omission stays visible).
            if let Some(wake) = scheduled.checked_sub(TIMER_SLACK) {
                if wake > Instant::now() {
                    monoio::time::sleep_until(monoio::time::Instant::from_std(wake)).await;
                }
            }
            reference = scheduled.min(Instant::now());
        }
        times.clear();
        let request = match &shared.vary {
            Some(vary) => vary.next(&shared.request),
            None => shared.request.clone(),
        };
        let outcome = monoio::time::timeout(shared.timeout, conn.exchange(&request, &mut times))
            .await
            .unwrap_or(Err(ErrorKind::Timeout));
        let done = Instant::now();
        if let Err(kind) = outcome {
            // After a failure the connection's state is unknown (status errors excepted, see
            // `exchange`): start over on a new one.
            if !matches!(kind, ErrorKind::Status(_)) {
                conn.close();
            }
        }
        shared.progress.done.fetch_add(1, Ordering::Relaxed);
        if outcome.is_err() {
            shared.progress.errors.fetch_add(1, Ordering::Relaxed);
        }
        ctx.result
            .borrow_mut()
            .record(measured, reference, done, outcome, &times, shared.stream);
        if outcome == Err(ErrorKind::Connect) {
            monoio::time::sleep(CONNECT_BACKOFF).await;
        }
    }
}

// === impl ThreadResult ===

impl ThreadResult {
    fn new() -> Result<Self, LoadError> {
        Ok(Self {
            driver: "",
            latency: new_histogram()?,
            ttft: new_histogram()?,
            itl: new_histogram()?,
            errors: ErrorCounts::default(),
            ok: 0,
            requests: 0,
            warmup: 0,
            body_bytes: 0,
            timeline: None,
            last_done: None,
        })
    }

    fn record(
        &mut self,
        measured: bool,
        reference: Instant,
        done: Instant,
        outcome: Result<u64, ErrorKind>,
        times: &StreamTimes,
        stream: bool,
    ) {
        if !measured {
            self.warmup += 1;
            return;
        }
        self.requests += 1;
        self.last_done = self.last_done.max(Some(done));
        match outcome {
            Ok(body_bytes) => {
                self.ok += 1;
                self.body_bytes += body_bytes;
                self.latency
                    .saturating_record(micros(done.saturating_duration_since(reference)));
                if stream {
                    if let Some(first) = times.first {
                        self.ttft
                            .saturating_record(micros(first.saturating_duration_since(reference)));
                    }
                    for gap in &times.gaps {
                        self.itl.saturating_record(*gap);
                    }
                }
            }
            Err(kind) => self.errors.add(kind),
        }
    }

    fn merge(&mut self, other: ThreadResult) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
        let _ = self.ttft.add(&other.ttft);
        let _ = self.itl.add(&other.itl);
        self.errors.merge(&other.errors);
        self.ok += other.ok;
        self.requests += other.requests;
        self.warmup += other.warmup;
        self.body_bytes += other.body_bytes;
        self.last_done = self.last_done.max(other.last_done);
        if self.timeline.is_none() {
            self.timeline = other.timeline;
        }
    }

    fn into_report(self, opts: &LoadOptions, shared: &Shared) -> LoadReport {
        let duration_secs = match (self.timeline, self.last_done) {
            (Some(t), Some(last)) => last.saturating_duration_since(t.warmup_end).as_secs_f64(),
            _ => 0.0,
        };
        let unsent = match shared.rate {
            Some(rate) => {
                let warmup = shared.warmup.as_secs_f64();
                let end = warmup + shared.duration.as_secs_f64();
                let due = ((rate * end).ceil() - (rate * warmup).ceil()).max(0.0) as u64;
                due.min(opts.requests.unwrap_or(u64::MAX))
                    .saturating_sub(self.requests)
            }
            None => 0,
        };
        let requests_per_sec = if duration_secs > 0.0 {
            self.requests as f64 / duration_secs
        } else {
            0.0
        };
        LoadReport {
            url: opts.url.clone(),
            mode: if shared.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            driver: self.driver,
            connections: opts.connections,
            threads: opts.threads,
            rate: opts.rate,
            stream: opts.stream,
            duration_secs,
            warmup_requests: self.warmup,
            requests: self.requests,
            unsent,
            ok: self.ok,
            errors: self.errors,
            requests_per_sec,
            body_bytes: self.body_bytes,
            latency: LatencySummary::from_histogram(&self.latency),
            ttft: opts
                .stream
                .then(|| LatencySummary::from_histogram(&self.ttft)),
            itl: opts
                .stream
                .then(|| LatencySummary::from_histogram(&self.itl)),
        }
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Prints one progress line per second on stderr until every thread has finished.
fn print_progress(shared: &Shared, handles: &[JoinHandle<Result<ThreadResult, LoadError>>]) {
    let began = Instant::now();
    let mut next = began + Duration::from_secs(1);
    let mut last_done = 0;
    while !handles.iter().all(JoinHandle::is_finished) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        next += Duration::from_secs(1);
        let done = shared.progress.done.load(Ordering::Relaxed);
        let errors = shared.progress.errors.load(Ordering::Relaxed);
        let phase = match shared.start.get() {
            Some(start) if now < *start + shared.warmup => " (warm-up)",
            _ => "",
        };
        eprintln!(
            "[{:>4.0}s] {done} requests, {} req/s, {errors} errors{phase}",
            began.elapsed().as_secs_f64(),
            done - last_done,
        );
        last_done = done;
    }
}

// === connections ===

/// When a stream's content events arrived.
#[derive(Debug, Default)]
struct StreamTimes {
    first: Option<Instant>,
    last: Option<Instant>,
    /// Microseconds between consecutive content events.
    gaps: Vec<u64>,
    done: bool,
    error: bool,
}

impl StreamTimes {
    fn clear(&mut self) {
        self.first = None;
        self.last = None;
        self.gaps.clear();
        self.done = false;
        self.error = false;
    }

    fn content_event(&mut self, now: Instant) {
        if let Some(last) = self.last {
            self.gaps.push(micros(now.saturating_duration_since(last)));
        } else {
            self.first = Some(now);
        }
        self.last = Some(now);
    }
}

/// One keep-alive client connection, reconnected on demand.
struct Connection {
    addr: SocketAddr,
    stream_mode: bool,
    socket: Option<TcpStream>,
    rbuf: BytesMut,
    sse_buf: BytesMut,
    sse: SseDecoder,
    limits: Limits,
}

impl Connection {
    fn new(addr: SocketAddr, stream_mode: bool) -> Self {
        Self {
            addr,
            stream_mode,
            socket: None,
            rbuf: BytesMut::with_capacity(crate::io::READ_CHUNK),
            sse_buf: BytesMut::new(),
            sse: SseDecoder::new(MAX_SSE_FRAME),
            limits: Limits {
                max_body_bytes: MAX_RESPONSE_BODY,
                ..Limits::default()
            },
        }
    }

    fn close(&mut self) {
        self.socket = None;
        self.rbuf.clear();
    }

    /// Sends `request` and reads the whole response. `Ok(body bytes)` for a 2xx with a
    /// complete body (and, for streams, `[DONE]` and no error event). A non-2xx is
    /// `Err(Status)` with the connection still usable when the response allowed keep-alive
    /// (it is closed here otherwise); any other error leaves the connection for the caller
    /// to close.
    async fn exchange(
        &mut self,
        request: &Bytes,
        times: &mut StreamTimes,
    ) -> Result<u64, ErrorKind> {
        if self.socket.is_none() {
            let socket = TcpStream::connect_addr(self.addr)
                .await
                .map_err(|_| ErrorKind::Connect)?;
            let _ = socket.set_nodelay(true);
            self.socket = Some(socket);
            self.rbuf.clear();
        }
        let socket = self.socket.as_mut().ok_or(ErrorKind::Connect)?;
        let (written, _) = monoio::io::AsyncWriteRentExt::write_all(socket, request.clone()).await;
        written.map_err(|_| ErrorKind::Io)?;

        let head = loop {
            match ResponseHead::parse(&mut self.rbuf, &self.limits, Method::Post) {
                // Interim responses (100 Continue) are skipped.
                Ok(Some(head)) if (100..200).contains(&head.status) => {}
                Ok(Some(head)) => break head,
                Ok(None) => {
                    if read(socket, &mut self.rbuf).await? == 0 {
                        return Err(ErrorKind::Io);
                    }
                }
                Err(_) => return Err(ErrorKind::Protocol),
            }
        };
        let success = (200..300).contains(&head.status);
        let parse_sse = self.stream_mode && success;
        if parse_sse {
            self.sse.finish(&mut self.sse_buf);
        }
        let mut decoder = BodyDecoder::with_limits(head.framing, &self.limits)
            .map_err(|_| ErrorKind::Protocol)?;
        let mut body_bytes = 0u64;
        loop {
            match decoder.decode(&mut self.rbuf) {
                Ok(BodyChunk::Data(data)) => {
                    body_bytes += data.len() as u64;
                    if parse_sse {
                        self.sse_buf.extend_from_slice(&data);
                        drain_sse(&mut self.sse, &mut self.sse_buf, times, false)?;
                    }
                }
                Ok(BodyChunk::NeedMore) => {
                    if read(socket, &mut self.rbuf).await? == 0 {
                        decoder.on_eof().map_err(|_| ErrorKind::Io)?;
                    }
                }
                Ok(BodyChunk::Done) => break,
                Err(_) => return Err(ErrorKind::Protocol),
            }
        }
        if parse_sse {
            drain_sse(&mut self.sse, &mut self.sse_buf, times, true)?;
            if self.sse.finish(&mut self.sse_buf) || !times.done {
                return Err(ErrorKind::Protocol);
            }
            if times.error {
                return Err(ErrorKind::StreamError);
            }
        }
        if !self.rbuf.is_empty() {
            // We never pipeline: bytes after a response are a framing error.
            return Err(ErrorKind::Protocol);
        }
        if !head.keep_alive {
            self.close();
        }
        if success {
            Ok(body_bytes)
        } else {
            Err(ErrorKind::Status(head.status))
        }
    }
}

async fn read(socket: &mut TcpStream, buf: &mut BytesMut) -> Result<usize, ErrorKind> {
    read_more(socket, buf).await.map_err(|_| ErrorKind::Io)
}

/// Decodes every complete SSE event in `buf`, noting content events, `[DONE]` and errors.
fn drain_sse(
    decoder: &mut SseDecoder,
    buf: &mut BytesMut,
    times: &mut StreamTimes,
    at_end: bool,
) -> Result<(), ErrorKind> {
    loop {
        let frame = if at_end {
            decoder.decode_final(buf)
        } else {
            decoder.decode(buf)
        };
        let frame = match frame {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(()),
            Err(_) => return Err(ErrorKind::Protocol),
        };
        if frame.is_done() {
            times.done = true;
            continue;
        }
        let Some(data) = frame.data.as_deref() else {
            continue;
        };
        if frame.event.as_deref() == Some("error") || data.trim_start().starts_with("{\"error\"") {
            times.error = true;
        } else if has_content(data) {
            times.content_event(Instant::now());
        }
    }
}

/// Whether an OpenAI chunk carries generated text: a non-empty `content` or `text` string.
fn has_content(data: &str) -> bool {
    ["\"content\":", "\"text\":"].iter().any(|key| {
        data.match_indices(key).any(|(i, _)| {
            let value = data[i + key.len()..].trim_start();
            value.starts_with('"') && !value[1..].starts_with('"') && value.len() > 1
        })
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn content_detection() {
        assert!(has_content(r#"{"choices":[{"delta":{"content":"Hi"}}]}"#));
        assert!(has_content(r#"{"choices":[{"delta":{"content": "Hi"}}]}"#));
        assert!(has_content(r#"{"choices":[{"text":" a","index":0}]}"#));
        assert!(!has_content(
            r#"{"choices":[{"delta":{"role":"assistant","content":""}}]}"#
        ));
        assert!(!has_content(
            r#"{"choices":[{"delta":{},"finish_reason":"stop"}]}"#
        ));
        assert!(!has_content(
            r#"{"choices":[],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(!has_content(r#"{"choices":[{"delta":{"content":null}}]}"#));
    }

    #[test]
    fn default_bodies_match_the_endpoint() {
        let chat: serde_json::Value =
            serde_json::from_slice(&default_body("/v1/chat/completions", "m", true)).unwrap();
        assert_eq!(chat["model"], "m");
        assert_eq!(chat["messages"][1]["role"], "user");
        assert_eq!(chat["stream"], true);
        assert_eq!(chat["stream_options"]["include_usage"], true);
        let cmpl: serde_json::Value =
            serde_json::from_slice(&default_body("/v1/completions", "m", false)).unwrap();
        assert!(cmpl["prompt"].is_string());
        assert!(cmpl.get("stream").is_none());
        let emb: serde_json::Value =
            serde_json::from_slice(&default_body("/v1/embeddings", "e", true)).unwrap();
        assert!(emb["input"].is_string());
        assert!(emb.get("stream").is_none());
    }

    #[test]
    fn request_bytes() {
        let opts = LoadOptions {
            url: "http://127.0.0.1:9/v1/chat/completions".into(),
            headers: vec![("Authorization".into(), "Bearer k".into())],
            ..LoadOptions::default()
        };
        let target = parse_target(&opts.url).unwrap();
        let req = build_request(&opts, &target);
        let text = std::str::from_utf8(&req).unwrap();
        assert!(text.starts_with("POST /v1/chat/completions HTTP/1.1\r\n"));
        assert!(text.contains("\r\nhost: 127.0.0.1:9\r\n"));
        assert!(text.contains("\r\nAuthorization: Bearer k\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }

    #[test]
    fn varied_bodies_number_every_marker_and_keep_their_length() {
        let opts = LoadOptions {
            url: "http://127.0.0.1:9/v1/chat/completions".into(),
            body: Some(Bytes::from_static(
                b"{\"a\":\"order XXXXXX\",\"b\":\"XXXXXX!\"}",
            )),
            vary: Some("XXXXXX".into()),
            ..LoadOptions::default()
        };
        opts.validate().unwrap();
        let target = parse_target(&opts.url).unwrap();
        let req = build_request(&opts, &target);
        let vary = Vary::new(&req, "XXXXXX");
        let bodies: Vec<String> = (0..3)
            .map(|_| {
                let r = vary.next(&req);
                assert_eq!(r.len(), req.len());
                let text = String::from_utf8(r.to_vec()).unwrap();
                text.split_once("\r\n\r\n").unwrap().1.to_owned()
            })
            .collect();
        assert_eq!(bodies[0], r#"{"a":"order 000000","b":"000000!"}"#);
        assert_eq!(bodies[2], r#"{"a":"order 000002","b":"000002!"}"#);
        let missing = LoadOptions {
            vary: Some("YYYYYY".into()),
            ..opts.clone()
        };
        assert!(missing.validate().is_err());
        let short = LoadOptions {
            vary: Some("XXX".into()),
            ..opts
        };
        assert!(short.validate().is_err());
    }
}
