//! The admin dashboard: a small web UI at `/ui` whose assets are embedded in the binary, the
//! browser session that stands in for the master key, and the live admin views the UI polls.
//! Owns the `/ui` routes, admin authentication (bearer master key or session) and the JSON of
//! `GET /admin/{stats,guardrail-hits,deployments,budgets}`. Never shows a key's secret (only
//! the admin API's answer to a create does, once), never the text a guardrail matched, and
//! never lets data become markup: the page's script writes text nodes only.
//!
//! Routes:
//! - `GET /ui/login`: the login form; `GET /ui/app.css`, `GET /ui/favicon.svg`: its assets.
//!   These three are the only ones that need no session.
//! - `POST /ui/login` (form field, or JSON member, `master_key`): checks the master key in
//!   constant time. Right: sets the session cookie and answers 303 to `/ui` (a JSON request
//!   gets 200 `{"object":"session","expires_at":..}`). Wrong: 401 (the form again, or the
//!   JSON error `invalid_master_key`).
//! - `POST /ui/logout` (with `x-tollgate-csrf: 1`): clears the cookie.
//! - `GET /ui`: the dashboard, or 303 to `/ui/login` without a valid session.
//!   `GET /ui/app.js`: its script, 401 without a session.
//! - `GET /admin/stats`: model requests per second over the last minute, request-duration and
//!   time-to-first-token percentiles over the last minute, per model since start.
//! - `GET /admin/guardrail-hits?limit=100`: the newest guardrail hits over every core (time,
//!   profile, rule, action, side, key, request id).
//! - `GET /admin/deployments`: every deployment's health as each core's router sees it:
//!   cooldowns and when they end, failures in the current window, attempts in flight.
//! - `GET /admin/budgets`: every org, team, user and key with its limits and, per budget, what
//!   is committed in the current period (spent, or reserved by requests in flight) and what
//!   remains.
//!
//! Session: the cookie `tollgate_session` holds `v1.<expiry>.<nonce>.<mac>`, the MAC being
//! HMAC-SHA256 over the expiry and nonce keyed by the master key's digest, so any core (and any
//! gateway with the same master key) checks it without shared state, and changing the master
//! key ends every session. The cookie is `HttpOnly; SameSite=Strict; Path=/` for 12 hours, plus
//! `Secure` when a proxy in front says `x-forwarded-proto: https`. The admin API takes it in
//! place of the bearer key; a method that changes something also needs `x-tollgate-csrf: 1`,
//! a header a cross-site form cannot send.
//!
//! Every `/ui` answer carries `cache-control: no-store`, `x-content-type-options: nosniff`
//! and a same-origin-only `content-security-policy`.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tollgate_config::governance::{format_usd, Budget, Limits, Nanos};
use tollgate_policy::governance::{Directory, Level, LiveBudget};
use tollgate_policy::keys::{presented_token, KeyDigest};
use tollgate_policy::period::period_window;
use tollgate_protocol::http::{Method, RequestHead};

use crate::conn::Downstream;
use crate::error::GatewayError;
use crate::governor::now_ms;
use crate::metrics::{Collected, DeploymentHealth, Percentiles};
use crate::pipeline::{truncate, Outcome};
use crate::router::HealthState;
use crate::worker::Core;

/// The session cookie's name.
const COOKIE: &str = "tollgate_session";
/// How long a session lasts.
const SESSION_LIFETIME_S: u64 = 12 * 3600;
/// The header the admin API wants, besides the cookie, on a change made with a session.
const CSRF_HEADER: &str = "x-tollgate-csrf";
/// Most guardrail hits one request may ask for.
const MAX_HITS: usize = 10_000;

/// Pages and their assets: same origin only, no inline script or style, never framed.
const PAGE_CSP: &[u8] =
    b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Headers of every `/ui` answer.
const PAGE_HEADERS: [(&str, &[u8]); 5] = [
    ("cache-control", b"no-store"),
    ("x-content-type-options", b"nosniff"),
    ("content-security-policy", PAGE_CSP),
    ("referrer-policy", b"no-referrer"),
    ("x-frame-options", b"DENY"),
];

/// Headers of every admin API answer (JSON data).
pub(crate) const DATA_HEADERS: [(&str, &[u8]); 3] = [
    ("cache-control", b"no-store"),
    ("x-content-type-options", b"nosniff"),
    (
        "content-security-policy",
        b"default-src 'none'; frame-ancestors 'none'",
    ),
];

