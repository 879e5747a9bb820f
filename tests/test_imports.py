"""The import graph of proto_rewrite, read from the source: no cycle, and a cheap --help.

Every ``import`` statement counts: at module level, under ``if TYPE_CHECKING:``, and inside
functions (a lazy import still ties the two modules together: each needs the other's names,
and a later move of the import to the top would fail at import time). One kind of edge is left
out: a module's import of one of its own ancestor packages (``from proto_rewrite import
__version__``), which Python imports before the module in any case, so it orders nothing.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "proto_rewrite"
HEAVY = ("numpy", "onnx", "onnxruntime", "google.protobuf")


def _modules() -> dict[str, tuple[Path, bool]]:
    """{dotted name: (file, is a package)} for every module of proto_rewrite."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        found[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return found


def import_graph() -> dict[str, set[str]]:
    """{module: the proto_rewrite modules it imports}."""
    modules = _modules()
    graph = {}
    for name, (path, is_package) in modules.items():
        package = name if is_package else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                for alias in node.names:  # ``from pkg import module`` imports the module
                    submodule = f"{source}.{alias.name}"
                    targets.add(submodule if submodule in modules else source)
        ancestors = {".".join(name.split(".")[:k]) for k in range(1, name.count(".") + 1)}
        graph[name] = {t for t in targets if t in modules and t != name and t not in ancestors}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_graph_is_read():
    graph = import_graph()
    assert "proto_rewrite.onnx.pooling" in graph["proto_rewrite.onnx.planner"]
    assert "proto_rewrite.cli.convert_cmd" in graph["proto_rewrite.cli.main"]
    assert "proto_rewrite.cli.console" in graph["proto_rewrite.cli.batch"]  # an import inside a function


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle():
    found = cycles(import_graph())
    described = ["; ".join(f"{m} -> {sorted(set(c) & import_graph()[m])}" for m in c) for c in found]
    assert not found, "import cycles in proto_rewrite:\n" + "\n".join(described)


@pytest.mark.parametrize("command", [None, "convert", "validate", "diff", "export", "inspect", "init-weights"])
def test_help_imports_no_heavy_module(command):
    argv = ["--help"] if command is None else [command, "--help"]
    code = (
        "import sys, io; from proto_rewrite.cli.main import main; "
        f"rc = main({argv!r}, stdout=io.StringIO(), stderr=io.StringIO()); "
        f"heavy = [n for n in {HEAVY!r} if n in sys.modules]; print(rc, heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == "0 []", result.stdout + result.stderr
