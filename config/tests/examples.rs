//! Every example config shipped in the repo (and every TOML block in REFERENCE.md) parses, both
//! with an empty environment and with the variables it mentions set.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tollgate_config::guardrails::{Detector, GuardAction, RegexRule};
use tollgate_config::{
    Config, IoDriver, ProviderConfig, ProviderKind, RoutingConfig, ServerConfig, Strategy, TlsRoots,
};

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

fn url_of(config: &Config, provider: &str) -> String {
    let provider = config.provider(provider).expect("provider exists");
    provider
        .base_url
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default()
}

fn secret_of(config: &Config, provider: &str) -> Option<String> {
    let provider = config.provider(provider).expect("provider exists");
    provider.api_key.as_ref().map(|key| key.expose().clone())
}

#[test]
fn providers_with_empty_env() {
    let config = parse_with(&read("examples/providers.toml"), &[]);
    let kinds: Vec<(&str, ProviderKind)> = config
        .providers
        .iter()
        .map(|p| (p.name.as_str(), p.kind))
        .collect();
    assert_eq!(
        kinds,
        [
            ("openai", ProviderKind::OpenAi),
            ("anthropic", ProviderKind::Anthropic),
            ("gemini", ProviderKind::Gemini),
            ("azure", ProviderKind::Azure),
            ("bedrock", ProviderKind::Bedrock),
            ("nowhere", ProviderKind::OpenAi),
        ]
    );
    assert!(config.providers.iter().all(|p| p.preset.is_none()));

    assert_eq!(url_of(&config, "openai"), "https://api.openai.com/v1");
    assert_eq!(secret_of(&config, "openai"), None);

    let anthropic = config.provider("anthropic").unwrap();
    assert_eq!(url_of(&config, "anthropic"), "https://api.anthropic.com");
    assert_eq!(secret_of(&config, "anthropic").as_deref(), Some("unset"));
    assert_eq!(anthropic.api_version.as_deref(), Some("2023-06-01"));

    let gemini = config.provider("gemini").unwrap();
    assert_eq!(
        url_of(&config, "gemini"),
        "https://generativelanguage.googleapis.com"
    );
    assert_eq!(secret_of(&config, "gemini").as_deref(), Some("unset"));
    assert_eq!(gemini.api_version, None);

    let azure = config.provider("azure").unwrap();
    assert_eq!(
        url_of(&config, "azure"),
        "https://example-resource.openai.azure.com"
    );
    assert_eq!(secret_of(&config, "azure").as_deref(), Some("unset"));
    assert_eq!(azure.api_version.as_deref(), Some("2024-10-21"));

    // BEDROCK_ENDPOINT unset: the endpoint is derived from the region.
    let bedrock = config.provider("bedrock").unwrap();
    assert_eq!(bedrock.region.as_deref(), Some("us-east-1"));
    assert_eq!(
        url_of(&config, "bedrock"),
        "https://bedrock-runtime.us-east-1.amazonaws.com"
    );
    assert!(bedrock.api_key.is_none());
    let aws = bedrock.aws.as_ref().expect("bedrock has AWS credentials");
    assert_eq!(aws.access_key_id.expose(), "unset");
    assert_eq!(aws.secret_access_key.expose(), "unset");
    assert!(aws.session_token.is_none());

    assert_eq!(url_of(&config, "nowhere"), "http://127.0.0.1:9/v1");

    let models: Vec<(&str, &str, &str)> = config
        .models
        .iter()
        .map(|m| {
            let d = &m.deployments[0];
            (m.name.as_str(), d.provider_name.as_str(), d.model.as_str())
        })
        .collect();
    assert_eq!(
        models,
        [
            ("gpt-4o-mini", "openai", "gpt-4o-mini"),
            ("claude-sonnet", "anthropic", "claude-sonnet-4-5"),
            ("gemini-flash", "gemini", "gemini-2.5-flash"),
            ("azure-gpt", "azure", "gpt-4o-mini"),
            (
                "bedrock-claude",
                "bedrock",
                "anthropic.claude-3-5-sonnet-20240620-v1:0"
            ),
            ("resilient", "nowhere", "gpt-4o-mini"),
        ]
    );
    let resilient = config.model("resilient").unwrap();
    assert_eq!(resilient.fallbacks, [0]);
    assert_eq!(resilient.fallback_names, ["gpt-4o-mini"]);
    assert!(resilient.context_fallbacks.is_empty());
    assert_eq!(resilient.strategy, Strategy::Weighted);
    assert_eq!(config.routing, RoutingConfig::default());
    assert_eq!(config.keys[0].key.expose(), "sk-tollgate-demo");
}

