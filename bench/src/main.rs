//! Submits `--jobs` jobs over `--connections` keep-alive connections as fast as the server takes
//! them, then waits until the workers report them finished, and prints what it saw.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::{Value, json};

#[derive(Parser)]
#[command(about = "Load generator for Conveyor")]
struct Args {
    /// The API (or the load balancer in front of it); given more than once, connections are
    /// spread over the replicas.
    #[arg(long = "url", default_value = "http://127.0.0.1:8080")]
    urls: Vec<String>,
    /// Every endpoint whose /metrics counts finished jobs (the workers'); defaults to the --urls.
    #[arg(long = "metrics-url")]
    metrics_urls: Vec<String>,
    /// A token with jobs:write.
    #[arg(long, env = "TOKEN", hide_env_values = true)]
    token: String,
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    #[arg(long, default_value_t = 64)]
    connections: usize,
    #[arg(long = "type", default_value = "echo")]
    job_type: String,
    #[arg(long, default_value = "{\"n\":1}")]
    payload: String,
    /// Long-polls held on a job that does not change (one scheduled an hour ahead) while the load
    /// runs, each on a connection of its own: what idle waiters cost the others. The token needs
    /// jobs:read too, and the server a CONVEYOR_MAX_LONG_POLLS_PER_TENANT at least this high.
    #[arg(long, default_value_t = 0)]
    idle_long_polls: usize,
    /// Run the jobs with this many HTTP workers of the load generator's own (claim, complete)
    /// rather than the server's: `--type` is then registered as a `pull` type, and the token
    /// needs `admin`.
    #[arg(long, default_value_t = 0)]
    pull_workers: usize,
    /// Jobs each claim of a pull worker asks for (1 to 100).
    #[arg(long, default_value_t = 10)]
    claim_max: usize,
    /// Give up waiting for completions after this many seconds.
    #[arg(long, default_value_t = 120)]
    timeout_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let payload: Value = serde_json::from_str(&args.payload).context("--payload is not JSON")?;
    let body = Arc::new(json!({ "type": args.job_type, "payload": payload }));
    let metrics_urls = if args.metrics_urls.is_empty() {
        args.urls.clone()
    } else {
        args.metrics_urls.clone()
    };
    let scraper = reqwest::Client::new();
    let finished_before = finished(&scraper, &metrics_urls, &args.job_type).await?;

