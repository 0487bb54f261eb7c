//! `--plot FILE.png`: draws a scenario's [`Figure`] with plotters. The
//! text uses a subset of DejaVu Sans built into the binary (Latin
//! letters, digits and punctuation; see `assets/`), so drawing needs no
//! system font and no fontconfig. A logarithmic axis is drawn as the
//! logarithm of the values on a linear axis, labelled with the values.

use anyhow::{Context, Result, anyhow, bail};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use shoal_sim::figure::Figure;
use std::path::Path;

static FONT: &[u8] = include_bytes!("../../assets/DejaVuSans-subset.ttf");
const FAMILY: &str = "sans-serif";

/// Writes `fig` to `path` as a 1000 x 620 PNG.
pub(super) fn draw(fig: &Figure, path: &Path) -> Result<()> {
    render(fig, path).with_context(|| format!("drawing {}", path.display()))
}

fn render(fig: &Figure, path: &Path) -> Result<()> {
    register_font(FAMILY, FontStyle::Normal, FONT)
        .map_err(|_| anyhow!("the built-in font cannot be read"))?;
    let Some(((x0, x1), (y0, y1))) = fig.bounds() else {
        bail!("the figure has no point to draw");
    };
    let (lx, ly) = (fig.x.log, fig.y.log);
    let tx = move |v: f64| if lx { v.log10() } else { v };
    let ty = move |v: f64| if ly { v.log10() } else { v };
    let (x0, x1) = span(tx(x0), tx(x1), lx);
    let (y0, y1) = span(ty(y0), ty(y1), ly);
    // The legend goes in a corner no line passes through; if every
    // corner is taken, the top of the plot is left empty for it.
    let lines: Vec<Vec<(f64, f64)>> = fig
        .series
        .iter()
        .map(|s| {
            fig.drawable(s)
                .into_iter()
                .map(|(x, y)| (tx(x), ty(y)))
                .collect()
        })
        .collect();
    let legend_h = 0.05 * (fig.series.len() + fig.marks.len()) as f64 + 0.04;
    let (corner, y1) = match free_corner(&lines, (x0, x1), (y0, y1), legend_h) {
        Some(c) => (c, y1),
        None => (
            SeriesLabelPosition::UpperRight,
            y1 + (y1 - y0) * (legend_h + 0.05) / (1.0 - legend_h - 0.05),
        ),
    };
    let root = BitMapBackend::new(path, (1000, 620)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&fig.title, (FAMILY, 24))
        .margin(18)
        .x_label_area_size(50)
        .y_label_area_size(80)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_err)?;
    let xf = move |v: &f64| label(*v, lx);
    let yf = move |v: &f64| label(*v, ly);
    chart
        .configure_mesh()
        .x_labels(ticks(x0, x1, lx))
        .y_labels(ticks(y0, y1, ly))
        .x_desc(fig.x.label.as_str())
        .y_desc(fig.y.label.as_str())
        .x_label_formatter(&xf)
        .y_label_formatter(&yf)
        .label_style((FAMILY, 14))
        .axis_desc_style((FAMILY, 16))
        .draw()
        .map_err(plot_err)?;
    for (i, (s, pts)) in fig.series.iter().zip(&lines).enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(pts.iter().copied(), style))
            .map_err(plot_err)?
            .label(s.name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        if pts.len() <= 40 {
            chart
                .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
                .map_err(plot_err)?;
        }
    }
    for (name, x) in &fig.marks {
        if !x.is_finite() || (lx && *x <= 0.0) {
            continue;
        }
        let x = tx(*x);
        let style = BLACK.stroke_width(1);
        chart
            .draw_series(DashedLineSeries::new([(x, y0), (x, y1)], 8, 6, style))
            .map_err(plot_err)?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
    }
    chart
        .configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(corner)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// How many labels to ask for: on a logarithmic axis, about one per
/// decade, so the labels fall on powers of ten.
fn ticks(lo: f64, hi: f64, log: bool) -> usize {
    if log {
        ((hi - lo).ceil() as usize + 1).clamp(2, 12)
    } else {
        10
    }
}

/// A corner of the plot where a legend `h` high (a share of the plot's
/// height, and a fifth of its width) covers no line, or `None`.
fn free_corner(
    lines: &[Vec<(f64, f64)>],
    x: (f64, f64),
    y: (f64, f64),
    h: f64,
) -> Option<SeriesLabelPosition> {
    // Points along every segment, as shares of the plot's width and height.
    let mut pts = Vec::new();
    for line in lines {
        for w in line.windows(2) {
            for k in 0..=20 {
                let t = f64::from(k) / 20.0;
                let px = w[0].0 + t * (w[1].0 - w[0].0);
                let py = w[0].1 + t * (w[1].1 - w[0].1);
                pts.push(((px - x.0) / (x.1 - x.0), (py - y.0) / (y.1 - y.0)));
            }
        }
        pts.extend(
            line.iter()
                .map(|p| ((p.0 - x.0) / (x.1 - x.0), (p.1 - y.0) / (y.1 - y.0))),
        );
    }
    let (w, h) = (0.22, h + 0.04);
    [
        (SeriesLabelPosition::UpperLeft, false, true),
        (SeriesLabelPosition::UpperRight, true, true),
        (SeriesLabelPosition::LowerRight, true, false),
        (SeriesLabelPosition::LowerLeft, false, false),
    ]
    .into_iter()
    .find(|&(_, right, top)| {
        !pts.iter().any(|&(fx, fy)| {
            let in_x = if right { fx > 1.0 - w } else { fx < w };
            let in_y = if top { fy > 1.0 - h } else { fy < h };
            in_x && in_y
        })
    })
    .map(|c| c.0)
}

fn plot_err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{e}")
}

/// The drawn range: the data's, with a margin; a linear axis whose data
/// are all positive starts at zero.
fn span(lo: f64, hi: f64, log: bool) -> (f64, f64) {
    let lo = if !log && lo > 0.0 { 0.0 } else { lo };
    let pad = if hi > lo { (hi - lo) * 0.05 } else { 1.0 };
    (lo - if log { pad } else { 0.0 }, hi + pad)
}

/// A tick label: the value itself, or ten to its power on a logarithmic
/// axis.
fn label(v: f64, log: bool) -> String {
    let v = if log { 10f64.powf(v) } else { v };
    let a = v.abs();
    if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        trim(format!("{v:.1}"))
    } else {
        trim(format!("{v:.3}"))
    }
}

fn trim(s: String) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_sim::figure::Axis;

    #[test]
    fn labels_read_as_values() {
        assert_eq!(label(2.0, true), "100");
        assert_eq!(label(0.5, true), "3.2");
        assert_eq!(label(-1.0, true), "0.1");
        assert_eq!(label(25.0, false), "25");
        assert_eq!(label(2.5, false), "2.5");
    }

    #[test]
    fn a_figure_becomes_a_png_and_an_empty_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("shoal-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("f.png");
        let mut f = Figure::new("t", Axis::log("x"), Axis::linear("y"));
        assert!(draw(&f, &out).is_err());
        f.line("a", vec![(1.0, 10.0), (10.0, 50.0), (100.0, 100.0)]);
        f.marks.push(("bound".into(), 3.0));
        draw(&f, &out).unwrap();
        let png = std::fs::read(&out).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        assert!(png.len() > 2000, "{} bytes", png.len());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
