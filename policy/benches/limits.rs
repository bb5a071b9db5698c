//! Cost of the limit counters on the request path: a take from a core's own lease (the
//! common case) and a budget reserve + settle. Contention is covered by the stress tests.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate_config::governance::BudgetPeriod;
use tollgate_policy::limits::{BudgetCounter, WindowLimit};

const NOW: u64 = 1_704_067_200_000;

fn window_limit(c: &mut Criterion) {
    let limit = WindowLimit::new(u64::MAX, 60_000, 8);
    c.bench_function("window_limit/try_take_own_lease", |b| {
        b.iter(|| limit.try_take(black_box(3), black_box(1), NOW))
    });
}

fn budget(c: &mut Criterion) {
    let budget = BudgetCounter::new(u64::MAX, BudgetPeriod::Month, 0, NOW);
    c.bench_function("budget/reserve_settle", |b| {
        b.iter(|| {
            if let Ok(r) = budget.try_reserve(black_box(1_000), NOW) {
                black_box(budget.settle(r, 900, NOW));
            }
        })
    });
}

criterion_group!(benches, window_limit, budget);
criterion_main!(benches);
