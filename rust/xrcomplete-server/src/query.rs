//! Strict parsing of a URL query string (`application/x-www-form-urlencoded`).
//!
//! Stricter than browsers' lenient decoders on purpose: a `%` not followed by two hex digits, or
//! bytes that do not decode to UTF-8, are errors the client hears about (a 400), not text
//! silently replaced by U+FFFD and then completed.

use std::fmt;

/// Why a query string was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueryError {
    /// A `%` not followed by two hexadecimal digits, at this byte of the query string.
    BadPercent(usize),
    /// The decoded bytes of this parameter's name or value are not UTF-8.
    NotUtf8(String),
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryError::BadPercent(at) => write!(
                f,
                "invalid percent-encoding at byte {at} of the query string: '%' must be followed \
                 by two hexadecimal digits"
            ),
            QueryError::NotUtf8(what) => write!(f, "{what} is not valid UTF-8 once decoded"),
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes one name or value: `+` is a space, `%XX` a byte. `start` is its offset in the whole
/// query string (for the error).
fn decode(part: &str, start: usize, what: impl FnOnce() -> String) -> Result<String, QueryError> {
    let bytes = part.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let digits = bytes
                    .get(i + 1)
                    .copied()
                    .and_then(hex)
                    .zip(bytes.get(i + 2).copied().and_then(hex));
                let Some((hi, lo)) = digits else {
                    return Err(QueryError::BadPercent(start + i));
                };
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8(what()))
}

/// The `(name, value)` pairs of a query string, decoded, in order. Empty pieces (`a=1&&b=2`) are
/// skipped; a piece without `=` has the value `""`.
pub fn parse(raw: &str) -> Result<Vec<(String, String)>, QueryError> {
    let mut pairs = Vec::new();
    let mut start = 0;
    for piece in raw.split('&') {
        let piece_start = start;
        start += piece.len() + 1;
        if piece.is_empty() {
            continue;
        }
        let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
        let name = decode(name, piece_start, || "a parameter name".into())?;
        let value_start = piece_start + piece.len() - value.len();
        let value = decode(value, value_start, || format!("the value of {name:?}"))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Percent-encodes every byte but unreserved ASCII, spaces as `+`.
    fn encode(s: &str) -> String {
        let mut out = String::new();
        for &b in s.as_bytes() {
            match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    out.push(b as char)
                }
                b' ' => out.push('+'),
                _ => out.push_str(&format!("%{b:02X}")),
            }
        }
        out
    }

    #[test]
    fn decodes_plus_percent_and_utf8() {
        assert_eq!(
            parse("prefix=caf%C3%A9+au&prev=&k=10&&flag").unwrap(),
            vec![
                ("prefix".into(), "café au".into()),
                ("prev".into(), "".into()),
                ("k".into(), "10".into()),
                ("flag".into(), "".into()),
            ]
        );
        assert_eq!(parse("").unwrap(), vec![]);
        // A literal '+' is sent as %2B.
        assert_eq!(
            parse("q=c%2B%2B").unwrap(),
            vec![("q".into(), "c++".into())]
        );
    }

    #[test]
    fn bad_percent_and_bad_utf8_are_errors() {
        assert_eq!(parse("prefix=ab%zz"), Err(QueryError::BadPercent(9)));
        assert_eq!(parse("k=1&prefix=%4"), Err(QueryError::BadPercent(11)));
        assert_eq!(parse("p%=1"), Err(QueryError::BadPercent(1)));
        assert!(
            matches!(parse("prefix=%FF%FE"), Err(QueryError::NotUtf8(w)) if w.contains("prefix"))
        );
        assert!(matches!(parse("%C3=1"), Err(QueryError::NotUtf8(_))));
    }

    proptest! {
        #[test]
        fn encoded_pairs_decode_to_themselves(
            pairs in prop::collection::vec(("\\PC{1,8}", "\\PC{0,12}"), 0..5)
        ) {
            let raw: Vec<String> = pairs
                .iter()
                .map(|(n, v)| format!("{}={}", encode(n), encode(v)))
                .collect();
            let decoded = parse(&raw.join("&")).unwrap();
            prop_assert_eq!(decoded, pairs);
        }

        #[test]
        fn any_string_parses_or_errs_without_panicking(raw in "[a-z%=&+0-9A-F\u{e9}]{0,20}") {
            let _ = parse(&raw);
        }
    }
}
