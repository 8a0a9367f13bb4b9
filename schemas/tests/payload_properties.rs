//! Properties of payload validation, for every built-in job type: whatever JSON arrives, the
//! validator answers without panicking and names places that are in the payload; payloads built
//! from a type's own schema pass it; values just outside a schema's bounds are refused at the
//! field that holds them.

use conveyor_schemas::{FieldError, JobTypeCatalog, JobTypeInfo, PayloadRejected};
use proptest::prelude::*;
use proptest::strategy::Union;
use serde_json::{Map, Value};

/// The keywords the built-in schemas use, which [`instance_of`] knows how to satisfy. A schema
/// that starts using another one fails these tests until the generator learns it, rather than
/// being tested against payloads that ignore the new rule.
const UNDERSTOOD_KEYWORDS: [&str; 12] = [
    "$schema",
    "$id",
    "title",
    "description",
    "default",
    "type",
    "properties",
    "required",
    "additionalProperties",
    "minimum",
    "maximum",
    "maxProperties",
];

fn built_in_types() -> Vec<JobTypeInfo> {
    JobTypeCatalog::built_in().types().cloned().collect()
}

/// Object keys: mostly short arbitrary text, often the names the built-in schemas give meaning
/// to, so that generated objects reach their type and range checks.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => "\\PC{0,8}",
        1 => prop::sample::select(vec!["ms", "times", "permanent"]).prop_map(str::to_owned),
    ]
}

fn json_leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1.0e7..1.0e7f64).prop_map(Value::from),
        any::<f64>().prop_filter_map("JSON has no NaN or infinity", |float| {
            serde_json::Number::from_f64(float).map(Value::Number)
        }),
        "\\PC{0,16}".prop_map(Value::from),
    ]
}

/// Any JSON value, nested a few levels deep.
fn json_value() -> impl Strategy<Value = Value> {
    json_leaf().prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|entries| Value::Object(entries.into_iter().collect())),
        ]
    })
}

/// Payloads of every kind, with objects (what most schemas want) weighted up.
fn any_payload() -> impl Strategy<Value = Value> {
    prop_oneof![
        json_value(),
        prop::collection::btree_map(key(), json_value(), 0..6)
            .prop_map(|entries| Value::Object(entries.into_iter().collect())),
    ]
}

/// A strategy for instances of `schema`, read from the schema itself: integers within their
/// bounds, every required property, some of the optional ones, extra keys only where allowed.
fn instance_of(schema: &Value) -> BoxedStrategy<Value> {
    let schema = schema.as_object().expect("a schema is a JSON object");
    for keyword in schema.keys() {
        assert!(
            UNDERSTOOD_KEYWORDS.contains(&keyword.as_str()),
            "the payload generator does not know the keyword `{keyword}`"
        );
    }
    let instances = match schema.get("type").and_then(Value::as_str) {
        None => json_value().boxed(),
        Some("boolean") => any::<bool>().prop_map(Value::from).boxed(),
        Some("integer") => {
            let minimum = schema.get("minimum").and_then(Value::as_i64);
            let maximum = schema.get("maximum").and_then(Value::as_i64);
            (minimum.unwrap_or(i64::MIN)..=maximum.unwrap_or(i64::MAX))
                .prop_map(Value::from)
                .boxed()
        }
        Some("object") => object_of(schema),
        Some(other) => panic!("the payload generator does not know the type `{other}`"),
    };
    match schema.get("maxProperties").and_then(Value::as_u64) {
        Some(most) => instances
            .prop_filter("within maxProperties", move |value| {
                value
                    .as_object()
                    .is_none_or(|object| object.len() as u64 <= most)
            })
            .boxed(),
        None => instances,
    }
}

fn object_of(schema: &Map<String, Value>) -> BoxedStrategy<Value> {
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let properties = schema
        .get("properties")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let declared: Vec<BoxedStrategy<Option<(String, Value)>>> = properties
        .iter()
        .map(|(name, property)| {
            let name = name.clone();
            let value = instance_of(property);
            if required.contains(&name.as_str()) {
                value
                    .prop_map(move |value| Some((name.clone(), value)))
                    .boxed()
            } else {
                proptest::option::of(value.prop_map(move |value| (name.clone(), value))).boxed()
            }
        })
        .collect();
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    let extra_keys = if closed { 0..1 } else { 0..4 };
    let extras = prop::collection::btree_map("[a-z]{1,8}", json_value(), extra_keys);
    (declared, extras)
        .prop_map(move |(declared, extras)| {
            let mut object: Map<String, Value> = extras
                .into_iter()
                .filter(|(name, _)| !properties.contains_key(name))
                .collect();
            object.extend(declared.into_iter().flatten());
            Value::Object(object)
        })
        .boxed()
}

