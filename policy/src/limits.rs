//! Lock-free limit counters shared by every core through an `Arc`: requests or tokens per
//! fixed window ([`WindowLimit`]), requests in flight ([`ConcurrencyLimit`]) and money per
//! calendar period ([`BudgetCounter`]). Every method takes the caller's `now_ms` (unix ms)
//! and is lock-free: it retries a CAS only when another core changed the same counter, and
//! never blocks, sleeps, allocates or reads the clock. No `Mutex` may ever appear here.
//!
//! Counters are packed as `[tag: 8 bits | value: 56 bits]` in one `AtomicU64`, where the tag
//! is the low byte of the window or period number. A value whose tag is older than the
//! caller's window belongs to a finished window and is reset lazily by whoever touches it
//! first. A tag exactly one ahead of the caller's means another core's clock already crossed
//! the boundary: the caller joins that window instead of resetting it. Cores' clocks must
//! therefore agree to within one window (they do: they read the same system clock). Values
//! are capped at [`MAX_VALUE`] (2^56 - 1): about 7.2e16 tokens or requests, or $72 million
//! in nanodollars.
//!
//! Memory orderings: each counter's units are conserved by read-modify-write operations on
//! a single atomic, which always act on the latest value whatever the ordering, so units
//! moving between the pool and a lease are never duplicated. CAS uses `AcqRel` on success
//! and `Acquire` on failure, loads use `Acquire`: cheap (x86 RMWs are full barriers anyway)
//! and it keeps reasoning simple. The one ordering correctness relies on is a core's
//! `last_used_ms` (`AcqRel` `fetch_max`, `Acquire` load): a core voids its stale lease
//! *before* stamping `last_used_ms`, so a stealer that sees the new stamp also sees the void.

use std::sync::atomic::{AtomicU64, Ordering};

use crossbeam_utils::CachePadded;
use tollgate_config::governance::{BudgetPeriod, Nanos};

use crate::period::period_window;

/// The largest value a packed counter holds: limits and amounts are clamped to it.
pub const MAX_VALUE: u64 = (1 << 56) - 1;

const ACQ_REL: Ordering = Ordering::AcqRel;
const ACQ: Ordering = Ordering::Acquire;

fn pack(tag: u8, value: u64) -> u64 {
    (u64::from(tag) << 56) | value.min(MAX_VALUE)
}

fn tag_of(packed: u64) -> u8 {
    (packed >> 56) as u8
}

fn value_of(packed: u64) -> u64 {
    packed & MAX_VALUE
}

/// A new pool: stale for every window. Never a real pool value, as limits are clamped
/// below [`MAX_VALUE`].
const FRESH: u64 = u64::MAX;

/// How a counter's tag relates to the caller's window or period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Age {
    /// Same window: the value counts.
    Current,
    /// Exactly one window ahead: the caller's clock is a little behind (another core already
    /// crossed the boundary), so the caller joins that window rather than resetting it.
    Newer,
    /// Any other tag: a finished window (or a new pool); its value counts as reset.
    Stale,
}

fn age(current: u8, seen: u8) -> Age {
    match seen.wrapping_sub(current) {
        0 => Age::Current,
        1 => Age::Newer,
        _ => Age::Stale,
    }
}

/// Why a rate or concurrency limit refused a request: what the client needs for
/// `x-ratelimit-*` headers and `retry-after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The configured limit.
    pub limit: u64,
    /// Units still available in the current window when refused.
    pub remaining: u64,
    /// Milliseconds until the window resets (0 for a concurrency limit).
    pub reset_ms: u64,
}

// === impl WindowLimit ===

/// One core's share of a [`WindowLimit`], alone on its cache line.
#[derive(Debug)]
struct CoreLease {
    /// Packed `[window tag | units this core may still spend]`.
    lease: AtomicU64,
    /// Latest `now_ms` this core used the limit with; a lease is only current when this is
    /// in the current window too, which guards against a tag aliasing 256 windows later.
    last_used_ms: AtomicU64,
}

/// A requests- or tokens-per-window limit with fixed windows aligned on multiples of
/// `window_ms` since the unix epoch (a minute window resets on the minute).
///
/// Exact: within one window, the successful takes of all cores never add up to more than
/// the limit. Units live in a global pool and in per-core leases carved from it; a core
/// spends its lease with one uncontended CAS, refills it from the pool in slices, and when
/// the pool is dry steals from other cores' leases so no units are stranded.
#[derive(Debug)]
pub struct WindowLimit {
    limit: u64,
    window_ms: u64,
    slice: u64,
    pool: CachePadded<AtomicU64>,
    cores: Box<[CachePadded<CoreLease>]>,
}

