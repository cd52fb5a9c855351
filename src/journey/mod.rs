//! Journeys: the validated domain model, and loading it from YAML files.
//!
//! A journey file goes `text → yaml::parse (spanned tree) → validate → Journey`.
//! Validation reports every problem of every file at once as
//! [`Diagnostic`]s. Nothing in this module performs I/O beyond reading files,
//! so `rules` and `check` can use it without the runtime.

mod browser;
pub mod fragment;
pub mod load;
pub mod schema;
pub mod slo;
mod validate;
mod walk;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use regex::Regex;
use serde_json_path::JsonPath;

use crate::diag::{SourceFile, Span};
use crate::template::Template;

pub use load::{LoadError, LoadOptions, Loaded, load_paths};
pub use slo::Slo;

/// Default cap on a response body that is read into memory.
pub const DEFAULT_MAX_BODY: u64 = 4 * 1024 * 1024;
/// How long a browser action waits for the page (an element to appear, an
/// `expect` to hold) unless the action or the journey (`action_timeout`)
/// says otherwise; as Playwright's `expect`, short, so a broken page fails
/// fast instead of holding a browser for the rest of the run.
pub const DEFAULT_ACTION_TIMEOUT: Duration = Duration::from_secs(5);
/// Default cap on redirects followed by one HTTP step.
pub const DEFAULT_MAX_REDIRECTS: u32 = 10;

/// A validated journey, ready to run.
#[derive(Debug, Clone)]
pub struct Journey {
    /// Label-safe name (`[a-z0-9_-]+`), unique across the loaded set.
    pub name: String,
    /// Free text for people.
    pub description: Option<String>,
    /// How often `serve` runs it.
    pub interval: Duration,
    /// Deadline for a whole run.
    pub timeout: Duration,
    /// Random extra delay added to each scheduled start (0 = none).
    pub jitter: Duration,
    /// User labels; exported only on `journey_info`.
    pub labels: BTreeMap<String, String>,
    /// Template variables (after `--var` overrides).
    pub vars: BTreeMap<String, String>,
    /// Where each secret comes from.
    pub secrets: BTreeMap<String, SecretSource>,
    /// TLS settings for every HTTP step.
    pub tls: TlsSettings,
    /// W3C trace context propagation (`trace:`).
    pub trace: TraceSettings,
    /// The steps, run in order.
    pub steps: Vec<Step>,
    /// Steps that run after `steps` whatever happened (`finally:`); their
    /// failures are reported apart and never change the run's result.
    pub finally: Vec<Step>,
    /// Service level objectives declared next to the journey.
    pub slos: Vec<Slo>,
    /// The `JourneyRunsMissing` alert (every journey has one, SLOs or not).
    pub liveness: Liveness,
    /// Attempts after a failed one (`retries: N`, `retry_delay: 2s`).
    pub retries: Retries,
    /// The file it came from.
    pub source: Arc<SourceFile>,
}

impl Journey {
    /// Latency-SLO thresholds in seconds, for histogram buckets.
    pub fn latency_thresholds(&self) -> Vec<f64> {
        self.slos
            .iter()
            .filter_map(|s| s.threshold())
            .map(|d| d.as_secs_f64())
            .collect()
    }

    /// Whether any step (`finally:` included) drives a browser.
    pub fn uses_browser(&self) -> bool {
        self.steps
            .iter()
            .chain(&self.finally)
            .any(|s| matches!(s.kind, StepKind::Browser(_)))
    }

    /// The step called `name`, in `steps` or `finally`.
    pub fn step(&self, name: &str) -> Option<&Step> {
        self.steps
            .iter()
            .chain(&self.finally)
            .find(|s| s.name == name)
    }

    /// The extra time `finally:` steps may take after the run's own
    /// deadline: the journey's timeout, at most [`FINALLY_BUDGET`]; zero
    /// without `finally:`.
    pub fn finally_budget(&self) -> Duration {
        if self.finally.is_empty() {
            Duration::ZERO
        } else {
            self.timeout.min(FINALLY_BUDGET)
        }
    }
}

/// Upper bound of the time `finally:` steps get after a run, so a hung
/// cleanup cannot hold a run (and its browser slot) for long.
pub const FINALLY_BUDGET: Duration = Duration::from_secs(10);