/// A type's name paired with payloads for it, over every built-in type.
fn for_every_type(
    payloads: impl Fn(&JobTypeInfo) -> BoxedStrategy<Value>,
) -> impl Strategy<Value = (String, Value)> {
    Union::new(built_in_types().into_iter().map(|info| {
        let name = info.name.clone();
        payloads(&info)
            .prop_map(move |payload| (name.clone(), payload))
            .boxed()
    }))
}

fn errors_of(job_type: &str, payload: &Value) -> Vec<FieldError> {
    match JobTypeCatalog::built_in().validate(job_type, payload) {
        Ok(_) => Vec::new(),
        Err(PayloadRejected::Invalid { errors, .. }) => errors,
        Err(PayloadRejected::UnknownType(name)) => panic!("`{name}` is a built-in type"),
    }
}

/// Whether `field` (`payload.a.0.b`) names a value in `payload`, or a property missing from an
/// object there that the schema requires.
fn names_a_place_in(error: &FieldError, payload: &Value) -> bool {
    let segments: Vec<&str> = match error.field.strip_prefix("payload") {
        Some("") => Vec::new(),
        Some(path) => match path.strip_prefix('.') {
            Some(path) => path.split('.').collect(),
            None => return false,
        },
        None => return false,
    };
    let mut at = payload;
    for (index, segment) in segments.iter().enumerate() {
        let next = match at {
            Value::Object(object) => object.get(*segment),
            Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        };
        match next {
            Some(value) => at = value,
            None => {
                let last = index + 1 == segments.len();
                return last && at.is_object() && error.message.contains("required");
            }
        }
    }
    true
}

proptest! {
    #[test]
    fn arbitrary_payloads_never_panic_the_validator_and_every_error_names_a_place_in_the_payload(
        (job_type, payload) in for_every_type(|_| any_payload().boxed()),
    ) {
        for error in errors_of(&job_type, &payload) {
            prop_assert!(
                names_a_place_in(&error, &payload),
                "{job_type}: {error:?} names nothing in {payload}"
            );
            prop_assert!(!error.message.is_empty());
        }
    }

    #[test]
    fn payloads_built_from_a_types_own_schema_are_accepted(
        (job_type, payload) in for_every_type(|info| instance_of(&info.payload_schema)),
    ) {
        let errors = errors_of(&job_type, &payload);
        prop_assert!(errors.is_empty(), "{job_type}: {payload} refused: {errors:?}");
    }

    #[test]
    fn an_integer_just_outside_its_bounds_is_refused_at_its_field(
        (job_type, mut payload, field, value) in out_of_bounds(),
    ) {
        payload[&field] = Value::from(value);
        let errors = errors_of(&job_type, &payload);
        prop_assert!(!errors.is_empty(), "{job_type}: {payload} accepted");
        for error in errors {
            prop_assert_eq!(&error.field, &format!("payload.{field}"));
        }
    }
}

/// A valid payload of some type, one of its bounded integer fields and a value a little below or
/// above that field's bounds.
fn out_of_bounds() -> impl Strategy<Value = (String, Value, String, i64)> {
    let mut cases = Vec::new();
    for info in built_in_types() {
        let Some(properties) = info.payload_schema["properties"].as_object() else {
            continue;
        };
        for (field, property) in properties {
            let (Some(minimum), Some(maximum)) =
                (property["minimum"].as_i64(), property["maximum"].as_i64())
            else {
                continue;
            };
            let (job_type, field) = (info.name.clone(), field.clone());
            let outside = prop_oneof![
                (1..1000i64).prop_map(move |past| minimum - past),
                (1..1000i64).prop_map(move |past| maximum + past),
            ];
            cases.push(
                (instance_of(&info.payload_schema), outside)
                    .prop_map(move |(payload, value)| {
                        (job_type.clone(), payload, field.clone(), value)
                    })
                    .boxed(),
            );
        }
    }
    Union::new(cases)
}

#[test]
fn an_object_with_more_keys_than_a_schema_allows_is_refused_at_the_payload() {
    for info in built_in_types() {
        let Some(most) = info.payload_schema["maxProperties"].as_u64() else {
            continue;
        };
        let payload: Value = (0..=most)
            .map(|i| (format!("k{i}"), Value::from(i)))
            .collect::<Map<_, _>>()
            .into();
        let errors = errors_of(&info.name, &payload);
        assert!(
            errors.iter().any(|error| error.field == "payload"),
            "{}: {} keys accepted: {errors:?}",
            info.name,
            most + 1
        );
    }
}
