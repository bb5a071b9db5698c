//! Governance end to end: request, token, concurrency and per-model limits at every level of
//! the hierarchy, hard and soft budgets, under concurrency with two workers; the 401/403/429
//! bodies and headers; admin-API key lifecycle (create, revoke, rotate) reaching every core;
//! and the usage ledger agreeing with the mock's own count of served tokens, including for
//! streams the client or the upstream cut short.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use tollgate_engine::Gateway;
use tollgate_loadgen::mock::{MockServer, MockServerConfig};
use tollgate_protocol::mock::{FaultKind, FaultSpec, MockKnobs};
use tollgate_tests::*;

const MASTER: &str = "master-key-for-integration-tests";

/// Prompt tokens the mock counts for the prompt of [`body`] and [`chat_body`]: "Say hello to
/// the gateway." is 25 bytes, a quarter of that rounded up.
const MOCK_PROMPT_TOKENS: u64 = 7;

/// Completion tokens (chunks, when streamed) the mock generates by default.
const MOCK_COMPLETION_TOKENS: u64 = 16;

/// Nanodollars per prompt token of `gpt-4o-mini` as priced by [`governed_toml`] ($0.15 per 1M).
const INPUT_NANOS: u64 = 150;

/// Nanodollars per completion token of `gpt-4o-mini` ($0.60 per 1M).
const OUTPUT_NANOS: u64 = 600;

/// What one non-streamed request of the default mock costs (with `max_tokens` of at least
/// [`MOCK_COMPLETION_TOKENS`], as in `body(100)`).
const MOCK_REQUEST_NANOS: u64 =
    MOCK_PROMPT_TOKENS * INPUT_NANOS + MOCK_COMPLETION_TOKENS * OUTPUT_NANOS;

/// A gateway in front of an HTTP mock with priced `gpt-4o-mini`, the admin API on, and
/// `extra` TOML (orgs, teams, keys) appended.
fn governed_toml(upstream: &str, extra: &str) -> String {
    let more = format!(
        r#"
[[models]]
name = "other"
deployments = [{{ provider = "up", model = "gpt-4o-mini" }}]

[[prices]]
model = "gpt-4o-mini"
input = 0.15
output = 0.60

[admin]
master_key = "{MASTER}"

{extra}
"#
    );
    upstream_gateway_toml(upstream, "", &more)
}

fn mock() -> MockServer {
    mock_with(MockKnobs::default())
}

fn mock_with(knobs: MockKnobs) -> MockServer {
    MockServer::start(MockServerConfig {
        knobs,
        ..MockServerConfig::default()
    })
    .unwrap()
}

/// A gateway with `workers` workers in front of `up` (see [`governed_toml`]).
fn gateway(up: &MockServer, extra: &str, workers: usize) -> Gateway {
    start(config(&governed_toml(&up.base_url(), extra), &[]), workers)
}

fn body(max_tokens: u64) -> String {
    format!(
        r#"{{"model":"gpt-4o-mini","max_tokens":{max_tokens},"messages":[{{"role":"user","content":"Say hello to the gateway."}}]}}"#
    )
}