#[test]
fn providers_with_env_set() {
    let config = parse_with(
        &read("examples/providers.toml"),
        &[
            ("TOLLGATE_DEMO_KEY", "sk-from-the-environment"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:18000/v1"),
            ("OPENAI_API_KEY", "sk-openai-SECRET"),
            ("ANTHROPIC_BASE_URL", "http://127.0.0.1:18001"),
            ("ANTHROPIC_API_KEY", "sk-ant-SECRET"),
            ("GEMINI_BASE_URL", "http://127.0.0.1:18002"),
            ("GEMINI_API_KEY", "gemini-SECRET"),
            ("AZURE_OPENAI_ENDPOINT", "https://myres.openai.azure.com/"),
            ("AZURE_OPENAI_API_KEY", "azure-SECRET"),
            ("OPENAI_API_VERSION", "2025-01-01-preview"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCESS_KEY_ID", "AKIA-SECRET"),
            ("AWS_SECRET_ACCESS_KEY", "aws-SECRET"),
            ("AWS_SESSION_TOKEN", "session-SECRET"),
        ],
    );
    assert_eq!(url_of(&config, "openai"), "http://127.0.0.1:18000/v1");
    assert_eq!(
        secret_of(&config, "openai").as_deref(),
        Some("sk-openai-SECRET")
    );
    assert_eq!(url_of(&config, "anthropic"), "http://127.0.0.1:18001");
    assert_eq!(
        secret_of(&config, "anthropic").as_deref(),
        Some("sk-ant-SECRET")
    );
    assert_eq!(url_of(&config, "gemini"), "http://127.0.0.1:18002");
    assert_eq!(
        secret_of(&config, "gemini").as_deref(),
        Some("gemini-SECRET")
    );
    assert_eq!(url_of(&config, "azure"), "https://myres.openai.azure.com");
    assert_eq!(secret_of(&config, "azure").as_deref(), Some("azure-SECRET"));
    assert_eq!(
        config.provider("azure").unwrap().api_version.as_deref(),
        Some("2025-01-01-preview")
    );
    let bedrock = config.provider("bedrock").unwrap();
    assert_eq!(bedrock.region.as_deref(), Some("eu-west-1"));
    assert_eq!(
        url_of(&config, "bedrock"),
        "https://bedrock-runtime.eu-west-1.amazonaws.com"
    );
    let aws = bedrock.aws.as_ref().unwrap();
    assert_eq!(aws.access_key_id.expose(), "AKIA-SECRET");
    assert_eq!(aws.secret_access_key.expose(), "aws-SECRET");
    assert_eq!(
        aws.session_token.as_ref().map(|t| t.expose().as_str()),
        Some("session-SECRET")
    );
    assert_eq!(config.keys[0].key.expose(), "sk-from-the-environment");
    let debug = format!("{config:?}");
    assert!(!debug.contains("SECRET"), "{debug}");

    // The endpoint override wins over the derived one.
    let config = parse_with(
        &read("examples/providers.toml"),
        &[("BEDROCK_ENDPOINT", "http://127.0.0.1:18003")],
    );
    assert_eq!(url_of(&config, "bedrock"), "http://127.0.0.1:18003");
    assert_eq!(
        config.provider("bedrock").and_then(|p| p.region.as_deref()),
        Some("us-east-1")
    );
    assert_eq!(
        ProviderConfig::bedrock_endpoint("us-east-1"),
        "https://bedrock-runtime.us-east-1.amazonaws.com"
    );
}

#[test]
fn examples_load_from_disk() {
    // `load` uses the process environment; assert only what no variable can change.
    for file in [
        "examples/quickstart.toml",
        "examples/openai-compatible.toml",
        "examples/providers.toml",
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
    assert_eq!(blocks.len(), 6, "REFERENCE.md toml blocks");

    // Provider kinds, with an empty environment: placeholders and defaults fill everything in.
    let kinds = parse_with(&blocks[0], &[]);
    let kinds: Vec<(ProviderKind, String)> = kinds
        .providers
        .iter()
        .map(|p| {
            let url = p.base_url.as_ref().map(ToString::to_string);
            (p.kind, url.unwrap_or_default())
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (
                ProviderKind::Anthropic,
                "https://api.anthropic.com".to_owned()
            ),
            (
                ProviderKind::Azure,
                "https://example-resource.openai.azure.com".to_owned()
            ),
            (
                ProviderKind::Bedrock,
                "https://bedrock-runtime.us-east-1.amazonaws.com".to_owned()
            ),
            (
                ProviderKind::OpenAi,
                "https://api.groq.com/openai/v1".to_owned()
            ),
        ]
    );

    // The model fragments need a provider called "local".
    let local = "[[providers]]\nname = \"local\"\nkind = \"mock\"\n";
    let config = parse_with(&format!("{local}{}", blocks[1]), &[]);
    assert_eq!(config.models[0].deployments[0].provider_name, "local");
    let config = parse_with(&format!("{local}{}", blocks[2]), &[]);
    let chat = &config.models[0];
    assert_eq!(chat.strategy, Strategy::Priority);
    assert_eq!(chat.fallback_names, ["chat-large"]);
    assert_eq!(chat.context_fallbacks, [2]);
    assert_eq!(chat.deployments[0].timeout, Some(Duration::from_secs(2)));
    assert_eq!(
        (chat.deployments[1].priority, chat.deployments[1].weight),
        (1, 2)
    );

    // The [routing] block spells out the defaults.
    assert_eq!(
        parse_with(&blocks[3], &[]).routing,
        RoutingConfig::default()
    );

    // The [guardrails] block, with its defaults spelled out.
    let guarded = parse_with(&blocks[4], &[]);
    let guardrails = &guarded.guardrails;
    assert_eq!(guardrails.default_profile.as_deref(), Some("default"));
    let names: Vec<&str> = guardrails
        .profiles
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["default", "off"]);
    let rules: Vec<(&str, &str, &str, GuardAction, bool, bool)> = guardrails.profiles[0]
        .rules
        .iter()
        .map(|r| {
            let (id, detector, label) = (r.id.as_str(), r.detector.name(), r.placeholder.as_str());
            (id, detector, label, r.action, r.input, r.output)
        })
        .collect();
    assert_eq!(
        rules,
        [
            (
                "cards",
                "payment_card",
                "CARD",
                GuardAction::Block,
                true,
                true
            ),
            ("contacts", "email", "EMAIL", GuardAction::Mask, true, false),
            (
                "code-names",
                "words",
                "CODE_NAMES",
                GuardAction::Mask,
                true,
                true
            ),
            (
                "order-ids",
                "regex",
                "ORDER_IDS",
                GuardAction::Audit,
                true,
                true
            ),
        ]
    );
    assert_eq!(
        guardrails.profiles[0].rules[3].detector,
        Detector::Regex(RegexRule {
            pattern: r"\bORD-\d{4,8}\b".to_owned(),
            max_len: 12
        })
    );
    assert!(guardrails.profiles[1].rules.is_empty());
    assert_eq!(guarded.orgs[0].guardrails.as_deref(), Some("off"));

    let full = parse_with(
        &blocks[5],
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
    assert_eq!(full.routing, RoutingConfig::default());
    assert_eq!(full.models[0].strategy, Strategy::Weighted);
    assert_eq!(
        full.models[0]
            .deployments
            .iter()
            .map(|d| (d.weight, d.priority, d.timeout))
            .collect::<Vec<_>>(),
        [(1, 0, None), (1, 0, None)]
    );
}

#[test]
fn governance_example() {
    let config = parse_with(
        &read("examples/governance.toml"),
        &[
            ("UPSTREAM_BASE_URL", "http://127.0.0.1:18000/v1"),
            ("TOLLGATE_MASTER_KEY", "master-key-for-tests-0123456789"),
        ],
    );
    assert_eq!(config.prices.len(), 1);
    assert_eq!(config.prices[0].input, 150_000_000);
    assert_eq!(config.prices[0].output, 600_000_000);
    assert_eq!(
        config.governance.unknown_price,
        tollgate_config::UnknownPrice::Block
    );
    assert!(config.admin.master_key.is_some());
    assert_eq!(config.teams[0].org.as_deref(), Some("acme"));
    let key = |name: &str| config.keys.iter().find(|k| k.name == name).unwrap();
    assert_eq!(key("demo").owner.team.as_deref(), Some("bench"));
    assert_eq!(key("tiny").limits.budgets[0].amount, 1_000_000);
    assert_eq!(key("rpm").limits.rpm, Some(600));
    assert_eq!(key("rpm").key.expose(), "sk-tollgate-rpm");
    let org = &config.orgs[0].limits;
    assert_eq!(org.budgets.len(), 2);
    assert!(org.budgets[1].soft);
}

#[test]
fn guardrails_example() {
    use tollgate_config::guardrails::{Detector, GuardAction};

    let config = parse_with(
        &read("examples/guardrails.toml"),
        &[
            ("UPSTREAM_BASE_URL", "http://127.0.0.1:18000/v1"),
            ("TOLLGATE_MASTER_KEY", "master-key-for-tests-0123456789"),
        ],
    );
    assert_eq!(config.keys[0].key.expose(), "sk-tollgate-demo");
    assert_eq!(config.models[0].name, "gpt-4o-mini");
    let g = &config.guardrails;
    assert_eq!(g.default_profile.as_deref(), Some("default"));
    let profile = &g.profiles[0];
    assert!(profile.restore_masked);
    let rules: Vec<(&str, &Detector, GuardAction, bool, bool)> = profile
        .rules
        .iter()
        .map(|r| (r.id.as_str(), &r.detector, r.action, r.input, r.output))
        .collect();
    assert_eq!(
        rules,
        [
            (
                "prompt-injection",
                &Detector::PromptInjection,
                GuardAction::Block,
                true,
                true
            ),
            (
                "payment-cards",
                &Detector::PaymentCard,
                GuardAction::Block,
                true,
                true
            ),
            ("emails", &Detector::Email, GuardAction::Mask, true, true),
            ("phones", &Detector::Phone, GuardAction::Mask, true, true),
            (
                "secrets",
                &Detector::Secrets,
                GuardAction::Block,
                true,
                true
            ),
        ]
    );
}

/// Every file in config/examples has a test above that parses it.
#[test]
fn every_example_is_tested() {
    let source = include_str!("examples.rs");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            source.contains(&format!("\"examples/{name}\"")),
            "config/examples/{name} is not parsed by any test"
        );
    }
}

/// Every example serves `/metrics` (the default), none writes an access log unasked, and each
/// takes the master key for `/admin` and `/ui` from `TOLLGATE_MASTER_KEY`.
#[test]
fn every_example_serves_metrics() {
    let env = [
        ("UPSTREAM_BASE_URL", "http://127.0.0.1:18000/v1"),
        ("TOLLGATE_MASTER_KEY", "master-key-for-tests-0123456789"),
    ];
    for file in [
        "examples/quickstart.toml",
        "examples/openai-compatible.toml",
        "examples/providers.toml",
        "examples/governance.toml",
        "examples/guardrails.toml",
    ] {
        let config = parse_with(&read(file), &env);
        assert!(config.server.metrics, "{file}");
        assert_eq!(
            config.server.access_log,
            tollgate_config::AccessLog::Off,
            "{file}"
        );
        let master = config
            .admin
            .master_key
            .as_ref()
            .map(|k| k.expose().as_str());
        assert_eq!(master, Some("master-key-for-tests-0123456789"), "{file}");
    }
}
