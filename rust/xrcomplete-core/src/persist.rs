//! The one on-disk format of every saved object.
//!
//! ```text
//! 0   magic  b"XRCMODEL"
//! 8   format version (u32 LE)        12  kind of object (u32 LE)
//! 16  number of sections (u32 LE)    20  reserved, 0
//! 24  section table: per section, name (8 bytes, NUL-padded), offset (u64), length (u64)
//! ..  section payloads, each starting at a multiple of 8 (so arrays can later be mapped)
//! end crc32 of everything before it (u32 LE)
//! ```
//! Arrays are little-endian. A reader checks, in order: the size, the magic, the version, the
//! checksum, the kind, then that every section lies inside the file; loaders then validate the
//! content itself (sorted keys, finite weights, ...) before building anything. A bad file gives a
//! typed [`Error`], never a panic, a huge allocation, or a silently wrong object.

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"XRCMODEL";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: usize = 24;
const ENTRY: usize = 24;
const TRAILER: usize = 4;
const MAX_SECTIONS: usize = 1024;

/// An object with a representation in this format. `save` and `load` go through the bytes.
pub trait Persist: Sized {
    /// The object as the bytes of a model file.
    fn to_bytes(&self) -> Vec<u8>;

    /// Reads the bytes of a model file, checking the envelope and the content.
    fn from_bytes(bytes: &[u8]) -> Result<Self>;

    /// Saves to `path` atomically (see [`write_atomic`]).
    fn save(&self, path: &Path) -> Result<()> {
        write_atomic(path, &self.to_bytes())
    }

    /// Loads from `path`.
    fn load(path: &Path) -> Result<Self> {
        Self::from_bytes(&read_file(path)?)
    }
}

/// What a file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Kind {
    /// A [`crate::Trie`].
    Trie = 1,
    /// A [`crate::text::TfidfVectorizer`].
    TfidfVectorizer = 2,
    /// A [`crate::text::FeatureConcat`].
    FeatureConcat = 3,
    /// A [`crate::xr::XrLinear`].
    XrLinear = 4,
    /// A [`crate::qac::WordModel`].
    WordModel = 5,
    /// A [`crate::qac::Transitions`].
    Transitions = 6,
    /// A [`crate::qac::Completer`].
    Completer = 7,
    /// A [`crate::retrieval::ProductRetriever`].
    ProductRetriever = 8,
}

impl Kind {
    fn name(code: u32) -> String {
        match code {
            1 => "Trie".into(),
            2 => "TfidfVectorizer".into(),
            3 => "FeatureConcat".into(),
            4 => "XrLinear".into(),
            5 => "WordModel".into(),
            6 => "Transitions".into(),
            7 => "Completer".into(),
            8 => "ProductRetriever".into(),
            other => format!("unknown kind {other}"),
        }
    }
}

fn format_err(what: impl Into<String>) -> Error {
    Error::Format { what: what.into() }
}

/// Assembles a file from named sections.
#[derive(Debug)]
pub struct Writer {
    kind: Kind,
    sections: Vec<([u8; 8], Vec<u8>)>,
}

impl Writer {
    /// A file of `kind` with no section yet.
    pub fn new(kind: Kind) -> Self {
        Writer {
            kind,
            sections: Vec::new(),
        }
    }

    /// Adds a section of raw bytes. Names are at most 8 bytes.
    pub fn bytes(&mut self, name: &str, data: Vec<u8>) -> &mut Self {
        assert!(name.len() <= 8, "section names have at most 8 bytes");
        let mut tag = [0u8; 8];
        tag[..name.len()].copy_from_slice(name.as_bytes());
        self.sections.push((tag, data));
        self
    }

    /// Adds a section of u64 values.
    pub fn u64s(&mut self, name: &str, values: impl IntoIterator<Item = u64>) -> &mut Self {
        let data = values.into_iter().flat_map(u64::to_le_bytes).collect();
        self.bytes(name, data)
    }

    /// Adds a section of u32 values.
    pub fn u32s(&mut self, name: &str, values: &[u32]) -> &mut Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(name, data)
    }

    /// Adds a section of f32 values.
    pub fn f32s(&mut self, name: &str, values: &[f32]) -> &mut Self {
        let data = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        self.bytes(name, data)
    }

    /// Adds a section of f64 values.
    pub fn f64s(&mut self, name: &str, values: &[f64]) -> &mut Self {
        self.u64s(name, values.iter().map(|v| v.to_bits()))
    }

    /// The bytes of the file.
    pub fn finish(&self) -> Vec<u8> {
        let table_end = HEADER + ENTRY * self.sections.len();
        let mut out = Vec::with_capacity(
            table_end + self.sections.iter().map(|s| s.1.len() + 8).sum::<usize>() + TRAILER,
        );
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(self.kind as u32).to_le_bytes());
        out.extend_from_slice(&(self.sections.len() as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        let mut offset = table_end;
        for (name, data) in &self.sections {
            offset = offset.next_multiple_of(8);
            out.extend_from_slice(name);
            out.extend_from_slice(&(offset as u64).to_le_bytes());
            out.extend_from_slice(&(data.len() as u64).to_le_bytes());
            offset += data.len();
        }
        for (_, data) in &self.sections {
            out.resize(out.len().next_multiple_of(8), 0);
            out.extend_from_slice(data);
        }
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }
}

