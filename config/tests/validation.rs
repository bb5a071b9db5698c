//! Validation: every error names its exact key path, all errors are collected in one pass,
//! `${VAR}` interpolation, unknown fields, and secrets never showing up in output.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tollgate_config::{
    AccessLog, BaseUrl, Config, ConfigErrors, DeploymentConfig, IoDriver, Preset, ProviderConfig,
    ProviderKind, RoutingConfig, ServerConfig, Strategy, TlsRoots,
};

/// A valid file that the tests below extend or break.
const BASE: &str = r#"
[[providers]]
name = "local"
kind = "openai"
base_url = "http://127.0.0.1:18000/v1"

[[providers]]
name = "mock"
kind = "mock"

[[models]]
name = "gpt-4o-mini"
deployments = [{ provider = "local", model = "gpt-4o-mini" }]

[[keys]]
name = "demo"
key = "sk-tollgate-demo"
"#;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse(src: &str) -> Result<Config, ConfigErrors> {
    Config::from_toml_str(src, &no_env)
}

fn parse_env(src: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigErrors> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_toml_str(src, &|name| vars.get(name).cloned())
}

fn ok(src: &str) -> Config {
    match parse(src) {
        Ok(config) => config,
        Err(errors) => panic!("config rejected:\n{errors}\n--- source ---\n{src}"),
    }
}

