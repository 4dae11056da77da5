"""``switchboard call``: place an outbound call through an edge's ``POST /calls``.

    switchboard call +15005550001 --agent support --from +15005550006 \\
        --machine-detection --var name=Ada --var order=42

The edge is ``--edge`` (default ``$SWITCHBOARD_EDGE``, else ``http://127.0.0.1:8081``, the
admin port, where ``POST /calls`` is served) and the token ``$API_TOKEN`` (never an argument,
so it stays out of shell history and process lists). Prints the edge's answer; exits 0 when
the call was placed, 1 when it was refused (the edge's or Twilio's reason printed), 2 on bad
arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import httpx

__all__ = ["main"]

DEFAULT_EDGE = "http://127.0.0.1:8081"


def _variable(raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {raw!r}")
    return name, value


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="switchboard call", description="Place an outbound call with an agent."
    )
    parser.add_argument("to", help="the number to call, E.164 (+15005550001)")
    parser.add_argument("--agent", help="the agent of AGENTS_FILE (default: the only one)")
    parser.add_argument(
        "--from", dest="from_", required=True, help="one of the agent's numbers, E.164"
    )
    parser.add_argument(
        "--machine-detection",
        action="store_true",
        help="wait for Twilio's answering-machine detection before the agent speaks",
    )
    parser.add_argument(
        "--var",
        action="append",
        type=_variable,
        default=[],
        metavar="NAME=VALUE",
        help="a variable for the agent's instructions and greeting (repeatable)",
    )
    parser.add_argument(
        "--edge", default=os.environ.get("SWITCHBOARD_EDGE", DEFAULT_EDGE), help="edge admin URL"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    token = os.environ.get("API_TOKEN", "")
    if not token:
        print("switchboard call: set API_TOKEN to the edge's API_TOKEN", file=sys.stderr)
        return 2
    body: dict[str, object] = {
        "to": args.to,
        "from": args.from_,
        "machine_detection": args.machine_detection,
        "variables": dict(args.var),
    }
    if args.agent:
        body["agent"] = args.agent
    url = args.edge.rstrip("/") + "/calls"
    try:
        response = httpx.post(
            url, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
    except httpx.HTTPError as exc:
        print(f"switchboard call: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    try:
        answer = response.json()
    except ValueError:
        answer = {"error": response.text[:500]}
    print(json.dumps(answer, indent=2))
    if response.status_code != 201:
        print(f"switchboard call: refused ({response.status_code})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
