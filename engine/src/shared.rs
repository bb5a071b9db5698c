//! Read-only state compiled once from a validated `Config` and shared by every core through an
//! `Arc`: the key table, the model map, per-provider upstream targets with their pre-built
//! request heads, TLS client configs and canned bodies. Nothing here changes after start-up;
//! a config reload builds a new `Shared` and swaps the `Arc`.

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use rustls::pki_types::ServerName;
use tollgate_config::{Config, ProviderKind, TlsRoots};
use tollgate_policy::keys::{digest_key, KeyDigest};
use tollgate_protocol::http::Limits;
use tollgate_protocol::mock::MockKnobs;
use tollgate_protocol::openai::Endpoint;

use tollgate_protocol::providers::anthropic::AnthropicAdapter;
use tollgate_protocol::providers::azure::AzureAdapter;
use tollgate_protocol::providers::bedrock::BedrockAdapter;
use tollgate_protocol::providers::gemini::GeminiAdapter;
use tollgate_protocol::providers::openai_compat::{AuthStyle, OpenAiCompatAdapter};
use tollgate_protocol::providers::{Adapter, AwsSigning, Target};

use crate::router::{DeploymentSpec, HealthSettings, Router, Strategy};

/// Why a config could not be turned into running state.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The TLS client could not be set up.
    #[error("providers[{index}] ({name}): TLS set-up failed: {reason}")]
    Tls {
        /// Provider index.
        index: usize,
        /// Provider name.
        name: String,
        /// Why.
        reason: String,
    },
    /// A guardrails profile could not be compiled.
    #[error("guardrails: {0}")]
    Guardrails(#[from] tollgate_policy::guardrails::CompileError),
}

/// Everything the request path reads, compiled from one config.
#[derive(Debug)]
pub struct Shared {
    /// The validated config this state was built from.
    pub config: Config,
    /// Client-facing model name -> index into `config.models`.
    pub models: HashMap<String, usize>,
    /// One entry per `config.providers`, same order.
    pub providers: Vec<ProviderTarget>,
    /// Framing limits for client requests.
    pub client_limits: Limits,
    /// Framing limits for upstream responses.
    pub upstream_limits: Limits,
    /// The `GET /v1/models` body (every configured model).
    pub models_body: Bytes,
    /// Compiled guardrails profiles (empty when `[guardrails]` declares none).
    pub guardrails: tollgate_policy::guardrails::Guardrails,
    /// Pricing per client-facing model (by model index).
    pub pricing: Vec<crate::governor::ModelPricing>,
    /// Client-facing model names (for allow-lists and per-model limits).
    pub model_names: Vec<String>,
    /// Guardrails profile names, for the admin API's `guardrails` fields.
    pub profile_names: Vec<String>,
    /// Digest of `[admin] master_key` (`None`: the admin API is off).
    master: Option<KeyDigest>,
    /// `[model][deployment]` -> `<provider>/<upstream model>`, the `x-tollgate-deployment`
    /// header value.
    deployment_labels: Vec<Vec<String>>,
}

/// How the request path reaches one provider.
pub struct ProviderTarget {
    /// Provider name from config (safe to log).
    pub name: String,
    /// Where requests go.
    pub backend: Backend,
    /// The wire format it speaks.
    pub wire: Wire,
    /// Translation to and from its wire format (also used for OpenAI-wire providers when the
    /// client speaks another format).
    pub adapter: Box<dyn Adapter>,
    /// `host` header value (empty for the built-in mock).
    pub authority: String,
    /// Base URL path prefix ("" or e.g. "/v1").
    pub base_path: String,
    /// Upstream API key (never logged: `ProviderTarget`'s Debug hides it).
    pub api_key: Option<String>,
    /// Upstream API version (Azure, Anthropic).
    pub api_version: Option<String>,
    /// AWS signing material (Bedrock).
    pub aws: Option<AwsKeys>,
    /// Connection set-up limit (TCP + TLS).
    pub connect_timeout: Duration,
    /// Request written -> response head.
    pub first_byte_timeout: Duration,
    /// Longest gap between two body reads.
    pub idle_timeout: Duration,
    /// Idle pooled connections kept per core.
    pub pool_max_idle: usize,
    /// Idle pooled connections older than this are closed.
    pub pool_idle_timeout: Duration,
}