fn errors_of(result: Result<Config, ConfigErrors>) -> Vec<(String, String)> {
    match result {
        Ok(config) => panic!("config accepted: {config:?}"),
        Err(errors) => errors.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

fn errors(src: &str) -> Vec<(String, String)> {
    errors_of(parse(src))
}

/// The file has exactly one error, at `path`; returns its message.
fn one_error(src: &str, path: &str) -> String {
    let errors = errors(src);
    assert_eq!(errors.len(), 1, "expected one error, got {errors:#?}");
    assert_eq!(errors[0].0, path, "{errors:#?}");
    errors[0].1.clone()
}

/// BASE with a `[server]` section holding `body`.
fn server(body: &str) -> String {
    format!("[server]\n{body}\n{BASE}")
}

/// A file with one provider (`body` follows `name = "p"`) and nothing else.
fn provider(body: &str) -> String {
    format!("[[providers]]\nname = \"p\"\n{body}\n")
}

fn key_file(body: &str) -> String {
    format!("[[keys]]\n{body}\n")
}

// === whole files ===

#[test]
fn base_file_is_valid() {
    let config = ok(BASE);
    assert_eq!(config.server, ServerConfig::default());
    assert_eq!(config.providers.len(), 2);
    assert_eq!(config.providers[1].kind, ProviderKind::Mock);
    assert_eq!(config.providers[1].mock, Some(Default::default()));
    assert_eq!(config.models[0].deployments[0].provider, 0);
}

#[test]
fn empty_file_gives_defaults() {
    let config = ok("");
    let server = &config.server;
    assert_eq!(
        server.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(server.workers, 0);
    assert_eq!(server.io_driver, IoDriver::Auto);
    assert_eq!(server.max_head_bytes, 16 * 1024);
    assert_eq!(server.max_headers, 100);
    assert_eq!(server.max_body_bytes, 16 * 1024 * 1024);
    assert_eq!(server.header_read_timeout, Duration::from_secs(10));
    assert_eq!(server.body_read_timeout, Duration::from_secs(30));
    assert_eq!(server.keepalive_timeout, Duration::from_secs(60));
    assert_eq!(server.shutdown_grace, Duration::from_secs(10));
    assert_eq!(server.max_connections_per_worker, 25_000);
    assert!(config.providers.is_empty() && config.models.is_empty() && config.keys.is_empty());
}

#[test]
fn every_server_key_is_read() {
    let config = ok(&server(
        r#"
listen = "[::1]:9000"
workers = 4
io_driver = "io_uring"
max_head_bytes = 32768
max_headers = 64
max_body_bytes = "1MiB"
header_read_timeout = 1500
body_read_timeout = "1m"
keepalive_timeout = "1h"
shutdown_grace = "0ms"
max_connections_per_worker = 10
access_log = "/var/log/tollgate/access.log"
metrics = false
"#,
    ));
    let expected = ServerConfig {
        listen: "[::1]:9000".parse().unwrap(),
        workers: 4,
        io_driver: IoDriver::IoUring,
        max_head_bytes: 32 * 1024,
        max_headers: 64,
        max_body_bytes: 1 << 20,
        header_read_timeout: Duration::from_millis(1500),
        body_read_timeout: Duration::from_secs(60),
        keepalive_timeout: Duration::from_secs(3600),
        shutdown_grace: Duration::ZERO,
        max_connections_per_worker: 10,
        access_log: AccessLog::File("/var/log/tollgate/access.log".into()),
        metrics: false,
    };
    assert_eq!(config.server, expected);
    for (text, want) in [
        ("off", AccessLog::Off),
        ("stdout", AccessLog::Stdout),
        ("stderr", AccessLog::Stderr),
    ] {
        let config = ok(&server(&format!("access_log = \"{text}\"\n")));
        assert_eq!(config.server.access_log, want);
    }
    let message = one_error(&server("access_log = \"\"\n"), "server.access_log");
    assert!(message.contains("file path"), "{message}");
}

#[test]
fn every_provider_key_is_read() {
    let config = ok(r#"
[[providers]]
name = "up.stream-1_a"
kind = "openai"
base_url = "https://[2001:db8::1]:8443/openai/v1/"
api_key = "sk-abc"
connect_timeout = "250ms"
first_byte_timeout = "5s"
idle_timeout = "1s"
pool_max_idle = 0
pool_idle_timeout = "2m"
tls_roots = "system"

[[providers]]
name = "m"
kind = "mock"
[providers.mock]
latency = "1ms"
ttft = "2ms"
chunks = 3
chunk_delay = 4
completion_tokens = 0
embedding_dims = 1536
"#);
    let up = &config.providers[0];
    assert_eq!(up.name, "up.stream-1_a");
    let url = up.base_url.as_ref().unwrap();
    assert_eq!(
        (url.tls, url.host.as_str(), url.port, url.path.as_str()),
        (true, "2001:db8::1", 8443, "/openai/v1")
    );
    assert_eq!(url.authority(), "[2001:db8::1]:8443");
    assert_eq!(up.api_key.as_ref().unwrap().expose(), "sk-abc");
    assert_eq!(up.connect_timeout, Duration::from_millis(250));
    assert_eq!(up.first_byte_timeout, Duration::from_secs(5));
    assert_eq!(up.idle_timeout, Duration::from_secs(1));
    assert_eq!(up.pool_max_idle, 0);
    assert_eq!(up.pool_idle_timeout, Duration::from_secs(120));
    assert_eq!(up.tls_roots, TlsRoots::System);
    let mock = config.providers[1].mock.as_ref().unwrap();
    assert_eq!(mock.latency, Duration::from_millis(1));
    assert_eq!(mock.ttft, Duration::from_millis(2));
    assert_eq!(mock.chunks, 3);
    assert_eq!(mock.chunk_delay, Duration::from_millis(4));
    assert_eq!(mock.completion_tokens, 0);
    assert_eq!(mock.embedding_dims, 1536);
}

#[test]
fn provider_defaults() {
    let config = ok(BASE);
    let local = &config.providers[0];
    assert_eq!(local.connect_timeout, Duration::from_secs(2));
    assert_eq!(local.first_byte_timeout, Duration::from_secs(60));
    assert_eq!(local.idle_timeout, Duration::from_secs(30));
    assert_eq!(local.pool_max_idle, 256);
    assert_eq!(local.pool_idle_timeout, Duration::from_secs(60));
    assert_eq!(local.tls_roots, TlsRoots::Webpki);
    assert!(local.api_key.is_none());
    assert!(local.mock.is_none());
}

#[test]
fn deployments_resolve_to_provider_indices() {
    let config = ok(&format!(
        "{BASE}\n[[models]]\nname = \"both\"\ndeployments = [{{ provider = \"mock\", model = \"m1\" }}, {{ provider = \"local\", model = \"m2\" }}]\n"
    ));
    let both = config.model("both").unwrap();
    assert_eq!(both.deployments[0].provider, 1);
    assert_eq!(both.deployments[0].provider_name, "mock");
    assert_eq!(both.deployments[0].model, "m1");
    assert_eq!(both.deployments[1].provider, 0);
    assert_eq!(config.providers[both.deployments[1].provider].name, "local");
    assert_eq!(
        config.provider("mock").map(|p| p.kind),
        Some(ProviderKind::Mock)
    );
    assert!(config.model("nope").is_none());
}

#[test]
fn apply_overrides_replaces_listen_and_workers() {
    let mut config = ok(BASE);
    config.apply_overrides(None, None);
    assert_eq!(config.server, ServerConfig::default());
    let listen: SocketAddr = "0.0.0.0:9999".parse().unwrap();
    config.apply_overrides(Some(listen), Some(3));
    assert_eq!(config.server.listen, listen);
    assert_eq!(config.server.workers, 3);
    config.apply_overrides(None, Some(0));
    assert_eq!(config.server.listen, listen);
    assert_eq!(config.server.workers, 0);
}

#[test]
fn load_reports_unreadable_file_with_its_path() {
    let path = Path::new("/nonexistent/tollgate/config.toml");
    let errors = errors_of(Config::load(path));
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].0, "/nonexistent/tollgate/config.toml");
    assert!(
        errors[0].1.starts_with("cannot read config file: "),
        "{errors:?}"
    );
}

#[test]
fn load_reads_a_file() {
    let path =
        std::env::temp_dir().join(format!("tollgate-config-test-{}.toml", std::process::id()));
    std::fs::write(&path, "[server]\nworkers = 7\n").unwrap();
    let result = Config::load(&path);
    let _ = std::fs::remove_file(&path);
    assert_eq!(result.map(|c| c.server.workers).ok(), Some(7));
}

// === collecting errors ===

#[test]
fn three_mistakes_give_three_errors() {
    let src = r#"
[server]
listen = "localhost"

[[providers]]
name = "local"
kind = "openai"
base_url = "ftp://x"

[[models]]
name = "gpt-4o-mini"
deployments = [{ provider = "nope", model = "gpt-4o-mini" }]
"#;
    let errors = errors(src);
    assert_eq!(
        errors,
        vec![
            (
                "server.listen".to_owned(),
                "expected an IP address and port like \"127.0.0.1:8080\" or \"[::1]:8080\", got \"localhost\"".to_owned()
            ),
            (
                "providers[0].base_url".to_owned(),
                "expected http:// or https:// URL, got \"ftp://x\"".to_owned()
            ),
            (
                "models[0].deployments[0].provider".to_owned(),
                "unknown provider \"nope\" (known: local)".to_owned()
            ),
        ]
    );
    let rendered = parse(src).err().unwrap().to_string();
    assert_eq!(rendered.lines().count(), 3);
    assert!(
        rendered.starts_with("server.listen: expected an IP address"),
        "{rendered}"
    );
    assert!(rendered
        .contains("\nproviders[0].base_url: expected http:// or https:// URL, got \"ftp://x\"\n"));
}

#[test]
fn errors_in_every_section_are_collected() {
    let src = r#"
[server]
workers = -1
max_headers = 0

[[providers]]
name = "a b"
kind = "azure"
tls_roots = "os"

[[providers]]
kind = "mock"
base_url = "http://x"

[[models]]
deployments = []

[[keys]]
name = "k"
key = "short"
bogus = 1
"#;
    let paths: Vec<String> = errors(src).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        paths,
        [
            "server.workers",
            "server.max_headers",
            "providers[0].name",
            // kind "azure" is valid now, and needs both of these.
            "providers[0].base_url",
            "providers[0].api_key",
            "providers[0].tls_roots",
            "providers[1].name",
            "providers[1].base_url",
            "models[0].name",
            "models[0].deployments",
            "keys[0].bogus",
            "keys[0].key",
        ]
    );
}

// === server ===

#[test]
fn server_errors() {
    let cases: &[(&str, &str, &str)] = &[
        ("listen = \"nowhere\"", "server.listen", "expected an IP address and port like \"127.0.0.1:8080\" or \"[::1]:8080\", got \"nowhere\""),
        ("listen = 8080", "server.listen", "expected a string, got integer 8080"),
        ("workers = -1", "server.workers", "must be between 0 and 4096, got -1"),
        ("workers = 5000", "server.workers", "must be between 0 and 4096, got 5000"),
        ("workers = 1.5", "server.workers", "expected an integer, got float 1.5"),
        ("workers = \"four\"", "server.workers", "expected an integer, got \"four\""),
        ("io_driver = \"epoll\"", "server.io_driver", "expected one of \"auto\", \"io_uring\", \"legacy\", got \"epoll\""),
        ("max_head_bytes = \"512B\"", "server.max_head_bytes", "must be between 1 KiB and 1 MiB, got 512 bytes"),
        ("max_head_bytes = \"2MiB\"", "server.max_head_bytes", "must be between 1 KiB and 1 MiB, got 2 MiB"),
        ("max_head_bytes = -1", "server.max_head_bytes", "must not be negative, got -1"),
        ("max_head_bytes = true", "server.max_head_bytes", "expected a size like \"16KiB\" or an integer number of bytes, got boolean true"),
        ("max_headers = 0", "server.max_headers", "must be between 1 and 128, got 0"),
        ("max_headers = 129", "server.max_headers", "must be between 1 and 128, got 129"),
        ("max_body_bytes = \"16MB\"", "server.max_body_bytes", "expected a size like \"512B\", \"16KiB\", \"16MiB\" or \"1GiB\" (or an integer number of bytes), got \"16MB\""),
        ("max_body_bytes = \"2GiB\"", "server.max_body_bytes", "must be between 1 KiB and 1 GiB, got 2 GiB"),
        ("header_read_timeout = \"0s\"", "server.header_read_timeout", "must be greater than 0, got 0ms"),
        ("header_read_timeout = 0", "server.header_read_timeout", "must be greater than 0, got 0ms"),
        ("body_read_timeout = \"10 minutes\"", "server.body_read_timeout", "expected a duration like \"250ms\", \"2s\", \"1m\" or \"1h\" (or an integer number of milliseconds), got \"10 minutes\""),
        ("keepalive_timeout = -5", "server.keepalive_timeout", "must not be negative, got -5"),
        ("shutdown_grace = [1]", "server.shutdown_grace", "expected a duration like \"2s\" or an integer number of milliseconds, got an array"),
        ("max_connections_per_worker = 0", "server.max_connections_per_worker", "must be between 1 and 1000000, got 0"),
    ];
    for (body, path, message) in cases {
        assert_eq!(one_error(&server(body), path), *message, "for {body}");
    }
}

#[test]
fn server_section_must_be_a_table() {
    assert_eq!(
        one_error("server = 5", "server"),
        "expected a table, got integer 5"
    );
}

// === providers ===

#[test]
fn provider_errors() {
    let cases: &[(&str, &str, &str)] = &[
        ("kind = \"mock\"\nbase_url = \"http://x\"", "providers[0].base_url", "not allowed for kind \"mock\" (the mock answers in-process)"),
        ("kind = \"openai\"", "providers[0].base_url", "required for kind \"openai\""),
        ("kind = \"openai\"\nbase_url = \"ftp://x\"", "providers[0].base_url", "expected http:// or https:// URL, got \"ftp://x\""),
        ("kind = \"openai\"\nbase_url = \"http://h/v1?x=1\"", "providers[0].base_url", "must not contain a query (?) or fragment (#), got \"http://h/v1?x=1\""),
        ("kind = \"openai\"\nbase_url = \"http://h:0\"", "providers[0].base_url", "invalid port \"0\" (expected 1..=65535) in \"http://h:0\""),
        ("kind = \"openai\"\nbase_url = 1", "providers[0].base_url", "expected a string, got integer 1"),
        ("kind = \"mock\"\napi_key = 5", "providers[0].api_key", "expected a string, got an integer"),
        ("kind = \"mock\"\napi_key = \"sk abc\"", "providers[0].api_key", "must be printable ASCII without spaces or control characters"),
        ("kind = \"azure\"\napi_key = \"k\"", "providers[0].base_url", "required for kind \"azure\""),
        ("kind = \"anthropic\"", "providers[0].api_key", "required for kind \"anthropic\""),
        ("kind = \"foo\"", "providers[0].kind", "unknown provider kind \"foo\" (supported: openai, azure, anthropic, gemini, bedrock, mock; OpenAI-compatible presets: groq, mistral, together, deepseek, fireworks, openrouter, xai, vllm, ollama, lmstudio)"),
        ("", "providers[0].kind", "missing (required)"),
        ("kind = \"mock\"\nconnect_timeout = \"0ms\"", "providers[0].connect_timeout", "must be greater than 0, got 0ms"),
        ("kind = \"mock\"\nfirst_byte_timeout = \"fast\"", "providers[0].first_byte_timeout", "expected a duration like \"250ms\", \"2s\", \"1m\" or \"1h\" (or an integer number of milliseconds), got \"fast\""),
        ("kind = \"mock\"\nidle_timeout = 0", "providers[0].idle_timeout", "must be greater than 0, got 0ms"),
        ("kind = \"mock\"\npool_max_idle = -1", "providers[0].pool_max_idle", "must be between 0 and 100000, got -1"),
        ("kind = \"mock\"\npool_idle_timeout = false", "providers[0].pool_idle_timeout", "expected a duration like \"2s\" or an integer number of milliseconds, got boolean false"),
        ("kind = \"mock\"\ntls_roots = \"os\"", "providers[0].tls_roots", "expected one of \"webpki\", \"system\", got \"os\""),
        ("kind = \"openai\"\nbase_url = \"http://x\"\n[providers.mock]\nchunks = 1", "providers[0].mock", "only allowed for kind \"mock\""),
        ("kind = \"mock\"\nmock = 1", "providers[0].mock", "expected a table, got integer 1"),
        ("kind = \"mock\"\n[providers.mock]\nchunks = 0", "providers[0].mock.chunks", "must be between 1 and 100000, got 0"),
        ("kind = \"mock\"\n[providers.mock]\nembedding_dims = 0", "providers[0].mock.embedding_dims", "must be between 1 and 65536, got 0"),
        ("kind = \"mock\"\n[providers.mock]\ncompletion_tokens = 1000001", "providers[0].mock.completion_tokens", "must be between 0 and 1000000, got 1000001"),
        ("kind = \"mock\"\n[providers.mock]\nlatency = -1", "providers[0].mock.latency", "must not be negative, got -1"),
        ("kind = \"mock\"\n[providers.mock]\nttft = \"1d\"", "providers[0].mock.ttft", "expected a duration like \"250ms\", \"2s\", \"1m\" or \"1h\" (or an integer number of milliseconds), got \"1d\""),
        ("kind = \"mock\"\n[providers.mock]\nchunk_delay = 1.5", "providers[0].mock.chunk_delay", "expected a duration like \"2s\" or an integer number of milliseconds, got float 1.5"),
    ];
    for (body, path, message) in cases {
        assert_eq!(one_error(&provider(body), path), *message, "for {body}");
    }
}

#[test]
fn provider_names() {
    assert_eq!(
        one_error("[[providers]]\nkind = \"mock\"", "providers[0].name"),
        "missing (required)"
    );
    assert_eq!(
        one_error(
            "[[providers]]\nname = \"a/b\"\nkind = \"mock\"",
            "providers[0].name"
        ),
        "expected a name made of letters, digits, '_', '.' and '-', got \"a/b\""
    );
    assert_eq!(
        one_error(
            "[[providers]]\nname = \"\"\nkind = \"mock\"",
            "providers[0].name"
        ),
        "expected a name made of letters, digits, '_', '.' and '-', got \"\""
    );
    let duplicate = "[[providers]]\nname = \"p\"\nkind = \"mock\"\n[[providers]]\nname = \"p\"\nkind = \"mock\"\n";
    assert_eq!(
        one_error(duplicate, "providers[1].name"),
        "duplicate provider name \"p\" (also providers[0])"
    );
    // A deployment naming an unknown provider lists each known name once.
    let src = format!("{duplicate}[[models]]\nname = \"m\"\ndeployments = [{{ provider = \"q\", model = \"x\" }}]\n");
    let found = errors(&src);
    assert_eq!(
        found[1],
        (
            "models[0].deployments[0].provider".to_owned(),
            "unknown provider \"q\" (known: p)".to_owned()
        )
    );
}

#[test]
fn empty_api_key_means_none() {
    let config = ok(&provider("kind = \"mock\"\napi_key = \"${NOPE:-}\""));
    assert!(config.providers[0].api_key.is_none());
}

#[test]
fn providers_must_be_an_array_of_tables() {
    assert_eq!(
        one_error("providers = 5", "providers"),
        "expected an array of tables ([[providers]] sections), got integer 5"
    );
    assert_eq!(
        one_error("providers = [1]", "providers[0]"),
        "expected a table, got integer 1"
    );
}

// === models ===

#[test]
fn model_errors() {
    let with_model = |body: &str| format!("{BASE}\n[[models]]\n{body}\n");
    let cases: &[(&str, &str, &str)] = &[
        ("deployments = [{ provider = \"local\", model = \"x\" }]", "models[1].name", "missing (required)"),
        ("name = \"\"\ndeployments = [{ provider = \"local\", model = \"x\" }]", "models[1].name", "must not be empty"),
        ("name = \"a b\"\ndeployments = [{ provider = \"local\", model = \"x\" }]", "models[1].name", "must not contain whitespace or control characters, got \"a b\""),
        ("name = \"gpt-4o-mini\"\ndeployments = [{ provider = \"local\", model = \"x\" }]", "models[1].name", "duplicate model name \"gpt-4o-mini\" (also models[0])"),
        ("name = \"m\"", "models[1].deployments", "missing (required)"),
        ("name = \"m\"\ndeployments = []", "models[1].deployments", "must list at least one deployment, like [{ provider = \"local\", model = \"gpt-4o-mini\" }]"),
        ("name = \"m\"\ndeployments = \"local\"", "models[1].deployments", "expected an array of deployments like [{ provider = \"local\", model = \"gpt-4o-mini\" }], got \"local\""),
        ("name = \"m\"\ndeployments = [\"local\"]", "models[1].deployments[0]", "expected a table, got \"local\""),
        ("name = \"m\"\ndeployments = [{ provider = \"nope\", model = \"x\" }]", "models[1].deployments[0].provider", "unknown provider \"nope\" (known: local, mock)"),
        ("name = \"m\"\ndeployments = [{ model = \"x\" }]", "models[1].deployments[0].provider", "missing (required)"),
        ("name = \"m\"\ndeployments = [{ provider = \"local\" }]", "models[1].deployments[0].model", "missing (required)"),
        ("name = \"m\"\ndeployments = [{ provider = \"local\", model = \"\" }]", "models[1].deployments[0].model", "must not be empty"),
        ("name = \"m\"\ndeployments = [{ provider = \"local\", model = 4 }]", "models[1].deployments[0].model", "expected a string, got integer 4"),
        ("name = \"m\"\ndeployments = [{ provider = \"local\", model = \"x\" }, { provider = \"local\", model = \"x\", wieght = 2 }]", "models[1].deployments[1].wieght", "unknown field, expected one of `provider`, `model`, `weight`, `priority`, `timeout`"),
    ];
    for (body, path, message) in cases {
        assert_eq!(one_error(&with_model(body), path), *message, "for {body}");
    }
}

#[test]
fn unknown_provider_without_any_providers() {
    let src = "[[models]]\nname = \"m\"\ndeployments = [{ provider = \"local\", model = \"x\" }]";
    assert_eq!(
        one_error(src, "models[0].deployments[0].provider"),
        "unknown provider \"local\" (no providers are configured)"
    );
}

#[test]
fn deployment_naming_a_broken_provider_is_not_also_unknown() {
    // providers[0] has a bad kind, but its name exists: only the kind is reported.
    let src = "[[providers]]\nname = \"p\"\nkind = \"nope\"\n[[models]]\nname = \"m\"\ndeployments = [{ provider = \"p\", model = \"x\" }]";
    assert_eq!(
        one_error(src, "providers[0].kind"),
        "unknown provider kind \"nope\" (supported: openai, azure, anthropic, gemini, bedrock, mock; OpenAI-compatible presets: groq, mistral, together, deepseek, fireworks, openrouter, xai, vllm, ollama, lmstudio)"
    );
}

// === keys ===

#[test]
fn key_errors() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "key = \"sk-12345678\"",
            "keys[0].name",
            "missing (required)",
        ),
        (
            "name = \"a b\"\nkey = \"sk-12345678\"",
            "keys[0].name",
            "expected a name made of letters, digits, '_', '.' and '-', got \"a b\"",
        ),
        ("name = \"k\"", "keys[0].key", "missing (required)"),
        (
            "name = \"k\"\nkey = \"sk-1234\"",
            "keys[0].key",
            "must be at least 8 characters long",
        ),
        (
            "name = \"k\"\nkey = \"sk 12345678\"",
            "keys[0].key",
            "must be printable ASCII without spaces or control characters",
        ),
        (
            "name = \"k\"\nkey = 12345678",
            "keys[0].key",
            "expected a string, got an integer",
        ),
    ];
    for (body, path, message) in cases {
        assert_eq!(one_error(&key_file(body), path), *message, "for {body}");
    }
}

