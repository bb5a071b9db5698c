//! The memory scenario's client: opens many keep-alive connections to the gateway, sends one
//! chat completion on each and keeps them all open and idle, then reads the gateway's resident
//! memory. Plain blocking std sockets, one connection at a time; loopback only, bounded in
//! count, per-read time and total time.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::loadgen::{DEMO_KEY, MODEL};
use crate::procs::{self, Proc};
use crate::BenchError;

/// Per-connection limit on connecting and on reading the response.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Limit on opening all connections.
const TOTAL_LIMIT: Duration = Duration::from_secs(180);

/// How long the gateway is left alone with its idle connections before memory is read.
const SETTLE: Duration = Duration::from_secs(1);

/// Largest response head + body read per connection.
const MAX_RESPONSE: usize = 64 * 1024;

/// What the memory scenario saw.
#[derive(Debug, Clone)]
pub struct IdleReport {
    /// Connections asked for.
    pub wanted: usize,
    /// Connections opened whose request got a complete 200 response.
    pub opened: usize,
    /// Connections still open (not closed by the gateway) when memory was read.
    pub still_open: usize,
    /// Gateway VmRSS before the first connection, KiB.
    pub rss_before_kib: u64,
    /// Gateway VmRSS with every connection open and idle, KiB.
    pub rss_idle_kib: u64,
    /// Gateway VmHWM (peak RSS) at that point, KiB.
    pub hwm_kib: u64,
    /// Gateway VmRSS a second after closing them all, KiB.
    pub rss_after_close_kib: u64,
    /// Time to open them all.
    pub open_secs: f64,
}

impl IdleReport {
    /// Added memory per idle connection, bytes.
    pub fn bytes_per_connection(&self) -> f64 {
        if self.opened == 0 {
            return 0.0;
        }
        (self.rss_idle_kib.saturating_sub(self.rss_before_kib) * 1024) as f64 / self.opened as f64
    }

    /// VmRSS projected to `n` connections from the measured per-connection cost, KiB.
    pub fn projected_kib(&self, n: usize) -> f64 {
        self.rss_before_kib as f64 + self.bytes_per_connection() * n as f64 / 1024.0
    }
}

/// The one request every idle connection sends.
pub fn request(addr: SocketAddr) -> Vec<u8> {
    let body = format!(
        r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"Say hello."}}],"max_tokens":16}}"#
    );
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {DEMO_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Opens `n` connections to the gateway at `addr` (process `gateway`), one request each, holds
/// them idle, reads the gateway's memory, closes them and reads it again.
pub fn hold_idle(gateway: &mut Proc, addr: SocketAddr, n: usize) -> Result<IdleReport, String> {
    let pid = gateway.pid();
    let read_mem =
        || procs::memory_kib(pid).ok_or_else(|| format!("cannot read /proc/{pid}/status"));
    let (rss_before_kib, _) = read_mem()?;
    let req = request(addr);
    let started = Instant::now();
    let mut conns = Vec::with_capacity(n);
    let mut buf = vec![0u8; MAX_RESPONSE];
    for i in 0..n {
        if procs::interrupted() {
            return Err(BenchError::Interrupted.to_string());
        }
        if started.elapsed() > TOTAL_LIMIT {
            return Err(format!(
                "opened only {i} of {n} connections in {TOTAL_LIMIT:?}"
            ));
        }
        let conn = exchange(addr, &req, &mut buf)
            .map_err(|e| format!("connection {} of {n}: {e}", i + 1))?;
        conns.push(conn);
        if i % 1000 == 999 {
            gateway.check_alive()?;
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    std::thread::sleep(SETTLE);
    gateway.check_alive()?;
    let (rss_idle_kib, hwm_kib) = read_mem()?;
    let still_open = conns.iter().filter(|c| is_open(c)).count();
    let opened = conns.len();
    drop(conns);
    std::thread::sleep(SETTLE);
    let (rss_after_close_kib, _) = read_mem()?;
    Ok(IdleReport {
        wanted: n,
        opened,
        still_open,
        rss_before_kib,
        rss_idle_kib,
        hwm_kib,
        rss_after_close_kib,
        open_secs,
    })
}

/// Connects, sends the request and reads one complete 200 response; returns the open socket.
fn exchange(addr: SocketAddr, req: &[u8], buf: &mut [u8]) -> Result<TcpStream, String> {
    let mut s =
        TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    let setup = |s: &TcpStream| -> io::Result<()> {
        s.set_nodelay(true)?;
        s.set_read_timeout(Some(IO_TIMEOUT))?;
        s.set_write_timeout(Some(IO_TIMEOUT))
    };
    setup(&s).map_err(|e| format!("socket options: {e}"))?;
    s.write_all(req).map_err(|e| format!("send: {e}"))?;
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Err(format!("response larger than {MAX_RESPONSE} bytes"));
        }
        let n = s.read(&mut buf[len..]).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!(
                "closed after {len} bytes: {:?}",
                String::from_utf8_lossy(&buf[..len.min(200)])
            ));
        }
        len += n;
        match response_complete(&buf[..len])? {
            Some(200) => return Ok(s),
            Some(status) => {
                return Err(format!(
                    "status {status}: {:?}",
                    String::from_utf8_lossy(&buf[..len.min(300)])
                ))
            }
            None => {}
        }
    }
}

/// The status once `data` holds a whole response (Content-Length or chunked), else `None`.
fn response_complete(data: &[u8]) -> Result<Option<u16>, String> {
    let Some(head_end) = find(data, b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = std::str::from_utf8(&data[..head_end]).map_err(|_| "non-UTF-8 response head")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let body = &data[head_end + 4..];
    let mut content_length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("bad Content-Length {value:?}"))?,
            );
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        }
    }
    let done = if chunked {
        body.ends_with(b"0\r\n\r\n")
    } else {
        body.len() >= content_length.unwrap_or(0)
    };
    Ok(done.then_some(status))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Whether the peer has not closed the connection: a non-blocking read would block.
fn is_open(s: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    if s.set_nonblocking(true).is_err() {
        return false;
    }
    let open = match s.peek(&mut byte) {
        Ok(0) => false,
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::WouldBlock,
    };
    let _ = s.set_nonblocking(false);
    open
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn complete_responses() {
        let r = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhel";
        assert_eq!(response_complete(r).unwrap(), None);
        let r = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello";
        assert_eq!(response_complete(r).unwrap(), Some(200));
        let r = b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(response_complete(r).unwrap(), Some(401));
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n";
        assert_eq!(response_complete(r).unwrap(), None);
        let r = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n";
        assert_eq!(response_complete(r).unwrap(), Some(200));
        assert_eq!(response_complete(b"HTTP/1.1 200 OK\r\n").unwrap(), None);
        assert!(response_complete(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn request_is_well_framed() {
        let req = request("127.0.0.1:1".parse().unwrap());
        let text = String::from_utf8(req).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        assert!(head.contains("Authorization: Bearer sk-tollgate-demo"));
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}
