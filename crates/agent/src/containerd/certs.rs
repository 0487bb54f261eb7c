//! containerd's hosts directory (`certs.d`): installing shoal's
//! `hosts.toml` for a registry while keeping the file that was there as
//! `hosts.toml.shoal-backup`, and putting it back. Each file is written
//! beside its final name and renamed over it, so containerd never reads
//! half a file.

use shoal_oci::hosts::{HostsFile, is_ours};
use std::fs;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// The file containerd reads in each registry's directory.
pub const FILE: &str = "hosts.toml";
/// Where the file shoal replaced is kept.
pub const BACKUP: &str = "hosts.toml.shoal-backup";

/// Why a hosts directory could not be changed.
#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file that was there cannot be kept behind the mirror (shoal's
    /// lines and its own would not make valid TOML); nothing was written.
    #[error("cannot put the mirror in front of {path}: {message}; nothing was changed")]
    Merge {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said (without quoting the file).
        message: String,
    },
    /// The file was edited after shoal backed up the previous one: writing
    /// again would lose that edit.
    #[error("{path} was changed since shoal backed it up to {backup}; move one of them away first")]
    Edited {
        /// The edited file.
        path: PathBuf,
        /// shoal's backup beside it.
        backup: PathBuf,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CertsError {
    let path = path.to_owned();
    move |source| CertsError::Io { what, path, source }
}

fn read(path: &Path) -> Result<Option<String>, CertsError> {
    match fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", path)(e)),
    }
}

fn replace(path: &Path, text: &str) -> Result<(), CertsError> {
    let tmp = path.with_extension("toml.shoal-tmp");
    fs::write(&tmp, text).map_err(io("writing", &tmp))?;
    fs::rename(&tmp, path).map_err(io("replacing", path))
}

/// Installs `file` as `dir/hosts.toml`. A file shoal did not write is
/// backed up and kept behind the mirror (its server, certificates and
/// hosts still apply). Says what it did.
pub fn install(dir: &Path, file: &HostsFile) -> Result<String, CertsError> {
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let (path, backup) = (dir.join(FILE), dir.join(BACKUP));
    let current = read(&path)?;
    let theirs = match &current {
        Some(old) if !is_ours(old) => {
            if backup.exists() {
                return Err(CertsError::Edited { path, backup });
            }
            Some(old.clone())
        }
        _ => read(&backup)?,
    };
    let text = file.render_over(theirs.as_deref());
    if let Err(e) = toml::from_str::<toml::Value>(&text) {
        return Err(CertsError::Merge {
            path,
            message: e.message().to_owned(),
        });
    }
    if current.as_deref() == Some(text.as_str()) {
        return Ok(format!("{} is up to date", path.display()));
    }
    let kept = match current {
        Some(old) if !is_ours(&old) => {
            fs::write(&backup, old).map_err(io("writing", &backup))?;
            format!(
                " (the previous file is kept as {} and behind the mirror)",
                backup.display()
            )
        }
        _ => String::new(),
    };
    replace(&path, &text)?;
    Ok(format!("wrote {}{kept}", path.display()))
}

/// Puts the backup in `dir` back, or removes shoal's file if there was
/// none before it. Says what it did.
pub fn restore(dir: &Path) -> Result<String, CertsError> {
    let (path, backup) = (dir.join(FILE), dir.join(BACKUP));
    if backup.exists() {
        fs::rename(&backup, &path).map_err(io("restoring", &path))?;
        return Ok(format!("restored {}", path.display()));
    }
    match read(&path)? {
        Some(t) if is_ours(&t) => {
            fs::remove_file(&path).map_err(io("removing", &path))?;
            // Only if empty: the directory may hold certificates.
            let _ = fs::remove_dir(dir);
            Ok(format!(
                "removed {} (there was none before)",
                path.display()
            ))
        }
        Some(_) => Ok(format!(
            "left {} alone: shoal did not write it",
            path.display()
        )),
        None => Ok("nothing to restore".into()),
    }
}

/// Registries under `certs` that hold a file shoal wrote or backed up.
pub fn configured(certs: &Path) -> Result<Vec<String>, CertsError> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(certs) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io("listing", certs)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io("listing", certs))?;
        let dir = entry.path();
        let ours = read(&dir.join(FILE))
            .ok()
            .flatten()
            .is_some_and(|t| is_ours(&t));
        if ours || dir.join(BACKUP).exists() {
            out.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    Ok(out)
}
