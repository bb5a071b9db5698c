//! What a load run is asked to do ([`LoadOptions`]), how it can be refused ([`LoadError`]), and
//! the parsing shared with the CLI: loopback-only target URLs and human durations.
//!
//! Never resolves a name other than `localhost` and never accepts a non-loopback address: load
//! only ever targets this machine.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use bytes::Bytes;

use crate::io::Driver;

/// A load run's parameters. `Default` is a 10 s closed loop of 16 connections on one thread.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// `http://<loopback host>[:port]/path`.
    pub url: String,
    /// Closed loop: concurrent connections, each sending back to back. Open loop (`rate`): the
    /// connection pool size.
    pub connections: usize,
    /// Open loop: requests per second, scheduled at fixed intervals; latency is measured from
    /// each request's scheduled send time, so queueing behind a slow server is not hidden.
    /// (Requests may leave up to 2 ms early, the slack of monoio's millisecond timers; those
    /// count from the actual send.)
    pub rate: Option<f64>,
    /// Measured run time after the warm-up. Always bounded.
    pub duration: Duration,
    /// Stop after this many measured requests (the duration still bounds the run).
    pub requests: Option<u64>,
    /// Run this long before measuring; warm-up requests are counted apart and not recorded.
    pub warmup: Duration,
    /// Runtime threads (connections and rate are split across them).
    pub threads: usize,
    /// Streamed requests: the default body asks for `stream: true` with usage, and the response
    /// is decoded as SSE to record time to first token and inter-token latency.
    pub stream: bool,
    /// Extra request headers (for example `Authorization`).
    pub headers: Vec<(String, String)>,
    /// Model for the default body.
    pub model: String,
    /// Request body sent verbatim; `None` builds a small realistic body for the URL's endpoint.
    pub body: Option<Bytes>,
    /// Makes every request's body different: each occurrence of this marker in the body is
    /// replaced by the request's sequence number in decimal, zero-padded to the marker's
    /// length (so the length never changes; numbers wrap at that many digits). For servers
    /// that remember what they have seen, such as a gateway's memo of clean prompts.
    pub vary: Option<String>,
    /// Per-request time limit (connect, send, and reading the whole response).
    pub timeout: Duration,
    /// Print a progress line on stderr every second.
    pub progress: bool,
    /// monoio driver of the load threads.
    pub driver: Driver,
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The URL is not `http://host[:port]/path`.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The URL's host is not a loopback address.
    #[error("refusing to send load to {host:?}: only loopback targets (127.0.0.0/8, ::1, localhost) are allowed")]
    NotLoopback {
        /// The host as given.
        host: String,
    },
    /// An option is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// A runtime thread could not be started.
    #[error("could not start the load generator: {0}")]
    Io(#[from] std::io::Error),
    /// A latency histogram could not be created.
    #[error("could not create a histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
}

/// Where requests go, resolved from a URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The loopback socket address.
    pub addr: SocketAddr,
    /// `Host` header value (`host[:port]` as written in the URL).
    pub host: String,
    /// Request target (path and query), at least `/`.
    pub path: String,
}

/// Shortest `vary` marker: four digits repeat after 10,000 requests.
pub const MIN_VARY_DIGITS: usize = 4;
/// Longest `vary` marker (a `u64` has 20 digits).
pub const MAX_VARY_DIGITS: usize = 19;

// === impl LoadOptions ===

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8080/v1/chat/completions".to_owned(),
            connections: 16,
            rate: None,
            duration: Duration::from_secs(10),
            requests: None,
            warmup: Duration::ZERO,
            threads: 1,
            stream: false,
            headers: Vec::new(),
            model: "gpt-4o-mini".to_owned(),
            body: None,
            vary: None,
            timeout: Duration::from_secs(30),
            progress: false,
            driver: Driver::Auto,
        }
    }
}

impl LoadOptions {
    /// Checks ranges: at least one connection and thread, a positive finite rate, a non-zero
    /// duration and timeout, header names and values that cannot break the head.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |m: String| Err(LoadError::InvalidOption(m));
        if self.connections == 0 {
            return bad("connections must be at least 1".into());
        }
        if self.threads == 0 {
            return bad("threads must be at least 1".into());
        }
        if self.threads > self.connections {
            return bad(format!(
                "threads ({}) must not exceed connections ({})",
                self.threads, self.connections
            ));
        }
        if let Some(rate) = self.rate {
            if !(rate.is_finite() && rate > 0.0) {
                return bad(format!("rate must be a positive number, got {rate}"));
            }
        }
        if self.duration.is_zero() {
            return bad("duration must be positive".into());
        }
        if self.timeout.is_zero() {
            return bad("timeout must be positive".into());
        }
        if self.requests == Some(0) {
            return bad("requests must be at least 1".into());
        }
        if let Some(marker) = &self.vary {
            if !(MIN_VARY_DIGITS..=MAX_VARY_DIGITS).contains(&marker.len()) {
                return bad(format!(
                    "vary marker must be {MIN_VARY_DIGITS} to {MAX_VARY_DIGITS} bytes long, got {marker:?}"
                ));
            }
            let body = self.body.as_deref().unwrap_or_default();
            if memchr::memmem::find(body, marker.as_bytes()).is_none() {
                return bad(format!("vary marker {marker:?} does not occur in the body"));
            }
        }
        for (name, value) in &self.headers {
            let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
            if name.is_empty() || !name.bytes().all(token) {
                return bad(format!("invalid header name {name:?}"));
            }
            if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return bad(format!("header {name} has a line break in its value"));
            }
            let lower = name.to_ascii_lowercase();
            if matches!(
                lower.as_str(),
                "content-length" | "transfer-encoding" | "host" | "connection"
            ) {
                return bad(format!("header {name} is set by the load generator"));
            }
        }
        Ok(())
    }
}