impl WindowLimit {
    /// A limit of `limit` units per `window_ms` (at least 1 ms) shared by `cores` cores (at
    /// least 1). `limit` is clamped to `MAX_VALUE - 1` (`MAX_VALUE` marks a new pool).
    pub fn new(limit: u64, window_ms: u64, cores: usize) -> Self {
        let limit = limit.min(MAX_VALUE - 1);
        let cores = cores.max(1);
        let slice = (limit / (cores as u64).saturating_mul(8)).max(1);
        let cores = (0..cores)
            .map(|_| {
                CachePadded::new(CoreLease {
                    lease: AtomicU64::new(0),
                    last_used_ms: AtomicU64::new(0),
                })
            })
            .collect();
        WindowLimit {
            limit,
            window_ms: window_ms.max(1),
            slice,
            pool: CachePadded::new(AtomicU64::new(FRESH)),
            cores,
        }
    }

    /// The configured limit per window.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Milliseconds from `now_ms` to the end of its window.
    pub fn reset_ms(&self, now_ms: u64) -> u64 {
        self.window_ms - now_ms % self.window_ms
    }

    /// Units still available in the current window: the pool plus every current lease.
    pub fn remaining(&self, now_ms: u64) -> u64 {
        let mut window = now_ms / self.window_ms;
        let pool = self.pool.load(ACQ);
        match self.pool_age(window, pool) {
            // The pool has not been touched this window: all of it is available.
            Age::Stale => return self.limit,
            Age::Newer => window += 1,
            Age::Current => {}
        }
        let leases: u64 = self
            .cores
            .iter()
            .map(|c| self.current_lease(c, window))
            .sum();
        value_of(pool).saturating_add(leases).min(self.limit)
    }

    /// Take `amount` units for core `core` (taken modulo the core count). `Ok` means the
    /// units are spent in the current window; `Err` means not enough were left (nothing is
    /// taken). `amount == 0` always succeeds; `amount > limit` is always refused.
    pub fn try_take(&self, core: usize, amount: u64, now_ms: u64) -> Result<(), Refusal> {
        if amount == 0 {
            return Ok(());
        }
        if amount > self.limit {
            return Err(self.refusal(now_ms));
        }
        let me = self.core(core);
        let mut window = self.enter(me, now_ms / self.window_ms, now_ms);
        loop {
            let tag = window as u8;
            // Fast path: our own lease, normally touched by this core alone.
            let left = match self.spend_own(me, tag, amount) {
                Ok(()) => return Ok(()),
                Err(left) => left,
            };
            let missing = amount - left;
            // Refill from the pool: at least what is missing, a slice if there is one.
            match self.draw_pool(window, missing, missing.max(self.slice)) {
                Draw::Got(held) => {
                    if self.deposit_and_spend(me, tag, held, amount) {
                        return Ok(());
                    }
                    // Someone stole from our lease meanwhile; the units are in it: retry.
                    continue;
                }
                Draw::Newer(newer) => {
                    window = self.enter(me, newer, now_ms);
                    continue;
                }
                Draw::Short(held) => {
                    // Rare path: the pool is dry. Steal from other cores' current leases.
                    let stolen = self.steal(core % self.cores.len(), window, missing - held);
                    let held = held + stolen;
                    if held < missing {
                        // Not enough anywhere: hand the units back to the pool for others.
                        self.refill_pool(window, held);
                        return Err(self.refusal(now_ms));
                    }
                    if self.deposit_and_spend(me, tag, held, amount) {
                        return Ok(());
                    }
                    // Got enough but our lease shrank meanwhile: retry with the units.
                }
            }
        }
    }

