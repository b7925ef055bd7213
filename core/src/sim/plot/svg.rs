//! [`plot_svg`]: the panels, the legend and the series.

use super::*;

/// Draws `timelines` (one per configuration, same scenario) over simulated time as a
/// standalone SVG document. With one timeline the workers panel is a stacked area of the
/// states; with several, each gets its own workers panel on one y scale, and their lines in the
/// shared panels differ by dash pattern. An empty slice gives a document that says so.
///
/// Every series is a `<g class="series" data-series="…" data-policy="…">`, every fault band a
/// `<rect class="fault" data-fault="…">`, every axis title a `<text class="axis-label">`.
/// Cost: linear in the samples (at most [`MAX_SAMPLES`](crate::sim::timeline::MAX_SAMPLES) per timeline).
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
