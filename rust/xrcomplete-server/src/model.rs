//! The model being served, and its replacement without a failed request.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use xrcomplete_core::persist::{Buffer, Persist};
use xrcomplete_core::qac::Completer;

use crate::metrics::Metrics;

/// A loaded completer and what the server reports about it.
#[derive(Debug)]
pub struct Served {
    /// The completer, mapped from its file.
    pub completer: Completer,
    /// A fingerprint of its file in hex: the same content always has the same id.
    pub id: String,
    /// Seconds it took to map and check the file.
    pub load_seconds: f64,
}

impl Served {
    /// Maps the completer saved at `path` and checks it (checksum, kind, bounds).
    pub fn load(path: &Path) -> xrcomplete_core::Result<Self> {
        let start = Instant::now();
        let buf = Buffer::map(path)?;
        let completer = Completer::from_buffer(&buf).map_err(|e| e.in_file(path))?;
        let id = format!("{:016x}", buf.fingerprint());
        Ok(Served {
            completer,
            id,
            load_seconds: start.elapsed().as_secs_f64(),
        })
    }
}

/// The model slot: requests take the current model with one atomic load, and a reload swaps in a
/// new one once it is loaded and checked. A request that started on the old model finishes on it
/// (it holds an `Arc`); the old model is freed when the last such request ends.
#[derive(Debug)]
pub struct ModelSlot {
    path: PathBuf,
    current: ArcSwap<Served>,
    /// One reload at a time (a second waits, then loads the file as it is then).
    reloading: std::sync::Mutex<()>,
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
    /// Loads the model at `path` (an error if it is missing or bad).
    pub fn open(path: PathBuf, metrics: &Metrics) -> xrcomplete_core::Result<Self> {
        let served = Served::load(&path)?;
        metrics.model_loaded(&served.id, served.load_seconds, unix_now());
        Ok(ModelSlot {
            path,
            current: ArcSwap::from_pointee(served),
            reloading: std::sync::Mutex::new(()),
        })
    }

    /// The model to answer one request with.
    pub fn current(&self) -> Arc<Served> {
        self.current.load_full()
    }

    /// Loads the file again and serves it if it is a good completer; otherwise the error, and
    /// the old model serves on. Blocking (it reads the whole file): call it off the async
    /// workers.
    pub fn reload(&self, metrics: &Metrics) -> xrcomplete_core::Result<Reloaded> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match Served::load(&self.path) {
            Ok(served) => {
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
