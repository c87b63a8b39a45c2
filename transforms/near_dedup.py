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
from typing import List, NamedTuple

import apache_beam as beam
import orjson
from apache_beam import coders
from apache_beam.metrics import Metrics

from transforms.components import DEFAULT_MAX_ROUNDS, ConnectedComponents
from transforms.dedup import bucket_of_id
from transforms.minhash import LshParams, MinHasher, band_keys, estimated_jaccard
from transforms.refs import chunked

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


class Signer:
    """MinHash signatures of texts, as the bytes a ``DocRef``/``Signed`` carries.

    Built once per config (``NearDedupConfig``); ``setup()`` makes the hasher
    in the worker, ``sign(texts)`` -> one signature per text (``num_perm``
    little-endian uint32, ``b""`` for a text without shingles).
    """

    def __init__(self, config: "NearDedupConfig"):
        self.config = config
        self.hasher = None

    def setup(self):
        lsh = self.config.lsh
        self.hasher = MinHasher(lsh.num_perm, lsh.shingle_size, lsh.seed)

    def sign(self, texts: list[str]) -> list[bytes]:
        if not texts:
            return []
        sigs, counts = self.hasher.signatures(texts)
        return [sig.tobytes() if count else b"" for sig, count in zip(sigs, counts)]


class Signed(NamedTuple):
    """A document's id and MinHash signature (non-empty)."""
    id: str
    signature: bytes


class Doc(NamedTuple):
    """A document as NearDedup takes it: id and JSON line."""
    id: str
    line: bytes


coders.registry.register_coder(Signed, coders.RowCoder)
coders.registry.register_coder(Doc, coders.RowCoder)


class _SignDocs(beam.DoFn):
    """A batch of ``Doc`` -> ``([Signed], [Doc])``: the signed ones, and the batch."""

    def __init__(self, config: NearDedupConfig):
        self.signer = Signer(config)
        self.text_field = config.text_field

    def setup(self):
        self.signer.setup()
        self.signed = Metrics.counter(NAMESPACE, "docs_signed")
        self.no_shingles = Metrics.counter(NAMESPACE, "docs_without_words")
        self.unreadable = Metrics.counter(NAMESPACE, "docs_without_text_field")

    def process(self, batch):
        docs = [Doc(*doc) for doc in batch]
        ids, texts = [], []
        for doc in docs:
            text = text_of(doc.line, self.text_field)
            if text is None:
                self.unreadable.inc()  # kept as it is: never a near-duplicate
                continue
            ids.append(doc.id)
            texts.append(text)
        signed = [Signed(i, sig) for i, sig in zip(ids, self.signer.sign(texts)) if sig]
        self.no_shingles.inc(len(texts) - len(signed))
        self.signed.inc(len(signed))
        yield signed, docs


class _SignedOfRefs(beam.DoFn):
    """A batch of ``DocRef`` (signed by the scan) -> ``[Signed]``; counts as _SignDocs."""

    def setup(self):
        self.signed = Metrics.counter(NAMESPACE, "docs_signed")
        self.no_shingles = Metrics.counter(NAMESPACE, "docs_without_words")

    def process(self, refs):
        signed = [Signed(ref.id, ref.signature) for ref in refs if ref.signature]
        self.no_shingles.inc(len(refs) - len(signed))
        self.signed.inc(len(signed))
        if signed:
            yield signed


def band_entries(signed: list, lsh: LshParams, num_buckets: int) -> "iter[tuple]":
    """A batch of ``Signed`` -> ``(bucket, [(band key, id)])`` per LSH bucket."""
    buckets: dict[int, list] = {}
    for doc in signed:
        for key in band_keys(doc.signature, lsh.bands, lsh.rows):
            buckets.setdefault(int.from_bytes(key[2:10], "little") % num_buckets, []).append(
                (key, doc.id))
    return buckets.items()


