//! "Can this SLO work?": what the generated alerts can see at the journey's
//! run rate, for `wayprobe check`.

use std::collections::BTreeMap;
use std::time::Duration;

use super::arith::{
    BurnTier, Dec, WINDOWS, fmt_ratio, human_duration, prom_duration, runs_in, runs_to_trip,
};
use super::build::SloSpec;
use super::build::{liveness_after, liveness_pages};
use super::{LIVENESS_ALERT, PROBER_ALERT, RulesConfig, is_generated_label, is_label_name};
use crate::diag::{Diagnostic, Severity};
use crate::journey::Journey;
use crate::journey::slo::{Slo, le_label};

/// Explains every SLO of `journey` as it would run from `locations`
/// locations (0 counts as 1), in the terms of SRE Workbook ch. 5:
///
/// - a [`Severity::Note`] per SLO: runs per alert window, how many bad runs
///   trip each alert tier, what one bad run costs in error budget, and how
///   long a total outage takes to page;
/// - [`Severity::Warning`]s when a tier can never fire (`factor × budget ≥ 1`),
///   when a single failed run pages, and when the interval exceeds a fifth of
///   the 5m short window (that window then often holds no run at all);
/// - [`Severity::Error`]s when the rules could not work: a latency threshold
///   that no histogram bucket matches exactly (or that collides with another),
///   or SLO/alert label names that are invalid or taken by the generator.
///
/// Every diagnostic points at the SLO in the journey file.
pub fn explain(journey: &Journey, locations: u32) -> Vec<Diagnostic> {
    let cfg = RulesConfig::default();
    let loc = locations.max(1);
    let mut out = Vec::new();
    let mut les: BTreeMap<String, (Duration, &str)> = BTreeMap::new();
    for slo in &journey.slos {
        let spec = SloSpec::new(journey, slo, &cfg);
        // `locations.total` of the SLO counts the runs, whatever --locations says.
        let loc = slo.locations.map_or(loc, |l| l.total.max(1));
        out.push(note(&spec, loc));
        out.extend(locations_note(&spec));
        out.extend(warnings(&spec, loc));
        out.extend(errors(&spec, &mut les));
    }
    out.push(liveness_note(journey, &cfg));
    out
}

/// What `locations: {total, quorum}` does to the SLO's alerts.
fn locations_note(spec: &SloSpec<'_>) -> Option<Diagnostic> {
    let l = spec.slo.locations?;
    let ticket = if l.quorum > 1 {
        format!(
            "; a location burning at a page tier's rate while fewer than {q} do opens a ticket (`slo_alert_tier=\"location-fast|location-slow\"`, with its `location` label): that location's network or region, not the shop",
            q = l.quorum
        )
    } else {
        "; with a quorum of 1 any burning location pages, so there is no separate location ticket"
            .to_string()
    };
    Some(Diagnostic {
        severity: Severity::Note,
        ..Diagnostic::error(
            &spec.journey.source,
            spec.slo.span,
            format!(
                "`{}` SLO `{}`: the page fires only when at least {} of the {} locations burn budget on their own runs (each location's 1h & 5m, or 6h & 30m, ratios above the page threshold){ticket}. Every window expects the runs of all {} locations (`rules --locations` is ignored for this SLO).",
                spec.journey.name, spec.slo.name, l.quorum, l.total, l.total
            ),
        )
    })
}

