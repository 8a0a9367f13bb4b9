//! Queues and the worker pool: a type's `concurrency` holds across the pool, however many of its
//! jobs wait, and its jobs never crowd out another type's on the same queue.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use conveyor::{Handler, JobContext, JobError, JobTypeInfo, Registry};
use serde_json::{Value, json};

use crate::helpers::{echo, spawn_app_running};

/// Counts the attempts running at once, and the most ever seen.
#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    most: AtomicUsize,
}

struct Slow(Arc<Gauge>);

#[async_trait::async_trait]
impl Handler for Slow {
    async fn run(&self, _: Value, _: JobContext) -> Result<Value, JobError> {
        let running = self.0.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.0.most.fetch_max(running, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.0.now.fetch_sub(1, Ordering::SeqCst);
        Ok(json!({"ran": true}))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_types_concurrency_is_never_exceeded_by_the_worker_pool() {
    let gauge = Arc::new(Gauge::default());
    let capped = JobTypeInfo {
        concurrency: Some(2),
        ..JobTypeInfo::compiled("capped", "", json!({}))
    };
    let registry = Registry::built_in().with_type(capped, Slow(gauge.clone()));
    let app = spawn_app_running(&[], registry).await;
    let mut jobs = Vec::new();
    for _ in 0..10 {
        let job = app.submit(json!({"type": "capped", "payload": {}})).await;
        jobs.push(job["id"].as_str().unwrap().to_owned());
    }
    // Another type on the same queue runs at once, while the capped type's jobs wait for places.
    let other = app.submit(echo(json!({"n": 1}))).await;
    let other = app
        .wait_for(
            other["id"].as_str().unwrap(),
            "succeeded",
            Duration::from_secs(5),
        )
        .await;
    assert_eq!(other["result"], json!({"n": 1}));
    for job in &jobs {
        app.wait_for(job, "succeeded", Duration::from_secs(60))
            .await;
    }
    assert_eq!(
        gauge.most.load(Ordering::SeqCst),
        2,
        "the cap is reached, never passed"
    );
}
