//! `tollgate_loadgen::run` in-process against the mock: counts agree with the mock's, open
//! loop keeps its schedule, streams yield TTFT/ITL, and every kind of failure is counted.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use tollgate_loadgen::{run, LoadError, LoadOptions, MockKnobs, MockServer, MockServerConfig};

fn mock(knobs: MockKnobs) -> MockServer {
    MockServer::start(MockServerConfig {
        knobs,
        ..MockServerConfig::default()
    })
    .unwrap()
}

fn opts(mock: &MockServer) -> LoadOptions {
    LoadOptions {
        url: format!("http://{}/v1/chat/completions", mock.addr()),
        connections: 4,
        duration: Duration::from_secs(1),
        timeout: Duration::from_secs(5),
        ..LoadOptions::default()
    }
}

#[test]
fn closed_loop_counts_match_the_mock() {
    let mock = mock(MockKnobs::default());
    let report = run(LoadOptions {
        warmup: Duration::from_millis(200),
        headers: vec![("Authorization".into(), "Bearer sk-load".into())],
        ..opts(&mock)
    })
    .unwrap();
    assert!(report.requests > 0);
    assert!(report.warmup_requests > 0);
    assert_eq!(report.errors.total, 0, "{report}");
    assert_eq!(report.ok, report.requests);
    assert_eq!(
        mock.stats().requests(),
        report.requests + report.warmup_requests
    );
    assert_eq!(mock.stats().connections(), 4);
    assert_eq!(report.latency.count, report.requests);
    assert!(report.latency.p50_us > 0 && report.latency.p50_us <= report.latency.max_us);
    assert!(
        (0.9..2.0).contains(&report.duration_secs),
        "{}",
        report.duration_secs
    );
    assert!(report.requests_per_sec > 0.0);
    assert!(report.ttft.is_none());
    assert_eq!(
        mock.stats().last_authorization().as_deref(),
        Some("Bearer sk-load")
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["requests"], report.requests);
    assert_eq!(json["mode"], "closed");
}

#[test]
fn request_budget_stops_the_run() {
    let mock = mock(MockKnobs::default());
    let report = run(LoadOptions {
        requests: Some(250),
        duration: Duration::from_secs(30),
        threads: 2,
        ..opts(&mock)
    })
    .unwrap();
    assert_eq!(report.requests, 250);
    assert_eq!(report.ok, 250);
    assert_eq!(mock.stats().requests(), 250);
    assert!(report.duration_secs < 10.0);
}

#[test]
fn open_loop_keeps_the_schedule() {
    // Each request takes 20 ms; 50 req/s over 4 connections never queues.
    let mock = mock(MockKnobs {
        latency: Duration::from_millis(20),
        ..MockKnobs::default()
    });
    let report = run(LoadOptions {
        rate: Some(50.0),
        ..opts(&mock)
    })
    .unwrap();
    assert!((49..=51).contains(&report.requests), "{report}");
    assert_eq!(report.unsent, 50 - report.requests.min(50));
    assert_eq!(report.errors.total, 0);
    assert_eq!(mock.stats().requests(), report.requests);
    assert!(report.latency.p50_us >= 20_000, "{report}");
    assert!(report.latency.p50_us < 60_000, "{report}");
    assert_eq!(report.mode, "open");
}

#[test]
fn open_loop_latency_includes_queueing() {
    // One connection, 100 ms per request, 20 req/s: the server can do 10 req/s, so requests
    // queue and latency from the scheduled time grows far past the service time.
    let mock = mock(MockKnobs {
        latency: Duration::from_millis(100),
        ..MockKnobs::default()
    });
    let report = run(LoadOptions {
        rate: Some(20.0),
        connections: 1,
        ..opts(&mock)
    })
    .unwrap();
    assert!((9..=11).contains(&report.requests), "{report}");
    assert!(report.latency.max_us > 400_000, "{report}");
    assert_eq!(report.unsent, 20 - report.requests, "{report}");
}

#[test]
fn streams_record_ttft_and_itl() {
    let mock = mock(MockKnobs {
        ttft: Duration::from_millis(15),
        chunks: 4,
        chunk_delay: Duration::from_millis(5),
        ..MockKnobs::default()
    });
    let report = run(LoadOptions {
        stream: true,
        connections: 2,
        duration: Duration::from_millis(500),
        ..opts(&mock)
    })
    .unwrap();
    assert_eq!(report.errors.total, 0, "{report}");
    assert!(report.requests > 0);
    let ttft = report.ttft.clone().unwrap();
    let itl = report.itl.clone().unwrap();
    assert_eq!(ttft.count, report.ok);
    assert_eq!(itl.count, report.ok * 3);
    assert!(ttft.p50_us >= 15_000 && ttft.p50_us < 40_000, "{report}");
    assert!(itl.p50_us >= 4_000 && itl.p50_us < 20_000, "{report}");
    assert!(report.latency.p50_us >= 30_000, "{report}");
    assert_eq!(
        mock.stats().completion_tokens(),
        4 * mock.stats().requests()
    );
}

