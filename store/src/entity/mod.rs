pub(crate) mod broker_messages;
pub(crate) mod jobs;
pub(crate) mod scheduled_messages;
