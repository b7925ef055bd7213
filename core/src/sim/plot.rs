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

/// Draws `timelines` (one per configuration, same scenario) over simulated time as a
/// standalone SVG document. With one timeline the workers panel is a stacked area of the
/// states; with several, each gets its own workers panel on one y scale, and their lines in the
/// shared panels differ by dash pattern. An empty slice gives a document that says so.
///
/// Every series is a `<g class="series" data-series="…" data-policy="…">`, every fault band a
/// `<rect class="fault" data-fault="…">`, every axis title a `<text class="axis-label">`.
/// Cost: linear in the samples (at most [`MAX_SAMPLES`](super::MAX_SAMPLES) per timeline).
pub fn plot_svg(timelines: &[&Timeline]) -> String {
    let Some(first) = timelines.first() else {
        return format!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="60"><text x="10" y="30">no runs to plot</text></svg>"#
        );
    };
    let x_max = timelines
        .iter()
        .map(|t| t.duration_secs)
        .fold(0.0, f64::max)
        .max(1.0);
    let unit = if x_max > 3.0 * 3600.0 {
        (3600.0, "h")
    } else if x_max > 180.0 {
        (60.0, "min")
    } else {
        (1.0, "s")
    };
    let n_panels = 3 + timelines.len();
    let height = HEADER + n_panels as f64 * (PANEL_H + PANEL_GAP) + 10.0;
    let mut faults: Vec<(String, f64, f64)> = first
        .faults
        .iter()
        .map(|f| (f.kind.clone(), f.start_secs, f.end_secs))
        .collect();
    faults.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut doc = Doc {
        out: String::new(),
        unit,
        x_max,
        faults,
    };
    let labels: Vec<String> = timelines.iter().map(|t| t.label.clone()).collect();
    let title = if timelines.len() == 1 {
        format!(
            "scenario {} | config {} | seed {}",
            first.scenario, first.label, first.seed
        )
    } else {
        format!(
            "scenario {} | configs {} | seed {}",
            first.scenario,
            labels.join(" vs "),
            first.seed
        )
    };
    let _ = writeln!(
        doc.out,
        r#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">
<title>{t}</title>
<rect width="100%" height="100%" fill="white"/>
<text class="title" x="{LEFT}" y="24" font-size="16" font-weight="bold">{t}</text>"#,
        t = esc(&title),
    );
    legend(&mut doc, timelines);

    let mut top = HEADER + 10.0;
    let mut next_panel = || {
        let t = top;
        top += PANEL_H + PANEL_GAP;
        t
    };

    // Jobs.
    let jobs_max = timelines
        .iter()
        .flat_map(|t| &t.samples)
        .map(|s| s.pending_jobs.max(s.running_jobs) as f64)
        .fold(0.0, f64::max);
    let (y_max, step) = nice_axis(jobs_max, true);
    let p = Panel {
        top: next_panel(),
        y_max,
        y_min: 0.0,
        x_max,
    };
    doc.panel(&p, "Jobs", "jobs", step);
    for (i, tl) in timelines.iter().enumerate() {
        let dash = DASHES[i % DASHES.len()];
        let pts = || tl.samples.iter();
        doc.line(
            &p,
            "running jobs",
            &tl.label,
            "#4e79a7",
            dash,
            pts().map(|s| (s.t_secs, Some(s.running_jobs as f64))),
        );
        doc.line(
            &p,
            "pending jobs",
            &tl.label,
            "#e15759",
            dash,
            pts().map(|s| (s.t_secs, Some(s.pending_jobs as f64))),
        );
    }

    // Workers by state: stacked, one panel per configuration, one scale.
    let workers_max = timelines
        .iter()
        .flat_map(|t| &t.samples)
        .map(|s| state_values(s).iter().sum::<usize>() as f64)
        .fold(0.0, f64::max);
    let (y_max, step) = nice_axis(workers_max, true);
    for tl in timelines {
        let p = Panel {
            top: next_panel(),
            y_max,
            y_min: 0.0,
            x_max,
        };
        let title = if timelines.len() == 1 {
            "Workers by state (stacked)".to_owned()
        } else {
            format!("Workers by state (stacked) — {}", tl.label)
        };
        doc.panel(&p, &title, "workers", step);
        stacked(&mut doc, &p, tl);
    }

    // Provisions up, terminations down, per bin.
    let bins: Vec<Vec<Bin>> = timelines.iter().map(|t| bins(t, x_max)).collect();
    let up = bins
        .iter()
        .flatten()
        .map(|b| b.provisioned.max(b.provision_failures) as f64)
        .fold(0.0, f64::max);
    let down = bins
        .iter()
        .flatten()
        .map(|b| b.terminated.max(b.unhealthy) as f64)
        .fold(0.0, f64::max);
    let (top_v, step_up) = nice_axis(up, true);
    let (bottom_v, step_down) = nice_axis(down, true);
    let step = step_up.max(step_down);
    let p = Panel {
        top: next_panel(),
        y_max: (top_v / step).ceil() * step,
        y_min: -(bottom_v / step).ceil() * step,
        x_max,
    };
    let bin_secs = bins
        .first()
        .and_then(|b| b.first())
        .map_or(0.0, |b| b.end - b.start);
    doc.panel(
        &p,
        &format!(
            "Provisions (up) and terminations (down) per {} s",
            fmt_num(bin_secs.round())
        ),
        "workers / bin",
        step,
    );
    let k = timelines.len() as f64;
    for (i, (tl, bins)) in timelines.iter().zip(&bins).enumerate() {
        for (name, colour, sign, get) in [
            (
                "provisions",
                "#59a14f",
                1.0,
                (|b: &Bin| b.provisioned) as fn(&Bin) -> u64,
            ),
            ("terminations", "#e15759", -1.0, |b: &Bin| b.terminated),
            ("provision failures", "#f28e2b", 1.0, |b: &Bin| {
                b.provision_failures
            }),
            ("unhealthy detections", "#7b1f1f", -1.0, |b: &Bin| {
                b.unhealthy
            }),
        ] {
            let mut d = String::new();
            for b in bins {
                let v = get(b) as f64;
                if v == 0.0 {
                    continue;
                }
                let (x0, x1) = (p.x(b.start), p.x(b.end));
                let w = (x1 - x0) / k;
                let x = x0 + w * i as f64;
                // Unhealthy bars are drawn narrower inside the termination bars, failed
                // provisions narrower inside the provision bars (or alone).
                let narrow = name == "unhealthy detections" || name == "provision failures";
                let (x, w) = if narrow {
                    (x + w * 0.25, w * 0.5)
                } else {
                    (x, w)
                };
                let (ya, yb) = (p.y(0.0), p.y(sign * v));
                let _ = write!(d, "M{x:.1},{ya:.1}h{w:.2}V{yb:.1}h{:.2}Z ", -w);
            }
            let _ = writeln!(
                doc.out,
                r#"<g class="series" data-series="{name}" data-policy="{pol}"><path d="{d}" fill="{colour}" fill-opacity="{op}" stroke="none"/></g>"#,
                pol = esc(&tl.label),
                d = d.trim_end(),
                op = if i == 0 { "0.9" } else { "0.5" },
            );
        }
    }

    // Job wait.
    let wait_max = timelines
        .iter()
        .flat_map(|t| &t.samples)
        .map(|s| {
            s.wait_p95_secs
                .unwrap_or(0.0)
                .max(s.oldest_pending_secs)
                .max(s.wait_p50_secs.unwrap_or(0.0))
        })
        .fold(0.0, f64::max);
    let (y_max, step) = nice_axis(wait_max, false);
    let p = Panel {
        top: next_panel(),
        y_max,
        y_min: 0.0,
        x_max,
    };
    doc.panel(
        &p,
        &format!(
            "Job wait: p50 / p95 of the jobs started in the last {} s, oldest job waiting",
            fmt_num(first.wait_window_secs.round())
        ),
        "seconds",
        step,
    );
    for (i, tl) in timelines.iter().enumerate() {
        let dash = DASHES[i % DASHES.len()];
        let pts = || tl.samples.iter();
        doc.line(
            &p,
            "oldest pending job",
            &tl.label,
            "#bab0ac",
            dash,
            pts().map(|s| (s.t_secs, Some(s.oldest_pending_secs))),
        );
        doc.line(
            &p,
            "wait p95",
            &tl.label,
            "#e15759",
            dash,
            pts().map(|s| (s.t_secs, s.wait_p95_secs)),
        );
        doc.line(
            &p,
            "wait p50",
            &tl.label,
            "#4e79a7",
            dash,
            pts().map(|s| (s.t_secs, s.wait_p50_secs)),
        );
    }
    doc.out.push_str("</svg>\n");
    doc.out
}

