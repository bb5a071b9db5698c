//! Config reload end to end: a gateway started from a file rereads it on `POST /admin/reload`
//! while clients keep sending (streaming and not) on kept-alive connections; not one request
//! may fail, and each reload's changes (models, keys) must be in force once it answers. An
//! invalid file is refused with every error and changes nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tollgate_engine::reload::ConfigSource;
use tollgate_engine::Gateway;
use tollgate_loadgen::mock::{MockServer, MockServerConfig};
use tollgate_protocol::mock::MockKnobs;
use tollgate_tests::*;

const MASTER: &str = "master-key-for-reload-tests";

/// The config file: one upstream provider, `gpt-4o-mini`, the demo key; `variant` adds what
/// the reloads switch on and off (a model, a key) or breaks the file.
fn config_text(upstream: &str, store: &Path, variant: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[providers]]
name = "up"
kind = "openai"
base_url = "{upstream}/v1"

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "up", model = "gpt-4o-mini" }}]

[[keys]]
name = "demo"
key = "{DEMO_KEY}"

[admin]
master_key = "{MASTER}"

[store]
path = "{store}"
flush_interval = "50ms"

{variant}
"#,
        store = store.display()
    )
}

/// A model and a key that only the second version of the file has.
const EXTRA: &str = r#"
[[models]]
name = "extra"
deployments = [{ provider = "up", model = "gpt-4o-mini" }]

[[keys]]
name = "second"
key = "sk-tollgate-second"
"#;

/// Start a gateway whose reloads reread `path` (with the same overrides the test harness
/// applies at start).
fn start_from(path: &Path, workers: usize) -> Gateway {
    let load = {
        let path = path.to_owned();
        move || {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                tollgate_config::ConfigError::new(path.display().to_string(), e.to_string())
            })?;
            let mut config = tollgate_config::Config::from_toml_str(&text, &|_| None)?;
            config.apply_overrides(Some("127.0.0.1:0".parse().unwrap()), Some(workers));
            Ok(config)
        }
    };
    let first = load.clone();
    let config = first().expect("the first config is valid");
    let source: ConfigSource = Box::new(load);
    Gateway::start_with(config, Some(source)).expect("gateway starts")
}

fn reload(gw: &Gateway) -> Response {
    post(gw.addr(), "/admin/reload", Some(MASTER), "")
}

