//! One WebDriver call, bounded: its deadline, and its error mapped to a
//! bounded reason and a short message.

use std::time::Duration;

use fantoccini::error::{CmdError, ErrorStatus};

use crate::outcome::{Failure, Reason};

/// Bound on any single WebDriver housekeeping call (close, screenshot...).
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Maps a WebDriver error to a bounded reason.
pub(super) fn classify(e: &CmdError) -> Reason {
    match e {
        CmdError::Standard(wd) => match wd.error {
            ErrorStatus::NoSuchElement
            | ErrorStatus::StaleElementReference
            | ErrorStatus::ElementNotInteractable
            | ErrorStatus::ElementClickIntercepted
            | ErrorStatus::ElementNotSelectable
            | ErrorStatus::InvalidElementState
            | ErrorStatus::InvalidSelector => Reason::BrowserElement,
            ErrorStatus::Timeout => Reason::Timeout,
            ErrorStatus::JavascriptError | ErrorStatus::ScriptTimeout => Reason::BrowserScript,
            ErrorStatus::InvalidSessionId
            | ErrorStatus::SessionNotCreated
            | ErrorStatus::NoSuchWindow => Reason::BrowserSession,
            _ if wd.message.contains("net::ERR_") => Reason::BrowserNavigation,
            _ => Reason::BrowserSession,
        },
        CmdError::WaitTimeout | CmdError::InvalidArgument(..) => Reason::BrowserElement,
        CmdError::BadUrl(_) => Reason::BrowserNavigation,
        _ => Reason::BrowserSession,
    }
}

pub(super) fn short(e: &CmdError) -> String {
    let s = match e {
        CmdError::Standard(wd) => wd.message.to_string(),
        other => other.to_string(),
    };
    // The first line only; the step redacts, then cuts (`excerpt::shape`).
    s.lines().next().unwrap_or("").to_string()
}

/// Runs `fut` with a deadline; `what` names the action in messages.
pub(crate) async fn bounded<T>(
    what: &str,
    limit: Duration,
    fut: impl std::future::Future<Output = Result<T, CmdError>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Failure::new(classify(&e), format!("{what}: {}", short(&e)))),
        Err(_) => Err(Failure::new(
            Reason::Timeout,
            format!(
                "{what}: no answer within {}",
                humantime::format_duration(round(limit))
            ),
        )),
    }
}

pub(super) fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}
