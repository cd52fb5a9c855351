//! Positioned diagnostics and their one renderer.
//!
//! Every message that points into a journey file (load errors, SLO warnings,
//! and run-time assertion failures in `wayprobe run`) is a [`Diagnostic`] and is
//! printed by [`Diagnostic::render`], in the shape users know from rustc and Hurl:
//!
//! ```text
//! error: unknown key `stauts` in `expect`
//!   --> journeys/checkout.yaml:14:9
//!    |
//! 14 |         stauts: 201
//!    |         ^^^^^^ did you mean `status`?
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A journey file as read from disk, kept so diagnostics can quote it.
#[derive(Debug)]
pub struct SourceFile {
    /// Path as given by the user (relative paths stay relative in messages).
    pub path: PathBuf,
    /// The whole text of the file.
    pub text: String,
}

impl SourceFile {
    /// Wraps a path and its text.
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            path: path.into(),
            text: text.into(),
        })
    }

    /// The 1-based line `line`, without its line break.
    pub fn line(&self, line: u32) -> Option<&str> {
        self.text
            .lines()
            .nth((line as usize).checked_sub(1)?)
            .map(|l| l.trim_end_matches('\r'))
    }
}

/// A place in a source file: 1-based line and column (in characters) and a
/// length in characters on that line (at least 1 when rendered).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Span {
    /// 1-based line; 0 means "no position known".
    pub line: u32,
    /// 1-based column, counted in characters.
    pub col: u32,
    /// Number of characters to underline.
    pub len: u32,
}

impl Span {
    /// A span at `line:col` covering `len` characters.
    pub const fn new(line: u32, col: u32, len: u32) -> Self {
        Self { line, col, len }
    }

    /// True when the span points nowhere (for example a file-level problem).
    pub const fn is_unknown(&self) -> bool {
        self.line == 0
    }
}

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The journey cannot be used.
    Error,
    /// The journey works but something is likely wrong (SLO arithmetic, ...).
    Warning,
    /// Extra explanation (for example `wayprobe check`'s SLO report).
    Note,
}

