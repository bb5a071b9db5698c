//! `https://` upstreams: certificate verification against a private CA (`tls_ca_file`),
//! keep-alive over TLS, and a clear 502 when the certificate is not trusted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tollgate_protocol::http::{BodyChunk, BodyDecoder, Limits, RequestHead};
use tollgate_tests::*;

/// A minimal OpenAI-shaped HTTPS upstream on loopback, one thread per connection.
struct TlsUpstream {
    addr: SocketAddr,
    ca_pem: String,
    connections: Arc<AtomicU64>,
    requests: Arc<AtomicU64>,
}

fn tls_upstream() -> TlsUpstream {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Tollgate test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    let server = Arc::new(server);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let requests = Arc::new(AtomicU64::new(0));
    let (c, r) = (connections.clone(), requests.clone());
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            c.fetch_add(1, Ordering::Relaxed);
            let server = server.clone();
            let r = r.clone();
            std::thread::spawn(move || serve_tls(server, tcp, &r));
        }
    });
    TlsUpstream {
        addr,
        ca_pem: ca.pem(),
        connections,
        requests,
    }
}

fn serve_tls(server: Arc<rustls::ServerConfig>, tcp: std::net::TcpStream, requests: &AtomicU64) {
    let Ok(conn) = rustls::ServerConnection::new(server) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = BytesMut::new();
    let mut tmp = [0u8; 8192];
    let limits = Limits::default();
    loop {
        let head = loop {
            if let Ok(Some(h)) = RequestHead::parse(&mut buf, &limits) {
                break h;
            }
            match tls.read(&mut tmp) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&tmp[..n]),
            }
        };
        let mut body = BodyDecoder::new(head.framing, 1 << 20).unwrap();
        loop {
            match body.decode(&mut buf).unwrap() {
                BodyChunk::Data(_) => {}
                BodyChunk::Done => break,
                BodyChunk::NeedMore => match tls.read(&mut tmp) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&tmp[..n]),
                },
            }
        }
        requests.fetch_add(1, Ordering::Relaxed);
        let json = r#"{"id":"chatcmpl-tls","object":"chat.completion","created":1,"model":"tls-model","choices":[{"index":0,"message":{"role":"assistant","content":"over TLS"},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{json}",
            json.len()
        );
        if tls.write_all(response.as_bytes()).is_err() || tls.flush().is_err() {
            return;
        }
    }
}

fn gateway_toml(port: u16, ca_line: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[[providers]]
name = "secure"
kind = "openai"
base_url = "https://localhost:{port}/v1"
api_key = "sk-upstream"
connect_timeout = "2s"
{ca_line}

[[models]]
name = "gpt-4o-mini"
deployments = [{{ provider = "secure", model = "tls-model" }}]

[[keys]]
name = "demo"
key = "{DEMO_KEY}"
"#
    )
}

#[test]
fn https_upstream_with_private_ca_and_keepalive() {
    let up = tls_upstream();
    let dir = std::env::temp_dir().join(format!("tollgate-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, &up.ca_pem).unwrap();
    let toml = gateway_toml(
        up.addr.port(),
        &format!("tls_ca_file = \"{}\"", ca_file.display()),
    );
    let gw = start(config(&toml, &[]), 1);
    for _ in 0..3 {
        let r = post(
            gw.addr(),
            "/v1/chat/completions",
            Some(DEMO_KEY),
            &chat_body("gpt-4o-mini", false),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["choices"][0]["message"]["content"], "over TLS");
    }
    assert_eq!(up.requests.load(Ordering::Relaxed), 3);
    assert_eq!(
        up.connections.load(Ordering::Relaxed),
        1,
        "TLS connection reused"
    );
    gw.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn untrusted_certificate_is_a_clear_502() {
    let up = tls_upstream();
    // Default roots (webpki) do not include the test CA.
    let gw = start(config(&gateway_toml(up.addr.port(), ""), &[]), 1);
    let r = post(
        gw.addr(),
        "/v1/chat/completions",
        Some(DEMO_KEY),
        &chat_body("gpt-4o-mini", false),
    );
    r.assert_error(502, "upstream_unreachable");
    assert!(r.text().contains("TLS"), "{}", r.text());
    assert_eq!(up.requests.load(Ordering::Relaxed), 0);
    gw.shutdown();
}

#[test]
fn missing_ca_file_stops_start_up() {
    let toml = gateway_toml(443, "tls_ca_file = \"/nonexistent/tollgate-ca.pem\"");
    let mut cfg = config(&toml, &[]);
    cfg.apply_overrides(Some("127.0.0.1:0".parse().unwrap()), Some(1));
    let err = tollgate_engine::Gateway::start(cfg)
        .unwrap_err()
        .to_string();
    assert!(err.contains("tls_ca_file"), "{err}");
    assert!(err.contains("providers[0]"), "{err}");
}
