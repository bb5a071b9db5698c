//! The typed, validated configuration. Every value here has passed validation: names are unique,
//! references resolve, numbers are in range. Defaults live here, next to the fields they fill.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::base_url::BaseUrl;
use crate::governance::{KeyOwner, Limits, Nanos, OrgConfig, TeamConfig, UserConfig};
use crate::guardrails::GuardrailsConfig;
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
    /// Retries, back-off and cooldown of failing deployments (`[routing]`).
    pub routing: RoutingConfig,
    /// Orgs declared in the file (`[[orgs]]`); more live in the store.
    pub orgs: Vec<OrgConfig>,
    /// Teams declared in the file (`[[teams]]`).
    pub teams: Vec<TeamConfig>,
    /// Users declared in the file (`[[users]]`).
    pub users: Vec<UserConfig>,
    /// Price overrides (`[[prices]]`), on top of the built-in table.
    pub prices: Vec<PriceConfig>,
    /// Budget and limit behaviour (`[governance]`).
    pub governance: GovernanceConfig,
    /// The embedded store (`[store]`).
    pub store: StoreConfig,
    /// The admin API (`[admin]`).
    pub admin: AdminConfig,
    /// Guardrail profiles and the default one (`[guardrails]`); none by default.
    pub guardrails: GuardrailsConfig,
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
    /// Where the JSON access log goes (one line per model request). Default off.
    pub access_log: AccessLog,
    /// Count requests per core and serve `GET /metrics`. Default true.
    pub metrics: bool,
}

/// `server.access_log`: `"off"`, `"stdout"`, `"stderr"`, or a file path (appended to).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum AccessLog {
    /// No access log.
    #[default]
    Off,
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, created if missing and appended to.
    File(std::path::PathBuf),
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
            access_log: AccessLog::Off,
            metrics: true,
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
    /// Wire protocol / behaviour. Presets (`kind = "groq"`, ...) are [`ProviderKind::OpenAi`]
    /// with [`ProviderConfig::preset`] set.
    pub kind: ProviderKind,
    /// Which OpenAI-compatible vendor `kind` named, when it named a preset; `None` otherwise.
    pub preset: Option<Preset>,
    /// Upstream address: `Some` for every kind except [`ProviderKind::Mock`]. When the file
    /// leaves it out (or it interpolates to `""`), the kind's default is filled in: the preset's
    /// URL, `https://api.anthropic.com`, `https://generativelanguage.googleapis.com`, or for
    /// Bedrock `https://bedrock-runtime.{region}.amazonaws.com`.
    pub base_url: Option<BaseUrl>,
    /// The vendor API key (`Authorization: Bearer`, `api-key`, `x-api-key` or `x-goog-api-key`,
    /// depending on the kind). `None` when absent or empty. Printable ASCII. Always `Some` for
    /// Azure, Anthropic and Gemini; always `None` for Bedrock (which signs with [`Self::aws`]).
    pub api_key: Option<Secret<String>>,
    /// API version: `Some` exactly for Azure (the `api-version` query parameter, default
    /// [`Self::DEFAULT_AZURE_API_VERSION`]) and Anthropic (the `anthropic-version` header,
    /// default [`Self::DEFAULT_ANTHROPIC_API_VERSION`]). `[A-Za-z0-9._-]+`.
    pub api_version: Option<String>,
    /// AWS region, `Some` exactly for Bedrock, e.g. `us-east-1`; `[a-z0-9-]+`.
    pub region: Option<String>,
    /// AWS credentials for SigV4 signing: `Some` exactly for Bedrock.
    pub aws: Option<AwsCredentials>,
    /// Time allowed to open a TCP (and TLS) connection. Default 2 s.
    pub connect_timeout: Duration,
    /// Time from request sent to response head received. Default 60 s. A deployment's
    /// [`DeploymentConfig::timeout`] overrides it.
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
    /// Default `api_version` for Azure OpenAI (a GA data-plane version).
    pub const DEFAULT_AZURE_API_VERSION: &'static str = "2024-10-21";
    /// Default `api_version` for Anthropic (the `anthropic-version` header).
    pub const DEFAULT_ANTHROPIC_API_VERSION: &'static str = "2023-06-01";
    /// Default `base_url` for Anthropic.
    pub const DEFAULT_ANTHROPIC_BASE_URL: &'static str = "https://api.anthropic.com";
    /// Default `base_url` for Gemini.
    pub const DEFAULT_GEMINI_BASE_URL: &'static str = "https://generativelanguage.googleapis.com";

    /// The Bedrock runtime endpoint for `region`, the default `base_url` of a Bedrock provider.
    pub fn bedrock_endpoint(region: &str) -> String {
        format!("https://bedrock-runtime.{region}.amazonaws.com")
    }

    /// The `kind` as written in the file: the preset's name (`"groq"`) or the kind's
    /// (`"openai"`, `"anthropic"`, ...). For logs and metrics.
    pub fn kind_name(&self) -> &'static str {
        match self.preset {
            Some(preset) => preset.as_str(),
            None => self.kind.as_str(),
        }
    }
}

