//! Text helpers every adapter needs the same way.

/// The visible mark left where text was cut.
const ELLIPSIS: char = '…';

/// Lower-case hex of `bytes` (digests in keys and names).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Cut `text` to at most `max_chars` characters on a character boundary,
/// ending with an ellipsis when anything was removed, so a reader can see
/// that the message is incomplete.
pub fn truncate_chars(text: &str, max_chars: usize) -> String {
    if max_chars == 0 {
        return String::new();
    }
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some(_) => {
            let keep: String = text.chars().take(max_chars - 1).collect();
            let mut cut = keep;
            cut.push(ELLIPSIS);
            cut
        }
    }
}

/// An error and all its sources on one line (`outer: inner: root`), for
/// the `reason` of an outcome: transport errors hide the useful part
/// (connection refused, timed out) in their sources.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_untouched() {
        assert_eq!(truncate_chars("hello", 5), "hello");
        assert_eq!(truncate_chars("", 3), "");
    }

    #[test]
    fn long_text_is_cut_with_ellipsis_on_char_boundary() {
        let cut = truncate_chars("héllo wörld", 6);
        assert_eq!(cut, "héllo…");
        assert_eq!(cut.chars().count(), 6);
        let emoji = truncate_chars("🚀🚀🚀🚀", 3);
        assert_eq!(emoji, "🚀🚀…");
    }

    #[test]
    fn zero_budget_is_empty() {
        assert_eq!(truncate_chars("abc", 0), "");
    }
}