const HTML: &[u8] = b"text/html; charset=utf-8";
const JSON: &[u8] = b"application/json";

static INDEX_HTML: &str = include_str!("../ui/index.html");
static LOGIN_HTML: &str = include_str!("../ui/login.html");
static APP_JS: &str = include_str!("../ui/app.js");
static APP_CSS: &str = include_str!("../ui/app.css");
static FAVICON_SVG: &str = include_str!("../ui/favicon.svg");

/// Where the login page shows why the last attempt failed.
const LOGIN_ERROR_MARK: &str = "<!--login-error-->";

// === sessions ===

type HmacSha256 = Hmac<Sha256>;

/// Why a session cookie was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionRefusal {
    /// Not a token this gateway writes.
    Malformed,
    /// Well formed, but its MAC is not ours (forged, or made under another master key).
    Forged,
    /// Ours, but past its expiry.
    Expired,
}

fn session_mac(key: &KeyDigest, expires_s: u64, nonce: &str) -> Option<HmacSha256> {
    let mut mac = HmacSha256::new_from_slice(key).ok()?;
    mac.update(b"tollgate-ui-session\0v1\0");
    mac.update(expires_s.to_string().as_bytes());
    mac.update(b"\0");
    mac.update(nonce.as_bytes());
    Some(mac)
}

/// A new session token for `key` at `now_s`, and its expiry (unix seconds).
fn issue_session(key: &KeyDigest, now_s: u64) -> Option<(String, u64)> {
    let mut nonce = [0u8; 8];
    getrandom::getrandom(&mut nonce).ok()?;
    let nonce = hex(&nonce);
    let expires = now_s + SESSION_LIFETIME_S;
    let mac = session_mac(key, expires, &nonce)?.finalize().into_bytes();
    Some((format!("v1.{expires}.{nonce}.{}", hex(&mac)), expires))
}

/// Checks a session token: its expiry (unix seconds) when `key` made it and it is still valid.
/// The MAC is compared in constant time.
fn verify_session(key: &KeyDigest, token: &str, now_s: u64) -> Result<u64, SessionRefusal> {
    let mut parts = token.split('.');
    let (Some("v1"), Some(expires), Some(nonce), Some(mac), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(SessionRefusal::Malformed);
    };
    if expires.is_empty() || expires.len() > 20 || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SessionRefusal::Malformed);
    }
    let expires: u64 = expires.parse().map_err(|_| SessionRefusal::Malformed)?;
    if nonce.len() != 16 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(SessionRefusal::Malformed);
    }
    let mac = unhex(mac).ok_or(SessionRefusal::Malformed)?;
    session_mac(key, expires, nonce)
        .ok_or(SessionRefusal::Forged)?
        .verify_slice(&mac)
        .map_err(|_| SessionRefusal::Forged)?;
    if expires <= now_s {
        return Err(SessionRefusal::Expired);
    }
    Ok(expires)
}

/// The session token the request carries in its cookies, if any.
fn session_cookie(head: &RequestHead) -> Option<&str> {
    head.headers()
        .filter(|(name, _)| name.eq_ignore_ascii_case("cookie"))
        .flat_map(|(_, value)| value.split(|&b| b == b';'))
        .find_map(|pair| {
            trim(pair)
                .strip_prefix(COOKIE.as_bytes())?
                .strip_prefix(b"=")
        })
        .and_then(|token| std::str::from_utf8(token).ok())
}

/// The request's session: `None` without a cookie.
fn session(key: &KeyDigest, head: &RequestHead, now_s: u64) -> Option<Result<u64, SessionRefusal>> {
    session_cookie(head).map(|token| verify_session(key, token, now_s))
}

fn trim(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|pair| {
            let digit = |c: u8| (c as char).to_digit(16);
            Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8)
        })
        .collect()
}

// === admin authentication ===

fn admin_error(status: u16, code: &'static str, message: &str) -> GatewayError {
    GatewayError::Admin {
        status,
        message: message.to_owned(),
        code,
        param: None,
    }
}

fn admin_disabled() -> GatewayError {
    admin_error(
        403,
        "admin_disabled",
        "The admin API is off: set [admin] master_key.",
    )
}

fn no_credentials() -> GatewayError {
    admin_error(
        401,
        "invalid_master_key",
        "The admin API needs `Authorization: Bearer <master key>` or a dashboard session (/ui/login).",
    )
}

