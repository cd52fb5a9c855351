//! The journey report (`wayprobe report`, `serve`'s `/report`): for people
//! who do not read PromQL, per journey and period, whether customers could
//! do it, how much error budget is left, the incidents (burn episodes with
//! the failing step and the most common reason) and the slowest step's trend.
//!
//! Built on [`crate::slo_review`]: the SLIs, the budget and the burn
//! episodes are the generated rules' own expressions evaluated by
//! Prometheus; the step failures and durations are `serve`'s own series.
//! Rendered as JSON, Markdown (a chat post) or a static HTML page (no
//! JavaScript, printable, served under the status page's security headers).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::journey::Journey;
use crate::rules::{RulesConfig, input_selector};
use crate::server::esc;
use crate::slo_prom::{PromError, PromReader};
use crate::slo_review::{self, ReviewOptions, SloReview};

/// The period a report covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// The last 24 hours.
    Day,
    /// The last 7 days.
    #[default]
    Week,
    /// The last 28 days.
    #[serde(rename = "28d")]
    Days28,
}

impl Period {
    /// Parses `day`, `week` or `28d`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "28d" => Some(Period::Days28),
            _ => None,
        }
    }

    /// `day`, `week` or `28d`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Day => "day",
            Period::Week => "week",
            Period::Days28 => "28d",
        }
    }

    /// The achieved-SLI window of the review (`1d`, `7d`, `28d`).
    fn window(self) -> &'static str {
        match self {
            Period::Day => "1d",
            Period::Week => "7d",
            Period::Days28 => "28d",
        }
    }

    /// Length.
    pub fn duration(self) -> Duration {
        Duration::from_secs(
            86_400
                * match self {
                    Period::Day => 1,
                    Period::Week => 7,
                    Period::Days28 => 28,
                },
        )
    }

    /// In a sentence: "today", "this week".
    fn words(self) -> &'static str {
        match self {
            Period::Day => "in the last 24 hours",
            Period::Week => "this week",
            Period::Days28 => "in the last 28 days",
        }
    }

    /// Points of the slowest step's trend, and their spacing.
    fn trend(self) -> (usize, Duration) {
        match self {
            Period::Day => (24, Duration::from_secs(3600)),
            Period::Week => (7, Duration::from_secs(86_400)),
            Period::Days28 => (28, Duration::from_secs(86_400)),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Where the numbers come from (`prometheus`).
    pub source: String,
    /// `day`, `week` or `28d`.
    pub period: &'static str,
    /// Start of the period (RFC 3339).
    pub from: String,
    /// End of the period (RFC 3339).
    pub until: String,
    /// One entry per journey with SLOs, in name order.
    pub journeys: Vec<JourneyReport>,
}

/// One journey.
#[derive(Debug, Clone, Serialize)]
pub struct JourneyReport {
    /// Journey name.
    pub journey: String,
    /// Its description, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Each SLO in a sentence.
    pub slos: Vec<SloLine>,
    /// Burn episodes under the current objectives, oldest first.
    pub incidents: Vec<Incident>,
    /// The step that took longest on average, and how that changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slowest_step: Option<StepTrend>,
}

/// One SLO in words.
#[derive(Debug, Clone, Serialize)]
pub struct SloLine {
    /// SLO name.
    pub slo: String,
    /// `availability` or `latency`.
    pub kind: &'static str,
    /// The objective in percent.
    pub objective_percent: String,
    /// "Log in worked for 99.7% of checks this week (target 99.5%)".
    pub sentence: String,
    /// Good runs / runs over the period; `None` without runs.
    pub sli: Option<f64>,
    /// Runs counted (latency: successful runs).
    pub runs: f64,
    /// Bad runs.
    pub bad: f64,
    /// Whether the SLI met the objective.
    pub met: Option<bool>,
    /// Error budget of the SLO's own period left, in percent (≤ 0: spent).
    pub budget_remaining_percent: Option<f64>,
}

/// A burn episode: the SLO's burn-rate alerts were firing.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    /// Which SLO burned.
    pub slo: String,
    /// `page` or `ticket` (the most severe alert in it).
    pub severity: &'static str,
    /// First evaluation with an alert firing (RFC 3339).
    pub start: String,
    /// Last one.
    pub end: String,
    /// The step that failed most in it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Its most common failure reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Failed steps counted in it (rounded).
    pub failed_steps: u64,
    /// Links to the failed runs' artifacts and traces, when kept.
    pub links: Vec<String>,
}

