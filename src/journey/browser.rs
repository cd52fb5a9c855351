//! Validation of `browser:` steps: a list of actions, each a one-key mapping
//! (`- click: "#checkout"`), optionally with its own `timeout`.

use super::validate::{Names, TEXT_PREDICATES, Validator, predicates};
use super::yaml::{Node, SNode};
use super::*;
use crate::diag::{did_you_mean, one_of};
use crate::template::Template;

pub(super) const ACTIONS: &[&str] = &[
    "goto",
    "click",
    "fill",
    "select",
    "press",
    "wait_for",
    "expect",
    "capture",
    "screenshot",
];
pub(super) const EXPECT_KEYS: &[&str] = &[
    "selector",
    "equals",
    "not_equals",
    "contains",
    "not_contains",
    "starts_with",
    "matches",
    "visible",
    "absent",
    "count",
    "attr",
    "url",
    "title",
    "status",
    "timeout",
];

pub(super) fn browser_step(v: &mut Validator<'_>, n: &SNode, names: &Names) -> Option<BrowserStep> {
    let Node::Seq(items) = &n.node else {
        v.type_error(n, "`browser`", "a list of actions");
        return None;
    };
    if items.is_empty() {
        v.error(n.span, "`browser` has no actions").label = Some(format!(
            "add actions such as {}",
            one_of(&["goto", "click", "expect"])
        ));
        return None;
    }
    // Captures made by earlier actions of this step are visible to later ones.
    let mut local = Names {
        vars: names.vars.clone(),
        declared: names.declared.clone(),
        secrets: names.secrets.clone(),
        later: names.later.clone(),
        params: names.params.clone(),
    };
    let mut actions = Vec::new();
    let mut ok = true;
    for item in items {
        match action(v, item, &local) {
            Some(a) => {
                if let ActionKind::Capture(cs) = &a.kind {
                    for c in cs {
                        local.vars.insert(c.name.clone());
                    }
                }
                actions.push(a);
            }
            None => ok = false,
        }
    }
    ok.then_some(BrowserStep { actions })
}

/// A selector is a template (`"#order-{{ order }}"`): its names are checked
/// like any template's, and its CSS with each `{{ }}` part standing for a
/// plain word, so a typo fails `check` rather than the run.
fn selector(v: &mut Validator<'_>, n: &SNode, names: &Names) -> Option<Template> {
    static PARTS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r"(?s)\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}").expect("valid regex")
    });
    let t = v.template(n, "a CSS selector", names)?;
    let probe = PARTS.replace_all(t.source(), "x");
    v.css_text(n.span, t.source(), &probe)?;
    Some(t)
}

