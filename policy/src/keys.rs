//! Virtual-key authentication. Owns the hashed key table and the lookup a request makes to
//! turn a presented bearer token into a key record. Never stores or logs a key in clear.
//!
//! Keys are kept as SHA-256 digests. A lookup hashes the presented token, finds the candidate
//! by digest and confirms it with a constant-time comparison, so neither the table layout nor
//! the comparison leaks how much of a guessed key was right.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A SHA-256 digest of a key, the only form in which keys are kept.
pub type KeyDigest = [u8; 32];

/// Hash a presented or configured key.
pub fn digest_key(key: &[u8]) -> KeyDigest {
    Sha256::digest(key).into()
}

/// What the gateway knows about a virtual key once it has been authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Operator-given name of the key (safe to log).
    pub name: String,
    /// Display form: the first characters and the last four, e.g. `sk-tol...demo`.
    pub display: String,
}

/// Why a key could not be added to a [`KeyStore`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyStoreError {
    /// Two entries hash to the same digest: the same secret was configured twice.
    #[error("key `{0}` has the same secret as another key")]
    DuplicateSecret(String),
}

/// The table of known keys, by digest. Built once per config and shared read-only.
#[derive(Debug, Default, Clone)]
pub struct KeyStore {
    by_digest: HashMap<KeyDigest, KeyRecord>,
}

// === impl KeyStore ===

impl KeyStore {
    /// Build a store from `(name, secret)` pairs.
    pub fn try_new<'a>(
        keys: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, KeyStoreError> {
        let mut by_digest = HashMap::new();
        for (name, secret) in keys {
            let record = KeyRecord {
                name: name.to_owned(),
                display: display_form(secret),
            };
            if by_digest
                .insert(digest_key(secret.as_bytes()), record)
                .is_some()
            {
                return Err(KeyStoreError::DuplicateSecret(name.to_owned()));
            }
        }
        Ok(Self { by_digest })
    }

    /// Number of keys in the store.
    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    /// True when no key is configured.
    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }

    /// Authenticate a presented token. `None` when no key matches.
    pub fn authenticate(&self, presented: &[u8]) -> Option<&KeyRecord> {
        let digest = digest_key(presented);
        let (stored, record) = self.by_digest.get_key_value(&digest)?;
        // The map lookup already matched; the constant-time check keeps the final
        // decision independent of where two digests first differ.
        bool::from(stored.ct_eq(&digest)).then_some(record)
    }
}

/// The credential carried by a request: `Authorization: Bearer <token>` or `x-api-key: <token>`.
/// Returns `None` when neither header carries a non-empty token.
pub fn presented_token<'a>(
    authorization: Option<&'a [u8]>,
    x_api_key: Option<&'a [u8]>,
) -> Option<&'a [u8]> {
    if let Some(value) = authorization {
        let value = trim_ows(value);
        if value.len() > 7 && value[..7].eq_ignore_ascii_case(b"bearer ") {
            let token = trim_ows(&value[7..]);
            if !token.is_empty() {
                return Some(token);
            }
        }
        return None;
    }
    x_api_key.map(trim_ows).filter(|t| !t.is_empty())
}

fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// A form of the key that is safe to show: a short prefix and the last four characters.
pub fn display_form(secret: &str) -> String {
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() <= 12 {
        return "***".to_owned();
    }
    let prefix: String = chars[..6].iter().collect();
    let suffix: String = chars[chars.len() - 4..].iter().collect();
    format!("{prefix}...{suffix}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn store() -> KeyStore {
        KeyStore::try_new([
            ("demo", "sk-tollgate-demo"),
            ("ops", "sk-tollgate-ops-1234"),
        ])
        .unwrap()
    }

    #[test]
    fn authenticates_known_keys_only() {
        let s = store();
        assert_eq!(s.authenticate(b"sk-tollgate-demo").unwrap().name, "demo");
        assert_eq!(s.authenticate(b"sk-tollgate-ops-1234").unwrap().name, "ops");
        assert!(s.authenticate(b"sk-tollgate-dem").is_none());
        assert!(s.authenticate(b"").is_none());
    }

    #[test]
    fn duplicate_secret_is_rejected() {
        let err =
            KeyStore::try_new([("a", "sk-same-secret"), ("b", "sk-same-secret")]).unwrap_err();
        assert_eq!(err, KeyStoreError::DuplicateSecret("b".into()));
    }

    #[test]
    fn token_from_headers() {
        assert_eq!(
            presented_token(Some(b"Bearer abc"), None),
            Some(&b"abc"[..])
        );
        assert_eq!(
            presented_token(Some(b"bearer  abc "), None),
            Some(&b"abc"[..])
        );
        assert_eq!(presented_token(Some(b"Basic abc"), None), None);
        assert_eq!(presented_token(Some(b"Bearer "), None), None);
        assert_eq!(presented_token(None, Some(b" k1 ")), Some(&b"k1"[..]));
        assert_eq!(presented_token(None, None), None);
    }

    #[test]
    fn display_form_hides_the_middle() {
        assert_eq!(display_form("sk-tollgate-demo"), "sk-tol...demo");
        assert_eq!(display_form("short"), "***");
        assert!(!format!("{:?}", store()).contains("sk-tollgate-demo"));
    }
}
