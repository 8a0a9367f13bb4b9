use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Stack, metric, ok_json, spawn_app};

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let app = spawn_app().await;
    let document = ok_json(app.client.get(app.url("/openapi.json"))).await;
    assert!(document["openapi"].as_str().unwrap().starts_with("3.1"));
    let routes = [
        ("/v1/jobs", "post"),
        ("/v1/jobs", "get"),
        ("/v1/jobs/{id}", "get"),
        ("/v1/jobs/{id}", "delete"),
        ("/v1/jobs/{id}/events", "get"),
        ("/v1/jobs/claim", "post"),
        ("/v1/jobs/{id}/heartbeat", "post"),
        ("/v1/jobs/{id}/complete", "post"),
        ("/v1/jobs/{id}/fail", "post"),
        ("/v1/job-types", "get"),
        ("/v1/job-types/{name}", "get"),
        ("/v1/job-types/{name}", "put"),
        ("/v1/job-types/{name}", "delete"),
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
        ("/openapi.json", "get"),
        ("/docs", "get"),
    ];
    for (path, method) in routes {
        let operation = &document["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        let responses = &operation["responses"];
        assert!(
            responses["default"].is_object(),
            "{method} {path}: no default problem"
        );
        if path.starts_with("/v1/") {
            for status in ["401", "403"] {
                assert!(
                    responses[status].is_object(),
                    "{method} {path}: no {status}"
                );
            }
        }
    }
    for schema in [
        "Job",
        "JobStatus",
        "SubmitJob",
        "Problem",
        "JobList",
        "JobTypeInfo",
        "JobTypeSpec",
        "JobMode",
        "BackoffSpec",
        "JobTypeRemoved",
        "ClaimRequest",
        "ClaimedJobs",
        "ClaimedJob",
        "Lease",
        "HeartbeatRequest",
        "HeartbeatAnswer",
        "CompleteRequest",
        "FailRequest",
    ] {
        assert!(
            document["components"]["schemas"][schema].is_object(),
            "{schema}"
        );
    }
    assert_eq!(
        document["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}

#[tokio::test]
async fn the_reference_page_lists_the_routes() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/docs")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    let page = response.text().await.unwrap();
    assert!(page.contains("/v1/jobs/{id}/events"));
    assert!(page.contains("Submit a job"));
}

#[tokio::test]
async fn job_types_come_with_their_payload_schemas() {
    let app = spawn_app().await;
    let types: Value = app.get_json("/v1/job-types").await;
    let names: Vec<&str> = types["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "fail", "sleep"]);
    assert_eq!(
        types["items"][2]["payload_schema"]["required"],
        json!(["ms"])
    );
}

#[tokio::test]
async fn health_readiness_and_metrics_answer() {
    let app = spawn_app().await;
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = ok_json(app.client.get(app.url("/readyz"))).await;
    assert_eq!(
        ready["checks"],
        json!({"broker": "ok", "cache": "ok", "database": "ok"})
    );

    let job = app.submit(json!({"type": "echo", "payload": {}})).await;
    app.wait_for(
        job["id"].as_str().unwrap(),
        "succeeded",
        std::time::Duration::from_secs(5),
    )
    .await;
    let finished = "conveyor_jobs_finished_total{outcome=\"succeeded\",type=\"echo\"}";
    assert_eq!(app.metric_reaches(finished, 1.0).await, 1.0);
    let metrics = app.metrics().await;
    // Each test runs in its own process, so these counters hold this test's job only.
    assert_eq!(
        metric(&metrics, "conveyor_jobs_submitted_total{type=\"echo\"}"),
        1.0
    );
    assert_eq!(
        metric(&metrics, "conveyor_job_run_seconds_count{type=\"echo\"}"),
        1.0
    );
    assert_eq!(
        metric(
            &metrics,
            "conveyor_job_queue_wait_seconds_count{type=\"echo\"}"
        ),
        1.0
    );
    // Brokers outside the process are measured in the background: wait for the first figure.
    // tansu's high watermark is the last batch's base offset + 1, so its lag is approximate.
    let depth = format!("conveyor_queue_depth{{topic=\"{}jobs\"}}", app.topic_prefix);
    let measured = app.metric_reaches(&depth, 0.0).await;
    match Stack::from_env() {
        Stack::Kafka => assert!(measured >= 0.0, "{depth} is {measured}"),
        Stack::Embedded | Stack::Amqp => assert_eq!(measured, 0.0),
    }
    assert!(metrics.contains("conveyor_http_request_duration_seconds_bucket{method=\"POST\",route=\"/v1/jobs\",status=\"202\""));
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem() {
    let app = spawn_app().await;
    let response = app.client.put(app.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(response.headers()["allow"], "GET, POST");
    crate::helpers::problem(
        response,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_route_is_a_404_problem() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/v2/nothing")).send().await.unwrap();
    crate::helpers::problem(response, StatusCode::NOT_FOUND, "not_found").await;
}
