//! `tollgate-loadgen`: HTTP/1.1 keep-alive load generator for loopback targets. Prints a
//! progress line each second on stderr and a latency table (or JSON with `--json`) at the end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use tollgate_loadgen::{parse_duration, parse_header, run, Driver, LoadOptions};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for Tollgate and OpenAI-compatible servers on loopback.
#[derive(Debug, Parser)]
#[command(name = "tollgate-loadgen", version)]
struct Cli {
    /// Target URL; loopback hosts only (127.0.0.0/8, ::1, localhost).
    #[arg(long, default_value = "http://127.0.0.1:8080/v1/chat/completions")]
    url: String,
    /// Connections (closed loop), or the connection pool size with --rate.
    #[arg(short, long, default_value_t = 16)]
    connections: usize,
    /// Open loop: requests per second at fixed intervals; latency counts from the scheduled
    /// send time.
    #[arg(long)]
    rate: Option<f64>,
    /// Measured duration (after warm-up).
    #[arg(short, long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Stop after this many measured requests.
    #[arg(short = 'n', long)]
    requests: Option<u64>,
    /// Warm-up before measuring (requests counted apart).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Runtime threads.
    #[arg(short, long, default_value_t = 1)]
    threads: usize,
    /// Ask for streamed responses and record time to first token and inter-token latency.
    #[arg(long)]
    stream: bool,
    /// Extra request header, "Name: value" (repeatable).
    #[arg(short = 'H', long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Model for the default body.
    #[arg(long, default_value = "gpt-4o-mini")]
    model: String,
    /// Send this file as the request body instead of the default one.
    #[arg(long)]
    body_file: Option<PathBuf>,
    /// Make every request's body unique: each occurrence of this marker (4 to 19 bytes) in the
    /// body is replaced by the request's number, zero-padded to the marker's length.
    #[arg(long, value_name = "MARKER")]
    vary: Option<String>,
    /// Per-request timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress line.
    #[arg(short, long)]
    quiet: bool,
    /// monoio driver: auto (io_uring, else epoll), io-uring or legacy.
    #[arg(long, default_value = "auto")]
    driver: Driver,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let body = match &cli.body_file {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Some(Bytes::from(bytes)),
            Err(err) => {
                eprintln!("error: cannot read {}: {err}", path.display());
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let opts = LoadOptions {
        url: cli.url,
        connections: cli.connections,
        rate: cli.rate,
        duration: cli.duration,
        requests: cli.requests,
        warmup: cli.warmup,
        threads: cli.threads,
        stream: cli.stream,
        headers: cli.headers,
        model: cli.model,
        body,
        vary: cli.vary,
        timeout: cli.timeout,
        progress: !cli.quiet,
        driver: cli.driver,
    };
    let report = match run(opts) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    if cli.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(err) => {
                eprintln!("error: cannot render the report: {err}");
                return ExitCode::FAILURE;
            }
        }
        if !cli.quiet {
            eprint!("{report}");
        }
    } else {
        print!("{report}");
    }
    ExitCode::SUCCESS
}
