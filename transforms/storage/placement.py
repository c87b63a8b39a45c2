"""Replica placement by weighted rendezvous (highest-random-weight) hashing.

Each (item, root) pair gets a score from a stable hash; an item's replicas go
to the R roots with the highest scores.  Adding a root moves only the replicas
the new root wins (about 1/(N+1) of all replicas), and no root is chosen
twice.  With weights the score is ``-w / ln(u)`` (u uniform in (0, 1) from the
hash), which gives each root a share of first choices proportional to its
weight.  ``Placement`` adds affinity: rules (``--placement``) that pin a
partition's replicas to a subset of the roots.
"""
import math
import os
from dataclasses import dataclass
from urllib.parse import unquote

from transforms.core.hashing import stable_hash64

_TWO_POW_64 = float(1 << 64)


@dataclass(frozen=True)
class Root:
    uri: str
    weight: float = 1.0


def parse_roots(spec: str) -> list[Root]:
    """Parse ``--output_roots``: comma-separated URIs, each optionally ``=weight``.

    A local path starting with ``~`` is expanded (the shell expands only the
    first item of ``~/a,~/b``).  Raises ValueError for an empty item (``,b``,
    ``a,,b``, ``a,``: an unset variable would silently lower the replication),
    a bad weight, or a root named twice.
    """
    if not spec.strip():
        raise ValueError("--output_roots names no root")
    roots = []
    for position, part in enumerate((p.strip() for p in spec.split(",")), 1):
        if not part:
            raise ValueError(f"--output_roots has an empty item (item {position} of "
                             f"{spec!r}): a comma too many, or an unset variable?")
        if part.startswith("~"):
            part = os.path.expanduser(part)
        uri, weight = part, 1.0
        head, sep, tail = part.rpartition("=")
        if sep and _is_number(tail):
            uri, weight = head, float(tail)
            if not weight > 0 or math.isinf(weight):
                raise ValueError(f"root weight must be a positive number: {part!r}")
        roots.append(Root(uri, weight))
    if not roots:
        raise ValueError("--output_roots names no root")
    uris = [r.uri for r in roots]
    dupes = sorted({u for u in uris if uris.count(u) > 1})
    if dupes:
        raise ValueError(f"--output_roots names a root more than once: {', '.join(dupes)}")
    return roots


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def rendezvous_score(item: str, root: Root) -> float:
    h = stable_hash64(f"{root.uri}\x00{item}", seed=0x9A0C)
    u = (h + 0.5) / _TWO_POW_64  # strictly inside (0, 1)
    return -root.weight / math.log(u)


def place(item: str, roots: list[Root], replication: int) -> list[str]:
    """The URIs of the ``replication`` roots holding ``item``, best first."""
    if replication < 1:
        raise ValueError(f"replication must be >= 1, got {replication}")
    if replication > len(roots):
        raise ValueError(
            f"replication {replication} needs at least {replication} distinct roots, "
            f"got {len(roots)}: {[r.uri for r in roots]}")
    ranked = sorted(roots, key=lambda r: (-rendezvous_score(item, r), r.uri))
    return [r.uri for r in ranked[:replication]]


# ---------------------------------------------------------------- affinity

ANY = "*"
PARTITION_SELECTOR = "partition"


@dataclass(frozen=True)
class Rule:
    """``selector:root,root``: ``*``, ``FIELD=VALUE`` or ``partition=NAME``."""
    selector: str
    roots: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str] | None:
        """``(field, value)`` of a ``FIELD=VALUE`` selector; None for ``*``."""
        if self.selector == ANY:
            return None
        field, _, value = self.selector.partition("=")
        return field, value


