"""Start-up cost and entry points of the CLI: --help, --version and plugins must not import heavy libraries."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sami_toolkit import __version__, hookimpl

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


def test_importing_the_facade_and_a_plugin_module_is_light():
    """``import sami_toolkit`` (and what a plugin's hookimpl module does with it) imports no heavy library and no
    layer above core: the facade resolves everything else on first access."""
    code = ("import sys\nimport sami_toolkit\nfrom sami_toolkit import hookimpl, __version__\n"
            "import sami_kit_litellm, sami_kit_vllm, sami_kit_deepspeed\n"
            f"heavy = sorted(m for m in {HEAVY!r} if m in sys.modules)\n"
            "layers = sorted(m for m in sys.modules if m.startswith('sami_toolkit.') and not m.startswith("
            "('sami_toolkit.core', 'sami_toolkit.plugins')))\n"
            "print('HEAVY:' + ','.join(heavy)); print('LAYERS:' + ','.join(layers))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "HEAVY:\n" in result.stdout, result.stdout
    assert "LAYERS:\n" in result.stdout, result.stdout


def test_every_public_name_of_the_facade_resolves():
    import sami_toolkit

    missing = []
    for name in sami_toolkit.__all__:
        try:
            getattr(sami_toolkit, name)
        except (AttributeError, ImportError) as exc:
            missing.append(f"{name}: {exc}")
    assert missing == []
    assert sami_toolkit.hookimpl is __import__("sami_toolkit.core.hookspecs", fromlist=["hookimpl"]).hookimpl
    from sami_toolkit.core.version import __version__ as core_version

    assert sami_toolkit.__version__ == core_version == __version__
    with pytest.raises(AttributeError):
        sami_toolkit.get_registry  # noqa: B018 - the process-wide registry is gone


def test_facade_get_component_builds_from_a_fresh_or_the_given_registry():
    from sami_toolkit import get_component, load_plugins
    from sami_toolkit.testing import FakesPlugin

    registry = load_plugins(extra_plugins=[("fakes", FakesPlugin())])
    assert get_component("samplers", "echo", {"max_chars": 3}, registry=registry).generate("m", ["abcdef"]) == ["def"]
    from sami_toolkit.core.errors import UnknownComponentError

    with pytest.raises(UnknownComponentError):
        get_component("samplers", "echo")  # a fresh default registry: the fakes are not installed plugins


# ------------------------------------------------------------------------ the top-level guard (issue 14 §3)
class Crashing:
    """A plugin whose command fails in every way a command can: a bug, Ctrl-C, click's Abort, a gate exit."""

    @hookimpl
    def register_commands(self, cli):
        import click

        @cli.command("crash")
        @click.option("--how", default="bug")
        def crash(how):
            if how == "interrupt":
                raise KeyboardInterrupt
            if how == "abort":
                raise click.Abort()
            if how == "gate":
                raise SystemExit(1)  # a deliberate exit 1 (a regression) passes through untouched
            raise RuntimeError(f"kaboom with {os.environ['SAMI_TEST_API_KEY']} in it\nand a second line")


@pytest.fixture
def crashing(sami_kit_register_plugin, sami_kit_registry, monkeypatch, tmp_path):
    monkeypatch.setenv("SAMI_KIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SAMI_TEST_API_KEY", "sk-test-0123456789abcdef")
    sami_kit_register_plugin(Crashing(), "crashing")
    return sami_kit_registry


def _invoke(registry, args):
    from click.testing import CliRunner

    from sami_toolkit.cli import cli

    return CliRunner().invoke(cli, args, obj=registry)


def test_an_unexpected_exception_is_one_line_exit_4_with_a_log(crashing, tmp_path):
    result = _invoke(crashing, ["crash"])
    assert result.exit_code == 4, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sami-kit: internal error (RuntimeError: kaboom with *** in it), please report it; "
                               "details in ")
    log = Path(lines[0].split("details in ", 1)[1])
    assert log.parent == tmp_path / "cache" / "logs" and log.is_file()
    text = log.read_text()
    assert "Traceback (most recent call last)" in text and "RuntimeError: kaboom" in text and "and a second line" in text
    assert "sk-test-0123456789abcdef" not in text + result.output  # secrets are scrubbed from the line and the log


