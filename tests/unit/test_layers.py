"""The package's layering, read from the source with `ast`: imports between fame_ray modules run
only downward (or within a layer), never form a cycle, and sit at the top of the file.

The layers, bottom to top (README "Code map"):
  1 errors, logs   2 config, storage, runtime   3 checkpoints   4 data   5 models   6 eval
  7 components   8 pretrain, downstream   9 experiments, bench, study   10 commands, cli
Pretraining and downstream are siblings: both build on `components` and neither imports the other.

Inside `data`, the rooms of its four concerns: the offline catalog and the online clip path meet
only through the manifest format (`data.manifest`; both decode under `data.deadline`), the
synthetic writers read nothing else of `data`, transcoding reads the catalog's layouts, and
`data.ready` (the one step that prepares a dataset for a run) composes the catalog and the writers.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "fame_ray"
LAYERS = [
    ("errors", "logs"),
    ("config", "storage", "runtime"),
    ("checkpoints",),
    ("data",),
    ("models",),
    ("eval",),
    ("components",),
    ("pretrain", "downstream"),
    ("experiments", "bench", "study"),
    ("commands", "cli"),
]
LAYER_OF = {room: index for index, rooms in enumerate(LAYERS) for room in rooms}
# Rooms of one layer that must not import each other.
SIBLINGS = {
    (one, other)
    for rooms in (("pretrain", "downstream"), ("experiments", "bench", "study"))
    for one in rooms
    for other in rooms
    if one != other
}
# What each room inside data/ may import from data/ (besides itself).
DATA_ROOMS = {
    "manifest": set(),
    "deadline": set(),
    "catalog": {"manifest", "deadline"},
    "clips": {"manifest", "deadline"},
    "synthetic": set(),
    "transcode": {"catalog", "manifest"},
    "ready": {"catalog", "synthetic"},
}
# Only the CLI may import lazily, and only what start-up time needs: the layers that drag in
# torch, ray, pyarrow or decord. Everything else between fame_ray modules sits at the top.
LAZY_ALLOWED_ROOMS = ("commands", "cli")
LIGHT_ROOMS = ("errors", "logs", "config", "storage")


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _data_room(module: str) -> str | None:
    """The room inside data/ (`catalog`, `clips`, ...; None for data/__init__ or outside data/)."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "data" else None


def _imports(path: Path):
    """(imported fame_ray module, line, at top level?) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _module_name(path)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    top_level = {id(node) for node in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            names = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            if name == "fame_ray" or name.startswith("fame_ray."):
                yield name, node.lineno, id(node) in top_level


def _known(name: str, modules: set[str]) -> str | None:
    """The module a dotted import name refers to (`fame_ray.data.clips.fame` or a name inside it)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def _graph():
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module_name(path): path for path in files}
    edges: dict[str, set[str]] = {name: set() for name in modules}
    problems = []
    for name, path in modules.items():
        where = path.relative_to(PACKAGE.parent)
        for imported, line, top in _imports(path):
            target = _known(imported, set(modules))
            if target is None or target == name or target == "fame_ray":
                continue
            edges[name].add(target)
            source_room, target_room = _room(name), _room(target)
            if not top and (source_room not in LAZY_ALLOWED_ROOMS or target_room in LIGHT_ROOMS):
                problems.append(
                    f"{where}:{line}: import of {target} inside a function (move it to the top of the file)"
                )
            if source_room in LAYER_OF and target_room in LAYER_OF and LAYER_OF[target_room] > LAYER_OF[source_room]:
                problems.append(
                    f"{where}:{line}: {source_room} (layer {LAYER_OF[source_room] + 1}) imports {target} from "
                    f"{target_room} (layer {LAYER_OF[target_room] + 1}), a layer above"
                )
            if (source_room, target_room) in SIBLINGS:
                problems.append(f"{where}:{line}: {source_room} imports {target} from its sibling {target_room}")
            inner, other = _data_room(name), _data_room(target)
            if inner and other and inner != other and other not in DATA_ROOMS.get(inner, set()):
                problems.append(
                    f"{where}:{line}: data.{inner} imports {target} (data.{other}); it may import "
                    f"{sorted(DATA_ROOMS.get(inner, set())) or 'nothing else of data'}"
                )
    return modules, edges, problems


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for child in edges.get(node, ()):
            if child not in index:
                visit(child)
                low[node] = min(low[node], low[child])
            elif child in on_stack:
                low[node] = min(low[node], index[child])
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

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def test_every_room_has_a_layer():
    rooms = {_room(name) for name in _graph()[0]} - {"__init__"}
    assert rooms <= set(LAYER_OF), f"folders or modules without a layer: {sorted(rooms - set(LAYER_OF))}"
    inside = {_data_room(name) for name in _graph()[0]} - {None}
    assert inside == set(DATA_ROOMS), (
        f"rooms of data/ without rules: {sorted(inside - set(DATA_ROOMS))}; rules without a room: "
        f"{sorted(set(DATA_ROOMS) - inside)}"
    )


def test_imports_run_downward_and_sit_at_the_top():
    _, _, problems = _graph()
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    _, edges, _ = _graph()
    cycles = _cycles(edges)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize(
    "where, source, expected",
    [
        (
            "data/clips/bad.py",
            "from fame_ray.pretrain import worker\n",
            "imports fame_ray.pretrain.worker from pretrain",
        ),
        ("data/clips/bad.py", "def f():\n    from fame_ray import errors\n", "inside a function"),
        (
            "data/clips/bad.py",
            "from fame_ray.data.catalog import probe\n",
            "data.clips imports fame_ray.data.catalog.probe",
        ),
        (
            "downstream/bad.py",
            "from fame_ray.pretrain import worker\n",
            "downstream imports fame_ray.pretrain.worker from its sibling pretrain",
        ),
    ],
)
def test_the_checker_catches_what_it_should(tmp_path, monkeypatch, where, source, expected):
    """The test above can fail: a module that imports upward, lazily, across data/'s rooms or from
    a sibling is reported."""
    package = tmp_path / "fame_ray"
    for folder in ("data/clips", "data/catalog", "pretrain", "downstream"):
        (package / folder).mkdir(parents=True)
    (package / "errors.py").write_text("")
    (package / "pretrain" / "worker.py").write_text("")
    (package / "data" / "catalog" / "probe.py").write_text("")
    (package / where).write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", package)
    _, _, problems = _graph()
    assert any(expected in problem and where in problem for problem in problems), problems


def test_the_checker_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
