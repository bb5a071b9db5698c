//! The validation pass: parsed TOML tree -> typed [`Config`]. It interpolates `${VAR}` in each
//! string value, types it, checks it, and keeps going after a problem so that one run reports every
//! error with its key path. It never puts a secret (`api_key`, `aws_*`, `key`) into a message.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use serde::de::DeserializeOwned;
use toml::{Table, Value};

use crate::base_url::BaseUrl;
use crate::error::{ConfigError, ConfigErrors};
use crate::interpolate::{interpolate, referenced_variables};
use crate::raw::{
    RawConfig, RawDeployment, RawKey, RawMock, RawModel, RawProvider, RawRouting, RawServer,
};
use crate::secret::Secret;
use crate::types::{
    AccessLog, AwsCredentials, Config, DeploymentConfig, IoDriver, KeyConfig, MockSettings,
    ModelConfig, Preset, ProviderConfig, ProviderKind, RoutingConfig, ServerConfig, Strategy,
    TlsRoots,
};
use crate::units::{format_duration, format_size, parse_duration, parse_size, quote};

mod governance;
mod guardrails;

const MIN_KEY_CHARS: usize = 8;

/// Kinds that talk HTTP to an upstream (every kind but the in-process mock).
const HTTP_KINDS: &[ProviderKind] = &[
    ProviderKind::OpenAi,
    ProviderKind::Azure,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Bedrock,
];
/// Kinds that authenticate with `api_key` (Bedrock signs with AWS credentials instead).
const API_KEY_KINDS: &[ProviderKind] = &[
    ProviderKind::OpenAi,
    ProviderKind::Azure,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Mock,
];
const API_VERSION_KINDS: &[ProviderKind] = &[ProviderKind::Azure, ProviderKind::Anthropic];
const AWS_KINDS: &[ProviderKind] = &[ProviderKind::Bedrock];

/// Validates a parsed document into a [`Config`], or returns every problem found.
pub(crate) fn validate(
    document: Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut validator = Validator {
        env,
        errors: Vec::new(),
    };
    let config = validator.config(document);
    match config {
        Some(config) if validator.errors.is_empty() => Ok(config),
        _ => {
            if validator.errors.is_empty() {
                // Every path that yields no config records why; this keeps an Err non-empty anyway.
                validator.error("", "internal error: configuration was not built");
            }
            Err(ConfigErrors {
                errors: validator.errors,
            })
        }
    }
}

/// Validates a `limits` table given outside a file (the admin API, the CLI), against the
/// configured model names; errors carry paths under `limits`.
pub(crate) fn limits(
    value: Value,
    models: &[String],
) -> Result<crate::governance::Limits, ConfigErrors> {
    let mut validator = Validator {
        env: &|_| None,
        errors: Vec::new(),
    };
    let limits = validator.limits_value(value, models);
    match limits {
        Some(limits) if validator.errors.is_empty() => Ok(limits),
        _ => Err(ConfigErrors {
            errors: validator.errors,
        }),
    }
}

/// Whether a zero duration makes sense for a key.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Zero {
    Allowed,
    Rejected,
}

/// A provider's kind while validating it: the typed kind plus the name written in the file
/// (a preset's name for presets), which messages quote.
#[derive(Clone, Copy)]
struct KindOf {
    kind: ProviderKind,
    name: &'static str,
}

/// Names as written in the file (`None` where unreadable), by index, for resolving references.
struct Names<'a> {
    providers: &'a [Option<String>],
    models: &'a [Option<String>],
}

struct Validator<'e> {
    env: &'e dyn Fn(&str) -> Option<String>,
    errors: Vec<ConfigError>,
}

// === impl Validator: sections ===

