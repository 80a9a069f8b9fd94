//! Cutting text from outside (file contents, twin values, API answers, environment variables)
//! down to a size that fits a log line, an error or a security message field, without ever
//! splitting a UTF-8 character.

/// `s` cut to at most `max` characters, with `…` appended when cut: for text shown to people
/// (errors, logs, rejection messages), where a pasted key or a huge value must not appear whole.
pub fn shorten(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_string(),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary: for
/// fields with a byte budget.
pub fn prefix_within(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `outer: cause: cause …` for log lines: the error types here keep their causes in `source()`
/// and say only what failed in `Display`.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shorten_counts_characters_and_marks_the_cut() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "abc…");
        assert_eq!(shorten("ééé", 2), "éé…");
        assert_eq!(shorten("", 0), "");
        assert_eq!(shorten("a", 0), "…");
    }

    #[test]
    fn prefix_within_never_splits_a_character() {
        assert_eq!(prefix_within("abc", 5), "abc");
        assert_eq!(prefix_within("abc", 2), "ab");
        // 'é' is two bytes: a cut in its middle falls back before it.
        assert_eq!(prefix_within("aé", 2), "a");
        assert_eq!(prefix_within("€uro", 2), "");
        assert_eq!(prefix_within("€uro", 3), "€");
    }
}
