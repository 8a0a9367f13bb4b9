use std::time::Duration;

use serde_json::json;

use crate::helpers::spawn_app;

const CONNECTIONS: usize = 50;
const JOBS_PER_CONNECTION: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_from_many_connections_all_succeeds() {
    let app = spawn_app().await;
    let submitters = (0..CONNECTIONS).map(|connection| {
        // A client each, so each has its own connection.
        let client = reqwest::Client::new();
        let url = app.url("/v1/jobs");
        let token = app.token.clone();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(JOBS_PER_CONNECTION);
            for n in 0..JOBS_PER_CONNECTION {
                let response = client
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&json!({"type": "echo", "payload": {"connection": connection, "n": n}}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
                let job: serde_json::Value = response.json().await.unwrap();
                ids.push(job["id"].as_str().unwrap().to_owned());
            }
            ids
        })
    });
    let mut ids = Vec::new();
    for submitter in futures_util::future::join_all(submitters).await {
        ids.extend(submitter.unwrap());
    }
    assert_eq!(ids.len(), CONNECTIONS * JOBS_PER_CONNECTION);
    for id in &ids {
        let job = app.wait_for(id, "succeeded", Duration::from_secs(30)).await;
        assert_eq!(job["attempts"], 1);
    }
}
