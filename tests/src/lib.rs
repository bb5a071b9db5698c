//! Integration harness: starts real gateways (in-process, on loopback port 0) and talks plain
//! HTTP/1.1 to them over blocking sockets, parsing responses with the project's own strict
//! codec. Helpers panic with a clear message on failure: this is test code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tollgate_config::Config;
use tollgate_engine::Gateway;
use tollgate_protocol::http::{BodyChunk, BodyDecoder, Limits, Method, ResponseHead};

/// The demo key every example config accepts.
pub const DEMO_KEY: &str = "sk-tollgate-demo";

/// Parse a config from TOML text with the given environment (nothing from the process env).
pub fn config(toml: &str, env: &[(&str, &str)]) -> Config {
    let lookup = |name: &str| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    };
    match Config::from_toml_str(toml, &lookup) {
        Ok(c) => c,
        Err(e) => panic!("test config invalid:\n{e}"),
    }
}

/// Start a gateway on 127.0.0.1:0 with `workers` workers. A config that leaves the store at
/// its default path gets a fresh store under the temp dir, so parallel tests never share one.
pub fn start(mut cfg: Config, workers: usize) -> Gateway {
    cfg.apply_overrides(Some("127.0.0.1:0".parse().unwrap()), Some(workers));
    if cfg.store.path == tollgate_config::StoreConfig::default().path {
        cfg.store.path = temp_store();
    }
    Gateway::start(cfg).expect("gateway starts")
}

