"""AGENTS_FILE (shared/agents.py): which agent answers which number, and every problem of a bad
file listed at once, by file, agent and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shared.agents import (
    ANY_NUMBER,
    VOICES,
    Agent,
    Agents,
    AgentsError,
    is_e164,
    is_sip_uri,
    load_agents,
    parse_agents,
)

GOOD: dict[str, object] = {
    "agents": [
        {
            "name": "support",
            "numbers": ["+15005550006", "+15005550010"],
            "instructions": "You are the support line of Example Corp.",
            "voice": "marin",
            "greeting": "Hello, support here. How can I help?",
            "tools": ["lookup_order", "weather", "lookup_order"],
            "transfer_targets": {
                "billing": "+15005550007",
                "sales": "sip:sales@pbx.example.com",
            },
            "warm_transfer": True,
            "max_call_duration": 600,
            "max_tokens_per_call": 20000,
        },
        {"name": "front-desk", "numbers": ["*"]},
    ]
}

GOOD_YAML = """\
# Two agents: one for the support numbers, one for every other number.
agents:
  - name: support
    numbers: ["+15005550006", "+15005550010"]
    instructions: "You are the support line of Example Corp."
    voice: marin
    greeting: "Hello, support here. How can I help?"
    tools: [lookup_order, weather, lookup_order]
    transfer_targets:
      billing: "+15005550007"
      sales: "sip:sales@pbx.example.com"
    warm_transfer: true
    max_call_duration: 600
    max_tokens_per_call: 20000
  - name: front-desk
    numbers: ["*"]
"""

SUPPORT = Agent(
    name="support",
    numbers=("+15005550006", "+15005550010"),
    instructions="You are the support line of Example Corp.",
    voice="marin",
    greeting="Hello, support here. How can I help?",
    tools=("lookup_order", "weather"),
    transfer_targets={"billing": "+15005550007", "sales": "sip:sales@pbx.example.com"},
    warm_transfer=True,
    max_call_duration_s=600.0,
    max_tokens_per_call=20000,
)
FRONT_DESK = Agent(name="front-desk", numbers=("*",), tools=())


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --- a good file ------------------------------------------------------------------------------


def test_a_yaml_file_and_the_same_as_json_load_to_the_same_agents(tmp_path: Path) -> None:
    yaml_path = _write(tmp_path, "agents.yaml", GOOD_YAML)
    json_path = _write(tmp_path, "agents.json", json.dumps(GOOD))
    from_yaml = load_agents(yaml_path)
    from_json = load_agents(json_path)
    assert from_yaml.agents == from_json.agents == (SUPPORT, FRONT_DESK)
    # Each remembers its file (the start-up dump shows it).
    assert (from_yaml.path, str(from_yaml)) == (str(yaml_path), str(yaml_path))
    assert (from_json.path, str(from_json)) == (str(json_path), str(json_path))


def test_field_types_after_loading(tmp_path: Path) -> None:
    support = load_agents(_write(tmp_path, "agents.yaml", GOOD_YAML)).agents[0]
    # The caps are typed as the worker's settings are: seconds as float, tokens as int.
    assert type(support.max_call_duration_s) is float
    assert type(support.max_tokens_per_call) is int
    assert type(support.numbers) is tuple and type(support.tools) is tuple


def test_for_number_picks_the_exact_number_then_the_any_number_agent(tmp_path: Path) -> None:
    agents = load_agents(_write(tmp_path, "agents.yaml", GOOD_YAML))
    assert agents.for_number("+15005550006") == SUPPORT
    assert agents.for_number("+15005550010") == SUPPORT
    assert agents.for_number("+15005550099") == FRONT_DESK
    assert agents.for_number("") == FRONT_DESK  # no To at all: the "*" agent


def test_an_exact_number_beats_a_any_number_agent_listed_before_it() -> None:
    anyone = Agent("anyone", numbers=(ANY_NUMBER,))
    sales = Agent("sales", numbers=("+15005550007",))
    agents = Agents((anyone, sales))
    assert agents.for_number("+15005550007") is sales
    assert agents.for_number("+15005550008") is anyone


def test_for_number_is_none_without_a_match_and_without_a_any_number_agent() -> None:
    agents = Agents((Agent("sales", numbers=("+15005550007",)),))
    assert agents.for_number("+15005550008") is None
    assert agents.for_number("+1500555000") is None  # a prefix is not the number
    assert agents.for_number("15005550007") is None  # nor the digits without "+"
    assert Agents(()).for_number("+15005550007") is None


def test_named_finds_an_agent_by_name_only(tmp_path: Path) -> None:
    agents = load_agents(_write(tmp_path, "agents.yaml", GOOD_YAML))
    assert agents.named("support") == SUPPORT
    assert agents.named("front-desk") == FRONT_DESK
    assert agents.named("Support") is None
    assert agents.named("+15005550006") is None


def test_an_agent_with_only_name_and_numbers_takes_the_defaults() -> None:
    agents = parse_agents({"agents": [{"name": "minimal", "numbers": ["+15005550006"]}]})
    (agent,) = agents.agents
    assert agent == Agent(
        name="minimal",
        numbers=("+15005550006",),
        instructions=None,
        voice=None,
        greeting=None,
        tools=(),  # an agent of the file without tools offers none of TOOLS_FILE's
        transfer_targets={},
        warm_transfer=False,
        max_call_duration_s=None,
        max_tokens_per_call=None,
    )
    assert agents.path == "AGENTS_FILE"  # parsed without a file: the variable's name


def test_the_dataclass_defaults_are_the_default_agent() -> None:
    agent = Agent("default")
    assert agent.numbers == ("*",)
    assert agent.tools is None  # None: every tool of TOOLS_FILE
    assert (agent.instructions, agent.voice, agent.greeting) == (None, None, None)
    assert (agent.max_call_duration_s, agent.max_tokens_per_call) == (None, None)
    assert (dict(agent.transfer_targets), agent.warm_transfer) == ({}, False)


@pytest.mark.parametrize("voice", [*VOICES, "voice_abc123"])
def test_every_realtime_voice_and_a_custom_voice_id_are_accepted(voice: str) -> None:
    agents = parse_agents({"agents": [{"name": "a", "numbers": ["*"], "voice": voice}]})
    assert agents.agents[0].voice == voice


def test_caps_at_their_bounds_are_accepted() -> None:
    entries = [
        {"name": "low", "numbers": ["+15005550006"], "max_call_duration": 0},
        {
            "name": "high",
            "numbers": ["*"],
            "max_call_duration": 86400,
            "max_tokens_per_call": 100_000_000,
        },
    ]
    low, high = parse_agents({"agents": entries}).agents
    assert (low.max_call_duration_s, low.max_tokens_per_call) == (0.0, None)
    assert (high.max_call_duration_s, high.max_tokens_per_call) == (86400.0, 100_000_000)


# --- a bad file -------------------------------------------------------------------------------

BAD_YAML = """\
agents:
  - name: support
    numbers: ["+15005550006", "5550006"]
    voice: bob
    colour: blue
  - name: sales
    numbers: ["+15005550006", "*"]
    transfer_targets:
      "bad name!": "+15005550007"
      billing: "tel:+15005550007"
  - name: front
    numbers: ["*"]
    warm_transfer: true
  - name: support
    numbers: ["+15005550008"]
    tools: lookup_order
    max_call_duration: 86401
    max_tokens_per_call: -1
  - just a string
  - name: Bad Name
    numbers: ["+15005550009"]
  - name: nonumbers
