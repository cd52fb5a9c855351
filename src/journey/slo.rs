//! Service level objectives declared next to a journey.
//!
//! Objectives are kept as exact decimals: `99.95%` must print as `0.9995` and
//! its budget as `0.0005` in generated rules, never `0.0004999999...`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::diag::Span;

/// One SLO of a journey.
#[derive(Debug, Clone, PartialEq)]
pub struct Slo {
    /// Label-safe name, unique within the journey (`availability`, `latency`).
    pub name: String,
    /// Where the SLO is declared.
    pub span: Span,
    /// What counts as a bad run.
    pub kind: SloKind,
    /// Target percentage of good runs.
    pub objective: Objective,
    /// The compliance period.
    pub window: Period,
    /// Extra labels on every generated series and alert.
    pub labels: BTreeMap<String, String>,
    /// Alerting options.
    pub alerting: Alerting,
    /// Which attempt of a retried run the SLO judges.
    pub judge: Judge,
    /// How many locations probe the journey and how many must burn to page
    /// (`locations: {total: 3, quorum: 2}`); `None`: one verdict over all.
    pub locations: Option<Locations>,
}

/// `locations: {total, quorum}` of an SLO.
///
/// With it, the page tiers fire only when at least `quorum` locations burn
/// budget on their own runs, and a location burning alone raises a ticket
/// naming it (a network or regional problem, not the service). Every window
/// then expects the runs of `total` locations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locations {
    /// Locations probing the journey (each its own `serve --location`).
    pub total: u32,
    /// Burning locations that make an outage (1 ..= total).
    pub quorum: u32,
}

/// Which result of a retried run an SLO counts (`judge: first|final`).
///
/// The default is the first attempt: it is what a customer gets (nobody
/// retries for them), and the burn-rate windows already absorb isolated
/// failures, so retries need not hide them. `final` counts a run as good when
/// a retry passed: for failures known to be on the prober's side. Latency
/// SLOs always judge the final attempt (the duration histogram is the final
/// run's); without `retries` both are the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Judge {
    /// The first attempt of each run.
    #[default]
    First,
    /// The last attempt of each run.
    Final,
}

impl Judge {
    /// `first` or `final`.
    pub fn as_str(self) -> &'static str {
        match self {
            Judge::First => "first",
            Judge::Final => "final",
        }
    }
}

impl Slo {
    /// The latency threshold, for latency SLOs.
    pub fn threshold(&self) -> Option<Duration> {
        match self.kind {
            SloKind::Latency { threshold } => Some(threshold),
            SloKind::Availability => None,
        }
    }

    /// Which attempt the SLO judges in effect: latency SLOs the final one.
    pub fn judges(&self) -> Judge {
        match self.kind {
            SloKind::Latency { .. } => Judge::Final,
            SloKind::Availability => self.judge,
        }
    }

    /// `availability` or `latency`, the `slo_kind` label.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            SloKind::Availability => "availability",
            SloKind::Latency { .. } => "latency",
        }
    }
}

/// What an SLO measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloKind {
    /// Bad = failed runs; total = all runs.
    Availability,
    /// Bad = successful runs slower than `threshold`; total = successful runs.
    Latency {
        /// The latency bound.
        threshold: Duration,
    },
}

/// The SLO period. Only the two with a fixed burn-rate window table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// 30 days (the default).
    Days30,
    /// 28 days (four whole weeks).
    Days28,
}

impl Period {
    /// Number of days.
    pub fn days(self) -> u32 {
        match self {
            Period::Days30 => 30,
            Period::Days28 => 28,
        }
    }

    /// The Prometheus duration, `30d` or `28d`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Days30 => "30d",
            Period::Days28 => "28d",
        }
    }

    /// Parses a duration that is exactly 30 or 28 days.
    pub fn from_duration(d: Duration) -> Option<Self> {
        match d.as_secs() {
            2_592_000 => Some(Period::Days30),
            2_419_200 => Some(Period::Days28),
            _ => None,
        }
    }
}

/// A percentage kept as an exact decimal: `mantissa / 10^scale` percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Objective {
    mantissa: u64,
    scale: u32,
}

impl Objective {
    /// Parses `99.5%`, `99.5` or `99`; `Err` says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let percent = t.ends_with('%');
        let t = t.strip_suffix('%').unwrap_or(t).trim();
        let (int, frac) = t.split_once('.').unwrap_or((t, ""));
        if int.is_empty()
            || !int.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
        {
            return Err(format!("`{text}` is not a percentage"));
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > 10 {
            return Err(format!("`{text}` has too many decimals (at most 10)"));
        }
        let digits = format!("{int}{frac}");
        let mantissa: u64 = digits
            .parse()
            .map_err(|_| format!("`{text}` is not a percentage"))?;
        let obj = Self {
            mantissa,
            scale: frac.len() as u32,
        };
        // `0.995` is a ratio written where a percentage belongs: read as
        // 0.995% it would make an SLO that never alerts. Say what to write.
        if !percent && mantissa != 0 && int.trim_start_matches('0').is_empty() {
            let pct = format!("{int}.{frac}").parse::<f64>().unwrap_or(0.0) * 100.0;
            return Err(format!(
                "objective `{text}` reads as {text}%; objectives are percentages: write `{}%`",
                (pct * 1e8).round() / 1e8
            ));
        }
        if mantissa == 0 || obj.mantissa >= 100 * 10u64.pow(obj.scale) {
            return Err(format!(
                "objective `{text}` must be above 0% and below 100%"
            ));
        }
        Ok(obj)
    }

