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
            _ if net_error(&wd.message).is_some() => {
                net_reason(net_error(&wd.message).unwrap_or_default())
            }
            _ => Reason::BrowserSession,
        },
        CmdError::WaitTimeout | CmdError::InvalidArgument(..) => Reason::BrowserElement,
        CmdError::BadUrl(_) => Reason::BrowserNavigation,
        _ => Reason::BrowserSession,
    }
}

/// The Chromium network error code in a message (`ERR_CONNECTION_REFUSED`
/// of `unknown error: net::ERR_CONNECTION_REFUSED`, or of a browser error
/// page's text).
pub(super) fn net_error(message: &str) -> Option<&str> {
    let i = message.find("ERR_")?;
    let code = &message[i..];
    let end = code
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(code.len());
    (end > 4).then(|| &code[..end])
}

/// The reason of a Chromium network error (`net/base/net_error_list.h`),
/// the same as an HTTP step gets for the same cause.
pub(super) fn net_reason(code: &str) -> Reason {
    let c = code.trim_start_matches("ERR_");
    match c {
        "NAME_NOT_RESOLVED"
        | "NAME_RESOLUTION_FAILED"
        | "DNS_TIMED_OUT"
        | "ICANN_NAME_COLLISION" => Reason::Dns,
        _ if c.starts_with("DNS_") => Reason::Dns,
        "TIMED_OUT" | "CONNECTION_TIMED_OUT" => Reason::Timeout,
        "CONNECTION_REFUSED"
        | "CONNECTION_FAILED"
        | "ADDRESS_UNREACHABLE"
        | "ADDRESS_INVALID"
        | "NETWORK_UNREACHABLE"
        | "INTERNET_DISCONNECTED"
        | "NETWORK_ACCESS_DENIED"
        | "PROXY_CONNECTION_FAILED"
        | "SOCKS_CONNECTION_FAILED"
        | "TUNNEL_CONNECTION_FAILED" => Reason::Connect,
        _ if c.starts_with("CERT_")
            || c.starts_with("SSL_")
            || c.contains("_SSL_")
            || c == "INSECURE_RESPONSE"
            || c == "BAD_SSL_CLIENT_AUTH_CERT" =>
        {
            Reason::Tls
        }
        "CONNECTION_RESET"
        | "CONNECTION_CLOSED"
        | "CONNECTION_ABORTED"
        | "EMPTY_RESPONSE"
        | "CONTENT_LENGTH_MISMATCH"
        | "INCOMPLETE_CHUNKED_ENCODING"
        | "SOCKET_NOT_CONNECTED"
        | "HTTP2_PROTOCOL_ERROR" => Reason::Reset,
        "INVALID_HTTP_RESPONSE"
        | "INVALID_RESPONSE"
        | "RESPONSE_HEADERS_TOO_BIG"
        | "INVALID_CHUNKED_ENCODING"
        | "RESPONSE_HEADERS_MULTIPLE_CONTENT_LENGTH"
        | "RESPONSE_HEADERS_MULTIPLE_LOCATION"
        | "UNSAFE_REDIRECT" => Reason::Protocol,
        "TOO_MANY_REDIRECTS" | "INVALID_REDIRECT" => Reason::Redirect,
        "HTTP_RESPONSE_CODE_FAILURE" => Reason::Status,
        _ => Reason::BrowserNavigation,
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
                crate::diag::duration(round(limit))
            ),
        )),
    }
}

pub(super) fn round(d: Duration) -> Duration {
    Duration::from_millis(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chromium_network_errors_get_the_reasons_of_http_steps() {
        let cases = [
            (
                "unknown error: net::ERR_NAME_NOT_RESOLVED\n  (Session info: chrome=156)",
                Reason::Dns,
            ),
            (
                "unknown error: net::ERR_CONNECTION_REFUSED",
                Reason::Connect,
            ),
            (
                "unknown error: net::ERR_CERT_AUTHORITY_INVALID",
                Reason::Tls,
            ),
            ("unknown error: net::ERR_SSL_PROTOCOL_ERROR", Reason::Tls),
            (
                "unknown error: net::ERR_CONNECTION_TIMED_OUT",
                Reason::Timeout,
            ),
            ("unknown error: net::ERR_EMPTY_RESPONSE", Reason::Reset),
            (
                "unknown error: net::ERR_INVALID_HTTP_RESPONSE",
                Reason::Protocol,
            ),
            (
                "unknown error: net::ERR_TOO_MANY_REDIRECTS",
                Reason::Redirect,
            ),
            (
                "unknown error: net::ERR_BLOCKED_BY_CLIENT",
                Reason::BrowserNavigation,
            ),
        ];
        for (msg, want) in cases {
            let code = net_error(msg).expect(msg);
            assert_eq!(net_reason(code), want, "{msg}");
        }
        assert_eq!(net_error("no element"), None);
        assert_eq!(net_error("ERR_"), None);
    }
}