"""


def _bad_file_problems(path: Path) -> list[str]:
    voices = ", ".join(VOICES)
    return [
        f"{path}: agent 'support': unknown field 'colour'",
        f"{path}: agent 'support': field 'numbers': '5550006' is not an E.164 number (+ then up "
        'to 15 digits, e.g. "+15005550006") or "*"',
        f"{path}: agent 'support': field 'voice': expected one of {voices}, or a custom voice "
        "id voice_…",
        f"{path}: agent 'sales': field 'transfer_targets': name 'bad name!' must be 1 to 64 "
        "letters, digits, '_' or '-'",
        f"{path}: agent 'sales': field 'transfer_targets': billing: 'tel:+15005550007' is "
        "neither an E.164 number (+15005550007) nor a sip: URI (sip:sales@pbx.example.com)",
        f"{path}: agent 'sales': field 'numbers': +15005550006 is answered by agent 'support' "
        "already; a number has one agent",
        f"{path}: agent 'front': field 'warm_transfer' is true but there are no transfer_targets",
        f"{path}: agent 'front': field 'numbers': '*' (every other number) is answered by "
        "agent 'sales' already; a number has one agent",
        f"{path}: agent 'support': field 'tools' must be a list of tool names from TOOLS_FILE",
        f"{path}: agent 'support': field 'max_call_duration' must be a number from 0 to 86400",
        f"{path}: agent 'support': field 'max_tokens_per_call' must be a whole number from 0 "
        "to 100000000",
        f"{path}: agent 'support': field 'name': declared twice",
        f"{path}: agent #5: expected a mapping of fields",
        f"{path}: agent 'Bad Name': field 'name' must be 1 to 64 lower-case letters, digits, "
        "'_' or '-'",
        f"{path}: agent 'nonumbers': field 'numbers' must be a list of E.164 numbers "
        '(+15005550006) or "*"',
    ]


def test_a_bad_file_lists_every_problem_by_file_agent_and_field(tmp_path: Path) -> None:
    path = _write(tmp_path, "agents.yaml", BAD_YAML)
    with pytest.raises(AgentsError) as caught:
        load_agents(path)
    message = str(caught.value)
    expected = _bad_file_problems(path)
    missing = [problem for problem in expected if problem not in message]
    assert missing == []
    # Nothing else, in the order of the file.
    assert message == "; ".join(expected)


def test_the_same_bad_file_as_json_reports_the_same_problems(tmp_path: Path) -> None:
    json_path = _write(tmp_path, "agents.json", json.dumps(yaml.safe_load(BAD_YAML)))
    message = str(pytest.raises(AgentsError, load_agents, json_path).value)
    assert message == "; ".join(_bad_file_problems(json_path))


def test_an_empty_list_of_agents_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "agents.yaml", "agents: []\n")
    message = str(pytest.raises(AgentsError, load_agents, path).value)
    assert message == f"{path}: no agents: declare at least one"


@pytest.mark.parametrize(
    "text",
    [
        "",  # an empty file
        "- name: a\n  numbers: ['*']\n",  # a list, not a mapping
        "agents: {name: a}\n",  # agents not a list
        "agents: []\ntools: []\n",  # another key besides agents
        "42\n",
    ],
)
def test_a_file_that_is_not_a_mapping_of_agents_is_refused(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, "agents.yaml", text)
    message = str(pytest.raises(AgentsError, load_agents, path).value)
    assert message == f"{path}: expected a mapping with one key, agents: a list of agents"


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "agents.yaml"
    message = str(pytest.raises(AgentsError, load_agents, path).value)
    assert message == f"{path}: cannot read the agents file: No such file or directory"


def test_invalid_yaml_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "agents.yaml", "agents: [\n  - name: a\n    numbers: ['*'\n")
    message = str(pytest.raises(AgentsError, load_agents, path).value)
    assert message.startswith(f"{path}: not valid YAML (or JSON): ")


def test_an_unquoted_number_in_yaml_is_refused_not_taken_as_something_else(
    tmp_path: Path,
) -> None:
    # YAML reads +15005550006 without quotes as an integer: the file must not load.
    path = _write(tmp_path, "agents.yaml", "agents:\n  - name: a\n    numbers: [+15005550006]\n")
    message = str(pytest.raises(AgentsError, load_agents, path).value)
    assert message.startswith(f"{path}: agent 'a': field 'numbers': 15005550006 is not an E.164")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"numbers": []}, "field 'numbers' must be a list of E.164 numbers"),
        ({"numbers": "+15005550006"}, "field 'numbers' must be a list of E.164 numbers"),
        ({"numbers": ["+15005550006", "+15005550006"]}, "+15005550006 is listed twice"),
        ({"numbers": ["+05005550006"]}, "'+05005550006' is not an E.164 number"),
        ({"numbers": ["+1234567890123456"]}, "'+1234567890123456' is not an E.164 number"),
        ({"numbers": [15005550006]}, "15005550006 is not an E.164 number"),
        ({"instructions": "   "}, "field 'instructions' must be a non-empty string"),
        ({"instructions": 7}, "field 'instructions' must be a non-empty string"),
        ({"greeting": "x" * 1001}, "field 'greeting' is longer than 1000 characters"),
        ({"voice": "Marin"}, "field 'voice': expected one of alloy"),
        ({"tools": ["lookup_order", ""]}, "field 'tools' must be a list of tool names"),
        ({"tools": None}, "field 'tools' must be a list of tool names"),
        ({"transfer_targets": ["+15005550007"]}, "field 'transfer_targets' must map names"),
        (
            {"transfer_targets": {"billing": "sip:"}},
            "field 'transfer_targets': billing: 'sip:' is neither",
        ),
        ({"warm_transfer": "yes"}, "field 'warm_transfer' must be true or false"),
        ({"max_call_duration": -1}, "field 'max_call_duration' must be a number from 0 to 86400"),
        ({"max_call_duration": True}, "field 'max_call_duration' must be a number"),
        ({"max_call_duration": "60"}, "field 'max_call_duration' must be a number"),
        (
            {"max_tokens_per_call": 100_000_001},
            "field 'max_tokens_per_call' must be a whole number",
        ),
    ],
)
def test_each_bad_field_is_named(change: dict[str, object], problem: str) -> None:
    entry = {"name": "a", "numbers": ["*"], **change}
    message = str(pytest.raises(AgentsError, parse_agents, {"agents": [entry]}).value)
    assert message.startswith("AGENTS_FILE: agent 'a': ")
    assert problem in message


def test_max_tokens_per_call_must_be_a_whole_number() -> None:
    """MAX_TOKENS_PER_CALL refuses 2.5 (int_in); an agent's cap must not silently become 2."""
    entry = {"name": "a", "numbers": ["*"], "max_tokens_per_call": 2.5}
    with pytest.raises(AgentsError) as caught:
        parse_agents({"agents": [entry]})
    assert "agent 'a': field 'max_tokens_per_call'" in str(caught.value)


