"""Replica placement by weighted rendezvous (highest-random-weight) hashing.

Each (item, root) pair gets a score from a stable hash; an item's replicas go
to the R roots with the highest scores.  Adding a root moves only the replicas
the new root wins (about R/(N+1) of them), and no root is chosen twice.  With
weights the score is ``-w / ln(u)`` (u uniform in (0, 1) from the hash), which
gives each root a share of first choices proportional to its weight.
"""
import math
from dataclasses import dataclass

from transforms.hashing import stable_hash64

_TWO_POW_64 = float(1 << 64)


@dataclass(frozen=True)
class Root:
    uri: str
    weight: float = 1.0


def parse_roots(spec: str) -> list[Root]:
    """Parse ``--output_roots``: comma-separated URIs, each optionally ``=weight``."""
    roots = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
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
        raise ValueError(f"--output_roots names a root more than once: {dupes}")
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