impl Severity {
    fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// One message, optionally pointing into a source file.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    /// Error, warning or note.
    pub severity: Severity,
    /// The headline: what is wrong.
    pub title: String,
    /// The file it is about, if any.
    pub file: Option<Arc<SourceFile>>,
    /// Path to show when there is no source text (unreadable file).
    pub path: Option<PathBuf>,
    /// Where in the file.
    pub span: Span,
    /// Short text printed after the carets ("did you mean `status`?").
    pub label: Option<String>,
    /// Longer help lines printed below the snippet.
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// An error at `span` in `file`.
    pub fn error(file: &Arc<SourceFile>, span: Span, title: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            title: title.into(),
            file: Some(file.clone()),
            path: None,
            span,
            label: None,
            notes: Vec::new(),
        }
    }

    /// A warning at `span` in `file`.
    pub fn warning(file: &Arc<SourceFile>, span: Span, title: impl Into<String>) -> Self {
        Self {
            severity: Severity::Warning,
            ..Self::error(file, span, title)
        }
    }

    /// An error about a path that could not be read at all.
    pub fn io(path: &Path, title: impl Into<String>) -> Self {
        Self {
            severity: Severity::Error,
            title: title.into(),
            file: None,
            path: Some(path.to_path_buf()),
            span: Span::default(),
            label: None,
            notes: Vec::new(),
        }
    }

    /// Sets the text printed after the carets.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a help line below the snippet.
    pub fn with_note(mut self, note: impl Into<String>) -> Self {
        self.notes.push(note.into());
        self
    }

    /// The path this diagnostic is about, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file
            .as_deref()
            .map(|f| f.path.as_path())
            .or(self.path.as_deref())
    }

    /// `file:line:col`, or just the file when there is no position.
    pub fn location(&self) -> Option<String> {
        let path = self.path()?.display().to_string();
        Some(if self.span.is_unknown() {
            path
        } else {
            format!("{path}:{}:{}", self.span.line, self.span.col)
        })
    }

    /// Renders the diagnostic; `color` adds ANSI colours (only on a TTY).
    pub fn render(&self, color: bool) -> String {
        let paint = Paint { on: color };
        let mut out = String::new();
        let sev = self.severity.as_str();
        let sev_colored = match self.severity {
            Severity::Error => paint.red(sev),
            Severity::Warning => paint.yellow(sev),
            Severity::Note => paint.cyan(sev),
        };
        let _ = writeln!(
            out,
            "{sev_colored}{}",
            paint.bold(&format!(": {}", self.title))
        );
        let line_text = self.file.as_ref().and_then(|f| f.line(self.span.line));
        let gutter = if line_text.is_some() {
            self.span.line.to_string().len()
        } else {
            1
        };
        let pad = " ".repeat(gutter);
        if let Some(loc) = self.location() {
            let _ = writeln!(out, "{pad}{} {loc}", paint.blue("-->"));
        }
        if let Some(text) = line_text {
            let bar = paint.blue("|");
            let (expanded, col) = expand_tabs(text, self.span.col);
            let _ = writeln!(out, "{pad} {bar}");
            let _ = writeln!(
                out,
                "{} {bar} {}",
                paint.blue(&self.span.line.to_string()),
                expanded.trim_end()
            );
            let avail = expanded.chars().count().saturating_sub(col).max(1);
            let len = (self.span.len.max(1) as usize).min(avail);
            let carets = "^".repeat(len);
            let carets = match self.severity {
                Severity::Error => paint.red(&carets),
                Severity::Warning => paint.yellow(&carets),
                Severity::Note => paint.cyan(&carets),
            };
            let label = self
                .label
                .as_deref()
                .map(|l| format!(" {}", l.replace('\n', " ")))
                .unwrap_or_default();
            let _ = writeln!(out, "{pad} {bar} {}{carets}{label}", " ".repeat(col));
            let _ = writeln!(out, "{pad} {bar}");
        } else if let Some(label) = &self.label {
            let _ = writeln!(out, "{pad} = {label}");
        }
        for note in &self.notes {
            let _ = writeln!(out, "{pad} = {note}");
        }
        out
    }
}

/// Replaces tabs by 4 spaces and maps a 1-based char column to a 0-based
/// display column in the expanded line.
fn expand_tabs(line: &str, col: u32) -> (String, usize) {
    let mut out = String::with_capacity(line.len());
    let mut display_col = 0;
    for (i, ch) in line.chars().enumerate() {
        if i + 1 == col as usize {
            display_col = out.chars().count();
        }
        if ch == '\t' {
            out.push_str("    ");
        } else {
            out.push(ch);
        }
    }
    if col as usize > line.chars().count() {
        display_col = out.chars().count() + (col as usize - 1 - line.chars().count());
    }
    (out, display_col)
}

/// ANSI painting that is a no-op when colour is off.
#[derive(Clone, Copy)]
pub struct Paint {
    /// Whether to emit escape codes.
    pub on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    /// Red text.
    pub fn red(&self, s: &str) -> String {
        self.wrap("1;31", s)
    }
    /// Green text.
    pub fn green(&self, s: &str) -> String {
        self.wrap("1;32", s)
    }
    /// Yellow text.
    pub fn yellow(&self, s: &str) -> String {
        self.wrap("1;33", s)
    }
    /// Blue text.
    pub fn blue(&self, s: &str) -> String {
        self.wrap("1;34", s)
    }
    /// Cyan text.
    pub fn cyan(&self, s: &str) -> String {
        self.wrap("1;36", s)
    }
    /// Bold text.
    pub fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
    /// Dimmed text.
    pub fn dim(&self, s: &str) -> String {
        self.wrap("2", s)
    }
}

