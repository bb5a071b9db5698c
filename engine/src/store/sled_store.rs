//! `SledStore`: the `Store` trait on sled 0.34 plus the record log ([`super::log`]).
//! Aggregates, entities and alerts live in sled; usage records in the append-only log, because
//! sled costs microseconds and memory per record at the gateway's request rate. sled's
//! background flusher is off: we flush when the storage thread says so. Never share a
//! `SledStore` with a worker's request path.
//!
//! Keys in the `ledger` tree:
//! - `a` + scope byte + name + 0 + model part + 0 + period -> `Totals` encoding, where the model
//!   part is `1` (all models) or `2` + model, and the period is `L` (lifetime) or `D` + day
//!   (u32 BE), so one name/model's days are contiguous and in order.
//! - `c` -> the log [`Position`] the aggregates include (the checkpoint)
//! - `s` + segment (u32 BE) -> oldest and newest `time_ms` in that log segment (u64 BE each)
//! - `mv` -> `[format version]`
//!
//! One usage batch: frames appended to the log and synced, then ONE sled batch with every
//! aggregate it changes, the new checkpoint and the segment's time range, then a sled flush.
//! A crash between the two leaves frames past the checkpoint, which `open` replays; so the
//! aggregates always equal the sum of the records on disk.

use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};

use sled::{Batch, Db, Tree};

use super::log::{Position, RecordLog};
use super::record::{AlertRecord, Totals, UsageRecord};
use super::{check_name, day_of, printable_key, EntityKind, ReportRow, Scope, Store, StoreError};

/// Format version of the ledger tree's key layout. 1 kept records in sled (never released).
const FORMAT_VERSION: u8 = 2;
const FORMAT_KEY: &[u8] = b"mv";
const CHECKPOINT_KEY: &[u8] = b"c";
const SEGMENT: u8 = b's';

/// sled's page cache: aggregates, entities and alerts are small, and sled's default (1 GiB)
/// would let the gateway's memory grow with them.
const SLED_CACHE_BYTES: u64 = 64 << 20;

const AGGREGATE: u8 = b'a';
const ALL_MODELS: u8 = 1;
const ONE_MODEL: u8 = 2;
const LIFETIME: u8 = b'L';
const DAY: u8 = b'D';

/// The sled-backed store.
#[derive(Debug)]
pub struct SledStore {
    db: Db,
    ledger: Tree,
    entities: Tree,
    alerts: Tree,
    log: Mutex<LogState>,
    /// A temporary store's directory, removed on drop.
    temporary: Option<PathBuf>,
}

/// The record log and what the store knows of its segments.
#[derive(Debug)]
struct LogState {
    log: RecordLog,
    /// Oldest and newest `time_ms` per segment.
    segments: BTreeMap<u32, (u64, u64)>,
}

/// How long `open` waits for a held lock to be released.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(250);

// === impl SledStore ===