/// What kind of upstream a provider is: which wire protocol the gateway speaks to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// An OpenAI-compatible HTTP API (`"openai"`, or any [`Preset`]): OpenAI itself, vLLM,
    /// llama.cpp, Ollama, ...
    OpenAi,
    /// Azure OpenAI (`"azure"`): `{base_url}/openai/deployments/{model}/...?api-version=...`,
    /// key in the `api-key` header.
    Azure,
    /// The Anthropic Messages API (`"anthropic"`).
    Anthropic,
    /// Google Gemini, the Generative Language API (`"gemini"`).
    Gemini,
    /// Amazon Bedrock runtime (`"bedrock"`), requests signed with AWS SigV4.
    Bedrock,
    /// The built-in mock, answering in-process without any network (`"mock"`).
    Mock,
}

impl ProviderKind {
    /// Every kind, in the order the documentation lists them.
    pub const ALL: [ProviderKind; 6] = [
        Self::OpenAi,
        Self::Azure,
        Self::Anthropic,
        Self::Gemini,
        Self::Bedrock,
        Self::Mock,
    ];

    /// The name used for this kind in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Azure => "azure",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Bedrock => "bedrock",
            Self::Mock => "mock",
        }
    }
}

/// An OpenAI-compatible vendor with a well-known address: `kind = "groq"` is `kind = "openai"`
/// with this preset's [`Preset::default_base_url`] as the default `base_url`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// Groq (`"groq"`).
    Groq,
    /// Mistral AI (`"mistral"`).
    Mistral,
    /// Together AI (`"together"`).
    Together,
    /// DeepSeek (`"deepseek"`).
    DeepSeek,
    /// Fireworks AI (`"fireworks"`).
    Fireworks,
    /// OpenRouter (`"openrouter"`).
    OpenRouter,
    /// xAI (`"xai"`).
    XAi,
    /// A local vLLM server (`"vllm"`).
    Vllm,
    /// A local Ollama server (`"ollama"`).
    Ollama,
    /// A local LM Studio server (`"lmstudio"`).
    LmStudio,
}

impl Preset {
    /// Every preset, in the order the documentation lists them.
    pub const ALL: [Preset; 10] = [
        Self::Groq,
        Self::Mistral,
        Self::Together,
        Self::DeepSeek,
        Self::Fireworks,
        Self::OpenRouter,
        Self::XAi,
        Self::Vllm,
        Self::Ollama,
        Self::LmStudio,
    ];

    /// The name used for this preset as a `kind` in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Groq => "groq",
            Self::Mistral => "mistral",
            Self::Together => "together",
            Self::DeepSeek => "deepseek",
            Self::Fireworks => "fireworks",
            Self::OpenRouter => "openrouter",
            Self::XAi => "xai",
            Self::Vllm => "vllm",
            Self::Ollama => "ollama",
            Self::LmStudio => "lmstudio",
        }
    }

    /// The preset named `name` in the config file, if any.
    pub fn from_name(name: &str) -> Option<Preset> {
        Self::ALL.into_iter().find(|preset| preset.as_str() == name)
    }

    /// The vendor's OpenAI-compatible base URL (local servers at their default port on
    /// 127.0.0.1). Used when the provider gives no `base_url`.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Self::Groq => "https://api.groq.com/openai/v1",
            Self::Mistral => "https://api.mistral.ai/v1",
            Self::Together => "https://api.together.xyz/v1",
            Self::DeepSeek => "https://api.deepseek.com/v1",
            Self::Fireworks => "https://api.fireworks.ai/inference/v1",
            Self::OpenRouter => "https://openrouter.ai/api/v1",
            Self::XAi => "https://api.x.ai/v1",
            Self::Vllm => "http://127.0.0.1:8000/v1",
            Self::Ollama => "http://127.0.0.1:11434/v1",
            Self::LmStudio => "http://127.0.0.1:1234/v1",
        }
    }
}