#[test]
fn key_names_and_values_are_unique() {
    let src = "[[keys]]\nname = \"a\"\nkey = \"sk-11111111\"\n[[keys]]\nname = \"a\"\nkey = \"sk-22222222\"\n[[keys]]\nname = \"c\"\nkey = \"sk-11111111\"\n";
    assert_eq!(
        errors(src),
        vec![
            (
                "keys[1].name".to_owned(),
                "duplicate key name \"a\" (also keys[0])".to_owned()
            ),
            (
                "keys[2].key".to_owned(),
                "same value as keys[0].key; every key must be unique".to_owned()
            ),
        ]
    );
}

// === unknown fields and TOML syntax ===

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    assert_eq!(
        one_error(&format!("bogus = 1\n{BASE}"), "bogus"),
        "unknown field, expected one of `server`, `providers`, `models`, `keys`, `routing`, `orgs`, `teams`, `users`, `prices`, `governance`, `store`, `admin`, `guardrails`"
    );
    let message = one_error(&server("listen_addr = \"0.0.0.0:1\""), "server.listen_addr");
    assert!(
        message.starts_with("unknown field, expected one of `listen`, `workers`"),
        "{message}"
    );
    let message = one_error(
        &format!("{BASE}\n[[providers]]\nname = \"x\"\nkind = \"mock\"\nbase-url = \"http://x\"\n"),
        "providers[2].base-url",
    );
    assert!(
        message.starts_with("unknown field, expected one of `name`, `kind`, `base_url`"),
        "{message}"
    );
    assert_eq!(
        one_error(
            &provider("kind = \"mock\"\n[providers.mock]\nspeed = 1"),
            "providers[0].mock.speed"
        )
        .split(", expected")
        .next(),
        Some("unknown field")
    );
    assert_eq!(
        one_error(
            &key_file("name = \"k\"\nkey = \"sk-12345678\"\nowner = \"x\""),
            "keys[0].owner"
        )
        .split(", expected")
        .next(),
        Some("unknown field")
    );
}

#[test]
fn every_unknown_field_in_one_table_is_reported() {
    let paths: Vec<String> = errors(&server("a = 1\nb = 2\nworkers = 2\nc = 3"))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(paths, ["server.a", "server.b", "server.c"]);
}

#[test]
fn odd_keys_are_quoted_in_paths_and_never_interpolated() {
    let src = format!("[server]\n\"${{X}}\" = 1\n\"a.b\" = 2\n{BASE}");
    let errors = errors_of(parse_env(&src, &[("X", "listen")]));
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["server.\"${X}\"", "server.\"a.b\""]);
}

#[test]
fn toml_syntax_errors_give_line_and_column() {
    let found = errors("[server]\nworkers = 2\nlisten = \n");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].0, "line 3, column 10");
    assert!(found[0].1.starts_with("TOML syntax error: "), "{found:?}");

    let found = errors("[server]\n[server]\n");
    assert_eq!(found.len(), 1);
    assert!(found[0].0.starts_with("line 2,"), "{found:?}");
    assert!(found[0].1.contains("server"), "{found:?}");
}

// === interpolation ===

#[test]
fn interpolation_set_unset_and_default() {
    let src = r#"
[server]
listen = "${HOST:-127.0.0.1}:${PORT:-8080}"
workers = "${WORKERS:-2}"
keepalive_timeout = "${KEEPALIVE:-5s}"
max_body_bytes = "${BODY:-1MiB}"

[[keys]]
name = "demo"
key = "${DEMO_KEY}"
"#;
    let config = parse_env(src, &[("DEMO_KEY", "sk-demo-from-env")]).unwrap();
    assert_eq!(
        config.server.listen,
        "127.0.0.1:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.server.workers, 2);
    assert_eq!(config.server.keepalive_timeout, Duration::from_secs(5));
    assert_eq!(config.server.max_body_bytes, 1 << 20);
    assert_eq!(config.keys[0].key.expose(), "sk-demo-from-env");

    let config = parse_env(
        src,
        &[
            ("DEMO_KEY", "sk-demo-from-env"),
            ("HOST", "0.0.0.0"),
            ("PORT", "9000"),
            ("WORKERS", "8"),
            ("KEEPALIVE", "2m"),
            ("BODY", "4096"),
        ],
    );
    let errors = errors_of(config);
    // A plain number is not a size string: the unit is required.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "server.max_body_bytes");

    let config = parse_env(
        src,
        &[
            ("DEMO_KEY", "sk-demo-from-env"),
            ("HOST", "0.0.0.0"),
            ("WORKERS", "8"),
            ("KEEPALIVE", "2m"),
        ],
    )
    .unwrap();
    assert_eq!(
        config.server.listen,
        "0.0.0.0:8080".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.server.workers, 8);
    assert_eq!(config.server.keepalive_timeout, Duration::from_secs(120));

    assert_eq!(
        errors_of(parse_env(src, &[])),
        vec![(
            "keys[0].key".to_owned(),
            "environment variable DEMO_KEY is not set (write ${DEMO_KEY:-default} to give a default)".to_owned()
        )]
    );
}

#[test]
fn interpolation_dollars_and_unterminated() {
    let config = ok(&key_file("name = \"k\"\nkey = \"sk-$$-dollar-$x\""));
    assert_eq!(config.keys[0].key.expose(), "sk-$-dollar-$x");
    let config = ok("[[models]]\nname = \"$${NOT_A_VAR}\"\ndeployments = [{ provider = \"p\", model = \"x\" }]\n[[providers]]\nname = \"p\"\nkind = \"mock\"");
    assert_eq!(config.models[0].name, "${NOT_A_VAR}");

    assert_eq!(
        one_error(&server("listen = \"${HOST\""), "server.listen"),
        "unterminated \"${\" at character 0: close it with \"}\", or write \"$$\" for a literal \"$\""
    );
    let message = one_error(&server("listen = \"${1}\""), "server.listen");
    assert!(
        message.starts_with("invalid variable reference at character 0"),
        "{message}"
    );
}

#[test]
fn interpolation_reaches_nested_strings() {
    let src = "[[providers]]\nname = \"${P}\"\nkind = \"${KIND}\"\n[providers.mock]\nchunk_delay = \"${DELAY}\"\n[[models]]\nname = \"m\"\ndeployments = [{ provider = \"${P}\", model = \"${M:-default-model}\" }]";
    let config = parse_env(src, &[("P", "prov"), ("KIND", "mock"), ("DELAY", "7ms")]).unwrap();
    assert_eq!(config.providers[0].name, "prov");
    assert_eq!(
        config.providers[0].mock.as_ref().unwrap().chunk_delay,
        Duration::from_millis(7)
    );
    assert_eq!(config.models[0].deployments[0].provider_name, "prov");
    assert_eq!(config.models[0].deployments[0].model, "default-model");

    let paths: Vec<String> = errors_of(parse_env(src, &[("KIND", "mock"), ("DELAY", "7ms")]))
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert_eq!(
        paths,
        ["providers[0].name", "models[0].deployments[0].provider"]
    );
}

// === secrets ===

#[test]
fn secrets_never_appear_in_debug_output() {
    let src = r#"
[[providers]]
name = "up"
kind = "openai"
base_url = "https://api.example.com/v1"
api_key = "sk-upstream-SECRET-1"

[[keys]]
name = "demo"
key = "sk-client-SECRET-2"
"#;
    let config = ok(src);
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains("SECRET"), "{debug}");
    assert!(debug.contains("Secret(***)"));
    assert_eq!(config.keys[0].key.to_string(), "Secret(***)");
    assert_eq!(
        config.providers[0].api_key.as_ref().unwrap().expose(),
        "sk-upstream-SECRET-1"
    );
}

#[test]
fn secrets_never_appear_in_errors() {
    let sources = [
        // Too short.
        key_file("name = \"k\"\nkey = \"SECRET\""),
        // Not a header-safe value.
        key_file("name = \"k\"\nkey = \"SECRET with spaces\""),
        provider("kind = \"mock\"\napi_key = \"SECRET\\n\""),
        // Duplicate.
        "[[keys]]\nname = \"a\"\nkey = \"SECRET-123\"\n[[keys]]\nname = \"b\"\nkey = \"SECRET-123\"\n".to_owned(),
        // Broken interpolation inside a secret.
        key_file("name = \"k\"\nkey = \"SECRET-${\""),
        key_file("name = \"k\"\nkey = \"SECRET-${A B}\""),
        // A TOML syntax error on the line holding the secret.
        key_file("name = \"k\"\nkey = \"SECRET-unterminated"),
        // Credentials inside a base_url.
        provider("kind = \"openai\"\nbase_url = \"https://user:SECRET@api.example.com\""),
    ];
    for src in sources {
        let rendered = match parse(&src) {
            Ok(_) => panic!("accepted:\n{src}"),
            Err(errors) => format!("{errors}\n{errors:?}"),
        };
        assert!(
            !rendered.contains("SECRET"),
            "secret leaked:\n{rendered}\n--- source ---\n{src}"
        );
    }
    // A variable's value never shows either, only its name.
    let rendered = errors_of(parse_env(
        &key_file("name = \"k\"\nkey = \"${K}\""),
        &[("K", "SECRET")],
    ))
    .into_iter()
    .map(|(p, m)| format!("{p}: {m}"))
    .collect::<String>();
    assert!(!rendered.contains("SECRET"), "{rendered}");
}

// === provider kinds ===

/// The smallest valid body (after `name = "p"`) for each kind, for tests that add one key.
fn minimal(kind: &str) -> String {
    match kind {
        "openai" => "kind = \"openai\"\nbase_url = \"http://127.0.0.1:18000/v1\"".to_owned(),
        "azure" => "kind = \"azure\"\nbase_url = \"https://myres.openai.azure.com\"\napi_key = \"k\"".to_owned(),
        "anthropic" | "gemini" => format!("kind = \"{kind}\"\napi_key = \"k\""),
        "bedrock" => "kind = \"bedrock\"\nregion = \"us-east-1\"\naws_access_key_id = \"AKIA\"\naws_secret_access_key = \"s\"".to_owned(),
        other => format!("kind = \"{other}\""),
    }
}

fn url(text: &str) -> BaseUrl {
    BaseUrl::parse(text).unwrap()
}