/// A fresh, empty directory for a store.
pub fn temp_store() -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "tollgate-test-{}-{n}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Make sure Debian packages are installed: `found` says whether what the test needs is there;
/// when it is not, `apt-get install` the packages (after an `apt-get update` if the first try
/// fails) and ask again. One install at a time in this process, and each waits for dpkg's lock
/// rather than failing, so tests that install different packages in parallel do not collide.
pub fn apt_install<T>(packages: &[&str], found: impl Fn() -> Option<T>) -> T {
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(there) = found() {
        return there;
    }
    eprintln!("missing: apt-get install -y {}", packages.join(" "));
    let apt = |args: &[&str]| {
        std::process::Command::new("apt-get")
            .args(["-q", "-o", "DPkg::Lock::Timeout=300"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let install = || {
        let mut args = vec!["install", "-y", "--no-install-recommends"];
        args.extend_from_slice(packages);
        apt(&args)
    };
    if !install() {
        assert!(
            apt(&["update"]) && install(),
            "could not install {}",
            packages.join(" ")
        );
    }
    found().unwrap_or_else(|| panic!("{} installed, but still not found", packages.join(" ")))
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers, names lowercased.
    pub headers: Vec<(String, String)>,
    /// The decoded body.
    pub body: Vec<u8>,
}

impl Response {
    /// First header value by (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// Assert an OpenAI-style error response with this status and `code`.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "{}", self.text());
        assert_eq!(self.error_code().as_deref(), Some(code), "{}", self.text());
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The OpenAI error `code`, asserting the body is an OpenAI-style error.
    pub fn error_code(&self) -> Option<String> {
        let v = self.json();
        let err = v
            .get("error")
            .unwrap_or_else(|| panic!("not an error body: {v}"));
        assert!(err.get("message").and_then(|m| m.as_str()).is_some(), "{v}");
        assert!(err.get("type").and_then(|m| m.as_str()).is_some(), "{v}");
        err.get("code").and_then(|c| c.as_str()).map(str::to_owned)
    }
}

/// A blocking HTTP/1.1 client connection (keep-alive, one request at a time or pipelined).
#[derive(Debug)]
pub struct Client {
    stream: TcpStream,
    buf: BytesMut,
}

impl Client {
    /// Connect to `addr`.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// Send raw bytes.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write");
    }

    fn fill(&mut self) -> usize {
        let mut tmp = [0u8; 16 * 1024];
        let n = self.stream.read(&mut tmp).unwrap_or(0);
        self.buf.extend_from_slice(&tmp[..n]);
        n
    }

    /// Read the next response head, interim (1xx) or final, and return its status. Any body
    /// stays unread.
    pub fn read_interim_status(&mut self) -> u16 {
        loop {
            match ResponseHead::parse(&mut self.buf, &Limits::default(), Method::Post)
                .expect("valid head")
            {
                Some(h) => return h.status,
                None => {
                    if self.fill() == 0 {
                        panic!("connection closed before a response head");
                    }
                }
            }
        }
    }

    /// Read one response (skipping 1xx). Panics if the connection closes first.
    pub fn read_response(&mut self) -> Response {
        self.read_response_with(|_, _| {})
    }

    /// Read one response, calling `on_data(elapsed, bytes)` for every body piece as it arrives.
    pub fn read_response_with(&mut self, mut on_data: impl FnMut(Duration, &[u8])) -> Response {
        let start = Instant::now();
        let limits = Limits::default();
        let head = loop {
            match ResponseHead::parse(&mut self.buf, &limits, Method::Post).expect("valid head") {
                Some(h) if h.status < 200 => continue,
                Some(h) => break h,
                None => {
                    if self.fill() == 0 {
                        panic!("connection closed before a response head");
                    }
                }
            }
        };
        let headers = head
            .headers()
            .map(|(k, v)| {
                (
                    k.to_ascii_lowercase(),
                    String::from_utf8_lossy(v).into_owned(),
                )
            })
            .collect();
        let mut decoder = BodyDecoder::new(head.framing, u64::MAX).unwrap();
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut self.buf).expect("valid body framing") {
                BodyChunk::Data(d) => {
                    on_data(start.elapsed(), &d);
                    body.extend_from_slice(&d);
                }
                BodyChunk::Done => break,
                BodyChunk::NeedMore => {
                    if self.fill() == 0 {
                        decoder.on_eof().expect("body complete at EOF");
                    }
                }
            }
        }
        Response {
            status: head.status,
            headers,
            body,
        }
    }

    /// True when the server has closed the connection (reads EOF or a reset within `wait`).
    pub fn is_closed(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        let mut tmp = [0u8; 1];
        let closed = match self.stream.read(&mut tmp) {
            Ok(0) => true,
            Ok(n) => {
                // Data, not a close: keep it for the next response read.
                self.buf.extend_from_slice(&tmp[..n]);
                false
            }
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        closed
    }

    /// POST a JSON body with a bearer key and read the response.
    pub fn post(&mut self, path: &str, key: Option<&str>, body: &str) -> Response {
        self.send(&post_bytes(path, key, body));
        self.read_response()
    }

    /// GET a path with an optional bearer key.
    pub fn get(&mut self, path: &str, key: Option<&str>) -> Response {
        let auth = key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
        self.send(format!("GET {path} HTTP/1.1\r\nhost: t\r\n{auth}\r\n").as_bytes());
        self.read_response()
    }
}

/// The bytes of a POST request with a JSON body.
pub fn post_bytes(path: &str, key: Option<&str>, body: &str) -> Vec<u8> {
    let auth = key.map_or(String::new(), |k| format!("authorization: Bearer {k}\r\n"));
    format!(
        "POST {path} HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\n{auth}content-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One-shot POST on a fresh connection.
pub fn post(addr: SocketAddr, path: &str, key: Option<&str>, body: &str) -> Response {
    Client::connect(addr).post(path, key, body)
}

/// A chat request body.
pub fn chat_body(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"Say hello to the gateway."}}]}}"#
    )
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .split("\n\n")
        .filter_map(|event| {
            let lines: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data:").map(|d| d.trim_start()))
                .collect();
            (!lines.is_empty()).then(|| lines.join("\n"))
        })
        .collect()
}

