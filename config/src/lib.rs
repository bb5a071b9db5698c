//! Tollgate configuration: reads one TOML file, interpolates `${VAR}` in string values, and
//! validates it into a typed [`Config`], reporting every error with its key path at once.
//! It does no I/O beyond reading the file, and never puts a secret into an error or `Debug` output.
//!
//! ```
//! use tollgate_config::Config;
//!
//! let toml = r#"
//!     [[providers]]
//!     name = "mock"
//!     kind = "mock"
//!
//!     [[models]]
//!     name = "gpt-4o-mini"
//!     deployments = [{ provider = "mock", model = "gpt-4o-mini" }]
//!
//!     [[keys]]
//!     name = "demo"
//!     key = "${DEMO_KEY:-sk-tollgate-demo}"
//! "#;
//! let config = Config::from_toml_str(toml, &|_| None).map_err(|e| e.to_string())?;
//! assert_eq!(config.models[0].deployments[0].provider, 0);
//! assert_eq!(config.keys[0].key.expose(), "sk-tollgate-demo");
//! assert_eq!(format!("{:?}", config.keys[0].key), "Secret(***)");
//!
//! let errors = Config::from_toml_str("[server]\nlisten = \"nowhere\"\n", &|_| None)
//!     .err()
//!     .map(|e| e.to_string());
//! assert_eq!(
//!     errors.as_deref(),
//!     Some("server.listen: expected an IP address and port like \"127.0.0.1:8080\" or \"[::1]:8080\", got \"nowhere\"")
//! );
//! # Ok::<(), String>(())
//! ```
//!
//! The rest of this page is the configuration reference (also in `config/REFERENCE.md`).
//!
#![doc = include_str!("../REFERENCE.md")]
#![warn(missing_docs)]

mod base_url;
mod error;
pub mod governance;
pub mod guardrails;
mod interpolate;
mod raw;
mod secret;
mod types;
mod units;
mod validate;

use std::path::Path;

pub use base_url::BaseUrl;
pub use error::{ConfigError, ConfigErrors};
pub use secret::Secret;
pub use types::{
    AccessLog, AdminConfig, AwsCredentials, Config, DeploymentConfig, GovernanceConfig, IoDriver,
    KeyConfig, MockSettings, ModelConfig, Preset, PriceConfig, ProviderConfig, ProviderKind,
    RoutingConfig, ServerConfig, StoreConfig, Strategy, TlsRoots, UnknownPrice,
};
pub use units::parse_duration;

/// Validate a `limits` table that did not come from a file (the admin API's JSON, the CLI's
/// flags), with the same rules and messages as `[[keys]] limits`. `models` are the configured
/// client-facing model names that per-model limits may name.
pub fn parse_limits(
    value: toml::Value,
    models: &[String],
) -> Result<governance::Limits, ConfigErrors> {
    validate::limits(value, models)
}

// === impl Config: entry points ===

impl Config {
    /// Parses and validates a TOML document. `env` looks up `${VAR}` references (pass
    /// `&|name| std::env::var(name).ok()` for the process environment). Returns every error found.
    pub fn from_toml_str(
        src: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigErrors> {
        let document: toml::Table =
            toml::from_str(src).map_err(|error| syntax_error(src, &error))?;
        validate::validate(document, env)
    }

    /// Reads the file at `path` and validates it, interpolating from the process environment.
    /// An unreadable file is one error whose path is the file's path.
    pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
        let src = std::fs::read_to_string(path).map_err(|error| {
            ConfigError::new(
                path.display().to_string(),
                format!("cannot read config file: {error}"),
            )
        })?;
        Self::from_toml_str(&src, &|name| std::env::var(name).ok())
    }
}

/// A TOML syntax error as `line L, column C: message`. Only toml's message is kept, not its
/// source excerpt: the offending line may hold a secret.
fn syntax_error(src: &str, error: &toml::de::Error) -> ConfigErrors {
    let path = match error.span() {
        Some(span) => {
            let start = floor_char_boundary(src, span.start);
            let before = &src[..start];
            let line = before.matches('\n').count() + 1;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            let column = before[line_start..].chars().count() + 1;
            format!("line {line}, column {column}")
        }
        None => "toml".to_owned(),
    };
    let message = error.message().trim().replace('\n', "; ");
    ConfigErrors::from(ConfigError::new(
        path,
        format!("TOML syntax error: {message}"),
    ))
}

fn floor_char_boundary(src: &str, mut index: usize) -> usize {
    index = index.min(src.len());
    while !src.is_char_boundary(index) {
        index -= 1;
    }
    index
}
