//! The admin API under `/admin/` and the operations behind it, which the CLI runs against the
//! store directly. Every operation is parsed into an [`AdminOp`] first (so a bad request is a
//! 400 naming the field before anything changes), then applied to the identity records on the
//! storage thread, which persists the change and publishes a new directory to every core.
//!
//! Routes (all need `Authorization: Bearer <master key>` or a dashboard session):
//! - `GET|POST /admin/{orgs,teams,users,keys}`, `GET|PATCH|DELETE /admin/{kind}/{name}`
//! - `POST /admin/keys/{name}/revoke`, `POST /admin/keys/{name}/rotate` (`{"grace": "1h"}`)
//! - `GET /admin/spend?scope=team&name=ml&by=model&per=day&from=2026-11-01&to=2026-11-30`
//! - `GET /admin/usage?since_ms=..&until_ms=..&limit=100`, `GET /admin/alerts?limit=100`
//!
//! The dashboard's session cookie stands in for the bearer key, and the live views
//! `GET /admin/{stats,guardrail-hits,deployments,budgets}` are answered by `crate::dashboard`,
//! which also owns admin authentication. `POST /admin/reload` is answered by the pipeline
//! through `crate::reload`.

use std::time::Duration;

use serde_json::{json, Map, Value};
use tollgate_config::governance::{format_usd, parse_timestamp, KeyOwner, Limits};
use tollgate_policy::governance::{
    digest_hex, KeyRecord, OrgRecord, Records, RetiredSecret, TeamRecord, UserRecord,
};
use tollgate_policy::keys::{digest_key, display_form};
use tollgate_policy::period::{day_string, parse_day};

use crate::error::GatewayError;
use crate::governor::{now_ms, Write};
use crate::store::{day_of, EntityKind, ReportRow, Scope, Store, StoreError, UsageRecord};

/// Why an admin operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AdminError {
    /// HTTP status.
    pub status: u16,
    /// Explanation.
    pub message: String,
    /// Machine-readable code.
    pub code: &'static str,
    /// The field at fault.
    pub param: Option<String>,
}

impl AdminError {
    fn bad(param: &str, message: impl Into<String>) -> Self {
        AdminError {
            status: 400,
            message: message.into(),
            code: "invalid_request",
            param: Some(param.to_owned()),
        }
    }

    fn not_found(kind: EntityKind, name: &str) -> Self {
        AdminError {
            status: 404,
            message: format!("{} `{name}` does not exist", kind.as_str()),
            code: "not_found",
            param: None,
        }
    }

    fn conflict(message: impl Into<String>) -> Self {
        AdminError {
            status: 409,
            message: message.into(),
            code: "conflict",
            param: None,
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        AdminError {
            status: 500,
            message: format!("store: {e}"),
            code: "store_error",
            param: None,
        }
    }
}

impl From<AdminError> for GatewayError {
    fn from(e: AdminError) -> Self {
        GatewayError::Admin {
            status: e.status,
            message: e.message,
            code: e.code,
            param: e.param,
        }
    }
}

/// One parsed admin operation.
#[derive(Debug, Clone)]
pub enum AdminOp {
    /// List every entity of a kind.
    List(EntityKind),
    /// One entity.
    Get(EntityKind, String),
    /// Create an org, team, user or key.
    Create(EntityKind, Fields),
    /// Change fields of an entity.
    Update(EntityKind, String, Fields),
    /// Remove an entity.
    Delete(EntityKind, String),
    /// Revoke a key (kept for the record, refused from now on).
    Revoke(String),
    /// Give a key a new secret; the old one stays valid for `grace`.
    Rotate(String, Duration),
    /// Spend and usage report.
    Spend(SpendQuery),
    /// Raw ledger records.
    Usage {
        /// From (unix ms, inclusive).
        since_ms: u64,
        /// To (unix ms, exclusive).
        until_ms: u64,
        /// Most records.
        limit: usize,
    },
    /// Budget alerts, newest first.
    Alerts(usize),
}

/// Fields of a create or update, validated.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    /// Name (create).
    pub name: Option<String>,
    /// Owner fields: `user`, `team`, `org`.
    pub owner: KeyOwner,
    /// Model allow-list (keys); `Some(None)` clears it.
    pub models: Option<Option<Vec<String>>>,
    /// Expiry (keys), unix seconds; `Some(None)` clears it.
    pub expires_at: Option<Option<u64>>,
    /// New limits.
    pub limits: Option<Limits>,
    /// Guardrails profile; `Some(None)` clears it.
    pub guardrails: Option<Option<String>>,
}

