//! Tollgate policy: decisions without I/O. Today this is key authentication; limits, budgets
//! and guardrails join it as later capabilities land. Nothing here blocks, performs I/O or
//! allocates per byte on the request path.

pub mod keys;
pub mod limits;
pub mod period;
pub mod price;
mod price_table;
