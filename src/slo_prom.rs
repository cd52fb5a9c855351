//! `serve --prometheus-url`: the SLO numbers the generated recording rules
//! keep in a real Prometheus (every location, the whole period), read for
//! the status page and `/api/v1/journeys` beside the in-process view.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

/// Windows read from `slo:sli_error:ratio_rate<w>`.
const WINDOWS: &str = "5m|30m|1h|6h";

/// Most steps asked of Prometheus in one range query.
pub const MAX_POINTS: usize = 10_000;

/// The value of a `[time, "value"]` pair.
fn sample(v: &serde_json::Value) -> Option<f64> {
    v[1].as_str()?.parse().ok()
}

/// A series of a range query: its labels and `(Unix time, value)` points.
pub type Series = (BTreeMap<String, String>, Vec<(f64, f64)>);

/// The labels of a result series.
fn labels(series: &serde_json::Value) -> BTreeMap<String, String> {
    series["metric"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

/// Why Prometheus could not be read. Messages never carry the URL (it may
/// hold credentials) nor response bodies.
#[derive(Debug, thiserror::Error)]
pub enum PromError {
    /// `--prometheus-url` is not an http(s) URL.
    #[error("--prometheus-url must be an http:// or https:// URL")]
    Url,
    /// The query failed (connection, timeout, status, bad JSON).
    #[error("Prometheus query failed: {0}")]
    Query(&'static str),
}

/// One SLO as the recording rules in Prometheus see it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PromSlo {
    /// `prometheus`: where the numbers come from.
    pub source: &'static str,
    /// `slo:sli_error:ratio_rate<w>` per window (`5m` → ratio).
    pub error_ratio: BTreeMap<String, f64>,
    /// `slo:period_error_budget_remaining:ratio` (1 = untouched, ≤ 0 = spent).
    pub budget_remaining: Option<f64>,
    /// Tiers of the burn-rate alerts firing now (`page-fast`, ...).
    pub firing: Vec<String>,
    /// For SLOs with `locations:`: each location's 1h error ratio
    /// (`slo_location:sli_error:ratio_rate1h`), by `location`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub locations: BTreeMap<String, f64>,
    /// Locations whose own ticket (`location-fast|location-slow`) fires.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub locations_firing: Vec<String>,
}

/// Reads the recording rules' series from Prometheus' HTTP API.
#[derive(Debug, Clone)]
pub struct PromReader {
    base: String,
    client: reqwest::Client,
}

impl PromReader {
    /// A reader for `url` (e.g. `http://prometheus:9090`).
    pub fn new(url: &str) -> Result<Self, PromError> {
        let parsed = url::Url::parse(url).map_err(|_| PromError::Url)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(PromError::Url);
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(3))
            .build()
            .map_err(|_| PromError::Query("cannot build an HTTP client"))?;
        Ok(Self {
            base: url.trim_end_matches('/').to_string(),
            client,
        })
    }

    /// A reader for `url` whose queries may take up to `timeout` (range
    /// queries over weeks of history take longer than the status page's 3s).
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self, PromError> {
        let mut r = Self::new(url)?;
        r.client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|_| PromError::Query("cannot build an HTTP client"))?;
        Ok(r)
    }

    /// The same reader with another timeout.
    pub fn timeout(&self, timeout: Duration) -> Result<Self, PromError> {
        Self::with_timeout(&self.base, timeout)
    }

    async fn query(&self, q: &str) -> Result<Vec<serde_json::Value>, PromError> {
        self.api("query", &[("query", q.to_string())]).await
    }

    /// `POST /api/v1/<path>` with form `params` (POST: the SLO expressions
    /// are long); the `data.result` array.
    async fn api(
        &self,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<Vec<serde_json::Value>, PromError> {
        let r = self
            .client
            .post(format!("{}/api/v1/{path}", self.base))
            .form(params)
            .send()
            .await
            .map_err(|e| {
                PromError::Query(if e.is_timeout() {
                    "timed out"
                } else {
                    "cannot connect"
                })
            })?;
        if !r.status().is_success() {
            return Err(PromError::Query("bad HTTP status"));
        }
        let v: serde_json::Value = r
            .json()
            .await
            .map_err(|_| PromError::Query("not a Prometheus API response"))?;
        v["data"]["result"]
            .as_array()
            .cloned()
            .ok_or(PromError::Query("not a Prometheus API response"))
    }

    /// The value of the single-series expression `q` at Unix time `at`
    /// (`None`: no series, e.g. no runs in the window). Expressions with
    /// several series (a `by` clause) are summed.
    pub async fn value_at(&self, q: &str, at: f64) -> Result<Option<f64>, PromError> {
        let r = self
            .api(
                "query",
                &[("query", q.to_string()), ("time", format!("{at}"))],
            )
            .await?;
        let vals: Vec<f64> = r.iter().filter_map(|s| sample(&s["value"])).collect();
        Ok((!vals.is_empty()).then(|| vals.iter().sum()))
    }

    /// The values of `q` at `start + k × step` up to `end` (Unix seconds),
    /// as `(time, value)` in time order; a step without a value is left out.
    /// With several series, the first one's (see [`Self::range_series`]).
    pub async fn range(
        &self,
        q: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<(f64, f64)>, PromError> {
        Ok(self
            .range_series(q, start, end, step)
            .await?
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_default())
    }

    /// Every series of the range query `q`: its labels and `(time, value)`
    /// points. Split into queries of at most [`MAX_POINTS`] steps
    /// (Prometheus refuses more than 11,000 per series).
    pub async fn range_series(
        &self,
        q: &str,
        start: f64,
        end: f64,
        step: f64,
    ) -> Result<Vec<Series>, PromError> {
        let mut out: Vec<Series> = Vec::new();
        let mut from = start;
        while from <= end {
            let to = (from + step * (MAX_POINTS - 1) as f64).min(end);
            let r = self
                .api(
                    "query_range",
                    &[
                        ("query", q.to_string()),
                        ("start", format!("{from}")),
                        ("end", format!("{to}")),
                        ("step", format!("{step}")),
                    ],
                )
                .await?;
            for series in &r {
                let labels = labels(series);
                let points = series["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| Some((v[0].as_f64()?, sample(v)?)));
                match out.iter_mut().find(|(l, _)| *l == labels) {
                    Some((_, v)) => v.extend(points),
                    None => out.push((labels, points.collect())),
                }
            }
            from = to + step;
        }
        Ok(out)
    }

    /// Every series of the instant query `q` at `at`: labels and value.
    pub async fn vector_at(
        &self,
        q: &str,
        at: f64,
    ) -> Result<Vec<(BTreeMap<String, String>, f64)>, PromError> {
        let r = self
            .api(
                "query",
                &[("query", q.to_string()), ("time", format!("{at}"))],
            )
            .await?;
        Ok(r.iter()
            .filter_map(|s| Some((labels(s), sample(&s["value"])?)))
            .collect())
    }

    /// Every SLO's numbers, keyed by `sloth_slo` (`<journey>-<slo>`).
    pub async fn read(&self) -> Result<BTreeMap<String, PromSlo>, PromError> {
        let series = self
            .query(&format!(
                "{{__name__=~\"slo:sli_error:ratio_rate({WINDOWS})|slo:period_error_budget_remaining:ratio|slo_location:sli_error:ratio_rate1h\",sloth_slo!=\"\"}}"
            ))
            .await?;
        let alerts = self
            .query("ALERTS{alertstate=\"firing\",slo_alert_tier!=\"\",sloth_slo!=\"\"}")
            .await?;
        let mut out: BTreeMap<String, PromSlo> = BTreeMap::new();
        let label = |v: &serde_json::Value, k: &str| v["metric"][k].as_str().map(str::to_string);
        for s in &series {
            let (Some(slo), Some(name)) = (label(s, "sloth_slo"), label(s, "__name__")) else {
                continue;
            };
            let Some(value) = s["value"][1].as_str().and_then(|x| x.parse::<f64>().ok()) else {
                continue;
            };
            let e = out.entry(slo).or_insert_with(|| PromSlo {
                source: "prometheus",
                ..Default::default()
            });
            if name == "slo:period_error_budget_remaining:ratio" {
                e.budget_remaining = Some(value);
            } else if name == "slo_location:sli_error:ratio_rate1h" {
                if let Some(l) = label(s, "location") {
                    e.locations.insert(l, value);
                }
            } else if let Some(w) = label(s, "sloth_window") {
                e.error_ratio.insert(w, value);
            }
        }
        for a in &alerts {
            if let (Some(slo), Some(tier)) = (label(a, "sloth_slo"), label(a, "slo_alert_tier")) {
                let e = out.entry(slo).or_insert_with(|| PromSlo {
                    source: "prometheus",
                    ..Default::default()
                });
                if tier.starts_with("location-")
                    && let Some(l) = label(a, "location")
                    && !e.locations_firing.contains(&l)
                {
                    e.locations_firing.push(l);
                }
                if !e.firing.contains(&tier) {
                    e.firing.push(tier);
                }
            }
        }
        for e in out.values_mut() {
            e.firing.sort();
            e.locations_firing.sort();
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_errors_never_show_them() {
        assert!(PromReader::new("http://prometheus:9090/").is_ok());
        assert!(matches!(
            PromReader::new("ftp://prometheus"),
            Err(PromError::Url)
        ));
        assert!(matches!(
            PromReader::new("prometheus:9090"),
            Err(PromError::Url)
        ));
        let e = PromError::Query("cannot connect").to_string();
        assert!(!e.contains("http"), "{e}");
    }
}
