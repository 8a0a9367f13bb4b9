//! What each tenant may do: its rate limits, its quota of unfinished jobs, the job types it may
//! submit, and its weight in the workers' turns. One default for every tenant, and overrides per
//! tenant from the tenants file.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use conveyor_schemas::valid_name;
use conveyor_store::Rate;
use serde::Deserialize;

/// The limits that apply to every tenant the tenants file does not name, from
/// `CONVEYOR_RATE_LIMIT` and friends. A rate of 0 means unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DefaultLimits {
    pub submit_rate: f64,
    pub submit_burst: u32,
    pub read_rate: f64,
    pub read_burst: u32,
    pub max_in_flight: u32,
}

/// One tenant's entry in the tenants file; what it leaves out comes from the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantEntry {
    rate_limit: Option<f64>,
    rate_burst: Option<u32>,
    read_rate_limit: Option<f64>,
    read_rate_burst: Option<u32>,
    max_inflight: Option<u32>,
    job_types: Option<Vec<String>>,
    weight: Option<u32>,
}

/// The most turns in a row a tenant's weight may give it.
pub const MAX_WEIGHT: u32 = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantsFile {
    #[serde(default)]
    tenants: HashMap<String, TenantEntry>,
}

/// The limits of one tenant, resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLimits {
    /// Submissions and cancellations; `None` is unlimited.
    pub submit: Option<Rate>,
    /// Reads, lists and event streams; `None` is unlimited.
    pub read: Option<Rate>,
    /// Unfinished jobs at once; `None` is unlimited.
    pub max_in_flight: Option<u32>,
    /// The job types it may submit; `None` is every type.
    pub job_types: Option<HashSet<String>>,
    /// Jobs a worker starts for it in each of its turns, when other tenants' jobs wait too.
    pub weight: u32,
}

/// Every tenant's limits.
#[derive(Debug, Clone)]
pub struct Policies {
    default: Arc<TenantLimits>,
    tenants: HashMap<String, Arc<TenantLimits>>,
}

/// A setting that cannot work, named as the operator wrote it.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {problem}")]
pub struct PolicyError {
    pub setting: String,
    pub problem: String,
}

impl Policies {
    /// `default` for every tenant, overridden per tenant by the TOML `file_text`
    /// (`[tenants.<name>]` tables; see the README). Job types are named as types are (they may be
    /// registered after the file is read).
    pub fn with_overrides(
        default: DefaultLimits,
        file_text: &str,
    ) -> Result<Policies, PolicyError> {
        let file: TenantsFile = toml::from_str(file_text).map_err(|error| PolicyError {
            setting: "CONVEYOR_TENANTS_FILE".into(),
            problem: error.to_string(),
        })?;
        let default_entry = TenantEntry::default();
        let resolved = |name: &str, entry: &TenantEntry| -> Result<TenantLimits, PolicyError> {
            let setting = |field: &str, env: &str| {
                if name.is_empty() {
                    env.to_owned()
                } else {
                    format!("tenants.{name}.{field}")
                }
            };
            let submit = rate(
                entry.rate_limit.unwrap_or(default.submit_rate),
                entry.rate_burst.unwrap_or(default.submit_burst),
                &setting("rate_limit", "CONVEYOR_RATE_LIMIT"),
                &setting("rate_burst", "CONVEYOR_RATE_BURST"),
            )?;
            let read = rate(
                entry.read_rate_limit.unwrap_or(default.read_rate),
                entry.read_rate_burst.unwrap_or(default.read_burst),
                &setting("read_rate_limit", "CONVEYOR_READ_RATE_LIMIT"),
                &setting("read_rate_burst", "CONVEYOR_READ_RATE_BURST"),
            )?;
            let job_types = match &entry.job_types {
                None => None,
                Some(types) => {
                    if let Some(bad) = types.iter().find(|t| !valid_name(t)) {
                        return Err(PolicyError {
                            setting: setting("job_types", ""),
                            problem: format!("`{bad}` is not a job type name"),
                        });
                    }
                    Some(types.iter().cloned().collect())
                }
            };
            let max_in_flight = entry.max_inflight.unwrap_or(default.max_in_flight);
            let weight = entry.weight.unwrap_or(1);
            if !(1..=MAX_WEIGHT).contains(&weight) {
                return Err(PolicyError {
                    setting: setting("weight", ""),
                    problem: format!("must be between 1 and {MAX_WEIGHT}, not {weight}"),
                });
            }
            Ok(TenantLimits {
                submit,
                read,
                max_in_flight: (max_in_flight > 0).then_some(max_in_flight),
                job_types,
                weight,
            })
        };
        let mut tenants = HashMap::new();
        for (name, entry) in &file.tenants {
            if name.is_empty() {
                return Err(PolicyError {
                    setting: "CONVEYOR_TENANTS_FILE".into(),
                    problem: "a tenant's name cannot be empty".into(),
                });
            }
            tenants.insert(name.clone(), Arc::new(resolved(name, entry)?));
        }
        Ok(Policies {
            default: Arc::new(resolved("", &default_entry)?),
            tenants,
        })
    }

