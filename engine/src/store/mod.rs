//! The embedded store behind a small trait: entities (orgs, teams, users, keys as opaque JSON),
//! the usage ledger (one record per request) with its aggregates, and budget alerts.
//! Only the storage thread (`crate::storage`) touches a `Store`; it must never be called from a
//! worker's request path. `SledStore` is the one backend today; the trait keeps it swappable.

pub mod log;
pub mod record;
pub mod sled_store;

use std::fmt;
use std::str::FromStr;

pub use record::{AlertRecord, Totals, UsageRecord};
pub use sled_store::SledStore;

/// Milliseconds in one day: a record's day is `time_ms / MS_PER_DAY`.
pub const MS_PER_DAY: u64 = 86_400_000;

/// The day (since the unix epoch) a unix-millisecond time falls on. Saturates at `u32::MAX`,
/// some eleven million years away.
pub fn day_of(time_ms: u64) -> u32 {
    u32::try_from(time_ms / MS_PER_DAY).unwrap_or(u32::MAX)
}

/// What kind of entity a stored JSON document describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntityKind {
    /// An organisation.
    Org,
    /// A team inside an org.
    Team,
    /// A user.
    User,
    /// A virtual key.
    Key,
}

// === impl EntityKind ===

impl EntityKind {
    /// Every kind, in hierarchy order.
    pub const ALL: [EntityKind; 4] = [
        EntityKind::Org,
        EntityKind::Team,
        EntityKind::User,
        EntityKind::Key,
    ];

    /// The lowercase name: `"org"`, `"team"`, `"user"`, `"key"`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Org => "org",
            EntityKind::Team => "team",
            EntityKind::User => "user",
            EntityKind::Key => "key",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a usage aggregate is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// The virtual key's name (`UsageRecord::key`).
    Key,
    /// The key's user.
    User,
    /// The key's team.
    Team,
    /// The key's org.
    Org,
    /// The model the client asked for.
    Model,
    /// Everything; the only name is `""`.
    All,
}

// === impl Scope ===

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 6] = [
        Scope::Key,
        Scope::User,
        Scope::Team,
        Scope::Org,
        Scope::Model,
        Scope::All,
    ];

    /// The lowercase name: `"key"`, `"user"`, `"team"`, `"org"`, `"model"`, `"all"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Key => "key",
            Scope::User => "user",
            Scope::Team => "team",
            Scope::Org => "org",
            Scope::Model => "model",
            Scope::All => "all",
        }
    }
}

impl FromStr for Scope {
    type Err = StoreError;

    /// Parse the name `as_str` gives.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .into_iter()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| StoreError::UnknownScope(s.to_owned()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The sled database reported an error (I/O, corruption it detected, ...).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// Another process (a running gateway, most likely) holds the store open.
    #[error("the store at {path} is in use by another process (is the gateway running?)")]
    Locked {
        /// The store directory.
        path: String,
    },
    /// An I/O error outside sled.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// A stored key or value could not be decoded.
    #[error("corrupt entry at key {key}: {reason}")]
    Corrupt {
        /// The key, printable ASCII kept and other bytes as `\xNN`.
        key: String,
        /// What was wrong.
        reason: &'static str,
    },
    /// Bytes handed to a decoder were not a valid encoding (no key known yet).
    #[error("cannot decode: {reason}")]
    Decode {
        /// What was wrong.
        reason: &'static str,
    },
    /// A name that is stored in a key contains a 0 byte (our key separator).
    #[error("{what} name {name:?} contains a 0 byte")]
    InvalidName {
        /// Which field: "key", "user", "team", "org", "model", "entity".
        what: &'static str,
        /// The offending name.
        name: String,
    },
    /// `Scope::from_str` got an unknown name.
    #[error("unknown scope {0:?} (expected key, user, team, org, model or all)")]
    UnknownScope(String),
    /// The store on disk was written in a format this build does not read.
    #[error("store format version {found} is not supported (this build reads {supported})")]
    Format {
        /// The version found on disk.
        found: u8,
        /// The version this build reads and writes.
        supported: u8,
    },
    /// `verify` found aggregates that differ from the sum of the records.
    #[error("{mismatches} aggregate(s) disagree with the records; first: {first}")]
    Verify {
        /// How many aggregate keys are wrong or missing.
        mismatches: usize,
        /// A description of the first one.
        first: String,
    },
}