impl Validator<'_> {
    fn config(&mut self, document: Table) -> Option<Config> {
        let raw: RawConfig = self.shape("", Value::Table(document))?;

        let server = match raw.server {
            Some(value) => self
                .shape::<RawServer>("server", value)
                .map(|raw| self.server(raw)),
            None => Some(ServerConfig::default()),
        };

        let routing = match raw.routing {
            Some(value) => self
                .shape::<RawRouting>("routing", value)
                .map(|raw| self.routing(raw)),
            None => Some(RoutingConfig::default()),
        };

        let raw_providers = self.array_of_tables("providers", raw.providers);
        // Names as written (even if otherwise invalid), so a deployment that names a provider
        // with some other mistake is not reported as unknown too.
        let mut provider_names: Vec<Option<String>> = Vec::with_capacity(raw_providers.len());
        let mut providers = Vec::with_capacity(raw_providers.len());
        let mut seen_providers: HashMap<String, usize> = HashMap::new();
        for (i, value) in raw_providers.into_iter().enumerate() {
            let path = format!("providers[{i}]");
            let raw = self.shape::<RawProvider>(&path, value);
            let written_name = raw
                .as_ref()
                .and_then(|raw| raw.name.as_ref())
                .and_then(|v| v.as_str())
                .and_then(|name| interpolate(name, self.env).ok());
            if let Some(name) = &written_name {
                if let Some(first) = seen_providers.get(name) {
                    self.error(
                        &join(&path, "name"),
                        format!(
                            "duplicate provider name {} (also providers[{first}])",
                            quote(name)
                        ),
                    );
                } else {
                    seen_providers.insert(name.clone(), i);
                }
            }
            provider_names.push(written_name);
            providers.push(raw.and_then(|raw| self.provider(&path, raw)));
        }

        let raw_models = self.array_of_tables("models", raw.models);
        // Names as written, read ahead so that `fallbacks` can name a later model, and a
        // fallback naming a model with some other mistake is not reported as unknown too.
        let model_names: Vec<Option<String>> = raw_models
            .iter()
            .map(|value| {
                value
                    .get("name")
                    .and_then(Value::as_str)
                    .and_then(|name| interpolate(name, self.env).ok())
            })
            .collect();
        let names = Names {
            providers: &provider_names,
            models: &model_names,
        };
        let mut models = Vec::with_capacity(raw_models.len());
        let mut seen_models: HashMap<String, usize> = HashMap::new();
        for (i, value) in raw_models.into_iter().enumerate() {
            let path = format!("models[{i}]");
            let model = self
                .shape::<RawModel>(&path, value)
                .and_then(|raw| self.model(&path, i, raw, &names));
            if let Some(model) = &model {
                if let Some(first) = seen_models.get(&model.name) {
                    self.error(
                        &join(&path, "name"),
                        format!(
                            "duplicate model name {} (also models[{first}])",
                            quote(&model.name)
                        ),
                    );
                } else {
                    seen_models.insert(model.name.clone(), i);
                }
            }
            models.push(model);
        }

        let model_names: Vec<String> = models.iter().flatten().map(|m| m.name.clone()).collect();
        // Before the entities and keys, which may name a profile.
        let guardrails = self.guardrails(raw.guardrails);
        let hierarchy = self.hierarchy(
            raw.orgs,
            raw.teams,
            raw.users,
            &model_names,
            &guardrails.names,
        );
        let prices = self.prices(raw.prices);
        let governance = self.governance(raw.governance);
        let store = self.store(raw.store);
        let admin = self.admin(raw.admin);

        let raw_keys = self.array_of_tables("keys", raw.keys);
        let mut keys = Vec::with_capacity(raw_keys.len());
        let mut seen_key_names: HashMap<String, usize> = HashMap::new();
        let mut seen_key_values: HashMap<String, usize> = HashMap::new();
        for (i, value) in raw_keys.into_iter().enumerate() {
            let path = format!("keys[{i}]");
            let key = self
                .shape::<RawKey>(&path, value)
                .and_then(|raw| self.key(&path, raw, &hierarchy, &model_names, &guardrails.names));
            if let Some(key) = &key {
                if let Some(first) = seen_key_names.get(&key.name) {
                    self.error(
                        &join(&path, "name"),
                        format!(
                            "duplicate key name {} (also keys[{first}])",
                            quote(&key.name)
                        ),
                    );
                } else {
                    seen_key_names.insert(key.name.clone(), i);
                }
                if let Some(first) = seen_key_values.get(key.key.expose()) {
                    self.error(
                        &join(&path, "key"),
                        format!("same value as keys[{first}].key; every key must be unique"),
                    );
                } else {
                    seen_key_values.insert(key.key.expose().clone(), i);
                }
            }
            keys.push(key);
        }

        Some(Config {
            server: server?,
            routing: routing?,
            providers: providers.into_iter().collect::<Option<Vec<_>>>()?,
            models: models.into_iter().collect::<Option<Vec<_>>>()?,
            keys: keys.into_iter().collect::<Option<Vec<_>>>()?,
            orgs: hierarchy.orgs,
            teams: hierarchy.teams,
            users: hierarchy.users,
            prices,
            governance: governance?,
            store: store?,
            admin: admin?,
            guardrails: guardrails.config?,
        })
    }

    fn server(&mut self, raw: RawServer) -> ServerConfig {
        let d = ServerConfig::default();
        let p = |key: &str| join("server", key);
        let listen = self
            .string(&p("listen"), raw.listen)
            .and_then(|text| match text.trim().parse() {
                Ok(addr) => Some(addr),
                Err(_) => {
                    self.error(
                        &p("listen"),
                        format!(
                            "expected an IP address and port like \"127.0.0.1:8080\" or \"[::1]:8080\", got {}",
                            quote(&text)
                        ),
                    );
                    None
                }
            });
        ServerConfig {
            listen: listen.unwrap_or(d.listen),
            workers: self
                .integer(&p("workers"), raw.workers, 0..=4096)
                .unwrap_or(d.workers),
            io_driver: self
                .choice(
                    &p("io_driver"),
                    raw.io_driver,
                    &[
                        ("auto", IoDriver::Auto),
                        ("io_uring", IoDriver::IoUring),
                        ("legacy", IoDriver::Legacy),
                    ],
                )
                .unwrap_or(d.io_driver),
            max_head_bytes: self
                .size(&p("max_head_bytes"), raw.max_head_bytes, 1 << 10..=1 << 20)
                .unwrap_or(d.max_head_bytes),
            max_headers: self
                .integer(&p("max_headers"), raw.max_headers, 1..=128)
                .unwrap_or(d.max_headers),
            max_body_bytes: self
                .size(&p("max_body_bytes"), raw.max_body_bytes, 1 << 10..=1 << 30)
                .unwrap_or(d.max_body_bytes),
            header_read_timeout: self
                .duration(
                    &p("header_read_timeout"),
                    raw.header_read_timeout,
                    Zero::Rejected,
                )
                .unwrap_or(d.header_read_timeout),
            body_read_timeout: self
                .duration(
                    &p("body_read_timeout"),
                    raw.body_read_timeout,
                    Zero::Rejected,
                )
                .unwrap_or(d.body_read_timeout),
            keepalive_timeout: self
                .duration(
                    &p("keepalive_timeout"),
                    raw.keepalive_timeout,
                    Zero::Rejected,
                )
                .unwrap_or(d.keepalive_timeout),
            shutdown_grace: self
                .duration(&p("shutdown_grace"), raw.shutdown_grace, Zero::Allowed)
                .unwrap_or(d.shutdown_grace),
            max_connections_per_worker: self
                .integer(
                    &p("max_connections_per_worker"),
                    raw.max_connections_per_worker,
                    1..=1_000_000,
                )
                .unwrap_or(d.max_connections_per_worker),
            access_log: match self.string(&p("access_log"), raw.access_log) {
                None => d.access_log,
                Some(text) => match text.as_str() {
                    "off" => AccessLog::Off,
                    "stdout" => AccessLog::Stdout,
                    "stderr" => AccessLog::Stderr,
                    "" => {
                        self.error(
                            &p("access_log"),
                            "expected \"off\", \"stdout\", \"stderr\" or a file path, got \"\"",
                        );
                        d.access_log
                    }
                    path => AccessLog::File(path.into()),
                },
            },
            metrics: self
                .boolean(&p("metrics"), raw.metrics)
                .unwrap_or(d.metrics),
        }
    }

    fn provider(&mut self, path: &str, raw: RawProvider) -> Option<ProviderConfig> {
        let p = |key: &str| join(path, key);
        let name = self.required(&p("name"), raw.name);
        let name = self.name(&p("name"), name);

        let kind = self.required(&p("kind"), raw.kind);
        let kind = self
            .string(&p("kind"), kind)
            .and_then(|text| match parse_kind(&text) {
                Some(kind) => Some(kind),
                None => {
                    self.error(
                        &p("kind"),
                        format!(
                            "unknown provider kind {} (supported: {})",
                            quote(&text),
                            supported_kinds()
                        ),
                    );
                    None
                }
            });
        let preset = kind.and_then(|(_, preset)| preset);
        // `None` when the kind is unknown (already reported): every key is then let through
        // and checked on its own, so its other mistakes are still found.
        let kind = kind.map(|(kind, preset)| KindOf {
            kind,
            name: preset.map_or(kind.as_str(), Preset::as_str),
        });

        const IN_PROCESS: &str = "the mock answers in-process";
        let base_url = self.for_kinds(&p("base_url"), raw.base_url, kind, HTTP_KINDS, IN_PROCESS);
        let base_url = self.base_url(&p("base_url"), base_url, kind, preset);

        let api_key = self.for_kinds(
            &p("api_key"),
            raw.api_key,
            kind,
            API_KEY_KINDS,
            "Bedrock signs requests with aws_access_key_id and aws_secret_access_key",
        );
        let api_key = match kind {
            Some(kind) if requires_api_key(kind.kind) => {
                self.required_secret(&p("api_key"), api_key, kind)
            }
            _ => self
                .secret(&p("api_key"), api_key)
                .filter(|key| !key.is_empty()),
        }
        .map(Secret::new);

        let api_version = self.for_kinds(
            &p("api_version"),
            raw.api_version,
            kind,
            API_VERSION_KINDS,
            "only for kinds \"azure\" and \"anthropic\"",
        );
        let api_version = self.api_version(&p("api_version"), api_version, kind);

        const ONLY_BEDROCK: &str = "only for kind \"bedrock\"";
        let region = self.for_kinds(&p("region"), raw.region, kind, AWS_KINDS, ONLY_BEDROCK);
        let region = self.region(&p("region"), region, kind);
        let base_url = match (kind, base_url, &region) {
            (
                Some(KindOf {
                    kind: ProviderKind::Bedrock,
                    ..
                }),
                None,
                Some(region),
            ) => self.default_url(&p("region"), &ProviderConfig::bedrock_endpoint(region)),
            (_, base_url, _) => base_url,
        };

        let access_key_id = self.for_kinds(
            &p("aws_access_key_id"),
            raw.aws_access_key_id,
            kind,
            AWS_KINDS,
            ONLY_BEDROCK,
        );
        let secret_access_key = self.for_kinds(
            &p("aws_secret_access_key"),
            raw.aws_secret_access_key,
            kind,
            AWS_KINDS,
            ONLY_BEDROCK,
        );
        let session_token = self.for_kinds(
            &p("aws_session_token"),
            raw.aws_session_token,
            kind,
            AWS_KINDS,
            ONLY_BEDROCK,
        );
        let aws = match kind {
            Some(kind) if kind.kind == ProviderKind::Bedrock => {
                let access_key_id =
                    self.required_secret(&p("aws_access_key_id"), access_key_id, kind);
                let secret_access_key =
                    self.required_secret(&p("aws_secret_access_key"), secret_access_key, kind);
                let session_token = self
                    .secret(&p("aws_session_token"), session_token)
                    .filter(|token| !token.is_empty());
                match (access_key_id, secret_access_key) {
                    (Some(access_key_id), Some(secret_access_key)) => Some(AwsCredentials {
                        access_key_id: Secret::new(access_key_id),
                        secret_access_key: Secret::new(secret_access_key),
                        session_token: session_token.map(Secret::new),
                    }),
                    _ => None,
                }
            }
            _ => {
                // Unknown kind: still check the values themselves.
                for (key, value) in [
                    ("aws_access_key_id", access_key_id),
                    ("aws_secret_access_key", secret_access_key),
                    ("aws_session_token", session_token),
                ] {
                    self.secret(&p(key), value);
                }
                None
            }
        };

        let mock = match (kind, raw.mock) {
            (Some(kind), Some(_)) if kind.kind != ProviderKind::Mock => {
                self.error(&p("mock"), "only allowed for kind \"mock\"");
                None
            }
            (_, Some(value)) => self
                .shape::<RawMock>(&p("mock"), value)
                .map(|raw| self.mock(&p("mock"), raw)),
            (Some(kind), None) if kind.kind == ProviderKind::Mock => Some(MockSettings::default()),
            (_, None) => None,
        };

        let connect_timeout = self
            .duration(&p("connect_timeout"), raw.connect_timeout, Zero::Rejected)
            .unwrap_or(ProviderConfig::DEFAULT_CONNECT_TIMEOUT);
        let first_byte_timeout = self
            .duration(
                &p("first_byte_timeout"),
                raw.first_byte_timeout,
                Zero::Rejected,
            )
            .unwrap_or(ProviderConfig::DEFAULT_FIRST_BYTE_TIMEOUT);
        let idle_timeout = self
            .duration(&p("idle_timeout"), raw.idle_timeout, Zero::Rejected)
            .unwrap_or(ProviderConfig::DEFAULT_IDLE_TIMEOUT);
        let pool_max_idle = self
            .integer(&p("pool_max_idle"), raw.pool_max_idle, 0..=100_000)
            .unwrap_or(ProviderConfig::DEFAULT_POOL_MAX_IDLE);
        let pool_idle_timeout = self
            .duration(
                &p("pool_idle_timeout"),
                raw.pool_idle_timeout,
                Zero::Rejected,
            )
            .unwrap_or(ProviderConfig::DEFAULT_POOL_IDLE_TIMEOUT);
        let tls_roots = self
            .choice(
                &p("tls_roots"),
                raw.tls_roots,
                &[("webpki", TlsRoots::Webpki), ("system", TlsRoots::System)],
            )
            .unwrap_or_default();
        let tls_ca_file = self.for_kinds(
            &p("tls_ca_file"),
            raw.tls_ca_file,
            kind,
            HTTP_KINDS,
            IN_PROCESS,
        );
        let tls_ca_file = self
            .string(&p("tls_ca_file"), tls_ca_file)
            .filter(|path| {
                if path.is_empty() {
                    self.error(&p("tls_ca_file"), "must name a PEM file");
                }
                !path.is_empty()
            })
            .map(PathBuf::from);

        Some(ProviderConfig {
            name: name?,
            kind: kind?.kind,
            preset,
            base_url,
            api_key,
            api_version,
            region,
            aws,
            connect_timeout,
            first_byte_timeout,
            idle_timeout,
            pool_max_idle,
            pool_idle_timeout,
            tls_roots,
            tls_ca_file,
            mock,
        })
    }

    /// `base_url`: parsed when given; when absent or empty, the kind's default (Bedrock's is
    /// filled in later, from the region) or an error for kinds that have none.
    fn base_url(
        &mut self,
        path: &str,
        value: Option<Value>,
        kind: Option<KindOf>,
        preset: Option<Preset>,
    ) -> Option<BaseUrl> {
        let given = value.is_some();
        let text = self.string(path, value);
        if given && text.is_none() {
            return None;
        }
        match text.filter(|text| !text.trim().is_empty()) {
            Some(text) => match BaseUrl::parse(text.trim()) {
                Ok(url) => Some(url),
                Err(why) => {
                    self.error(path, why);
                    None
                }
            },
            None => {
                let kind = kind?;
                let default = match (kind.kind, preset) {
                    (ProviderKind::OpenAi, Some(preset)) => preset.default_base_url(),
                    (ProviderKind::Anthropic, _) => ProviderConfig::DEFAULT_ANTHROPIC_BASE_URL,
                    (ProviderKind::Gemini, _) => ProviderConfig::DEFAULT_GEMINI_BASE_URL,
                    (ProviderKind::OpenAi | ProviderKind::Azure, _) => {
                        let empty = if given { "; it is empty" } else { "" };
                        self.error(
                            path,
                            format!("required for kind {}{empty}", quote(kind.name)),
                        );
                        return None;
                    }
                    (ProviderKind::Bedrock | ProviderKind::Mock, _) => return None,
                };
                self.default_url(path, default)
            }
        }
    }

    /// Parses a built-in default URL. It cannot fail for the constants shipped here (a test
    /// parses every one), but an error is reported rather than a panic if one ever did.
    fn default_url(&mut self, path: &str, url: &str) -> Option<BaseUrl> {
        match BaseUrl::parse(url) {
            Ok(url) => Some(url),
            Err(why) => {
                self.error(path, format!("internal error: default base_url: {why}"));
                None
            }
        }
    }

    /// `api_version`: `Some` (given or default) exactly for kinds that have one.
    fn api_version(
        &mut self,
        path: &str,
        value: Option<Value>,
        kind: Option<KindOf>,
    ) -> Option<String> {
        let given = self.string(path, value).filter(|text| {
            let valid = !text.is_empty()
                && text
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
            if !valid {
                self.error(
                    path,
                    format!(
                        "expected a version like \"2024-10-21\" (letters, digits, '.', '_' and '-'), got {}",
                        quote(text)
                    ),
                );
            }
            valid
        });
        let default = match kind?.kind {
            ProviderKind::Azure => ProviderConfig::DEFAULT_AZURE_API_VERSION,
            ProviderKind::Anthropic => ProviderConfig::DEFAULT_ANTHROPIC_API_VERSION,
            _ => return None,
        };
        Some(given.unwrap_or_else(|| default.to_owned()))
    }

    /// `region`: required for Bedrock, `[a-z0-9-]+` (no leading or trailing '-', since it
    /// becomes part of a host name).
    fn region(&mut self, path: &str, value: Option<Value>, kind: Option<KindOf>) -> Option<String> {
        let is_bedrock = matches!(
            kind,
            Some(KindOf {
                kind: ProviderKind::Bedrock,
                ..
            })
        );
        if is_bedrock && value.is_none() {
            self.error(path, "required for kind \"bedrock\"");
            return None;
        }
        let text = self.string(path, value)?;
        let valid = (1..=63).contains(&text.len())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !text.starts_with('-')
            && !text.ends_with('-');
        if !valid {
            self.error(
                path,
                format!(
                    "expected an AWS region like \"us-east-1\" (lower-case letters, digits and '-'), got {}",
                    quote(&text)
                ),
            );
            return None;
        }
        is_bedrock.then_some(text)
    }

    fn mock(&mut self, path: &str, raw: RawMock) -> MockSettings {
        let d = MockSettings::default();
        let p = |key: &str| join(path, key);
        MockSettings {
            latency: self
                .duration(&p("latency"), raw.latency, Zero::Allowed)
                .unwrap_or(d.latency),
            ttft: self
                .duration(&p("ttft"), raw.ttft, Zero::Allowed)
                .unwrap_or(d.ttft),
            chunks: self
                .integer(&p("chunks"), raw.chunks, 1..=100_000)
                .unwrap_or(d.chunks),
            chunk_delay: self
                .duration(&p("chunk_delay"), raw.chunk_delay, Zero::Allowed)
                .unwrap_or(d.chunk_delay),
            completion_tokens: self
                .integer(
                    &p("completion_tokens"),
                    raw.completion_tokens,
                    0..=1_000_000,
                )
                .unwrap_or(d.completion_tokens),
            embedding_dims: self
                .integer(&p("embedding_dims"), raw.embedding_dims, 1..=65_536)
                .unwrap_or(d.embedding_dims),
        }
    }

    fn model(
        &mut self,
        path: &str,
        index: usize,
        raw: RawModel,
        names: &Names<'_>,
    ) -> Option<ModelConfig> {
        let p = |key: &str| join(path, key);
        let name = self.required(&p("name"), raw.name);
        let name = self.string(&p("name"), name).and_then(|name| {
            if name.is_empty() {
                self.error(&p("name"), "must not be empty");
                None
            } else if name.chars().any(|c| c.is_whitespace() || c.is_control()) {
                self.error(
                    &p("name"),
                    format!(
                        "must not contain whitespace or control characters, got {}",
                        quote(&name)
                    ),
                );
                None
            } else {
                Some(name)
            }
        });

        let deployments_path = p("deployments");
        let raw_deployments = self.required(&deployments_path, raw.deployments);
        let mut deployments = Vec::new();
        let mut all_valid = true;
        if let Some(value) = raw_deployments {
            match value {
                Value::Array(items) if items.is_empty() => {
                    self.error(
                        &deployments_path,
                        "must list at least one deployment, like [{ provider = \"local\", model = \"gpt-4o-mini\" }]",
                    );
                    all_valid = false;
                }
                Value::Array(items) => {
                    for (i, item) in items.into_iter().enumerate() {
                        let item_path = format!("{deployments_path}[{i}]");
                        let deployment = self
                            .shape::<RawDeployment>(&item_path, item)
                            .and_then(|raw| self.deployment(&item_path, raw, names.providers));
                        match deployment {
                            Some(deployment) => deployments.push(deployment),
                            None => all_valid = false,
                        }
                    }
                }
                other => {
                    self.error(
                        &deployments_path,
                        format!(
                            "expected an array of deployments like [{{ provider = \"local\", model = \"gpt-4o-mini\" }}], got {}",
                            describe(&other)
                        ),
                    );
                    all_valid = false;
                }
            }
        } else {
            all_valid = false;
        }

        let strategy = self
            .choice(
                &p("strategy"),
                raw.strategy,
                &[
                    ("weighted", Strategy::Weighted),
                    ("least_inflight", Strategy::LeastInflight),
                    ("lowest_latency", Strategy::LowestLatency),
                    ("priority", Strategy::Priority),
                ],
            )
            .unwrap_or_default();
        let fallbacks = self.model_refs(&p("fallbacks"), raw.fallbacks, index, names.models);
        let context_fallbacks = self.model_refs(
            &p("context_fallbacks"),
            raw.context_fallbacks,
            index,
            names.models,
        );

        let name = name?;
        let (fallbacks, fallback_names) = fallbacks?;
        let (context_fallbacks, context_fallback_names) = context_fallbacks?;
        all_valid.then_some(ModelConfig {
            name,
            deployments,
            strategy,
            fallbacks,
            fallback_names,
            context_fallbacks,
            context_fallback_names,
        })
    }

    /// `fallbacks` / `context_fallbacks`: names of other models, resolved to their indexes.
    /// Absent is an empty list. Each entry must name a configured model other than `own`, once.
    fn model_refs(
        &mut self,
        path: &str,
        value: Option<Value>,
        own: usize,
        model_names: &[Option<String>],
    ) -> Option<(Vec<usize>, Vec<String>)> {
        let items = match value {
            None => return Some((Vec::new(), Vec::new())),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.error(
                    path,
                    format!(
                        "expected an array of model names like [\"gpt-4o-mini\"], got {}",
                        describe(&other)
                    ),
                );
                return None;
            }
        };
        let mut indexes: Vec<usize> = Vec::with_capacity(items.len());
        let mut names = Vec::with_capacity(items.len());
        let mut all_valid = true;
        for (i, item) in items.into_iter().enumerate() {
            let item_path = format!("{path}[{i}]");
            let Some(name) = self.string(&item_path, Some(item)) else {
                all_valid = false;
                continue;
            };
            let is_own = model_names.get(own).and_then(Option::as_deref) == Some(name.as_str());
            let found = model_names
                .iter()
                .position(|known| known.as_deref() == Some(name.as_str()));
            match found {
                _ if is_own => {
                    self.error(
                        &item_path,
                        format!("{} is this model itself; name another model", quote(&name)),
                    );
                    all_valid = false;
                }
                None => {
                    self.error(
                        &item_path,
                        format!(
                            "unknown model {} ({})",
                            quote(&name),
                            known_names(model_names, "no models are configured")
                        ),
                    );
                    all_valid = false;
                }
                Some(index) => match indexes.iter().position(|&seen| seen == index) {
                    Some(first) => {
                        self.error(
                            &item_path,
                            format!("duplicate: {} is also {path}[{first}]", quote(&name)),
                        );
                        all_valid = false;
                    }
                    None => {
                        indexes.push(index);
                        names.push(name);
                    }
                },
            }
        }
        all_valid.then_some((indexes, names))
    }

    fn deployment(
        &mut self,
        path: &str,
        raw: RawDeployment,
        provider_names: &[Option<String>],
    ) -> Option<DeploymentConfig> {
        let p = |key: &str| join(path, key);
        let provider = self.required(&p("provider"), raw.provider);
        let provider = self.string(&p("provider"), provider).and_then(|name| {
            let index = provider_names
                .iter()
                .position(|known| known.as_deref() == Some(name.as_str()));
            if index.is_none() {
                self.error(
                    &p("provider"),
                    format!(
                        "unknown provider {} ({})",
                        quote(&name),
                        known_names(provider_names, "no providers are configured")
                    ),
                );
            }
            index.map(|index| (index, name))
        });
        let model = self.required(&p("model"), raw.model);
        let model = self.string(&p("model"), model).and_then(|model| {
            if model.trim().is_empty() {
                self.error(&p("model"), "must not be empty");
                None
            } else {
                Some(model)
            }
        });
        let weight = self
            .integer_u32(&p("weight"), raw.weight, 1..=1000)
            .unwrap_or(DeploymentConfig::DEFAULT_WEIGHT);
        let priority = self
            .integer_u32(&p("priority"), raw.priority, 0..=1000)
            .unwrap_or(DeploymentConfig::DEFAULT_PRIORITY);
        let timeout = self.duration(&p("timeout"), raw.timeout, Zero::Rejected);
        let (provider, provider_name) = provider?;
        Some(DeploymentConfig {
            provider,
            provider_name,
            model: model?,
            weight,
            priority,
            timeout,
        })
    }

    fn routing(&mut self, raw: RawRouting) -> RoutingConfig {
        let d = RoutingConfig::default();
        let p = |key: &str| join("routing", key);
        let backoff_max_given = raw.backoff_max.is_some();
        let backoff_base = self
            .duration(&p("backoff_base"), raw.backoff_base, Zero::Allowed)
            .unwrap_or(d.backoff_base);
        let backoff_max = self
            .duration(&p("backoff_max"), raw.backoff_max, Zero::Allowed)
            .unwrap_or(d.backoff_max);
        if backoff_max < backoff_base {
            if backoff_max_given {
                self.error(
                    &p("backoff_max"),
                    format!(
                        "must be at least backoff_base ({}), got {}",
                        format_duration(backoff_base),
                        format_duration(backoff_max)
                    ),
                );
            } else {
                self.error(
                    &p("backoff_base"),
                    format!(
                        "must be at most backoff_max ({}, the default), got {}",
                        format_duration(backoff_max),
                        format_duration(backoff_base)
                    ),
                );
            }
        }
        RoutingConfig {
            retries: self
                .integer_u32(&p("retries"), raw.retries, 0..=10)
                .unwrap_or(d.retries),
            backoff_base,
            backoff_max,
            cooldown_failures: self
                .integer_u32(&p("cooldown_failures"), raw.cooldown_failures, 1..=1000)
                .unwrap_or(d.cooldown_failures),
            cooldown_error_ratio: self
                .ratio(&p("cooldown_error_ratio"), raw.cooldown_error_ratio)
                .unwrap_or(d.cooldown_error_ratio),
            cooldown_min_requests: self
                .integer_u32(
                    &p("cooldown_min_requests"),
                    raw.cooldown_min_requests,
                    1..=1_000_000,
                )
                .unwrap_or(d.cooldown_min_requests),
            cooldown_window: self
                .duration(&p("cooldown_window"), raw.cooldown_window, Zero::Rejected)
                .unwrap_or(d.cooldown_window),
            cooldown: self
                .duration(&p("cooldown"), raw.cooldown, Zero::Rejected)
                .unwrap_or(d.cooldown),
            honor_retry_after_max: self
                .duration(
                    &p("honor_retry_after_max"),
                    raw.honor_retry_after_max,
                    Zero::Allowed,
                )
                .unwrap_or(d.honor_retry_after_max),
        }
    }

    fn key(
        &mut self,
        path: &str,
        raw: RawKey,
        hierarchy: &governance::Hierarchy,
        models: &[String],
        profiles: &[String],
    ) -> Option<KeyConfig> {
        let p = |key: &str| join(path, key);
        let name = self.required(&p("name"), raw.name);
        let name = self.name(&p("name"), name);
        let key = self.required(&p("key"), raw.key);
        let key = self.secret(&p("key"), key).and_then(|key| {
            if key.chars().count() < MIN_KEY_CHARS {
                self.error(
                    &p("key"),
                    format!("must be at least {MIN_KEY_CHARS} characters long"),
                );
                None
            } else {
                Some(key)
            }
        });
        let guardrails = self.profile_reference(&p("guardrails"), raw.guardrails, profiles);
        let (owner, models, expires_at, limits) = self.key_governance(
            path,
            raw.user,
            raw.team,
            raw.org,
            raw.models,
            raw.expires,
            raw.limits,
            hierarchy,
            models,
        )?;
        Some(KeyConfig {
            name: name?,
            key: Secret::new(key?),
            owner,
            models,
            expires_at,
            limits,
            guardrails,
        })
    }
}

