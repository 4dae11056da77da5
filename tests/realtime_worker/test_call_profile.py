"""How one call is served (call_profile.py): the agent over the global settings, the set-up
hook over both, the call's variables filled in."""

from __future__ import annotations

from services.realtime_worker.call_profile import (
    CallParty,
    CallProfile,
    SetupOverrides,
    call_profile,
    fill_variables,
    greeting_cue,
)
from services.realtime_worker.settings import WorkerSettings
from services.realtime_worker.tools import Tool
from shared.agents import Agent

SETTINGS = WorkerSettings.from_env(
    {
        "OPENAI_REALTIME_URL": "ws://127.0.0.1:1",
        "INSTRUCTIONS": "You are the general line.",
        "VOICE": "alloy",
        "GREETING": "Greet the caller and ask how you can help.",
        "MAX_CALL_DURATION": "300",
        "MAX_TOKENS_PER_CALL": "5000",
    }
)
PARTY = CallParty("CA0123", caller="+15005550001", called="+15005550006", direction="inbound")

LOOKUP = Tool("lookup_order", "Find an order.", {"type": "object"}, "http://tools/lookup")
WEATHER = Tool("weather", "The weather.", {"type": "object"}, "http://tools/weather", 2.0)
CALENDAR = Tool("calendar", "Book a slot.", {"type": "object"}, "http://tools/calendar")
TOOLS = (LOOKUP, WEATHER, CALENDAR)  # TOOLS_FILE's order

SUPPORT = Agent(
    name="support",
    numbers=("+15005550006",),
    instructions="You are the support line.",
    voice="marin",
    greeting="Hello, support here.",
    tools=("lookup_order",),
    transfer_targets={"billing": "+15005550007", "sales": "sip:sales@pbx.example.com"},
    warm_transfer=True,
    max_call_duration_s=600.0,
    max_tokens_per_call=20000,
)


def test_the_global_settings_themselves_are_as_configured() -> None:
    # The other tests rely on these differing from every agent's value.
    assert (SETTINGS.instructions, SETTINGS.voice, SETTINGS.greeting) == (
        "You are the general line.",
        "alloy",
        "Greet the caller and ask how you can help.",
    )
    assert (SETTINGS.max_call_duration_s, SETTINGS.max_tokens_per_call) == (300.0, 5000)


def test_the_agents_fields_override_the_global_settings() -> None:
    profile = call_profile(SETTINGS, SUPPORT, PARTY, None, TOOLS)
    assert profile == CallProfile(
        agent="support",
        instructions="You are the support line.",
        voice="marin",
        greeting_cue=(
            'Open the call by saying exactly this, and nothing more: "Hello, support here."'
        ),
        tools=(LOOKUP,),
        transfer_targets={"billing": "+15005550007", "sales": "sip:sales@pbx.example.com"},
        warm_transfer=True,
        max_call_duration_s=600.0,
        max_tokens_per_call=20000,
        variables={"agent": "support", **PARTY.variables()},
    )


def test_an_agent_without_fields_takes_the_global_settings() -> None:
    profile = call_profile(SETTINGS, Agent("plain"), PARTY)
    assert profile == CallProfile(
        agent="plain",
        instructions="You are the general line.",
        voice="alloy",
        greeting_cue="Greet the caller and ask how you can help.",  # GREETING, as written
        tools=(),
        transfer_targets={},
        warm_transfer=False,
        max_call_duration_s=300.0,
        max_tokens_per_call=5000,
        variables={"agent": "plain", **PARTY.variables()},
    )


def test_a_zero_cap_of_an_agent_is_no_limit_not_the_global_cap() -> None:
    agent = Agent("unlimited", max_call_duration_s=0.0, max_tokens_per_call=0)
    profile = call_profile(SETTINGS, agent, PARTY)
    assert (profile.max_call_duration_s, profile.max_tokens_per_call) == (0.0, 0)


def test_without_any_greeting_the_caller_speaks_first() -> None:
    settings = WorkerSettings.from_env({"OPENAI_REALTIME_URL": "ws://127.0.0.1:1"})
    assert call_profile(settings, Agent("quiet"), PARTY).greeting_cue == ""


