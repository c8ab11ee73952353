"""The plugin system: discovery, failure isolation, strict mode, hook-name validation, duplicates, did-you-mean,
the entry-point path a third-party package uses, and the pytest fakes."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from sami_toolkit.core import hookspecs
from sami_toolkit.cli import cli
from sami_toolkit.core.errors import PluginError, UnknownComponentError

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "docs" / "examples" / "sami-kit-length-judge"


def run_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the real console script in a subprocess (fresh imports, real entry points)."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "sami_toolkit", *args], capture_output=True, text=True,
                          env=full_env, timeout=120)


def write_plugin(directory: Path, name: str, body: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.py"
    path.write_text(textwrap.dedent(body))
    return path


GOOD_PLUGIN = """
    from sami_toolkit import hookimpl

    @hookimpl
    def register_judges(register):
        from sami_toolkit.testing import ConstantJudge

        class Tie(ConstantJudge):
            '''Always a tie.'''
            name = "always-tie"
        register(Tie)

    @hookimpl
    def register_commands(cli):
        import click

        @cli.command("hello-plugin")
        def hello():
            '''Say hello from a plugin.'''
            click.echo("hello from a plugin")
"""


def test_builtins_are_ordinary_plugins_listed_with_all():
    result = CliRunner().invoke(cli, ["plugins", "--all", "--json"])
    assert result.exit_code == 0, result.output
    records = json.loads(result.output)
    names = {r["name"] for r in records}
    assert "sami_toolkit.builtin.losses" in names
    for record in records:
        assert set(record) >= {"name", "version", "hooks", "error"}
        assert record["error"] is None, record
    without_all = json.loads(CliRunner().invoke(cli, ["plugins", "--json"]).output)
    assert not any(r["builtin"] for r in without_all)


def test_plugins_dir_loads_hooks_and_commands(tmp_path):
    write_plugin(tmp_path, "tiejudge", GOOD_PLUGIN)
    listed = run_cli("--plugins-dir", str(tmp_path), "plugins", "--json")
    assert listed.returncode == 0, listed.stderr
    record = next(r for r in json.loads(listed.stdout) if r["name"] == "tiejudge")
    assert record["hooks"] == ["register_commands", "register_judges"]
    assert record["error"] is None
    judges = run_cli("--plugins-dir", str(tmp_path), "judges", "list", "--json")
    assert "always-tie" in {row["name"] for row in json.loads(judges.stdout)}
    hello = run_cli("--plugins-dir", str(tmp_path), "hello-plugin")
    assert hello.returncode == 0 and "hello from a plugin" in hello.stdout
    helptext = run_cli("--plugins-dir", str(tmp_path), "--help")
    assert "hello-plugin" in helptext.stdout


def test_broken_plugin_is_reported_and_everything_else_works(tmp_path):
    write_plugin(tmp_path, "broken", "import this_module_does_not_exist\n")
    write_plugin(tmp_path, "tiejudge", GOOD_PLUGIN)
    listed = run_cli("--plugins-dir", str(tmp_path), "plugins", "--json")
    assert listed.returncode == 0
    assert "broken" in listed.stderr and "this_module_does_not_exist" in listed.stderr
    records = {r["name"]: r for r in json.loads(listed.stdout)}
    assert "No module named 'this_module_does_not_exist'" in records["broken"]["error"]
    assert records["tiejudge"]["error"] is None
    other = run_cli("--plugins-dir", str(tmp_path), "judges", "show", "always-tie")
    assert other.returncode == 0, other.stderr
    assert "Traceback" not in other.stderr


def test_strict_mode_makes_a_broken_plugin_fatal(tmp_path):
    write_plugin(tmp_path, "broken", "raise RuntimeError('boom at import')\n")
    result = run_cli("--plugins-dir", str(tmp_path), "plugins", env={"SAMI_KIT_STRICT_PLUGINS": "1"})
    assert result.returncode == 2
    assert "boom at import" in result.stderr and "Traceback" not in result.stderr


def test_misspelled_hook_is_an_error(tmp_path):
    write_plugin(tmp_path, "typo", """
        from sami_toolkit import hookimpl

        @hookimpl
        def register_judgez(register):
            pass
    """)
    result = run_cli("--plugins-dir", str(tmp_path), "plugins", "--json")
    record = next(r for r in json.loads(result.stdout) if r["name"] == "typo")
    assert "register_judgez" in record["error"]
    assert "register_judges" in record["error"]  # the known hooks are listed
    strict = run_cli("--plugins-dir", str(tmp_path), "plugins", env={"SAMI_KIT_STRICT_PLUGINS": "1"})
    assert strict.returncode == 2 and "register_judgez" in strict.stderr


def test_duplicate_component_names_name_both_plugins(sami_kit_register_plugin, sami_kit_registry):
    from sami_toolkit.testing import FakesPlugin

    sami_kit_register_plugin(FakesPlugin(), "first-fakes")
    sami_kit_register_plugin(FakesPlugin(), "second-fakes")
    with pytest.raises(PluginError) as excinfo:
        sami_kit_registry.load()
    message = str(excinfo.value)
    assert message.startswith("duplicate ") and "first-fakes" in message and "second-fakes" in message


def test_unknown_name_suggests_close_matches(sami_kit_fakes, sami_kit_registry):
    with pytest.raises(UnknownComponentError) as excinfo:
        sami_kit_registry.get("judges", "constnat")
    assert "Did you mean 'constant'" in str(excinfo.value)
    assert "Installed judges:" in str(excinfo.value)
    result = CliRunner().invoke(cli, ["judges", "show", "constnat"], obj=sami_kit_registry)
    assert result.exit_code == 2


def test_pinning_entry_point_plugins_with_env(tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(EXAMPLE_PLUGIN)], check=True, timeout=300)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    pinned_out = run_cli("plugins", "--json", env={**env, "SAMI_KIT_LOAD_PLUGINS": "sami-kit-does-not-exist"})
    assert "sami-kit-length-judge" not in {r["name"] for r in json.loads(pinned_out.stdout)}
    pinned_in = run_cli("plugins", "--json", env={**env, "SAMI_KIT_LOAD_PLUGINS": "sami-kit-length-judge"})
    assert {r["name"] for r in json.loads(pinned_in.stdout)} == {"sami-kit-length-judge"}


def test_external_package_installed_through_entry_points_is_listed_and_selectable(tmp_path):
    """docs/plugins.md's worked example, installed with pip into a temporary target directory."""
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(site), str(EXAMPLE_PLUGIN)], check=True, timeout=300)
    env = {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    listed = run_cli("plugins", "--json", env=env)
    record = next(r for r in json.loads(listed.stdout) if r["name"] == "sami-kit-length-judge")
    assert record == {**record, "version": "0.1.0", "hooks": ["register_judges"], "error": None}
    shown = run_cli("judges", "show", "shorter", env=env)  # by alias
    assert shown.returncode == 0, shown.stderr
    assert "length (judge, plugin sami-kit-length-judge)" in shown.stdout
    assert "prefer" in shown.stdout and "Which response wins." in shown.stdout
    # Selecting it from Python exactly as the CLI does (get_component by name + options).
    code = textwrap.dedent("""
        from sami_toolkit import JudgeItem, get_component
        judge = get_component("judges", "length", {"prefer": "longer"})
        out = judge.judge([JudgeItem(id="1", query="q", constitution="c", response_a="a b c", response_b="a")])
        print(out[0].verdict)
    """)
    selected = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**os.environ, **env}, timeout=120)
    assert selected.stdout.strip() == "A", selected.stderr
    bad = run_cli("judges", "show", "lenght", env=env)
    assert bad.returncode == 2 and "Did you mean 'length'" in bad.stderr


