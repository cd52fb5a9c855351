//! Checking a step's `expect:` assertions against a response: pure
//! functions of the response, the scope and the redactor.
//!
//! Every check returns `Ok(())` or a [`Failure`] pointing at the assertion's
//! YAML position, with expected and actual values already redacted.

use std::sync::Arc;

use serde_json::Value;

use crate::journey::{Assertion, Check, CookiePredicate, Expected, Num, Predicate};
use crate::outcome::{Failure, Reason};
use crate::redact::Redactor;
use crate::step::excerpt as shape;
use crate::step::response::Response;
use crate::template::Scope;

/// Renders an expected value for comparison and display.
fn expected_text(e: &Expected, scope: &Arc<Scope>) -> Result<String, Failure> {
    Ok(match e {
        Expected::Text(t) => t
            .render(scope)
            .map_err(|m| Failure::new(Reason::Template, m))?
            .into_owned(),
        Expected::Number(n) => n.to_string(),
        Expected::Bool(b) => b.to_string(),
        Expected::Null => "null".to_string(),
    })
}

/// The outcome of a predicate: Ok, or (expected description, actual description).
type PredResult = Result<(), (String, String)>;

/// Applies a predicate to an optional text value (headers, body, cookies, page text).
///
/// Values shown in the result are redacted before they are cut.
pub fn text_predicate(
    pred: &Predicate,
    actual: Option<&str>,
    scope: &Arc<Scope>,
    redactor: &Redactor,
) -> Result<PredResult, Failure> {
    let shown = |a: Option<&str>| {
        a.map_or("nothing (absent)".to_string(), |s| {
            format!("`{}`", shape::shape(redactor, s, 200))
        })
    };
    let r = match pred {
        Predicate::Exists(want) => {
            if actual.is_some() == *want {
                Ok(())
            } else if *want {
                Err(("to exist".into(), "absent".into()))
            } else {
                Err(("to be absent".into(), shown(actual)))
            }
        }
        Predicate::Equals(e) | Predicate::NotEquals(e) => {
            let want = expected_text(e, scope)?;
            let eq = actual == Some(want.as_str());
            let neg = matches!(pred, Predicate::NotEquals(_));
            if eq != neg {
                Ok(())
            } else {
                let verb = if neg { "not to equal" } else { "to equal" };
                Err((format!("{verb} `{want}`"), shown(actual)))
            }
        }
        Predicate::Contains(e) | Predicate::NotContains(e) => {
            let want = expected_text(e, scope)?;
            let has = actual.is_some_and(|a| a.contains(want.as_str()));
            let neg = matches!(pred, Predicate::NotContains(_));
            if has != neg {
                Ok(())
            } else {
                let verb = if neg { "not to contain" } else { "to contain" };
                Err((format!("{verb} `{want}`"), shown(actual)))
            }
        }
        Predicate::StartsWith(t) => {
            let want = t
                .render(scope)
                .map_err(|m| Failure::new(Reason::Template, m))?;
            if actual.is_some_and(|a| a.starts_with(want.as_ref())) {
                Ok(())
            } else {
                Err((format!("to start with `{want}`"), shown(actual)))
            }
        }
        Predicate::Matches(re) => {
            if actual.is_some_and(|a| re.is_match(a)) {
                Ok(())
            } else {
                Err((format!("to match /{}/", re.as_str()), shown(actual)))
            }
        }
        Predicate::Lt(_) | Predicate::Le(_) | Predicate::Gt(_) | Predicate::Ge(_) => {
            match actual.and_then(Num::parse) {
                Some(n) => compare(pred, n),
                None => Err((describe_cmp(pred), shown(actual))),
            }
        }
        Predicate::Length(n) => {
            let len = actual.map(|a| a.chars().count() as u64);
            if len == Some(*n) {
                Ok(())
            } else {
                Err((
                    format!("length {n}"),
                    len.map_or("absent".into(), |l| format!("length {l}")),
                ))
            }
        }
    };
    Ok(r)
}

fn describe_cmp(pred: &Predicate) -> String {
    match pred {
        Predicate::Lt(x) => format!("a number < {x}"),
        Predicate::Le(x) => format!("a number ≤ {x}"),
        Predicate::Gt(x) => format!("a number > {x}"),
        Predicate::Ge(x) => format!("a number ≥ {x}"),
        _ => String::new(),
    }
}

