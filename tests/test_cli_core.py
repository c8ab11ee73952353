"""Start-up cost and entry points of the CLI: --help, --version and plugins must not import heavy libraries."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sami_toolkit import __version__

HEAVY = ("torch", "transformers", "deepspeed", "vllm", "litellm", "datasets")

PROBE = """
import sys
from sami_toolkit.cli import cli
try:
    cli.main(args=sys.argv[1:], prog_name="sami-kit")
except SystemExit:
    pass
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print("HEAVY:" + ",".join(heavy), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["plugins"], ["plugins", "--all", "--json"]])
def test_light_commands_do_not_import_heavy_libraries(args):
    result = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), *args], capture_output=True,
                            text=True, timeout=60, env={**os.environ})
    assert "HEAVY:" in result.stderr, result.stderr
    heavy_line = [line for line in result.stderr.splitlines() if line.startswith("HEAVY:")][0]
    assert heavy_line == "HEAVY:", f"{args} imported {heavy_line[6:]}"


def test_version_and_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "sami_toolkit", "--version"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_unknown_command_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "sami_toolkit", "no-such-command"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "No such command" in result.stderr and "Traceback" not in result.stderr
