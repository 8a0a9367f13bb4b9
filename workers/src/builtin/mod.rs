//! Built-in job types for demos, tests and benchmarks. Their payload schemas live in
//! `schemas/json/job-types/`.

mod echo;
mod fail;
mod sleep;

pub use echo::Echo;
pub use fail::Fail;
pub use sleep::Sleep;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::JobError;

/// The API validated the payload against the type's schema; a payload that still does not decode
/// cannot get better by retrying.
fn decode<T: DeserializeOwned>(mut payload: Value) -> Result<T, JobError> {
    whole_numbers_as_integers(&mut payload);
    serde_json::from_value(payload)
        .map_err(|error| JobError::Permanent(format!("payload does not decode: {error}")))
}

/// JSON Schema counts `1.0` as an integer, so the API accepts it where a schema asks for one;
/// serde does not, so it is made `1` before decoding.
fn whole_numbers_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(float) = number
                .as_f64()
                .filter(|f| f.fract() == 0.0 && number.is_f64())
            {
                if float >= 0.0 && float <= u64::MAX as f64 {
                    *value = Value::from(float as u64);
                } else if float >= i64::MIN as f64 && float < 0.0 {
                    *value = Value::from(float as i64);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(whole_numbers_as_integers),
        Value::Object(members) => members.values_mut().for_each(whole_numbers_as_integers),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Payload {
        ms: u64,
        nested: Vec<i32>,
    }

    #[test]
    fn whole_numbers_written_as_floats_decode_as_integers() {
        let decoded: Payload = decode(json!({"ms": 2.0, "nested": [-3.0, 4]})).unwrap();
        assert_eq!(
            decoded,
            Payload {
                ms: 2,
                nested: vec![-3, 4]
            }
        );
    }

    #[test]
    fn fractions_are_still_refused() {
        assert!(decode::<Payload>(json!({"ms": 2.5, "nested": []})).is_err());
    }
}
