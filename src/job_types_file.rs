//! The job types file (`CONVEYOR_JOB_TYPES_FILE`): job types as code, registered at start.
//!
//! ```toml
//! [job_types.resize-image]
//! mode = "pull"
//! queue = "images"
//! max_attempts = 5
//! payload_schema = { type = "object", required = ["url"] }
//! ```
//!
//! `payload_schema` is a TOML table, or a string of JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use conveyor_schemas::{FieldError, JobMode, JobTypeInfo, JobTypeSpec};
use serde::Deserialize;
use serde_json::Value;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JobTypesFile {
    #[serde(default)]
    job_types: BTreeMap<String, Value>,
}

/// The types the file at `path` defines, each checked as `PUT /v1/job-types/{name}` checks it.
pub fn read(path: &Path) -> anyhow::Result<Vec<JobTypeInfo>> {
    let setting = format!("CONVEYOR_JOB_TYPES_FILE {}", path.display());
    let text =
        std::fs::read_to_string(path).with_context(|| format!("Failed to read {setting}"))?;
    parse(&text).map_err(|problem| anyhow::anyhow!("{setting}: {problem}"))
}

fn parse(text: &str) -> Result<Vec<JobTypeInfo>, String> {
    let file: JobTypesFile = toml::from_str(text).map_err(|error| error.to_string())?;
    let mut types = Vec::new();
    for (name, mut table) in file.job_types {
        let at = |FieldError { field, message }: FieldError| {
            format!("job_types.{name}.{field}: {message}")
        };
        if let Some(Value::String(json)) = table.get("payload_schema") {
            let schema: Value = serde_json::from_str(json)
                .map_err(|error| format!("job_types.{name}.payload_schema: not JSON: {error}"))?;
            table["payload_schema"] = schema;
        }
        let spec: JobTypeSpec =
            serde_json::from_value(table).map_err(|error| format!("job_types.{name}: {error}"))?;
        let info = spec.define(&name).map_err(at)?;
        if info.mode == JobMode::Push && info.signing_secret.is_none() {
            // A secret made at start would be shown to nobody, and its receiver could verify
            // nothing.
            return Err(format!(
                "job_types.{name}.secret: a push type in the file names its signing secret \
                 (`whsec_…`)"
            ));
        }
        types.push(info);
    }
    Ok(types)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_push_type_names_its_secret() {
        let without =
            "[job_types.hook]\nmode = \"push\"\nendpoint = \"https://h/\"\npayload_schema = {}\n";
        let error = parse(without).unwrap_err();
        assert!(error.starts_with("job_types.hook.secret:"), "{error}");
        let secret = conveyor_schemas::SigningSecret::generate().expose();
        let with = format!("{without}secret = \"{secret}\"\n");
        let types = parse(&with).unwrap();
        assert_eq!(types[0].signing_secret.as_ref().unwrap().expose(), secret);
    }

    #[test]
    fn types_are_read_with_their_schema_as_a_table_or_as_json() {
        let types = parse(
            r#"
            [job_types.resize]
            mode = "pull"
            max_attempts = 5
            payload_schema = { type = "object", required = ["url"] }

            [job_types.mail]
            mode = "pull"
            payload_schema = '{"type": "object"}'
            "#,
        )
        .unwrap();
        assert_eq!(types.len(), 2);
        assert_eq!(types[1].name, "resize");
        assert_eq!(types[1].max_attempts, Some(5));
        assert_eq!(types[1].mode, JobMode::Pull);
        assert_eq!(types[0].payload_schema["type"], "object");
    }

    #[test]
    fn a_bad_type_is_named_with_its_field() {
        let problem = |text: &str| parse(text).unwrap_err();
        assert!(
            problem("[job_types.a]\nmode = \"pull\"\npayload_schema = { type = \"nothing\" }")
                .starts_with("job_types.a.payload_schema:")
        );
        assert!(problem("[job_types.Bad]\nmode = \"pull\"\npayload_schema = {}").contains("name"));
        assert!(
            problem("[job_types.echo]\nmode = \"pull\"\npayload_schema = {}").contains("built-in")
        );
        assert!(problem("[job_types.a]\nmode = \"pull\"").contains("payload_schema"));
        assert!(problem("[types.a]").contains("unknown field"));
    }
}
