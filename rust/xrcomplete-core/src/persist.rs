//! The one on-disk format of every saved object, and the arrays that live in it.
//!
//! ```text
//! 0   magic  b"XRCMODEL"
//! 8   format version (u32 LE)        12  kind of object (u32 LE)
//! 16  number of sections (u32 LE)    20  reserved, 0
//! 24  section table: per section, name (8 bytes, NUL-padded), offset (u64), length (u64)
//! ..  section payloads, each starting at a multiple of 8
//! end crc32 of everything before it (u32 LE)
//! ```
//! Arrays are stored little-endian exactly as the structures hold them in memory, derived
//! structures included (trie nodes, top-k tables, hash tables, the scoring layout), so that
//! loading never parses, sorts or rebuilds: a loaded object's arrays are [`Array`] views into one
//! shared [`Buffer`], which is either the file read into aligned memory or the file mapped
//! ([`Persist::load_mmap`]). A reader checks, in order: the size, the magic, the version, the
//! checksum, the kind, then that every section lies inside the file; loaders then validate the
//! content itself (bounds, order, finite weights, ...) with linear scans before using it. A bad
//! file gives a typed [`Error`], never a panic, a huge allocation, or a silently wrong object.

use std::fmt;
use std::io::{Read, Write};
use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::Arc;

use bytemuck::Pod;
use rayon::prelude::*;

use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"XRCMODEL";
/// The format version this build writes and reads (2: arrays stored in their in-memory layout).
pub const FORMAT_VERSION: u32 = 2;
const HEADER: usize = 24;
const ENTRY: usize = 24;
const TRAILER: usize = 4;
const MAX_SECTIONS: usize = 1024;
/// Sections start at multiples of this, so that every array is aligned in the file.
const ALIGN: usize = 8;

/// An object with a representation in this format. `save` and `load` go through the bytes.
pub trait Persist: Sized {
    /// What the files of this type hold.
    const KIND: Kind;

    /// The object's model file, its arrays borrowed until it is written.
    fn writer(&self) -> Writer<'_>;

    /// The object as the bytes of a model file.
    fn to_bytes(&self) -> Vec<u8> {
        self.writer().finish()
    }

    /// Builds the object from a checked file, its arrays borrowed from the file's buffer.
    fn from_reader(r: &Reader) -> Result<Self>;

    /// Reads a model file held in `buf` (its arrays stay in `buf`, shared).
    fn from_buffer(buf: &Buffer) -> Result<Self> {
        Self::from_reader(&Reader::new(buf, Self::KIND)?)
    }

    /// Reads the bytes of a model file (copied once into aligned memory).
    fn from_bytes(bytes: &[u8]) -> Result<Self> {
        Self::from_buffer(&Buffer::copy_from(bytes))
    }

    /// Saves to `path` atomically (see [`write_atomic`]).
    /// The file is streamed to disk from the object's arrays: saving does not hold a copy of it.
    fn save(&self, path: &Path) -> Result<()> {
        write_atomic_with(path, |f| self.writer().write_to(f))
    }

    /// Loads from `path`, reading the file into memory.
    fn load(path: &Path) -> Result<Self> {
        Self::from_buffer(&Buffer::read(path)?).map_err(|e| e.in_file(path))
    }