impl SledStore {
    /// Open (or create) the store in directory `path`, replaying log records the aggregates
    /// do not include yet (after a crash). Automatic flushing is off: writes become durable
    /// when a `Store` method says so or `flush` is called.
    ///
    /// A store this process has just dropped can still be locked for a moment (sled's I/O
    /// threads let go of the file after the handle is gone), so a held lock is retried for
    /// [`LOCK_WAIT`] before it is reported as [`StoreError::Locked`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        loop {
            let opened = sled::Config::new()
                .path(path)
                .mode(sled::Mode::HighThroughput)
                .cache_capacity(SLED_CACHE_BYTES)
                .flush_every_ms(None)
                .open();
            match opened {
                Ok(db) => return Self::from_db(db, path, None),
                // sled 0.34 reports a held file lock only through the message text.
                Err(sled::Error::Io(io)) if io.to_string().contains("could not acquire lock") => {
                    if std::time::Instant::now() >= deadline {
                        return Err(StoreError::Locked {
                            path: path.display().to_string(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(other) => return Err(StoreError::Sled(other)),
            }
        }
    }

    /// A store in a fresh temporary directory, deleted on drop (tests).
    pub fn temporary() -> Result<Self, StoreError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tollgate-store-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let db = sled::Config::new()
            .path(&dir)
            .cache_capacity(SLED_CACHE_BYTES)
            .flush_every_ms(None)
            .open()?;
        Self::from_db(db, &dir.clone(), Some(dir))
    }

    fn from_db(db: Db, path: &Path, temporary: Option<PathBuf>) -> Result<Self, StoreError> {
        let ledger = db.open_tree("ledger")?;
        let entities = db.open_tree("entities")?;
        let alerts = db.open_tree("alerts")?;
        match ledger.get(FORMAT_KEY)? {
            Some(v) if v.as_ref() == [FORMAT_VERSION] => {}
            Some(v) => {
                return Err(StoreError::Format {
                    found: v.first().copied().unwrap_or(0),
                    supported: FORMAT_VERSION,
                })
            }
            None => {
                ledger.insert(FORMAT_KEY, &[FORMAT_VERSION])?;
                db.flush()?;
            }
        }
        let mut segments = BTreeMap::new();
        for item in ledger.scan_prefix([SEGMENT]) {
            let (k, v) = item?;
            segments.insert(
                decode_segment_key(&k).ok_or_else(|| StoreError::Corrupt {
                    key: printable_key(&k),
                    reason: "malformed segment key",
                })?,
                decode_range(&v).ok_or_else(|| StoreError::Corrupt {
                    key: printable_key(&k),
                    reason: "malformed segment time range",
                })?,
            );
        }
        let store = SledStore {
            log: Mutex::new(LogState {
                log: RecordLog::open(path)?,
                segments,
            }),
            db,
            ledger,
            entities,
            alerts,
            temporary,
        };
        store.recover()?;
        Ok(store)
    }

    /// Replay the records past the checkpoint into the aggregates and cut a torn last frame.
    fn recover(&self) -> Result<(), StoreError> {
        let checkpoint = self.checkpoint()?;
        let mut state = self.log_state();
        let mut replay = Vec::new();
        let end = state.log.read_from(checkpoint, |r, _| {
            replay.push(r);
            Ok(())
        })?;
        state.log.truncate_to(end)?;
        if !replay.is_empty() {
            tracing::info!(
                records = replay.len(),
                "store: replaying usage records written just before a crash"
            );
            self.commit(&mut state, &replay, end)?;
        }
        Ok(())
    }

    fn checkpoint(&self) -> Result<Position, StoreError> {
        match self.ledger.get(CHECKPOINT_KEY)? {
            None => Ok(Position::default()),
            Some(v) => Position::decode(&v).ok_or_else(|| StoreError::Corrupt {
                key: printable_key(CHECKPOINT_KEY),
                reason: "malformed log checkpoint",
            }),
        }
    }

    fn log_state(&self) -> MutexGuard<'_, LogState> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Add `records` (already in the log, ending at `end`) to the aggregates, and move the
    /// checkpoint to `end`, in one sled batch; then flush.
    fn commit(
        &self,
        state: &mut LogState,
        records: &[UsageRecord],
        end: Position,
    ) -> Result<(), StoreError> {
        // Records of one key, model and day touch the same aggregates: sum them first, so
        // the keys are built once per group rather than once per record.
        let mut groups: HashMap<Group<'_>, Totals> = HashMap::new();
        for r in records {
            groups.entry(Group::of(r)).or_default().add(r);
        }
        let mut deltas = HashMap::new();
        let mut scratch = Vec::with_capacity(64);
        for (group, totals) in &groups {
            add_aggregates(&mut deltas, group, totals, &mut scratch);
        }
        let mut batch = Batch::default();
        for (key, delta) in deltas {
            let mut total = self.totals_at(&key)?;
            total.merge(&delta);
            batch.insert(key, &total.encode()[..]);
        }
        // Every record of a batch is in `end.segment`, except on replay, where earlier
        // segments' ranges were committed before (or are widened here, harmlessly).
        let (lo, hi) = records.iter().fold((u64::MAX, 0), |(lo, hi), r| {
            (lo.min(r.time_ms), hi.max(r.time_ms))
        });
        let range = state
            .segments
            .entry(end.segment)
            .and_modify(|(a, b)| {
                *a = (*a).min(lo);
                *b = (*b).max(hi);
            })
            .or_insert((lo, hi));
        batch.insert(&segment_key(end.segment)[..], &encode_range(*range)[..]);
        batch.insert(CHECKPOINT_KEY, &end.encode()[..]);
        self.ledger.apply_batch(batch)?;
        self.db.flush()?;
        Ok(())
    }

    /// Recompute every aggregate from the records and compare with what is stored. Errors with
    /// `StoreError::Verify` on any difference (wrong, missing or extra aggregate), or with
    /// `Corrupt` if a key or value does not decode.
    pub fn verify(&self) -> Result<(), StoreError> {
        let mut expected = HashMap::new();
        let mut scratch = Vec::new();
        self.log_state()
            .log
            .read_from(Position::default(), |r, _| {
                let mut one = Totals::default();
                one.add(&r);
                add_aggregates(&mut expected, &Group::of(&r), &one, &mut scratch);
                Ok(())
            })?;
        let mut mismatches = 0usize;
        let mut first = None;
        let mut note = |what: String| {
            mismatches += 1;
            first.get_or_insert(what);
        };
        for item in self.ledger.scan_prefix([AGGREGATE]) {
            let (k, v) = item?;
            let stored = Totals::decode(&v).map_err(|e| e.at_key(&k))?;
            match expected.remove(k.as_ref()) {
                Some(want) if want == stored => {}
                Some(want) => note(format!(
                    "{}: stored {stored:?}, records sum to {want:?}",
                    printable_key(&k)
                )),
                None => note(format!("{}: stored but no record", printable_key(&k))),
            }
        }
        for k in expected.keys() {
            note(format!("{}: missing", printable_key(k)));
        }
        match first {
            None => Ok(()),
            Some(first) => Err(StoreError::Verify { mismatches, first }),
        }
    }

    fn totals_at(&self, key: &[u8]) -> Result<Totals, StoreError> {
        match self.ledger.get(key)? {
            None => Ok(Totals::default()),
            Some(v) => Totals::decode(&v).map_err(|e| e.at_key(key)),
        }
    }
}

impl Store for SledStore {
    fn entities(&self, kind: EntityKind) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let prefix = entity_key(kind, "");
        let mut out = Vec::new();
        for item in self.entities.scan_prefix(&prefix) {
            let (k, v) = item?;
            let name =
                std::str::from_utf8(&k[prefix.len()..]).map_err(|_| StoreError::Corrupt {
                    key: printable_key(&k),
                    reason: "entity name is not UTF-8",
                })?;
            out.push((name.to_owned(), v.to_vec()));
        }
        Ok(out)
    }

    fn put_entity(&self, kind: EntityKind, name: &str, value: &[u8]) -> Result<(), StoreError> {
        check_name("entity", name)?;
        self.entities.insert(entity_key(kind, name), value)?;
        self.db.flush()?;
        Ok(())
    }

    fn delete_entity(&self, kind: EntityKind, name: &str) -> Result<bool, StoreError> {
        check_name("entity", name)?;
        let existed = self.entities.remove(entity_key(kind, name))?.is_some();
        if existed {
            self.db.flush()?;
        }
        Ok(existed)
    }

    fn append_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError> {
        if records.is_empty() {
            return Ok(());
        }
        for r in records {
            r.check_names()?;
        }
        let mut state = self.log_state();
        let end = state.log.append(records)?.end;
        self.commit(&mut state, records, end)
    }

    fn totals(
        &self,
        scope: Scope,
        name: &str,
        model: Option<&str>,
        from_day: u32,
        to_day: u32,
    ) -> Result<Totals, StoreError> {
        check_query_names(name, model)?;
        let mut sum = Totals::default();
        if from_day > to_day {
            return Ok(sum);
        }
        let mut lo = Vec::new();
        agg_key(&mut lo, scope, name, model, Period::Day(from_day));
        let mut hi = Vec::new();
        agg_key(&mut hi, scope, name, model, Period::Day(to_day));
        for item in self.ledger.range(lo..=hi) {
            let (k, v) = item?;
            sum.merge(&Totals::decode(&v).map_err(|e| e.at_key(&k))?);
        }
        Ok(sum)
    }

    fn lifetime(
        &self,
        scope: Scope,
        name: &str,
        model: Option<&str>,
    ) -> Result<Totals, StoreError> {
        check_query_names(name, model)?;
        let mut key = Vec::new();
        agg_key(&mut key, scope, name, model, Period::Lifetime);
        self.totals_at(&key)
    }

    fn report(
        &self,
        scope: Scope,
        name: Option<&str>,
        by_model: bool,
        per_day: bool,
        from_day: u32,
        to_day: u32,
    ) -> Result<Vec<ReportRow>, StoreError> {
        if from_day > to_day {
            return Ok(Vec::new());
        }
        let mut prefix = vec![AGGREGATE, scope_byte(scope)];
        if let Some(name) = name {
            check_name("report", name)?;
            prefix.extend_from_slice(name.as_bytes());
            prefix.push(0);
            if !by_model {
                prefix.push(ALL_MODELS);
                prefix.push(0);
            }
        }
        let mut rows: BTreeMap<(String, Option<String>, Option<u32>), Totals> = BTreeMap::new();
        for item in self.ledger.scan_prefix(&prefix) {
            let (k, v) = item?;
            let parsed = parse_agg_key(&k).ok_or_else(|| StoreError::Corrupt {
                key: printable_key(&k),
                reason: "malformed aggregate key",
            })?;
            let Period::Day(day) = parsed.period else {
                continue;
            };
            if parsed.model.is_some() != by_model || day < from_day || day > to_day {
                continue;
            }
            let t = Totals::decode(&v).map_err(|e| e.at_key(&k))?;
            rows.entry((
                parsed.name.to_owned(),
                parsed.model.map(str::to_owned),
                per_day.then_some(day),
            ))
            .or_default()
            .merge(&t);
        }
        Ok(rows
            .into_iter()
            .map(|((name, model, day), totals)| ReportRow {
                scope,
                name,
                model,
                day,
                totals,
            })
            .collect())
    }

    fn records(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let mut out = Vec::new();
        if from_ms >= to_ms || limit == 0 {
            return Ok(out);
        }
        // The `limit` oldest matches, kept in a max-heap on (time, sequence in the scan).
        let mut oldest: BinaryHeap<Oldest> = BinaryHeap::new();
        let state = self.log_state();
        let mut seq = 0u64;
        for (&segment, &(lo, hi)) in &state.segments {
            let full_before = |heap: &BinaryHeap<Oldest>| {
                heap.len() >= limit && heap.peek().is_some_and(|o| o.time_ms < lo)
            };
            if hi < from_ms || lo >= to_ms || full_before(&oldest) {
                continue;
            }
            state.log.read_segment(segment, |r| {
                if (from_ms..to_ms).contains(&r.time_ms) {
                    seq += 1;
                    oldest.push(Oldest {
                        time_ms: r.time_ms,
                        seq,
                        record: r,
                    });
                    if oldest.len() > limit {
                        oldest.pop();
                    }
                }
                Ok(())
            })?;
        }
        out.extend(oldest.into_sorted_vec().into_iter().map(|o| o.record));
        Ok(out)
    }

    fn append_alert(&self, alert: &AlertRecord) -> Result<(), StoreError> {
        let id = self.db.generate_id()?;
        let mut key = Vec::with_capacity(16);
        key.extend_from_slice(&alert.time_ms.to_be_bytes());
        key.extend_from_slice(&id.to_be_bytes());
        let mut value = Vec::with_capacity(64);
        alert.encode(&mut value);
        self.alerts.insert(key, value)?;
        self.db.flush()?;
        Ok(())
    }

    fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreError> {
        let mut out = Vec::new();
        for item in self.alerts.iter().rev().take(limit) {
            let (k, v) = item?;
            out.push(AlertRecord::decode(&v).map_err(|e| e.at_key(&k))?);
        }
        Ok(out)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db.flush()?;
        Ok(())
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        if let Some(dir) = &self.temporary {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A record in the `records` scan, ordered by time then by scan order.
struct Oldest {
    time_ms: u64,
    seq: u64,
    record: UsageRecord,
}

impl PartialEq for Oldest {
    fn eq(&self, other: &Self) -> bool {
        (self.time_ms, self.seq) == (other.time_ms, other.seq)
    }
}

impl Eq for Oldest {}

impl PartialOrd for Oldest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Oldest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.time_ms, self.seq).cmp(&(other.time_ms, other.seq))
    }
}

// === keys ===

fn segment_key(segment: u32) -> [u8; 5] {
    let b = segment.to_be_bytes();
    [SEGMENT, b[0], b[1], b[2], b[3]]
}

fn decode_segment_key(key: &[u8]) -> Option<u32> {
    match key {
        [SEGMENT, a, b, c, d] => Some(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => None,
    }
}

fn encode_range((lo, hi): (u64, u64)) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&lo.to_be_bytes());
    out[8..].copy_from_slice(&hi.to_be_bytes());
    out
}