def test_an_agents_greeting_is_the_words_wrapped_in_the_cue() -> None:
    cue = call_profile(SETTINGS, Agent("a", greeting="Hi, this is Ada."), PARTY).greeting_cue
    assert cue == greeting_cue("Hi, this is Ada.")
    assert cue == 'Open the call by saying exactly this, and nothing more: "Hi, this is Ada."'


def test_the_hooks_overrides_beat_the_agent() -> None:
    overrides = SetupOverrides(
        instructions="You are Ada's personal line.", greeting="Welcome back, Ada!"
    )
    profile = call_profile(SETTINGS, SUPPORT, PARTY, overrides, TOOLS)
    assert profile.instructions == "You are Ada's personal line."
    assert profile.greeting_cue == greeting_cue("Welcome back, Ada!")
    # What the hook does not override stays the agent's.
    assert (profile.voice, profile.tools, profile.max_tokens_per_call) == (
        "marin",
        (LOOKUP,),
        20000,
    )


def test_the_hooks_overrides_beat_the_global_settings_too() -> None:
    overrides = SetupOverrides(instructions="Hook instructions.", greeting="Hook words.")
    profile = call_profile(SETTINGS, Agent("plain"), PARTY, overrides)
    assert profile.instructions == "Hook instructions."
    # A hook's greeting is words, like an agent's, not an instruction like GREETING.
    assert profile.greeting_cue == greeting_cue("Hook words.")


def test_an_empty_answer_from_the_hook_keeps_the_agents_fields() -> None:
    with_empty = call_profile(SETTINGS, SUPPORT, PARTY, SetupOverrides(), TOOLS)
    assert with_empty == call_profile(SETTINGS, SUPPORT, PARTY, None, TOOLS)


def test_the_calls_variables_fill_instructions_and_greeting() -> None:
    agent = Agent(
        "support",
        instructions=("Agent {agent}; call {call_sid} ({direction}) from {caller} to {called}."),
        greeting="Hello {caller}, you reached {called}.",
    )
    profile = call_profile(SETTINGS, agent, PARTY)
    assert profile.instructions == (
        "Agent support; call CA0123 (inbound) from +15005550001 to +15005550006."
    )
    assert profile.greeting_cue == greeting_cue("Hello +15005550001, you reached +15005550006.")


def test_the_global_instructions_are_filled_too() -> None:
    settings = WorkerSettings.from_env(
        {"OPENAI_REALTIME_URL": "ws://127.0.0.1:1", "INSTRUCTIONS": "The caller is {caller}."}
    )
    assert call_profile(settings, Agent("plain"), PARTY).instructions == (
        "The caller is +15005550001."
    )


def test_the_hooks_variables_fill_instructions_and_greeting() -> None:
    agent = Agent(
        "support",
        instructions="The caller is {name}, customer {customer_id}.",
        greeting="Hello {name}!",
    )
    overrides = SetupOverrides(variables={"name": "Ada", "customer_id": "42"})
    profile = call_profile(SETTINGS, agent, PARTY, overrides)
    assert profile.instructions == "The caller is Ada, customer 42."
    assert profile.greeting_cue == greeting_cue("Hello Ada!")


def test_the_hooks_variables_fill_its_own_instructions_and_greeting() -> None:
    overrides = SetupOverrides(
        instructions="Help {name} from {caller}.", greeting="Hi {name}.", variables={"name": "Bo"}
    )
    profile = call_profile(SETTINGS, SUPPORT, PARTY, overrides)
    assert profile.instructions == "Help Bo from +15005550001."
    assert profile.greeting_cue == greeting_cue("Hi Bo.")


def test_a_hook_variable_of_the_same_name_wins_over_the_calls() -> None:
    overrides = SetupOverrides(variables={"caller": "Ada Lovelace"})
    agent = Agent("a", instructions="Caller: {caller}.")
    assert call_profile(SETTINGS, agent, PARTY, overrides).instructions == "Caller: Ada Lovelace."


