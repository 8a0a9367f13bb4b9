//! What an endpoint's answer means for the attempt, apart from any I/O.

use std::time::{Duration, SystemTime};

use reqwest::StatusCode;

/// A server asking for a longer pause is treated as asking for an hour:
/// the job's own retry budget is the better judge past that.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Error messages end up in a job's `error` field; a whole HTML error page
/// would drown the sentence around it.
pub(crate) const EXCERPT_CHARS: usize = 200;

/// The outcome of an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum PushOutcome {
    /// 2xx: the response body as JSON (empty body → `Value::Null`; a body
    /// that is not JSON → `Value::String` of its text, lossy UTF-8).
    Delivered(serde_json::Value),
    /// 408, 429, 5xx, timeouts, connection and DNS errors, a body cut off
    /// mid-read: try again, after `after` when the endpoint sent
    /// `Retry-After`.
    Retry {
        error: String,
        after: Option<Duration>,
    },
    /// Any other status, a body over the limit, a refused address, an
    /// unusable endpoint URL: trying again cannot help.
    Failed(String),
}

/// What a status says, before the body is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Delivered,
    Retry { after: Option<Duration> },
    Failed,
}

/// Decides an attempt from the status and the `Retry-After` header.
pub(crate) fn outcome_of(
    status: StatusCode,
    retry_after: Option<&str>,
    now: SystemTime,
) -> Verdict {
    let code = status.as_u16();
    if status.is_success() {
        Verdict::Delivered
    } else if code == 408 || code == 429 || status.is_server_error() {
        Verdict::Retry {
            after: retry_after.and_then(|value| parse_retry_after(value, now)),
        }
    } else {
        Verdict::Failed
    }
}

/// `Retry-After` per RFC 9110 §10.2.3: delay seconds or an HTTP-date. A date
/// in the past means now; anything unreadable is ignored.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    let after = if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // All digits but too many for u64 is still "a very long time".
        Duration::from_secs(value.parse().unwrap_or(u64::MAX))
    } else {
        let at = httpdate::parse_http_date(value).ok()?;
        at.duration_since(now).unwrap_or(Duration::ZERO)
    };
    Some(after.min(MAX_RETRY_AFTER))
}