def test_component_show_prints_options_schema(sami_kit_fakes, sami_kit_cli):
    result = sami_kit_cli(["judges", "show", "constant"])
    assert result.exit_code == 0, result.output
    assert "verdict" in result.output and "The verdict returned for every item." in result.output
    as_json = json.loads(sami_kit_cli(["judges", "show", "constant", "--json"]).output)
    assert as_json["options"]["additionalProperties"] is False


def test_component_options_are_validated_with_field_paths(sami_kit_fakes, sami_kit_registry):
    from sami_toolkit import ConfigError, get_component

    with pytest.raises(ConfigError) as excinfo:
        get_component("judges", "constant", {"verdikt": "A"}, registry=sami_kit_registry)
    assert "verdikt" in str(excinfo.value) and "unknown key" in str(excinfo.value)
    with pytest.raises(ConfigError) as excinfo:
        sami_kit_registry.create("judges", "constant", {"verdict": "C"})
    assert "judges.constant.options.verdict" in str(excinfo.value)


def test_every_hook_is_documented_and_exercised():
    """datasette-style meta-test: each hookspec has a docstring, a section in docs/plugins.md showing its exact
    signature (``register_judges(register)``), and an implementation in a built-in plugin or in this test module."""
    docs = (REPO / "docs" / "plugins.md").read_text()
    this_file = Path(__file__).read_text()
    builtin_sources = "".join(p.read_text() for p in (REPO / "sami_toolkit" / "builtin").glob("*.py"))
    for hook in hookspecs.ALL_HOOKS:
        spec = getattr(hookspecs, hook)
        assert (spec.__doc__ or "").strip(), f"{hook} has no docstring"
        signature = f"{hook}({', '.join(inspect.signature(spec).parameters)})"
        assert f"### `{signature}`" in docs, f"docs/plugins.md has no '### `{signature}`' section"
        assert f"def {hook}(" in builtin_sources or f"def {hook}(" in this_file, f"{hook} is never implemented"