fn refused(refusal: SessionRefusal) -> GatewayError {
    match refusal {
        SessionRefusal::Expired => admin_error(
            401,
            "session_expired",
            "The dashboard session has expired: sign in again at /ui/login.",
        ),
        SessionRefusal::Malformed | SessionRefusal::Forged => admin_error(
            401,
            "invalid_session",
            "The dashboard session is not valid: sign in again at /ui/login.",
        ),
    }
}

fn changes_something(method: Method) -> bool {
    !matches!(method, Method::Get | Method::Head | Method::Options)
}

/// Admin authentication: the master key as `Authorization: Bearer` (or `x-api-key`), or a
/// dashboard session. A presented key wins over a cookie (a wrong key is refused even with a
/// valid session). With a session, a method that changes something also needs
/// `x-tollgate-csrf: 1`.
pub(crate) fn authorize_admin(core: &Core<'_>, head: &RequestHead) -> Result<(), GatewayError> {
    let shared = core.shared();
    let Some(master) = shared.master_digest() else {
        return Err(admin_disabled());
    };
    if let Some(token) = presented_token(head.header("authorization"), head.header("x-api-key")) {
        return match shared.is_master(token) {
            Some(true) => Ok(()),
            _ => Err(no_credentials()),
        };
    }
    match session(master, head, now_ms() / 1000) {
        None => Err(no_credentials()),
        Some(Err(refusal)) => Err(refused(refusal)),
        Some(Ok(_)) if changes_something(head.method) && head.header(CSRF_HEADER) != Some(b"1") => {
            Err(admin_error(
                403,
                "csrf_header_required",
                "A change made with a dashboard session needs the header `x-tollgate-csrf: 1`.",
            ))
        }
        Some(Ok(_)) => Ok(()),
    }
}

// === /ui ===

/// One `/ui` answer before it is written.
struct Reply {
    status: u16,
    content_type: &'static [u8],
    body: Bytes,
    /// More headers: `set-cookie`, `location`, an error's `allow`.
    extra: Vec<(&'static str, Vec<u8>)>,
}

impl Reply {
    fn asset(content_type: &'static [u8], text: &'static str) -> Reply {
        Reply {
            status: 200,
            content_type,
            body: Bytes::from_static(text.as_bytes()),
            extra: Vec::new(),
        }
    }

    fn redirect(to: &'static str) -> Reply {
        Reply {
            status: 303,
            content_type: b"text/plain; charset=utf-8",
            body: Bytes::new(),
            extra: vec![("location", to.as_bytes().to_vec())],
        }
    }

    fn json(status: u16, value: &Value) -> Reply {
        Reply {
            status,
            content_type: JSON,
            body: Bytes::from(serde_json::to_vec(value).unwrap_or_default()),
            extra: Vec::new(),
        }
    }

    fn error(e: &GatewayError) -> Reply {
        let mut body = BytesMut::with_capacity(256);
        e.write_json(&mut body);
        Reply {
            status: e.status(),
            content_type: JSON,
            body: body.freeze(),
            extra: e.headers(),
        }
    }

    /// The login form, with `error` (fixed text, never request data) above it.
    fn login_page(status: u16, error: Option<&'static str>) -> Reply {
        let body = match error {
            Some(message) => LOGIN_HTML.replacen(
                LOGIN_ERROR_MARK,
                &format!("<p class=\"error\" id=\"login-error\" role=\"alert\">{message}</p>"),
                1,
            ),
            None => LOGIN_HTML.to_owned(),
        };
        Reply {
            status,
            content_type: HTML,
            body: Bytes::from(body),
            extra: Vec::new(),
        }
    }

    fn with_cookie(mut self, cookie: String) -> Reply {
        self.extra.push(("set-cookie", cookie.into_bytes()));
        self
    }