fn decode_range(bytes: &[u8]) -> Option<(u64, u64)> {
    let (lo, hi) = bytes.split_at_checked(8)?;
    Some((
        u64::from_be_bytes(lo.try_into().ok()?),
        u64::from_be_bytes(hi.try_into().ok()?),
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Lifetime,
    Day(u32),
}

struct AggKey<'a> {
    name: &'a str,
    model: Option<&'a str>,
    period: Period,
}

fn scope_byte(scope: Scope) -> u8 {
    match scope {
        Scope::Key => b'k',
        Scope::User => b'u',
        Scope::Team => b't',
        Scope::Org => b'o',
        Scope::Model => b'm',
        Scope::All => b'*',
    }
}

fn entity_key(kind: EntityKind, name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(kind.as_str().len() + 1 + name.len());
    k.extend_from_slice(kind.as_str().as_bytes());
    k.push(0);
    k.extend_from_slice(name.as_bytes());
    k
}

fn check_query_names(name: &str, model: Option<&str>) -> Result<(), StoreError> {
    check_name("query", name)?;
    if let Some(model) = model {
        check_name("model", model)?;
    }
    Ok(())
}

fn agg_key(out: &mut Vec<u8>, scope: Scope, name: &str, model: Option<&str>, period: Period) {
    out.push(AGGREGATE);
    out.push(scope_byte(scope));
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    match model {
        None => out.push(ALL_MODELS),
        Some(m) => {
            out.push(ONE_MODEL);
            out.extend_from_slice(m.as_bytes());
        }
    }
    out.push(0);
    match period {
        Period::Lifetime => out.push(LIFETIME),
        Period::Day(d) => {
            out.push(DAY);
            out.extend_from_slice(&d.to_be_bytes());
        }
    }
}

/// Split an aggregate key; `None` if it is not one `agg_key` could have written.
fn parse_agg_key(key: &[u8]) -> Option<AggKey<'_>> {
    let rest = key.strip_prefix(&[AGGREGATE])?;
    let (_scope, rest) = rest.split_first()?;
    let sep = rest.iter().position(|&b| b == 0)?;
    let name = std::str::from_utf8(&rest[..sep]).ok()?;
    let rest = &rest[sep + 1..];
    let sep = rest.iter().position(|&b| b == 0)?;
    let model = match rest[..sep].split_first()? {
        (&ALL_MODELS, []) => None,
        (&ONE_MODEL, m) => Some(std::str::from_utf8(m).ok()?),
        _ => return None,
    };
    let period = match &rest[sep + 1..] {
        [LIFETIME] => Period::Lifetime,
        [DAY, a, b, c, d] => Period::Day(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => return None,
    };
    Some(AggKey {
        name,
        model,
        period,
    })
}

/// What decides which aggregates a record touches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Group<'a> {
    day: u32,
    key: &'a str,
    user: Option<&'a str>,
    team: Option<&'a str>,
    org: Option<&'a str>,
    model: &'a str,
}

