"""The order of document ids: one total order, used wherever "the smallest id" decides.

A record's id is an integer JSON number or a string; inside the pipeline it
travels as a string (an integer as its decimal digits, so ``7`` and ``"7"``
are one id).  ``id_order_key`` orders those strings:

* an id in canonical decimal integer form (``0``, ``42``, ``-3``: an optional
  ``-``, then digits without a leading zero) sorts **numerically**, integers of
  any size exactly, and **before** every other id;
* every other id sorts by Unicode code point (Python's ``str`` order; for
  UTF-8 bytes that is the byte order).

So ``2 < 10 < 102 < "10a" < "abc"``, and ``"007"`` (not canonical) is a string.
Distinct ids always have distinct keys: the order is total, and it is the same
on every runner.  It decides the exact-dedup winner (``transforms.reduction.dedup``), the
near-dedup component winner (``transforms.processing.components``, ``transforms.reduction.near_dedup``)
and the order of records inside a shard (``transforms.storage.store``).
"""
import re

_CANONICAL_INT = re.compile(r"-?(?:0|[1-9][0-9]*)")
_NINES_COMPLEMENT = str.maketrans("0123456789", "9876543210")


def id_order_key(doc_id: str) -> tuple:
    """Sort key of an id: integers (canonical decimal form) numerically, then strings.

    ``(0, sign, length, digits)`` for a canonical integer (compared without
    converting: any number of digits, no ``int`` size limit), ``(1, id)`` for
    any other string.
    """
    if not isinstance(doc_id, str):  # an int given directly (tests, library users)
        doc_id = str(doc_id)
    if _CANONICAL_INT.fullmatch(doc_id) and doc_id != "-0":
        if doc_id[0] != "-":
            return 0, 1, len(doc_id), doc_id
        digits = doc_id[1:]   # a longer magnitude, or larger digits, come first
        return 0, 0, -len(digits), digits.translate(_NINES_COMPLEMENT)
    return 1, doc_id


# every id of a list in canonical decimal integer form ("-0" is not), joined by commas
_CANONICAL_INTS = re.compile(r"(?:0|-?[1-9][0-9]*)(?:,(?:0|-?[1-9][0-9]*))*")
# one of them in that form: an item between commas (or the ends); an id holding a comma
# may look like one (then the tuples are used: never wrong), an integer id cannot hide
_CANONICAL_INT_ITEM = re.compile(r",(?:0|-?[1-9][0-9]*)(?![^,])")   # searched in "," + joined


def id_sort_keys(ids: list) -> list:
    """Sort keys of ``ids`` (a list of id strings) in the id order, one per id, for one
    sort, cheaper to make and compare than ``id_order_key``'s tuples: ``int(id)`` when
    every id of the list is a canonical decimal integer (their numeric order is the id
    order), the ids themselves when none is (the strings' order is the id order),
    else ``id_order_key(id)`` each.  Keys of two calls may be of different kinds: sort
    the keys of one call only.  The checks are regular-expression passes over the ids
    joined by commas (a comma inside an id shows in the count of commas, or makes
    an item that looks like an integer: then the tuples, never a wrong order)."""
    try:
        joined = ",".join(ids)
    except TypeError:   # an int given directly (tests, library users)
        return list(map(id_order_key, ids))
    if ids and joined.count(",") == len(ids) - 1 and _CANONICAL_INTS.fullmatch(joined):
        try:
            return list(map(int, ids))
        except ValueError:   # more digits than int() converts (sys.int_info)
            pass
    if _CANONICAL_INT_ITEM.search("," + joined) is None:   # no integer id: the strings' order
        return list(ids)
    return list(map(id_order_key, ids))


def id_less(a: str, b: str) -> bool:
    """``a`` comes before ``b`` in the id order."""
    return id_order_key(a) < id_order_key(b)


def smallest_id(ids) -> str:
    """The first of ``ids`` (an iterable of id strings) in the id order."""
    return min(ids, key=id_order_key)


def show_ids(ids, limit: int = 10) -> str:
    """Ids for a message, as a user wrote them in JSON: one in canonical integer form
    bare (``7``: it is also the id of ``"7"``, the same id), any other as a JSON string
    (``"a b"``); comma-separated, at most ``limit`` of them, then ``and N more``."""
    import json
    shown = [doc_id if isinstance(doc_id, str) and _CANONICAL_INT.fullmatch(doc_id)
             and doc_id != "-0" else str(doc_id) if isinstance(doc_id, int)
             else json.dumps(doc_id, ensure_ascii=False) for doc_id in list(ids)[:limit]]
    more = len(ids) - limit
    return ", ".join(shown) + (f" and {more:,} more" if more > 0 else "")
