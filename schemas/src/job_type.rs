//! Job types as data: what an operator registers (`PUT /v1/job-types/{name}`, or the types file)
//! and the checks a definition must pass before any job of it is accepted.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::catalog::compile;
use crate::{Backoff, FieldError, SigningSecret, is_built_in};

/// The queue of a type that names none.
pub const DEFAULT_QUEUE: &str = "default";
/// Attempts a job may be given, at most.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
/// The longest time limit of one attempt, in milliseconds (a day).
pub const TIMEOUT_MS_LIMIT: u64 = 24 * 60 * 60 * 1000;
/// The highest cap on a type's attempts running at once.
pub const CONCURRENCY_LIMIT: u32 = 100_000;
/// The longest backoff between attempts, in milliseconds (a day).
const BACKOFF_MS_LIMIT: u64 = 24 * 60 * 60 * 1000;

/// How a type's jobs are run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobMode {
    /// By a handler compiled into the worker binary: Conveyor's own (`echo`, `sleep`, `fail`),
    /// or one built on its crates.
    Builtin,
    /// By workers of any language that claim jobs over HTTP (`POST /v1/jobs/claim`).
    Pull,
    /// Delivered by Conveyor's workers to the type's `endpoint`.
    Push,
}

impl JobMode {
    pub fn as_str(self) -> &'static str {
        match self {
            JobMode::Builtin => "builtin",
            JobMode::Pull => "pull",
            JobMode::Push => "push",
        }
    }
}

/// Exponential backoff between attempts, with jitter: attempt n waits between half and all of
/// `base_ms * 2^(n-1)`, at most `max_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BackoffSpec {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl BackoffSpec {
    pub fn backoff(&self) -> Backoff {
        Backoff {
            base: std::time::Duration::from_millis(self.base_ms),
            max: std::time::Duration::from_millis(self.max_ms),
        }
    }
}

/// A job type as `GET /v1/job-types` shows it and the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobTypeInfo {
    pub name: String,
    pub description: String,
    /// The JSON Schema (2020-12) that payloads of this type must satisfy.
    pub payload_schema: Value,
    pub mode: JobMode,
    /// Where push deliveries go (`push` types only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub queue: String,
    /// Attempts of a job that names none (else the deployment's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// Time limit of each attempt of a job that names none, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Backoff between attempts (else the deployment's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<BackoffSpec>,
    /// Most attempts of this type running at once across the deployment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// What push deliveries are signed with (`push` types only). Never shown: the store keeps it
    /// beside the type, and it is given out once, when made or rotated.
    #[serde(skip)]
    pub signing_secret: Option<SigningSecret>,
}

impl JobTypeInfo {
    /// A type whose jobs a handler compiled into a worker binary runs (Conveyor's own, or one
    /// built on its crates), with the queue and the defaults of the deployment.
    pub fn compiled(name: &str, description: &str, payload_schema: Value) -> JobTypeInfo {
        JobTypeInfo {
            name: name.to_owned(),
            description: description.to_owned(),
            payload_schema,
            mode: JobMode::Builtin,
            endpoint: None,
            queue: DEFAULT_QUEUE.into(),
            max_attempts: None,
            timeout_ms: None,
            backoff: None,
            concurrency: None,
            signing_secret: None,
        }
    }
}

/// The body of `PUT /v1/job-types/{name}`, and of each type in the types file.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JobTypeSpec {
    #[serde(default)]
    pub description: Option<String>,
    /// A JSON Schema (2020-12) that every payload of the type must satisfy.
    pub payload_schema: Value,
    /// `pull`: workers claim the jobs over HTTP; `push`: Conveyor's workers POST them to
    /// `endpoint`.
    pub mode: JobMode,
    /// `push` types: the `http://` or `https://` URL each attempt is POSTed to.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Defaults to `default`.
    #[serde(default)]
    pub queue: Option<String>,
    /// Attempts of a job that names none (1 to 100).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100)]
    pub max_attempts: Option<u32>,
    /// Time limit of each attempt of a job that names none, in milliseconds.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 86400000)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub backoff: Option<BackoffSpec>,
    /// Most attempts of this type running at once across the deployment (1 to 100,000); no cap
    /// when left out.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100000)]
    pub concurrency: Option<u32>,
    /// `push` types: the `whsec_…` secret deliveries are signed with (Standard Webhooks). Left
    /// out, a new push type gets one made for it (shown once, in the answer), and a replaced one
    /// keeps its own.
    #[serde(default)]
    pub secret: Option<String>,
}

