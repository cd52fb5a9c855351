//! Exact arithmetic behind the rules: decimals, the burn-rate window table,
//! runs per window and failed runs needed to trip an alert.
//!
//! Everything that ends up printed in a rule (objective, budget, factor,
//! threshold) is an exact decimal, so `14.4 × 0.005` is written `0.072` and
//! the same number is used by `explain` and by the emitted promtool tests.

use std::fmt;
use std::time::Duration;

use crate::journey::slo::{Objective, Period};

/// A non-negative exact decimal `mantissa / 10^scale`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dec {
    mantissa: u128,
    scale: u32,
}

impl Dec {
    /// `mantissa / 10^scale`, normalised (no trailing zeros).
    pub fn new(mantissa: u128, scale: u32) -> Self {
        let (mut m, mut s) = (mantissa, scale);
        while s > 0 && m % 10 == 0 {
            m /= 10;
            s -= 1;
        }
        Self {
            mantissa: m,
            scale: s,
        }
    }

    /// A whole number.
    pub fn int(n: u128) -> Self {
        Self::new(n, 0)
    }

    /// Parses a plain decimal (`0.005`, `14`); no sign, no exponent.
    pub fn parse(s: &str) -> Option<Self> {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || int.len() + frac.len() > 36
        {
            return None;
        }
        let m: u128 = format!("{int}{frac}").parse().ok()?;
        Some(Self::new(m, frac.len() as u32))
    }

    /// The error budget `1 − objective` of an SLO.
    pub fn budget(o: &Objective) -> Self {
        Self::parse(&o.budget()).expect("Objective::budget prints a plain decimal")
    }

    /// `num / den` rounded half-up to `scale` decimals.
    pub fn ratio_rounded(num: u128, den: u128, scale: u32) -> Self {
        let p = 10u128.pow(scale);
        Self::new((num * p * 2 + den) / (den * 2), scale)
    }

    /// The exact product.
    pub fn times(self, o: Self) -> Self {
        Self::new(self.mantissa * o.mantissa, self.scale + o.scale)
    }

    /// Numerator over `10^scale`.
    pub fn parts(self) -> (u128, u128) {
        (self.mantissa, 10u128.pow(self.scale))
    }

    /// Whether the value is at least one.
    pub fn ge_one(self) -> bool {
        let (n, d) = self.parts();
        n >= d
    }

    /// The nearest `f64`, exactly as Prometheus parses the printed literal.
    pub fn to_f64(self) -> f64 {
        self.to_string().parse().expect("a decimal parses")
    }
}

impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.mantissa.to_string();
        let scale = self.scale as usize;
        if scale == 0 {
            return f.write_str(&s);
        }
        if s.len() > scale {
            write!(f, "{}.{}", &s[..s.len() - scale], &s[s.len() - scale..])
        } else {
            write!(f, "0.{}{s}", "0".repeat(scale - s.len()))
        }
    }
}

/// One of the recorded SLI windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Prometheus duration, also the `sloth_window` label (`5m`).
    pub name: &'static str,
    /// Length in seconds.
    pub secs: u64,
}

/// The recorded error-ratio windows, shortest first (`slo:sli_error:ratio_rate<w>`).
pub const WINDOWS: [Window; 7] = [
    Window {
        name: "5m",
        secs: 300,
    },
    Window {
        name: "30m",
        secs: 1_800,
    },
    Window {
        name: "1h",
        secs: 3_600,
    },
    Window {
        name: "2h",
        secs: 7_200,
    },
    Window {
        name: "6h",
        secs: 21_600,
    },
    Window {
        name: "1d",
        secs: 86_400,
    },
    Window {
        name: "3d",
        secs: 259_200,
    },
];

fn window(name: &str) -> Window {
    *WINDOWS
        .iter()
        .find(|w| w.name == name)
        .expect("known window")
}

/// The four multiwindow, multi-burn-rate alert tiers (SRE Workbook ch. 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum BurnTier {
    /// 2% of the budget in 1h (confirmed over 5m): page.
    PageFast,
    /// 5% of the budget in 6h (confirmed over 30m): page.
    PageSlow,
    /// 10% of the budget in 1d (confirmed over 2h): ticket.
    TicketFast,
    /// 10% of the budget in 3d (confirmed over 6h): ticket.
    TicketSlow,
}

impl BurnTier {
    /// All tiers, fastest first.
    pub const ALL: [BurnTier; 4] = [
        BurnTier::PageFast,
        BurnTier::PageSlow,
        BurnTier::TicketFast,
        BurnTier::TicketSlow,
    ];