/// What the liveness alerts of a journey do, and how long a dead prober goes
/// unnoticed.
fn liveness_note(journey: &Journey, cfg: &RulesConfig) -> Diagnostic {
    let after = liveness_after(journey);
    let pages = liveness_pages(journey, cfg);
    let (verb, sev) = if pages {
        ("pages", "critical")
    } else {
        ("opens a ticket", "warning")
    };
    let why = match journey.liveness.severity {
        Some(_) => "as `liveness.severity` says".to_string(),
        None if pages => "because an SLO of the journey pages".to_string(),
        None if journey.slos.is_empty() => "as the journey has no SLO".to_string(),
        None => "as no SLO of the journey pages".to_string(),
    };
    let default = if journey.liveness.after.is_some() {
        "`liveness.after`".to_string()
    } else {
        format!(
            "the default ({} intervals, at least {})",
            crate::journey::Liveness::DEFAULT_INTERVALS,
            prom_duration(crate::journey::Liveness::MIN_AFTER)
        )
    };
    Diagnostic {
        severity: Severity::Note,
        ..Diagnostic::error(
            &journey.source,
            crate::diag::Span::new(1, 1, 1),
            format!(
                "`{}`: `{LIVENESS_ALERT}` {verb} when no run has finished for {}",
                journey.name,
                prom_duration(after)
            ),
        )
    }
    .with_label(format!("severity {sev}, {why}"))
    .with_note(format!(
        "{} is {default}; change it with `liveness: {{after: 5m, severity: page}}` (or `ticket`)",
        prom_duration(after)
    ))
    .with_note(format!(
        "a dead prober goes unnoticed for {w} after Prometheus loses its series, i.e. up to {w} + {} (one interval) + one scrape and rule evaluation after its last run; `{PROBER_ALERT}` fires with it",
        prom_duration(journey.interval),
        w = prom_duration(after),
    ))
    .with_note(match outage_page_time(journey, cfg) {
        Some(t) if t <= after => format!(
            "a total outage pages sooner ({}) than a stopped prober is noticed: lower `liveness.after` if a silent prober must page as fast",
            human_duration(t)
        ),
        Some(t) => format!(
            "a total outage pages after {}: a stopped prober is noticed before that",
            human_duration(t)
        ),
        None => "no SLO of the journey pages on an outage".to_string(),
    })
}

/// How long the journey's fastest paging SLO takes to page on a total outage
/// (from one location).
fn outage_page_time(journey: &Journey, cfg: &RulesConfig) -> Option<Duration> {
    journey
        .slos
        .iter()
        .filter(|s| s.threshold().is_none())
        .filter_map(|slo| {
            let spec = SloSpec::new(journey, slo, cfg);
            TierFacts::of(&spec, 1)
                .into_iter()
                .find(|t| t.tier.is_page() && t.enabled && t.can_fire)
                .map(|t| {
                    let runs = t.outage_runs().min(u128::from(u32::MAX)) as u32;
                    journey.interval.saturating_mul(runs)
                })
        })
        .min()
}

fn diag(spec: &SloSpec<'_>, severity: Severity, title: String) -> Diagnostic {
    Diagnostic {
        severity,
        ..Diagnostic::error(&spec.journey.source, spec.slo.span, title)
    }
}

/// Per-tier numbers at the journey's run rate.
struct TierFacts {
    tier: BurnTier,
    enabled: bool,
    threshold: Dec,
    can_fire: bool,
    long_runs: u128,
    short_runs: u128,
    min_bad: u32,
}

impl TierFacts {
    fn of(spec: &SloSpec<'_>, loc: u32) -> Vec<TierFacts> {
        let interval = spec.journey.interval;
        BurnTier::ALL
            .into_iter()
            .map(|tier| {
                let threshold = spec.threshold(tier);
                TierFacts {
                    tier,
                    enabled: spec.tier_enabled(tier),
                    threshold,
                    can_fire: !threshold.ge_one(),
                    long_runs: runs_to_trip(threshold, tier.long().secs, interval, loc),
                    short_runs: runs_to_trip(threshold, tier.short().secs, interval, loc),
                    min_bad: spec.min_bad_runs(tier),
                }
            })
            .collect()
    }

    /// Bad runs in a row that make a total outage trip this tier.
    fn outage_runs(&self) -> u128 {
        self.long_runs
            .max(self.short_runs)
            .max(u128::from(self.min_bad))
    }

    /// Whether one bad run alone trips it.
    fn single_trips(&self) -> bool {
        self.enabled && self.can_fire && self.outage_runs() <= 1
    }
}

fn runs_per(window_secs: u64, interval: Duration, loc: u32) -> String {
    let (n, d) = runs_in(window_secs, interval, loc);
    fmt_ratio(n, d, 1)
}

fn period_secs(slo: &Slo) -> u64 {
    u64::from(slo.window.days()) * 86_400
}