#[test]
fn minimal_provider_of_each_kind_gets_its_defaults() {
    let src: String = [
        "openai",
        "azure",
        "anthropic",
        "gemini",
        "bedrock",
        "mock",
        "groq",
    ]
    .iter()
    .map(|kind| format!("[[providers]]\nname = \"{kind}\"\n{}\n", minimal(kind)))
    .collect();
    let config = ok(&src);
    let by_name = |name: &str| config.provider(name).unwrap();

    let openai = by_name("openai");
    assert_eq!((openai.kind, openai.preset), (ProviderKind::OpenAi, None));
    assert_eq!(openai.kind_name(), "openai");
    assert_eq!(openai.api_version, None);
    assert!(openai.region.is_none() && openai.aws.is_none() && openai.mock.is_none());

    let azure = by_name("azure");
    assert_eq!(azure.kind, ProviderKind::Azure);
    assert_eq!(azure.base_url, Some(url("https://myres.openai.azure.com")));
    assert_eq!(azure.api_key.as_ref().unwrap().expose(), "k");
    assert_eq!(azure.api_version.as_deref(), Some("2024-10-21"));
    assert_eq!(
        azure.api_version.as_deref(),
        Some(ProviderConfig::DEFAULT_AZURE_API_VERSION)
    );

    let anthropic = by_name("anthropic");
    assert_eq!(anthropic.kind, ProviderKind::Anthropic);
    assert_eq!(anthropic.base_url, Some(url("https://api.anthropic.com")));
    assert_eq!(anthropic.api_version.as_deref(), Some("2023-06-01"));

    let gemini = by_name("gemini");
    assert_eq!(gemini.kind, ProviderKind::Gemini);
    assert_eq!(
        gemini.base_url,
        Some(url("https://generativelanguage.googleapis.com"))
    );
    assert_eq!(gemini.api_version, None);

    let bedrock = by_name("bedrock");
    assert_eq!(bedrock.kind, ProviderKind::Bedrock);
    assert_eq!(bedrock.region.as_deref(), Some("us-east-1"));
    assert_eq!(
        bedrock.base_url,
        Some(url("https://bedrock-runtime.us-east-1.amazonaws.com"))
    );
    assert!(bedrock.api_key.is_none());
    assert_eq!(bedrock.api_version, None);
    let aws = bedrock.aws.as_ref().unwrap();
    assert_eq!(aws.access_key_id.expose(), "AKIA");
    assert_eq!(aws.secret_access_key.expose(), "s");
    assert!(aws.session_token.is_none());

    let mock = by_name("mock");
    assert_eq!(mock.base_url, None);
    assert_eq!(mock.mock, Some(Default::default()));
    assert!(mock.region.is_none() && mock.aws.is_none() && mock.api_version.is_none());

    let groq = by_name("groq");
    assert_eq!(
        (groq.kind, groq.preset),
        (ProviderKind::OpenAi, Some(Preset::Groq))
    );
    assert_eq!(groq.kind_name(), "groq");
    assert_eq!(groq.base_url, Some(url("https://api.groq.com/openai/v1")));
    assert!(groq.api_key.is_none());
}

#[test]
fn every_preset_is_accepted_with_its_default_base_url() {
    for preset in Preset::ALL {
        let config = ok(&provider(&format!("kind = \"{}\"", preset.as_str())));
        let p = &config.providers[0];
        assert_eq!(p.kind, ProviderKind::OpenAi, "{preset:?}");
        assert_eq!(p.preset, Some(preset));
        assert_eq!(Preset::from_name(preset.as_str()), Some(preset));
        assert_eq!(p.kind_name(), preset.as_str());
        let default = p.base_url.as_ref().unwrap();
        assert_eq!(default, &url(preset.default_base_url()), "{preset:?}");
        assert_eq!(default.to_string(), preset.default_base_url(), "{preset:?}");
    }
    let names: Vec<&str> = Preset::ALL.iter().map(|p| p.as_str()).collect();
    assert_eq!(
        names,
        [
            "groq",
            "mistral",
            "together",
            "deepseek",
            "fireworks",
            "openrouter",
            "xai",
            "vllm",
            "ollama",
            "lmstudio"
        ]
    );
    // A preset's base_url and api_key can still be given.
    let config = ok(&provider(
        "kind = \"ollama\"\nbase_url = \"http://gpu-box:11434/v1\"\napi_key = \"ollama\"",
    ));
    let p = &config.providers[0];
    assert_eq!(p.base_url, Some(url("http://gpu-box:11434/v1")));
    assert_eq!(p.api_key.as_ref().unwrap().expose(), "ollama");
}

#[test]
fn explicit_values_override_kind_defaults() {
    let config = ok(r#"
[[providers]]
name = "a"
kind = "anthropic"
base_url = "http://127.0.0.1:18001/"
api_key = "sk-ant"
api_version = "2024-01-01"

[[providers]]
name = "b"
kind = "bedrock"
region = "ap-southeast-2"
base_url = "https://vpce-1.bedrock-runtime.ap-southeast-2.vpce.amazonaws.com"
aws_access_key_id = "AKIA"
aws_secret_access_key = "s"
aws_session_token = "tok"

[[providers]]
name = "z"
kind = "azure"
base_url = "https://myres.openai.azure.com"
api_key = "k"
api_version = "2025-01-01-preview"
"#);
    let a = &config.providers[0];
    assert_eq!(a.base_url, Some(url("http://127.0.0.1:18001")));
    assert_eq!(a.api_version.as_deref(), Some("2024-01-01"));
    let b = &config.providers[1];
    assert_eq!(b.region.as_deref(), Some("ap-southeast-2"));
    assert_eq!(
        b.base_url,
        Some(url(
            "https://vpce-1.bedrock-runtime.ap-southeast-2.vpce.amazonaws.com"
        ))
    );
    assert_eq!(
        b.aws
            .as_ref()
            .and_then(|aws| aws.session_token.as_ref())
            .map(|t| t.expose().as_str()),
        Some("tok")
    );
    assert_eq!(
        config.providers[2].api_version.as_deref(),
        Some("2025-01-01-preview")
    );
}

#[test]
fn empty_base_url_means_the_kinds_default() {
    for (kind, expected) in [
        ("anthropic", "https://api.anthropic.com"),
        ("gemini", "https://generativelanguage.googleapis.com"),
        ("bedrock", "https://bedrock-runtime.us-east-1.amazonaws.com"),
        ("mistral", "https://api.mistral.ai/v1"),
    ] {
        let src = provider(&format!("{}\nbase_url = \"${{EMPTY:-}}\"", minimal(kind)));
        let config = ok(&src);
        assert_eq!(config.providers[0].base_url, Some(url(expected)), "{kind}");
    }
}

#[test]
fn provider_kind_errors() {
    let only_azure_anthropic = "only for kinds \"azure\" and \"anthropic\"";
    let cases: &[(String, &str, String)] = &[
        // Required keys, and empty values from `${VAR:-}` naming the variable.
        (provider("kind = \"openai\"\nbase_url = \"${OPENAI_BASE_URL:-}\""), "providers[0].base_url", "required for kind \"openai\"; it is empty".to_owned()),
        (provider("kind = \"azure\"\napi_key = \"k\""), "providers[0].base_url", "required for kind \"azure\"".to_owned()),
        (provider("kind = \"azure\"\nbase_url = \"https://r.openai.azure.com\""), "providers[0].api_key", "required for kind \"azure\"".to_owned()),
        (provider("kind = \"azure\"\nbase_url = \"https://r.openai.azure.com\"\napi_key = \"${AZURE_OPENAI_API_KEY:-}\""), "providers[0].api_key", "required for kind \"azure\"; it is empty (set AZURE_OPENAI_API_KEY)".to_owned()),
        (provider("kind = \"anthropic\""), "providers[0].api_key", "required for kind \"anthropic\"".to_owned()),
        (provider("kind = \"anthropic\"\napi_key = \"${ANTHROPIC_API_KEY:-}\""), "providers[0].api_key", "required for kind \"anthropic\"; it is empty (set ANTHROPIC_API_KEY)".to_owned()),
        (provider("kind = \"anthropic\"\napi_key = \"\""), "providers[0].api_key", "required for kind \"anthropic\"; it is empty".to_owned()),
        (provider("kind = \"gemini\""), "providers[0].api_key", "required for kind \"gemini\"".to_owned()),
        (provider("kind = \"gemini\"\napi_key = \"${A:-}${B:-}\""), "providers[0].api_key", "required for kind \"gemini\"; it is empty (set one of A, B)".to_owned()),
        (provider("kind = \"bedrock\"\naws_access_key_id = \"AKIA\"\naws_secret_access_key = \"s\""), "providers[0].region", "required for kind \"bedrock\"".to_owned()),
        (provider("kind = \"bedrock\"\nregion = \"us-east-1\"\naws_secret_access_key = \"s\""), "providers[0].aws_access_key_id", "required for kind \"bedrock\"".to_owned()),
        (provider("kind = \"bedrock\"\nregion = \"us-east-1\"\naws_access_key_id = \"AKIA\""), "providers[0].aws_secret_access_key", "required for kind \"bedrock\"".to_owned()),
        (provider("kind = \"bedrock\"\nregion = \"us-east-1\"\naws_access_key_id = \"${AWS_ACCESS_KEY_ID:-}\"\naws_secret_access_key = \"s\""), "providers[0].aws_access_key_id", "required for kind \"bedrock\"; it is empty (set AWS_ACCESS_KEY_ID)".to_owned()),
        // Values.
        (provider(&format!("{}\nregion = \"US_EAST_1\"", minimal("bedrock").replace("region = \"us-east-1\"\n", ""))), "providers[0].region", "expected an AWS region like \"us-east-1\" (lower-case letters, digits and '-'), got \"US_EAST_1\"".to_owned()),
        (provider(&minimal("bedrock").replace("us-east-1", "")), "providers[0].region", "expected an AWS region like \"us-east-1\" (lower-case letters, digits and '-'), got \"\"".to_owned()),
        (provider(&minimal("bedrock").replace("us-east-1", "-east")), "providers[0].region", "expected an AWS region like \"us-east-1\" (lower-case letters, digits and '-'), got \"-east\"".to_owned()),
        (provider(&minimal("bedrock").replace("\"us-east-1\"", "1")), "providers[0].region", "expected a string, got integer 1".to_owned()),
        (provider(&format!("{}\napi_version = \"2024 10\"", minimal("azure"))), "providers[0].api_version", "expected a version like \"2024-10-21\" (letters, digits, '.', '_' and '-'), got \"2024 10\"".to_owned()),
        (provider(&format!("{}\napi_version = \"\"", minimal("anthropic"))), "providers[0].api_version", "expected a version like \"2024-10-21\" (letters, digits, '.', '_' and '-'), got \"\"".to_owned()),
        (provider(&format!("{}\naws_session_token = 5", minimal("bedrock"))), "providers[0].aws_session_token", "expected a string, got an integer".to_owned()),
        (provider(&format!("{}\nbase_url = \"ftp://x\"", minimal("gemini"))), "providers[0].base_url", "expected http:// or https:// URL, got \"ftp://x\"".to_owned()),
        (provider("kind = \"groq\"\nbase_url = \"http://h:0\""), "providers[0].base_url", "invalid port \"0\" (expected 1..=65535) in \"http://h:0\"".to_owned()),
        // Keys that do not apply to the kind name the kind.
        (provider(&format!("{}\napi_version = \"v1\"", minimal("gemini"))), "providers[0].api_version", format!("not allowed for kind \"gemini\" ({only_azure_anthropic})")),
        (provider(&format!("{}\napi_version = \"v1\"", minimal("openai"))), "providers[0].api_version", format!("not allowed for kind \"openai\" ({only_azure_anthropic})")),
        (provider("kind = \"groq\"\napi_version = \"v1\""), "providers[0].api_version", format!("not allowed for kind \"groq\" ({only_azure_anthropic})")),
        (provider("kind = \"mock\"\napi_version = \"v1\""), "providers[0].api_version", format!("not allowed for kind \"mock\" ({only_azure_anthropic})")),
        (provider(&format!("{}\napi_version = \"v1\"", minimal("bedrock"))), "providers[0].api_version", format!("not allowed for kind \"bedrock\" ({only_azure_anthropic})")),
        (provider(&format!("{}\nregion = \"us-east-1\"", minimal("openai"))), "providers[0].region", "not allowed for kind \"openai\" (only for kind \"bedrock\")".to_owned()),
        (provider(&format!("{}\naws_access_key_id = \"AKIA\"", minimal("anthropic"))), "providers[0].aws_access_key_id", "not allowed for kind \"anthropic\" (only for kind \"bedrock\")".to_owned()),
        (provider(&format!("{}\naws_secret_access_key = \"s\"", minimal("azure"))), "providers[0].aws_secret_access_key", "not allowed for kind \"azure\" (only for kind \"bedrock\")".to_owned()),
        (provider("kind = \"vllm\"\naws_session_token = \"t\""), "providers[0].aws_session_token", "not allowed for kind \"vllm\" (only for kind \"bedrock\")".to_owned()),
        (provider(&format!("{}\napi_key = \"k\"", minimal("bedrock"))), "providers[0].api_key", "not allowed for kind \"bedrock\" (Bedrock signs requests with aws_access_key_id and aws_secret_access_key)".to_owned()),
        (provider("kind = \"mock\"\ntls_ca_file = \"/etc/ca.pem\""), "providers[0].tls_ca_file", "not allowed for kind \"mock\" (the mock answers in-process)".to_owned()),
        (provider(&format!("{}\n[providers.mock]\nchunks = 1", minimal("anthropic"))), "providers[0].mock", "only allowed for kind \"mock\"".to_owned()),
        (provider(&format!("{}\n[providers.mock]\nchunks = 1", minimal("bedrock"))), "providers[0].mock", "only allowed for kind \"mock\"".to_owned()),
        // Kind names are exact.
        (provider("kind = \"Groq\""), "providers[0].kind", "unknown provider kind \"Groq\" (supported: openai, azure, anthropic, gemini, bedrock, mock; OpenAI-compatible presets: groq, mistral, together, deepseek, fireworks, openrouter, xai, vllm, ollama, lmstudio)".to_owned()),
    ];
    for (src, path, message) in cases {
        assert_eq!(&one_error(src, path), message, "for\n{src}");
    }
}

#[test]
fn provider_with_several_kind_errors_reports_each() {
    let src = provider(
        "kind = \"bedrock\"\napi_key = \"k\"\napi_version = \"v\"\nregion = \"Mars\"\naws_secret_access_key = \"${AWS_SECRET_ACCESS_KEY:-}\"",
    );
    let found = errors(&src);
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "providers[0].api_key",
            "providers[0].api_version",
            "providers[0].region",
            "providers[0].aws_access_key_id",
            "providers[0].aws_secret_access_key",
        ],
        "{found:#?}"
    );
    // An unknown kind still has its other values checked.
    let found = errors(&provider(
        "kind = \"nope\"\nregion = 5\naws_access_key_id = 6",
    ));
    let paths: Vec<&str> = found.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "providers[0].kind",
            "providers[0].region",
            "providers[0].aws_access_key_id"
        ]
    );
}

