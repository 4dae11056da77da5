"""The README is the front door: its commands and configuration table must stay true."""

from __future__ import annotations

import re
from pathlib import Path

from shared.config import reference_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_configuration_table_matches_the_code() -> None:
    match = re.search(r"<!-- config:begin -->\n(.*)\n<!-- config:end -->", README, re.S)
    assert match, "README lost its configuration table markers"
    assert match.group(1) == reference_table(), (
        "README configuration table is stale: run `make config-table`"
    )


def test_readme_commands_exist_in_the_makefile() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for command in re.findall(r"^make (\w+)$", README, re.M):
        assert re.search(rf"^{command}:", makefile, re.M), f"README runs missing `make {command}`"
    assert "make demo" in README and "make test" in README
    assert "make test" in (ROOT / ".ci/run").read_text()
