//! `{{ }}` templates in journey strings, rendered with minijinja.
//!
//! A template is parsed at load time (syntax errors and the names it uses are
//! known before anything runs) and rendered at run time against a [`Scope`]:
//! the journey's vars, earlier captures, `secret.NAME` and `env.NAME`.
//! Strings without `{{` never touch the engine.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use minijinja::value::{Object, Value};
use minijinja::{Environment, UndefinedBehavior};

use crate::diag::Span;

/// Functions every template may call; they are not variables.
pub const FUNCTIONS: &[&str] = &["uuid", "timestamp", "timestamp_ms"];

fn engine() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| new_engine(UndefinedBehavior::Strict))
}

/// The engine of [`Template::parse`]'s dry render: every name is undefined
/// and may be chained (`env.HOME`, `secret.password`), so the render reaches
/// the filters and tests.
fn dry_engine() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| new_engine(UndefinedBehavior::Chainable))
}

fn new_engine(undefined: UndefinedBehavior) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(undefined);
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_function("uuid", || uuid::Uuid::new_v4().to_string());
    env.add_function("timestamp", || unix_now().as_secs());
    env.add_function("timestamp_ms", || unix_now().as_millis() as u64);
    env
}

fn unix_now() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// A parsed template string.
#[derive(Debug, Clone)]
pub struct Template {
    src: String,
    literal: bool,
    refs: Vec<String>,
    /// Where it is written, once [`Template::at`] says (a run's failure
    /// points there); not part of its identity.
    span: Span,
}

impl PartialEq for Template {
    fn eq(&self, other: &Self) -> bool {
        self.src == other.src && self.literal == other.literal && self.refs == other.refs
    }
}

impl Template {
    /// Parses `src`.
    ///
    /// # Errors
    /// minijinja's message for a syntax error, or for a filter or test that
    /// does not exist (`unknown filter: filter upperr is unknown`).
    pub fn parse(src: &str) -> Result<Self, String> {
        if !src.contains("{{") && !src.contains("{%") && !src.contains("{#") {
            return Ok(Self::literal(src));
        }
        let tmpl = engine().template_from_str(src).map_err(|e| describe(&e))?;
        // minijinja looks filters and tests up only when they run, so a typo
        // (`| upperr`) would first fail in production. A dry render with no
        // values reaches every filter outside a branch; what else it trips on
        // (a filter given nothing) is the real render's business.
        if let Err(e) = dry_engine().render_str(src, ())
            && matches!(
                e.kind(),
                minijinja::ErrorKind::UnknownFilter | minijinja::ErrorKind::UnknownTest
            )
        {
            return Err(unknown_name(&e));
        }
        check_tags(src)?;
        let mut refs: Vec<String> = tmpl
            .undeclared_variables(true)
            .into_iter()
            .filter(|v| !FUNCTIONS.contains(&v.as_str()))
            .collect();
        refs.sort();
        Ok(Self {
            src: src.to_string(),
            literal: false,
            refs,
            span: Span::default(),
        })
    }

    /// A string used as is.
    pub fn literal(src: &str) -> Self {
        Self {
            src: src.to_string(),
            literal: true,
            refs: Vec::new(),
            span: Span::default(),
        }
    }

    /// The same template, known to be written at `span` in its file.
    pub fn at(mut self, span: Span) -> Self {
        self.span = span;
        self
    }

    /// Where the template is written (unknown for one made in code).
    pub fn span(&self) -> Span {
        self.span
    }

    /// The text as written in the journey.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Names the template reads: `base_url`, `secret.password`, `env.HOME`.
    pub fn refs(&self) -> &[String] {
        &self.refs
    }

    /// Whether rendering can read a secret (used to keep values out of output).
    pub fn uses_secret(&self) -> bool {
        self.refs
            .iter()
            .any(|r| r == "secret" || r.starts_with("secret."))
    }

    /// Renders against `scope`; the error names what was undefined
    /// (`environment variable `SHOP_URL` is not set`).
    pub fn render<'a>(&'a self, scope: &Arc<Scope>) -> Result<Cow<'a, str>, String> {
        if self.literal {
            return Ok(Cow::Borrowed(&self.src));
        }
        engine()
            .render_str(&self.src, Value::from_dyn_object(scope.clone()))
            .map(Cow::Owned)
            .map_err(|e| match e.kind() {
                minijinja::ErrorKind::UndefinedError => self
                    .refs
                    .iter()
                    .find_map(|r| scope.why_undefined(r))
                    .unwrap_or_else(|| describe(&e)),
                _ => describe(&e),
            })
    }
}