/// A checked view of a file's sections.
#[derive(Debug)]
pub struct Reader<'a> {
    sections: Vec<([u8; 8], &'a [u8])>,
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl<'a> Reader<'a> {
    /// Checks the envelope of `bytes` and that it holds a `kind`.
    pub fn new(bytes: &'a [u8], kind: Kind) -> Result<Self> {
        if bytes.len() < HEADER + TRAILER {
            return Err(format_err(format!(
                "{} bytes is too short for an xrcomplete model file (at least {})",
                bytes.len(),
                HEADER + TRAILER
            )));
        }
        if &bytes[..8] != MAGIC {
            return Err(format_err(
                "not an xrcomplete model file (the magic bytes differ)",
            ));
        }
        let version = read_u32(bytes, 8);
        if version != FORMAT_VERSION {
            return Err(Error::Version {
                expected: FORMAT_VERSION,
                got: version,
            });
        }
        let body = &bytes[..bytes.len() - TRAILER];
        let stored = read_u32(bytes, bytes.len() - TRAILER);
        if crc32fast::hash(body) != stored {
            return Err(format_err(
                "checksum mismatch: the file is corrupt or truncated",
            ));
        }
        let found = read_u32(bytes, 12);
        if found != kind as u32 {
            return Err(Error::WrongKind {
                expected: Kind::name(kind as u32),
                found: Kind::name(found),
            });
        }
        let n = read_u32(bytes, 16) as usize;
        if n > MAX_SECTIONS || HEADER + n * ENTRY > body.len() {
            return Err(format_err(format!("implausible section count {n}")));
        }
        let mut sections = Vec::with_capacity(n);
        for i in 0..n {
            let at = HEADER + i * ENTRY;
            let name: [u8; 8] = bytes[at..at + 8].try_into().expect("8 bytes");
            let (offset, len) = (read_u64(bytes, at + 8), read_u64(bytes, at + 16));
            let end = offset.checked_add(len).filter(|&e| e <= body.len() as u64);
            let Some(end) = end else {
                return Err(format_err(format!(
                    "section {i} ({offset} + {len} bytes) runs past the end of the file"
                )));
            };
            sections.push((name, &body[offset as usize..end as usize]));
        }
        Ok(Reader { sections })
    }

    /// Every section, in file order: (name, bytes).
    pub fn sections(&self) -> Vec<(String, &'a [u8])> {
        self.sections
            .iter()
            .map(|(tag, data)| {
                let name = tag.split(|&b| b == 0).next().unwrap_or_default();
                (String::from_utf8_lossy(name).into_owned(), *data)
            })
            .collect()
    }

    /// The bytes of section `name`.
    pub fn bytes(&self, name: &str) -> Result<&'a [u8]> {
        self.sections
            .iter()
            .find(|(tag, _)| tag.split(|&b| b == 0).next() == Some(name.as_bytes()))
            .map(|(_, data)| *data)
            .ok_or_else(|| format_err(format!("missing section {name:?}")))
    }

    /// Section `name` as u64 values.
    pub fn u64s(&self, name: &str) -> Result<Vec<u64>> {
        Ok(self.words::<8>(name)?.map(u64::from_le_bytes).collect())
    }

    /// Section `name` as u32 values.
    pub fn u32s(&self, name: &str) -> Result<Vec<u32>> {
        Ok(self.words::<4>(name)?.map(u32::from_le_bytes).collect())
    }

    /// Section `name` cut into `N`-byte values; an error when its length is not a multiple.
    fn words<const N: usize>(&self, name: &str) -> Result<impl Iterator<Item = [u8; N]> + 'a> {
        let data = self.bytes(name)?;
        if data.len() % N != 0 {
            return Err(format_err(format!(
                "section {name:?} has {} bytes, not a whole number of {N}-byte values",
                data.len()
            )));
        }
        Ok(data.chunks_exact(N).map(|c| c.try_into().expect("N bytes")))
    }

    /// Section `name` as f32 values.
    pub fn f32s(&self, name: &str) -> Result<Vec<f32>> {
        Ok(self.u32s(name)?.into_iter().map(f32::from_bits).collect())
    }

    /// Section `name` as f64 values.
    pub fn f64s(&self, name: &str) -> Result<Vec<f64>> {
        Ok(self.u64s(name)?.into_iter().map(f64::from_bits).collect())
    }
}