def parse_rules(spec: str, normalise=lambda uri: uri) -> list[Rule]:
    """Parse ``--placement 'lang=zh:/mnt/asia1,/mnt/asia2;*:/mnt/a,/mnt/b'``.

    A rule is ``SELECTOR:ROOTS``; the selector ends at the first ``:`` (write a
    ``:`` or ``;`` inside a value as ``%3A`` / ``%3B``); roots are comma-separated.
    """
    rules, seen = [], set()
    for text in (r.strip() for r in spec.split(";")):
        if not text:
            continue
        selector, sep, roots_text = text.partition(":")
        selector = selector.strip()
        if not sep or not selector:
            raise ValueError(f"--placement rule {text!r} is not SELECTOR:ROOT[,ROOT...]")
        if selector != ANY:
            field, eq, value = selector.partition("=")
            if not eq or not field.strip():
                raise ValueError(
                    f"--placement selector {selector!r} is neither '*' nor FIELD=VALUE")
            selector = f"{field.strip()}={unquote(value)}"
        roots = tuple(normalise(r.strip()) for r in roots_text.split(",") if r.strip())
        if not roots:
            raise ValueError(f"--placement rule {text!r} names no root")
        if len(set(roots)) != len(roots):
            raise ValueError(f"--placement rule {text!r} names a root more than once")
        if selector in seen:
            raise ValueError(f"--placement has two rules for {selector!r}")
        seen.add(selector)
        rules.append(Rule(selector, roots))
    if not rules:
        raise ValueError("--placement names no rule")
    return rules


class Placement:
    """Which roots may hold a partition's replicas, and the rendezvous choice among them.

    Without rules every partition may use every root.  With rules, a partition
    matched by ``FIELD=VALUE`` (its field value) or ``partition=NAME`` (its
    folder name) uses that rule's roots; any other partition uses the ``*``
    rule's roots, or every root when there is no ``*`` rule.  Weights always
    come from ``--output_roots``.
    """

    def __init__(self, roots: list[Root], replication: int, rules: list[Rule] = (),
                 field: str | None = None):
        if replication < 1:
            raise ValueError(f"replication must be >= 1, got {replication}")
        self.roots = list(roots)
        self.replication = replication
        self.rules = list(rules)
        self.field = field
        if replication > len(self.roots):
            raise ValueError(
                f"replication {replication} needs at least {replication} distinct roots, "
                f"got {len(self.roots)}: {[r.uri for r in self.roots]}")
        by_uri = {r.uri: r for r in self.roots}
        for rule in self.rules:
            unknown = [u for u in rule.roots if u not in by_uri]
            if unknown:
                raise ValueError(
                    f"--placement rule {rule.selector!r} names root(s) {unknown} that are "
                    f"not in --output_roots {sorted(by_uri)}")
            if len(rule.roots) < replication:
                raise ValueError(
                    f"--placement pins {rule.selector!r} to {len(rule.roots)} root(s), fewer "
                    f"than the replication factor {replication}")
            key = rule.key
            if key and key[0] not in (field, PARTITION_SELECTOR):
                raise ValueError(
                    f"--placement selector {rule.selector!r} names field {key[0]!r}, but the "
                    f"store is partitioned by {field!r}; use {field}=VALUE, "
                    f"{PARTITION_SELECTOR}=NAME or '*'")
        self._by_uri = by_uri

    def rule_for(self, name: str, value_text: str | None) -> Rule | None:
        """The rule of the partition folder ``name`` whose field value reads ``value_text``."""
        fallback = None
        for rule in self.rules:
            key = rule.key
            if key is None:
                fallback = rule
            elif key[0] == self.field and value_text is not None and key[1] == value_text:
                return rule
            elif key[0] == PARTITION_SELECTOR and key[1] == name:
                return rule
        return fallback

    def roots_for(self, name: str = "", value_text: str | None = None) -> list[Root]:
        rule = self.rule_for(name, value_text)
        if rule is None:
            return self.roots
        return [self._by_uri[u] for u in rule.roots]

    def place(self, item: str, name: str = "", value_text: str | None = None) -> list[str]:
        return place(item, self.roots_for(name, value_text), self.replication)

    def describe(self) -> list[dict]:
        """The rules as recorded in a manifest."""
        return [{"match": r.selector, "roots": list(r.roots)} for r in self.rules]
