//! `tollgate-mock`: the standalone OpenAI-compatible mock provider. Prints the bound address on
//! stdout, then serves until SIGINT or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use tollgate_loadgen::{
    parse_duration, Driver, FaultKind, FaultSpec, MockKnobs, MockServer, MockServerConfig,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// OpenAI-compatible mock provider for tests and benchmarks. Model names pick behaviour per
/// request: mock-error-<status>, mock-reset, mock-cut, mock-hang, mock-slow, mock-slow-body.
#[derive(Debug, Parser)]
#[command(name = "tollgate-mock", version)]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:18000")]
    listen: SocketAddr,
    /// Runtime threads sharing the listener.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Delay before the response head.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    latency: Duration,
    /// Streams: delay between the head and the first content chunk.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    ttft: Duration,
    /// Streams: content chunks per response.
    #[arg(long, default_value_t = 16)]
    chunks: u32,
    /// Streams: delay between content chunks.
    #[arg(long, default_value = "0ms", value_parser = parse_duration)]
    chunk_delay: Duration,
    /// Non-streamed completions: generated tokens.
    #[arg(long, default_value_t = 16)]
    completion_tokens: u32,
    /// Embedding vector length.
    #[arg(long, default_value_t = 16)]
    embedding_dims: u32,
    /// Pad generated content to this many bytes.
    #[arg(long)]
    response_bytes: Option<usize>,
    /// Inject a fault: status:<code>, reset, cut, slow-body or hang.
    #[arg(long)]
    fault: Option<FaultKind>,
    /// Fraction of requests (0..=1) that get the fault, spread deterministically.
    #[arg(long, default_value_t = 1.0, requires = "fault")]
    fault_rate: f64,
    /// monoio driver: auto (io_uring, else epoll), io-uring or legacy.
    #[arg(long, default_value = "auto")]
    driver: Driver,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !(0.0..=1.0).contains(&cli.fault_rate) {
        eprintln!("error: --fault-rate must be between 0 and 1");
        return ExitCode::from(2);
    }
    let knobs = MockKnobs {
        latency: cli.latency,
        ttft: cli.ttft,
        chunks: cli.chunks,
        chunk_delay: cli.chunk_delay,
        completion_tokens: cli.completion_tokens,
        embedding_dims: cli.embedding_dims,
        response_bytes: cli.response_bytes,
        fault: cli.fault.map(|kind| FaultSpec {
            kind,
            rate: cli.fault_rate,
        }),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        if let Err(err) = signal_hook::flag::register(signal, Arc::clone(&stop)) {
            eprintln!("error: cannot handle signal {signal}: {err}");
            return ExitCode::FAILURE;
        }
    }
    let server = match MockServer::start(MockServerConfig {
        listen: cli.listen,
        threads: cli.threads,
        knobs,
        driver: cli.driver,
    }) {
        Ok(server) => server,
        Err(err) => {
            eprintln!("error: cannot start the mock on {}: {err}", cli.listen);
            return ExitCode::FAILURE;
        }
    };
    println!("{}", server.addr());
    eprintln!(
        "tollgate-mock listening on http://{} ({} thread(s), {})",
        server.addr(),
        cli.threads.max(1),
        server.driver()
    );
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = server.stats();
    eprintln!(
        "tollgate-mock: {} connections, {} requests, {} prompt + {} completion tokens served",
        stats.connections(),
        stats.requests(),
        stats.prompt_tokens(),
        stats.completion_tokens()
    );
    server.shutdown();
    ExitCode::SUCCESS
}
