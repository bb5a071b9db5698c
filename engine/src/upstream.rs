//! Upstream calls: per-core keep-alive connection pools, connection set-up (TCP, optional TLS),
//! writing a request and reading its response head and body under the provider's connect,
//! first-byte and idle timeouts. One `UpstreamResponse` type covers both real HTTP upstreams and
//! the built-in mock, so the request pipeline reads every response the same way.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use monoio::io::AsyncWriteRent;
use monoio::net::TcpStream;
use tollgate_protocol::http::{
    BodyChunk, BodyDecoder, BodyFraming, HttpError, Limits, Method, ResponseHead,
};

use crate::builtin_mock::MockResponse;
use crate::error::{GatewayError, TimeoutPhase};
use crate::io::read_some;
use crate::shared::{HttpTarget, ProviderTarget};

/// A connection to an upstream, plain or TLS.
pub enum UpstreamStream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP (boxed: the TLS state is large and most upstreams in a pool are one kind).
    Tls(Box<monoio_rustls::ClientTlsStream<TcpStream>>),
}

impl std::fmt::Debug for UpstreamStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UpstreamStream::Plain(_) => "UpstreamStream::Plain",
            UpstreamStream::Tls(_) => "UpstreamStream::Tls",
        })
    }
}

// === impl UpstreamStream ===

impl UpstreamStream {
    async fn read_some(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            UpstreamStream::Plain(s) => read_some(s, buf).await,
            UpstreamStream::Tls(s) => read_some(s.as_mut(), buf).await,
        }
    }

    async fn write_bytes(&mut self, body: Bytes) -> io::Result<()> {
        use monoio::io::AsyncWriteRentExt;
        match self {
            UpstreamStream::Plain(s) => s.write_all(body).await.0.map(|_| ()),
            UpstreamStream::Tls(s) => {
                s.write_all(body).await.0?;
                s.flush().await
            }
        }
    }
}

/// An idle keep-alive connection waiting in a pool, with its (empty) read buffer so a reused
/// connection costs no allocation.
#[derive(Debug)]
struct Idle {
    conn: Connection,
    since: Instant,
}

/// An upstream connection and its read buffer.
#[derive(Debug)]
struct Connection {
    stream: UpstreamStream,
    buf: BytesMut,
}

/// Read buffer of a new upstream connection.
const UPSTREAM_READ_BUF: usize = 8 * 1024;

/// Per-core pools of idle upstream connections, one list per provider. LIFO so the most
/// recently used (warmest) connection is reused first and the oldest age out.
///
/// After a config reload the previous generation's pools forward to the new ones (for every
/// provider that reaches the same place), so a connection a request of the old generation
/// finishes with is kept for the new one rather than closed.
#[derive(Debug)]
pub struct Pools {
    idle: RefCell<Vec<Vec<Idle>>>,
    successor: RefCell<Option<Successor>>,
}

/// Where a superseded generation's pools send their connections.
#[derive(Debug)]
struct Successor {
    pools: Rc<Pools>,
    /// This generation's provider index -> the successor's, when the provider carried over.
    providers: Vec<Option<usize>>,
}

// === impl Pools ===

impl Pools {
    /// Empty pools for `providers` providers.
    pub fn new(providers: usize) -> Self {
        Self {
            idle: RefCell::new((0..providers).map(|_| Vec::new()).collect()),
            successor: RefCell::new(None),
        }
    }

    /// The successor's pools and provider index for `provider`, once superseded.
    fn forward(&self, provider: usize) -> Option<(Rc<Pools>, Option<usize>)> {
        let successor = self.successor.borrow();
        let s = successor.as_ref()?;
        Some((
            s.pools.clone(),
            s.providers.get(provider).copied().flatten(),
        ))
    }

