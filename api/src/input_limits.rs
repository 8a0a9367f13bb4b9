//! Limits on what a client may send, beyond the body size: header bytes, the time to send a
//! request whole (slow clients hold a connection and a task), and the shape of JSON bodies (deep
//! nesting, huge strings and arrays cost far more to validate and store than their bytes suggest).

use std::pin::Pin;
use std::time::Duration;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::{HttpMessage, ResponseError, web};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::Value;

use crate::problem::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputLimits {
    /// Bytes of all header names and values of a request; more is a `431`.
    pub max_header_bytes: usize,
    /// Time to send the request head, and again to send the body; then `408`.
    pub client_timeout: Duration,
    /// Nesting of arrays and objects in a JSON body.
    pub max_json_depth: usize,
    /// Bytes of one JSON string, or of one object key.
    pub max_json_string_bytes: usize,
    /// Items of one JSON array, or members of one object.
    pub max_json_items: usize,
}

impl Default for InputLimits {
    fn default() -> Self {
        InputLimits {
            max_header_bytes: 16 * 1024,
            client_timeout: Duration::from_secs(5),
            max_json_depth: 32,
            max_json_string_bytes: 64 * 1024,
            max_json_items: 10_000,
        }
    }
}

/// The error a body read past its deadline ends with; see [`is_deadline`].
const DEADLINE_PASSED: &str = "the body was not received in time";

/// Refuses requests with too many header bytes, and gives the body a deadline.
pub(crate) async fn guard(
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limits = request
        .app_data::<web::Data<InputLimits>>()
        .map(|limits| *limits.get_ref())
        .unwrap_or_default();
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > limits.max_header_bytes {
        let error = ApiError::HeadersTooLarge {
            limit: limits.max_header_bytes,
        };
        return Ok(request.into_response(error.error_response()));
    }
    let body = request.take_payload();
    if let Payload::None = body {
        // Most requests (every GET) have no body to wait for.
        return Ok(next.call(request).await?.map_into_boxed_body());
    }
    let deadline = tokio::time::Instant::now() + limits.client_timeout;
    let timed = futures_util::stream::unfold(Some(body), move |body| async move {
        let mut body = body?;
        match tokio::time::timeout_at(deadline, body.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(body))),
            Ok(None) => None,
            Err(_) => {
                let late = std::io::Error::new(std::io::ErrorKind::TimedOut, DEADLINE_PASSED);
                Some((Err(PayloadError::Io(late)), None))
            }
        }
    });
    let timed: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(timed);
    request.set_payload(Payload::from(timed));
    Ok(next.call(request).await?.map_into_boxed_body())
}

/// Whether a body read failed because its deadline passed.
pub(crate) fn is_deadline(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(io) if io.kind() == std::io::ErrorKind::TimedOut)
}

/// Checks `value` against the JSON limits; the error names the first offending field, as
/// `payload.items[3]`.
pub(crate) fn check_json(value: &Value, limits: &InputLimits) -> Result<(), ApiError> {
    walk(value, limits, &mut String::new(), 0)
}

fn walk(
    value: &Value,
    limits: &InputLimits,
    path: &mut String,
    depth: usize,
) -> Result<(), ApiError> {
    let over = |path: &str, message: String| ApiError::JsonTooComplex {
        field: if path.is_empty() {
            "body".into()
        } else {
            path.to_owned()
        },
        message,
    };
    let nul = |path: &str| ApiError::InvalidField {
        field: if path.is_empty() {
            "body".into()
        } else {
            path.to_owned()
        },
        message: "strings may not hold the NUL character (\\u0000): the job store cannot keep it"
            .into(),
    };
    match value {
        Value::String(text) if text.contains('\0') => Err(nul(path)),
        Value::String(text) if text.len() > limits.max_json_string_bytes => Err(over(
            path,
            format!(
                "a string may hold at most {} bytes; this one has {}",
                limits.max_json_string_bytes,
                text.len()
            ),
        )),
        Value::Array(_) | Value::Object(_) if depth >= limits.max_json_depth => Err(over(
            path,
            format!(
                "arrays and objects may nest at most {} deep",
                limits.max_json_depth
            ),
        )),
        Value::Array(items) => {
            if items.len() > limits.max_json_items {
                return Err(over(
                    path,
                    format!(
                        "an array may hold at most {} items; this one has {}",
                        limits.max_json_items,
                        items.len()
                    ),
                ));
            }
            for (index, item) in items.iter().enumerate() {
                let length = path.len();
                path.push_str(&format!("[{index}]"));
                walk(item, limits, path, depth + 1)?;
                path.truncate(length);
            }
            Ok(())
        }
        Value::Object(members) => {
            if members.len() > limits.max_json_items {
                return Err(over(
                    path,
                    format!(
                        "an object may hold at most {} members; this one has {}",
                        limits.max_json_items,
                        members.len()
                    ),
                ));
            }
            for (key, member) in members {
                let length = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(key);
                if key.contains('\0') {
                    return Err(nul(path));
                }
                if key.len() > limits.max_json_string_bytes {
                    return Err(over(
                        path,
                        format!(
                            "a key may hold at most {} bytes",
                            limits.max_json_string_bytes
                        ),
                    ));
                }
                walk(member, limits, path, depth + 1)?;
                path.truncate(length);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits() -> InputLimits {
        InputLimits {
            max_json_depth: 3,
            max_json_string_bytes: 8,
            max_json_items: 4,
            ..InputLimits::default()
        }
    }

    fn refused_field(value: Value) -> String {
        match check_json(&value, &limits()) {
            Err(ApiError::JsonTooComplex { field, .. }) => field,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn json_within_the_limits_passes() {
        let value = json!({"type": "echo", "payload": {"a": [1, "short", null]}});
        assert!(check_json(&value, &limits()).is_ok());
    }

    #[test]
    fn each_limit_names_the_field_that_breaks_it() {
        assert_eq!(
            refused_field(json!({"payload": {"a": {"b": {}}}})),
            "payload.a.b"
        );
        assert_eq!(
            refused_field(json!({"payload": ["ok", "far too long"]})),
            "payload[1]"
        );
        assert_eq!(
            refused_field(json!({"payload": [1, 2, 3, 4, 5]})),
            "payload"
        );
        assert_eq!(
            refused_field(json!({"payload": {"a key far too long": 1}})),
            "payload.a key far too long"
        );
        assert_eq!(refused_field(json!([[[[]]]])), "[0][0][0]");
    }
}