/// The liveness alert of a journey (`liveness:` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Liveness {
    /// Alert when no run has finished for this long; `None` = the default,
    /// [`Liveness::DEFAULT_INTERVALS`] intervals but at least
    /// [`Liveness::MIN_AFTER`].
    pub after: Option<Duration>,
    /// `page` or `ticket`; `None` = page when a paging SLO tier can fire.
    pub severity: Option<LivenessSeverity>,
}

impl Liveness {
    /// Missed intervals before the default alert.
    pub const DEFAULT_INTERVALS: u32 = 3;
    /// Shortest default `after` (a scrape or two must fit in it).
    pub const MIN_AFTER: Duration = Duration::from_secs(120);
}

/// Retries of a failed run. Each attempt is a whole run; both the first
/// attempt's result and the final one are recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// Attempts after the first (0 = no retries; at most 5).
    pub count: u32,
    /// Pause before each retry (default 1s).
    pub delay: Duration,
}

impl Default for Retries {
    fn default() -> Self {
        Self {
            count: 0,
            delay: Duration::from_secs(1),
        }
    }
}

/// Severity of a liveness alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LivenessSeverity {
    /// `severity: critical`, `sloth_severity: page`.
    Page,
    /// `severity: warning`, `sloth_severity: ticket`.
    Ticket,
}

/// Where a secret's value is read from, at the start of every run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (trailing newline stripped), e.g. a mounted Kubernetes Secret.
    File(PathBuf),
}

/// TLS verification settings for a journey's HTTP steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Verify certificates (the default). Off only by an explicit `verify: false`.
    pub verify: bool,
    /// Extra CA certificates (PEM) trusted in addition to the system's.
    pub ca_file: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            verify: true,
            ca_file: None,
        }
    }
}

/// Where a journey's requests carry W3C trace context (`trace:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceSettings {
    /// Send `traceparent` at all (`trace: false` turns it off).
    pub enabled: bool,
    /// Origins (`scheme://host:port`, as `url::Origin` serializes them) that
    /// get the headers; `None` means the origins the steps' URLs name.
    pub propagate_to: Option<Vec<String>>,
    /// A `tracestate` value sent with every `traceparent`, already validated.
    pub tracestate: Option<String>,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            propagate_to: None,
            tracestate: None,
        }
    }
}

/// One step of a journey.
#[derive(Debug, Clone)]
pub struct Step {
    /// Label-safe name, unique within the journey.
    pub name: String,
    /// Where the step starts in the file.
    pub span: Span,
    /// Deadline for this step (defaults to the journey's timeout).
    pub timeout: Option<Duration>,
    /// What the step does.
    pub kind: StepKind,
    /// Values to capture into variables after the step.
    pub captures: Vec<Capture>,
    /// Set when the step comes from a fragment (`use:`): its spans point
    /// into the fragment's file, and its `{{ params.NAME }}` are bound here.
    pub fragment: Option<Arc<fragment::FragmentUse>>,
}

impl Step {
    /// The file the step is written in: the fragment's for a step from
    /// `use:`, else `journey_file`.
    pub fn file<'a>(&'a self, journey_file: &'a Arc<SourceFile>) -> &'a Arc<SourceFile> {
        self.fragment.as_ref().map_or(journey_file, |u| &u.file)
    }

    /// `http` or `browser`.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            StepKind::Http(_) => "http",
            StepKind::Browser(_) => "browser",
        }
    }
}

/// The kinds of step.
#[derive(Debug, Clone)]
pub enum StepKind {
    /// An HTTP request with assertions.
    Http(Box<HttpStep>),
    /// A list of browser actions over WebDriver.
    Browser(BrowserStep),
}

