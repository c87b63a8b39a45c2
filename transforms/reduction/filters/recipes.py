"""Filter recipes: a YAML file listing filters and their parameters, in order.

Shipped recipes live in ``transforms/reduction/filters/recipes/`` (package data of the
wheel) and are named by file stem (``web``, ``minimal``); any other path is
read as a file.  Format::

    name: web                     # optional, defaults to the file stem
    description: ...              # optional
    filters:                      # applied in this order; first drop wins
      - filter: language          # a key of FILTERS
        params: {languages: [en], threshold: 0.65}
      - filter: gopher_quality    # params omitted: the published defaults
      - filter: c4
        name: c4_strict           # optional counter/reason name (unique)
        params: {min_num_sentences: 7}

``load_recipe(path_or_name)`` validates everything before any data is read:
an unknown top-level key, filter or parameter, or a bad value, raises
``RecipeError`` with one line naming the file and the key, e.g.
``recipes/web.yaml: filters[2].params.min_doc_wrds: unknown parameter of
gopher_quality (known: max_avg_word_length, ...)``.  ``Recipe.resolved`` is
the recipe with every parameter filled in (defaults included), a plain
JSON-able dict to record in a manifest or run report; ``Recipe.build()``
returns the filter objects for ``FilterChain`` / ``ApplyFilters``.
"""
import dataclasses
import difflib
import os
from typing import Dict, List, NamedTuple, Optional, Tuple

import yaml

from transforms.reduction.filters.c4 import C4QualityConfig, C4QualityFilter
from transforms.reduction.filters.config import FilterConfigError
from transforms.reduction.filters.fineweb import FineWebQualityConfig, FineWebQualityFilter
from transforms.reduction.filters.gopher import (GopherQualityConfig, GopherQualityFilter,
                                       GopherRepetitionConfig, GopherRepetitionFilter)
from transforms.reduction.filters.langid import LanguageConfig, LanguageFilter

RECIPES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "recipes")

# filter key -> (config class, filter class)
FILTERS = {
    "gopher_quality": (GopherQualityConfig, GopherQualityFilter),
    "gopher_repetition": (GopherRepetitionConfig, GopherRepetitionFilter),
    "c4": (C4QualityConfig, C4QualityFilter),
    "fineweb": (FineWebQualityConfig, FineWebQualityFilter),
    "language": (LanguageConfig, LanguageFilter),
}
_TOP_KEYS = ("name", "description", "filters")
_STEP_KEYS = ("filter", "name", "params")


class RecipeError(ValueError):
    """A recipe file is invalid; the message is one line naming the file and the key."""


class Step(NamedTuple):
    key: str        # the filter kind, a key of FILTERS
    name: str       # counter / reason name
    config: object  # the frozen config dataclass


class Recipe(NamedTuple):
    name: str
    description: str
    source: str
    steps: Tuple[Step, ...]

    @property
    def resolved(self) -> dict:
        """``{"name", "description", "filters": [{"filter", "name", "params"}]}`` with every parameter."""
        return {"name": self.name, "description": self.description,
                "filters": [{"filter": s.key, "name": s.name, "params": _plain(dataclasses.asdict(s.config))}
                            for s in self.steps]}

    def build(self) -> List:
        """The filter objects, in order."""
        return [FILTERS[s.key][1](s.config, name=s.name) for s in self.steps]


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def recipe_path(path_or_name: str) -> str:
    """A shipped recipe's path for a bare name (``"web"``), else the path given."""
    if os.sep not in path_or_name and not path_or_name.endswith((".yaml", ".yml")):
        return os.path.join(RECIPES_DIR, f"{path_or_name}.yaml")
    return path_or_name


def _nearest(name: str, known: List[str]) -> Optional[str]:
    """The shipped recipe a mistyped ``name`` most likely meant (as
    ``pipelines.exit_codes.nearest`` does for flags: a name it abbreviates,
    else the closest by ``difflib``, ratio at least 0.6), or None."""
    longer = [k for k in known if k.startswith(name)]
    if longer:
        return difflib.get_close_matches(name, longer, 1, 0.0)[0]
    close = difflib.get_close_matches(name, known, 1, 0.6)
    return close[0] if close else None


