//! What a browser step does in the page: navigation, input, waits,
//! assertions and captures, each call bounded by the step's time.

use std::path::Path;
use std::time::{Duration, Instant};

use fantoccini::Locator;
use fantoccini::error::CmdError;

use super::call::{CALL_TIMEOUT, bounded, classify, net_error, round, short};
use crate::journey::{ActionKind, BrowserExpect, CaptureSource, Predicate, WaitCondition};
use crate::outcome::{Failure, Reason, StepOutcome, Timing};
use crate::step::context::StepCtx;
use crate::template::Template;

/// Polls `check` until it returns Ok, or fails with its last error at the deadline.
async fn poll<F, Fut>(limit: Duration, mut check: F) -> Result<(), Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let deadline = Instant::now() + limit;
    let mut first = true;
    // What the page last showed: reported if the deadline cuts a check short.
    let mut observed: Option<Failure> = None;
    loop {
        // The first check always gets a full call's time, so a short timeout
        // still reports what the page showed rather than a bare timeout.
        let left = deadline.saturating_duration_since(Instant::now());
        let budget = if first {
            left.max(CALL_TIMEOUT)
        } else {
            left.max(Duration::from_millis(1))
        };
        first = false;
        let last = match tokio::time::timeout(budget, check()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(f)) => f,
            Err(_) => match observed.take() {
                Some(f) => return Err(waited(f, limit)),
                None => Failure::new(
                    Reason::Timeout,
                    format!("the browser did not answer in {}", human(limit)),
                ),
            },
        };
        // A dead session will not get better by waiting.
        if last.reason == Reason::BrowserSession {
            return Err(last);
        }
        if Instant::now() >= deadline {
            return Err(waited(last, limit));
        }
        observed = Some(last);
        tokio::time::sleep(
            Duration::from_millis(100).min(deadline.saturating_duration_since(Instant::now())),
        )
        .await;
    }
}

/// A duration as messages print it (`5s`, `1s 500ms`).
fn human(d: Duration) -> String {
    crate::diag::duration(round(d))
}

/// Says how long the page was given: the last state seen is what it showed
/// after that wait.
fn waited(mut f: Failure, limit: Duration) -> Failure {
    f.message = format!("{} (waited {})", f.message, human(limit));
    f
}

fn pred_ok(p: &Predicate, actual: Option<&str>, ctx: &StepCtx, what: &str) -> Result<(), Failure> {
    match crate::step::expect::text_predicate(p, actual, &ctx.scope, &ctx.redactor)? {
        Ok(()) => Ok(()),
        Err((exp, act)) => Err(Failure::new(
            Reason::Assertion,
            ctx.redactor
                .apply(&format!("{what}: expected {exp}, got {act}")),
        )
        .expected_actual(ctx.redactor.apply(&exp), ctx.redactor.apply(&act))),
    }
}

async fn find(
    c: &fantoccini::Client,
    sel: &str,
    limit: Duration,
) -> Result<fantoccini::elements::Element, Failure> {
    match tokio::time::timeout(
        limit,
        c.wait()
            .at_most(limit)
            .every(Duration::from_millis(100))
            .for_element(Locator::Css(sel)),
    )
    .await
    {
        Ok(Ok(e)) => Ok(e),
        Ok(Err(CmdError::WaitTimeout)) | Err(_) => Err(Failure::new(
            Reason::BrowserElement,
            format!("no element matches `{sel}` after waiting {}", human(limit)),
        )),
        Ok(Err(e)) => Err(Failure::new(
            classify(&e),
            format!("finding `{sel}`: {}", short(&e)),
        )),
    }
}

fn key_code(name: &str) -> String {
    match name {
        "Enter" => "\u{E007}".into(),
        "Tab" => "\u{E004}".into(),
        "Escape" => "\u{E00C}".into(),
        "Backspace" => "\u{E003}".into(),
        "Delete" => "\u{E017}".into(),
        "Space" => " ".into(),
        "ArrowLeft" => "\u{E012}".into(),
        "ArrowUp" => "\u{E013}".into(),
        "ArrowRight" => "\u{E014}".into(),
        "ArrowDown" => "\u{E015}".into(),
        "Home" => "\u{E011}".into(),
        "End" => "\u{E010}".into(),
        "PageUp" => "\u{E00E}".into(),
        "PageDown" => "\u{E00F}".into(),
        other => other.to_string(),
    }
}