    async fn send(
        self,
        conn: &mut Downstream,
        head: &RequestHead,
        keep_alive: bool,
    ) -> Result<Outcome, GatewayError> {
        let mut headers: Vec<(&str, &[u8])> = PAGE_HEADERS.to_vec();
        headers.extend(self.extra.iter().map(|(n, v)| (*n, v.as_slice())));
        conn.respond(
            self.status,
            self.content_type,
            &headers,
            self.body,
            keep_alive,
            head.version,
        )
        .await
        .map_err(|_| GatewayError::ClientGone)?;
        Ok(Outcome { keep_alive })
    }
}

/// `/ui` and below: the dashboard's pages and assets, login and logout. Errors are answered
/// here too, so they carry the page headers.
pub(crate) async fn ui(
    core: &Core<'_>,
    conn: &mut Downstream,
    head: &RequestHead,
    body: Bytes,
    keep_alive: bool,
) -> Result<Outcome, GatewayError> {
    let reply = page(core, head, &body).unwrap_or_else(|e| Reply::error(&e));
    reply.send(conn, head, keep_alive).await
}

fn page(core: &Core<'_>, head: &RequestHead, body: &[u8]) -> Result<Reply, GatewayError> {
    let target = head.path();
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let Some(master) = core.shared().master_digest() else {
        return Err(admin_disabled());
    };
    let now_s = now_ms() / 1000;
    let session = session(master, head, now_s);
    let only = |allowed: Method, allow: &'static str| {
        if head.method == allowed {
            Ok(())
        } else {
            Err(GatewayError::MethodNotAllowed {
                method: truncate(head.method_str(), 32).to_owned(),
                path: path.to_owned(),
                allow,
            })
        }
    };
    match path {
        "/ui" | "/ui/" => {
            only(Method::Get, "GET")?;
            Ok(match session {
                Some(Ok(_)) => Reply::asset(HTML, INDEX_HTML),
                _ => Reply::redirect("/ui/login"),
            })
        }
        "/ui/login" => match head.method {
            Method::Get if matches!(session, Some(Ok(_))) => Ok(Reply::redirect("/ui")),
            Method::Get => Ok(Reply::login_page(200, None)),
            Method::Post => login(core, head, body, master, now_s),
            _ => only(Method::Get, "GET, POST").map(|_| Reply::redirect("/ui")),
        },
        "/ui/logout" => {
            only(Method::Post, "POST")?;
            if head.header(CSRF_HEADER) != Some(b"1") {
                return Err(admin_error(
                    403,
                    "csrf_header_required",
                    "Signing out needs the header `x-tollgate-csrf: 1`.",
                ));
            }
            Ok(
                Reply::json(200, &json!({"object": "session", "signed_out": true})).with_cookie(
                    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
                ),
            )
        }
        "/ui/app.js" => {
            only(Method::Get, "GET")?;
            match session {
                Some(Ok(_)) => Ok(Reply::asset(b"text/javascript; charset=utf-8", APP_JS)),
                Some(Err(refusal)) => Err(refused(refusal)),
                None => Err(no_credentials()),
            }
        }
        "/ui/app.css" => {
            only(Method::Get, "GET")?;
            Ok(Reply::asset(b"text/css; charset=utf-8", APP_CSS))
        }
        "/ui/favicon.svg" => {
            only(Method::Get, "GET")?;
            Ok(Reply::asset(b"image/svg+xml", FAVICON_SVG))
        }
        _ => Err(GatewayError::NotFound {
            method: truncate(head.method_str(), 32).to_owned(),
            path: truncate(path, 256).to_owned(),
        }),
    }
}

fn bad_request(param: &str, message: &str) -> GatewayError {
    GatewayError::Admin {
        status: 400,
        message: message.to_owned(),
        code: "invalid_request",
        param: Some(param.to_owned()),
    }
}

/// `POST /ui/login`: the master key from a form (`master_key=...`) or a JSON body.
fn login(
    core: &Core<'_>,
    head: &RequestHead,
    body: &[u8],
    master: &KeyDigest,
    now_s: u64,
) -> Result<Reply, GatewayError> {
    let content_type = head
        .header("content-type")
        .map(|v| String::from_utf8_lossy(v).to_ascii_lowercase())
        .unwrap_or_default();
    let wants_json = content_type.starts_with("application/json");
    let presented = if wants_json {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(object)) => match object.get("master_key") {
                Some(Value::String(key)) => key.clone(),
                _ => {
                    return Err(bad_request(
                        "master_key",
                        "`master_key` (a string) is required",
                    ))
                }
            },
            _ => return Err(bad_request("body", "expected a JSON object")),
        }
    } else if content_type.is_empty()
        || content_type.starts_with("application/x-www-form-urlencoded")
    {
        form_field(body, "master_key")?
            .ok_or_else(|| bad_request("master_key", "the form field `master_key` is required"))?
    } else {
        return Err(bad_request(
            "content-type",
            "send the form (application/x-www-form-urlencoded) or JSON",
        ));
    };
    if core.shared().is_master(presented.as_bytes()) != Some(true) {
        tracing::warn!("dashboard sign-in refused: wrong master key");
        if wants_json {
            return Err(admin_error(
                401,
                "invalid_master_key",
                "That is not the master key.",
            ));
        }
        return Ok(Reply::login_page(401, Some("That is not the master key.")));
    }
    let (token, expires) = issue_session(master, now_s).ok_or_else(|| {
        admin_error(
            500,
            "internal_error",
            "No randomness available for a session.",
        )
    })?;
    let secure = head
        .header("x-forwarded-proto")
        .is_some_and(|p| trim(p).eq_ignore_ascii_case(b"https"));
    let cookie = format!(
        "{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_LIFETIME_S}{}",
        if secure { "; Secure" } else { "" }
    );
    let reply = if wants_json {
        Reply::json(200, &json!({"object": "session", "expires_at": expires}))
    } else {
        Reply::redirect("/ui")
    };
    Ok(reply.with_cookie(cookie))
}

