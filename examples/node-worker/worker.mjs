// A Conveyor HTTP worker in JavaScript (Node.js 18 or later, no packages).
//
// Claims jobs of the `wordcount` type (payload {"text": "..."}), counts the words, and completes
// them, renewing the lease with heartbeats while a job runs. Register the type as the Python
// worker's header says, then:
//
//   CONVEYOR_URL=http://127.0.0.1:8080 TOKEN=<a token with jobs:work> node worker.mjs
//
// With --until-idle it stops once a claim comes back empty.
const URL_BASE = process.env.CONVEYOR_URL ?? "http://127.0.0.1:8080";
const TOKEN = process.env.TOKEN;
const LEASE_MS = 30_000;

async function call(path, body) {
  const response = await fetch(URL_BASE + path, {
    method: "POST",
    headers: { Authorization: `Bearer ${TOKEN}`, "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

// The work itself: what a job of this type is for.
function run(payload) {
  return { words: payload.text.split(/\s+/).filter(Boolean).length };
}

async function work(job) {
  const lease = job.lease.token;
  const beat = setInterval(async () => {
    const { status, body } = await call(`/v1/jobs/${job.id}/heartbeat`, { lease });
    if (status !== 200 || body.cancel_requested) clearInterval(beat);
  }, LEASE_MS / 3);
  let path, body;
  try {
    [path, body] = ["complete", { lease, result: run(job.payload) }];
  } catch (error) {
    [path, body] = ["fail", { lease, error: String(error) }];
  } finally {
    clearInterval(beat);
  }
  const answer = await call(`/v1/jobs/${job.id}/${path}`, body);
  if (answer.status === 409) {
    console.error(`job ${job.id}: lease lost, outcome not recorded`);
  } else {
    console.log(`job ${job.id} (tenant ${job.tenant}): ${answer.body.status}`);
  }
}

const untilIdle = process.argv.includes("--until-idle");
for (;;) {
  const { status, body } = await call("/v1/jobs/claim", {
    types: ["wordcount"], max: 10, wait_ms: untilIdle ? 2_000 : 20_000, lease_ms: LEASE_MS,
  });
  if (status !== 200) {
    console.error(`claim refused (${status}): ${body.detail}`);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    continue;
  }
  if (body.jobs.length === 0 && untilIdle) break;
  for (const job of body.jobs) await work(job);
}
