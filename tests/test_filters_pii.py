"""PII redaction: exact outputs, hard negatives, counts, and properties (hypothesis)."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.pii_eval import make_card, make_iban, make_negative, make_value
from transforms.reduction.filters.base import dict_counter
from transforms.reduction.filters.config import FilterConfigError
from transforms.reduction.filters.pii import (KINDS, PiiConfig, Redacted, find_pii, iban_valid, luhn_valid,
                                    redact_pii)


def test_redacts_each_kind_with_typed_placeholders_and_counts():
    counts, inc = dict_counter()
    text = ("Mail jane.doe+x@mail.example.co.uk or call +1 415 555 2671 / (415) 555-2671. "
            "Server 192.168.0.17 and 2001:db8::8a2e:370:7334. Card 4111 1111 1111 1111, "
            "IBAN DE89 3704 0044 0532 0130 00.")
    out = redact_pii(text, counter_inc_fn=inc)
    assert out == Redacted(
        "Mail <EMAIL> or call <PHONE> / <PHONE>. Server <IP_ADDRESS> and <IP_ADDRESS>. "
        "Card <CREDIT_CARD>, IBAN <IBAN>.",
        {"EMAIL": 1, "PHONE": 2, "IP_ADDRESS": 2, "CREDIT_CARD": 1, "IBAN": 1})
    assert counts == {"pii/EMAIL": 1, "pii/PHONE": 2, "pii/IP_ADDRESS": 2, "pii/CREDIT_CARD": 1,
                      "pii/IBAN": 1}


@pytest.mark.parametrize("text", [
    "Upgrade to version 1.2.3.4 today.", "Built with v10.0.0.1.", "release 2.14.1.0 is out",
    "Due 2024-01-15.", "Due 12/05/2023.", "Due 15.01.2024.", "At 2024-01-15 10:30 sharp.",
    "ISBN 978-3-16-148410-0", "ISBN-13: 9780306406157", "Order #4111 1111 1111 1112",
    "order 4111111111111112", "DE00 3704 0044 0532 0130 00", "At 12:30:45.",
    "MAC 00:1A:2B:3C:4D:5E", "Price $1,234.56", "pi is 3.14159", "Octet 999.1.2.3 is no IP.",
    "Call 555-1234 later.", "user at example dot com",
])
def test_hard_negatives_are_left_alone(text):
    assert redact_pii(text) == Redacted(text, {})


def test_kinds_can_be_chosen_and_unknown_kind_is_named():
    text = "a@b.org 10.0.0.1"
    assert redact_pii(text, PiiConfig(kinds=("IP_ADDRESS",))).text == "a@b.org <IP_ADDRESS>"
    with pytest.raises(FilterConfigError, match="PiiConfig.kinds: unknown kind"):
        PiiConfig(kinds=("SSN",))


def test_luhn_and_mod97():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert iban_valid("GB82 WEST 1234 5698 7654 32") and not iban_valid("GB83 WEST 1234 5698 7654 32")


SAFE = st.text(alphabet=st.sampled_from(list("abcdefghijklmnopqrstuvwxyzABCXYZ .,;!?'\"()\n-éß中")),
               max_size=200)


@settings(max_examples=200, deadline=None)
@given(SAFE)
def test_text_without_pii_characters_is_unchanged(text):
    assert redact_pii(text) == Redacted(text, {})


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(SAFE, st.sampled_from(KINDS), st.just("neg")), max_size=8),
       st.integers(0, 2**32))
def test_redaction_is_idempotent_and_deterministic(parts, seed):
    rng = random.Random(seed)
    pieces = []
    for p in parts:
        if p in KINDS:
            pieces.append(make_value(rng, p))
        elif p == "neg":
            pieces.append(make_negative(rng))
        else:
            pieces.append(p)
    text = " ".join(pieces)
    once = redact_pii(text)
    assert redact_pii(once.text) == Redacted(once.text, {})
    assert redact_pii(text) == once


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32), st.sampled_from(["CREDIT_CARD", "IBAN"]), SAFE, SAFE)
def test_valid_cards_and_ibans_are_always_found(seed, kind, before, after):
    rng = random.Random(seed)
    value = make_card(rng) if kind == "CREDIT_CARD" else make_iban(rng)
    text = before + " " + value + " " + after
    start = len(before) + 1
    assert (start, start + len(value), kind) in find_pii(text)
    assert redact_pii(text).text == before + " <" + kind + "> " + after


@pytest.mark.parametrize("text, expected", [
    # a card right after an IBAN whose last group is short: the card's regex match
    # starts inside the IBAN and must not skip past the card
    ("word a@uni-x.edu CH59 0201 2813 4353 8165 3 6596 5431 7040 4673 word",
     "word <EMAIL> <IBAN> <CREDIT_CARD> word"),
    # an IBAN-shaped run (failing mod-97) running into a found IBAN does not hide the
    # card after the found one
    ("5142042470608563 info@uni-x.edu BE05 5127 9513 2453 BE72 1464 5077 4179 "
     "5552764719617898",
     "<CREDIT_CARD> <EMAIL> BE05 5127 9513 2453 <IBAN> <CREDIT_CARD>"),
    ("BE68278472436116 BE89749367877832 6011244393874407 DE63980992833626536389 "
     "5595401435681184 info@example.org",
     "BE68278472436116 <IBAN> <CREDIT_CARD> <IBAN> <CREDIT_CARD> <EMAIL>"),
    ("jane+news@mail.example.co.uk BE77615315413854 BE81 6299 4384 9044 +33 1 18 56 79 82 w",
     "<EMAIL> BE77615315413854 <IBAN> <PHONE> w"),
])
def test_values_next_to_claimed_neighbours_are_found_in_one_pass(text, expected):
    """Found by the idempotence property: each was redacted only on a second pass."""
    once = redact_pii(text)
    assert once.text == expected
    assert redact_pii(once.text) == Redacted(once.text, {})
