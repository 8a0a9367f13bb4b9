use std::collections::HashMap;
use std::sync::Arc;

use crate::Handler;
use crate::builtin::{Echo, Fail, Sleep};

/// The handlers this worker runs, by job type.
#[derive(Clone, Default)]
pub struct Registry {
    handlers: HashMap<String, Arc<dyn Handler>>,
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

    pub fn get(&self, job_type: &str) -> Option<Arc<dyn Handler>> {
        self.handlers.get(job_type).cloned()
    }

    pub fn job_types(&self) -> impl Iterator<Item = &str> {
        self.handlers.keys().map(String::as_str)
    }
}