def test_a_good_agent_next_to_a_bad_one_does_not_hide_the_problem() -> None:
    entries = [{"name": "good", "numbers": ["*"]}, {"name": "bad", "numbers": ["+1"]}]
    message = str(pytest.raises(AgentsError, parse_agents, {"agents": entries}).value)
    assert message == (
        "AGENTS_FILE: agent 'bad': field 'numbers': '+1' is not an E.164 number (+ then up to "
        '15 digits, e.g. "+15005550006") or "*"'
    )


# --- tools named by agents --------------------------------------------------------------------


def test_unknown_tools_lists_each_unknown_tool_by_agent(tmp_path: Path) -> None:
    path = _write(tmp_path, "agents.yaml", GOOD_YAML)
    agents = load_agents(path)
    assert agents.unknown_tools(["lookup_order", "weather"]) == []
    where = f"named by agent 'support' (field 'tools') of {path}"
    assert agents.unknown_tools(iter(["lookup_order"])) == [
        f"TOOLS_FILE does not declare 'weather', {where}"
    ]
    assert agents.unknown_tools([]) == [
        f"TOOLS_FILE does not declare 'lookup_order', {where}",
        f"TOOLS_FILE does not declare 'weather', {where}",
    ]


def test_unknown_tools_of_several_agents_and_of_agents_without_a_file() -> None:
    agents = Agents(
        (
            Agent("a", numbers=("+15005550006",), tools=("x", "y")),
            Agent("b", numbers=("*",), tools=("y", "z")),
            Agent("default"),  # tools None: every tool of TOOLS_FILE, nothing to check
        )
    )
    assert agents.unknown_tools(["y"]) == [
        "TOOLS_FILE does not declare 'x', named by agent 'a' (field 'tools') of AGENTS_FILE",
        "TOOLS_FILE does not declare 'z', named by agent 'b' (field 'tools') of AGENTS_FILE",
    ]


