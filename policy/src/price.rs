//! Model prices: what a call costs in nanodollars, and which price an upstream model name gets.
//! Owns the built-in price table and operator overrides on top of it. Pure data and integer
//! arithmetic: never a float in money, never I/O.
//!
//! # Matching a model name
//!
//! [`PriceTable::lookup`] takes the provider's configured name and the model name as sent
//! upstream. Matching is ASCII case-insensitive and tries, in order:
//!
//! 1. an override written `"provider/model"` equal to the provider and model;
//! 2. the model name exactly (an override replaces a built-in row of the same name);
//! 3. the model name normalised, exactly (a `"provider/name"` override first). Normalisation
//!    strips, in this order:
//!    - everything up to the last `/`: Gemini's `models/`, an OpenRouter-style `vendor/`, the
//!      path part of a Bedrock ARN;
//!    - a Vertex `@version` suffix (`claude-3-5-haiku@20241022`);
//!    - a Bedrock region / inference-profile prefix (`us.`, `us-gov.`, `eu.`, `apac.`, `jp.`,
//!      `au.`, `global.`), then a Bedrock vendor prefix (`anthropic.`, `amazon.`, `meta.`,
//!      `mistral.`, `cohere.`);
//!    - a Bedrock version suffix: `:<digits>` and anything after it (`:0`, `:0:200k`), then
//!      `-v<digits>` (`-v1`).
//! 4. the longest known name that the normalised model starts with, followed by `-` and a
//!    snapshot tag: a run of at least three digits (`-2024-07-18`, `-20250929`, `-0125`,
//!    `-001`), `latest`, or a tag starting `preview` or `exp`. So `gpt-4o-mini-2024-07-18`
//!    prices as `gpt-4o-mini` and `claude-sonnet-4-5-20250929` as `claude-sonnet-4-5`.
//!    Because the longest name wins, `gpt-4o-mini` never prices as `gpt-4o`; because the rest
//!    must look like a snapshot, a different model that merely shares a prefix (`o1-pro`,
//!    `gpt-5-pro`, `claude-opus-4-5`, `gpt-4o-audio-preview`) is unknown rather than billed
//!    at a cheaper or dearer sibling's price. On equal length a `"provider/name"` override wins.
//!
//! Anything else is unknown: `lookup` returns `None` and the caller decides (refuse, or bill
//! by a configured default). Override names are matched as written, only lowercased; the model
//! name is what gets normalised.

use tollgate_config::governance::{parse_usd, Nanos};

use crate::price_table::BUILTIN_PRICES;

/// Tokens per pricing unit: prices are quoted per one million tokens.
const TOKENS_PER_UNIT: u128 = 1_000_000;

/// Prices in nanodollars per one million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    /// Uncached input (prompt) tokens.
    pub input: Nanos,
    /// Output (completion, including reasoning) tokens.
    pub output: Nanos,
    /// Input tokens served from the vendor's prompt cache, when the vendor publishes a price.
    pub cached_input: Option<Nanos>,
}

// === impl Price ===

impl Price {
    /// Cost of a finished call. `cached_tokens` are part of `input_tokens` (OpenAI convention)
    /// and are billed at `cached_input` when known, else at `input`; a count above
    /// `input_tokens` is clamped to it. Rounded up to a whole nanodollar, once, on the total.
    /// Saturates at `Nanos::MAX` instead of overflowing.
    pub fn cost(&self, input_tokens: u64, cached_tokens: u64, output_tokens: u64) -> Nanos {
        let cached = cached_tokens.min(input_tokens);
        let uncached = input_tokens - cached;
        let cached_price = self.cached_input.unwrap_or(self.input);
        // Each product fits in u128 (u64 x u64); only the sum can overflow, so it saturates.
        let total = mul(uncached, self.input)
            .saturating_add(mul(cached, cached_price))
            .saturating_add(mul(output_tokens, self.output));
        let nanos = total.div_ceil(TOKENS_PER_UNIT);
        Nanos::try_from(nanos).unwrap_or(Nanos::MAX)
    }

    /// Worst-case cost before the call: all input at the input price, `max_output_tokens` at
    /// the output price. What a reservation holds until the call settles.
    pub fn worst_case(&self, input_tokens: u64, max_output_tokens: u64) -> Nanos {
        self.cost(input_tokens, 0, max_output_tokens)
    }
}

fn mul(tokens: u64, price: Nanos) -> u128 {
    u128::from(tokens) * u128::from(price)
}