/// `(allowed bad runs per period, % of the budget one bad run spends)`.
fn budget_facts(spec: &SloSpec<'_>, loc: u32) -> (String, String) {
    let (bn, bd) = spec.budget.parts();
    let (pn, pd) = runs_in(period_secs(spec.slo), spec.journey.interval, loc);
    let allowed = fmt_ratio(bn * pn, bd * pd, 1);
    let mut cost = fmt_ratio(100 * bd * pd, bn * pn, 2);
    if cost == "0" {
        cost = "less than 0.01".into();
    }
    (allowed, format!("{cost}%"))
}

fn bad_word(spec: &SloSpec<'_>) -> &'static str {
    if spec.is_latency() { "slow" } else { "failed" }
}

fn note(spec: &SloSpec<'_>, loc: u32) -> Diagnostic {
    let slo = spec.slo;
    let interval = spec.journey.interval;
    let what = match slo.threshold() {
        None => "of runs succeed".to_string(),
        Some(t) => format!("of successful runs finish within {}", prom_duration(t)),
    };
    let title = format!(
        "SLO `{}`: {}% {what} over {}",
        spec.sloth_slo,
        slo.objective.percent(),
        slo.window.as_str()
    );
    let bad = bad_word(spec);
    let mut per: Vec<String> = WINDOWS
        .iter()
        .map(|w| format!("{} per {}", runs_per(w.secs, interval, loc), w.name))
        .collect();
    per.push(format!(
        "{} per {}",
        runs_per(period_secs(slo), interval, loc),
        slo.window.as_str()
    ));
    let (allowed, cost) = budget_facts(spec, loc);
    let mut d = diag(spec, Severity::Note, title)
        .with_label(format!(
            "error budget {}: {allowed} {bad} runs per {}",
            spec.budget,
            slo.window.as_str()
        ))
        .with_note(format!(
            "runs every {} from {loc} location{}: {}",
            prom_duration(interval),
            if loc == 1 { "" } else { "s" },
            per.join(", ")
        ))
        .with_note(format!(
            "one {bad} run spends {cost} of the {} error budget ({allowed} {bad} runs allowed)",
            slo.window.as_str()
        ));
    let tiers = TierFacts::of(spec, loc);
    for t in &tiers {
        let head = format!(
            "{} ({}x over {} and {}, threshold {})",
            t.tier.name(),
            t.tier.factor(slo.window),
            t.tier.long().name,
            t.tier.short().name,
            t.threshold
        );
        let text = if !t.enabled {
            format!("{head}: disabled")
        } else if !t.can_fire {
            format!("{head}: can never fire")
        } else {
            let guard = if t.min_bad > 1 {
                format!(
                    " (and at least {} in the {}, `min_bad_runs_to_page`)",
                    t.min_bad,
                    t.tier.long().name
                )
            } else {
                String::new()
            };
            format!(
                "{head}: fires at {} of {} and {} of {} {bad} runs{guard}",
                t.long_runs,
                runs_per(t.tier.long().secs, interval, loc),
                t.short_runs,
                runs_per(t.tier.short().secs, interval, loc),
            )
        };
        d = d.with_note(text);
    }
    match tiers.iter().find(|t| t.enabled && t.can_fire) {
        Some(t) => {
            let runs = t.outage_runs();
            let rounds = runs.div_ceil(u128::from(loc));
            let time = interval.saturating_mul(rounds.min(u128::from(u32::MAX)) as u32);
            let outage = if spec.is_latency() {
                "runs that are all slow"
            } else {
                "a total outage"
            };
            d = d.with_note(format!(
                "{outage} {} after {runs} {bad} run{} ({}), plus scrape, rule-evaluation and Alertmanager delays",
                if t.tier.is_page() { "pages" } else { "opens a ticket" },
                if runs == 1 { "" } else { "s" },
                human_duration(time),
            ));
        }
        None => d = d.with_note("no enabled alert tier can fire"),
    }
    let single = tiers.iter().any(TierFacts::single_trips_page);
    let single_ticket = tiers.iter().any(|t| !t.tier.is_page() && t.single_trips());
    d = d.with_note(if single {
        format!("a single {bad} run pages")
    } else {
        format!("a single {bad} run does not page")
    });
    if spec.journey.retries.count > 0 {
        d = d.with_note(match slo.judges() {
            crate::journey::slo::Judge::First => format!(
                "judges the first attempt of each run (`judge: first`, the default): a run that passes on one of its {} retries still counts as failed here",
                spec.journey.retries.count
            ),
            crate::journey::slo::Judge::Final => {
                "judges the final attempt of each run (after retries); `journey_first_attempts_total` keeps the first attempts".to_string()
            }
        });
    }
    let (hn, hd) = runs_in(3600, interval, loc);
    d.with_note(format!(
        "in the first hour (a new journey, a fresh Prometheus, a new location) each window counts at least the runs it should hold ({} per 1h from {loc} location{}, as `wayprobe rules --locations {loc}` writes), so all of the above holds from the first run: a single {bad} run {}{}, and a total outage of a new journey trips the same tiers after the same runs",
        fmt_ratio(hn, hd, 1),
        if loc == 1 { "" } else { "s" },
        if single { "pages" } else { "does not page" },
        if single_ticket { " and opens a ticket" } else if single { "" } else { " or open a ticket" },
    ))
}

impl TierFacts {
    fn single_trips_page(&self) -> bool {
        self.tier.is_page() && self.single_trips()
    }
}

fn warnings(spec: &SloSpec<'_>, loc: u32) -> Vec<Diagnostic> {
    let slo = spec.slo;
    let interval = spec.journey.interval;
    let bad = bad_word(spec);
    let tiers = TierFacts::of(spec, loc);
    let mut out = Vec::new();
    for t in tiers.iter().filter(|t| t.enabled && !t.can_fire) {
        let factor = t.tier.factor(slo.window);
        let bound = (1.0 - 1.0 / factor.to_f64()) * 100.0;
        out.push(
            diag(
                spec,
                Severity::Warning,
                format!("the {} alert of SLO `{}` can never fire", t.tier.name(), spec.sloth_slo),
            )
            .with_label(format!("{factor} x budget {} = {} >= 1", spec.budget, t.threshold))
            .with_note(format!(
                "an error ratio is at most 1 (every run bad), never above {}: even a total outage does not trip it",
                t.threshold
            ))
            .with_note(format!(
                "this tier needs an objective above {bound:.2}%; raise the objective or turn the tier off (`alerting: {{{}: false}}`)",
                if t.tier.is_page() { "page" } else { "ticket" }
            )),
        );
    }
    let singles: Vec<&TierFacts> = tiers.iter().filter(|t| t.single_trips_page()).collect();
    if !singles.is_empty() {
        let (_, cost) = budget_facts(spec, loc);
        // The fastest interval that makes every page tier need 2 bad runs in its long window.
        let max_secs = singles
            .iter()
            .map(|t| {
                let (n, d) = t.threshold.parts();
                (n * u128::from(t.tier.long().secs) * u128::from(loc)) / d
            })
            .min()
            .unwrap_or(0);
        // The objective below which one bad run stays under every page threshold.
        let min_budget = tiers
            .iter()
            .filter(|t| t.tier.is_page() && t.enabled)
            .map(|t| {
                let (n, d) = runs_in(t.tier.long().secs, interval, loc);
                d as f64 / (n as f64 * t.tier.factor(slo.window).to_f64())
            })
            .fold(0.0f64, f64::max);
        let objective = ((1.0 - min_budget) * 10_000.0).floor() / 100.0;
        let first = singles[0];
        let mut d = diag(
            spec,
            Severity::Warning,
            format!("a single {bad} run of `{}` pages (SLO `{}`)", spec.journey.name, slo.name),
        )
        .with_label(format!(
            "{} at {}% every {}",
            first.tier.name(),
            slo.objective.percent(),
            prom_duration(interval)
        ))
        .with_note(format!(
            "one {bad} run is 1 of {} runs in the {} window, above the {} threshold {}, and spends {cost} of the {} error budget",
            runs_per(first.tier.long().secs, interval, loc),
            first.tier.long().name,
            first.tier.name(),
            first.threshold,
            slo.window.as_str()
        ));
        if max_secs >= 1 {
            d = d.with_note(format!(
                "run the journey every {} or faster (or from more locations), so that paging needs at least 2 {bad} runs",
                prom_duration(Duration::from_secs(max_secs.min(u128::from(u32::MAX)) as u64))
            ));
        }
        d = d.with_note("or add `min_bad_runs_to_page: 2` under `alerting:`");
        if objective > 0.0 {
            d = d.with_note(format!("or lower the objective to {objective:.2}% or less"));
        }
        out.push(d);
    }
    let short = BurnTier::PageFast.short();
    if interval.as_millis() * 5 > u128::from(short.secs) * 1000 {
        out.push(
            diag(
                spec,
                Severity::Warning,
                format!(
                    "`{}` runs every {}: the {} alert window holds fewer than 5 runs",
                    spec.journey.name,
                    prom_duration(interval),
                    short.name
                ),
            )
            .with_label(format!("SLO `{}`", slo.name))
            .with_note(
                "a window without runs has an error ratio of 0/0 = NaN, which never fires; with few runs it moves in big steps, so alerts flap",
            )
            .with_note(format!(
                "run the journey at least every {} (a fifth of the {} window)",
                prom_duration(Duration::from_secs(short.secs / 5)),
                short.name
            )),
        );
    }
    out
}

fn errors<'a>(
    spec: &SloSpec<'a>,
    les: &mut BTreeMap<String, (Duration, &'a str)>,
) -> Vec<Diagnostic> {
    let slo = spec.slo;
    let mut out = Vec::new();
    if let Some(t) = slo.threshold() {
        let le = le_label(t.as_secs_f64());
        let exact = Dec::new(t.as_nanos(), 9);
        let matches =
            Dec::parse(&le) == Some(exact) && le.parse::<f64>().ok() == Some(t.as_secs_f64());
        if !matches {
            out.push(
                diag(
                    spec,
                    Severity::Error,
                    format!("the latency threshold of SLO `{}` has no exact histogram bucket", spec.sloth_slo),
                )
                .with_label(format!(
                    "{} is written `le=\"{le}\"`",
                    humantime::format_duration(t)
                ))
                .with_note(format!(
                    "`journey_duration_seconds` buckets are matched by their exact `le` text; {} seconds does not print back as itself",
                    exact
                ))
                .with_note("use a whole number of milliseconds, e.g. `250ms` or `2s`"),
            );
        }
        match les.get(&le) {
            Some((other, name)) if *other != t => out.push(
                diag(
                    spec,
                    Severity::Error,
                    format!("the latency thresholds of SLOs `{name}` and `{}` share one bucket", slo.name),
                )
                .with_label(format!("both are written `le=\"{le}\"`"))
                .with_note("one of them would read the other's bucket; make the thresholds differ by at least 1ms"),
            ),
            Some(_) => {}
            None => {
                les.insert(le, (t, slo.name.as_str()));
            }
        }
    }
    let mut check = |what: &str, key: &str, generated: bool| {
        if !is_label_name(key) {
            out.push(
                diag(spec, Severity::Error, format!("{what} `{key}` of SLO `{}` is not a valid Prometheus label name", slo.name))
                    .with_note("label and annotation names are letters, digits and `_`, not starting with a digit"),
            );
        } else if generated && is_generated_label(key) {
            out.push(
                diag(
                    spec,
                    Severity::Error,
                    format!(
                        "{what} `{key}` of SLO `{}` is set by the generated rules",
                        slo.name
                    ),
                )
                .with_note("choose another name, e.g. `team` or `tier`"),
            );
        }
    };
    for k in slo.labels.keys() {
        check("label", k, true);
    }
    for k in slo
        .alerting
        .page
        .labels
        .keys()
        .chain(slo.alerting.ticket.labels.keys())
    {
        check("alert label", k, true);
    }
    for k in slo.alerting.annotations.keys() {
        check("annotation", k, false);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::SourceFile;
    use crate::journey::load::{LoadOptions, load_sources};

    fn journey(interval: &str, slos: &str) -> Journey {
        let text = format!(
            "name: checkout\ninterval: {interval}\nsteps:\n  - name: home\n    http: {{url: \"https://shop.example.com/\"}}\nslos:\n{slos}"
        );
        let loaded = load_sources(
            vec![SourceFile::new("checkout.yaml", text)],
            &LoadOptions::default(),
            vec![],
        )
        .unwrap_or_else(|e| panic!("{:#?}", e.diagnostics()));
        loaded.journeys.into_iter().next().unwrap()
    }

    fn titles(d: &[Diagnostic], sev: Severity) -> Vec<String> {
        d.iter()
            .filter(|d| d.severity == sev)
            .map(|d| d.title.clone())
            .collect()
    }

    fn all_text(d: &Diagnostic) -> String {
        format!(
            "{} | {} | {}",
            d.title,
            d.label.clone().unwrap_or_default(),
            d.notes.join(" | ")
        )
    }

    #[test]
    fn ninety_nine_nine_at_60s_pages_on_one_failure() {
        let j = journey("60s", "  - {name: availability, objective: 99.9%}\n");
        let d = explain(&j, 1);
        let note = all_text(&d[0]);
        assert_eq!(d[0].severity, Severity::Note);
        assert!(note.contains("page-fast (14.4x over 1h and 5m, threshold 0.0144): fires at 1 of 60 and 1 of 5 failed runs"), "{note}");
        assert!(note.contains("page-slow (6x over 6h and 30m, threshold 0.006): fires at 3 of 360 and 1 of 30 failed runs"), "{note}");
        assert!(
            note.contains(
                "one failed run spends 2.31% of the 30d error budget (43.2 failed runs allowed)"
            ),
            "{note}"
        );
        assert!(note.contains("a single failed run pages"), "{note}");
        let w = titles(&d, Severity::Warning);
        assert_eq!(
            w,
            ["a single failed run of `checkout` pages (SLO `availability`)"]
        );
        let warn = all_text(d.iter().find(|d| d.severity == Severity::Warning).unwrap());
        assert!(warn.contains("every 51s or faster"), "{warn}");
        assert!(warn.contains("min_bad_runs_to_page: 2"), "{warn}");
        assert!(warn.contains("99.88% or less"), "{warn}");
        assert!(titles(&d, Severity::Error).is_empty());
    }

    #[test]
    fn ninety_nine_five_at_30s() {
        let j = journey(
            "30s",
            "  - {name: availability, objective: 99.5%}\n  - {name: latency, objective: 95%, threshold: 2s}\n",
        );
        let d = explain(&j, 1);
        let note = all_text(&d[0]);
        assert!(note.contains("runs every 30s from 1 location: 10 per 5m, 60 per 30m, 120 per 1h, 240 per 2h, 720 per 6h, 2880 per 1d, 8640 per 3d, 86400 per 30d"), "{note}");
        assert!(
            note.contains("fires at 9 of 120 and 1 of 10 failed runs"),
            "{note}"
        );
        assert!(
            note.contains(
                "one failed run spends 0.23% of the 30d error budget (432 failed runs allowed)"
            ),
            "{note}"
        );
        assert!(
            note.contains("a total outage pages after 9 failed runs (4m30s)"),
            "{note}"
        );
        assert!(note.contains("a single failed run does not page"), "{note}");
        let lat = all_text(&d[1]);
        assert!(
            lat.starts_with(
                "SLO `checkout-latency`: 95% of successful runs finish within 2s over 30d"
            ),
            "{lat}"
        );
        assert!(
            lat.contains("fires at 87 of 120 and 8 of 10 slow runs"),
            "{lat}"
        );
        assert!(titles(&d, Severity::Warning).is_empty(), "{d:#?}");
    }

    #[test]
    fn the_first_hour_and_liveness_are_explained() {
        let j = journey("15s", "  - {name: availability, objective: 99.5%}\n");
        let d = explain(&j, 1);
        let note = all_text(&d[0]);
        assert!(note.contains("in the first hour (a new journey, a fresh Prometheus, a new location) each window counts at least the runs it should hold (240 per 1h from 1 location, as `wayprobe rules --locations 1` writes), so all of the above holds from the first run: a single failed run does not page or open a ticket"), "{note}");
        let live = all_text(d.last().unwrap());
        assert!(
            live.starts_with("`checkout`: `JourneyRunsMissing` pages when no run has finished for 2m | severity critical, because an SLO of the journey pages"),
            "{live}"
        );
        assert!(live.contains("a dead prober goes unnoticed for 2m after Prometheus loses its series, i.e. up to 2m + 15s (one interval)"), "{live}");
        assert!(
            live.contains(
                "a total outage pages after 4m30s: a stopped prober is noticed before that"
            ),
            "{live}"
        );
        let j = journey("10s", "  - {name: availability, objective: 99.9%}\n");
        let live = all_text(explain(&j, 1).last().unwrap());
        assert!(
            live.contains("a total outage pages sooner (1m) than a stopped prober is noticed"),
            "{live}"
        );
        // retries: the note says which attempt the SLO judges
        let mut j = journey("15s", "  - {name: availability, objective: 99.5%}\n");
        j.retries.count = 2;
        assert!(
            all_text(&explain(&j, 1)[0]).contains("judges the first attempt of each run (`judge: first`, the default): a run that passes on one of its 2 retries still counts as failed here")
        );
        // a journey without SLOs is explained too: a ticket
        let j = journey("5m", "  []\n");
        let d = explain(&j, 1);
        assert_eq!(d.len(), 1);
        assert!(
            all_text(&d[0]).starts_with("`checkout`: `JourneyRunsMissing` opens a ticket when no run has finished for 15m | severity warning, as the journey has no SLO"),
            "{}",
            all_text(&d[0])
        );
    }

    #[test]
    fn warnings_for_low_objectives_and_slow_intervals() {
        let j = journey("2m", "  - {name: availability, objective: 90%}\n");
        let d = explain(&j, 1);
        let w = titles(&d, Severity::Warning);
        assert_eq!(
            w,
            [
                "the page-fast alert of SLO `checkout-availability` can never fire",
                "`checkout` runs every 2m: the 5m alert window holds fewer than 5 runs",
            ]
        );
        // 3 locations make the same journey see 3x the runs
        let j = journey("60s", "  - {name: availability, objective: 99.9%}\n");
        let d = explain(&j, 3);
        assert!(
            all_text(&d[0]).contains("fires at 3 of 180 and 1 of 15"),
            "{}",
            all_text(&d[0])
        );
        assert!(titles(&d, Severity::Warning).is_empty());
    }

    #[test]
    fn the_guard_stops_single_failure_pages() {
        let j = journey(
            "60s",
            "  - {name: availability, objective: 99.9%, alerting: {min_bad_runs_to_page: 2}}\n",
        );
        let d = explain(&j, 1);
        assert!(titles(&d, Severity::Warning).is_empty(), "{d:#?}");
        let note = all_text(&d[0]);
        assert!(
            note.contains("(and at least 2 in the 1h, `min_bad_runs_to_page`)"),
            "{note}"
        );
        assert!(
            note.contains("a total outage pages after 2 failed runs (2m)"),
            "{note}"
        );
    }

    #[test]
    fn errors_for_thresholds_without_an_exact_bucket() {
        use crate::journey::slo::SloKind;
        let mut j = journey(
            "30s",
            "  - {name: latency, objective: 95%, threshold: 2s}\n",
        );
        let mut other = j.slos[0].clone();
        other.name = "latency-tight".into();
        // two thresholds that print as the same `le`
        j.slos[0].kind = SloKind::Latency {
            threshold: Duration::new(100_000_000, 1),
        };
        other.kind = SloKind::Latency {
            threshold: Duration::new(100_000_000, 2),
        };
        j.slos.push(other);
        let d = explain(&j, 1);
        assert_eq!(
            titles(&d, Severity::Error),
            [
                "the latency threshold of SLO `checkout-latency` has no exact histogram bucket",
                "the latency threshold of SLO `checkout-latency-tight` has no exact histogram bucket",
                "the latency thresholds of SLOs `latency` and `latency-tight` share one bucket",
            ]
        );
        j.slos.truncate(1);
        j.slos[0].kind = SloKind::Latency {
            threshold: Duration::from_nanos(1),
        };
        let d = explain(&j, 1);
        let e = d.iter().find(|d| d.severity == Severity::Error).unwrap();
        assert_eq!(
            e.label.as_deref(),
            Some("1ns is written `le=\"1e-9\"`"),
            "{e:#?}"
        );
    }

    #[test]
    fn errors_for_generated_label_names() {
        let j = journey(
            "30s",
            "  - {name: availability, objective: 99.5%, labels: {sloth_id: x, team: a}}\n",
        );
        let d = explain(&j, 1);
        assert_eq!(
            titles(&d, Severity::Error),
            ["label `sloth_id` of SLO `availability` is set by the generated rules"]
        );
        assert_eq!(d[0].span, j.slos[0].span);
    }
}