/// The wire format a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions (OpenAI, presets, vLLM, Ollama... and the built-in mock).
    OpenAi,
    /// Azure OpenAI (OpenAI bodies, deployment paths, `api-key`).
    Azure,
    /// Anthropic Messages.
    Anthropic,
    /// Google Gemini generateContent.
    Gemini,
    /// AWS Bedrock Converse (SigV4-signed).
    Bedrock,
}

/// AWS signing material for a Bedrock provider.
#[derive(Clone)]
pub struct AwsKeys {
    /// Region, e.g. `us-east-1`.
    pub region: String,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Session token for temporary credentials.
    pub session_token: Option<String>,
}

impl std::fmt::Debug for AwsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKeys")
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ProviderTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderTarget")
            .field("name", &self.name)
            .field("wire", &self.wire)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl ProviderTarget {
    /// The adapter's view of a deployment of this provider at `now_unix`.
    pub fn target<'a>(&'a self, model: &'a str, now_unix: u64) -> Target<'a> {
        Target {
            authority: &self.authority,
            base_path: &self.base_path,
            model,
            api_key: self.api_key.as_deref(),
            api_version: self.api_version.as_deref(),
            aws: self.aws.as_ref().map(|a| AwsSigning {
                region: &a.region,
                access_key_id: &a.access_key_id,
                secret_access_key: &a.secret_access_key,
                session_token: a.session_token.as_deref(),
            }),
            now_unix,
        }
    }
}

/// The kinds of upstream the engine can talk to.
#[derive(Debug)]
pub enum Backend {
    /// The built-in mock provider, answered in-process.
    Mock(MockKnobs),
    /// An OpenAI-compatible HTTP(S) server.
    Http(HttpTarget),
}

/// An HTTP(S) upstream with its request heads pre-built.
#[derive(Debug)]
pub struct HttpTarget {
    /// Resolved addresses, tried in order. Empty when resolution failed at start-up.
    pub addrs: Vec<SocketAddr>,
    /// Why resolution failed, when `addrs` is empty.
    pub resolve_error: Option<String>,
    /// `Some` for `https://` upstreams.
    pub tls: Option<TlsTarget>,
    /// Pre-built request heads per endpoint, everything up to (not including) the
    /// `content-length` value; the request path appends the length and the blank line.
    heads: [Bytes; 3],
}

