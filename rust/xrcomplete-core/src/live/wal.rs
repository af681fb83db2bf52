//! The write-ahead log of recorded searches: every accepted search is appended before it is
//! acknowledged, and replayed at start.
//!
//! ```text
//! 0   magic b"XRCEVENT"   8  version (u32 LE)   12  reserved, 0
//! 16  records: payload length (u32 LE) | CRC-32 of the length and payload (u32 LE) | payload
//!     payload: time (f64 LE) | count (f64 LE) | client (u64 LE, 0: trusted) |
//!              query length (u32 LE) | query | previous query
//! ```
//! Version 1 (no client) is read as trusted searches; a log of version 1 opened for appending
//! is first rewritten as version 2.
//! Replay reads records until the end. A record that fails its checksum (a flipped byte, a
//! torn write) is skipped and counted: the reader scans forward byte by byte for the next
//! record whose length and checksum hold, so no good record after it is lost. Bytes at the end
//! that hold no whole good record (a torn last append) are counted and cut off, so that new
//! appends follow good data. A file that is not an event log is refused, never overwritten.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::Search;
use crate::error::{Error, Result};

const MAGIC: &[u8; 8] = b"XRCEVENT";
const VERSION: u32 = 2;
/// Bytes of a payload before the query.
const FIXED: usize = 28;
const HEADER: usize = 16;
/// Length and checksum before each payload.
const RECORD_HEAD: usize = 8;
/// The largest payload read back (a query and its previous query are far smaller).
const MAX_PAYLOAD: usize = 1 << 20;

/// When appended records reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `fsync` (fdatasync) after every append, before it returns: a search acknowledged
    /// survives a power cut. Concurrent appends share their syncs.
    Always,
    /// Written to the operating system before the append returns (a search acknowledged
    /// survives the process being killed), synced when the system chooses.
    Never,
}

/// What a replay found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Replay {
    /// The good records, in file order.
    pub searches: Vec<Search>,
    /// Damaged stretches skipped between good records.
    pub skipped: u64,
    /// Bytes cut off the end (a torn last append), 0 when the file ended cleanly.
    pub truncated_bytes: u64,
}

/// An open event log, appended to by many threads.
#[derive(Debug)]
pub struct EventLog {
    path: PathBuf,
    file: Mutex<File>,
    sync: SyncPolicy,
}

fn io_err(path: &Path, e: &std::io::Error) -> Error {
    Error::Io {
        path: path.display().to_string(),
        message: e.to_string(),
        not_found: e.kind() == std::io::ErrorKind::NotFound,
    }
}

fn header() -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..8].copy_from_slice(MAGIC);
    h[8..12].copy_from_slice(&VERSION.to_le_bytes());
    h
}

