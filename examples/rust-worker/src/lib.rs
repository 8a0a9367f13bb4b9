//! A job type of one's own, run by a handler in Rust: `thumbnail` names an image and a width, and
//! its result is where the thumbnail went (a stand-in for the real work).

use async_trait::async_trait;
use conveyor::{Handler, JobContext, JobError, JobTypeInfo, Registry};
use serde_json::{Value, json};

pub struct Thumbnail;

#[async_trait]
impl Handler for Thumbnail {
    async fn run(&self, payload: Value, context: JobContext) -> Result<Value, JobError> {
        // The payload passed the type's schema before the job was accepted.
        let url = payload["url"].as_str().unwrap_or_default();
        let width = payload["width"].as_u64().unwrap_or_default();
        if url.starts_with("broken:") {
            return Err(JobError::Permanent(format!("`{url}` is not an image")));
        }
        context.progress(0.5).await;
        Ok(json!({ "thumbnail": format!("{url}@{width}w"), "attempt": context.attempt() }))
    }
}

/// Conveyor's built-in handlers and `thumbnail`, with the schema its payloads must satisfy.
pub fn registry() -> Registry {
    let thumbnail = JobTypeInfo::compiled(
        "thumbnail",
        "Makes a thumbnail of an image",
        json!({
            "type": "object",
            "required": ["url", "width"],
            "properties": {
                "url": {"type": "string", "minLength": 1},
                "width": {"type": "integer", "minimum": 1, "maximum": 4096}
            },
            "additionalProperties": false
        }),
    );
    Registry::built_in().with_type(thumbnail, Thumbnail)
}
