//! UTC calendar maths for budget periods: which day, ISO week or month a unix-millisecond
//! instant falls in, and where that period starts and ends. Pure functions of their inputs;
//! never reads the clock, never allocates except to format a day, never panics.
//!
//! Civil-date conversion uses Howard Hinnant's `days_from_civil` / `civil_from_days`
//! (proleptic Gregorian calendar), so no date library is needed.

use tollgate_config::governance::BudgetPeriod;

/// Milliseconds in one UTC day (UTC has no leap seconds in unix time).
pub const MS_PER_DAY: u64 = 86_400_000;

pub use tollgate_config::governance::days_from_civil;

/// The proleptic Gregorian date `(year, month 1..=12, day 1..=31)` that is `days` after
/// 1970-01-01. Exact for every `days` whose year fits an `i32`.
pub fn civil_from_days(days: i64) -> (i32, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097; // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March = 0
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    // Casts are exact: m in 1..=12, d in 1..=31; y fits i32 for every day a u64 of ms reaches.
    (y as i32, m as u32, d as u32)
}

/// One occurrence of a budget period: its running number and its bounds in unix ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeriodWindow {
    /// Running number of the period: days since the epoch (day), Monday-started weeks since
    /// the week holding 1970-01-01 (week), `year * 12 + month - 1` (month), 0 (total).
    pub index: u64,
    /// First millisecond of the period (0 for the epoch's week, which began in 1969).
    pub start_ms: u64,
    /// First millisecond after the period (`u64::MAX` for `Total` or when it would overflow).
    pub end_ms: u64,
}

/// Start of day `day` in unix ms, clamped to `0..=u64::MAX`.
fn day_start_ms(day: i64) -> u64 {
    if day <= 0 {
        0
    } else {
        (day as u64).saturating_mul(MS_PER_DAY)
    }
}

/// The days-since-epoch of `now_ms` as an `i64` (always exact: at most ~2.1e11).
fn days_of(now_ms: u64) -> i64 {
    (now_ms / MS_PER_DAY) as i64
}

/// The occurrence of `period` that contains `now_ms` (unix milliseconds, UTC).
pub fn period_window(period: BudgetPeriod, now_ms: u64) -> PeriodWindow {
    let days = days_of(now_ms);
    match period {
        BudgetPeriod::Day => PeriodWindow {
            index: days as u64,
            start_ms: day_start_ms(days),
            end_ms: day_start_ms(days + 1),
        },
        BudgetPeriod::Week => {
            // 1970-01-01 was a Thursday, so the Monday of week 0 is day -3.
            let index = (days + 3) / 7;
            let monday = index * 7 - 3;
            PeriodWindow {
                index: index as u64,
                start_ms: day_start_ms(monday),
                end_ms: day_start_ms(monday + 7),
            }
        }
        BudgetPeriod::Month => {
            let (y, m, _) = civil_from_days(days);
            let (next_y, next_m) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            PeriodWindow {
                // y >= 1970 because now_ms is unsigned.
                index: (y as u64) * 12 + u64::from(m - 1),
                start_ms: day_start_ms(days_from_civil(y, m, 1)),
                end_ms: day_start_ms(days_from_civil(next_y, next_m, 1)),
            }
        }
        BudgetPeriod::Total => PeriodWindow {
            index: 0,
            start_ms: 0,
            end_ms: u64::MAX,
        },
    }
}

/// Days since 1970-01-01 of `now_ms`, saturating at `u32::MAX` (year ~11.7 million).
pub fn day_index(now_ms: u64) -> u32 {
    u32::try_from(now_ms / MS_PER_DAY).unwrap_or(u32::MAX)
}

/// The day `day` (days since the epoch) as `YYYY-MM-DD`.
pub fn day_string(day: u32) -> String {
    let (y, m, d) = civil_from_days(i64::from(day));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parse a strict `YYYY-MM-DD` date into days since the epoch. `None` for any other shape,
/// an impossible date (`2023-02-29`) or a date before 1970-01-01.
pub fn parse_day(text: &str) -> Option<u32> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    let y = num(0..4)?;
    let m = num(5..7)?;
    let d = num(8..10)?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y as i32, m) {
        return None;
    }
    u32::try_from(days_from_civil(y as i32, m, d)).ok()
}