/// AWS credentials a Bedrock provider signs its requests with (SigV4).
#[derive(Debug, Clone)]
pub struct AwsCredentials {
    /// `aws_access_key_id`.
    pub access_key_id: Secret<String>,
    /// `aws_secret_access_key`.
    pub secret_access_key: Secret<String>,
    /// `aws_session_token`, for temporary credentials; `None` when absent or empty.
    pub session_token: Option<Secret<String>>,
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
    /// How a deployment is chosen among `deployments`. Default [`Strategy::Weighted`].
    pub strategy: Strategy,
    /// Models tried, in order, once this model's deployments have failed: indexes into
    /// [`Config::models`], never this model's own index.
    pub fallbacks: Vec<usize>,
    /// The names of `fallbacks` (same order), for logs and metrics.
    pub fallback_names: Vec<String>,
    /// Models tried, in order, instead of `fallbacks` when the upstream rejects a request as too
    /// long for the model's context window: indexes into [`Config::models`], never this model's.
    pub context_fallbacks: Vec<usize>,
    /// The names of `context_fallbacks` (same order), for logs and metrics.
    pub context_fallback_names: Vec<String>,
}

/// How a model spreads requests over its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Strategy {
    /// Random, in proportion to each deployment's `weight` (`"weighted"`).
    #[default]
    Weighted,
    /// The deployment with the fewest requests in flight (`"least_inflight"`).
    LeastInflight,
    /// The deployment with the lowest recent time to first byte (`"lowest_latency"`).
    LowestLatency,
    /// The lowest `priority` first; equal priorities share by `weight` (`"priority"`).
    Priority,
}

impl Strategy {
    /// The name used for this strategy in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Weighted => "weighted",
            Self::LeastInflight => "least_inflight",
            Self::LowestLatency => "lowest_latency",
            Self::Priority => "priority",
        }
    }
}

/// One place a model is served: a provider and the model name that provider knows it by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentConfig {
    /// Index into [`Config::providers`].
    pub provider: usize,
    /// The provider's name (same as `providers[provider].name`), for logs and metrics.
    pub provider_name: String,
    /// The model name sent upstream (replaces the client's `"model"`); non-empty. For Azure,
    /// the deployment name; for Bedrock, the model or inference-profile id.
    pub model: String,
    /// Share of traffic under [`Strategy::Weighted`] (and among equal priorities); 1..=1000.
    /// Default 1.
    pub weight: u32,
    /// Order under [`Strategy::Priority`]: lower is tried first; 0..=1000. Default 0.
    pub priority: u32,
    /// First-byte timeout for this deployment, overriding the provider's
    /// [`ProviderConfig::first_byte_timeout`]. Default `None` (use the provider's).
    pub timeout: Option<Duration>,
}

impl DeploymentConfig {
    /// Default for `weight`.
    pub const DEFAULT_WEIGHT: u32 = 1;
    /// Default for `priority`.
    pub const DEFAULT_PRIORITY: u32 = 0;
}