fn compare(pred: &Predicate, n: Num) -> PredResult {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let ok = match pred {
        Predicate::Lt(x) => n.cmp_exact(*x) == Some(Less),
        Predicate::Le(x) => matches!(n.cmp_exact(*x), Some(Less | Equal)),
        Predicate::Gt(x) => n.cmp_exact(*x) == Some(Greater),
        Predicate::Ge(x) => matches!(n.cmp_exact(*x), Some(Greater | Equal)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err((describe_cmp(pred), n.to_string()))
    }
}

fn json_eq(v: &Value, e: &Expected, want_text: &str) -> bool {
    match (e, v) {
        (Expected::Null, Value::Null) => true,
        (Expected::Bool(b), Value::Bool(x)) => b == x,
        // Exact: 9007199254740993 is not 9007199254740992, though both
        // round to the same double.
        (Expected::Number(n), Value::Number(x)) => {
            Num::of_json(x).cmp_exact(*n) == Some(std::cmp::Ordering::Equal)
        }
        (Expected::Text(_), Value::String(s)) => s == want_text,
        // A template renders to text; let `"{{ qty }}"` match the number 2.
        (Expected::Text(_), Value::Number(x)) => x.to_string() == want_text,
        (Expected::Text(_), Value::Bool(x)) => x.to_string() == want_text,
        _ => false,
    }
}

fn json_show(v: &Value, redactor: &Redactor) -> String {
    shape::shape(redactor, &v.to_string(), 200)
}

/// Applies a predicate to the nodes a JSONPath query selected.
pub fn json_predicate(
    pred: &Predicate,
    nodes: &[&Value],
    scope: &Arc<Scope>,
    redactor: &Redactor,
) -> Result<PredResult, Failure> {
    let single = || -> Result<&Value, (String, String)> {
        match nodes {
            [one] => Ok(*one),
            [] => Err(("a value".into(), "no match".into())),
            many => Err(("exactly one value".into(), format!("{} values", many.len()))),
        }
    };
    let r = match pred {
        Predicate::Exists(want) => {
            if nodes.is_empty() != *want {
                Ok(())
            } else if *want {
                Err(("to exist".into(), "no match".into()))
            } else {
                Err(("no match".into(), format!("{} value(s)", nodes.len())))
            }
        }
        Predicate::Equals(e) | Predicate::NotEquals(e) => {
            let want = expected_text(e, scope)?;
            let neg = matches!(pred, Predicate::NotEquals(_));
            match single() {
                Ok(v) => {
                    if json_eq(v, e, &want) != neg {
                        Ok(())
                    } else {
                        let verb = if neg { "not to equal" } else { "to equal" };
                        Err((format!("{verb} `{want}`"), json_show(v, redactor)))
                    }
                }
                Err(e) if neg && nodes.is_empty() => {
                    let _ = e;
                    Ok(())
                }
                Err(e) => Err(e),
            }
        }
        Predicate::Contains(e) | Predicate::NotContains(e) => {
            let want = expected_text(e, scope)?;
            let neg = matches!(pred, Predicate::NotContains(_));
            match single() {
                Ok(v) => {
                    let has = match v {
                        Value::String(s) => s.contains(want.as_str()),
                        Value::Array(items) => items.iter().any(|i| json_eq(i, e, &want)),
                        Value::Object(m) => m.contains_key(want.as_str()),
                        _ => false,
                    };
                    if has != neg {
                        Ok(())
                    } else {
                        let verb = if neg { "not to contain" } else { "to contain" };
                        Err((format!("{verb} `{want}`"), json_show(v, redactor)))
                    }
                }
                Err(e) => Err(e),
            }
        }
        Predicate::StartsWith(_) | Predicate::Matches(_) => match single() {
            Ok(Value::String(s)) => return text_predicate(pred, Some(s), scope, redactor),
            Ok(v) => {
                let text = v.to_string();
                return text_predicate(pred, Some(&text), scope, redactor);
            }
            Err(e) => Err(e),
        },
        Predicate::Lt(_) | Predicate::Le(_) | Predicate::Gt(_) | Predicate::Ge(_) => match single()
        {
            Ok(Value::Number(n)) => compare(pred, Num::of_json(n)),
            Ok(v) => Err((describe_cmp(pred), json_show(v, redactor))),
            Err(e) => Err(e),
        },
        Predicate::Length(n) => {
            let len = match nodes {
                [Value::Array(a)] => a.len(),
                [Value::Object(o)] => o.len(),
                [Value::String(s)] => s.chars().count(),
                many => many.len(),
            } as u64;
            if len == *n {
                Ok(())
            } else {
                Err((format!("length {n}"), format!("length {len}")))
            }
        }
    };
    Ok(r)
}

/// Where in a body a text was found: line and column (1-based, columns in
/// characters); the excerpt shows the page there.
fn found_at(text: &str, at: usize) -> String {
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |i| i + 1)..]
        .chars()
        .count()
        + 1;
    format!("it at line {line}, column {col} of the body")
}