/// One named price. Names are stored lowercase.
#[derive(Debug, Clone)]
struct Named {
    name: Box<str>,
    price: Price,
}

/// An override written `"provider/model"`, kept split so the model part can take part in
/// normalised and snapshot matching for that provider.
#[derive(Debug, Clone)]
struct Qualified {
    provider: Box<str>,
    model: Box<str>,
    price: Price,
}

/// The prices the gateway reserves and charges with: the built-in table and operator
/// overrides. Built once per config and shared read-only.
#[derive(Debug, Clone)]
pub struct PriceTable {
    /// Overrides written `"provider/model"`.
    qualified: Vec<Qualified>,
    /// Built-in rows and plain overrides; an override replaces the row of the same name.
    plain: Vec<Named>,
}

// === impl PriceTable ===

impl PriceTable {
    /// The built-in table of current models (see `price_table.rs` for the date it was checked).
    pub fn builtin() -> Self {
        let plain = BUILTIN_PRICES
            .iter()
            .filter_map(|&(name, input, output, cached)| {
                // The rows are constants checked by a test, so a row that fails to parse is a
                // bug caught before release; skipping it keeps start-up panic-free.
                let price = Price {
                    input: parse_usd(input).ok()?,
                    output: parse_usd(output).ok()?,
                    cached_input: match cached {
                        Some(c) => Some(parse_usd(c).ok()?),
                        None => None,
                    },
                };
                Some(Named {
                    name: name.to_ascii_lowercase().into(),
                    price,
                })
            })
            .collect();
        Self {
            qualified: Vec::new(),
            plain,
        }
    }

    /// The built-in table with operator overrides on top; override names follow the same
    /// matching rules. A name with a `/` is a `"provider/model"` override (it also matches a
    /// model sent upstream with exactly that name, e.g. through OpenRouter). When a name is
    /// given twice the last one wins.
    pub fn with_overrides<'a>(overrides: impl IntoIterator<Item = (&'a str, Price)>) -> Self {
        let mut table = Self::builtin();
        for (name, price) in overrides {
            let name = name.trim().to_ascii_lowercase();
            if let Some((provider, model)) = name.split_once('/') {
                let entry = Qualified {
                    provider: provider.into(),
                    model: model.into(),
                    price,
                };
                match table
                    .qualified
                    .iter_mut()
                    .find(|q| *q.provider == *provider && *q.model == *model)
                {
                    Some(existing) => *existing = entry,
                    None => table.qualified.push(entry),
                }
            } else {
                match table.plain.iter_mut().find(|n| *n.name == *name) {
                    Some(existing) => existing.price = price,
                    None => table.plain.push(Named {
                        name: name.into(),
                        price,
                    }),
                }
            }
        }
        table
    }

    /// The price for an upstream model name as sent to the provider, or `None` when unknown.
    /// `provider` is the provider's configured name, so that an override written as
    /// `"provider/model"` wins over `"model"`. See the module docs for the matching rules.
    pub fn lookup(&self, provider: &str, model: &str) -> Option<Price> {
        let provider = provider.to_ascii_lowercase();
        let model = model.trim().to_ascii_lowercase();

        // 1. "provider/model" override, exactly.
        let qualified_exact = |m: &str| {
            self.qualified
                .iter()
                .find(|q| *q.provider == *provider && *q.model == *m)
                .map(|q| q.price)
        };
        if let Some(price) = qualified_exact(&model) {
            return Some(price);
        }

        // 2. The model name exactly, including an override whose name contains a `/`.
        if let Some(price) = self.exact(&model) {
            return Some(price);
        }
        if let Some((vendor, rest)) = model.split_once('/') {
            if let Some(q) = self
                .qualified
                .iter()
                .find(|q| *q.provider == *vendor && *q.model == *rest)
            {
                return Some(q.price);
            }
        }

        // 3. The normalised name exactly.
        let normalised = normalise(&model);
        if normalised != model {
            if let Some(price) = qualified_exact(normalised).or_else(|| self.exact(normalised)) {
                return Some(price);
            }
        }

        // 4. The longest known name of which the normalised name is a snapshot. Qualified
        // overrides come first so they win a tie on length.
        let qualified = self
            .qualified
            .iter()
            .filter(|q| *q.provider == *provider)
            .map(|q| (&*q.model, q.price));
        let plain = self.plain.iter().map(|n| (&*n.name, n.price));
        let mut best: Option<(usize, Price)> = None;
        for (name, price) in qualified.chain(plain) {
            if is_snapshot_of(normalised, name) && best.is_none_or(|(len, _)| name.len() > len) {
                best = Some((name.len(), price));
            }
        }
        best.map(|(_, price)| price)
    }

    /// How many named prices the table holds (built-in rows plus overrides that do not replace
    /// one).
    pub fn len(&self) -> usize {
        self.qualified.len() + self.plain.len()
    }

    /// Whether the table holds no prices at all.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn exact(&self, name: &str) -> Option<Price> {
        self.plain
            .iter()
            .find(|n| *n.name == *name)
            .map(|n| n.price)
    }
}

