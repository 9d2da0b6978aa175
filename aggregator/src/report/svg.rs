//! The SVG charts of [`crate::report`]: plain strings, sized in pixels with a
//! `viewBox`, so they scale with the page.

use std::fmt::Write as _;

use super::escape;

const TRUTH: &str = "#9aa5b1";
const ESTIMATE: &str = "#2563eb";
const INK: &str = "#1f2933";
const GRID: &str = "#e4e7eb";
const PALETTE: &[&str] = &[
    "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#4b5563", "#db2777",
    "#65a30d", "#ca8a04", "#0f766e", "#7c2d12",
];
/// Height of one legend row.
const LEGEND_ROW: f64 = 18.0;

/// One row of a [`BarChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Bar {
    /// The category (or attribute) label.
    pub label: String,
    /// The true value.
    pub truth: f64,
    /// The estimate.
    pub estimate: f64,
    /// The estimate's confidence interval (drawn as a whisker).
    pub ci: (f64, f64),
}

impl Bar {
    fn top(&self) -> f64 {
        self.truth.max(self.estimate).max(self.ci.1)
    }
}

/// Horizontal bars: per label, the true value (grey) above the estimate (blue)
/// with its interval whisker.
#[derive(Debug, Clone, PartialEq)]
pub struct BarChart {
    bars: Vec<Bar>,
    percent: bool,
    truth_label: String,
    estimate_label: String,
}

impl BarChart {
    /// A chart of `bars`, labelled "true" and "estimate (95% CI)".
    pub fn new(bars: Vec<Bar>) -> Self {
        Self {
            bars,
            percent: false,
            truth_label: "true".into(),
            estimate_label: "estimate (95% CI)".into(),
        }
    }

    /// Shows values as percentages (values are fractions).
    pub fn percent(mut self) -> Self {
        self.percent = true;
        self
    }

    /// Sets the legend labels.
    pub fn labels(mut self, truth: impl Into<String>, estimate: impl Into<String>) -> Self {
        self.truth_label = truth.into();
        self.estimate_label = estimate.into();
        self
    }