def shared_band_keys(entries) -> "iter[tuple[str, list[str]]]":
    """``(band key, id)`` entries of one LSH bucket -> ``(smallest id, other ids sorted)``
    for every band key that two or more distinct ids share, in band-key order."""
    entries = sorted(entries)  # one C sort; most band keys are held by one id
    start, n = 0, len(entries)
    while start < n:
        key = entries[start][0]
        end = start + 1
        while end < n and entries[end][0] == key:
            end += 1
        if end - start > 1:
            ids = sorted({doc_id for _, doc_id in entries[start:end]})
            if len(ids) > 1:
                yield ids[0], ids[1:]
        start = end


class _StarEdges(beam.DoFn):
    """An LSH bucket ``(bucket, [[(band key, id)]...])`` -> ``(member, smallest id)``:
    k-1 *star* edges per shared band key of k ids, never all pairs.  Holds one
    bucket's band entries (bounded: the bucket count grows with the input)."""

    def setup(self):
        self.shared = Metrics.counter(NAMESPACE, "lsh_shared_buckets")
        self.candidates = Metrics.counter(NAMESPACE, "lsh_candidate_edges")

    def process(self, bucket):
        _, batches = bucket
        for root, others in shared_band_keys(e for batch in batches for e in batch):
            self.shared.inc()
            self.candidates.inc(len(others))
            for doc_id in others:
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


def _needed_signatures(joined):
    """At an id bucket: ``{need: [id...], sig: [[Signed]...]}`` -> ``(id, signature)``
    of the needed ids only (the nodes of candidate edges, a small share).  Holds
    the bucket's needed ids; the signatures stream through."""
    _, groups = joined
    needed = set(groups["need"])
    if not needed:
        return
    for batch in groups["sig"]:
        for doc in batch:
            if doc.id in needed:
                yield doc.id, doc.signature


def _by_id_bucket(records: list, num_buckets: int) -> "iter[tuple[int, list]]":
    """A batch of records with an ``id`` -> ``(id bucket, [records])`` per bucket."""
    buckets: dict[int, list] = {}
    for record in records:
        buckets.setdefault(bucket_of_id(record.id, num_buckets), []).append(record)
    return buckets.items()


class _DropRooted(beam.DoFn):
    """At an id bucket: ``{records: [[record]...], root: [(id, root)...]}`` -> the
    records whose id has no root other than itself, in batches of at most
    ``batch_bytes``; removed ``(root, id)`` tagged.  Holds the bucket's roots
    (near-duplicates only); the records stream through."""

    def __init__(self, batch_bytes: int, size_of):
        self.batch_bytes = batch_bytes
        self.size_of = size_of

    def setup(self):
        self.kept = Metrics.counter(NAMESPACE, "kept")
        self.removed = Metrics.counter(NAMESPACE, "near_duplicates_removed")

    def process(self, joined):
        _, groups = joined
        roots = dict(groups["root"])
        kept = removed = 0
        for batch in groups["records"]:
            survivors = [r for r in batch if r.id not in roots]
            kept += len(survivors)
            removed += len(batch) - len(survivors)
            yield from chunked(survivors, self.batch_bytes, self.size_of)
        self.kept.inc(kept)
        self.removed.inc(removed)


def _removed_signature(joined):
    """At node v: ``{sig: [s], root: [r]}`` -> ``(r, (v, s))`` (one signature of v)."""
    v, groups = joined
    sigs = list(groups["sig"])[:1]
    for root in groups["root"]:
        for sig in sigs:
            yield root, (v, sig)


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


