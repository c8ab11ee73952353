"""The package tree is the architecture: every import goes down the layers, and no module imports itself back.

The rule (docs/architecture.md): a package imports only packages *below* it in :data:`LAYERS`. ``builtin``, ``cli``
and ``testing`` sit on top and may import anything; an upward reference is allowed only under ``TYPE_CHECKING``.
Imports inside functions count (they are the lazy imports that keep ``--help`` light, and a cycle through them is
still a cycle). The first-party plugins import only the facade (``sami_toolkit``) or the documented modules.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "sami_toolkit"

#: lowest first; a module of layer i may import layers 0..i (its own package included).
LAYERS: tuple[str, ...] = ("core", "plugins", "text", "models", "training", "sampling", "judging", "evaluation",
                           "report", "tracking", "hub", "run")
TOP = ("builtin", "cli", "testing")

#: what the first-party plugins (plugins/*) may import besides the facade; docs/plugins.md lists the same modules.
DOCUMENTED_FOR_PLUGINS = {
    "sami_toolkit", "sami_toolkit.core.components", "sami_toolkit.core.errors", "sami_toolkit.core.records",
    "sami_toolkit.core.io", "sami_toolkit.models.loading", "sami_toolkit.text.postprocess",
    "sami_toolkit.text.principle_writing", "sami_toolkit.training", "sami_toolkit.training.scoring",
    "sami_toolkit.judging", "sami_toolkit.judging.cache", "sami_toolkit.evaluation.mi",
    "sami_toolkit.testing", "sami_toolkit.testing.server",
}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every sami_toolkit module ``path`` imports at run time (module level or inside functions)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "sami_toolkit":
                    found.add(_longest_known(alias.name, known))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "sami_toolkit":
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    found.add(full if full in known else _longest_known(target, known))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


def _longest_known(name: str, known: set[str]) -> str:
    while name not in known and "." in name:
        name = name.rpartition(".")[0]
    return name


def layer_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    known = set(modules)
    return {name: imported_modules(path, known) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` (a list of modules, first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = dfs(start)
            if cycle:
                return cycle
    return None


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    bad = []
    for module, targets in sorted(graph.items()):
        source = layer_of(module)
        if source is None or source in TOP or source == "__main__":
            continue
        assert source in rank, f"{module}: package '{source}' is in neither LAYERS nor TOP; add it to the diagram"
        for target in sorted(targets):
            target_layer = layer_of(target)
            if target_layer is None:  # the facade: it re-exports upper layers
                bad.append(f"{module} -> {target} (the facade; import the defining module instead)")
            elif target_layer in TOP or rank[target_layer] > rank[source]:
                bad.append(f"{module} ({source}) -> {target} ({target_layer})")
    return bad


def test_every_package_has_a_layer() -> None:
    packages = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert packages - {"principle_sets"} == set(LAYERS) | set(TOP)
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == [], f"modules outside any layer: {loose}"


def test_no_import_cycles() -> None:
    assert find_cycle(import_graph()) is None


def test_no_upward_imports() -> None:
    assert upward_imports(import_graph()) == []


def test_the_checker_sees_a_cycle_and_an_upward_import() -> None:
    graph = {"sami_toolkit.core.a": {"sami_toolkit.run.loop"}, "sami_toolkit.run.loop": {"sami_toolkit.core.a"}}
    assert find_cycle(graph) == ["sami_toolkit.core.a", "sami_toolkit.run.loop", "sami_toolkit.core.a"]
    assert upward_imports(graph) == ["sami_toolkit.core.a (core) -> sami_toolkit.run.loop (run)"]


def test_imports_inside_functions_count_and_type_checking_does_not(tmp_path: Path) -> None:
    source = PACKAGE / "core" / "_probe_for_test.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sami_toolkit.run import loop\n"
                      "def f():\n    from sami_toolkit.report import run_page\n", encoding="utf-8")
    try:
        known = set(all_modules())
        assert imported_modules(source, known) == {"sami_toolkit.report.run_page"}
    finally:
        source.unlink()


def test_facade_imports_only_core_eagerly() -> None:
    facade = PACKAGE / "__init__.py"
    tree = ast.parse(facade.read_text(encoding="utf-8"))
    eager = {node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
    assert {m for m in eager if m.startswith("sami_toolkit")} <= {"sami_toolkit.core.hookspecs",
                                                                  "sami_toolkit.core.version"}


@pytest.mark.parametrize("plugin", sorted(p.name for p in (ROOT / "plugins").iterdir() if p.is_dir()))
def test_first_party_plugins_import_only_the_facade_or_documented_modules(plugin: str) -> None:
    known = set(all_modules())
    used: dict[str, set[str]] = {}
    for path in (ROOT / "plugins" / plugin).rglob("*.py"):
        if "tests" in path.relative_to(ROOT / "plugins" / plugin).parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sami_toolkit":
                used.setdefault(_longest_known(node.module or "", known), set()).add(path.name)
    undocumented = {m: sorted(files) for m, files in used.items() if m not in DOCUMENTED_FOR_PLUGINS}
    assert undocumented == {}


def test_architecture_doc_lists_every_module_and_package() -> None:
    """docs/architecture.md's module table names every module (``builtin/*.py`` and ``cli/*_cmd.py`` as groups)."""
    doc = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("builtin/") and rel != "builtin/__init__.py":
            listed = f"`{path.stem}`" in doc or f"`{rel}`" in doc
        elif rel.startswith("cli/") and rel.endswith("_cmd.py"):
            listed = "`cli/*_cmd.py`" in doc
        elif rel.endswith("/__init__.py") and not (path.parent / "__init__.py").read_text(encoding="utf-8").strip():
            continue  # an empty package marker
        else:
            listed = f"`{rel}`" in doc
        if not listed:
            missing.append(rel)
    assert missing == []
    for layer in (*LAYERS, *TOP):
        assert f"`{layer}/`" in doc or f"{layer}/" in doc
