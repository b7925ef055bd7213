//! The simulation as a picture: the timeline is the run's (recording changes nothing), and
//! the SVG has the structure a reader needs — every series of every configuration, labelled
//! axes, the faults as bands — and is well-formed XML. Pixels are checked by looking at the
//! rendered picture, not here.

use hodei_workers::sim::{plot_html, plot_svg, Scenario, Simulation, Variant, MAX_SAMPLES};
use hodei_workers::WorkerLifecycleConfig;

fn scenario(name: &str, secs: f64) -> Scenario {
    let mut s = Scenario::builtin(name, 5).expect("built-in scenario");
    s.duration_secs = secs;
    s
}

/// A minimal well-formedness check: every element closed in order, attributes quoted, no
/// stray `<` or `&` in text. Returns the element names in document order.
fn check_xml(doc: &str) -> Vec<String> {
    let body = doc
        .strip_prefix(r#"<?xml version="1.0" encoding="UTF-8"?>"#)
        .unwrap_or(doc);
    let mut stack: Vec<String> = Vec::new();
    let mut names = Vec::new();
    let mut rest = body;
    while let Some(open) = rest.find('<') {
        let text = &rest[..open];
        for (i, _) in text.match_indices('&') {
            let ent = &text[i..];
            assert!(
                ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                    .iter()
                    .any(|e| ent.starts_with(e)),
                "bare & in text: {:?}",
                &ent[..ent.len().min(20)]
            );
        }
        let close = rest[open..].find('>').expect("unclosed tag") + open;
        let tag = &rest[open + 1..close];
        assert!(!tag.contains('<'), "'<' inside a tag: {tag:?}");
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes: {tag:?}"
        );
        if let Some(name) = tag.strip_prefix('/') {
            let top = stack
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(top, name.trim(), "</{name}> closes <{top}>");
        } else {
            let name: String = tag
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '/')
                .collect();
            assert!(!name.is_empty(), "empty tag name: {tag:?}");
            names.push(name.clone());
            if !tag.ends_with('/') {
                stack.push(name);
            }
        }
        rest = &rest[close + 1..];
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    assert!(rest.trim().is_empty(), "text after the root element");
    names
}

const SERIES: [&str; 13] = [
    "pending jobs",
    "running jobs",
    "workers busy",
    "workers ready",
    "workers starting",
    "workers draining",
    "workers terminating",
    "provisions",
    "provision failures",
    "terminations",
    "unhealthy detections",
    "wait p50",
    "wait p95",
];

#[test]
fn recording_changes_nothing_and_samples_the_whole_run() {
    let s = scenario("flaky", 900.0);
    let plain = Simulation::new(&s, None).unwrap().run();
    let (report, timeline) = Simulation::new(&s, None).unwrap().run_recorded();
    assert_eq!(plain, report, "sampling must only read");
    assert!(!timeline.samples.is_empty() && timeline.samples.len() <= MAX_SAMPLES);
    let last = timeline.samples.last().unwrap();
    assert_eq!(last.t_secs, report.simulated_secs);
    assert_eq!(last.pending_jobs as u64, report.jobs_pending);
    assert_eq!(last.running_jobs as u64, report.jobs_running);
    assert!(timeline
        .samples
        .windows(2)
        .all(|w| w[0].t_secs < w[1].t_secs));
    // Every interval's events are in exactly one sample.
    let sum =
        |f: fn(&hodei_workers::sim::Sample) -> u64| timeline.samples.iter().map(f).sum::<u64>();
    assert_eq!(sum(|s| s.provisioned), report.provisioned);
    assert_eq!(sum(|s| s.unhealthy), report.unhealthy_detections);
    assert_eq!(sum(|s| s.provision_failures), report.provision_failures);
    let peak = timeline
        .samples
        .iter()
        .map(|s| s.starting + s.ready + s.busy + s.draining + s.terminating)
        .max()
        .unwrap();
    assert!(
        peak <= report.peak_workers,
        "{peak} > {}",
        report.peak_workers
    );
    assert!(timeline.samples.iter().any(|s| s.wait_p50_secs.is_some()));
}

#[test]
fn a_long_run_keeps_at_most_max_samples() {
    let mut s = scenario("flaky", 100.0);
    s.duration_secs = 3.0 * 3600.0;
    s.step_secs = 1.0;
    let (_, t) = Simulation::new(&s, None).unwrap().run_recorded();
    assert!(t.samples.len() <= MAX_SAMPLES, "{}", t.samples.len());
    assert!(t.samples.len() >= MAX_SAMPLES / 2, "{}", t.samples.len());
}

#[test]
fn svg_has_every_series_labelled_axes_and_the_fault_bands() {
    let s = scenario("provider_outage", 1200.0);
    let (_, timeline) = Simulation::new(&s, None).unwrap().run_recorded();
    let svg = plot_svg(&[&timeline]);
    let names = check_xml(&svg);
    assert_eq!(names.first().map(String::as_str), Some("svg"));
    assert!(svg.contains(r#"xmlns="http://www.w3.org/2000/svg""#));
    for series in SERIES {
        assert!(
            svg.contains(&format!(r#"data-series="{series}" data-policy="config""#)),
            "series {series:?} missing"
        );
    }
    // A drawn series has at least one segment.
    assert!(svg.contains(r#"data-series="pending jobs" data-policy="config"><path d="M"#));
    for label in ["simulated time (min)", ">jobs<", ">workers<", ">seconds<"] {
        assert!(svg.contains(label), "axis label {label:?} missing");
    }
    assert!(svg.matches(r#"class="axis-label""#).count() >= 8);
    // One band per panel for the scenario's one outage.
    assert_eq!(
        svg.matches(r#"class="fault" data-fault="provider outage""#)
            .count(),
        4
    );
}

#[test]
fn compare_draws_both_configurations_on_shared_axes() {
    let s = scenario("partition", 900.0);
    let warm = Variant {
        label: "warm <pool> & co".into(),
        lifecycle: WorkerLifecycleConfig {
            min_ready_workers: 3,
            ..s.lifecycle.clone()
        },
        worker: None,
        pools: None,
    };
    let (ra, a) = Simulation::new(&s, None).unwrap().run_recorded();
    let (rb, b) = Simulation::new(&s, Some(&warm)).unwrap().run_recorded();
    let svg = plot_svg(&[&a, &b]);
    check_xml(&svg);
    for series in SERIES {
        for policy in ["config", "warm &lt;pool&gt; &amp; co"] {
            assert!(
                svg.contains(&format!(r#"data-series="{series}" data-policy="{policy}""#)),
                "series {series:?} of {policy:?} missing"
            );
        }
    }
    // Shared axes: one time axis title per panel, one workers panel per configuration.
    assert_eq!(svg.matches("simulated time (min)").count(), 5);
    assert!(svg.contains("Workers by state (stacked) — config"));
    assert!(svg.contains("Workers by state (stacked) — warm &lt;pool&gt; &amp; co"));
    assert_eq!(
        svg.matches(r#"class="fault" data-fault="partition 80%""#)
            .count(),
        5
    );
    let html = plot_html(&[(&ra, &a), (&rb, &b)]);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg") && html.contains("wait p95 (s)"));
    check_xml(html.strip_prefix("<!DOCTYPE html>\n").unwrap());
}

#[test]
fn nothing_to_plot_is_still_a_picture() {
    check_xml(&plot_svg(&[]));
}