/// Whether to colour output written to stderr/stdout: only on a TTY, and never
/// when `NO_COLOR` is set (<https://no-color.org>).
pub fn use_color(is_terminal: bool) -> bool {
    is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The closest candidate within edit distance 2 (or a third of the word),
/// for "did you mean" hints.
pub fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let limit = (word.chars().count() / 3).clamp(1, 3);
    candidates
        .iter()
        .map(|c| (levenshtein(word, c), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// Formats a list of names as "`a`, `b` or `c`" for messages.
pub fn one_of(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

/// A duration as every output prints it (run output, messages, reports'
/// text, the status page, `check`): `2.5ms`, `37ms`, `1.25s`, `30s`,
/// `1m30s`, `2h`. Below 10 ms one decimal of a millisecond; below a second
/// whole milliseconds; below a minute seconds with at most two decimals;
/// from a minute on whole seconds in hours, minutes and seconds, which reads
/// back as a journey duration. Machine outputs (JSON, metrics) keep numbers.
pub fn duration(d: std::time::Duration) -> String {
    millis(d.as_secs_f64() * 1000.0)
}

/// [`duration`] of a number of milliseconds (timings are kept as `f64` ms).
pub fn millis(ms: f64) -> String {
    let ms = if ms.is_finite() { ms.max(0.0) } else { 0.0 };
    if ms < 9.95 {
        let s = format!("{ms:.1}");
        format!("{}ms", s.strip_suffix(".0").unwrap_or(&s))
    } else if ms < 999.5 {
        format!("{ms:.0}ms")
    } else if ms < 59_995.0 {
        let s = format!("{:.2}", ms / 1000.0);
        let s = s.trim_end_matches('0').trim_end_matches('.');
        format!("{s}s")
    } else {
        let total = (ms / 1000.0).round() as u64;
        let (h, m, s) = (total / 3600, total / 60 % 60, total % 60);
        let mut out = String::new();
        for (n, unit) in [(h, "h"), (m, "m"), (s, "s")] {
            if n > 0 {
                let _ = write!(out, "{n}{unit}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_in_one_format() {
        let cases = [
            (0.0, "0ms"),
            (2.54, "2.5ms"),
            (9.96, "10ms"),
            (37.4, "37ms"),
            (999.4, "999ms"),
            (999.6, "1s"),
            (1250.0, "1.25s"),
            (1500.0, "1.5s"),
            (5000.0, "5s"),
            (59_990.0, "59.99s"),
            (60_000.0, "1m"),
            (90_000.0, "1m30s"),
            (7_205_000.0, "2h5s"),
            (86_400_000.0, "24h"),
        ];
        for (ms, want) in cases {
            assert_eq!(millis(ms), want, "{ms} ms");
        }
        // What a journey may write reads back as itself.
        for d in ["1m30s", "2h", "24h", "2h5s"] {
            let parsed = humantime::parse_duration(d).unwrap();
            assert_eq!(duration(parsed), d);
        }
    }

    #[test]
    fn carets_under_the_span_with_tabs() {
        let f = SourceFile::new("j.yaml", "a: 1\n\tstauts: 201\n");
        let d = Diagnostic::error(&f, Span::new(2, 2, 6), "unknown key `stauts`")
            .with_label("did you mean `status`?");
        let out = d.render(false);
        assert_eq!(
            out,
            "error: unknown key `stauts`\n --> j.yaml:2:2\n  |\n2 |     stauts: 201\n  |     ^^^^^^ did you mean `status`?\n  |\n"
        );
    }

    #[test]
    fn did_you_mean_finds_close_words_only() {
        assert_eq!(
            did_you_mean("stauts", &["status", "headers"]),
            Some("status")
        );
        assert_eq!(did_you_mean("zzz", &["status", "headers"]), None);
        assert_eq!(did_you_mean("htpp", &["http", "browser"]), Some("http"));
    }

    #[test]
    fn one_of_lists() {
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
