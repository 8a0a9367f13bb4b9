//! A job type's `concurrency`: the most attempts of it running at once across the deployment,
//! whoever runs them (the worker pools, HTTP workers). Counted in the cache, shared by every
//! process, in a set of the kind that counts a tenant's unfinished jobs.

use conveyor_schemas::Job;
use uuid::Uuid;

use crate::{Cache, StoreError};

/// Members of a type's set checked for lost attempts when the type is at its cap.
const RECHECKED: usize = 32;

/// The set's name: one no tenant can have, since a tenant claim holds no control character.
fn running_set(job_type: &str) -> String {
    format!("\u{1}running:{job_type}")
}

/// Counts `job` among its type's running attempts unless `cap` are counted; `false` at the cap.
/// At the cap, the places of attempts whose lease is not held any more (their worker was lost, or
/// it ended without an outcome) are given back first: whoever takes a place holds the job's lease
/// until it gives the place back.
pub async fn take_running_place(
    cache: &dyn Cache,
    job: &Job,
    cap: u32,
) -> Result<bool, StoreError> {
    let set = running_set(&job.job_type);
    if cache.admit_in_flight(&set, job.id, cap).await?.is_some() {
        return Ok(true);
    }
    for counted in cache.oldest_in_flight(&set, RECHECKED).await? {
        if !cache.lease_held(counted).await? {
            cache.release_in_flight(&set, counted).await?;
        }
    }
    Ok(cache.admit_in_flight(&set, job.id, cap).await?.is_some())
}

/// Gives back the place of `job` (of `job_type`) among its type's running attempts.
pub async fn give_back_running_place(
    cache: &dyn Cache,
    job_type: &str,
    job: Uuid,
) -> Result<(), StoreError> {
    cache.release_in_flight(&running_set(job_type), job).await
}
