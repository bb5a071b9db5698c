//! Configuration errors. Each names the key path it is about (`providers[1].base_url`); a failed
//! load returns every error found, not just the first. Messages never contain a secret value.

use std::fmt;

/// One problem in a configuration, tied to where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Where the problem is: a key path such as `providers[1].base_url` or `server`; for a TOML
    /// syntax error `line L, column C`; for an unreadable file, the file's path.
    pub path: String,
    /// What is wrong and, where it helps, what was expected. Never contains a secret.
    pub message: String,
}

impl ConfigError {
    /// Builds an error for `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Every problem found in one configuration, in the order they were found (never empty when
/// returned by this crate). `Display` prints one `path: message` per line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The errors, in the order found.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// Iterates over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.errors.iter()
    }

    /// How many errors there are.
    pub fn len(&self) -> usize {
        self.errors.len()
    }

    /// True when there are none (never the case for an `Err` from this crate).
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        Self {
            errors: vec![error],
        }
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.errors.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn display_is_one_line_per_error() {
        let errors = ConfigErrors {
            errors: vec![
                ConfigError::new("server.listen", "bad"),
                ConfigError::new("keys[0].key", "too short"),
            ],
        };
        assert_eq!(
            errors.to_string(),
            "server.listen: bad\nkeys[0].key: too short"
        );
        assert_eq!(errors.len(), 2);
    }
}