    /// The SVG element.
    pub fn to_svg(&self) -> String {
        const ROW: f64 = 24.0;
        const TOP: f64 = 34.0;
        const BOTTOM: f64 = 26.0;
        const WIDTH: f64 = 880.0;
        let longest = self
            .bars
            .iter()
            .map(|b| b.label.chars().count())
            .max()
            .unwrap_or(0);
        let left = (longest as f64 * 7.2 + 16.0).clamp(70.0, 260.0);
        let right = 24.0;
        let height = TOP + ROW * self.bars.len() as f64 + BOTTOM;
        let values = self
            .bars
            .iter()
            .flat_map(|b| [b.truth, b.estimate, b.ci.0, b.ci.1])
            .filter(|v| v.is_finite());
        let (lo, mut hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        // One bar far above all others (e.g. one country holding 90%) would
        // squash the rest into slivers: clip the axis above the runner-up and
        // print the clipped values instead.
        let mut tops: Vec<f64> = self.bars.iter().map(Bar::top).collect();
        tops.sort_by(|a, b| b.total_cmp(a));
        let clip = tops.len() >= 3 && tops[1] > 0.0 && tops[0] > 3.0 * tops[1];
        if clip {
            hi = 1.15 * tops[1];
        }
        let axis = Axis::nice(lo, if hi > lo { hi } else { lo + 1.0 }, 6);
        let x = |v: f64| left + (WIDTH - left - right) * axis.fraction(v).min(1.0);
        let fmt = |v: f64| {
            if self.percent {
                format!("{}%", trim(100.0 * v, axis.step * 100.0))
            } else {
                trim(v, axis.step)
            }
        };
        let value = |v: f64| {
            if self.percent {
                format!("{:.1}%", 100.0 * v)
            } else {
                format!("{v:.3}")
            }
        };
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {height}\" \
             width=\"{WIDTH}\" height=\"{height}\" font-family=\"system-ui,sans-serif\" \
             font-size=\"12\" role=\"img\">"
        );
        legend(
            &mut s,
            left,
            &[
                (TRUTH, self.truth_label.as_str(), false),
                (ESTIMATE, self.estimate_label.as_str(), true),
            ],
        );
        for i in (1..self.bars.len()).step_by(2) {
            let y = TOP + ROW * i as f64;
            {
                let _ = write!(
                    s,
                    "<rect x=\"0\" y=\"{y}\" width=\"{WIDTH}\" height=\"{ROW}\" fill=\"#f8f9fb\"/>"
                );
            }
        }
        for t in axis.ticks() {
            let _ = write!(
                s,
                "<line x1=\"{px:.1}\" x2=\"{px:.1}\" y1=\"{TOP}\" y2=\"{y2}\" stroke=\"{GRID}\"/>\
                 <text x=\"{px:.1}\" y=\"{ty}\" text-anchor=\"middle\" fill=\"#52606d\">{label}</text>",
                px = x(t),
                y2 = height - BOTTOM,
                ty = height - BOTTOM + 16.0,
                label = fmt(t)
            );
        }
        let zero = x(0.0);
        for (i, b) in self.bars.iter().enumerate() {
            let y = TOP + ROW * i as f64;
            let bar = |value: f64, top: f64, color: &str| {
                let (a, c) = if value >= 0.0 {
                    (zero, x(value))
                } else {
                    (x(value), zero)
                };
                format!(
                    "<rect x=\"{a:.1}\" y=\"{top:.1}\" width=\"{w:.1}\" height=\"8\" rx=\"1.5\" fill=\"{color}\"/>",
                    w = (c - a).max(0.5)
                )
            };
            let _ = write!(
                s,
                "<g><title>{title}</title>\
                 <text x=\"{lx:.1}\" y=\"{ly:.1}\" text-anchor=\"end\" fill=\"{INK}\">{label}</text>{t}{e}",
                title = escape(&format!(
                    "{}: true {}, estimate {} [{}, {}]",
                    b.label,
                    value(b.truth),
                    value(b.estimate),
                    value(b.ci.0),
                    value(b.ci.1)
                )),
                lx = left - 8.0,
                ly = y + ROW / 2.0 + 4.0,
                label = escape(&b.label),
                t = bar(b.truth, y + 3.0, TRUTH),
                e = bar(b.estimate, y + 12.0, ESTIMATE),
            );
            if clip && b.top() > axis.hi {
                let note = format!(
                    "axis clipped: true {}, estimate {} [{}, {}] \u{25B8}",
                    value(b.truth),
                    value(b.estimate),
                    value(b.ci.0),
                    value(b.ci.1)
                );
                // The note goes above the first row (top right), not over the
                // bars; a white break mark near the end shows the bars go on.
                let bx = WIDTH - right - 14.0;
                let _ = write!(
                    s,
                    "<path d=\"M{bx:.1} {a:.1}l5 19M{b2:.1} {a:.1}l5 19\" stroke=\"#fff\" stroke-width=\"2\"/>\
                     <text x=\"{tx:.1}\" y=\"30\" text-anchor=\"end\" font-size=\"11\" fill=\"{INK}\">{}</text>",
                    escape(&format!("{}: {note}", b.label)),
                    a = y + 1.0,
                    b2 = bx + 4.0,
                    tx = WIDTH - right,
                );
            }
            let (w0, w1, wy) = (x(b.ci.0), x(b.ci.1), y + 16.0);
            let _ = write!(
                s,
                "<path d=\"M{w0:.1} {wy:.1}H{w1:.1}M{w0:.1} {a:.1}V{c:.1}M{w1:.1} {a:.1}V{c:.1}\" \
                 stroke=\"{INK}\" stroke-width=\"1.3\" fill=\"none\"/></g>",
                a = wy - 4.0,
                c = wy + 4.0
            );
        }
        let _ = write!(
            s,
            "<line x1=\"{zero:.1}\" x2=\"{zero:.1}\" y1=\"{TOP}\" y2=\"{y2}\" stroke=\"#7b8794\"/></svg>",
            y2 = height - BOTTOM
        );
        s
    }
}

/// One series of a [`LineChart`].
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend name.
    pub name: String,
    /// Points `(x, y)`, drawn in the given order.
    pub points: Vec<(f64, f64)>,
    /// Optional interval per point, `(low, high)`, drawn as a shaded band.
    pub band: Option<Vec<(f64, f64)>>,
}

/// Lines with markers, e.g. accuracy against epsilon.
#[derive(Debug, Clone, PartialEq)]
pub struct LineChart {
    x_label: String,
    y_label: String,
    series: Vec<Series>,
    log_x: bool,
    y_range: Option<(f64, f64)>,
}

impl LineChart {
    /// An empty chart with axis labels.
    pub fn new(x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        Self {
            x_label: x_label.into(),
            y_label: y_label.into(),
            series: Vec::new(),
            log_x: false,
            y_range: None,
        }
    }

