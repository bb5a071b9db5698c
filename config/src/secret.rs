//! `Secret<T>`: a value (an API key, a client key) that must never reach a log, an error or a
//! `Debug` dump. Reading it takes an explicit `expose()`, so every use is easy to find.

use std::fmt;

/// A secret value: `Debug` and `Display` print `Secret(***)`; [`Secret::expose`] gives the value.
///
/// Deliberately not `PartialEq`: comparing secrets belongs to code that does it in constant time.
#[derive(Clone, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value` so that formatting it no longer shows it.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret value itself. Call only where it is sent or hashed, never to format it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn formatting_is_redacted() {
        let s = Secret::new("sk-very-secret".to_owned());
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "Secret(***)");
        assert_eq!(format!("{s:#?}"), "Secret(***)");
        assert_eq!(s.expose(), "sk-very-secret");
    }
}
