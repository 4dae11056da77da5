"""AGENTS_FILE and the transfer and set-up hook settings, read by the edge and the worker at
start-up: a bad file stops either with every problem listed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.edge.settings import EdgeSettings
from services.realtime_worker.settings import WorkerSettings
from shared.agents import Agent, Agents
from shared.errors import ConfigError

EDGE_ENV = {"PUBLIC_URL": "https://edge.example.com", "TWILIO_AUTH_TOKEN": "a" * 32}
WORKER_ENV = {"OPENAI_REALTIME_URL": "ws://127.0.0.1:1"}

GOOD_AGENTS = """\
agents:
  - name: support
    numbers: ["+15005550006"]
    tools: [lookup_order]
    transfer_targets: {billing: "+15005550007"}
  - name: front-desk
    numbers: ["*"]
"""

BAD_AGENTS = """\
agents:
  - name: support
    numbers: ["5550006"]
    voice: bob
  - name: sales
    numbers: ["*"]
    warm_transfer: true
    max_call_duration: -5
"""

LOOKUP = {
    "name": "lookup_order",
    "description": "Find an order by its number.",
    "parameters": {"type": "object", "properties": {"order": {"type": "string"}}},
    "url": "http://tools.internal/lookup",
}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _bad_problems(path: Path) -> list[str]:
    return [
        f"{path}: agent 'support': field 'numbers': '5550006' is not an E.164 number",
        f"{path}: agent 'support': field 'voice': expected one of alloy",
        f"{path}: agent 'sales': field 'warm_transfer' is true but there are no transfer_targets",
        f"{path}: agent 'sales': field 'max_call_duration' must be a number from 0 to 86400",
    ]


def _config_error(settings: type[EdgeSettings | WorkerSettings], env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as caught:
        settings.from_env(env)
    return str(caught.value)


# --- a bad AGENTS_FILE ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "env"), [(EdgeSettings, EDGE_ENV), (WorkerSettings, WORKER_ENV)]
)
def test_a_bad_agents_file_stops_edge_and_worker_with_every_problem(
    tmp_path: Path, settings: type[EdgeSettings | WorkerSettings], env: dict[str, str]
) -> None:
    path = _write(tmp_path, "agents.yaml", BAD_AGENTS)
    message = _config_error(settings, env | {"AGENTS_FILE": str(path)})
    assert message.startswith(f"invalid configuration:\n  AGENTS_FILE={str(path)!r}: {path}: ")
    missing = [problem for problem in _bad_problems(path) if problem not in message]
    assert missing == []
    assert message.count(f"{path}: agent ") == 4  # those, and nothing else


@pytest.mark.parametrize(
    ("settings", "env"), [(EdgeSettings, EDGE_ENV), (WorkerSettings, WORKER_ENV)]
)
def test_a_missing_agents_file_is_named(
    tmp_path: Path, settings: type[EdgeSettings | WorkerSettings], env: dict[str, str]
) -> None:
    path = tmp_path / "absent.yaml"
    message = _config_error(settings, env | {"AGENTS_FILE": str(path)})
    assert f"AGENTS_FILE={str(path)!r}: {path}: cannot read the agents file" in message


def test_a_bad_agents_file_is_listed_with_the_other_bad_variables(tmp_path: Path) -> None:
    path = _write(tmp_path, "agents.yaml", BAD_AGENTS)
    message = _config_error(
        EdgeSettings, EDGE_ENV | {"AGENTS_FILE": str(path), "TRANSFER_CALLER_ID": "5550001"}
    )
    assert f"AGENTS_FILE={str(path)!r}: " in message
    assert "TRANSFER_CALLER_ID='5550001': " in message


# --- a good AGENTS_FILE -----------------------------------------------------------------------


def test_the_edge_reads_a_good_agents_file_once(tmp_path: Path) -> None:
    path = _write(tmp_path, "agents.yaml", GOOD_AGENTS)
    settings = EdgeSettings.from_env(EDGE_ENV | {"AGENTS_FILE": str(path)})
    assert settings.agents_file is not None
    assert settings.agents is settings.agents_file
    assert str(settings.agents_file) == str(path)  # the start-up dump shows the path
    assert f"AGENTS_FILE={path}" in settings.describe()
    support = settings.agents.for_number("+15005550006")
    assert support is not None and support.name == "support"
    other = settings.agents.for_number("+15005550099")
    assert other is not None and other.name == "front-desk"


def test_the_worker_reads_a_good_agents_file_with_its_tools(tmp_path: Path) -> None:
    agents = _write(tmp_path, "agents.yaml", GOOD_AGENTS)
    tools = _write(tmp_path, "tools.json", json.dumps([LOOKUP]))
    settings = WorkerSettings.from_env(
        WORKER_ENV | {"AGENTS_FILE": str(agents), "TOOLS_FILE": str(tools)}
    )
    support = settings.agents.named("support")
    assert support is not None
    assert support.tools == ("lookup_order",)
    assert dict(support.transfer_targets) == {"billing": "+15005550007"}


def test_the_worker_reports_an_agents_tool_missing_from_tools_file(tmp_path: Path) -> None:
    text = GOOD_AGENTS.replace("tools: [lookup_order]", "tools: [lookup_order, weather]")
    agents = _write(tmp_path, "agents.yaml", text)
    tools = _write(tmp_path, "tools.json", json.dumps([LOOKUP]))
    message = _config_error(
        WorkerSettings, WORKER_ENV | {"AGENTS_FILE": str(agents), "TOOLS_FILE": str(tools)}
    )
    where = f"named by agent 'support' (field 'tools') of {agents}"
    assert f"TOOLS_FILE does not declare 'weather', {where}" in message
    assert "'lookup_order' is not declared" not in message


def test_the_worker_without_tools_file_reports_every_tool_an_agent_names(tmp_path: Path) -> None:
    agents = _write(tmp_path, "agents.yaml", GOOD_AGENTS)
    message = _config_error(WorkerSettings, WORKER_ENV | {"AGENTS_FILE": str(agents)})
    where = f"named by agent 'support' (field 'tools') of {agents}"
    assert f"TOOLS_FILE does not declare 'lookup_order', {where}" in message


def test_an_invalid_tools_file_is_not_also_reported_as_missing_the_agents_tools(
    tmp_path: Path,
) -> None:
    """lookup_order is declared in TOOLS_FILE, only invalid there: the one problem to fix is the
    tool's url, not a claim that the tool is not declared (an invalid variable is reported
    once, as from_env does for every other follow-on problem)."""
    agents = _write(tmp_path, "agents.yaml", GOOD_AGENTS)
    tools = _write(tmp_path, "tools.json", json.dumps([LOOKUP | {"url": "nowhere"}]))
    message = _config_error(
        WorkerSettings, WORKER_ENV | {"AGENTS_FILE": str(agents), "TOOLS_FILE": str(tools)}
    )
    assert f"TOOLS_FILE={str(tools)!r}: {tools}: tool 'lookup_order': field 'url'" in message
    assert "TOOLS_FILE does not declare" not in message


def test_the_edge_does_not_check_tool_names(tmp_path: Path) -> None:
    # The edge does not read TOOLS_FILE: the agents file alone is checked there.
    agents = _write(tmp_path, "agents.yaml", GOOD_AGENTS)
    settings = EdgeSettings.from_env(EDGE_ENV | {"AGENTS_FILE": str(agents)})
    assert [agent.name for agent in settings.agents.agents] == ["support", "front-desk"]


# --- without AGENTS_FILE ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "env"), [(EdgeSettings, EDGE_ENV), (WorkerSettings, WORKER_ENV)]
)
@pytest.mark.parametrize("agents_file", [None, ""])
def test_without_agents_file_one_default_agent_answers_every_number(
    settings: type[EdgeSettings | WorkerSettings],
    env: dict[str, str],
    agents_file: str | None,
) -> None:
    if agents_file is not None:
        env = env | {"AGENTS_FILE": agents_file}
    loaded = settings.from_env(env)
    assert loaded.agents_file is None
    agents = loaded.agents
    assert agents == Agents((Agent("default"),))
    (agent,) = agents.agents
    assert (agent.name, agent.numbers, agent.tools) == ("default", ("*",), None)
    assert agents.for_number("+15005550006") is agent
    assert agents.for_number("+442071838750") is agent
    assert agents.named("default") is agent


# --- the set-up hook's timeout ----------------------------------------------------------------


@pytest.mark.parametrize(("setup", "connect"), [("10", None), ("2", "2"), ("5", "3"), ("1", "1")])
def test_a_setup_timeout_not_under_the_connect_timeout_is_refused(
    setup: str, connect: str | None
) -> None:
    env = WORKER_ENV | {"CALL_SETUP_TIMEOUT": setup}
    if connect is not None:
        env["REALTIME_CONNECT_TIMEOUT"] = connect
    message = _config_error(WorkerSettings, env)
    shown = connect or "10"
    assert (
        f"CALL_SETUP_TIMEOUT={setup} must be under REALTIME_CONNECT_TIMEOUT={shown}: the "
        "session waits for the hook"
    ) in message


@pytest.mark.parametrize(("setup", "connect"), [("9.99", "10"), ("0.05", "1"), ("1.5", "2")])
def test_a_setup_timeout_under_the_connect_timeout_is_accepted(setup: str, connect: str) -> None:
    settings = WorkerSettings.from_env(
        WORKER_ENV | {"CALL_SETUP_TIMEOUT": setup, "REALTIME_CONNECT_TIMEOUT": connect}
    )
    assert settings.call_setup_timeout_s == float(setup)
    assert settings.realtime_connect_timeout_s == float(connect)


def test_the_setup_hook_defaults() -> None:
    settings = WorkerSettings.from_env(WORKER_ENV)
    assert (settings.call_setup_url, settings.call_setup_timeout_s) == (None, 1.0)


@pytest.mark.parametrize("setup", ["0.01", "10.5", "soon"])
def test_a_setup_timeout_out_of_range_is_refused(setup: str) -> None:
    message = _config_error(WorkerSettings, WORKER_ENV | {"CALL_SETUP_TIMEOUT": setup})
    assert f"CALL_SETUP_TIMEOUT={setup!r}: " in message
    # An invalid value is reported once, not again as "not under the connect timeout".
    assert "must be under REALTIME_CONNECT_TIMEOUT" not in message


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [("https://hooks.example.com/setup", "https://hooks.example.com/setup"), ("", None)],
)
def test_call_setup_url(raw: str, parsed: str | None) -> None:
    settings = WorkerSettings.from_env(WORKER_ENV | {"CALL_SETUP_URL": raw})
    assert settings.call_setup_url == parsed


def test_a_call_setup_url_that_is_not_http_is_refused() -> None:
    message = _config_error(WorkerSettings, WORKER_ENV | {"CALL_SETUP_URL": "ftp://hooks/x"})
    assert "CALL_SETUP_URL='ftp://hooks/x': " in message


# --- the transfer settings of the edge --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "parsed"), [("+15005550001", "+15005550001"), ("", None), (None, None)]
)
def test_transfer_caller_id_is_an_e164_number_or_unset(raw: str | None, parsed: str | None) -> None:
    env = EDGE_ENV if raw is None else EDGE_ENV | {"TRANSFER_CALLER_ID": raw}
    assert EdgeSettings.from_env(env).transfer_caller_id == parsed


@pytest.mark.parametrize(
    "raw", ["15005550001", "+1 500 555 0001", "+05005550001", "sip:desk@pbx.example.com", "+1"]
)
def test_transfer_caller_id_that_is_not_e164_is_refused(raw: str) -> None:
    message = _config_error(EdgeSettings, EDGE_ENV | {"TRANSFER_CALLER_ID": raw})
    assert f"TRANSFER_CALLER_ID={raw!r}: expected an E.164 number (+15005550006) or empty" in (
        message
    )


def test_transfer_ring_timeout_bounds() -> None:
    assert EdgeSettings.from_env(EDGE_ENV).transfer_ring_timeout_s == 30
    shortest = EdgeSettings.from_env(EDGE_ENV | {"TRANSFER_RING_TIMEOUT": "5"})
    assert shortest.transfer_ring_timeout_s == 5
    for raw in ("4", "601"):
        message = _config_error(EdgeSettings, EDGE_ENV | {"TRANSFER_RING_TIMEOUT": raw})
        assert f"TRANSFER_RING_TIMEOUT={raw!r}: " in message
