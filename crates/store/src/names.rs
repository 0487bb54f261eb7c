//! How stripes are named on disk: `data/<first two hex>/<key hex>.<checksum
//! hex>`. Both parts are fixed-length lowercase hex, so a name either parses
//! exactly or is a leftover to delete.

use crate::{Checksum, EntryKey, StoreError, io_err, modified};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// A stripe file found when the index is rebuilt.
pub(crate) struct Found {
    pub(crate) key: EntryKey,
    pub(crate) checksum: Checksum,
    pub(crate) len: u64,
    pub(crate) modified: SystemTime,
}

pub(crate) fn data_path(data: &Path, key: &EntryKey, checksum: &Checksum) -> PathBuf {
    let k = hex::encode(key.0);
    data.join(&k[..2])
        .join(format!("{k}.{}", hex::encode(checksum.0)))
}

fn parse(name: &str) -> Option<(EntryKey, Checksum)> {
    let (k, c) = name.split_once('.')?;
    let mut key = [0u8; 32];
    let mut sum = [0u8; 32];
    let lower = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    if !lower(k) || !lower(c) {
        return None;
    }
    hex::decode_to_slice(k, &mut key).ok()?;
    hex::decode_to_slice(c, &mut sum).ok()?;
    Some((EntryKey(key), Checksum(sum)))
}

/// Deletes everything in `dir` (leftover temporary files).
pub(crate) fn clear_dir(dir: &Path) -> Result<(), StoreError> {
    for entry in fs::read_dir(dir).map_err(io_err("list", dir))? {
        let path = entry.map_err(io_err("list", dir))?.path();
        let removed = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(io_err("remove leftover", &path))?;
        tracing::info!(path = %path.display(), "removed leftover");
    }
    Ok(())
}

/// Lists stripe files under `data`, deleting anything that is not one.
pub(crate) fn scan(data: &Path) -> Result<Vec<Found>, StoreError> {
    let mut found = Vec::new();
    for shard in fs::read_dir(data).map_err(io_err("list", data))? {
        let shard = shard.map_err(io_err("list", data))?.path();
        let shard_name = shard.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !shard.is_dir() || shard_name.len() != 2 {
            remove_stray(&shard)?;
            continue;
        }
        for file in fs::read_dir(&shard).map_err(io_err("list", &shard))? {
            let path = file.map_err(io_err("list", &shard))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let meta = fs::symlink_metadata(&path).map_err(io_err("stat", &path))?;
            match parse(name) {
                Some((key, checksum))
                    if meta.is_file() && hex::encode(&key.0[..1]) == shard_name =>
                {
                    found.push(Found {
                        key,
                        checksum,
                        len: meta.len(),
                        modified: modified(&meta),
                    });
                }
                _ => remove_stray(&path)?,
            }
        }
    }
    Ok(found)
}

fn remove_stray(path: &Path) -> Result<(), StoreError> {
    tracing::warn!(path = %path.display(), "removing a file that is not a stripe");
    let meta = fs::symlink_metadata(path).map_err(io_err("stat", path))?;
    let removed = if meta.is_dir() {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    removed.map_err(io_err("remove", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_junk() {
        let key = EntryKey([0xab; 32]);
        let sum = Checksum([0x01; 32]);
        let p = data_path(Path::new("/d"), &key, &sum);
        let name = p.file_name().unwrap().to_str().unwrap();
        assert_eq!(parse(name), Some((key, sum)));
        assert!(p.starts_with("/d/ab"));
        assert_eq!(parse("xyz"), None);
        assert_eq!(parse(&name.to_uppercase()), None);
        assert_eq!(parse(&format!("{name}.part")), None);
        assert_eq!(parse("../../etc/passwd.00"), None);
    }
}
