//! The model being served, and its replacement without a failed request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use xrcomplete_core::persist::{Buffer, Persist};
use xrcomplete_core::qac::{Blocklist, Completer};
use xrcomplete_core::retrieval::ProductRetriever;

use crate::metrics::Metrics;

/// A loaded completer and what the server reports about it.
#[derive(Debug)]
pub struct Served {
    /// The completer, read from its file into the server's own memory.
    pub completer: Completer,
    /// A fingerprint of its file in hex: the same content always has the same id.
    pub id: String,
    /// Seconds it took to read and check the file (and the retriever's).
    pub load_seconds: f64,
    /// The product retriever served beside it (`--products`), loaded and reloaded with it.
    pub products: Option<ServedProducts>,
}

/// A loaded product retriever and its id.
#[derive(Debug)]
pub struct ServedProducts {
    /// The retriever, read from its file into the server's own memory (as the completer is).
    pub retriever: ProductRetriever,
    /// A fingerprint of its file in hex.
    pub id: String,
}

impl Served {
    /// Reads the completer saved at `path` and checks it (checksum, kind, bounds). Read, not
    /// mapped: a map shares the file's pages, so a file overwritten in place (`cp`, `rsync
    /// --inplace`) would change under the served model and a truncated one would kill the
    /// process (SIGBUS) at the next request; a copy of its own cannot be changed by anyone.
    /// A file changed while it is read fails its checksum and is refused. With `products`,
    /// the product retriever saved there is read the same way: both are served, or neither.
    pub fn load(path: &Path, products: Option<&Path>) -> xrcomplete_core::Result<Self> {
        let start = Instant::now();
        let buf = Buffer::read(path)?;
        let completer = Completer::from_buffer(&buf).map_err(|e| e.in_file(path))?;
        let id = format!("{:016x}", buf.fingerprint());
        let products = products
            .map(|path| {
                let buf = Buffer::read(path)?;
                Ok::<_, xrcomplete_core::Error>(ServedProducts {
                    retriever: ProductRetriever::from_buffer(&buf).map_err(|e| e.in_file(path))?,
                    id: format!("{:016x}", buf.fingerprint()),
                })
            })
            .transpose()?;
        Ok(Served {
            completer,
            id,
            load_seconds: start.elapsed().as_secs_f64(),
            products,
        })
    }
}

/// The model slot: requests take the current model with one atomic load, and a reload swaps in a
/// new one once it is loaded and checked. A request that started on the old model finishes on it
/// (it holds an `Arc`); the old model is freed when the last such request ends.
#[derive(Debug)]
pub struct ModelSlot {
    path: PathBuf,
    /// The product retriever's file, served beside the completer.
    products: Option<PathBuf>,
    current: ArcSwap<Served>,
    /// One reload at a time (a second waits, then loads the file as it is then).
    reloading: std::sync::Mutex<()>,
    /// The run-time blocklist (`--blocklist`): applied to every model served, the file
    /// rewritten before an edit is acknowledged. Its lock also orders edits against reloads.
    blocklist: Option<std::sync::Mutex<BlocklistFile>>,
}

/// Blocklist edits made at run time, kept in a file: one term per line, blocked, or unblocked
/// when the line starts with `!` (a term the model file blocks); blank lines and lines starting
/// with `#` are ignored. Terms are normalised as the model's blocklist normalises them.
#[derive(Debug)]
pub struct BlocklistFile {
    path: PathBuf,
    /// Normalised term -> blocked (true) or unblocked (false), in the file's order.
    edits: Vec<(String, bool)>,
}

impl BlocklistFile {
    /// Reads the file at `path`; a missing file is an empty list (created at the first edit).
    pub fn open(path: PathBuf) -> xrcomplete_core::Result<Self> {
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(xrcomplete_core::Error::Io {
                    path: path.display().to_string(),
                    message: e.to_string(),
                    not_found: false,
                })
            }
        };
        let mut file = BlocklistFile {
            path,
            edits: Vec::new(),
        };
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (term, blocked) = match line.strip_prefix('!') {
                Some(term) => (term, false),
                None => (line, true),
            };
            let term = Blocklist::normalize(term).map_err(|e| {
                xrcomplete_core::Error::InvalidInput(format!(
                    "{}:{}: {e}",
                    file.path.display(),
                    i + 1
                ))
            })?;
            file.set(term, blocked);
        }
        Ok(file)
    }

    fn set(&mut self, term: String, blocked: bool) {
        self.edits.retain(|(t, _)| *t != term);
        self.edits.push((term, blocked));
    }

    /// Applies the edits to `completer`'s blocklist.
    fn apply(&self, completer: &Completer) -> xrcomplete_core::Result<()> {
        let terms = |blocked: bool| -> Vec<&str> {
            self.edits
                .iter()
                .filter(|e| e.1 == blocked)
                .map(|e| e.0.as_str())
                .collect()
        };
        completer.unblock(&terms(false))?;
        completer.block(&terms(true))?;
        Ok(())
    }

    /// Writes the file whole: a temporary file, synced, renamed over it, the folder synced.
    fn save(&self) -> std::io::Result<()> {
        use std::io::Write;
        let mut text = String::from(
            "# xrcomplete serve --blocklist: terms blocked at run time; !term unblocks\n",
        );
        for (term, blocked) in &self.edits {
            text.push_str(if *blocked { "" } else { "!" });
            text.push_str(term);
            text.push('\n');
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        let folder = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(folder)?.sync_all()
    }
}