def test_docs_hook_reference_lists_only_real_hooks():
    """The reverse direction: a hook documented in the reference must exist, with that signature."""
    import re

    docs = (REPO / "docs" / "plugins.md").read_text()
    documented = re.findall(r"^### `(register_\w+)\(([^)]*)\)`", docs, flags=re.M)
    assert {name for name, _ in documented} == set(hookspecs.ALL_HOOKS)
    for name, params in documented:
        assert params == ", ".join(inspect.signature(getattr(hookspecs, name)).parameters), name


def test_docs_list_the_modules_a_plugin_may_import():
    docs = (REPO / "docs" / "plugins.md").read_text()
    section = docs.split("## What a plugin may import", 1)[1].split("\n## ", 1)[0]
    for module in ("sami_toolkit", "sami_toolkit.core.components", "sami_toolkit.core.errors",
                   "sami_toolkit.core.records", "sami_toolkit.core.io", "sami_toolkit.models.loading",
                   "sami_toolkit.text.postprocess", "sami_toolkit.text.principle_writing", "sami_toolkit.training",
                   "sami_toolkit.training.scoring", "sami_toolkit.judging", "sami_toolkit.judging.cache",
                   "sami_toolkit.evaluation.mi", "sami_toolkit.testing", "sami_toolkit.testing.server"):
        assert f"| `{module}` |" in section, module


def test_pytest_fakes_behave_as_documented(sami_kit_fakes, sami_kit_registry):
    from sami_toolkit import JudgeItem

    sampler = sami_kit_registry.create("samplers", "echo", {"max_chars": 5})
    assert sampler.generate("any-model", ["hello world"]) == ["world"]
    judge = sami_kit_registry.create("judges", "constant", {"verdict": "B"})
    [judgment] = judge.judge([JudgeItem(id="x", query="q", constitution="c", response_a="a", response_b="b")])
    assert (judgment.id, judgment.verdict) == ("x", "B")
    writer = sami_kit_registry.create("principle-writers", "fixed", {})
    result = writer.write("summarise posts", ["concise", "funny"])
    assert [p.name for p in result.principle_set.principles] == ["concise", "funny"]
    assert result.principle_set.principles[1].antithesis == "Responses should not be funny."


