//! A scenario's main figure as data: named series of points on two axes,
//! and vertical marks. Drawing it is the command line's business; this
//! crate stays free of any graphics stack.

use serde::Serialize;

/// One line of a figure.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Series {
    /// The legend's name for it.
    pub name: String,
    /// `(x, y)` points in drawing order; points that are not finite are
    /// left out when drawn.
    pub points: Vec<(f64, f64)>,
}

/// One axis.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Axis {
    /// Its label.
    pub label: String,
    /// Whether it is logarithmic.
    pub log: bool,
}

impl Axis {
    /// A linear axis.
    pub fn linear(label: impl Into<String>) -> Axis {
        Axis {
            label: label.into(),
            log: false,
        }
    }

    /// A logarithmic axis.
    pub fn log(label: impl Into<String>) -> Axis {
        Axis {
            label: label.into(),
            log: true,
        }
    }
}

/// A figure: a title, two axes, lines, and vertical marks.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Figure {
    /// Its title.
    pub title: String,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// The lines.
    pub series: Vec<Series>,
    /// `(label, x)`: vertical lines, such as a lower bound.
    pub marks: Vec<(String, f64)>,
}

impl Figure {
    /// An empty figure.
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Figure {
        Figure {
            title: title.into(),
            x,
            y,
            series: Vec::new(),
            marks: Vec::new(),
        }
    }

    /// Adds a line.
    pub fn line(&mut self, name: impl Into<String>, points: Vec<(f64, f64)>) {
        self.series.push(Series {
            name: name.into(),
            points,
        });
    }

    /// The points that can be drawn on these axes: finite, and positive
    /// on a logarithmic axis.
    pub fn drawable(&self, s: &Series) -> Vec<(f64, f64)> {
        let ok = |v: f64, log: bool| v.is_finite() && (!log || v > 0.0);
        s.points
            .iter()
            .copied()
            .filter(|&(x, y)| ok(x, self.x.log) && ok(y, self.y.log))
            .collect()
    }

    /// The smallest and largest drawable x and y, or `None` for a figure
    /// with nothing to draw.
    pub fn bounds(&self) -> Option<((f64, f64), (f64, f64))> {
        let pts: Vec<(f64, f64)> = self.series.iter().flat_map(|s| self.drawable(s)).collect();
        let first = pts.first()?;
        let mut b = ((first.0, first.0), (first.1, first.1));
        for &(x, y) in &pts {
            b.0 = (b.0.0.min(x), b.0.1.max(x));
            b.1 = (b.1.0.min(y), b.1.1.max(y));
        }
        for &(_, x) in &self.marks {
            if x.is_finite() && (!self.x.log || x > 0.0) {
                b.0 = (b.0.0.min(x), b.0.1.max(x));
            }
        }
        Some(b)
    }
}

/// Groups `rows` into lines by `key`, in the order keys first appear,
/// each row giving one point.
pub fn lines_by<T, K: PartialEq + Copy>(
    rows: &[T],
    key: impl Fn(&T) -> K,
    point: impl Fn(&T) -> (f64, f64),
) -> Vec<(K, Vec<(f64, f64)>)> {
    let mut out: Vec<(K, Vec<(f64, f64)>)> = Vec::new();
    for r in rows {
        let k = key(r);
        match out.iter_mut().find(|(x, _)| *x == k) {
            Some((_, pts)) => pts.push(point(r)),
            None => out.push((k, vec![point(r)])),
        }
    }
    out
}

/// The empirical distribution of `values` as a line: for each sorted
/// finite value, the share of all values at or below it, in percent.
pub fn cdf(values: &[f64]) -> Vec<(f64, f64)> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    v.sort_by(f64::total_cmp);
    let n = values.len().max(1) as f64;
    // At most ~500 points: enough for a smooth line at 10,000 nodes.
    let stride = (v.len() / 500).max(1);
    let mut out: Vec<(f64, f64)> = v
        .iter()
        .enumerate()
        .filter(|(i, _)| i % stride == 0 || i + 1 == v.len())
        .map(|(i, &x)| (x, 100.0 * (i + 1) as f64 / n))
        .collect();
    out.dedup_by(|a, b| a.0 == b.0 && a.1 == b.1);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdf_rises_to_the_share_that_finished() {
        let c = cdf(&[3.0, 1.0, 2.0, f64::INFINITY]);
        assert_eq!(c, vec![(1.0, 25.0), (2.0, 50.0), (3.0, 75.0)]);
        assert!(cdf(&[]).is_empty());
    }

    #[test]
    fn bounds_skip_what_a_log_axis_cannot_draw() {
        let mut f = Figure::new("t", Axis::log("x"), Axis::linear("y"));
        assert_eq!(f.bounds(), None);
        f.line("a", vec![(0.0, 1.0), (2.0, 5.0), (10.0, -1.0)]);
        f.marks.push(("bound".into(), 1.0));
        assert_eq!(f.bounds(), Some(((1.0, 10.0), (-1.0, 5.0))));
    }
}