/// A 2xx body as the job's result.
pub(crate) fn result_of(body: &[u8]) -> serde_json::Value {
    if body.iter().all(u8::is_ascii_whitespace) {
        return serde_json::Value::Null;
    }
    serde_json::from_slice(body)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// The sentence for an answer that is not a success.
pub(crate) fn answer_error(status: StatusCode, location: Option<&str>, body: &[u8]) -> String {
    let mut text = format!("endpoint answered {}", status_text(status));
    if status.is_redirection() {
        text.push_str(", and redirects are not followed");
        if let Some(location) = location.map(excerpt).filter(|l| !l.is_empty()) {
            text.push_str(&format!(" (to {location})"));
        }
    }
    let body = excerpt(&String::from_utf8_lossy(body));
    if !body.is_empty() {
        text.push_str(": ");
        text.push_str(&body);
    }
    text
}

/// `503 Service Unavailable`, or just `599` for a code without a name.
pub(crate) fn status_text(status: StatusCode) -> String {
    match status.canonical_reason() {
        Some(reason) => format!("{} {reason}", status.as_u16()),
        None => status.as_u16().to_string(),
    }
}

/// One line of at most [`EXCERPT_CHARS`] characters.
pub(crate) fn excerpt(text: &str) -> String {
    let line = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace(char::is_control, "\u{fffd}");
    if line.chars().count() <= EXCERPT_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(EXCERPT_CHARS - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn maps_statuses_to_outcomes() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        let date = 784111777;
        let now = at(date - 30);
        let retry = |after: Option<u64>| Verdict::Retry {
            after: after.map(Duration::from_secs),
        };
        let table: &[(u16, Option<&str>, Verdict)] = &[
            (200, None, Verdict::Delivered),
            (201, None, Verdict::Delivered),
            (204, None, Verdict::Delivered),
            (299, None, Verdict::Delivered),
            (200, Some("5"), Verdict::Delivered),
            (301, None, Verdict::Failed),
            (302, None, Verdict::Failed),
            (304, None, Verdict::Failed),
            (400, None, Verdict::Failed),
            (401, None, Verdict::Failed),
            (404, None, Verdict::Failed),
            (409, None, Verdict::Failed),
            (410, None, Verdict::Failed),
            (422, None, Verdict::Failed),
            (422, Some("7"), Verdict::Failed),
            (408, None, retry(None)),
            (429, Some("7"), retry(Some(7))),
            (429, None, retry(None)),
            (500, None, retry(None)),
            (502, Some("0"), retry(Some(0))),
            (503, Some("Sun, 06 Nov 1994 08:49:37 GMT"), retry(Some(30))),
            (503, Some("Sunday, 06-Nov-94 08:49:37 GMT"), retry(Some(30))),
            (503, Some("Sun Nov  6 08:49:37 1994"), retry(Some(30))),
            (503, Some("soon, promise"), retry(None)),
            (503, Some("-3"), retry(None)),
            (503, Some("1.5"), retry(None)),
            (503, Some(""), retry(None)),
            (504, Some(" 12 "), retry(Some(12))),
            (599, None, retry(None)),
        ];
        for &(code, header, expected) in table {
            let status = StatusCode::from_u16(code).unwrap();
            assert_eq!(
                outcome_of(status, header, now),
                expected,
                "{code} {header:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_capped_and_past_dates_mean_now() {
        let now = at(784111777);
        let hour = Some(MAX_RETRY_AFTER);
        assert_eq!(parse_retry_after("3600", now), hour);
        assert_eq!(parse_retry_after("3601", now), hour);
        assert_eq!(parse_retry_after("99999999999999999999999", now), hour);
        assert_eq!(
            parse_retry_after("Mon, 07 Nov 1994 08:49:37 GMT", now),
            hour
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:36 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(
            parse_retry_after("Thu, 01 Jan 1970 00:00:00 GMT", now),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn reads_2xx_bodies_as_results() {
        assert_eq!(result_of(b""), serde_json::Value::Null);
        assert_eq!(result_of(b" \r\n"), serde_json::Value::Null);
        assert_eq!(
            result_of(br#"{"ok":true,"n":[1]}"#),
            json!({"ok": true, "n": [1]})
        );
        assert_eq!(result_of(b"42"), json!(42));
        assert_eq!(result_of(b"accepted"), json!("accepted"));
        assert_eq!(result_of(b"{\"half\":"), json!("{\"half\":"));
        assert_eq!(result_of(b"caf\xc3\xa9 \xff"), json!("café \u{fffd}"));
    }

    #[test]
    fn error_sentences_carry_status_and_a_short_excerpt() {
        let status = |code| StatusCode::from_u16(code).unwrap();
        assert_eq!(
            answer_error(status(503), None, b"  down for\n\tmaintenance  "),
            "endpoint answered 503 Service Unavailable: down for maintenance"
        );
        assert_eq!(
            answer_error(status(404), None, b""),
            "endpoint answered 404 Not Found"
        );
        assert_eq!(
            answer_error(status(599), None, b"x"),
            "endpoint answered 599: x"
        );
        assert_eq!(
            answer_error(status(302), Some("https://elsewhere.example/x"), b""),
            "endpoint answered 302 Found, and redirects are not followed (to https://elsewhere.example/x)"
        );

        let long = "é".repeat(1000);
        let text = answer_error(status(500), None, long.as_bytes());
        let (_, shown) = text.split_once(": ").unwrap();
        assert_eq!(shown.chars().count(), EXCERPT_CHARS);
        assert!(shown.ends_with('…'), "{shown}");

        assert_eq!(
            excerpt(&"a".repeat(EXCERPT_CHARS)),
            "a".repeat(EXCERPT_CHARS)
        );
        assert_eq!(
            excerpt(&format!("{} ", "a".repeat(EXCERPT_CHARS))),
            "a".repeat(EXCERPT_CHARS)
        );
        assert_eq!(excerpt("a\u{7}b"), "a\u{fffd}b");
    }
}