/// The slowest step over the period.
#[derive(Debug, Clone, Serialize)]
pub struct StepTrend {
    /// Step name.
    pub step: String,
    /// Mean duration over the period, in seconds.
    pub mean_seconds: f64,
    /// Mean duration per hour (day) or per day (week, 28d), oldest first.
    pub points: Vec<TrendPoint>,
}

/// One point of a trend.
#[derive(Debug, Clone, Serialize)]
pub struct TrendPoint {
    /// End of the interval (RFC 3339).
    pub at: String,
    /// Mean step duration in it, in seconds; `None` without runs.
    pub mean_seconds: Option<f64>,
}

/// `99.7%`: a share, floored to 2 decimals so a miss never reads as a hit.
fn pct(x: f64) -> String {
    // The epsilon keeps 0.995 (9949.999… in binary) at 99.5%.
    let v = (x * 10_000.0 + 1e-7).floor() / 100.0;
    let s = format!("{v:.2}");
    format!("{}%", s.trim_end_matches('0').trim_end_matches('.'))
}

fn rfc3339(t: f64) -> String {
    humantime::format_rfc3339_seconds(SystemTime::UNIX_EPOCH + Duration::from_secs_f64(t.max(0.0)))
        .to_string()
}

fn sentence(j: &Journey, s: &SloReview, period: Period, sli: Option<f64>) -> String {
    let who = j.description.as_deref().unwrap_or(&j.name);
    let target = format!("target {}%", s.objective_percent);
    match (sli, s.threshold_seconds) {
        (None, _) => format!("{who}: no checks ran {} ({target})", period.words()),
        (Some(v), None) => format!(
            "{who} worked for {} of checks {} ({target})",
            pct(v),
            period.words()
        ),
        (Some(v), Some(t)) => format!(
            "{who} answered within {t}s in {} of successful checks {} ({target})",
            pct(v),
            period.words()
        ),
    }
}