/// TLS parameters for an `https://` upstream.
#[derive(Clone)]
pub struct TlsTarget {
    /// The client config (roots, ALPN http/1.1).
    pub connector: monoio_rustls::TlsConnector,
    /// The name checked against the certificate (and sent as SNI).
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for TlsTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTarget")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

// === impl Shared ===

impl Shared {
    /// Compile a validated config. DNS names are resolved here, once; a name that does not
    /// resolve is logged and answered with 502 at request time rather than failing start-up.
    pub fn build(config: Config) -> Result<Arc<Shared>, BuildError> {
        let models = config
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i))
            .collect();
        let mut tls_cache: HashMap<(TlsRoots, Option<PathBuf>), Arc<rustls::ClientConfig>> =
            HashMap::new();
        let mut providers = Vec::with_capacity(config.providers.len());
        for (index, p) in config.providers.iter().enumerate() {
            let wire = match p.kind {
                ProviderKind::Mock | ProviderKind::OpenAi => Wire::OpenAi,
                ProviderKind::Azure => Wire::Azure,
                ProviderKind::Anthropic => Wire::Anthropic,
                ProviderKind::Gemini => Wire::Gemini,
                ProviderKind::Bedrock => Wire::Bedrock,
            };
            let adapter: Box<dyn Adapter> = match p.kind {
                ProviderKind::Mock => Box::new(OpenAiCompatAdapter::new(AuthStyle::None)),
                ProviderKind::OpenAi => Box::new(OpenAiCompatAdapter::new(AuthStyle::Bearer)),
                ProviderKind::Azure => Box::new(AzureAdapter::new()),
                ProviderKind::Anthropic => Box::new(AnthropicAdapter),
                ProviderKind::Gemini => Box::new(GeminiAdapter),
                ProviderKind::Bedrock => Box::new(BedrockAdapter),
            };
            let mut authority = String::new();
            let mut base_path = String::new();
            let backend = match p.kind {
                ProviderKind::Mock => Backend::Mock(mock_knobs(p.mock.as_ref())),
                _ => {
                    let Some(url) = p.base_url.as_ref() else {
                        // Validation guarantees a base_url for HTTP kinds.
                        continue;
                    };
                    let tls = if url.tls {
                        let cache_key = (p.tls_roots, p.tls_ca_file.clone());
                        let client = match tls_cache.get(&cache_key) {
                            Some(c) => c.clone(),
                            None => {
                                let c = tls_client_config(p.tls_roots, p.tls_ca_file.as_deref())
                                    .map_err(|reason| BuildError::Tls {
                                        index,
                                        name: p.name.clone(),
                                        reason,
                                    })?;
                                tls_cache.insert(cache_key, c.clone());
                                c
                            }
                        };
                        let server_name = ServerName::try_from(url.host.clone()).map_err(|e| {
                            BuildError::Tls {
                                index,
                                name: p.name.clone(),
                                reason: format!("invalid server name: {e}"),
                            }
                        })?;
                        Some(TlsTarget {
                            connector: monoio_rustls::TlsConnector::from(client),
                            server_name,
                        })
                    } else {
                        None
                    };
                    let (addrs, resolve_error) = match (url.host.as_str(), url.port)
                        .to_socket_addrs()
                    {
                        Ok(a) => (a.collect(), None),
                        Err(e) => {
                            tracing::warn!(provider = %p.name, error = %e, "upstream host did not resolve");
                            (Vec::new(), Some(e.to_string()))
                        }
                    };
                    let api_key = p.api_key.as_ref().map(|k| k.expose().as_str());
                    authority = url.authority();
                    base_path = url.path.clone();
                    // Pre-built heads serve the OpenAI-wire fast path; other wires build
                    // theirs per request through their adapter.
                    let heads = ENDPOINTS
                        .map(|ep| build_head(&url.path, endpoint_path(ep), &authority, api_key));
                    Backend::Http(HttpTarget {
                        addrs,
                        resolve_error,
                        tls,
                        heads,
                    })
                }
            };
            providers.push(ProviderTarget {
                name: p.name.clone(),
                backend,
                wire,
                adapter,
                authority,
                base_path,
                api_key: p.api_key.as_ref().map(|k| k.expose().clone()),
                api_version: p.api_version.clone(),
                aws: p.aws.as_ref().map(|a| AwsKeys {
                    region: p.region.clone().unwrap_or_default(),
                    access_key_id: a.access_key_id.expose().clone(),
                    secret_access_key: a.secret_access_key.expose().clone(),
                    session_token: a.session_token.as_ref().map(|t| t.expose().clone()),
                }),
                connect_timeout: p.connect_timeout,
                first_byte_timeout: p.first_byte_timeout,
                idle_timeout: p.idle_timeout,
                pool_max_idle: p.pool_max_idle,
                pool_idle_timeout: p.pool_idle_timeout,
            });
        }
        let s = &config.server;
        let client_limits = Limits {
            max_head_bytes: s.max_head_bytes,
            max_headers: s.max_headers,
            max_body_bytes: s.max_body_bytes as u64,
            ..Limits::default()
        };
        let upstream_limits = Limits {
            max_head_bytes: 64 * 1024,
            max_body_bytes: UPSTREAM_MAX_BODY,
            ..Limits::default()
        };
        let names: Vec<&str> = config.models.iter().map(|m| m.name.as_str()).collect();
        let models_body = tollgate_protocol::openai::models_list(&names, "tollgate", created_at());
        let deployment_labels = config
            .models
            .iter()
            .map(|m| {
                m.deployments
                    .iter()
                    .map(|d| format!("{}/{}", d.provider_name, d.model))
                    .collect()
            })
            .collect();
        let guardrails = tollgate_policy::guardrails::Guardrails::compile(&config.guardrails)?;
        let pricing =
            crate::governor::price_models(&config, &crate::governor::price_table(&config));
        crate::governor::warn_unpriced(&config, &pricing);
        Ok(Arc::new(Shared {
            pricing,
            model_names: config.models.iter().map(|m| m.name.clone()).collect(),
            profile_names: config
                .guardrails
                .profiles
                .iter()
                .map(|p| p.name.clone())
                .collect(),
            master: config
                .admin
                .master_key
                .as_ref()
                .map(|k| digest_key(k.expose().as_bytes())),
            deployment_labels,
            guardrails,
            models,
            providers,
            client_limits,
            upstream_limits,
            models_body,
            config,
        }))
    }
}

