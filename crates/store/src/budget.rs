//! The store's byte budget: an absolute size, or a share of the filesystem
//! that holds the data directory (default 10%).

use crate::StoreError;
use std::path::Path;
use std::str::FromStr;

/// How large the store may grow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Budget {
    /// A fixed number of bytes.
    Bytes(u64),
    /// A percentage (0 < p <= 100) of the filesystem's total size.
    Percent(f64),
}

impl Default for Budget {
    fn default() -> Self {
        Budget::Percent(10.0)
    }
}

impl Budget {
    /// The budget in bytes for a store in `dir`.
    pub fn resolve(&self, dir: &Path) -> Result<u64, StoreError> {
        match *self {
            Budget::Bytes(b) => Ok(b),
            Budget::Percent(p) => {
                if !(p > 0.0 && p <= 100.0) {
                    return Err(StoreError::Budget(format!(
                        "{p}% is not a share between 0 and 100"
                    )));
                }
                let st = nix::sys::statvfs::statvfs(dir)
                    .map_err(|e| StoreError::Budget(format!("statvfs {}: {e}", dir.display())))?;
                let total = st.blocks() as u64 * st.fragment_size() as u64;
                Ok((total as f64 * p / 100.0) as u64)
            }
        }
    }
}

/// Parses `10%`, `512MiB`, `20GB`, `1.5TiB` or a plain byte count.
impl FromStr for Budget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("bad percentage {s:?}"))?;
            return Ok(Budget::Percent(p));
        }
        parse_size(s).map(Budget::Bytes)
    }
}

/// Parses a byte size with an optional unit (B, KB, MB, GB, TB in powers of
/// 1000; KiB, MiB, GiB, TiB in powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let num: f64 = num.parse().map_err(|_| format!("bad size {s:?}"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "t" | "tb" => 1_000_000_000_000,
        "ki" | "kib" => 1 << 10,
        "mi" | "mib" => 1 << 20,
        "gi" | "gib" => 1 << 30,
        "ti" | "tib" => 1 << 40,
        other => return Err(format!("unknown size unit {other:?} in {s:?}")),
    };
    let bytes = num * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(format!("size {s:?} out of range"));
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_and_percentages() {
        assert_eq!("10%".parse(), Ok(Budget::Percent(10.0)));
        assert_eq!("512MiB".parse(), Ok(Budget::Bytes(512 << 20)));
        assert_eq!("2GB".parse(), Ok(Budget::Bytes(2_000_000_000)));
        assert_eq!("1.5 KiB".parse(), Ok(Budget::Bytes(1536)));
        assert_eq!("4096".parse(), Ok(Budget::Bytes(4096)));
        assert!("ten".parse::<Budget>().is_err());
        assert!("5 parsecs".parse::<Budget>().is_err());
    }

    #[test]
    fn percent_must_be_a_share() {
        let dir = Path::new("/");
        assert!(Budget::Percent(0.0).resolve(dir).is_err());
        assert!(Budget::Percent(101.0).resolve(dir).is_err());
        assert!(Budget::Percent(10.0).resolve(dir).unwrap() > 0);
    }
}
