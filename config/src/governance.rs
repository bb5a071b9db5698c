//! Governance vocabulary shared by config, policy and the store: money amounts, budget periods,
//! limits and the org > team > user > key hierarchy as declared in the file. Parsing of the
//! compact text forms (`"50usd/month"`, `"$0.001"`) lives here so the CLI, the admin API and the
//! config file accept exactly the same spellings.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Money in nanodollars (1e-9 USD). Integers keep budgets exact; a u64 holds about $18 billion.
pub type Nanos = u64;

/// Nanodollars in one dollar.
pub const NANOS_PER_USD: u64 = 1_000_000_000;

/// How long a budget's spend accumulates before it starts again. Periods are calendar periods
/// in UTC: a day starts at 00:00, a week on Monday, a month on the 1st.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BudgetPeriod {
    /// One UTC calendar day.
    Day,
    /// One ISO week (Monday to Sunday, UTC).
    Week,
    /// One UTC calendar month.
    Month,
    /// Never resets.
    Total,
}

impl BudgetPeriod {
    /// Lowercase name, as written in config (`day`, `week`, `month`, `total`).
    pub fn as_str(self) -> &'static str {
        match self {
            BudgetPeriod::Day => "day",
            BudgetPeriod::Week => "week",
            BudgetPeriod::Month => "month",
            BudgetPeriod::Total => "total",
        }
    }
}

/// A money limit over a period. Hard budgets refuse requests that could exceed them; soft ones
/// only raise an alert when crossed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Budget {
    /// The limit, in nanodollars.
    pub amount: Nanos,
    /// When spend starts again from zero.
    pub period: BudgetPeriod,
    /// Alert only; never refuse.
    #[serde(default)]
    pub soft: bool,
}

impl fmt::Display for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}usd/{}", format_usd(self.amount), self.period.as_str())
    }
}

/// Which tokens a tokens-per-minute limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenCount {
    /// Prompt tokens only.
    Input,
    /// Completion tokens only.
    Output,
    /// Prompt and completion tokens.
    #[default]
    Total,
}

impl TokenCount {
    /// Lowercase name, as written in config.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenCount::Input => "input",
            TokenCount::Output => "output",
            TokenCount::Total => "total",
        }
    }
}

/// Rate limits and budgets of one org, team, user or key. `models` holds tighter limits for one
/// client-facing model, on top of these; a per-model entry has no `models` of its own.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rpm: Option<u64>,
    /// Tokens per minute, counted as `tpm_counts` says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpm: Option<u64>,
    /// Which tokens `tpm` counts (default `total`).
    #[serde(default)]
    pub tpm_counts: TokenCount,
    /// Requests in flight at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u64>,
    /// Money limits; every one must pass.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<Budget>,
    /// Limits for one model (by the name clients send), on top of these.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub models: BTreeMap<String, Limits>,
}

impl Limits {
    /// True when nothing is limited, here or for any model.
    pub fn is_empty(&self) -> bool {
        self.rpm.is_none()
            && self.tpm.is_none()
            && self.max_parallel.is_none()
            && self.budgets.is_empty()
            && self.models.values().all(Limits::is_empty)
    }
}

/// `[[orgs]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrgConfig {
    /// Unique org name.
    pub name: String,
    /// Its limits and budgets.
    pub limits: Limits,
    /// The guardrail profile for its keys that name none closer (key, user, team).
    pub guardrails: Option<String>,
}

/// `[[teams]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamConfig {
    /// Unique team name.
    pub name: String,
    /// The org it belongs to, if any.
    pub org: Option<String>,
    /// Its limits and budgets.
    pub limits: Limits,
    /// The guardrail profile for its keys that name none closer (key, user); else the org's.
    pub guardrails: Option<String>,
}

/// `[[users]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserConfig {
    /// Unique user name.
    pub name: String,
    /// The team it belongs to, if any (the team gives the org).
    pub team: Option<String>,
    /// The org it belongs to directly, when it has no team.
    pub org: Option<String>,
    /// Its limits and budgets.
    pub limits: Limits,
    /// The guardrail profile for its keys that name none; else its team's or org's.
    pub guardrails: Option<String>,
}

/// Who a key belongs to. The owner's chain (user > team > org) is resolved by name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyOwner {
    /// Owning user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Owning team (when no user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Owning org (when no user or team).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

