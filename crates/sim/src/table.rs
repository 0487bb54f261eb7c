//! A table of results, printed as markdown for people or CSV for tools.
//! Every scenario reports through one.

use serde::Serialize;

/// Rows of text under a header.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Table {
    /// Column names.
    pub columns: Vec<String>,
    /// The cells, row by row.
    pub rows: Vec<Vec<String>>,
}

impl Table {
    /// An empty table with these columns.
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Table {
        Table {
            columns: columns.into_iter().map(Into::into).collect(),
            rows: Vec::new(),
        }
    }

    /// Appends a row.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// A markdown table.
    pub fn markdown(&self) -> String {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let mut out = line(&self.columns);
        out.push_str(&line(&vec!["---".to_owned(); self.columns.len()]));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }

    /// RFC 4180 CSV.
    pub fn csv(&self) -> String {
        let field = |s: &String| {
            if s.contains([',', '"', '\n']) {
                format!("\"{}\"", s.replace('"', "\"\""))
            } else {
                s.clone()
            }
        };
        let line = |cells: &[String]| cells.iter().map(field).collect::<Vec<_>>().join(",") + "\n";
        let mut out = line(&self.columns);
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// Seconds for a table: two decimals below 100 s, none above, and
/// "not done" for a run that never finished.
pub fn secs(s: f64) -> String {
    if !s.is_finite() {
        "not done".into()
    } else if s >= 100.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_both_ways() {
        let mut t = Table::new(["a", "b"]);
        t.row(["1", "x, \"y\""]);
        assert_eq!(t.markdown(), "| a | b |\n| --- | --- |\n| 1 | x, \"y\" |\n");
        assert_eq!(t.csv(), "a,b\n1,\"x, \"\"y\"\"\"\n");
    }
}