    /// Loads from `path` by mapping the file: the arrays are used in place, nothing is copied,
    /// and processes that map the same file share its pages. The file must not be changed while
    /// mapped; [`write_atomic`] (every `save`) never changes a file in place.
    fn load_mmap(path: &Path) -> Result<Self> {
        Self::from_buffer(&Buffer::map(path)?).map_err(|e| e.in_file(path))
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
    /// A last-word model (files of xrcomplete < 0.2; no longer read).
    WordModel = 5,
    /// A [`crate::qac::Transitions`].
    Transitions = 6,
    /// A [`crate::qac::Completer`].
    Completer = 7,
    /// A [`crate::retrieval::ProductRetriever`].
    ProductRetriever = 8,
    /// A [`crate::qac::QueryLm`].
    QueryLm = 9,
    /// A [`crate::rank::AdditiveRanker`].
    AdditiveRanker = 10,
    /// A [`crate::xr::SubtreeJob`]: training problems sent to another machine.
    SubtreeJob = 11,
    /// The trained columns of a subtree job, sent back.
    SubtreeColumns = 12,
    /// A [`crate::rank::BoostedTrees`].
    BoostedTrees = 13,
    /// A [`crate::text::TermCounts`]: the term statistics of a shard of a log, sent back.
    TermCounts = 14,
    /// A stage of a fit run on every shard of its pairs ([`crate::qac::shards`]).
    ShardTask = 15,
    /// What a shard answers to a [`Kind::ShardTask`].
    ShardAnswer = 16,
    /// The rows of some labels, cut from a shard (for their PIFA embeddings), or those
    /// embeddings.
    LabelRows = 17,
}

impl Kind {
    const ALL: [Kind; 17] = [
        Kind::Trie,
        Kind::TfidfVectorizer,
        Kind::FeatureConcat,
        Kind::XrLinear,
        Kind::WordModel,
        Kind::Transitions,
        Kind::Completer,
        Kind::ProductRetriever,
        Kind::QueryLm,
        Kind::AdditiveRanker,
        Kind::SubtreeJob,
        Kind::SubtreeColumns,
        Kind::BoostedTrees,
        Kind::TermCounts,
        Kind::ShardTask,
        Kind::ShardAnswer,
        Kind::LabelRows,
    ];

    /// The kind with file code `code`.
    pub fn from_code(code: u32) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| *k as u32 == code)
    }

    fn name(code: u32) -> String {
        match Kind::from_code(code) {
            Some(kind) => format!("{kind:?}"),
            None => format!("unknown kind {code}"),
        }
    }
}

/// CRC-32 of `bytes`; a large buffer is summed in parallel pieces, combined in order.
fn checksum(bytes: &[u8]) -> u32 {
    const PIECE: usize = 16 << 20;
    if bytes.len() <= PIECE {
        return crc32fast::hash(bytes);
    }
    let pieces: Vec<crc32fast::Hasher> = bytes
        .par_chunks(PIECE)
        .map(|piece| {
            let mut h = crc32fast::Hasher::new();
            h.update(piece);
            h
        })
        .collect();
    let mut all = crc32fast::Hasher::new();
    for piece in &pieces {
        all.combine(piece);
    }
    all.finalize()
}

/// The kind of the file `bytes` claims to be (its header only; nothing is checked).
pub(crate) fn kind_of(bytes: &[u8]) -> Option<Kind> {
    let code = bytes.get(12..16)?;
    (bytes.starts_with(MAGIC)).then_some(())?;
    Kind::from_code(u32::from_le_bytes(code.try_into().ok()?))
}

pub(crate) fn format_err(what: impl Into<String>) -> Error {
    Error::Format { what: what.into() }
}

/// True when `ptr` (row pointers, string offsets) starts at 0, never decreases, and ends at
/// `end`: every `ptr[i]..ptr[i + 1]` is then a valid range of an array of `end` values.
pub(crate) fn rises_to<P: Copy + Into<u64>>(ptr: &[P], end: usize) -> bool {
    ptr.first().map(|&p| p.into()) == Some(0)
        && ptr.last().map(|&p| p.into()) == Some(end as u64)
        && ptr.windows(2).all(|w| w[0].into() <= w[1].into())
}

fn io_err(path: &Path, e: &std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
        not_found: e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// Where a buffer's bytes live.
enum Storage {
    /// A heap copy, in `u64`s so that its start is 8-aligned; the first `len` bytes count.
    Heap(Vec<u64>, usize),
    /// A read-only map of a file (page-aligned).
    Map(memmap2::Mmap),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Heap(words, len) => &bytemuck::cast_slice(words)[..*len],
            Storage::Map(map) => map,
        }
    }
}

/// The bytes of a model file (or a part of one), in aligned memory or mapped; cloning shares
/// them. Every [`Array`] read from a file keeps its buffer alive.
#[derive(Clone)]
pub struct Buffer {
    storage: Arc<Storage>,
    range: Range<usize>,
}

