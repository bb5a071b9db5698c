//! The ledger's value types and their on-disk encodings: `UsageRecord` (one request),
//! `Totals` (an aggregate) and `AlertRecord`. Encodings are hand-written, versioned by their
//! first byte, and decoding never panics: any byte string either decodes or is an error.

use tollgate_config::governance::Nanos;

use super::{check_name, StoreError};

/// Format version of `UsageRecord` and `AlertRecord` encodings.
const RECORD_V1: u8 = 1;
/// Format version of the `Totals` encoding.
const TOTALS_V1: u8 = 1;

const FLAG_ESTIMATED: u8 = 0b001;
const FLAG_PRICE_UNKNOWN: u8 = 0b010;
/// Guardrail hits follow the flags byte. Records written before guardrails existed never
/// set it, so they decode unchanged.
const FLAG_GUARDRAILS: u8 = 0b100;

/// Guardrail actions and sides as stored (one byte each).
const ACTIONS: [&str; 3] = ["block", "mask", "audit"];
const SIDES: [&str; 2] = ["input", "output"];

/// One guardrail rule that fired on a request, and how often. Never the matched text.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GuardHit {
    /// The rule's `id` in its profile.
    pub rule: String,
    /// `block`, `mask` or `audit`.
    pub action: &'static str,
    /// `input` (the request) or `output` (the response).
    pub side: &'static str,
    /// Matches.
    pub count: u32,
}

/// One request's entry in the usage ledger.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UsageRecord {
    /// Unix milliseconds when the request finished.
    pub time_ms: u64,
    /// The gateway's request id.
    pub request_id: String,
    /// The virtual key's name.
    pub key: String,
    /// The key's user, if any.
    pub user: Option<String>,
    /// The key's team, if any.
    pub team: Option<String>,
    /// The key's org, if any.
    pub org: Option<String>,
    /// The model the client asked for.
    pub model: String,
    /// `"provider/upstream-model"` that answered (`""` if none).
    pub deployment: String,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Prompt tokens served from the provider's cache.
    pub cached_tokens: u64,
    /// What the request cost.
    pub cost: Nanos,
    /// Time from request head to last byte sent, in microseconds.
    pub latency_us: u64,
    /// HTTP status sent to the client.
    pub status: u16,
    /// Tokens were counted/estimated by the gateway, not reported by the upstream.
    pub estimated: bool,
    /// No price was known: cost is 0 and flagged.
    pub price_unknown: bool,
    /// Guardrail rules that fired (empty for most requests).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub guardrails: Vec<GuardHit>,
}

// === impl UsageRecord ===

impl UsageRecord {
    /// Check that no name the store keys aggregates by contains a 0 byte.
    pub fn check_names(&self) -> Result<(), StoreError> {
        check_name("key", &self.key)?;
        check_name("model", &self.model)?;
        for (what, name) in [
            ("user", &self.user),
            ("team", &self.team),
            ("org", &self.org),
        ] {
            if let Some(name) = name {
                check_name(what, name)?;
            }
        }
        Ok(())
    }

