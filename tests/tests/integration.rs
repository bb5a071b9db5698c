//! The one integration test binary: real gateways and mocks on loopback port 0, talked to over
//! real sockets. Each test asserts exact statuses, body fields and counts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod access_log;
mod builtin;
mod dashboard;
mod framing;
mod governance;
mod guardrails;
mod metrics;
mod providers;
mod reload;
mod request_ids;
mod routing;
mod sdk;
mod tls;
mod upstream;
