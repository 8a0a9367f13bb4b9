use std::sync::LazyLock;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use prometheus::{
    HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, register_histogram_vec,
    register_int_counter_vec, register_int_gauge, register_int_gauge_vec,
};

pub(crate) static SUBMITTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "conveyor_jobs_submitted_total",
        "Jobs accepted (202), by job type.",
        &["type"]
    )
    .unwrap()
});

pub(crate) static CANCELLED_WAITING: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "conveyor_jobs_cancelled_total",
        "Jobs cancelled before any worker started them, by job type.",
        &["type"]
    )
    .unwrap()
});

pub(crate) static RATE_LIMITED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "conveyor_rate_limited_total",
        "Requests refused with 429 because a tenant's rate limit was used up, by policy.",
        &["policy"]
    )
    .unwrap()
});

pub(crate) static QUOTA_REFUSED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "conveyor_quota_refused_total",
        "Requests refused with 429 by a tenant's quota (unfinished jobs, event streams), by quota.",
        &["quota"]
    )
    .unwrap()
});

pub(crate) static HTTP_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "conveyor_http_request_duration_seconds",
        "HTTP request latency, by method, route and status.",
        &["method", "route", "status"],
        prometheus::exponential_buckets(0.0001, 3.0, 14).unwrap()
    )
    .unwrap()
});

pub(crate) static QUEUE_DEPTH: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "conveyor_queue_depth",
        "Messages waiting on a topic (ready or delayed), as of the last scrape.",
        &["topic"]
    )
    .unwrap()
});

pub(crate) static QUEUE_WAITING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "conveyor_queue_waiting",
        "Commands waiting in a queue, both lanes summed, as of the last scrape: ready or delayed \
         on the embedded broker and RabbitMQ (its slowest consumer group's), the slowest \
         consumer group's lag on Kafka.",
        &["queue"]
    )
    .unwrap()
});

pub(crate) static OPEN_WAITS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "conveyor_open_waits",
        "Requests waiting on a job on this server, by kind (stream, long_poll).",
        &["kind"]
    )
    .unwrap()
});

pub(crate) static WATCHED_JOBS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "conveyor_watched_jobs",
        "Jobs that a long-poll or event stream waits on in this process, as of the last scrape."
    )
    .unwrap()
});

/// Times every request, labelled by route pattern (not path) to keep the label set small.
pub(crate) async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = method_label(request.method());
    let response = next.call(request).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    HTTP_SECONDS
        .with_label_values(&[method, &route, response.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    Ok(response)
}

/// The method as a label value: any token is a valid method, so anything but the standard ones
/// would let whoever can reach the API add series without bound.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::PATCH,
        Method::DELETE,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    STANDARD
        .iter()
        .find(|standard| *standard == method)
        .map_or("other", Method::as_str)
}

pub(crate) fn render() -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&prometheus::gather())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_standard_methods_are_label_values() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::DELETE), "DELETE");
        let invented = Method::from_bytes(b"X-12345").unwrap();
        assert_eq!(method_label(&invented), "other");
    }
}