    /// Append the version-1 encoding to `out`: version byte, then every field in declaration
    /// order, integers as LEB128 varints, strings as varint length + UTF-8 bytes, options as a
    /// 0/1 byte then the value, and the two booleans folded into one flags byte.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(RECORD_V1);
        put_varint(out, self.time_ms);
        put_str(out, &self.request_id);
        put_str(out, &self.key);
        put_opt_str(out, self.user.as_deref());
        put_opt_str(out, self.team.as_deref());
        put_opt_str(out, self.org.as_deref());
        put_str(out, &self.model);
        put_str(out, &self.deployment);
        put_varint(out, self.input_tokens);
        put_varint(out, self.output_tokens);
        put_varint(out, self.cached_tokens);
        put_varint(out, self.cost);
        put_varint(out, self.latency_us);
        put_varint(out, u64::from(self.status));
        let mut flags = 0;
        if self.estimated {
            flags |= FLAG_ESTIMATED;
        }
        if self.price_unknown {
            flags |= FLAG_PRICE_UNKNOWN;
        }
        if !self.guardrails.is_empty() {
            flags |= FLAG_GUARDRAILS;
        }
        out.push(flags);
        if !self.guardrails.is_empty() {
            put_varint(out, self.guardrails.len() as u64);
            for hit in &self.guardrails {
                put_str(out, &hit.rule);
                out.push(code_of(&ACTIONS, hit.action));
                out.push(code_of(&SIDES, hit.side));
                put_varint(out, u64::from(hit.count));
            }
        }
    }

    /// Decode what `encode` wrote. Trailing bytes, truncation, bad UTF-8, overlong varints and
    /// unknown versions or flags are errors.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader::new(bytes);
        if r.byte()? != RECORD_V1 {
            return Err(decode_err("unknown usage record version"));
        }
        let record = UsageRecord {
            time_ms: r.varint()?,
            request_id: r.string()?,
            key: r.string()?,
            user: r.opt_string()?,
            team: r.opt_string()?,
            org: r.opt_string()?,
            model: r.string()?,
            deployment: r.string()?,
            input_tokens: r.varint()?,
            output_tokens: r.varint()?,
            cached_tokens: r.varint()?,
            cost: r.varint()?,
            latency_us: r.varint()?,
            status: u16::try_from(r.varint()?).map_err(|_| decode_err("status over u16"))?,
            estimated: false,
            price_unknown: false,
            guardrails: Vec::new(),
        };
        let flags = r.byte()?;
        if flags & !(FLAG_ESTIMATED | FLAG_PRICE_UNKNOWN | FLAG_GUARDRAILS) != 0 {
            return Err(decode_err("unknown flag bits"));
        }
        let mut guardrails = Vec::new();
        if flags & FLAG_GUARDRAILS != 0 {
            let n = r.varint()?;
            for _ in 0..n {
                let rule = r.string()?;
                let action = *ACTIONS
                    .get(usize::from(r.byte()?))
                    .ok_or_else(|| decode_err("unknown guardrail action"))?;
                let side = *SIDES
                    .get(usize::from(r.byte()?))
                    .ok_or_else(|| decode_err("unknown guardrail side"))?;
                let count = u32::try_from(r.varint()?)
                    .map_err(|_| decode_err("guardrail hit count over u32"))?;
                guardrails.push(GuardHit {
                    rule,
                    action,
                    side,
                    count,
                });
            }
        }
        r.finish()?;
        Ok(UsageRecord {
            estimated: flags & FLAG_ESTIMATED != 0,
            price_unknown: flags & FLAG_PRICE_UNKNOWN != 0,
            guardrails,
            ..record
        })
    }
}

/// Summed usage: one aggregate, or the sum of several.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    /// Number of requests.
    pub requests: u64,
    /// Prompt tokens.
    pub input_tokens: u64,
    /// Completion tokens.
    pub output_tokens: u64,
    /// Cached prompt tokens.
    pub cached_tokens: u64,
    /// Cost.
    pub cost: Nanos,
    /// Requests whose tokens the gateway estimated.
    pub estimated_requests: u64,
}

// === impl Totals ===

impl Totals {
    /// Length of the fixed encoding: version byte + six little-endian `u64`s.
    pub const ENCODED_LEN: usize = 1 + 6 * 8;

