//! Properties of `POST /v1/jobs` over arbitrary JSON bodies: each one is accepted as a job, or
//! refused with `422` and a problem whose `field` names the part of the body at fault. Nothing
//! the client can write gets a `5xx`, and no refusal points at a field the body does not have.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::StatusCode;
use serde_json::{Map, Value, json};

use crate::helpers::{TestApp, spawn_app};

/// The fields of a submission; `SubmitJob` refuses any other.
const FIELDS: [&str; 5] = ["type", "payload", "max_attempts", "run_at", "timeout_ms"];

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,12}"
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |float| {
            serde_json::Number::from_f64(float).map(Value::Number)
        }),
        text().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(3, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..6)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// `type` and `payload`: mostly a pair that belongs together, otherwise each drawn on its own
/// (an unknown type, a payload of another type, a value of the wrong kind) or left out.
fn type_and_payload() -> impl Strategy<Value = Vec<(&'static str, Value)>> {
    let matched = prop_oneof![
        prop::collection::btree_map(text(), json_value(), 0..4)
            .prop_map(|payload| { vec![("type", json!("echo")), ("payload", json!(payload))] }),
        (0..100u64).prop_map(|ms| vec![("type", json!("sleep")), ("payload", json!({ "ms": ms }))]),
        (0..3u32, any::<bool>()).prop_map(|(times, permanent)| {
            let payload = json!({ "times": times, "permanent": permanent });
            vec![("type", json!("fail")), ("payload", payload)]
        }),
    ];
    let job_type = prop_oneof![
        3 => prop::sample::select(vec!["echo", "sleep", "fail", "nope"]).prop_map(Value::from),
        1 => json_value(),
    ];
    let payload = prop_oneof![
        (0..100u64).prop_map(|ms| json!({ "ms": ms })),
        (0..3u32).prop_map(|times| json!({ "times": times })),
        json_value(),
    ];
    let unmatched = (
        prop::option::weighted(0.9, job_type),
        prop::option::weighted(0.7, payload),
    )
        .prop_map(|(job_type, payload)| {
            let job_type = job_type.map(|value| ("type", value));
            let payload = payload.map(|value| ("payload", value));
            job_type.into_iter().chain(payload).collect()
        });
    prop_oneof![3 => matched, 1 => unmatched]
}

/// The optional settings: mostly within bounds, sometimes outside them or of the wrong kind.
fn setting(field: &'static str) -> BoxedStrategy<Option<(&'static str, Value)>> {
    let plausible = match field {
        "max_attempts" => (-5..110i64).prop_map(Value::from).boxed(),
        "timeout_ms" => prop_oneof![(-5..100_000i64), Just(86_400_001i64)]
            .prop_map(Value::from)
            .boxed(),
        "run_at" => prop_oneof![
            3 => Just(json!("2020-01-01T00:00:00Z")),
            1 => Just(json!("2020-01-01 00:00")),
            1 => text().prop_map(Value::from),
        ]
        .boxed(),
        other => unreachable!("`{other}` is not a setting"),
    };
    let value = prop_oneof![4 => plausible, 1 => json_value()];
    prop::option::weighted(0.3, value.prop_map(move |value| (field, value))).boxed()
}

/// Request bodies: any JSON at all, and objects made of submission fields with now and then a
/// field no submission has.
fn body() -> impl Strategy<Value = Value> {
    let settings: Vec<_> = ["max_attempts", "run_at", "timeout_ms"]
        .into_iter()
        .map(setting)
        .collect();
    let stranger = prop::option::weighted(0.1, (text(), json_value()));
    let submission = (type_and_payload(), settings, stranger).prop_map(
        |(type_and_payload, settings, stranger)| {
            let fields = type_and_payload
                .into_iter()
                .chain(settings.into_iter().flatten());
            let mut object: Map<String, Value> = fields
                .map(|(name, value)| (name.to_owned(), value))
                .collect();
            if let Some((name, value)) = stranger {
                object.entry(name).or_insert(value);
            }
            Value::Object(object)
        },
    );
    prop_oneof![1 => json_value(), 4 => submission]
}

/// Whether `field` is the name of something in `body`, or of a part of a submission that `body`
/// lacks, left wrong or left out.
fn names_a_field_of(field: &str, body: &Value) -> bool {
    let Some(object) = body.as_object() else {
        return field == "body";
    };
    if FIELDS.contains(&field) || object.contains_key(field) {
        return true;
    }
    let Some(path) = field.strip_prefix("payload.") else {
        return false;
    };
    // A submission without a payload has `{}`.
    let no_payload = Value::Object(Map::new());
    let mut at = object.get("payload").unwrap_or(&no_payload);
    let segments: Vec<&str> = path.split('.').collect();
    for (index, segment) in segments.iter().enumerate() {
        let next = match at {
            Value::Object(object) => object.get(*segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(value) => at = value,
            // A required property the payload lacks.
            None => return index + 1 == segments.len() && at.is_object(),
        }
    }
    true
}

async fn check(app: &TestApp, body: &Value) -> Result<(), TestCaseError> {
    let response = app
        .post_job(body)
        .send()
        .await
        .map_err(|error| TestCaseError::fail(format!("no answer: {error}")))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .map_err(|error| TestCaseError::fail(format!("{status} without a JSON body: {error}")))?;
    match status {
        StatusCode::ACCEPTED => {
            prop_assert_eq!(&answer["type"], &body["type"]);
            prop_assert!(answer["status"].is_string(), "{answer}");
        }
        StatusCode::UNPROCESSABLE_ENTITY => {
            let Some(field) = answer["field"].as_str() else {
                return Err(TestCaseError::fail(format!(
                    "no field for {body}: {answer}"
                )));
            };
            prop_assert!(
                names_a_field_of(field, body),
                "`{field}` names nothing in {body}: {answer}"
            );
            for error in answer["errors"].as_array().into_iter().flatten() {
                let field = error["field"].as_str().unwrap_or_default();
                prop_assert!(
                    names_a_field_of(field, body),
                    "`{field}` names nothing in {body}: {answer}"
                );
            }
        }
        other => return Err(TestCaseError::fail(format!("{other} for {body}: {answer}"))),
    }
    Ok(())
}

#[test]
fn every_json_body_is_either_accepted_or_refused_naming_one_of_its_fields() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let app = runtime.block_on(spawn_app());
    // One server for every case: starting one per case would take most of the run. Failures
    // are printed with the body that caused them rather than kept in a regressions file.
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let outcome = runner.run(&body(), |body| runtime.block_on(check(&app, &body)));
    if let Err(failure) = outcome {
        panic!("{failure}");
    }
}
