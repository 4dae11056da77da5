"""``switchboard``: the project's programs under one command (a console script, installed by
``pip install``; ``python -m services.cli`` works the same).

    switchboard doctor --tone        # check a deployment (python -m services.doctor)
    switchboard edge                 # run the edge, configured from the environment
    switchboard worker               # run a realtime worker
    switchboard demo                 # one simulated call end to end
    switchboard realtime-sim --help  # the local Realtime server
    switchboard call-sim --help      # the Twilio call simulator
    switchboard bench --quick        # the load benchmark
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final

__all__ = ["COMMANDS", "main"]

#: command → (module with ``main``, whether ``main`` takes argv, what it does)
COMMANDS: Final[dict[str, tuple[str, bool, str]]] = {
    "doctor": (
        "services.doctor.__main__",
        True,
        "check a deployment, with the fix for each problem",
    ),
    "edge": ("services.edge.__main__", False, "run the edge (configured from the environment)"),
    "worker": ("services.realtime_worker.__main__", False, "run a realtime worker"),
    "demo": ("services.demo", True, "place one simulated call end to end"),
    "realtime-sim": ("services.realtime_sim.__main__", True, "run the local Realtime server"),
    "call-sim": ("services.call_sim.__main__", True, "place simulated Twilio calls"),
    "bench": ("services.bench.__main__", True, "load-test the bridge against a direct relay"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {what}" for name, (_, _, what) in COMMANDS.items()]
    return "usage: switchboard COMMAND [ARGS...]\n\ncommands:\n" + "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"switchboard: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module_name, takes_argv, _ = COMMANDS[name]
    if rest and not takes_argv:
        print(
            f"switchboard {name} takes no arguments: it is configured from the environment "
            "(README, Configuration)",
            file=sys.stderr,
        )
        return 2
    run: Callable[..., Any] = importlib.import_module(module_name).main
    result = run(rest) if takes_argv else run()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
