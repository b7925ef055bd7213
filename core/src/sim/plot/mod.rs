//! The simulation as a picture: [`plot_svg`] draws one or more [`Timeline`]s on shared time
//! axes, as a self-contained SVG document; [`plot_html`] wraps it with the reports.
//!
//! Hand-written SVG rather than a plotting crate: the picture is a handful of polylines,
//! rectangles and labels, which takes less code than adapting a general library, adds no
//! dependency (plotters would bring a font stack and several crates to every user of the core),
//! and gives each series a stable `data-series` attribute that the tests check.
//!
//! Panels, top to bottom, all on one time axis with the scenario's faults as shaded bands:
//! jobs (pending, running); workers by state (stacked, one panel per configuration, one
//! y scale); provisions (up) and terminations (down) per bin, with the unhealthy detections
//! among them; job wait (median and 95th percentile of the jobs that started in each
//! interval, and the age of the oldest waiting job). Colour says *what* a line is; with
//! several configurations, the dash pattern says *which* (see the legend).

use std::fmt::Write as _;

use super::report::SimReport;
use super::timeline::{Sample, Timeline};

mod svg;

pub use svg::plot_svg;

const WIDTH: f64 = 1100.0;
const LEFT: f64 = 78.0;
const RIGHT: f64 = 24.0;
const PANEL_H: f64 = 160.0;
const PANEL_GAP: f64 = 62.0;
const HEADER: f64 = 110.0;
/// Most bars of the provisions/terminations panel (counts are summed into wider bins).
const MAX_BINS: usize = 120;

const DASHES: [&str; 4] = ["", "7 4", "2 3", "10 3 2 3"];

/// `(series name, colour)` of the worker states, bottom of the stack first.
const STATES: [(&str, &str); 5] = [
    ("workers busy", "#4e79a7"),
    ("workers ready", "#59a14f"),
    ("workers starting", "#f28e2b"),
    ("workers draining", "#b07aa1"),
    ("workers terminating", "#e15759"),
];

fn state_values(s: &Sample) -> [usize; 5] {
    [s.busy, s.ready, s.starting, s.draining, s.terminating]
}

fn fault_colour(kind: &str) -> &'static str {
    match kind.split(' ').next().unwrap_or("") {
        "provider" => "#e15759",
        "host" => "#9c755f",
        "partition" => "#edc948",
        "clock" => "#76b7b2",
        "leader" => "#b07aa1",
        _ => "#bab0ac",
    }
}

/// XML-escapes text for element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\t' && c != '\n' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A "nice" step (1, 2 or 5 times a power of ten) giving about `n` intervals up to `max`.
fn nice_step(max: f64, n: f64) -> f64 {
    if !(max.is_finite() && max > 0.0) {
        return 1.0;
    }
    let raw = max / n;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let k = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * mag
}

/// The axis top for `max` (a multiple of the step, at least 1) and the step.
fn nice_axis(max: f64, integer: bool) -> (f64, f64) {
    // A little headroom: a series at its maximum should not run along the frame.
    let max = if max.is_finite() && max > 0.0 {
        max * 1.04
    } else {
        1.0
    };
    let mut step = nice_step(max, 4.0);
    if integer {
        step = step.max(1.0);
    }
    ((max / step).ceil() * step, step)
}