    /// Count one record. Saturates rather than overflowing.
    pub fn add(&mut self, r: &UsageRecord) {
        self.requests = self.requests.saturating_add(1);
        self.input_tokens = self.input_tokens.saturating_add(r.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(r.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(r.cached_tokens);
        self.cost = self.cost.saturating_add(r.cost);
        self.estimated_requests = self
            .estimated_requests
            .saturating_add(u64::from(r.estimated));
    }

    /// Add another aggregate. Saturates rather than overflowing.
    pub fn merge(&mut self, o: &Totals) {
        self.requests = self.requests.saturating_add(o.requests);
        self.input_tokens = self.input_tokens.saturating_add(o.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(o.output_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(o.cached_tokens);
        self.cost = self.cost.saturating_add(o.cost);
        self.estimated_requests = self.estimated_requests.saturating_add(o.estimated_requests);
    }

    /// The fixed version-1 encoding.
    pub fn encode(&self) -> [u8; Totals::ENCODED_LEN] {
        let mut out = [0u8; Totals::ENCODED_LEN];
        out[0] = TOTALS_V1;
        let fields = [
            self.requests,
            self.input_tokens,
            self.output_tokens,
            self.cached_tokens,
            self.cost,
            self.estimated_requests,
        ];
        for (chunk, field) in out[1..].chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        out
    }

    /// Decode what `encode` wrote; any other length or version is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        if bytes.len() != Totals::ENCODED_LEN {
            return Err(decode_err("totals have the wrong length"));
        }
        if bytes[0] != TOTALS_V1 {
            return Err(decode_err("unknown totals version"));
        }
        let mut fields = [0u64; 6];
        for (field, chunk) in fields.iter_mut().zip(bytes[1..].chunks_exact(8)) {
            let mut le = [0u8; 8];
            le.copy_from_slice(chunk);
            *field = u64::from_le_bytes(le);
        }
        let [requests, input_tokens, output_tokens, cached_tokens, cost, estimated_requests] =
            fields;
        Ok(Totals {
            requests,
            input_tokens,
            output_tokens,
            cached_tokens,
            cost,
            estimated_requests,
        })
    }
}

/// A budget threshold crossing, kept for the admin API.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AlertRecord {
    /// Unix milliseconds when the alert fired.
    pub time_ms: u64,
    /// The scope of the budget ("key", "user", "team", "org", ...).
    pub scope: String,
    /// The name inside that scope.
    pub name: String,
    /// The model the budget is limited to, if any.
    pub model: Option<String>,
    /// Which budget (its period or name as configured).
    pub budget: String,
    /// Committed spend when the alert fired.
    pub committed: Nanos,
    /// The budget's limit.
    pub limit: Nanos,
}

// === impl AlertRecord ===

impl AlertRecord {
    /// Append the version-1 encoding (same primitives as `UsageRecord::encode`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(RECORD_V1);
        put_varint(out, self.time_ms);
        put_str(out, &self.scope);
        put_str(out, &self.name);
        put_opt_str(out, self.model.as_deref());
        put_str(out, &self.budget);
        put_varint(out, self.committed);
        put_varint(out, self.limit);
    }

    /// Decode what `encode` wrote.
    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        let mut r = Reader::new(bytes);
        if r.byte()? != RECORD_V1 {
            return Err(decode_err("unknown alert record version"));
        }
        let alert = AlertRecord {
            time_ms: r.varint()?,
            scope: r.string()?,
            name: r.string()?,
            model: r.opt_string()?,
            budget: r.string()?,
            committed: r.varint()?,
            limit: r.varint()?,
        };
        r.finish()?;
        Ok(alert)
    }
}

// === encoding primitives ===

