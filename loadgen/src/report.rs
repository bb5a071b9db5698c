//! The result of a load run: counts, errors by kind, throughput and latency percentiles from
//! HDR histograms (microsecond resolution). Serializes to the `--json` output and renders the
//! human table.

use std::collections::BTreeMap;
use std::fmt;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram records (one hour, in microseconds); larger values saturate.
pub(crate) const MAX_LATENCY_US: u64 = 3_600_000_000;

/// A whole run's result (the `--json` output).
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    /// Target URL.
    pub url: String,
    /// `"closed"` (back-to-back per connection) or `"open"` (fixed rate).
    pub mode: &'static str,
    /// monoio driver the load ran on: `"io_uring"` or `"legacy"`.
    pub driver: &'static str,
    /// Connections (closed loop) or pool size (open loop).
    pub connections: usize,
    /// Runtime threads.
    pub threads: usize,
    /// Target rate (open loop).
    pub rate: Option<f64>,
    /// Whether responses were decoded as streams.
    pub stream: bool,
    /// Measured window in seconds (after warm-up, until the last measured request finished).
    pub duration_secs: f64,
    /// Requests sent during warm-up (finished, any outcome; not in any other figure).
    pub warmup_requests: u64,
    /// Measured requests that finished, successful or not.
    pub requests: u64,
    /// Open loop: requests due in the measured window that were never sent because every
    /// connection was still busy when the window closed (the target could not keep up).
    pub unsent: u64,
    /// Measured requests with a 2xx status and a complete, well-framed body.
    pub ok: u64,
    /// Measured failures by kind.
    pub errors: ErrorCounts,
    /// `requests / duration_secs`.
    pub requests_per_sec: f64,
    /// Response body bytes received (measured requests).
    pub body_bytes: u64,
    /// Latency of successful requests: from the send (open loop: the scheduled send) to the
    /// last body byte.
    pub latency: LatencySummary,
    /// Streams: time to the first data event carrying content, from the same start point.
    pub ttft: Option<LatencySummary>,
    /// Streams: time between consecutive content events.
    pub itl: Option<LatencySummary>,
}

/// Failures by kind. Every request that does not end in a 2xx with a complete body is exactly
/// one of these.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// Sum of all kinds.
    pub total: u64,
    /// Could not connect.
    pub connect: u64,
    /// No complete response within the timeout.
    pub timeout: u64,
    /// The connection failed or closed mid-exchange (reset, early EOF).
    pub io: u64,
    /// Malformed HTTP framing or SSE, or a 2xx stream that ended without `[DONE]`.
    pub protocol: u64,
    /// A 2xx stream that carried an error event.
    pub stream_error: u64,
    /// Non-2xx responses by status code.
    pub status: BTreeMap<u16, u64>,
}

/// Percentiles of one histogram, in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Smallest sample.
    pub min_us: u64,
    /// Mean.
    pub mean_us: f64,
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

/// One kind of request failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorKind {
    Connect,
    Timeout,
    Io,
    Protocol,
    StreamError,
    Status(u16),
}

// === impl ErrorCounts ===

impl ErrorCounts {
    pub(crate) fn add(&mut self, kind: ErrorKind) {
        self.total += 1;
        match kind {
            ErrorKind::Connect => self.connect += 1,
            ErrorKind::Timeout => self.timeout += 1,
            ErrorKind::Io => self.io += 1,
            ErrorKind::Protocol => self.protocol += 1,
            ErrorKind::StreamError => self.stream_error += 1,
            ErrorKind::Status(code) => *self.status.entry(code).or_default() += 1,
        }
    }

    pub(crate) fn merge(&mut self, other: &ErrorCounts) {
        self.total += other.total;
        self.connect += other.connect;
        self.timeout += other.timeout;
        self.io += other.io;
        self.protocol += other.protocol;
        self.stream_error += other.stream_error;
        for (code, n) in &other.status {
            *self.status.entry(*code).or_default() += n;
        }
    }
}

