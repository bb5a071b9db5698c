//! The typed, validated configuration. Every value here has passed validation: names are unique,
//! references resolve, numbers are in range. Defaults live here, next to the fields they fill.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::base_url::BaseUrl;
use crate::secret::Secret;

/// A complete, validated gateway configuration.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Listener, workers and HTTP limits (`[server]`).
    pub server: ServerConfig,
    /// Upstream providers (`[[providers]]`), in file order.
    pub providers: Vec<ProviderConfig>,
    /// Virtual models clients can ask for (`[[models]]`), in file order.
    pub models: Vec<ModelConfig>,
    /// Client API keys (`[[keys]]`), in file order.
    pub keys: Vec<KeyConfig>,
}

impl Config {
    /// Replaces the listen address and/or worker count, for the `--listen` / `--workers` flags.
    pub fn apply_overrides(&mut self, listen: Option<SocketAddr>, workers: Option<usize>) {
        if let Some(listen) = listen {
            self.server.listen = listen;
        }
        if let Some(workers) = workers {
            self.server.workers = workers;
        }
    }

    /// The provider with this name.
    pub fn provider(&self, name: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.name == name)
    }

    /// The model with this (client-facing) name.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }
}

/// `[server]`: the listener, worker threads and limits on what clients may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address every worker binds (with `SO_REUSEPORT`). Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Worker threads; 0 means one per CPU in the process's allowed set. Default 0.
    pub workers: usize,
    /// Which monoio driver to run. Default [`IoDriver::Auto`].
    pub io_driver: IoDriver,
    /// Largest request head (request line + headers) in bytes; 1 KiB..=1 MiB. Default 16 KiB.
    pub max_head_bytes: usize,
    /// Most request headers; 1..=128. Default 100.
    pub max_headers: usize,
    /// Largest request body in bytes; 1 KiB..=1 GiB. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Time allowed to receive a whole request head (then 408). Default 10 s.
    pub header_read_timeout: Duration,
    /// Time allowed to receive a whole request body (then 408). Default 30 s.
    pub body_read_timeout: Duration,
    /// How long an idle keep-alive client connection is kept open. Default 60 s.
    pub keepalive_timeout: Duration,
    /// How long in-flight requests may drain after SIGTERM. May be zero. Default 10 s.
    pub shutdown_grace: Duration,
    /// Most open client connections per worker; 1..=1,000,000. Default 25,000.
    pub max_connections_per_worker: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 8080)),
            workers: 0,
            io_driver: IoDriver::Auto,
            max_head_bytes: 16 << 10,
            max_headers: 100,
            max_body_bytes: 16 << 20,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(10),
            max_connections_per_worker: 25_000,
        }
    }
}

/// Which I/O driver the workers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IoDriver {
    /// io_uring when the kernel allows it, else the epoll driver (`"auto"`).
    #[default]
    Auto,
    /// io_uring only; start-up fails if it is unavailable (`"io_uring"`).
    IoUring,
    /// The epoll driver (`"legacy"`).
    Legacy,
}

/// `[[providers]]`: one upstream the gateway can send requests to.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// Unique name, `[a-zA-Z0-9_.-]+`, used by `models[].deployments[].provider`.
    pub name: String,
    /// Wire protocol / behaviour.
    pub kind: ProviderKind,
    /// Upstream address: `Some` exactly when `kind` is [`ProviderKind::OpenAi`].
    pub base_url: Option<BaseUrl>,
    /// Sent as `Authorization: Bearer <key>`. `None` when absent or empty. Printable ASCII.
    pub api_key: Option<Secret<String>>,
    /// Time allowed to open a TCP (and TLS) connection. Default 2 s.
    pub connect_timeout: Duration,
    /// Time from request sent to response head received. Default 60 s.
    pub first_byte_timeout: Duration,
    /// Longest gap between two reads of the response body or stream. Default 30 s.
    pub idle_timeout: Duration,
    /// Idle upstream connections kept per worker; 0 disables pooling. Default 256.
    pub pool_max_idle: usize,
    /// How long an idle pooled connection is kept. Default 60 s.
    pub pool_idle_timeout: Duration,
    /// Trust roots for `https://` upstreams. Default [`TlsRoots::Webpki`].
    pub tls_roots: TlsRoots,
    /// Extra trusted certificates for `https://` (a PEM bundle, e.g. an internal CA), trusted
    /// in addition to `tls_roots`. Read when the gateway starts.
    pub tls_ca_file: Option<PathBuf>,
    /// Behaviour of the built-in mock: `Some` exactly when `kind` is [`ProviderKind::Mock`]
    /// (defaults filled in when the file has no `[providers.mock]` table).
    pub mock: Option<MockSettings>,
}

impl ProviderConfig {
    /// Default for `connect_timeout`.
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default for `first_byte_timeout`.
    pub const DEFAULT_FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Default for `idle_timeout`.
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default for `pool_max_idle`.
    pub const DEFAULT_POOL_MAX_IDLE: usize = 256;
    /// Default for `pool_idle_timeout`.
    pub const DEFAULT_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
}

/// What kind of upstream a provider is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// An OpenAI-compatible HTTP API (`"openai"`): OpenAI itself, vLLM, llama.cpp, Ollama, ...
    OpenAi,
    /// The built-in mock, answering in-process without any network (`"mock"`).
    Mock,
}

impl ProviderKind {
    /// The name used for this kind in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Mock => "mock",
        }
    }
}

/// Which certificate roots verify `https://` upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlsRoots {
    /// The Mozilla roots compiled into the binary (`"webpki"`).
    #[default]
    Webpki,
    /// The operating system's trust store (`"system"`).
    System,
}

/// `[providers.mock]`: how the built-in mock answers. All fields optional.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MockSettings {
    /// Delay before the response head. Default 0.
    pub latency: Duration,
    /// Streaming: delay between the head and the first chunk. Default 0.
    pub ttft: Duration,
    /// Streaming: number of content chunks; 1..=100,000. Default 16.
    pub chunks: usize,
    /// Streaming: delay between chunks. Default 0.
    pub chunk_delay: Duration,
    /// Completion tokens in a non-streamed answer; 0..=1,000,000. Default 16.
    pub completion_tokens: usize,
    /// Length of each embedding vector; 1..=65,536. Default 8.
    pub embedding_dims: usize,
}

impl Default for MockSettings {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            ttft: Duration::ZERO,
            chunks: 16,
            chunk_delay: Duration::ZERO,
            completion_tokens: 16,
            embedding_dims: 8,
        }
    }
}

/// `[[models]]`: a model name clients send, and where requests for it go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelConfig {
    /// The name clients send in `"model"`; unique, non-empty, no whitespace or control characters.
    pub name: String,
    /// Where requests for this model can be sent, in file order; at least one.
    pub deployments: Vec<DeploymentConfig>,
}

/// One place a model is served: a provider and the model name that provider knows it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentConfig {
    /// Index into [`Config::providers`].
    pub provider: usize,
    /// The provider's name (same as `providers[provider].name`), for logs and metrics.
    pub provider_name: String,
    /// The model name sent upstream (replaces the client's `"model"`); non-empty.
    pub model: String,
}

/// `[[keys]]`: a client API key.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// Unique name, `[a-zA-Z0-9_.-]+`, for logs, metrics and usage records.
    pub name: String,
    /// The key clients send (`Authorization: Bearer` or `x-api-key`): unique, at least 8
    /// characters, printable ASCII without spaces.
    pub key: Secret<String>,
}