impl fmt::Debug for Buffer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let how = match *self.storage {
            Storage::Heap(..) => "heap",
            Storage::Map(_) => "mapped",
        };
        write!(f, "Buffer({} bytes, {how})", self.range.len())
    }
}

impl Deref for Buffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.storage.bytes()[self.range.clone()]
    }
}

impl Buffer {
    fn new(storage: Storage) -> Self {
        let len = storage.bytes().len();
        Buffer {
            storage: Arc::new(storage),
            range: 0..len,
        }
    }

    /// A copy of `bytes` in aligned memory.
    pub fn copy_from(bytes: &[u8]) -> Self {
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
        Buffer::new(Storage::Heap(words, bytes.len()))
    }

    /// The file at `path`, read into aligned memory.
    pub fn read(path: &Path) -> Result<Self> {
        let mut file = std::fs::File::open(path).map_err(|e| io_err(path, &e))?;
        let len = file.metadata().map_err(|e| io_err(path, &e))?.len();
        let len = usize::try_from(len).map_err(|_| format_err("file too large to read"))?;
        let mut words = vec![0u64; len.div_ceil(8)];
        let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..len];
        // A file that shrinks meanwhile fails here; one that grows fails the checksum.
        file.read_exact(bytes).map_err(|e| io_err(path, &e))?;
        Ok(Buffer::new(Storage::Heap(words, len)))
    }

    /// The file at `path`, mapped read-only.
    pub fn map(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|e| io_err(path, &e))?;
        if file.metadata().map_err(|e| io_err(path, &e))?.is_dir() {
            return Err(Error::Io {
                path: path.display().to_string(),
                message: "is a directory".into(),
                not_found: false,
            });
        }
        // SAFETY: the map is read-only; the contract (documented on `Persist::load_mmap`) is that
        // the file is not changed while mapped, which `write_atomic` guarantees for our saves.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| io_err(path, &e))?;
        Ok(Buffer::new(Storage::Map(map)))
    }

    /// A 64-bit fingerprint of the bytes (FxHash of 16 MiB pieces, in parallel, combined in
    /// order): it names a model file's content, as the server's model id. Not the file's
    /// checksum, which cannot serve: a CRC of a file that ends with a nested file and its own
    /// CRC does not change with the nested file's content. Not cryptographic either.
    pub fn fingerprint(&self) -> u64 {
        use std::hash::Hasher;
        const PIECE: usize = 16 << 20;
        let bytes: &[u8] = self;
        let pieces: Vec<u64> = bytes
            .par_chunks(PIECE)
            .map(|piece| {
                let mut h = rustc_hash::FxHasher::default();
                h.write(piece);
                h.finish()
            })
            .collect();
        let mut all = rustc_hash::FxHasher::default();
        all.write_usize(bytes.len());
        for piece in pieces {
            all.write_u64(piece);
        }
        all.finish()
    }

    /// True when the bytes are a map of a file.
    pub fn is_mapped(&self) -> bool {
        matches!(*self.storage, Storage::Map(_))
    }

    /// The bytes `range` of this buffer (relative to its start), sharing the storage.
    fn slice(&self, range: Range<usize>) -> Buffer {
        debug_assert!(range.end <= self.range.len());
        Buffer {
            storage: Arc::clone(&self.storage),
            range: self.range.start + range.start..self.range.start + range.end,
        }
    }
}

/// An immutable array: built in memory (a `Vec`) or borrowed from a model file's [`Buffer`],
/// without a copy. Dereferences to `&[T]`; cloning a borrowed array shares its buffer.
pub struct Array<T: Pod> {
    ptr: *const T,
    len: usize,
    owner: Owner<T>,
}