    /// Adds a series.
    pub fn series(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// Uses a base-10 logarithmic x axis (x values must be > 0).
    pub fn log_x(mut self) -> Self {
        self.log_x = true;
        self
    }

    /// Fixes the y range instead of fitting it to the data.
    pub fn y_range(mut self, lo: f64, hi: f64) -> Self {
        self.y_range = Some((lo, hi));
        self
    }

    /// The SVG element.
    pub fn to_svg(&self) -> String {
        const W: f64 = 760.0;
        const H: f64 = 380.0;
        const LEFT: f64 = 64.0;
        const RIGHT: f64 = 20.0;
        const TOP: f64 = 40.0;
        const BOTTOM: f64 = 48.0;
        let tx = |v: f64| {
            if self.log_x {
                v.max(f64::MIN_POSITIVE).log10()
            } else {
                v
            }
        };
        let xs: Vec<f64> = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| tx(p.0)))
            .filter(|v| v.is_finite())
            .collect();
        let ys = self.series.iter().flat_map(|s| {
            s.points
                .iter()
                .map(|p| p.1)
                .chain(s.band.iter().flatten().flat_map(|b| [b.0, b.1]))
        });
        let (xlo, xhi) = min_max(xs.iter().copied());
        let (ylo, yhi) = self.y_range.unwrap_or_else(|| min_max(ys));
        let xaxis = if self.log_x {
            Axis::log(xlo, xhi)
        } else {
            Axis::nice(xlo, xhi, 6)
        };
        let yaxis = Axis::nice(ylo, yhi, 6);
        let px = |v: f64| LEFT + (W - LEFT - RIGHT) * xaxis.fraction(tx(v));
        let py = |v: f64| H - BOTTOM - (H - TOP - BOTTOM) * yaxis.fraction(v);
        let names: Vec<&str> = self.series.iter().map(|se| se.name.as_str()).collect();
        let (layout, rows) = legend_layout(LEFT, W - RIGHT, &names);
        // Every series has its own colour and a legend entry, in rows under the chart.
        let total_h = H + rows as f64 * LEGEND_ROW + 10.0;
        let mut s = String::new();
        let _ = write!(
            s,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {W} {total_h}\" width=\"{W}\" \
             height=\"{total_h}\" font-family=\"system-ui,sans-serif\" font-size=\"12\" role=\"img\">"
        );
        for t in yaxis.ticks() {
            let _ = write!(
                s,
                "<line x1=\"{LEFT}\" x2=\"{x2}\" y1=\"{y:.1}\" y2=\"{y:.1}\" stroke=\"{GRID}\"/>\
                 <text x=\"{lx}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"#52606d\">{label}</text>",
                x2 = W - RIGHT,
                y = py(t),
                lx = LEFT - 6.0,
                ty = py(t) + 4.0,
                label = trim(t, yaxis.step)
            );
        }
        for t in xaxis.ticks() {
            let value = if self.log_x { 10f64.powf(t) } else { t };
            let label = if self.log_x {
                trim(value, value / 10.0)
            } else {
                trim(t, xaxis.step)
            };
            let x = LEFT + (W - LEFT - RIGHT) * xaxis.fraction(t);
            let _ = write!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{TOP}\" y2=\"{y2}\" stroke=\"{GRID}\"/>\
                 <text x=\"{x:.1}\" y=\"{ty}\" text-anchor=\"middle\" fill=\"#52606d\">{label}</text>",
                y2 = H - BOTTOM,
                ty = H - BOTTOM + 16.0
            );
        }
        let _ = write!(
            s,
            "<text x=\"{cx}\" y=\"{by}\" text-anchor=\"middle\" fill=\"{INK}\">{xl}</text>\
             <text transform=\"translate(16 {cy}) rotate(-90)\" text-anchor=\"middle\" fill=\"{INK}\">{yl}</text>",
            cx = (LEFT + W - RIGHT) / 2.0,
            by = H - 10.0,
            cy = (TOP + H - BOTTOM) / 2.0,
            xl = escape(&self.x_label),
            yl = escape(&self.y_label)
        );
        for (i, (name, (x, row))) in names.iter().zip(layout).enumerate() {
            let y = H + 4.0 + row as f64 * LEGEND_ROW;
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"16\" height=\"4\" rx=\"1\" fill=\"{color}\"/>\
                 <text x=\"{tx:.1}\" y=\"{ty:.1}\" fill=\"{INK}\">{label}</text>",
                color = PALETTE[i % PALETTE.len()],
                tx = x + 22.0,
                ty = y + 5.0,
                label = escape(name)
            );
        }
        for (i, se) in self.series.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            if let Some(band) = &se.band {
                let upper = se.points.iter().zip(band).map(|(p, b)| (px(p.0), py(b.1)));
                let lower = se
                    .points
                    .iter()
                    .zip(band)
                    .rev()
                    .map(|(p, b)| (px(p.0), py(b.0)));
                let pts: Vec<String> = upper
                    .chain(lower)
                    .map(|(x, y)| format!("{x:.1},{y:.1}"))
                    .collect();
                let _ = write!(
                    s,
                    "<polygon points=\"{}\" fill=\"{color}\" fill-opacity=\"0.15\" stroke=\"none\"/>",
                    pts.join(" ")
                );
            }
            let pts: Vec<String> = se
                .points
                .iter()
                .map(|p| format!("{:.1},{:.1}", px(p.0), py(p.1)))
                .collect();
            let _ = write!(
                s,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"/>",
                pts.join(" ")
            );
            for p in &se.points {
                let _ = write!(
                    s,
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{color}\"><title>{}</title></circle>",
                    px(p.0),
                    py(p.1),
                    escape(&format!("{}: ({}, {})", se.name, p.0, p.1))
                );
            }
        }
        s.push_str("</svg>");
        s
    }
}

