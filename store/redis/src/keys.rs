use uuid::Uuid;

/// Where the cache keeps things in Redis. Everything sits under one prefix, so that deployments
/// (and parallel tests) can share a server.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// A hash of the job's snapshot (`json`) and what the compare-and-set needs of it without
    /// decoding JSON in Lua (`version`, `terminal`).
    pub(crate) fn job(&self, id: Uuid) -> String {
        format!("{}job:{id}", self.prefix)
    }

    /// The tenant goes in with its length: tenants and keys are free text, and `a:b` + `c` must not
    /// meet `a` + `b:c`.
    pub(crate) fn idempotency(&self, tenant: &str, key: &str) -> String {
        format!("{}idempotency:{}:{tenant}:{key}", self.prefix, tenant.len())
    }

    /// A sorted set of the tenant's unfinished jobs, all at score 0 so that members sort by id:
    /// UUIDv7 ids, oldest first.
    pub(crate) fn in_flight(&self, tenant: &str) -> String {
        format!("{}inflight:{tenant}", self.prefix)
    }

    /// Which worker holds the lease on a running job, expiring with the lease.
    pub(crate) fn lease(&self, id: Uuid) -> String {
        format!("{}lease:{id}", self.prefix)
    }

    /// The theoretical arrival time of a rate limit's `key` (see `conveyor_store::gcra`).
    pub(crate) fn allowance(&self, key: &str) -> String {
        format!("{}rate:{key}", self.prefix)
    }

    /// The stream every kept snapshot is appended to: the change feed of all replicas.
    pub(crate) fn changes(&self) -> String {
        format!("{}changes", self.prefix)
    }

    /// The name the feed's connection goes by in `CLIENT LIST` (which allows no spaces or
    /// control characters).
    pub(crate) fn feed_client_name(&self) -> String {
        format!("{}feed", self.prefix)
            .chars()
            .map(|c| if c.is_ascii_graphic() { c } else { '_' })
            .collect()
    }
}
