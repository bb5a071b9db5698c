//! Tollgate policy: decisions without I/O: key authentication, the identity directory,
//! lock-free rate-limit and budget counters, prices and budget periods, and guardrails
//! (scanning text against compiled rules). Nothing here blocks, performs I/O or allocates
//! per byte on the request path.

pub mod governance;
pub mod guardrails;
pub mod keys;
pub mod limits;
pub mod period;
pub mod price;
mod price_table;
