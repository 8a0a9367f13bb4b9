use std::collections::{BTreeMap, BTreeSet};

use jsonschema::Validator;
use jsonschema::error::ValidationErrorKind;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use crate::{DEFAULT_QUEUE, JobTypeInfo, taken_by_built_in};

const BUILT_IN: [(&str, &str); 3] = [
    ("echo", include_str!("../json/job-types/echo.schema.json")),
    ("sleep", include_str!("../json/job-types/sleep.schema.json")),
    ("fail", include_str!("../json/job-types/fail.schema.json")),
];

/// One reason a payload was refused, at a field given as a dotted path (`payload.ms`).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PayloadRejected {
    #[error("unknown job type `{0}`")]
    UnknownType(String),
    #[error("payload does not match the schema of `{job_type}`")]
    Invalid {
        job_type: String,
        errors: Vec<FieldError>,
    },
}

struct Entry {
    info: JobTypeInfo,
    validator: Validator,
}

/// The job types this deployment accepts, each with its compiled payload validator.
pub struct JobTypeCatalog {
    types: BTreeMap<String, Entry>,
}

/// Whether `name` is one of the types that come with Conveyor.
pub fn is_built_in(name: &str) -> bool {
    BUILT_IN.iter().any(|(built_in, _)| *built_in == name)
}

/// The payload schema's validator, or why it is not a schema (naming the field).
pub fn compile(info: &JobTypeInfo) -> Result<Validator, FieldError> {
    jsonschema::validator_for(&info.payload_schema).map_err(|error| FieldError {
        field: "payload_schema".into(),
        message: format!("payload_schema is not a valid JSON Schema: {error}"),
    })
}

impl JobTypeCatalog {
    /// The built-in types: `echo`, `sleep` and `fail`.
    pub fn built_in() -> JobTypeCatalog {
        let mut types = BTreeMap::new();
        for (name, text) in BUILT_IN {
            let schema: Value =
                serde_json::from_str(text).expect("built-in schemas are valid JSON");
            let description = schema["description"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let info = JobTypeInfo::compiled(name, &description, schema);
            let validator = compile(&info).expect("built-in schemas are valid schemas");
            types.insert(name.to_owned(), Entry { info, validator });
        }
        JobTypeCatalog { types }
    }

    /// The built-in types and those an operator registered (which cannot take a built-in name).
    pub fn with_registered(
        registered: impl IntoIterator<Item = JobTypeInfo>,
    ) -> Result<JobTypeCatalog, FieldError> {
        let mut catalog = JobTypeCatalog::built_in();
        for info in registered {
            if is_built_in(&info.name) {
                return Err(taken_by_built_in(&info.name));
            }
            let validator = compile(&info)?;
            catalog
                .types
                .insert(info.name.clone(), Entry { info, validator });
        }
        Ok(catalog)
    }

    pub fn types(&self) -> impl Iterator<Item = &JobTypeInfo> {
        self.types.values().map(|entry| &entry.info)
    }

    /// The types registered beyond the built-in ones, by name.
    pub fn registered(&self) -> impl Iterator<Item = &JobTypeInfo> {
        self.types().filter(|info| !is_built_in(&info.name))
    }

    pub fn get(&self, job_type: &str) -> Option<&JobTypeInfo> {
        self.types.get(job_type).map(|entry| &entry.info)
    }

    /// The queue that carries `job_type`'s jobs: its type's, or the default queue for a type that
    /// is not (or no longer) registered.
    pub fn queue_of(&self, job_type: &str) -> &str {
        self.get(job_type)
            .map_or(DEFAULT_QUEUE, |info| info.queue.as_str())
    }

    /// Every queue some type names, and the default queue, which the built-in types use.
    pub fn queues(&self) -> BTreeSet<&str> {
        let named = self.types().map(|info| info.queue.as_str());
        named.chain([DEFAULT_QUEUE]).collect()
    }

    pub fn contains(&self, job_type: &str) -> bool {
        self.types.contains_key(job_type)
    }

    /// Checks a payload against its type's schema, naming every offending field; the type, when
    /// it passes.
    pub fn validate(
        &self,
        job_type: &str,
        payload: &Value,
    ) -> Result<&JobTypeInfo, PayloadRejected> {
        let entry = self
            .types
            .get(job_type)
            .ok_or_else(|| PayloadRejected::UnknownType(job_type.to_owned()))?;
        let errors: Vec<FieldError> = entry
            .validator
            .iter_errors(payload)
            .take(16)
            .map(|error| {
                let mut field = String::from("payload");
                for segment in error.instance_path().iter() {
                    field.push('.');
                    field.push_str(&segment.to_string());
                }
                if let ValidationErrorKind::Required { property } = error.kind() {
                    field.push('.');
                    field.push_str(property.as_str().unwrap_or_default());
                }
                FieldError {
                    field,
                    message: error.to_string(),
                }
            })
            .collect();
        if errors.is_empty() {
            Ok(&entry.info)
        } else {
            Err(PayloadRejected::Invalid {
                job_type: job_type.to_owned(),
                errors,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::JobMode;
    use serde_json::json;

    #[test]
    fn a_missing_required_field_is_named_with_its_path() {
        let catalog = JobTypeCatalog::built_in();
        let Err(PayloadRejected::Invalid { errors, .. }) = catalog.validate("sleep", &json!({}))
        else {
            panic!("an empty sleep payload must be refused");
        };
        assert_eq!(errors[0].field, "payload.ms");
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named_with_its_path() {
        let catalog = JobTypeCatalog::built_in();
        let Err(PayloadRejected::Invalid { errors, .. }) =
            catalog.validate("fail", &json!({"times": "two"}))
        else {
            panic!("a string count must be refused");
        };
        assert_eq!(errors[0].field, "payload.times");
    }

    #[test]
    fn an_unknown_type_is_refused() {
        let catalog = JobTypeCatalog::built_in();
        assert!(matches!(
            catalog.validate("nope", &json!({})),
            Err(PayloadRejected::UnknownType(name)) if name == "nope"
        ));
    }

    #[test]
    fn registered_types_validate_their_payloads_and_built_in_names_stay_taken() {
        let registered = |name: &str, schema: Value| JobTypeInfo {
            name: name.into(),
            payload_schema: schema,
            mode: JobMode::Pull,
            ..JobTypeCatalog::built_in().get("echo").unwrap().clone()
        };
        let catalog = JobTypeCatalog::with_registered([registered(
            "resize",
            json!({"type": "object", "required": ["url"]}),
        )])
        .unwrap();
        assert_eq!(catalog.get("resize").unwrap().mode, JobMode::Pull);
        assert_eq!(catalog.get("echo").unwrap().mode, JobMode::Builtin);
        assert!(catalog.validate("resize", &json!({"url": "x"})).is_ok());
        assert!(catalog.validate("resize", &json!({})).is_err());

        let taken = JobTypeCatalog::with_registered([registered("echo", json!({}))]);
        assert_eq!(taken.err().unwrap().field, "name");
        let not_a_schema =
            JobTypeCatalog::with_registered([registered("bad", json!({"type": "nothing"}))]);
        assert_eq!(not_a_schema.err().unwrap().field, "payload_schema");
    }

    #[test]
    fn valid_payloads_pass() {
        let catalog = JobTypeCatalog::built_in();
        catalog.validate("echo", &json!({"a": [1, 2]})).unwrap();
        catalog.validate("sleep", &json!({"ms": 10})).unwrap();
        catalog
            .validate("fail", &json!({"times": 1, "permanent": true}))
            .unwrap();
    }
}