const NAV_TIMING_JS: &str = "const n = performance.getEntriesByType('navigation')[0]; if (!n || !(n.responseStart > 0)) return null; \
return [['dns', n.domainLookupEnd - n.domainLookupStart], ['connect', n.connectEnd - n.connectStart], \
['tls', n.secureConnectionStart > 0 ? n.connectEnd - n.secureConnectionStart : 0], ['ttfb', n.responseStart - n.requestStart], \
['download', n.responseEnd - n.responseStart], ['dom_ready', n.domContentLoadedEventEnd], ['load', n.loadEventEnd]];";

/// What identifies the current document and how it was loaded: its
/// time origin (new for every document), the main response's HTTP status
/// (Navigation Timing's `responseStatus`; 0 when not loaded over HTTP), its
/// URL, and for a browser error page the network error code it shows.
const DOCUMENT_JS: &str = "const n = performance.getEntriesByType('navigation')[0]; \
const err = location.protocol === 'chrome-error:' ? ((document.body && document.body.innerText || '').match(/ERR_[A-Z0-9_]+/) || [''])[0] : ''; \
return {origin: performance.timeOrigin, status: n && n.responseStatus ? n.responseStatus : 0, url: location.href, error: err};";

/// The current document (see [`DOCUMENT_JS`]).
#[derive(Debug, Clone)]
pub(super) struct Document {
    /// `performance.timeOrigin`: differs between any two documents.
    pub origin: f64,
    /// The main document's HTTP status, if it came over HTTP.
    pub status: Option<u16>,
    /// `location.href`.
    pub url: String,
    /// The Chromium network error a browser error page shows.
    pub error: Option<String>,
}

/// Reads the current document's identity and status (one bounded call).
pub(super) async fn document(c: &fantoccini::Client) -> Result<Document, Failure> {
    let v = bounded(
        "reading the page's status",
        CALL_TIMEOUT,
        c.execute(DOCUMENT_JS, vec![]),
    )
    .await?;
    Ok(Document {
        origin: v["origin"].as_f64().unwrap_or_default(),
        status: v["status"]
            .as_u64()
            .filter(|s| (100..=599).contains(s))
            .map(|s| s as u16),
        url: v["url"].as_str().unwrap_or_default().to_string(),
        error: v["error"]
            .as_str()
            .filter(|e| !e.is_empty())
            .map(str::to_string),
    })
}

/// The page's title, its visible text and the text of its first
/// [`crate::step::excerpt::FOCUS`] element, as HTTP excerpts show HTML.
const PAGE_TEXT_JS: &str = "const focus = arguments[0].map(s => document.querySelector(s)).find(e => e && e.innerText.trim()); \
return {title: document.title, text: document.body ? document.body.innerText : '', focus: focus ? focus.innerText : null};";

/// The failure excerpt of the current page (redacted and cut), if it can be read.
pub(super) async fn page_excerpt(c: &fantoccini::Client, ctx: &StepCtx) -> Option<String> {
    let focus: Vec<serde_json::Value> = crate::step::excerpt::FOCUS
        .iter()
        .map(|s| serde_json::Value::from(*s))
        .collect();
    let v = tokio::time::timeout(
        CALL_TIMEOUT,
        c.execute(PAGE_TEXT_JS, vec![serde_json::Value::Array(focus)]),
    )
    .await
    .ok()?
    .ok()?;
    Some(crate::step::excerpt::page(
        &ctx.redactor,
        v["title"].as_str().unwrap_or_default(),
        v["text"].as_str().unwrap_or_default(),
        v["focus"].as_str(),
    ))
}

