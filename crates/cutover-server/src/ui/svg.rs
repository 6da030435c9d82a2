//! Server-rendered SVG charts for the admin web UI: pure functions from numbers to an inline
//! `<svg role="img">` that is readable without hovering and without JavaScript.
//!
//! Every chart carries a `<title>` and a `<desc>` (named by `aria-labelledby`, the
//! description summarising the data in words), axis ticks with labels, a legend when there is
//! more than one series, and value labels on the bars or on the last point of each line. The
//! palette is Okabe–Ito (distinguishable with the common colour-vision deficiencies). Every
//! piece of text goes through [`esc`]. Values are sanitised before any arithmetic: NaN and
//! negative values count as 0, infinities and anything above [`MAX_VALUE`] as [`MAX_VALUE`], so
//! the output never contains `NaN` or `inf`. The output is a function of the input alone (no
//! clock, no randomness): the same data draws the same bytes.
//!
//! Pages still show the numbers as a table (or visible labels) next to each chart: a chart is
//! a picture of the data, never the only copy of it. Charts scale to the width they are given
//! (at most their own); wide ones carry the class `wide` for a layout that wants to treat them
//! apart.

use std::fmt::Write as _;

use crate::pages::esc;

/// Largest value a chart draws; anything above (and an infinity) is drawn as this.
pub(crate) const MAX_VALUE: f64 = 1e15;
/// Most categories (bars, points) one chart draws; the description says when some are left out.
pub(crate) const MAX_CATEGORIES: usize = 120;
/// Most series one chart draws (the palette repeats after its eight colours).
pub(crate) const MAX_SERIES: usize = 16;
/// Most rows a horizontal bar chart draws.
pub(crate) const MAX_ROWS: usize = 60;
/// Labels longer than this are cut (with "…") inside the picture; tables show them whole.
pub(crate) const MAX_LABEL_CHARS: usize = 30;

/// Okabe–Ito: blue, orange, bluish green, vermillion, reddish purple, sky blue, yellow, grey.
pub(crate) const PALETTE: [&str; 8] = [
    "#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#7F7F7F",
];

const AXIS: &str = "#4b5563";
const GRID: &str = "#e5e7eb";
const INK: &str = "#111827";

/// The colour of series `i`.
pub(crate) fn colour(i: usize) -> &'static str {
    PALETTE[i % PALETTE.len()]
}

/// Options of [`stacked_bars`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ChartOpts<'a> {
    /// Values are percentages: the axis runs 0–100 % and labels carry "%".
    pub percent: bool,
    /// The axis reaches at least this far (e.g. a target), when given.
    pub y_max_hint: Option<f64>,
    /// Words put before the generated description (what the chart is about).
    pub desc: Option<&'a str>,
}

/// A value as drawn: NaN and negatives 0, infinities and huge values [`MAX_VALUE`].
pub(crate) fn clean(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 {
        0.0
    } else {
        v.min(MAX_VALUE)
    }
}

/// A percentage as drawn: clean, and at most 100.
fn clean_pct(v: f64) -> f64 {
    clean(v).min(100.0)
}