/// The inside of each `{{ … }}` expression and `{% … %}` block of `src`,
/// with whether it is a block, trimmed of whitespace control (`{{-`).
fn tags(src: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let close = match after.chars().next() {
            Some('{') => "}}",
            Some('%') => "%}",
            _ => {
                rest = after;
                continue;
            }
        };
        let block = close == "%}";
        let inner = &after[1..];
        let Some(j) = inner.find(close) else { break };
        out.push((
            block,
            inner[..j].trim_matches(|c: char| c == '-' || c == '+' || c.is_whitespace()),
        ));
        rest = &inner[j + 2..];
    }
    out
}

/// What a template may do with a function and a secret, checked on its
/// text: a function is called (`uuid()`; a bare `uuid` renders the
/// function itself), and a secret is only ever written as it is
/// (`{{ secret.NAME }}`, or `| urlencode`): wayprobe masks a secret's value
/// and its URL-encoded and base64 forms in every output, but a value made
/// from it (`upper`, a slice, `replace`) would be printed as is.
fn check_tags(src: &str) -> Result<(), String> {
    static BARE_FN: OnceLock<regex::Regex> = OnceLock::new();
    static SECRET: OnceLock<regex::Regex> = OnceLock::new();
    static PLAIN_SECRET: OnceLock<regex::Regex> = OnceLock::new();
    let bare_fn = BARE_FN.get_or_init(|| {
        regex::Regex::new(r"(^|[^.\w])(uuid|timestamp_ms|timestamp)\b(\s*\()?").expect("valid")
    });
    let secret = SECRET.get_or_init(|| regex::Regex::new(r"(^|[^.\w])secret\b").expect("valid"));
    let plain_secret = PLAIN_SECRET.get_or_init(|| {
        regex::Regex::new(r#"^secret(\.[A-Za-z_][A-Za-z0-9_]*|\[\s*'[^']*'\s*\]|\[\s*"[^"]*"\s*\])(\s*\|\s*urlencode)?$"#).expect("valid")
    });
    // Blocks whose body becomes a value the template can transform or
    // escape: `{% filter upper %}`, `{% set x %}…{% endset %}`, `{% macro %}`,
    // `{% call %}`, `{% autoescape %}`. A secret written alone inside one is
    // still made into another value.
    let mut wrapping: Vec<&str> = Vec::new();
    for (block, expr) in tags(src) {
        if block {
            let mut words = expr.split_whitespace();
            let head = words.next().unwrap_or("");
            match head {
                "filter" | "macro" | "call" | "autoescape" => wrapping.push(expr),
                "set" if !expr.contains('=') => wrapping.push(expr),
                "endfilter" | "endmacro" | "endcall" | "endautoescape" | "endset" => {
                    wrapping.pop();
                }
                _ => {}
            }
        }
        if !block
            && let Some(outer) = wrapping.last()
            && secret.is_match(expr)
        {
            return Err(format!(
                "`{{{{ {expr} }}}}` inside `{{% {outer} %}}` makes a value from a secret, which wayprobe could not mask in its output: write the secret alone, outside the block"
            ));
        }
        for c in bare_fn.captures_iter(expr) {
            if c.get(3).is_none() {
                let f = &c[2];
                return Err(format!("`{f}` is a function: write `{f}()`"));
            }
        }
        if secret.is_match(expr) && (block || !plain_secret.is_match(expr)) {
            let shown = if block {
                format!("{{% {expr} %}}")
            } else {
                format!("{{{{ {expr} }}}}")
            };
            return Err(format!(
                "`{shown}` makes a value from a secret, which wayprobe could not mask in its output: write the secret alone, `{{{{ secret.NAME }}}}` (or `| urlencode`)"
            ));
        }
    }
    Ok(())
}

/// minijinja's built-in filters and tests (the `builtins` feature), for
/// "did you mean"; a unit test checks each one exists.
const FILTERS: &[&str] = &[
    "abs",
    "attr",
    "batch",
    "bool",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "e",
    "escape",
    "first",
    "float",
    "groupby",
    "indent",
    "int",
    "items",
    "join",
    "last",
    "length",
    "lines",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "pprint",
    "reject",
    "rejectattr",
    "replace",
    "reverse",
    "round",
    "safe",
    "select",
    "selectattr",
    "slice",
    "sort",
    "split",
    "string",
    "sum",
    "title",
    "tojson",
    "trim",
    "unique",
    "upper",
    "urlencode",
];
const TESTS: &[&str] = &[
    "defined",
    "undefined",
    "none",
    "safe",
    "escaped",
    "odd",
    "even",
    "divisibleby",
    "number",
    "integer",
    "float",
    "string",
    "sequence",
    "mapping",
    "iterable",
    "startingwith",
    "endingwith",
    "true",
    "false",
    "boolean",
    "in",
    "eq",
    "ne",
    "lt",
    "le",
    "gt",
    "ge",
];

/// "unknown filter `trimm`: did you mean `trim`?" from minijinja's
/// "filter trimm is unknown".
fn unknown_name(e: &minijinja::Error) -> String {
    let (what, known) = match e.kind() {
        minijinja::ErrorKind::UnknownFilter => ("filter", FILTERS),
        _ => ("test", TESTS),
    };
    let name = e
        .detail()
        .and_then(|d| d.strip_prefix(what))
        .and_then(|d| d.strip_suffix("is unknown"))
        .map(str::trim);
    match name {
        Some(name) => match crate::diag::did_you_mean(name, known) {
            Some(s) => format!("unknown {what} `{name}`: did you mean `{s}`?"),
            None => format!("unknown {what} `{name}`"),
        },
        None => describe(e),
    }
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = match e.kind() {
        minijinja::ErrorKind::UndefinedError => "undefined variable".to_string(),
        _ => e.kind().to_string(),
    };
    if let Some(detail) = e.detail() {
        msg.push_str(": ");
        msg.push_str(detail);
    }
    msg
}

/// What a template can see during one run.
#[derive(Debug, Default, Clone)]
pub struct Scope {
    /// The journey's `vars` (after `--var` overrides).
    pub vars: BTreeMap<String, String>,
    /// Values captured by earlier steps of this run.
    pub captures: BTreeMap<String, String>,
    /// Resolved secret values, seen as `secret.NAME`.
    pub secrets: BTreeMap<String, String>,
    /// Inside a fragment's step: its parameter values, seen as `params.NAME`.
    pub params: BTreeMap<String, String>,
    /// Secrets that could not be read at the start of the run, with why
    /// (`environment variable `SHOP_PASSWORD` is not set`): the step that
    /// first uses one fails, not the run's first step.
    pub unavailable: BTreeMap<String, String>,
}

impl Scope {
    /// Why the name a template reads (`base_url`, `env.HOME`,
    /// `secret.password`) has no value, or `None` when it has one.
    pub fn why_undefined(&self, name: &str) -> Option<String> {
        let (head, rest) = name.split_once('.').unwrap_or((name, ""));
        match head {
            "env" if !rest.is_empty() => std::env::var_os(rest)
                .is_none()
                .then(|| format!("environment variable `{rest}` (`env.{rest}`) is not set")),
            "secret" if !rest.is_empty() => match self.unavailable.get(rest) {
                Some(why) => Some(format!("secret `{rest}`: {why}")),
                None => {
                    (!self.secrets.contains_key(rest)).then(|| format!("undefined secret `{rest}`"))
                }
            },
            "env" | "secret" => None,
            _ => self
                .lookup(head)
                .is_none()
                .then(|| format!("undefined variable `{head}`")),
        }
    }

    fn lookup(&self, name: &str) -> Option<Value> {
        self.captures
            .get(name)
            .or_else(|| self.vars.get(name))
            .map(|v| Value::from(v.as_str()))
    }
}

impl Object for Scope {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "secret" => Some(Value::from_object(Section(self.clone(), |s| &s.secrets))),
            "env" => Some(Value::from_object(Env)),
            "params" => Some(Value::from_object(Section(self.clone(), |s| &s.params))),
            name => self.lookup(name),
        }
    }
}