    /// The `slo_alert_tier` label.
    pub fn name(self) -> &'static str {
        match self {
            BurnTier::PageFast => "page-fast",
            BurnTier::PageSlow => "page-slow",
            BurnTier::TicketFast => "ticket-fast",
            BurnTier::TicketSlow => "ticket-slow",
        }
    }

    /// Pages (true) or tickets (false); the `sloth_severity` label.
    pub fn is_page(self) -> bool {
        matches!(self, BurnTier::PageFast | BurnTier::PageSlow)
    }

    /// `page` or `ticket`.
    pub fn severity(self) -> &'static str {
        if self.is_page() { "page" } else { "ticket" }
    }

    /// The long window.
    pub fn long(self) -> Window {
        window(match self {
            BurnTier::PageFast => "1h",
            BurnTier::PageSlow => "6h",
            BurnTier::TicketFast => "1d",
            BurnTier::TicketSlow => "3d",
        })
    }

    /// The short (confirmation) window.
    pub fn short(self) -> Window {
        window(match self {
            BurnTier::PageFast => "5m",
            BurnTier::PageSlow => "30m",
            BurnTier::TicketFast => "2h",
            BurnTier::TicketSlow => "6h",
        })
    }

    /// Percentage of the period's budget spent when the tier fires.
    pub fn budget_percent(self) -> u128 {
        match self {
            BurnTier::PageFast => 2,
            BurnTier::PageSlow => 5,
            BurnTier::TicketFast | BurnTier::TicketSlow => 10,
        }
    }

    /// The burn-rate factor for a period: `budget% × period_hours / long_hours`,
    /// rounded to 4 decimals (14.4 / 6 / 3 / 1 for 30d; 13.44 / 5.6 / 2.8 / 0.9333 for 28d).
    pub fn factor(self, period: Period) -> Dec {
        let period_hours = u128::from(period.days()) * 24;
        let long_hours = u128::from(self.long().secs / 3600);
        Dec::ratio_rounded(self.budget_percent() * period_hours, 100 * long_hours, 4)
    }

    /// The error-ratio threshold `factor × budget`, exact.
    pub fn threshold(self, period: Period, budget: Dec) -> Dec {
        self.factor(period).times(budget)
    }
}

/// Runs in a window as the exact fraction `num / den`.
pub fn runs_in(window_secs: u64, interval: Duration, locations: u32) -> (u128, u128) {
    let num = u128::from(window_secs) * 1_000_000_000 * u128::from(locations.max(1));
    (num, interval.as_nanos().max(1))
}

/// Failed runs needed in a window for its error ratio to exceed `threshold`
/// (`floor(threshold × runs) + 1`, the comparison being strict).
pub fn runs_to_trip(threshold: Dec, window_secs: u64, interval: Duration, locations: u32) -> u128 {
    let (tn, td) = threshold.parts();
    let (rn, rd) = runs_in(window_secs, interval, locations);
    (tn * rn) / (td * rd) + 1
}

/// Formats `num / den` with at most `decimals` decimals (rounded half-up), trimmed.
pub fn fmt_ratio(num: u128, den: u128, decimals: u32) -> String {
    Dec::ratio_rounded(num, den, decimals).to_string()
}

/// A Prometheus duration (`30s`, `5m`, `1h30m`, `28d`, `250ms`).
pub fn prom_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, len) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= len {
            out.push_str(&format!("{}{unit}", ms / len));
            ms %= len;
        }
    }
    out
}

/// Go's `fmt.Sprintf("%.4g", x)`, as used by Prometheus' `humanizePercentage`.
pub fn go_g4(x: f64) -> String {
    if x == 0.0 {
        return "0".to_string();
    }
    let neg = x < 0.0;
    // Correctly rounded to 4 significant digits: "d.ddde<exp>".
    let e = format!("{:.3e}", x.abs());
    let (mant, exp) = e.split_once('e').expect("exponent form");
    let exp: i32 = exp.parse().expect("exponent");
    let digits: String = mant.chars().filter(|c| c.is_ascii_digit()).collect();
    let digits = digits.trim_end_matches('0');
    let digits = if digits.is_empty() { "0" } else { digits };
    let mut out = String::new();
    if neg {
        out.push('-');
    }
    if !(-4..4).contains(&exp) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push_str(&format!(
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.abs()
        ));
    } else if exp >= 0 {
        let int_len = exp as usize + 1;
        if digits.len() <= int_len {
            out.push_str(digits);
            out.push_str(&"0".repeat(int_len - digits.len()));
        } else {
            out.push_str(&digits[..int_len]);
            out.push('.');
            out.push_str(&digits[int_len..]);
        }
    } else {
        out.push_str("0.");
        out.push_str(&"0".repeat((-exp - 1) as usize));
        out.push_str(digits);
    }
    out
}

/// Prometheus' `humanizePercentage`: `%.4g%%` of `ratio × 100`.
pub fn humanize_percentage(ratio: f64) -> String {
    format!("{}%", go_g4(ratio * 100.0))
}