#[test]
fn aws_secrets_never_appear_in_output() {
    let src = provider(
        "kind = \"bedrock\"\nregion = \"us-east-1\"\naws_access_key_id = \"AKIA-SECRET-1\"\naws_secret_access_key = \"aws-SECRET-2\"\naws_session_token = \"tok-SECRET-3\"",
    );
    let config = ok(&src);
    let debug = format!("{config:?} {config:#?}");
    assert!(!debug.contains("SECRET"), "{debug}");
    for src in [
        provider("kind = \"bedrock\"\nregion = \"us-east-1\"\naws_access_key_id = \"AKIA SECRET\"\naws_secret_access_key = \"s\""),
        provider("kind = \"bedrock\"\nregion = \"us-east-1\"\naws_access_key_id = \"AKIA\"\naws_secret_access_key = \"SECRET\"\naws_session_token = \"SECRET\\n\""),
        provider("kind = \"openai\"\nbase_url = \"http://x\"\naws_secret_access_key = \"SECRET\""),
    ] {
        let rendered = match parse(&src) {
            Ok(_) => panic!("accepted:\n{src}"),
            Err(errors) => format!("{errors}\n{errors:?}"),
        };
        assert!(!rendered.contains("SECRET"), "{rendered}");
    }
}

// === models: strategy, fallbacks, deployment weight/priority/timeout ===

/// BASE (models[0] = "gpt-4o-mini") plus models[1] = "b" and models[2] with `body` after its
/// name "c".
fn third_model(body: &str) -> String {
    format!(
        "{BASE}\n[[models]]\nname = \"b\"\ndeployments = [{{ provider = \"mock\", model = \"b\" }}]\n\n[[models]]\nname = \"c\"\n{body}\n"
    )
}

const DEPLOYMENT: &str = "deployments = [{ provider = \"local\", model = \"c\" }]";

#[test]
fn model_routing_defaults() {
    let config = ok(BASE);
    let model = &config.models[0];
    assert_eq!(model.strategy, Strategy::Weighted);
    assert!(model.fallbacks.is_empty() && model.fallback_names.is_empty());
    assert!(model.context_fallbacks.is_empty() && model.context_fallback_names.is_empty());
    let d = &model.deployments[0];
    assert_eq!((d.weight, d.priority, d.timeout), (1, 0, None));
    assert_eq!(d.weight, DeploymentConfig::DEFAULT_WEIGHT);
    assert_eq!(d.priority, DeploymentConfig::DEFAULT_PRIORITY);
}

#[test]
fn every_model_routing_key_is_read() {
    // "c" falls back to models defined before and after it.
    let src = format!(
        "{}\n[[models]]\nname = \"d\"\ndeployments = [{{ provider = \"mock\", model = \"d\" }}]\n",
        third_model(
            r#"strategy = "priority"
fallbacks = ["d", "gpt-4o-mini"]
context_fallbacks = ["b"]
deployments = [
  { provider = "local", model = "c1", weight = 1000, priority = 0, timeout = "250ms" },
  { provider = "mock", model = "c2", weight = "${W:-3}", priority = 1000, timeout = 1500 },
]"#
        )
    );
    let config = ok(&src);
    let c = config.model("c").unwrap();
    assert_eq!(c.strategy, Strategy::Priority);
    assert_eq!(c.fallbacks, [3, 0]);
    assert_eq!(c.fallback_names, ["d", "gpt-4o-mini"]);
    assert_eq!(c.context_fallbacks, [1]);
    assert_eq!(c.context_fallback_names, ["b"]);
    assert_eq!(config.models[c.fallbacks[0]].name, "d");
    let d0 = &c.deployments[0];
    assert_eq!(
        (d0.weight, d0.priority, d0.timeout),
        (1000, 0, Some(Duration::from_millis(250)))
    );
    let d1 = &c.deployments[1];
    assert_eq!(
        (d1.weight, d1.priority, d1.timeout),
        (3, 1000, Some(Duration::from_millis(1500)))
    );
    for (text, strategy) in [
        ("weighted", Strategy::Weighted),
        ("least_inflight", Strategy::LeastInflight),
        ("lowest_latency", Strategy::LowestLatency),
        ("priority", Strategy::Priority),
    ] {
        let config = ok(&third_model(&format!(
            "strategy = \"{text}\"\n{DEPLOYMENT}"
        )));
        assert_eq!(config.models[2].strategy, strategy);
        assert_eq!(strategy.as_str(), text);
    }
    // An empty list is no fallbacks.
    let config = ok(&third_model(&format!("fallbacks = []\n{DEPLOYMENT}")));
    assert!(config.models[2].fallbacks.is_empty());
}

#[test]
fn model_routing_errors() {
    let cases: &[(&str, &str, &str)] = &[
        ("strategy = \"round_robin\"", "models[2].strategy", "expected one of \"weighted\", \"least_inflight\", \"lowest_latency\", \"priority\", got \"round_robin\""),
        ("strategy = 1", "models[2].strategy", "expected a string, got integer 1"),
        ("fallbacks = \"b\"", "models[2].fallbacks", "expected an array of model names like [\"gpt-4o-mini\"], got \"b\""),
        ("fallbacks = [\"nope\"]", "models[2].fallbacks[0]", "unknown model \"nope\" (known: gpt-4o-mini, b, c)"),
        ("fallbacks = [\"b\", \"nope\"]", "models[2].fallbacks[1]", "unknown model \"nope\" (known: gpt-4o-mini, b, c)"),
        ("fallbacks = [\"c\"]", "models[2].fallbacks[0]", "\"c\" is this model itself; name another model"),
        ("fallbacks = [\"b\", \"gpt-4o-mini\", \"b\"]", "models[2].fallbacks[2]", "duplicate: \"b\" is also models[2].fallbacks[0]"),
        ("fallbacks = [\"b\", 7]", "models[2].fallbacks[1]", "expected a string, got integer 7"),
        ("context_fallbacks = [\"nope\"]", "models[2].context_fallbacks[0]", "unknown model \"nope\" (known: gpt-4o-mini, b, c)"),
        ("context_fallbacks = [\"c\"]", "models[2].context_fallbacks[0]", "\"c\" is this model itself; name another model"),
        ("context_fallbacks = { model = \"b\" }", "models[2].context_fallbacks", "expected an array of model names like [\"gpt-4o-mini\"], got a table"),
        ("deployments = [{ provider = \"local\", model = \"c\", weight = 0 }]", "models[2].deployments[0].weight", "must be between 1 and 1000, got 0"),
        ("deployments = [{ provider = \"local\", model = \"c\" }, { provider = \"local\", model = \"c\", weight = 1001 }]", "models[2].deployments[1].weight", "must be between 1 and 1000, got 1001"),
        ("deployments = [{ provider = \"local\", model = \"c\", weight = 1.5 }]", "models[2].deployments[0].weight", "expected an integer, got float 1.5"),
        ("deployments = [{ provider = \"local\", model = \"c\", priority = -1 }]", "models[2].deployments[0].priority", "must be between 0 and 1000, got -1"),
        ("deployments = [{ provider = \"local\", model = \"c\", priority = 1001 }]", "models[2].deployments[0].priority", "must be between 0 and 1000, got 1001"),
        ("deployments = [{ provider = \"local\", model = \"c\", timeout = \"0s\" }]", "models[2].deployments[0].timeout", "must be greater than 0, got 0ms"),
        ("deployments = [{ provider = \"local\", model = \"c\", timeout = \"soon\" }]", "models[2].deployments[0].timeout", "expected a duration like \"250ms\", \"2s\", \"1m\" or \"1h\" (or an integer number of milliseconds), got \"soon\""),
    ];
    for (body, path, message) in cases {
        let body = if body.starts_with("deployments") {
            (*body).to_owned()
        } else {
            format!("{body}\n{DEPLOYMENT}")
        };
        assert_eq!(one_error(&third_model(&body), path), *message, "for {body}");
    }
}

#[test]
fn fallback_naming_a_broken_model_is_not_also_unknown() {
    // models[1] "b" has no deployments, but its name exists: only that is reported.
    let src = format!(
        "{BASE}\n[[models]]\nname = \"b\"\n\n[[models]]\nname = \"c\"\nfallbacks = [\"b\"]\n{DEPLOYMENT}\n"
    );
    assert_eq!(
        one_error(&src, "models[1].deployments"),
        "missing (required)"
    );
    // Fallback names are interpolated like every string.
    let src = third_model(&format!("fallbacks = [\"${{FALLBACK:-b}}\"]\n{DEPLOYMENT}"));
    assert_eq!(ok(&src).models[2].fallbacks, [1]);
    let config = parse_env(&src, &[("FALLBACK", "gpt-4o-mini")]).unwrap();
    assert_eq!(config.models[2].fallbacks, [0]);
}

