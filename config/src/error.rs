//! Errors that point at the place in a file where something is wrong.

use std::fmt;
use std::path::{Path, PathBuf};

/// A config or list problem, located as precisely as the input allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file, or `<embedded>` / `<string>` for text that came from elsewhere.
    pub path: PathBuf,
    /// 1-based line and column, when the problem has a place.
    pub position: Option<(usize, usize)>,
    /// What is wrong, in words a person can act on.
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<PathBuf>, position: Option<(usize, usize)>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            position,
            message: message.into(),
        }
    }

    /// An error about a whole file (it could not be read, for example).
    pub fn file(path: &Path, message: impl Into<String>) -> Self {
        Self::new(path, None, message)
    }

    /// Turns a `toml` error into one that names `path:line:col`.
    pub fn from_toml(path: &Path, source: &str, err: &toml::de::Error) -> Self {
        let position = err.span().map(|span| line_col(source, span.start));
        Self::new(path, position, err.message().trim().to_string())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some((line, col)) => write!(f, "{}:{line}:{col}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let col = source[line_start..offset].chars().count() + 1;
    (line, col)
}

/// Deserializes a string with `parse`, failing *inside* the deserializer so the
/// TOML reader can place the error on the value itself (an element of a
/// multi-line array gets its own line, not the array's).
pub(crate) fn parse_str<'de, D, T>(deserializer: D, parse: fn(&str) -> Result<T, String>) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Parsed<T>(fn(&str) -> Result<T, String>);
    impl<T> serde::de::Visitor<'_> for Parsed<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<T, E> {
            (self.0)(text).map_err(E::custom)
        }
    }
    deserializer.deserialize_str(Parsed(parse))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_col(src, 0), (1, 1));
        assert_eq!(line_col(src, 6), (2, 1));
        assert_eq!(line_col(src, 8), (2, 3));
    }
}