/// A number for a label: whole numbers without decimals, large ones with k/M/G.
pub(crate) fn fmt_num(v: f64) -> String {
    let v = clean(v);
    let short = |x: f64, unit: &str| {
        let s = format!("{x:.1}");
        let s = s.strip_suffix(".0").unwrap_or(&s).to_owned();
        format!("{s}{unit}")
    };
    if v >= 1e9 {
        short(v / 1e9, "G")
    } else if v >= 1e6 {
        short(v / 1e6, "M")
    } else if v >= 10_000.0 {
        short(v / 1e3, "k")
    } else if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

/// A percentage for a label ("95 %" style without the space: "95%", "72.5%").
pub(crate) fn fmt_pct(v: f64) -> String {
    let v = clean(v);
    let s = format!("{v:.1}");
    format!("{}%", s.strip_suffix(".0").unwrap_or(&s))
}

fn fmt_val(v: f64, percent: bool) -> String {
    if percent { fmt_pct(v) } else { fmt_num(v) }
}

/// The axis top and tick step for data up to `max`: 1, 2, 2.5 or 5 times a power of ten,
/// four or five ticks. `integer`: steps are whole (counts). Always finite and positive.
fn axis(max: f64, integer: bool) -> (f64, f64) {
    let max = clean(max);
    if max <= 0.0 {
        return (
            if integer { 4.0 } else { 1.0 },
            if integer { 1.0 } else { 0.25 },
        );
    }
    let raw = max / 4.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 2.5 {
        2.5
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    let mut step = nice * mag;
    if integer && step < 1.0 {
        step = 1.0;
    }
    if !(step.is_finite() && step > 0.0) {
        return (MAX_VALUE, MAX_VALUE / 4.0);
    }
    let top = ((max / step).ceil() * step).max(step);
    (top, step)
}

/// Cut a label for the picture.
fn short_label(s: &str) -> String {
    if s.chars().count() <= MAX_LABEL_CHARS {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(MAX_LABEL_CHARS - 1).collect();
        t.push('…');
        t
    }
}

/// A deterministic id for the chart's title and description (FNV-1a of its text).
fn chart_id(title: &str, desc: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in title.bytes().chain([0u8]).chain(desc.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("chart-{h:016x}")
}

/// `<svg …><title/><desc/>` — the opening every chart shares.
fn open(title: &str, desc: &str, w: f64, h: f64) -> String {
    let id = chart_id(title, desc);
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart{wide}\" role=\"img\" aria-labelledby=\"{id}-t {id}-d\" \
         viewBox=\"0 0 {w:.0} {h:.0}\" width=\"100%\" style=\"max-width:{w:.0}px\" font-family=\"system-ui,sans-serif\" font-size=\"12\">\
         <title id=\"{id}-t\">{t}</title><desc id=\"{id}-d\">{d}</desc>",
        t = esc(title),
        d = esc(desc),
        wide = if w >= 600.0 { " wide" } else { "" },
    )
}

/// A chart with nothing to draw: the title and "No data".
fn empty(title: &str, desc: &str) -> String {
    let mut s = open(title, desc, 480.0, 60.0);
    let _ = write!(
        s,
        "<rect x=\"0.5\" y=\"0.5\" width=\"479\" height=\"59\" fill=\"#f9fafb\" stroke=\"{GRID}\"/>\
         <text x=\"240\" y=\"35\" text-anchor=\"middle\" fill=\"{AXIS}\">No data</text></svg>"
    );
    s
}

/// Legend items laid out in rows within `width`, from (x0, y0): returns the markup and the
/// height used.
fn legend(names: &[&str], x0: f64, y0: f64, width: f64) -> (String, f64) {
    if names.len() < 2 {
        return (String::new(), 0.0);
    }
    let mut out = String::new();
    let (mut x, mut y) = (x0, y0);
    for (i, name) in names.iter().enumerate() {
        let label = short_label(name);
        let item_w = 18.0 + 7.0 * label.chars().count() as f64 + 14.0;
        if x > x0 && x + item_w > x0 + width {
            x = x0;
            y += 18.0;
        }
        let _ = write!(
            out,
            "<rect x=\"{x:.1}\" y=\"{ry:.1}\" width=\"12\" height=\"12\" fill=\"{c}\"/>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\" fill=\"{INK}\">{l}</text>",
            ry = y,
            c = colour(i),
            tx = x + 16.0,
            ty = y + 10.5,
            l = esc(&label),
        );
        x += item_w;
    }
    (out, y - y0 + 18.0)
}

/// The plotting area of a vertical chart: x from `left` to `right`, y from `top` down
/// `height`.
#[derive(Debug, Clone, Copy)]
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    height: f64,
}

/// Horizontal grid lines and y tick labels for a vertical chart whose axis runs from 0 to
/// `top` in steps of `step`.
fn y_axis(out: &mut String, frame: Frame, top: f64, step: f64, percent: bool) {
    let Frame {
        left,
        right,
        top: plot_top,
        height: plot_h,
    } = frame;
    let n = ((top / step).round() as usize).clamp(1, 20);
    for k in 0..=n {
        let v = step * k as f64;
        let y = plot_top + plot_h - v / top * plot_h;
        let _ = write!(
            out,
            "<line x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{right:.1}\" y2=\"{y:.1}\" stroke=\"{g}\"/>\
             <text x=\"{tx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"{AXIS}\">{l}</text>",
            g = if k == 0 { AXIS } else { GRID },
            tx = left - 6.0,
            ty = y + 4.0,
            l = esc(&fmt_val(v, percent)),
        );
    }
}

/// Which x labels to print so that they do not overlap: every `k`-th.
fn label_every(n: usize, plot_w: f64, longest: usize) -> usize {
    let per_label = (longest.clamp(2, MAX_LABEL_CHARS) as f64 * 6.5 + 8.0).max(30.0);
    let fit = (plot_w / per_label).floor().max(1.0) as usize;
    n.div_ceil(fit).max(1)
}

/// Daily (or any) totals as stacked vertical bars: one bar per category, one coloured segment
/// per series, the total above each bar, and a legend.
pub(crate) fn stacked_bars(
    title: &str,
    categories: &[String],
    series: &[(String, Vec<f64>)],
    opts: &ChartOpts<'_>,
) -> String {
    let cats = &categories[..categories.len().min(MAX_CATEGORIES)];
    let series = &series[..series.len().min(MAX_SERIES)];
    let value = |s: &(String, Vec<f64>), i: usize| {
        let v = s.1.get(i).copied().unwrap_or(0.0);
        if opts.percent { clean_pct(v) } else { clean(v) }
    };
    let totals: Vec<f64> = (0..cats.len())
        .map(|i| series.iter().map(|s| value(s, i)).sum::<f64>())
        .collect();
    let series_totals: Vec<f64> = series
        .iter()
        .map(|s| (0..cats.len()).map(|i| value(s, i)).sum::<f64>())
        .collect();
    // The description: what, over which categories, each series' total, the largest bar.
    let mut desc = opts.desc.map(|d| format!("{d} ")).unwrap_or_default();
    if cats.is_empty() || series.is_empty() {
        desc.push_str("No data.");
        return empty(title, &desc);
    }
    let _ = write!(
        desc,
        "{} bars, {} to {}.",
        cats.len(),
        cats.first().map_or("", String::as_str),
        cats.last().map_or("", String::as_str)
    );
    if !opts.percent {
        desc.push_str(" Totals:");
        for (s, t) in series.iter().zip(&series_totals) {
            let _ = write!(desc, " {} {};", s.0, fmt_num(*t));
        }
    }
    if let Some((i, max)) =
        totals
            .iter()
            .enumerate()
            .fold(None, |best: Option<(usize, f64)>, (i, t)| match best {
                Some((_, b)) if b >= *t => best,
                _ => Some((i, *t)),
            })
    {
        let _ = write!(
            desc,
            " Highest: {} with {}.",
            cats.get(i).map_or("", String::as_str),
            fmt_val(max, opts.percent)
        );
    }
    if categories.len() > cats.len() {
        let _ = write!(
            desc,
            " Only the first {} of {} are drawn.",
            cats.len(),
            categories.len()
        );
    }

    let max = totals.iter().copied().fold(0.0, f64::max);
    let hint = opts.y_max_hint.map_or(0.0, clean);
    let (top, step) = if opts.percent {
        (100.0, 25.0)
    } else {
        axis(max.max(hint), true)
    };
    let w = 720.0;
    let (ml, mr, mt) = (56.0, 12.0, 22.0);
    let plot_h = 200.0;
    let plot_w = w - ml - mr;
    let names: Vec<&str> = series.iter().map(|s| s.0.as_str()).collect();
    let legend_top = mt + plot_h + 30.0;
    let (legend_svg, legend_h) = legend(&names, ml, legend_top, plot_w);
    let h = legend_top + legend_h + 6.0;

    let mut out = open(title, &desc, w, h);
    y_axis(
        &mut out,
        Frame {
            left: ml,
            right: w - mr,
            top: mt,
            height: plot_h,
        },
        top,
        step,
        opts.percent,
    );
    let slot = plot_w / cats.len() as f64;
    let bar_w = (slot * 0.7).clamp(1.0, 56.0);
    let longest = cats.iter().map(|c| c.chars().count()).max().unwrap_or(1);
    let every = label_every(cats.len(), plot_w, longest);
    for (i, cat) in cats.iter().enumerate() {
        let x = ml + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut y = mt + plot_h;
        for (si, s) in series.iter().enumerate() {
            let v = value(s, i);
            if v <= 0.0 {
                continue;
            }
            let bh = (v / top * plot_h).min(y - mt);
            y -= bh;
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bar_w:.1}\" height=\"{bh:.1}\" fill=\"{c}\"/>",
                c = colour(si),
            );
        }
        let cx = x + bar_w / 2.0;
        let total = totals.get(i).copied().unwrap_or(0.0);
        if total > 0.0 {
            let _ = write!(
                out,
                "<text x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\" font-size=\"{fs}\" fill=\"{INK}\">{l}</text>",
                ty = y - 4.0,
                fs = if slot < 30.0 { 9 } else { 11 },
                l = esc(&fmt_val(total, opts.percent)),
            );
        }
        if i % every == 0 {
            let _ = write!(
                out,
                "<text x=\"{cx:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\" fill=\"{AXIS}\">{l}</text>",
                ty = mt + plot_h + 16.0,
                l = esc(&short_label(cat)),
            );
        }
    }
    out.push_str(&legend_svg);
    out.push_str("</svg>");
    out
}