// === impl StoreError ===

impl StoreError {
    /// Attach the storage key to a decode error, turning it into `Corrupt`.
    pub fn at_key(self, key: &[u8]) -> StoreError {
        match self {
            StoreError::Decode { reason } => StoreError::Corrupt {
                key: printable_key(key),
                reason,
            },
            other => other,
        }
    }
}

/// A storage key for humans: printable ASCII kept, every other byte as `\xNN`.
pub fn printable_key(key: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(key.len());
    for &b in key {
        if b.is_ascii_graphic() || b == b' ' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// Names end at a 0 byte inside store keys, so a name must not contain one.
pub fn check_name(what: &'static str, name: &str) -> Result<(), StoreError> {
    if name.as_bytes().contains(&0) {
        return Err(StoreError::InvalidName {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// One row of a usage report.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReportRow {
    /// The scope the report was asked for.
    pub scope: Scope,
    /// The name inside that scope (`""` for `Scope::All`).
    pub name: String,
    /// The model, when the report is split by model; `None` means all models.
    pub model: Option<String>,
    /// The day (since the unix epoch), when the report is split per day; `None` means the
    /// whole requested range.
    pub day: Option<u32>,
    /// The summed usage.
    pub totals: Totals,
}

/// The storage backend. Called only from the storage thread, so it needs `Send`, not `Sync`;
/// every method may block on disk I/O.
pub trait Store: Send {
    /// Every entity of `kind`: name and the opaque JSON bytes the caller stored.
    fn entities(&self, kind: EntityKind) -> Result<Vec<(String, Vec<u8>)>, StoreError>;

    /// Create or replace an entity. Durable (flushed) on return.
    fn put_entity(&self, kind: EntityKind, name: &str, value: &[u8]) -> Result<(), StoreError>;

    /// Delete an entity; `true` if it existed. Durable on return.
    fn delete_entity(&self, kind: EntityKind, name: &str) -> Result<bool, StoreError>;

    /// Append records and update every aggregate they touch in ONE atomic batch, then flush:
    /// after a crash either all of a batch is on disk or none of it. A record with a 0 byte in
    /// a name rejects the whole batch (`StoreError::InvalidName`) before anything is written.
    fn append_usage(&self, records: &[UsageRecord]) -> Result<(), StoreError>;

    /// Sum of the aggregates for (scope, name, model or all models) over days
    /// `from_day..=to_day` (days since epoch).
    fn totals(
        &self,
        scope: Scope,
        name: &str,
        model: Option<&str>,
        from_day: u32,
        to_day: u32,
    ) -> Result<Totals, StoreError>;

    /// Lifetime totals for (scope, name, model or all models).
    fn lifetime(&self, scope: Scope, name: &str, model: Option<&str>)
        -> Result<Totals, StoreError>;

    /// Report rows for one scope over days `from_day..=to_day`: `name` None = every name in that
    /// scope; `by_model` splits rows per model; `per_day` splits per day (else one row per
    /// name[/model] over the range). Rows are sorted by name, model, day; names without usage
    /// in the range give no row.
    fn report(
        &self,
        scope: Scope,
        name: Option<&str>,
        by_model: bool,
        per_day: bool,
        from_day: u32,
        to_day: u32,
    ) -> Result<Vec<ReportRow>, StoreError>;

    /// Records with `from_ms <= time_ms < to_ms`, oldest first, at most `limit`.
    fn records(
        &self,
        from_ms: u64,
        to_ms: u64,
        limit: usize,
    ) -> Result<Vec<UsageRecord>, StoreError>;

    /// Append a budget alert. Durable on return.
    fn append_alert(&self, alert: &AlertRecord) -> Result<(), StoreError>;

    /// The newest `limit` alerts, newest first.
    fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>, StoreError>;

    /// Make everything written so far durable.
    fn flush(&self) -> Result<(), StoreError>;
}