class NearDuplicates(beam.PTransform):
    """Batches of ``Signed`` -> dict of PCollections:

    * ``roots``: ``(id, root)`` for every near-duplicate to remove: its
      component's smallest id (the root itself is kept);
    * ``removed`` (only with ``with_removed``): audit records
      ``{"removed", "kept", "reason": "near_duplicate", "jaccard"}``;
    * ``balances``: audit balances of every join (for ``AuditGate``);
    * ``components_gate``: the convergence message (empty when converged).

    Steps, all keyed and shuffled by the runner: band keys of each signature
    into ``num_buckets`` LSH buckets; star edges per shared band key;
    signatures of the edges' nodes (one join of all signatures, streamed);
    verification on those; connected components.  Nothing gathers all
    documents, signatures or edges on one worker.
    """

    def __init__(self, config: NearDedupConfig, num_buckets: int = 64,
                 with_removed: bool = False):
        super().__init__()
        if num_buckets < 1:
            raise ValueError(f"num_buckets must be >= 1, got {num_buckets}")
        self.config = config
        self.num_buckets = num_buckets
        self.with_removed = with_removed

    def expand(self, signed):
        config, n = self.config, self.num_buckets
        edges = (
            signed
            | "BandKeys" >> beam.FlatMap(band_entries, config.lsh, n)
            | "GroupBands" >> beam.GroupByKey()
            | "StarEdges" >> beam.ParDo(_StarEdges())
            | "DistinctEdges" >> beam.Distinct())
        balances = []
        needed = None
        if config.verify or self.with_removed:
            nodes = (edges
                     | "Nodes" >> beam.FlatMap(lambda edge: edge)
                     | "DistinctNodes" >> beam.Distinct()
                     | "NodeBucket" >> beam.Map(lambda node: (bucket_of_id(node, n), node)))
            sigs = signed | "SignatureBuckets" >> beam.FlatMap(_by_id_bucket, n)
            joined, balance = {"need": nodes, "sig": sigs} | AuditedJoin("NeededSignatures")
            balances.append(balance)
            needed = joined | "Needed" >> beam.FlatMap(_needed_signatures)
        if config.verify:
            edges, verify_balances = edges | "Verify" >> VerifyEdges(needed, config.lsh.threshold)
            balances += verify_balances
        roots, components_gate = edges | "Components" >> ConnectedComponents(
            config.max_rounds, NAMESPACE, fail_unconverged=False)
        (roots
         | "MembersPerRoot" >> beam.MapTuple(lambda node, root: (root, 1))
         | "ClusterSizes" >> beam.CombinePerKey(sum)
         | "CountClusterSizes" >> beam.ParDo(_CountClusterSizes()))
        result = {"roots": roots, "components_gate": components_gate}
        if self.with_removed:
            at_removed, balance = (
                {"sig": needed, "root": roots} | AuditedJoin("JoinRemovedSignature"))
            balances.append(balance)
            at_root, balance = (
                {"sig": needed,
                 "removed": at_removed | "SendToRoot" >> beam.FlatMap(_removed_signature)}
                | AuditedJoin("JoinKeptSignature"))
            balances.append(balance)
            result["removed"] = at_root | "RemovedRecords" >> beam.FlatMap(_removed_records)
        result["balances"] = balances
        return result


class DropNearDuplicates(beam.PTransform):
    """Batches of records with an ``id`` + ``roots`` -> the batches without the
    rooted ids (``kept``), and the join's audit balance.

    Records and roots meet in ``num_buckets`` id buckets; a bucket's roots are
    held, its records stream through, so no grouped value grows with the
    corpus.  ``size_of`` gives a record's bytes for the ``batch_bytes`` bound.
    """

    def __init__(self, roots, num_buckets: int, batch_bytes: int, size_of):
        super().__init__()
        self.roots = roots
        self.num_buckets = num_buckets
        self.batch_bytes = batch_bytes
        self.size_of = size_of

    def expand(self, batches):
        n = self.num_buckets
        inputs = {
            "records": batches | "RecordBuckets" >> beam.FlatMap(_by_id_bucket, n),
            "root": self.roots | "RootBucket" >> beam.MapTuple(
                lambda node, root: (bucket_of_id(node, n), (node, root)))}
        joined, balance = inputs | AuditedJoin("JoinRoots")
        kept = joined | "Filter" >> beam.ParDo(_DropRooted(self.batch_bytes, self.size_of))
        return kept, balance