/// Whether `name` may name a job type (or a queue): `[a-z0-9][a-z0-9._-]{0,62}`.
pub fn valid_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_lowercase() || first.is_ascii_digit())
        && name.len() <= 63
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

/// Why `name`, a built-in type's, cannot be registered, replaced or removed.
pub fn taken_by_built_in(name: &str) -> FieldError {
    invalid(
        "name",
        format!("`{name}` is a built-in type: it cannot be registered, replaced or removed"),
    )
}

/// An endpoint must be an absolute `http`/`https` URL; where it may point is checked at each
/// delivery, after DNS resolution (the allow-list of the workers).
fn check_endpoint(endpoint: &str) -> Result<(), FieldError> {
    const MAX_LEN: usize = 2048;
    let rest = endpoint
        .strip_prefix("https://")
        .or_else(|| endpoint.strip_prefix("http://"));
    let host = rest.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        _ if endpoint.len() > MAX_LEN => Err(invalid(
            "endpoint",
            format!("the endpoint is longer than {MAX_LEN} characters"),
        )),
        None => Err(invalid(
            "endpoint",
            "the endpoint must be an http:// or https:// URL",
        )),
        Some(host)
            if host.is_empty() || host.contains(char::is_whitespace) || host.contains('@') =>
        {
            Err(invalid(
                "endpoint",
                "the endpoint must name a host, with no credentials or spaces",
            ))
        }
        Some(_) => Ok(()),
    }
}

fn invalid(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.into(),
        message: message.into(),
    }
}