#[test]
fn models_fallback_to_each_other() {
    // Mutual fallbacks are allowed: the engine does not follow a fallback's own fallbacks.
    let src = format!(
        "{BASE}\n[[models]]\nname = \"b\"\nfallbacks = [\"gpt-4o-mini\"]\ndeployments = [{{ provider = \"mock\", model = \"b\" }}]\n"
    )
    .replace(
        "name = \"gpt-4o-mini\"\n",
        "name = \"gpt-4o-mini\"\nfallbacks = [\"b\"]\n",
    );
    let config = ok(&src);
    assert_eq!(config.models[0].fallbacks, [1]);
    assert_eq!(config.models[1].fallbacks, [0]);
}

// === routing ===

fn routing(body: &str) -> String {
    format!("[routing]\n{body}\n{BASE}")
}

#[test]
fn routing_defaults() {
    let expected = RoutingConfig {
        retries: 2,
        backoff_base: Duration::from_millis(50),
        backoff_max: Duration::from_secs(2),
        cooldown_failures: 3,
        cooldown_error_ratio: 0.5,
        cooldown_min_requests: 10,
        cooldown_window: Duration::from_secs(30),
        cooldown: Duration::from_secs(30),
        honor_retry_after_max: Duration::from_secs(2),
    };
    assert_eq!(RoutingConfig::default(), expected);
    assert_eq!(ok(BASE).routing, expected);
    assert_eq!(ok(&routing("")).routing, expected);
    assert_eq!(ok("").routing, expected);
}

#[test]
fn every_routing_key_is_read() {
    let config = ok(&routing(
        r#"
retries = 0
backoff_base = "0ms"
backoff_max = "0ms"
cooldown_failures = 1
cooldown_error_ratio = 1
cooldown_min_requests = 1000000
cooldown_window = "1m"
cooldown = 5000
honor_retry_after_max = 0
"#,
    ));
    let expected = RoutingConfig {
        retries: 0,
        backoff_base: Duration::ZERO,
        backoff_max: Duration::ZERO,
        cooldown_failures: 1,
        cooldown_error_ratio: 1.0,
        cooldown_min_requests: 1_000_000,
        cooldown_window: Duration::from_secs(60),
        cooldown: Duration::from_secs(5),
        honor_retry_after_max: Duration::ZERO,
    };
    assert_eq!(config.routing, expected);
    let config = parse_env(
        &routing("retries = \"${RETRIES:-10}\"\ncooldown_error_ratio = \"${RATIO:-0.25}\""),
        &[],
    )
    .unwrap();
    assert_eq!(config.routing.retries, 10);
    assert_eq!(config.routing.cooldown_error_ratio, 0.25);
    let config = ok(&routing(
        "cooldown_error_ratio = 0.01\nbackoff_base = \"2s\"",
    ));
    assert_eq!(config.routing.cooldown_error_ratio, 0.01);
    assert_eq!(config.routing.backoff_base, Duration::from_secs(2));
}

#[test]
fn routing_errors() {
    let cases: &[(&str, &str, &str)] = &[
        ("retries = 11", "routing.retries", "must be between 0 and 10, got 11"),
        ("retries = -1", "routing.retries", "must be between 0 and 10, got -1"),
        ("backoff_base = -1", "routing.backoff_base", "must not be negative, got -1"),
        ("backoff_base = \"100ms\"\nbackoff_max = \"50ms\"", "routing.backoff_max", "must be at least backoff_base (100ms), got 50ms"),
        ("backoff_base = \"5s\"", "routing.backoff_base", "must be at most backoff_max (2s, the default), got 5s"),
        ("backoff_max = \"10ms\"", "routing.backoff_max", "must be at least backoff_base (50ms), got 10ms"),
        ("cooldown_failures = 0", "routing.cooldown_failures", "must be between 1 and 1000, got 0"),
        ("cooldown_error_ratio = 0", "routing.cooldown_error_ratio", "must be greater than 0 and at most 1, got 0"),
        ("cooldown_error_ratio = 0.0", "routing.cooldown_error_ratio", "must be greater than 0 and at most 1, got 0"),
        ("cooldown_error_ratio = 1.5", "routing.cooldown_error_ratio", "must be greater than 0 and at most 1, got 1.5"),
        ("cooldown_error_ratio = -0.5", "routing.cooldown_error_ratio", "must be greater than 0 and at most 1, got -0.5"),
        ("cooldown_error_ratio = nan", "routing.cooldown_error_ratio", "must be greater than 0 and at most 1, got NaN"),
        ("cooldown_error_ratio = \"half\"", "routing.cooldown_error_ratio", "expected a number like 0.5, got \"half\""),
        ("cooldown_error_ratio = true", "routing.cooldown_error_ratio", "expected a number like 0.5, got boolean true"),
        ("cooldown_min_requests = 0", "routing.cooldown_min_requests", "must be between 1 and 1000000, got 0"),
        ("cooldown_window = \"0s\"", "routing.cooldown_window", "must be greater than 0, got 0ms"),
        ("cooldown = 0", "routing.cooldown", "must be greater than 0, got 0ms"),
        ("honor_retry_after_max = \"1d\"", "routing.honor_retry_after_max", "expected a duration like \"250ms\", \"2s\", \"1m\" or \"1h\" (or an integer number of milliseconds), got \"1d\""),
    ];
    for (body, path, message) in cases {
        assert_eq!(one_error(&routing(body), path), *message, "for {body}");
    }
    assert_eq!(
        one_error(&format!("routing = 5\n{BASE}"), "routing"),
        "expected a table, got integer 5"
    );
    let message = one_error(&routing("retry = 3"), "routing.retry");
    assert!(
        message.starts_with("unknown field, expected one of `retries`, `backoff_base`"),
        "{message}"
    );
}

// === governance ===

#[test]
fn governance_hierarchy_and_limits() {
    let src = format!(
        r#"{BASE}
[[orgs]]
name = "acme"
limits = {{ budget = ["5usd/day", "100usd/month"], tpm = 1000, tpm_counts = "output" }}

[[teams]]
name = "ml"
org = "acme"
limits = {{ rpm = 60, models = {{ "gpt-4o-mini" = {{ rpm = 10 }} }} }}

[[users]]
name = "alice"
team = "ml"

[[keys]]
name = "alice-1"
key = "sk-alice-000001"
user = "alice"
models = ["gpt-4o-mini"]
expires = "2030-01-01"
limits = {{ max_parallel = 4, soft_budget = "1usd/week" }}
"#
    );
    let config = ok(&src);
    let acme = &config.orgs[0].limits;
    assert_eq!(acme.budgets.len(), 2);
    assert_eq!(acme.tpm, Some(1000));
    assert_eq!(
        acme.tpm_counts,
        tollgate_config::governance::TokenCount::Output
    );
    assert_eq!(config.teams[0].limits.models["gpt-4o-mini"].rpm, Some(10));
    assert_eq!(config.users[0].team.as_deref(), Some("ml"));
    let key = &config.keys[1];
    assert_eq!(key.owner.user.as_deref(), Some("alice"));
    assert_eq!(key.models.as_deref(), Some(&["gpt-4o-mini".to_owned()][..]));
    assert_eq!(key.expires_at, Some(1_893_456_000));
    assert_eq!(key.limits.max_parallel, Some(4));
    assert!(key.limits.budgets[0].soft);
}

#[test]
fn governance_errors_name_their_paths() {
    let src = format!(
        r#"{BASE}
[[teams]]
name = "ml"
org = "nowhere"
limits = {{ rpm = 0, budget = "5usd/year", models = {{ "gpt-9" = {{ rpm = 1 }} }} }}

[[keys]]
name = "k2"
key = "sk-k2-00000000"
team = "ml"
user = "bob"
models = ["gpt-9"]
expires = "soon"
"#
    );
    let mut errors = errors(&src);
    errors.sort();
    let paths: Vec<&str> = errors.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "keys[1]",
            "keys[1].expires",
            "keys[1].models[0]",
            "keys[1].user",
            "teams[0].limits.budget",
            "teams[0].limits.models.gpt-9",
            "teams[0].limits.rpm",
            "teams[0].org",
        ],
        "{errors:#?}"
    );
    assert!(
        errors[7].1.contains("unknown org \"nowhere\""),
        "{errors:#?}"
    );
}

#[test]
fn prices_store_and_admin() {
    let src = format!(
        r#"{BASE}
[[prices]]
model = "local/gpt-4o-mini"
input = "0.2usd"
output = 0.8

[store]
path = "/var/lib/tollgate"
flush_interval = "50ms"

[admin]
master_key = "${{MASTER:-}}"
"#
    );
    let config = ok(&src);
    assert_eq!(config.prices[0].input, 200_000_000);
    assert_eq!(config.prices[0].output, 800_000_000);
    assert_eq!(config.store.flush_interval, Duration::from_millis(50));
    assert!(config.admin.master_key.is_none());
    let with_key = parse_env(&src, &[("MASTER", "a-master-key-long-enough")]).unwrap();
    assert_eq!(
        with_key.admin.master_key.unwrap().expose(),
        "a-master-key-long-enough"
    );
    let short = parse_env(&src, &[("MASTER", "short")]);
    assert_eq!(
        errors_of(short),
        [(
            "admin.master_key".to_owned(),
            "must be at least 16 characters long".to_owned()
        )]
    );
}

// === guardrails ===

use tollgate_config::guardrails::{
    Detector, GuardAction, GuardrailProfile, GuardrailRule, GuardrailsConfig, RegexRule, WordList,
};

/// A rule as validation builds it, for comparing whole profiles.
fn rule(id: &str, detector: Detector, action: GuardAction, placeholder: &str) -> GuardrailRule {
    GuardrailRule {
        id: id.to_owned(),
        detector,
        action,
        input: true,
        output: true,
        placeholder: placeholder.to_owned(),
    }
}

fn phrases(list: &[&str]) -> Vec<String> {
    list.iter().map(|p| (*p).to_owned()).collect()
}

/// A file under the temp dir, unique to this process and `name`, removed on drop.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "tollgate-config-test-{}-{name}",
            std::process::id()
        ));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// BASE plus `body`, which holds guardrails sections (and may add entities).
fn guarded(body: &str) -> String {
    format!("{BASE}\n{body}\n")
}

#[test]
fn no_guardrails_section_means_no_profiles() {
    assert_eq!(ok(BASE).guardrails, GuardrailsConfig::default());
    assert_eq!(
        ok(&guarded("[guardrails]")).guardrails,
        GuardrailsConfig::default()
    );
    assert_eq!(ok(BASE).keys[0].guardrails, None);
    assert_eq!(Config::default().guardrails, GuardrailsConfig::default());
}