pub(super) async fn run_action(
    kind: &ActionKind,
    artifacts: &Path,
    ctx: &mut StepCtx,
    c: &fantoccini::Client,
    t: Duration,
    out: &mut StepOutcome,
) -> (String, Result<(), Failure>) {
    match kind {
        ActionKind::Goto(u) => {
            let url = match render(u, ctx) {
                Ok(u) => u,
                Err(f) => return ("goto".into(), Err(f)),
            };
            let label = format!("goto {url}");
            // chromedriver stops a hung load itself at the page-load timeout,
            // which keeps the session usable for the failure screenshot.
            let _ = bounded(
                "setting the page-load timeout",
                CALL_TIMEOUT,
                c.update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
                    Some(Duration::from_secs(10)),
                    Some(t),
                    Some(Duration::ZERO),
                )),
            )
            .await;
            let res = bounded(
                &format!("loading {url}"),
                t + Duration::from_secs(2),
                c.goto(&url),
            )
            .await;
            if res.is_ok()
                && let Ok(Ok(v)) =
                    tokio::time::timeout(CALL_TIMEOUT, c.execute(NAV_TIMING_JS, vec![])).await
                && let Some(phases) = v.as_array()
            {
                // Pairs, in the order the phases happen (an object's keys
                // would come back sorted by name).
                for p in phases {
                    if let (Some(k), Some(ms)) = (p[0].as_str(), p[1].as_f64()) {
                        out.timings.push(Timing {
                            name: k.to_string(),
                            ms,
                            within: Some(ctx.redactor.apply(&label)),
                        });
                    }
                }
            }
            if out.request.is_none() {
                out.request = Some(format!(
                    "GET {}",
                    crate::step::excerpt::url(&ctx.redactor, &url)
                ));
            }
            // A network failure reads as in an HTTP step: same reason, same
            // words, and the URL it was for.
            let res = res.map_err(|mut f| {
                if let Some(code) = net_error(&f.message).map(str::to_string)
                    && let Some(what) = f.reason.network_summary()
                {
                    f.message = format!(
                        "{what}: net::{code} (GET {})",
                        crate::step::excerpt::url(&ctx.redactor, &url)
                    );
                } else if f.reason == Reason::Timeout {
                    // chromedriver's own words ("Timed out receiving message
                    // from renderer") say nothing to a reader.
                    f.message = format!(
                        "the page did not load within {} (GET {})",
                        crate::diag::duration(super::call::round(t)),
                        crate::step::excerpt::url(&ctx.redactor, &url)
                    );
                }
                f
            });
            (label, res)
        }
        ActionKind::Click(t_sel) => {
            let sel = render(t_sel, ctx);
            let res = async {
                let sel = sel.as_ref().map_err(Clone::clone)?;
                let e = find(c, sel, t).await?;
                bounded(&format!("clicking `{sel}`"), t, e.click()).await
            }
            .await;
            (format!("click {}", label_of(&sel, t_sel)), res)
        }
        ActionKind::Fill {
            selector: t_sel,
            value,
        } => {
            let selector = render(t_sel, ctx);
            let res = async {
                let selector = selector.as_ref().map_err(Clone::clone)?;
                let v = render(value, ctx)?;
                let e = find(c, selector, t).await?;
                bounded(&format!("clearing `{selector}`"), t, e.clear()).await?;
                bounded(&format!("typing into `{selector}`"), t, e.send_keys(&v)).await
            }
            .await;
            (format!("fill {}", label_of(&selector, t_sel)), res)
        }
        ActionKind::Select {
            selector: t_sel,
            value,
        } => {
            let selector = render(t_sel, ctx);
            let res = async {
                let selector = selector.as_ref().map_err(Clone::clone)?;
                let v = render(value, ctx)?;
                let e = find(c, selector, t).await?;
                bounded(
                    &format!("selecting `{v}` in `{selector}`"),
                    t,
                    e.select_by_value(&v),
                )
                .await
            }
            .await;
            (format!("select {}", label_of(&selector, t_sel)), res)
        }
        ActionKind::Press { selector, key } => {
            let res = async {
                let e = match selector {
                    Some(s) => find(c, &render(s, ctx)?, t).await?,
                    None => bounded("finding the focused element", t, c.active_element()).await?,
                };
                bounded(&format!("pressing {key}"), t, e.send_keys(&key_code(key))).await
            }
            .await;
            (format!("press {key}"), res)
        }
        ActionKind::WaitFor(cond) => {
            let sel = match cond {
                WaitCondition::Present(s)
                | WaitCondition::Visible(s)
                | WaitCondition::Text { selector: s, .. } => Some((render(s, ctx), s)),
                WaitCondition::Url(_) => None,
            };
            let label = match &sel {
                Some((r, s)) => format!("wait_for {}", label_of(r, s)),
                None => "wait_for url".into(),
            };
            let sel = sel.map(|(r, _)| r);
            let sel = match sel.transpose() {
                Ok(s) => s.unwrap_or_default(),
                Err(f) => return (label, Err(f)),
            };
            let res = match cond {
                WaitCondition::Present(_) => find(c, &sel, t).await.map(|_| ()),
                WaitCondition::Visible(_) => {
                    let s = sel.clone();
                    poll(t, || visible(c, &s)).await.map_err(|f| {
                        retitle(f, &format!("`{s}` did not become visible in {}", human(t)))
                    })
                }
                WaitCondition::Text { text, .. } => match render(text, ctx) {
                    Err(f) => Err(f),
                    Ok(want) => {
                        let selector = &sel;
                        let p = Predicate::Contains(crate::journey::Expected::Text(
                            Template::literal(&want),
                        ));
                        poll(t, || async {
                            element_text(c, selector).await.and_then(|got| {
                                pred_ok(&p, got.as_deref(), ctx, &format!("text of `{selector}`"))
                            })
                        })
                        .await
                        .map(|_| ())
                        .map_err(as_element_timeout)
                    }
                },
                WaitCondition::Url(u) => match render(u, ctx) {
                    Err(f) => Err(f),
                    Ok(want) => {
                        poll(t, || async {
                            let cur = bounded("reading the URL", CALL_TIMEOUT, c.current_url())
                                .await?
                                .to_string();
                            if cur.contains(&want) {
                                Ok(())
                            } else {
                                Err(Failure::new(
                                    Reason::Timeout,
                                    format!("URL is `{cur}`, waited for `{want}`"),
                                ))
                            }
                        })
                        .await
                    }
                },
            };
            (label, res)
        }
        ActionKind::Expect(e) => {
            let (label, res) = expect(e, ctx, c, t).await;
            (label, res)
        }
        ActionKind::Capture(caps) => {
            for cap in caps {
                let v = match &cap.source {
                    CaptureSource::Url => bounded("reading the URL", t, c.current_url())
                        .await
                        .map(|u| u.to_string()),
                    CaptureSource::Element { selector, attr } => match async {
                        let selector = render(selector, ctx)?;
                        let attr = attr.as_ref().map(|a| render(a, ctx)).transpose()?;
                        Ok::<_, Failure>((find(c, &selector, t).await?, selector, attr))
                    }
                    .await
                    {
                        Err(f) => Err(f),
                        Ok((e, selector, attr)) => match attr {
                            Some(a) => {
                                bounded(&format!("reading `{a}` of `{selector}`"), t, e.attr(&a))
                                    .await
                                    .and_then(|v| {
                                        v.ok_or_else(|| {
                                            Failure::new(
                                                Reason::Capture,
                                                format!("`{selector}` has no attribute `{a}`"),
                                            )
                                        })
                                    })
                            }
                            None => {
                                bounded(&format!("reading the text of `{selector}`"), t, e.text())
                                    .await
                            }
                        },
                    },
                    _ => Err(Failure::new(
                        Reason::Internal,
                        "unsupported browser capture",
                    )),
                };
                match v {
                    Ok(v) => out.captures.push(ctx.set_capture(cap, v)),
                    Err(mut f) => {
                        if f.reason == Reason::BrowserElement {
                            f.reason = Reason::Capture;
                        }
                        return (format!("capture {}", cap.name), Err(f.at(cap.span)));
                    }
                }
            }
            ("capture".into(), Ok(()))
        }
        ActionKind::Screenshot(name) => {
            let res = async {
                let png = super::artifacts::screenshot(c, &ctx.redactor, t).await?;
                let safe: String = name
                    .chars()
                    .map(|ch| {
                        if ch.is_ascii_alphanumeric() || ch == '-' || ch == '_' {
                            ch
                        } else {
                            '_'
                        }
                    })
                    .collect();
                super::artifacts::journey_dir(artifacts, &ctx.journey)
                    .and_then(|dir| super::artifacts::write_new(&dir, &format!("{safe}.png"), &png))
                    .map(|_| ())
                    .map_err(|e| {
                        Failure::new(Reason::Internal, format!("cannot save screenshot: {e}"))
                    })
            }
            .await;
            (format!("screenshot {name}"), res)
        }
    }
}