/// Names a request may refer to that live in the config file, not the store.
#[derive(Debug, Clone, Copy)]
pub struct Known<'a> {
    /// Client-facing model names (`[[models]]`).
    pub models: &'a [String],
    /// Guardrails profile names (`[[guardrails.profiles]]`).
    pub profiles: &'a [String],
}

/// `GET /admin/spend` parameters.
#[derive(Debug, Clone)]
pub struct SpendQuery {
    /// Which level to report.
    pub scope: Scope,
    /// One name, or all.
    pub name: Option<String>,
    /// Split rows per model.
    pub by_model: bool,
    /// Split rows per day.
    pub per_day: bool,
    /// First day (days since epoch).
    pub from_day: u32,
    /// Last day.
    pub to_day: u32,
}

fn kind_of(collection: &str) -> Option<EntityKind> {
    Some(match collection {
        "orgs" => EntityKind::Org,
        "teams" => EntityKind::Team,
        "users" => EntityKind::User,
        "keys" => EntityKind::Key,
        _ => return None,
    })
}

fn query_pairs(query: &str) -> Vec<(&str, &str)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

/// Parse a request into an operation. `known` holds the configured names fields may refer to.
pub fn parse(
    method: &str,
    target: &str,
    body: &[u8],
    known: Known<'_>,
) -> Result<AdminOp, AdminError> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let rest = path.strip_prefix("/admin/").unwrap_or("");
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    let not_found = || AdminError {
        status: 404,
        message: format!("Unknown admin URL: {method} {path}"),
        code: "unknown_url",
        param: None,
    };
    let wrong_method = || AdminError {
        status: 405,
        message: format!("Method {method} is not allowed for {path}"),
        code: "method_not_allowed",
        param: None,
    };
    match parts.as_slice() {
        ["spend"] if method == "GET" => Ok(AdminOp::Spend(spend_query(query)?)),
        ["usage"] if method == "GET" => {
            let mut since_ms = 0;
            let mut until_ms = u64::MAX;
            let mut limit = 100;
            for (k, v) in query_pairs(query) {
                let number = || {
                    v.parse::<u64>()
                        .map_err(|_| AdminError::bad(k, format!("`{k}` must be an integer")))
                };
                match k {
                    "since_ms" => since_ms = number()?,
                    "until_ms" => until_ms = number()?,
                    "limit" => limit = number()?.min(10_000) as usize,
                    _ => return Err(AdminError::bad(k, format!("unknown parameter `{k}`"))),
                }
            }
            Ok(AdminOp::Usage {
                since_ms,
                until_ms,
                limit,
            })
        }
        ["alerts"] if method == "GET" => {
            let limit = query_pairs(query)
                .into_iter()
                .find(|(k, _)| *k == "limit")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(100usize);
            Ok(AdminOp::Alerts(limit.min(10_000)))
        }
        ["spend" | "usage" | "alerts"] => Err(wrong_method()),
        [collection] => {
            let kind = kind_of(collection).ok_or_else(not_found)?;
            match method {
                "GET" => Ok(AdminOp::List(kind)),
                "POST" => Ok(AdminOp::Create(kind, fields(kind, body, known, true)?)),
                _ => Err(wrong_method()),
            }
        }
        [collection, name] => {
            let kind = kind_of(collection).ok_or_else(not_found)?;
            let name = (*name).to_owned();
            match method {
                "GET" => Ok(AdminOp::Get(kind, name)),
                "PATCH" => Ok(AdminOp::Update(
                    kind,
                    name,
                    fields(kind, body, known, false)?,
                )),
                "DELETE" => Ok(AdminOp::Delete(kind, name)),
                _ => Err(wrong_method()),
            }
        }
        ["keys", name, "revoke"] if method == "POST" => Ok(AdminOp::Revoke((*name).to_owned())),
        ["keys", name, "rotate"] if method == "POST" => {
            let object = json_object(body)?;
            let grace = match object.get("grace") {
                None => Duration::from_secs(3600),
                Some(Value::String(text)) => tollgate_config::parse_duration(text)
                    .map_err(|e| AdminError::bad("grace", e))?,
                Some(_) => return Err(AdminError::bad("grace", "expected a string like \"1h\"")),
            };
            Ok(AdminOp::Rotate((*name).to_owned(), grace))
        }
        ["keys", _, "revoke" | "rotate"] => Err(wrong_method()),
        _ => Err(not_found()),
    }
}

