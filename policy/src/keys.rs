//! Key handling shared by the directory and the admin API: the SHA-256 digest keys are kept
//! as, the credential a request presents, and the display form that is safe to show. Never
//! stores or logs a key in clear; the table of keys is `governance::Directory`.

use sha2::{Digest, Sha256};

/// A SHA-256 digest of a key, the only form in which keys are kept.
pub type KeyDigest = [u8; 32];

/// Hash a presented or configured key.
pub fn digest_key(key: &[u8]) -> KeyDigest {
    Sha256::digest(key).into()
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
    }
}