/// Colours of the series, dash patterns of the configurations, colours of the faults.
fn legend(doc: &mut Doc, timelines: &[&Timeline]) {
    let o = &mut doc.out;
    let _ = writeln!(o, r#"<g class="legend">"#);
    let mut x = LEFT;
    let y = 48.0;
    let items: [(&str, &str); 9] = [
        ("pending jobs", "#e15759"),
        ("running jobs", "#4e79a7"),
        ("wait p50", "#4e79a7"),
        ("wait p95", "#e15759"),
        ("oldest pending", "#bab0ac"),
        ("provisions", "#59a14f"),
        ("failed provisions", "#f28e2b"),
        ("terminations", "#e15759"),
        ("unhealthy", "#7b1f1f"),
    ];
    for (name, colour) in items {
        let _ = writeln!(
            o,
            r#"<line x1="{x}" x2="{x2}" y1="{y}" y2="{y}" stroke="{colour}" stroke-width="3"/><text x="{tx}" y="{ty}" font-size="11">{name}</text>"#,
            x2 = x + 18.0,
            tx = x + 22.0,
            ty = y + 4.0,
        );
        x += 34.0 + name.len() as f64 * 6.3;
    }
    let mut x = LEFT;
    let y = 68.0;
    for (name, colour) in STATES.iter().rev() {
        let _ = writeln!(
            o,
            r#"<rect x="{x}" y="{ry}" width="12" height="10" fill="{colour}" fill-opacity="0.85"/><text x="{tx}" y="{ty}" font-size="11">{n}</text>"#,
            ry = y - 5.0,
            tx = x + 16.0,
            ty = y + 4.0,
            n = name.trim_start_matches("workers "),
        );
        x += 26.0 + (name.len() - 8) as f64 * 6.5;
    }
    let mut x = LEFT;
    let y = 88.0;
    if timelines.len() > 1 {
        for (i, tl) in timelines.iter().enumerate() {
            let dash = DASHES[i % DASHES.len()];
            let _ = writeln!(
                o,
                r##"<line x1="{x}" x2="{x2}" y1="{y}" y2="{y}" stroke="#333" stroke-width="2" stroke-dasharray="{d}"/><text x="{tx}" y="{ty}" font-size="11">{l}{bars}</text>"##,
                x2 = x + 28.0,
                d = if dash.is_empty() { "none" } else { dash },
                tx = x + 32.0,
                ty = y + 4.0,
                l = esc(&tl.label),
                bars = if i == 0 {
                    " (left bar)"
                } else {
                    " (right bar)"
                },
            );
            x += 60.0 + tl.label.len() as f64 * 6.5 + 60.0;
        }
    }
    let mut kinds: Vec<&str> = doc.faults.iter().map(|f| f.0.as_str()).collect();
    kinds.dedup();
    kinds.sort_unstable();
    kinds.dedup();
    for kind in kinds {
        let _ = writeln!(
            o,
            r#"<rect x="{x}" y="{ry}" width="18" height="12" fill="{c}" fill-opacity="0.35"/><text x="{tx}" y="{ty}" font-size="11">fault: {k}</text>"#,
            ry = y - 6.0,
            c = fault_colour(kind),
            tx = x + 22.0,
            ty = y + 4.0,
            k = esc(kind),
        );
        x += 70.0 + kind.len() as f64 * 6.5;
    }
    let _ = writeln!(o, "</g>");
}

/// The worker states as stacked areas, busy at the bottom.
fn stacked(doc: &mut Doc, p: &Panel, tl: &Timeline) {
    let n = tl.samples.len();
    if n == 0 {
        return;
    }
    let mut below = vec![0.0f64; n];
    for (k, (name, colour)) in STATES.iter().enumerate() {
        let above: Vec<f64> = tl
            .samples
            .iter()
            .zip(&below)
            .map(|(s, b)| b + state_values(s)[k] as f64)
            .collect();
        // Step shape: a sample holds for its interval.
        let start = |s: &Sample| (s.t_secs - tl.interval_secs).max(0.0);
        let top = staircase(
            tl.samples
                .iter()
                .zip(&above)
                .map(|(s, v)| (start(s), s.t_secs, *v)),
        );
        let bottom = staircase(
            tl.samples
                .iter()
                .zip(&below)
                .map(|(s, v)| (start(s), s.t_secs, *v)),
        );
        let mut d = String::new();
        for (i, (x, v)) in top.iter().chain(bottom.iter().rev()).enumerate() {
            let cmd = if i == 0 { "M" } else { "L" };
            let _ = write!(d, "{cmd}{:.1},{:.1} ", p.x(*x), p.y(*v));
        }
        let _ = writeln!(
            doc.out,
            r#"<g class="series" data-series="{name}" data-policy="{pol}"><path d="{d}Z" fill="{colour}" fill-opacity="0.85" stroke="none"/></g>"#,
            pol = esc(&tl.label),
        );
        below = above;
    }
}

/// The corners of a step function given as `(start, end, value)` pieces in time order: one
/// pair where the value changes, nothing in between (keeps the file small).
fn staircase(pieces: impl Iterator<Item = (f64, f64, f64)>) -> Vec<(f64, f64)> {
    let mut out = Vec::new();
    let mut last: Option<(f64, f64)> = None;
    for (start, end, v) in pieces {
        match last {
            None => out.push((start, v)),
            Some((_, prev)) if prev != v => {
                out.push((start, prev));
                out.push((start, v));
            }
            Some(_) => {}
        }
        last = Some((end, v));
    }
    if let Some((end, v)) = last {
        out.push((end, v));
    }
    out
}

/// Counts summed into at most [`MAX_BINS`] bins of whole sampling intervals.
struct Bin {
    start: f64,
    end: f64,
    provisioned: u64,
    terminated: u64,
    unhealthy: u64,
    provision_failures: u64,
}

fn bins(tl: &Timeline, x_max: f64) -> Vec<Bin> {
    let interval = tl.interval_secs.max(1e-3);
    let intervals = (x_max / interval).ceil().max(1.0) as usize;
    let per_bin = intervals.div_ceil(MAX_BINS).max(1);
    let width = per_bin as f64 * interval;
    let mut out: Vec<Bin> = (0..intervals.div_ceil(per_bin))
        .map(|i| Bin {
            start: i as f64 * width,
            end: ((i + 1) as f64 * width).min(x_max),
            provisioned: 0,
            terminated: 0,
            unhealthy: 0,
            provision_failures: 0,
        })
        .collect();
    for s in &tl.samples {
        // A sample covers (t - interval, t]: it belongs to the bin holding its start.
        let i = (((s.t_secs - interval).max(0.0) / width + 1e-9).floor() as usize)
            .min(out.len().saturating_sub(1));
        if let Some(b) = out.get_mut(i) {
            b.provisioned += s.provisioned;
            b.terminated += s.terminated;
            b.unhealthy += s.unhealthy;
            b.provision_failures += s.provision_failures;
        }
    }
    out
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
