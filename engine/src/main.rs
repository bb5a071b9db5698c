//! The `tollgate` command: `serve`, `check`, and the admin operations (`keys`, `orgs`, `teams`,
//! `users`, `spend`, `usage`, `alerts`), which run against the store directly or, when a gateway
//! holds it, through that gateway's admin API (see `tollgate_engine::manage`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use serde_json::{json, Map, Value};
use tollgate_config::Config;
use tollgate_engine::manage::{self, AdminRequest, Via};
use tollgate_engine::Gateway;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tollgate: a fast, policy-enforcing AI gateway.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
struct Cli {
    /// Configuration file (TOML).
    #[arg(long, short, global = true, env = "TOLLGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Admin commands: the running gateway's address, used when it holds the store (default:
    /// `server.listen`).
    #[arg(long, global = true)]
    gateway: Option<SocketAddr>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gateway.
    Serve {
        /// Listen address, overriding `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Number of workers, overriding `server.workers` (default: one per allowed CPU).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Validate a configuration file and print every error with its key path.
    Check,
    /// Virtual keys.
    Keys {
        #[command(subcommand)]
        action: KeyAction,
    },
    /// Organisations.
    Orgs {
        #[command(subcommand)]
        action: EntityAction,
    },
    /// Teams.
    Teams {
        #[command(subcommand)]
        action: EntityAction,
    },
    /// Users.
    Users {
        #[command(subcommand)]
        action: EntityAction,
    },
    /// Spend and usage totals from the ledger.
    Spend(SpendArgs),
    /// Raw usage records from the ledger.
    Usage {
        /// From (unix milliseconds, inclusive).
        #[arg(long)]
        since_ms: Option<u64>,
        /// To (unix milliseconds, exclusive).
        #[arg(long)]
        until_ms: Option<u64>,
        /// Most records (at most 10,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Ask the running gateway to reread its config file (as SIGHUP does) and print the
    /// outcome: what changed, or every error in the file.
    Reload,
    /// Budget alerts, newest first.
    Alerts {
        /// Most alerts (at most 10,000).
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

#[derive(Debug, Subcommand)]
enum KeyAction {
    /// Create a key; its secret is printed once and never again.
    Create {
        /// Name (default: `key-` and the secret's last 8 characters).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        owner: KeyOwnerArgs,
        /// Models the key may call (comma-separated); default every model.
        #[arg(long, value_delimiter = ',')]
        models: Vec<String>,
        /// Expiry, RFC 3339 (`2026-12-31T00:00:00Z`) or a date (`2026-12-31`).
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        guardrails: GuardrailArgs,
    },
    /// List keys (never their secrets).
    List,
    /// Show one key.
    Get { name: String },
    /// Change a key; limits given here replace the key's limits.
    Update {
        name: String,
        #[command(flatten)]
        owner: KeyOwnerArgs,
        /// New model allow-list (comma-separated).
        #[arg(long, value_delimiter = ',', conflicts_with = "all_models")]
        models: Vec<String>,
        /// Drop the allow-list: every model.
        #[arg(long)]
        all_models: bool,
        /// New expiry.
        #[arg(long, conflicts_with = "no_expiry")]
        expires: Option<String>,
        /// Remove the expiry.
        #[arg(long)]
        no_expiry: bool,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        guardrails: GuardrailArgs,
    },
    /// Delete a key (its ledger records stay).
    Delete { name: String },
    /// Revoke a key: refused from now on, kept for the record.
    Revoke { name: String },
    /// Give a key a new secret; the old one keeps working for the grace period.
    Rotate {
        name: String,
        /// How long the old secret stays valid (`0s` for not at all).
        #[arg(long, default_value = "1h")]
        grace: String,
    },
}

#[derive(Debug, Subcommand)]
enum EntityAction {
    /// Create one.
    Create {
        name: String,
        #[command(flatten)]
        owner: OwnerArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        guardrails: GuardrailArgs,
    },
    /// List them.
    List,
    /// Show one.
    Get { name: String },
    /// Change one; limits given here replace its limits.
    Update {
        name: String,
        #[command(flatten)]
        owner: OwnerArgs,
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        guardrails: GuardrailArgs,
    },
    /// Delete one.
    Delete { name: String },
}

/// Which guardrails profile applies (`[[guardrails.profiles]]` in the config).
#[derive(Debug, Args)]
struct GuardrailArgs {
    /// Guardrails profile for its requests (overrides the levels above it).
    #[arg(long)]
    guardrails: Option<String>,
    /// Use the profile of the level above (or the default) again.
    #[arg(long, conflicts_with = "guardrails")]
    no_guardrails: bool,
}

impl GuardrailArgs {
    /// Add a `guardrails` field when one was given (the admin API checks the name).
    fn insert_into(self, body: &mut Map<String, Value>) {
        if self.no_guardrails {
            body.insert("guardrails".into(), Value::Null);
        } else if let Some(name) = self.guardrails {
            body.insert("guardrails".into(), name.into());
        }
    }
}

/// Where a team or user belongs.
#[derive(Debug, Args)]
struct OwnerArgs {
    /// The team (users).
    #[arg(long)]
    team: Option<String>,
    /// The org (teams and users).
    #[arg(long)]
    org: Option<String>,
}

/// Who a key belongs to: one of them.
#[derive(Debug, Args)]
struct KeyOwnerArgs {
    /// Owning user.
    #[arg(long, conflicts_with_all = ["team", "org"])]
    user: Option<String>,
    /// Owning team.
    #[arg(long, conflicts_with = "org")]
    team: Option<String>,
    /// Owning org.
    #[arg(long)]
    org: Option<String>,
}

/// Limits, written as in the config file.
#[derive(Debug, Args)]
struct LimitArgs {
    /// Requests per minute.
    #[arg(long)]
    rpm: Option<u64>,
    /// Tokens per minute.
    #[arg(long)]
    tpm: Option<u64>,
    /// Which tokens `--tpm` counts: input, output or total.
    #[arg(long, requires = "tpm")]
    tpm_counts: Option<String>,
    /// Concurrent requests.
    #[arg(long)]
    max_parallel: Option<u64>,
    /// Hard budget, e.g. `50usd/month` (day, week, month, total); repeat for several.
    #[arg(long)]
    budget: Vec<String>,
    /// Soft budget: alert, do not refuse; repeatable.
    #[arg(long)]
    soft_budget: Vec<String>,
    /// Every limit as JSON, including per-model ones:
    /// `{"rpm": 60, "models": {"gpt-4o": {"tpm": 10000}}}`.
    #[arg(long, conflicts_with_all = ["rpm", "tpm", "max_parallel", "budget", "soft_budget"])]
    limits: Option<String>,
}

/// `tollgate spend` filters.
#[derive(Debug, Args)]
struct SpendArgs {
    /// key, user, team, org, model or all.
    #[arg(long, default_value = "key")]
    scope: String,
    /// One name within the scope (default: every one).
    #[arg(long)]
    name: Option<String>,
    /// A row per model.
    #[arg(long)]
    by_model: bool,
    /// A row per day.
    #[arg(long)]
    per_day: bool,
    /// First day (`2026-11-01`); default 30 days ago.
    #[arg(long)]
    from: Option<String>,
    /// Last day; default today.
    #[arg(long)]
    to: Option<String>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let Some(path) = cli.config else {
        eprintln!("tollgate: pass --config FILE (or set TOLLGATE_CONFIG)");
        return ExitCode::from(2);
    };
    let mut config = match Config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: invalid configuration", path.display());
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    let request = match cli.command {
        Command::Check => {
            println!(
                "{}: ok ({} providers, {} models, {} keys)",
                path.display(),
                config.providers.len(),
                config.models.len(),
                config.keys.len()
            );
            return ExitCode::SUCCESS;
        }
        Command::Serve { listen, workers } => {
            config.apply_overrides(listen, workers);
            // A reload rereads the same file with the same command-line overrides.
            let source: tollgate_engine::reload::ConfigSource = Box::new(move || {
                let mut config = Config::load(&path)?;
                config.apply_overrides(listen, workers);
                Ok(config)
            });
            return serve(config, source);
        }
        Command::Keys { action } => key_request(action),
        Command::Orgs { action } => entity_request("orgs", action),
        Command::Teams { action } => entity_request("teams", action),
        Command::Users { action } => entity_request("users", action),
        Command::Spend(args) => Ok(spend_request(args)),
        Command::Usage {
            since_ms,
            until_ms,
            limit,
        } => {
            let mut target = format!("/admin/usage?limit={limit}");
            if let Some(ms) = since_ms {
                target.push_str(&format!("&since_ms={ms}"));
            }
            if let Some(ms) = until_ms {
                target.push_str(&format!("&until_ms={ms}"));
            }
            Ok(get(target))
        }
        Command::Alerts { limit } => Ok(get(format!("/admin/alerts?limit={limit}"))),
        Command::Reload => return print_answer(manage::reload(&config, cli.gateway)),
    };
    match request {
        Ok(request) => admin(&config, cli.gateway, &request),
        Err(message) => {
            eprintln!("tollgate: {message}");
            ExitCode::from(2)
        }
    }
}

fn serve(config: Config, source: tollgate_engine::reload::ConfigSource) -> ExitCode {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match Gateway::start_with(config, Some(source)) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = signals;
    // SIGHUP reloads (the reloader logs the outcome, every error included); the others stop.
    let stop = signals.forever().find(|&signal| {
        if signal == SIGHUP {
            tracing::info!("SIGHUP: reloading the config");
            let _ = gateway.reload();
            return false;
        }
        true
    });
    if let Some(signal) = stop {
        tracing::info!(signal, "shutting down: draining in-flight requests");
        // A second signal while draining stops at once.
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                std::process::exit(130);
            }
        });
    }
    gateway.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Run an admin request and print its JSON answer: stdout on success, the error on stderr
/// (exit 1) when refused.
fn admin(config: &Config, gateway: Option<SocketAddr>, request: &AdminRequest) -> ExitCode {
    print_answer(manage::execute(config, gateway, request))
}

/// Print an admin answer: stdout on success, the error on stderr (exit 1) when refused.
fn print_answer(answer: Result<manage::AdminAnswer, manage::ManageError>) -> ExitCode {
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Via::Gateway(addr) = answer.via {
        eprintln!("(done through the gateway's admin API at {addr})");
    }
    if answer.status >= 400 {
        let error = &answer.body["error"];
        let message = error["message"].as_str().unwrap_or("refused");
        match error["param"].as_str() {
            Some(param) => eprintln!("tollgate: {message} (field `{param}`)"),
            None => eprintln!("tollgate: {message}"),
        }
        return ExitCode::FAILURE;
    }
    println!(
        "{}",
        serde_json::to_string_pretty(&answer.body).unwrap_or_default()
    );
    if answer.body.get("key").is_some() {
        eprintln!("The key above is shown only now: store it somewhere safe.");
    }
    ExitCode::SUCCESS
}

fn get(target: String) -> AdminRequest {
    AdminRequest {
        method: "GET",
        target,
        body: Value::Null,
    }
}

fn with_body(method: &'static str, target: String, body: Map<String, Value>) -> AdminRequest {
    AdminRequest {
        method,
        target,
        body: Value::Object(body),
    }
}

fn key_request(action: KeyAction) -> Result<AdminRequest, String> {
    Ok(match action {
        KeyAction::Create {
            name,
            owner,
            models,
            expires,
            limits,
            guardrails,
        } => {
            let mut body = key_owner(owner);
            if let Some(name) = name {
                body.insert("name".into(), name.into());
            }
            if !models.is_empty() {
                body.insert("models".into(), models.into());
            }
            if let Some(at) = expires {
                body.insert("expires".into(), at.into());
            }
            limits.insert_into(&mut body)?;
            guardrails.insert_into(&mut body);
            with_body("POST", "/admin/keys".into(), body)
        }
        KeyAction::List => get("/admin/keys".into()),
        KeyAction::Get { name } => get(format!("/admin/keys/{name}")),
        KeyAction::Update {
            name,
            owner,
            models,
            all_models,
            expires,
            no_expiry,
            limits,
            guardrails,
        } => {
            let mut body = key_owner(owner);
            if all_models {
                body.insert("models".into(), Value::Null);
            } else if !models.is_empty() {
                body.insert("models".into(), models.into());
            }
            if no_expiry {
                body.insert("expires".into(), Value::Null);
            } else if let Some(at) = expires {
                body.insert("expires".into(), at.into());
            }
            limits.insert_into(&mut body)?;
            guardrails.insert_into(&mut body);
            with_body("PATCH", format!("/admin/keys/{name}"), body)
        }
        KeyAction::Delete { name } => {
            with_body("DELETE", format!("/admin/keys/{name}"), Map::new())
        }
        KeyAction::Revoke { name } => {
            with_body("POST", format!("/admin/keys/{name}/revoke"), Map::new())
        }
        KeyAction::Rotate { name, grace } => {
            let mut body = Map::new();
            body.insert("grace".into(), grace.into());
            with_body("POST", format!("/admin/keys/{name}/rotate"), body)
        }
    })
}

fn key_owner(owner: KeyOwnerArgs) -> Map<String, Value> {
    let mut body = Map::new();
    for (field, value) in [
        ("user", owner.user),
        ("team", owner.team),
        ("org", owner.org),
    ] {
        if let Some(v) = value {
            body.insert(field.into(), v.into());
        }
    }
    body
}

fn entity_request(collection: &str, action: EntityAction) -> Result<AdminRequest, String> {
    let owner_fields = |owner: OwnerArgs| {
        let mut body = Map::new();
        for (field, value) in [("team", owner.team), ("org", owner.org)] {
            if let Some(v) = value {
                body.insert(field.into(), v.into());
            }
        }
        body
    };
    Ok(match action {
        EntityAction::Create {
            name,
            owner,
            limits,
            guardrails,
        } => {
            let mut body = owner_fields(owner);
            body.insert("name".into(), name.into());
            limits.insert_into(&mut body)?;
            guardrails.insert_into(&mut body);
            with_body("POST", format!("/admin/{collection}"), body)
        }
        EntityAction::List => get(format!("/admin/{collection}")),
        EntityAction::Get { name } => get(format!("/admin/{collection}/{name}")),
        EntityAction::Update {
            name,
            owner,
            limits,
            guardrails,
        } => {
            let mut body = owner_fields(owner);
            limits.insert_into(&mut body)?;
            guardrails.insert_into(&mut body);
            with_body("PATCH", format!("/admin/{collection}/{name}"), body)
        }
        EntityAction::Delete { name } => {
            with_body("DELETE", format!("/admin/{collection}/{name}"), Map::new())
        }
    })
}

impl LimitArgs {
    /// Add a `limits` field when any limit was given (the admin API validates the values).
    fn insert_into(self, body: &mut Map<String, Value>) -> Result<(), String> {
        if let Some(text) = self.limits {
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| format!("--limits is not valid JSON: {e}"))?;
            body.insert("limits".into(), value);
            return Ok(());
        }
        let mut limits = Map::new();
        for (field, value) in [
            ("rpm", self.rpm),
            ("tpm", self.tpm),
            ("max_parallel", self.max_parallel),
        ] {
            if let Some(n) = value {
                limits.insert(field.into(), n.into());
            }
        }
        if let Some(counts) = self.tpm_counts {
            limits.insert("tpm_counts".into(), counts.into());
        }
        if !self.budget.is_empty() {
            limits.insert("budget".into(), json!(self.budget));
        }
        if !self.soft_budget.is_empty() {
            limits.insert("soft_budget".into(), json!(self.soft_budget));
        }
        if !limits.is_empty() {
            body.insert("limits".into(), Value::Object(limits));
        }
        Ok(())
    }
}

fn spend_request(args: SpendArgs) -> AdminRequest {
    let mut target = format!("/admin/spend?scope={}", args.scope);
    if let Some(name) = args.name {
        target.push_str(&format!("&name={name}"));
    }
    if args.by_model {
        target.push_str("&by=model");
    }
    if args.per_day {
        target.push_str("&per=day");
    }
    if let Some(day) = args.from {
        target.push_str(&format!("&from={day}"));
    }
    if let Some(day) = args.to {
        target.push_str(&format!("&to={day}"));
    }
    get(target)
}
