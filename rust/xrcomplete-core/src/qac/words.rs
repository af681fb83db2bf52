//! Words of a typed prefix.

use crate::text::is_py_space;

/// Splits a prefix into (everything up to and including the last whitespace, the partial word).
pub(crate) fn split_last_word(prefix: &str) -> (&str, &str) {
    match prefix.char_indices().rev().find(|&(_, c)| is_py_space(c)) {
        Some((i, c)) => prefix.split_at(i + c.len_utf8()),
        None => ("", prefix),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_partial_word_follows_the_last_whitespace() {
        assert_eq!(split_last_word("a b\u{3000}cd"), ("a b\u{3000}", "cd"));
        assert_eq!(split_last_word("cheap "), ("cheap ", ""));
        assert_eq!(split_last_word("cheap"), ("", "cheap"));
        assert_eq!(split_last_word(""), ("", ""));
    }
}
