//! Taking values out of a response into variables for later steps.

use serde_json::Value;

use crate::journey::{Capture, CaptureSource};
use crate::outcome::{Failure, Reason};
use crate::redact::Redactor;
use crate::step::excerpt as shape;
use crate::step::response::{HtmlError, Response};

/// Text form of a JSON node: strings raw, everything else as JSON.
pub fn json_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Extracts one capture; a capture that finds nothing fails the step.
pub fn extract(c: &Capture, resp: &Response, redactor: &Redactor) -> Result<String, Failure> {
    let missing = |what: String| {
        let mut f = Failure::new(
            Reason::Capture,
            redactor.apply(&format!("capture `{}`: {what}", c.name)),
        )
        .at(c.span);
        if !resp.body.is_empty() {
            f.excerpt = Some(shape::response(redactor, resp, None));
        }
        f
    };
    match &c.source {
        CaptureSource::JsonPath { query, path } => {
            let json = resp.json().map_err(|m| {
                let mut f = Failure::new(
                    Reason::InvalidBody,
                    redactor.apply(&format!("capture `{}`: the body is not JSON ({m})", c.name)),
                )
                .at(c.span);
                f.excerpt = Some(shape::response(redactor, resp, None));
                f
            })?;
            path.query(json)
                .first()
                .map(json_text)
                .ok_or_else(|| missing(format!("`{query}` matched nothing")))
        }
        CaptureSource::Css {
            selector,
            compiled,
            attr,
        } => {
            let html = resp.html().map_err(|e| {
                let reason = match e {
                    HtmlError::Deadline => Reason::Timeout,
                    HtmlError::TooDeep => Reason::InvalidBody,
                };
                Failure::new(reason, format!("capture `{}`: {e}", c.name)).at(c.span)
            })?;
            let el = html
                .select(compiled)
                .next()
                .ok_or_else(|| missing(format!("no element matches `{selector}`")))?;
            match attr {
                Some(a) => el
                    .value()
                    .attr(a)
                    .map(str::to_string)
                    .ok_or_else(|| missing(format!("`{selector}` has no attribute `{a}`"))),
                None => Ok(el.text().collect::<String>().trim().to_string()),
            }
        }
        CaptureSource::Regex { regex, group } => regex
            .captures(resp.text())
            .and_then(|caps| caps.get(*group).map(|m| m.as_str().to_string()))
            .ok_or_else(|| missing(format!("/{}/ matched nothing", regex.as_str()))),
        CaptureSource::Header(name) => resp
            .header_all(name)
            .first()
            .map(|v| v.to_string())
            .ok_or_else(|| missing(format!("no `{name}` header"))),
        CaptureSource::Cookie(name) => resp
            .cookies
            .iter()
            .find(|ck| &ck.name == name)
            .map(|ck| ck.value.clone())
            .ok_or_else(|| missing(format!("no `{name}` cookie"))),
        CaptureSource::Status => Ok(resp.status.to_string()),
        CaptureSource::Url => Ok(resp.url.clone()),
        CaptureSource::Element { .. } => Err(Failure::new(
            Reason::Internal,
            "element captures belong to browser steps",
        )
        .at(c.span)),
    }
}