    /// Return `amount` units taken at `taken_at_ms` (an estimate above actual usage) to core
    /// `core`'s lease, but only while that window is still the current one.
    pub fn give_back(&self, core: usize, amount: u64, taken_at_ms: u64, now_ms: u64) {
        let window = now_ms / self.window_ms;
        if amount == 0 || taken_at_ms / self.window_ms != window {
            return;
        }
        let me = self.core(core);
        if self.enter(me, window, now_ms) != window {
            // This core already works in a newer window: the units are void there.
            return;
        }
        let tag = window as u8;
        let mut cur = me.lease.load(ACQ);
        loop {
            let base = if tag_of(cur) == tag { value_of(cur) } else { 0 };
            let next = pack(tag, base.saturating_add(amount).min(self.limit));
            match me.lease.compare_exchange_weak(cur, next, ACQ_REL, ACQ) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Take up to `amount` more units for usage above the estimate: from core `core`'s lease,
    /// then from the pool, then nothing. Never refuses and never goes below zero. Returns the
    /// units actually taken.
    pub fn charge_extra(&self, core: usize, amount: u64, now_ms: u64) -> u64 {
        if amount == 0 {
            return 0;
        }
        let me = self.core(core);
        let mut window = self.enter(me, now_ms / self.window_ms, now_ms);
        let mut cur = me.lease.load(ACQ);
        let from_lease = loop {
            let tag = window as u8;
            if tag_of(cur) != tag || value_of(cur) == 0 {
                break 0;
            }
            let take = value_of(cur).min(amount);
            match me
                .lease
                .compare_exchange_weak(cur, pack(tag, value_of(cur) - take), ACQ_REL, ACQ)
            {
                Ok(_) => break take,
                Err(seen) => cur = seen,
            }
        };
        let rest = amount - from_lease;
        if rest == 0 {
            return amount;
        }
        loop {
            match self.draw_pool(window, 0, rest) {
                Draw::Got(held) | Draw::Short(held) => return from_lease + held,
                Draw::Newer(newer) => {
                    // Our lease units were from an older window; count only the new pool.
                    window = newer;
                }
            }
        }
    }

    /// For the reconciler: move the lease of every core unused for at least `idle_ms` back
    /// into the pool, so busy cores can draw it. Voids leases left from older windows.
    ///
    /// It also refills a pool left from a finished window, so a tag can only alias a window
    /// 256 windows later if the reconciler has not run for that long (the cost would be an
    /// under-admission for a window or two, never an over-admission).
    pub fn reclaim_idle(&self, now_ms: u64, idle_ms: u64) {
        let window = now_ms / self.window_ms;
        let tag = window as u8;
        let pool = self.pool.load(ACQ);
        if pool != FRESH && self.pool_age(window, pool) == Age::Stale {
            // No unit of this window exists yet (all come from a current pool): reset is exact.
            let _ = self
                .pool
                .compare_exchange(pool, pack(tag, self.limit), ACQ_REL, ACQ);
        }
        for c in self.cores.iter() {
            let last = c.last_used_ms.load(ACQ);
            if now_ms.saturating_sub(last) < idle_ms {
                continue;
            }
            let cur = c.lease.load(ACQ);
            let current = tag_of(cur) == tag && last / self.window_ms == window;
            if !current && value_of(cur) == 0 {
                continue;
            }
            // One attempt: if it fails the owner (or a stealer) is active, so leave the lease
            // for the next round. A stale lease is voided, a current one moved to the pool.
            let moved = c.lease.compare_exchange(cur, pack(tag, 0), ACQ_REL, ACQ);
            if moved.is_ok() && current {
                self.refill_pool(window, value_of(cur));
            }
        }
    }

    fn pool_age(&self, window: u64, pool: u64) -> Age {
        if pool == FRESH {
            Age::Stale
        } else {
            age(window as u8, tag_of(pool))
        }
    }

    fn core(&self, core: usize) -> &CoreLease {
        &self.cores[core % self.cores.len()]
    }

    fn refusal(&self, now_ms: u64) -> Refusal {
        Refusal {
            limit: self.limit,
            remaining: self.remaining(now_ms),
            reset_ms: self.reset_ms(now_ms),
        }
    }

    /// Start using core `me` in `window` (or a newer window it already used): void its lease
    /// if it was last used in another window, then stamp `last_used_ms`. Returns the window.
    fn enter(&self, me: &CoreLease, window: u64, now_ms: u64) -> u64 {
        let last = me.last_used_ms.load(ACQ);
        let last_window = last / self.window_ms;
        if last_window > window {
            // Our clock is behind this core's latest use: join the newer window.
            return last_window;
        }
        if last_window < window {
            // Void before stamping (see the module doc): whatever is left is from a window
            // that is over, or a tag alias of one.
            me.lease.swap(pack(window as u8, 0), ACQ_REL);
        }
        let stamp = now_ms.max(window.saturating_mul(self.window_ms));
        if stamp > last {
            // Skipped within the same millisecond: saves an RMW on the fast path.
            me.last_used_ms.fetch_max(stamp, ACQ_REL);
        }
        window
    }

    /// Units in `c`'s lease that count in `window` (0 when stale).
    fn current_lease(&self, c: &CoreLease, window: u64) -> u64 {
        if c.last_used_ms.load(ACQ) / self.window_ms != window {
            return 0;
        }
        let lease = c.lease.load(ACQ);
        if tag_of(lease) == window as u8 {
            value_of(lease)
        } else {
            0
        }
    }

    /// Spend `amount` from our own lease, or report how much it holds.
    fn spend_own(&self, me: &CoreLease, tag: u8, amount: u64) -> Result<(), u64> {
        let mut cur = me.lease.load(ACQ);
        loop {
            if tag_of(cur) != tag {
                return Err(0);
            }
            let left = value_of(cur);
            if left < amount {
                return Err(left);
            }
            match me
                .lease
                .compare_exchange_weak(cur, pack(tag, left - amount), ACQ_REL, ACQ)
            {
                Ok(_) => return Ok(()),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Take `want` units from the pool, or as many as it has if that is at least `need`.
    fn draw_pool(&self, window: u64, need: u64, want: u64) -> Draw {
        let tag = window as u8;
        let mut cur = self.pool.load(ACQ);
        loop {
            let age = self.pool_age(window, cur);
            if age == Age::Newer {
                return Draw::Newer(window + 1);
            }
            // A pool from an older window is full for this one (lazy reset by this CAS).
            let have = if age == Age::Stale {
                self.limit
            } else {
                value_of(cur)
            };
            let take = if have >= need { want.min(have) } else { have };
            if take == 0 && age == Age::Current {
                return Draw::Short(0);
            }
            match self
                .pool
                .compare_exchange_weak(cur, pack(tag, have - take), ACQ_REL, ACQ)
            {
                Ok(_) if take >= need => return Draw::Got(take),
                Ok(_) => return Draw::Short(take),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Put `units` of `window` back into the pool (dropped if the pool has moved on).
    fn refill_pool(&self, window: u64, units: u64) {
        let tag = window as u8;
        let mut cur = self.pool.load(ACQ);
        while tag_of(cur) == tag && units > 0 {
            let next = pack(tag, value_of(cur).saturating_add(units).min(self.limit));
            match self.pool.compare_exchange_weak(cur, next, ACQ_REL, ACQ) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Add `held` units to our lease and spend `amount` from it if the sum covers it;
    /// otherwise leave all of it in the lease. Returns whether `amount` was spent.
    fn deposit_and_spend(&self, me: &CoreLease, tag: u8, held: u64, amount: u64) -> bool {
        let mut cur = me.lease.load(ACQ);
        loop {
            let left = if tag_of(cur) == tag { value_of(cur) } else { 0 };
            let total = left.saturating_add(held);
            let (next, spent) = if total >= amount {
                (total - amount, true)
            } else {
                (total, false)
            };
            if next == value_of(cur) && tag_of(cur) == tag {
                return spent;
            }
            match me
                .lease
                .compare_exchange_weak(cur, pack(tag, next), ACQ_REL, ACQ)
            {
                Ok(_) => return spent,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Take up to `want` units from the current leases of cores other than `me`.
    fn steal(&self, me: usize, window: u64, want: u64) -> u64 {
        let tag = window as u8;
        let mut got = 0;
        let n = self.cores.len();
        for offset in 1..n {
            if got >= want {
                break;
            }
            let c = &self.cores[(me + offset) % n];
            // Acquire pairs with the owner's stamp: its void of a stale lease is visible.
            if c.last_used_ms.load(ACQ) / self.window_ms != window {
                continue;
            }
            let mut cur = c.lease.load(ACQ);
            while tag_of(cur) == tag && value_of(cur) > 0 {
                let take = value_of(cur).min(want - got);
                match c.lease.compare_exchange_weak(
                    cur,
                    pack(tag, value_of(cur) - take),
                    ACQ_REL,
                    ACQ,
                ) {
                    Ok(_) => {
                        got += take;
                        break;
                    }
                    Err(seen) => cur = seen,
                }
            }
        }
        got
    }
}

/// What a draw from the pool brought back.
enum Draw {
    /// At least what was needed; the caller holds these units.
    Got(u64),
    /// Less than needed (possibly 0); the caller holds these units.
    Short(u64),
    /// The pool is in a newer window than the caller's clock: join that window.
    Newer(u64),
}

// === impl ConcurrencyLimit ===

/// A limit on requests in flight at once.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    limit: u64,
    in_flight: AtomicU64,
}

impl ConcurrencyLimit {
    /// At most `limit` requests in flight.
    pub fn new(limit: u64) -> Self {
        ConcurrencyLimit {
            limit,
            in_flight: AtomicU64::new(0),
        }
    }

    /// Take a slot if fewer than `limit` are in use; pair every `Ok` with one [`release`].
    ///
    /// [`release`]: ConcurrencyLimit::release
    pub fn try_acquire(&self) -> Result<(), Refusal> {
        self.in_flight
            .fetch_update(ACQ_REL, ACQ, |n| (n < self.limit).then_some(n + 1))
            .map(|_| ())
            .map_err(|_| Refusal {
                limit: self.limit,
                remaining: 0,
                reset_ms: 0,
            })
    }

    /// Give back a slot taken by [`try_acquire`](ConcurrencyLimit::try_acquire). Never goes
    /// below zero.
    pub fn release(&self) {
        let _ = self
            .in_flight
            .fetch_update(ACQ_REL, ACQ, |n| n.checked_sub(1));
    }

    /// Requests in flight now.
    pub fn current(&self) -> u64 {
        self.in_flight.load(ACQ)
    }

    /// The configured limit.
    pub fn limit(&self) -> u64 {
        self.limit
    }
}

// === impl BudgetCounter ===

/// Why a budget refused a reservation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetRefusal {
    /// The budget, in nanodollars.
    pub limit: Nanos,
    /// Settled spend plus outstanding reservations in the current period.
    pub committed: Nanos,
    /// When the period ends (unix ms; `u64::MAX` for a total budget).
    pub period_end_ms: u64,
}

/// Money held against a budget between admission and settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reservation {
    /// Tag of the period the reservation was made in.
    pub tag: u8,
    /// Reserved nanodollars.
    pub amount: Nanos,
}

/// A money budget over one kind of calendar period: reserve the worst-case cost before a
/// call, settle the actual cost after. The period resets lazily on first use after it ends.
/// Amounts and the limit are clamped to [`MAX_VALUE`] nanodollars (about $72 million).
///
/// The period tag is 8 bits: a counter untouched for a multiple of 256 periods (256 days for
/// a daily budget) reads its old spend as current for that period. That can only refuse
/// spend that would have been allowed, never allow more than the limit.
#[derive(Debug)]
pub struct BudgetCounter {
    limit: Nanos,
    period: BudgetPeriod,
    /// Packed `[period tag | committed]`.
    state: AtomicU64,
}

impl BudgetCounter {
    /// A budget of `limit` per `period`, starting from `spent_in_current_period` (from the
    /// ledger) in the period holding `now_ms`.
    pub fn new(
        limit: Nanos,
        period: BudgetPeriod,
        spent_in_current_period: Nanos,
        now_ms: u64,
    ) -> Self {
        let tag = period_window(period, now_ms).index as u8;
        BudgetCounter {
            limit: limit.min(MAX_VALUE),
            period,
            state: AtomicU64::new(pack(tag, spent_in_current_period)),
        }
    }

    /// The budget per period, in nanodollars.
    pub fn limit(&self) -> Nanos {
        self.limit
    }

    /// The kind of period the budget resets on.
    pub fn period(&self) -> BudgetPeriod {
        self.period
    }

    /// Settled spend plus outstanding reservations in the period holding `now_ms`.
    pub fn committed(&self, now_ms: u64) -> Nanos {
        let state = self.state.load(ACQ);
        if age(self.tag(now_ms), tag_of(state)) == Age::Stale {
            0
        } else {
            value_of(state)
        }
    }

    /// Reserve `amount`: succeeds iff committed + amount stays within the limit.
    pub fn try_reserve(&self, amount: Nanos, now_ms: u64) -> Result<Reservation, BudgetRefusal> {
        let amount = amount.min(MAX_VALUE);
        let now_tag = self.tag(now_ms);
        let mut cur = self.state.load(ACQ);
        loop {
            let (tag, committed) = self.current(cur, now_tag);
            let next = committed + amount; // both < 2^56: no overflow
            if next > self.limit {
                return Err(BudgetRefusal {
                    limit: self.limit,
                    committed,
                    period_end_ms: period_window(self.period, now_ms).end_ms,
                });
            }
            match self
                .state
                .compare_exchange_weak(cur, pack(tag, next), ACQ_REL, ACQ)
            {
                Ok(_) => return Ok(Reservation { tag, amount }),
                Err(seen) => cur = seen,
            }
        }
    }

    /// Replace `reservation` by the `actual` cost (which may exceed it, and the limit). If
    /// the reservation's period is over, nothing is charged to the new one. Returns true when
    /// this call took committed from below the limit to at or above it.
    pub fn settle(&self, reservation: Reservation, actual: Nanos, now_ms: u64) -> bool {
        if age(self.tag(now_ms), reservation.tag) == Age::Stale {
            return false;
        }
        let mut cur = self.state.load(ACQ);
        loop {
            if tag_of(cur) != reservation.tag {
                return false;
            }
            let before = value_of(cur);
            let after = before
                .saturating_sub(reservation.amount)
                .saturating_add(actual)
                .min(MAX_VALUE);
            match self
                .state
                .compare_exchange_weak(cur, pack(reservation.tag, after), ACQ_REL, ACQ)
            {
                Ok(_) => return before < self.limit && after >= self.limit,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Add `amount` of spend without a reservation (soft budgets, or usage past an estimate).
    /// Never refuses. Returns true when this call crossed the limit from below.
    pub fn charge(&self, amount: Nanos, now_ms: u64) -> bool {
        let now_tag = self.tag(now_ms);
        let mut cur = self.state.load(ACQ);
        loop {
            let (tag, before) = self.current(cur, now_tag);
            let after = before.saturating_add(amount).min(MAX_VALUE);
            match self
                .state
                .compare_exchange_weak(cur, pack(tag, after), ACQ_REL, ACQ)
            {
                Ok(_) => return before < self.limit && after >= self.limit,
                Err(seen) => cur = seen,
            }
        }
    }

    fn tag(&self, now_ms: u64) -> u8 {
        period_window(self.period, now_ms).index as u8
    }

    /// The period tag and committed amount to build on: an older period counts as zero in
    /// ours; a newer one (our clock is behind) is joined as it is.
    fn current(&self, state: u64, now_tag: u8) -> (u8, u64) {
        if age(now_tag, tag_of(state)) == Age::Stale {
            (now_tag, 0)
        } else {
            (tag_of(state), value_of(state))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::AtomicU64 as Counter;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;

    const MIN: u64 = 60_000;
    /// 2024-01-01T00:00:00Z, a minute boundary.
    const T0: u64 = 1_704_067_200_000;

    #[test]
    fn takes_until_the_limit_then_refuses_with_details() {
        let l = WindowLimit::new(10, MIN, 2);
        for _ in 0..10 {
            assert_eq!(l.try_take(0, 1, T0 + 5), Ok(()));
        }
        assert_eq!(
            l.try_take(1, 1, T0 + 1_000),
            Err(Refusal {
                limit: 10,
                remaining: 0,
                reset_ms: 59_000
            })
        );
        assert_eq!(l.remaining(T0 + 1_000), 0);
        assert_eq!(l.limit(), 10);
    }

    #[test]
    fn zero_always_passes_and_over_limit_always_fails() {
        let l = WindowLimit::new(5, MIN, 1);
        assert_eq!(
            l.try_take(0, 6, T0),
            Err(Refusal {
                limit: 5,
                remaining: 5,
                reset_ms: MIN
            })
        );
        assert_eq!(l.try_take(0, 5, T0), Ok(()));
        assert_eq!(l.try_take(0, 0, T0), Ok(()));
        let empty = WindowLimit::new(0, MIN, 1);
        assert_eq!(empty.try_take(0, 0, T0), Ok(()));
        assert!(empty.try_take(0, 1, T0).is_err());
    }

    #[test]
    fn window_rolls_over_on_the_minute() {
        let l = WindowLimit::new(3, MIN, 2);
        assert_eq!(l.try_take(0, 3, T0 + 59_999), Ok(()));
        assert!(l.try_take(1, 1, T0 + 59_999).is_err());
        assert_eq!(l.reset_ms(T0 + 59_999), 1);
        assert_eq!(l.remaining(T0 + MIN), 3);
        assert_eq!(l.try_take(1, 2, T0 + MIN), Ok(()));
        assert_eq!(l.try_take(0, 1, T0 + MIN + 1), Ok(()));
        assert!(l.try_take(0, 1, T0 + MIN + 2).is_err());
        // A caller whose clock is still in the old minute joins the new one.
        assert!(l.try_take(1, 1, T0 + 59_000).is_err());
        // Leases from an old window are void: nothing carries over.
        assert_eq!(l.try_take(0, 3, T0 + 5 * MIN), Ok(()));
        assert_eq!(l.remaining(T0 + 5 * MIN), 0);
    }

    #[test]
    fn steals_from_other_leases_so_nothing_is_stranded() {
        // slice = 100 / (4 * 8) = 3: core 0 leaves 2 units in its lease.
        let l = WindowLimit::new(100, MIN, 4);
        assert_eq!(l.try_take(0, 1, T0), Ok(()));
        assert_eq!(l.try_take(1, 97, T0), Ok(()));
        assert_eq!(l.remaining(T0), 2);
        assert_eq!(l.try_take(2, 2, T0), Ok(()));
        assert_eq!(l.remaining(T0), 0);
        assert!(l.try_take(0, 1, T0).is_err());
    }

    #[test]
    fn give_back_only_within_the_same_window() {
        let l = WindowLimit::new(10, MIN, 2);
        assert_eq!(l.try_take(0, 10, T0), Ok(()));
        l.give_back(0, 4, T0, T0 + 10);
        assert_eq!(l.remaining(T0 + 10), 4);
        assert_eq!(l.try_take(1, 4, T0 + 20), Ok(()));
        assert_eq!(l.remaining(T0 + 20), 0);
        // Taken in the previous minute: giving back now would grant extra units.
        assert_eq!(l.try_take(0, 10, T0 + MIN), Ok(()));
        l.give_back(0, 5, T0, T0 + MIN);
        assert_eq!(l.remaining(T0 + MIN), 0);
        // Never above the limit even if a caller gives back too much.
        l.give_back(1, 50, T0 + MIN, T0 + MIN);
        assert_eq!(l.remaining(T0 + MIN), 10);
    }

    #[test]
    fn charge_extra_takes_what_is_left_and_never_refuses() {
        let l = WindowLimit::new(10, MIN, 2);
        assert_eq!(l.try_take(0, 6, T0), Ok(()));
        assert_eq!(l.charge_extra(0, 3, T0), 3);
        assert_eq!(l.remaining(T0), 1);
        assert_eq!(l.charge_extra(1, 5, T0), 1);
        assert_eq!(l.remaining(T0), 0);
        assert_eq!(l.charge_extra(0, 5, T0), 0);
        assert_eq!(l.charge_extra(0, 0, T0), 0);
        // In a fresh window it draws from the full pool.
        assert_eq!(l.charge_extra(1, 4, T0 + MIN), 4);
        assert_eq!(l.remaining(T0 + MIN), 6);
    }

    #[test]
    fn reclaim_idle_moves_idle_leases_to_the_pool() {
        // slice = 800 / 16 = 50.
        let l = WindowLimit::new(800, MIN, 2);
        assert_eq!(l.try_take(0, 1, T0), Ok(()));
        let lease0 = || value_of(l.cores[0].lease.load(ACQ));
        assert_eq!(lease0(), 49);
        l.reclaim_idle(T0 + 1_000, 5_000); // not idle yet
        assert_eq!(lease0(), 49);
        l.reclaim_idle(T0 + 6_000, 5_000);
        assert_eq!(lease0(), 0);
        assert_eq!(value_of(l.pool.load(ACQ)), 799);
        assert_eq!(l.remaining(T0 + 6_000), 799);
        // Stale leases are voided and do not reach the new window's pool.
        assert_eq!(l.try_take(1, 1, T0 + 7_000), Ok(()));
        l.reclaim_idle(T0 + MIN + 30_000, 5_000);
        assert_eq!(value_of(l.cores[1].lease.load(ACQ)), 0);
        assert_eq!(l.remaining(T0 + MIN + 30_000), 800);
    }

    #[test]
    fn out_of_range_core_and_tiny_windows_do_not_panic() {
        let l = WindowLimit::new(2, 0, 0);
        assert_eq!(l.try_take(7, 1, 5), Ok(()));
        assert_eq!(l.reset_ms(5), 1);
        assert_eq!(WindowLimit::new(u64::MAX, MIN, 1).limit(), MAX_VALUE - 1);
    }

    #[test]
    fn concurrent_takes_admit_exactly_the_limit() {
        for _ in 0..20 {
            let limit = Arc::new(WindowLimit::new(5_000, MIN, 4));
            let admitted = Arc::new(Counter::new(0));
            let threads: Vec<_> = (0..4)
                .map(|core| {
                    let (limit, admitted) = (limit.clone(), admitted.clone());
                    std::thread::spawn(move || {
                        for i in 0..10_000u64 {
                            let amount = 1 + (i + core as u64) % 3;
                            if limit.try_take(core, amount, T0 + 7).is_ok() {
                                admitted.fetch_add(amount, Ordering::Relaxed);
                            }
                        }
                    })
                })
                .collect();
            for t in threads {
                assert!(t.join().is_ok());
            }
            let admitted = admitted.load(Ordering::Relaxed);
            assert!(admitted <= 5_000, "over-admitted: {admitted}");
            // Amounts are 1..=3: whatever is left is less than the largest amount.
            assert!(admitted >= 4_998, "stranded units: {admitted}");
            assert_eq!(limit.remaining(T0 + 7), 5_000 - admitted);
        }
    }

    #[test]
    fn concurrent_unit_takes_admit_exactly_the_limit() {
        let limit = Arc::new(WindowLimit::new(5_000, MIN, 4));
        let admitted = Arc::new(Counter::new(0));
        let threads: Vec<_> = (0..4)
            .map(|core| {
                let (limit, admitted) = (limit.clone(), admitted.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if limit.try_take(core, 1, T0).is_ok() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        assert_eq!(admitted.load(Ordering::Relaxed), 5_000);
        assert_eq!(limit.remaining(T0), 0);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Take { core: usize, amount: u64 },
        GiveBack { which: usize, part: u64 },
        Extra { core: usize, amount: u64 },
        Reclaim { idle_ms: u64 },
        Advance { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..4usize, 0..40u64).prop_map(|(core, amount)| Op::Take { core, amount }),
            2 => (0..8usize, 0..50u64).prop_map(|(which, part)| Op::GiveBack { which, part }),
            2 => (0..4usize, 0..30u64).prop_map(|(core, amount)| Op::Extra { core, amount }),
            1 => (0..20_000u64).prop_map(|idle_ms| Op::Reclaim { idle_ms }),
            1 => (0..40_000u64).prop_map(|ms| Op::Advance { ms }),
        ]
    }

    proptest! {
        /// Single-threaded model: units are conserved (remaining + net taken == limit within
        /// a window), a take fails only when fewer units than asked are left anywhere, and
        /// nothing ever goes below zero or above the limit.
        #[test]
        fn window_limit_conserves_units(limit in 0..200u64, cores in 1..5usize, ops in prop::collection::vec(op(), 1..200)) {
            let l = WindowLimit::new(limit, MIN, cores);
            let mut now = T0 + 1;
            let mut taken_in_window = 0u64;
            let mut takes: Vec<(usize, u64, u64)> = Vec::new(); // (core, units, at)
            for op in ops {
                let window = now / MIN;
                let before = l.remaining(now);
                prop_assert!(before <= limit);
                prop_assert_eq!(before + taken_in_window, limit);
                match op {
                    Op::Take { core, amount } => {
                        let ok = l.try_take(core, amount, now).is_ok();
                        prop_assert_eq!(ok, amount == 0 || amount <= before);
                        if ok {
                            taken_in_window += amount;
                            takes.push((core, amount, now));
                        }
                    }
                    Op::GiveBack { which, part } => {
                        if let Some((core, units, at)) = takes.get_mut(which).map(|t| *t) {
                            let back = part.min(units);
                            l.give_back(core, back, at, now);
                            takes[which].1 -= back;
                            if at / MIN == window {
                                taken_in_window -= back;
                            }
                        }
                    }
                    Op::Extra { core, amount } => {
                        let got = l.charge_extra(core, amount, now);
                        // From own lease and pool only: other leases are not stolen.
                        prop_assert!(got <= amount.min(before));
                        taken_in_window += got;
                    }
                    Op::Reclaim { idle_ms } => l.reclaim_idle(now, idle_ms),
                    Op::Advance { ms } => {
                        now += ms;
                        if now / MIN != window {
                            taken_in_window = 0;
                            takes.clear();
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn concurrency_limit_counts_slots() {
        let c = ConcurrencyLimit::new(2);
        assert_eq!(c.try_acquire(), Ok(()));
        assert_eq!(c.try_acquire(), Ok(()));
        assert_eq!(
            c.try_acquire(),
            Err(Refusal {
                limit: 2,
                remaining: 0,
                reset_ms: 0
            })
        );
        assert_eq!(c.current(), 2);
        c.release();
        assert_eq!(c.current(), 1);
        assert_eq!(c.try_acquire(), Ok(()));
        c.release();
        c.release();
        c.release(); // an extra release never goes below zero
        assert_eq!(c.current(), 0);
        assert_eq!(c.limit(), 2);
    }

    const DAY: u64 = 86_400_000;

    #[test]
    fn budget_reserves_settles_and_charges() {
        let b = BudgetCounter::new(1_000, BudgetPeriod::Day, 100, T0);
        assert_eq!(
            (b.limit(), b.period(), b.committed(T0)),
            (1_000, BudgetPeriod::Day, 100)
        );
        let r = b.try_reserve(800, T0).unwrap();
        assert_eq!(b.committed(T0), 900);
        assert_eq!(
            b.try_reserve(101, T0),
            Err(BudgetRefusal {
                limit: 1_000,
                committed: 900,
                period_end_ms: T0 + DAY
            })
        );
        // Actual below the reservation frees the difference.
        assert!(!b.settle(r, 300, T0));
        assert_eq!(b.committed(T0), 400);
        let r = b.try_reserve(600, T0).unwrap();
        assert_eq!(b.committed(T0), 1_000);
        // Settling at the reserved amount does not "cross": it was already at the limit.
        assert!(!b.settle(r, 600, T0));
        // Actual above the reservation may exceed the limit.
        let b = BudgetCounter::new(1_000, BudgetPeriod::Day, 0, T0);
        let r = b.try_reserve(500, T0).unwrap();
        assert!(b.settle(r, 1_200, T0));
        assert_eq!(b.committed(T0), 1_200);
        assert!(b.try_reserve(0, T0).is_err());
        // charge never refuses; crossing is reported once.
        let b = BudgetCounter::new(1_000, BudgetPeriod::Month, 0, T0);
        assert!(!b.charge(999, T0));
        assert!(b.charge(1, T0));
        assert!(!b.charge(1, T0));
        assert_eq!(b.committed(T0), 1_001);
        // Settling a reservation of 0 that was never below zero saturates.
        let b = BudgetCounter::new(1_000, BudgetPeriod::Total, 0, T0);
        assert!(!b.settle(Reservation { tag: 0, amount: 50 }, 0, T0));
        assert_eq!(b.committed(T0), 0);
    }

    #[test]
    fn budget_period_rolls_over() {
        let b = BudgetCounter::new(1_000, BudgetPeriod::Day, 900, T0 + 5);
        let r = b.try_reserve(100, T0 + 10).unwrap();
        assert!(b.try_reserve(1, T0 + 10).is_err());
        // Next day: the reservation's settlement charges nothing to the new day.
        assert_eq!(b.committed(T0 + DAY), 0);
        assert!(!b.settle(r, 100, T0 + DAY));
        assert_eq!(b.committed(T0 + DAY), 0);
        let r2 = b.try_reserve(1_000, T0 + DAY).unwrap();
        assert_eq!(b.committed(T0 + DAY), 1_000);
        // An old reservation settled after the counter moved on is ignored too.
        assert!(!b.settle(r, 5_000, T0 + DAY));
        assert!(!b.settle(r2, 10, T0 + DAY));
        assert_eq!(b.committed(T0 + DAY), 10);
        // A caller whose clock is still on the previous day joins the current one.
        assert_eq!(b.try_reserve(990, T0 + DAY - 1).map(|r| r.tag), Ok(r2.tag));
        assert!(b.try_reserve(1, T0 + DAY - 1).is_err());
        // A total budget never resets.
        let t = BudgetCounter::new(10, BudgetPeriod::Total, 10, T0);
        assert_eq!(t.committed(T0 + 400 * DAY), 10);
        assert_eq!(
            t.try_reserve(1, T0).map_err(|e| e.period_end_ms),
            Err(u64::MAX)
        );
        // Amounts beyond 56 bits are clamped.
        let big = BudgetCounter::new(u64::MAX, BudgetPeriod::Week, u64::MAX, T0);
        assert_eq!((big.limit(), big.committed(T0)), (MAX_VALUE, MAX_VALUE));
        assert!(!big.charge(u64::MAX, T0));
        assert_eq!(big.committed(T0), MAX_VALUE);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_budget() {
        let b = Arc::new(BudgetCounter::new(1_000_003, BudgetPeriod::Month, 0, T0));
        let granted = Arc::new(Counter::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (b, granted) = (b.clone(), granted.clone());
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        if b.try_reserve(70, T0).is_ok() {
                            granted.fetch_add(70, Ordering::Relaxed);
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            assert!(t.join().is_ok());
        }
        let granted = granted.load(Ordering::Relaxed);
        assert_eq!(granted, 1_000_003 / 70 * 70);
        assert_eq!(b.committed(T0), granted);
    }
}
