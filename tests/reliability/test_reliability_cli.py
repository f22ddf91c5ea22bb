"""``omniguard check --policy`` with a malformed policy: exit 2 (an error, never 1, which means
"unsafe") and one line saying what is wrong, never a traceback."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from omniguard_plugins.cli import main


@pytest.mark.parametrize(("content", "says"), [
    ("categories: 5\n", "'categories' must be a list"),
    ("drop: 5\n", "'drop' must be a list"),
    ("rename: x\n", "'rename' must map codes to new names"),
    ("- just\n- a list\n", "must be a mapping"),
    ("categories: [{name: 5}]\n", "name and description must be text"),
    ("drop: [S99]\n", "unknown category: S99"),
    ("[[[", "does not parse"),
    (b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary", "is not UTF-8 text"),
])
def test_a_malformed_policy_exits_2_with_one_line(tmp_path, content, says):
    path = tmp_path / "policy.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = CliRunner().invoke(main, ["check", "--text", "hello", "--policy", str(path)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: --policy policy.yaml: ") and says in lines[0]
    assert "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)  # a clean exit, not an escaped exception