// === impl Shared (routing) ===

impl Shared {
    /// The master key's SHA-256 digest, which keys the dashboard's session tokens
    /// (`crate::dashboard`); `None` when the admin API is off.
    pub fn master_digest(&self) -> Option<&KeyDigest> {
        self.master.as_ref()
    }

    /// True when `presented` is the master key (constant-time); `None` when the admin API is
    /// off (no master key configured).
    pub fn is_master(&self, presented: &[u8]) -> Option<bool> {
        let master = self.master.as_ref()?;
        let digest = digest_key(presented);
        Some(bool::from(subtle::ConstantTimeEq::ct_eq(
            &master[..],
            &digest[..],
        )))
    }

    /// The `x-tollgate-deployment` value of a deployment.
    pub fn deployment_label(&self, model: usize, deployment: usize) -> &str {
        self.deployment_labels
            .get(model)
            .and_then(|m| m.get(deployment))
            .map_or("", String::as_str)
    }

    /// Whether provider `provider` here and `old_provider` in `old` reach the same upstream the
    /// same way, so connections (and what was learnt about its health) carry over: same
    /// resolved addresses, TLS settings and server name; or both the built-in mock.
    pub fn same_connections(&self, provider: usize, old: &Shared, old_provider: usize) -> bool {
        let (Some(new), Some(prev)) = (
            self.config.providers.get(provider),
            old.config.providers.get(old_provider),
        ) else {
            return false;
        };
        let same_tls = new.tls_roots == prev.tls_roots && new.tls_ca_file == prev.tls_ca_file;
        let targets = (
            self.providers.get(provider).map(|t| &t.backend),
            old.providers.get(old_provider).map(|t| &t.backend),
        );
        match targets {
            (Some(Backend::Http(a)), Some(Backend::Http(b))) => {
                same_tls
                    && a.addrs == b.addrs
                    && a.tls.as_ref().map(|t| &t.server_name)
                        == b.tls.as_ref().map(|t| &t.server_name)
            }
            _ => false,
        }
    }