# --- addresses --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("+15005550006", True),
        ("+12", True),  # the shortest: a country code and one digit
        ("+123456789012345", True),  # 15 digits, the most E.164 allows
        ("+1234567890123456", False),  # 16 digits
        ("+1", False),
        ("+", False),
        ("", False),
        ("15005550006", False),  # no "+"
        ("+05005550006", False),  # a country code never starts with 0
        ("+1 500 555 0006", False),
        ("+1-500-555-0006", False),
        ("+15005550006\n", False),
        (" +15005550006", False),
        ("*", False),
        ("sip:alice@pbx.example.com", False),
    ],
)
def test_is_e164(value: str, valid: bool) -> None:
    assert is_e164(value) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("sip:sales@pbx.example.com", True),
        ("sips:sales@pbx.example.com", True),
        ("sip:sales@pbx.example.com;transport=tls", True),
        ("sips:sales@pbx.example.com:5061;transport=tls", True),
        ("sip:pbx.example.com", True),  # no user: the host itself
        ("sip:+15005550007@pbx.example.com", True),
        ("sip:sales@10.0.0.5:5060", True),
        ("sip:sales@[2001:db8::1]", True),
        ("sip:", False),  # no host
        ("sip:sales@", False),  # a user but no host
        ("sips:", False),
        ("sip:@pbx.example.com", False),  # an empty user
        ("sip:sales team@pbx.example.com", False),  # a space in the user
        ("sip: sales@pbx.example.com", False),
        ("sip:sales@pbx.example.com ", False),
        ("sip:sales@pbx example.com", False),
        ("sip:sales@pbx.example.com;transport=tls extra", False),
        ('sip:"sales"@pbx.example.com', False),
        ("sip:<sales@pbx.example.com>", False),
        ("tel:+15005550007", False),
        ("sales@pbx.example.com", False),
        ("http://pbx.example.com", False),
        ("+15005550007", False),
    ],
)
def test_is_sip_uri(value: str, valid: bool) -> None:
    assert is_sip_uri(value) is valid


def test_sip_and_number_targets_both_load() -> None:
    targets = {
        "billing": "+15005550007",
        "sales": "sip:sales@pbx.example.com;transport=tls",
        "secure": "sips:desk@pbx.example.com",
        "Night_Desk-2": "sip:pbx.example.com",
    }
    entry = {"name": "a", "numbers": ["*"], "transfer_targets": targets}
    (agent,) = parse_agents({"agents": [entry]}).agents
    assert dict(agent.transfer_targets) == targets