// === impl Validator: values ===

impl Validator<'_> {
    fn error(&mut self, path: &str, message: impl Into<String>) {
        self.errors.push(ConfigError::new(path, message));
    }

    /// Deserializes a table into its raw struct. Unknown keys are reported one by one (each is
    /// removed and the table retried), so a table with three typos yields three errors.
    fn shape<T: DeserializeOwned>(&mut self, path: &str, value: Value) -> Option<T> {
        let mut table = match value {
            Value::Table(table) => table,
            other => {
                self.error(path, format!("expected a table, got {}", describe(&other)));
                return None;
            }
        };
        loop {
            match T::deserialize(Value::Table(table.clone())) {
                Ok(raw) => return Some(raw),
                Err(error) => {
                    let message = error.message().replace('\n', "; ");
                    match unknown_field(&message, &table) {
                        Some((key, expected)) => {
                            table.remove(&key);
                            self.error(&join(path, &key), format!("unknown field, {expected}"));
                        }
                        None => {
                            self.error(path, message);
                            return None;
                        }
                    }
                }
            }
        }
    }

    /// `[[name]]` sections: an array of tables (absent = empty).
    fn array_of_tables(&mut self, path: &str, value: Option<Value>) -> Vec<Value> {
        match value {
            None => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.error(
                    path,
                    format!(
                        "expected an array of tables ([[{path}]] sections), got {}",
                        describe(&other)
                    ),
                );
                Vec::new()
            }
        }
    }

    /// Reports a missing required key; passes the value through.
    fn required(&mut self, path: &str, value: Option<Value>) -> Option<Value> {
        if value.is_none() {
            self.error(path, "missing (required)");
        }
        value
    }

    /// Lets `value` through when the provider's kind is one of `allowed` (or unknown, so its
    /// other mistakes are still found); otherwise reports it, naming the kind, and drops it.
    fn for_kinds(
        &mut self,
        path: &str,
        value: Option<Value>,
        kind: Option<KindOf>,
        allowed: &[ProviderKind],
        why: &str,
    ) -> Option<Value> {
        match kind {
            Some(kind) if value.is_some() && !allowed.contains(&kind.kind) => {
                self.error(
                    path,
                    format!("not allowed for kind {} ({why})", quote(kind.name)),
                );
                None
            }
            _ => value,
        }
    }

    /// A secret the kind cannot work without: missing or empty is an error. When it came out
    /// empty from `${VAR:-}`, the message names the variables to set (names only).
    fn required_secret(
        &mut self,
        path: &str,
        value: Option<Value>,
        kind: KindOf,
    ) -> Option<String> {
        let required = format!("required for kind {}", quote(kind.name));
        let Some(value) = value else {
            self.error(path, required);
            return None;
        };
        let variables = value.as_str().map(referenced_variables).unwrap_or_default();
        let secret = self.secret(path, Some(value))?;
        if !secret.is_empty() {
            return Some(secret);
        }
        let hint = match variables.as_slice() {
            [] => String::new(),
            [one] => format!(" (set {one})"),
            many => format!(" (set one of {})", many.join(", ")),
        };
        self.error(path, format!("{required}; it is empty{hint}"));
        None
    }

    /// Applies `${VAR}` interpolation to a string value; other values pass unchanged.
    fn interpolated(&mut self, path: &str, value: Value) -> Option<Value> {
        match value {
            Value::String(text) => match interpolate(&text, self.env) {
                Ok(text) => Some(Value::String(text)),
                Err(why) => {
                    self.error(path, why.message());
                    None
                }
            },
            other => Some(other),
        }
    }

    fn string(&mut self, path: &str, value: Option<Value>) -> Option<String> {
        match self.interpolated(path, value?)? {
            Value::String(text) => Some(text),
            other => {
                self.error(path, format!("expected a string, got {}", describe(&other)));
                None
            }
        }
    }

    /// Like `string`, but never echoes the value and checks it can go in a header.
    fn secret(&mut self, path: &str, value: Option<Value>) -> Option<String> {
        match self.interpolated(path, value?)? {
            Value::String(text) if text.bytes().all(|b| b.is_ascii_graphic()) => Some(text),
            Value::String(_) => {
                self.error(
                    path,
                    "must be printable ASCII without spaces or control characters",
                );
                None
            }
            other => {
                self.error(
                    path,
                    format!("expected a string, got {}", type_name(&other)),
                );
                None
            }
        }
    }

    /// Like `secret`, but an empty string (an unset `${VAR:-}`) is accepted as empty.
    fn secret_or_empty(&mut self, path: &str, value: Option<Value>) -> Option<String> {
        match self.interpolated(path, value?)? {
            Value::String(text) if text.is_empty() => Some(text),
            other => self.secret(path, Some(other)),
        }
    }

    /// A provider or key name: `[a-zA-Z0-9_.-]+`.
    fn name(&mut self, path: &str, value: Option<Value>) -> Option<String> {
        let name = self.string(path, value)?;
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Some(name)
        } else {
            self.error(
                path,
                format!(
                    "expected a name made of letters, digits, '_', '.' and '-', got {}",
                    quote(&name)
                ),
            );
            None
        }
    }

    /// `true` or `false`; the strings "true" and "false" (say from `${VAR}`) are accepted too.
    fn boolean(&mut self, path: &str, value: Option<Value>) -> Option<bool> {
        match self.interpolated(path, value?)? {
            Value::Boolean(b) => Some(b),
            Value::String(text) if text.trim() == "true" => Some(true),
            Value::String(text) if text.trim() == "false" => Some(false),
            other => {
                self.error(
                    path,
                    format!("expected true or false, got {}", describe(&other)),
                );
                None
            }
        }
    }

    /// A non-negative integer in `range`; a string of digits (say from `${VAR}`) is accepted too.
    fn integer(
        &mut self,
        path: &str,
        value: Option<Value>,
        range: RangeInclusive<u64>,
    ) -> Option<usize> {
        let (number, shown) = match self.interpolated(path, value?)? {
            Value::Integer(n) => (i128::from(n), n.to_string()),
            Value::String(text) if is_digits(&text) => {
                let text = text.trim();
                (text.parse::<i128>().unwrap_or(i128::MAX), text.to_owned())
            }
            other => {
                self.error(
                    path,
                    format!("expected an integer, got {}", describe(&other)),
                );
                return None;
            }
        };
        let in_range = number >= i128::from(*range.start()) && number <= i128::from(*range.end());
        match usize::try_from(number) {
            Ok(n) if in_range => Some(n),
            _ => {
                self.error(
                    path,
                    format!(
                        "must be between {} and {}, got {shown}",
                        range.start(),
                        range.end()
                    ),
                );
                None
            }
        }
    }

    /// `integer` for a `u32` field (`range` must fit in a `u32`).
    fn integer_u32(
        &mut self,
        path: &str,
        value: Option<Value>,
        range: RangeInclusive<u32>,
    ) -> Option<u32> {
        let wide = u64::from(*range.start())..=u64::from(*range.end());
        let n = self.integer(path, value, wide)?;
        match u32::try_from(n) {
            Ok(n) => Some(n),
            Err(_) => {
                self.error(path, format!("internal error: {n} does not fit in 32 bits"));
                None
            }
        }
    }

    /// A fraction greater than 0 and at most 1: a float, the integer 1, or a string such as
    /// `"${RATIO:-0.5}"`.
    fn ratio(&mut self, path: &str, value: Option<Value>) -> Option<f64> {
        let (x, shown) = match self.interpolated(path, value?)? {
            Value::Float(x) => (x, x.to_string()),
            Value::Integer(n) => (n as f64, n.to_string()),
            Value::String(text) => match text.trim().parse::<f64>() {
                Ok(x) => (x, text.trim().to_owned()),
                Err(_) => {
                    self.error(
                        path,
                        format!("expected a number like 0.5, got {}", quote(&text)),
                    );
                    return None;
                }
            },
            other => {
                self.error(
                    path,
                    format!("expected a number like 0.5, got {}", describe(&other)),
                );
                return None;
            }
        };
        if x > 0.0 && x <= 1.0 {
            Some(x)
        } else {
            self.error(
                path,
                format!("must be greater than 0 and at most 1, got {shown}"),
            );
            None
        }
    }

    /// A duration: a string with a unit, or an integer number of milliseconds.
    fn duration(&mut self, path: &str, value: Option<Value>, zero: Zero) -> Option<Duration> {
        let duration = match self.interpolated(path, value?)? {
            Value::Integer(ms) => match u64::try_from(ms) {
                Ok(ms) => Duration::from_millis(ms),
                Err(_) => {
                    self.error(path, format!("must not be negative, got {ms}"));
                    return None;
                }
            },
            Value::String(text) => match parse_duration(&text) {
                Ok(duration) => duration,
                Err(why) => {
                    self.error(path, why);
                    return None;
                }
            },
            other => {
                self.error(
                    path,
                    format!(
                        "expected a duration like \"2s\" or an integer number of milliseconds, got {}",
                        describe(&other)
                    ),
                );
                return None;
            }
        };
        if zero == Zero::Rejected && duration.is_zero() {
            self.error(
                path,
                format!("must be greater than 0, got {}", format_duration(duration)),
            );
            return None;
        }
        Some(duration)
    }

    /// A size: an integer number of bytes, or a string with a unit, within `range` bytes.
    fn size(
        &mut self,
        path: &str,
        value: Option<Value>,
        range: RangeInclusive<u64>,
    ) -> Option<usize> {
        let bytes = match self.interpolated(path, value?)? {
            Value::Integer(n) => match u64::try_from(n) {
                Ok(n) => n,
                Err(_) => {
                    self.error(path, format!("must not be negative, got {n}"));
                    return None;
                }
            },
            Value::String(text) => match parse_size(&text) {
                Ok(n) => n,
                Err(why) => {
                    self.error(path, why);
                    return None;
                }
            },
            other => {
                self.error(
                    path,
                    format!(
                        "expected a size like \"16KiB\" or an integer number of bytes, got {}",
                        describe(&other)
                    ),
                );
                return None;
            }
        };
        match usize::try_from(bytes) {
            Ok(n) if range.contains(&bytes) => Some(n),
            _ => {
                self.error(
                    path,
                    format!(
                        "must be between {} and {}, got {}",
                        format_size(*range.start()),
                        format_size(*range.end()),
                        format_size(bytes)
                    ),
                );
                None
            }
        }
    }

    /// One of a fixed set of strings.
    fn choice<T: Copy>(
        &mut self,
        path: &str,
        value: Option<Value>,
        options: &[(&str, T)],
    ) -> Option<T> {
        let text = self.string(path, value)?;
        if let Some((_, choice)) = options.iter().find(|(name, _)| *name == text) {
            return Some(*choice);
        }
        let names: Vec<String> = options.iter().map(|(name, _)| quote(name)).collect();
        self.error(
            path,
            format!("expected one of {}, got {}", names.join(", "), quote(&text)),
        );
        None
    }
}

