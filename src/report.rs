//! Presenting run outcomes: terminal text, JUnit XML and JSON.
//!
//! Failures are rendered with the same positioned-diagnostic renderer as load
//! errors, pointing at the YAML line of the failing assertion.

use std::fmt::Write as _;

use serde::Serialize;

use crate::diag::{Diagnostic, Paint};
use crate::journey::Journey;
use crate::outcome::{JourneyOutcome, RunResult, StepStatus};

use crate::diag::duration as ms;

/// Human-readable text for one run.
pub fn text(journey: &Journey, o: &JourneyOutcome, color: bool, verbose: bool) -> String {
    let p = Paint { on: color };
    let mut out = String::new();
    let verdict = match o.result {
        RunResult::Success => p.green("PASS"),
        RunResult::Failure => p.red("FAIL"),
    };
    let _ = writeln!(
        out,
        "{verdict} {} {}",
        p.bold(&o.journey),
        p.dim(&format!(
            "({}, {} step{}{})",
            ms(o.duration),
            o.steps.len(),
            if o.steps.len() == 1 { "" } else { "s" },
            // A retry must not hide the first failure.
            if o.attempts > 1 {
                format!(", {} attempts: the first failed", o.attempts)
            } else {
                String::new()
            }
        ))
    );
    if let Some(c) = o.failed_cleanup() {
        let _ = writeln!(
            out,
            "  {} {}",
            p.yellow("cleanup failed:"),
            p.dim(&format!(
                "`finally:` step `{}` failed (the result above stands)",
                c.name
            ))
        );
    }
    let width = o
        .steps
        .iter()
        .chain(&o.finally)
        .map(|s| s.name.len())
        .max()
        .unwrap_or(0);
    for (i, s) in o.steps.iter().chain(&o.finally).enumerate() {
        if i == o.steps.len() {
            let _ = writeln!(out, "  {}", p.dim("finally:"));
        }
        let (mark, status) = match s.status {
            StepStatus::Passed => (
                p.green("✓"),
                s.http_status
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| "ok".into()),
            ),
            StepStatus::Failed => (
                p.red("✗"),
                s.http_status.map(|c| c.to_string()).unwrap_or_else(|| {
                    s.failure
                        .as_ref()
                        .map(|f| f.reason.as_str().to_string())
                        .unwrap_or_default()
                }),
            ),
            StepStatus::Skipped => (p.dim("-"), "skipped".into()),
        };
        let timing = if s.status == StepStatus::Skipped {
            String::new()
        } else {
            ms(s.duration)
        };
        // Browser start-up is the prober's time: shown apart from the step's.
        let timing = match s.browser_start {
            Some(b) => format!("{timing} {}", p.dim(&format!("(+{} browser start)", ms(b)))),
            None => timing,
        };
        let redirects = if s.redirects > 0 {
            p.dim(&format!(
                " ({} redirect{})",
                s.redirects,
                if s.redirects == 1 { "" } else { "s" }
            ))
        } else {
            String::new()
        };
        let line = format!(
            "  {mark} {:<width$}  {status:>7}  {timing}{redirects}",
            s.name
        );
        let _ = writeln!(out, "{}", line.trim_end());
        for c in &s.captures {
            let _ = writeln!(out, "      {} {} = {}", p.dim("⤷"), c.name, c.value);
        }
        if verbose {
            for x in &s.exchanges {
                let _ = writeln!(out, "      > {}", x.request);
                for (k, v) in &x.request_headers {
                    let _ = writeln!(out, "      > {k}: {v}");
                }
                for c in &x.request_cookies {
                    let _ = writeln!(out, "      > (cookie) {c}");
                }
                if let Some(b) = &x.request_body {
                    let _ = writeln!(out, "      > (body) {}", b.replace('\n', "⏎"));
                }
                let _ = writeln!(out, "      < {}", x.response);
                for (k, v) in &x.response_headers {
                    let _ = writeln!(out, "      < {k}: {v}");
                }
                for c in &x.response_cookies {
                    let _ = writeln!(out, "      < (set-cookie) {c}");
                }
            }
            for t in &s.timings {
                let indent = if t.within.is_some() { "  " } else { "" };
                let _ = writeln!(
                    out,
                    "      · {indent}{} {}",
                    t.name,
                    crate::diag::millis(t.ms)
                );
            }
        }
        if let Some(f) = &s.failure {
            // A step from a fragment points into the fragments file.
            let step = journey.step(&s.name);
            let file = step.map_or(&journey.source, |st| st.file(&journey.source));
            let mut d = Diagnostic::error(file, f.span, f.message.clone());
            for site in step
                .and_then(|st| st.fragment.as_ref())
                .map(|u| u.sites())
                .unwrap_or_default()
            {
                d = d.with_note(site);
            }
            if let Some(a) = &f.actual {
                d = d.with_label(format!("got {a}"));
            }
            d = d.with_note(format!("reason: {}", f.reason));
            if let Some(x) = &f.excerpt {
                d = d.with_note(format!("response body: {}", x.replace('\n', "⏎")));
            }
            for a in &f.artifacts {
                d = d.with_note(format!("saved: {a}"));
            }
            for line in d.render(color).lines() {
                let _ = writeln!(out, "    {line}");
            }
        }
    }
    if o.result == RunResult::Failure
        && let Some(t) = o.trace_url.as_ref().or(o.trace_id.as_ref())
    {
        let _ = writeln!(out, "  {} {t}", p.dim("trace:"));
    }
    out
}

