//! Admin operations from the command line (`tollgate keys create ...`).
//!
//! The CLI builds the same request the admin API takes (method, `/admin/...` target, JSON body)
//! and runs it one of two ways:
//! - **against the store directly** when no gateway holds it: parse, apply and persist exactly as
//!   the admin API does, then flush before returning;
//! - **through the running gateway's admin API** when the store is in use (sled allows one
//!   process at a time), so the change reaches every core at once. That needs
//!   `[admin] master_key` in the same config file.
//!
//! Either way the answer is the admin API's JSON, status included, so scripts see one format.

use std::io::{Read, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use serde_json::Value;
use tollgate_config::Config;
use tollgate_protocol::http::{Limits, Method, ResponseHead};

use crate::admin::{self, AdminError};
use crate::error::GatewayError;
use crate::governor::{load_records, persist, GovernanceError};
use crate::store::sled_store::SledStore;
use crate::store::{Store, StoreError};

/// One admin request, as the CLI built it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminRequest {
    /// `GET`, `POST`, `PATCH` or `DELETE`.
    pub method: &'static str,
    /// Path and query under `/admin/`.
    pub target: String,
    /// JSON body (`Value::Null` for none).
    pub body: Value,
}

impl AdminRequest {
    /// The body as sent: empty for `Null`, else the JSON text.
    pub fn body_bytes(&self) -> Vec<u8> {
        match &self.body {
            Value::Null => Vec::new(),
            v => v.to_string().into_bytes(),
        }
    }
}

/// Where a request was carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The store, opened by this process.
    Store,
    /// The admin API of the gateway at this address.
    Gateway(SocketAddr),
}

/// The admin API's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct AdminAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body (an OpenAI-style `{"error": ...}` when the status is 4xx/5xx).
    pub body: Value,
    /// Where it was carried out.
    pub via: Via,
}

/// Why a request could not be carried out at all (as opposed to being refused, which is an
/// [`AdminAnswer`] with an error status).
#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    /// The store could not be opened or read.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A stored identity record is unreadable.
    #[error("{0}")]
    Records(#[from] GovernanceError),
    /// The gateway holds the store and offers no admin API to go through.
    #[error(
        "the store at {path} is in use (is the gateway running?) and the config sets no \
         [admin] master_key to reach the gateway's admin API; stop the gateway or set one"
    )]
    NoAdminApi {
        /// The store directory.
        path: String,
    },
    /// Reloading goes through the running gateway's admin API, which needs a master key.
    #[error("reload asks the running gateway through its admin API; the config sets no [admin] master_key")]
    NoMasterKey,
    /// The gateway's admin API could not be reached or answered nonsense.
    #[error("the gateway's admin API at {addr} failed: {reason}")]
    Gateway {
        /// Where we tried.
        addr: SocketAddr,
        /// What went wrong.
        reason: String,
    },
}