/// What a blocklist edit did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlocklistEdit {
    /// Terms newly blocked.
    pub added: usize,
    /// Terms that were blocked and no longer are.
    pub removed: usize,
    /// Every term blocked now, normalised, sorted.
    pub blocked: Vec<String>,
}

/// Why a blocklist edit was refused.
#[derive(Debug)]
pub enum BlocklistError {
    /// The server was started without `--blocklist`.
    NoFile,
    /// A term could block nothing (or is too long).
    BadTerm(String),
    /// The file could not be written: nothing changed.
    Io(std::io::Error),
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq)]
pub struct Reloaded {
    /// The id of the model now served.
    pub id: String,
    /// The id of the model served before.
    pub previous: String,
    /// Seconds it took to load and check the new file.
    pub load_seconds: f64,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl ModelSlot {
    /// Loads the model at `path` (an error if it is missing or bad), with the run-time
    /// blocklist kept in `blocklist` (an error if that file is unreadable or holds a bad term).
    pub fn open(
        path: PathBuf,
        products: Option<PathBuf>,
        blocklist: Option<PathBuf>,
        metrics: &Metrics,
    ) -> xrcomplete_core::Result<Self> {
        let served = Served::load(&path, products.as_deref())?;
        let blocklist = blocklist.map(BlocklistFile::open).transpose()?;
        if let Some(b) = &blocklist {
            b.apply(&served.completer)?;
        }
        metrics.model_loaded(&served.id, served.load_seconds, unix_now());
        Ok(ModelSlot {
            path,
            products,
            current: ArcSwap::from_pointee(served),
            reloading: std::sync::Mutex::new(()),
            blocklist: blocklist.map(std::sync::Mutex::new),
        })
    }

    fn blocklist_file(&self) -> Option<std::sync::MutexGuard<'_, BlocklistFile>> {
        self.blocklist
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// The terms blocked now (the model's own and the run-time edits), normalised, sorted.
    pub fn blocked(&self) -> Vec<String> {
        let model = self.current();
        let terms = model.completer.blocklist();
        terms.terms().map(str::to_owned).collect()
    }

    /// Blocks `block` and unblocks `unblock` (in that order: a term in both ends unblocked):
    /// the file is rewritten first, then the model served changes. Blocking (it syncs a file).
    pub fn edit_blocklist(
        &self,
        block: &[String],
        unblock: &[String],
    ) -> Result<BlocklistEdit, BlocklistError> {
        let mut file = self.blocklist_file().ok_or(BlocklistError::NoFile)?;
        let normalise = |terms: &[String]| -> Result<Vec<String>, BlocklistError> {
            terms
                .iter()
                .map(|t| {
                    Blocklist::normalize(t).map_err(|e| BlocklistError::BadTerm(e.to_string()))
                })
                .collect()
        };
        let (block, unblock) = (normalise(block)?, normalise(unblock)?);
        let before = file.edits.clone();
        for t in &block {
            file.set(t.clone(), true);
        }
        for t in &unblock {
            file.set(t.clone(), false);
        }
        if let Err(e) = file.save() {
            file.edits = before;
            return Err(BlocklistError::Io(e));
        }
        let model = self.current();
        let blocked_before: std::collections::BTreeSet<String> = model
            .completer
            .blocklist()
            .terms()
            .map(str::to_owned)
            .collect();
        // Checked above: every term is normalised, so neither call can fail.
        let _ = model.completer.block(&block);
        let _ = model.completer.unblock(&unblock);
        let blocked: Vec<String> = model
            .completer
            .blocklist()
            .terms()
            .map(str::to_owned)
            .collect();
        Ok(BlocklistEdit {
            added: blocked
                .iter()
                .filter(|t| !blocked_before.contains(*t))
                .count(),
            removed: blocked_before
                .iter()
                .filter(|t| blocked.binary_search(t).is_err())
                .count(),
            blocked,
        })
    }

    /// The model to answer one request with.
    pub fn current(&self) -> Arc<Served> {
        self.current.load_full()
    }

    /// Loads the file again (and the product retriever's) and serves it if it is a good
    /// completer (and that a good retriever); otherwise the error, and the old model serves on. Blocking (it reads the whole file): call it off the async
    /// workers.
    pub fn reload(&self, metrics: &Metrics) -> xrcomplete_core::Result<Reloaded> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let loaded = Served::load(&self.path, self.products.as_deref())
            .map(|served| (served, self.blocklist_file()));
        match loaded {
            Ok((served, blocklist)) => {
                // Under the blocklist's lock: an edit lands before the swap (and is applied
                // here) or after it (and is applied to the new model).
                if let Some(b) = &blocklist {
                    if let Err(err) = b.apply(&served.completer) {
                        metrics.reload(false);
                        return Err(err);
                    }
                }
                let (id, load_seconds) = (served.id.clone(), served.load_seconds);
                let previous = self.current.swap(Arc::new(served)).id.clone();
                metrics.model_loaded(&id, load_seconds, unix_now());
                metrics.reload(true);
                Ok(Reloaded {
                    id,
                    previous,
                    load_seconds,
                })
            }
            Err(err) => {
                metrics.reload(false);
                Err(err)
            }
        }
    }
}
