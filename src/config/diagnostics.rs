//! Config errors that point at the file: `PATH:LINE:COL: message`.

use std::fmt;
use std::ops::Range;

/// One problem found in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file as given on the command line (or `<built-in>`).
    pub path: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, in one sentence.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.path, self.line, self.column, self.message)
    }
}

/// Every problem found in a config file, in file order. Loading reports them
/// all at once, so a user fixes a broken file in one round.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, err) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{err}")?;
        }
        Ok(())
    }
}

/// Collects errors against one source text, turning byte spans into
/// line and column.
pub struct Diagnostics<'a> {
    path: &'a str,
    text: &'a str,
    errors: Vec<ConfigError>,
}

impl<'a> Diagnostics<'a> {
    /// Start collecting for `text`, read from `path`.
    pub fn new(path: &'a str, text: &'a str) -> Self {
        Diagnostics {
            path,
            text,
            errors: Vec::new(),
        }
    }

    /// Record an error at the start of `span`.
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, column) = line_col(self.text, span.start);
        self.errors.push(ConfigError {
            path: self.path.to_owned(),
            line,
            column,
            message: one_line(&message.into()),
        });
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    /// All errors in file order.
    pub fn into_errors(mut self) -> ConfigErrors {
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.errors.dedup();
        ConfigErrors(self.errors)
    }
}

/// Keep each error on its own line (`PATH:LINE:COL: message`) even when the
/// underlying error (a regex, a TOML parser) explains itself over several.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// 1-based line and character column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn offsets_map_to_one_based_positions() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 9), (2, 3));
        assert_eq!(line_col(text, 999), (3, 1));
    }
}
