"""The shape of the package: the command-line modules sit on top and import the library downward; no module
of ``vidgen/`` imports a CLI module, no two modules import each other through any chain (no import cycle),
and the conditioners do not reach into model files (at the top of a file or inside a function)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGE_DIR = REPO_ROOT / "vidgen"
CLI_MODULES = {"vidgen.train", "vidgen.sample", "vidgen.evaluate", "vidgen.bench"}


def module_name(path: Path) -> str:
    """``vidgen/lit/build.py`` -> ``vidgen.lit.build``; a package's ``__init__.py`` -> the package."""
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(source: str, name: str, is_package: bool = False) -> set[str]:
    """Every module ``source`` (the module ``name``) imports anywhere in its body, function-level imports
    included, relative imports resolved; ``from a import b`` counts as importing ``a`` and ``a.b`` (``b``
    may be a submodule)."""
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def test_the_import_parser_sees_every_form() -> None:
    source = (
        "import vidgen.train\n"
        "from vidgen import sample\n"
        "def f():\n"
        "    from vidgen.evaluate import build_metrics\n"
        "    from .. import bench\n"
        "    from .build import build_module\n"
    )
    found = imported_modules(source, "vidgen.lit.periodic_evaluation")
    assert found >= CLI_MODULES
    assert "vidgen.lit.build" in found and "vidgen.lit.build.build_module" in found
    assert "vidgen.x" in imported_modules("from .x import y", "vidgen", is_package=True)


def import_graph() -> dict[str, set[str]]:
    """Every module of ``vidgen/`` -> the modules of ``vidgen/`` it imports (the root package left out)."""
    paths = {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        imported = imported_modules(path.read_text(), name, is_package=path.name == "__init__.py")
        graph[name] = {m for m in imported if m in paths and m not in (name, "vidgen")}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (each a set of modules that import one another
    through some chain), sorted."""
    order: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        order[node] = low[node] = len(order)
        stack.append(node)
        for other in graph[node]:
            if other not in order:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], order[other])
        if low[node] == order[node]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in order:
            visit(node)
    return sorted(cycles)


def test_the_cycle_finder_finds_a_chain_and_only_chains() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]
    assert import_cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles() -> None:
    cycles = import_cycles(import_graph())
    assert cycles == [], "modules that import each other (through a chain): " + "; ".join(map(str, cycles))


def test_conditioning_does_not_import_model_files() -> None:
    graph = import_graph()
    offenders = [
        f"{name} imports {other}"
        for name, imported in graph.items()
        if name.startswith("vidgen.conditioning")
        for other in sorted(imported)
        if other.startswith("vidgen.models")
    ]
    assert offenders == []


def test_no_module_imports_a_command_line_module() -> None:
    offenders = []
    for name, imported in import_graph().items():
        offenders += [f"{name} imports {cli}" for cli in sorted(imported & CLI_MODULES)]
    assert offenders == [], (
        "CLI modules are entry points; move what is shared into the library:\n" + "\n".join(offenders)
    )


def test_the_command_line_modules_load_neither_torch_nor_lightning() -> None:
    """Importing a CLI module (what ``python -m vidgen.<cli> --help`` or ``--cfg job`` does before Hydra
    answers) loads no torch, Lightning or model library: those take ~9 s on two cores and load only once a
    config is to be run."""
    heavy = ("torch", "lightning", "torchmetrics", "torchvision", "diffusers", "open_clip", "timm")
    code = (
        f"import sys, {', '.join(sorted(CLI_MODULES | {'vidgen.precompute'}))}\n"
        f"print(sorted(name for name in {heavy!r} if name in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