/// An HTTP request and what its response must look like.
#[derive(Debug, Clone)]
pub struct HttpStep {
    /// Upper-case method name.
    pub method: String,
    /// The URL (a template).
    pub url: Template,
    /// Query parameters appended to the URL.
    pub query: Vec<(String, Template)>,
    /// Request headers.
    pub headers: Vec<(String, Template)>,
    /// The request body, if any.
    pub body: Option<Body>,
    /// Follow 3xx responses (default true).
    pub follow_redirects: bool,
    /// At most this many redirects are followed.
    pub max_redirects: u32,
    /// Largest body read into memory, in bytes.
    pub max_body: u64,
    /// Credential headers (lower case) still sent after a redirect to
    /// another origin (never to plain HTTP from HTTPS); others are dropped.
    pub keep_headers: Vec<String>,
    /// The assertions; a status assertion is implied when none is given.
    pub expect: Vec<Assertion>,
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    /// A JSON document; string leaves are templates.
    Json(JsonTemplate),
    /// `application/x-www-form-urlencoded` fields.
    Form(Vec<(String, Template)>),
    /// `multipart/form-data` parts.
    Multipart(Vec<Part>),
    /// Raw text with its content type.
    Raw {
        /// The text.
        content: Template,
        /// Its `Content-Type`.
        content_type: Template,
    },
}

/// A JSON value whose strings are templates.
#[derive(Debug, Clone)]
pub enum JsonTemplate {
    /// null
    Null,
    /// true/false
    Bool(bool),
    /// a number
    Number(serde_json::Number),
    /// a string template
    String(Template),
    /// an array
    Array(Vec<JsonTemplate>),
    /// an object
    Object(Vec<(String, JsonTemplate)>),
}

/// One part of a multipart body.
#[derive(Debug, Clone)]
pub struct Part {
    /// Field name.
    pub name: String,
    /// Text value, or a file to upload.
    pub value: PartValue,
}

/// The content of a multipart part.
#[derive(Debug, Clone)]
pub enum PartValue {
    /// A text field.
    Text(Template),
    /// A file read at run time.
    File {
        /// Path of the file.
        path: PathBuf,
        /// Content type (default `application/octet-stream`).
        content_type: Option<String>,
        /// File name sent to the server (default: the path's file name).
        filename: Option<String>,
    },
}

/// An assertion with its place in the file (failures point at it).
#[derive(Debug, Clone)]
pub struct Assertion {
    /// Where the assertion is written.
    pub span: Span,
    /// What it checks.
    pub check: Check,
}

/// What an assertion checks.
#[derive(Debug, Clone)]
pub enum Check {
    /// The status code is one of these.
    Status(Vec<StatusMatch>),
    /// A response header.
    Header {
        /// Header name (lower case).
        name: String,
        /// Predicate on its value.
        pred: Predicate,
    },
    /// A cookie in the run's jar after the response.
    Cookie {
        /// Cookie name.
        name: String,
        /// What must hold.
        pred: CookiePredicate,
    },
    /// The final URL, after redirects.
    Url(Predicate),
    /// The body as text.
    Body(Predicate),
    /// A JSONPath query on the body.
    JsonPath {
        /// The query as written.
        query: String,
        /// The compiled query.
        path: Arc<JsonPath>,
        /// Predicate on the node(s) found.
        pred: Predicate,
    },
    /// The step finished within this time.
    DurationUnder(Duration),
}

/// A status code or class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusMatch {
    /// Exactly this code.
    Code(u16),
    /// Any code of this hundred (2 = 2xx).
    Class(u16),
}

impl StatusMatch {
    /// Whether `status` matches.
    pub fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(c) => status / 100 == c,
        }
    }
}

impl std::fmt::Display for StatusMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StatusMatch::Code(c) => write!(f, "{c}"),
            StatusMatch::Class(c) => write!(f, "{c}xx"),
        }
    }
}

/// A number as written in a journey or sent in a response: integers are
/// kept exact (JSON ids above 2^53 are common), floats as floats.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// A whole number, exact.
    Int(i128),
    /// Anything else.
    Float(f64),
}

impl Num {
    /// The number of a JSON value, exactly.
    pub fn of_json(n: &serde_json::Number) -> Num {
        if let Some(i) = n.as_i64() {
            Num::Int(i.into())
        } else if let Some(u) = n.as_u64() {
            Num::Int(u.into())
        } else {
            Num::Float(n.as_f64().unwrap_or(f64::NAN))
        }
    }