impl JobTypeSpec {
    /// The type `name` as this spec defines it, or the first field that cannot be so: over HTTP,
    /// from the types file, checked alike.
    pub fn define(self, name: &str) -> Result<JobTypeInfo, FieldError> {
        if !valid_name(name) {
            return Err(invalid(
                "name",
                format!("`{name}` is not a job type name: use [a-z0-9][a-z0-9._-]{{0,62}}"),
            ));
        }
        if is_built_in(name) {
            return Err(taken_by_built_in(name));
        }
        match self.mode {
            JobMode::Builtin => {
                return Err(invalid(
                    "mode",
                    "built-in types come with Conveyor; register `pull` types",
                ));
            }
            JobMode::Push => {
                let Some(endpoint) = &self.endpoint else {
                    return Err(invalid("endpoint", "push types need an endpoint"));
                };
                check_endpoint(endpoint)?;
            }
            JobMode::Pull => {
                if self.endpoint.is_some() {
                    return Err(invalid("endpoint", "only push types have an endpoint"));
                }
                if self.secret.is_some() {
                    return Err(invalid("secret", "only push types have a secret"));
                }
            }
        }
        let signing_secret = self
            .secret
            .as_deref()
            .map(SigningSecret::parse)
            .transpose()
            .map_err(|error| invalid("secret", error.to_string()))?;
        if let Some(concurrency) = self.concurrency
            && !(1..=CONCURRENCY_LIMIT).contains(&concurrency)
        {
            return Err(invalid(
                "concurrency",
                format!("concurrency must be between 1 and {CONCURRENCY_LIMIT}"),
            ));
        }
        let queue = self.queue.unwrap_or_else(|| DEFAULT_QUEUE.into());
        if !valid_name(&queue) {
            return Err(invalid(
                "queue",
                format!("`{queue}` is not a queue name: use [a-z0-9][a-z0-9._-]{{0,62}}"),
            ));
        }
        if let Some(max_attempts) = self.max_attempts
            && !(1..=MAX_ATTEMPTS_LIMIT).contains(&max_attempts)
        {
            return Err(invalid(
                "max_attempts",
                format!("max_attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
            ));
        }
        if let Some(timeout_ms) = self.timeout_ms
            && !(1..=TIMEOUT_MS_LIMIT).contains(&timeout_ms)
        {
            return Err(invalid(
                "timeout_ms",
                format!("timeout_ms must be between 1 and {TIMEOUT_MS_LIMIT}"),
            ));
        }
        if let Some(backoff) = self.backoff
            && !(1 <= backoff.base_ms
                && backoff.base_ms <= backoff.max_ms
                && backoff.max_ms <= BACKOFF_MS_LIMIT)
        {
            return Err(invalid(
                "backoff",
                format!("backoff needs 1 <= base_ms <= max_ms <= {BACKOFF_MS_LIMIT}"),
            ));
        }
        if !(self.payload_schema.is_object() || self.payload_schema.is_boolean()) {
            return Err(invalid(
                "payload_schema",
                "payload_schema must be a JSON Schema: an object (or true/false)",
            ));
        }
        let info = JobTypeInfo {
            name: name.to_owned(),
            description: self.description.unwrap_or_default(),
            payload_schema: self.payload_schema,
            mode: self.mode,
            endpoint: self.endpoint,
            queue,
            max_attempts: self.max_attempts,
            timeout_ms: self.timeout_ms,
            backoff: self.backoff,
            concurrency: self.concurrency,
            signing_secret,
        };
        compile(&info)?;
        Ok(info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(body: Value) -> JobTypeSpec {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn names_follow_the_pattern() {
        for good in ["a", "resize-image", "v2.thumbs_x", "0", &"a".repeat(63)] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", "-a", ".a", "A", "a b", "a/b", "é", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_pull_type_takes_its_defaults() {
        let info = spec(json!({"mode": "pull", "payload_schema": {"type": "object"}}))
            .define("resize")
            .unwrap();
        assert_eq!(info.queue, DEFAULT_QUEUE);
        assert_eq!(info.description, "");
        assert_eq!(info.mode, JobMode::Pull);
    }

    #[test]
    fn a_push_type_keeps_its_endpoint_and_the_secret_it_names() {
        let secret = SigningSecret::generate().expose();
        let info = spec(json!({
            "mode": "push",
            "payload_schema": {},
            "endpoint": "https://hooks.example.com/run?k=1",
            "secret": secret,
        }))
        .define("hook")
        .unwrap();
        assert_eq!(
            info.endpoint.as_deref(),
            Some("https://hooks.example.com/run?k=1")
        );
        assert_eq!(info.signing_secret.unwrap().expose(), secret);
        let shown = serde_json::to_value(
            spec(json!({"mode": "push", "payload_schema": {}, "endpoint": "http://h/", "secret": secret}))
                .define("hook")
                .unwrap(),
        )
        .unwrap();
        assert!(shown.get("signing_secret").is_none() && !shown.to_string().contains("whsec_"));
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (
                json!({"mode": "pull", "payload_schema": 3}),
                "payload_schema",
            ),
            (json!({"mode": "builtin", "payload_schema": {}}), "mode"),
            (
                json!({"mode": "pull", "payload_schema": {}, "max_attempts": 0}),
                "max_attempts",
            ),
            (
                json!({"mode": "pull", "payload_schema": {}, "timeout_ms": 0}),
                "timeout_ms",
            ),
            (
                json!({"mode": "pull", "payload_schema": {}, "queue": "Q"}),
                "queue",
            ),
            (
                json!({"mode": "pull", "payload_schema": {}, "backoff": {"base_ms": 10, "max_ms": 5}}),
                "backoff",
            ),
            (
                json!({"mode": "pull", "payload_schema": {}, "endpoint": "http://x"}),
                "endpoint",
            ),
            (
                json!({"mode": "pull", "payload_schema": {}, "concurrency": 0}),
                "concurrency",
            ),
            (
                json!({"mode": "pull", "payload_schema": {}, "secret": "whsec_x"}),
                "secret",
            ),
            (json!({"mode": "push", "payload_schema": {}}), "endpoint"),
            (
                json!({"mode": "push", "payload_schema": {}, "endpoint": "ftp://x"}),
                "endpoint",
            ),
            (
                json!({"mode": "push", "payload_schema": {}, "endpoint": "https://u:p@x/"}),
                "endpoint",
            ),
            (
                json!({"mode": "push", "payload_schema": {}, "endpoint": "https://x", "secret": "whsec_c2hvcnQ="}),
                "secret",
            ),
        ];
        for (body, field) in cases {
            let error = spec(body.clone()).define("t").unwrap_err();
            assert_eq!(error.field, field, "{body}");
        }
        for name in ["Bad", "echo"] {
            let error = spec(json!({"mode": "pull", "payload_schema": {}}))
                .define(name)
                .unwrap_err();
            assert_eq!(error.field, "name", "{name}");
        }
        let not_a_schema = spec(json!({"mode": "pull", "payload_schema": {"type": "nothing"}}));
        assert_eq!(
            not_a_schema.define("t").unwrap_err().field,
            "payload_schema"
        );
    }
}
