//! The standalone OpenAI-compatible mock provider: an HTTP/1.1 server (keep-alive, pipelining,
//! Content-Length and chunked request bodies) that answers with the plans of
//! [`tollgate_protocol::mock::plan`], sleeping between steps on monoio timers.
//!
//! It serves tests and benchmarks on loopback only in spirit: it never authenticates, it only
//! records the last `Authorization` header so tests can check what a gateway sent upstream.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use monoio::net::TcpStream;
use tollgate_protocol::http::{
    write_chunk, write_last_chunk, write_response_head, BodyChunk, BodyDecoder, Limits, Method,
    RequestHead,
};
use tollgate_protocol::mock::{self as plan, MockKnobs, MockPlan, MockStep, MOCK_MODELS};
use tollgate_protocol::openai::Endpoint;
use tollgate_protocol::providers::{anthropic_mock, bedrock_mock, gemini_mock};

/// A vendor-format mock: (path with query, body, knobs, request index) -> plan.
type VendorPlan = fn(&str, &[u8], &MockKnobs, u64) -> MockPlan;

use crate::io::{build_runtime, read_more, write_buf, Driver, LocalFlag};

/// Largest request body the mock accepts (413 above).
const MAX_REQUEST_BODY: u64 = 16 * 1024 * 1024;

/// Responses to pipelined requests are batched in the write buffer up to this size.
const MAX_PENDING_WRITE: usize = 64 * 1024;

/// How often an accept loop looks at the cross-thread shutdown flag.
const SHUTDOWN_POLL: Duration = Duration::from_millis(20);

/// How long shutdown waits for a thread's open connections to close.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Configuration of a [`MockServer`].
#[derive(Debug, Clone)]
pub struct MockServerConfig {
    /// Address to bind; port 0 picks a free port (see [`MockServer::addr`]).
    pub listen: SocketAddr,
    /// Runtime threads; they share one listening socket. At least 1.
    pub threads: usize,
    /// Behaviour knobs (model-name conventions override them per request).
    pub knobs: MockKnobs,
    /// monoio driver of the server threads.
    pub driver: Driver,
}

/// Counters of a running [`MockServer`], shared by all its threads.
#[derive(Debug)]
pub struct MockStats {
    connections: AtomicU64,
    requests: AtomicU64,
    planned: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    resets: AtomicU64,
    hangs: AtomicU64,
    /// Responses by status code (index = status, 0..=599).
    statuses: Box<[AtomicU64]>,
    last_authorization: Mutex<Option<String>>,
    last_traced: Mutex<Option<TracedRequest>>,
}

/// The trace headers of a request that carried a `traceparent` (see
/// [`MockStats::last_traced`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TracedRequest {
    /// `x-request-id`, if sent.
    pub request_id: Option<String>,
    /// `traceparent`.
    pub traceparent: String,
    /// `tracestate`, if sent.
    pub tracestate: Option<String>,
}

/// A running mock server. Stops on [`MockServer::shutdown`] or drop.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    driver: &'static str,
}

/// What every server thread shares.
#[derive(Debug)]
struct Shared {
    stats: MockStats,
    knobs: MockKnobs,
    shutdown: AtomicBool,
}

// === impl MockServerConfig ===

impl Default for MockServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            threads: 1,
            knobs: MockKnobs::default(),
            driver: Driver::Auto,
        }
    }
}

// === impl MockStats ===

impl MockStats {
    fn new() -> Self {
        Self {
            connections: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            planned: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            resets: AtomicU64::new(0),
            hangs: AtomicU64::new(0),
            statuses: (0..600).map(|_| AtomicU64::new(0)).collect(),
            last_authorization: Mutex::new(None),
            last_traced: Mutex::new(None),
        }
    }