    /// Parses text as a number (an integer exactly, else a float).
    pub fn parse(text: &str) -> Option<Num> {
        let t = text.trim();
        t.parse::<i128>()
            .map(Num::Int)
            .ok()
            .or_else(|| t.parse::<f64>().ok().map(Num::Float))
    }

    /// Exact comparison, integers against floats included (`None` for NaN).
    pub fn cmp_exact(self, other: Num) -> Option<std::cmp::Ordering> {
        use std::cmp::Ordering;
        fn int_float(i: i128, f: f64) -> Option<Ordering> {
            if f.is_nan() {
                return None;
            }
            // Beyond i128's range every float is larger or smaller.
            if f >= 1.7e38 {
                return Some(Ordering::Less);
            }
            if f <= -1.7e38 {
                return Some(Ordering::Greater);
            }
            let floor = f.floor();
            Some(match i.cmp(&(floor as i128)) {
                Ordering::Equal if f > floor => Ordering::Less,
                o => o,
            })
        }
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
            (Num::Int(a), Num::Float(b)) => int_float(a, b),
            (Num::Float(a), Num::Int(b)) => int_float(b, a).map(Ordering::reverse),
        }
    }
}

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Num::Int(i) => write!(f, "{i}"),
            Num::Float(x) if x.fract() == 0.0 && x.abs() < 1e15 => write!(f, "{}", *x as i64),
            Num::Float(x) => write!(f, "{x}"),
        }
    }
}

/// A scalar expected value: text (a template) or a typed JSON scalar.
#[derive(Debug, Clone)]
pub enum Expected {
    /// A string (may use templates).
    Text(Template),
    /// A number.
    Number(Num),
    /// A boolean.
    Bool(bool),
    /// JSON null.
    Null,
}

/// A predicate on a value.
#[derive(Debug, Clone)]
pub enum Predicate {
    /// Equal (JSON-aware for JSONPath: `1` equals `1.0`, `"1"` does not).
    Equals(Expected),
    /// Not equal.
    NotEquals(Expected),
    /// Contains the text (or, for arrays, the element).
    Contains(Expected),
    /// Does not contain the text.
    NotContains(Expected),
    /// Starts with the text.
    StartsWith(Template),
    /// Matches the regex.
    Matches(Arc<Regex>),
    /// Exists (true) or is absent (false).
    Exists(bool),
    /// Numerically less than.
    Lt(Num),
    /// Numerically at most.
    Le(Num),
    /// Numerically greater than.
    Gt(Num),
    /// Numerically at least.
    Ge(Num),
    /// Length of an array, object or string equals.
    Length(u64),
}

impl Predicate {
    /// The YAML key this predicate is written with.
    pub fn key(&self) -> &'static str {
        match self {
            Predicate::Equals(_) => "equals",
            Predicate::NotEquals(_) => "not_equals",
            Predicate::Contains(_) => "contains",
            Predicate::NotContains(_) => "not_contains",
            Predicate::StartsWith(_) => "starts_with",
            Predicate::Matches(_) => "matches",
            Predicate::Exists(_) => "exists",
            Predicate::Lt(_) => "lt",
            Predicate::Le(_) => "le",
            Predicate::Gt(_) => "gt",
            Predicate::Ge(_) => "ge",
            Predicate::Length(_) => "length",
        }
    }
}

/// What must hold for a cookie.
#[derive(Debug, Clone)]
pub enum CookiePredicate {
    /// The cookie is (true) or is not (false) in the jar.
    Exists(bool),
    /// Its value.
    Value(Predicate),
    /// Its `Secure` attribute.
    Secure(bool),
    /// Its `HttpOnly` attribute.
    HttpOnly(bool),
    /// Its `SameSite` attribute (`Strict`, `Lax`, `None`).
    SameSite(String),
    /// Its `Path`.
    Path(String),
    /// Its `Domain`.
    Domain(String),
}

/// A value taken from a response into a variable.
#[derive(Debug, Clone)]
pub struct Capture {
    /// Variable name.
    pub name: String,
    /// Where it is written.
    pub span: Span,
    /// Where the value comes from.
    pub source: CaptureSource,
    /// Treat the captured value as a secret (redact it everywhere).
    pub redact: bool,
}