    let idle = hold_idle_long_polls(&args).await?;
    let pulled = start_pull_workers(&args).await?;

    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let submitters: Vec<_> = (0..args.connections)
        .map(|connection| {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("a client builds");
            let (url, token, body, next) = (
                format!("{}/v1/jobs", args.urls[connection % args.urls.len()]),
                args.token.clone(),
                body.clone(),
                next.clone(),
            );
            let total = args.jobs;
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut refused = 0usize;
                while next.fetch_add(1, Ordering::Relaxed) < total {
                    let sent = Instant::now();
                    let status = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&*body)
                        .send()
                        .await
                        .map(|response| response.status().as_u16());
                    latencies.push(sent.elapsed());
                    if !matches!(status, Ok(202)) {
                        refused += 1;
                    }
                }
                (latencies, refused)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(args.jobs);
    let mut refused = 0;
    for submitter in submitters {
        let (mine, not_accepted) = submitter.await?;
        latencies.extend(mine);
        refused += not_accepted;
    }
    let submit_elapsed = started.elapsed();
    let accepted = args.jobs - refused;
    let idle_answers = idle.answers.load(Ordering::Relaxed);
    for long_poll in idle.tasks {
        long_poll.abort();
    }

    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut done = 0;
    while done < accepted as u64 {
        if Instant::now() > deadline {
            bail!(
                "only {done} of {accepted} jobs finished within {} s",
                args.timeout_secs
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        done = match &pulled {
            Some(pulled) => pulled.completed.load(Ordering::Relaxed) as u64,
            None => finished(&scraper, &metrics_urls, &args.job_type).await? - finished_before,
        };
    }
    let end_to_end = started.elapsed();

    latencies.sort();
    let percentile = |p: f64| {
        let index = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        latencies[index.min(latencies.len() - 1)].as_secs_f64() * 1000.0
    };
    println!(
        "jobs            {} of type {} over {} connections",
        args.jobs, args.job_type, args.connections
    );
    if let Some(pulled) = pulled {
        for worker in pulled.tasks {
            worker.abort();
        }
        println!(
            "pull workers    {} claiming up to {} jobs at a time over HTTP ({} claims)",
            args.pull_workers,
            args.claim_max,
            pulled.claims.load(Ordering::Relaxed)
        );
    }
    if args.idle_long_polls > 0 {
        println!(
            "idle long-polls {} held during the submissions ({idle_answers} answered early)",
            args.idle_long_polls
        );
    }
    println!("accepted        {accepted} ({refused} not accepted)");
    println!(
        "accepted/s      {:.0}",
        accepted as f64 / submit_elapsed.as_secs_f64()
    );
    println!(
        "submit latency  p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        percentile(1.0)
    );
    println!(
        "completed/s     {:.0} (all {accepted} finished {:.2} s after the first submit)",
        accepted as f64 / end_to_end.as_secs_f64(),
        end_to_end.as_secs_f64()
    );
    Ok(())
}

struct PullWorkers {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Jobs completed so far.
    completed: Arc<AtomicUsize>,
    claims: Arc<AtomicUsize>,
}

/// Registers `--type` as a pull type and starts `--pull-workers` HTTP workers that claim its
/// jobs and complete each at once; `None` without `--pull-workers`.
async fn start_pull_workers(args: &Args) -> anyhow::Result<Option<PullWorkers>> {
    if args.pull_workers == 0 {
        return Ok(None);
    }
    let client = reqwest::Client::new();
    client
        .put(format!("{}/v1/job-types/{}", args.urls[0], args.job_type))
        .bearer_auth(&args.token)
        .json(&json!({"mode": "pull", "payload_schema": {"type": "object"}}))
        .send()
        .await?
        .error_for_status()
        .with_context(|| format!("Failed to register `{}` as a pull type", args.job_type))?;
    let (completed, claims) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks = (0..args.pull_workers)
        .map(|index| {
            let base = args.urls[index % args.urls.len()].clone();
            let claim = json!({"types": [args.job_type], "max": args.claim_max, "wait_ms": 1000});
            let (client, token) = (client.clone(), args.token.clone());
            let (completed, claims) = (completed.clone(), claims.clone());
            tokio::spawn(async move {
                loop {
                    let Ok(answer) =
                        post(&client, &format!("{base}/v1/jobs/claim"), &token, &claim).await
                    else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    };
                    claims.fetch_add(1, Ordering::Relaxed);
                    for job in answer["jobs"].as_array().into_iter().flatten() {
                        let done =
                            json!({"lease": job["lease"]["token"], "result": job["payload"]});
                        let url = format!(
                            "{base}/v1/jobs/{}/complete",
                            job["id"].as_str().unwrap_or_default()
                        );
                        if post(&client, &url, &token, &done).await.is_ok() {
                            completed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    Ok(Some(PullWorkers {
        tasks,
        completed,
        claims,
    }))
}

/// POSTs `body`, insisting on a `2xx`; the answer's JSON.
async fn post(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let answer = client
        .post(url)
        .bearer_auth(token)
        .json(body)
        .send()
        .await?
        .error_for_status()?;
    Ok(answer.json().await?)
}

struct IdleLongPolls {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Answers before the wait was over: the job changed, or the server refused the wait.
    answers: Arc<AtomicUsize>,
}

/// Starts `--idle-long-polls` long-polls on a job scheduled an hour ahead, each re-asked when it
/// is answered, and waits until the server holds them all.
async fn hold_idle_long_polls(args: &Args) -> anyhow::Result<IdleLongPolls> {
    let answers = Arc::new(AtomicUsize::new(0));
    if args.idle_long_polls == 0 {
        return Ok(IdleLongPolls {
            tasks: Vec::new(),
            answers,
        });
    }
    let client = reqwest::Client::new();
    let run_at = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let quiet = client
        .post(format!("{}/v1/jobs", args.urls[0]))
        .bearer_auth(&args.token)
        .json(&json!({"type": "echo", "payload": {}, "run_at": run_at}))
        .send()
        .await?
        .error_for_status()
        .context("Failed to submit the job to long-poll on")?;
    let etag = quiet.headers()["etag"].to_str()?.to_owned();
    let job: Value = quiet.json().await?;
    let id = job["id"].as_str().context("the job has no id")?.to_owned();
    let tasks = (0..args.idle_long_polls)
        .map(|index| {
            let url = format!(
                "{}/v1/jobs/{id}?wait=30",
                args.urls[index % args.urls.len()]
            );
            let (client, token, etag, answers) = (
                client.clone(),
                args.token.clone(),
                etag.clone(),
                answers.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let answer = client
                        .get(&url)
                        .bearer_auth(&token)
                        .header("if-none-match", &etag)
                        .send()
                        .await;
                    if !matches!(answer, Ok(ref response) if response.status() == 304) {
                        answers.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            })
        })
        .collect();
    let held = Instant::now();
    loop {
        match waiting_long_polls(&client, &args.urls).await? {
            Some(waiting) if waiting >= args.idle_long_polls as u64 => break,
            // A server without the gauge (an older build, to compare with) is given the time.
            None if held.elapsed() > Duration::from_secs(5) => break,
            _ => {}
        }
        if held.elapsed() > Duration::from_secs(60) {
            bail!(
                "the servers did not hold {} long-polls within 60 s",
                args.idle_long_polls
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(IdleLongPolls { tasks, answers })
}

/// Long-polls the api servers hold now; `None` when they do not say.
async fn waiting_long_polls(
    client: &reqwest::Client,
    urls: &[String],
) -> anyhow::Result<Option<u64>> {
    let series = "conveyor_open_waits{kind=\"long_poll\"}";
    let mut total = None;
    for url in urls {
        let text = scrape(client, url).await?;
        if let Some(value) = text.lines().find_map(|line| line.strip_prefix(series)) {
            *total.get_or_insert(0) += value.trim().parse::<f64>().unwrap_or(0.0) as u64;
        }
    }
    Ok(total)
}

async fn scrape(client: &reqwest::Client, url: &str) -> anyhow::Result<String> {
    client
        .get(format!("{url}/metrics"))
        .send()
        .await
        .with_context(|| format!("Failed to scrape {url}/metrics"))?
        .text()
        .await
        .with_context(|| format!("Failed to read {url}/metrics"))
}

/// Attempts of `job_type` that ended (any outcome but retrying), summed over the endpoints.
async fn finished(
    client: &reqwest::Client,
    urls: &[String],
    job_type: &str,
) -> anyhow::Result<u64> {
    let of_type = format!("type=\"{job_type}\"");
    series_sum(client, urls, |line| {
        line.starts_with("conveyor_jobs_finished_total{")
            && line.contains(&of_type)
            && !line.contains("outcome=\"retrying\"")
    })
    .await
}

/// The sum of the `/metrics` lines that `wanted` picks, over the endpoints.
async fn series_sum(
    client: &reqwest::Client,
    urls: &[String],
    wanted: impl Fn(&str) -> bool,
) -> anyhow::Result<u64> {
    let mut total = 0;
    for url in urls {
        total += scrape(client, url)
            .await?
            .lines()
            .filter(|line| wanted(line))
            .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64;
    }
    Ok(total)
}