    pub fn of(&self, tenant: &str) -> &Arc<TenantLimits> {
        self.tenants.get(tenant).unwrap_or(&self.default)
    }

    /// The weights of the tenants whose weight is not 1, for the workers.
    pub fn weights(&self) -> HashMap<String, u32> {
        let weighted = self.tenants.iter().filter(|(_, limits)| limits.weight != 1);
        weighted
            .map(|(tenant, limits)| (tenant.clone(), limits.weight))
            .collect()
    }
}

/// A rate of 0 is no limit; a burst of 0 means "as many as the rate".
fn rate(
    per_second: f64,
    burst: u32,
    rate_setting: &str,
    burst_setting: &str,
) -> Result<Option<Rate>, PolicyError> {
    if per_second == 0.0 {
        return Ok(None);
    }
    if !(per_second.is_finite() && per_second > 0.0) {
        return Err(PolicyError {
            setting: rate_setting.to_owned(),
            problem: format!(
                "must be a positive number of requests per second, or 0 for no limit, not {per_second}"
            ),
        });
    }
    let burst = if burst == 0 {
        (per_second.ceil() as u32).max(1)
    } else {
        burst
    };
    Rate::new(per_second, burst)
        .map(Some)
        .ok_or_else(|| PolicyError {
            setting: burst_setting.to_owned(),
            problem: format!("{burst} cannot work as a burst"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uniform(default: DefaultLimits) -> Result<Policies, PolicyError> {
        Policies::with_overrides(default, "")
    }

    fn defaults() -> DefaultLimits {
        DefaultLimits {
            submit_rate: 10.0,
            submit_burst: 20,
            read_rate: 0.0,
            read_burst: 0,
            max_in_flight: 0,
        }
    }

    #[test]
    fn a_tenant_the_file_does_not_name_gets_the_defaults() {
        let policies = uniform(defaults()).unwrap();
        let limits = policies.of("anyone");
        assert_eq!(limits.submit, Rate::new(10.0, 20));
        assert_eq!(limits.read, None);
        assert_eq!(limits.max_in_flight, None);
        assert_eq!(limits.job_types, None);
    }

    #[test]
    fn a_tenant_named_in_the_file_overrides_what_it_says_and_keeps_the_rest() {
        let file = r#"
            [tenants.acme]
            rate_limit = 100
            max_inflight = 5
            job_types = ["echo"]
            weight = 3

            [tenants.globex]
            weight = 1
        "#;
        let policies = Policies::with_overrides(defaults(), file).unwrap();
        let acme = policies.of("acme");
        assert_eq!(acme.submit, Rate::new(100.0, 20));
        assert_eq!(acme.max_in_flight, Some(5));
        assert_eq!(acme.job_types, Some(HashSet::from(["echo".to_owned()])));
        assert_eq!(policies.of("other").submit, Rate::new(10.0, 20));
        assert_eq!(policies.of("other").weight, 1);
        assert_eq!(policies.weights(), HashMap::from([("acme".to_owned(), 3)]));
    }

    #[test]
    fn a_burst_left_at_zero_is_one_second_of_the_rate() {
        let mut limits = defaults();
        limits.submit_burst = 0;
        let policies = uniform(limits).unwrap();
        assert_eq!(policies.of("a").submit, Rate::new(10.0, 10));
    }

    #[test]
    fn settings_that_cannot_work_are_refused_by_name() {
        let error = |file: &str| {
            Policies::with_overrides(defaults(), file)
                .unwrap_err()
                .to_string()
        };
        assert!(error("[tenants.acme]\nrate_limit = -1").starts_with("tenants.acme.rate_limit:"));
        assert!(
            error("[tenants.acme]\njob_types = [\"No Way\"]")
                .contains("`No Way` is not a job type name")
        );
        assert!(error("[tenants.acme]\nrate_limt = 1").contains("rate_limt"));
        assert!(error("[tenants.acme]\nweight = 0").starts_with("tenants.acme.weight:"));
        let mut bad = defaults();
        bad.submit_rate = f64::INFINITY;
        assert!(
            uniform(bad)
                .unwrap_err()
                .to_string()
                .starts_with("CONVEYOR_RATE_LIMIT:")
        );
    }
}
