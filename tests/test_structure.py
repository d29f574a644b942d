"""The library's shape: no import cycle, short functions, the module map up to date.

The import graph is built from the sources with ``ast`` (every ``import`` and ``from ...
import``, including those inside functions: a lazy import hides a cycle, it does not
remove it), so a cycle fails here, named, before it fails somebody's notebook.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dmlib"
#: A function longer than this many lines needs a comment ``# long: <why>`` in its signature
#: (the def line or its continuation lines).
MAX_FUNCTION_LINES = 60


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(current: str, is_package: bool, level: int, target: str | None) -> str:
    base = current.split(".") if is_package else current.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The dmlib modules that ``name`` imports (``from . import x`` counts as dmlib.x when x
    is a module; importing a package's attribute counts as importing the package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "dmlib":
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            mod = (_resolve(name, is_package, node.level, node.module) if node.level
                   else node.module or "")
            if mod.split(".")[0] != "dmlib":
                continue
            for alias in node.names:
                sub = f"{mod}.{alias.name}"
                found.add(sub if sub in known else mod)
    return {m for m in found if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    graph = {m: imports_of(m, p, known) for m, p in mods.items()}
    # Importing dmlib.a.b runs dmlib/__init__ and dmlib/a/__init__ first; those edges are
    # the packages' own imports, already in the graph.
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a list of module names (first == last), or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {m: WHITE for m in graph}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        colour[m] = GREY
        stack.append(m)
        for n in sorted(graph[m]):
            if colour[n] == GREY:
                return stack[stack.index(n):] + [n]
            if colour[n] == WHITE:
                found = visit(n)
                if found:
                    return found
        stack.pop()
        colour[m] = BLACK
        return None

    for m in sorted(graph):
        if colour[m] == WHITE:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


def test_find_cycle_finds_one():
    """The detector itself: a planted cycle is found and named, a DAG passes."""
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_import_graph_sees_lazy_imports(tmp_path):
    src = tmp_path / "dmlib" / "x.py"
    src.parent.mkdir()
    src.write_text("def f():\n    from .y import g\n    from . import z\n")
    known = {"dmlib.x", "dmlib.y", "dmlib.z", "dmlib"}
    global ROOT
    old, ROOT = ROOT, tmp_path
    try:
        assert imports_of("dmlib.x", src, known) == {"dmlib.y", "dmlib.z"}
    finally:
        ROOT = old


def test_no_import_cycle():
    graph = import_graph()
    assert "dmlib.losses" in graph and "dmlib.sampling" in graph  # the graph was built
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in dmlib: " + " -> ".join(cycle)


def long_functions() -> list[str]:
    """``module:function (N lines)`` for every function over the limit without a reason."""
    out = []
    for name, path in modules().items():
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            n = node.end_lineno - node.lineno + 1
            if n <= MAX_FUNCTION_LINES:
                continue
            head = " ".join(lines[node.lineno - 1: node.body[0].lineno])  # the signature
            if not re.search(r"# long: \S", head):
                out.append(f"{name}:{node.name} ({n} lines)")
    return out


def test_functions_are_short():
    too_long = long_functions()
    assert not too_long, (f"functions over {MAX_FUNCTION_LINES} lines (split them, or say why "
                          f"with '# long: <reason>' on the def line): " + ", ".join(too_long))


def test_module_map_lists_every_module():
    """dmlib/__init__'s module table names every top-level module and subpackage."""
    doc = (PKG / "__init__.py").read_text()
    names = {p.stem for p in PKG.glob("*.py") if not p.stem.startswith("_")}
    names |= {p.name for p in PKG.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    missing = sorted(n for n in names if f"``{n}``" not in doc)
    assert not missing, f"modules missing from the table in dmlib/__init__.py: {missing}"


@pytest.mark.parametrize("old", ["sigma"])
def test_old_keyword_is_rejected_with_its_new_name(old):
    import torch

    from dmlib.losses import diffusion_loss, loss_weights, vlb_terms
    from dmlib.optimal import gaussian_vlb_terms
    from dmlib.schedules import Schedule
    from dmlib.targets import elbo_weight

    s = Schedule.linear(10)
    calls = [lambda: loss_weights(s, "eps", "elbo", **{old: "beta"}),
             lambda: elbo_weight(s, torch.zeros(11), torch.ones(11), **{old: "beta"}),
             lambda: diffusion_loss(lambda x, t: x, s, torch.zeros(2, 2), **{old: "beta"}),
             lambda: vlb_terms(lambda x, t: x, s, torch.zeros(2, 2), **{old: "beta"}),
             lambda: gaussian_vlb_terms(None, s, **{old: "beta"})]
    for call in calls:
        with pytest.raises(TypeError, match="variance="):
            call()