/// Positions `(x, row)` of legend entries that wrap onto a new row rather than
/// run past `max_x`, and the number of rows.
fn legend_layout(left: f64, max_x: f64, names: &[&str]) -> (Vec<(f64, usize)>, usize) {
    let mut out = Vec::with_capacity(names.len());
    let (mut x, mut row) = (left, 0);
    for name in names {
        let width = 22.0 + name.chars().count() as f64 * 7.0 + 22.0;
        if x > left && x + width - 22.0 > max_x {
            x = left;
            row += 1;
        }
        out.push((x, row));
        x += width;
    }
    let rows = if names.is_empty() { 0 } else { row + 1 };
    (out, rows)
}

/// A legend row at the top: a swatch (with a whisker mark when `whisker`) and a name.
fn legend(s: &mut String, left: f64, entries: &[(&str, &str, bool)]) {
    let mut x = left;
    for (color, name, whisker) in entries {
        let _ = write!(
            s,
            "<rect x=\"{x:.1}\" y=\"10\" width=\"16\" height=\"10\" rx=\"2\" fill=\"{color}\"/>"
        );
        if *whisker {
            let _ = write!(
                s,
                "<path d=\"M{a:.1} 15H{b:.1}M{a:.1} 11V19M{b:.1} 11V19\" stroke=\"{INK}\" stroke-width=\"1.3\"/>",
                a = x + 2.0,
                b = x + 14.0
            );
        }
        let _ = write!(
            s,
            "<text x=\"{tx:.1}\" y=\"19\" fill=\"{INK}\">{}</text>",
            escape(name),
            tx = x + 22.0
        );
        x += 22.0 + name.chars().count() as f64 * 7.0 + 22.0;
    }
}

fn min_max(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if lo > hi {
        (0.0, 1.0)
    } else if lo == hi {
        (lo - 0.5, hi + 0.5)
    } else {
        (lo, hi)
    }
}

/// A linear axis from `lo` to `hi` with ticks every `step` (1, 2 or 5 times a
/// power of ten), or a log axis (values already log10) with ticks at integers.
#[derive(Debug, Clone, Copy)]
struct Axis {
    lo: f64,
    hi: f64,
    step: f64,
}

impl Axis {
    fn nice(lo: f64, hi: f64, ticks: usize) -> Self {
        let raw = (hi - lo).max(f64::MIN_POSITIVE) / ticks as f64;
        let mag = 10f64.powf(raw.log10().floor());
        let step = [1.0, 2.0, 5.0, 10.0]
            .into_iter()
            .map(|m| m * mag)
            .find(|s| *s >= raw)
            .unwrap_or(10.0 * mag);
        let hi = (hi / step).ceil() * step;
        // A negative end (e.g. an interval reaching below zero) gets a small
        // margin instead of a whole extra step, so the bars keep the space.
        let lo = if lo >= 0.0 {
            (lo / step).floor() * step
        } else {
            lo - 0.03 * (hi - lo)
        };
        Self { lo, hi, step }
    }

    fn log(lo: f64, hi: f64) -> Self {
        let (lo, hi) = (lo.floor(), hi.ceil());
        Self {
            lo,
            hi: if hi > lo { hi } else { lo + 1.0 },
            step: 1.0,
        }
    }

    fn fraction(&self, v: f64) -> f64 {
        ((v - self.lo) / (self.hi - self.lo)).clamp(-0.05, 1.05)
    }

    /// Multiples of `step` inside `[lo, hi]`.
    fn ticks(&self) -> Vec<f64> {
        let first = (self.lo / self.step - 1e-9).ceil();
        let n = ((self.hi / self.step + 1e-9).floor() - first).max(0.0) as usize;
        (0..=n.min(50))
            .map(|i| (first + i as f64) * self.step)
            .collect()
    }
}

