//! The `tollgate` command: `serve`, `check`, `--version`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tollgate_config::Config;
use tollgate_engine::Gateway;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tollgate: a fast, policy-enforcing AI gateway.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the gateway.
    Serve {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
        /// Listen address, overriding `server.listen`.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Number of workers, overriding `server.workers` (default: one per allowed CPU).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Validate a configuration file and print every error with its key path.
    Check {
        /// Configuration file (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TOLLGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Check { config } => match Config::load(&config) {
            Ok(cfg) => {
                println!(
                    "{}: ok ({} providers, {} models, {} keys)",
                    config.display(),
                    cfg.providers.len(),
                    cfg.models.len(),
                    cfg.keys.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: invalid configuration", config.display());
                eprintln!("{errors}");
                ExitCode::from(2)
            }
        },
        Command::Serve {
            config,
            listen,
            workers,
        } => serve(config, listen, workers),
    }
}

fn serve(path: PathBuf, listen: Option<SocketAddr>, workers: Option<usize>) -> ExitCode {
    let mut config = match Config::load(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: invalid configuration", path.display());
            eprintln!("{errors}");
            return ExitCode::from(2);
        }
    };
    config.apply_overrides(listen, workers);
    let signals = match signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = match Gateway::start(config) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut signals = signals;
    if let Some(signal) = signals.forever().next() {
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
