"""Near-duplicate removal: MinHash signatures -> LSH buckets -> verified edges ->
connected components -> keep the smallest id of every component.

Every step is keyed and shuffled by the runner; nothing gathers all documents
or all edges on one worker:

1. ``Signatures``: batches of ``(id, line)`` -> ``(id, signature)`` and one
   ``(band key, id)`` per band (numpy, see ``transforms.minhash``).
2. ``Buckets``: group by band key; a bucket of k documents emits k-1 *star*
   edges (member -> smallest id), never all pairs, so a huge bucket stays linear.
3. ``Verify`` (default on): join both ends' signatures, drop an edge whose
   estimated Jaccard is below the threshold.
4. ``Components``: large-star / small-star rounds (``transforms.components``).
5. ``Filter``: join the documents with their component root; a document with
   a root other than itself is removed (and, on request, written out as
   ``{"removed", "kept", "reason": "near_duplicate", "jaccard"}``).

Every join is audited: per input, the values that went into the shuffle must
all come out of it, or the run fails (``gate``) instead of keeping documents
whose root was lost on the way.  A runner bug did exactly that (see
``transforms.runner_guards``, applied on import).
"""
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
import orjson
from apache_beam.metrics import Metrics

from transforms.components import DEFAULT_MAX_ROUNDS, ConnectedComponents
from transforms.ids import id_order_key, smallest_id
from transforms.minhash import LshParams, MinHasher, band_keys, estimated_jaccard

NAMESPACE = "dataprep.near_dedup"
BANDS_TAG = "bands"
REMOVED_TAG = "removed"
HISTOGRAM_PREFIX = "clusters_size_"


@dataclass(frozen=True)
class NearDedupConfig:
    lsh: LshParams
    verify: bool = True
    max_rounds: int = DEFAULT_MAX_ROUNDS
    text_field: str = "text"
    min_batch: int = 16
    max_batch: int = 256