/// Region / inference-profile prefixes of Bedrock model ids.
const BEDROCK_REGIONS: &[&str] = &["us.", "us-gov.", "eu.", "apac.", "jp.", "au.", "global."];

/// Vendor prefixes of Bedrock model ids.
const BEDROCK_VENDORS: &[&str] = &["anthropic.", "amazon.", "meta.", "mistral.", "cohere."];

/// Strip provider spellings around a lowercase model name; returns a sub-slice, no allocation.
fn normalise(model: &str) -> &str {
    let mut m = model;
    if let Some((_, last)) = m.rsplit_once('/') {
        m = last;
    }
    if let Some((name, _version)) = m.split_once('@') {
        m = name;
    }
    if let Some(rest) = BEDROCK_REGIONS.iter().find_map(|p| m.strip_prefix(p)) {
        m = rest;
    }
    if let Some(rest) = BEDROCK_VENDORS.iter().find_map(|p| m.strip_prefix(p)) {
        m = rest;
    }
    if let Some((name, version)) = m.split_once(':') {
        if version.starts_with(|c: char| c.is_ascii_digit()) {
            m = name;
        }
    }
    if let Some((name, version)) = m.rsplit_once("-v") {
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit()) {
            m = name;
        }
    }
    m
}

/// Whether `model` is `base` followed by `-` and a snapshot tag (see the module docs).
fn is_snapshot_of(model: &str, base: &str) -> bool {
    let Some(tag) = model
        .strip_prefix(base)
        .and_then(|rest| rest.strip_prefix('-'))
    else {
        return false;
    };
    let first = tag.split('-').next().unwrap_or(tag);
    (first.len() >= 3 && first.bytes().all(|b| b.is_ascii_digit()))
        || first == "latest"
        || first.starts_with("preview")
        || first.starts_with("exp")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: Price = Price {
        input: 150_000_000,
        output: 600_000_000,
        cached_input: Some(75_000_000),
    };

    fn price(table: &PriceTable, model: &str) -> Option<Price> {
        table.lookup("any", model)
    }

    fn input_usd(table: &PriceTable, model: &str) -> Option<Nanos> {
        price(table, model).map(|p| p.input)
    }

    fn flat(nanos_per_m: Nanos) -> Price {
        Price {
            input: nanos_per_m,
            output: nanos_per_m,
            cached_input: None,
        }
    }

    // --- arithmetic ---

    #[test]
    fn gpt_4o_mini_costs_what_the_brief_says() {
        assert_eq!(MINI.cost(1_000_000, 0, 0), 150_000_000);
        assert_eq!(MINI.cost(0, 0, 1_000_000), 600_000_000);
        assert_eq!(MINI.cost(10, 0, 20), 13_500);
    }

    #[test]
    fn cached_tokens_are_part_of_input_and_billed_at_the_cached_price() {
        // 1000 input of which 400 cached: 600 * 150 + 400 * 75 = 90_000 + 30_000.
        assert_eq!(MINI.cost(1_000, 400, 0), 120_000);
        // Without a published cached price, cached tokens bill at the input price.
        let no_cache = Price {
            cached_input: None,
            ..MINI
        };
        assert_eq!(no_cache.cost(1_000, 400, 0), 150_000);
        // More cached than input is clamped: everything cached.
        assert_eq!(MINI.cost(1_000, 5_000, 0), 75_000);
    }

    #[test]
    fn cost_rounds_up_once_on_the_total() {
        // $0.15/M is exactly 150 nanodollars a token: nothing to round.
        assert_eq!(MINI.cost(1, 0, 0), 150);
        assert_eq!(MINI.cost(0, 0, 0), 0);
        // 1.5 nanodollars a token input, 0.5 cached, 2.5 output.
        let fractional = Price {
            input: 1_500_000,
            output: 2_500_000,
            cached_input: Some(500_000),
        };
        assert_eq!(fractional.cost(1, 0, 0), 2);
        assert_eq!(fractional.cost(0, 0, 1), 3);
        // 1.5 + 0.5 = 2 exactly: rounding each part first would give 3.
        assert_eq!(fractional.cost(2, 1, 0), 2);
        // 1.5 + 2.5 = 4: rounding each part first would give 5.
        assert_eq!(fractional.cost(1, 0, 1), 4);
        // Exactly on a boundary stays put: 20 tokens at $0.00005/M = 1 nanodollar.
        assert_eq!(flat(50_000).cost(20, 0, 0), 1);
        assert_eq!(flat(50_000).cost(21, 0, 0), 2);
        // nova-micro cached input is 8.75 nanodollars a token.
        let micro = PriceTable::builtin().lookup("bedrock", "nova-micro");
        assert_eq!(micro.map(|p| p.cost(1, 1, 0)), Some(9));
    }

    #[test]
    fn cost_saturates_instead_of_overflowing() {
        let dear = Price {
            input: Nanos::MAX,
            output: Nanos::MAX,
            cached_input: Some(Nanos::MAX),
        };
        assert_eq!(dear.cost(u64::MAX, 1, u64::MAX), Nanos::MAX);
        assert_eq!(dear.worst_case(u64::MAX, u64::MAX), Nanos::MAX);
        // Large but representable: no premature saturation.
        assert_eq!(flat(1_000_000).cost(u64::MAX, 0, 0), u64::MAX);
    }

    #[test]
    fn worst_case_ignores_the_cache_and_uses_max_output() {
        assert_eq!(MINI.worst_case(10, 20), 13_500);
        assert!(MINI.worst_case(1_000, 0) >= MINI.cost(1_000, 400, 0));
    }

    // --- built-in data ---

    #[test]
    fn every_builtin_row_parses_and_names_are_unique() {
        let table = PriceTable::builtin();
        assert_eq!(table.len(), BUILTIN_PRICES.len());
        assert!(!table.is_empty());
        for (i, row) in BUILTIN_PRICES.iter().enumerate() {
            assert_eq!(row.0, row.0.to_ascii_lowercase(), "{} not lowercase", row.0);
            assert!(
                BUILTIN_PRICES[i + 1..].iter().all(|other| other.0 != row.0),
                "{} listed twice",
                row.0
            );
            assert!(
                table.lookup("any", row.0).is_some(),
                "{} does not price",
                row.0
            );
        }
    }

    #[test]
    fn builtin_gpt_4o_mini_is_exactly_the_agreed_price() {
        assert_eq!(price(&PriceTable::builtin(), "gpt-4o-mini"), Some(MINI));
    }

    #[test]
    fn builtin_spot_checks() {
        let t = PriceTable::builtin();
        assert_eq!(
            price(&t, "claude-sonnet-4-5"),
            Some(Price {
                input: 3_000_000_000,
                output: 15_000_000_000,
                cached_input: Some(300_000_000),
            })
        );
        assert_eq!(
            price(&t, "nova-micro"),
            Some(Price {
                input: 35_000_000,
                output: 140_000_000,
                cached_input: Some(8_750_000),
            })
        );
        assert_eq!(
            price(&t, "text-embedding-3-small"),
            Some(Price {
                input: 20_000_000,
                output: 0,
                cached_input: None,
            })
        );
    }

    // --- lookup rules ---

    #[test]
    fn exact_names_match_case_insensitively() {
        let t = PriceTable::builtin();
        assert_eq!(price(&t, "GPT-4o-Mini"), Some(MINI));
        assert_eq!(price(&t, " gpt-4o-mini "), Some(MINI));
    }

    #[test]
    fn dated_snapshots_price_as_their_family() {
        let t = PriceTable::builtin();
        assert_eq!(price(&t, "gpt-4o-mini-2024-07-18"), Some(MINI));
        assert_eq!(
            price(&t, "claude-sonnet-4-5-20250929"),
            price(&t, "claude-sonnet-4-5")
        );
        assert_eq!(
            price(&t, "claude-opus-4-20250514"),
            price(&t, "claude-opus-4")
        );
        assert_eq!(
            price(&t, "claude-opus-4-1-20250805"),
            price(&t, "claude-opus-4-1")
        );
        assert_eq!(
            price(&t, "claude-3-5-haiku-latest"),
            price(&t, "claude-3-5-haiku")
        );
        assert_eq!(price(&t, "gpt-3.5-turbo-0125"), price(&t, "gpt-3.5-turbo"));
        assert_eq!(price(&t, "o3-mini-2025-01-31"), price(&t, "o3-mini"));
        assert_eq!(
            price(&t, "gemini-2.0-flash-001"),
            price(&t, "gemini-2.0-flash")
        );
        assert_eq!(
            price(&t, "gemini-2.5-flash-preview-09-2025"),
            price(&t, "gemini-2.5-flash")
        );
    }

    #[test]
    fn a_longer_sibling_never_prices_as_the_shorter_one() {
        let t = PriceTable::builtin();
        let gpt_4o = price(&t, "gpt-4o");
        assert_ne!(gpt_4o, Some(MINI));
        assert_eq!(price(&t, "gpt-4o-mini"), Some(MINI));
        assert_eq!(price(&t, "gpt-4o-mini-2024-07-18"), Some(MINI));
        assert_eq!(price(&t, "gpt-4o-2024-08-06"), gpt_4o);
        assert_eq!(input_usd(&t, "gpt-4.1-nano-2025-04-14"), Some(100_000_000));
        assert_eq!(input_usd(&t, "gpt-5-mini-2025-08-07"), Some(250_000_000));
        assert_eq!(
            price(&t, "gemini-2.5-flash-lite-preview-06-17"),
            price(&t, "gemini-2.5-flash-lite")
        );
        assert_ne!(
            price(&t, "gemini-2.5-flash-lite"),
            price(&t, "gemini-2.5-flash")
        );
    }

    #[test]
    fn a_different_model_sharing_a_prefix_is_unknown_not_mispriced() {
        let t = PriceTable::builtin();
        for model in [
            "o1-pro",
            "o3-pro-2025-06-10",
            "gpt-5-pro",
            "claude-opus-4-5-20251101",
            "gpt-4o-audio-preview",
            "gpt-4o-mini-search-preview",
            "gpt-4o-minix",
        ] {
            assert_eq!(price(&t, model), None, "{model}");
        }
    }

    #[test]
    fn bedrock_ids_are_normalised() {
        let t = PriceTable::builtin();
        let sonnet = price(&t, "claude-sonnet-4-5");
        assert!(sonnet.is_some());
        assert_eq!(
            price(&t, "anthropic.claude-sonnet-4-5-20250929-v1:0"),
            sonnet
        );
        assert_eq!(
            price(&t, "us.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            sonnet
        );
        assert_eq!(
            price(&t, "global.anthropic.claude-sonnet-4-5-20250929-v1:0"),
            sonnet
        );
        assert_eq!(
            price(&t, "eu.anthropic.claude-3-haiku-20240307-v1:0:200k"),
            price(&t, "claude-3-haiku")
        );
        assert_eq!(
            price(&t, "apac.amazon.nova-pro-v1:0"),
            price(&t, "nova-pro")
        );
        assert_eq!(
            price(&t, "us.amazon.nova-premier-v1:0"),
            price(&t, "nova-premier")
        );
        assert_eq!(
            price(&t, "meta.llama3-3-70b-instruct-v1:0"),
            price(&t, "llama3-3-70b-instruct")
        );
        assert_eq!(
            price(&t, "us.meta.llama3-1-8b-instruct-v1:0"),
            price(&t, "llama3-1-8b-instruct")
        );
        assert_eq!(
            price(&t, "mistral.mistral-large-2402-v1:0"),
            price(&t, "mistral-large")
        );
        assert_eq!(
            price(
                &t,
                "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.amazon.nova-lite-v1:0"
            ),
            price(&t, "nova-lite")
        );
        // An unknown vendor prefix is not stripped.
        assert_eq!(price(&t, "acme.nova-pro-v1:0"), None);
    }

    #[test]
    fn gemini_vertex_and_openrouter_spellings_are_normalised() {
        let t = PriceTable::builtin();
        assert_eq!(
            price(&t, "models/gemini-2.5-pro"),
            price(&t, "gemini-2.5-pro")
        );
        assert_eq!(
            price(&t, "models/gemini-2.0-flash-lite-001"),
            price(&t, "gemini-2.0-flash-lite")
        );
        assert_eq!(price(&t, "openai/gpt-4o-mini"), Some(MINI));
        assert_eq!(
            price(&t, "deepseek/deepseek-chat"),
            price(&t, "deepseek-chat")
        );
        assert_eq!(
            price(&t, "claude-3-5-haiku@20241022"),
            price(&t, "claude-3-5-haiku")
        );
        // OpenRouter's ":free" variant is a different price: unknown, not list price.
        assert_eq!(price(&t, "deepseek/deepseek-chat:free"), None);
    }

    #[test]
    fn unknown_models_are_none() {
        let t = PriceTable::builtin();
        assert_eq!(price(&t, "my-finetune"), None);
        assert_eq!(price(&t, ""), None);
        assert_eq!(price(&t, "gpt"), None);
        assert_eq!(price(&t, "gpt-4o-"), None);
    }

    // --- overrides ---

    #[test]
    fn overrides_replace_builtin_rows_and_add_new_ones() {
        let t = PriceTable::with_overrides([("GPT-4o-mini", flat(1)), ("my-finetune", flat(2))]);
        assert_eq!(t.len(), PriceTable::builtin().len() + 1);
        assert_eq!(price(&t, "gpt-4o-mini"), Some(flat(1)));
        // The override follows the same rules: snapshots and provider spellings.
        assert_eq!(price(&t, "gpt-4o-mini-2024-07-18"), Some(flat(1)));
        assert_eq!(price(&t, "openai/gpt-4o-mini"), Some(flat(1)));
        assert_eq!(price(&t, "my-finetune"), Some(flat(2)));
        assert_eq!(price(&t, "my-finetune-20260101"), Some(flat(2)));
        // Untouched rows keep their built-in price.
        assert_eq!(price(&t, "gpt-4o"), price(&PriceTable::builtin(), "gpt-4o"));
    }

    #[test]
    fn provider_qualified_override_wins_for_that_provider_only() {
        let t =
            PriceTable::with_overrides([("azure/gpt-4o-mini", flat(7)), ("gpt-4o-mini", flat(1))]);
        assert_eq!(t.lookup("azure", "gpt-4o-mini"), Some(flat(7)));
        assert_eq!(t.lookup("AZURE", "GPT-4o-mini"), Some(flat(7)));
        assert_eq!(t.lookup("openai", "gpt-4o-mini"), Some(flat(1)));
        // It also takes part in normalised and snapshot matching, winning a tie on length.
        assert_eq!(t.lookup("azure", "gpt-4o-mini-2024-07-18"), Some(flat(7)));
        assert_eq!(t.lookup("azure", "models/gpt-4o-mini"), Some(flat(7)));
        // But a longer plain name still beats a shorter qualified one.
        let t = PriceTable::with_overrides([("azure/gpt-4o", flat(7))]);
        assert_eq!(t.lookup("azure", "gpt-4o-mini-2024-07-18"), Some(MINI));
        assert_eq!(t.lookup("azure", "gpt-4o-2024-08-06"), Some(flat(7)));
    }

    #[test]
    fn a_slashed_override_also_matches_that_exact_model_name() {
        // An OpenRouter deployment sends "vendor/model" upstream.
        let t = PriceTable::with_overrides([("meta-llama/llama-4-scout", flat(3))]);
        assert_eq!(
            t.lookup("openrouter", "meta-llama/llama-4-scout"),
            Some(flat(3))
        );
        assert_eq!(t.lookup("meta-llama", "llama-4-scout"), Some(flat(3)));
        assert_eq!(t.lookup("openrouter", "llama-4-scout"), None);
    }

    #[test]
    fn the_last_of_repeated_overrides_wins() {
        let t = PriceTable::with_overrides([
            ("x-model", flat(1)),
            ("x-model", flat(2)),
            ("p/y", flat(3)),
            ("P/Y", flat(4)),
        ]);
        assert_eq!(t.len(), PriceTable::builtin().len() + 2);
        assert_eq!(price(&t, "x-model"), Some(flat(2)));
        assert_eq!(t.lookup("p", "y"), Some(flat(4)));
    }

    #[test]
    fn normalise_strips_only_what_it_should() {
        assert_eq!(normalise("gpt-4o"), "gpt-4o");
        assert_eq!(
            normalise("us.anthropic.claude-3-haiku-20240307-v1:0"),
            "claude-3-haiku-20240307"
        );
        assert_eq!(normalise("amazon.nova-pro-v1:0"), "nova-pro");
        assert_eq!(normalise("models/gemini-2.5-pro"), "gemini-2.5-pro");
        assert_eq!(normalise("x/y/z-model"), "z-model");
        assert_eq!(normalise("model:free"), "model:free");
        assert_eq!(normalise("model-vx"), "model-vx");
        assert_eq!(normalise("model-v"), "model-v");
    }
}
