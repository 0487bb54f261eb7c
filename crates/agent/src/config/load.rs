//! Where settings come from and which wins: the defaults
//! (`defaults.toml`, compiled in), then the settings file, then the
//! overrides the command line collected (SHOAL_* variables, then flags).
//! One rule merges every layer: a later layer's key replaces the earlier
//! one, tables are merged key by key, and a list replaces the whole list.
//! The merged table is read once into [`AgentConfig`], so a value means
//! the same whichever layer set it.

use super::{AgentConfig, ConfigError};
use std::path::Path;
use toml::{Table, Value};

/// Every default, in the settings file's own form.
pub const DEFAULTS: &str = include_str!("defaults.toml");

/// The defaults as a table.
pub fn defaults() -> Table {
    // A constant that `tests::the_defaults_are_complete` reads; an error
    // here is a defect of the build, not of any input.
    DEFAULTS.parse().unwrap_or_default()
}

/// Merges `over` into `base` by the one rule above.
pub fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(Value::Table(b)), Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The value at a dotted key path (`mirror.listen`) of `table`.
pub fn lookup<'a>(table: &'a Table, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = table.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

/// Sets the value at a dotted key path, making the tables on the way.
pub fn insert(table: &mut Table, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            table.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let inner = table
                .entry(head.to_owned())
                .or_insert_with(|| Value::Table(Table::new()));
            if !inner.is_table() {
                *inner = Value::Table(Table::new());
            }
            if let Value::Table(t) = inner {
                insert(t, rest, value);
            }
        }
    }
}

impl AgentConfig {
    /// The settings from the defaults, the TOML file at `file` (if any),
    /// then `overrides` (what the environment and flags set, keyed as in
    /// the file).
    pub fn load(file: Option<&Path>, overrides: Table) -> Result<AgentConfig, ConfigError> {
        let mut table = defaults();
        let mut sources = String::from("the defaults");
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.to_owned(),
                source,
            })?;
            let parsed: Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Parse {
                    path: path.to_owned(),
                    message: e.to_string(),
                })?;
            merge(&mut table, parsed);
            sources = format!("{sources}, {}", path.display());
        }
        if !overrides.is_empty() {
            merge(&mut table, overrides);
            sources.push_str(", the environment and flags");
        }
        // Read back from text, so an error shows the offending `key = value`.
        let text = toml::to_string(&table).map_err(|e| ConfigError::Parse {
            path: sources.clone().into(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: format!("settings ({sources})").into(),
            message: e.to_string(),
        })
    }

    /// The settings in a file alone (over the defaults).
    pub fn from_file(path: &Path) -> Result<AgentConfig, ConfigError> {
        AgentConfig::load(Some(path), Table::new())
    }

    /// The settings in a file's text (over the defaults), as
    /// [`AgentConfig::from_file`] reads them, for input that is not in a
    /// file (the fuzz target).
    pub fn from_text(text: &str) -> Result<AgentConfig, ConfigError> {
        let parsed: Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Parse {
                path: "settings text".into(),
                message: e.to_string(),
            })?;
        AgentConfig::load(None, parsed)
    }
}

impl Default for AgentConfig {
    /// The defaults alone.
    fn default() -> Self {
        match AgentConfig::load(None, Table::new()) {
            Ok(c) => c,
            // Checked by `tests::the_defaults_are_complete`.
            Err(e) => panic!("config/defaults.toml: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_complete() {
        let c = AgentConfig::load(None, Table::new()).unwrap();
        assert_eq!(c.listen.to_string(), "0.0.0.0:7420");
        assert_eq!(c.timeouts.stall_floor_ms, 1500);
        assert_eq!(c.kubernetes.label_keys.len(), 2);
        assert!(c.clone().resolve().is_ok());
    }

    #[test]
    fn later_layers_win_key_by_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("shoal.toml");
        std::fs::write(
            &file,
            "min_copies = 3\nseeds = [\"a:1\", \"b:1\"]\n[timeouts]\nconnect_floor_ms = 7\n[mirror]\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let mut over = Table::new();
        insert(
            &mut over,
            "mirror.listen",
            Value::String("127.0.0.1:2".into()),
        );
        insert(
            &mut over,
            "seeds",
            Value::Array(vec![Value::String("c:1".into())]),
        );
        let c = AgentConfig::load(Some(&file), over).unwrap();
        assert_eq!(c.min_copies, 3, "the file over the defaults");
        assert_eq!(c.timeouts.connect_floor_ms, 7);
        assert_eq!(
            c.timeouts.connect_ceiling_ms, 1000,
            "tables merge key by key"
        );
        assert_eq!(
            c.mirror.listen.to_string(),
            "127.0.0.1:2",
            "overrides over the file"
        );
        assert_eq!(c.mirror.tag_ttl_ms, 30_000);
        assert_eq!(c.seeds, ["c:1"], "a list replaces the whole list");
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let mut over = Table::new();
        insert(&mut over, "min_copies", Value::String("many".into()));
        let e = AgentConfig::load(None, over).unwrap_err().to_string();
        assert!(e.contains("min_copies"), "{e}");
        assert!(e.contains("environment and flags"), "{e}");
    }
}