def size_bucket(size: int) -> tuple[int, int]:
    """Histogram bucket of a cluster size: 2, 3-4, 5-8, 9-16, ..."""
    hi = 2
    while hi < size:
        hi *= 2
    return (hi // 2 + 1 if hi > 2 else 2), hi


def cluster_histogram(counters: dict[str, int]) -> list[dict]:
    """Run-report view of the ``clusters_size_<lo>_to_<hi>`` counters, smallest first."""
    rows = []
    prefix = f"{NAMESPACE.split('.', 1)[1]}/{HISTOGRAM_PREFIX}"
    for name, value in counters.items():
        if name.startswith(prefix):
            lo, hi = (int(x) for x in name[len(prefix):].split("_to_"))
            rows.append({"min_size": lo, "max_size": hi, "clusters": value})
    return sorted(rows, key=lambda r: r["min_size"])


def text_of(line: bytes, field: str) -> str | None:
    try:
        text = orjson.loads(line).get(field)
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return text if isinstance(text, str) else None


class _Signatures(beam.DoFn):
    """A batch of ``(id, line)`` -> ``(id, signature bytes)``; tagged ``(band key, id)``."""

    def __init__(self, config: NearDedupConfig):
        self.config = config

    def setup(self):
        lsh = self.config.lsh
        self.hasher = MinHasher(lsh.num_perm, lsh.shingle_size, lsh.seed)
        self.signed = Metrics.counter(NAMESPACE, "docs_signed")
        self.no_shingles = Metrics.counter(NAMESPACE, "docs_without_words")
        self.unreadable = Metrics.counter(NAMESPACE, "docs_without_text_field")

    def process(self, batch):
        ids, texts = [], []
        for doc_id, line in batch:
            text = text_of(line, self.config.text_field)
            if text is None:
                self.unreadable.inc()  # kept as it is: never a near-duplicate
                continue
            ids.append(doc_id)
            texts.append(text)
        if not texts:
            return
        sigs, counts = self.hasher.signatures(texts)
        bands, rows = self.config.lsh.bands, self.config.lsh.rows
        empty = int(np.count_nonzero(counts == 0))
        self.no_shingles.inc(empty)
        self.signed.inc(len(ids) - empty)
        for doc_id, sig, count in zip(ids, sigs, counts):
            if not count:
                continue
            sig = sig.tobytes()
            yield doc_id, sig
            for key in band_keys(sig, bands, rows):
                yield beam.pvalue.TaggedOutput(BANDS_TAG, (key, doc_id))


class _StarEdges(beam.DoFn):
    """A bucket ``(key, ids)`` -> ``(member, smallest id)`` for every other member."""

    def setup(self):
        self.shared = Metrics.counter(NAMESPACE, "lsh_shared_buckets")
        self.candidates = Metrics.counter(NAMESPACE, "lsh_candidate_edges")

    def process(self, bucket):
        # One pass over the grouped values: Beam promises only an iterable (a large
        # group may be fetched lazily).  A bucket's ids are small strings; even a
        # million-member bucket is tens of MB here, and its output stays linear.
        members = set(bucket[1])
        if len(members) < 2:
            return
        root = smallest_id(members)   # the id order: integers numerically, then strings
        members.discard(root)
        self.shared.inc()
        self.candidates.inc(len(members))
        for doc_id in sorted(members, key=id_order_key):
            yield doc_id, root


def _send_signature(joined):
    """At node u: (u, {sig: [s], to: [v...]}) -> (v, (u, s)) for each v."""
    u, groups = joined
    sigs = list(groups["sig"])
    for v in groups["to"]:
        for sig in sigs:
            yield v, (u, sig)


class _Compare(beam.DoFn):
    """At node v: (v, {sig: [s], from: [(u, s_u)...]}) -> (u, v) if similar enough."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def setup(self):
        self.kept = Metrics.counter(NAMESPACE, "verified_edges")
        self.rejected = Metrics.counter(NAMESPACE, "rejected_edges")

    def process(self, joined):
        v, groups = joined
        sigs = list(groups["sig"])
        for u, sig_u in groups["from"]:
            if any(estimated_jaccard(sig_u, s) >= self.threshold for s in sigs):
                self.kept.inc()
                yield u, v
            else:
                self.rejected.inc()


class AuditedJoin(beam.PTransform):
    """``CoGroupByKey`` that proves it lost nothing.

    ``AuditedJoin(name)`` applied to ``{tag: PCollection}`` returns
    ``(joined, balance)``: ``joined`` is the ``CoGroupByKey`` output, ``balance``
    holds ``("<name>/<tag>", n)`` counts, +1 per value sent into the shuffle and
    -len per group handed out, summed per key by ``AuditGate`` (a key not at 0
    is an error).  ``group`` replaces the ``CoGroupByKey`` in tests.
    """

    def __init__(self, name: str, group=None):
        super().__init__(name)
        self.join_name = name
        self.group = group

    def expand(self, pcolls):
        sent = [pcoll | f"Sent[{tag}]" >> beam.Map(lambda _, key: (key, 1), f"{self.join_name}/{tag}")
                for tag, pcoll in sorted(pcolls.items())]
        joined = pcolls | "Group" >> (self.group or beam.CoGroupByKey())
        received = joined | "Received" >> beam.FlatMap(_received_counts, self.join_name)
        balance = (sent + [received]) | "Balance" >> beam.Flatten()
        return joined, balance


def _received_counts(joined, name: str):
    for tag, values in joined[1].items():
        if values:
            yield f"{name}/{tag}", -len(values)


def _audit_message(balances: list[tuple[str, int]]) -> str:
    wrong = sorted((key, n) for key, n in balances if n)
    if not wrong:
        return ""
    return "a shuffle lost or duplicated values (join/input: sent minus received): " + \
        ", ".join(f"{key} {n:+d}" for key, n in wrong)


class AuditGate(beam.PTransform):
    """``AuditedJoin`` balances -> one string, empty when every join balanced."""

    def expand(self, balances):
        return (balances
                | "Sum" >> beam.CombinePerKey(sum)
                | "All" >> beam.combiners.ToList()
                | "Message" >> beam.Map(_audit_message))


def _joined_messages(messages: list[str]) -> str:
    return "; ".join(sorted(m for m in messages if m))


def _raise_if_set(message: str) -> None:
    if message:
        raise RuntimeError(message)


class VerifyEdges(beam.PTransform):
    """``(u, v)`` edges + ``(id, signature)`` -> ``(edges with estimated Jaccard >=
    threshold, audit balances of its two joins)``."""

    def __init__(self, signatures, threshold: float):
        super().__init__()
        self.signatures = signatures
        self.threshold = threshold

    def expand(self, edges):
        at_source, source_balance = (
            {"sig": self.signatures, "to": edges} | AuditedJoin("JoinSource"))
        outgoing = at_source | "SendSignature" >> beam.FlatMap(_send_signature)
        at_target, target_balance = (
            {"sig": self.signatures, "from": outgoing} | AuditedJoin("JoinTarget"))
        verified = at_target | "Compare" >> beam.ParDo(_Compare(self.threshold))
        return verified, (source_balance, target_balance)


class _Filter(beam.DoFn):
    """(id, {doc: [line...], root: [r], sig: [s]}) -> kept ``(id, line)``; tagged removals."""

    def __init__(self, with_removed: bool):
        self.with_removed = with_removed

    def setup(self):
        self.kept = Metrics.counter(NAMESPACE, "kept")
        self.removed = Metrics.counter(NAMESPACE, "near_duplicates_removed")

    def process(self, joined):
        doc_id, groups = joined
        roots = list(groups["root"])
        lines = list(groups["doc"])
        if not roots:
            self.kept.inc(len(lines))
            for line in lines:
                yield doc_id, line
            return
        self.removed.inc(len(lines))
        if self.with_removed:
            for sig in list(groups["sig"])[:1]:
                yield beam.pvalue.TaggedOutput(REMOVED_TAG, (roots[0], (doc_id, sig)))


def _removed_records(joined):
    """At root r: (r, {sig: [s], removed: [(id, s_id)...]}) -> audit records."""
    root, groups = joined
    sigs = list(groups["sig"])
    for doc_id, sig in sorted(groups["removed"]):
        jaccard = max((estimated_jaccard(sig, s) for s in sigs), default=0.0)
        yield {"removed": doc_id, "kept": root, "reason": "near_duplicate",
               "jaccard": round(jaccard, 4)}


class _CountClusterSizes(beam.DoFn):
    def process(self, root_and_members):
        _, members = root_and_members
        lo, hi = size_bucket(members + 1)
        Metrics.counter(NAMESPACE, f"{HISTOGRAM_PREFIX}{lo}_to_{hi}").inc()
        Metrics.counter(NAMESPACE, "clusters").inc()


class NearDedup(beam.PTransform):
    """``(id, line)`` documents -> dict of PCollections:

    * ``kept``: the ``(id, line)`` documents that survive (one per component,
      the smallest id; documents without text or words are kept);
    * ``removed`` (only with ``with_removed``): audit records
      ``{"removed", "kept", "reason": "near_duplicate", "jaccard"}``;
    * ``gate``: one string, empty when the components converged and every join
      balanced, else the errors (made for ``WriteStore(preconditions=...)``; the
      pipeline also raises on it).
    """

    def __init__(self, config: NearDedupConfig, with_removed: bool = False):
        super().__init__()
        self.config = config
        self.with_removed = with_removed

    def expand(self, docs):
        config = self.config
        signed = (
            docs
            | "Batch" >> beam.BatchElements(min_batch_size=config.min_batch,
                                            max_batch_size=config.max_batch)
            | "Signatures" >> beam.ParDo(_Signatures(config)).with_outputs(BANDS_TAG, main="sigs"))
        signatures = signed.sigs
        edges = (
            signed[BANDS_TAG]
            | "GroupBuckets" >> beam.GroupByKey()
            | "StarEdges" >> beam.ParDo(_StarEdges())
            | "DistinctEdges" >> beam.Distinct())
        balances = []
        if config.verify:
            edges, verify_balances = edges | "Verify" >> VerifyEdges(
                signatures, config.lsh.threshold)
            balances += verify_balances
        roots, components_gate = edges | "Components" >> ConnectedComponents(
            config.max_rounds, NAMESPACE, fail_unconverged=False)
        (roots
         | "MembersPerRoot" >> beam.MapTuple(lambda node, root: (root, 1))
         | "ClusterSizes" >> beam.CombinePerKey(sum)
         | "CountClusterSizes" >> beam.ParDo(_CountClusterSizes()))
        inputs = {"doc": docs, "root": roots}
        if self.with_removed:
            inputs["sig"] = signatures
        joined, balance = inputs | AuditedJoin("JoinRoots")
        balances.append(balance)
        filtered = joined | "Filter" >> beam.ParDo(_Filter(self.with_removed)).with_outputs(
            REMOVED_TAG, main="kept")
        result = {"kept": filtered.kept}
        if self.with_removed:
            joined, balance = (
                {"sig": signatures, "removed": filtered[REMOVED_TAG]}
                | AuditedJoin("JoinKeptSignature"))
            balances.append(balance)
            result["removed"] = joined | "RemovedRecords" >> beam.FlatMap(_removed_records)
        audit_gate = balances | "Balances" >> beam.Flatten() | "Audit" >> AuditGate()
        result["gate"] = (
            (components_gate, audit_gate)
            | "Gates" >> beam.Flatten()
            | "AllGates" >> beam.combiners.ToList()
            | "Gate" >> beam.Map(_joined_messages))
        result["gate"] | "FailIfWrong" >> beam.Map(_raise_if_set)
        return result