/// Prometheus' `humanizeDuration` for the values the emitted tests expect
/// (non-negative seconds): `2m 15s`, `1h 0m 5s`, `45s`, `1.5s`.
pub fn humanize_duration(v: f64) -> String {
    if v < 1.0 {
        return format!("{}s", go_g4(v));
    }
    let d = v as i64;
    let (s, m, h, days) = (d % 60, (d / 60) % 60, (d / 3600) % 24, d / 86_400);
    if days != 0 {
        format!("{days}d {h}h {m}m {s}s")
    } else if h != 0 {
        format!("{h}h {m}m {s}s")
    } else if m != 0 {
        format!("{m}m {s}s")
    } else {
        format!("{}s", go_g4(v))
    }
}

/// A short human duration for explanations (`4m30s`, `52s`, `1h`).
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs_f64().round() as u64;
    if secs == 0 {
        return prom_duration(d);
    }
    prom_duration(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(p: &str) -> Dec {
        Dec::budget(&Objective::parse(p).unwrap())
    }

    #[test]
    fn factors_are_the_fixed_table() {
        let f30: Vec<String> = BurnTier::ALL
            .iter()
            .map(|t| t.factor(Period::Days30).to_string())
            .collect();
        assert_eq!(f30, ["14.4", "6", "3", "1"]);
        let f28: Vec<String> = BurnTier::ALL
            .iter()
            .map(|t| t.factor(Period::Days28).to_string())
            .collect();
        assert_eq!(f28, ["13.44", "5.6", "2.8", "0.9333"]);
    }

    #[test]
    fn thresholds_are_exact_products() {
        let t = |tier: BurnTier, p, o| tier.threshold(p, budget(o)).to_string();
        assert_eq!(t(BurnTier::PageFast, Period::Days30, "99.5"), "0.072");
        assert_eq!(t(BurnTier::PageFast, Period::Days30, "99.9"), "0.0144");
        assert_eq!(t(BurnTier::PageFast, Period::Days30, "99.95"), "0.0072");
        assert_eq!(t(BurnTier::PageFast, Period::Days30, "95"), "0.72");
        assert_eq!(t(BurnTier::PageSlow, Period::Days30, "99.5"), "0.03");
        assert_eq!(t(BurnTier::TicketSlow, Period::Days30, "99.95"), "0.0005");
        assert_eq!(t(BurnTier::PageFast, Period::Days28, "99.5"), "0.0672");
        assert_eq!(t(BurnTier::TicketSlow, Period::Days28, "99.5"), "0.0046665");
        assert_eq!(t(BurnTier::PageFast, Period::Days30, "90"), "1.44");
        assert!(
            BurnTier::PageFast
                .threshold(Period::Days30, budget("90"))
                .ge_one()
        );
        assert!(
            !BurnTier::PageFast
                .threshold(Period::Days30, budget("93.1"))
                .ge_one()
        );
        // the float is the one Prometheus parses from the literal, not 14.4 * 0.005
        assert_eq!(
            BurnTier::PageFast
                .threshold(Period::Days30, budget("99.5"))
                .to_f64(),
            0.072
        );
    }

    /// The `slo_alert_tier` and `sloth_severity` labels of each tier.
    #[test]
    fn tier_labels() {
        let labels: Vec<(&str, &str)> = BurnTier::ALL
            .iter()
            .map(|t| (t.name(), t.severity()))
            .collect();
        assert_eq!(
            labels,
            [
                ("page-fast", "page"),
                ("page-slow", "page"),
                ("ticket-fast", "ticket"),
                ("ticket-slow", "ticket")
            ]
        );
    }

    #[test]
    fn windows_for_28d_are_the_same_pairs() {
        let pairs: Vec<(&str, &str)> = BurnTier::ALL
            .iter()
            .map(|t| (t.long().name, t.short().name))
            .collect();
        assert_eq!(
            pairs,
            [("1h", "5m"), ("6h", "30m"), ("1d", "2h"), ("3d", "6h")]
        );
        // 28d: the ticket-slow threshold over 3d/6h at 99.9% is 0.9333 x 0.001
        let thr = BurnTier::TicketSlow.threshold(Period::Days28, budget("99.9"));
        assert_eq!(thr.to_string(), "0.0009333");
        assert_eq!(runs_to_trip(thr, 259_200, Duration::from_secs(60), 1), 5);
    }

    /// The "failed runs needed to trip each alert" table of the design (§1.6).
    #[test]
    fn failed_runs_to_trip_table() {
        type Row = (&'static str, u64, [(u128, u128); 4]);
        let rows: [Row; 9] = [
            ("99", 10, [(52, 5), (130, 11), (260, 22), (260, 22)]),
            ("99", 30, [(18, 2), (44, 4), (87, 8), (87, 8)]),
            ("99", 60, [(9, 1), (22, 2), (44, 4), (44, 4)]),
            ("99.5", 10, [(26, 3), (65, 6), (130, 11), (130, 11)]),
            ("99.5", 30, [(9, 1), (22, 2), (44, 4), (44, 4)]),
            ("99.5", 60, [(5, 1), (11, 1), (22, 2), (22, 2)]),
            ("99.9", 10, [(6, 1), (13, 2), (26, 3), (26, 3)]),
            ("99.9", 30, [(2, 1), (5, 1), (9, 1), (9, 1)]),
            ("99.9", 60, [(1, 1), (3, 1), (5, 1), (5, 1)]),
        ];
        for (obj, secs, want) in rows {
            let b = budget(obj);
            let interval = Duration::from_secs(secs);
            for (tier, (long, short)) in BurnTier::ALL.into_iter().zip(want) {
                let thr = tier.threshold(Period::Days30, b);
                let got = (
                    runs_to_trip(thr, tier.long().secs, interval, 1),
                    runs_to_trip(thr, tier.short().secs, interval, 1),
                );
                assert_eq!(got, (long, short), "{obj}% every {secs}s, {}", tier.name());
            }
        }
    }

    #[test]
    fn locations_multiply_runs() {
        // 3 locations x 60s has the event count of a 20s interval
        let thr = BurnTier::PageFast.threshold(Period::Days30, budget("99.9"));
        assert_eq!(
            runs_to_trip(thr, 3600, Duration::from_secs(60), 3),
            runs_to_trip(thr, 3600, Duration::from_secs(20), 1)
        );
        assert_eq!(
            runs_in(300, Duration::from_secs(45), 1),
            (300_000_000_000, 45_000_000_000)
        );
    }

    #[test]
    fn durations() {
        assert_eq!(prom_duration(Duration::from_secs(30)), "30s");
        assert_eq!(prom_duration(Duration::from_secs(300)), "5m");
        assert_eq!(prom_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(prom_duration(Duration::from_secs(28 * 86400)), "28d");
        assert_eq!(prom_duration(Duration::from_millis(1500)), "1s500ms");
        // Explanations round to the second, unless that leaves nothing.
        assert_eq!(human_duration(Duration::from_millis(269_600)), "4m30s");
        assert_eq!(human_duration(Duration::from_millis(250)), "250ms");
    }

    #[test]
    fn go_percentages() {
        // values seen in promtool's output for the reference rules
        assert_eq!(humanize_percentage(5.0 / 60.0), "8.333%");
        assert_eq!(humanize_percentage(60.0 / 360.0), "16.67%");
        assert_eq!(humanize_percentage(44.0 / 60.0), "73.33%");
        assert_eq!(humanize_percentage(1.0), "100%");
        assert_eq!(humanize_percentage(0.5), "50%");
        assert_eq!(humanize_percentage(0.005), "0.5%");
        assert_eq!(humanize_percentage(0.00001234), "0.001234%");
        assert_eq!(humanize_percentage(0.0000001234), "1.234e-05%");
        assert_eq!(go_g4(1234.5678), "1235");
        // One significant digit has no point; negatives keep their sign.
        assert_eq!(go_g4(0.00001), "1e-05");
        assert_eq!(go_g4(20000.0), "2e+04");
        assert_eq!(go_g4(-7.142857), "-7.143");
        assert_eq!(go_g4(-0.00001234), "-1.234e-05");
        assert_eq!(humanize_duration(135.0), "2m 15s");
        assert_eq!(humanize_duration(3605.0), "1h 0m 5s");
        assert_eq!(humanize_duration(45.0), "45s");
        assert_eq!(humanize_duration(90_061.0), "1d 1h 1m 1s");
    }

    #[test]
    fn decimals() {
        assert_eq!(Dec::parse("0.0005").unwrap().to_string(), "0.0005");
        assert_eq!(Dec::parse("14.40").unwrap().to_string(), "14.4");
        assert_eq!(Dec::parse("1e-3"), None);
        assert_eq!(fmt_ratio(2592, 10, 1), "259.2");
        assert_eq!(fmt_ratio(100, 432, 2), "0.23");
    }

    /// Plain decimals of at most 36 digits, so products of two stay in a `u128`.
    #[test]
    fn parse_takes_plain_decimals_only() {
        assert_eq!(Dec::parse(".5"), None);
        assert_eq!(Dec::parse("+5"), None);
        assert_eq!(Dec::parse("5.+5"), None);
        let d36 = "9".repeat(36);
        assert_eq!(Dec::parse(&d36), Some(Dec::int(10u128.pow(36) - 1)));
        assert_eq!(Dec::parse(&format!("{d36}9")), None);
        assert_eq!(Dec::parse(&format!("{}.9", "9".repeat(36))), None);
    }
}