enum Owner<T> {
    Vec(Vec<T>),
    Buffer(#[allow(dead_code)] Buffer),
}

// SAFETY: an Array is immutable and owns (or shares, through an Arc) the memory it points to,
// like a Vec<T> or an Arc<[T]>; T: Pod holds no pointers.
unsafe impl<T: Pod + Send + Sync> Send for Array<T> {}
unsafe impl<T: Pod + Send + Sync> Sync for Array<T> {}

impl<T: Pod> Deref for Array<T> {
    type Target = [T];
    #[inline]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points to `len` initialised, aligned values owned by `owner`, which
        // neither moves them (a Vec's heap block, an Arc'd buffer) nor changes them.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl<T: Pod> From<Vec<T>> for Array<T> {
    fn from(v: Vec<T>) -> Self {
        Array {
            ptr: v.as_ptr(),
            len: v.len(),
            owner: Owner::Vec(v),
        }
    }
}

impl<T: Pod> Default for Array<T> {
    fn default() -> Self {
        Vec::new().into()
    }
}

impl<T: Pod> Clone for Array<T> {
    fn clone(&self) -> Self {
        match &self.owner {
            Owner::Vec(v) => v.clone().into(),
            Owner::Buffer(b) => Array {
                ptr: self.ptr,
                len: self.len,
                owner: Owner::Buffer(b.clone()),
            },
        }
    }
}

impl<T: Pod + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl<T: Pod + PartialEq> PartialEq for Array<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Pod + Eq> Eq for Array<T> {}

impl<T: Pod> Array<T> {
    /// Views `buf` as values of `T`: its length must be a whole number of values and its start
    /// aligned for `T` (every section of a file is 8-aligned).
    fn view(buf: Buffer, what: &str) -> Result<Self> {
        if cfg!(target_endian = "big") {
            return Err(format_err(
                "model files are little-endian; this platform is big-endian",
            ));
        }
        let values: &[T] = bytemuck::try_cast_slice(&buf).map_err(|e| {
            format_err(format!(
                "section {what:?} ({} bytes) is not an array of {}-byte values ({e:?})",
                buf.len(),
                size_of::<T>()
            ))
        })?;
        Ok(Array {
            ptr: values.as_ptr(),
            len: values.len(),
            owner: Owner::Buffer(buf),
        })
    }

    /// Bytes the values take (in memory or in the mapped file).
    pub fn nbytes(&self) -> usize {
        self.len * size_of::<T>()
    }

    /// True when the values live in a mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(&self.owner, Owner::Buffer(b) if b.is_mapped())
    }
}

/// Assembles a file from named sections. A section either owns its bytes or borrows them
/// from the object being saved (its arrays), and a part saved as a file of its own is kept as
/// its writer: [`Writer::write_to`] streams the file without ever holding it whole.
#[derive(Debug)]
pub struct Writer<'a> {
    kind: Kind,
    sections: Vec<([u8; 8], Section<'a>)>,
}

#[derive(Debug)]
enum Section<'a> {
    Bytes(std::borrow::Cow<'a, [u8]>),
    File(Writer<'a>),
}

impl Section<'_> {
    fn len(&self) -> usize {
        match self {
            Section::Bytes(b) => b.len(),
            Section::File(w) => w.len(),
        }
    }
}

impl<'a> Writer<'a> {
    /// A file of `kind` with no section yet.
    pub fn new(kind: Kind) -> Self {
        Writer {
            kind,
            sections: Vec::new(),
        }
    }

    fn push(&mut self, name: &str, section: Section<'a>) -> &mut Self {
        assert!(name.len() <= 8, "section names have at most 8 bytes");
        let mut tag = [0u8; 8];
        tag[..name.len()].copy_from_slice(name.as_bytes());
        self.sections.push((tag, section));
        self
    }

    /// Adds a section of raw bytes. Names are at most 8 bytes.
    pub fn bytes(&mut self, name: &str, data: Vec<u8>) -> &mut Self {
        self.push(name, Section::Bytes(data.into()))
    }

    /// Adds an array in its in-memory layout (little-endian), to be read back by
    /// [`Reader::array`]; borrowed until the file is written.
    pub fn array<T: Pod>(&mut self, name: &str, values: &'a [T]) -> &mut Self {
        self.push(name, Section::Bytes(bytemuck::cast_slice(values).into()))
    }

