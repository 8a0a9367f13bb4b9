//! Requests that wait on a job while their client keeps the connection: event streams and
//! long-polls. Each holds a connection and a task for as long as the client likes, so a tenant
//! may hold only so many of each on one server; a place is given back the moment its request ends
//! or its client goes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::metrics;

/// What kind of wait a place is for.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Wait {
    Stream,
    LongPoll,
}

impl Wait {
    fn label(self) -> &'static str {
        match self {
            Wait::Stream => "stream",
            Wait::LongPoll => "long_poll",
        }
    }
}

type Counts = Mutex<HashMap<(Wait, String), usize>>;

/// The waits open on this server, per kind and tenant.
#[derive(Default)]
pub(crate) struct OpenWaits {
    open: Arc<Counts>,
}

impl OpenWaits {
    /// A place for one more wait of `tenant`, unless it holds `max` of that kind already.
    pub(crate) fn open(&self, wait: Wait, tenant: &str, max: usize) -> Option<WaitPlace> {
        let mut open = self.open.lock().expect("no panic holds the lock");
        let key = (wait, tenant.to_owned());
        if open.get(&key).copied().unwrap_or(0) >= max {
            return None;
        }
        *open.entry(key).or_default() += 1;
        metrics::OPEN_WAITS.with_label_values(&[wait.label()]).inc();
        Some(WaitPlace {
            open: self.open.clone(),
            wait,
            tenant: tenant.to_owned(),
        })
    }
}

/// One open wait; dropped with its request, which actix drops when the client goes.
pub(crate) struct WaitPlace {
    open: Arc<Counts>,
    wait: Wait,
    tenant: String,
}

impl Drop for WaitPlace {
    fn drop(&mut self) {
        let mut open = self.open.lock().expect("no panic holds the lock");
        let key = (self.wait, std::mem::take(&mut self.tenant));
        if let Some(count) = open.get_mut(&key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&key);
            }
        }
        metrics::OPEN_WAITS
            .with_label_values(&[self.wait.label()])
            .dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_own_limit_per_tenant_and_places_come_back() {
        let waits = OpenWaits::default();
        let first = waits.open(Wait::LongPoll, "acme", 2).unwrap();
        let _second = waits.open(Wait::LongPoll, "acme", 2).unwrap();
        assert!(waits.open(Wait::LongPoll, "acme", 2).is_none());
        assert!(waits.open(Wait::Stream, "acme", 2).is_some());
        assert!(waits.open(Wait::LongPoll, "globex", 2).is_some());
        drop(first);
        assert!(waits.open(Wait::LongPoll, "acme", 2).is_some());
    }

    #[test]
    fn a_limit_of_nothing_leaves_no_trace() {
        let waits = OpenWaits::default();
        assert!(waits.open(Wait::Stream, "acme", 0).is_none());
        assert!(waits.open.lock().unwrap().is_empty());
    }
}