def shipped_recipes() -> List[str]:
    """Names of the recipes shipped with the package, sorted."""
    return sorted(f[:-5] for f in os.listdir(RECIPES_DIR) if f.endswith(".yaml"))


def parse_recipe(data, source: str) -> Recipe:
    """Validate a loaded YAML mapping; ``source`` names the file in errors."""
    def fail(key, msg):
        raise RecipeError(f"{source}: {key}: {msg}")

    if not isinstance(data, dict):
        fail("(top)", "a recipe must be a mapping with a 'filters' list")
    for key in data:
        if key not in _TOP_KEYS:
            fail(key, f"unknown key (known: {', '.join(_TOP_KEYS)})")
    filters = data.get("filters")
    if not isinstance(filters, list) or not filters:
        fail("filters", "must be a non-empty list")
    steps, names = [], set()
    for i, step in enumerate(filters):
        where = f"filters[{i}]"
        if not isinstance(step, dict):
            fail(where, "must be a mapping with a 'filter' key")
        for key in step:
            if key not in _STEP_KEYS:
                fail(f"{where}.{key}", f"unknown key (known: {', '.join(_STEP_KEYS)})")
        kind = step.get("filter")
        if kind not in FILTERS:
            fail(f"{where}.filter", f"unknown filter {kind!r} (known: {', '.join(sorted(FILTERS))})")
        config_cls = FILTERS[kind][0]
        params = step.get("params") or {}
        if not isinstance(params, dict):
            fail(f"{where}.params", "must be a mapping of parameter: value")
        known = [f.name for f in dataclasses.fields(config_cls)]
        for key in params:
            if key not in known:
                fail(f"{where}.params.{key}", f"unknown parameter of {kind} (known: {', '.join(sorted(known))})")
        try:
            config = config_cls(**params)
        except FilterConfigError as e:
            fail(f"{where}.params", str(e))
        name = step.get("name", kind)
        if not isinstance(name, str) or not name or "/" in name or "." in name:
            fail(f"{where}.name", f"must be a non-empty string without '/' or '.', got {name!r}")
        if name in names:
            fail(f"{where}.name", f"{name!r} is used twice; give one of them another 'name'")
        names.add(name)
        steps.append(Step(kind, name, config))
    name = data.get("name", os.path.splitext(os.path.basename(source))[0])
    return Recipe(str(name), str(data.get("description", "")), source, tuple(steps))


def load_recipe(path_or_name: str) -> Recipe:
    """Load and validate a recipe file (or a shipped recipe by name).

    Raises ``RecipeError`` (one line: file, key, problem) for a name that is
    no shipped recipe (``unknown recipe 'nope'; known: minimal, web``, with the
    nearest name when one is close), a missing or unreadable file (named as
    given), bad YAML or an invalid recipe.
    """
    path = recipe_path(path_or_name)
    known = shipped_recipes()
    if path != path_or_name and path_or_name not in known:   # a name, not a shipped one
        near = _nearest(path_or_name, known)
        hint = f" (did you mean {near}?)" if near else ""
        raise RecipeError(f"unknown recipe {path_or_name!r}{hint}; known: {', '.join(known)} "
                          "(or a recipe file's path)")
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise RecipeError(f"{path}: no such recipe file (shipped recipes: "
                          f"{', '.join(known)})") from None
    except IsADirectoryError:
        raise RecipeError(f"{path}: a folder, not a recipe file") from None
    except OSError as e:   # permission denied, ...
        raise RecipeError(f"{path}: cannot read the recipe file: "
                          f"{(e.strerror or str(e)).lower()}") from None
    except yaml.YAMLError as e:
        raise RecipeError(f"{path}: not valid YAML: {' '.join(str(e).split())}") from None
    return parse_recipe(data, path)


def describe(recipe: Recipe) -> Dict[str, object]:
    """Alias of ``recipe.resolved`` for report writers."""
    return recipe.resolved
