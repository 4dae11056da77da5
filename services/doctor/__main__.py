"""``python -m services.doctor``: check a Switchboard deployment from the operator's seat.

Reads the same environment as the edge and the worker. Checks the configuration (every
problem, each with its fix), Redis, the edge's /readyz (with --admin-url), Twilio signature
settings against PUBLIC_URL, then opens a Realtime session with the worker's own
session.update and reports the audio formats the server confirmed; with --tone it also sends a
short μ-law test tone and checks that the reply audio is μ-law. Exit status 1 if any check
fails.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from services.edge.settings import EdgeSettings
from services.realtime_worker.settings import WorkerSettings

from .checks import Check, config_checks, redis_check, signature_checks
from .probes import probe_edge, probe_realtime, probe_redis

__all__ = ["build_parser", "main", "render", "run_checks"]

_MARKS = {"pass": "✓", "fail": "✗", "warn": "!", "skip": "-"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m services.doctor",
        description=__doc__.split("\n\n")[1].replace("\n", " "),
    )
    parser.add_argument(
        "--role",
        choices=["edge", "worker", "both"],
        default="both",
        help="whose settings to check: the edge's, the worker's, or both (default %(default)s)",
    )
    parser.add_argument(
        "--admin-url",
        "--edge-url",  # its name before /readyz moved to the admin port
        dest="admin_url",
        help="base URL of a running edge's admin port (ADMIN_PORT, e.g. http://127.0.0.1:8081), "
        "to check its /readyz",
    )
    parser.add_argument(
        "--tone", action="store_true", help="send a test tone and check the reply audio"
    )
    parser.add_argument("--no-realtime", action="store_true", help="do not open a Realtime session")
    parser.add_argument(
        "--timeout",
        type=float,
        default=15.0,
        help="seconds allowed for each network check (default %(default)s)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a checklist")
    return parser


async def run_checks(args: argparse.Namespace, environ: Mapping[str, str]) -> list[Check]:
    """Every check, in checklist order."""
    roles = ["edge", "worker"] if args.role == "both" else [args.role]
    settings, checks = config_checks(roles, environ)
    parsed = [s for s in settings.values() if s is not None]
    redis_url = parsed[0].redis_url if parsed else environ.get("REDIS_URL")
    cluster = parsed[0].redis_cluster if parsed else False
    if redis_url:
        info, error = await probe_redis(redis_url, args.timeout)
        checks.append(redis_check(redis_url, cluster, info, error))
    else:
        checks.append(Check("redis", "skip", "REDIS_URL is invalid: fix the configuration first"))
    if args.admin_url:
        checks.append(await probe_edge(args.admin_url, args.timeout))
    edge = settings.get("edge")
    if isinstance(edge, EdgeSettings):
        checks += signature_checks(edge)
    elif "edge" in roles:
        checks.append(Check("signature", "skip", "edge configuration invalid: fix it first"))
    worker = settings.get("worker")
    if args.no_realtime or "worker" not in roles:
        pass
    elif isinstance(worker, WorkerSettings):
        checks += await probe_realtime(worker, args.tone, args.timeout)
    else:
        checks.append(Check("realtime", "skip", "worker configuration invalid: fix it first"))
    return checks


def render(checks: Sequence[Check]) -> str:
    """The checklist a person reads."""
    lines = []
    for check in checks:
        lines.append(f"{_MARKS[check.status]} {check.summary}")
        if check.fix and check.status in ("fail", "warn"):
            lines.append(f"    fix: {check.fix}")
    failed = sum(c.status == "fail" for c in checks)
    lines.append(f"\n{failed} check(s) failed" if failed else f"\nall {len(checks)} checks passed")
    return "\n".join(lines)


def as_json(checks: Sequence[Check]) -> dict[str, Any]:
    return {
        "ok": not any(c.status == "fail" for c in checks),
        "checks": [c.as_json() for c in checks],
    }


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    checks = asyncio.run(run_checks(args, os.environ if environ is None else environ))
    if args.json:
        print(json.dumps(as_json(checks), indent=2, ensure_ascii=False))
    else:
        print(render(checks))
    return 1 if any(c.status == "fail" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
