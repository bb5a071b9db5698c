//! Routing decisions for one core: which deployment a request tries first, which next, and
//! which to skip. Owns per-deployment health (in-flight count, latency EWMA, consecutive
//! failures, error ratio over a window, cooldown) and per-model weighted round-robin state.
//!
//! Sans-IO and per core: every function takes `now` and touches only this core's state, so
//! there is no lock on the request path. Each core learns about a failing deployment from its
//! own traffic; with N cores an outlier is ejected after at most N times the threshold.

use std::time::{Duration, Instant};

/// How a model orders its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Smooth weighted round-robin (nginx's algorithm): spreads by weight, never bursts.
    Weighted,
    /// Fewest requests in flight on this core first.
    LeastInFlight,
    /// Lowest time-to-first-byte EWMA first (untried deployments first, to learn them).
    LowestLatency,
    /// Lowest `priority` value first; later ones only when earlier ones fail or cool down.
    Priority,
}

/// The routing-relevant part of one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeploymentSpec {
    /// Relative share for `Weighted` (>= 1).
    pub weight: u32,
    /// Order for `Priority` (lower first).
    pub priority: u32,
}

/// Outlier-ejection and retry settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthSettings {
    /// Consecutive failures that eject a deployment.
    pub cooldown_failures: u32,
    /// Failure ratio over the window that ejects a deployment...
    pub cooldown_error_ratio: f64,
    /// ...once the window has at least this many requests.
    pub cooldown_min_requests: u32,
    /// Length of the error-ratio window.
    pub cooldown_window: Duration,
    /// How long an ejected deployment is skipped before one probe request is let through.
    pub cooldown: Duration,
    /// First retry delay (doubles per retry, full jitter).
    pub backoff_base: Duration,
    /// Largest retry delay.
    pub backoff_max: Duration,
}

impl Default for HealthSettings {
    fn default() -> Self {
        HealthSettings {
            cooldown_failures: 3,
            cooldown_error_ratio: 0.5,
            cooldown_min_requests: 10,
            cooldown_window: Duration::from_secs(30),
            cooldown: Duration::from_secs(30),
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(2),
        }
    }
}

/// Health of one deployment as seen from this core.
#[derive(Debug, Clone, Default)]
struct Health {
    in_flight: u32,
    /// Time to first byte, exponentially weighted (microseconds); `None` until measured.
    ttfb_ewma_us: Option<f64>,
    consecutive_failures: u32,
    window_start: Option<Instant>,
    window_requests: u32,
    window_failures: u32,
    /// Skipped until then; after it, one probe is let through.
    ejected_until: Option<Instant>,
    /// A probe is in flight: keep skipping until it reports.
    probing: bool,
}

/// Weight of the newest sample in the latency EWMA.
const EWMA_ALPHA: f64 = 0.3;

/// How one attempt on a deployment ended, for health bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptResult {
    /// The deployment answered (any status the client should see, including its 4xx).
    Success,
    /// The deployment failed in a way that says it is unhealthy (connect error, timeout,
    /// reset, 5xx, 429).
    Failure,
    /// The attempt ended for reasons that say nothing about the deployment (client left).
    Neutral,
}

/// Per-core routing state for every model's deployments.
#[derive(Debug)]
pub struct Router {
    settings: HealthSettings,
    /// `[model][deployment]` health.
    health: Vec<Vec<Health>>,
    /// `[model][deployment]` smooth-WRR current weights.
    current: Vec<Vec<i64>>,
    specs: Vec<Vec<DeploymentSpec>>,
    strategies: Vec<Strategy>,
    rng: u64,
}

// === impl Router ===

impl Router {
    /// State for `models`, each a strategy and its deployments' specs. `seed` varies the jitter
    /// per core.
    pub fn new(
        models: Vec<(Strategy, Vec<DeploymentSpec>)>,
        settings: HealthSettings,
        seed: u64,
    ) -> Self {
        let health = models
            .iter()
            .map(|(_, d)| vec![Health::default(); d.len()])
            .collect();
        let current = models.iter().map(|(_, d)| vec![0; d.len()]).collect();
        let strategies = models.iter().map(|(s, _)| *s).collect();
        let specs = models.into_iter().map(|(_, d)| d).collect();
        Router {
            settings,
            health,
            current,
            specs,
            strategies,
            rng: seed | 1,
        }
    }