fn action(v: &mut Validator<'_>, n: &SNode, names: &Names) -> Option<BrowserAction> {
    let Node::Map(entries) = &n.node else {
        v.error(
            n.span,
            "a browser action is a mapping such as `- click: \"#checkout\"`",
        )
        .label = Some(format!("actions: {}", one_of(ACTIONS)));
        return None;
    };
    let mut kind_key = None;
    let mut timeout = None;
    for (k, val) in entries {
        if k.name == "timeout" {
            timeout = v.duration_max(val, "action `timeout`", super::validate::MAX_TIMEOUT);
        } else if ACTIONS.contains(&k.name.as_str()) {
            if kind_key.is_some() {
                v.error(k.span, "one action per list item").label =
                    Some("start a new `- ` item for each action".into());
                return None;
            }
            kind_key = Some((k, val));
        } else {
            let label = match did_you_mean(&k.name, ACTIONS) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("expected one of {}", one_of(ACTIONS)),
            };
            v.error(k.span, format!("unknown browser action `{}`", k.name))
                .label = Some(label);
            return None;
        }
    }
    let Some((key, val)) = kind_key else {
        v.error(n.span, "this item has no action").label =
            Some(format!("expected one of {}", one_of(ACTIONS)));
        return None;
    };
    // Map-form actions may carry their own timeout inside.
    let inner_timeout = |v: &mut Validator<'_>, val: &SNode| -> Option<std::time::Duration> {
        if let Node::Map(e) = &val.node {
            e.iter()
                .find(|(k, _)| k.name == "timeout")
                .and_then(|(_, t)| {
                    v.duration_max(t, "action `timeout`", super::validate::MAX_TIMEOUT)
                })
        } else {
            None
        }
    };
    let kind = match key.name.as_str() {
        "goto" => ActionKind::Goto(v.template(val, "`goto`", names)?),
        "click" => match &val.node {
            Node::Map(_) => {
                let f = v.map(val, "`click`", &["selector", "timeout"])?;
                timeout = timeout.or(inner_timeout(v, val));
                let n_selector = need(v, &f, val, "selector")?;
                ActionKind::Click(selector(v, n_selector, names)?)
            }
            _ => ActionKind::Click(selector(v, val, names)?),
        },
        "fill" | "select" => {
            let f = v.map(
                val,
                &format!("`{}`", key.name),
                &["selector", "value", "timeout"],
            )?;
            timeout = timeout.or(inner_timeout(v, val));
            let n_selector = need(v, &f, val, "selector")?;
            let selector = selector(v, n_selector, names)?;
            let n_value = need(v, &f, val, "value")?;
            let value = v.template(n_value, "`value`", names)?;
            if key.name == "fill" {
                ActionKind::Fill { selector, value }
            } else {
                ActionKind::Select { selector, value }
            }
        }
        "press" => match &val.node {
            Node::Map(_) => {
                let f = v.map(val, "`press`", &["key", "selector", "timeout"])?;
                timeout = timeout.or(inner_timeout(v, val));
                let n_key = need(v, &f, val, "key")?;
                let key = v.string(n_key, "`key`")?;
                let selector = match f.get("selector") {
                    Some(s) => Some(selector(v, s, names)?),
                    None => None,
                };
                ActionKind::Press {
                    selector,
                    key: check_key(v, val, key)?,
                }
            }
            _ => {
                let key = v.string(val, "`press`")?;
                ActionKind::Press {
                    selector: None,
                    key: check_key(v, val, key)?,
                }
            }
        },
        "wait_for" => {
            let f = v.map(
                val,
                "`wait_for`",
                &["selector", "visible", "text", "url", "timeout"],
            )?;
            timeout = timeout.or(inner_timeout(v, val));
            let cond = if let Some(u) = f.get("url") {
                WaitCondition::Url(v.template(u, "`url`", names)?)
            } else {
                let n_selector = need(v, &f, val, "selector")?;
                let sel = selector(v, n_selector, names)?;
                if let Some(t) = f.get("text") {
                    WaitCondition::Text {
                        selector: sel,
                        text: v.template(t, "`text`", names)?,
                    }
                } else if f.get("visible").and_then(|b| v.bool(b, "`visible`")) == Some(true) {
                    WaitCondition::Visible(sel)
                } else {
                    WaitCondition::Present(sel)
                }
            };
            ActionKind::WaitFor(cond)
        }
        "expect" => {
            let f = v.map(val, "a browser `expect`", EXPECT_KEYS)?;
            timeout = timeout.or(inner_timeout(v, val));

            if let Some(s) = f.get("status") {
                let m = super::validate::status_matches(v, s);
                if m.is_empty() {
                    if matches!(s.node, Node::Seq(_)) {
                        v.error(s.span, "`status` lists no code").label =
                            Some("write a code (`200`), a class (`4xx`) or a list".into());
                    }
                    return None;
                }
                ActionKind::Expect(BrowserExpect::Status(m))
            } else if let Some(u) = f.get("url") {
                ActionKind::Expect(BrowserExpect::Url(first_pred(v, u, names)?))
            } else if let Some(t) = f.get("title") {
                ActionKind::Expect(BrowserExpect::Title(first_pred(v, t, names)?))
            } else {
                let n_selector = need(v, &f, val, "selector")?;
                let sel = selector(v, n_selector, names)?;
                if f.get("visible").and_then(|b| v.bool(b, "`visible`")) == Some(true) {
                    ActionKind::Expect(BrowserExpect::Visible(sel))
                } else if f.get("absent").and_then(|b| v.bool(b, "`absent`")) == Some(true) {
                    ActionKind::Expect(BrowserExpect::Absent(sel))
                } else if let Some(c) = f.get("count") {
                    ActionKind::Expect(BrowserExpect::Count {
                        selector: sel,
                        count: v.uint(c, "`count`")?,
                    })
                } else {
                    let pred = text_pred(v, val, names)?;
                    match f.get("attr") {
                        Some(a) => ActionKind::Expect(BrowserExpect::Attribute {
                            selector: sel,
                            name: v.template(a, "`attr`", names)?,
                            pred,
                        }),
                        None => ActionKind::Expect(BrowserExpect::Text {
                            selector: sel,
                            pred,
                        }),
                    }
                }
            }
        }
        "capture" => ActionKind::Capture(browser_captures(v, val, names)?),
        _ => ActionKind::Screenshot(v.string(val, "`screenshot`")?),
    };
    Some(BrowserAction {
        span: key.span,
        timeout,
        kind,
    })
}