/// The closing line for a set of runs.
pub fn summary(outcomes: &[JourneyOutcome], color: bool) -> String {
    let p = Paint { on: color };
    let failed = outcomes
        .iter()
        .filter(|o| o.result == RunResult::Failure)
        .count();
    let passed = outcomes.len() - failed;
    let line = format!(
        "{} journey{}: {passed} passed, {failed} failed",
        outcomes.len(),
        if outcomes.len() == 1 { "" } else { "s" }
    );
    if failed > 0 {
        p.red(&line)
    } else {
        p.green(&line)
    }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    passed: usize,
    failed: usize,
    journeys: &'a [JourneyOutcome],
}

/// The JSON report (`--report-json`).
pub fn json(outcomes: &[JourneyOutcome]) -> String {
    let failed = outcomes
        .iter()
        .filter(|o| o.result == RunResult::Failure)
        .count();
    let report = JsonReport {
        passed: outcomes.len() - failed,
        failed,
        journeys: outcomes,
    };
    serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
}

/// XML-escaped text with the control characters XML 1.0 forbids removed.
fn xml(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| {
            if (c as u32) < 0x20 && c != '\n' && c != '\t' {
                ' '
            } else {
                c
            }
        })
        .collect();
    crate::server::esc(&clean)
}

/// The JUnit XML report (`--report-junit`): a test suite per journey, a test
/// case per step.
pub fn junit(journeys: &[&Journey], outcomes: &[JourneyOutcome]) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let failures: usize = outcomes
        .iter()
        .filter(|o| o.result == RunResult::Failure)
        .count();
    let tests: usize = outcomes.iter().map(|o| o.steps.len()).sum();
    let _ = writeln!(
        out,
        "<testsuites name=\"wayprobe\" tests=\"{tests}\" failures=\"{failures}\">"
    );
    for (j, o) in journeys.iter().zip(outcomes) {
        let f = o
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Failed)
            .count();
        let sk = o
            .steps
            .iter()
            .filter(|s| s.status == StepStatus::Skipped)
            .count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{f}\" skipped=\"{sk}\" time=\"{:.3}\" timestamp=\"{}\" file=\"{}\">",
            xml(&o.journey),
            o.steps.len(),
            o.duration.as_secs_f64(),
            humantime::format_rfc3339_seconds(o.started_at),
            xml(&j.source.path.display().to_string())
        );
        if o.result == RunResult::Failure
            && let Some(id) = &o.trace_id
        {
            // Properties as the JUnit schema has them, for CI tools that show them.
            let _ = writeln!(
                out,
                "    <properties>\n      <property name=\"trace_id\" value=\"{id}\"/>{}\n    </properties>",
                o.trace_url
                    .as_deref()
                    .map(|u| format!(
                        "\n      <property name=\"trace_url\" value=\"{}\"/>",
                        xml(u)
                    ))
                    .unwrap_or_default()
            );
        }
        for s in &o.steps {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
                xml(&s.name),
                xml(&o.journey),
                s.duration.as_secs_f64()
            );
            match (s.status, &s.failure) {
                (StepStatus::Skipped, _) => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"an earlier step failed\"/>\n    </testcase>"
                    );
                }
                (StepStatus::Failed, Some(f)) => {
                    let mut body = f.message.clone();
                    if let Some(loc) = &f.location {
                        let file = j.step(&s.name).map_or(&j.source, |st| st.file(&j.source));
                        let _ = write!(body, "\nat {}:{loc}", file.path.display());
                    }
                    if let Some(x) = &f.excerpt {
                        let _ = write!(body, "\nresponse body: {x}");
                    }
                    if let Some(t) = o.trace_url.as_ref().or(o.trace_id.as_ref()) {
                        let _ = write!(body, "\ntrace: {t}");
                    }
                    let _ = writeln!(
                        out,
                        ">\n      <failure type=\"{}\" message=\"{}\">{}</failure>\n    </testcase>",
                        f.reason,
                        xml(&f.message),
                        xml(&body)
                    );
                }
                _ => {
                    let _ = writeln!(out, "/>");
                }
            }
        }
        let _ = writeln!(out, "  </testsuite>");
    }
    out.push_str("</testsuites>\n");
    out
}