    /// The deployments of `model` in the order to try them now. Deployments in cooldown are
    /// left out, except that once a cooldown has expired one request probes the deployment.
    /// When every deployment is cooling down, the one whose cooldown ends first is returned
    /// alone, so a model never becomes unroutable from this core's point of view alone.
    pub fn order(&mut self, model: usize, now: Instant) -> Vec<usize> {
        let Some(health) = self.health.get(model) else {
            return Vec::new();
        };
        let n = health.len();
        let mut available: Vec<usize> = Vec::with_capacity(n);
        for (i, h) in health.iter().enumerate() {
            match h.ejected_until {
                // Cooling down, or its single probe is already out.
                Some(until) if now < until || h.probing => {}
                // Cooldown over: the next attempt that starts on it is the probe.
                Some(_) | None => available.push(i),
            }
        }
        if available.is_empty() {
            let soonest = health
                .iter()
                .enumerate()
                .min_by_key(|(_, h)| h.ejected_until)
                .map(|(i, _)| i);
            return soonest.into_iter().collect();
        }
        match self.strategies[model] {
            Strategy::Weighted => self.weighted_order(model, &available),
            Strategy::Priority => {
                let specs = &self.specs[model];
                available.sort_by_key(|&i| (specs[i].priority, i));
                available
            }
            Strategy::LeastInFlight => {
                let health = &self.health[model];
                available.sort_by_key(|&i| (health[i].in_flight, i));
                available
            }
            Strategy::LowestLatency => {
                let health = &self.health[model];
                // Unmeasured deployments first (they must be learned), then by EWMA.
                available.sort_by(|&a, &b| {
                    let key = |i: usize| health[i].ttfb_ewma_us.unwrap_or(-1.0);
                    key(a).total_cmp(&key(b)).then(a.cmp(&b))
                });
                available
            }
        }
    }

    /// Smooth weighted round-robin over `available`: the first pick advances the shared
    /// state; the rest follow by descending current weight, so retries go elsewhere.
    fn weighted_order(&mut self, model: usize, available: &[usize]) -> Vec<usize> {
        let specs = &self.specs[model];
        let current = &mut self.current[model];
        let total: i64 = available
            .iter()
            .map(|&i| i64::from(specs[i].weight.max(1)))
            .sum();
        for &i in available {
            current[i] += i64::from(specs[i].weight.max(1));
        }
        let mut order = available.to_vec();
        order.sort_by_key(|&i| (std::cmp::Reverse(current[i]), i));
        if let Some(&first) = order.first() {
            current[first] -= total;
        }
        order
    }

    /// An attempt on (`model`, `deployment`) starts. On a deployment whose cooldown has
    /// ended, this attempt is the probe: others skip it until the probe reports.
    pub fn start(&mut self, model: usize, deployment: usize) {
        if let Some(h) = self.health_mut(model, deployment) {
            h.in_flight += 1;
            if h.ejected_until.is_some() {
                h.probing = true;
            }
        }
    }

