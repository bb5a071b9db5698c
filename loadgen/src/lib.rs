//! Tollgate's load generator and mock provider.
//!
//! - [`run`] drives HTTP/1.1 keep-alive load at a loopback target, closed loop or open loop
//!   (latency from the scheduled send time, so coordinated omission cannot hide queueing), and
//!   returns a [`LoadReport`] with HDR-histogram percentiles. The `tollgate-loadgen` binary is
//!   a thin CLI over it.
//! - [`mock::MockServer`] is the standalone OpenAI-compatible mock provider
//!   (`tollgate-mock`), answering with the sans-IO plans of `tollgate_protocol::mock`.
//!
//! Load only ever goes to loopback addresses: [`parse_target`] refuses anything else.

mod client;
mod io;
pub mod mock;
mod options;
mod report;

pub use client::{default_body, run};
pub use io::Driver;
pub use mock::{MockServer, MockServerConfig, MockStats};
pub use options::{parse_duration, parse_header, parse_target, LoadError, LoadOptions, Target};
pub use report::{ErrorCounts, LatencySummary, LoadReport};
pub use tollgate_protocol::mock::{FaultKind, FaultSpec, MockKnobs};