/// The value of `name` in an `application/x-www-form-urlencoded` body (the first, decoded).
fn form_field(body: &[u8], name: &str) -> Result<Option<String>, GatewayError> {
    for pair in body.split(|&b| b == b'&') {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        let bad = || bad_request("body", "the form is not valid URL encoding");
        if form_decode(key).ok_or_else(bad)? == name {
            return form_decode(value).map(Some).ok_or_else(bad);
        }
    }
    Ok(None)
}

/// Decodes one form component: `+` is a space, `%XX` a byte; the result must be UTF-8.
fn form_decode(raw: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let digits = raw.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(digits).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

// === live admin views ===

/// True for the admin routes this module answers.
pub(crate) fn is_live_view(target: &str) -> bool {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    matches!(
        path,
        "/admin/stats" | "/admin/guardrail-hits" | "/admin/deployments" | "/admin/budgets"
    )
}

/// `GET /admin/{stats,guardrail-hits,deployments,budgets}`.
pub(crate) async fn live_view(
    core: &Core<'_>,
    conn: &mut Downstream,
    head: &RequestHead,
    keep_alive: bool,
) -> Result<Outcome, GatewayError> {
    authorize_admin(core, head)?;
    let target = head.path();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    if head.method != Method::Get {
        return Err(GatewayError::MethodNotAllowed {
            method: truncate(head.method_str(), 32).to_owned(),
            path: path.to_owned(),
            allow: "GET",
        });
    }
    let mut limit = 100;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (path, k) {
            ("/admin/guardrail-hits", "limit") => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_HITS).contains(n))
                    .ok_or_else(|| {
                        bad_request("limit", "`limit` must be an integer from 1 to 10000")
                    })?;
            }
            _ => {
                let k = truncate(k, 64);
                return Err(bad_request(k, &format!("unknown parameter `{k}`")));
            }
        }
    }
    let now = now_ms();
    let value = match path {
        "/admin/budgets" => budgets_json(core, now),
        "/admin/guardrail-hits" => hits_json(&collect(core).await, limit),
        "/admin/deployments" => deployments_json(&collect(core).await),
        _ => stats_json(&collect(core).await, now),
    };
    conn.respond(
        200,
        JSON,
        &DATA_HEADERS,
        Bytes::from(serde_json::to_vec(&value).unwrap_or_default()),
        keep_alive,
        head.version,
    )
    .await
    .map_err(|_| GatewayError::ClientGone)?;
    Ok(Outcome { keep_alive })
}

/// Every core's metrics and deployment health, this core's live.
async fn collect(core: &Core<'_>) -> Collected {
    let own = core
        .metrics
        .borrow()
        .snapshot(core.open_connections.get())
        .with_deployments(deployment_health(core));
    core.telemetry.collect(core.id, own).await
}

/// What this core's router knows about every deployment, named (called on the core's control
/// tick when a copy of its metrics is wanted, and for the core answering a view).
pub(crate) fn deployment_health(core: &Core<'_>) -> Vec<DeploymentHealth> {
    let router = core.router().borrow();
    let shared = core.shared();
    let now = Instant::now();
    let wall_ms = now_ms();
    let window = router.health_window();
    let mut out = Vec::new();
    for (m, deployments) in router.health_view(now).into_iter().enumerate() {
        let Some(model) = shared.config.models.get(m) else {
            continue;
        };
        for (d, view) in deployments.into_iter().enumerate() {
            let provider = model
                .deployments
                .get(d)
                .and_then(|dep| shared.providers.get(dep.provider))
                .map_or("", |p| p.name.as_str());
            let cooling_until_ms = match view.state {
                HealthState::CoolingDown { left } => {
                    Some(wall_ms.saturating_add(u64::try_from(left.as_millis()).unwrap_or(0)))
                }
                _ => None,
            };
            out.push(DeploymentHealth {
                worker: core.id,
                model: model.name.clone(),
                deployment: shared.deployment_label(m, d).to_owned(),
                provider: provider.to_owned(),
                view,
                cooling_until_ms,
                window,
            });
        }
    }
    out
}