// === helpers ===

/// A `kind` as written: a kind's own name, or a preset's (which is [`ProviderKind::OpenAi`]).
fn parse_kind(text: &str) -> Option<(ProviderKind, Option<Preset>)> {
    if let Some(kind) = ProviderKind::ALL.into_iter().find(|k| k.as_str() == text) {
        return Some((kind, None));
    }
    Preset::from_name(text).map(|preset| (ProviderKind::OpenAi, Some(preset)))
}

/// The list of valid `kind` values, for the "unknown provider kind" message.
fn supported_kinds() -> String {
    let kinds: Vec<&str> = ProviderKind::ALL.iter().map(|k| k.as_str()).collect();
    let presets: Vec<&str> = Preset::ALL.iter().map(|p| p.as_str()).collect();
    format!(
        "{}; OpenAI-compatible presets: {}",
        kinds.join(", "),
        presets.join(", ")
    )
}

/// Kinds whose upstream refuses every request without an API key.
fn requires_api_key(kind: ProviderKind) -> bool {
    matches!(
        kind,
        ProviderKind::Azure | ProviderKind::Anthropic | ProviderKind::Gemini
    )
}

/// "known: a, b" (each name once), or `none` when there are no names.
fn known_names(names: &[Option<String>], none: &str) -> String {
    let mut known: Vec<&str> = Vec::new();
    for name in names.iter().flatten() {
        if !known.contains(&name.as_str()) {
            known.push(name);
        }
    }
    if known.is_empty() {
        none.to_owned()
    } else {
        format!("known: {}", known.join(", "))
    }
}