    /// Connections accepted.
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// Complete requests received (every route, including 404s; not malformed ones).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Prompt tokens served (from the plans' usage).
    pub fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens.load(Ordering::Relaxed)
    }

    /// Completion tokens served (from the plans' usage).
    pub fn completion_tokens(&self) -> u64 {
        self.completion_tokens.load(Ordering::Relaxed)
    }

    /// Responses sent with `status` (heads written; cut responses count).
    pub fn status_count(&self, status: u16) -> u64 {
        self.statuses
            .get(usize::from(status))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }

    /// Connections reset on purpose (`mock-reset`, `mock-cut`, reset faults).
    pub fn resets(&self) -> u64 {
        self.resets.load(Ordering::Relaxed)
    }

    /// Requests left hanging on purpose.
    pub fn hangs(&self) -> u64 {
        self.hangs.load(Ordering::Relaxed)
    }

    /// The last `Authorization` header value received, if any request carried one.
    pub fn last_authorization(&self) -> Option<String> {
        self.last_authorization
            .lock()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |g| g.clone())
    }

    /// The trace headers of the last request that carried a `traceparent` (only those are
    /// recorded, so untraced load never takes this lock).
    pub fn last_traced(&self) -> Option<TracedRequest> {
        self.last_traced
            .lock()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |g| g.clone())
    }

    fn record_traced(&self, traced: TracedRequest) {
        match self.last_traced.lock() {
            Ok(mut guard) => *guard = Some(traced),
            Err(poisoned) => *poisoned.into_inner() = Some(traced),
        }
    }

    fn count_status(&self, status: u16) {
        if let Some(c) = self.statuses.get(usize::from(status)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record_authorization(&self, value: &[u8]) {
        let value = String::from_utf8_lossy(value).into_owned();
        match self.last_authorization.lock() {
            Ok(mut guard) => *guard = Some(value),
            Err(poisoned) => *poisoned.into_inner() = Some(value),
        }
    }
}

// === impl MockServer ===

impl MockServer {
    /// Binds `cfg.listen` and starts `cfg.threads` runtime threads. Returns once every thread
    /// is accepting, so [`MockServer::addr`] is ready to connect to.
    pub fn start(cfg: MockServerConfig) -> io::Result<MockServer> {
        let listener = TcpListener::bind(cfg.listen)?;
        // monoio's legacy driver needs a non-blocking socket; io_uring does not mind.
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            stats: MockStats::new(),
            knobs: cfg.knobs,
            shutdown: AtomicBool::new(false),
        });
        let threads = cfg.threads.max(1);
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut server = MockServer {
            addr,
            shared: Arc::clone(&shared),
            threads: Vec::with_capacity(threads),
            driver: "",
        };
        for i in 0..threads {
            let listener = listener.try_clone()?;
            let shared = Arc::clone(&shared);
            let ready = ready_tx.clone();
            let driver = cfg.driver;
            let handle = std::thread::Builder::new()
                .name(format!("tollgate-mock-{i}"))
                .spawn(move || serve_thread(driver, listener, shared, ready))?;
            server.threads.push(handle);
        }
        drop(ready_tx);
        for _ in 0..threads {
            match ready_rx.recv() {
                Ok(Ok(driver)) => server.driver = driver,
                Ok(Err(err)) => return Err(err),
                Err(_) => return Err(io::Error::other("mock server thread exited during start")),
            }
        }
        Ok(server)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>/v1`, an OpenAI-style base URL for a gateway provider's `base_url`. The
    /// mock also answers the routes without the `/v1` prefix.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The server's counters.
    pub fn stats(&self) -> &MockStats {
        &self.shared.stats
    }

    /// The monoio driver the threads run on: `"io_uring"` or `"legacy"`.
    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// Stops accepting, closes every connection (hanging ones included) and joins the threads.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        for handle in self.threads.drain(..) {
            // A panicked server thread has nothing left to clean up.
            let _ = handle.join();
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.stop();
    }
}

// === server threads ===

fn serve_thread(
    driver: Driver,
    listener: TcpListener,
    shared: Arc<Shared>,
    ready: mpsc::Sender<io::Result<&'static str>>,
) {
    let (mut runtime, driver) = match build_runtime(driver) {
        Ok(built) => built,
        Err(err) => {
            let _ = ready.send(Err(err));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match monoio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                let _ = ready.send(Err(err));
                return;
            }
        };
        let _ = ready.send(Ok(driver));
        accept_loop(listener, shared).await;
    });
}

async fn accept_loop(listener: monoio::net::TcpListener, shared: Arc<Shared>) {
    let closing = Rc::new(LocalFlag::default());
    let live = Rc::new(std::cell::Cell::new(0usize));
    loop {
        monoio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    shared.stats.connections.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    let closing = Rc::clone(&closing);
                    let live = Rc::clone(&live);
                    live.set(live.get() + 1);
                    monoio::spawn(async move {
                        let wait = closing.wait();
                        monoio::select! {
                            _ = serve_conn(stream, &shared, &closing) => {},
                            _ = wait => {},
                        }
                        live.set(live.get() - 1);
                    });
                }
                // Out of descriptors or a connection aborted before accept: keep serving.
                Err(_) => monoio::time::sleep(Duration::from_millis(5)).await,
            },
            _ = shutdown_requested(&shared) => break,
        }
    }
    drop(listener);
    closing.set();
    let started = std::time::Instant::now();
    while live.get() > 0 && started.elapsed() < DRAIN_LIMIT {
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn shutdown_requested(shared: &Shared) {
    while !shared.shutdown.load(Ordering::Acquire) {
        monoio::time::sleep(SHUTDOWN_POLL).await;
    }
}

// === connections ===

/// Why a connection stops.
enum Close {
    /// Orderly: the peer left, or the response said `Connection: close`.
    Done,
    /// A plan reset or hung the connection, or I/O failed.
    Abort,
}

struct Conn<'a> {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    body: BytesMut,
    scratch: Vec<u8>,
    shared: &'a Shared,
    closing: &'a Rc<LocalFlag>,
    limits: Limits,
    /// Authorization value last recorded from this connection (saves the global lock).
    last_auth: Option<Bytes>,
}

async fn serve_conn(stream: TcpStream, shared: &Shared, closing: &Rc<LocalFlag>) {
    let mut conn = Conn {
        stream,
        rbuf: BytesMut::with_capacity(crate::io::READ_CHUNK),
        wbuf: BytesMut::with_capacity(8 * 1024),
        body: BytesMut::new(),
        scratch: Vec::new(),
        shared,
        closing,
        limits: Limits {
            max_body_bytes: MAX_REQUEST_BODY,
            ..Limits::default()
        },
        last_auth: None,
    };
    let _ = conn.run().await;
}

impl Conn<'_> {
    async fn run(&mut self) -> Result<Close, io::Error> {
        loop {
            let head = match self.read_head().await? {
                Some(head) => head,
                None => return Ok(Close::Done),
            };
            if head.expect_continue {
                self.wbuf
                    .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
                write_buf(&mut self.stream, &mut self.wbuf).await?;
            }
            if !self.read_body(&head).await? {
                return Ok(Close::Abort);
            }
            self.shared.stats.requests.fetch_add(1, Ordering::Relaxed);
            // Whichever credential header the request's wire format uses.
            let credential = ["authorization", "x-api-key", "x-goog-api-key", "api-key"]
                .iter()
                .find_map(|name| head.header(name));
            if let Some(auth) = credential {
                if self.last_auth.as_deref() != Some(auth) {
                    self.shared.stats.record_authorization(auth);
                    self.last_auth = Some(Bytes::copy_from_slice(auth));
                }
            }
            if let Some(traceparent) = head.header("traceparent") {
                let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
                self.shared.stats.record_traced(TracedRequest {
                    request_id: head.header("x-request-id").map(text),
                    traceparent: text(traceparent),
                    tracestate: head.header("tracestate").map(text),
                });
            }
            let plan = self.route(&head);
            if let Some(close) = self.send(plan, head.keep_alive).await? {
                return Ok(close);
            }
            if !head.keep_alive {
                write_buf(&mut self.stream, &mut self.wbuf).await?;
                return Ok(Close::Done);
            }
            if self.wbuf.len() >= MAX_PENDING_WRITE {
                write_buf(&mut self.stream, &mut self.wbuf).await?;
            }
        }
    }

    /// The next request head, `None` when the peer closed cleanly between requests. A
    /// malformed head is answered (status from the codec, connection closed) and ends the
    /// connection with an error.
    async fn read_head(&mut self) -> io::Result<Option<RequestHead>> {
        loop {
            match RequestHead::parse(&mut self.rbuf, &self.limits) {
                Ok(Some(head)) => return Ok(Some(head)),
                Ok(None) => {}
                Err(err) => {
                    self.reject(err.status(), &err.to_string()).await?;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, err));
                }
            }
            // Nothing complete is buffered: answers to earlier pipelined requests go out now.
            write_buf(&mut self.stream, &mut self.wbuf).await?;
            if read_more(&mut self.stream, &mut self.rbuf).await? == 0 {
                return if self.rbuf.is_empty() {
                    Ok(None)
                } else {
                    Err(io::ErrorKind::UnexpectedEof.into())
                };
            }
        }
    }

    /// Reads the request body into `self.body`. `false` when the body was bad (answered).
    async fn read_body(&mut self, head: &RequestHead) -> io::Result<bool> {
        self.body.clear();
        let mut decoder = match BodyDecoder::with_limits(head.framing, &self.limits) {
            Ok(decoder) => decoder,
            Err(err) => {
                self.reject(err.status(), &err.to_string()).await?;
                return Ok(false);
            }
        };
        loop {
            match decoder.decode(&mut self.rbuf) {
                Ok(BodyChunk::Data(data)) => {
                    if self.body.is_empty() && decoder.is_done() {
                        // The common case: the whole body arrived in one piece.
                        self.body = BytesMut::from(data);
                    } else {
                        self.body.extend_from_slice(&data);
                    }
                }
                Ok(BodyChunk::Done) => return Ok(true),
                Ok(BodyChunk::NeedMore) => {
                    if read_more(&mut self.stream, &mut self.rbuf).await? == 0 {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                }
                Err(err) => {
                    self.reject(err.status(), &err.to_string()).await?;
                    return Ok(false);
                }
            }
        }
    }

    fn route(&mut self, head: &RequestHead) -> MockPlan {
        let full_path = head.path();
        let path = full_path.split_once('?').map_or(full_path, |(p, _)| p);
        // Native vendor formats, for translation tests through real sockets.
        let vendor: Option<VendorPlan> = if path == "/v1/messages" {
            Some(anthropic_mock::plan)
        } else if path.contains(":generateContent") || path.contains(":streamGenerateContent") {
            Some(gemini_mock::plan)
        } else if path.starts_with("/model/")
            && (path.ends_with("/converse") || path.ends_with("/converse-stream"))
        {
            Some(bedrock_mock::plan)
        } else {
            None
        };
        if let Some(vendor) = vendor {
            if head.method != Method::Post {
                return plan::error_plan(405, &format!("Use POST for {path}."));
            }
            let index = self.shared.stats.planned.fetch_add(1, Ordering::Relaxed);
            let plan = vendor(full_path, &self.body, &self.shared.knobs, index);
            self.count_usage(&plan);
            return plan;
        }
        let endpoint = match path {
            // Also Azure's /openai/deployments/{name}/chat/completions.
            p if p.ends_with("/chat/completions") => Endpoint::ChatCompletions,
            "/v1/completions" | "/completions" => Endpoint::Completions,
            "/v1/embeddings" | "/embeddings" => Endpoint::Embeddings,
            "/v1/models" | "/models" => {
                return if head.method == Method::Get {
                    models_plan()
                } else {
                    plan::error_plan(405, "Use GET for /v1/models.")
                };
            }
            _ => return plan::error_plan(404, &format!("Unknown route {path}.")),
        };
        if head.method != Method::Post {
            return plan::error_plan(405, &format!("Use POST for {path}."));
        }
        let index = self.shared.stats.planned.fetch_add(1, Ordering::Relaxed);
        let plan = plan::plan(
            endpoint,
            &self.body,
            &self.shared.knobs,
            index,
            &mut self.scratch,
        );
        self.count_usage(&plan);
        plan
    }

    fn count_usage(&self, plan: &MockPlan) {
        let stats = &self.shared.stats;
        stats
            .prompt_tokens
            .fetch_add(plan.usage.prompt_tokens, Ordering::Relaxed);
        stats
            .completion_tokens
            .fetch_add(plan.usage.completion_tokens, Ordering::Relaxed);
    }

    /// Executes `plan`. `Some(close)` when the connection must end after it.
    async fn send(&mut self, plan: MockPlan, keep_alive: bool) -> io::Result<Option<Close>> {
        let mut chunked = false;
        for step in plan.steps {
            match step {
                MockStep::Head {
                    delay,
                    status,
                    content_type,
                    body_len,
                } => {
                    self.pause(delay).await?;
                    self.shared.stats.count_status(status);
                    let mut digits = itoa::Buffer::new();
                    let framing: (&str, &[u8]) = match body_len {
                        Some(len) => ("content-length", digits.format(len).as_bytes()),
                        None => {
                            chunked = true;
                            ("transfer-encoding", b"chunked")
                        }
                    };
                    let headers = [
                        ("content-type", content_type.as_bytes()),
                        framing,
                        ("connection", b"close".as_slice()),
                    ];
                    let n = if keep_alive { 2 } else { 3 };
                    write_response_head(&mut self.wbuf, status, &headers[..n]);
                }
                MockStep::Body { delay, bytes } => {
                    self.pause(delay).await?;
                    if chunked {
                        write_chunk(&mut self.wbuf, &bytes);
                    } else {
                        self.wbuf.extend_from_slice(&bytes);
                    }
                }
                MockStep::End => {
                    if chunked {
                        write_last_chunk(&mut self.wbuf);
                    }
                }
                MockStep::Reset => {
                    write_buf(&mut self.stream, &mut self.wbuf).await?;
                    self.shared.stats.resets.fetch_add(1, Ordering::Relaxed);
                    reset(&self.stream);
                    return Ok(Some(Close::Abort));
                }
                MockStep::Hang => {
                    write_buf(&mut self.stream, &mut self.wbuf).await?;
                    self.shared.stats.hangs.fetch_add(1, Ordering::Relaxed);
                    // Read and discard until the peer leaves (or the server shuts down,
                    // which drops this future).
                    while !self.closing.is_set() {
                        self.rbuf.clear();
                        if read_more(&mut self.stream, &mut self.rbuf).await? == 0 {
                            break;
                        }
                    }
                    return Ok(Some(Close::Abort));
                }
            }
        }
        Ok(None)
    }

    /// Flushes pending bytes, then sleeps `delay` (nothing when zero).
    async fn pause(&mut self, delay: Duration) -> io::Result<()> {
        if !delay.is_zero() {
            write_buf(&mut self.stream, &mut self.wbuf).await?;
            monoio::time::sleep(delay).await;
        }
        Ok(())
    }

    /// Answers a malformed request with `status` and an OpenAI error body, then closes.
    async fn reject(&mut self, status: u16, message: &str) -> io::Result<()> {
        let plan = plan::error_plan(status, message);
        self.send(plan, false).await?;
        write_buf(&mut self.stream, &mut self.wbuf).await
    }
}

fn models_plan() -> MockPlan {
    let body = plan::models_body(MOCK_MODELS);
    let mut plan = plan::error_plan(200, "");
    plan.steps = vec![
        MockStep::Head {
            delay: Duration::ZERO,
            status: 200,
            content_type: plan::CONTENT_TYPE_JSON,
            body_len: Some(body.len()),
        },
        MockStep::Body {
            delay: Duration::ZERO,
            bytes: body,
        },
        MockStep::End,
    ];
    plan
}

/// Makes the next close of `stream` send an RST instead of a FIN (SO_LINGER with zero timeout).
fn reset(stream: &TcpStream) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is owned by `stream` and open for this call; `linger` is a valid
    // `struct linger` and the length passed matches it. std has no stable set_linger.
    let _ = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
}
