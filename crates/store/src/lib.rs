//! shoal's per-node stripe store: one LRU pool of stripe files under a byte
//! budget.
//!
//! - **Budget.** Admitted stripes plus space reserved for stripes being
//!   written never exceed the budget. A reservation evicts least recently
//!   used stripes to make room, and fails with [`StoreError::Full`] when
//!   only stripes with active readers are left.
//! - **Readers are safe.** A [`Lease`] holds an open file and pins its
//!   entry: eviction skips pinned entries, and a lease's file stays
//!   readable whatever happens to the index.
//! - **Crash safe.** A stripe is written to `tmp/`, synced, and renamed into
//!   `data/` only when complete and verified ([`Store::commit`]). The file
//!   name carries the key and the checksum, so [`Store::open`] rebuilds the
//!   index from names and sizes alone, and deletes whatever is in `tmp/`
//!   or does not parse.
//!
//! Every method does blocking file I/O; async callers run them on a
//! blocking thread (`tokio::task::spawn_blocking`).

mod budget;
mod names;

pub use budget::{Budget, parse_size};

use hashlink::LinkedHashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

/// A stripe's identity in the store (for shoal: a BLAKE3 of the object
/// identity, stripe size and index). Only its hex form reaches the disk,
/// so no key can name a path outside the store.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord)]
pub struct EntryKey(pub [u8; 32]);

/// A stripe's BLAKE3 checksum, recorded when it was admitted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Checksum(pub [u8; 32]);

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No room: the stripe is larger than the budget, or everything that
    /// could be evicted has active readers.
    #[error("store full: need {need} bytes, budget {budget}, {pinned} bytes pinned by readers")]
    Full {
        /// Bytes asked for.
        need: u64,
        /// The store's budget.
        budget: u64,
        /// Bytes held by entries with active readers.
        pinned: u64,
    },
    /// A file had a different length than promised.
    #[error("stripe length mismatch: expected {expected} bytes, wrote {actual}")]
    Length {
        /// Bytes promised at reservation.
        expected: u64,
        /// Bytes in the file.
        actual: u64,
    },
    /// The budget could not be resolved (bad percentage, statvfs failed).
    #[error("store budget: {0}")]
    Budget(String),
    /// An I/O error, with what was being done.
    #[error("store {what} {path}: {source}")]
    Io {
        /// The operation.
        what: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// A point-in-time view of the store's accounting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// The byte budget.
    pub budget: u64,
    /// Bytes of admitted stripes.
    pub committed: u64,
    /// Bytes reserved for stripes being written.
    pub reserved: u64,
    /// Admitted stripes.
    pub entries: u64,
    /// Stripes evicted since open.
    pub evictions: u64,
    /// Lookups that found the stripe.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
}

struct Entry {
    len: u64,
    checksum: Checksum,
    /// Strong count above one means leases are out.
    pins: Arc<()>,
}

#[derive(Default)]
struct State {
    lru: LinkedHashMap<EntryKey, Entry>,
    committed: u64,
    reserved: u64,
    evictions: u64,
    hits: u64,
    misses: u64,
}

struct Inner {
    data: PathBuf,
    tmp: PathBuf,
    budget: u64,
    state: Mutex<State>,
    seq: AtomicU64,
}

/// The store; cheap to clone, shared by every request on the node.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// An open, pinned, admitted stripe.
pub struct Lease {
    /// The stripe's file, opened for reading.
    pub file: File,
    /// Its length in bytes.
    pub len: u64,
    /// The checksum recorded when it was admitted.
    pub checksum: Checksum,
    key: EntryKey,
    _pin: Arc<()>,
}

impl Lease {
    /// The stripe's key.
    pub fn key(&self) -> EntryKey {
        self.key
    }
}

/// Room reserved for one stripe being written to a temporary file. Drop it
/// without [`Store::commit`] and the file is deleted and the room released.
pub struct Pending {
    store: Store,
    key: EntryKey,
    len: u64,
    path: PathBuf,
    file: File,
    accounted: bool,
}

