//! A list of strings in one byte buffer: the trie's keys, a vocabulary's terms, product ids.
//!
//! Stored as two arrays (the UTF-8 bytes, back to back, and `len + 1` offsets), so that a loaded
//! list is used in place. Loading checks the bytes once (UTF-8, offsets rising from 0 to the end,
//! each on a character boundary); after that `get` cannot fail.

use crate::error::{Error, Result};
use crate::persist::{format_err, rises_to, Array, Reader, Writer};

/// Strings with ids `0..len`; string `i` is `bytes[offsets[i]..offsets[i + 1]]`.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Strings {
    bytes: Array<u8>,
    offsets: Array<u32>,
}

impl Strings {
    /// The strings of `items`, in order. Errors when their total size passes 32-bit offsets.
    pub(crate) fn new<S: AsRef<str>>(items: impl IntoIterator<Item = S>) -> Result<Self> {
        let mut bytes = Vec::new();
        let mut offsets = vec![0u32];
        for s in items {
            bytes.extend_from_slice(s.as_ref().as_bytes());
            let end = u32::try_from(bytes.len()).map_err(|_| Error::TooLarge {
                what: "total bytes of the strings",
                got: bytes.len() as u64,
                limit: u32::MAX as u64,
            })?;
            offsets.push(end);
        }
        bytes.shrink_to_fit();
        Ok(Strings {
            bytes: bytes.into(),
            offsets: offsets.into(),
        })
    }

    /// Number of strings.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// String `i` (`i < len`).
    #[inline]
    pub(crate) fn get(&self, i: usize) -> &str {
        let bytes = self.get_bytes(i);
        debug_assert!(std::str::from_utf8(bytes).is_ok());
        // SAFETY: the bytes are UTF-8 and every offset is a character boundary: built from
        // `&str`s cut at their ends (`new`), or checked once when loaded (`read`); the fields
        // are private and never changed after. Checking again here cost 4% of `complete()`.
        unsafe { std::str::from_utf8_unchecked(bytes) }
    }

    /// The bytes of string `i` (`i < len`).
    #[inline]
    pub(crate) fn get_bytes(&self, i: usize) -> &[u8] {
        &self.bytes[self.offsets[i] as usize..self.offsets[i + 1] as usize]
    }

    /// True when the strings are in strictly increasing byte order (sorted, no duplicate).
    pub(crate) fn is_sorted_distinct(&self) -> bool {
        (1..self.len()).all(|i| self.get_bytes(i - 1) < self.get_bytes(i))
    }

    /// All strings in order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = &str> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Bytes held.
    pub(crate) fn nbytes(&self) -> usize {
        self.bytes.nbytes() + self.offsets.nbytes()
    }

    /// Adds the two sections `{name}` (bytes) and `{name}.o` (offsets); `name` has at most 6 bytes.
    pub(crate) fn write<'a>(&'a self, w: &mut Writer<'a>, name: &str) {
        w.array(name, &self.bytes)
            .array(&format!("{name}.o"), &self.offsets);
    }

    /// [`Strings::write`] of strings that do not outlive the writer (copied).
    pub(crate) fn write_copy(&self, w: &mut Writer<'_>, name: &str) {
        w.array_copy(name, &self.bytes)
            .array_copy(&format!("{name}.o"), &self.offsets);
    }

    /// Reads the sections written by [`Strings::write`], checking them.
    pub(crate) fn read(r: &Reader, name: &str, what: &str) -> Result<Self> {
        let bytes: Array<u8> = r.array(name)?;
        let offsets: Array<u32> = r.array(&format!("{name}.o"))?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| format_err(format!("{what}: invalid UTF-8 ({e})")))?;
        let ok = rises_to(&offsets, bytes.len())
            && offsets.iter().all(|&o| text.is_char_boundary(o as usize));
        if !ok {
            return Err(format_err(format!(
                "{what}: string bounds out of order or range"
            )));
        }
        Ok(Strings { bytes, offsets })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::{Buffer, Kind};

    fn round_trip(bytes: &[u8], offsets: &[u32]) -> Result<Strings> {
        let mut w = Writer::new(Kind::Trie);
        w.array("s", bytes).array("s.o", offsets);
        let r = Reader::new(&Buffer::copy_from(&w.finish()), Kind::Trie)?;
        Strings::read(&r, "s", "test")
    }

    #[test]
    fn strings_round_trip_and_bad_bounds_are_errors() {
        let s = Strings::new(["ab", "", "é中"]).unwrap();
        assert_eq!(s.iter().collect::<Vec<_>>(), ["ab", "", "é中"]);
        let back = round_trip(&s.bytes, &s.offsets).unwrap();
        assert_eq!(back, s);
        assert_eq!(Strings::new(Vec::<&str>::new()).unwrap().len(), 0);
        assert!(round_trip(b"abc", &[0, 2, 1, 3]).is_err()); // not rising
        assert!(round_trip(b"abc", &[0, 1, 9]).is_err()); // past the end
        assert!(round_trip(b"abc", &[0, 1]).is_err()); // bytes left over
        assert!(round_trip(b"abc", &[1, 3]).is_err()); // not from 0
        assert!(round_trip("é".as_bytes(), &[0, 1, 2]).is_err()); // inside a character
        assert!(round_trip(&[0xff], &[0, 1]).is_err()); // not UTF-8
        assert!(round_trip(b"", &[]).is_err()); // no offsets at all
    }
}