    /// [`Writer::array`] of values that do not outlive the writer (copied).
    pub fn array_copy<T: Pod>(&mut self, name: &str, values: &[T]) -> &mut Self {
        self.bytes(name, bytemuck::cast_slice(values).to_vec())
    }

    /// Adds a section that is a complete file of its own (a part's [`Persist::writer`]).
    pub fn file(&mut self, name: &str, file: Writer<'a>) -> &mut Self {
        self.push(name, Section::File(file))
    }

    /// Adds a section of u64 values.
    pub fn u64s(&mut self, name: &str, values: impl IntoIterator<Item = u64>) -> &mut Self {
        let data = values.into_iter().flat_map(u64::to_le_bytes).collect();
        self.bytes(name, data)
    }

    /// Length of the file in bytes.
    pub fn len(&self) -> usize {
        let table_end = HEADER + ENTRY * self.sections.len();
        let body = self
            .sections
            .iter()
            .fold(table_end, |at, (_, s)| at.next_multiple_of(ALIGN) + s.len());
        body + TRAILER
    }

    /// Always false: a file has at least its header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Hands the file's bytes to `sink` in order, the checksum last.
    fn emit(&self, sink: &mut dyn FnMut(&[u8]) -> std::io::Result<()>) -> std::io::Result<()> {
        let mut crc = crc32fast::Hasher::new();
        let mut put = |bytes: &[u8]| {
            crc.update(bytes);
            sink(bytes)
        };
        put(MAGIC)?;
        put(&FORMAT_VERSION.to_le_bytes())?;
        put(&(self.kind as u32).to_le_bytes())?;
        put(&(self.sections.len() as u32).to_le_bytes())?;
        put(&0u32.to_le_bytes())?;
        let mut offset = HEADER + ENTRY * self.sections.len();
        for (name, section) in &self.sections {
            offset = offset.next_multiple_of(ALIGN);
            put(name)?;
            put(&(offset as u64).to_le_bytes())?;
            put(&(section.len() as u64).to_le_bytes())?;
            offset += section.len();
        }
        let mut at = HEADER + ENTRY * self.sections.len();
        for (_, section) in &self.sections {
            let padded = at.next_multiple_of(ALIGN);
            put(&[0u8; ALIGN][..padded - at])?;
            match section {
                Section::Bytes(b) => put(b)?,
                Section::File(w) => w.emit(&mut put)?,
            }
            at = padded + section.len();
        }
        sink(&crc.finalize().to_le_bytes())
    }

    /// The bytes of the file.
    pub fn finish(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        self.emit(&mut |bytes| {
            out.extend_from_slice(bytes);
            Ok(())
        })
        .expect("writing to memory does not fail");
        out
    }

    /// Writes the file to `out`, section by section (nothing is assembled in memory).
    pub fn write_to(&self, out: &mut dyn Write) -> std::io::Result<()> {
        let mut out = std::io::BufWriter::with_capacity(1 << 20, out);
        self.emit(&mut |bytes| out.write_all(bytes))?;
        out.flush()
    }
}

/// A checked view of a file's sections.
#[derive(Debug)]
pub struct Reader {
    buf: Buffer,
    sections: Vec<([u8; 8], Range<usize>)>,
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn read_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

impl Reader {
    /// Checks the envelope of `buf`, its checksum included, and that it holds a `kind`.
    pub fn new(buf: &Buffer, kind: Kind) -> Result<Self> {
        Self::open(buf, kind, true)
    }