/// The bytes of one record.
pub fn encode(s: &Search, out: &mut Vec<u8>) -> Result<()> {
    let payload_len = FIXED + s.query.len() + s.prev.len();
    if payload_len > MAX_PAYLOAD {
        return Err(Error::TooLarge {
            what: "an event record",
            got: payload_len as u64,
            limit: MAX_PAYLOAD as u64,
        });
    }
    let start = out.len();
    out.extend_from_slice(&(payload_len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&s.time.to_le_bytes());
    out.extend_from_slice(&s.count.to_le_bytes());
    out.extend_from_slice(&s.client.unwrap_or(0).to_le_bytes());
    out.extend_from_slice(&(s.query.len() as u32).to_le_bytes());
    out.extend_from_slice(s.query.as_bytes());
    out.extend_from_slice(s.prev.as_bytes());
    let mut crc = crc32fast::Hasher::new();
    crc.update(&out[start..start + 4]);
    crc.update(&out[start + RECORD_HEAD..]);
    out[start + 4..start + 8].copy_from_slice(&crc.finalize().to_le_bytes());
    Ok(())
}

/// The record (of a log of `version`) at the start of `bytes` and its size, if it is whole
/// and good.
fn decode(bytes: &[u8], version: u32) -> Option<(Search, usize)> {
    let fixed = if version == 1 { 20 } else { FIXED };
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    if !(fixed..=MAX_PAYLOAD).contains(&len) {
        return None;
    }
    let stored = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    let payload = bytes.get(RECORD_HEAD..RECORD_HEAD + len)?;
    let mut crc = crc32fast::Hasher::new();
    crc.update(&bytes[..4]);
    crc.update(payload);
    if crc.finalize() != stored {
        return None;
    }
    let f64_at = |i: usize| f64::from_le_bytes(payload[i..i + 8].try_into().expect("8 bytes"));
    let (time, count) = (f64_at(0), f64_at(8));
    let client = match version {
        1 => None,
        _ => Some(u64::from_le_bytes(
            payload[16..24].try_into().expect("8 bytes"),
        ))
        .filter(|&c| c != 0),
    };
    let qlen = u32::from_le_bytes(payload[fixed - 4..fixed].try_into().expect("4 bytes")) as usize;
    let query = std::str::from_utf8(payload.get(fixed..fixed + qlen)?).ok()?;
    let prev = std::str::from_utf8(payload.get(fixed + qlen..)?).ok()?;
    let search = Search {
        query: query.to_owned(),
        prev: prev.to_owned(),
        count,
        time,
        client,
    };
    Some((search, RECORD_HEAD + len))
}

/// Reads the records of a log's bytes (after the header): see the module documentation.
fn replay_bytes(body: &[u8], version: u32) -> (Replay, usize) {
    let decode = |bytes: &[u8]| decode(bytes, version);
    let mut replay = Replay::default();
    let mut at = 0;
    let mut good_end = 0;
    while at < body.len() {
        if let Some((search, size)) = decode(&body[at..]) {
            replay.searches.push(search);
            at += size;
            good_end = at;
            continue;
        }
        // Damaged: the next good record, if any.
        match (at + 1..body.len()).find(|&p| decode(&body[p..]).is_some()) {
            Some(next) => {
                replay.skipped += 1;
                at = next;
            }
            None => break,
        }
    }
    replay.truncated_bytes = (body.len() - good_end) as u64;
    (replay, good_end)
}

impl EventLog {
    /// Opens the log at `path` (created when missing or empty), replays it and cuts off a torn
    /// end. A file of another kind is an error.
    pub fn open(path: &Path, sync: SyncPolicy) -> Result<(EventLog, Replay)> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| io_err(path, &e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(|e| io_err(path, &e))?;
        let head = header();
        let replay = if bytes.len() < HEADER && head.starts_with(&bytes) {
            // New, empty, or its header torn: start it.
            file.set_len(0).map_err(|e| io_err(path, &e))?;
            file.seek(SeekFrom::Start(0))
                .map_err(|e| io_err(path, &e))?;
            file.write_all(&head).map_err(|e| io_err(path, &e))?;
            file.sync_all().map_err(|e| io_err(path, &e))?;
            Replay::default()
        } else if bytes.len() < HEADER || bytes[..8] != *MAGIC {
            return Err(Error::InFile {
                path: path.display().to_string(),
                source: Box::new(Error::Format {
                    what: "not an xrcomplete event log (the magic bytes differ); refusing to \
                           append to it"
                        .into(),
                }),
            });
        } else {
            let version = file_version(&bytes).map_err(|e| e.in_file(path))?;
            let (replay, good_end) = replay_bytes(&bytes[HEADER..], version);
            if version != VERSION {
                // Rewritten whole in this version, so that appends follow records alike.
                let mut fresh = head.to_vec();
                for s in &replay.searches {
                    encode(s, &mut fresh)?;
                }
                crate::persist::write_atomic(path, &fresh)?;
                file = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .open(path)
                    .map_err(|e| io_err(path, &e))?;
            } else if replay.truncated_bytes > 0 {
                file.set_len((HEADER + good_end) as u64)
                    .map_err(|e| io_err(path, &e))?;
                file.sync_all().map_err(|e| io_err(path, &e))?;
            }
            replay
        };
        file.seek(SeekFrom::End(0)).map_err(|e| io_err(path, &e))?;
        Ok((
            EventLog {
                path: path.to_owned(),
                file: Mutex::new(file),
                sync,
            },
            replay,
        ))
    }

    /// The open file (a poisoned lock still holds a good file: each write is one call).
    fn file(&self) -> std::sync::MutexGuard<'_, File> {
        self.file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends `searches` (one write), then syncs them when the policy says so. Once this
    /// returns they are in the log. `written` runs once they are written, still under the
    /// log's lock (so that it and [`EventLog::rewrite`] see the same order of searches).
    pub fn append(&self, searches: &[Search], written: impl FnOnce()) -> Result<()> {
        let mut bytes = Vec::new();
        for s in searches {
            encode(s, &mut bytes)?;
        }
        let synced = {
            let mut file = self.file();
            file.write_all(&bytes).map_err(|e| io_err(&self.path, &e))?;
            written();
            match self.sync {
                // Synced outside the lock: appends that wait for it meanwhile share the sync.
                SyncPolicy::Always => Some(file.try_clone().map_err(|e| io_err(&self.path, &e))?),
                SyncPolicy::Never => None,
            }
        };
        if let Some(file) = synced {
            file.sync_data().map_err(|e| io_err(&self.path, &e))?;
        }
        Ok(())
    }

    /// Keeps only the searches for which `keep(index, search)` holds (e.g. those not yet folded
    /// into a model): the log is rewritten to a new file renamed over it, under the log's lock;
    /// `kept` then runs with the searches kept, still under the lock.
    pub fn rewrite(
        &self,
        keep: impl Fn(usize, &Search) -> bool,
        kept: impl FnOnce(&[Search]),
    ) -> Result<()> {
        let mut file = self.file();
        let replay = read_log(&self.path)?;
        let searches: Vec<Search> = replay
            .searches
            .into_iter()
            .enumerate()
            .filter(|(i, s)| keep(*i, s))
            .map(|(_, s)| s)
            .collect();
        let mut bytes = header().to_vec();
        for s in &searches {
            encode(s, &mut bytes)?;
        }
        crate::persist::write_atomic(&self.path, &bytes)?;
        let mut fresh = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.path)
            .map_err(|e| io_err(&self.path, &e))?;
        fresh
            .seek(SeekFrom::End(0))
            .map_err(|e| io_err(&self.path, &e))?;
        *file = fresh;
        kept(&searches);
        Ok(())
    }
}