def test_the_log_falls_back_to_the_temp_directory(crashing, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("SAMI_KIT_CACHE", str(blocker))  # logs/ cannot be created under a file
    result = _invoke(crashing, ["crash"])
    assert result.exit_code == 4
    log = Path(result.stderr.strip().split("details in ", 1)[1])
    assert log.is_file() and log.parent.name == "sami-kit-logs"
    log.unlink()


@pytest.mark.parametrize("how", ["interrupt", "abort"])
def test_interrupts_exit_130_never_1(crashing, how):
    result = _invoke(crashing, ["crash", "--how", how])
    assert result.exit_code == 130 and "Interrupted" in result.stderr and "Traceback" not in result.output


def test_deliberate_exits_and_usage_errors_keep_their_codes(crashing):
    assert _invoke(crashing, ["crash", "--how", "gate"]).exit_code == 1
    bad_option = _invoke(crashing, ["crash", "--no-such-option"])
    assert bad_option.exit_code == 2 and "No such option" in bad_option.stderr
    bad_value = _invoke(crashing, ["eval", "stats", "x.jsonl", "--bootstrap", "1e12"])
    assert bad_value.exit_code == 2 and "Traceback" not in bad_value.output
    missing = _invoke(crashing, ["eval", "stats"])
    assert missing.exit_code == 2 and "Missing argument" in missing.stderr


def test_sami_kit_errors_are_scrubbed(sami_kit_registry, monkeypatch, tmp_path):
    monkeypatch.setenv("SAMI_TEST_API_KEY", "sk-test-0123456789abcdef")
    config = tmp_path / "x.yaml"
    config.write_text("kind: run\nextends: demo\n")
    result = _invoke(sami_kit_registry, ["run", str(config), "-o", "evaluators.5=sk-test-0123456789abcdef"])
    assert result.exit_code == 2 and "override 'evaluators.5=***'" in result.stderr
    assert "sk-test-0123456789abcdef" not in result.output


PLUGIN_DIR_CRASH = """
from sami_toolkit import hookimpl

@hookimpl
def register_commands(cli):
    @cli.command("crash")
    def crash():
        raise ValueError("a bug in a plugin")
"""


def test_console_entry_point_maps_a_crash_to_exit_4(tmp_path):
    (tmp_path / "plugins").mkdir()
    (tmp_path / "plugins" / "crashy.py").write_text(PLUGIN_DIR_CRASH)
    env = {**os.environ, "SAMI_KIT_CACHE": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-m", "sami_toolkit", "--plugins-dir", str(tmp_path / "plugins"),
                             "crash"], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 4, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert "sami-kit: internal error (ValueError: a bug in a plugin), please report it; details in" in result.stderr
    assert list((tmp_path / "cache" / "logs").glob("crash-*.log"))


def test_a_closed_stdout_pipe_is_not_a_traceback(tmp_path):
    code = ("import sys\nfrom sami_toolkit.cli import main\nmain(['plugins', '--all'])\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # the reader is gone before the first line is written
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err, err


# ---------------------------------------------------------------- a distribution with unreadable metadata
def _bad_distribution(site: Path, module: str, *, metadata: bytes, entry_points: bytes | None = None) -> None:
    info = site / f"{module}_dist-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_bytes(metadata)
    (info / "entry_points.txt").write_bytes(entry_points or f"[sami_kit]\n{module} = {module}\n".encode())
    (site / f"{module}.py").write_text("from sami_toolkit import hookimpl\n\n@hookimpl\n"
                                       "def register_judges(register):\n    pass\n")


@pytest.mark.parametrize("case,metadata,entry_points,loads", [
    ("name", b"Metadata-Version: 2.1\nName: bad\xff-dist\nVersion: 1.0\n\n", None, False),
    ("summary", b"Metadata-Version: 2.1\nName: fine-dist\nVersion: 1.0\nSummary: caf\xe9\n\nbody \xff\n", None, True),
    ("entry_points", b"Metadata-Version: 2.1\nName: ep-dist\nVersion: 1.0\n\n", b"[sami_kit]\nx = y\xfe\n", False),
])
def test_bad_distribution_metadata_does_not_crash_any_command(tmp_path, monkeypatch, case, metadata, entry_points,
                                                              loads):
    """``plugins --all``, ``judges list`` and ``eval compare`` used to crash in _dist_name_version; now the bad
    distribution is reported like an import error (or loads, when only a header we do not read is bad)."""
    import json

    from sami_toolkit.plugins.loading import PluginSystem
    from sami_toolkit.plugins.registry import Registry
    from sami_toolkit.testing import FakesPlugin

    module = f"w3_bad_meta_{case}"
    site = tmp_path / "site"
    _bad_distribution(site, module, metadata=metadata, entry_points=entry_points)
    monkeypatch.syspath_prepend(str(site))
    registry = Registry(PluginSystem(extra_plugins=[("fakes", FakesPlugin())]))
    listed = _invoke(registry, ["plugins", "--all", "--json"])
    assert listed.exit_code == 0, listed.output
    records = [r for r in json.loads(listed.stdout) if module in r["source"] or "unreadable" in (r["error"] or "")]
    assert len(records) == 1, records
    if loads:
        assert records[0]["error"] is None and records[0]["version"] == "1.0"
    else:
        assert "not UTF-8" in records[0]["error"]
    assert _invoke(registry, ["judges", "list"]).exit_code == 0
    for side in ("a", "b"):
        (tmp_path / f"{side}.jsonl").write_text("".join(
            json.dumps({"id": f"q{i}", "prompt": f"p{i}", "response": f"{side} {i}"}) + "\n" for i in range(3)))
    compared = _invoke(registry, ["eval", "compare", "--candidate", str(tmp_path / "a.jsonl"), "--baseline",
                                  str(tmp_path / "b.jsonl"), "--judge", "constant", "--constitution", "Be kind.",
                                  "--bootstrap", "0"])
    assert compared.exit_code in (0, 3), compared.output
    assert "Traceback" not in compared.output