// === parsing ===

/// Parses `http://host[:port]/path`, refusing anything that is not loopback. `localhost` is
/// resolved (to its first loopback address); other names are refused without a lookup.
pub fn parse_target(url: &str) -> Result<Target, LoadError> {
    let invalid = |reason| LoadError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let rest = if let Some(rest) = url.strip_prefix("http://") {
        rest
    } else if url.starts_with("https://") {
        return Err(invalid(
            "https is not supported; use plain http on loopback",
        ));
    } else {
        return Err(invalid("expected http://host[:port]/path"));
    };
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    if path.bytes().any(|b| b <= b' ' || b == 0x7f) || path.contains('#') {
        return Err(invalid(
            "the path has spaces, control characters or a fragment",
        ));
    }
    if authority.is_empty() || authority.contains('@') {
        return Err(invalid("expected host[:port] (no user info)"));
    }
    let (host, port) = split_host_port(authority).ok_or_else(|| invalid("bad host or port"))?;
    let not_loopback = || LoadError::NotLoopback {
        host: host.to_owned(),
    };
    let ip = if let Ok(ip) = host.parse::<IpAddr>() {
        if !ip.is_loopback() {
            return Err(not_loopback());
        }
        ip
    } else if host.eq_ignore_ascii_case("localhost") {
        (host, port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.find(|a| a.ip().is_loopback()))
            .map(|a| a.ip())
            .ok_or_else(not_loopback)?
    } else {
        return Err(not_loopback());
    };
    Ok(Target {
        addr: SocketAddr::new(ip, port),
        host: authority.to_owned(),
        path,
    })
}

/// `host`, `host:port`, `[v6]`, `[v6]:port` (default port 80).
fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
        None => 80,
    };
    (!host.is_empty()).then_some((host, port))
}

/// Parses `250us`, `10ms`, `1s`, `1.5s`, `2m`, `1h`, or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. 500ms, 10s, 2m"))?;
    let seconds = match unit.trim() {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("invalid duration unit {other:?} in {s:?}")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("duration {s:?} is out of range"))
}

/// Parses a `Name: value` header.
pub fn parse_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("invalid header {s:?}: expected \"Name: value\""))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("invalid header {s:?}: empty name"));
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn targets_must_be_loopback() {
        let t = parse_target("http://127.0.0.1:8080/v1/chat/completions").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:8080");
        assert_eq!(t.path, "/v1/chat/completions");
        let t = parse_target("http://[::1]:9/x?y=1").unwrap();
        assert_eq!(t.addr, "[::1]:9".parse().unwrap());
        assert_eq!(t.path, "/x?y=1");
        assert_eq!(parse_target("http://127.1.2.3").unwrap().path, "/");
        assert_eq!(parse_target("http://127.0.0.1").unwrap().addr.port(), 80);
        assert!(parse_target("http://localhost:1234/")
            .unwrap()
            .addr
            .ip()
            .is_loopback());
        for url in [
            "http://10.0.0.1/",
            "http://example.com/",
            "http://0.0.0.0:80/",
            "http://[2001:db8::1]:80/",
            "http://127.0.0.1.nip.io/",
        ] {
            assert!(
                matches!(parse_target(url), Err(LoadError::NotLoopback { .. })),
                "{url}"
            );
        }
        for url in [
            "https://127.0.0.1/",
            "127.0.0.1:80/",
            "http://user@127.0.0.1/",
            "http://127.0.0.1:0/",
            "http://127.0.0.1:x/",
            "http:///",
            "http://127.0.0.1/a b",
        ] {
            assert!(
                matches!(parse_target(url), Err(LoadError::InvalidUrl { .. })),
                "{url}"
            );
        }
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5parsecs").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn headers_and_validation() {
        assert_eq!(
            parse_header("Authorization: Bearer sk-1"),
            Ok(("Authorization".into(), "Bearer sk-1".into()))
        );
        assert!(parse_header("nocolon").is_err());
        let mut opts = LoadOptions::default();
        assert!(opts.validate().is_ok());
        opts.headers.push(("Content-Length".into(), "5".into()));
        assert!(opts.validate().is_err());
        opts.headers.clear();
        opts.headers.push(("X-A".into(), "a\r\nb".into()));
        assert!(opts.validate().is_err());
        let opts = LoadOptions {
            rate: Some(0.0),
            ..LoadOptions::default()
        };
        assert!(opts.validate().is_err());
        let opts = LoadOptions {
            threads: 4,
            connections: 2,
            ..LoadOptions::default()
        };
        assert!(opts.validate().is_err());
    }
}
