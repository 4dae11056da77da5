"""``switchboard``: the project's programs under one command (a console script, installed by
``pip install``; ``python -m services.cli`` works the same).

    switchboard doctor --tone        # check a deployment (python -m services.doctor)
    switchboard edge                 # run the edge, configured from the environment
    switchboard worker               # run a realtime worker
    switchboard call +1555… --from +1555… --agent support   # place a call (POST /calls)
    switchboard demo                 # one simulated call end to end           [sim]
    switchboard realtime-sim --help  # the local Realtime server               [sim]
    switchboard call-sim --help      # the Twilio call simulator
    switchboard twilio-api --help    # the stand-in for Twilio's REST API (POST /calls' tests)
    switchboard bench --quick        # the load benchmark                      [sim]

Every image and every install carries the whole ``services`` package, but the commands marked
``[sim]`` need the ``sim`` extra's packages (openai, pydantic), which the edge and
worker images leave out. Before running one, the script checks that its extra is installed;
where it is not, it exits 2 with one line saying what to install, instead of an ImportError.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["COMMANDS", "EXTRAS", "Command", "main", "missing_modules"]

#: extra → the modules it adds to the runtime dependencies (pyproject.toml's
#: [project.optional-dependencies]; tests/test_cli.py checks the two agree).
EXTRAS: Final[dict[str, tuple[str, ...]]] = {
    "sim": ("openai", "pydantic"),
}


@dataclass(frozen=True)
class Command:
    module: str  # has ``main``
    takes_argv: bool  # ``main(argv)`` rather than ``main()``
    what: str
    extra: str | None = None  # the extra whose packages it needs, if any


COMMANDS: Final[dict[str, Command]] = {
    "doctor": Command(
        "services.doctor.__main__", True, "check a deployment, with the fix for each problem"
    ),
    "edge": Command(
        "services.edge.__main__", False, "run the edge (configured from the environment)"
    ),
    "worker": Command("services.realtime_worker.__main__", False, "run a realtime worker"),
    "call": Command("services.call_cli", True, "place an outbound call through an edge"),
    "demo": Command("services.demo", True, "place one simulated call end to end", "sim"),
    "realtime-sim": Command(
        "services.realtime_sim.__main__", True, "run the local Realtime server", "sim"
    ),
    "call-sim": Command("services.call_sim.__main__", True, "place simulated Twilio calls"),
    "twilio-api": Command(
        "services.call_sim.twilio_api", True, "run the stand-in for Twilio's REST API"
    ),
    "bench": Command(
        "services.bench.__main__",
        True,
        "load-test the bridge against a direct relay",
        "sim",
    ),
}


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here (found without importing them)."""
    return [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]


def install_hint(name: str, extra: str, missing: Sequence[str]) -> str:
    return (
        f"switchboard {name}: needs the '{extra}' extra, not installed here (missing: "
        f"{', '.join(missing)}): pip install 'switchboard[{extra}]'"
    )


def usage() -> str:
    name_width = max(map(len, COMMANDS))
    what_width = max(len(command.what) for command in COMMANDS.values())
    lines = []
    extras: dict[str, bool] = {}  # extra → installed here
    for name, command in COMMANDS.items():
        line = f"  {name:<{name_width}}  {command.what:<{what_width}}"
        if command.extra is not None:
            installed = extras.setdefault(command.extra, not missing_modules(command.extra))
            line += f"  [{command.extra}{'' if installed else ', not installed'}]"
        lines.append(line.rstrip())
    lines.append("")
    for extra, installed in extras.items():
        needs = f"[{extra}]: needs the {extra} extra ({', '.join(EXTRAS[extra])})"
        if installed:
            lines.append(f"{needs}, installed here")
        else:
            lines.append(f"{needs}, not installed here: pip install 'switchboard[{extra}]'")
    lines.append("bench draws its PNG only with the bench extra too: 'switchboard[sim,bench]'")
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
    command = COMMANDS[name]
    if rest and not command.takes_argv:
        print(
            f"switchboard {name} takes no arguments: it is configured from the environment "
            "(docs/configuration.md)",
            file=sys.stderr,
        )
        return 2
    if command.extra is not None:
        missing = missing_modules(command.extra)
        if missing:
            print(install_hint(name, command.extra, missing), file=sys.stderr)
            return 2
    try:
        program = importlib.import_module(command.module)
    except ModuleNotFoundError as exc:
        # A module of the extra that was found above but cannot be imported (half installed).
        top = (exc.name or "").partition(".")[0]
        if command.extra is None or top not in EXTRAS[command.extra]:
            raise
        print(install_hint(name, command.extra, [top]), file=sys.stderr)
        return 2
    run: Callable[..., Any] = program.main
    result = run(rest) if command.takes_argv else run()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