# ------------------------------------------------------------------------------ no module-level plugin state
def test_plugin_systems_are_independent_objects():
    """Two systems in one process never see each other's plugins (what replaced the process-wide singleton)."""
    from sami_toolkit import PluginSystem, Registry
    from sami_toolkit.testing import FakesPlugin

    with_fakes = Registry(PluginSystem(extra_plugins=[("fakes", FakesPlugin())]))
    plain = Registry(PluginSystem())
    assert "constant" in with_fakes.names("judges")
    assert "constant" not in plain.names("judges")
    assert with_fakes.system is not plain.system
    assert any(r.name == "fakes" for r in with_fakes.system.records)
    assert not any(r.name == "fakes" for r in plain.system.records)


def test_registry_is_built_lazily_and_rebuilt_when_plugins_change():
    from sami_toolkit import load_plugins
    from sami_toolkit.testing import FakesPlugin

    code = ("import sys\nfrom sami_toolkit import load_plugins\nregistry = load_plugins()\n"
            "before = 'sami_toolkit.builtin.hf_sampler' in sys.modules\nregistry.names('samplers')\n"
            "print(before, 'sami_toolkit.builtin.hf_sampler' in sys.modules)")
    lazy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert lazy.stdout.split() == ["False", "True"], lazy.stderr  # component modules load on first use only

    registry = load_plugins()
    assert "echo" not in registry.names("samplers")
    registry.system.register_plugin(FakesPlugin(), "late-fakes")
    assert "echo" in registry.names("samplers")
    registry.system.unregister_plugin("late-fakes")
    assert "echo" not in registry.names("samplers")
    assert not any(r.name == "late-fakes" for r in registry.system.records)


def test_a_plugin_registered_in_code_with_a_misspelled_hook_raises():
    from sami_toolkit import PluginSystem, hookimpl

    class Typo:
        @hookimpl
        def register_judgez(self, register):
            pass

    system = PluginSystem()
    with pytest.raises(PluginError, match="register_judgez"):
        system.register_plugin(Typo(), "typo")
    assert system.pm.get_plugin("typo") is None


def test_the_cli_uses_the_registry_it_is_given_and_forgets_it_afterwards(sami_kit_fakes, sami_kit_registry):
    from sami_toolkit.cli import main

    given = CliRunner().invoke(cli, ["judges", "list", "--json"], obj=sami_kit_registry)
    assert "constant" in {row["name"] for row in json.loads(given.stdout)}
    fresh = CliRunner().invoke(cli, ["judges", "list", "--json"])
    assert "constant" not in {row["name"] for row in json.loads(fresh.stdout)}
    with pytest.raises(SystemExit) as exc:
        main(["judges", "show", "constant", "--json"], registry=sami_kit_registry)
    assert exc.value.code in (0, None)


def test_plugin_commands_do_not_stick_to_the_cli_across_invocations(sami_kit_register_plugin, sami_kit_registry):
    from sami_toolkit import hookimpl

    class Commands:
        @hookimpl
        def register_commands(self, cli):
            @cli.command("only-here")
            def only_here():
                """A command from a plugin registered in code."""
                click.echo("here")

    import click

    sami_kit_register_plugin(Commands(), "commands")
    assert CliRunner().invoke(cli, ["only-here"], obj=sami_kit_registry).stdout == "here\n"
    assert "only-here" in CliRunner().invoke(cli, ["--help"], obj=sami_kit_registry).stdout
    again = CliRunner().invoke(cli, ["only-here"])
    assert again.exit_code == 2 and "No such command" in again.stderr
    assert "only-here" not in cli.commands