/// Values over time as lines: one per series, a dot on each point, the last value written
/// next to the last point, and a legend.
pub(crate) fn line_chart(
    title: &str,
    x_labels: &[String],
    series: &[(String, Vec<f64>)],
    y_max_hint: Option<f64>,
    percent: bool,
) -> String {
    let xs = &x_labels[..x_labels.len().min(MAX_CATEGORIES)];
    let series = &series[..series.len().min(MAX_SERIES)];
    let val = |v: f64| if percent { clean_pct(v) } else { clean(v) };
    let points = |s: &(String, Vec<f64>)| -> Vec<f64> {
        s.1.iter().take(xs.len()).map(|v| val(*v)).collect()
    };
    let mut desc = String::new();
    if xs.is_empty() || series.iter().all(|s| s.1.is_empty()) {
        return empty(title, "No data.");
    }
    let _ = write!(
        desc,
        "{} points, {} to {}.",
        xs.len(),
        xs.first().map_or("", String::as_str),
        xs.last().map_or("", String::as_str)
    );
    for s in series {
        if let Some(last) = points(s).last() {
            let _ = write!(desc, " {}: {} at the end;", s.0, fmt_val(*last, percent));
        }
    }
    if x_labels.len() > xs.len() {
        let _ = write!(
            desc,
            " Only the first {} of {} are drawn.",
            xs.len(),
            x_labels.len()
        );
    }
    let max = series
        .iter()
        .flat_map(&points)
        .fold(0.0, f64::max)
        .max(y_max_hint.map_or(0.0, val));
    // Counts get whole-number ticks (no "0.2 users").
    let whole = series.iter().flat_map(&points).all(|v| v.fract() == 0.0)
        && y_max_hint.is_none_or(|h| val(h).fract() == 0.0);
    let (top, step) = if percent {
        (100.0, 25.0)
    } else {
        axis(max, whole)
    };
    let w = 720.0;
    let (ml, mr, mt) = (56.0, 64.0, 16.0);
    let plot_h = 200.0;
    let plot_w = w - ml - mr;
    let names: Vec<&str> = series.iter().map(|s| s.0.as_str()).collect();
    let legend_top = mt + plot_h + 30.0;
    let (legend_svg, legend_h) = legend(&names, ml, legend_top, plot_w);
    let h = legend_top + legend_h + 6.0;
    let mut out = open(title, &desc, w, h);
    y_axis(
        &mut out,
        Frame {
            left: ml,
            right: w - mr,
            top: mt,
            height: plot_h,
        },
        top,
        step,
        percent,
    );
    let x_at = |i: usize| {
        if xs.len() <= 1 {
            ml + plot_w / 2.0
        } else {
            ml + plot_w * i as f64 / (xs.len() - 1) as f64
        }
    };
    let y_at = |v: f64| mt + plot_h - v / top * plot_h;
    let longest = xs.iter().map(|c| c.chars().count()).max().unwrap_or(1);
    let every = label_every(xs.len(), plot_w, longest);
    for (i, l) in xs.iter().enumerate() {
        if i % every == 0 || (i + 1 == xs.len() && xs.len() <= 2) {
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{y:.1}\" text-anchor=\"middle\" fill=\"{AXIS}\">{l}</text>",
                x = x_at(i),
                y = mt + plot_h + 16.0,
                l = esc(&short_label(l)),
            );
        }
    }
    for (si, s) in series.iter().enumerate() {
        let pts = points(s);
        let c = colour(si);
        if pts.len() > 1 {
            let mut poly = String::new();
            for (i, v) in pts.iter().enumerate() {
                let _ = write!(poly, "{:.1},{:.1} ", x_at(i), y_at(*v));
            }
            let _ = write!(
                out,
                "<polyline points=\"{}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"2\"/>",
                poly.trim_end()
            );
        }
        for (i, v) in pts.iter().enumerate() {
            let _ = write!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{c}\"/>",
                x = x_at(i),
                y = y_at(*v)
            );
        }
        if let Some(last) = pts.last() {
            let i = pts.len() - 1;
            let _ = write!(
                out,
                "<text x=\"{x:.1}\" y=\"{y:.1}\" fill=\"{INK}\" font-weight=\"600\">{l}</text>",
                x = x_at(i) + 6.0,
                y = y_at(*last) + 4.0,
                l = esc(&fmt_val(*last, percent)),
            );
        }
    }
    out.push_str(&legend_svg);
    out.push_str("</svg>");
    out
}