    fn take(&self, provider: usize, max_age: Duration) -> Option<Connection> {
        if let Some((next, mapped)) = self.forward(provider) {
            return next.take(mapped?, max_age);
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(provider)?;
        while let Some(idle) = list.pop() {
            if idle.since.elapsed() < max_age {
                return Some(idle.conn);
            }
        }
        None
    }

    fn put(&self, provider: usize, max_idle: usize, conn: Connection) {
        if let Some((next, mapped)) = self.forward(provider) {
            if let Some(p) = mapped {
                next.put(p, max_idle, conn);
            }
            return;
        }
        let mut idle = self.idle.borrow_mut();
        if let Some(list) = idle.get_mut(provider) {
            if list.len() < max_idle {
                list.push(Idle {
                    conn,
                    since: Instant::now(),
                });
            }
        }
    }

    /// Close idle connections older than each provider's idle timeout.
    pub fn reap(&self, max_age: impl Fn(usize) -> Duration) {
        let mut idle = self.idle.borrow_mut();
        for (provider, list) in idle.iter_mut().enumerate() {
            let limit = max_age(provider);
            list.retain(|c| c.since.elapsed() < limit);
        }
    }

    /// After a reload: `self` (the new generation's pools) takes over `old`'s idle
    /// connections, and `old` forwards every connection it is given back later. `carried[i]`
    /// is the new index of `old`'s provider `i` when connections to it are interchangeable
    /// (same addresses, same TLS settings); the others' connections are closed.
    pub fn succeed(self: &Rc<Self>, old: &Pools, carried: Vec<Option<usize>>) {
        let taken = std::mem::take(&mut *old.idle.borrow_mut());
        {
            let mut idle = self.idle.borrow_mut();
            for (old_provider, list) in taken.into_iter().enumerate() {
                let target = carried.get(old_provider).copied().flatten();
                if let Some(slot) = target.and_then(|p| idle.get_mut(p)) {
                    *slot = list;
                }
            }
        }
        *old.successor.borrow_mut() = Some(Successor {
            pools: self.clone(),
            providers: carried,
        });
    }

    /// Number of idle connections held for `provider`.
    pub fn idle_count(&self, provider: usize) -> usize {
        self.idle.borrow().get(provider).map_or(0, Vec::len)
    }
}

/// The head of an upstream response, whatever produced it.
#[derive(Debug, Clone)]
pub struct UpstreamHead {
    /// HTTP status.
    pub status: u16,
    /// `content-type`, if any (kept as bytes; forwarded to the client for pass-through).
    pub content_type: Option<Bytes>,
    /// Seconds from `retry-after`, if the upstream sent one as an integer.
    pub retry_after: Option<u64>,
}

/// A response being read from an upstream.
#[derive(Debug)]
pub struct UpstreamResponse {
    /// The response head.
    pub head: UpstreamHead,
    body: Body,
}

#[derive(Debug)]
enum Body {
    Http(HttpBody),
    Mock(MockResponse),
}

#[derive(Debug)]
struct HttpBody {
    provider: usize,
    stream: Option<UpstreamStream>,
    buf: BytesMut,
    decoder: BodyDecoder,
    keep_alive: bool,
    idle_timeout: Duration,
    provider_name: String,
    max_idle: usize,
}

// === impl UpstreamResponse ===

impl UpstreamResponse {
    /// A response produced by the built-in mock.
    pub fn mock(head: UpstreamHead, body: MockResponse) -> Self {
        Self {
            head,
            body: Body::Mock(body),
        }
    }

    /// The next piece of the body, `None` at its end. Each piece is returned as soon as it is
    /// read, so streams are forwarded as they arrive. A keep-alive connection goes back to
    /// the pool once its body has been read to the end.
    pub async fn next_chunk(&mut self, pools: &Pools) -> Result<Option<Bytes>, GatewayError> {
        match &mut self.body {
            Body::Mock(m) => m.next_chunk().await,
            Body::Http(h) => h.next_chunk(pools).await,
        }
    }

    /// Read the whole body (bounded by the upstream body limit).
    pub async fn collect(&mut self, pools: &Pools) -> Result<Bytes, GatewayError> {
        let first = match self.next_chunk(pools).await? {
            None => return Ok(Bytes::new()),
            Some(b) => b,
        };
        let Some(second) = self.next_chunk(pools).await? else {
            return Ok(first);
        };
        let mut all = BytesMut::with_capacity(first.len() + second.len() * 2);
        all.extend_from_slice(&first);
        all.extend_from_slice(&second);
        while let Some(more) = self.next_chunk(pools).await? {
            all.extend_from_slice(&more);
        }
        Ok(all.freeze())
    }
}

// === impl HttpBody ===

impl HttpBody {
    async fn next_chunk(&mut self, pools: &Pools) -> Result<Option<Bytes>, GatewayError> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(BodyChunk::Data(data)) => return Ok(Some(data)),
                Ok(BodyChunk::Done) => {
                    self.release(pools);
                    return Ok(None);
                }
                Ok(BodyChunk::NeedMore) => {}
                Err(e) => return Err(self.protocol_error(e)),
            }
            let Some(stream) = self.stream.as_mut() else {
                return Ok(None);
            };
            let read = monoio::time::timeout(self.idle_timeout, stream.read_some(&mut self.buf));
            match read.await {
                Err(_) => {
                    self.stream = None;
                    return Err(GatewayError::UpstreamTimeout {
                        provider: self.provider_name.clone(),
                        phase: TimeoutPhase::Idle,
                        after: self.idle_timeout,
                    });
                }
                Ok(Ok(0)) => {
                    self.stream = None;
                    self.keep_alive = false;
                    if self.decoder.on_eof().is_err() {
                        return Err(GatewayError::UpstreamClosed {
                            provider: self.provider_name.clone(),
                            when: "mid-body",
                        });
                    }
                }
                Ok(Ok(_)) => {}
                Ok(Err(_)) => {
                    self.stream = None;
                    return Err(GatewayError::UpstreamClosed {
                        provider: self.provider_name.clone(),
                        when: "mid-body",
                    });
                }
            }
        }
    }

    fn release(&mut self, pools: &Pools) {
        if let Some(stream) = self.stream.take() {
            // Bytes after the body would be an unsolicited response: never reuse then.
            if self.keep_alive && self.buf.is_empty() {
                let buf = std::mem::take(&mut self.buf);
                pools.put(self.provider, self.max_idle, Connection { stream, buf });
            }
        }
    }

    fn protocol_error(&mut self, e: HttpError) -> GatewayError {
        self.stream = None;
        GatewayError::UpstreamProtocol {
            provider: self.provider_name.clone(),
            reason: e.to_string(),
        }
    }
}

