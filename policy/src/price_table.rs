//! The built-in list prices, as data only. [`crate::price`] parses and matches them; nothing
//! here computes money.
//!
//! Checked against the vendors' published list prices on 2026-11-21. Prices change: operators
//! correct or extend this table with `[[prices]]` entries in the config file, which win over
//! every row here.
//!
//! Each row is `(name, input, output, cached input)` in US dollars per one million tokens, as
//! decimal strings so no float ever touches money. Names are lowercase model ids without dated
//! snapshot suffixes; `crate::price` maps snapshots and provider spellings onto them.
//!
//! Conventions per vendor:
//! - OpenAI: standard (not batch, flex or priority) tier; cached = "cached input".
//! - Anthropic: base input; cached = "cache hits and refreshes" (cache writes are not modelled
//!   and bill at the input price).
//! - Google Gemini: paid tier, text input; gemini-2.5-pro at its <=200k-token prompt tier;
//!   cached = context-cache read (storage per hour is not modelled).
//! - Amazon Bedrock only families: on-demand, us-east-1; cached = cache read where published.
//! - DeepSeek: cached = "cache hit" input, input = "cache miss" input.

/// `(name, input USD per 1M, output USD per 1M, cached input USD per 1M)`.
pub(crate) type PriceRow = (
    &'static str,
    &'static str,
    &'static str,
    Option<&'static str>,
);

/// The built-in rows, grouped by vendor. Order carries no meaning: lookup picks the longest
/// matching name itself, and names are unique (a test checks).
pub(crate) const BUILTIN_PRICES: &[PriceRow] = &[
    // --- OpenAI ---
    ("gpt-5", "1.25", "10.00", Some("0.125")),
    ("gpt-5-mini", "0.25", "2.00", Some("0.025")),
    ("gpt-5-nano", "0.05", "0.40", Some("0.005")),
    ("gpt-4.1", "2.00", "8.00", Some("0.50")),
    ("gpt-4.1-mini", "0.40", "1.60", Some("0.10")),
    ("gpt-4.1-nano", "0.10", "0.40", Some("0.025")),
    ("gpt-4o", "2.50", "10.00", Some("1.25")),
    ("gpt-4o-mini", "0.15", "0.60", Some("0.075")),
    ("o1", "15.00", "60.00", Some("7.50")),
    ("o3", "2.00", "8.00", Some("0.50")),
    ("o3-mini", "1.10", "4.40", Some("0.55")),
    ("o4-mini", "1.10", "4.40", Some("0.275")),
    ("gpt-3.5-turbo", "0.50", "1.50", None),
    ("text-embedding-3-small", "0.02", "0", None),
    ("text-embedding-3-large", "0.13", "0", None),
    ("text-embedding-ada-002", "0.10", "0", None),
    // --- Anthropic ---
    ("claude-opus-4-1", "15.00", "75.00", Some("1.50")),
    ("claude-opus-4", "15.00", "75.00", Some("1.50")),
    ("claude-sonnet-4-5", "3.00", "15.00", Some("0.30")),
    ("claude-sonnet-4", "3.00", "15.00", Some("0.30")),
    ("claude-3-7-sonnet", "3.00", "15.00", Some("0.30")),
    ("claude-haiku-4-5", "1.00", "5.00", Some("0.10")),
    ("claude-3-5-haiku", "0.80", "4.00", Some("0.08")),
    ("claude-3-haiku", "0.25", "1.25", Some("0.03")),
    // --- Google Gemini ---
    ("gemini-2.5-pro", "1.25", "10.00", Some("0.125")),
    ("gemini-2.5-flash", "0.30", "2.50", Some("0.03")),
    ("gemini-2.5-flash-lite", "0.10", "0.40", Some("0.01")),
    ("gemini-2.0-flash", "0.10", "0.40", Some("0.025")),
    ("gemini-2.0-flash-lite", "0.075", "0.30", None),
    // --- Amazon Bedrock only families ---
    ("nova-premier", "2.50", "12.50", None),
    ("nova-pro", "0.80", "3.20", Some("0.20")),
    ("nova-lite", "0.06", "0.24", Some("0.015")),
    ("nova-micro", "0.035", "0.14", Some("0.00875")),
    ("llama3-3-70b-instruct", "0.72", "0.72", None),
    ("llama3-1-8b-instruct", "0.22", "0.22", None),
    ("mistral-large", "4.00", "12.00", None),
    // --- DeepSeek ---
    ("deepseek-chat", "0.28", "0.42", Some("0.028")),
    ("deepseek-reasoner", "0.28", "0.42", Some("0.028")),
];
