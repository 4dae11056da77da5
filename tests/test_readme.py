"""The README is the front door: its commands must exist. The configuration reference it links
to (docs/configuration.md) must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from services.config_catalog import reference_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CONFIGURATION = (ROOT / "docs" / "configuration.md").read_text()


def test_configuration_table_matches_the_code() -> None:
    match = re.search(r"<!-- config:begin -->\n(.*)\n<!-- config:end -->", CONFIGURATION, re.S)
    assert match, "docs/configuration.md lost its configuration table markers"
    assert match.group(1) == reference_table(), (
        "docs/configuration.md's configuration table is stale: run `make generate`"
    )


def test_readme_links_the_configuration_reference() -> None:
    assert "docs/configuration.md" in README


def test_readme_commands_exist_in_the_makefile() -> None:
    makefile = (ROOT / "Makefile").read_text()
    # `make X` in a code span, or a line of a code block that runs make X.
    for span, line in re.findall(r"`make ([\w-]+)[^`\n]*`|^\s*make ([\w-]+)", README, re.M):
        command = span or line
        assert re.search(rf"^{re.escape(command)}:", makefile, re.M), (
            f"README runs missing `make {command}`"
        )
    assert "make demo" in README and "make test" in README
    assert "make test" in (ROOT / ".ci/run").read_text()
