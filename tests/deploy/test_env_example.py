""".env.example: every variable of shared/config.py, and nothing the code does not know."""

from __future__ import annotations

import re

from services.config_catalog import all_variables
from tests.support.deploy import COMPOSE_ONLY_VARIABLES, ROOT, read_env_file

TEXT = (ROOT / ".env.example").read_text()
# Set lines (`VAR=`) and documented defaults (`# VAR=default`).
LISTED = re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", TEXT, re.M)


def test_every_variable_is_listed_once() -> None:
    missing = set(all_variables()) - set(LISTED)
    assert not missing, f".env.example lacks {sorted(missing)}: run `make generate`"
    assert len(LISTED) == len(set(LISTED)), "a variable is listed twice"


def test_every_listed_variable_is_known() -> None:
    unknown = set(LISTED) - set(all_variables()) - COMPOSE_ONLY_VARIABLES
    assert not unknown, f".env.example lists variables no code reads: {sorted(unknown)}"
    assert COMPOSE_ONLY_VARIABLES <= set(LISTED), "document every compose-only variable"


def test_no_secret_has_a_value() -> None:
    values = read_env_file(ROOT / ".env.example")
    for name, (var, _) in all_variables().items():
        if var.secret and name != "REDIS_URL":
            assert values.get(name, "") == "", f"{name} must be empty in an example file"


def test_documented_defaults_match_the_code() -> None:
    for name, default in re.findall(r"^# ([A-Z][A-Z0-9_]*)=(.*)$", TEXT, re.M):
        if name in all_variables():
            assert default == (all_variables()[name][0].default or ""), name