/// Gives every action that waits for the page and has no `timeout` of its
/// own the journey's wait. A page load (`goto`) and a screenshot keep what
/// is left of the step.
pub(super) fn default_waits(steps: &mut [Step], wait: std::time::Duration) {
    for s in steps {
        if let StepKind::Browser(b) = &mut s.kind {
            for a in &mut b.actions {
                if a.timeout.is_none()
                    && !matches!(a.kind, ActionKind::Goto(_) | ActionKind::Screenshot(_))
                {
                    a.timeout = Some(wait);
                }
            }
        }
    }
}

fn need<'n>(
    v: &mut Validator<'_>,
    f: &super::validate::Fields<'n>,
    at: &SNode,
    key: &str,
) -> Option<&'n SNode> {
    let got = f.get(key);
    if got.is_none() {
        v.error(at.span, format!("missing `{key}`"));
    }
    got
}

fn check_key(v: &mut Validator<'_>, at: &SNode, key: String) -> Option<String> {
    const KEYS: &[&str] = &[
        "Enter",
        "Tab",
        "Escape",
        "Backspace",
        "Delete",
        "Space",
        "ArrowUp",
        "ArrowDown",
        "ArrowLeft",
        "ArrowRight",
        "Home",
        "End",
        "PageUp",
        "PageDown",
    ];
    if KEYS.contains(&key.as_str()) || key.chars().count() == 1 {
        return Some(key);
    }
    let label = match did_you_mean(&key, KEYS) {
        Some(s) => format!("did you mean `{s}`?"),
        None => format!("one character or one of {}", one_of(KEYS)),
    };
    v.error(at.span, format!("unknown key name `{key}`")).label = Some(label);
    None
}

/// The text predicate written next to `selector` (`contains: x`, `equals: y`...).
fn text_pred(v: &mut Validator<'_>, val: &SNode, names: &Names) -> Option<Predicate> {
    let Node::Map(entries) = &val.node else {
        return None;
    };
    let preds: Vec<_> = entries
        .iter()
        .filter(|(k, _)| TEXT_PREDICATES.contains(&k.name.as_str()) && k.name != "exists")
        .collect();
    let Some((k, pv)) = preds.first() else {
        v.error(val.span, "this `expect` checks nothing").label = Some(
            "add `contains:`, `equals:`, `matches:`, `visible: true`, `absent: true` or `count:`"
                .into(),
        );
        return None;
    };
    let wrapped = SNode {
        node: Node::Map(vec![((*k).clone(), (*pv).clone())]),
        span: pv.span,
    };
    let preds = predicates(v, &wrapped, "a text assertion", TEXT_PREDICATES, names);
    only_one(v, preds)
}

fn first_pred(v: &mut Validator<'_>, n: &SNode, names: &Names) -> Option<Predicate> {
    let preds = predicates(v, n, "a browser assertion", TEXT_PREDICATES, names);
    only_one(v, preds)
}

/// A browser `expect` waits for one condition; a second would be dropped.
fn only_one(v: &mut Validator<'_>, preds: Vec<(Span, Predicate)>) -> Option<Predicate> {
    let mut it = preds.into_iter();
    let first = it.next().map(|(_, p)| p);
    if let Some((span, _)) = it.next() {
        v.error(span, "a browser `expect` checks one value").label =
            Some("write one `expect` per value".into());
        return None;
    }
    first
}

fn browser_captures(v: &mut Validator<'_>, n: &SNode, names: &Names) -> Option<Vec<Capture>> {
    let Node::Map(entries) = &n.node else {
        v.type_error(n, "a browser `capture`", "a mapping of variables");
        return None;
    };
    let mut out = Vec::new();
    for (k, val) in entries {
        let f = v.map(
            val,
            "a browser capture",
            &["selector", "text", "attr", "url", "redact"],
        )?;
        let redact = f
            .get("redact")
            .and_then(|r| v.bool(r, "`redact`"))
            .unwrap_or(false);
        let source = if f.get("url").is_some() {
            CaptureSource::Url
        } else {
            let n_selector = need(v, &f, val, "selector")?;
            let sel = selector(v, n_selector, names)?;
            CaptureSource::Element {
                selector: sel,
                attr: match f.get("attr") {
                    Some(a) => Some(v.template(a, "`attr`", names)?),
                    None => None,
                },
            }
        };
        out.push(Capture {
            name: k.name.clone(),
            span: k.span,
            source,
            redact,
        });
    }
    Some(out)
}
