"""Precision and recall of PII redaction on a labelled synthetic set with hard negatives.

Every document is filler prose with 1-4 inserted values, each either a PII
value (labelled with its kind and exact span) or a hard negative (labelled
not-PII): version strings that look like IPv4 addresses (``version
1.2.3.4``), dates that look like phone numbers (``2024-01-15``,
``12/05/2023``, ``15.01.2024``), ISBNs, 16-digit order numbers that fail Luhn,
IBAN-shaped strings that fail mod-97, clock times and MAC addresses (IPv6
look-alikes), prices and decimals.  A detection counts as correct when kind,
start and end all match.  Generators are seeded (``random.Random``).

    python -m benchmarks.pii_eval --docs 5000 --seed 1
"""
import argparse
import ipaddress
import random
import time
from collections import Counter

FILLER = ["Please see the notes below.", "The meeting moved to the main hall.",
          "Thanks for the quick reply.", "We shipped the parcel yesterday.",
          "Details follow in the next section.", "The update fixes several bugs."]
PREFIX = {"EMAIL": ["Write to", "Contact", "Email:", "cc"],
          "IP_ADDRESS": ["Server at", "Blocked IP", "from host", "address"],
          "PHONE": ["Call", "Phone:", "Tel.", "ring us on"],
          "CREDIT_CARD": ["Card:", "paid with card", "CC no.", "charged to"],
          "IBAN": ["IBAN:", "transfer to", "account", "Bank account"]}


def luhn_complete(rng, prefix: str, length: int) -> str:
    """A Luhn-valid number of ``length`` digits starting with ``prefix``."""
    body = prefix + "".join(str(rng.randint(0, 9)) for _ in range(length - len(prefix) - 1))
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return body + str((10 - total % 10) % 10)


def make_card(rng) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15),
                                 ("37", 15), ("6011", 16), ("65", 16), ("4", 13), ("62", 19)])
    digits = luhn_complete(rng, prefix, length)
    style = rng.choice(["plain", "space", "dash"])
    if style == "plain":
        return digits
    groups = [digits[i:i + 4] for i in range(0, len(digits), 4)]
    return (" " if style == "space" else "-").join(groups)


IBAN_LENGTHS = {"DE": 22, "GB": 22, "FR": 27, "NL": 18, "ES": 24, "IT": 27, "CH": 21, "BE": 16}


def iban_check(country: str, bban: str) -> str:
    number = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    return f"{98 - int(number) % 97:02d}"


def make_iban(rng, valid: bool = True) -> str:
    country = rng.choice(sorted(IBAN_LENGTHS))
    n = IBAN_LENGTHS[country] - 4
    alnum = country in ("GB", "NL")
    bban = ("".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4)) if alnum else "") + \
        "".join(str(rng.randint(0, 9)) for _ in range(n - (4 if alnum else 0)))
    check = iban_check(country, bban)
    if not valid:  # any other check digits 02-98 (98 and 01 are the same mod 97)
        check = rng.choice([f"{c:02d}" for c in range(2, 99) if c % 97 != int(check) % 97])
    iban = country + check + bban
    if rng.random() < 0.6:
        return " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
    return iban