/// The version of a log's bytes (with a whole header and the magic bytes): 1 or 2.
fn file_version(bytes: &[u8]) -> Result<u32> {
    let got = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    match got {
        1 | VERSION => Ok(got),
        _ => Err(Error::Version {
            expected: VERSION,
            got,
        }),
    }
}

/// Reads the searches of the log at `path` without changing it (for folding into a model).
pub fn read_log(path: &Path) -> Result<Replay> {
    let bytes = std::fs::read(path).map_err(|e| io_err(path, &e))?;
    if bytes.len() < HEADER || bytes[..8] != *MAGIC {
        return Err(Error::Format {
            what: "not an xrcomplete event log (the magic bytes differ)".into(),
        }
        .in_file(path));
    }
    let version = file_version(&bytes).map_err(|e| e.in_file(path))?;
    Ok(replay_bytes(&bytes[HEADER..], version).0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::client_id;
    use proptest::prelude::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xrc-wal-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn searches(n: usize) -> Vec<Search> {
        (0..n)
            .map(|i| Search {
                query: format!("query {i} é"),
                prev: if i % 3 == 0 {
                    String::new()
                } else {
                    format!("prev {i}")
                },
                count: 1.0 + (i % 4) as f64,
                time: 1e9 + i as f64,
                client: (i % 2 == 0).then_some(client_id(&format!("c{i}"))),
            })
            .collect()
    }

    fn write_log(path: &Path, all: &[Search]) {
        let (log, replay) = EventLog::open(path, SyncPolicy::Never).unwrap();
        assert!(replay.searches.is_empty());
        for chunk in all.chunks(7) {
            log.append(chunk, || ()).unwrap();
        }
    }

    #[test]
    fn appended_searches_replay_in_order() {
        let d = dir("order");
        let path = d.join("events.log");
        let all = searches(100);
        write_log(&path, &all);
        let (log, replay) = EventLog::open(&path, SyncPolicy::Always).unwrap();
        assert_eq!(replay.searches, all);
        assert_eq!((replay.skipped, replay.truncated_bytes), (0, 0));
        log.append(&searches(1), || ()).unwrap();
        // Keep the odd ones: the log then holds them, and appends follow them.
        let mut seen = Vec::new();
        log.rewrite(|i, _| i % 2 == 1, |kept| seen = kept.to_vec())
            .unwrap();
        let odd: Vec<Search> = all.iter().skip(1).step_by(2).cloned().collect();
        assert_eq!(seen, odd);
        log.append(&all[..1], || ()).unwrap();
        drop(log);
        let mut want = odd;
        want.push(all[0].clone());
        assert_eq!(read_log(&path).unwrap().searches, want);
        let (log, _) = EventLog::open(&path, SyncPolicy::Never).unwrap();
        log.rewrite(|_, _| false, |kept| assert!(kept.is_empty()))
            .unwrap();
        drop(log);
        assert!(read_log(&path).unwrap().searches.is_empty());
    }

    #[test]
    fn a_torn_tail_is_cut_and_counted_and_earlier_records_kept() {
        let d = dir("torn");
        let path = d.join("events.log");
        let all = searches(20);
        write_log(&path, &all);
        let full = std::fs::read(&path).unwrap();
        let mut one = Vec::new();
        encode(&all[19], &mut one).unwrap();
        // Every cut inside the last record.
        for cut in 1..one.len() {
            std::fs::write(&path, &full[..full.len() - cut]).unwrap();
            let (log, replay) = EventLog::open(&path, SyncPolicy::Never).unwrap();
            assert_eq!(replay.searches, all[..19], "cut {cut}");
            assert_eq!(replay.truncated_bytes, (one.len() - cut) as u64);
            // New appends follow the good records.
            log.append(&all[19..], || ()).unwrap();
            drop(log);
            assert_eq!(read_log(&path).unwrap().searches, all);
        }
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let d = dir("flip");
        let path = d.join("events.log");
        let all = searches(30);
        write_log(&path, &all);
        let full = std::fs::read(&path).unwrap();
        let sizes: Vec<usize> = all
            .iter()
            .map(|s| {
                let mut b = Vec::new();
                encode(s, &mut b).unwrap();
                b.len()
            })
            .collect();
        let start: usize = HEADER + sizes[..10].iter().sum::<usize>();
        for offset in 0..sizes[10] {
            let mut bad = full.clone();
            bad[start + offset] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            let (_, replay) = EventLog::open(&path, SyncPolicy::Never).unwrap();
            let mut want = all.clone();
            want.remove(10);
            assert_eq!(replay.searches, want, "byte {offset}");
            assert_eq!((replay.skipped, replay.truncated_bytes), (1, 0));
        }
    }

    #[test]
    fn empty_torn_header_and_foreign_files() {
        let d = dir("kinds");
        let path = d.join("events.log");
        for start in [&b""[..], &header()[..5]] {
            std::fs::write(&path, start).unwrap();
            let (log, replay) = EventLog::open(&path, SyncPolicy::Never).unwrap();
            assert!(replay.searches.is_empty());
            log.append(&searches(2), || ()).unwrap();
            drop(log);
            assert_eq!(read_log(&path).unwrap().searches.len(), 2);
        }
        let foreign = b"AnonID\tQuery\tQueryTime\n1\ta\t2006-03-01 00:00:00\n";
        std::fs::write(&path, foreign).unwrap();
        let err = EventLog::open(&path, SyncPolicy::Never).unwrap_err();
        assert!(
            err.to_string().contains("not an xrcomplete event log"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), foreign, "left as it was");
        let mut other = header().to_vec();
        other[8] = 9;
        std::fs::write(&path, &other).unwrap();
        assert!(matches!(
            EventLog::open(&path, SyncPolicy::Never)
                .unwrap_err()
                .cause(),
            Error::Version { got: 9, .. }
        ));
    }

    #[test]
    fn a_log_of_version_1_replays_as_trusted_and_is_rewritten() {
        let d = dir("v1");
        let path = d.join("events.log");
        let mut bytes = header().to_vec();
        bytes[8..12].copy_from_slice(&1u32.to_le_bytes());
        let old: Vec<Search> = searches(5)
            .into_iter()
            .map(|s| Search { client: None, ..s })
            .collect();
        for s in &old {
            // Version 1's payload: no client.
            let mut payload = Vec::new();
            payload.extend_from_slice(&s.time.to_le_bytes());
            payload.extend_from_slice(&s.count.to_le_bytes());
            payload.extend_from_slice(&(s.query.len() as u32).to_le_bytes());
            payload.extend_from_slice(s.query.as_bytes());
            payload.extend_from_slice(s.prev.as_bytes());
            let len = (payload.len() as u32).to_le_bytes();
            let mut crc = crc32fast::Hasher::new();
            crc.update(&len);
            crc.update(&payload);
            bytes.extend_from_slice(&len);
            bytes.extend_from_slice(&crc.finalize().to_le_bytes());
            bytes.extend_from_slice(&payload);
        }
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(read_log(&path).unwrap().searches, old);
        let (log, replay) = EventLog::open(&path, SyncPolicy::Never).unwrap();
        assert_eq!(replay.searches, old);
        let new = searches(2);
        log.append(&new, || ()).unwrap();
        drop(log);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes[8..12], VERSION.to_le_bytes());
        let all: Vec<Search> = old.into_iter().chain(new).collect();
        assert_eq!(read_log(&path).unwrap().searches, all);
        assert!(all.iter().any(|s| s.client == Some(client_id("c0"))));
    }

    proptest! {
        /// Any damage to any bytes after the header: replay never panics, and returns the
        /// records in order, every one an original (a subsequence of what was written).
        #[test]
        fn damage_never_panics_and_never_invents(
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
            cut in any::<prop::sample::Index>(),
        ) {
            let all = searches(12);
            let mut bytes = Vec::new();
            for s in &all {
                encode(s, &mut bytes).unwrap();
            }
            for (at, x) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            let bytes = &bytes[..cut.index(bytes.len() + 1)];
            let (replay, good_end) = replay_bytes(bytes, VERSION);
            prop_assert!(good_end <= bytes.len());
            let mut rest = all.iter();
            for s in &replay.searches {
                prop_assert!(rest.any(|o| o == s), "not an original, or out of order");
            }
        }
    }
}