/// Fire `n` requests from `threads` threads (each on its own connections) and count statuses.
fn hammer(addr: std::net::SocketAddr, key: &str, body: &str, n: u64, threads: u64) -> (u64, u64) {
    let ok = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (ok, limited) = (ok.clone(), limited.clone());
            let (key, body) = (key.to_owned(), body.to_owned());
            std::thread::spawn(move || {
                for _ in 0..n / threads {
                    let r = post(addr, "/v1/chat/completions", Some(&key), &body);
                    match r.status {
                        200 => ok.fetch_add(1, Ordering::Relaxed),
                        429 => limited.fetch_add(1, Ordering::Relaxed),
                        s => panic!("unexpected {s}: {}", r.text()),
                    };
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    (ok.load(Ordering::Relaxed), limited.load(Ordering::Relaxed))
}

fn admin(addr: std::net::SocketAddr, method: &str, path: &str, body: Option<&str>) -> Response {
    let mut c = Client::connect(addr);
    let body = body.unwrap_or("");
    c.send(
        format!(
            "{method} {path} HTTP/1.1\r\nhost: t\r\nauthorization: Bearer {MASTER}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    c.read_response()
}

#[test]
fn rpm_never_over_admits_across_two_workers() {
    let up = mock();
    let toml = governed_toml(
        &up.base_url(),
        r#"
[[keys]]
name = "rpm"
key = "sk-tollgate-rpm"
limits = { rpm = 50 }
"#,
    );
    let gw = start(config(&toml, &[]), 2);
    let (ok, limited) = hammer(gw.addr(), "sk-tollgate-rpm", &body(8), 120, 8);
    // Exactly the limit within the minute (unless the test straddles a minute boundary,
    // where a second window may admit more, never more than twice).
    assert!(
        ok == 50 || (ok > 50 && ok <= 100 && minute_rolled()),
        "ok={ok}"
    );
    assert_eq!(ok + limited, 120);
    assert_eq!(
        up.stats().requests(),
        ok,
        "every admitted request reached the upstream once"
    );

    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some("sk-tollgate-rpm"),
        &body(8),
    );
    if r.status == 429 {
        r.assert_error(429, "rate_limit_exceeded");
        assert_eq!(r.json()["error"]["type"], "requests");
        assert_eq!(r.header("x-ratelimit-limit-requests"), Some("50"));
        assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
        assert!(r
            .header("x-ratelimit-reset-requests")
            .unwrap()
            .ends_with('s'));
        let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
        assert_eq!(r.header("x-tollgate-limit-scope"), Some("key:rpm"));
    }
    gw.shutdown();
}

fn minute_rolled() -> bool {
    // Called right after a burst: if we are within a few seconds after a minute boundary the
    // burst may have straddled it.
    now_ms() / 1000 % 60 < 10
}

#[test]
fn team_budget_never_over_admits_and_ledger_matches_the_mock() {
    let up = mock();
    // Worst case per request at $0.15/$0.60 per 1M: prompt estimate (body/4 tokens) plus 100
    // output tokens. The budget fits a known number of worst cases.
    let b = body(100);
    let input = (b.len() as u64).div_ceil(4);
    let worst = input * INPUT_NANOS + 100 * OUTPUT_NANOS;
    let fits = 25u64;
    let budget_nanos = worst * fits;
    let toml = governed_toml(
        &up.base_url(),
        &format!(
            r#"
[[teams]]
name = "ml"
limits = {{ budget = "{}usd/total" }}

[[keys]]
name = "k1"
key = "sk-tollgate-k1"
team = "ml"
"#,
            tollgate_config::governance::format_usd(budget_nanos)
        ),
    );
    let gw = start(config(&toml, &[]), 2);
    // Concurrency: 8 threads, with many requests in flight at once. Reservations are taken
    // before the call, so admissions can never exceed what worst-case costs fit...
    let (ok, limited) = hammer(gw.addr(), "sk-tollgate-k1", &b, 400, 8);
    assert_eq!(ok + limited, 400);
    // ...and after settling to actual (smaller) usage more requests fit, but the spend
    // never passes the budget.
    assert!(ok >= fits, "at least the worst-case count fits: {ok}");
    assert!(limited > 0, "the budget ran out");
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some("sk-tollgate-k1"),
        &b,
    );
    r.assert_error(429, "budget_exceeded");
    assert_eq!(r.json()["error"]["type"], "insufficient_quota");
    assert_eq!(r.header("x-tollgate-limit-scope"), Some("team:ml"));
    assert!(r.header("x-tollgate-budget-limit-usd").is_some());

    // The ledger: every served request's tokens, equal to what the mock says it served.
    std::thread::sleep(Duration::from_millis(300));
    let spend = admin(gw.addr(), "GET", "/admin/spend?scope=team&name=ml", None);
    assert_eq!(spend.status, 200, "{}", spend.text());
    let row = &spend.json()["data"][0];
    let stats = up.stats();
    assert_eq!(row["requests"].as_u64().unwrap(), ok + limited + 1);
    assert_eq!(row["input_tokens"].as_u64().unwrap(), stats.prompt_tokens());
    assert_eq!(
        row["output_tokens"].as_u64().unwrap(),
        stats.completion_tokens()
    );
    let cost = row["cost_nanos"].as_u64().unwrap();
    assert!(cost <= budget_nanos, "spent {cost} of {budget_nanos}");
    assert_eq!(stats.requests(), ok);
    gw.shutdown();
}

#[test]
fn allow_lists_expiry_and_unknown_keys() {
    let up = mock();
    let toml = governed_toml(
        &up.base_url(),
        r#"
[[keys]]
name = "narrow"
key = "sk-tollgate-narrow"
models = ["other"]

[[keys]]
name = "old"
key = "sk-tollgate-old"
expires = "2001-01-01"
"#,
    );
    let gw = start(config(&toml, &[]), 1);
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some("sk-tollgate-narrow"),
        &body(8),
    );
    r.assert_error(403, "model_not_allowed");
    assert_eq!(r.json()["error"]["param"], "model");
    assert_eq!(r.json()["error"]["type"], "permission_error");
    let other = body(8).replace("gpt-4o-mini", "other");
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some("sk-tollgate-narrow"),
        &other,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some("sk-tollgate-old"),
        &body(8),
    );
    r.assert_error(401, "key_expired");
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some("sk-nobody-at-all"),
        &body(8),
    );
    r.assert_error(401, "invalid_api_key");
    let r = post(gw.addr(), "/v1/chat/completions", None, &body(8));
    r.assert_error(401, "invalid_api_key");
    assert_eq!(up.stats().requests(), 1);
    gw.shutdown();
}

