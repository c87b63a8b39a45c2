"""PII redaction: e-mail, IP addresses, phone numbers, payment cards, IBANs -> typed placeholders.

Pure Python (``re`` and ``ipaddress``), deterministic, no model.  Kinds and
placeholders (``PLACEHOLDERS``):

=============  ===============  =====================================================
kind           placeholder      what is matched (and checked)
=============  ===============  =====================================================
EMAIL          ``<EMAIL>``      ``local@domain.tld`` (RFC 5322 dot-atom subset)
IBAN           ``<IBAN>``       2 letters, 2 check digits, 11-30 alphanumerics, spaces
                                every 4 allowed; the country's registered length and
                                ISO 13616 mod-97 == 1
CREDIT_CARD    ``<CREDIT_CARD>``13-19 digits (single spaces/hyphens between groups),
                                a card-network prefix (2-6), Luhn-valid
IP_ADDRESS     ``<IP_ADDRESS>`` IPv6 (validated by ``ipaddress``) and dotted-quad IPv4
                                (each octet 0-255), not part of a longer dotted run and
                                not after ``v``/``version``/``release`` (version strings)
PHONE          ``<PHONE>``      ``+CC`` then 8-15 digits, or 10-11 digits in 3+ groups
                                separated by space/``.``/``-`` or with a ``(area)``;
                                never ``/`` (dates), not after ``ISBN``
=============  ===============  =====================================================

Kinds are matched in the order above; a later kind never matches inside a
span already claimed, so a card number is never half-redacted as a phone.
Placeholders contain none of the characters the patterns need, so redaction
is idempotent.  Precision/recall on a labelled synthetic set with hard
negatives: ``benchmarks/pii_eval.py``, recorded in BENCHMARKS.md.
"""
import ipaddress
import re
from dataclasses import dataclass
from typing import Callable, Dict, NamedTuple, Optional, Tuple

from transforms.reduction.filters.config import FilterConfigError

KINDS = ("EMAIL", "IBAN", "CREDIT_CARD", "IP_ADDRESS", "PHONE")
PLACEHOLDERS = {kind: f"<{kind}>" for kind in KINDS}

EMAIL_RE = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])")
IBAN_RE = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}(?![A-Za-z0-9])")
CARD_RE = re.compile(r"(?<![\w.-])[2-6]\d{3}(?:[ -]?\d){9,15}(?![\w]|[.-]\d)")
IPV4_RE = re.compile(
    r"(?<![\w.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
    r"(?![\w]|\.\d)")
IPV6_RE = re.compile(r"(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{0,4}|"
                     r"(?:\d{1,3}\.){3}\d{1,3})(?![\w:])")
PHONE_RE = re.compile(
    r"(?<![\w+./:-])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]\d{2,8}){1,4}"
    r"(?![\w]|[./:-]\d)")
_VERSION_CONTEXT = re.compile(r"(?:\b[vV]|\bversion|\bVersion|\bVERSION|\brelease|\bRelease|"
                              r"\bver\.?|\bbuild|\bBuild)\s*[:=]?\s*$")
_ISBN_CONTEXT = re.compile(r"ISBN(?:-1[03])?:?\s*$", re.IGNORECASE)
# The start of an IBAN-shaped run (e.g. one failing mod-97): its digit groups are not a card or phone.
_IBAN_HEAD = re.compile(r"(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4})* ?$")
_DATE_RE = re.compile(r"\d{4}[-./]\d{1,2}[-./]\d{1,2}|\d{1,2}[-./]\d{1,2}[-./]\d{4}")


def _inside_iban_shape(text: str, start: int, free) -> bool:
    """True when ``start`` continues an IBAN-shaped run that is not a found IBAN: no
    part of the run is claimed (a run through a found IBAN ends at it, as it does
    once that IBAN is a placeholder, so redaction stays idempotent)."""
    m = _IBAN_HEAD.search(text, max(0, start - 40), start)
    return m is not None and free(m.start(), start)