/// Cuts `buf` at `ends` (cumulative byte ends) into strings; checks that the ends rise, stay
/// inside `buf`, cover it exactly, and fall on UTF-8 boundaries.
pub fn split_strings<'a>(buf: &'a [u8], ends: &[u64], what: &str) -> Result<Vec<&'a str>> {
    let text =
        std::str::from_utf8(buf).map_err(|e| format_err(format!("{what}: invalid UTF-8 ({e})")))?;
    let mut out = Vec::with_capacity(ends.len());
    let mut start = 0usize;
    for &end in ends {
        let end = usize::try_from(end)
            .ok()
            .filter(|&e| e >= start && e <= buf.len());
        let Some(end) = end.filter(|&e| text.is_char_boundary(e)) else {
            return Err(format_err(format!(
                "{what}: string bounds out of order or range"
            )));
        };
        out.push(&text[start..end]);
        start = end;
    }
    if start != buf.len() {
        return Err(format_err(format!(
            "{what}: bytes left after the last string"
        )));
    }
    Ok(out)
}

/// A little-endian cursor over a small section of fixed fields (options, flags).
#[derive(Debug)]
pub struct Fields<'a> {
    data: &'a [u8],
    at: usize,
    section: &'static str,
}

impl<'a> Fields<'a> {
    /// Reads the fields of section `section`.
    pub fn new(data: &'a [u8], section: &'static str) -> Self {
        Fields {
            data,
            at: 0,
            section,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.at + n;
        if end > self.data.len() {
            return Err(format_err(format!(
                "section {:?} is too short",
                self.section
            )));
        }
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    /// A flag byte: 0 or 1.
    pub fn bool(&mut self) -> Result<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            b => Err(format_err(format!(
                "section {:?}: flag byte {b}",
                self.section
            ))),
        }
    }

    /// A u64.
    pub fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    /// An f64.
    pub fn f64(&mut self) -> Result<f64> {
        self.u64().map(f64::from_bits)
    }

    /// The error for a field value that is not one of the known codes.
    pub fn bad(&self, field: &str, value: impl std::fmt::Display) -> Error {
        format_err(format!(
            "section {:?}: unknown {field} {value}",
            self.section
        ))
    }

    /// Checks that every byte was read.
    pub fn end(&self) -> Result<()> {
        if self.at != self.data.len() {
            return Err(format_err(format!(
                "section {:?} has {} unread bytes",
                self.section,
                self.data.len() - self.at
            )));
        }
        Ok(())
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed to disk,
/// then renamed over `path`. A crash mid-save never leaves a half-written file at `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
        not_found: e.kind() == std::io::ErrorKind::NotFound,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidInput(format!("{} is not a file path", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Reads the whole file at `path`.
pub fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
        not_found: e.kind() == std::io::ErrorKind::NotFound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Kind::Trie);
        w.bytes("keys", b"abc".to_vec())
            .u64s("ends", [1, 3])
            .f64s("w", &[1.5, -2.0]);
        w.finish()
    }

    #[test]
    fn sections_round_trip_and_are_aligned() {
        let bytes = sample();
        let r = Reader::new(&bytes, Kind::Trie).unwrap();
        assert_eq!(r.bytes("keys").unwrap(), b"abc");
        assert_eq!(r.u64s("ends").unwrap(), [1, 3]);
        assert_eq!(r.f64s("w").unwrap(), [1.5, -2.0]);
        assert!(matches!(r.bytes("nope"), Err(Error::Format { .. })));
        assert_eq!(split_strings(b"abc", &[1, 3], "keys").unwrap(), ["a", "bc"]);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(
                Reader::new(&bytes[..len], Kind::Trie).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                assert!(Reader::new(&bad, Kind::Trie).is_err(), "byte {i} flipped");
            }
        }
    }

    #[test]
    fn wrong_version_and_kind_are_named() {
        let mut bytes = sample();
        assert!(matches!(
            Reader::new(&bytes, Kind::TfidfVectorizer),
            Err(Error::WrongKind { .. })
        ));
        bytes[8] = 9;
        let n = bytes.len() - TRAILER;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            Reader::new(&bytes, Kind::Trie).unwrap_err(),
            Error::Version {
                expected: FORMAT_VERSION,
                got: 9
            }
        );
    }

    #[test]
    fn string_bounds_are_checked() {
        assert!(split_strings(b"abc", &[2, 1], "k").is_err());
        assert!(split_strings(b"abc", &[1, 9], "k").is_err());
        assert!(split_strings(b"abc", &[1], "k").is_err());
        assert!(split_strings("é".as_bytes(), &[1, 2], "k").is_err());
        assert!(split_strings(&[0xff], &[1], "k").is_err());
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("xrc-persist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("m.xrc");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(read_file(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(matches!(
            read_file(&dir.join("missing")),
            Err(Error::Io {
                not_found: true,
                ..
            })
        ));
        assert!(write_atomic(&dir.join("no/such/dir/m"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