/// Milliseconds, to the microsecond.
fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

fn percentiles_json(p: Option<Percentiles>) -> Value {
    match p {
        Some(p) => json!({
            "count": p.count,
            "p50_ms": ms(p.p50),
            "p90_ms": ms(p.p90),
            "p99_ms": ms(p.p99),
            "max_ms": ms(p.max),
        }),
        None => Value::Null,
    }
}

fn stats_json(c: &Collected, now_ms: u64) -> Value {
    let live = c.live(now_ms);
    // The mean of the last ten complete seconds (the last entry is the second in progress).
    let complete: u64 = live
        .per_second
        .iter()
        .rev()
        .skip(1)
        .take(10)
        .map(|s| s.requests)
        .sum();
    let per_second: Vec<Value> = live
        .per_second
        .iter()
        .map(|s| json!({"second": s.second, "requests": s.requests, "errors": s.errors}))
        .collect();
    let models: Vec<Value> = live
        .models
        .iter()
        .map(|m| {
            json!({
                "model": m.model,
                "requests": m.requests,
                "errors": m.errors,
                "input_tokens": m.input_tokens,
                "output_tokens": m.output_tokens,
                "cost_usd": format_usd(m.cost_nanos),
                "cost_nanos": m.cost_nanos,
                "latency": percentiles_json(m.latency),
            })
        })
        .collect();
    json!({
        "object": "stats",
        "time_ms": now_ms,
        "counting": live.counting,
        "workers": live.drivers.len(),
        "drivers": live.drivers,
        "stale_workers": live.stale,
        "open_connections": live.open_connections,
        "requests_per_second": complete as f64 / 10.0,
        "per_second": per_second,
        "latency_since_ms": live.latency_since_s * 1000,
        "latency": percentiles_json(live.latency),
        "time_to_first_token": percentiles_json(live.first_token),
        "models": models,
    })
}

fn hits_json(c: &Collected, limit: usize) -> Value {
    let data: Vec<Value> = c
        .recent_hits(limit)
        .into_iter()
        .map(|h| {
            json!({
                "time_ms": h.time_ms,
                "profile": h.profile,
                "rule": h.rule,
                "action": h.action,
                "side": h.side,
                "count": h.count,
                "key": h.key,
                "request_id": h.request_id,
            })
        })
        .collect();
    json!({"object": "list", "data": data})
}