/// Carry out `request`: against the store if it is free, else through the gateway's admin API
/// at `gateway` (default: where `server.listen` says it listens).
pub fn execute(
    config: &Config,
    gateway: Option<SocketAddr>,
    request: &AdminRequest,
) -> Result<AdminAnswer, ManageError> {
    match SledStore::open(&config.store.path) {
        Ok(store) => {
            let (status, body) = run_on_store(&store, config, request)?;
            Ok(AdminAnswer {
                status,
                body,
                via: Via::Store,
            })
        }
        Err(StoreError::Locked { path }) => {
            let Some(master) = config.admin.master_key.as_ref() else {
                return Err(ManageError::NoAdminApi { path });
            };
            let addr = gateway.unwrap_or_else(|| loopback_for(config.server.listen));
            let (status, body) = http_call(addr, master.expose(), request)
                .map_err(|reason| ManageError::Gateway { addr, reason })?;
            Ok(AdminAnswer {
                status,
                body,
                via: Via::Gateway(addr),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Ask the running gateway at `gateway` (default: where `server.listen` says it listens) to
/// reread its config file (`POST /admin/reload`). There is no offline form: a gateway that is
/// not running reads the file when it starts.
pub fn reload(config: &Config, gateway: Option<SocketAddr>) -> Result<AdminAnswer, ManageError> {
    let master = config
        .admin
        .master_key
        .as_ref()
        .ok_or(ManageError::NoMasterKey)?;
    let addr = gateway.unwrap_or_else(|| loopback_for(config.server.listen));
    let request = AdminRequest {
        method: "POST",
        target: "/admin/reload".to_owned(),
        body: Value::Null,
    };
    let (status, body) = http_call(addr, master.expose(), &request)
        .map_err(|reason| ManageError::Gateway { addr, reason })?;
    Ok(AdminAnswer {
        status,
        body,
        via: Via::Gateway(addr),
    })
}

/// Run one request on an open store, as the admin API would, and flush what it wrote.
pub fn run_on_store(
    store: &dyn Store,
    config: &Config,
    request: &AdminRequest,
) -> Result<(u16, Value), ManageError> {
    let mut records = load_records(store, config)?;
    let models: Vec<String> = config.models.iter().map(|m| m.name.clone()).collect();
    let profiles: Vec<String> = config
        .guardrails
        .profiles
        .iter()
        .map(|p| p.name.clone())
        .collect();
    let known = admin::Known {
        models: &models,
        profiles: &profiles,
    };
    let body = request.body_bytes();
    let outcome = admin::parse(request.method, &request.target, &body, known).and_then(|op| {
        if let Some(read) = admin::read(&records, &op) {
            return read.map(|v| (200, v));
        }
        if let Some(report) = admin::report(store, &op) {
            return report.map(|v| (200, v));
        }
        let (answer, writes) = admin::apply(&mut records, op)?;
        persist(store, &records, &writes)?;
        store.flush()?;
        Ok(answer)
    });
    Ok(outcome.unwrap_or_else(|e: AdminError| {
        let status = e.status;
        let mut out = BytesMut::new();
        GatewayError::from(e).write_json(&mut out);
        (status, serde_json::from_slice(&out).unwrap_or(Value::Null))
    }))
}

/// The address to reach a gateway listening on `listen` from this host.
fn loopback_for(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// One HTTP/1.1 exchange with `Connection: close`, read to the end; the gateway frames admin
/// answers with `content-length`, so what follows the head is the body.
fn http_call(
    addr: SocketAddr,
    master_key: &str,
    request: &AdminRequest,
) -> Result<(u16, Value), String> {
    let timeout = Duration::from_secs(30);
    let mut stream =
        TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| e.to_string())?;
    let body = request.body_bytes();
    let mut message = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {master_key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        request.method,
        request.target,
        body.len()
    )
    .into_bytes();
    message.extend_from_slice(&body);
    stream.write_all(&message).map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let mut buf = BytesMut::from(&response[..]);
    let head = match ResponseHead::parse(&mut buf, &Limits::default(), Method::Post) {
        Ok(Some(head)) => head,
        Ok(None) => return Err("the response ended early".into()),
        Err(e) => return Err(format!("not an HTTP response: {e}")),
    };
    let status = head.status;
    let body = &buf[..];
    let value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "status {status} with a body that is not JSON ({e}): {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        )
    })?;
    Ok((status, value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> Config {
        Config::from_toml_str(
            r#"
[[providers]]
name = "mock"
kind = "mock"

[[models]]
name = "gpt-4o-mini"
deployments = [{ provider = "mock", model = "gpt-4o-mini" }]

[[teams]]
name = "ml"
"#,
            &|_| None,
        )
        .unwrap()
    }

    fn request(method: &'static str, target: &str, body: Value) -> AdminRequest {
        AdminRequest {
            method,
            target: target.into(),
            body,
        }
    }

    #[test]
    fn changes_persist_and_refusals_carry_the_field() {
        let store = SledStore::temporary().unwrap();
        let config = config();
        let created = run_on_store(
            &store,
            &config,
            &request(
                "POST",
                "/admin/keys",
                json!({"team": "ml", "limits": {"budget": "50usd/month"}}),
            ),
        )
        .unwrap();
        assert_eq!(created.0, 201, "{}", created.1);
        let secret = created.1["key"].as_str().unwrap();
        assert!(secret.starts_with("sk-tg-"));
        let name = created.1["name"].as_str().unwrap().to_owned();

        // A fresh load sees the key, its budget, and never its secret.
        let (status, listed) =
            run_on_store(&store, &config, &request("GET", "/admin/keys", Value::Null)).unwrap();
        assert_eq!(status, 200);
        let key = &listed["data"][0];
        assert_eq!(key["name"], name.as_str());
        assert_eq!(key["team"], "ml");
        assert_eq!(key["limits"]["budget"], json!(["50usd/month"]));
        assert!(!listed.to_string().contains(secret));

        let (status, refused) = run_on_store(
            &store,
            &config,
            &request("POST", "/admin/keys", json!({"team": "nope"})),
        )
        .unwrap();
        assert_eq!(status, 400);
        assert_eq!(refused["error"]["param"], "team");
    }
}
