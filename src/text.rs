//! Text for people and for message fields: cutting text from outside (file contents, twin
//! values, API answers, environment variables) down to a size that fits a log line, an error or
//! a security message field, without ever splitting a UTF-8 character; and errors with their
//! causes on one line.

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

/// `s` cut to at most `max` bytes, on a character boundary (a field with a byte budget).
pub fn within_bytes(s: &str, max: usize) -> String {
    prefix_within(s, max).to_string()
}

/// `s` cut to at most `max` bytes (on a character boundary), with `…` appended when cut.
pub fn within_bytes_marked(s: &str, max: usize) -> String {
    let kept = prefix_within(s, max);
    if kept.len() == s.len() {
        s.to_string()
    } else {
        format!("{kept}…")
    }
}

/// An error and its causes on one line, "outer: cause: cause" (the error types keep their
/// causes in `source()`, so `Display` alone shows only the outer message).
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

/// The causes of an error joined on one line, without its own message (for a log line that
/// shows the message in a field of its own).
pub fn error_causes(e: &dyn std::error::Error) -> String {
    let mut causes = Vec::new();
    let mut next = e.source();
    while let Some(cause) = next {
        causes.push(cause.to_string());
        next = cause.source();
    }
    causes.join(": ")
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

    #[test]
    fn errors_and_their_causes_on_one_line() {
        let inner = std::io::Error::other("disk full");
        let outer = crate::state::Error::Write {
            path: "/x".into(),
            source: inner,
        };
        assert_eq!(error_chain(&outer), "writing /x: disk full");
        assert_eq!(error_causes(&outer), "disk full");
    }

    #[test]
    fn byte_cuts_mark_only_when_they_cut() {
        assert_eq!(within_bytes("aé", 2), "a");
        assert_eq!(within_bytes_marked("abc", 3), "abc");
        assert_eq!(within_bytes_marked("abcd", 3), "abc…");
    }
}