/// What to send upstream: the head up to `content-length: ` (the length and blank line are
/// appended here), the body, and how long to wait for the response head.
#[derive(Debug, Clone)]
pub struct UpstreamCall {
    /// Request line and headers, ending with `content-length: `.
    pub head_prefix: Bytes,
    /// Header lines of this request alone (`x-request-id`, `traceparent`), each ending with
    /// CRLF, sent before `content-length`.
    pub request_lines: Bytes,
    /// The body.
    pub body: Bytes,
    /// Longest wait for the response head after the request is written.
    pub first_byte_timeout: Duration,
}

/// How every upstream head prefix ends.
const CONTENT_LENGTH: &[u8] = b"content-length: ";

/// Send a request to an HTTP upstream and read the response head.
///
/// A pooled connection the upstream has meanwhile closed shows up as a write error or an EOF
/// before any response byte; the request is then sent once more on a fresh connection, which is
/// safe because the upstream provably received nothing it answered.
pub async fn call_http(
    pools: &Pools,
    provider_index: usize,
    provider: &ProviderTarget,
    target: &HttpTarget,
    call: UpstreamCall,
    limits: &Limits,
) -> Result<UpstreamResponse, GatewayError> {
    let UpstreamCall {
        head_prefix,
        request_lines,
        body,
        first_byte_timeout,
    } = call;
    let mut out =
        BytesMut::with_capacity(head_prefix.len() + request_lines.len() + 32 + inline_len(&body));
    // The prefix ends with the content-length field name: this request's own lines go first.
    match head_prefix.strip_suffix(CONTENT_LENGTH) {
        Some(fields) => {
            out.extend_from_slice(fields);
            out.extend_from_slice(&request_lines);
            out.extend_from_slice(CONTENT_LENGTH);
        }
        None => out.extend_from_slice(&head_prefix),
    }
    let mut len = itoa::Buffer::new();
    out.extend_from_slice(len.format(body.len()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    let inline = inline_len(&body) > 0;
    if inline {
        out.extend_from_slice(&body);
    }
    // Frozen once; a retry on a fresh connection re-sends the same bytes without copying.
    let request = out.freeze();

    let mut attempt_pooled = true;
    loop {
        let pooled = if attempt_pooled {
            pools.take(provider_index, provider.pool_idle_timeout)
        } else {
            None
        };
        let reused = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => Connection {
                stream: connect(provider, target).await?,
                buf: BytesMut::with_capacity(UPSTREAM_READ_BUF),
            },
        };
        let sent = send_and_read_head(
            &mut conn,
            &request,
            &body,
            inline,
            provider,
            first_byte_timeout,
            limits,
        );
        match sent.await {
            Ok(head) => {
                let Connection { stream, buf } = conn;
                let decoder =
                    BodyDecoder::new(head.framing, limits.max_body_bytes).map_err(|e| {
                        GatewayError::UpstreamProtocol {
                            provider: provider.name.clone(),
                            reason: e.to_string(),
                        }
                    })?;
                let keep_alive = head.keep_alive && head.framing != BodyFraming::CloseDelimited;
                let upstream_head = UpstreamHead {
                    status: head.status,
                    content_type: head.header("content-type").map(Bytes::copy_from_slice),
                    retry_after: head
                        .header("retry-after")
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .and_then(|v| v.trim().parse().ok()),
                };
                let mut response = UpstreamResponse {
                    head: upstream_head,
                    body: Body::Http(HttpBody {
                        provider: provider_index,
                        stream: Some(stream),
                        buf,
                        decoder,
                        keep_alive,
                        idle_timeout: provider.idle_timeout,
                        provider_name: provider.name.clone(),
                        max_idle: provider.pool_max_idle,
                    }),
                };
                if let Body::Http(h) = &mut response.body {
                    if h.decoder.is_done() {
                        h.release(pools);
                    }
                }
                return Ok(response);
            }
            Err(SendError::StaleConnection) if reused => {
                attempt_pooled = false;
                continue;
            }
            Err(SendError::StaleConnection) => {
                return Err(GatewayError::UpstreamClosed {
                    provider: provider.name.clone(),
                    when: "before responding",
                })
            }
            Err(SendError::Gateway(e)) => return Err(e),
        }
    }
}

/// Bodies up to this size are copied behind the head so the request goes out in one write.
const INLINE_BODY_MAX: usize = 16 * 1024;

fn inline_len(body: &Bytes) -> usize {
    if body.len() <= INLINE_BODY_MAX {
        body.len()
    } else {
        0
    }
}

enum SendError {
    /// Nothing came back on this connection: it was closed by the upstream before (or while)
    /// the request was written.
    StaleConnection,
    Gateway(GatewayError),
}

async fn send_and_read_head(
    conn: &mut Connection,
    request: &Bytes,
    body: &Bytes,
    inline: bool,
    provider: &ProviderTarget,
    first_byte_timeout: Duration,
    limits: &Limits,
) -> Result<ResponseHead, SendError> {
    let Connection { stream, buf } = conn;
    if stream.write_bytes(request.clone()).await.is_err() {
        return Err(SendError::StaleConnection);
    }
    if !inline && stream.write_bytes(body.clone()).await.is_err() {
        return Err(SendError::StaleConnection);
    }
    let deadline = Instant::now() + first_byte_timeout;
    let mut got_any = false;
    loop {
        match ResponseHead::parse(buf, limits, Method::Post) {
            Ok(Some(head)) if (100..200).contains(&head.status) => continue,
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(e) => {
                return Err(SendError::Gateway(GatewayError::UpstreamProtocol {
                    provider: provider.name.clone(),
                    reason: e.to_string(),
                }))
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        match monoio::time::timeout(remaining, stream.read_some(buf)).await {
            Err(_) => {
                return Err(SendError::Gateway(GatewayError::UpstreamTimeout {
                    provider: provider.name.clone(),
                    phase: TimeoutPhase::FirstByte,
                    after: first_byte_timeout,
                }))
            }
            Ok(Ok(0)) | Ok(Err(_)) if !got_any => return Err(SendError::StaleConnection),
            Ok(Ok(0)) | Ok(Err(_)) => {
                return Err(SendError::Gateway(GatewayError::UpstreamClosed {
                    provider: provider.name.clone(),
                    when: "mid-head",
                }))
            }
            Ok(Ok(_)) => got_any = true,
        }
    }
}

async fn connect(
    provider: &ProviderTarget,
    target: &HttpTarget,
) -> Result<UpstreamStream, GatewayError> {
    let unreachable = |reason: String| GatewayError::UpstreamConnect {
        provider: provider.name.clone(),
        reason,
    };
    if target.addrs.is_empty() {
        let why = target.resolve_error.as_deref().unwrap_or("no address");
        return Err(unreachable(format!("host did not resolve ({why})")));
    }
    let attempt = async {
        let mut last = None;
        for addr in &target.addrs {
            match TcpStream::connect_addr(*addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(|| "no address".to_owned(), |e| e.to_string()))
    };
    let tcp = match monoio::time::timeout(provider.connect_timeout, attempt).await {
        Err(_) => {
            return Err(GatewayError::UpstreamTimeout {
                provider: provider.name.clone(),
                phase: TimeoutPhase::Connect,
                after: provider.connect_timeout,
            })
        }
        Ok(Err(reason)) => return Err(unreachable(reason)),
        Ok(Ok(s)) => s,
    };
    let Some(tls) = &target.tls else {
        return Ok(UpstreamStream::Plain(tcp));
    };
    let handshake = tls.connector.connect(tls.server_name.clone(), tcp);
    match monoio::time::timeout(provider.connect_timeout, handshake).await {
        Err(_) => Err(GatewayError::UpstreamTimeout {
            provider: provider.name.clone(),
            phase: TimeoutPhase::Connect,
            after: provider.connect_timeout,
        }),
        Ok(Err(e)) => Err(unreachable(format!("TLS handshake failed: {e}"))),
        Ok(Ok(s)) => Ok(UpstreamStream::Tls(Box::new(s))),
    }
}