// === impl LatencySummary ===

impl LatencySummary {
    /// Summarizes a histogram of microseconds.
    pub fn from_histogram(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        Self {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// A histogram for microsecond latencies, 3 significant digits.
pub(crate) fn new_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
}

// === rendering ===

/// Formats microseconds with a readable unit.
fn fmt_us(us: u64) -> String {
    if us < 1_000 {
        format!("{us}us")
    } else if us < 1_000_000 {
        format!("{:.2}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

fn write_latency_row(f: &mut fmt::Formatter<'_>, name: &str, s: &LatencySummary) -> fmt::Result {
    writeln!(
        f,
        "  {name:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        fmt_us(s.p50_us),
        fmt_us(s.p90_us),
        fmt_us(s.p99_us),
        fmt_us(s.p999_us),
        fmt_us(s.max_us),
        fmt_us(s.mean_us.round() as u64),
        s.count
    )
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.rate {
            Some(rate) => format!("open loop at {rate} req/s, pool of {}", self.connections),
            None => format!("closed loop, {} connections", self.connections),
        };
        writeln!(f, "target     {}", self.url)?;
        writeln!(
            f,
            "mode       {mode}, {} thread(s), {}{}",
            self.threads,
            self.driver,
            if self.stream { ", streaming" } else { "" }
        )?;
        writeln!(
            f,
            "requests   {} in {:.2}s ({} ok), {} warm-up",
            self.requests, self.duration_secs, self.ok, self.warmup_requests
        )?;
        writeln!(f, "throughput {:.1} req/s", self.requests_per_sec)?;
        if self.unsent > 0 {
            writeln!(
                f,
                "unsent     {} due requests never sent: the target did not keep up",
                self.unsent
            )?;
        }
        let e = &self.errors;
        write!(f, "errors     {}", e.total)?;
        if e.total > 0 {
            let mut parts = Vec::new();
            for (name, n) in [
                ("connect", e.connect),
                ("timeout", e.timeout),
                ("io", e.io),
                ("protocol", e.protocol),
                ("stream_error", e.stream_error),
            ] {
                if n > 0 {
                    parts.push(format!("{name} {n}"));
                }
            }
            for (code, n) in &e.status {
                parts.push(format!("status {code}: {n}"));
            }
            write!(f, " ({})", parts.join(", "))?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "\n  {:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            "", "p50", "p90", "p99", "p99.9", "max", "mean", "count"
        )?;
        write_latency_row(f, "latency", &self.latency)?;
        if let Some(ttft) = &self.ttft {
            write_latency_row(f, "ttft", ttft)?;
        }
        if let Some(itl) = &self.itl {
            write_latency_row(f, "itl", itl)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn summary_percentiles() {
        let mut h = new_histogram().unwrap();
        for us in 1..=1000 {
            h.record(us).unwrap();
        }
        let s = LatencySummary::from_histogram(&h);
        assert_eq!(s.count, 1000);
        assert_eq!(s.min_us, 1);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p90_us, 900);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.max_us, 1000);
        assert_eq!(
            LatencySummary::from_histogram(&new_histogram().unwrap()).count,
            0
        );
    }

    #[test]
    fn error_counts_add_and_merge() {
        let mut a = ErrorCounts::default();
        a.add(ErrorKind::Status(503));
        a.add(ErrorKind::Status(503));
        a.add(ErrorKind::Timeout);
        let mut b = ErrorCounts::default();
        b.add(ErrorKind::Status(429));
        b.add(ErrorKind::Io);
        b.merge(&a);
        assert_eq!(b.total, 5);
        assert_eq!(b.status[&503], 2);
        assert_eq!(b.status[&429], 1);
        assert_eq!((b.timeout, b.io, b.connect), (1, 1, 0));
        let json = serde_json::to_value(&b).unwrap();
        assert_eq!(json["status"]["503"], 2);
    }
}