    /// An attempt ended. `ttfb` is the time to the response head when there was one.
    pub fn finish(
        &mut self,
        model: usize,
        deployment: usize,
        result: AttemptResult,
        ttfb: Option<Duration>,
        now: Instant,
    ) {
        let settings = self.settings;
        let Some(h) = self.health_mut(model, deployment) else {
            return;
        };
        h.in_flight = h.in_flight.saturating_sub(1);
        if let Some(t) = ttfb {
            let sample = t.as_secs_f64() * 1e6;
            h.ttfb_ewma_us = Some(match h.ttfb_ewma_us {
                None => sample,
                Some(prev) => prev + EWMA_ALPHA * (sample - prev),
            });
        }
        if result == AttemptResult::Neutral {
            h.probing = false;
            return;
        }
        let window_expired = h
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= settings.cooldown_window);
        if window_expired {
            h.window_start = Some(now);
            h.window_requests = 0;
            h.window_failures = 0;
        }
        h.window_requests += 1;
        let was_probe = h.probing;
        h.probing = false;
        match result {
            AttemptResult::Success => {
                h.consecutive_failures = 0;
                if was_probe {
                    // Recovered: back in rotation with a clean window.
                    h.ejected_until = None;
                    h.window_start = Some(now);
                    h.window_requests = 1;
                    h.window_failures = 0;
                }
            }
            AttemptResult::Failure => {
                h.consecutive_failures += 1;
                h.window_failures += 1;
                let ratio_tripped = h.window_requests >= settings.cooldown_min_requests
                    && f64::from(h.window_failures) / f64::from(h.window_requests)
                        >= settings.cooldown_error_ratio;
                if was_probe
                    || h.consecutive_failures >= settings.cooldown_failures
                    || ratio_tripped
                {
                    h.ejected_until = Some(now + settings.cooldown);
                    h.consecutive_failures = 0;
                }
            }
            AttemptResult::Neutral => {}
        }
    }

    /// True when every deployment of `model` is ejected (or has its probe out).
    pub fn all_cooling_down(&self, model: usize, now: Instant) -> bool {
        self.health.get(model).is_some_and(|m| {
            m.iter().all(|h| {
                h.ejected_until
                    .is_some_and(|until| now < until || h.probing)
            })
        })
    }

    /// True while (`model`, `deployment`) is ejected.
    pub fn is_cooling_down(&self, model: usize, deployment: usize, now: Instant) -> bool {
        self.health
            .get(model)
            .and_then(|m| m.get(deployment))
            .and_then(|h| h.ejected_until)
            .is_some_and(|until| now < until)
    }

    /// Delay before retry number `retry` (0-based): capped exponential with full jitter.
    pub fn backoff(&mut self, retry: u32) -> Duration {
        let base = self.settings.backoff_base.as_micros() as u64;
        let cap = self.settings.backoff_max.as_micros() as u64;
        let ceiling = base.saturating_mul(1u64 << retry.min(20)).min(cap);
        if ceiling == 0 {
            return Duration::ZERO;
        }
        Duration::from_micros(self.next_random() % (ceiling + 1))
    }

    /// After a reload: take over what `old` (the previous generation's router) learnt about
    /// one deployment: latency, failures and cooldown. Requests in flight and a probe in flight
    /// stay with the old router, which they report to, so this one starts with none.
    pub fn inherit_health(
        &mut self,
        (model, deployment): (usize, usize),
        old: &Router,
        (old_model, old_deployment): (usize, usize),
    ) {
        let Some(from) = old
            .health
            .get(old_model)
            .and_then(|m| m.get(old_deployment))
        else {
            return;
        };
        if let Some(to) = self
            .health
            .get_mut(model)
            .and_then(|m| m.get_mut(deployment))
        {
            *to = Health {
                in_flight: 0,
                probing: false,
                ..from.clone()
            };
        }
    }

    fn next_random(&mut self) -> u64 {
        // xorshift64*: jitter only needs to decorrelate cores and retries.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn health_mut(&mut self, model: usize, deployment: usize) -> Option<&mut Health> {
        self.health.get_mut(model)?.get_mut(deployment)
    }

    /// What this core knows about every deployment's health at `now`, `[model][deployment]`,
    /// for the admin dashboard. Read-only: listing a deployment whose cooldown is over does
    /// not claim its probe.
    pub fn health_view(&self, now: Instant) -> Vec<Vec<HealthView>> {
        let window = self.settings.cooldown_window;
        self.health
            .iter()
            .map(|model| {
                model
                    .iter()
                    .map(|h| {
                        // An expired window says nothing about now.
                        let window_current = h
                            .window_start
                            .is_some_and(|start| now.saturating_duration_since(start) < window);
                        let (recent_requests, recent_failures) = if window_current {
                            (h.window_requests, h.window_failures)
                        } else {
                            (0, 0)
                        };
                        let state = match h.ejected_until {
                            None => HealthState::Healthy,
                            Some(_) if h.probing => HealthState::Probing,
                            Some(until) if now < until => HealthState::CoolingDown {
                                left: until.saturating_duration_since(now),
                            },
                            Some(_) => HealthState::ProbeDue,
                        };
                        HealthView {
                            state,
                            in_flight: h.in_flight,
                            ttfb_ewma: h
                                .ttfb_ewma_us
                                .map(|us| Duration::from_micros(us.round() as u64)),
                            consecutive_failures: h.consecutive_failures,
                            recent_requests,
                            recent_failures,
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// The length of the window `recent_requests` and `recent_failures` count over.
    pub fn health_window(&self) -> Duration {
        self.settings.cooldown_window
    }
}

/// Where a deployment stands in the cooldown cycle, as one core sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// In rotation.
    Healthy,
    /// Ejected: skipped for `left` more.
    CoolingDown {
        /// Time until the cooldown ends.
        left: Duration,
    },
    /// The cooldown is over: the next request to it is the probe.
    ProbeDue,
    /// Its probe request is in flight; skipped until it reports.
    Probing,
}

impl HealthState {
    /// Lowercase name: `healthy`, `cooling_down`, `probe_due`, `probing`.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Healthy => "healthy",
            HealthState::CoolingDown { .. } => "cooling_down",
            HealthState::ProbeDue => "probe_due",
            HealthState::Probing => "probing",
        }
    }
}

/// One deployment's health on one core (see [`Router::health_view`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HealthView {
    /// Cooldown state.
    pub state: HealthState,
    /// Attempts in flight on this core.
    pub in_flight: u32,
    /// Time to first byte, exponentially weighted; `None` until measured.
    pub ttfb_ewma: Option<Duration>,
    /// Failures in a row since the last success (reset when it is ejected).
    pub consecutive_failures: u32,
    /// Attempts that ended in the current error-ratio window ([`Router::health_window`]).
    pub recent_requests: u32,
    /// Of those, the failures.
    pub recent_failures: u32,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn spec(weight: u32, priority: u32) -> DeploymentSpec {
        DeploymentSpec { weight, priority }
    }

    fn router(strategy: Strategy, specs: Vec<DeploymentSpec>) -> Router {
        Router::new(vec![(strategy, specs)], HealthSettings::default(), 7)
    }

    #[test]
    fn weighted_round_robin_spreads_by_weight_smoothly() {
        let mut r = router(Strategy::Weighted, vec![spec(5, 0), spec(1, 0), spec(1, 0)]);
        let now = Instant::now();
        let firsts: Vec<usize> = (0..7).map(|_| r.order(0, now)[0]).collect();
        assert_eq!(firsts.iter().filter(|&&i| i == 0).count(), 5);
        assert_eq!(firsts.iter().filter(|&&i| i == 1).count(), 1);
        assert_eq!(firsts.iter().filter(|&&i| i == 2).count(), 1);
        // Smooth: nginx's sequence for weights 5/1/1 is a a b a c a a.
        assert_eq!(firsts, vec![0, 0, 1, 0, 2, 0, 0]);
        // Every order lists every available deployment once (retries go elsewhere).
        let mut o = r.order(0, now);
        o.sort();
        assert_eq!(o, vec![0, 1, 2]);
    }

    #[test]
    fn priority_and_least_in_flight() {
        let now = Instant::now();
        let mut r = router(Strategy::Priority, vec![spec(1, 2), spec(1, 0), spec(1, 1)]);
        assert_eq!(r.order(0, now), vec![1, 2, 0]);
        let mut r = router(Strategy::LeastInFlight, vec![spec(1, 0), spec(1, 0)]);
        r.start(0, 0);
        assert_eq!(r.order(0, now), vec![1, 0]);
        r.finish(0, 0, AttemptResult::Success, None, now);
        r.start(0, 1);
        assert_eq!(r.order(0, now), vec![0, 1]);
    }

    #[test]
    fn lowest_latency_learns_then_prefers_the_fastest() {
        let now = Instant::now();
        let mut r = router(Strategy::LowestLatency, vec![spec(1, 0), spec(1, 0)]);
        r.start(0, 0);
        r.finish(
            0,
            0,
            AttemptResult::Success,
            Some(Duration::from_millis(80)),
            now,
        );
        // Deployment 1 is unmeasured: it goes first so it gets learned.
        assert_eq!(r.order(0, now), vec![1, 0]);
        r.start(0, 1);
        r.finish(
            0,
            1,
            AttemptResult::Success,
            Some(Duration::from_millis(20)),
            now,
        );
        assert_eq!(r.order(0, now), vec![1, 0]);
        for _ in 0..10 {
            r.start(0, 1);
            r.finish(
                0,
                1,
                AttemptResult::Success,
                Some(Duration::from_millis(200)),
                now,
            );
        }
        assert_eq!(r.order(0, now), vec![0, 1]);
    }

    #[test]
    fn consecutive_failures_eject_then_probe_then_recover() {
        let t0 = Instant::now();
        let mut r = router(Strategy::Priority, vec![spec(1, 0), spec(1, 1)]);
        for _ in 0..3 {
            r.start(0, 0);
            r.finish(0, 0, AttemptResult::Failure, None, t0);
        }
        assert!(r.is_cooling_down(0, 0, t0));
        assert_eq!(r.order(0, t0), vec![1]);
        // After the cooldown, exactly one request probes deployment 0.
        let t1 = t0 + Duration::from_secs(31);
        assert_eq!(r.order(0, t1), vec![0, 1]);
        assert_eq!(
            r.order(0, t1),
            vec![0, 1],
            "listing it does not claim the probe"
        );
        r.start(0, 0);
        assert_eq!(r.order(0, t1), vec![1], "only one probe at a time");
        r.finish(0, 0, AttemptResult::Success, None, t1);
        assert_eq!(r.order(0, t1), vec![0, 1]);
        assert!(!r.is_cooling_down(0, 0, t1));
    }

    #[test]
    fn failed_probe_ejects_again() {
        let t0 = Instant::now();
        let mut r = router(Strategy::Priority, vec![spec(1, 0), spec(1, 1)]);
        for _ in 0..3 {
            r.finish(0, 0, AttemptResult::Failure, None, t0);
        }
        let t1 = t0 + Duration::from_secs(31);
        assert_eq!(r.order(0, t1)[0], 0);
        r.start(0, 0);
        r.finish(0, 0, AttemptResult::Failure, None, t1);
        assert!(r.is_cooling_down(0, 0, t1 + Duration::from_secs(1)));
    }

    #[test]
    fn error_ratio_ejects() {
        let t0 = Instant::now();
        let mut r = router(Strategy::Weighted, vec![spec(1, 0), spec(1, 0)]);
        // Alternate success/failure: never 3 in a row, but 50% over 10 requests.
        for i in 0..10 {
            let result = if i % 2 == 0 {
                AttemptResult::Failure
            } else {
                AttemptResult::Success
            };
            r.finish(0, 0, result, None, t0);
        }
        // 5 of 9 failed before the window held 10 requests, and the 10th succeeded.
        assert!(!r.is_cooling_down(0, 0, t0));
        r.finish(0, 0, AttemptResult::Failure, None, t0);
        assert!(r.is_cooling_down(0, 0, t0));
    }

    #[test]
    fn all_cooling_down_still_routes_to_the_soonest() {
        let t0 = Instant::now();
        let mut r = router(Strategy::Weighted, vec![spec(1, 0), spec(1, 0)]);
        for _ in 0..3 {
            r.finish(0, 1, AttemptResult::Failure, None, t0);
        }
        for _ in 0..3 {
            r.finish(
                0,
                0,
                AttemptResult::Failure,
                None,
                t0 + Duration::from_secs(1),
            );
        }
        assert_eq!(r.order(0, t0 + Duration::from_secs(2)), vec![1]);
    }

    #[test]
    fn health_view_follows_the_cooldown_cycle() {
        let t0 = Instant::now();
        let mut r = router(Strategy::Priority, vec![spec(1, 0), spec(1, 1)]);
        r.start(0, 1);
        let view = r.health_view(t0);
        assert_eq!(view[0][0].state, HealthState::Healthy);
        assert_eq!(view[0][1].in_flight, 1);
        for _ in 0..3 {
            r.start(0, 0);
            r.finish(
                0,
                0,
                AttemptResult::Failure,
                Some(Duration::from_millis(10)),
                t0,
            );
        }
        let at = t0 + Duration::from_secs(10);
        let d = r.health_view(at)[0][0];
        assert_eq!(
            d.state,
            HealthState::CoolingDown {
                left: Duration::from_secs(20)
            }
        );
        assert_eq!((d.recent_requests, d.recent_failures), (3, 3));
        assert_eq!(d.consecutive_failures, 0, "reset on ejection");
        assert_eq!(d.ttfb_ewma, Some(Duration::from_millis(10)));
        // The window (30 s) is over: nothing recent.
        let later = t0 + Duration::from_secs(31);
        let d = r.health_view(later)[0][0];
        assert_eq!(d.state, HealthState::ProbeDue);
        assert_eq!((d.recent_requests, d.recent_failures), (0, 0));
        // Viewing did not claim the probe.
        assert_eq!(r.order(0, later), vec![0, 1]);
        r.start(0, 0);
        assert_eq!(r.health_view(later)[0][0].state, HealthState::Probing);
        r.finish(0, 0, AttemptResult::Success, None, later);
        assert_eq!(r.health_view(later)[0][0].state, HealthState::Healthy);
    }

    #[test]
    fn backoff_is_capped_jittered_and_grows() {
        let mut r = router(Strategy::Weighted, vec![spec(1, 0)]);
        for retry in 0..30 {
            let d = r.backoff(retry);
            assert!(d <= Duration::from_secs(2), "{d:?}");
            let ceiling = Duration::from_millis(50).saturating_mul(1 << retry.min(20));
            assert!(d <= ceiling.min(Duration::from_secs(2)));
        }
        let samples: Vec<Duration> = (0..20).map(|_| r.backoff(3)).collect();
        assert!(samples.iter().any(|d| *d != samples[0]), "jittered");
    }
}
