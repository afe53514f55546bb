"""Drives the job queue from a separate process, with the real code: `python -m tests.e2e.jobs_tool`.

setup                         create the side-effect table of tests.e2e.jobs_tasks
enqueue --task T [options]    enqueue jobs; prints their ids as a JSON list
retry ID                      retry a DEAD or CANCELLED job
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "helios_site.settings")
django.setup()

from django.db import transaction  # noqa: E402 - after django.setup()

from jobs import services  # noqa: E402
from jobs.models import Job  # noqa: E402
from tests.e2e import jobs_tasks  # noqa: E402


def enqueue(args: argparse.Namespace) -> list[str]:
    payload = json.loads(args.payload)
    run_at = services.run_at_from(countdown=args.countdown)
    specs = [
        services.JobSpec(
            task=args.task,
            payload=payload,
            queue=args.queue,
            run_at=run_at,
            max_attempts=args.max_attempts,
            idempotency_key=args.idempotency_key,
        )
        for _ in range(args.count)
    ]
    if args.many:
        return [str(outcome.job.id) for outcome in services.job_enqueue_many(specs=specs)]
    return [str(services.job_enqueue_many(specs=[spec])[0].job.id) for spec in specs]


def serve() -> None:
    """{"op": "enqueue", "task", "payload", "queue", "count", "many", "countdown", "hold"} -> {"ids"}
    (with "hold", {"ids"} first, then {"committed": true} when the transaction commits);
    {"op": "retry", "id"} -> {"ids"}. A failure answers {"error": "..."}."""
    for line in sys.stdin:
        request = json.loads(line)
        try:
            if request["op"] == "retry":
                job = services.job_retry(job=Job.objects.get(pk=request["id"]))
                answer(ids=[str(job.id)])
                continue
            args = argparse.Namespace(
                task=request["task"],
                payload=json.dumps(request.get("payload", {})),
                queue=request.get("queue"),
                count=request.get("count", 1),
                many=request.get("many", False),
                countdown=request.get("countdown"),
                max_attempts=None,
                idempotency_key=None,
            )
            if request.get("hold"):
                with transaction.atomic():
                    answer(ids=enqueue(args))
                    time.sleep(request["hold"])
                answer(committed=True)
            else:
                answer(ids=enqueue(args))
        except Exception as exc:  # the test reads it, and fails with it
            answer(error=f"{type(exc).__name__}: {exc}")


def answer(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("setup")
    commands.add_parser("serve")
    add = commands.add_parser("enqueue")
    add.add_argument("--task", required=True)
    add.add_argument("--payload", default="{}")
    add.add_argument("--count", type=int, default=1)
    add.add_argument("--many", action="store_true", help="one INSERT for all")
    add.add_argument("--queue")
    add.add_argument("--countdown", type=float)
    add.add_argument("--max-attempts", type=int)
    add.add_argument("--idempotency-key")
    add.add_argument("--hold-transaction", type=float, default=0.0, help="commit this many seconds later")
    retry = commands.add_parser("retry")
    retry.add_argument("job_id")
    args = parser.parse_args()

    if args.command == "setup":
        jobs_tasks.ensure_side_effect_table()
    elif args.command == "serve":
        serve()
    elif args.command == "retry":
        job = services.job_retry(job=Job.objects.get(pk=args.job_id))
        print(json.dumps([str(job.id)]))
    elif args.hold_transaction:
        with transaction.atomic():
            ids = enqueue(args)
            print(json.dumps(ids), flush=True)
            time.sleep(args.hold_transaction)
        print("committed", flush=True)
    else:
        print(json.dumps(enqueue(args)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