impl<'a> Group<'a> {
    fn of(r: &'a UsageRecord) -> Self {
        Group {
            day: day_of(r.time_ms),
            key: &r.key,
            user: r.user.as_deref(),
            team: r.team.as_deref(),
            org: r.org.as_deref(),
            model: &r.model,
        }
    }
}

/// Add `totals` (of records in `group`) to every aggregate the group touches: scopes key,
/// user/team/org (when set), model and all; each for all models and for the group's model;
/// each per day and lifetime.
fn add_aggregates(
    map: &mut HashMap<Vec<u8>, Totals>,
    group: &Group<'_>,
    totals: &Totals,
    scratch: &mut Vec<u8>,
) {
    let names = [
        (Scope::Key, Some(group.key)),
        (Scope::User, group.user),
        (Scope::Team, group.team),
        (Scope::Org, group.org),
        (Scope::Model, Some(group.model)),
        (Scope::All, Some("")),
    ];
    for (scope, name) in names {
        let Some(name) = name else { continue };
        for model in [None, Some(group.model)] {
            for period in [Period::Lifetime, Period::Day(group.day)] {
                scratch.clear();
                agg_key(scratch, scope, name, model, period);
                match map.get_mut(scratch.as_slice()) {
                    Some(t) => t.merge(totals),
                    None => {
                        map.insert(scratch.clone(), *totals);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use crate::store::MS_PER_DAY;

    const DAY0: u64 = 20_000; // 2024-10-04

    pub(crate) fn rec(day: u64, key: &str, model: &str, input: u64, cost: u64) -> UsageRecord {
        UsageRecord {
            time_ms: day * MS_PER_DAY + 1000,
            request_id: format!("req-{key}-{day}-{input}"),
            key: key.into(),
            user: (key != "anon").then(|| format!("user-{key}")),
            team: Some("ml".into()),
            org: Some("acme".into()),
            model: model.into(),
            deployment: format!("local/{model}"),
            input_tokens: input,
            output_tokens: input / 2,
            cached_tokens: 0,
            cost,
            latency_us: 1000,
            status: 200,
            estimated: input % 2 == 1,
            price_unknown: false,
            guardrails: Vec::new(),
        }
    }

    fn t(requests: u64, input: u64, cost: u64) -> (u64, u64, u64) {
        (requests, input, cost)
    }

    fn short(x: Totals) -> (u64, u64, u64) {
        (x.requests, x.input_tokens, x.cost)
    }

    fn fill(s: &SledStore) {
        s.append_usage(&[
            rec(DAY0, "k1", "gpt", 100, 10),
            rec(DAY0, "k1", "claude", 200, 20),
            rec(DAY0 + 1, "k2", "gpt", 300, 30),
        ])
        .unwrap();
        s.append_usage(&[rec(DAY0 + 2, "anon", "gpt", 401, 40)])
            .unwrap();
    }

    #[test]
    fn a_second_open_says_the_store_is_in_use() {
        let dir = std::env::temp_dir().join(format!("tollgate-lock-{}", std::process::id()));
        let first = SledStore::open(&dir).unwrap();
        match SledStore::open(&dir) {
            Err(StoreError::Locked { path }) => assert!(path.contains("tollgate-lock-")),
            other => panic!("expected Locked, got {other:?}"),
        }
        drop(first);
        // Released on drop: the store opens again.
        drop(SledStore::open(&dir).unwrap());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn aggregates_for_every_scope() {
        let s = SledStore::temporary().unwrap();
        fill(&s);
        let d = DAY0 as u32;
        let all = |scope, name: &str| short(s.lifetime(scope, name, None).unwrap());
        assert_eq!(all(Scope::All, ""), t(4, 1001, 100));
        assert_eq!(all(Scope::Key, "k1"), t(2, 300, 30));
        assert_eq!(all(Scope::Key, "k2"), t(1, 300, 30));
        assert_eq!(all(Scope::User, "user-k1"), t(2, 300, 30));
        assert_eq!(all(Scope::User, "user-anon"), t(0, 0, 0));
        assert_eq!(all(Scope::Team, "ml"), t(4, 1001, 100));
        assert_eq!(all(Scope::Org, "acme"), t(4, 1001, 100));
        assert_eq!(all(Scope::Model, "gpt"), t(3, 801, 80));
        assert_eq!(all(Scope::Model, "claude"), t(1, 200, 20));
        assert_eq!(all(Scope::Key, "nobody"), t(0, 0, 0));
        let full = s.lifetime(Scope::All, "", None).unwrap();
        assert_eq!(full.output_tokens, 50 + 100 + 150 + 200);
        assert_eq!(full.estimated_requests, 1);

        // Per model inside another scope.
        let km = short(s.lifetime(Scope::Key, "k1", Some("gpt")).unwrap());
        assert_eq!(km, t(1, 100, 10));
        let tm = short(s.lifetime(Scope::Team, "ml", Some("gpt")).unwrap());
        assert_eq!(tm, t(3, 801, 80));
        // "gp" is a prefix of "gpt" but a different model.
        assert_eq!(
            short(s.lifetime(Scope::All, "", Some("gp")).unwrap()),
            t(0, 0, 0)
        );

        // Day ranges.
        let range = |from, to| short(s.totals(Scope::All, "", None, from, to).unwrap());
        assert_eq!(range(d, d), t(2, 300, 30));
        assert_eq!(range(d, d + 1), t(3, 600, 60));
        assert_eq!(range(d + 1, d + 2), t(2, 701, 70));
        assert_eq!(range(0, u32::MAX), t(4, 1001, 100));
        assert_eq!(range(d + 3, u32::MAX), t(0, 0, 0));
        assert_eq!(range(d + 1, d), t(0, 0, 0));
        let gpt = s.totals(Scope::Org, "acme", Some("gpt"), d, d + 1).unwrap();
        assert_eq!(short(gpt), t(2, 400, 40));
        s.verify().unwrap();
    }

    #[test]
    fn reports() {
        let s = SledStore::temporary().unwrap();
        fill(&s);
        let d = DAY0 as u32;
        let rows = s.report(Scope::Key, None, false, false, d, d + 2).unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.model.as_deref(), r.day, short(r.totals)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("anon", None, None, t(1, 401, 40)),
                ("k1", None, None, t(2, 300, 30)),
                ("k2", None, None, t(1, 300, 30)),
            ]
        );
        assert!(rows.iter().all(|r| r.scope == Scope::Key));

        let rows = s
            .report(Scope::Key, None, false, false, d + 1, d + 1)
            .unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].name, "k2");

        let rows = s
            .report(Scope::Team, Some("ml"), true, true, d, d + 2)
            .unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.model.as_deref(), r.day, short(r.totals)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("ml", Some("claude"), Some(d), t(1, 200, 20)),
                ("ml", Some("gpt"), Some(d), t(1, 100, 10)),
                ("ml", Some("gpt"), Some(d + 1), t(1, 300, 30)),
                ("ml", Some("gpt"), Some(d + 2), t(1, 401, 40)),
            ]
        );

        let rows = s
            .report(Scope::All, Some(""), false, true, d, d + 5)
            .unwrap();
        let days: Vec<_> = rows.iter().map(|r| (r.day, r.totals.requests)).collect();
        assert_eq!(days, vec![(Some(d), 2), (Some(d + 1), 1), (Some(d + 2), 1)]);

        let rows = s.report(Scope::Model, None, true, false, d, d + 5).unwrap();
        let got: Vec<_> = rows
            .iter()
            .map(|r| (r.name.as_str(), r.model.as_deref(), r.totals.requests))
            .collect();
        assert_eq!(
            got,
            vec![("claude", Some("claude"), 1), ("gpt", Some("gpt"), 3)]
        );
        assert!(s
            .report(Scope::User, Some("nobody"), false, false, 0, u32::MAX)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn records_in_time_order_with_limit() {
        let s = SledStore::temporary().unwrap();
        fill(&s);
        let all = s.records(0, u64::MAX, usize::MAX).unwrap();
        assert_eq!(all.len(), 4);
        assert!(all.windows(2).all(|w| w[0].time_ms <= w[1].time_ms));
        assert_eq!(all[3], rec(DAY0 + 2, "anon", "gpt", 401, 40));
        assert_eq!(s.records(0, u64::MAX, 2).unwrap().len(), 2);
        let t0 = DAY0 * MS_PER_DAY + 1000;
        // Half-open: [t0, t0+1) holds exactly the two records of day 0.
        assert_eq!(s.records(t0, t0 + 1, 10).unwrap().len(), 2);
        assert_eq!(s.records(t0 + 1, t0 + MS_PER_DAY, 10).unwrap().len(), 0);
        assert_eq!(s.records(t0, t0, 10).unwrap().len(), 0);
    }

    #[test]
    fn records_across_segments_oldest_first() {
        let s = SledStore::temporary().unwrap();
        s.log_state().log.segment_bytes = 1; // every batch starts a segment
                                             // Out of order across segments, as batches from several cores can be.
        for day in [3, 1, 4, 2, 0] {
            s.append_usage(&[rec(DAY0 + day, "k1", "gpt", day, 1)])
                .unwrap();
        }
        assert_eq!(s.log_state().log.segments().unwrap().len(), 5);
        let days = |from: u64, to: u64, limit| {
            s.records(from, to, limit)
                .unwrap()
                .iter()
                .map(|r| r.input_tokens)
                .collect::<Vec<_>>()
        };
        assert_eq!(days(0, u64::MAX, 10), [0, 1, 2, 3, 4]);
        assert_eq!(days(0, u64::MAX, 2), [0, 1]);
        let t = |day: u64| (DAY0 + day) * MS_PER_DAY;
        assert_eq!(days(t(2), t(4), 10), [2, 3]);
        s.verify().unwrap();
    }

    #[test]
    fn open_replays_records_the_aggregates_missed() {
        let dir = tempfile::tempdir().unwrap();
        {
            let s = SledStore::open(dir.path()).unwrap();
            fill(&s);
        }
        // A crash after the log append and before the aggregate commit leaves exactly this.
        let mut log = RecordLog::open(dir.path()).unwrap();
        log.append(&[rec(DAY0, "k9", "gpt", 7, 70)]).unwrap();
        drop(log);
        let s = SledStore::open(dir.path()).unwrap();
        s.verify().unwrap();
        assert_eq!(
            short(s.lifetime(Scope::Key, "k9", None).unwrap()),
            t(1, 7, 70)
        );
        assert_eq!(
            short(s.lifetime(Scope::All, "", None).unwrap()),
            t(5, 1008, 170)
        );
        drop(s);
        // Replayed once, not again on the next open.
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            short(s.lifetime(Scope::All, "", None).unwrap()),
            t(5, 1008, 170)
        );
    }

    #[test]
    fn reopen_from_disk_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let before;
        {
            let s = SledStore::open(dir.path()).unwrap();
            fill(&s);
            s.put_entity(EntityKind::Key, "k1", br#"{"budget":1}"#)
                .unwrap();
            s.put_entity(EntityKind::Team, "ml", b"{}").unwrap();
            s.append_alert(&AlertRecord {
                time_ms: 1,
                scope: "team".into(),
                name: "ml".into(),
                model: None,
                budget: "daily".into(),
                committed: 9,
                limit: 10,
            })
            .unwrap();
            before = s.lifetime(Scope::All, "", None).unwrap();
        }
        let s = SledStore::open(dir.path()).unwrap();
        assert_eq!(s.lifetime(Scope::All, "", None).unwrap(), before);
        assert_eq!(s.records(0, u64::MAX, 100).unwrap().len(), 4);
        assert_eq!(
            s.entities(EntityKind::Key).unwrap(),
            vec![("k1".to_owned(), br#"{"budget":1}"#.to_vec())]
        );
        assert_eq!(s.entities(EntityKind::Team).unwrap().len(), 1);
        assert_eq!(s.alerts(10).unwrap().len(), 1);
        s.verify().unwrap();
        // Appending after reopen keeps ids unique and aggregates consistent.
        fill(&s);
        assert_eq!(s.records(0, u64::MAX, 100).unwrap().len(), 8);
        assert_eq!(s.lifetime(Scope::All, "", None).unwrap().requests, 8);
        s.verify().unwrap();
    }

    #[test]
    fn entities_and_alerts() {
        let s = SledStore::temporary().unwrap();
        s.put_entity(EntityKind::User, "alice", b"1").unwrap();
        s.put_entity(EntityKind::User, "bob", b"2").unwrap();
        s.put_entity(EntityKind::User, "alice", b"3").unwrap();
        s.put_entity(EntityKind::Org, "alice", b"org").unwrap();
        let users = s.entities(EntityKind::User).unwrap();
        assert_eq!(
            users,
            vec![
                ("alice".into(), b"3".to_vec()),
                ("bob".into(), b"2".to_vec())
            ]
        );
        assert!(s.delete_entity(EntityKind::User, "alice").unwrap());
        assert!(!s.delete_entity(EntityKind::User, "alice").unwrap());
        assert_eq!(s.entities(EntityKind::User).unwrap().len(), 1);
        assert_eq!(s.entities(EntityKind::Org).unwrap().len(), 1);
        assert!(s.entities(EntityKind::Key).unwrap().is_empty());
        assert!(matches!(
            s.put_entity(EntityKind::Key, "a\0b", b""),
            Err(StoreError::InvalidName { .. })
        ));

        for (i, time_ms) in [30u64, 10, 20].into_iter().enumerate() {
            s.append_alert(&AlertRecord {
                time_ms,
                scope: "key".into(),
                name: format!("k{i}"),
                model: None,
                budget: "monthly".into(),
                committed: 1,
                limit: 2,
            })
            .unwrap();
        }
        let times: Vec<_> = s.alerts(10).unwrap().iter().map(|a| a.time_ms).collect();
        assert_eq!(times, vec![30, 20, 10]);
        assert_eq!(s.alerts(1).unwrap().len(), 1);
    }

    #[test]
    fn nul_in_a_name_rejects_the_whole_batch() {
        let s = SledStore::temporary().unwrap();
        let mut bad = rec(DAY0, "k\0x", "gpt", 1, 1);
        let err = s.append_usage(&[rec(DAY0, "ok", "gpt", 1, 1), bad.clone()]);
        assert!(matches!(
            err,
            Err(StoreError::InvalidName { what: "key", .. })
        ));
        bad.key = "k".into();
        bad.model = "m\0".into();
        assert!(s.append_usage(&[bad]).is_err());
        assert!(s.records(0, u64::MAX, 10).unwrap().is_empty());
        assert_eq!(s.lifetime(Scope::All, "", None).unwrap(), Totals::default());
        assert!(s.totals(Scope::Key, "a\0", None, 0, 1).is_err());
    }

    #[test]
    fn verify_detects_a_tampered_aggregate() {
        let s = SledStore::temporary().unwrap();
        fill(&s);
        s.verify().unwrap();
        let mut key = Vec::new();
        agg_key(&mut key, Scope::Key, "k1", None, Period::Lifetime);
        let mut tampered = s.totals_at(&key).unwrap();
        tampered.cost += 1;
        s.ledger.insert(&key, &tampered.encode()[..]).unwrap();
        match s.verify() {
            Err(StoreError::Verify {
                mismatches: 1,
                first,
            }) => {
                assert!(first.starts_with("ak"), "{first}")
            }
            other => panic!("expected one mismatch, got {other:?}"),
        }
        s.ledger.insert(&key, &b"junk"[..]).unwrap();
        assert!(matches!(s.verify(), Err(StoreError::Corrupt { .. })));
    }

    #[test]
    fn agg_keys_parse_back() {
        let mut k = Vec::new();
        agg_key(&mut k, Scope::Team, "ml", Some("gpt-4o"), Period::Day(77));
        let p = parse_agg_key(&k).unwrap();
        assert_eq!(
            (p.name, p.model, p.period),
            ("ml", Some("gpt-4o"), Period::Day(77))
        );
        k.clear();
        agg_key(&mut k, Scope::All, "", None, Period::Lifetime);
        let p = parse_agg_key(&k).unwrap();
        assert_eq!((p.name, p.model, p.period), ("", None, Period::Lifetime));
        assert!(parse_agg_key(b"ax").is_none());
        assert!(parse_agg_key(b"akname\0\x03\0L").is_none());
    }

    /// Env var that turns the crash test's child into a writer on the store at this path.
    const CRASH_WRITER_ENV: &str = "TOLLGATE_STORE_CRASH_WRITER";

    /// Append batches forever, printing `acked N` after each durable batch.
    fn crash_writer(path: &Path) -> ! {
        let s = SledStore::open(path).unwrap();
        let models = ["gpt", "claude", "gemini"];
        let mut n: u64 = 0;
        loop {
            let batch: Vec<_> = (0..200)
                .map(|i| {
                    n += 1;
                    let key = format!("k{}", n % 37);
                    rec(DAY0 + n % 5, &key, models[(n % 3) as usize], n, n * 7 + i)
                })
                .collect();
            s.append_usage(&batch).unwrap();
            // Acknowledged = durable: the parent checks that at least this many survive.
            println!("acked {n}");
        }
    }

    #[test]
    fn crash_kill9_keeps_aggregates_consistent() {
        use std::io::{BufRead, BufReader};
        use std::process::{Command, Stdio};

        if let Some(path) = std::env::var_os(CRASH_WRITER_ENV) {
            crash_writer(Path::new(&path));
        }
        let dir = tempfile::tempdir().unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut last = 0;
        for round in 0..3 {
            let mut child = Command::new(&exe)
                .args([
                    "--exact",
                    "store::sled_store::tests::crash_kill9_keeps_aggregates_consistent",
                    "--nocapture",
                ])
                .env(CRASH_WRITER_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap();
            // Read acks on a thread so the child never blocks on a full pipe.
            let stdout = child.stdout.take().unwrap();
            let (ack_tx, ack_rx) = crossbeam_channel::unbounded::<u64>();
            let reader = std::thread::spawn(move || {
                let mut last = 0;
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if let Some(n) = line.trim().strip_prefix("acked ") {
                        last = n.parse().unwrap();
                        let _ = ack_tx.send(last);
                    }
                }
                last
            });
            let first = ack_rx.recv_timeout(std::time::Duration::from_secs(30));
            assert!(
                first.is_ok(),
                "round {round}: writer never acknowledged a batch"
            );
            std::thread::sleep(std::time::Duration::from_millis(1000));
            child.kill().unwrap(); // SIGKILL on Unix
            let status = child.wait().unwrap();
            assert!(!status.success(), "round {round}: writer exited by itself");
            let acked = reader.join().unwrap() as usize;

            let s = SledStore::open(dir.path()).unwrap();
            s.verify().unwrap();
            let n = s.records(0, u64::MAX, usize::MAX).unwrap().len();
            assert!(n > last, "round {round}: {n} records, had {last}");
            // Each child counts from 0, so its acks are on top of what earlier rounds left.
            assert!(
                n >= last + acked,
                "round {round}: {n} records, but {last} + {acked} were acknowledged"
            );
            // The child writes one batch at a time: at most one was unacknowledged.
            assert!(
                n <= last + acked + 200,
                "round {round}: {n} records from nowhere"
            );
            // A batch cut short by the kill may survive in part: its whole frames are records
            // on disk, and recovery counts them into the aggregates (verify above).
            assert_eq!(s.lifetime(Scope::All, "", None).unwrap().requests, n as u64);
            eprintln!("crash round {round}: {n} records recovered ({acked} acked), verify ok");
            last = n;
        }
    }

    /// Timing, not a test: `cargo test --release -p tollgate-engine --lib -- --ignored
    /// bench_append_usage --nocapture`.
    #[test]
    #[ignore]
    fn bench_append_usage_1000() {
        let dir = tempfile::tempdir().unwrap();
        let s = SledStore::open(dir.path()).unwrap();
        let models = ["gpt", "claude", "gemini", "llama"];
        let mut times = Vec::new();
        for round in 0..50u64 {
            let batch: Vec<_> = (0..1000u64)
                .map(|i| {
                    let mut r = rec(
                        DAY0,
                        &format!("k{}", i % 100),
                        models[(i % 4) as usize],
                        i,
                        i,
                    );
                    r.user = Some(format!("u{}", i % 10));
                    r.team = Some(format!("t{}", i % 3));
                    r.request_id = format!("req-{round}-{i}");
                    r
                })
                .collect();
            let start = std::time::Instant::now();
            s.append_usage(&batch).unwrap();
            times.push(start.elapsed());
        }
        times.sort();
        eprintln!(
            "append_usage(1000): min {:?} median {:?} max {:?}",
            times[0],
            times[times.len() / 2],
            times[times.len() - 1]
        );
        let start = std::time::Instant::now();
        s.verify().unwrap();
        eprintln!("verify over 50k records: {:?}", start.elapsed());
    }
}