impl Pending {
    /// The temporary file, open for reading and writing.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The stripe's key.
    pub fn key(&self) -> EntryKey {
        self.key
    }

    /// Bytes reserved.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the reservation is for an empty stripe.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether this file counts against the budget (a reservation) or is
    /// scratch space for relaying a stripe the store could not take.
    pub fn is_reserved(&self) -> bool {
        self.accounted
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
        if self.accounted {
            let mut st = self.store.lock();
            st.reserved = st.reserved.saturating_sub(self.len);
        }
    }
}

impl Store {
    /// Opens (or creates) the store in `dir` with the given budget,
    /// deletes leftovers and rebuilds the index, oldest first.
    pub fn open(dir: &Path, budget: Budget) -> Result<Store, StoreError> {
        let data = dir.join("data");
        let tmp = dir.join("tmp");
        for d in [&data, &tmp] {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        let budget = budget.resolve(dir)?;
        names::clear_dir(&tmp)?;
        let mut found = names::scan(&data)?;
        found.sort_by_key(|f| (f.modified, f.key));
        let store = Store {
            inner: Arc::new(Inner {
                data,
                tmp,
                budget,
                state: Mutex::new(State::default()),
                seq: AtomicU64::new(0),
            }),
        };
        {
            let mut st = store.lock();
            for f in found {
                st.committed += f.len;
                st.lru.insert(
                    f.key,
                    Entry {
                        len: f.len,
                        checksum: f.checksum,
                        pins: Arc::new(()),
                    },
                );
            }
            // A smaller budget than last time: shed the oldest.
            store.evict_until(&mut st, 0)?;
            tracing::info!(
                entries = st.lru.len(),
                bytes = st.committed,
                budget,
                "store opened"
            );
        }
        Ok(store)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters (every
        // update is a single statement), so a poisoned lock is still usable.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The stripe `key`, opened and pinned, or `None`. A hit makes it the
    /// most recently used.
    pub fn get(&self, key: &EntryKey) -> Result<Option<Lease>, StoreError> {
        let mut st = self.lock();
        let Some(entry) = st.lru.to_back(key) else {
            st.misses += 1;
            return Ok(None);
        };
        let (len, checksum, pin) = (entry.len, entry.checksum, entry.pins.clone());
        let path = self.data_path(key, &checksum);
        match File::open(&path) {
            Ok(file) => {
                st.hits += 1;
                Ok(Some(Lease {
                    file,
                    len,
                    checksum,
                    key: *key,
                    _pin: pin,
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Deleted behind our back: forget it.
                tracing::warn!(path = %path.display(), "stripe file vanished; dropping it from the index");
                if let Some(gone) = st.lru.remove(key) {
                    st.committed -= gone.len;
                }
                st.misses += 1;
                Ok(None)
            }
            Err(e) => Err(io_err("open", &path)(e)),
        }
    }

    /// Whether `key` is admitted (without touching its recency).
    pub fn contains(&self, key: &EntryKey) -> bool {
        self.lock().lru.contains_key(key)
    }

    /// Reserves room for a stripe of `len` bytes and creates its temporary
    /// file, evicting unpinned stripes as needed.
    pub fn reserve(&self, key: EntryKey, len: u64) -> Result<Pending, StoreError> {
        {
            let mut st = self.lock();
            self.evict_until(&mut st, len)?;
            st.reserved += len;
        }
        let created = self.create_tmp();
        match created {
            Ok((path, file)) => Ok(Pending {
                store: self.clone(),
                key,
                len,
                path,
                file,
                accounted: true,
            }),
            Err(e) => {
                let mut st = self.lock();
                st.reserved = st.reserved.saturating_sub(len);
                Err(e)
            }
        }
    }

    /// A temporary file outside the budget, for relaying a stripe that
    /// [`Store::reserve`] refused; it can never be committed.
    pub fn scratch(&self, key: EntryKey, len: u64) -> Result<Pending, StoreError> {
        let (path, file) = self.create_tmp()?;
        Ok(Pending {
            store: self.clone(),
            key,
            len,
            path,
            file,
            accounted: false,
        })
    }

    fn create_tmp(&self) -> Result<(PathBuf, File), StoreError> {
        let n = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let path = self
            .inner
            .tmp
            .join(format!("{}-{n}.part", std::process::id()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io_err("create", &path))?;
        Ok((path, file))
    }

    /// Admits a completely written and verified stripe: syncs it, renames
    /// it into place and makes it the most recently used. A scratch file
    /// is refused (it holds no reservation) and deleted.
    pub fn commit(&self, mut pending: Pending, checksum: Checksum) -> Result<(), StoreError> {
        if !pending.accounted {
            return Err(StoreError::Full {
                need: pending.len,
                budget: self.inner.budget,
                pinned: 0,
            });
        }
        let actual = pending
            .file
            .metadata()
            .map_err(io_err("stat", &pending.path))?
            .len();
        if actual != pending.len {
            return Err(StoreError::Length {
                expected: pending.len,
                actual,
            });
        }
        pending
            .file
            .sync_data()
            .map_err(io_err("sync", &pending.path))?;
        let dest = self.data_path(&pending.key, &checksum);
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err("create", parent))?;
        }
        let mut st = self.lock();
        if st.lru.contains_key(&pending.key) {
            // Admitted meanwhile by another writer; keep that one.
            return Ok(());
        }
        fs::rename(&pending.path, &dest).map_err(io_err("rename", &dest))?;
        st.reserved = st.reserved.saturating_sub(pending.len);
        st.committed += pending.len;
        st.lru.insert(
            pending.key,
            Entry {
                len: pending.len,
                checksum,
                pins: Arc::new(()),
            },
        );
        pending.accounted = false; // the bytes moved from reserved to committed
        Ok(())
    }

    /// Drops `key` from the store (a stripe found corrupt). Open leases keep
    /// reading their file. Returns whether it was there.
    pub fn remove(&self, key: &EntryKey) -> Result<bool, StoreError> {
        let mut st = self.lock();
        let Some(entry) = st.lru.remove(key) else {
            return Ok(false);
        };
        st.committed -= entry.len;
        let path = self.data_path(key, &entry.checksum);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Evicts unpinned stripes, oldest first, until `need` more bytes fit.
    fn evict_until(&self, st: &mut State, need: u64) -> Result<(), StoreError> {
        let budget = self.inner.budget;
        while st.committed + st.reserved + need > budget {
            let victim = st
                .lru
                .iter()
                .find(|(_, e)| Arc::strong_count(&e.pins) == 1)
                .map(|(k, _)| *k);
            let Some(key) = victim else {
                let pinned = st.lru.values().map(|e| e.len).sum();
                return Err(StoreError::Full {
                    need,
                    budget,
                    pinned,
                });
            };
            if let Some(entry) = st.lru.remove(&key) {
                st.committed -= entry.len;
                st.evictions += 1;
                let path = self.data_path(&key, &entry.checksum);
                if let Err(e) = fs::remove_file(&path)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    return Err(io_err("remove", &path)(e));
                }
            }
        }
        Ok(())
    }

    fn data_path(&self, key: &EntryKey, checksum: &Checksum) -> PathBuf {
        names::data_path(&self.inner.data, key, checksum)
    }

    /// The store's accounting now.
    pub fn stats(&self) -> Stats {
        let st = self.lock();
        Stats {
            budget: self.inner.budget,
            committed: st.committed,
            reserved: st.reserved,
            entries: st.lru.len() as u64,
            evictions: st.evictions,
            hits: st.hits,
            misses: st.misses,
        }
    }
}

/// When a file was last modified, for ordering a rebuilt index.
fn modified(meta: &fs::Metadata) -> SystemTime {
    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH)
}