    fn open(buf: &Buffer, kind: Kind, check_sum: bool) -> Result<Self> {
        let bytes: &[u8] = buf;
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
        let body = bytes.len() - TRAILER;
        let stored = read_u32(bytes, body);
        if check_sum && checksum(&bytes[..body]) != stored {
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
        if n > MAX_SECTIONS || HEADER + n * ENTRY > body {
            return Err(format_err(format!("implausible section count {n}")));
        }
        let mut sections = Vec::with_capacity(n);
        for i in 0..n {
            let at = HEADER + i * ENTRY;
            let name: [u8; 8] = bytes[at..at + 8].try_into().expect("8 bytes");
            let (offset, len) = (read_u64(bytes, at + 8), read_u64(bytes, at + 16));
            let end = offset.checked_add(len).filter(|&e| e <= body as u64);
            let Some(end) = end.filter(|_| offset as usize % ALIGN == 0) else {
                return Err(format_err(format!(
                    "section {i} ({offset} + {len} bytes) is misplaced or runs past the end"
                )));
            };
            sections.push((name, offset as usize..end as usize));
        }
        Ok(Reader {
            buf: buf.clone(),
            sections,
        })
    }

    /// Every section, in file order: (name, bytes).
    pub fn sections(&self) -> Vec<(String, &[u8])> {
        self.sections
            .iter()
            .map(|(tag, range)| {
                let name = tag.split(|&b| b == 0).next().unwrap_or_default();
                (
                    String::from_utf8_lossy(name).into_owned(),
                    &self.buf[range.clone()],
                )
            })
            .collect()
    }

    fn range(&self, name: &str) -> Result<Range<usize>> {
        self.sections
            .iter()
            .find(|(tag, _)| tag.split(|&b| b == 0).next() == Some(name.as_bytes()))
            .map(|(_, range)| range.clone())
            .ok_or_else(|| format_err(format!("missing section {name:?}")))
    }

    /// True when the file has a section `name` (for sections that later writers added).
    pub fn has(&self, name: &str) -> bool {
        self.range(name).is_ok()
    }

    /// The size of the file (or nested file) in bytes.
    pub fn file_len(&self) -> usize {
        self.buf.len()
    }

    /// The bytes of section `name`.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        Ok(&self.buf[self.range(name)?])
    }

    /// Section `name` as an array of `T`, borrowed from the file's buffer (no copy).
    pub fn array<T: Pod>(&self, name: &str) -> Result<Array<T>> {
        Array::view(self.buf.slice(self.range(name)?), name)
    }

    /// Section `name` as a nested file of `T`'s kind. Its own checksum is not computed again:
    /// this file's covers its bytes.
    pub fn nested<T: Persist>(&self, name: &str) -> Result<T> {
        let inner = Reader::open(&self.buf.slice(self.range(name)?), T::KIND, false)?;
        T::from_reader(&inner)
    }

    /// Section `name` as u64 values (a copy: for small sections of fields).
    pub fn u64s(&self, name: &str) -> Result<Vec<u64>> {
        Ok(self.array::<u64>(name)?.to_vec())
    }
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

    /// A string: its length in bytes (u64), then its UTF-8 bytes.
    pub fn text(&mut self) -> Result<String> {
        let n = self.u64()?;
        let n = usize::try_from(n)
            .ok()
            .filter(|n| *n <= self.data.len() - self.at)
            .ok_or_else(|| format_err(format!("section {:?} is too short", self.section)))?;
        String::from_utf8(self.take(n)?.to_vec())
            .map_err(|_| format_err(format!("section {:?}: a string not UTF-8", self.section)))
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
    write_atomic_with(path, |f| f.write_all(bytes))
}

/// [`write_atomic`] of what `write` writes to the temporary file.
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> Result<()> {
    let io = |e: std::io::Error| io_err(path, &e);
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
        write(&mut f)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Kind::Trie);
        w.bytes("keys", b"abc".to_vec())
            .u64s("ends", [1, 3])
            .array("w", &[1.5f64, -2.0]);
        w.finish()
    }