#[test]
fn status_errors_are_counted_and_keep_the_connection() {
    let mock = mock(MockKnobs::default());
    let report = run(LoadOptions {
        model: "mock-error-503".into(),
        requests: Some(40),
        ..opts(&mock)
    })
    .unwrap();
    assert_eq!(report.requests, 40);
    assert_eq!(report.ok, 0);
    assert_eq!(report.errors.total, 40);
    assert_eq!(report.errors.status.get(&503), Some(&40));
    assert_eq!(mock.stats().connections(), 4);
}

#[test]
fn cut_streams_and_resets_are_io_errors() {
    let mock = mock(MockKnobs::default());
    for (model, stream) in [
        ("mock-cut", true),
        ("mock-cut", false),
        ("mock-reset", false),
    ] {
        let report = run(LoadOptions {
            model: model.into(),
            stream,
            requests: Some(20),
            ..opts(&mock)
        })
        .unwrap();
        assert_eq!(report.requests, 20, "{model}");
        assert_eq!(report.errors.io, 20, "{model} stream={stream}: {report}");
        assert_eq!(report.ok, 0);
    }
}

#[test]
fn hangs_time_out() {
    let mock = mock(MockKnobs::default());
    let report = run(LoadOptions {
        model: "mock-hang".into(),
        timeout: Duration::from_millis(200),
        duration: Duration::from_millis(500),
        connections: 2,
        ..opts(&mock)
    })
    .unwrap();
    assert!(report.errors.timeout >= 2, "{report}");
    assert_eq!(report.errors.total, report.errors.timeout);
    assert_eq!(mock.stats().hangs(), report.requests);
}

#[test]
fn refused_connections_are_connect_errors() {
    // Bind then drop to find a port with nobody listening.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let report = run(LoadOptions {
        url: format!("http://127.0.0.1:{port}/v1/chat/completions"),
        connections: 2,
        duration: Duration::from_millis(300),
        ..LoadOptions::default()
    })
    .unwrap();
    assert!(report.errors.connect > 0);
    assert_eq!(report.errors.total, report.errors.connect);
    assert_eq!(report.ok, 0);
}

#[test]
fn refuses_non_loopback_targets() {
    for url in [
        "http://192.0.2.1/v1/chat/completions",
        "http://example.com/",
    ] {
        let err = run(LoadOptions {
            url: url.into(),
            ..LoadOptions::default()
        })
        .unwrap_err();
        assert!(matches!(err, LoadError::NotLoopback { .. }), "{err}");
    }
}

#[test]
fn embeddings_and_custom_body() {
    let mock = mock(MockKnobs::default());
    let report = run(LoadOptions {
        url: format!("http://{}/v1/embeddings", mock.addr()),
        requests: Some(10),
        ..opts(&mock)
    })
    .unwrap();
    assert_eq!(report.ok, 10);
    let report = run(LoadOptions {
        body: Some(r#"{"model":"x","messages":[]}"#.into()),
        requests: Some(5),
        ..opts(&mock)
    })
    .unwrap();
    // An empty messages array is rejected by the mock's request inspection.
    assert_eq!(report.errors.status.get(&400), Some(&5), "{report}");
}

#[test]
fn legacy_driver_end_to_end() {
    use tollgate_loadgen::Driver;
    let mock = MockServer::start(MockServerConfig {
        driver: Driver::Legacy,
        ..MockServerConfig::default()
    })
    .unwrap();
    assert_eq!(mock.driver(), "legacy");
    for stream in [false, true] {
        let report = run(LoadOptions {
            driver: Driver::Legacy,
            stream,
            duration: Duration::from_millis(300),
            ..opts(&mock)
        })
        .unwrap();
        assert_eq!(report.driver, "legacy");
        assert!(report.requests > 0);
        assert_eq!(report.errors.total, 0, "{report}");
    }
    let report = run(LoadOptions {
        driver: Driver::Legacy,
        model: "mock-cut".into(),
        stream: true,
        requests: Some(5),
        ..opts(&mock)
    })
    .unwrap();
    assert_eq!(report.errors.io, 5, "{report}");
}