/// Renders a template (selector, value, URL); a failure is the step's
/// (reason `template`).
fn render(t: &Template, ctx: &StepCtx) -> Result<String, Failure> {
    t.render(&ctx.scope)
        .map(|s| s.into_owned())
        .map_err(|m| Failure::new(Reason::Template, m))
}

/// What an action's timing is named: the rendered selector, else as written.
fn label_of(sel: &Result<String, Failure>, t: &Template) -> String {
    match sel {
        Ok(s) => s.clone(),
        Err(_) => t.source().to_string(),
    }
}

fn retitle(mut f: Failure, msg: &str) -> Failure {
    if f.reason == Reason::Timeout || f.reason == Reason::Assertion {
        f.reason = Reason::BrowserElement;
        f.message = msg.to_string();
    }
    f
}

fn as_element_timeout(mut f: Failure) -> Failure {
    if f.reason == Reason::Assertion {
        f.reason = Reason::BrowserElement;
    }
    f
}

async fn element_text(c: &fantoccini::Client, sel: &str) -> Result<Option<String>, Failure> {
    match bounded(
        &format!("finding `{sel}`"),
        CALL_TIMEOUT,
        c.find_all(Locator::Css(sel)),
    )
    .await?
    .into_iter()
    .next()
    {
        None => Ok(None),
        Some(e) => bounded(
            &format!("reading the text of `{sel}`"),
            CALL_TIMEOUT,
            e.text(),
        )
        .await
        .map(Some),
    }
}