fn spend_query(query: &str) -> Result<SpendQuery, AdminError> {
    let today = day_of(now_ms());
    let mut q = SpendQuery {
        scope: Scope::Key,
        name: None,
        by_model: false,
        per_day: false,
        from_day: today.saturating_sub(30),
        to_day: today,
    };
    for (k, v) in query_pairs(query) {
        match k {
            "scope" => {
                q.scope = v.parse().map_err(|_| {
                    AdminError::bad(
                        "scope",
                        "`scope` must be key, user, team, org, model or all",
                    )
                })?
            }
            "name" => q.name = Some(v.to_owned()),
            "by" if v == "model" => q.by_model = true,
            "per" if v == "day" => q.per_day = true,
            "by" | "per" => {
                return Err(AdminError::bad(k, "`by` takes `model`, `per` takes `day`"))
            }
            "from" | "to" => {
                let day = parse_day(v)
                    .ok_or_else(|| AdminError::bad(k, "expected a date like 2026-11-21"))?;
                if k == "from" {
                    q.from_day = day;
                } else {
                    q.to_day = day;
                }
            }
            _ => return Err(AdminError::bad(k, format!("unknown parameter `{k}`"))),
        }
    }
    Ok(q)
}

fn json_object(body: &[u8]) -> Result<Map<String, Value>, AdminError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(AdminError::bad("body", "expected a JSON object")),
        Err(e) => Err(AdminError::bad("body", format!("not valid JSON: {e}"))),
    }
}

