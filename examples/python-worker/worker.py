#!/usr/bin/env python3
"""A Conveyor HTTP worker in Python, standard library only.

Claims jobs of the `wordcount` type (payload {"text": "..."}), counts the words, and completes
them; a lease is renewed by a heartbeat while a job runs. Register the type first:

    curl -X PUT "$CONVEYOR_URL/v1/job-types/wordcount" -H "Authorization: Bearer $TOKEN" \
      -H 'Content-Type: application/json' \
      -d '{"mode": "pull", "payload_schema": {"type": "object", "required": ["text"]}}'

    CONVEYOR_URL=http://127.0.0.1:8080 TOKEN=<a token with jobs:work> python3 worker.py

With --until-idle it stops once a claim comes back empty (CI uses that).
"""
import json, os, sys, threading, time, urllib.error, urllib.request

URL = os.environ.get("CONVEYOR_URL", "http://127.0.0.1:8080")
TOKEN = os.environ["TOKEN"]
LEASE_MS = 30_000


def call(path, body):
    """POSTs JSON; returns (status, parsed body)."""
    request = urllib.request.Request(
        URL + path, data=json.dumps(body).encode(), method="POST",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def run(payload):
    """The work itself: what a job of this type is for."""
    return {"words": len(payload["text"].split())}


def heartbeat(job, lease, stop):
    """Renews the lease every third of it until the job is done; stops if the lease is lost."""
    while not stop.wait(LEASE_MS / 3000):
        status, answer = call(f"/v1/jobs/{job['id']}/heartbeat", {"lease": lease})
        if status != 200 or answer["cancel_requested"]:
            return


def work(job):
    lease, stop = job["lease"]["token"], threading.Event()
    beating = threading.Thread(target=heartbeat, args=(job, lease, stop), daemon=True)
    beating.start()
    try:
        path, body = "complete", {"lease": lease, "result": run(job["payload"])}
    except Exception as error:  # a bad payload or a bug: retried while attempts remain
        path, body = "fail", {"lease": lease, "error": f"{type(error).__name__}: {error}"}
    finally:
        stop.set()
    status, answer = call(f"/v1/jobs/{job['id']}/{path}", body)
    if status == 409:
        print(f"job {job['id']}: lease lost, outcome not recorded", file=sys.stderr)
    else:
        print(f"job {job['id']} (tenant {job['tenant']}): {answer['status']}")


def main():
    until_idle = "--until-idle" in sys.argv
    while True:
        status, answer = call("/v1/jobs/claim", {
            "types": ["wordcount"], "max": 10, "wait_ms": 2_000 if until_idle else 20_000,
            "lease_ms": LEASE_MS})
        if status != 200:
            print(f"claim refused ({status}): {answer.get('detail')}", file=sys.stderr)
            time.sleep(1)
            continue
        if not answer["jobs"] and until_idle:
            return
        for job in answer["jobs"]:
            work(job)


if __name__ == "__main__":
    main()
