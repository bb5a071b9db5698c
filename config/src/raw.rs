//! The raw serde form: which keys may appear where (`deny_unknown_fields` everywhere). Values stay
//! untyped `toml::Value`s so that typing them happens in validation, where each value's key path is
//! known and one bad value does not hide the errors after it. Nested tables and arrays of tables
//! are kept as values too and given their own raw struct by the validator, for the same reason.

use serde::Deserialize;
use toml::Value;

/// The top level of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub server: Option<Value>,
    pub providers: Option<Value>,
    pub models: Option<Value>,
    pub keys: Option<Value>,
    pub routing: Option<Value>,
    pub orgs: Option<Value>,
    pub teams: Option<Value>,
    pub users: Option<Value>,
    pub prices: Option<Value>,
    pub governance: Option<Value>,
    pub store: Option<Value>,
    pub admin: Option<Value>,
    pub guardrails: Option<Value>,
}

/// `[server]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServer {
    pub listen: Option<Value>,
    pub workers: Option<Value>,
    pub io_driver: Option<Value>,
    pub max_head_bytes: Option<Value>,
    pub max_headers: Option<Value>,
    pub max_body_bytes: Option<Value>,
    pub header_read_timeout: Option<Value>,
    pub body_read_timeout: Option<Value>,
    pub keepalive_timeout: Option<Value>,
    pub shutdown_grace: Option<Value>,
    pub max_connections_per_worker: Option<Value>,
    pub access_log: Option<Value>,
    pub metrics: Option<Value>,
}

/// One `[[providers]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub name: Option<Value>,
    pub kind: Option<Value>,
    pub base_url: Option<Value>,
    pub api_key: Option<Value>,
    pub api_version: Option<Value>,
    pub region: Option<Value>,
    pub aws_access_key_id: Option<Value>,
    pub aws_secret_access_key: Option<Value>,
    pub aws_session_token: Option<Value>,
    pub connect_timeout: Option<Value>,
    pub first_byte_timeout: Option<Value>,
    pub idle_timeout: Option<Value>,
    pub pool_max_idle: Option<Value>,
    pub pool_idle_timeout: Option<Value>,
    pub tls_roots: Option<Value>,
    pub tls_ca_file: Option<Value>,
    pub mock: Option<Value>,
}

/// `[providers.mock]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMock {
    pub latency: Option<Value>,
    pub ttft: Option<Value>,
    pub chunks: Option<Value>,
    pub chunk_delay: Option<Value>,
    pub completion_tokens: Option<Value>,
    pub embedding_dims: Option<Value>,
}

/// One `[[models]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawModel {
    pub name: Option<Value>,
    pub deployments: Option<Value>,
    pub strategy: Option<Value>,
    pub fallbacks: Option<Value>,
    pub context_fallbacks: Option<Value>,
}

/// One element of `models[].deployments`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeployment {
    pub provider: Option<Value>,
    pub model: Option<Value>,
    pub weight: Option<Value>,
    pub priority: Option<Value>,
    pub timeout: Option<Value>,
}

/// One `[[keys]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawKey {
    pub name: Option<Value>,
    pub key: Option<Value>,
    pub user: Option<Value>,
    pub team: Option<Value>,
    pub org: Option<Value>,
    pub models: Option<Value>,
    pub expires: Option<Value>,
    pub limits: Option<Value>,
    pub guardrails: Option<Value>,
}

/// One `[[orgs]]`, `[[teams]]` or `[[users]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEntity {
    pub name: Option<Value>,
    pub team: Option<Value>,
    pub org: Option<Value>,
    pub limits: Option<Value>,
    pub guardrails: Option<Value>,
}

/// A `limits` table (of an org, team, user or key, or one model within it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLimits {
    pub rpm: Option<Value>,
    pub tpm: Option<Value>,
    pub tpm_counts: Option<Value>,
    pub max_parallel: Option<Value>,
    pub budget: Option<Value>,
    pub soft_budget: Option<Value>,
    pub models: Option<Value>,
}

/// One `[[prices]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPrice {
    pub model: Option<Value>,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub cached_input: Option<Value>,
}

/// `[governance]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGovernance {
    pub unknown_price: Option<Value>,
    pub default_max_tokens: Option<Value>,
    pub reconcile_interval: Option<Value>,
}

/// `[store]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawStore {
    pub path: Option<Value>,
    pub flush_interval: Option<Value>,
    pub queue: Option<Value>,
}

/// `[admin]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawAdmin {
    pub master_key: Option<Value>,
}

/// `[routing]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRouting {
    pub retries: Option<Value>,
    pub backoff_base: Option<Value>,
    pub backoff_max: Option<Value>,
    pub cooldown_failures: Option<Value>,
    pub cooldown_error_ratio: Option<Value>,
    pub cooldown_min_requests: Option<Value>,
    pub cooldown_window: Option<Value>,
    pub cooldown: Option<Value>,
    pub honor_retry_after_max: Option<Value>,
}

/// `[guardrails]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuardrails {
    pub default_profile: Option<Value>,
    pub profiles: Option<Value>,
}

/// One `[[guardrails.profiles]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuardrailProfile {
    pub name: Option<Value>,
    pub allow: Option<Value>,
    pub restore_masked: Option<Value>,
    pub rules: Option<Value>,
}

/// One `[[guardrails.profiles.rules]]` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGuardrailRule {
    pub id: Option<Value>,
    pub detector: Option<Value>,
    pub action: Option<Value>,
    pub on: Option<Value>,
    pub placeholder: Option<Value>,
    pub words: Option<Value>,
    pub words_file: Option<Value>,
    pub whole_word: Option<Value>,
    pub case_sensitive: Option<Value>,
    pub pattern: Option<Value>,
}