#[test]
fn guardrails_full_example() {
    let config = ok(&guarded(
        r#"
[guardrails]
default_profile = "default"

[[guardrails.profiles]]
name = "default"
allow = ["support@example.com", "  Acme Corp  "]
restore_masked = true

[[guardrails.profiles.rules]]
id = "cards"
detector = "payment_card"
action = "block"

[[guardrails.profiles.rules]]
id = "mails"
detector = "email"
action = "mask"
on = "input"

[[guardrails.profiles.rules]]
id = "phones"
detector = "phone"
action = "mask"
on = "output"
placeholder = "TEL_2"

[[guardrails.profiles.rules]]
id = "iban"
detector = "iban"
action = "audit"
on = "both"

[[guardrails.profiles.rules]]
id = "ssn"
detector = "us_ssn"
action = "mask"

[[guardrails.profiles.rules]]
id = "ips"
detector = "ip_address"
action = "audit"

[[guardrails.profiles.rules]]
id = "keys"
detector = "secrets"
action = "block"

[[guardrails.profiles.rules]]
id = "jailbreak"
detector = "prompt_injection"
action = "block"
on = "input"

[[guardrails.profiles.rules]]
id = "code-names.v2"
detector = "words"
action = "mask"
words = ["project falcon", " acme internal "]

[[guardrails.profiles.rules]]
id = "exact"
detector = "words"
action = "block"
words = ["Falcon"]
whole_word = false
case_sensitive = true
placeholder = "X"

[[guardrails.profiles.rules]]
id = "project-falcon"
detector = "regex"
action = "mask"
pattern = "(?i)\\bproject\\s{1,4}falcon\\b"

[[guardrails.profiles.rules]]
id = "a-very-long-rule-id-that-goes-past-thirty-two"
detector = "regex"
action = "audit"
pattern = "ORD-[0-9]{4,8}"

[[guardrails.profiles]]
name = "nothing"

[[orgs]]
name = "acme"
guardrails = "default"

[[teams]]
name = "ml"
org = "acme"
guardrails = "nothing"

[[users]]
name = "alice"
team = "ml"
guardrails = "default"

[[keys]]
name = "alice-1"
key = "sk-alice-000001"
user = "alice"
guardrails = "nothing"
"#,
    ));
    let words = |list: &[&str], whole_word, case_sensitive| {
        Detector::Words(WordList {
            phrases: phrases(list),
            whole_word,
            case_sensitive,
        })
    };
    let regex = |pattern: &str, max_len| {
        Detector::Regex(RegexRule {
            pattern: pattern.to_owned(),
            max_len,
        })
    };
    let expected = GuardrailsConfig {
        default_profile: Some("default".to_owned()),
        profiles: vec![
            GuardrailProfile {
                name: "default".to_owned(),
                allow: phrases(&["support@example.com", "Acme Corp"]),
                restore_masked: true,
                rules: vec![
                    rule("cards", Detector::PaymentCard, GuardAction::Block, "CARD"),
                    GuardrailRule {
                        output: false,
                        ..rule("mails", Detector::Email, GuardAction::Mask, "EMAIL")
                    },
                    GuardrailRule {
                        input: false,
                        ..rule("phones", Detector::Phone, GuardAction::Mask, "TEL_2")
                    },
                    rule("iban", Detector::Iban, GuardAction::Audit, "IBAN"),
                    rule("ssn", Detector::UsSsn, GuardAction::Mask, "SSN"),
                    rule("ips", Detector::IpAddress, GuardAction::Audit, "IP"),
                    rule("keys", Detector::Secrets, GuardAction::Block, "SECRET"),
                    GuardrailRule {
                        output: false,
                        ..rule(
                            "jailbreak",
                            Detector::PromptInjection,
                            GuardAction::Block,
                            "INJECTION",
                        )
                    },
                    rule(
                        "code-names.v2",
                        words(&["project falcon", "acme internal"], true, false),
                        GuardAction::Mask,
                        "CODE_NAMES_V2",
                    ),
                    rule(
                        "exact",
                        words(&["Falcon"], false, true),
                        GuardAction::Block,
                        "X",
                    ),
                    rule(
                        "project-falcon",
                        // "project" 7 + at most 4 spaces + "falcon" 6.
                        regex(r"(?i)\bproject\s{1,4}falcon\b", 17),
                        GuardAction::Mask,
                        "PROJECT_FALCON",
                    ),
                    rule(
                        "a-very-long-rule-id-that-goes-past-thirty-two",
                        regex("ORD-[0-9]{4,8}", 12),
                        GuardAction::Audit,
                        "A_VERY_LONG_RULE_ID_THAT_GOES_PA",
                    ),
                ],
            },
            GuardrailProfile {
                name: "nothing".to_owned(),
                allow: Vec::new(),
                restore_masked: false,
                rules: Vec::new(),
            },
        ],
    };
    assert_eq!(config.guardrails, expected);
    assert_eq!(
        config.guardrails.profile("nothing"),
        Some(&expected.profiles[1])
    );
    assert_eq!(
        "A_VERY_LONG_RULE_ID_THAT_GOES_PA".len(),
        32,
        "placeholders are cut at 32 characters"
    );
    assert_eq!(config.orgs[0].guardrails.as_deref(), Some("default"));
    assert_eq!(config.teams[0].guardrails.as_deref(), Some("nothing"));
    assert_eq!(config.users[0].guardrails.as_deref(), Some("default"));
    assert_eq!(config.keys[0].guardrails, None);
    assert_eq!(config.keys[1].guardrails.as_deref(), Some("nothing"));
    let names: Vec<&str> = config.guardrails.profiles[0]
        .rules
        .iter()
        .map(|r| r.detector.name())
        .collect();
    assert_eq!(
        names,
        [
            "payment_card",
            "email",
            "phone",
            "iban",
            "us_ssn",
            "ip_address",
            "secrets",
            "prompt_injection",
            "words",
            "words",
            "regex",
            "regex"
        ]
    );
    assert_eq!(
        [GuardAction::Block, GuardAction::Mask, GuardAction::Audit].map(GuardAction::as_str),
        ["block", "mask", "audit"]
    );
}

#[test]
fn guardrails_values_may_come_from_variables() {
    let config = parse_env(
        &guarded(
            r#"
[guardrails]
default_profile = "${PROFILE:-strict}"

[[guardrails.profiles]]
name = "strict"
restore_masked = "${RESTORE:-true}"

[[guardrails.profiles.rules]]
id = "names"
detector = "words"
action = "${ACTION:-mask}"
words = ["${SECRET_PROJECT:-project falcon}"]
case_sensitive = "${CASE:-false}"
"#,
        ),
        &[("SECRET_PROJECT", "blue harbor")],
    )
    .unwrap();
    let profile = &config.guardrails.profiles[0];
    assert_eq!(config.guardrails.default_profile.as_deref(), Some("strict"));
    assert!(profile.restore_masked);
    assert_eq!(profile.rules[0].action, GuardAction::Mask);
    assert_eq!(
        profile.rules[0].detector,
        Detector::Words(WordList {
            phrases: phrases(&["blue harbor"]),
            whole_word: true,
            case_sensitive: false,
        })
    );
}

#[test]
fn words_file_is_read_at_validation() {
    let file = TempFile::new(
        "deny.txt",
        "\u{feff}# code names\nproject falcon   \n\n   \nblue harbor\r\n#skipped\n  #kept: only a '#' in column 1 starts a comment\n\tindented phrase\t\n",
    );
    let config = ok(&guarded(&format!(
        r#"
[[guardrails.profiles]]
name = "p"

[[guardrails.profiles.rules]]
id = "deny"
detector = "words"
action = "block"
words = ["inline first"]
words_file = '{}'
"#,
        file.path()
    )));
    assert_eq!(
        config.guardrails.profiles[0].rules[0].detector,
        Detector::Words(WordList {
            phrases: phrases(&[
                "inline first",
                "project falcon",
                "blue harbor",
                "#kept: only a '#' in column 1 starts a comment",
                "indented phrase",
            ]),
            whole_word: true,
            case_sensitive: false,
        })
    );
    assert_eq!(config.guardrails.profiles[0].rules[0].placeholder, "DENY");
}

#[test]
fn words_file_alone_is_enough() {
    let file = TempFile::new("only.txt", "acme internal\n");
    let config = ok(&guarded(&format!(
        "[[guardrails.profiles]]\nname = \"p\"\n[[guardrails.profiles.rules]]\nid = \"w\"\ndetector = \"words\"\naction = \"audit\"\nwords_file = '{}'\n",
        file.path()
    )));
    let Detector::Words(list) = &config.guardrails.profiles[0].rules[0].detector else {
        panic!("not a word list: {config:?}");
    };
    assert_eq!(list.phrases, ["acme internal"]);
}

/// A profile "p" whose only rule is `body` (after `id = "r"`).
fn one_rule(body: &str) -> String {
    guarded(&format!(
        "[[guardrails.profiles]]\nname = \"p\"\n[[guardrails.profiles.rules]]\nid = \"r\"\n{body}\n"
    ))
}

const RULE: &str = "guardrails.profiles[0].rules[0]";

#[test]
fn guardrail_rule_errors() {
    let long = "x".repeat(1025);
    let longest = "x".repeat(1024);
    assert!(parse(&one_rule(&format!(
        "detector = \"words\"\naction = \"mask\"\nwords = [\"{longest}\"]"
    )))
    .is_ok());
    let unbounded = "pattern can match unboundedly long text: bound every repetition, e.g. `\\d{1,64}` instead of `\\d+`";
    let cases: &[(&str, &str, &str)] = &[
        ("action = \"mask\"", "detector", "missing (required)"),
        ("detector = \"email\"", "action", "missing (required)"),
        ("detector = \"credit_card\"\naction = \"mask\"", "detector", "expected one of \"email\", \"phone\", \"payment_card\", \"iban\", \"us_ssn\", \"ip_address\", \"secrets\", \"prompt_injection\", \"words\", \"regex\", got \"credit_card\""),
        ("detector = \"email\"\naction = \"deny\"", "action", "expected one of \"block\", \"mask\", \"audit\", got \"deny\""),
        ("detector = \"email\"\naction = \"mask\"\non = \"inbound\"", "on", "expected one of \"input\", \"output\", \"both\", got \"inbound\""),
        ("detector = \"email\"\naction = \"mask\"\nplaceholder = \"card\"", "placeholder", "expected 1 to 32 upper-case letters, digits and '_' like \"CARD\", got \"card\""),
        ("detector = \"email\"\naction = \"mask\"\nplaceholder = \"\"", "placeholder", "expected 1 to 32 upper-case letters, digits and '_' like \"CARD\", got \"\""),
        ("detector = \"email\"\naction = \"mask\"\nplaceholder = \"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\"", "placeholder", "expected 1 to 32 upper-case letters, digits and '_' like \"CARD\", got \"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456\""),
        ("detector = \"email\"\naction = \"mask\"\nwords = [\"x\"]", "words", "not allowed for detector \"email\" (only for detector \"words\")"),
        ("detector = \"regex\"\naction = \"mask\"\npattern = \"x\"\nwhole_word = true", "whole_word", "not allowed for detector \"regex\" (only for detector \"words\")"),
        ("detector = \"phone\"\naction = \"mask\"\nwords_file = \"x.txt\"", "words_file", "not allowed for detector \"phone\" (only for detector \"words\")"),
        ("detector = \"secrets\"\naction = \"mask\"\ncase_sensitive = true", "case_sensitive", "not allowed for detector \"secrets\" (only for detector \"words\")"),
        ("detector = \"words\"\naction = \"mask\"\nwords = [\"x\"]\npattern = \"x\"", "pattern", "not allowed for detector \"words\" (only for detector \"regex\")"),
        ("detector = \"words\"\naction = \"mask\"", "words", "required for detector \"words\": give `words`, `words_file` or both"),
        ("detector = \"words\"\naction = \"mask\"\nwhole_word = false", "words", "required for detector \"words\": give `words`, `words_file` or both"),
        ("detector = \"words\"\naction = \"mask\"\nwords = []", "words", "must hold at least one phrase"),
        ("detector = \"words\"\naction = \"mask\"\nwords = \"falcon\"", "words", "expected an array of phrases like [\"project falcon\"], got \"falcon\""),
        ("detector = \"words\"\naction = \"mask\"\nwords = [\"a\", \"  \"]", "words[1]", "must not be empty or only whitespace"),
        ("detector = \"words\"\naction = \"mask\"\nwords = [\"a\", 7]", "words[1]", "expected a string, got integer 7"),
        ("detector = \"words\"\naction = \"mask\"\nwords = [\"a\"]\nwhole_word = \"yes\"", "whole_word", "expected true or false, got \"yes\""),
        ("detector = \"regex\"\naction = \"mask\"", "pattern", "required for detector \"regex\""),
        ("detector = \"regex\"\naction = \"mask\"\npattern = \"(abc\"", "pattern", "invalid regex at column 1: unclosed group"),
        ("detector = \"regex\"\naction = \"mask\"\npattern = '\\p{L}{1,4}'", "pattern", "invalid regex at column 1: Unicode not allowed here"),
        ("detector = \"regex\"\naction = \"mask\"\npattern = \"a{0,3}\"", "pattern", "pattern can match empty text"),
        ("detector = \"regex\"\naction = \"mask\"\npattern = \"\"", "pattern", "pattern can match empty text"),
        ("detector = \"regex\"\naction = \"mask\"\npattern = '\\d+'", "pattern", unbounded),
        ("detector = \"regex\"\naction = \"mask\"\npattern = 'x(?:a|b.*)'", "pattern", unbounded),
        ("detector = \"regex\"\naction = \"mask\"\npattern = \"a{4097}\"", "pattern", "pattern can match up to 4097 bytes; the limit is 4096 (streams hold back this much text)"),
        ("detector = \"regex\"\naction = \"mask\"\npattern = '(?-u:[^\\x00-\\xFF])'", "pattern", "pattern can never match any text"),
        ("detector = \"regex\"\naction = \"mask\"\npattern = 5", "pattern", "expected a string, got integer 5"),
    ];
    for (body, key, message) in cases {
        let path = format!("{RULE}.{key}");
        assert_eq!(one_error(&one_rule(body), &path), *message, "for {body}");
    }
    assert_eq!(
        one_error(
            &one_rule(&format!(
                "detector = \"words\"\naction = \"mask\"\nwords = [\"{long}\"]"
            )),
            &format!("{RULE}.words[0]")
        ),
        "is 1025 bytes long; the limit is 1024 bytes"
    );
    // Both problems of `a*` are reported: fixing one alone would not make it valid.
    assert_eq!(
        errors(&one_rule(
            "detector = \"regex\"\naction = \"mask\"\npattern = \"a*\""
        )),
        [
            (
                format!("{RULE}.pattern"),
                "pattern can match empty text".to_owned()
            ),
            (format!("{RULE}.pattern"), unbounded.to_owned()),
        ]
    );
    // A bounded pattern of exactly the limit is fine, and its maximum length is kept.
    let config = ok(&one_rule(
        "detector = \"regex\"\naction = \"mask\"\npattern = \"a{1,4096}\"",
    ));
    assert_eq!(
        config.guardrails.profiles[0].rules[0].detector,
        Detector::Regex(RegexRule {
            pattern: "a{1,4096}".to_owned(),
            max_len: 4096
        })
    );
}

