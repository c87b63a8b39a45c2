"""The package layout is the architecture: a test walks every import in ``transforms/``.

Layers, lowest first: ``core`` (pure: no Beam, nothing else from ``transforms``)
< ``storage`` < ``processing`` < ``reduction`` < the top-level composites
(``transforms/prepare.py``).  The package's ``__init__`` is pure and lazy
(its version, and its public names loaded on first use), so any layer may
import it.  A module may import its own layer and the ones
below it, never one above; nothing in ``transforms`` imports ``pipelines``.
"""
import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "transforms"
RANK = {"core": 0, "storage": 1, "processing": 2, "reduction": 3}
TOP = 4  # transforms/<module>.py: composites over every layer


def _layer(module: str) -> int | None:
    """Rank of a ``transforms...`` module name (None: not ours)."""
    parts = module.split(".")
    if parts[0] != "transforms":
        return None
    if len(parts) == 1 or parts[1].startswith("__"):
        return RANK["core"]  # the package itself: lazy and pure (its version, its API names)
    return RANK.get(parts[1], TOP)


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """Every module a file imports, at any depth (function-level imports too)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = _module_name(path) if path.name == "__init__.py" else \
        _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            found.append((node.lineno, name))
            if name == "transforms" or (node.level and not node.module):
                found += [(node.lineno, f"{name}.{a.name}") for a in node.names]
    return found


MODULES = sorted(p for p in ROOT.rglob("*.py"))


def test_every_module_is_in_a_layer():
    loose = [p.name for p in ROOT.glob("*.py") if p.name not in ("__init__.py", "prepare.py")]
    assert loose == [], f"put these in core/, storage/, processing/ or reduction/: {loose}"
    assert {p.name for p in ROOT.iterdir() if p.is_dir() and p.name != "__pycache__"} == \
        set(RANK)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: _module_name(p))
def test_imports_only_its_own_layer_and_those_below(path):
    own = _layer(_module_name(path))
    wrong = []
    for line, name in _imports(path):
        if name.split(".")[0] == "pipelines":
            wrong.append(f"line {line}: {name} (transforms never import pipelines)")
        rank = _layer(name)
        if rank is not None and rank > own:
            wrong.append(f"line {line}: {name} (layer {rank} above {own})")
        if own == RANK["core"] and (name.split(".")[0] == "apache_beam"
                                    or (rank is not None and rank != RANK["core"])):
            wrong.append(f"line {line}: {name} (core is pure: no Beam, only core)")
    assert wrong == [], f"{path.relative_to(ROOT.parent)}: " + "; ".join(wrong)


def test_the_walker_sees_what_it_must_refuse():
    """The checks above are only as good as the import walker: feed it the faults."""
    assert _layer("transforms.storage.store") < _layer("transforms.processing.refs")
    sample = ROOT / "storage" / "store.py"
    names = {name for _, name in _imports(sample)}
    assert "transforms.core.codecs" in names and "apache_beam" in names
    assert _layer("transforms.prepare") == TOP and _layer("transforms") == RANK["core"]


def test_core_and_the_package_import_without_beam():
    """``import transforms`` and every core module load with Beam made unimportable."""
    core = [_module_name(p) for p in sorted((ROOT / "core").glob("*.py"))]
    code = ("import sys; sys.modules['apache_beam'] = None\n"
            "import importlib, transforms\n"
            f"for name in {core!r}: importlib.import_module(name)\n"
            "print('ok', len(transforms.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "ok"
