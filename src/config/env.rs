//! `${VAR}` and `${VAR:-default}` interpolation from the environment.

/// Why a string could not be interpolated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// `${VAR}` with no such variable and no default.
    #[error("environment variable {0} is not set")]
    Missing(String),
    /// `${` without a closing `}` or with an empty or invalid name.
    #[error("malformed ${{...}} reference: {0}")]
    Malformed(String),
}

/// Replace every `${VAR}` / `${VAR:-default}` in `input` using `lookup`.
/// `$$` stands for a literal `$`.
pub fn interpolate(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
            continue;
        }
        let Some(body_start) = after.strip_prefix('{') else {
            out.push('$');
            rest = after;
            continue;
        };
        let Some(end) = body_start.find('}') else {
            return Err(EnvError::Malformed(format!("unclosed reference in {input:?}")));
        };
        let body = &body_start[..end];
        let (name, default) = match body.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (body, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(EnvError::Malformed(format!("invalid variable name {name:?}")));
        }
        match (lookup(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => return Err(EnvError::Missing(name.to_owned())),
        }
        rest = &body_start[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN" => Some("s3cret".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn replaces_variables_and_defaults() {
        assert_eq!(interpolate("Bearer ${TOKEN}", env).unwrap(), "Bearer s3cret");
        assert_eq!(interpolate("${NOPE:-fallback}", env).unwrap(), "fallback");
        assert_eq!(interpolate("${TOKEN:-fallback}", env).unwrap(), "s3cret");
        assert_eq!(interpolate("${EMPTY}x", env).unwrap(), "x");
        assert_eq!(
            interpolate("cost $5 and $$HOME", env).unwrap(),
            "cost $5 and $HOME"
        );
    }

    #[test]
    fn missing_variable_is_named() {
        assert_eq!(
            interpolate("${HERALD_NOPE}", env).unwrap_err(),
            EnvError::Missing("HERALD_NOPE".into())
        );
    }

    #[test]
    fn malformed_references_are_errors() {
        assert!(matches!(interpolate("${TOKEN", env), Err(EnvError::Malformed(_))));
        assert!(matches!(interpolate("${}", env), Err(EnvError::Malformed(_))));
        assert!(matches!(interpolate("${A-B}", env), Err(EnvError::Malformed(_))));
    }
}