/// One horizontal bar per row, its label on the left and its value on the right.
pub(crate) fn hbars(title: &str, rows: &[(String, f64)], percent: bool) -> String {
    let shown = &rows[..rows.len().min(MAX_ROWS)];
    let val = |v: f64| if percent { clean_pct(v) } else { clean(v) };
    if shown.is_empty() {
        return empty(title, "No data.");
    }
    let mut desc = String::new();
    for (label, v) in shown {
        let _ = write!(desc, "{label}: {}; ", fmt_val(val(*v), percent));
    }
    if rows.len() > shown.len() {
        let _ = write!(
            desc,
            "only the first {} of {} are drawn.",
            shown.len(),
            rows.len()
        );
    }
    let desc = desc.trim_end().trim_end_matches(';').to_owned();
    let max = shown.iter().map(|r| val(r.1)).fold(0.0, f64::max);
    let (top, step) = if percent {
        (100.0, 25.0)
    } else {
        axis(max, true)
    };
    let w = 720.0;
    let (label_w, value_w, mt) = (210.0, 64.0, 8.0);
    let row_h = 26.0;
    let plot_w = w - label_w - value_w - 8.0;
    let plot_h = row_h * shown.len() as f64;
    let h = mt + plot_h + 26.0;
    let mut out = open(title, &desc, w, h);
    // Vertical grid and the value axis at the bottom.
    let n = ((top / step).round() as usize).clamp(1, 20);
    for k in 0..=n {
        let v = step * k as f64;
        let x = label_w + v / top * plot_w;
        let _ = write!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{mt:.1}\" x2=\"{x:.1}\" y2=\"{y2:.1}\" stroke=\"{g}\"/>\
             <text x=\"{x:.1}\" y=\"{ty:.1}\" text-anchor=\"middle\" fill=\"{AXIS}\">{l}</text>",
            y2 = mt + plot_h,
            g = if k == 0 { AXIS } else { GRID },
            ty = mt + plot_h + 16.0,
            l = esc(&fmt_val(v, percent)),
        );
    }
    for (i, (label, v)) in shown.iter().enumerate() {
        let v = val(*v);
        let y = mt + row_h * i as f64;
        let bw = v / top * plot_w;
        let _ = write!(
            out,
            "<text x=\"{lx:.1}\" y=\"{ty:.1}\" text-anchor=\"end\" fill=\"{INK}\">{l}</text>\
             <rect x=\"{label_w:.1}\" y=\"{ry:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\" fill=\"{c}\"/>\
             <text x=\"{vx:.1}\" y=\"{ty:.1}\" fill=\"{INK}\" font-weight=\"600\">{vl}</text>",
            lx = label_w - 8.0,
            ty = y + row_h / 2.0 + 4.0,
            l = esc(&short_label(label)),
            ry = y + 4.0,
            bh = row_h - 8.0,
            c = colour(0),
            vx = label_w + bw + 6.0,
            vl = esc(&fmt_val(v, percent)),
        );
    }
    out.push_str("</svg>");
    out
}

