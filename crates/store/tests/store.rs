//! The store against a real filesystem: budget, pins, crash recovery.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use shoal_store::{Budget, Checksum, EntryKey, Store, StoreError};
use std::fs;
use std::io::{Read, Write};
use std::path::Path;

fn key(n: u8) -> EntryKey {
    EntryKey([n; 32])
}

fn put(store: &Store, n: u8, len: usize) -> Result<(), StoreError> {
    let pending = store.reserve(key(n), len as u64)?;
    pending.file().write_all(&vec![n; len]).unwrap();
    store.commit(pending, Checksum([n; 32]))
}

/// Bytes of regular files under `dir`, as the filesystem sees them.
fn disk_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        total += if p.is_dir() {
            disk_bytes(&p)
        } else {
            fs::metadata(&p).unwrap().len()
        };
    }
    total
}

#[test]
fn round_trip_and_lru_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Budget::Bytes(3000)).unwrap();
    for n in 1..=3 {
        put(&store, n, 1000).unwrap();
    }
    // Touch 1, so 2 is the least recently used.
    let mut lease = store.get(&key(1)).unwrap().unwrap();
    let mut bytes = Vec::new();
    lease.file.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, vec![1u8; 1000]);
    assert_eq!(lease.checksum, Checksum([1; 32]));
    drop(lease);
    put(&store, 4, 1000).unwrap();
    assert!(!store.contains(&key(2)));
    assert!(store.contains(&key(1)) && store.contains(&key(3)) && store.contains(&key(4)));
    let s = store.stats();
    assert_eq!(
        (s.committed, s.reserved, s.entries, s.evictions),
        (3000, 0, 3, 1)
    );
}

#[test]
fn never_exceeds_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 10_000u64;
    let store = Store::open(dir.path(), Budget::Bytes(budget)).unwrap();
    for n in 0..60u8 {
        let len = 700 + (n as usize * 397) % 2500;
        put(&store, n, len).unwrap();
        let s = store.stats();
        assert!(s.committed + s.reserved <= budget, "{s:?}");
        assert!(disk_bytes(dir.path()) <= budget);
    }
    // Larger than the whole budget: refused, nothing left behind.
    assert!(matches!(
        put(&store, 200, 20_000),
        Err(StoreError::Full { .. })
    ));
    assert!(disk_bytes(dir.path()) <= budget);
}

#[test]
fn readers_pin_their_entries() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Budget::Bytes(2000)).unwrap();
    put(&store, 1, 1000).unwrap();
    put(&store, 2, 1000).unwrap();
    let a = store.get(&key(1)).unwrap().unwrap();
    let b = store.get(&key(2)).unwrap().unwrap();
    // Everything is pinned: no room, and nothing was deleted.
    assert!(matches!(
        store.reserve(key(3), 500),
        Err(StoreError::Full { pinned: 2000, .. })
    ));
    assert!(store.contains(&key(1)) && store.contains(&key(2)));
    drop(a);
    put(&store, 3, 500).unwrap();
    assert!(!store.contains(&key(1)));
    // A removed entry stays readable through a lease that was already out.
    assert!(store.remove(&key(2)).unwrap());
    let mut b = b;
    let mut bytes = Vec::new();
    b.file.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes.len(), 1000);
}

#[test]
fn abandoned_writes_release_their_room() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Budget::Bytes(1000)).unwrap();
    let pending = store.reserve(key(1), 1000).unwrap();
    pending.file().write_all(&[0u8; 400]).unwrap();
    assert_eq!(store.stats().reserved, 1000);
    drop(pending);
    assert_eq!(store.stats().reserved, 0);
    assert_eq!(disk_bytes(dir.path()), 0);
    // A short write is refused at commit, and leaves nothing.
    let pending = store.reserve(key(2), 1000).unwrap();
    pending.file().write_all(&[0u8; 10]).unwrap();
    assert!(matches!(
        store.commit(pending, Checksum([0; 32])),
        Err(StoreError::Length {
            expected: 1000,
            actual: 10
        })
    ));
    assert!(!store.contains(&key(2)));
    assert_eq!(disk_bytes(dir.path()), 0);
}

#[test]
fn restart_rebuilds_the_index_and_deletes_leftovers() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Budget::Bytes(10_000)).unwrap();
        for n in 1..=3 {
            put(&store, n, 1000).unwrap();
        }
        // A crash mid-write leaves a temporary file behind.
        let pending = store.reserve(key(9), 1000).unwrap();
        pending.file().write_all(&[9u8; 300]).unwrap();
        std::mem::forget(pending);
    }
    fs::write(dir.path().join("data").join("junk"), b"x").unwrap();
    fs::create_dir_all(dir.path().join("data/zz")).unwrap();
    fs::write(dir.path().join("data/zz/notastripe"), b"x").unwrap();

    let store = Store::open(dir.path(), Budget::Bytes(10_000)).unwrap();
    let s = store.stats();
    assert_eq!((s.entries, s.committed, s.reserved), (3, 3000, 0));
    assert_eq!(disk_bytes(dir.path()), 3000);
    let mut lease = store.get(&key(2)).unwrap().unwrap();
    let mut bytes = Vec::new();
    lease.file.read_to_end(&mut bytes).unwrap();
    assert_eq!(bytes, vec![2u8; 1000]);
    assert_eq!(lease.checksum, Checksum([2; 32]));
    drop(lease);
    drop(store);

    // Reopened with a smaller budget, it sheds entries to fit.
    let store = Store::open(dir.path(), Budget::Bytes(1500)).unwrap();
    assert_eq!(store.stats().entries, 1);
    assert!(disk_bytes(dir.path()) <= 1500);
}