fn deployments_json(c: &Collected) -> Value {
    let failures = c.upstream_failures();
    // Grouped by (model, deployment) in the order the cores list them (config order).
    let mut groups: Vec<(&str, &str, Vec<&DeploymentHealth>)> = Vec::new();
    for d in c.deployments() {
        match groups
            .iter_mut()
            .find(|(m, dep, _)| *m == d.model && *dep == d.deployment)
        {
            Some((_, _, list)) => list.push(d),
            None => groups.push((&d.model, &d.deployment, vec![d])),
        }
    }
    let (workers, stale) = c.workers();
    let data: Vec<Value> = groups
        .into_iter()
        .map(|(model, deployment, mut cores)| {
            cores.sort_by_key(|d| d.worker);
            let rank = |s: HealthState| match s {
                HealthState::CoolingDown { .. } => 3,
                HealthState::Probing => 2,
                HealthState::ProbeDue => 1,
                HealthState::Healthy => 0,
            };
            let state = cores
                .iter()
                .map(|d| d.view.state)
                .max_by_key(|s| rank(*s))
                .unwrap_or(HealthState::Healthy);
            let ttfbs: Vec<f64> = cores
                .iter()
                .filter_map(|d| d.view.ttfb_ewma.map(ms))
                .collect();
            let provider = cores.first().map_or("", |d| d.provider.as_str());
            let per_core: Vec<Value> = cores
                .iter()
                .map(|d| {
                    json!({
                        "worker": d.worker,
                        "state": d.view.state.as_str(),
                        "cooling_until_ms": d.cooling_until_ms,
                        "in_flight": d.view.in_flight,
                        "consecutive_failures": d.view.consecutive_failures,
                        "recent_requests": d.view.recent_requests,
                        "recent_failures": d.view.recent_failures,
                        "ttfb_ms": d.view.ttfb_ewma.map(ms),
                    })
                })
                .collect();
            json!({
                "model": model,
                "deployment": deployment,
                "provider": provider,
                "state": state.as_str(),
                "cooling_until_ms": cores.iter().filter_map(|d| d.cooling_until_ms).max(),
                "cores_cooling_down": cores.iter().filter(|d| d.cooling_until_ms.is_some()).count(),
                "in_flight": cores.iter().map(|d| d.view.in_flight).sum::<u32>(),
                "consecutive_failures": cores.iter().map(|d| d.view.consecutive_failures).max().unwrap_or(0),
                "recent_requests": cores.iter().map(|d| d.view.recent_requests).sum::<u32>(),
                "recent_failures": cores.iter().map(|d| d.view.recent_failures).sum::<u32>(),
                "window_s": cores.first().map_or(0, |d| d.window.as_secs()),
                "ttfb_ms": (!ttfbs.is_empty()).then(|| ttfbs.iter().sum::<f64>() / ttfbs.len() as f64),
                "provider_failures_total": failures.get(provider).copied().unwrap_or(0),
                "workers": per_core,
            })
        })
        .collect();
    json!({"object": "list", "workers": workers, "stale_workers": stale, "data": data})
}

// === budgets ===

fn budget_json(
    model: Option<&str>,
    budget: &Budget,
    committed: Option<Nanos>,
    now_ms: u64,
) -> Value {
    let window = period_window(budget.period, now_ms);
    let remaining = committed.map(|c| budget.amount.saturating_sub(c));
    json!({
        "model": model,
        "budget": budget.to_string(),
        "soft": budget.soft,
        "period": budget.period.as_str(),
        "limit_usd": format_usd(budget.amount),
        "limit_nanos": budget.amount,
        "committed_usd": committed.map(format_usd),
        "committed_nanos": committed,
        "remaining_usd": remaining.map(format_usd),
        "remaining_nanos": remaining,
        "resets_at_ms": (window.end_ms != u64::MAX).then_some(window.end_ms),
    })
}

/// One scope's budgets: from the live counters when a key in force uses the scope (they are
/// what admission checks), else as configured with nothing tracked (`committed: null`).
fn scope_budgets(
    directory: &Directory,
    level: Level,
    name: &str,
    limits: &Limits,
    now_ms: u64,
) -> Vec<Value> {
    let live_rows = |model: Option<&str>, live: &[LiveBudget]| -> Vec<Value> {
        live.iter()
            .map(|b| budget_json(model, &b.budget, Some(b.counter.committed(now_ms)), now_ms))
            .collect()
    };
    let mut models: Vec<&String> = limits.models.keys().collect();
    models.sort();
    let mut rows = Vec::new();
    match directory.scope(level, name) {
        Some(live) => {
            rows.extend(live_rows(None, live.all.budgets()));
            let mut live_models: Vec<&String> = live.models.keys().collect();
            live_models.sort();
            for model in live_models {
                if let Some(counters) = live.model(model) {
                    rows.extend(live_rows(Some(model), counters.budgets()));
                }
            }
        }
        None => {
            rows.extend(
                limits
                    .budgets
                    .iter()
                    .map(|b| budget_json(None, b, None, now_ms)),
            );
            for model in models {
                if let Some(l) = limits.models.get(model) {
                    rows.extend(
                        l.budgets
                            .iter()
                            .map(|b| budget_json(Some(model), b, None, now_ms)),
                    );
                }
            }
        }
    }
    rows
}