async fn visible(c: &fantoccini::Client, sel: &str) -> Result<(), Failure> {
    for e in bounded(
        &format!("finding `{sel}`"),
        CALL_TIMEOUT,
        c.find_all(Locator::Css(sel)),
    )
    .await?
    {
        if bounded("visibility", CALL_TIMEOUT, e.is_displayed()).await? {
            return Ok(());
        }
    }
    Err(
        Failure::new(Reason::Assertion, format!("`{sel}` is not visible"))
            .expected_actual("visible", "hidden or absent"),
    )
}

/// Browser assertions wait (up to their timeout) for the page to comply, as
/// pages change after scripts run; the failure is the last observed state.
async fn expect(
    e: &BrowserExpect,
    ctx: &StepCtx,
    c: &fantoccini::Client,
    t: Duration,
) -> (String, Result<(), Failure>) {
    let (sel, attr) = match e {
        BrowserExpect::Text { selector: s, .. }
        | BrowserExpect::Visible(s)
        | BrowserExpect::Absent(s)
        | BrowserExpect::Count { selector: s, .. } => (Some(s), None),
        BrowserExpect::Attribute { selector, name, .. } => (Some(selector), Some(name)),
        BrowserExpect::Url(_) | BrowserExpect::Title(_) | BrowserExpect::Status(_) => (None, None),
    };
    let maybe = |t: Option<&Template>| t.map_or(Ok(String::new()), |t| render(t, ctx));
    let (sel, attr) = match (maybe(sel), maybe(attr)) {
        (Ok(s), Ok(a)) => (s, a),
        (Err(f), _) | (_, Err(f)) => return ("expect".into(), Err(f)),
    };
    let (selector, s, name) = (&sel, &sel, &attr);
    match e {
        BrowserExpect::Text { pred, .. } => (
            format!("expect {selector}"),
            poll(t, || async {
                let got = element_text(c, selector).await?;
                pred_ok(pred, got.as_deref(), ctx, &format!("text of `{selector}`"))
            })
            .await,
        ),
        BrowserExpect::Visible(_) => (
            format!("expect {s} visible"),
            poll(t, || visible(c, s)).await,
        ),
        BrowserExpect::Absent(_) => (
            format!("expect {s} absent"),
            poll(t, || async {
                let n = bounded(
                    &format!("finding `{s}`"),
                    CALL_TIMEOUT,
                    c.find_all(Locator::Css(s)),
                )
                .await?
                .len();
                if n == 0 {
                    Ok(())
                } else {
                    Err(Failure::new(
                        Reason::Assertion,
                        format!("`{s}`: expected absent, got {n} element(s)"),
                    )
                    .expected_actual("absent", format!("{n} element(s)")))
                }
            })
            .await,
        ),
        BrowserExpect::Count { count, .. } => (
            format!("expect {selector} count"),
            poll(t, || async {
                let n = bounded(
                    &format!("finding `{selector}`"),
                    CALL_TIMEOUT,
                    c.find_all(Locator::Css(selector)),
                )
                .await?
                .len() as u64;
                if n == *count {
                    Ok(())
                } else {
                    Err(Failure::new(
                        Reason::Assertion,
                        format!("`{selector}`: expected {count} element(s), got {n}"),
                    )
                    .expected_actual(count.to_string(), n.to_string()))
                }
            })
            .await,
        ),
        BrowserExpect::Attribute { pred, .. } => (
            format!("expect {selector}[{name}]"),
            poll(t, || async {
                let got = match bounded(
                    &format!("finding `{selector}`"),
                    CALL_TIMEOUT,
                    c.find_all(Locator::Css(selector)),
                )
                .await?
                .into_iter()
                .next()
                {
                    None => None,
                    Some(el) => {
                        bounded(&format!("reading `{name}`"), CALL_TIMEOUT, el.attr(name)).await?
                    }
                };
                pred_ok(
                    pred,
                    got.as_deref(),
                    ctx,
                    &format!("`{name}` of `{selector}`"),
                )
            })
            .await,
        ),
        BrowserExpect::Url(p) => (
            "expect url".into(),
            poll(t, || async {
                let u = bounded("reading the URL", CALL_TIMEOUT, c.current_url())
                    .await?
                    .to_string();
                pred_ok(p, Some(&u), ctx, "URL")
            })
            .await,
        ),
        BrowserExpect::Status(want) => (
            "expect status".into(),
            poll(t, || async {
                let doc = document(c).await?;
                match doc.status {
                    Some(got) if want.iter().any(|m| m.matches(got)) => Ok(()),
                    got => {
                        let want: Vec<String> = want.iter().map(|m| m.to_string()).collect();
                        let want = want.join(" or ");
                        let got = got.map_or_else(
                            || "no HTTP status (the page was not loaded over HTTP)".to_string(),
                            |g| g.to_string(),
                        );
                        Err(Failure::new(
                            Reason::Status,
                            ctx.redactor.apply(&format!(
                                "status of {}: expected {want}, got {got}",
                                crate::step::excerpt::url(&ctx.redactor, &doc.url)
                            )),
                        )
                        .expected_actual(want, got))
                    }
                }
            })
            .await,
        ),
        BrowserExpect::Title(p) => (
            "expect title".into(),
            poll(t, || async {
                let title = bounded("reading the title", CALL_TIMEOUT, c.title()).await?;
                pred_ok(p, Some(&title), ctx, "title")
            })
            .await,
        ),
    }
}