#[test]
fn words_file_errors() {
    let missing = std::env::temp_dir().join(format!(
        "tollgate-config-test-{}-missing.txt",
        std::process::id()
    ));
    let missing = missing.to_str().unwrap();
    let message = one_error(
        &one_rule(&format!(
            "detector = \"words\"\naction = \"block\"\nwords_file = '{missing}'"
        )),
        &format!("{RULE}.words_file"),
    );
    assert_eq!(
        message,
        format!("cannot read {missing:?}: No such file or directory (os error 2)")
    );

    let comments = TempFile::new("comments.txt", "# nothing but comments\n\n");
    let body = format!(
        "detector = \"words\"\naction = \"block\"\nwords_file = '{}'",
        comments.path()
    );
    assert_eq!(
        one_error(&one_rule(&body), &format!("{RULE}.words_file")),
        "the file holds no phrases (blank lines and lines starting with '#' are skipped)"
    );
    assert_eq!(
        one_error(
            &one_rule(&format!("{body}\nwords = []")),
            &format!("{RULE}.words")
        ),
        "`words` and `words_file` hold no phrases; give at least one"
    );

    let long = TempFile::new(
        "long.txt",
        &format!("ok\n{}\nok\n{}\n", "y".repeat(1025), "z".repeat(2000)),
    );
    assert_eq!(
        one_error(
            &one_rule(&format!(
                "detector = \"words\"\naction = \"block\"\nwords_file = '{}'",
                long.path()
            )),
            &format!("{RULE}.words_file")
        ),
        format!(
            "{:?}: the phrases on lines 2, 4 are longer than 1024 bytes, the limit",
            long.path()
        )
    );
    assert_eq!(
        one_error(
            &one_rule("detector = \"words\"\naction = \"block\"\nwords_file = \"\""),
            &format!("{RULE}.words_file")
        ),
        "must name a file of phrases, one per line"
    );
}

#[test]
fn phrase_counts_are_limited() {
    let many: String = (0..100_001).map(|i| format!("w{i}\n")).collect();
    let file = TempFile::new("many.txt", &many);
    assert_eq!(
        one_error(
            &one_rule(&format!(
                "detector = \"words\"\naction = \"block\"\nwords_file = '{}'",
                file.path()
            )),
            &format!("{RULE}.words_file")
        ),
        "100001 phrases; the limit is 100000 in one rule (`words` and `words_file` together)"
    );
    // 100,000 in the file plus one inline is one too many too.
    let exactly: String = (0..100_000).map(|i| format!("w{i}\n")).collect();
    let file = TempFile::new("exactly.txt", &exactly);
    let body = format!(
        "detector = \"words\"\naction = \"block\"\nwords_file = '{}'",
        file.path()
    );
    assert!(parse(&one_rule(&body)).is_ok());
    assert_eq!(
        one_error(
            &one_rule(&format!("{body}\nwords = [\"one more\"]")),
            &format!("{RULE}.words_file")
        ),
        "100001 phrases; the limit is 100000 in one rule (`words` and `words_file` together)"
    );

    let items: Vec<String> = (0..100_001).map(|i| format!("\"a{i}\"")).collect();
    let allow = format!(
        "[[guardrails.profiles]]\nname = \"p\"\nallow = [{}]\n",
        items.join(",")
    );
    assert_eq!(
        one_error(&guarded(&allow), "guardrails.profiles[0].allow"),
        "100001 phrases; the limit is 100000 in one profile's allow"
    );
}

#[test]
fn guardrails_errors_are_collected_with_their_paths() {
    let src = guarded(
        r#"
[guardrails]
default_profile = "strict"
mode = "on"

[[guardrails.profiles]]
name = "default"
allow = ["ok", ""]
restore_masked = "yes"
colour = "red"

[[guardrails.profiles.rules]]
id = "cards"
detector = "payment_card"
action = "block"
severity = 3

[[guardrails.profiles.rules]]
id = "cards"
detector = "regex"
action = "mask"
pattern = "[0-9]+"
words = ["x"]

[[guardrails.profiles.rules]]
id = "bad id"
detector = "words"
action = "mask"

[[guardrails.profiles]]
name = "default"

[[guardrails.profiles]]
name = "a b"

[[teams]]
name = "ml"
guardrails = "lenient"

[[keys]]
name = "k2"
key = "sk-k2-00000000"
guardrails = "default"

[[keys]]
name = "k3"
key = "sk-k3-00000000"
guardrails = "nope"
"#,
    );
    let errors = errors(&src);
    let p0 = "guardrails.profiles[0]";
    let expected: Vec<(String, String)> = [
        ("guardrails.mode", "unknown field, expected `default_profile` or `profiles`"),
        (&format!("{p0}.colour"), "unknown field, expected one of `name`, `allow`, `restore_masked`, `rules`"),
        (&format!("{p0}.allow[1]"), "must not be empty or only whitespace"),
        (&format!("{p0}.restore_masked"), "expected true or false, got \"yes\""),
        (&format!("{p0}.rules[0].severity"), "unknown field, expected one of `id`, `detector`, `action`, `on`, `placeholder`, `words`, `words_file`, `whole_word`, `case_sensitive`, `pattern`"),
        (&format!("{p0}.rules[1].id"), "duplicate rule id \"cards\" in this profile (also guardrails.profiles[0].rules[0])"),
        (&format!("{p0}.rules[1].words"), "not allowed for detector \"regex\" (only for detector \"words\")"),
        (&format!("{p0}.rules[1].pattern"), "pattern can match unboundedly long text: bound every repetition, e.g. `\\d{1,64}` instead of `\\d+`"),
        (&format!("{p0}.rules[2].id"), "expected a name made of letters, digits, '_', '.' and '-', got \"bad id\""),
        (&format!("{p0}.rules[2].words"), "required for detector \"words\": give `words`, `words_file` or both"),
        ("guardrails.profiles[1].name", "duplicate profile name \"default\" (also guardrails.profiles[0])"),
        ("guardrails.profiles[2].name", "expected a name made of letters, digits, '_', '.' and '-', got \"a b\""),
        ("guardrails.default_profile", "unknown guardrail profile \"strict\" (declared: default)"),
        ("teams[0].guardrails", "unknown guardrail profile \"lenient\" (declared: default)"),
        ("keys[2].guardrails", "unknown guardrail profile \"nope\" (declared: default)"),
    ]
    .iter()
    .map(|(p, m)| ((*p).to_owned(), (*m).to_owned()))
    .collect();
    assert_eq!(errors, expected);
}

#[test]
fn unknown_profiles_are_reported_where_they_are_named() {
    let src = guarded(
        r#"
[guardrails]
default_profile = "everyone"

[[orgs]]
name = "acme"
guardrails = "strict"

[[teams]]
name = "ml"
guardrails = "lenient"

[[users]]
name = "alice"
guardrails = "${ALICE_PROFILE:-pii}"

[[keys]]
name = "k2"
key = "sk-k2-00000000"
guardrails = "strict"
"#,
    );
    let none = "no guardrail profiles are declared";
    assert_eq!(
        errors(&src),
        [
            (
                "guardrails.default_profile".to_owned(),
                format!("unknown guardrail profile \"everyone\" ({none})")
            ),
            (
                "orgs[0].guardrails".to_owned(),
                format!("unknown guardrail profile \"strict\" ({none})")
            ),
            (
                "teams[0].guardrails".to_owned(),
                format!("unknown guardrail profile \"lenient\" ({none})")
            ),
            (
                "users[0].guardrails".to_owned(),
                format!("unknown guardrail profile \"pii\" ({none})")
            ),
            (
                "keys[1].guardrails".to_owned(),
                format!("unknown guardrail profile \"strict\" ({none})")
            ),
        ]
    );
    // A profile with some other mistake is still known by name: only the mistake is reported.
    let src = guarded(
        r#"
[[guardrails.profiles]]
name = "strict"
restore_masked = 1

[[keys]]
name = "k2"
key = "sk-k2-00000000"
guardrails = "strict"
"#,
    );
    assert_eq!(
        one_error(&src, "guardrails.profiles[0].restore_masked"),
        "expected true or false, got integer 1"
    );
    assert_eq!(
        one_error(
            &guarded("[[keys]]\nname = \"k2\"\nkey = \"sk-k2-00000000\"\nguardrails = 5"),
            "keys[1].guardrails"
        ),
        "expected a string, got integer 5"
    );
}

#[test]
fn guardrails_section_shapes() {
    assert_eq!(
        one_error(&format!("guardrails = 1\n{BASE}"), "guardrails"),
        "expected a table, got integer 1"
    );
    assert_eq!(
        one_error(
            &guarded("[guardrails]\nprofiles = \"p\""),
            "guardrails.profiles"
        ),
        "expected an array of tables ([[guardrails.profiles]] sections), got \"p\""
    );
    assert_eq!(
        one_error(
            &guarded("[[guardrails.profiles]]\nname = \"p\"\nrules = 3"),
            "guardrails.profiles[0].rules"
        ),
        "expected an array of tables ([[guardrails.profiles[0].rules]] sections), got integer 3"
    );
    assert_eq!(
        one_error(
            &guarded("[[guardrails.profiles]]\nallow = []"),
            "guardrails.profiles[0].name"
        ),
        "missing (required)"
    );
    assert_eq!(
        one_error(
            &guarded("[[guardrails.profiles]]\nname = \"p\"\n[[guardrails.profiles.rules]]\ndetector = \"email\"\naction = \"mask\""),
            "guardrails.profiles[0].rules[0].id"
        ),
        "missing (required)"
    );
}