def luhn_valid(digits: str) -> bool:
    """Luhn (mod 10) check of a digit string, as used by payment cards (ISO/IEC 7812-1)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# IBAN length per country (ISO 13616 IBAN registry).
IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22,
    "BR": 29, "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28,
    "EE": 20, "EG": 29, "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23,
    "GL": 18, "GR": 27, "GT": 28, "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26,
    "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20,
    "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18,
    "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29, "RO": 24, "RS": 22, "SA": 24,
    "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28, "TL": 23, "TN": 24,
    "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}


def iban_valid(iban: str) -> bool:
    """ISO 13616: the country's registered length (``IBAN_LENGTHS``; unknown country:
    not an IBAN), then ISO 7064 mod-97-10: move the first 4 characters to the end,
    letters to 10..35, the number mod 97 must be 1.  Spaces are ignored."""
    s = iban.replace(" ", "")
    if IBAN_LENGTHS.get(s[:2]) != len(s) or not s[2:4].isdigit() or not s.isalnum():
        return False
    rearranged = s[4:] + s[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def _card_ok(text: str, start: int, match: str, free) -> bool:
    if _inside_iban_shape(text, start, free):
        return False
    digits = match.replace(" ", "").replace("-", "")
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    # groups must be separated consistently (one separator kind, or none)
    if " " in match and "-" in match:
        return False
    return luhn_valid(digits)


def _ipv4_ok(text: str, start: int, match: str) -> bool:
    return _VERSION_CONTEXT.search(text, max(0, start - 12), start) is None


def _ipv6_ok(match: str) -> bool:
    if match.count(":") < 2 or not any(ch.isdigit() or ch in "abcdefABCDEF" for ch in match):
        return False
    try:
        ipaddress.IPv6Address(match)
    except ValueError:
        return False
    return True


def _phone_ok(text: str, start: int, match: str, free) -> bool:
    if _DATE_RE.match(match) or _inside_iban_shape(text, start, free):
        return False
    digits = sum(ch.isdigit() for ch in match)
    if match.startswith("+"):
        if not 8 <= digits <= 15:
            return False
    else:
        groups = len(re.findall(r"\d+", match))
        if not 10 <= digits <= 11 or (groups < 3 and "(" not in match):
            return False
    return _ISBN_CONTEXT.search(text, max(0, start - 10), start) is None


class Redacted(NamedTuple):
    """Redacted text and the number of replacements per kind (only kinds found)."""
    text: str
    counts: Dict[str, int]


@dataclass(frozen=True)
class PiiConfig:
    """Which kinds to redact (``kinds``, default all of ``KINDS``).

    Raises ``FilterConfigError`` naming an unknown kind.
    """
    kinds: Tuple[str, ...] = KINDS

    def __post_init__(self):
        kinds = tuple(self.kinds)
        unknown = [k for k in kinds if k not in KINDS]
        if unknown or isinstance(self.kinds, str):
            raise FilterConfigError(
                f"PiiConfig.kinds: unknown kind(s) {unknown or self.kinds!r}; known: {', '.join(KINDS)}")
        object.__setattr__(self, "kinds", tuple(k for k in KINDS if k in kinds))


def _longest_valid(regex, text, ok, boundaries=" -", free=None):
    """Spans ``(start, end)``: per regex match, the longest prefix ending at a group
    boundary (before a space or hyphen, or the match end) that passes ``ok(start, prefix)``.
    A greedy match that swallowed a neighbouring number still yields the valid value in
    front, and the search resumes right after it, so the neighbour is found too.
    ``free(start, end)``: whether a span is not yet claimed by an earlier kind; a
    prefix overlapping a claimed span is never taken (it would be dropped anyway, and
    the search would resume past the value behind it: redaction would then not be
    idempotent, the value found only once its neighbour is a placeholder)."""
    pos = 0
    while True:
        m = regex.search(text, pos)
        if m is None:
            return
        s = m.group()
        ends = [len(s)] + [i for i in range(len(s) - 1, 0, -1) if s[i] in boundaries]
        for e in ends:
            if (free is None or free(m.start(), m.start() + e)) and ok(m.start(), s[:e]):
                yield m.start(), m.start() + e
                pos = m.start() + e
                break
        else:
            pos = m.start() + 1


def find_pii(text: str, kinds: Tuple[str, ...] = KINDS):
    """Sorted, non-overlapping ``(start, end, kind)`` spans of PII in ``text``.

    Kinds claim spans in ``KINDS`` order; a candidate overlapping a claimed
    span is skipped.
    """
    claimed = []

    def free(s, e):
        return all(e <= cs or s >= ce for cs, ce, _ in claimed)

    for kind in kinds:
        if kind == "EMAIL":
            if "@" not in text:
                continue
            cands = ((m.start(), m.end()) for m in EMAIL_RE.finditer(text))
        elif kind == "IBAN":
            cands = _longest_valid(IBAN_RE, text, lambda start, c: iban_valid(c), free=free)
        elif kind == "CREDIT_CARD":
            cands = _longest_valid(CARD_RE, text, lambda start, c: _card_ok(text, start, c, free),
                                   free=free)
        elif kind == "IP_ADDRESS":
            cands = [(m.start(), m.end()) for m in IPV6_RE.finditer(text) if _ipv6_ok(m.group())]
            cands += [(m.start(), m.end()) for m in IPV4_RE.finditer(text)
                      if _ipv4_ok(text, m.start(), m.group())]
        else:
            def phone_ok(start, cand):
                return free(start, start + len(cand)) and _phone_ok(text, start, cand, free)
            cands = _longest_valid(PHONE_RE, text, phone_ok, " -.", free=free)
        for s, e in cands:
            if free(s, e):
                claimed.append((s, e, kind))
    claimed.sort()
    return claimed


def redact_pii(text: str, config: PiiConfig = PiiConfig(),
               counter_inc_fn: Optional[Callable[..., None]] = None) -> Redacted:
    """``text`` with every PII span replaced by its placeholder, and counts per kind.

    Deterministic and idempotent (``redact_pii(redact_pii(t).text).text ==
    redact_pii(t).text``).  ``counter_inc_fn(f"pii/{kind}", n)`` is called
    once per kind found.

    >>> redact_pii("mail bob@example.org or +44 20 7946 0958").text
    'mail <EMAIL> or <PHONE>'
    """
    spans = find_pii(text, config.kinds)
    if not spans:
        return Redacted(text, {})
    out, pos, counts = [], 0, {}
    for s, e, kind in spans:
        out.append(text[pos:s])
        out.append(PLACEHOLDERS[kind])
        counts[kind] = counts.get(kind, 0) + 1
        pos = e
    out.append(text[pos:])
    if counter_inc_fn is not None:
        for kind, n in counts.items():
            counter_inc_fn(f"pii/{kind}", n)
    return Redacted("".join(out), counts)
