//! An idempotency claim as its key holds it: `<job id> <request hash>`, one string, so that a single
//! `SET NX GET` both claims the key and reads an earlier claim.

use conveyor_store::IdempotencyClaim;
use uuid::Uuid;

pub(crate) fn encode(claim: &IdempotencyClaim) -> String {
    format!("{} {}", claim.job_id, claim.request_hash)
}

pub(crate) fn decode(value: &str) -> Option<IdempotencyClaim> {
    let (job_id, request_hash) = value.split_once(' ')?;
    Some(IdempotencyClaim {
        job_id: Uuid::parse_str(job_id).ok()?,
        request_hash: request_hash.to_owned(),
    })
}