    fn open(bytes: &[u8], kind: Kind) -> Result<Reader> {
        Reader::new(&Buffer::copy_from(bytes), kind)
    }

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xrc-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    proptest::proptest! {
        /// A file streamed section by section is, byte for byte, the file assembled in memory
        /// with every part copied in (as files were built before): owned, borrowed and nested
        /// sections of any length, padding included; and it reads back.
        #[test]
        fn a_streamed_file_is_the_assembled_file(
            sections in proptest::collection::vec(
                (0u8..3, proptest::collection::vec(proptest::num::u8::ANY, 0..40)),
                0..6,
            ),
        ) {
            let nested = |data: &[u8]| {
                let mut inner = Writer::new(Kind::Trie);
                inner.bytes("x", data.to_vec()).u64s("n", [data.len() as u64]);
                inner
            };
            let (mut streamed, mut assembled) =
                (Writer::new(Kind::Completer), Writer::new(Kind::Completer));
            for (i, (how, data)) in sections.iter().enumerate() {
                let name = format!("s{i}");
                match how {
                    0 => streamed.bytes(&name, data.clone()),
                    1 => streamed.array(&name, &data[..]),
                    _ => streamed.file(&name, nested(data)),
                };
                let copy = if *how == 2 { nested(data).finish() } else { data.clone() };
                assembled.bytes(&name, copy);
            }
            let want = assembled.finish();
            proptest::prop_assert_eq!(streamed.len(), want.len());
            proptest::prop_assert_eq!(&streamed.finish(), &want);
            let mut out = Vec::new();
            streamed.write_to(&mut out).unwrap();
            proptest::prop_assert_eq!(&out, &want);
            let r = open(&out, Kind::Completer).unwrap();
            for (i, (how, data)) in sections.iter().enumerate() {
                let section = r.bytes(&format!("s{i}")).unwrap();
                if *how == 2 {
                    let inner = open(section, Kind::Trie).unwrap();
                    proptest::prop_assert_eq!(inner.bytes("x").unwrap(), &data[..]);
                } else {
                    proptest::prop_assert_eq!(section, &data[..]);
                }
            }
        }
    }

    #[test]
    fn sections_round_trip_aligned_and_in_place() {
        let bytes = sample();
        let r = open(&bytes, Kind::Trie).unwrap();
        assert_eq!(r.bytes("keys").unwrap(), b"abc");
        assert_eq!(r.u64s("ends").unwrap(), [1, 3]);
        let w: Array<f64> = r.array("w").unwrap();
        assert_eq!(&*w, &[1.5, -2.0]);
        assert!(!w.is_mapped());
        // The array is a view of the reader's buffer, not a copy.
        let section = r.bytes("w").unwrap();
        assert_eq!(w.as_ptr() as *const u8, section.as_ptr());
        assert!(matches!(r.bytes("nope"), Err(Error::Format { .. })));
        // 3 bytes are not a whole number of u32s: an error, not a panic.
        assert!(matches!(r.array::<u32>("keys"), Err(Error::Format { .. })));
    }