/// Parse a money amount: `"50usd"`, `"$50"`, `"0.001"`, `"12.5 usd"`. At most nine decimals.
pub fn parse_usd(text: &str) -> Result<Nanos, String> {
    let t = text.trim();
    let t = t.strip_prefix('$').unwrap_or(t);
    let t = t
        .strip_suffix("usd")
        .or_else(|| t.strip_suffix("USD"))
        .unwrap_or(t)
        .trim();
    let bad =
        || format!("expected an amount in dollars like \"50usd\" or \"0.001usd\", got {text:?}");
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if frac.len() > 9 {
        return Err(format!(
            "{text:?} has more than nine decimals; the smallest amount is 0.000000001usd"
        ));
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let mut frac_nanos: u64 = 0;
    for (i, digit) in frac.bytes().enumerate() {
        frac_nanos += u64::from(digit - b'0') * 10u64.pow(8 - i as u32);
    }
    whole
        .checked_mul(NANOS_PER_USD)
        .and_then(|n| n.checked_add(frac_nanos))
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Parse a budget: `"50usd/month"`, `"0.001usd/total"`, `"$5/day"`; `"usd/week"` periods are
/// `day`, `week`, `month`, `total`.
pub fn parse_budget(text: &str) -> Result<Budget, String> {
    let Some((amount, period)) = text.split_once('/') else {
        return Err(format!(
            "expected a budget like \"50usd/month\" (periods: day, week, month, total), got {text:?}"
        ));
    };
    let period = match period.trim() {
        "day" | "daily" => BudgetPeriod::Day,
        "week" | "weekly" => BudgetPeriod::Week,
        "month" | "monthly" => BudgetPeriod::Month,
        "total" => BudgetPeriod::Total,
        other => {
            return Err(format!(
                "unknown budget period {other:?}; expected day, week, month or total"
            ))
        }
    };
    Ok(Budget {
        amount: parse_usd(amount)?,
        period,
        soft: false,
    })
}

/// Format nanodollars as a plain decimal number of dollars without trailing zeros
/// (`1500000` -> `"0.0015"`).
pub fn format_usd(nanos: Nanos) -> String {
    let whole = nanos / NANOS_PER_USD;
    let frac = nanos % NANOS_PER_USD;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:09}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub fn days_from_civil(year: i32, month: u32, day: u32) -> i64 {
    let y = i64::from(year) - i64::from(month <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parse a UTC time: `"2027-01-31"` (midnight) or `"2027-01-31T12:00:00Z"`. Unix seconds.
pub fn parse_timestamp(text: &str) -> Result<u64, String> {
    let bad = || {
        format!("expected a UTC date like \"2027-01-31\" or \"2027-01-31T12:00:00Z\", got {text:?}")
    };
    let t = text.trim();
    let (date, time) = match t.split_once(['T', ' ']) {
        Some((d, rest)) => (d, Some(rest.strip_suffix('Z').ok_or_else(bad)?)),
        None => (t, None),
    };
    let number = |s: &str, len: usize| -> Result<u32, String> {
        if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().map_err(|_| bad())
        } else {
            Err(bad())
        }
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let (year, month, day) = (number(y, 4)?, number(m, 2)?, number(d, 2)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return Err(bad()),
    };
    if year < 1970 || day == 0 || day > days_in_month {
        return Err(bad());
    }
    let mut seconds = 0u64;
    if let Some(time) = time {
        let mut parts = time.split(':');
        let (Some(h), Some(mi), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let (h, mi, s) = (number(h, 2)?, number(mi, 2)?, number(s, 2)?);
        if h > 23 || mi > 59 || s > 59 {
            return Err(bad());
        }
        seconds = u64::from(h * 3600 + mi * 60 + s);
    }
    let days = days_from_civil(year as i32, month, day);
    Ok(days as u64 * 86_400 + seconds)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn money_round_trips() {
        assert_eq!(parse_usd("50usd").unwrap(), 50 * NANOS_PER_USD);
        assert_eq!(parse_usd("$0.001").unwrap(), 1_000_000);
        assert_eq!(parse_usd("0.15").unwrap(), 150_000_000);
        assert_eq!(parse_usd(".5usd").unwrap(), 500_000_000);
        assert_eq!(parse_usd("12.5 USD").unwrap(), 12_500_000_000);
        assert!(parse_usd("ten").is_err());
        assert!(parse_usd("-1").is_err());
        assert!(parse_usd("0.0000000001").is_err());
        assert!(parse_usd("99999999999999999999").is_err());
        assert_eq!(format_usd(1_500_000), "0.0015");
        assert_eq!(format_usd(50 * NANOS_PER_USD), "50");
    }

    #[test]
    fn budgets_parse() {
        let b = parse_budget("50usd/month").unwrap();
        assert_eq!(
            (b.amount, b.period),
            (50 * NANOS_PER_USD, BudgetPeriod::Month)
        );
        assert_eq!(
            parse_budget("0.001usd/total").unwrap().to_string(),
            "0.001usd/total"
        );
        assert!(parse_budget("50usd").is_err());
        assert!(parse_budget("50usd/year").is_err());
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_timestamp("1970-01-01").unwrap(), 0);
        assert_eq!(parse_timestamp("2000-03-01").unwrap(), 951_868_800);
        assert_eq!(
            parse_timestamp("2026-11-21T12:30:05Z").unwrap(),
            1_795_264_205
        );
        assert!(parse_timestamp("2026-02-29").is_err());
        assert!(parse_timestamp("2024-02-29").is_ok());
        assert!(parse_timestamp("2026-11-21T12:30:05").is_err());
        assert!(parse_timestamp("tomorrow").is_err());
    }

    #[test]
    fn limits_serialize_flat() {
        let limits = Limits {
            rpm: Some(600),
            ..Limits::default()
        };
        let json = serde_json::to_string(&limits).unwrap();
        assert_eq!(json, r#"{"rpm":600,"tpm_counts":"total"}"#);
        let back: Limits = serde_json::from_str(&json).unwrap();
        assert_eq!(back, limits);
    }
}