fn decode_err(reason: &'static str) -> StoreError {
    StoreError::Decode { reason }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Index of `name` in `table` as a byte; names come from the same tables, so a miss (which
/// cannot happen) stores the first entry rather than panicking.
fn code_of(table: &[&str], name: &str) -> u8 {
    table.iter().position(|t| *t == name).unwrap_or(0) as u8
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
    }
}

/// A bounds-checked cursor over an encoding.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    fn byte(&mut self) -> Result<u8, StoreError> {
        let (&b, rest) = self.rest.split_first().ok_or(decode_err("truncated"))?;
        self.rest = rest;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, StoreError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            let low = u64::from(b & 0x7f);
            // The tenth byte may only carry the top bit of a u64.
            if shift == 63 && low > 1 {
                return Err(decode_err("varint overflows u64"));
            }
            v |= low << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(decode_err("varint longer than 10 bytes"))
    }

    fn string(&mut self) -> Result<String, StoreError> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| decode_err("string length overflows"))?;
        if len > self.rest.len() {
            return Err(decode_err("truncated string"));
        }
        let (bytes, rest) = self.rest.split_at(len);
        self.rest = rest;
        String::from_utf8(bytes.to_vec()).map_err(|_| decode_err("string is not UTF-8"))
    }

    fn opt_string(&mut self) -> Result<Option<String>, StoreError> {
        match self.byte()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            _ => Err(decode_err("bad option tag")),
        }
    }

    fn finish(&self) -> Result<(), StoreError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(decode_err("trailing bytes"))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use proptest::prelude::*;

    fn sample() -> UsageRecord {
        UsageRecord {
            time_ms: 1_763_700_000_123,
            request_id: "req-1".into(),
            key: "demo".into(),
            user: Some("alice".into()),
            team: None,
            org: Some("acme".into()),
            model: "gpt-4o-mini".into(),
            deployment: "local/gpt-4o-mini".into(),
            input_tokens: 1200,
            output_tokens: 300,
            cached_tokens: 1024,
            cost: 123_456,
            latency_us: 98_765,
            status: 200,
            estimated: true,
            price_unknown: false,
            guardrails: Vec::new(),
        }
    }

    #[test]
    fn guardrail_hits_round_trip_and_old_records_have_none() {
        let plain = sample();
        let mut old = Vec::new();
        plain.encode(&mut old);
        assert_eq!(
            old.last(),
            Some(&FLAG_ESTIMATED),
            "no hits: the pre-guardrails encoding"
        );
        let r = UsageRecord {
            guardrails: vec![
                GuardHit {
                    rule: "emails".into(),
                    action: "mask",
                    side: "input",
                    count: 3,
                },
                GuardHit {
                    rule: "cards".into(),
                    action: "block",
                    side: "output",
                    count: 1,
                },
            ],
            ..plain
        };
        let mut buf = Vec::new();
        r.encode(&mut buf);
        assert_eq!(UsageRecord::decode(&buf).unwrap(), r);
        for cut in old.len()..buf.len() {
            assert!(UsageRecord::decode(&buf[..cut]).is_err(), "prefix {cut}");
        }
        // An action code past the table is an error, not a panic.
        let action_at = old.len() + 1 + 1 + "emails".len();
        buf[action_at] = 9;
        assert!(UsageRecord::decode(&buf).is_err());
    }

    #[test]
    fn usage_round_trip_and_every_truncation_fails() {
        let r = sample();
        let mut buf = Vec::new();
        r.encode(&mut buf);
        assert_eq!(buf[0], 1);
        assert_eq!(UsageRecord::decode(&buf).unwrap(), r);
        for cut in 0..buf.len() {
            assert!(UsageRecord::decode(&buf[..cut]).is_err(), "prefix {cut}");
        }
        buf.push(0);
        assert!(matches!(
            UsageRecord::decode(&buf),
            Err(StoreError::Decode {
                reason: "trailing bytes"
            })
        ));
    }

    #[test]
    fn usage_rejects_other_versions_and_flags() {
        let mut buf = Vec::new();
        sample().encode(&mut buf);
        let mut v2 = buf.clone();
        v2[0] = 2;
        assert!(UsageRecord::decode(&v2).is_err());
        let last = buf.len() - 1;
        buf[last] = 0b1000;
        assert!(UsageRecord::decode(&buf).is_err());
    }

    #[test]
    fn varint_edges() {
        for v in [0, 1, 127, 128, 16_383, 16_384, u64::MAX - 1, u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut r = Reader::new(&buf);
            assert_eq!(r.varint().unwrap(), v);
            r.finish().unwrap();
        }
        // 10th byte with more than the top bit: overflow.
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(Reader::new(&over).varint().is_err());
        let long = [0x80; 11];
        assert!(Reader::new(&long).varint().is_err());
    }

    #[test]
    fn totals_round_trip_add_merge() {
        let mut t = Totals::default();
        t.add(&sample());
        t.add(&sample());
        assert_eq!(
            t,
            Totals {
                requests: 2,
                input_tokens: 2400,
                output_tokens: 600,
                cached_tokens: 2048,
                cost: 246_912,
                estimated_requests: 2,
            }
        );
        let mut m = t;
        m.merge(&t);
        assert_eq!(m.requests, 4);
        assert_eq!(m.cost, 493_824);
        let enc = t.encode();
        assert_eq!(enc.len(), Totals::ENCODED_LEN);
        assert_eq!(Totals::decode(&enc).unwrap(), t);
        assert!(Totals::decode(&enc[..48]).is_err());
        let mut bad = enc;
        bad[0] = 9;
        assert!(Totals::decode(&bad).is_err());
    }

    #[test]
    fn alert_round_trip_and_truncation() {
        let a = AlertRecord {
            time_ms: 5,
            scope: "team".into(),
            name: "ml".into(),
            model: Some("gpt-4o".into()),
            budget: "monthly".into(),
            committed: 80_000_000_000,
            limit: 100_000_000_000,
        };
        let mut buf = Vec::new();
        a.encode(&mut buf);
        assert_eq!(AlertRecord::decode(&buf).unwrap(), a);
        for cut in 0..buf.len() {
            assert!(AlertRecord::decode(&buf[..cut]).is_err());
        }
    }

    #[test]
    fn names_with_nul_are_rejected() {
        let mut r = sample();
        r.check_names().unwrap();
        r.team = Some("a\0b".into());
        assert!(matches!(
            r.check_names(),
            Err(StoreError::InvalidName { what: "team", .. })
        ));
    }

    fn any_record() -> impl Strategy<Value = UsageRecord> {
        (
            (
                any::<u64>(),
                ".{0,12}",
                ".{0,12}",
                proptest::option::of(".{0,8}"),
                proptest::option::of(".{0,8}"),
                proptest::option::of(".{0,8}"),
                ".{0,12}",
                ".{0,12}",
            ),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                any::<u16>(),
                any::<bool>(),
                any::<bool>(),
            ),
            proptest::collection::vec(
                (".{0,10}", 0..ACTIONS.len(), 0..SIDES.len(), any::<u32>()),
                0..3,
            ),
        )
            .prop_map(
                |(
                    (time_ms, request_id, key, user, team, org, model, deployment),
                    (input, output, cached, cost, latency_us, status, estimated, price_unknown),
                    hits,
                )| UsageRecord {
                    time_ms,
                    request_id,
                    key,
                    user,
                    team,
                    org,
                    model,
                    deployment,
                    input_tokens: input,
                    output_tokens: output,
                    cached_tokens: cached,
                    cost,
                    latency_us,
                    status,
                    estimated,
                    price_unknown,
                    guardrails: hits
                        .into_iter()
                        .map(|(rule, action, side, count)| GuardHit {
                            rule,
                            action: ACTIONS[action],
                            side: SIDES[side],
                            count,
                        })
                        .collect(),
                },
            )
    }

    proptest! {
        #[test]
        fn prop_usage_round_trips(r in any_record()) {
            let mut buf = Vec::new();
            r.encode(&mut buf);
            prop_assert_eq!(UsageRecord::decode(&buf).unwrap(), r);
            for cut in 0..buf.len() {
                prop_assert!(UsageRecord::decode(&buf[..cut]).is_err());
            }
        }

        #[test]
        fn prop_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..128)) {
            let _ = UsageRecord::decode(&bytes);
            let _ = AlertRecord::decode(&bytes);
            let _ = Totals::decode(&bytes);
            // Garbage behind a valid version byte exercises the field decoders.
            let mut v1 = vec![1u8];
            v1.extend_from_slice(&bytes);
            let _ = UsageRecord::decode(&v1);
            let _ = AlertRecord::decode(&v1);
        }
    }
}