/// A gateway in front of an HTTP upstream at `base_url` (provider `up`, model `gpt-4o-mini`
/// served as `gpt-4o-mini`), a fresh store flushed every 50 ms, `server` lines in `[server]`
/// and `extra` TOML (keys, teams, more models, prices, guardrails) appended.
pub fn upstream_gateway_toml(base_url: &str, server: &str, extra: &str) -> String {
    format!(
        r#"
[server]
{server}

[[providers]]
name = "up"
kind = "openai"
base_url = "{base_url}"

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "up", model = "gpt-4o-mini" }}]

[store]
path = "{store}"
flush_interval = "50ms"

{extra}"#,
        store = temp_store().display()
    )
}

/// The built-in mock as a gateway config: one model `gpt-4o-mini`, the demo key, and whatever
/// extra TOML (e.g. `[providers.mock]` knobs, more models) the test appends.
pub fn mock_gateway_toml(server_extra: &str, mock_knobs: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
{server_extra}

[[providers]]
name = "mock"
kind = "mock"
[providers.mock]
{mock_knobs}

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "mock", model = "gpt-4o-mini" }}]

[[models]]
name = "cut"
deployments = [{{ provider = "mock", model = "mock-cut" }}]

[[models]]
name = "reset"
deployments = [{{ provider = "mock", model = "mock-reset" }}]

[[models]]
name = "hang"
deployments = [{{ provider = "mock", model = "mock-hang" }}]

[[models]]
name = "boom"
deployments = [{{ provider = "mock", model = "mock-error-500" }}]

[[keys]]
name = "demo"
key = "{DEMO_KEY}"
"#
    )
}

/// The client models of [`all_providers_toml`] and the deployment each is served by.
pub const PROVIDER_MODELS: &[(&str, &str)] = &[
    ("gpt", "openai/gpt-4o-mini"),
    ("azure-gpt", "azure/gpt4o-deployment"),
    ("claude", "anthropic/claude-sonnet-4-5"),
    ("gemini", "gemini/gemini-2.5-flash"),
    (
        "bedrock-claude",
        "bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0",
    ),
];

/// A gateway config with one provider of every kind, all pointed at a `tollgate-mock` at
/// `root` (`http://host:port`, which answers each vendor's native format), plus
/// `claude-overloaded` (falls back to `gemini`) and `claude-limited` (always 429).
pub fn all_providers_toml(root: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[routing]
retries = 0
backoff_base = "1ms"
backoff_max = "2ms"

[[providers]]
name = "openai"
kind = "openai"
base_url = "{root}/v1"
api_key = "sk-openai-upstream"

[[providers]]
name = "azure"
kind = "azure"
base_url = "{root}"
api_key = "azure-upstream-key"

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "{root}"
api_key = "sk-ant-upstream"

[[providers]]
name = "gemini"
kind = "gemini"
base_url = "{root}"
api_key = "gemini-upstream-key"

[[providers]]
name = "bedrock"
kind = "bedrock"
region = "us-east-1"
base_url = "{root}"
aws_access_key_id = "AKIDEXAMPLE"
aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"

[[models]]
name = "gpt"
deployments = [{{ provider = "openai", model = "gpt-4o-mini" }}]

[[models]]
name = "azure-gpt"
deployments = [{{ provider = "azure", model = "gpt4o-deployment" }}]

[[models]]
name = "claude"
deployments = [{{ provider = "anthropic", model = "claude-sonnet-4-5" }}]

[[models]]
name = "gemini"
deployments = [{{ provider = "gemini", model = "gemini-2.5-flash" }}]

[[models]]
name = "bedrock-claude"
deployments = [{{ provider = "bedrock", model = "anthropic.claude-3-5-sonnet-20240620-v1:0" }}]

[[models]]
name = "claude-overloaded"
deployments = [{{ provider = "anthropic", model = "mock-error-529" }}]
fallbacks = ["gemini"]

[[models]]
name = "claude-limited"
deployments = [{{ provider = "anthropic", model = "mock-error-429" }}]

[[keys]]
name = "demo"
key = "{DEMO_KEY}"
"#
    )
}