/// Appends `key` to a key path, quoting it when it is not a bare TOML key.
fn join(base: &str, key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    let key = if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    };
    if base.is_empty() {
        key
    } else {
        format!("{base}.{key}")
    }
}

/// If serde's message is "unknown field `KEY`, REST" for a key of `table`, returns (KEY, REST).
/// Matched against the table's own keys, so any character in a key is handled.
fn unknown_field(message: &str, table: &Table) -> Option<(String, String)> {
    let rest = message.strip_prefix("unknown field `")?;
    table
        .keys()
        .filter_map(|key| {
            let after = rest.strip_prefix(key.as_str())?.strip_prefix('`')?;
            Some((key, after.strip_prefix(", ").unwrap_or(after)))
        })
        .max_by_key(|(key, _)| key.len())
        .map(|(key, expected)| (key.clone(), expected.to_owned()))
}

fn is_digits(text: &str) -> bool {
    let text = text.trim();
    !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
}

/// A value for an error message: strings quoted, other scalars with their type.
fn describe(value: &Value) -> String {
    match value {
        Value::String(text) => quote(text),
        Value::Integer(n) => format!("integer {n}"),
        Value::Float(x) => format!("float {x}"),
        Value::Boolean(b) => format!("boolean {b}"),
        Value::Datetime(d) => format!("datetime {d}"),
        Value::Array(_) => "an array".to_owned(),
        Value::Table(_) => "a table".to_owned(),
    }
}

/// A value's type only, for secrets.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}