/// Checks one assertion against a response.
pub fn check(
    a: &Assertion,
    resp: &Response,
    scope: &Arc<Scope>,
    redactor: &Redactor,
) -> Result<(), Failure> {
    let fail = |reason: Reason, what: String, (exp, act): (String, String)| -> Failure {
        let mut f = Failure::new(
            reason,
            redactor.apply(&format!("{what}: expected {exp}, got {act}")),
        )
        .expected_actual(redactor.apply(&exp), redactor.apply(&act))
        .at(a.span);
        if matches!(reason, Reason::Assertion | Reason::Status) && !resp.body.is_empty() {
            f.excerpt = Some(shape::response(redactor, resp, None));
        }
        f
    };
    let with_span = |f: Failure| f.at(a.span);
    match &a.check {
        Check::Status(matches) => {
            if matches.iter().any(|m| m.matches(resp.status)) {
                Ok(())
            } else {
                let want: Vec<String> = matches.iter().map(|m| m.to_string()).collect();
                Err(fail(
                    Reason::Status,
                    "status".into(),
                    (want.join(" or "), resp.status.to_string()),
                ))
            }
        }
        Check::Header { name, pred } => {
            let values: Vec<&str> = resp.header_all(name);
            let actual = if values.is_empty() {
                None
            } else {
                Some(values.join(", "))
            };
            text_predicate(pred, actual.as_deref(), scope, redactor)
                .map_err(with_span)?
                .map_err(|e| fail(Reason::Assertion, format!("header `{name}`"), e))
        }
        Check::Cookie { name, pred } => {
            let c = resp.cookies.iter().find(|c| &c.name == name);
            let r: PredResult = match pred {
                CookiePredicate::Exists(want) => {
                    if c.is_some() == *want {
                        Ok(())
                    } else if *want {
                        Err(("to be set".into(), "not in the cookie jar".into()))
                    } else {
                        Err(("to be absent".into(), "set".into()))
                    }
                }
                CookiePredicate::Value(p) => {
                    text_predicate(p, c.map(|c| c.value.as_str()), scope, redactor)
                        .map_err(with_span)?
                }
                CookiePredicate::Secure(b) => attr(
                    c,
                    |c| c.secure == *b,
                    format!("secure={b}"),
                    |c| format!("secure={}", c.secure),
                ),
                CookiePredicate::HttpOnly(b) => attr(
                    c,
                    |c| c.http_only == *b,
                    format!("http_only={b}"),
                    |c| format!("http_only={}", c.http_only),
                ),
                CookiePredicate::SameSite(s) => attr(
                    c,
                    |c| {
                        c.same_site
                            .as_deref()
                            .is_some_and(|x| x.eq_ignore_ascii_case(s))
                    },
                    format!("same_site={s}"),
                    |c| format!("same_site={}", c.same_site.as_deref().unwrap_or("unset")),
                ),
                CookiePredicate::Path(p) => attr(
                    c,
                    |c| c.path.as_deref() == Some(p),
                    format!("path={p}"),
                    |c| format!("path={}", c.path.as_deref().unwrap_or("unset")),
                ),
                CookiePredicate::Domain(d) => attr(
                    c,
                    |c| {
                        c.domain
                            .as_deref()
                            .is_some_and(|x| x.trim_start_matches('.') == d.trim_start_matches('.'))
                    },
                    format!("domain={d}"),
                    |c| format!("domain={}", c.domain.as_deref().unwrap_or("unset")),
                ),
            };
            r.map_err(|e| fail(Reason::Assertion, format!("cookie `{name}`"), e))
        }
        Check::Url(pred) => text_predicate(pred, Some(&resp.url), scope, redactor)
            .map_err(with_span)?
            .map_err(|e| fail(Reason::Assertion, "final URL".into(), e)),
        Check::Body(pred) => {
            let text = resp.text();
            text_predicate(pred, Some(text), scope, redactor)
                .map_err(with_span)?
                .map_err(|(exp, act)| {
                    // A refused text: say where it is, and show the page there.
                    if let Predicate::NotContains(e) = pred
                        && let Ok(want) = expected_text(e, scope)
                        && let Some(at) = text.find(want.as_str())
                    {
                        let found = found_at(text, at);
                        let mut f = fail(Reason::Assertion, "body".into(), (exp, found));
                        f.excerpt = Some(shape::response(redactor, resp, Some(&want)));
                        return f;
                    }
                    // The body itself goes in the excerpt, not the message.
                    let act = if act.len() > 60 {
                        "a body that does not".to_string()
                    } else {
                        act
                    };
                    fail(Reason::Assertion, "body".into(), (exp, act))
                })
        }
        Check::JsonPath { query, path, pred } => {
            let json = resp.json().map_err(|m| {
                let mut f = Failure::new(
                    Reason::InvalidBody,
                    redactor.apply(&format!("`{query}`: the body is not JSON ({m})")),
                )
                .at(a.span);
                f.excerpt = Some(shape::response(redactor, resp, None));
                f
            })?;
            let nodes = path.query(json).all();
            json_predicate(pred, &nodes, scope, redactor)
                .map_err(with_span)?
                .map_err(|e| fail(Reason::Assertion, format!("`{query}`"), e))
        }
        Check::DurationUnder(limit) => {
            if resp.elapsed < *limit {
                Ok(())
            } else {
                Err(fail(
                    Reason::Assertion,
                    "duration".into(),
                    (
                        format!("under {}", crate::diag::duration(*limit)),
                        crate::diag::duration(resp.elapsed),
                    ),
                ))
            }
        }
    }
}

fn attr<C>(
    c: Option<&C>,
    ok: impl Fn(&C) -> bool,
    want: String,
    got: impl Fn(&C) -> String,
) -> PredResult {
    match c {
        None => Err((want, "not in the cookie jar".into())),
        Some(c) if ok(c) => Ok(()),
        Some(c) => Err((want, got(c))),
    }
}