/// Builds the report from Prometheus: the SLO review over the period, the
/// step failures of each burn episode and the slowest step's trend.
pub async fn from_prometheus(
    reader: &PromReader,
    journeys: &[Journey],
    cfg: &RulesConfig,
    period: Period,
    until: SystemTime,
) -> Result<Report, PromError> {
    let opts = ReviewOptions {
        until,
        since: period.duration(),
        step: cfg.interval,
        period_step: cfg.period_interval,
        extra: vec![],
    };
    let review = slo_review::review(reader, journeys, cfg, &opts).await?;
    let step = review.step_seconds;
    let mut sorted: Vec<&Journey> = journeys.iter().filter(|j| !j.slos.is_empty()).collect();
    sorted.sort_by(|a, b| a.name.cmp(&b.name));
    let until_unix = review.slos.first().map_or(0.0, |_| {
        humantime::parse_rfc3339(&review.until).map_or(0.0, unix)
    });
    let mut out = Vec::new();
    for j in sorted {
        let sel = input_selector(j, cfg, &[]);
        let mut slos = Vec::new();
        let mut incidents = Vec::new();
        for s in review.slos.iter().filter(|s| s.journey == j.name) {
            let a = s.achieved.iter().find(|a| a.window == period.window());
            let sli = a.and_then(|a| a.sli);
            let objective: f64 = s.objective_percent.parse().unwrap_or(100.0) / 100.0;
            slos.push(SloLine {
                slo: s.slo.clone(),
                kind: s.kind,
                objective_percent: s.objective_percent.clone(),
                sentence: sentence(j, s, period, sli),
                sli,
                runs: a.map_or(0.0, |a| a.runs),
                bad: a.map_or(0.0, |a| a.bad),
                met: sli.map(|v| v >= objective),
                budget_remaining_percent: s.budget_spent_percent.map(|b| 100.0 - b),
            });
            let Some(current) = s.candidates.iter().find(|c| c.current) else {
                continue;
            };
            // Page and ticket episodes that overlap are one incident.
            let mut spans: Vec<(f64, f64, &'static str)> = Vec::new();
            for e in &current.episodes {
                let (a, b) = (e.span.start_unix, e.span.end_unix);
                match spans
                    .iter_mut()
                    .find(|(x, y, _)| a <= *y + step && b + step >= *x)
                {
                    Some(sp) => {
                        sp.0 = sp.0.min(a);
                        sp.1 = sp.1.max(b);
                        if e.severity == "page" {
                            sp.2 = "page";
                        }
                    }
                    None => spans.push((a, b, e.severity)),
                }
            }
            spans.sort_by(|x, y| x.0.total_cmp(&y.0));
            for (a, b, severity) in spans {
                // Failures from the long window before the first alert (what
                // made it fire) to its end.
                let lookback = (b - a) + 3600.0;
                let q = format!(
                    "sum by (step, reason) (increase(journey_step_failures_total{sel}[{}s]))",
                    lookback.round() as u64
                );
                let by = reader.vector_at(&q, b).await?;
                let mut steps: BTreeMap<String, f64> = BTreeMap::new();
                let mut reasons: BTreeMap<String, f64> = BTreeMap::new();
                for (l, v) in &by {
                    *steps
                        .entry(l.get("step").cloned().unwrap_or_default())
                        .or_default() += v;
                    *reasons
                        .entry(l.get("reason").cloned().unwrap_or_default())
                        .or_default() += v;
                }
                let top = |m: &BTreeMap<String, f64>| {
                    m.iter()
                        .filter(|(_, v)| **v > 0.0)
                        .max_by(|x, y| x.1.total_cmp(y.1).then(y.0.cmp(x.0)))
                        .map(|(k, _)| k.clone())
                };
                incidents.push(Incident {
                    slo: s.slo.clone(),
                    severity,
                    start: rfc3339(a),
                    end: rfc3339(b),
                    step: top(&steps),
                    reason: top(&reasons),
                    failed_steps: steps.values().sum::<f64>().round() as u64,
                    links: vec![],
                });
            }
        }
        incidents.sort_by(|x, y| x.start.cmp(&y.start).then(x.slo.cmp(&y.slo)));
        let slowest_step = slowest_step(reader, &sel, period, until_unix).await?;
        out.push(JourneyReport {
            journey: j.name.clone(),
            description: j.description.clone(),
            slos,
            incidents,
            slowest_step,
        });
    }
    Ok(Report {
        source: "prometheus".into(),
        period: period.as_str(),
        from: review.from,
        until: review.until,
        journeys: out,
    })
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

async fn slowest_step(
    reader: &PromReader,
    sel: &str,
    period: Period,
    until: f64,
) -> Result<Option<StepTrend>, PromError> {
    let mean = |w: u64| {
        format!(
            "sum by (step) (increase(journey_step_duration_seconds_sum{sel}[{w}s])) / sum by (step) (increase(journey_step_duration_seconds_count{sel}[{w}s]))"
        )
    };
    let whole = reader
        .vector_at(&mean(period.duration().as_secs()), until)
        .await?;
    let Some((labels, mean_seconds)) = whole
        .into_iter()
        .filter(|(_, v)| v.is_finite())
        .max_by(|a, b| a.1.total_cmp(&b.1))
    else {
        return Ok(None);
    };
    let step = labels.get("step").cloned().unwrap_or_default();
    let (n, every) = trend_shape(period);
    let start = until - every * (n as f64 - 1.0);
    let series = reader
        .range_series(&mean(every as u64), start, until, every)
        .await?;
    let points = series
        .into_iter()
        .find(|(l, _)| l.get("step") == Some(&step))
        .map(|(_, p)| p)
        .unwrap_or_default();
    Ok(Some(StepTrend {
        step,
        mean_seconds,
        points: (0..n)
            .map(|i| {
                let t = start + every * i as f64;
                TrendPoint {
                    at: rfc3339(t),
                    mean_seconds: points
                        .iter()
                        .find(|(pt, _)| (pt - t).abs() < 0.5)
                        .map(|(_, v)| *v)
                        .filter(|v| v.is_finite()),
                }
            })
            .collect(),
    }))
}

fn trend_shape(period: Period) -> (usize, f64) {
    let (n, d) = period.trend();
    (n, d.as_secs_f64())
}

/// A failed run `serve` remembers, with links to its artifacts and trace.
#[derive(Debug, Clone)]
pub struct KnownFailure {
    /// Journey name.
    pub journey: String,
    /// When the run started (Unix seconds).
    pub at: f64,
    /// Artifact and trace links.
    pub links: Vec<String>,
}

/// Adds to each incident the links of the remembered failed runs inside it
/// (from an hour before its first alert, what made it fire, to its end).
pub fn attach_links(report: &mut Report, failures: &[KnownFailure]) {
    for j in &mut report.journeys {
        for i in &mut j.incidents {
            let (Ok(a), Ok(b)) = (
                humantime::parse_rfc3339(&i.start),
                humantime::parse_rfc3339(&i.end),
            ) else {
                continue;
            };
            let (a, b) = (unix(a) - 3600.0, unix(b));
            for f in failures
                .iter()
                .filter(|f| f.journey == j.journey && f.at >= a && f.at <= b)
            {
                for l in &f.links {
                    if !i.links.contains(l) && i.links.len() < 10 {
                        i.links.push(l.clone());
                    }
                }
            }
        }
    }
}

/// What `serve` knows without Prometheus: each SLO since it started, in
/// the same words, labelled so; incidents need Prometheus' history.
pub fn from_views(
    journeys: &[(Journey, Vec<crate::slo_view::SloView>)],
    since: SystemTime,
    now: SystemTime,
) -> Report {
    let mut out = Vec::new();
    for (j, views) in journeys {
        if views.is_empty() {
            continue;
        }
        let who = j.description.as_deref().unwrap_or(&j.name);
        let slos = views
            .iter()
            .map(|v| {
                let (runs, bad) = (v.runs_since_start as f64, v.bad_since_start as f64);
                let sli = (runs > 0.0).then(|| 1.0 - bad / runs);
                let objective: f64 = v.objective_percent.parse().unwrap_or(100.0) / 100.0;
                let target = format!("target {}%", v.objective_percent);
                let sentence = match (sli, v.threshold_seconds) {
                    (None, _) => format!("{who}: no checks ran since this prober started ({target})"),
                    (Some(x), None) => format!(
                        "{who} worked for {} of checks since this prober started ({target})",
                        pct(x)
                    ),
                    (Some(x), Some(t)) => format!(
                        "{who} answered within {t}s in {} of successful checks since this prober started ({target})",
                        pct(x)
                    ),
                };
                SloLine {
                    slo: v.name.clone(),
                    kind: v.kind,
                    objective_percent: v.objective_percent.clone(),
                    sentence,
                    sli,
                    runs,
                    bad,
                    met: sli.map(|x| x >= objective),
                    budget_remaining_percent: Some(100.0 - v.budget_spent_percent),
                }
            })
            .collect();
        out.push(JourneyReport {
            journey: j.name.clone(),
            description: j.description.clone(),
            slos,
            incidents: vec![],
            slowest_step: None,
        });
    }
    out.sort_by(|a, b| a.journey.cmp(&b.journey));
    Report {
        source: format!(
            "this prober's memory since {} (no history: incidents and trends need serve --prometheus-url)",
            humantime::format_rfc3339_seconds(since)
        ),
        period: "since-start",
        from: humantime::format_rfc3339_seconds(since).to_string(),
        until: humantime::format_rfc3339_seconds(now).to_string(),
        journeys: out,
    }
}

/// A text bar of `width` cells for a share in percent.
fn text_bar(percent: f64, width: usize) -> String {
    let filled = ((percent.clamp(0.0, 100.0) / 100.0) * width as f64).round() as usize;
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

fn secs(v: f64) -> String {
    if v < 1.0 {
        format!("{:.0} ms", v * 1000.0)
    } else {
        format!("{v:.2} s")
    }
}

fn budget_words(b: Option<f64>) -> String {
    match b {
        None => "budget unknown".into(),
        Some(b) if b <= 0.0 => "budget spent".into(),
        Some(b) => format!("{b:.1}% of the error budget left"),
    }
}

/// The trend's points, oldest first: `300 ms → 1.13 s`.
fn trend_text(t: &StepTrend) -> String {
    let points: Vec<String> = t
        .points
        .iter()
        .map(|p| p.mean_seconds.map_or("—".to_string(), secs))
        .collect();
    points.join(" → ")
}

/// `—` for an empty cell.
fn or_dash(s: String) -> String {
    if s.is_empty() { "—".to_string() } else { s }
}

/// The report as Markdown (for a chat post or a ticket).
pub fn render_markdown(r: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Journey report: {} ({} to {})\n",
        r.period, r.from, r.until
    );
    let _ = writeln!(out, "Numbers from {}.\n", r.source);
    for j in &r.journeys {
        let _ = writeln!(out, "## {}\n", j.journey);
        for s in &j.slos {
            let mark = match s.met {
                Some(true) => "✅",
                Some(false) => "❌",
                None => "➖",
            };
            let _ = writeln!(out, "- {mark} {}.", s.sentence);
            if let Some(b) = s.budget_remaining_percent {
                let _ = writeln!(out, "  `{}` {}", text_bar(b, 20), budget_words(Some(b)));
            }
        }
        out.push('\n');
        if j.incidents.is_empty() {
            let _ = writeln!(out, "No incidents.\n");
        } else {
            let _ = writeln!(
                out,
                "| Incident | From | To | Failing step | Most common reason | Links |"
            );
            let _ = writeln!(out, "|---|---|---|---|---|---|");
            for i in &j.incidents {
                let links: Vec<String> = i
                    .links
                    .iter()
                    .enumerate()
                    .map(|(n, l)| format!("[{}]({l})", n + 1))
                    .collect();
                let _ = writeln!(
                    out,
                    "| {} {} | {} | {} | {} | {} | {} |",
                    i.slo,
                    i.severity,
                    i.start,
                    i.end,
                    i.step.as_deref().unwrap_or("—"),
                    i.reason.as_deref().unwrap_or("—"),
                    or_dash(links.join(" "))
                );
            }
            out.push('\n');
        }
        if let Some(t) = &j.slowest_step {
            let trend = trend_text(t);
            let _ = writeln!(
                out,
                "Slowest step: **{}**, {} on average; trend: {}\n",
                t.step,
                secs(t.mean_seconds),
                trend
            );
        }
    }
    out
}

/// The report as JSON.
pub fn render_json(r: &Report) -> String {
    let mut s = serde_json::to_string_pretty(r).unwrap_or_default();
    s.push('\n');
    s
}

const STYLE: &str = "body{font:15px/1.5 system-ui,sans-serif;margin:1.5em auto;max-width:60em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;width:100%;margin:.6em 0}th,td{text-align:left;padding:.3em .6em;border-bottom:1px solid #ddd;vertical-align:top}\
.ok{color:#137333}.fail{color:#b3261e}.muted{color:#555;font-size:.9em}\
.bar{display:inline-block;width:12em;height:.9em;border:1px solid #888;vertical-align:middle;background:#fff}\
.bar span{display:block;height:100%;background:#137333;-webkit-print-color-adjust:exact;print-color-adjust:exact}\
.bar.low span{background:#b3261e}nav a{margin-right:1em}@media print{nav{display:none}}";

/// The report as one static HTML page: no script, inline CSS only (the
/// status page's CSP allows nothing else), budget bars in CSS, printable.
pub fn render_html(r: &Report, links: bool) -> String {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
         <title>Journey report: {}</title><style>{STYLE}</style></head><body>\
         <h1>Journey report: {} <span class=muted>{} to {}</span></h1>",
        esc(r.period),
        esc(r.period),
        esc(&r.from),
        esc(&r.until)
    );
    if links {
        h.push_str("<nav>Period: <a href=\"?period=day\">day</a><a href=\"?period=week\">week</a><a href=\"?period=28d\">28 days</a><a href=\"/\">status page</a></nav>");
    }
    let _ = write!(h, "<p class=muted>Numbers from {}.</p>", esc(&r.source));
    for j in &r.journeys {
        let _ = write!(
            h,
            "<section class=journey data-journey=\"{}\"><h2>{}</h2>",
            esc(&j.journey),
            esc(&j.journey)
        );
        for s in &j.slos {
            let class = match s.met {
                Some(true) => "ok",
                Some(false) => "fail",
                None => "muted",
            };
            let _ = write!(
                h,
                "<p class=\"slo {class}\" data-slo=\"{}\">{}.",
                esc(&s.slo),
                esc(&s.sentence)
            );
            if let Some(b) = s.budget_remaining_percent {
                let w = b.clamp(0.0, 100.0);
                let _ = write!(
                    h,
                    "<br><span class=\"bar{}\" role=img aria-label=\"{}\"><span style=\"width:{w:.1}%\"></span></span> <span class=muted>{}</span>",
                    if b < 25.0 { " low" } else { "" },
                    esc(&budget_words(Some(b))),
                    esc(&budget_words(Some(b)))
                );
            }
            h.push_str("</p>");
        }
        if j.incidents.is_empty() {
            h.push_str("<p class=muted>No incidents.</p>");
        } else {
            h.push_str("<table class=incidents><tr><th>Incident</th><th>From</th><th>To</th><th>Failing step</th><th>Most common reason</th><th>Links</th></tr>");
            for i in &j.incidents {
                let links: Vec<String> = i
                    .links
                    .iter()
                    .enumerate()
                    .map(|(n, l)| format!("<a href=\"{}\">{}</a>", esc(l), n + 1))
                    .collect();
                let _ = write!(
                    h,
                    "<tr class=incident><td>{} ({})</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&i.slo),
                    esc(i.severity),
                    esc(&i.start),
                    esc(&i.end),
                    esc(i.step.as_deref().unwrap_or("—")),
                    esc(i.reason.as_deref().unwrap_or("—")),
                    or_dash(links.join(" "))
                );
            }
            h.push_str("</table>");
        }
        if let Some(t) = &j.slowest_step {
            let trend = trend_text(t);
            let _ = write!(
                h,
                "<p class=trend>Slowest step: <strong>{}</strong>, {} on average; trend: {}</p>",
                esc(&t.step),
                esc(&secs(t.mean_seconds)),
                esc(&trend)
            );
        }
        h.push_str("</section>");
    }
    h.push_str("</body></html>\n");
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_bars() {
        assert_eq!(pct(0.99999), "99.99%");
        assert_eq!(pct(0.997), "99.7%");
        assert_eq!(pct(1.0), "100%");
        assert_eq!(text_bar(50.0, 10), "█████░░░░░");
        assert_eq!(text_bar(-3.0, 4), "░░░░");
        assert_eq!(Period::parse("28d"), Some(Period::Days28));
        assert_eq!(Period::parse("month"), None);
        assert_eq!(budget_words(Some(-1.0)), "budget spent");
    }
}