/// Formats `v` with as many decimals as `step` needs.
fn trim(v: f64, step: f64) -> String {
    let decimals = if step >= 1.0 {
        0
    } else {
        (-step.log10()).ceil().clamp(0.0, 6.0) as usize
    };
    let s = format!("{v:.decimals$}");
    if s == "-0" { "0".into() } else { s }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axis_covers_the_range_with_round_steps() {
        let a = Axis::nice(-0.013, 0.72, 6);
        assert!(a.lo <= -0.013 && a.lo > -0.1 && a.hi >= 0.72);
        assert!((a.step - 0.2).abs() < 1e-12, "{a:?}");
        let ticks = a.ticks();
        assert_eq!(ticks.len(), 5, "{ticks:?}");
        assert!(ticks[0].abs() < 1e-12 && (ticks[4] - 0.8).abs() < 1e-12);
        assert_eq!(trim(0.4, 0.2), "0.4");
        assert_eq!(trim(-0.0, 1.0), "0");
    }

    #[test]
    fn bar_chart_draws_one_whisker_per_bar() {
        let bars = (0..3)
            .map(|i| Bar {
                label: format!("v{i}"),
                truth: 0.1 * f64::from(i),
                estimate: 0.1 * f64::from(i) - 0.01,
                ci: (0.1 * f64::from(i) - 0.05, 0.1 * f64::from(i) + 0.03),
            })
            .collect();
        let svg = BarChart::new(bars).percent().to_svg();
        assert_eq!(svg.matches("<title>").count(), 3);
        assert_eq!(svg.matches("stroke-width=\"1.3\" fill=\"none\"").count(), 3);
        assert!(svg.contains("%</text>"));
    }

    #[test]
    fn one_dominant_bar_clips_the_axis_and_prints_its_values() {
        let bar = |label: &str, v: f64| Bar {
            label: label.into(),
            truth: v,
            estimate: v,
            ci: (v - 0.01, v + 0.01),
        };
        let svg = BarChart::new(vec![bar("big", 0.9), bar("a", 0.05), bar("b", 0.03)])
            .percent()
            .to_svg();
        assert_eq!(svg.matches("axis clipped").count(), 1);
        assert!(svg.contains("big: axis clipped: true 90.0%"), "{svg}");
        // Regression (new-user trial): the note sat in an opaque box over the
        // clipped bars, which then looked short. It is above the rows now.
        assert!(!svg.contains("fill-opacity=\"0.92\""), "{svg}");
        assert!(
            svg.contains("y=\"30\" text-anchor=\"end\" font-size=\"11\""),
            "{svg}"
        );
    }

    #[test]
    fn line_chart_has_every_point_and_a_band() {
        let chart = LineChart::new("epsilon", "accuracy")
            .log_x()
            .series(Series {
                name: "LDP".into(),
                points: vec![(0.5, 0.7), (1.0, 0.75), (4.0, 0.82)],
                band: Some(vec![(0.68, 0.72), (0.74, 0.76), (0.81, 0.83)]),
            });
        let svg = chart.to_svg();
        assert_eq!(svg.matches("<circle").count(), 3);
        assert_eq!(svg.matches("<polygon").count(), 1);
    }

    /// Regression: the models chart put its 8 legend entries on one line out
    /// to x = 2100 of a 760-wide chart (only 4 visible) and reused a colour.
    /// Entries now wrap within the width and every series has its own colour.
    #[test]
    fn line_chart_legend_wraps_within_the_width_and_colours_are_distinct() {
        let mut chart = LineChart::new("epsilon", "accuracy").log_x();
        let names: Vec<String> = (0..8)
            .map(|i| format!("naive bayes (1 sampled attr, OUE), local #{i}"))
            .collect();
        for name in &names {
            chart = chart.series(Series {
                name: name.clone(),
                points: vec![(0.5, 0.7), (8.0, 0.8)],
                band: None,
            });
        }
        let svg = chart.to_svg();
        let xs: Vec<f64> = svg
            .split("<text x=\"")
            .skip(1)
            .filter_map(|t| t.split('"').next()?.parse().ok())
            .collect();
        assert!(xs.iter().all(|&x| x < 760.0), "{xs:?}");
        for name in &names {
            assert!(svg.contains(name.as_str()), "{name} missing");
        }
        let strokes: std::collections::HashSet<&str> = svg
            .split("<polyline")
            .skip(1)
            .filter_map(|p| p.split("stroke=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(strokes.len(), 8);
    }
}
