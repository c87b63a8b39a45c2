"""Agreement and speed of our heuristic filters against datatrove's, on the same documents.

For each of Gopher quality, Gopher repetition, C4 quality and FineWeb quality
(default parameters on both sides; C4 without bad words), every document is
judged independently by our filter and by datatrove's; the script reports, per
filter, the fraction of documents with the same keep/drop decision, per rule
the fraction with the same "dropped by this rule" answer, the disagreeing
documents by (ours, datatrove) reason pair, and the documents per CPU second
of each side (``time.process_time`` of the one process judging, after one
warm-up document, so spaCy's model load is not counted).

Datatrove runs in its own venv (``--datatrove_python``), as a subprocess of
this script reading the same JSONL file:

    python3 -m venv .venv-datatrove
    .venv-datatrove/bin/pip install "datatrove==0.10.*" "spacy>=3.8,<4" regex
    python -m benchmarks.filter_corpus --docs 10000 --out benchmarks/data/filters10k.jsonl
    python -m benchmarks.filters_agreement --docs benchmarks/data/filters10k.jsonl \\
        --datatrove_python .venv-datatrove/bin/python --examples 3
"""
import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter

FILTERS = ("gopher_quality", "gopher_repetition", "c4", "fineweb")

# datatrove reason -> our rule name (same rule, different name)
DT_RULES = {
    "gopher_quality": {
        "gopher_short_doc": "short_doc", "gopher_long_doc": "long_doc",
        "gopher_below_avg_threshold": "below_avg_word_length",
        "gopher_above_avg_threshold": "above_avg_word_length",
        "gopher_too_many_hashes": "too_many_hashes", "gopher_too_many_ellipsis": "too_many_ellipsis",
        "gopher_too_many_bullets": "too_many_bullets",
        "gopher_too_many_end_ellipsis": "too_many_end_ellipsis",
        "gopher_below_alpha_threshold": "below_alpha_ratio", "gopher_enough_stop_words": "few_stop_words",
    },
}