fn fmt_num(x: f64) -> String {
    if x == x.trunc() && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        let s = format!("{x:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// A panel: where it is and what its y axis runs to.
struct Panel {
    top: f64,
    y_max: f64,
    y_min: f64,
    x_max: f64,
}

impl Panel {
    fn plot_w() -> f64 {
        WIDTH - LEFT - RIGHT
    }
    fn x(&self, t: f64) -> f64 {
        LEFT + (t / self.x_max).clamp(0.0, 1.0) * Self::plot_w()
    }
    fn y(&self, v: f64) -> f64 {
        let span = (self.y_max - self.y_min).max(f64::MIN_POSITIVE);
        self.top + PANEL_H - ((v - self.y_min) / span).clamp(0.0, 1.0) * PANEL_H
    }
}

struct Doc {
    out: String,
    /// Time axis unit: (divisor in seconds, name).
    unit: (f64, &'static str),
    x_max: f64,
    faults: Vec<(String, f64, f64)>,
}

impl Doc {
    /// Frame, grid, ticks, labels and the fault bands of a panel (series come after).
    fn panel(&mut self, p: &Panel, title: &str, y_label: &str, y_step: f64) {
        let w = Panel::plot_w();
        let o = &mut self.out;
        let _ = writeln!(
            o,
            r#"<g class="panel" data-panel="{t}"><text class="panel-title" x="{x}" y="{y}" font-weight="bold">{t}</text>"#,
            t = esc(title),
            x = LEFT,
            y = p.top - 8.0
        );
        for (kind, a, b) in &self.faults {
            let (xa, xb) = (p.x(*a), p.x(*b));
            let _ = writeln!(
                o,
                r#"<rect class="fault" data-fault="{k}" x="{xa:.1}" y="{y:.1}" width="{wd:.1}" height="{h}" fill="{c}" fill-opacity="0.18"><title>{k}: {a:.0}-{b:.0} s</title></rect>"#,
                k = esc(kind),
                y = p.top,
                wd = (xb - xa).max(1.0),
                h = PANEL_H,
                c = fault_colour(kind),
            );
        }
        // Horizontal grid and y ticks.
        let mut v = (p.y_min / y_step).ceil() * y_step;
        while v <= p.y_max + y_step * 1e-9 {
            let y = p.y(v);
            let _ = writeln!(
                o,
                r##"<line x1="{LEFT}" x2="{x2}" y1="{y:.1}" y2="{y:.1}" stroke="{c}" stroke-width="1"/><text x="{tx}" y="{ty:.1}" text-anchor="end" font-size="11">{l}</text>"##,
                x2 = LEFT + w,
                c = if v == 0.0 { "#888" } else { "#e6e6e6" },
                tx = LEFT - 6.0,
                ty = y + 4.0,
                l = fmt_num(v),
            );
            v += y_step;
        }
        // Vertical ticks on the time axis.
        let (div, _) = self.unit;
        let (_, t_step) = nice_axis(self.x_max / div, false);
        let mut t = 0.0;
        while t * div <= self.x_max + 1e-9 {
            let x = p.x(t * div);
            let _ = writeln!(
                o,
                r##"<line x1="{x:.1}" x2="{x:.1}" y1="{y1}" y2="{y2}" stroke="#888"/><text x="{x:.1}" y="{ty}" text-anchor="middle" font-size="11">{l}</text>"##,
                y1 = p.top + PANEL_H,
                y2 = p.top + PANEL_H + 4.0,
                ty = p.top + PANEL_H + 16.0,
                l = fmt_num(t),
            );
            t += t_step;
        }
        let _ = writeln!(
            o,
            r##"<rect x="{LEFT}" y="{y}" width="{w}" height="{PANEL_H}" fill="none" stroke="#444"/><text class="axis-label" transform="translate({lx},{ly}) rotate(-90)" text-anchor="middle" font-size="12">{yl}</text><text class="axis-label" x="{cx}" y="{by}" text-anchor="middle" font-size="12">simulated time ({u})</text></g>"##,
            y = p.top,
            lx = LEFT - 48.0,
            ly = p.top + PANEL_H / 2.0,
            yl = esc(y_label),
            cx = LEFT + w / 2.0,
            by = p.top + PANEL_H + 32.0,
            u = self.unit.1,
        );
    }

    /// A line through `(t, v)` points; `None` values break it.
    fn line(
        &mut self,
        p: &Panel,
        name: &str,
        policy: &str,
        colour: &str,
        dash: &str,
        points: impl Iterator<Item = (f64, Option<f64>)>,
    ) {
        let points: Vec<(f64, Option<f64>)> = points.collect();
        let mut d = String::new();
        let mut pen_down = false;
        for (i, &(t, v)) in points.iter().enumerate() {
            match v {
                Some(v) => {
                    // The middle of a flat run adds nothing to the picture: leave it out
                    // (keeps the file small).
                    let prev = i.checked_sub(1).and_then(|j| points[j].1);
                    let next = points.get(i + 1).and_then(|p| p.1);
                    if pen_down && prev == Some(v) && next == Some(v) {
                        continue;
                    }
                    let _ = write!(
                        d,
                        "{}{:.1},{:.1} ",
                        if pen_down { "L" } else { "M" },
                        p.x(t),
                        p.y(v)
                    );
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let dash = if dash.is_empty() {
            String::new()
        } else {
            format!(r#" stroke-dasharray="{dash}""#)
        };
        let _ = writeln!(
            self.out,
            r#"<g class="series" data-series="{n}" data-policy="{pol}"><path d="{d}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}/></g>"#,
            n = esc(name),
            pol = esc(policy),
            d = d.trim_end(),
        );
    }
}

/// An HTML page: the picture of `runs` ([`plot_svg`]) and their reports (side by side for
/// two runs, as [`compare_table`](super::compare_table)).
pub fn plot_html(runs: &[(&SimReport, &Timeline)]) -> String {
    let timelines: Vec<&Timeline> = runs.iter().map(|(_, t)| *t).collect();
    let svg = plot_svg(&timelines);
    let svg = svg
        .strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .unwrap_or(&svg);
    let table = match runs {
        [(a, _), (b, _)] => super::compare_table(a, b),
        _ => runs.iter().map(|(r, _)| r.to_string()).collect(),
    };
    let title = timelines.first().map_or(String::new(), |t| {
        format!("hodei-workers simulation: {} (seed {})", t.scenario, t.seed)
    });
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"/><title>{t}</title></head>\n<body style=\"font-family: sans-serif\">\n<h1 style=\"font-size: 18px\">{t}</h1>\n{svg}\n<pre>{table}</pre>\n</body></html>\n",
        t = esc(&title),
        table = esc(&table),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_axes() {
        assert_eq!(nice_axis(0.0, true), (1.0, 1.0));
        assert_eq!(nice_axis(7.0, true), (8.0, 2.0));
        assert_eq!(nice_axis(40.0, true), (60.0, 20.0));
        assert_eq!(nice_axis(93.0, false), (100.0, 50.0));
        let (top, step) = nice_axis(0.35, false);
        assert!((top - 0.4).abs() < 1e-9 && (step - 0.1).abs() < 1e-9);
        assert_eq!(fmt_num(0.1 + 0.2), "0.3");
        assert_eq!(esc("a<b&\"c'"), "a&lt;b&amp;&quot;c&apos;");
    }
}