def _gate(result, balances, pipeline_label):
    audit_gate = balances | f"{pipeline_label}Balances" >> beam.Flatten() | "Audit" >> AuditGate()
    gate = (
        (result["components_gate"], audit_gate)
        | "Gates" >> beam.Flatten()
        | "AllGates" >> beam.combiners.ToList()
        | "Gate" >> beam.Map(_joined_messages))
    gate | "FailIfWrong" >> beam.Map(_raise_if_set)
    return gate


def _doc_bytes(doc: Doc) -> int:
    return len(doc.id) + len(doc.line) + 16


class RemoveNearDuplicates(beam.PTransform):
    """Batches of ``DocRef`` signed by the scan -> dict of PCollections:

    * ``kept``: batches of the surviving refs, signatures dropped (one per
      component, the smallest id; refs without a signature are kept);
    * ``removed`` (only with ``with_removed``): audit records;
    * ``gate``: one string, empty when the components converged and every join
      balanced, else the errors (for ``WriteStore(preconditions=...)``; the
      pipeline also raises on it).
    """

    def __init__(self, config: NearDedupConfig, num_buckets: int = 64,
                 with_removed: bool = False, batch_bytes: int = 1 << 20):
        super().__init__()
        self.config = config
        self.num_buckets = num_buckets
        self.with_removed = with_removed
        self.batch_bytes = batch_bytes

    def expand(self, refs):
        from transforms.refs import DocRef, ref_bytes
        signed = refs | "Signed" >> beam.ParDo(_SignedOfRefs()).with_output_types(List[Signed])
        unsigned = refs | "DropSignatures" >> beam.Map(
            lambda batch: [ref._replace(signature=b"") for ref in batch]).with_output_types(
                List[DocRef])
        found = signed | "Find" >> NearDuplicates(self.config, self.num_buckets,
                                                  self.with_removed)
        kept, balance = unsigned | "Drop" >> DropNearDuplicates(
            found["roots"], self.num_buckets, self.batch_bytes, ref_bytes)
        result = {"kept": kept, "gate": _gate(found, found["balances"] + [balance], "All")}
        if self.with_removed:
            result["removed"] = found["removed"]
        return result


class NearDedup(beam.PTransform):
    """``(id, line)`` documents -> dict of PCollections:

    * ``kept``: the ``(id, line)`` documents that survive (one per component,
      the smallest id; documents without text or words are kept);
    * ``removed`` (only with ``with_removed``): audit records
      ``{"removed", "kept", "reason": "near_duplicate", "jaccard"}``;
    * ``gate``: one string, empty when the components converged and every join
      balanced, else the errors (made for ``WriteStore(preconditions=...)``; the
      pipeline also raises on it).

    The same steps as ``RemoveNearDuplicates`` (which prepare_corpus runs on
    refs), for documents that carry their line: signatures are made here.
    """

    def __init__(self, config: NearDedupConfig, with_removed: bool = False,
                 num_buckets: int = 16, batch_bytes: int = 1 << 20):
        super().__init__()
        self.config = config
        self.with_removed = with_removed
        self.num_buckets = num_buckets
        self.batch_bytes = batch_bytes

    def expand(self, docs):
        config = self.config
        signed = (
            docs
            | "Batch" >> beam.BatchElements(min_batch_size=config.min_batch,
                                            max_batch_size=config.max_batch)
            | "Signatures" >> beam.ParDo(_SignDocs(config)))
        found = (signed | "SignedOnly" >> beam.MapTuple(lambda s, _: s).with_output_types(
            List[Signed])) | "Find" >> NearDuplicates(config, self.num_buckets,
                                                      self.with_removed)
        batches = signed | "DocsOnly" >> beam.MapTuple(lambda _, d: d).with_output_types(
            List[Doc])
        kept, balance = batches | "Drop" >> DropNearDuplicates(
            found["roots"], self.num_buckets, self.batch_bytes, _doc_bytes)
        result = {"kept": kept | "Unbatch" >> beam.FlatMap(lambda batch: batch),
                  "gate": _gate(found, found["balances"] + [balance], "All")}
        if self.with_removed:
            result["removed"] = found["removed"]
        return result