def test_unknown_names_and_json_braces_are_left_alone() -> None:
    text = (
        'Answer as {"name": "x", "n": {"a": 1}}. Unknown: {nobody} {Caller} { caller } '
        "{caller-id} {} {1x}. Known: {caller}."
    )
    agent = Agent("a", instructions=text)
    assert call_profile(SETTINGS, agent, PARTY).instructions == (
        'Answer as {"name": "x", "n": {"a": 1}}. Unknown: {nobody} {Caller} { caller } '
        "{caller-id} {} {1x}. Known: +15005550001."
    )


def test_a_value_is_not_filled_again() -> None:
    # A hook's value that looks like a placeholder is inserted as is (no second pass).
    overrides = SetupOverrides(variables={"name": "{caller}", "note": "{note}"})
    agent = Agent("a", instructions="Name {name}; note {note}.")
    assert call_profile(SETTINGS, agent, PARTY, overrides).instructions == (
        "Name {caller}; note {note}."
    )


def test_fill_variables() -> None:
    variables = {"a": "1", "b_2": "two", "_c": ""}
    assert fill_variables("{a}{b_2}{_c}{d}", variables) == "1two{d}"
    assert fill_variables("no braces", variables) == "no braces"
    assert fill_variables("{" + "x" * 65 + "}", {"x" * 65: "long"}) == "{" + "x" * 65 + "}"
    assert fill_variables("{" + "x" * 64 + "}", {"x" * 64: "long"}) == "long"


def test_an_agent_without_a_tools_list_offers_every_tool() -> None:
    assert call_profile(SETTINGS, Agent("default"), PARTY, None, TOOLS).tools == TOOLS


def test_an_agents_tools_are_offered_in_tools_file_order() -> None:
    agent = Agent("a", tools=("calendar", "lookup_order"))
    assert call_profile(SETTINGS, agent, PARTY, None, TOOLS).tools == (LOOKUP, CALENDAR)


def test_an_agent_with_an_empty_tools_list_offers_none() -> None:
    assert call_profile(SETTINGS, Agent("a", tools=()), PARTY, None, TOOLS).tools == ()


def test_a_tool_the_file_lacks_is_not_offered() -> None:
    agent = Agent("a", tools=("weather", "missing"))
    assert call_profile(SETTINGS, agent, PARTY, None, TOOLS).tools == (WEATHER,)


def test_transfer_targets_and_warm_are_copied() -> None:
    targets = {"billing": "+15005550007"}
    agent = Agent("a", transfer_targets=targets, warm_transfer=True)
    profile = call_profile(SETTINGS, agent, PARTY)
    assert (dict(profile.transfer_targets), profile.warm_transfer) == (targets, True)
    targets["sales"] = "+15005550008"  # the profile holds its own copy
    assert dict(profile.transfer_targets) == {"billing": "+15005550007"}


def test_call_party_variables() -> None:
    assert CallParty("CA1").variables() == {
        "call_sid": "CA1",
        "caller": "",
        "called": "",
        "direction": "inbound",
    }
    outbound = CallParty("CA2", "+15005550001", "+15005550006", "outbound-api")
    assert outbound.variables()["direction"] == "outbound-api"


def test_an_outbound_calls_variables_fill_the_voicemail_and_reach_the_tools() -> None:
    agent = Agent(
        "collections",
        instructions="Remind {name} of invoice {invoice}.",
        voicemail="message",
        voicemail_message="Hi {name}, please call us back about invoice {invoice}.",
        fax_or_unknown="hangup",
    )
    party = CallParty(
        "CA9", "+15005550006", "+15005550001", "outbound-api", {"name": "Ada", "invoice": "7"}
    )
    profile = call_profile(SETTINGS, agent, party, SetupOverrides(variables={"invoice": "8"}))
    assert profile.instructions == "Remind Ada of invoice 8."  # the hook's value wins
    assert profile.voicemail_message == "Hi Ada, please call us back about invoice 8."
    assert (profile.voicemail, profile.fax_or_unknown) == ("message", "hangup")
    assert profile.variables["name"] == "Ada" and profile.variables["direction"] == "outbound-api"