/// The sources a capture can read.
#[derive(Debug, Clone)]
pub enum CaptureSource {
    /// The first node a JSONPath query selects.
    JsonPath {
        /// The query as written.
        query: String,
        /// Compiled query.
        path: Arc<JsonPath>,
    },
    /// The first element a CSS selector matches: its text or an attribute.
    Css {
        /// Selector as written.
        selector: String,
        /// Compiled selector.
        compiled: Arc<scraper::Selector>,
        /// Attribute to read instead of the text.
        attr: Option<String>,
    },
    /// A regex on the body; group 1 unless another is given.
    Regex {
        /// The regex.
        regex: Arc<Regex>,
        /// Group number.
        group: usize,
    },
    /// A response header.
    Header(String),
    /// A cookie from the jar.
    Cookie(String),
    /// The status code.
    Status,
    /// The final URL (after redirects).
    Url,
    /// Browser: an element's text or attribute.
    Element {
        /// CSS selector (a template).
        selector: Template,
        /// Attribute to read instead of the text (a template).
        attr: Option<Template>,
    },
}

/// A browser step: actions run in one WebDriver session shared by the run.
#[derive(Debug, Clone)]
pub struct BrowserStep {
    /// The actions, in order.
    pub actions: Vec<BrowserAction>,
}

/// One browser action with its position and timeout.
#[derive(Debug, Clone)]
pub struct BrowserAction {
    /// Where the action is written.
    pub span: Span,
    /// How long the action may wait: as written, else the journey's
    /// `action_timeout` ([`DEFAULT_ACTION_TIMEOUT`]); `None` only for `goto`
    /// and `screenshot`, which may take what is left of the step. Always
    /// capped by the step's deadline.
    pub timeout: Option<Duration>,
    /// What to do.
    pub kind: ActionKind,
}

/// What a browser can wait for.
#[derive(Debug, Clone)]
pub enum WaitCondition {
    /// An element matching the selector exists.
    Present(Template),
    /// An element matching the selector is displayed.
    Visible(Template),
    /// The element's text contains this.
    Text {
        /// CSS selector (a template).
        selector: Template,
        /// Text to find.
        text: Template,
    },
    /// The current URL contains this.
    Url(Template),
}

/// Browser actions.
#[derive(Debug, Clone)]
pub enum ActionKind {
    /// Navigate to a URL.
    Goto(Template),
    /// Click the element.
    Click(Template),
    /// Type into an input (clears it first).
    Fill {
        /// CSS selector (a template).
        selector: Template,
        /// Text to type.
        value: Template,
    },
    /// Choose an option of a `<select>` by value.
    Select {
        /// CSS selector (a template).
        selector: Template,
        /// Option value.
        value: Template,
    },
    /// Press a key (Enter, Tab, Escape, ...) in the focused element or the selector.
    Press {
        /// Optional target selector.
        selector: Option<Template>,
        /// Key name.
        key: String,
    },
    /// Wait until a condition holds.
    WaitFor(WaitCondition),
    /// Assert on the page.
    Expect(BrowserExpect),
    /// Capture values into variables.
    Capture(Vec<Capture>),
    /// Save a screenshot (named) into the artifacts directory.
    Screenshot(String),
}

/// Browser assertions.
#[derive(Debug, Clone)]
pub enum BrowserExpect {
    /// The element's text satisfies the predicate.
    Text {
        /// CSS selector (a template).
        selector: Template,
        /// Predicate on the text.
        pred: Predicate,
    },
    /// The element is visible.
    Visible(Template),
    /// No element matches.
    Absent(Template),
    /// This many elements match.
    Count {
        /// CSS selector (a template).
        selector: Template,
        /// Expected count.
        count: u64,
    },
    /// An attribute of the element.
    Attribute {
        /// CSS selector (a template).
        selector: Template,
        /// Attribute name.
        name: Template,
        /// Predicate on its value.
        pred: Predicate,
    },
    /// The current URL.
    Url(Predicate),
    /// The page title.
    Title(Predicate),
    /// The HTTP status of the current page's main document (its last
    /// navigation). Written right after the action that navigates, it also
    /// lets that action land on a 4xx/5xx page without failing `status`.
    Status(Vec<StatusMatch>),
}