/// Validate create/update fields.
pub fn fields(
    kind: EntityKind,
    body: &[u8],
    known: Known<'_>,
    create: bool,
) -> Result<Fields, AdminError> {
    let models = known.models;
    let object = json_object(body)?;
    let allowed: &[&str] = match kind {
        EntityKind::Org => &["name", "limits", "guardrails"],
        EntityKind::Team => &["name", "org", "limits", "guardrails"],
        EntityKind::User => &["name", "team", "org", "limits", "guardrails"],
        EntityKind::Key => &[
            "name",
            "user",
            "team",
            "org",
            "models",
            "expires",
            "limits",
            "guardrails",
        ],
    };
    let mut f = Fields::default();
    for (field, value) in object {
        if !allowed.contains(&field.as_str()) {
            return Err(AdminError::bad(
                &field,
                format!(
                    "unknown field `{field}` for a {}; expected one of {}",
                    kind.as_str(),
                    allowed.join(", ")
                ),
            ));
        }
        let string = |v: &Value| -> Result<String, AdminError> {
            match v {
                Value::String(s) if valid_name(s) => Ok(s.clone()),
                _ => Err(AdminError::bad(
                    &field,
                    format!("`{field}` must be a name made of letters, digits, '_', '.' and '-'"),
                )),
            }
        };
        match field.as_str() {
            "name" => f.name = Some(string(&value)?),
            "user" => f.owner.user = Some(string(&value)?),
            "team" => f.owner.team = Some(string(&value)?),
            "org" => f.owner.org = Some(string(&value)?),
            "models" => {
                f.models = Some(match value {
                    Value::Null => None,
                    Value::Array(items) => {
                        let mut list = Vec::new();
                        for item in items {
                            match item {
                                Value::String(m) if models.contains(&m) => list.push(m),
                                other => {
                                    return Err(AdminError::bad(
                                        "models",
                                        format!("unknown model {other}"),
                                    ))
                                }
                            }
                        }
                        Some(list)
                    }
                    _ => {
                        return Err(AdminError::bad(
                            "models",
                            "expected an array of model names",
                        ))
                    }
                })
            }
            "guardrails" => {
                f.guardrails = Some(match value {
                    Value::Null => None,
                    Value::String(p) if known.profiles.contains(&p) => Some(p),
                    other => {
                        let declared = if known.profiles.is_empty() {
                            "no guardrails profiles are configured".to_owned()
                        } else {
                            format!("configured: {}", known.profiles.join(", "))
                        };
                        return Err(AdminError::bad(
                            "guardrails",
                            format!("unknown guardrails profile {other} ({declared})"),
                        ));
                    }
                })
            }
            "expires" => {
                f.expires_at = Some(match value {
                    Value::Null => None,
                    Value::String(text) => {
                        Some(parse_timestamp(&text).map_err(|e| AdminError::bad("expires", e))?)
                    }
                    _ => return Err(AdminError::bad("expires", "expected a date string")),
                })
            }
            "limits" => {
                let toml_value = toml::Value::try_from(&value).map_err(|e| {
                    AdminError::bad("limits", format!("`limits` must be an object: {e}"))
                })?;
                let limits =
                    tollgate_config::parse_limits(toml_value, models).map_err(|errors| {
                        let first = errors.into_iter().next();
                        match first {
                            Some(e) => AdminError::bad(&e.path, e.message),
                            None => AdminError::bad("limits", "invalid limits"),
                        }
                    })?;
                f.limits = Some(limits);
            }
            _ => {}
        }
    }
    let owners = [&f.owner.user, &f.owner.team, &f.owner.org]
        .iter()
        .filter(|o| o.is_some())
        .count();
    if kind == EntityKind::Key && owners > 1 {
        return Err(AdminError::bad(
            "user",
            "a key belongs to one of `user`, `team` or `org`",
        ));
    }
    if kind == EntityKind::User && owners > 1 {
        return Err(AdminError::bad(
            "org",
            "give a user a team or an org, not both",
        ));
    }
    if create && kind != EntityKind::Key && f.name.is_none() {
        return Err(AdminError::bad("name", "`name` is required"));
    }
    if !create && f.name.is_some() {
        return Err(AdminError::bad("name", "names cannot be changed"));
    }
    Ok(f)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A new random key: `sk-tg-` and 43 base62 characters (256 bits from the OS).
pub fn generate_secret() -> Result<String, AdminError> {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut secret = String::from("sk-tg-");
    let mut produced = 0;
    while produced < 43 {
        let mut bytes = [0u8; 64];
        getrandom::getrandom(&mut bytes).map_err(|e| AdminError {
            status: 500,
            message: format!("no randomness available: {e}"),
            code: "internal_error",
            param: None,
        })?;
        // Rejection sampling keeps every character equally likely.
        for b in bytes {
            if b < 248 && produced < 43 {
                secret.push(char::from(ALPHABET[usize::from(b % 62)]));
                produced += 1;
            }
        }
    }
    Ok(secret)
}

fn exists(records: &Records, kind: EntityKind, name: &str) -> bool {
    match kind {
        EntityKind::Org => records.orgs.contains_key(name),
        EntityKind::Team => records.teams.contains_key(name),
        EntityKind::User => records.users.contains_key(name),
        EntityKind::Key => records.keys.contains_key(name),
    }
}

fn check_owner(records: &Records, owner: &KeyOwner) -> Result<(), AdminError> {
    for (kind, name, field) in [
        (EntityKind::User, &owner.user, "user"),
        (EntityKind::Team, &owner.team, "team"),
        (EntityKind::Org, &owner.org, "org"),
    ] {
        if let Some(name) = name {
            if !exists(records, kind, name) {
                return Err(AdminError::bad(
                    field,
                    format!("{field} `{name}` does not exist"),
                ));
            }
        }
    }
    Ok(())
}

fn declared(records: &Records, kind: EntityKind, name: &str) -> bool {
    match kind {
        EntityKind::Key => records.keys.get(name).is_some_and(|k| k.declared),
        // Orgs, teams and users from the file carry `created_at == 0`.
        EntityKind::Org => records.orgs.get(name).is_some_and(|o| o.created_at == 0),
        EntityKind::Team => records.teams.get(name).is_some_and(|t| t.created_at == 0),
        EntityKind::User => records.users.get(name).is_some_and(|u| u.created_at == 0),
    }
}

/// JSON view of a key: never the secret or its digest.
pub fn key_json(key: &KeyRecord) -> Value {
    let mut v = json!({
        "name": key.name,
        "display": key.display,
        "user": key.owner.user,
        "team": key.owner.team,
        "org": key.owner.org,
        "models": key.models,
        "expires_at": key.expires_at,
        "revoked_at": key.revoked_at,
        "created_at": key.created_at,
        "declared": key.declared,
        "limits": limits_json(&key.limits),
        "guardrails": key.guardrails,
    });
    if !key.retired.is_empty() {
        v["retired"] = key
            .retired
            .iter()
            .map(|r| json!({"display": r.display, "valid_until": r.valid_until}))
            .collect();
    }
    v
}

/// JSON view of limits in the same shape they are written in (`"budget": ["50usd/month"]`).
pub fn limits_json(limits: &Limits) -> Value {
    let mut v = Map::new();
    if let Some(n) = limits.rpm {
        v.insert("rpm".into(), n.into());
    }
    if let Some(n) = limits.tpm {
        v.insert("tpm".into(), n.into());
        v.insert("tpm_counts".into(), limits.tpm_counts.as_str().into());
    }
    if let Some(n) = limits.max_parallel {
        v.insert("max_parallel".into(), n.into());
    }
    let budgets = |soft: bool| -> Vec<Value> {
        limits
            .budgets
            .iter()
            .filter(|b| b.soft == soft)
            .map(|b| Value::String(b.to_string()))
            .collect()
    };
    let hard = budgets(false);
    if !hard.is_empty() {
        v.insert("budget".into(), hard.into());
    }
    let soft = budgets(true);
    if !soft.is_empty() {
        v.insert("soft_budget".into(), soft.into());
    }
    if !limits.models.is_empty() {
        let models: Map<String, Value> = limits
            .models
            .iter()
            .map(|(m, l)| (m.clone(), limits_json(l)))
            .collect();
        v.insert("models".into(), models.into());
    }
    Value::Object(v)
}

fn entity_json(records: &Records, kind: EntityKind, name: &str) -> Option<Value> {
    Some(match kind {
        EntityKind::Org => {
            let o = records.orgs.get(name)?;
            json!({"name": o.name, "limits": limits_json(&o.limits), "guardrails": o.guardrails, "created_at": o.created_at})
        }
        EntityKind::Team => {
            let t = records.teams.get(name)?;
            json!({"name": t.name, "org": t.org, "limits": limits_json(&t.limits), "guardrails": t.guardrails, "created_at": t.created_at})
        }
        EntityKind::User => {
            let u = records.users.get(name)?;
            json!({"name": u.name, "team": u.team, "org": u.org, "limits": limits_json(&u.limits), "guardrails": u.guardrails, "created_at": u.created_at})
        }
        EntityKind::Key => key_json(records.keys.get(name)?),
    })
}

/// Read-only operations on the records.
pub fn read(records: &Records, op: &AdminOp) -> Option<Result<Value, AdminError>> {
    match op {
        AdminOp::List(kind) => {
            let mut names: Vec<&String> = match kind {
                EntityKind::Org => records.orgs.keys().collect(),
                EntityKind::Team => records.teams.keys().collect(),
                EntityKind::User => records.users.keys().collect(),
                EntityKind::Key => records.keys.keys().collect(),
            };
            names.sort();
            let data: Vec<Value> = names
                .into_iter()
                .filter_map(|n| entity_json(records, *kind, n))
                .collect();
            Some(Ok(json!({"object": "list", "data": data})))
        }
        AdminOp::Get(kind, name) => Some(
            entity_json(records, *kind, name).ok_or_else(|| AdminError::not_found(*kind, name)),
        ),
        _ => None,
    }
}

/// Apply a change to the records: the JSON answer and the entities to write.
pub fn apply(records: &mut Records, op: AdminOp) -> Result<((u16, Value), Vec<Write>), AdminError> {
    let now_s = now_ms() / 1000;
    match op {
        AdminOp::Create(kind, f) => {
            let mut secret = None;
            let name = match (kind, f.name.clone()) {
                (_, Some(name)) => name,
                (_, None) => {
                    let s = generate_secret()?;
                    let name = format!("key-{}", &s[s.len() - 8..]);
                    secret = Some(s);
                    name
                }
            };
            if exists(records, kind, &name) {
                return Err(AdminError::conflict(format!(
                    "{} `{name}` already exists",
                    kind.as_str()
                )));
            }
            check_owner(records, &f.owner)?;
            let limits = f.limits.clone().unwrap_or_default();
            match kind {
                EntityKind::Org => {
                    records.orgs.insert(
                        name.clone(),
                        OrgRecord {
                            name: name.clone(),
                            limits,
                            guardrails: f.guardrails.clone().flatten(),
                            created_at: now_s.max(1),
                        },
                    );
                }
                EntityKind::Team => {
                    records.teams.insert(
                        name.clone(),
                        TeamRecord {
                            name: name.clone(),
                            org: f.owner.org.clone(),
                            limits,
                            guardrails: f.guardrails.clone().flatten(),
                            created_at: now_s.max(1),
                        },
                    );
                }
                EntityKind::User => {
                    records.users.insert(
                        name.clone(),
                        UserRecord {
                            name: name.clone(),
                            team: f.owner.team.clone(),
                            org: f.owner.org.clone(),
                            limits,
                            guardrails: f.guardrails.clone().flatten(),
                            created_at: now_s.max(1),
                        },
                    );
                }
                EntityKind::Key => {
                    let secret = match secret {
                        Some(s) => s,
                        None => generate_secret()?,
                    };
                    let record = KeyRecord {
                        name: name.clone(),
                        digest: digest_hex(&digest_key(secret.as_bytes())),
                        display: display_form(&secret),
                        owner: f.owner.clone(),
                        models: f.models.clone().flatten(),
                        expires_at: f.expires_at.flatten(),
                        revoked_at: None,
                        retired: Vec::new(),
                        limits,
                        guardrails: f.guardrails.clone().flatten(),
                        created_at: now_s.max(1),
                        declared: false,
                    };
                    let mut answer = key_json(&record);
                    // The only time the secret is ever shown.
                    answer["key"] = Value::String(secret);
                    records.keys.insert(name.clone(), record);
                    return Ok(((201, answer), vec![Write::Put(kind, name)]));
                }
            }
            let answer = entity_json(records, kind, &name).unwrap_or(Value::Null);
            Ok(((201, answer), vec![Write::Put(kind, name)]))
        }
        AdminOp::Update(kind, name, f) => {
            if !exists(records, kind, &name) {
                return Err(AdminError::not_found(kind, &name));
            }
            if declared(records, kind, &name) {
                return Err(AdminError::conflict(format!(
                    "{} `{name}` is declared in the config file; change it there",
                    kind.as_str()
                )));
            }
            check_owner(records, &f.owner)?;
            match kind {
                EntityKind::Org => {
                    if let Some(o) = records.orgs.get_mut(&name) {
                        if let Some(l) = f.limits {
                            o.limits = l;
                        }
                        if let Some(g) = f.guardrails {
                            o.guardrails = g;
                        }
                    }
                }
                EntityKind::Team => {
                    if let Some(t) = records.teams.get_mut(&name) {
                        if let Some(l) = f.limits {
                            t.limits = l;
                        }
                        if f.owner.org.is_some() {
                            t.org = f.owner.org;
                        }
                        if let Some(g) = f.guardrails {
                            t.guardrails = g;
                        }
                    }
                }
                EntityKind::User => {
                    if let Some(u) = records.users.get_mut(&name) {
                        if let Some(l) = f.limits {
                            u.limits = l;
                        }
                        if f.owner.team.is_some() || f.owner.org.is_some() {
                            u.team = f.owner.team;
                            u.org = f.owner.org;
                        }
                        if let Some(g) = f.guardrails {
                            u.guardrails = g;
                        }
                    }
                }
                EntityKind::Key => {
                    if let Some(k) = records.keys.get_mut(&name) {
                        if let Some(l) = f.limits {
                            k.limits = l;
                        }
                        if let Some(m) = f.models {
                            k.models = m;
                        }
                        if let Some(e) = f.expires_at {
                            k.expires_at = e;
                        }
                        if f.owner != KeyOwner::default() {
                            k.owner = f.owner;
                        }
                        if let Some(g) = f.guardrails {
                            k.guardrails = g;
                        }
                    }
                }
            }
            let answer = entity_json(records, kind, &name).unwrap_or(Value::Null);
            Ok(((200, answer), vec![Write::Put(kind, name)]))
        }
        AdminOp::Delete(kind, name) => {
            if !exists(records, kind, &name) {
                return Err(AdminError::not_found(kind, &name));
            }
            if declared(records, kind, &name) {
                return Err(AdminError::conflict(format!(
                    "{} `{name}` is declared in the config file; remove it there",
                    kind.as_str()
                )));
            }
            match kind {
                EntityKind::Org => {
                    records.orgs.remove(&name);
                }
                EntityKind::Team => {
                    records.teams.remove(&name);
                }
                EntityKind::User => {
                    records.users.remove(&name);
                }
                EntityKind::Key => {
                    records.keys.remove(&name);
                }
            }
            Ok((
                (200, json!({"name": name, "deleted": true})),
                vec![Write::Delete(kind, name)],
            ))
        }
        AdminOp::Revoke(name) => {
            if declared(records, EntityKind::Key, &name) {
                return Err(AdminError::conflict(format!(
                    "key `{name}` is declared in the config file; remove it there"
                )));
            }
            let key = records
                .keys
                .get_mut(&name)
                .ok_or_else(|| AdminError::not_found(EntityKind::Key, &name))?;
            key.revoked_at.get_or_insert(now_s);
            let answer = key_json(key);
            Ok(((200, answer), vec![Write::Put(EntityKind::Key, name)]))
        }
        AdminOp::Rotate(name, grace) => {
            if declared(records, EntityKind::Key, &name) {
                return Err(AdminError::conflict(format!(
                    "key `{name}` is declared in the config file; change it there"
                )));
            }
            let key = records
                .keys
                .get_mut(&name)
                .ok_or_else(|| AdminError::not_found(EntityKind::Key, &name))?;
            if key.revoked_at.is_some() {
                return Err(AdminError::conflict(format!("key `{name}` is revoked")));
            }
            let secret = generate_secret()?;
            let valid_until = now_s + grace.as_secs();
            key.retired.retain(|r| r.valid_until > now_s);
            key.retired.push(RetiredSecret {
                digest: std::mem::replace(
                    &mut key.digest,
                    digest_hex(&digest_key(secret.as_bytes())),
                ),
                display: std::mem::replace(&mut key.display, display_form(&secret)),
                valid_until,
            });
            let mut answer = key_json(key);
            answer["key"] = Value::String(secret);
            Ok(((200, answer), vec![Write::Put(EntityKind::Key, name)]))
        }
        other => Err(AdminError::bad(
            "path",
            format!("{other:?} is not a change"),
        )),
    }
}

/// Reports read from the ledger.
pub fn report(store: &dyn Store, op: &AdminOp) -> Option<Result<Value, AdminError>> {
    Some(match op {
        AdminOp::Spend(q) => store
            .report(
                q.scope,
                q.name.as_deref(),
                q.by_model,
                q.per_day,
                q.from_day,
                q.to_day,
            )
            .map(|rows| {
                let data: Vec<Value> = rows.iter().map(row_json).collect();
                json!({"object": "list", "scope": q.scope.as_str(), "from": day_string(q.from_day), "to": day_string(q.to_day), "data": data})
            })
            .map_err(AdminError::from),
        AdminOp::Usage {
            since_ms,
            until_ms,
            limit,
        } => store
            .records(*since_ms, *until_ms, *limit)
            .map(|records| {
                let data: Vec<Value> = records.iter().map(record_json).collect();
                json!({"object": "list", "data": data})
            })
            .map_err(AdminError::from),
        AdminOp::Alerts(limit) => store
            .alerts(*limit)
            .map(|alerts| json!({"object": "list", "data": alerts}))
            .map_err(AdminError::from),
        _ => return None,
    })
}

fn row_json(row: &ReportRow) -> Value {
    json!({
        "scope": row.scope.as_str(),
        "name": row.name,
        "model": row.model,
        "day": row.day.map(day_string),
        "requests": row.totals.requests,
        "input_tokens": row.totals.input_tokens,
        "output_tokens": row.totals.output_tokens,
        "cached_tokens": row.totals.cached_tokens,
        "estimated_requests": row.totals.estimated_requests,
        "cost_usd": format_usd(row.totals.cost),
        "cost_nanos": row.totals.cost,
    })
}

/// JSON view of one ledger record.
pub fn record_json(r: &UsageRecord) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or(Value::Null);
    v["cost_usd"] = Value::String(format_usd(r.cost));
    v
}
