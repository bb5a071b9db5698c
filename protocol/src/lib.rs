//! Sans-IO wire codecs for Tollgate: HTTP/1.1 framing, server-sent events, the OpenAI wire
//! format and the mock provider's response plans. Nothing here performs I/O or depends on a
//! runtime: every function takes bytes (and a `now` where time matters) and returns values.

pub mod anthropic_api;
pub mod chat;
pub mod error_body;
pub mod http;
pub mod json_text;
pub mod mock;
pub mod openai;
pub mod providers;
pub mod sse;
