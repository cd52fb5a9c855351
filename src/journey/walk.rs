//! Every template a step renders, for questions asked of a whole journey:
//! which `--var` names it reads, which step first needs a secret.

use super::*;

impl Step {
    /// The templates of this step, in the order they are written (the
    /// request, then its assertions; a browser step's actions in order).
    pub fn templates(&self) -> Vec<&Template> {
        let mut out = Vec::new();
        match &self.kind {
            StepKind::Http(h) => {
                out.push(&h.url);
                out.extend(h.query.iter().map(|(_, t)| t));
                out.extend(h.headers.iter().map(|(_, t)| t));
                match &h.body {
                    Some(Body::Json(j)) => json(j, &mut out),
                    Some(Body::Form(f)) => out.extend(f.iter().map(|(_, t)| t)),
                    Some(Body::Multipart(parts)) => {
                        out.extend(parts.iter().filter_map(|p| match &p.value {
                            PartValue::Text(t) => Some(t),
                            PartValue::File { .. } => None,
                        }))
                    }
                    Some(Body::Raw {
                        content,
                        content_type,
                    }) => out.extend([content, content_type]),
                    None => {}
                }
                for a in &h.expect {
                    match &a.check {
                        Check::Header { pred, .. }
                        | Check::Url(pred)
                        | Check::Body(pred)
                        | Check::JsonPath { pred, .. }
                        | Check::Cookie {
                            pred: CookiePredicate::Value(pred),
                            ..
                        } => predicate(pred, &mut out),
                        _ => {}
                    }
                }
            }
            StepKind::Browser(b) => {
                for a in &b.actions {
                    action(&a.kind, &mut out);
                }
            }
        }
        out
    }

    /// The variables this step captures into (its `capture:`, and a browser
    /// step's `capture` actions), in the order they are written.
    pub fn capture_names(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.captures.iter().map(|c| c.name.as_str()).collect();
        if let StepKind::Browser(b) = &self.kind {
            for a in &b.actions {
                if let ActionKind::Capture(caps) = &a.kind {
                    out.extend(caps.iter().map(|c| c.name.as_str()));
                }
            }
        }
        out
    }
}

fn json<'a>(j: &'a JsonTemplate, out: &mut Vec<&'a Template>) {
    match j {
        JsonTemplate::String(t) => out.push(t),
        JsonTemplate::Array(items) => items.iter().for_each(|i| json(i, out)),
        JsonTemplate::Object(fields) => fields.iter().for_each(|(_, v)| json(v, out)),
        JsonTemplate::Null | JsonTemplate::Bool(_) | JsonTemplate::Number(_) => {}
    }
}

fn predicate<'a>(p: &'a Predicate, out: &mut Vec<&'a Template>) {
    match p {
        Predicate::Equals(Expected::Text(t))
        | Predicate::NotEquals(Expected::Text(t))
        | Predicate::Contains(Expected::Text(t))
        | Predicate::NotContains(Expected::Text(t))
        | Predicate::StartsWith(t) => out.push(t),
        _ => {}
    }
}

// Browser actions change in parallel with this walker; an action it does not
// know yet only means a later (or no) step is found, never a wrong one.
#[allow(unreachable_patterns)]
fn action<'a>(a: &'a ActionKind, out: &mut Vec<&'a Template>) {
    match a {
        ActionKind::Goto(t) | ActionKind::Click(t) => out.push(t),
        ActionKind::Fill { selector, value } | ActionKind::Select { selector, value } => {
            out.extend([selector, value])
        }
        ActionKind::Press { selector, .. } => out.extend(selector),
        ActionKind::WaitFor(c) => match c {
            WaitCondition::Present(t) | WaitCondition::Visible(t) | WaitCondition::Url(t) => {
                out.push(t)
            }
            WaitCondition::Text { selector, text } => out.extend([selector, text]),
        },
        ActionKind::Expect(e) => match e {
            BrowserExpect::Text { selector, pred } => {
                out.push(selector);
                predicate(pred, out);
            }
            BrowserExpect::Visible(t) | BrowserExpect::Absent(t) => out.push(t),
            BrowserExpect::Count { selector, .. } => out.push(selector),
            BrowserExpect::Attribute {
                selector,
                name,
                pred,
            } => {
                out.extend([selector, name]);
                predicate(pred, out);
            }
            BrowserExpect::Url(pred) | BrowserExpect::Title(pred) => predicate(pred, out),
            _ => {}
        },
        ActionKind::Capture(caps) => {
            for c in caps {
                if let CaptureSource::Element { selector, attr } = &c.source {
                    out.push(selector);
                    out.extend(attr);
                }
            }
        }
        ActionKind::Screenshot(_) => {}
        _ => {}
    }
}
