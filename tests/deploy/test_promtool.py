"""The alert rules and the Prometheus config pass Prometheus's own checker."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROMTOOL = shutil.which("promtool")

pytestmark = pytest.mark.skipif(
    PROMTOOL is None, reason="needs promtool from Debian's prometheus package (.ci/run)"
)


@pytest.mark.parametrize(
    "rules", ["deploy/prometheus/alerts.yml"], ids=lambda path: Path(path).name
)
def test_alert_rules_pass_promtool(rules: str) -> None:
    assert PROMTOOL is not None
    result = subprocess.run(
        [PROMTOOL, "check", "rules", str(ROOT / rules)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout
