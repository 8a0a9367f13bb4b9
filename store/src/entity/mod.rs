pub(crate) mod broker_messages;
pub(crate) mod job_types;
pub(crate) mod jobs;
pub(crate) mod queues;
pub(crate) mod scheduled_messages;