def make_value(rng, kind: str) -> str:
    if kind == "EMAIL":
        user = rng.choice(["john.smith", "a.b", "info", "jane_doe+news", "x99", "support-team"])
        dom = rng.choice(["example.org", "mail.example.co.uk", "corp.example.com", "uni-x.edu"])
        return f"{user}@{dom}"
    if kind == "IP_ADDRESS":
        if rng.random() < 0.5:
            return ".".join(str(rng.randint(0, 255)) for _ in range(4))
        addr = ipaddress.IPv6Address(rng.getrandbits(128) & ~((1 << rng.choice([0, 32, 64])) - 1))
        return addr.exploded if rng.random() < 0.3 else str(addr)
    if kind == "PHONE":
        d = lambda n: "".join(str(rng.randint(0, 9)) for _ in range(n))  # noqa: E731
        return rng.choice([f"+1 {rng.randint(201, 989)} {d(3)} {d(4)}", f"+44 20 {d(4)} {d(4)}",
                           f"({rng.randint(201, 989)}) {d(3)}-{d(4)}", f"{rng.randint(201, 989)}-{d(3)}-{d(4)}",
                           f"{rng.randint(201, 989)}.{d(3)}.{d(4)}", f"+49 30 {d(8)}",
                           f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}", f"+81-3-{d(4)}-{d(4)}"])
    if kind == "CREDIT_CARD":
        return make_card(rng)
    return make_iban(rng)


def make_negative(rng) -> str:
    n = rng.randint
    bad_card = luhn_complete(rng, "4", 16)
    bad_card = bad_card[:-1] + str((int(bad_card[-1]) + n(1, 9)) % 10)
    return rng.choice([
        f"version {n(1, 20)}.{n(0, 20)}.{n(0, 20)}.{n(0, 99)}", f"v{n(1, 9)}.{n(0, 9)}.{n(0, 9)}.{n(0, 9)}",
        f"release {n(1, 5)}.{n(0, 30)}.{n(0, 9)}.{n(0, 9)}",
        f"{n(1990, 2030)}-{n(1, 12):02d}-{n(1, 28):02d}", f"{n(1, 28):02d}/{n(1, 12):02d}/{n(1990, 2030)}",
        f"{n(1, 28):02d}.{n(1, 12):02d}.{n(1990, 2030)}",
        f"{n(1990, 2030)}-{n(1, 12):02d}-{n(1, 28):02d} {n(0, 23):02d}:{n(0, 59):02d}",
        f"ISBN 978-{n(0, 9)}-{n(10, 99)}-{n(100000, 999999)}-{n(0, 9)}",
        f"ISBN-13: 978{n(1000000000, 9999999999)}",
        f"Order #{' '.join(bad_card[i:i + 4] for i in range(0, 16, 4))}", f"order {bad_card}",
        make_iban(rng, valid=False),
        f"{n(0, 23):02d}:{n(0, 59):02d}:{n(0, 59):02d}",
        ":".join(f"{n(0, 255):02X}" for _ in range(6)),
        f"${n(1, 99)},{n(100, 999)}.{n(10, 99)}", f"{n(1, 9)}.{n(10000, 99999)}",
        f"{n(1, 999)} {n(100, 999)} {n(100, 999)} units",
    ])


def make_documents(n: int, seed: int = 1):
    """``[(text, [(start, end, kind), ...])]``."""
    rng = random.Random(seed)
    kinds = ["EMAIL", "IP_ADDRESS", "PHONE", "CREDIT_CARD", "IBAN"]
    out = []
    for _ in range(n):
        parts, spans, pos = [], [], 0

        def add(s):
            nonlocal pos
            parts.append(s)
            pos += len(s)
        for _ in range(rng.randint(1, 4)):
            add(rng.choice(FILLER) + " ")
            if rng.random() < 0.5:
                kind = rng.choice(kinds)
                add(rng.choice(PREFIX[kind]) + " ")
                value = make_value(rng, kind)
                spans.append((pos, pos + len(value), kind))
                add(value)
            else:
                add("Ref " + make_negative(rng))
            add(rng.choice([". ", ", ", " ", ".\n"]))
        out.append(("".join(parts), spans))
    return out


def evaluate(docs):
    from transforms.reduction.filters.pii import KINDS, find_pii
    tp, fp, fn = Counter(), Counter(), Counter()
    t0 = time.process_time()
    found_all = [find_pii(text) for text, _ in docs]
    cpu = time.process_time() - t0
    examples = {"fp": [], "fn": []}
    for (text, truth), found in zip(docs, found_all):
        truth_set, found_set = set(truth), {tuple(x) for x in found}
        for s in found_set:
            if s in truth_set:
                tp[s[2]] += 1
            else:
                fp[s[2]] += 1
                if len(examples["fp"]) < 8:
                    examples["fp"].append((s[2], text[s[0]:s[1]]))
        for s in truth_set - found_set:
            fn[s[2]] += 1
            if len(examples["fn"]) < 8:
                examples["fn"].append((s[2], text[s[0]:s[1]]))
    return KINDS, tp, fp, fn, cpu, examples


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    docs = make_documents(args.docs, args.seed)
    kinds, tp, fp, fn, cpu, examples = evaluate(docs)
    negatives = sum(text.count("Ref ") for text, _ in docs)
    print(f"{len(docs)} documents, {sum(len(s) for _, s in docs)} PII values, {negatives} hard negatives; "
          f"{len(docs) / cpu:,.0f} docs / CPU s")
    print("| kind | true | found | precision | recall |")
    print("|---|---:|---:|---:|---:|")
    for k in kinds + ("all",):
        t = sum(tp.values()) if k == "all" else tp[k]
        f = sum(fp.values()) if k == "all" else fp[k]
        m = sum(fn.values()) if k == "all" else fn[k]
        prec = t / (t + f) if t + f else 1.0
        rec = t / (t + m) if t + m else 1.0
        print(f"| {k} | {t + m} | {t + f} | {prec:.4f} | {rec:.4f} |")
    print("false positives:", examples["fp"])
    print("false negatives:", examples["fn"])


if __name__ == "__main__":
    main()
