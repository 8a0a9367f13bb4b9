use std::collections::HashMap;
use std::sync::Arc;

use conveyor_schemas::JobTypeInfo;

use crate::Handler;
use crate::builtin::{Echo, Fail, Sleep};

/// The handlers this worker runs, by job type, and the types of its own it brings (registered in
/// the store when it starts, so that every api replica accepts their jobs).
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
    types: Vec<JobTypeInfo>,
}

impl Registry {
    pub fn built_in() -> Registry {
        Registry::default()
            .with("echo", Echo)
            .with("sleep", Sleep)
            .with("fail", Fail)
    }

    pub fn with(mut self, job_type: &str, handler: impl Handler) -> Registry {
        self.handlers.insert(job_type.to_owned(), Arc::new(handler));
        self
    }

    /// Adds a type of the worker binary's own with its handler: `info` is what the api checks
    /// payloads against (see [`JobTypeInfo::compiled`]).
    pub fn with_type(self, info: JobTypeInfo, handler: impl Handler) -> Registry {
        let mut registry = self.with(&info.name, handler);
        registry.types.push(info);
        registry
    }

    /// The types this worker brings, beyond Conveyor's built-in ones.
    pub fn types(&self) -> &[JobTypeInfo] {
        &self.types
    }

    pub fn get(&self, job_type: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(job_type).cloned()
    }

    pub fn job_types(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }
}