#[test]
fn admin_keys_revoke_and_rotate_reach_every_core() {
    let up = mock();
    let toml = governed_toml(&up.base_url(), "[[teams]]\nname = \"ml\"\n");
    let gw = start(config(&toml, &[]), 2);
    let addr = gw.addr();

    // The admin API needs the master key.
    let mut c = Client::connect(addr);
    c.send(b"GET /admin/keys HTTP/1.1\r\nhost: t\r\nauthorization: Bearer wrong\r\n\r\n");
    c.read_response().assert_error(401, "invalid_master_key");

    let created = admin(
        addr,
        "POST",
        "/admin/keys",
        Some(r#"{"name":"svc","team":"ml","limits":{"budget":"5usd/month","rpm":1000}}"#),
    );
    assert_eq!(created.status, 201, "{}", created.text());
    let secret = created.json()["key"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("sk-tg-"));
    assert_eq!(created.json()["limits"]["budget"][0], "5usd/month");
    // Listing never shows the secret.
    let list = admin(addr, "GET", "/admin/keys", None);
    assert!(!list.text().contains(&secret));
    assert_eq!(
        list.json()["data"][0]["display"].as_str().unwrap().len(),
        13
    );

    // Usable on every core within a reconcile interval.
    wait_until(|| {
        (0..6).all(|_| post(addr, "/v1/chat/completions", Some(&secret), &body(8)).status == 200)
    });

    // Bad admin input names the field.
    let bad = admin(addr, "POST", "/admin/keys", Some(r#"{"team":"nope"}"#));
    bad.assert_error(400, "invalid_request");
    assert_eq!(bad.json()["error"]["param"], "team");
    let bad = admin(
        addr,
        "POST",
        "/admin/keys",
        Some(r#"{"limits":{"rpm":"x"}}"#),
    );
    assert_eq!(bad.json()["error"]["param"], "limits.rpm");

    // Rotate with a grace period: both secrets work, then revoke: neither does.
    let rotated = admin(
        addr,
        "POST",
        "/admin/keys/svc/rotate",
        Some(r#"{"grace":"1h"}"#),
    );
    assert_eq!(rotated.status, 200, "{}", rotated.text());
    let new_secret = rotated.json()["key"].as_str().unwrap().to_owned();
    wait_until(|| {
        (0..6)
            .all(|_| post(addr, "/v1/chat/completions", Some(&new_secret), &body(8)).status == 200)
    });
    assert_eq!(
        post(addr, "/v1/chat/completions", Some(&secret), &body(8)).status,
        200,
        "old secret still valid in its grace period"
    );
    let revoked = admin(addr, "POST", "/admin/keys/svc/revoke", None);
    assert_eq!(revoked.status, 200);
    wait_until(|| {
        (0..6).all(|_| {
            let r = post(addr, "/v1/chat/completions", Some(&new_secret), &body(8));
            r.status == 401 && r.error_code().as_deref() == Some("key_revoked")
        })
    });

    // Keys from the config file are read-only here.
    let declared = admin(addr, "DELETE", "/admin/keys/nope", None);
    declared.assert_error(404, "not_found");
    gw.shutdown();
}

fn wait_until(mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while !f() {
        assert!(Instant::now() < deadline, "condition not met within 3s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// === limits, budgets and metering ===

/// Tokens per minute: each request takes its estimate (a quarter of the body plus
/// `max_tokens`) and settles to the usage the upstream reported, so exactly the number the
/// arithmetic predicts is admitted, then a 429 of type `tokens` names the key. One worker
/// keeps the count exact: a request is settled just after its answer is written, so with a
/// second worker the client's next request could be admitted before that.
#[test]
fn tpm_admits_by_estimate_and_gives_back_what_was_not_used() {
    within_one_window();
    let up = mock();
    let b = body(100);
    let need = (b.len() as u64).div_ceil(4) + 100;
    let used = MOCK_PROMPT_TOKENS + MOCK_COMPLETION_TOKENS;
    // After four settled requests one more estimate fits, after five it does not. Without
    // the unused part of each estimate given back, only one request would fit.
    let tpm = need + 4 * used + used / 2;
    let gw = gateway(
        &up,
        &format!(
            r#"
[[keys]]
name = "tpm"
key = "sk-tollgate-tpm"
limits = {{ tpm = {tpm}, tpm_counts = "total" }}
"#
        ),
        1,
    );
    assert_eq!(
        statuses(gw.addr(), "sk-tollgate-tpm", &b, 7),
        [200, 200, 200, 200, 200, 429, 429]
    );
    // The premise of the arithmetic: the mock served exactly `used` tokens a request.
    assert_eq!(
        up.stats().prompt_tokens() + up.stats().completion_tokens(),
        5 * used
    );

    let r = chat(gw.addr(), "sk-tollgate-tpm", &b);
    let remaining = assert_limited(&r, "tokens", "tokens", "key:tpm", tpm);
    assert_eq!(remaining, tpm - 5 * used);
    assert!(
        r.text().contains(&format!("requested {need}")),
        "{}",
        r.text()
    );

    // A request whose estimate alone is over the limit is told to shrink, not to wait.
    let r = chat(gw.addr(), "sk-tollgate-tpm", &body(tpm));
    assert_limited(&r, "tokens", "tokens", "key:tpm", tpm);
    assert!(r.text().contains("Request too large"), "{}", r.text());
    assert_eq!(up.stats().requests(), 5);
    gw.shutdown();
}

/// `max_parallel`: of six simultaneous requests to a slow upstream exactly two run, the rest
/// get 429 `parallel_requests`; the slots come back after successes, upstream errors and
/// clients that leave before their answer.
#[test]
fn max_parallel_admits_exactly_the_limit_and_releases_on_every_end() {
    let up = mock_with(MockKnobs {
        latency: Duration::from_millis(250),
        ..MockKnobs::default()
    });
    let gw = gateway(
        &up,
        r#"
[[keys]]
name = "par"
key = "sk-tollgate-par"
limits = { max_parallel = 2 }

[[models]]
name = "boom"
deployments = [{ provider = "up", model = "mock-error-500" }]

[routing]
retries = 0
"#,
        2,
    );
    let addr = gw.addr();
    let key = "sk-tollgate-par";
    let expect_two_of_six = || {
        let answers = burst(addr, key, &body(8), 6);
        assert_eq!(count(&answers, 200), 2, "{answers:?}");
        assert_eq!(count(&answers, 429), 4, "{answers:?}");
        for r in answers.iter().filter(|r| r.status == 429) {
            assert_limited(r, "parallel_requests", "parallel", "key:par", 2);
            assert_eq!(r.header("x-ratelimit-remaining-parallel"), Some("0"));
            assert_eq!(r.header("retry-after"), Some("1"));
        }
    };
    expect_two_of_six();
    assert_eq!(up.stats().requests(), 2);
    // A slot is released when the request is settled, just after its answer is written: the
    // ledger record (written after settlement) says it happened.
    wait_for_usage(addr, "par", 6);

    // Upstream errors: both run (the two slots are free), both release.
    let boom = body(8).replace("gpt-4o-mini", "boom");
    let answers = burst(addr, key, &boom, 2);
    assert_eq!(count(&answers, 500), 2, "{answers:?}");
    wait_for_usage(addr, "par", 8);

    // Clients that leave before the answer.
    let gone: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&post_bytes("/v1/chat/completions", Some(key), &body(8)))
                .unwrap();
            s
        })
        .collect();
    drop(gone);
    wait_for_usage(addr, "par", 10);

    expect_two_of_six();
    gw.shutdown();
}

/// A per-model limit applies to that model only, and the refusal names it.
#[test]
fn per_model_rpm_limits_that_model_only() {
    within_one_window();
    let up = mock();
    let gw = gateway(
        &up,
        r#"
[[teams]]
name = "ml"
limits = { models = { "gpt-4o-mini" = { rpm = 3 } } }

[[keys]]
name = "k"
key = "sk-tollgate-k"
team = "ml"
"#,
        2,
    );
    let key = "sk-tollgate-k";
    assert_eq!(statuses(gw.addr(), key, &body(8), 4), [200, 200, 200, 429]);
    let r = chat(gw.addr(), key, &body(8));
    let remaining = assert_limited(&r, "requests", "requests", "team:ml model gpt-4o-mini", 3);
    assert_eq!(remaining, 0);

    let other = body(8).replace("gpt-4o-mini", "other");
    for _ in 0..5 {
        let r = chat(gw.addr(), key, &other);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(up.stats().requests(), 3 + 5);
    gw.shutdown();
}

/// Every level of key > user > team > org must pass: a tight org refuses even when the
/// levels below it are generous, and the refusal names the org.
#[test]
fn the_tightest_level_refuses_and_is_named() {
    within_one_window();
    let up = mock();
    let gw = gateway(
        &up,
        r#"
[[orgs]]
name = "acme"
limits = { rpm = 2 }

[[teams]]
name = "ml"
org = "acme"
limits = { rpm = 1000 }

[[users]]
name = "ana"
team = "ml"
limits = { rpm = 1000 }

[[keys]]
name = "k"
key = "sk-tollgate-k"
user = "ana"
limits = { rpm = 1000 }
"#,
        2,
    );
    assert_eq!(
        statuses(gw.addr(), "sk-tollgate-k", &body(8), 3),
        [200, 200, 429]
    );
    let r = chat(gw.addr(), "sk-tollgate-k", &body(8));
    let remaining = assert_limited(&r, "requests", "requests", "org:acme", 2);
    assert_eq!(remaining, 0);
    assert_eq!(up.stats().requests(), 2);

    // The refused requests are on the ledger with the whole chain and no spend.
    let records = wait_for_usage(gw.addr(), "k", 4);
    let refused: Vec<&Value> = records.iter().filter(|r| r["status"] == 429).collect();
    assert_eq!(refused.len(), 2);
    for r in refused {
        assert_eq!(
            (&r["user"], &r["team"], &r["org"]),
            (
                &Value::from("ana"),
                &Value::from("ml"),
                &Value::from("acme")
            )
        );
        assert_eq!(r["cost"], 0);
    }
    gw.shutdown();
}

/// A soft budget never refuses; crossing it raises one alert (not one per request after it)
/// naming the scope and the budget.
#[test]
fn soft_budget_alerts_once_and_never_refuses() {
    let up = mock();
    // Crossed by the third request.
    let soft = 2 * MOCK_REQUEST_NANOS + MOCK_REQUEST_NANOS / 2;
    let budget = format!("{}usd/total", tollgate_config::governance::format_usd(soft));
    let gw = gateway(
        &up,
        &format!(
            r#"
[[keys]]
name = "soft"
key = "sk-tollgate-soft"
limits = {{ soft_budget = "{budget}" }}
"#
        ),
        2,
    );
    for _ in 0..6 {
        let r = chat(gw.addr(), "sk-tollgate-soft", &body(100));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    wait_for_usage(gw.addr(), "soft", 6);
    // Alerts are written with the usage records: by now every one there will be is stored.
    let alerts = admin(gw.addr(), "GET", "/admin/alerts", None);
    assert_eq!(alerts.status, 200, "{}", alerts.text());
    let data = alerts.json()["data"].as_array().unwrap().clone();
    assert_eq!(data.len(), 1, "{data:?}");
    let alert = &data[0];
    assert_eq!(alert["scope"], "key");
    assert_eq!(alert["name"], "soft");
    assert_eq!(alert["model"], Value::Null);
    assert_eq!(alert["budget"], budget.as_str());
    assert_eq!(alert["limit"], soft);
    assert_eq!(alert["committed"], 3 * MOCK_REQUEST_NANOS);

    let spend = admin(gw.addr(), "GET", "/admin/spend?scope=key&name=soft", None);
    assert_eq!(
        spend.json()["data"][0]["cost_nanos"],
        6 * MOCK_REQUEST_NANOS
    );
    gw.shutdown();
}

/// A client that leaves mid-stream is still charged: the ledger gets one record for the
/// request with the output forwarded before the gateway saw it leave, estimated (the usage
/// event never came) and with the status the client got (200).
#[test]
fn client_leaving_mid_stream_is_charged_for_the_output_it_was_sent() {
    let up = mock_with(MockKnobs {
        chunk_delay: Duration::from_millis(20),
        ..MockKnobs::default()
    });
    let gw = gateway(&up, "[[keys]]\nname = \"s\"\nkey = \"sk-tollgate-s\"\n", 1);
    let b = chat_body("gpt-4o-mini", true);
    let first = first_event_then_leave(gw.addr(), "sk-tollgate-s", &b);
    assert!(first.contains("chat.completion.chunk"), "{first}");

    let records = wait_for_usage(gw.addr(), "s", 1);
    assert_eq!(records.len(), 1, "{records:?}");
    let r = &records[0];
    assert_eq!(r["status"], 200);
    assert_eq!(r["estimated"], true);
    assert_eq!(r["input_tokens"], (b.len() as u64).div_ceil(4));
    let output = r["output_tokens"].as_u64().unwrap();
    // At least the event the client read; fewer than the whole stream, which the gateway
    // stopped reading when the client left.
    assert!(
        (1..MOCK_COMPLETION_TOKENS).contains(&output),
        "output_tokens {output}"
    );
    assert_eq!(up.stats().requests(), 1);
    gw.shutdown();
}

/// An upstream stream that never reports usage (cut before its usage event) is charged by
/// the gateway's own count, flagged `estimated`, at the deployment's price.
#[test]
fn a_stream_without_usage_is_charged_by_count_and_flagged_estimated() {
    let metered = cut_stream_metered();
    let r = &metered.record;
    assert_eq!(r["status"], 200);
    assert_eq!(r["estimated"], true);
    assert_eq!(r["input_tokens"], metered.prompt_estimate);
    let output = r["output_tokens"].as_u64().unwrap();
    // Never less than the tokens the client was sent.
    assert!(output >= metered.content_events, "{r}");
    assert_eq!(
        r["cost"].as_u64().unwrap(),
        metered.prompt_estimate * INPUT_NANOS + output * OUTPUT_NANOS
    );
}

/// The counted output of a stream is the tokens it carried, as the mock served them.
#[test]
fn estimated_output_counts_tokens_not_events() {
    let metered = cut_stream_metered();
    assert_eq!(metered.content_events, metered.served);
    assert_eq!(
        metered.record["output_tokens"].as_u64().unwrap(),
        metered.served,
        "{}",
        metered.record
    );
}

/// A hard budget's 429 says which budget, what is left and when it resets; 401, 403 and 429
/// bodies all carry `message`, `type`, `code` and `param` (the field at fault, else null).
#[test]
fn refusal_bodies_are_complete_and_budget_refusals_name_the_budget() {
    let up = mock();
    let b = body(100);
    let worst = (b.len() as u64).div_ceil(4) * INPUT_NANOS + 100 * OUTPUT_NANOS;
    // Exactly one worst case: the first request fits, the second does not.
    let budget = format!("{}usd/day", tollgate_config::governance::format_usd(worst));
    let gw = gateway(
        &up,
        &format!(
            r#"
[[keys]]
name = "capped"
key = "sk-tollgate-capped"
limits = {{ budget = "{budget}" }}

[[keys]]
name = "narrow"
key = "sk-tollgate-narrow"
models = ["other"]
"#
        ),
        1,
    );
    let addr = gw.addr();
    assert_eq!(chat(addr, "sk-tollgate-capped", &b).status, 200);
    let r = chat(addr, "sk-tollgate-capped", &b);
    assert_error_body(&r, 429, "insufficient_quota", "budget_exceeded", None);
    assert!(r.text().contains(&budget), "{}", r.text());
    assert_eq!(r.header("x-tollgate-limit-scope"), Some("key:capped"));
    let usd = tollgate_config::governance::format_usd;
    assert_eq!(
        r.header("x-tollgate-budget-limit-usd"),
        Some(usd(worst).as_str())
    );
    assert_eq!(
        r.header("x-tollgate-budget-remaining-usd"),
        Some(usd(worst - MOCK_REQUEST_NANOS).as_str())
    );
    // A daily budget resets at the next UTC midnight.
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert_eq!(
        r.header("x-tollgate-budget-reset"),
        Some(format!("{retry}s").as_str())
    );
    let to_midnight = (86_400_000 - now_ms() % 86_400_000).div_ceil(1000);
    assert!(retry.abs_diff(to_midnight) <= 1, "{retry} vs {to_midnight}");

    let r = chat(addr, "sk-nobody-at-all", &b);
    assert_error_body(&r, 401, "invalid_request_error", "invalid_api_key", None);
    let r = post(addr, "/v1/chat/completions", None, &b);
    assert_error_body(&r, 401, "invalid_request_error", "invalid_api_key", None);
    let r = chat(addr, "sk-tollgate-narrow", &b);
    assert_error_body(
        &r,
        403,
        "permission_error",
        "model_not_allowed",
        Some("model"),
    );
    assert_eq!(up.stats().requests(), 1);
    gw.shutdown();
}

// === helpers for limits and metering ===

fn chat(addr: SocketAddr, key: &str, body: &str) -> Response {
    post(addr, "/v1/chat/completions", Some(key), body)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Rate windows are fixed UTC minutes. A test that counts admissions first waits, if the
/// minute is about to end, for the next one, so all its requests fall in one window.
fn within_one_window() {
    const NEEDED_MS: u64 = 2_000;
    let left = 60_000 - now_ms() % 60_000;
    if left < NEEDED_MS {
        std::thread::sleep(Duration::from_millis(left + 20));
    }
}

/// Assert an OpenAI error body: `status`, `error.type`, `error.code`, a non-empty
/// `error.message`, and `error.param` present (`param`, or null).
#[track_caller]
fn assert_error_body(r: &Response, status: u16, error_type: &str, code: &str, param: Option<&str>) {
    r.assert_error(status, code);
    let error = &r.json()["error"];
    assert!(
        !error["message"].as_str().unwrap_or_default().is_empty(),
        "{}",
        r.text()
    );
    assert_eq!(error["type"], error_type, "{}", r.text());
    assert_eq!(
        error.get("param"),
        Some(&Value::from(param)),
        "{}",
        r.text()
    );
}

/// Assert a 429 from a rate or concurrency limit: the error body with `error_type`, the
/// scope, `x-ratelimit-limit-<unit>` equal to `limit` and a `retry-after` (matching
/// `x-ratelimit-reset-<unit>` for windows). Returns `x-ratelimit-remaining-<unit>`.
#[track_caller]
fn assert_limited(r: &Response, error_type: &str, unit: &str, scope: &str, limit: u64) -> u64 {
    assert_error_body(r, 429, error_type, "rate_limit_exceeded", None);
    assert_eq!(r.header("x-tollgate-limit-scope"), Some(scope));
    let header = |name: &str| r.header(&format!("x-ratelimit-{name}-{unit}"));
    assert_eq!(header("limit"), Some(limit.to_string().as_str()));
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "retry-after {retry}");
    if unit != "parallel" {
        assert_eq!(header("reset"), Some(format!("{retry}s").as_str()));
    }
    header("remaining").unwrap().parse().unwrap()
}

/// Send `n` requests at once, each on its own connection, and collect the answers.
fn burst(addr: SocketAddr, key: &str, body: &str, n: usize) -> Vec<Response> {
    let start = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let start = start.clone();
            let (key, body) = (key.to_owned(), body.to_owned());
            std::thread::spawn(move || {
                let mut c = Client::connect(addr);
                start.wait();
                c.post("/v1/chat/completions", Some(&key), &body)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Send `n` requests one after the other and list their statuses.
fn statuses(addr: SocketAddr, key: &str, body: &str, n: usize) -> Vec<u16> {
    (0..n).map(|_| chat(addr, key, body).status).collect()
}

fn count(answers: &[Response], status: u16) -> usize {
    answers.iter().filter(|r| r.status == status).count()
}

/// The ledger's records for `key`, once it holds at least `n` of them.
fn wait_for_usage(addr: SocketAddr, key: &str, n: usize) -> Vec<Value> {
    let mut records = Vec::new();
    wait_until(|| {
        let r = admin(addr, "GET", "/admin/usage?limit=1000", None);
        assert_eq!(r.status, 200, "{}", r.text());
        records = r.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["key"] == key)
            .cloned()
            .collect();
        records.len() >= n
    });
    records
}

/// Send a streamed chat request, read until its first SSE event, then close the connection.
/// Returns what was read.
fn first_event_then_leave(addr: SocketAddr, key: &str, body: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&post_bytes("/v1/chat/completions", Some(key), body))
        .unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the first event");
        seen.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&seen).into_owned();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        if let Some(head_end) = text.find("\r\n\r\n") {
            if text[head_end + 4..].contains("\n\n") {
                return text;
            }
        }
    }
}

/// What the gateway metered for one stream the upstream cut before its usage event.
struct Metered {
    /// The request's ledger record.
    record: Value,
    /// The gateway's prompt estimate for the request body.
    prompt_estimate: u64,
    /// Events with content the client received.
    content_events: u64,
    /// Completion tokens the mock served.
    served: u64,
}

/// Stream a chat request from an upstream that cuts every stream halfway (so no usage event
/// ever comes) and return what the ledger and the client saw.
fn cut_stream_metered() -> Metered {
    let up = mock_with(MockKnobs {
        fault: Some(FaultSpec {
            kind: FaultKind::CutStream,
            rate: 1.0,
        }),
        ..MockKnobs::default()
    });
    let gw = gateway(&up, "[[keys]]\nname = \"s\"\nkey = \"sk-tollgate-s\"\n", 1);
    let b = chat_body("gpt-4o-mini", true);
    let r = chat(gw.addr(), "sk-tollgate-s", &b);
    assert_eq!(r.status, 200, "{}", r.text());
    let events = sse_data(&r.body);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(
        last.get("error").is_some(),
        "ends with an error event: {last}"
    );
    let content_events = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|e| {
            e["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
        })
        .count() as u64;
    let records = wait_for_usage(gw.addr(), "s", 1);
    assert_eq!(records.len(), 1, "{records:?}");
    let served = up.stats().completion_tokens();
    gw.shutdown();
    Metered {
        record: records[0].clone(),
        prompt_estimate: (b.len() as u64).div_ceil(4),
        content_events,
        served,
    }
}