/// One named map of the scope, seen as `secret.NAME` or `params.NAME`.
struct Section(Arc<Scope>, fn(&Scope) -> &BTreeMap<String, String>);

impl std::fmt::Debug for Section {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the values: they may be secrets.
        f.write_str("Section")
    }
}

impl Object for Section {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        (self.1)(&self.0)
            .get(key.as_str()?)
            .map(|v| Value::from(v.as_str()))
    }
}

#[derive(Debug)]
struct Env;

impl Object for Env {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        std::env::var(key.as_str()?).ok().map(Value::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Arc<Scope> {
        let mut s = Scope::default();
        s.vars.insert("base_url".into(), "http://x".into());
        s.captures.insert("cart".into(), "c-1".into());
        s.secrets.insert("password".into(), "hunter2".into());
        Arc::new(s)
    }

    #[test]
    fn renders_vars_captures_secrets_and_helpers() {
        let t = Template::parse("{{ base_url }}/c/{{ cart }}?p={{ secret.password }}").unwrap();
        assert_eq!(t.refs(), &["base_url", "cart", "secret.password"]);
        assert!(t.uses_secret());
        assert_eq!(t.render(&scope()).unwrap(), "http://x/c/c-1?p=hunter2");
        let u = Template::parse("{{ uuid() }} {{ 'a b' | urlencode }}").unwrap();
        assert!(u.refs().is_empty());
        let out = u.render(&scope()).unwrap();
        assert!(out.ends_with(" a%20b"), "{out}");
        assert_eq!(out.len(), 36 + 6);
    }

    #[test]
    fn undefined_names_are_errors() {
        let t = Template::parse("{{ nope }}").unwrap();
        let err = t.render(&scope()).unwrap_err();
        assert!(err.contains("undefined"), "{err}");
        assert!(Template::parse("{{ unclosed ").is_err());
        let s = Template::parse("{{ secret.other }}").unwrap();
        assert!(s.render(&scope()).is_err());
    }

    #[test]
    fn unknown_filters_and_tests_fail_at_parse() {
        assert_eq!(
            Template::parse("{{ base_url | upperr }}").unwrap_err(),
            "unknown filter `upperr`: did you mean `upper`?"
        );
        assert_eq!(
            Template::parse("{{ 'x' if env.HOME is strng }}").unwrap_err(),
            "unknown test `strng`: did you mean `string`?"
        );
        assert_eq!(
            Template::parse("{{ base_url | frobnicate }}").unwrap_err(),
            "unknown filter `frobnicate`"
        );
        // Every suggestion is a real filter or test.
        for f in FILTERS {
            let t = format!("{{{{ 1 | {f} }}}}");
            if let Err(e) = dry_engine().render_str(&t, ()) {
                assert_ne!(e.kind(), minijinja::ErrorKind::UnknownFilter, "{f}");
            }
        }
        for t in TESTS {
            let src = format!("{{{{ 1 is {t} }}}}");
            if let Err(e) = dry_engine().render_str(&src, ()) {
                assert_ne!(e.kind(), minijinja::ErrorKind::UnknownTest, "{t}");
            }
        }
        // Known filters on names that have no value yet, and on secrets,
        // still parse: the dry render never sees a value.
        for ok in [
            "{{ base_url | upper }}",
            "{{ secret.password | urlencode }}",
            "{{ env.HOME | default('x') | trim }}",
            "{{ order | int + 1 }}",
            "{{ uuid() }}-{{ timestamp() }}",
        ] {
            Template::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    /// A secret written alone inside a block that turns its body into a
    /// value (`filter`, a block `set`, `macro`, `call`, `autoescape`) is
    /// refused: `{% filter lower %}` printed a password in lower case.
    #[test]
    fn secrets_inside_value_making_blocks_are_refused() {
        for src in [
            "{% filter lower %}{{ secret.pw }}{% endfilter %}",
            "{%- filter upper -%}x{{ secret.pw }}{%- endfilter -%}",
            "{% set x %}{{ secret.pw }}{% endset %}{{ x | upper }}",
            "{% macro m() %}{{ secret.pw }}{% endmacro %}{{ m() | upper }}",
            "{% autoescape true %}{{ secret.pw }}{% endautoescape %}",
            "{% filter upper %}{% if 1 %}{{ secret['pw'] }}{% endif %}{% endfilter %}",
        ] {
            let e = Template::parse(src).unwrap_err();
            assert!(e.contains("makes a value from a secret"), "{src}: {e}");
        }
        // Outside the block, or a block that wraps no secret: fine.
        for src in [
            "{% filter upper %}abc{% endfilter %}{{ secret.pw }}",
            "{% set x = 'a' %}{{ x }}{{ secret.pw }}",
            "{% set x %}abc{% endset %}{{ secret.pw | urlencode }}",
        ] {
            assert!(Template::parse(src).is_ok(), "{src}");
        }
    }

    #[test]
    fn functions_are_called_and_secrets_written_alone() {
        assert_eq!(
            Template::parse("{{ base }}/x?u={{ uuid }}").unwrap_err(),
            "`uuid` is a function: write `uuid()`"
        );
        assert_eq!(
            Template::parse("{{- timestamp_ms -}}").unwrap_err(),
            "`timestamp_ms` is a function: write `timestamp_ms()`"
        );
        for bad in [
            "{{ secret.tok | upper }}",
            "Bearer {{ secret.tok[0:6] }}",
            "{{ secret.tok | replace('-', '') }}",
            "{{ secret.tok ~ 'x' }}",
            "{% if secret.tok %}y{% endif %}",
            "{% set t = secret.tok %}{{ t }}",
        ] {
            let e = Template::parse(bad).unwrap_err();
            assert!(e.contains("makes a value from a secret"), "{bad}: {e}");
        }
        for ok in [
            "Bearer {{ secret.tok }}",
            "{{secret.tok|urlencode}}",
            "{{ base }}?u={{ uuid() }}&t={{ timestamp( ) }}&v={{ my_uuid }}&s={{ x.secret }}",
            "{{ secret_word }}",
        ] {
            Template::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
    }

    #[test]
    fn literals_skip_the_engine() {
        let t = Template::parse("plain text }}").unwrap();
        assert!(matches!(t.render(&scope()).unwrap(), Cow::Borrowed(_)));
        assert_eq!(t.source(), "plain text }}");
        assert!(!t.uses_secret());
    }

    /// Each of `{{`, `{%` and `{#` alone makes a string a template.
    #[test]
    fn blocks_and_comments_alone_are_templates() {
        let t = Template::parse("a{% if cart == 'c-1' %}yes{% endif %}").unwrap();
        assert_eq!(t.render(&scope()).unwrap(), "ayes");
        assert_eq!(t.source(), "a{% if cart == 'c-1' %}yes{% endif %}");
        let t = Template::parse("a{# gone #}b").unwrap();
        assert_eq!(t.render(&scope()).unwrap(), "ab");
    }

    #[test]
    fn only_secret_names_count_as_secret() {
        assert!(!Template::parse("{{ base_url }}").unwrap().uses_secret());
        assert!(
            Template::parse("{{ secret.password }}")
                .unwrap()
                .uses_secret()
        );
        assert!(
            Template::parse("{{ secret['password'] }}")
                .unwrap()
                .uses_secret()
        );
    }

    #[test]
    fn functions_read_the_clock() {
        let t = Template::parse("{{ timestamp() }} {{ timestamp_ms() }}").unwrap();
        let out = t.render(&scope()).unwrap();
        let (s, ms) = out.split_once(' ').unwrap();
        let (s, ms): (u64, u64) = (s.parse().unwrap(), ms.parse().unwrap());
        // 2020-09-13 or later, and the two readings agree to the second.
        assert!(s >= 1_600_000_000, "{out}");
        assert!(ms / 1000 >= s && ms / 1000 - s <= 1, "{out}");
    }

    #[test]
    fn env_reads_the_process_environment() {
        let path = std::env::var("PATH").expect("tests run with PATH set");
        let t = Template::parse("{{ env.PATH }}").unwrap();
        assert_eq!(t.refs(), &["env.PATH"]);
        assert_eq!(t.render(&scope()).unwrap(), path);
        let err = Template::parse("{{ env.WAYPROBE_SURELY_UNSET }}")
            .unwrap()
            .render(&scope())
            .unwrap_err();
        assert_eq!(
            err,
            "environment variable `WAYPROBE_SURELY_UNSET` (`env.WAYPROBE_SURELY_UNSET`) is not set"
        );
    }
}
