"""The package's import graph: no cycles, numerics never import plotting, light entry points stay light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "timm_transfusion"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str) -> set[str]:
    """Package modules that ``name`` imports anywhere (function bodies too; ``TYPE_CHECKING`` blocks excluded)."""
    path = MODULES[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if _type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names
            ]
        else:
            continue
        found |= {target for target in targets if target in MODULES and target != name}
    return found


GRAPH = {name: imports_of(name) for name in MODULES}


def find_cycle() -> list[str] | None:
    """One import cycle as a list of modules (first = last), or None. Edges into a package's own
    ``__init__`` from its submodules are Python's implicit parent import, not a cycle of the code."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH[node]):
            if node.startswith(target + "."):
                continue
            if state.get(target) == 1:
                return stack[stack.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(GRAPH):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_imports():
    assert "timm_transfusion.similarity.cca" in GRAPH["timm_transfusion.similarity.metrics"]
    assert "timm_transfusion.viz.figures" in GRAPH["timm_transfusion.viz.similarity"]


def test_no_import_cycles():
    assert find_cycle() is None, " -> ".join(find_cycle())


NUMERICS = ("cca", "moments", "metrics", "capture", "compare", "threads", "errors")


@pytest.mark.parametrize("module", NUMERICS)
def test_numerics_do_not_import_plotting(module):
    name = f"timm_transfusion.similarity.{module}"
    source = MODULES[name].read_text(encoding="utf-8")
    assert not any(target.startswith("timm_transfusion.viz") for target in GRAPH[name])
    assert "matplotlib" not in source


@pytest.mark.parametrize(
    ("code", "absent"),
    [
        ("import timm_transfusion.hub", ("accelerate",)),
        ("import timm_transfusion", ("accelerate", "datasets", "evaluate", "matplotlib")),
        ("from timm_transfusion.cli import main; main(['inits'])", ("accelerate", "datasets", "evaluate")),
        (
            "from timm_transfusion.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
            ("accelerate", "datasets", "evaluate"),
        ),
    ],
)
def test_light_entry_points_do_not_load_heavy_libraries(code, absent):
    check = f"{code}\nimport sys\nprint(sorted(m for m in {absent!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=300, cwd=PACKAGE.parent
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


# Which package may import which (README "Architecture"): each layer only imports layers listed for it.
ALLOWED = {
    "errors": set(),
    "files": set(),
    "source_kind": set(),
    "_timm": set(),
    "run_folder": {"errors", "files"},
    "viz": {"errors", "files"},
    "models": {"errors", "_timm"},
    "data": {"errors", "files"},
    "init": {"errors", "files", "_timm", "source_kind", "models"},
    "(root)": {"errors", "init", "models"},
    "similarity": {"errors", "files", "source_kind", "run_folder", "viz", "models", "data", "init", "(root)"},
    "train": {
        "errors",
        "files",
        "source_kind",
        "run_folder",
        "viz",
        "models",
        "data",
        "init",
        "similarity",
        "(root)",
    },
    "hub": {"errors", "files", "source_kind", "run_folder", "viz", "models", "init", "similarity", "(root)"},
    # the checks each command runs before it writes (h16): part of the command line, below `cli` itself
    "cli_checks": {
        "errors",
        "files",
        "source_kind",
        "run_folder",
        "models",
        "data",
        "init",
        "similarity",
        "train",
        "(root)",
    },
    "cli": {"cli_checks", "errors", "models", "train", "similarity", "hub", "(root)"},
}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def test_every_module_is_in_a_layer():
    assert {layer(name) for name in MODULES} == set(ALLOWED)


def test_layers_import_only_the_layers_below_them():
    crossing = sorted(
        (source, target)
        for source, targets in GRAPH.items()
        for target in targets
        if layer(target) != layer(source) and layer(target) not in ALLOWED[layer(source)]
    )
    assert crossing == []


def backend_or_pyplot_uses(path: Path) -> list[str]:
    """``import matplotlib.pyplot`` / ``from matplotlib import pyplot`` and ``matplotlib.use(...)`` in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("matplotlib.pyplot")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("matplotlib"):
            found += [
                f"{node.module}.{alias.name}"
                for alias in node.names
                if "pyplot" in f"{node.module}.{alias.name}"
            ]
        elif isinstance(node, ast.Call) and ast.unparse(node.func) == "matplotlib.use":
            found.append(ast.unparse(node))
    return found


def test_no_library_module_switches_the_matplotlib_backend_or_uses_pyplot(tmp_path):
    assert {name: found for name, path in MODULES.items() if (found := backend_or_pyplot_uses(path))} == {}
    probe = tmp_path / "probe.py"
    probe.write_text("import matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n")
    assert len(backend_or_pyplot_uses(probe)) == 2  # the scan sees both forms


def test_training_writes_and_the_hub_reads_the_run_folder_through_its_schema():
    assert "timm_transfusion.run_folder" in GRAPH["timm_transfusion.train.loop"]
    assert "timm_transfusion.run_folder" in GRAPH["timm_transfusion.train.run_folder"]
    assert "timm_transfusion.run_folder" in GRAPH["timm_transfusion.hub.run"]
    assert not any(
        target.startswith("timm_transfusion.train") for target in GRAPH["timm_transfusion.hub.card"]
    )