/// Progress towards a target as a ring: the share reached drawn as an arc, the target as a
/// tick across the ring, both written out in the middle and below.
pub(crate) fn progress_ring(title: &str, value_percent: f64, target_percent: f64) -> String {
    let v = clean_pct(value_percent);
    let t = clean_pct(target_percent);
    let reached = v >= t;
    let desc = format!(
        "{} of the {} target{}.",
        fmt_pct(v),
        fmt_pct(t),
        if reached { ", target reached" } else { "" }
    );
    let (w, h) = (220.0, 210.0);
    let (cx, cy, r) = (110.0, 96.0, 70.0);
    let circ = 2.0 * std::f64::consts::PI * r;
    let arc = circ * v / 100.0;
    let angle = (t / 100.0 * 360.0 - 90.0).to_radians();
    let (ri, ro) = (r - 14.0, r + 14.0);
    let mut out = open(title, &desc, w, h);
    let _ = write!(
        out,
        "<circle cx=\"{cx}\" cy=\"{cy}\" r=\"{r}\" fill=\"none\" stroke=\"{GRID}\" stroke-width=\"18\"/>\
         <circle cx=\"{cx}\" cy=\"{cy}\" r=\"{r}\" fill=\"none\" stroke=\"{c}\" stroke-width=\"18\" \
         stroke-dasharray=\"{arc:.2} {circ:.2}\" transform=\"rotate(-90 {cx} {cy})\"/>\
         <line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" stroke=\"{INK}\" stroke-width=\"3\"/>\
         <text x=\"{cx}\" y=\"{vy}\" text-anchor=\"middle\" font-size=\"26\" font-weight=\"700\" fill=\"{INK}\">{vl}</text>\
         <text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\" fill=\"{AXIS}\">target {tl}</text></svg>",
        c = if reached { PALETTE[2] } else { PALETTE[0] },
        x1 = cx + ri * angle.cos(),
        y1 = cy + ri * angle.sin(),
        x2 = cx + ro * angle.cos(),
        y2 = cy + ro * angle.sin(),
        vy = cy + 9.0,
        vl = esc(&fmt_pct(v)),
        ty = cy + r + 34.0,
        tl = esc(&fmt_pct(t)),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cats(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("d{i}")).collect()
    }

    /// What every chart must be: one accessible image, titled and described, no NaN or inf.
    fn assert_sound(svg: &str) {
        assert!(svg.starts_with("<svg "), "{svg}");
        assert!(svg.ends_with("</svg>"), "{svg}");
        assert!(svg.contains("role=\"img\""), "{svg}");
        let id = svg
            .split("aria-labelledby=\"")
            .nth(1)
            .and_then(|r| r.split('-').nth(1))
            .map(|h| h.split(' ').next().unwrap_or(""))
            .unwrap_or("");
        assert!(
            svg.contains(&format!("<title id=\"chart-{id}-t\">")),
            "{svg}"
        );
        assert!(
            svg.contains(&format!("<desc id=\"chart-{id}-d\">")),
            "{svg}"
        );
        for bad in ["NaN", "inf", "Infinity", "<script"] {
            assert!(!svg.contains(bad), "{bad} in {svg}");
        }
        assert_eq!(svg.matches("<svg").count(), 1, "{svg}");
    }

    #[test]
    fn stacked_bars_draw_totals_ticks_and_a_legend() {
        let s = stacked_bars(
            "Sign-ins by route",
            &cats(3),
            &[
                ("managed".into(), vec![1.0, 2.0, 3.0]),
                ("federated".into(), vec![0.0, 5.0, 1.0]),
            ],
            &ChartOpts::default(),
        );
        assert_sound(&s);
        // Stack totals as value labels: 1, 7, 4.
        for total in [">1</text>", ">7</text>", ">4</text>"] {
            assert!(s.contains(total), "{total} in {s}");
        }
        assert!(s.contains(">managed</text>") && s.contains(">federated</text>"));
        assert!(s.contains("Totals: managed 6; federated 6;"), "{s}");
        assert!(s.contains("Highest: d1 with 7."), "{s}");
        assert!(s.contains(">d0</text>") && s.contains(">d2</text>"));
        // Axis: 0 .. 8 in steps of 2.
        assert!(s.contains(">8</text>") && s.contains(">0</text>"), "{s}");
        assert!(s.contains(PALETTE[0]) && s.contains(PALETTE[1]));
    }

    #[test]
    fn empty_all_zero_and_one_point_charts_are_sound() {
        let none: Vec<(String, Vec<f64>)> = vec![];
        for s in [
            stacked_bars("t", &[], &none, &ChartOpts::default()),
            stacked_bars("t", &cats(2), &none, &ChartOpts::default()),
            stacked_bars(
                "t",
                &cats(2),
                &[("a".into(), vec![0.0, 0.0])],
                &ChartOpts::default(),
            ),
            stacked_bars(
                "t",
                &cats(1),
                &[("a".into(), vec![5.0])],
                &ChartOpts::default(),
            ),
            line_chart("t", &[], &none, None, false),
            line_chart("t", &cats(3), &[("a".into(), vec![])], None, true),
            line_chart("t", &cats(1), &[("a".into(), vec![42.0])], None, false),
            line_chart("t", &cats(4), &[("a".into(), vec![0.0; 4])], None, false),
            hbars("t", &[], false),
            hbars("t", &[("a".into(), 0.0), ("b".into(), 0.0)], false),
            hbars("t", &[("a".into(), 3.0)], true),
            progress_ring("t", 0.0, 0.0),
            progress_ring("t", 100.0, 95.0),
        ] {
            assert_sound(&s);
        }
        assert!(stacked_bars("t", &[], &none, &ChartOpts::default()).contains("No data"));
        assert!(
            line_chart("t", &cats(1), &[("a".into(), vec![42.0])], None, false)
                .contains(">42</text>")
        );
    }

    #[test]
    fn hostile_numbers_are_clamped_never_printed_as_nan_or_inf() {
        let weird = vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -5.0,
            1e300,
            f64::MAX,
        ];
        let s = stacked_bars(
            "t",
            &cats(6),
            &[("a".into(), weird.clone()), ("b".into(), weird.clone())],
            &ChartOpts::default(),
        );
        assert_sound(&s);
        let s = stacked_bars(
            "t",
            &cats(6),
            &[("a".into(), weird.clone())],
            &ChartOpts {
                percent: true,
                y_max_hint: Some(f64::NAN),
                desc: None,
            },
        );
        assert_sound(&s);
        assert_sound(&line_chart(
            "t",
            &cats(6),
            &[("a".into(), weird.clone())],
            Some(f64::INFINITY),
            false,
        ));
        assert_sound(&line_chart(
            "t",
            &cats(6),
            &[("a".into(), weird.clone())],
            None,
            true,
        ));
        let rows: Vec<(String, f64)> = weird
            .iter()
            .enumerate()
            .map(|(i, v)| (format!("r{i}"), *v))
            .collect();
        assert_sound(&hbars("t", &rows, false));
        assert_sound(&hbars("t", &rows, true));
        for (v, t) in [(f64::NAN, f64::INFINITY), (-3.0, 250.0), (1e300, -1.0)] {
            assert_sound(&progress_ring("t", v, t));
        }
        // Negative values count as zero; a huge one as MAX_VALUE.
        assert_eq!(clean(-1.0), 0.0);
        assert_eq!(clean(f64::NAN), 0.0);
        assert_eq!(clean(f64::INFINITY), MAX_VALUE);
        assert_eq!(clean(1e300), MAX_VALUE);
        assert_eq!(fmt_num(1e300), "1000000G");
        let neg = hbars("t", &[("minus".into(), -7.0)], false);
        assert!(neg.contains(">0</text>"), "{neg}");
        assert!(
            neg.contains("width=\"0.0\""),
            "a negative bar has no length: {neg}"
        );
    }

    #[test]
    fn text_is_escaped() {
        let evil = "<script>alert(1)</script>\"&";
        let s = stacked_bars(
            evil,
            &[evil.to_owned()],
            &[(evil.into(), vec![1.0]), ("b".into(), vec![1.0])],
            &ChartOpts {
                desc: Some(evil),
                ..ChartOpts::default()
            },
        );
        assert_sound(&s);
        assert!(s.contains("&lt;script&gt;"), "{s}");
        assert_sound(&line_chart(
            evil,
            &[evil.into()],
            &[(evil.into(), vec![1.0])],
            None,
            false,
        ));
        assert_sound(&hbars(evil, &[(evil.into(), 1.0)], false));
        assert_sound(&progress_ring(evil, 50.0, 95.0));
    }

    #[test]
    fn output_is_deterministic_and_ids_differ_between_charts() {
        let a = || {
            stacked_bars(
                "A",
                &cats(14),
                &[("x".into(), (0..14).map(f64::from).collect())],
                &ChartOpts::default(),
            )
        };
        assert_eq!(a(), a());
        let b = hbars("B", &[("x".into(), 1.0)], false);
        assert_eq!(b, hbars("B", &[("x".into(), 1.0)], false));
        let id = |s: &str| s.split("aria-labelledby=\"").nth(1).unwrap()[..22].to_owned();
        assert_ne!(id(&a()), id(&b));
    }

    #[test]
    fn limits_are_applied_at_the_edge() {
        let series = |n: usize| vec![("a".to_owned(), vec![1.0; n])];
        let at = stacked_bars(
            "t",
            &cats(MAX_CATEGORIES),
            &series(MAX_CATEGORIES),
            &ChartOpts::default(),
        );
        assert!(!at.contains("are drawn"), "all {MAX_CATEGORIES} drawn");
        assert_eq!(at.matches("<rect").count(), MAX_CATEGORIES);
        let over = stacked_bars(
            "t",
            &cats(MAX_CATEGORIES + 1),
            &series(MAX_CATEGORIES + 1),
            &ChartOpts::default(),
        );
        assert!(
            over.contains(&format!(
                "Only the first {MAX_CATEGORIES} of {}",
                MAX_CATEGORIES + 1
            )),
            "{over}"
        );
        assert_eq!(over.matches("<rect").count(), MAX_CATEGORIES);
        let rows = |n: usize| (0..n).map(|i| (format!("r{i}"), 1.0)).collect::<Vec<_>>();
        assert_eq!(
            hbars("t", &rows(MAX_ROWS), false).matches("<rect").count(),
            MAX_ROWS
        );
        let over = hbars("t", &rows(MAX_ROWS + 1), false);
        assert_eq!(over.matches("<rect").count(), MAX_ROWS);
        assert!(over.contains(&format!("only the first {MAX_ROWS} of {}", MAX_ROWS + 1)));
        let long = "x".repeat(MAX_LABEL_CHARS);
        assert_eq!(short_label(&long), long);
        let longer = "x".repeat(MAX_LABEL_CHARS + 1);
        assert_eq!(short_label(&longer).chars().count(), MAX_LABEL_CHARS);
        assert!(short_label(&longer).ends_with('…'));
    }

    #[test]
    fn counts_get_whole_number_ticks_and_fractions_keep_theirs() {
        let counts = line_chart(
            "Users",
            &cats(2),
            &[("a".into(), vec![0.0, 1.0])],
            None,
            false,
        );
        assert_sound(&counts);
        assert!(counts.contains(">1</text>"), "{counts}");
        assert!(
            !counts.contains(">0.2") && !counts.contains(">0.5"),
            "{counts}"
        );
        let fractions = line_chart(
            "Rate",
            &cats(2),
            &[("a".into(), vec![0.0, 0.5])],
            None,
            false,
        );
        assert!(fractions.contains(">0.2</text>"), "{fractions}");
    }

    #[test]
    fn percent_charts_run_to_100_and_label_with_percent() {
        let s = line_chart(
            "Enrolled",
            &cats(3),
            &[("Finance".into(), vec![10.0, 55.5, 96.0])],
            Some(95.0),
            true,
        );
        assert_sound(&s);
        assert!(
            s.contains(">100%</text>") && s.contains(">96%</text>"),
            "{s}"
        );
        assert!(s.contains("Finance: 96% at the end"), "{s}");
        let ring = progress_ring("Wave 1", 72.5, 95.0);
        assert!(
            ring.contains(">72.5%</text>") && ring.contains("target 95%"),
            "{ring}"
        );
        assert!(ring.contains(PALETTE[0]));
        assert!(progress_ring("Wave 1", 96.0, 95.0).contains("target reached"));
        let h = hbars("Rate", &[("p".into(), 150.0)], true);
        assert!(h.contains(">100%</text>"), "capped at 100: {h}");
    }

    #[test]
    fn axis_steps_are_nice_and_finite() {
        assert_eq!(axis(0.0, true), (4.0, 1.0));
        assert_eq!(axis(7.0, true), (8.0, 2.0));
        assert_eq!(axis(3.0, true), (3.0, 1.0));
        assert_eq!(axis(100.0, true), (100.0, 25.0));
        assert_eq!(axis(1234.0, true), (1500.0, 500.0));
        let (top, step) = axis(MAX_VALUE * 16.0, true);
        assert!(top.is_finite() && step.is_finite() && step > 0.0);
        assert_eq!(fmt_num(12_000.0), "12k");
        assert_eq!(fmt_num(1_250_000.0), "1.2M");
        assert_eq!(fmt_num(2.5), "2.5");
        assert_eq!(fmt_pct(95.0), "95%");
        assert_eq!(fmt_pct(-3.0), "0%");
    }
}