fn budgets_json(core: &Core<'_>, now_ms: u64) -> Value {
    let gov = &core.gov;
    let directory = gov.directory();
    let data = gov.read(|records| {
        let mut entities: Vec<(Level, &str, &Limits)> = Vec::new();
        entities.extend(
            records
                .orgs
                .values()
                .map(|o| (Level::Org, o.name.as_str(), &o.limits)),
        );
        entities.extend(
            records
                .teams
                .values()
                .map(|t| (Level::Team, t.name.as_str(), &t.limits)),
        );
        entities.extend(
            records
                .users
                .values()
                .map(|u| (Level::User, u.name.as_str(), &u.limits)),
        );
        entities.extend(
            records
                .keys
                .values()
                .map(|k| (Level::Key, k.name.as_str(), &k.limits)),
        );
        entities.sort_by_key(|(level, name, _)| (*level as u8, *name));
        entities
            .into_iter()
            .map(|(level, name, limits)| {
                json!({
                    "level": level.as_str(),
                    "name": name,
                    "limits": crate::admin::limits_json(limits),
                    "budgets": scope_budgets(&directory, level, name, limits, now_ms),
                })
            })
            .collect::<Vec<Value>>()
    });
    json!({"object": "list", "time_ms": now_ms, "data": data})
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const KEY: KeyDigest = [7; 32];
    const NOW: u64 = 1_790_000_000;

    #[test]
    fn a_session_verifies_until_it_expires() {
        let (token, expires) = issue_session(&KEY, NOW).unwrap();
        assert_eq!(expires, NOW + SESSION_LIFETIME_S);
        assert!(token.starts_with(&format!("v1.{expires}.")), "{token}");
        assert_eq!(verify_session(&KEY, &token, NOW), Ok(expires));
        assert_eq!(verify_session(&KEY, &token, expires - 1), Ok(expires));
        assert_eq!(
            verify_session(&KEY, &token, expires),
            Err(SessionRefusal::Expired)
        );
        // Two sessions differ (their nonces do).
        assert_ne!(issue_session(&KEY, NOW).unwrap().0, token);
    }

    #[test]
    fn a_changed_or_foreign_session_is_refused() {
        let (token, expires) = issue_session(&KEY, NOW).unwrap();
        // Another master key.
        assert_eq!(
            verify_session(&[8; 32], &token, NOW),
            Err(SessionRefusal::Forged)
        );
        // A later expiry with the old MAC.
        let longer = token.replacen(&expires.to_string(), &(expires + 3600).to_string(), 1);
        assert_eq!(
            verify_session(&KEY, &longer, NOW),
            Err(SessionRefusal::Forged)
        );
        // One MAC digit changed.
        let mut bytes = token.clone().into_bytes();
        let last = bytes.len() - 1;
        bytes[last] = if bytes[last] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(bytes).unwrap();
        assert_eq!(
            verify_session(&KEY, &flipped, NOW),
            Err(SessionRefusal::Forged)
        );
        for bad in [
            "",
            "v1",
            "v2.1.0011223344556677.00",
            &format!("{token}.x"),
            "v1.+5.0011223344556677.00",
            "v1.5.001122334455667.00",
            "v1.5.0011223344556677.0g",
        ] {
            assert_eq!(
                verify_session(&KEY, bad, NOW),
                Err(SessionRefusal::Malformed),
                "{bad}"
            );
        }
    }

    #[test]
    fn form_fields_decode() {
        let body = b"other=1&master_key=a%2Bb+c%25d&master_key=second";
        assert_eq!(
            form_field(body, "master_key").unwrap().as_deref(),
            Some("a+b c%d")
        );
        assert_eq!(form_field(b"x=1", "master_key").unwrap(), None);
        assert_eq!(
            form_field(b"master_key", "master_key").unwrap().as_deref(),
            Some("")
        );
        assert!(form_field(b"master_key=%G1", "master_key").is_err());
        assert!(form_field(b"master_key=%4", "master_key").is_err());
        assert!(
            form_field(b"master_key=%FF", "master_key").is_err(),
            "not UTF-8"
        );
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0, 0xab, 0xff]), "00abff");
        assert_eq!(unhex("00abff").unwrap(), vec![0, 0xab, 0xff]);
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }

    #[test]
    fn pages_carry_the_marker_and_load_nothing_from_elsewhere() {
        assert!(LOGIN_HTML.contains(LOGIN_ERROR_MARK));
        for (name, text) in [
            ("index.html", INDEX_HTML),
            ("login.html", LOGIN_HTML),
            ("app.js", APP_JS),
            ("app.css", APP_CSS),
        ] {
            for outside in [
                "http://",
                "https://",
                "//cdn",
                "innerHTML",
                "style=\"",
                "<script>",
            ] {
                if name == "app.js" && outside == "http://" {
                    // The SVG namespace URI is a name, not a fetch.
                    continue;
                }
                assert!(!text.contains(outside), "{name} contains {outside}");
            }
        }
    }
}