    #[test]
    fn a_mapped_file_reads_as_the_same_arrays() {
        let dir = temp_dir("map");
        let path = dir.join("m.xrc");
        write_atomic(&path, &sample()).unwrap();
        let mapped = Buffer::map(&path).unwrap();
        let read = Buffer::read(&path).unwrap();
        assert!(mapped.is_mapped() && !read.is_mapped());
        assert_eq!(&*mapped, &*read);
        let r = Reader::new(&mapped, Kind::Trie).unwrap();
        let w: Array<f64> = r.array("w").unwrap();
        assert!(w.is_mapped());
        drop(r);
        drop(mapped);
        // The array keeps the map alive; clones share it.
        let copy = w.clone();
        assert_eq!(&*copy, &[1.5, -2.0]);
        for missing in [Buffer::map(&dir.join("no")), Buffer::read(&dir.join("no"))] {
            assert!(matches!(
                missing,
                Err(Error::Io {
                    not_found: true,
                    ..
                })
            ));
        }
        assert!(matches!(Buffer::map(&dir), Err(Error::Io { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_fingerprint_tells_apart_files_the_checksum_does_not() {
        // A file ending with a nested file and its CRC: its own CRC ignores the nested content.
        let file = |nested: &[u8]| {
            let mut inner = Writer::new(Kind::Trie);
            inner.bytes("keys", nested.to_vec());
            let mut outer = Writer::new(Kind::Trie);
            outer
                .bytes("head", b"same".to_vec())
                .bytes("nested", inner.finish());
            outer.finish()
        };
        let (a, b) = (file(b"abcdefgh"), file(b"abcdefgX"));
        assert_ne!(a, b);
        let tail = |x: &[u8]| x[x.len() - TRAILER..].to_vec();
        assert_eq!(
            tail(&a),
            tail(&b),
            "the CRC collides, as CRCs of this shape do"
        );
        let (fa, fb) = (Buffer::copy_from(&a), Buffer::copy_from(&b));
        assert_ne!(fa.fingerprint(), fb.fingerprint());
        assert_eq!(fa.fingerprint(), Buffer::copy_from(&a).fingerprint());
        // Pieces are combined in order and with the length.
        let big: Vec<u8> = (0..(33u32 << 20)).map(|i| (i % 251) as u8).collect();
        let mut swapped = big[16 << 20..32 << 20].to_vec();
        swapped.extend_from_slice(&big[..16 << 20]);
        swapped.extend_from_slice(&big[32 << 20..]);
        assert_ne!(
            Buffer::copy_from(&big).fingerprint(),
            Buffer::copy_from(&swapped).fingerprint()
        );
    }

    #[test]
    fn the_parallel_checksum_is_the_crc_of_the_whole() {
        let big: Vec<u8> = (0..(40u32 << 20) + 7)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        assert_eq!(checksum(&big), crc32fast::hash(&big));
        assert_eq!(checksum(b"abc"), crc32fast::hash(b"abc"));
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error() {
        let bytes = sample();
        for len in 0..bytes.len() {
            assert!(
                open(&bytes[..len], Kind::Trie).is_err(),
                "truncated to {len}"
            );
        }
        for i in 0..bytes.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = bytes.clone();
                bad[i] ^= bit;
                assert!(open(&bad, Kind::Trie).is_err(), "byte {i} flipped");
            }
        }
    }

    fn reseal(bytes: &mut [u8]) {
        let n = bytes.len() - TRAILER;
        let crc = crc32fast::hash(&bytes[..n]);
        bytes[n..].copy_from_slice(&crc.to_le_bytes());
    }

    #[test]
    fn wrong_version_kind_and_misaligned_sections_are_named() {
        let mut bytes = sample();
        assert!(matches!(
            open(&bytes, Kind::TfidfVectorizer),
            Err(Error::WrongKind { .. })
        ));
        let mut misaligned = bytes.clone();
        // The first section's offset, moved off the 8-byte grid (and resealed).
        misaligned[HEADER + 8] += 1;
        reseal(&mut misaligned);
        assert!(matches!(
            open(&misaligned, Kind::Trie),
            Err(Error::Format { .. })
        ));
        bytes[8] = 1;
        reseal(&mut bytes);
        assert_eq!(
            open(&bytes, Kind::Trie).unwrap_err(),
            Error::Version {
                expected: FORMAT_VERSION,
                got: 1
            }
        );
    }

    #[test]
    fn atomic_write_replaces_the_file_and_leaves_no_temporary() {
        let dir = temp_dir("persist");
        let path = dir.join("m.xrc");
        write_atomic(&path, b"one").unwrap();
        // A map of the old file stays valid when a new one is saved over it (a new inode).
        let old = Buffer::map(&path).unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(&*old, b"one");
        assert_eq!(&*Buffer::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        assert!(write_atomic(&dir.join("no/such/dir/m"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn errors_of_a_model_file_name_the_file() {
        let dir = temp_dir("named");
        let path = dir.join("short.xrc");
        std::fs::write(&path, b"too short").unwrap();
        for err in [
            crate::Trie::load(&path).unwrap_err(),
            crate::Trie::load_mmap(&path).unwrap_err(),
        ] {
            assert!(
                err.to_string()
                    .starts_with(&format!("{}: ", path.display())),
                "{err}"
            );
            assert!(matches!(err.cause(), Error::Format { .. }), "{err:?}");
        }
        let mut versioned = sample();
        versioned[8] = 1;
        reseal(&mut versioned);
        std::fs::write(&path, &versioned).unwrap();
        let err = crate::Trie::load(&path).unwrap_err();
        assert!(
            err.to_string()
                .contains("short.xrc: model file format version 1"),
            "{err}"
        );
        // Bytes have no file to name; the error is the plain one.
        assert!(matches!(
            crate::Trie::from_bytes(b"too short"),
            Err(Error::Format { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
