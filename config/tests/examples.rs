//! Every example config shipped in the repo (and every TOML block in REFERENCE.md) parses, both
//! with an empty environment and with the variables it mentions set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tollgate_config::{Config, IoDriver, ProviderKind, ServerConfig, TlsRoots};

fn manifest_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(manifest_path(relative)).expect("example file is readable")
}

fn parse_with(src: &str, vars: &[(&str, &str)]) -> Config {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    match Config::from_toml_str(src, &|name| vars.get(name).cloned()) {
        Ok(config) => config,
        Err(errors) => panic!("config rejected:\n{errors}"),
    }
}

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

#[test]
fn quickstart_with_empty_env() {
    let config = parse_with(&read("examples/quickstart.toml"), &[]);
    assert_eq!(config.server.listen, addr("127.0.0.1:8080"));
    assert_eq!(config.server.workers, 0);
    assert_eq!(config.providers.len(), 1);
    let mock = &config.providers[0];
    assert_eq!(mock.name, "mock");
    assert_eq!(mock.kind, ProviderKind::Mock);
    assert!(mock.base_url.is_none());
    assert!(mock.api_key.is_none());
    let settings = mock.mock.as_ref().expect("mock settings are filled in");
    assert!(
        settings.chunk_delay > Duration::ZERO,
        "streams should be visibly streamed"
    );
    assert!(settings.chunks > 1);
    assert_eq!(config.models.len(), 1);
    assert_eq!(config.models[0].name, "gpt-4o-mini");
    assert_eq!(config.models[0].deployments.len(), 1);
    assert_eq!(config.models[0].deployments[0].provider, 0);
    assert_eq!(config.models[0].deployments[0].provider_name, "mock");
    assert_eq!(config.models[0].deployments[0].model, "gpt-4o-mini");
    assert_eq!(config.keys.len(), 1);
    assert_eq!(config.keys[0].name, "demo");
    assert_eq!(config.keys[0].key.expose(), "sk-tollgate-demo");
}

#[test]
fn quickstart_with_env_set() {
    let config = parse_with(
        &read("examples/quickstart.toml"),
        &[("TOLLGATE_DEMO_KEY", "sk-from-the-environment")],
    );
    assert_eq!(config.keys[0].key.expose(), "sk-from-the-environment");
    assert_eq!(config.models[0].deployments[0].provider_name, "mock");
    // An empty variable falls back to the default, like the shell's ${VAR:-default}.
    let config = parse_with(
        &read("examples/quickstart.toml"),
        &[("TOLLGATE_DEMO_KEY", "")],
    );
    assert_eq!(config.keys[0].key.expose(), "sk-tollgate-demo");
}

#[test]
fn openai_compatible_with_empty_env() {
    let config = parse_with(&read("examples/openai-compatible.toml"), &[]);
    assert_eq!(config.server.listen, addr("127.0.0.1:8080"));
    let local = &config.providers[0];
    assert_eq!(local.name, "local");
    assert_eq!(local.kind, ProviderKind::OpenAi);
    assert!(local.mock.is_none());
    let url = local
        .base_url
        .as_ref()
        .expect("openai providers have a base_url");
    assert!(!url.tls);
    assert_eq!(url.host, "127.0.0.1");
    assert_eq!(url.port, 18000);
    assert_eq!(url.path, "/v1");
    assert_eq!(url.authority(), "127.0.0.1:18000");
    assert_eq!(
        local.api_key.as_ref().map(|k| k.expose().as_str()),
        Some("none")
    );
    assert_eq!(local.connect_timeout, Duration::from_secs(2));
    assert_eq!(local.first_byte_timeout, Duration::from_secs(60));
    assert_eq!(local.idle_timeout, Duration::from_secs(30));
    assert_eq!(local.tls_roots, TlsRoots::Webpki);
    assert_eq!(config.models[0].name, "gpt-4o-mini");
    assert_eq!(config.models[0].deployments[0].provider, 0);
    assert_eq!(config.models[0].deployments[0].provider_name, "local");
    assert_eq!(config.keys[0].key.expose(), "sk-tollgate-demo");
}

#[test]
fn openai_compatible_with_env_set() {
    let config = parse_with(
        &read("examples/openai-compatible.toml"),
        &[
            ("UPSTREAM_BASE_URL", "https://api.openai.com/v1/"),
            ("UPSTREAM_API_KEY", "sk-upstream-secret"),
            ("TOLLGATE_DEMO_KEY", "sk-from-the-environment"),
        ],
    );
    let local = &config.providers[0];
    let url = local
        .base_url
        .as_ref()
        .expect("openai providers have a base_url");
    assert!(url.tls);
    assert_eq!(url.host, "api.openai.com");
    assert_eq!(url.port, 443);
    assert_eq!(url.path, "/v1");
    assert_eq!(url.authority(), "api.openai.com");
    assert_eq!(
        local.api_key.as_ref().map(|k| k.expose().as_str()),
        Some("sk-upstream-secret")
    );
    assert_eq!(config.keys[0].key.expose(), "sk-from-the-environment");
    let debug = format!("{config:?}");
    assert!(!debug.contains("sk-upstream-secret"), "{debug}");
    assert!(!debug.contains("sk-from-the-environment"), "{debug}");
}

#[test]
fn examples_load_from_disk() {
    // `load` uses the process environment; assert only what no variable can change.
    for file in [
        "examples/quickstart.toml",
        "examples/openai-compatible.toml",
    ] {
        let config = match Config::load(&manifest_path(file)) {
            Ok(config) => config,
            Err(errors) => panic!("{file}:\n{errors}"),
        };
        assert_eq!(config.models[0].name, "gpt-4o-mini", "{file}");
        assert_eq!(config.keys[0].name, "demo", "{file}");
    }
}

/// Every ```toml block in REFERENCE.md is a valid config (fragments included).
#[test]
fn reference_toml_blocks_parse() {
    let reference = read("REFERENCE.md");
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in reference.lines() {
        match (&mut current, line.trim_start()) {
            (None, "```toml") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    assert_eq!(blocks.len(), 2, "REFERENCE.md toml blocks");

    // The model fragment needs a provider called "local".
    let fragment = format!(
        "[[providers]]\nname = \"local\"\nkind = \"mock\"\n{}",
        blocks[0]
    );
    let config = parse_with(&fragment, &[]);
    assert_eq!(config.models[0].deployments[0].provider_name, "local");

    let full = parse_with(
        &blocks[1],
        &[
            ("OPENAI_API_KEY", "sk-openai"),
            ("TEAM_A_KEY", "sk-team-a-key"),
        ],
    );
    assert_eq!(full.server.listen, addr("0.0.0.0:8080"));
    assert_eq!(full.server.io_driver, IoDriver::Auto);
    // Every value in the complete file is the documented default, except listen.
    let defaults = ServerConfig {
        listen: addr("0.0.0.0:8080"),
        ..ServerConfig::default()
    };
    assert_eq!(full.server, defaults);
    assert_eq!(full.providers.len(), 2);
    assert_eq!(full.providers[1].mock, Some(Default::default()));
    assert_eq!(full.models[0].deployments.len(), 2);
    assert_eq!(full.models[0].deployments[1].provider, 1);
    assert_eq!(full.keys[0].key.expose(), "sk-team-a-key");
}
