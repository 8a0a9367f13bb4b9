pub(crate) mod broker_messages;
pub(crate) mod jobs;