/// `[routing]`: what happens when an upstream attempt fails. All fields optional.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConfig {
    /// Extra attempts on the same model's deployments before its fallbacks; 0..=10. Default 2.
    pub retries: u32,
    /// Back-off before the first retry; it doubles for each further retry. Default 50 ms.
    pub backoff_base: Duration,
    /// Longest back-off between retries; at least `backoff_base`. Default 2 s.
    pub backoff_max: Duration,
    /// Consecutive failures that eject a deployment; 1..=1000. Default 3.
    pub cooldown_failures: u32,
    /// Error ratio within `cooldown_window` that ejects a deployment; greater than 0, at most 1.
    /// Default 0.5.
    pub cooldown_error_ratio: f64,
    /// Requests a deployment must have seen within `cooldown_window` before
    /// `cooldown_error_ratio` applies; 1..=1,000,000. Default 10.
    pub cooldown_min_requests: u32,
    /// The sliding window `cooldown_error_ratio` is measured over. Default 30 s.
    pub cooldown_window: Duration,
    /// How long an ejected deployment is skipped before one request probes it again.
    /// Default 30 s.
    pub cooldown: Duration,
    /// Longest upstream `Retry-After` the gateway waits out before retrying; with a longer one
    /// it moves on at once, to another of the model's deployments or else to its fallbacks.
    /// Zero means never wait. Default 2 s.
    pub honor_retry_after_max: Duration,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            retries: 2,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
            cooldown_failures: 3,
            cooldown_error_ratio: 0.5,
            cooldown_min_requests: 10,
            cooldown_window: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
            honor_retry_after_max: Duration::from_secs(2),
        }
    }
}

/// `[[keys]]`: a client API key.
#[derive(Debug, Clone)]
pub struct KeyConfig {
    /// Unique name, `[a-zA-Z0-9_.-]+`, for logs, metrics and usage records.
    pub name: String,
    /// The key clients send (`Authorization: Bearer` or `x-api-key`): unique, at least 8
    /// characters, printable ASCII without spaces.
    pub key: Secret<String>,
    /// The user, team or org it belongs to.
    pub owner: KeyOwner,
    /// Client-facing models it may use; `None` = every model.
    pub models: Option<Vec<String>>,
    /// Unix seconds after which it is refused.
    pub expires_at: Option<u64>,
    /// Its own limits and budgets.
    pub limits: Limits,
    /// The guardrail profile for its requests; `None` = its owner's (user, team, org), else
    /// `guardrails.default_profile`.
    pub guardrails: Option<String>,
}

/// `[[prices]]`: what one upstream model costs, in nanodollars per million tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceConfig {
    /// Upstream model name (as sent to the provider), or `provider/model`.
    pub model: String,
    /// Input (prompt) tokens.
    pub input: Nanos,
    /// Output (completion) tokens.
    pub output: Nanos,
    /// Cached input tokens, when the provider discounts them.
    pub cached_input: Option<Nanos>,
}

/// What to do with a request routed to a model whose price is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnknownPrice {
    /// Serve it, record cost 0 and flag the usage record `price_unknown` (`"allow"`).
    #[default]
    Allow,
    /// Refuse it before calling the upstream (`"block"`).
    Block,
}

/// `[governance]`: how limits and budgets are enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovernanceConfig {
    /// Requests to unpriced models. Default `allow` (flagged).
    pub unknown_price: UnknownPrice,
    /// Output tokens reserved for a request that sends no `max_tokens`. Default 4096.
    pub default_max_tokens: u64,
    /// How often the reconciler reclaims idle leases and refreshes state. Default 100ms.
    pub reconcile_interval: Duration,
}

impl Default for GovernanceConfig {
    fn default() -> Self {
        Self {
            unknown_price: UnknownPrice::Allow,
            default_max_tokens: 4096,
            reconcile_interval: Duration::from_millis(100),
        }
    }
}

/// `[store]`: the embedded store holding identities, keys and the usage ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// Directory of the store. Default `tollgate-data`.
    pub path: PathBuf,
    /// Longest time a usage record waits before it is durable. Default 200ms.
    pub flush_interval: Duration,
    /// Usage records that may wait for the storage thread. Default 1,000,000.
    pub queue: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("tollgate-data"),
            flush_interval: Duration::from_millis(200),
            queue: 1_000_000,
        }
    }
}

/// `[admin]`: the admin API under `/admin/`.
#[derive(Debug, Clone, Default)]
pub struct AdminConfig {
    /// The master key (`Authorization: Bearer`); without one the admin API answers 403.
    pub master_key: Option<Secret<String>>,
}