/// Days in month `m` (1..=12) of year `y`.
fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// Day index (days since the epoch) of the first day of the `period` occurrence holding
/// `now_ms`. `Total` starts on day 0; the epoch's week is clamped to day 0 too.
pub fn first_day(period: BudgetPeriod, now_ms: u64) -> u32 {
    match period {
        BudgetPeriod::Total => 0,
        _ => day_index(period_window(period, now_ms).start_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(y: i32, m: u32, d: u32, h: u64) -> u64 {
        days_from_civil(y, m, d) as u64 * MS_PER_DAY + h * 3_600_000
    }

    #[test]
    fn civil_round_trips_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(1969, 12, 31), -1);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 2, 29), 19_782);
        assert_eq!(civil_from_days(19_782), (2024, 2, 29));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        for days in (-800_000..800_000).step_by(37) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn day_window_and_strings() {
        let now = ms(2024, 2, 29, 23) + 3_599_999;
        let w = period_window(BudgetPeriod::Day, now);
        assert_eq!(w.index, 19_782);
        assert_eq!(w.start_ms, ms(2024, 2, 29, 0));
        assert_eq!(w.end_ms, ms(2024, 3, 1, 0));
        assert_eq!(period_window(BudgetPeriod::Day, w.end_ms).index, 19_783);
        assert_eq!(day_index(now), 19_782);
        assert_eq!(day_string(19_782), "2024-02-29");
        assert_eq!(day_string(0), "1970-01-01");
        assert_eq!(parse_day("2024-02-29"), Some(19_782));
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2023-02-29"), None);
        assert_eq!(parse_day("1900-02-29"), None);
        assert_eq!(parse_day("2000-02-29"), Some(11_016));
        assert_eq!(parse_day("1969-12-31"), None);
        assert_eq!(parse_day("2024-13-01"), None);
        assert_eq!(parse_day("2024-04-31"), None);
        assert_eq!(parse_day("2024-1-011"), None);
        assert_eq!(parse_day("2024/01/01"), None);
        assert_eq!(parse_day("+024-01-01"), None);
        for day in (0..200_000).step_by(13) {
            assert_eq!(parse_day(&day_string(day)), Some(day));
        }
    }

    #[test]
    fn weeks_start_on_monday() {
        // 1970-01-01 (Thursday) is in week 0, which began on Monday 1969-12-29.
        let w0 = period_window(BudgetPeriod::Week, 0);
        assert_eq!(
            (w0.index, w0.start_ms, w0.end_ms),
            (0, 0, ms(1970, 1, 5, 0))
        );
        assert_eq!(
            period_window(BudgetPeriod::Week, ms(1970, 1, 4, 23)).index,
            0
        );
        assert_eq!(
            period_window(BudgetPeriod::Week, ms(1970, 1, 5, 0)).index,
            1
        );
        assert_eq!(first_day(BudgetPeriod::Week, 0), 0);
        // 2024-12-30 is a Monday; the ISO week crosses the new year.
        let sunday = ms(2025, 1, 5, 23);
        let w = period_window(BudgetPeriod::Week, sunday);
        assert_eq!(w.start_ms, ms(2024, 12, 30, 0));
        assert_eq!(w.end_ms, ms(2025, 1, 6, 0));
        assert_eq!(
            period_window(BudgetPeriod::Week, ms(2024, 12, 30, 0)).index,
            w.index
        );
        assert_eq!(
            period_window(BudgetPeriod::Week, ms(2024, 12, 29, 23)).index,
            w.index - 1
        );
        assert_eq!(
            day_string(first_day(BudgetPeriod::Week, sunday)),
            "2024-12-30"
        );
    }

    #[test]
    fn months_cross_years_and_leap_februaries() {
        let dec = period_window(BudgetPeriod::Month, ms(2024, 12, 31, 23));
        assert_eq!(dec.index, 2024 * 12 + 11);
        assert_eq!(dec.start_ms, ms(2024, 12, 1, 0));
        assert_eq!(dec.end_ms, ms(2025, 1, 1, 0));
        let jan = period_window(BudgetPeriod::Month, dec.end_ms);
        assert_eq!(jan.index, dec.index + 1);
        assert_eq!(jan.start_ms, dec.end_ms);
        let feb_leap = period_window(BudgetPeriod::Month, ms(2024, 2, 10, 0));
        assert_eq!(feb_leap.end_ms - feb_leap.start_ms, 29 * MS_PER_DAY);
        let feb = period_window(BudgetPeriod::Month, ms(2023, 2, 10, 0));
        assert_eq!(feb.end_ms - feb.start_ms, 28 * MS_PER_DAY);
        let feb_1900_rule = period_window(BudgetPeriod::Month, ms(2100, 2, 10, 0));
        assert_eq!(
            feb_1900_rule.end_ms - feb_1900_rule.start_ms,
            28 * MS_PER_DAY
        );
        assert_eq!(first_day(BudgetPeriod::Month, ms(2024, 3, 15, 5)), 19_783);
        assert_eq!(first_day(BudgetPeriod::Day, ms(2024, 3, 15, 5)), 19_797);
    }

    #[test]
    fn total_never_ends_and_extremes_do_not_panic() {
        let t = period_window(BudgetPeriod::Total, 1_700_000_000_000);
        assert_eq!((t.index, t.start_ms, t.end_ms), (0, 0, u64::MAX));
        assert_eq!(first_day(BudgetPeriod::Total, 1_700_000_000_000), 0);
        for p in [BudgetPeriod::Day, BudgetPeriod::Week, BudgetPeriod::Month] {
            let w = period_window(p, u64::MAX);
            assert!(w.end_ms >= w.start_ms);
        }
        assert_eq!(day_index(u64::MAX), u32::MAX);
    }
}
