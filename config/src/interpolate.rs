//! `${VAR}` interpolation inside string values: `${VAR}` (error when unset), `${VAR:-default}`
//! (default when unset or empty), `$$` for a literal `$`. A `$` followed by anything else is kept.
//! Single pass: text that comes from a variable is never interpolated again. Error messages name
//! variables and positions, never the string itself (it may be a secret).

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InterpolationError {
    /// `${NAME}` without a default, and NAME is not set. Lists every such name in the string.
    Unset(Vec<String>),
    /// `${` with no closing `}`; the position is the character index of the `$`.
    Unterminated(usize),
    /// `${...}` whose name is empty or not `[A-Za-z_][A-Za-z0-9_]*`; position of the `$`.
    InvalidName(usize),
}

impl InterpolationError {
    /// The message shown after the key path.
    pub(crate) fn message(&self) -> String {
        match self {
            Self::Unset(names) if names.len() == 1 => format!(
                "environment variable {} is not set (write ${{{}:-default}} to give a default)",
                names[0], names[0]
            ),
            Self::Unset(names) => {
                format!("environment variables {} are not set", names.join(", "))
            }
            Self::Unterminated(at) => format!(
                "unterminated \"${{\" at character {at}: close it with \"}}\", or write \"$$\" for a literal \"$\""
            ),
            Self::InvalidName(at) => format!(
                "invalid variable reference at character {at}: expected ${{NAME}} or ${{NAME:-default}} with NAME made of letters, digits and _ (not starting with a digit), or \"$$\" for a literal \"$\""
            ),
        }
    }
}

/// Replaces every `${...}` and `$$` in `text`, looking variables up with `env`.
pub(crate) fn interpolate(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, InterpolationError> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut unset = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let at = text.len() - rest.len() + dollar;
            let at_char = text[..at].chars().count();
            let close = body
                .find('}')
                .ok_or(InterpolationError::Unterminated(at_char))?;
            let reference = &body[..close];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            if !is_variable_name(name) {
                return Err(InterpolationError::InvalidName(at_char));
            }
            let value = env(name);
            match (value, default) {
                (Some(value), None) => out.push_str(&value),
                (Some(value), Some(default)) if value.is_empty() => out.push_str(default),
                (Some(value), Some(_)) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    if !unset.iter().any(|n| n == name) {
                        unset.push(name.to_owned());
                    }
                }
            }
            rest = &body[close + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if unset.is_empty() {
        Ok(out)
    } else {
        Err(InterpolationError::Unset(unset))
    }
}

/// The names of the variables `text` refers to (`${NAME}` / `${NAME:-default}`), in order, each
/// once; `$$` and malformed references are skipped. For messages such as "set ANTHROPIC_API_KEY"
/// when a required value came out empty: names only, never values.
pub(crate) fn referenced_variables(text: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(dollar) = rest.find('$') {
        let after = &rest[dollar + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(close) = body.find('}') else {
                break;
            };
            let reference = &body[..close];
            let name = reference
                .split_once(":-")
                .map_or(reference, |(name, _)| name);
            if is_variable_name(name) && !names.iter().any(|n| n == name) {
                names.push(name.to_owned());
            }
            rest = &body[close + 1..];
        } else {
            rest = after;
        }
    }
    names
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.com".to_owned()),
            "EMPTY" => Some(String::new()),
            "DOLLARS" => Some("${HOST}$$".to_owned()),
            _ => None,
        }
    }

    fn run(text: &str) -> Result<String, InterpolationError> {
        interpolate(text, &env)
    }

    #[test]
    fn plain_text_is_unchanged() {
        assert_eq!(run("no variables here").as_deref(), Ok("no variables here"));
        assert_eq!(run("").as_deref(), Ok(""));
    }

    #[test]
    fn set_variables() {
        assert_eq!(
            run("https://${HOST}/v1").as_deref(),
            Ok("https://example.com/v1")
        );
        assert_eq!(
            run("${HOST}${HOST}").as_deref(),
            Ok("example.comexample.com")
        );
        assert_eq!(run("${EMPTY}").as_deref(), Ok(""));
    }

    #[test]
    fn defaults() {
        assert_eq!(run("${NOPE:-fallback}").as_deref(), Ok("fallback"));
        assert_eq!(run("${EMPTY:-fallback}").as_deref(), Ok("fallback"));
        assert_eq!(run("${HOST:-fallback}").as_deref(), Ok("example.com"));
        assert_eq!(run("${NOPE:-}").as_deref(), Ok(""));
        assert_eq!(
            run("${NOPE:-http://127.0.0.1:18000/v1}").as_deref(),
            Ok("http://127.0.0.1:18000/v1")
        );
    }

    #[test]
    fn dollars() {
        assert_eq!(run("a$$b").as_deref(), Ok("a$b"));
        assert_eq!(run("$${HOST}").as_deref(), Ok("${HOST}"));
        assert_eq!(run("$$$$").as_deref(), Ok("$$"));
        assert_eq!(run("cost: 5$").as_deref(), Ok("cost: 5$"));
        assert_eq!(run("$HOST").as_deref(), Ok("$HOST"));
        // Values from the environment are not interpolated again.
        assert_eq!(run("${DOLLARS}").as_deref(), Ok("${HOST}$$"));
    }

    #[test]
    fn unset_lists_every_missing_name_once() {
        assert_eq!(
            run("${NOPE}"),
            Err(InterpolationError::Unset(vec!["NOPE".to_owned()]))
        );
        assert_eq!(
            run("${A}-${HOST}-${B}-${A}"),
            Err(InterpolationError::Unset(vec![
                "A".to_owned(),
                "B".to_owned()
            ]))
        );
    }

    #[test]
    fn syntax_errors() {
        assert_eq!(run("abc${HOST"), Err(InterpolationError::Unterminated(3)));
        assert_eq!(run("é${"), Err(InterpolationError::Unterminated(1)));
        assert_eq!(run("${}"), Err(InterpolationError::InvalidName(0)));
        assert_eq!(run("x${1A}"), Err(InterpolationError::InvalidName(1)));
        assert_eq!(run("${A B}"), Err(InterpolationError::InvalidName(0)));
        assert_eq!(run("${A-b}"), Err(InterpolationError::InvalidName(0)));
    }

    #[test]
    fn referenced_variable_names() {
        assert_eq!(
            referenced_variables("${A:-x}-${B}-${A}-$${C}-${1D}-$E"),
            ["A", "B"]
        );
        assert_eq!(referenced_variables("plain"), Vec::<String>::new());
        assert_eq!(referenced_variables("${UNCLOSED"), Vec::<String>::new());
    }

    #[test]
    fn messages_do_not_echo_the_string() {
        let secret = "sk-secret-${";
        let message = run(secret).err().map(|e| e.message()).unwrap_or_default();
        assert!(!message.contains("sk-secret"), "{message}");
        assert!(message.contains("unterminated"), "{message}");
    }
}