fn model_ids(gw: &Gateway) -> Vec<String> {
    let r = Client::connect(gw.addr()).get("/v1/models", Some(DEMO_KEY));
    assert_eq!(r.status, 200);
    r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

struct Files {
    dir: PathBuf,
    file: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = temp_store();
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tollgate.toml");
        Files { dir, file }
    }

    /// Replace the file atomically (as an editor or config manager would).
    fn write(&self, text: &str) {
        let tmp = self.dir.join("tollgate.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.file).unwrap();
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn reloads_under_load_fail_no_request_and_take_effect() {
    // Streams of 8 chunks 5 ms apart: many are in flight across each swap.
    let up = MockServer::start(MockServerConfig {
        knobs: MockKnobs {
            chunks: 8,
            chunk_delay: Duration::from_millis(5),
            ..MockKnobs::default()
        },
        ..MockServerConfig::default()
    })
    .unwrap();
    let files = Files::new();
    let store = files.dir.join("store");
    let base = config_text(&up.base_url(), &store, "");
    let extended = config_text(&up.base_url(), &store, EXTRA);
    files.write(&base);
    let gw = start_from(&files.file, 2);
    let addr = gw.addr();

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..8)
        .map(|i| {
            let (stop, done, failures) = (stop.clone(), done.clone(), failures.clone());
            std::thread::spawn(move || {
                let mut client = Client::connect(addr);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let stream = (n + i).is_multiple_of(2);
                    let r = client.post(
                        "/v1/chat/completions",
                        Some(DEMO_KEY),
                        &chat_body("gpt-4o-mini", stream),
                    );
                    let ok = r.status == 200
                        && if stream {
                            let events = sse_data(r.text().as_bytes());
                            events.last().map(String::as_str) == Some("[DONE]")
                                && !events.iter().any(|e| e.contains("\"error\""))
                        } else {
                            r.json()["object"] == "chat.completion"
                        };
                    if !ok {
                        failures.lock().unwrap().push(format!(
                            "client {i} request {n}: {} {}",
                            r.status,
                            r.text()
                        ));
                    }
                    n += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    let reloads = 20;
    let mut before = 0;
    for round in 1..=reloads {
        let with_extra = round % 2 == 1;
        files.write(if with_extra { &extended } else { &base });
        let r = reload(&gw);
        assert_eq!(r.status, 200, "reload {round}: {}", r.text());
        let body = r.json();
        assert_eq!(body["generation"], round, "{body}");
        assert_eq!(body["not_applied"], serde_json::json!([]), "{body}");
        assert_eq!(body["models"], if with_extra { 2 } else { 1 }, "{body}");
        // In force as soon as the reload answered, on every core (fresh connections land on
        // either worker).
        for _ in 0..4 {
            let ids = model_ids(&gw);
            assert_eq!(ids.contains(&"extra".to_owned()), with_extra, "{ids:?}");
            let second = post(
                addr,
                "/v1/chat/completions",
                Some("sk-tollgate-second"),
                &chat_body(if with_extra { "extra" } else { "gpt-4o-mini" }, false),
            );
            assert_eq!(
                second.status,
                if with_extra { 200 } else { 401 },
                "round {round}: {}",
                second.text()
            );
        }
        // Load kept flowing through the swap.
        let now = done.load(Ordering::Relaxed);
        assert!(now > before, "no request completed during reload {round}");
        before = now;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {} requests failed, first: {}",
        failures.len(),
        done.load(Ordering::Relaxed),
        failures[0]
    );
    assert!(done.load(Ordering::Relaxed) >= 200, "too little load");
    // The upstream is the same in every version: pooled connections survive the swaps
    // instead of being reopened on every reload.
    let connections = up.stats().connections();
    assert!(
        connections < reloads,
        "{connections} upstream connections over {reloads} reloads"
    );
    gw.shutdown();
}

#[test]
fn an_invalid_file_is_refused_with_every_error_and_changes_nothing() {
    let up = MockServer::start(MockServerConfig::default()).unwrap();
    let files = Files::new();
    let store = files.dir.join("store");
    files.write(&config_text(&up.base_url(), &store, ""));
    let gw = start_from(&files.file, 1);

    // Two independent problems: a model on an unknown provider, a duration that is not one.
    let broken = config_text(
        &up.base_url(),
        &store,
        r#"
[[models]]
name = "extra"
deployments = [{ provider = "nowhere", model = "x" }]

[routing]
cooldown = "soon"
"#,
    );
    files.write(&broken);
    let r = reload(&gw);
    assert_eq!(r.status, 400, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error"]["code"], "invalid_config");
    let errors = body["error"]["errors"].as_array().unwrap();
    let paths: Vec<&str> = errors.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths.len(), 2, "{body}");
    assert!(
        paths.contains(&"models[1].deployments[0].provider"),
        "{paths:?}"
    );
    assert!(paths.contains(&"routing.cooldown"), "{paths:?}");
    assert_eq!(body["error"]["param"], paths[0]);

    // A TOML syntax error is one error with its line.
    files.write("[server\nlisten = 1");
    let r = reload(&gw);
    assert_eq!(r.status, 400);
    let errors = r.json()["error"]["errors"].clone();
    assert!(
        errors[0]["path"].as_str().unwrap().starts_with("line 1"),
        "{errors}"
    );

    // The old config still serves.
    assert_eq!(model_ids(&gw), ["gpt-4o-mini"]);
    let ok = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", false),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());

    // Fixed, it reloads as generation 1: refused attempts do not count.
    files.write(&config_text(&up.base_url(), &store, EXTRA));
    let r = reload(&gw);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["generation"], 1);
    assert_eq!(model_ids(&gw), ["gpt-4o-mini", "extra"]);

    // Two refusals, one success, in /metrics.
    let text = Client::connect(gw.addr()).get("/metrics", None).text();
    for line in [
        "tollgate_config_generation 1",
        "tollgate_config_reloads_total{result=\"success\"} 1",
        "tollgate_config_reloads_total{result=\"failure\"} 2",
        "tollgate_config_last_reload_successful 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    gw.shutdown();
}

#[test]
fn a_stored_key_keeps_its_guardrails_profile_or_the_reload_is_refused() {
    let up = MockServer::start(MockServerConfig::default()).unwrap();
    let files = Files::new();
    let store = files.dir.join("store");
    let strict = r#"
[[guardrails.profiles]]
name = "strict"
rules = [{ id = "emails", detector = "email", action = "block" }]
"#;
    files.write(&config_text(&up.base_url(), &store, strict));
    let gw = start_from(&files.file, 1);
    let created = post(
        gw.addr(),
        "/admin/keys",
        Some(MASTER),
        r#"{"name": "guarded", "guardrails": "strict"}"#,
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let secret = created.json()["key"].as_str().unwrap().to_owned();

    // Without the profile, the key's requests would go unscanned: refused.
    files.write(&config_text(&up.base_url(), &store, ""));
    let r = reload(&gw);
    assert_eq!(r.status, 400, "{}", r.text());
    let error = &r.json()["error"]["errors"][0];
    assert_eq!(error["path"], "guardrails.profiles");
    assert!(
        error["message"].as_str().unwrap().contains("key `guarded`"),
        "{error}"
    );

    // Still enforced.
    let blocked = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(&secret),
        &serde_json::json!({
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": "write to ann@example.com"}],
        })
        .to_string(),
    );
    assert_eq!(blocked.status, 400, "{}", blocked.text());
    gw.shutdown();

    // Nor does a gateway start from that file over this store.
    let text = std::fs::read_to_string(&files.file).unwrap();
    let config = tollgate_config::Config::from_toml_str(&text, &|_| None).unwrap();
    let refused = Gateway::start(config).unwrap_err().to_string();
    assert!(refused.contains("key `guarded`"), "{refused}");
}

#[test]
fn restart_only_settings_are_named_and_kept() {
    let up = MockServer::start(MockServerConfig::default()).unwrap();
    let files = Files::new();
    let store = files.dir.join("store");
    files.write(&config_text(&up.base_url(), &store, ""));
    let gw = start_from(&files.file, 1);
    let changed = config_text(&up.base_url(), &store, "").replace(
        "[server]\n",
        "[server]\nmetrics = false\nmax_body_bytes = 1024\n",
    );
    files.write(&changed);
    let r = reload(&gw);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["not_applied"],
        serde_json::json!(["server.metrics"])
    );
    // Metrics stay on; the body limit changed.
    assert_eq!(Client::connect(gw.addr()).get("/metrics", None).status, 200);
    let long = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "x".repeat(2000)}],
    });
    let big = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &long.to_string(),
    );
    assert_eq!(big.status, 413, "{}", big.text());
    gw.shutdown();
}