    /// The objective as a percentage string, `99.5`.
    pub fn percent(&self) -> String {
        decimal(self.mantissa, self.scale)
    }

    /// The objective as a ratio string, `0.995`.
    pub fn ratio(&self) -> String {
        decimal(self.mantissa, self.scale + 2)
    }

    /// The error budget `1 - ratio` as a string, `0.005`.
    pub fn budget(&self) -> String {
        decimal(10u64.pow(self.scale + 2) - self.mantissa, self.scale + 2)
    }

    /// The ratio as a float (for arithmetic, not for printing).
    pub fn ratio_f64(&self) -> f64 {
        self.mantissa as f64 / 10f64.powi(self.scale as i32 + 2)
    }

    /// The error budget as a float (for arithmetic, not for printing).
    pub fn budget_f64(&self) -> f64 {
        (10u64.pow(self.scale + 2) - self.mantissa) as f64 / 10f64.powi(self.scale as i32 + 2)
    }
}

/// `mantissa / 10^scale` as a decimal string without trailing zeros.
fn decimal(mantissa: u64, scale: u32) -> String {
    let s = mantissa.to_string();
    let scale = scale as usize;
    let (int, frac) = if s.len() > scale {
        (
            s[..s.len() - scale].to_string(),
            s[s.len() - scale..].to_string(),
        )
    } else {
        (
            "0".to_string(),
            format!("{}{s}", "0".repeat(scale - s.len())),
        )
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        int
    } else {
        format!("{int}.{frac}")
    }
}

/// Alerting options of one SLO.
#[derive(Debug, Clone, PartialEq)]
pub struct Alerting {
    /// Alert name (default `JourneyErrorBudgetBurn`).
    pub name: String,
    /// The page tiers (page-fast, page-slow).
    pub page: Tier,
    /// The ticket tiers (ticket-fast, ticket-slow).
    pub ticket: Tier,
    /// Page only when at least this many runs failed in the long window.
    pub min_bad_runs_to_page: u32,
    /// Prometheus `keep_firing_for` on every alert.
    pub keep_firing_for: Option<Duration>,
    /// Runbook URL template (Prometheus template syntax).
    pub runbook_url: Option<String>,
    /// Dashboard URL template.
    pub dashboard_url: Option<String>,
    /// Extra annotations.
    pub annotations: BTreeMap<String, String>,
}

impl Default for Alerting {
    fn default() -> Self {
        Self {
            name: "JourneyErrorBudgetBurn".to_string(),
            page: Tier {
                enabled: true,
                labels: BTreeMap::from([("severity".to_string(), "critical".to_string())]),
            },
            ticket: Tier {
                enabled: true,
                labels: BTreeMap::from([("severity".to_string(), "warning".to_string())]),
            },
            min_bad_runs_to_page: 1,
            keep_firing_for: None,
            runbook_url: None,
            dashboard_url: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// An alert severity tier.
#[derive(Debug, Clone, PartialEq)]
pub struct Tier {
    /// Whether its alerts are generated.
    pub enabled: bool,
    /// Labels on its alerts (`severity` by default).
    pub labels: BTreeMap<String, String>,
}

/// Formats a histogram bound exactly as the `/metrics` exposition writes `le`
/// (`2.0`, `0.25`), so rules select the bucket that exists.
pub fn le_label(seconds: f64) -> String {
    dtoa::Buffer::new().format(seconds).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_are_exact() {
        let o = Objective::parse("99.95%").unwrap();
        assert_eq!(o.percent(), "99.95");
        assert_eq!(o.ratio(), "0.9995");
        assert_eq!(o.budget(), "0.0005");
        let o = Objective::parse("99.5").unwrap();
        assert_eq!(
            (o.ratio().as_str(), o.budget().as_str()),
            ("0.995", "0.005")
        );
        let o = Objective::parse("95%").unwrap();
        assert_eq!((o.ratio().as_str(), o.budget().as_str()), ("0.95", "0.05"));
        let o = Objective::parse("99.900").unwrap();
        assert_eq!(o.percent(), "99.9");
        assert!(Objective::parse("100").is_err());
        assert!(Objective::parse("0").is_err());
        assert!(Objective::parse("abc").is_err());
        assert!(Objective::parse("-5").is_err());
        assert!(Objective::parse("150%").is_err());
    }

    #[test]
    fn a_ratio_where_a_percentage_belongs_says_what_to_write() {
        let e = Objective::parse("0.995").unwrap_err();
        assert_eq!(
            e,
            "objective `0.995` reads as 0.995%; objectives are percentages: write `99.5%`"
        );
        assert!(
            Objective::parse("0.9995")
                .unwrap_err()
                .contains("write `99.95%`")
        );
        // Written with `%`, a small objective is what the author meant.
        assert_eq!(Objective::parse("0.5%").unwrap().percent(), "0.5");
    }

    #[test]
    fn le_matches_the_exposition() {
        assert_eq!(le_label(2.0), "2.0");
        assert_eq!(le_label(0.25), "0.25");
        assert_eq!(le_label(Duration::from_millis(1500).as_secs_f64()), "1.5");
    }
}