def read_docs(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def judge_datatrove(docs):
    """{filter: ([reason or None per doc], cpu_seconds)} with datatrove 0.10's filters."""
    from datatrove.data import Document
    from datatrove.pipeline.filters import (C4QualityFilter, FineWebQualityFilter,
                                            GopherQualityFilter, GopherRepetitionFilter)
    from datatrove.pipeline.filters.base_filter import get_filter_result
    filters = {"gopher_quality": GopherQualityFilter(), "gopher_repetition": GopherRepetitionFilter(),
               "c4": C4QualityFilter(), "fineweb": FineWebQualityFilter()}
    out = {}
    for name, f in filters.items():
        f.filter(Document(text=docs[0]["text"], id="warmup"))
        reasons = []
        t0 = time.process_time()
        for d in docs:
            keep, reason = get_filter_result(f.filter(Document(text=d["text"], id=d["id"])))
            reasons.append(None if keep else (reason or "dropped"))
        out[name] = (reasons, time.process_time() - t0)
    t0 = time.process_time()
    for d in docs:  # the four filters in a row on each document (spaCy tokens cached between them)
        doc = Document(text=d["text"], id=d["id"])
        for f in filters.values():
            keep, _ = get_filter_result(f.filter(doc))
            if not keep:
                break
    out["chain"] = ([], time.process_time() - t0)
    import resource
    out["peak_rss_mib"] = ([], resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return out


def judge_ours(docs):
    from transforms.reduction.filters.base import Document
    from transforms.reduction.filters.c4 import C4QualityFilter
    from transforms.reduction.filters.fineweb import FineWebQualityFilter
    from transforms.reduction.filters.gopher import GopherQualityFilter, GopherRepetitionFilter
    filters = {"gopher_quality": GopherQualityFilter(), "gopher_repetition": GopherRepetitionFilter(),
               "c4": C4QualityFilter(), "fineweb": FineWebQualityFilter()}
    out = {}
    for name, f in filters.items():
        f(Document("warmup", docs[0]["text"]))
        reasons = []
        t0 = time.process_time()
        for d in docs:
            drop = f(Document(d["id"], d["text"]))
            reasons.append(None if drop is None else drop.rule)
        out[name] = (reasons, time.process_time() - t0)
    from transforms.reduction.filters.base import FilterChain
    chain = FilterChain(filters.values())
    t0 = time.process_time()
    for d in docs:  # the four filters in a row on each document (words shared via DocView)
        chain(Document(d["id"], d["text"]))
    out["chain"] = ([], time.process_time() - t0)
    return out


def compare(docs, ours, theirs, examples: int):
    rows, details = [], {}
    n = len(docs)
    for name in FILTERS:
        mine, my_cpu = ours[name]
        dt, dt_cpu = theirs[name]
        dt = [None if r is None else DT_RULES.get(name, {}).get(r, r) for r in dt]
        same = sum((a is None) == (b is None) for a, b in zip(mine, dt))
        rules = sorted({r for r in mine + dt if r is not None})
        per_rule = {r: sum((a == r) == (b == r) for a, b in zip(mine, dt)) / n for r in rules}
        pairs = Counter((a, b) for a, b in zip(mine, dt) if a != b)
        ex = {}
        for i, (a, b) in enumerate(zip(mine, dt)):
            if a != b and len(ex.setdefault(f"{a} / {b}", [])) < examples:
                ex[f"{a} / {b}"].append(docs[i]["id"])
        rows.append({
            "filter": name, "docs": n,
            "dropped_ours": sum(a is not None for a in mine), "dropped_datatrove": sum(b is not None for b in dt),
            "decision_agreement": same / n, "min_rule_agreement": min(per_rule.values()) if per_rule else 1.0,
            "ours_docs_per_cpu_s": n / my_cpu, "datatrove_docs_per_cpu_s": n / dt_cpu,
            "speedup": dt_cpu / my_cpu,
        })
        details[name] = {"per_rule_agreement": per_rule,
                         "disagreements": {f"{a} / {b}": c for (a, b), c in pairs.most_common()},
                         "examples": ex}
    return rows, details


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", required=True, help="JSONL with id and text")
    parser.add_argument("--datatrove_python", help="python of the datatrove venv")
    parser.add_argument("--side", choices=["datatrove"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--examples", type=int, default=3, help="ids listed per disagreement class")
    parser.add_argument("--report", help="write the full comparison as JSON here")
    parser.add_argument("--reuse_datatrove", action="store_true",
                        help="reuse datatrove's decisions from a previous run on the same file")
    args = parser.parse_args(argv)
    docs = read_docs(args.docs)
    if args.side == "datatrove":
        result = judge_datatrove(docs)
        with open(args.out, "w") as f:
            json.dump(result, f)
        return
    if not args.datatrove_python:
        parser.error("--datatrove_python is required")
    tmp = args.docs + ".datatrove.json"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.getcwd()
    if not (args.reuse_datatrove and os.path.exists(tmp)):
        subprocess.run([args.datatrove_python, "-m", "benchmarks.filters_agreement", "--docs", args.docs,
                        "--side", "datatrove", "--out", tmp], check=True, env=env)
    with open(tmp) as f:
        theirs = {k: (v[0], v[1]) for k, v in json.load(f).items()}
    ours = judge_ours(docs)
    import resource
    ours_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows, details = compare(docs, ours, theirs, args.examples)
    print("| filter | docs | dropped (ours / datatrove) | decision agreement | lowest per-rule agreement "
          "| ours docs/CPU s | datatrove docs/CPU s | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['filter']} | {r['docs']} | {r['dropped_ours']} / {r['dropped_datatrove']} "
              f"| {r['decision_agreement']:.2%} | {r['min_rule_agreement']:.2%} "
              f"| {r['ours_docs_per_cpu_s']:,.0f} | {r['datatrove_docs_per_cpu_s']:,.0f} | {r['speedup']:.1f}x |")
    chain_ours, chain_dt = ours["chain"][1], theirs["chain"][1]
    print(f"| all four in a row (first drop wins) | {len(docs)} | | | | {len(docs) / chain_ours:,.0f} "
          f"| {len(docs) / chain_dt:,.0f} | {chain_dt / chain_ours:.1f}x |")
    print(f"\npeak RSS: ours {ours_rss:,.0f} MiB (this process), datatrove {theirs['peak_rss_mib'][1]:,.0f} MiB"
          " (its process); CPU s: ours "
          f"{sum(ours[n][1] for n in FILTERS):.1f} + chain {chain_ours:.1f}, datatrove "
          f"{sum(theirs[n][1] for n in FILTERS):.1f} + chain {chain_dt:.1f}")
    for name, d in details.items():
        if d["disagreements"]:
            print(f"\n{name}: disagreements (ours / datatrove): count, example ids")
            for k, c in d["disagreements"].items():
                print(f"  {k}: {c}  {d['examples'].get(k, [])}")
    if args.report:
        with open(args.report, "w") as f:
            json.dump({"rows": rows, "details": details}, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    sys.exit(main())