#[test]
fn reload_needs_the_master_key_and_post() {
    let up = MockServer::start(MockServerConfig::default()).unwrap();
    let files = Files::new();
    let store = files.dir.join("store");
    files.write(&config_text(&up.base_url(), &store, ""));
    let gw = start_from(&files.file, 1);
    post(gw.addr(), "/admin/reload", Some("wrong"), "").assert_error(401, "invalid_master_key");
    let get = Client::connect(gw.addr()).get("/admin/reload", Some(MASTER));
    assert_eq!(get.status, 405, "{}", get.text());
    gw.shutdown();

    // Started from a config value rather than a file: nothing to reread.
    let gw = start(
        config(&config_text(&up.base_url(), &temp_store(), ""), &[]),
        1,
    );
    reload(&gw).assert_error(409, "reload_unavailable");
    gw.shutdown();
}

#[test]
fn a_cooled_down_deployment_stays_cooled_down_across_a_reload() {
    let up = MockServer::start(MockServerConfig::default()).unwrap();
    let files = Files::new();
    let store = files.dir.join("store");
    // `pair` tries the failing deployment first; one failure ejects it for a minute.
    let pair = r#"
[[models]]
name = "pair"
strategy = "priority"
deployments = [
  { provider = "up", model = "mock-error-500", priority = 0 },
  { provider = "up", model = "gpt-4o-mini", priority = 1 },
]

[routing]
cooldown_failures = 1
cooldown = "60s"
"#;
    files.write(&config_text(&up.base_url(), &store, pair));
    let gw = start_from(&files.file, 1);
    let send = || {
        let r = post(
            gw.addr(),
            "/v1/chat/completions",
            Some(DEMO_KEY),
            &chat_body("pair", false),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    };
    send();
    let failed = up.stats().status_count(500);
    assert!(failed >= 1, "the first deployment was never tried");
    send();
    assert_eq!(up.stats().status_count(500), failed, "not cooled down");

    // An unrelated change: the cooldown carries over, the failing deployment is not retried.
    files.write(&config_text(
        &up.base_url(),
        &store,
        &format!("{pair}{EXTRA}"),
    ));
    assert_eq!(reload(&gw).status, 200);
    for _ in 0..5 {
        send();
    }
    assert_eq!(
        up.stats().status_count(500),
        failed,
        "cooldown lost on reload"
    );

    // The deployment's upstream model changed: nothing learnt about the old one applies.
    files.write(&config_text(
        &up.base_url(),
        &store,
        &pair.replace("mock-error-500", "mock-error-503"),
    ));
    assert_eq!(reload(&gw).status, 200);
    send();
    assert_eq!(
        up.stats().status_count(503),
        1,
        "the new deployment was not tried"
    );
    gw.shutdown();
}