    /// Fresh per-core routing state for this config. `seed` decorrelates the cores' jitter.
    pub fn new_router(&self, seed: u64) -> Router {
        let models = self
            .config
            .models
            .iter()
            .map(|m| {
                let strategy = match m.strategy {
                    tollgate_config::Strategy::Weighted => Strategy::Weighted,
                    tollgate_config::Strategy::LeastInflight => Strategy::LeastInFlight,
                    tollgate_config::Strategy::LowestLatency => Strategy::LowestLatency,
                    tollgate_config::Strategy::Priority => Strategy::Priority,
                };
                let specs = m
                    .deployments
                    .iter()
                    .map(|d| DeploymentSpec {
                        weight: d.weight,
                        priority: d.priority,
                    })
                    .collect();
                (strategy, specs)
            })
            .collect();
        let r = &self.config.routing;
        let settings = HealthSettings {
            cooldown_failures: r.cooldown_failures,
            cooldown_error_ratio: r.cooldown_error_ratio,
            cooldown_min_requests: r.cooldown_min_requests,
            cooldown_window: r.cooldown_window,
            cooldown: r.cooldown,
            backoff_base: r.backoff_base,
            backoff_max: r.backoff_max,
        };
        Router::new(
            models,
            settings,
            seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1,
        )
    }
}

/// Unix time the model list reports as `created`: when this config was compiled.
fn created_at() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Largest non-streaming upstream response body the gateway buffers.
pub const UPSTREAM_MAX_BODY: u64 = 64 * 1024 * 1024;

// === impl HttpTarget ===

impl HttpTarget {
    /// The pre-built head prefix for `endpoint` (ends with `content-length: `).
    pub fn head_prefix(&self, endpoint: Endpoint) -> &Bytes {
        &self.heads[endpoint_index(endpoint)]
    }
}

/// The proxied endpoints, in the order of `HttpTarget::heads`.
const ENDPOINTS: [Endpoint; 3] = [
    Endpoint::ChatCompletions,
    Endpoint::Completions,
    Endpoint::Embeddings,
];

fn endpoint_index(endpoint: Endpoint) -> usize {
    match endpoint {
        Endpoint::ChatCompletions => 0,
        Endpoint::Completions => 1,
        Endpoint::Embeddings => 2,
    }
}

/// The path of `endpoint` below an OpenAI-style base URL (which already ends in `/v1`).
pub fn endpoint_path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::ChatCompletions => "/chat/completions",
        Endpoint::Completions => "/completions",
        Endpoint::Embeddings => "/embeddings",
    }
}

fn build_head(prefix: &str, path: &str, authority: &str, api_key: Option<&str>) -> Bytes {
    let mut out = BytesMut::with_capacity(256);
    out.put_slice(b"POST ");
    out.put_slice(prefix.as_bytes());
    out.put_slice(path.as_bytes());
    out.put_slice(b" HTTP/1.1\r\nhost: ");
    out.put_slice(authority.as_bytes());
    out.put_slice(b"\r\nuser-agent: tollgate/");
    out.put_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.put_slice(b"\r\ncontent-type: application/json\r\n");
    if let Some(key) = api_key {
        out.put_slice(b"authorization: Bearer ");
        out.put_slice(key.as_bytes());
        out.put_slice(b"\r\n");
    }
    out.put_slice(b"content-length: ");
    out.freeze()
}

fn mock_knobs(m: Option<&tollgate_config::MockSettings>) -> MockKnobs {
    let defaults = tollgate_config::MockSettings::default();
    let m = m.unwrap_or(&defaults);
    let small = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    MockKnobs {
        latency: m.latency,
        ttft: m.ttft,
        chunks: small(m.chunks),
        chunk_delay: m.chunk_delay,
        completion_tokens: small(m.completion_tokens),
        embedding_dims: small(m.embedding_dims),
        response_bytes: None,
        fault: None,
    }
}

fn tls_client_config(
    roots: TlsRoots,
    ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut store = rustls::RootCertStore::empty();
    if let Some(path) = ca_file {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::CertificateDer;
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
            store
                .add(cert)
                .map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
            added += 1;
        }
        if added == 0 {
            return Err(format!(
                "tls_ca_file {}: no certificates found",
                path.display()
            ));
        }
    }
    match roots {
        TlsRoots::Webpki => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        TlsRoots::System => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                // A malformed system certificate is skipped, as browsers do.
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err("no usable root certificates (system store empty)".into());
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(store)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}
