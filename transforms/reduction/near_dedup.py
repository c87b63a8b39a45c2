"""Near-duplicate removal: MinHash signatures -> LSH buckets -> verified edges ->
connected components -> keep the smallest id of every component.

Every step is keyed and shuffled by the runner or read from bucketed spill
files; nothing gathers all documents, signatures or edges on one worker:

1. Signatures (numpy, ``transforms.reduction.minhash``: word or character shingles per
   document, ``LshParams.shingle_unit``): in prepare_corpus the scan
   signs every document once and spills its band entries ``(band key, text
   key, id)`` by LSH bucket and its verification sketch (its distinct shingle
   hashes, ``transforms.reduction.minhash.sketch_jaccard``) by id bucket
   (``Signer.spill``); ``NearDedup`` signs ``(id, line)`` documents itself.
2. LSH: per bucket, each band key shared by two or more texts emits k-1
   *star* edges (member -> smallest id in the id order of ``transforms.core.ids``), never all
   pairs; copies of one text count once, by their smallest id (``shared_band_keys``).
3. Sketches of the edges' nodes only (a small share): from the spill
   (``SignaturesFromSpill``) or a streamed join (``SignaturesByJoin``).
4. ``Verify`` (default on): both ends' sketches meet, an edge whose Jaccard
   (exact for documents of at most ``SKETCH_SIZE`` distinct shingles, else the
   bottom-k estimate) is below the threshold is dropped.
5. ``Components``: large-star / small-star rounds (``transforms.processing.components``).
6. ``Anchor`` (with verification): each member meets its root's sketch; a
   member whose Jaccard with the root is below the threshold (linked only
   through a chain a~b~c) is kept, so every removed document has the document
   kept for it at or above the threshold.
7. ``DropNearDuplicates``: the records meet their roots in id buckets; a record
   with a root other than itself is removed (and, on request, written out as
   ``{"removed", "kept", "reason": "near_duplicate", "jaccard"}``, the Jaccard
   of step 6).

Every join is audited: per input, the values that went into the shuffle must
all come out of it, or the run fails (``gate``) instead of keeping documents
whose root was lost on the way.  A runner bug did exactly that (see
``transforms.processing.runner_guards``, applied on import).
"""
from dataclasses import dataclass
from typing import List, NamedTuple, Tuple

import apache_beam as beam
import numpy as np
import orjson
from apache_beam import coders
from apache_beam.metrics import Metrics

from transforms.processing.components import DEFAULT_MAX_ROUNDS, ConnectedComponents
from transforms.reduction.dedup import bucket_of_id
from transforms.core.ids import id_order_key
from transforms.reduction.minhash import LshParams, MinHasher, band_keys, sketch_jaccard
from transforms.processing.refs import (  # registers the refs' coders
    DocRef, Packed, chunked, pack, unpack)
from transforms.storage.spill import Spill

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


class Sketched(NamedTuple):
    """What near-dedup computes from one text: its MinHash ``signature``
    (``num_perm`` little-endian uint32, for LSH) and its verification ``sketch``
    (``transforms.reduction.minhash.sketch_jaccard``); both ``b""`` for a text
    without shingles."""
    signature: bytes
    sketch: bytes


class Signer:
    """MinHash signatures and verification sketches of texts, as the bytes a
    ``Signed`` or the scan's spill carries.

    Built once per config (``NearDedupConfig``); ``setup()`` makes the hasher
    in the worker, ``sign(texts)`` -> one ``Sketched`` per text.
    """

    def __init__(self, config: "NearDedupConfig", num_buckets: int = 16):
        self.config = config
        self.num_buckets = num_buckets
        self.hasher = None

    def setup(self):
        # from_params: the config's shingle unit (word, char or auto) and size.
        self.hasher = MinHasher.from_params(self.config.lsh)
        self.by_char = Metrics.counter(NAMESPACE, "docs_shingled_by_char")

    def sign(self, texts: list[str]) -> "list[Sketched]":
        """Counts the signed documents shingled by characters (``docs_shingled_by_char``)."""
        if not texts:
            return []
        signed = self.hasher.sign(texts)
        char_signed = int(np.count_nonzero(signed.by_char & (signed.counts > 0)))
        if char_signed:  # a counter is reported only once incremented, on every runner alike
            self.by_char.inc(char_signed)
        return [Sketched(sig.tobytes(), sketch) if count else Sketched(b"", b"")
                for sig, count, sketch in zip(signed.signatures, signed.counts, signed.sketches)]

    def spills(self, spill_dir: str) -> "tuple[Spill, Spill]":
        """(band entries by band-key bucket, sketches by id bucket) under ``spill_dir``."""
        return Spill(spill_dir, "bands"), Spill(spill_dir, "sketches")

    def spill(self, ids: list[str], keys: list[bytes], texts: list[str], writers) -> list[bool]:
        """Sign ``texts``; write each signed one's band entries ``band key + text
        key + id`` and its sketch record ``id length (u16) + id + sketch``
        through ``writers`` (``SpillWriter``s of ``spills()``) -> signed or not.
        The signature itself is not kept: LSH needs only the band keys."""
        bands_out, sketches_out = writers
        lsh, n = self.config.lsh, self.num_buckets
        signed = []
        for doc_id, key, (sig, sketch) in zip(ids, keys, self.sign(texts)):
            signed.append(bool(sig))
            if not sig:
                continue
            raw_id = doc_id.encode("utf-8", "surrogatepass")
            for band in band_keys(sig, lsh.bands, lsh.rows):
                bands_out.add(band_bucket(band, n), band + key + raw_id)
            sketches_out.add(bucket_of_id(doc_id, n),
                             len(raw_id).to_bytes(2, "little") + raw_id + sketch)
        return signed


def band_bucket(band_key: bytes, num_buckets: int) -> int:
    """LSH bucket of a band key (from its hash bytes, not its band index)."""
    return int.from_bytes(band_key[2:10], "little") % num_buckets


def band_record(record: bytes) -> tuple[bytes, bytes, str]:
    """A spilled band entry -> ``(band key, text key, id)``."""
    return record[:10], record[10:26], record[26:].decode("utf-8", "surrogatepass")


def sketch_record(record: bytes) -> tuple[str, bytes]:
    """A spilled sketch record -> ``(id, sketch)``."""
    size = int.from_bytes(record[:2], "little")
    return record[2:2 + size].decode("utf-8", "surrogatepass"), record[2 + size:]


class Signed(NamedTuple):
    """A document's id, MinHash signature and verification sketch (non-empty)."""
    id: str
    signature: bytes
    sketch: bytes


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
        signed = [Signed(i, s.signature, s.sketch)
                  for i, s in zip(ids, self.signer.sign(texts)) if s.signature]
        self.no_shingles.inc(len(texts) - len(signed))
        self.signed.inc(len(signed))
        yield signed, docs


class _CountSigned(beam.DoFn):
    """A batch of ``DocRef`` kept by exact dedup -> the same batch; counts the signed
    ones and those without shingles (as _SignDocs does)."""

    def setup(self):
        self.signed = Metrics.counter(NAMESPACE, "docs_signed")
        self.no_shingles = Metrics.counter(NAMESPACE, "docs_without_words")

    def process(self, refs):
        signed = sum(1 for ref in refs if ref.signed)
        self.no_shingles.inc(len(refs) - signed)
        self.signed.inc(signed)
        yield refs


def band_entries(signed: list, lsh: LshParams, num_buckets: int) -> "iter[tuple]":
    """A batch of ``Signed`` -> ``(bucket, [(band key, text key, id)])`` per LSH bucket;
    the id stands for the text key (documents here are already distinct)."""
    buckets: dict[int, list] = {}
    for doc in signed:
        raw_id = doc.id.encode("utf-8", "surrogatepass")
        for key in band_keys(doc.signature, lsh.bands, lsh.rows):
            buckets.setdefault(band_bucket(key, num_buckets), []).append((key, raw_id, doc.id))
    return buckets.items()


def shared_band_keys(entries) -> "iter[tuple[str, list[str]]]":
    """``(band key, text key, id)`` entries of one LSH bucket -> ``(smallest id, other
    ids sorted)`` for every band key that two or more distinct texts share, in
    band-key order.  Copies of one text count once, by their smallest id (the one
    exact dedup keeps), so entries of every document, kept or not, may come in."""
    entries = sorted(entries)  # one C sort; most band keys are held by one document
    start, n = 0, len(entries)
    while start < n:
        band = entries[start][0]
        end = start + 1
        while end < n and entries[end][0] == band:
            end += 1
        if end - start > 1:
            # per text key its smallest id in the id order (transforms.core.ids), which is
            # the copy exact dedup keeps; entries sort by (text key, id) as strings
            smallest: dict = {}
            for _, key, doc_id in entries[start:end]:
                best = smallest.get(key)
                if best is None or id_order_key(doc_id) < id_order_key(best):
                    smallest[key] = doc_id
            if len(smallest) > 1:
                ids = sorted(set(smallest.values()), key=id_order_key)
                if len(ids) > 1:
                    yield ids[0], ids[1:]
        start = end


class _StarEdges(beam.DoFn):
    """An LSH bucket ``(bucket, [[(band key, text key, id)]...])`` -> ``(member,
    smallest id)``: k-1 *star* edges per shared band key of k texts, never all
    pairs.  Holds one bucket's band entries (bounded: the bucket count grows
    with the input)."""

    def setup(self):
        self.shared = Metrics.counter(NAMESPACE, "lsh_shared_buckets")
        self.candidates = Metrics.counter(NAMESPACE, "lsh_candidate_edges")

    def process(self, bucket):
        _, batches = bucket
        yield from self.edges(e for batch in batches for e in batch)

    def edges(self, entries):
        for root, others in shared_band_keys(entries):
            self.shared.inc()
            self.candidates.inc(len(others))
            for doc_id in others:
                yield doc_id, root


def _send_signature(joined):
    """At node u: (u, {sig: [s], to: [v...]}) -> (v, (u, s)) for each v (s: u's sketch)."""
    u, groups = joined
    sigs = list(groups["sig"])
    for v in groups["to"]:
        for sig in sigs:
            yield v, (u, sig)


class _Compare(beam.DoFn):
    """At node v: (v, {sig: [s], from: [(u, s_u)...]}) -> (u, v) if the sketches'
    Jaccard (``sketch_jaccard``) is at least the threshold."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def setup(self):
        self.kept = Metrics.counter(NAMESPACE, "verified_edges")
        self.rejected = Metrics.counter(NAMESPACE, "rejected_edges")

    def process(self, joined):
        v, groups = joined
        sigs = list(groups["sig"])
        for u, sig_u in groups["from"]:
            if any(sketch_jaccard(sig_u, s) >= self.threshold for s in sigs):
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
                yield doc.id, doc.sketch


class SignaturesByJoin(beam.PTransform):
    """Nodes -> ``(id, signature)`` of those nodes, by an audited join with batches
    of ``Signed`` in ``num_buckets`` id buckets (signatures stream through)."""

    def __init__(self, signed, num_buckets: int):
        super().__init__()
        self.signed = signed
        self.num_buckets = num_buckets
        self.balances = []

    def expand(self, nodes):
        n = self.num_buckets
        need = nodes | "NodeBucket" >> beam.Map(lambda node: (bucket_of_id(node, n), node))
        sigs = self.signed | "SignatureBuckets" >> beam.FlatMap(_by_id_bucket, n)
        joined, balance = {"need": need, "sig": sigs} | AuditedJoin("NeededSignatures")
        self.balances.append(balance)
        return joined | "Needed" >> beam.FlatMap(_needed_signatures)


class _ReadNeededSignatures(beam.DoFn):
    """``(id bucket, [needed ids])`` -> ``(id, signature)`` read from the bucket's
    signature spill (streamed; the needed ids are held)."""

    def __init__(self, spill: Spill):
        self.spill = spill

    def process(self, grouped, _written):
        bucket, ids = grouped
        needed = set(ids)
        for record in self.spill.read(bucket):
            doc_id, sig = sketch_record(record)
            if doc_id in needed:
                yield doc_id, sig


class SignaturesFromSpill(beam.PTransform):
    """Nodes -> ``(id, signature)`` of those nodes, read from the scan's signature
    spill one id bucket at a time; ``written`` completes once the spill is."""

    def __init__(self, signer: Signer, spill_dir: str, written):
        super().__init__()
        self.spill = signer.spills(spill_dir)[1]
        self.num_buckets = signer.num_buckets
        self.written = written
        self.balances = []

    def expand(self, nodes):
        n = self.num_buckets
        return (nodes
                | "NodeBucket" >> beam.Map(lambda node: (bucket_of_id(node, n), node))
                | "GroupNodes" >> beam.GroupByKey()
                | "ReadSignatures" >> beam.ParDo(_ReadNeededSignatures(self.spill),
                                                 beam.pvalue.AsList(self.written)))


class LshEdgesFromSignatures(beam.PTransform):
    """Batches of ``Signed`` -> distinct ``(member, smallest id)`` candidate edges,
    band entries grouped by the runner in ``num_buckets`` LSH buckets."""

    def __init__(self, lsh: LshParams, num_buckets: int):
        super().__init__()
        self.lsh = lsh
        self.num_buckets = num_buckets

    def expand(self, signed):
        return (signed
                | "BandKeys" >> beam.FlatMap(band_entries, self.lsh, self.num_buckets)
                | "GroupBands" >> beam.GroupByKey()
                | "StarEdges" >> beam.ParDo(_StarEdges())
                | "DistinctEdges" >> beam.Distinct())


class _ReadBandBucket(_StarEdges):
    """An LSH bucket index -> its star edges, from the scan's band spill."""

    def __init__(self, spill: Spill):
        self.spill = spill

    def process(self, bucket, _written):
        yield from self.edges(band_record(r) for r in self.spill.read(bucket))


class LshEdgesFromSpill(beam.PTransform):
    """``written`` (completes once the scan's spills are written) -> distinct
    ``(member, smallest id)`` candidate edges, one LSH bucket of the band spill
    at a time."""

    def __init__(self, signer: Signer, spill_dir: str):
        super().__init__()
        self.spill = signer.spills(spill_dir)[0]
        self.num_buckets = signer.num_buckets

    def expand(self, written):
        return (written.pipeline
                | "Buckets" >> beam.Create(list(range(self.num_buckets)))
                | "StarEdges" >> beam.ParDo(_ReadBandBucket(self.spill),
                                            beam.pvalue.AsList(written))
                | "DistinctEdges" >> beam.Distinct())


def _packed_by_id_bucket(records: list, num_buckets: int) -> "list[tuple[int, Packed]]":
    """``_by_id_bucket``, each bucket's list packed (the drop's join carries every
    kept document; see ``transforms.core.records.Packed``)."""
    return [(bucket, pack(batch)) for bucket, batch in _by_id_bucket(records, num_buckets)]


def _by_id_bucket(records: list, num_buckets: int) -> "iter[tuple[int, list]]":
    """A batch of records with an ``id`` -> ``(id bucket, [records])`` per bucket."""
    buckets: dict[int, list] = {}
    for record in records:
        buckets.setdefault(bucket_of_id(record.id, num_buckets), []).append(record)
    return buckets.items()


class _DropRooted(beam.DoFn):
    """At an id bucket: ``{records: [[record]...], root: [(id, root)...]}`` -> the
    records whose id has no root other than itself, in batches of at most
    ``batch_bytes`` (the bucket's survivors, re-batched); removed ``(root, id)`` tagged.  Holds the bucket's roots
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
        seen = [0]

        def survivors():
            for batch in groups["records"]:
                batch = unpack(batch)
                seen[0] += len(batch)
                yield from (r for r in batch if r.id not in roots)

        # Survivors of the whole bucket re-batched (at most batch_bytes each): the
        # incoming batches are slivers (a scan batch cut by text bucket, then by id
        # bucket), and later steps cut each batch again by shard and by file.
        kept = 0
        for out in chunked(survivors(), self.batch_bytes, self.size_of):
            kept += len(out)
            yield out
        self.kept.inc(kept)
        self.removed.inc(seen[0] - kept)


def _removed_signature(joined):
    """At node v: ``{sig: [s], root: [r]}`` -> ``(r, (v, s))`` (one sketch of v)."""
    v, groups = joined
    sigs = list(groups["sig"])[:1]
    for root in groups["root"]:
        for sig in sigs:
            yield root, (v, sig)


class Anchored(NamedTuple):
    """A member ``id`` of a near-duplicate component, its component's kept
    document ``root`` and their Jaccard (``sketch_jaccard``, rounded to 4 places)."""
    id: str
    root: str
    jaccard: float


coders.registry.register_coder(Anchored, coders.RowCoder)


class _Anchor(beam.DoFn):
    """At root r: ``(r, {sig: [s], removed: [(id, s_id)...]})`` -> ``Anchored``
    per member whose Jaccard with r is at least ``threshold`` (every member when
    ``threshold`` is None: verification off); the others are kept, counted as
    ``kept_chain_members`` (linked to r only through a chain a~b~c).  Holds r's
    sketch; the members stream through."""

    def __init__(self, threshold: "float | None"):
        self.threshold = threshold

    def setup(self):
        self.chain = Metrics.counter(NAMESPACE, "kept_chain_members")

    def process(self, joined):
        root, groups = joined
        sigs = list(groups["sig"])
        for doc_id, sig in groups["removed"]:  # streamed: a component may be large
            jaccard = max((sketch_jaccard(sig, s) for s in sigs), default=0.0)
            if self.threshold is not None and jaccard < self.threshold:
                self.chain.inc()
                continue
            yield Anchored(doc_id, root, round(jaccard, 4))


def _removed_record(anchored: Anchored) -> dict:
    return {"removed": anchored.id, "kept": anchored.root, "reason": "near_duplicate",
            "jaccard": anchored.jaccard}


class _CountClusterSizes(beam.DoFn):
    def process(self, root_and_members):
        _, members = root_and_members
        lo, hi = size_bucket(members + 1)
        Metrics.counter(NAMESPACE, f"{HISTOGRAM_PREFIX}{lo}_to_{hi}").inc()
        Metrics.counter(NAMESPACE, "clusters").inc()


class ConnectNearDuplicates(beam.PTransform):
    """Candidate edges -> dict of PCollections:

    * ``roots``: ``(id, root)`` for every near-duplicate to remove: its
      component's smallest id (the root itself is kept); with verification,
      only members whose Jaccard with the root is at least the threshold
      (``_Anchor``: a member linked only through a chain is kept);
    * ``removed`` (only with ``with_removed``): audit records
      ``{"removed", "kept", "reason": "near_duplicate", "jaccard"}``;
    * ``balances``: audit balances of every join (for ``AuditGate``);
    * ``components_gate``: the convergence message (empty when converged).

    ``signatures`` is a PTransform: nodes -> ``(id, sketch)``
    (``SignaturesByJoin`` or ``SignaturesFromSpill``); it is applied once, to
    the candidate edges' nodes (a small share of the documents), and
    verification, the anchoring and the audit records work on those.
    """

    def __init__(self, config: NearDedupConfig, signatures, with_removed: bool = False):
        super().__init__()
        self.config = config
        self.signatures = signatures
        self.with_removed = with_removed

    def expand(self, edges):
        config = self.config
        balances = []
        needed = None
        if config.verify or self.with_removed:
            nodes = (edges
                     | "Nodes" >> beam.FlatMap(lambda edge: edge)
                     | "DistinctNodes" >> beam.Distinct())
            needed = nodes | "Signatures" >> self.signatures
            balances += self.signatures.balances
        if config.verify:
            edges, verify_balances = edges | "Verify" >> VerifyEdges(needed, config.lsh.threshold)
            balances += verify_balances
        roots, components_gate = edges | "Components" >> ConnectedComponents(
            config.max_rounds, NAMESPACE, fail_unconverged=False)
        anchored = None
        if needed is not None:
            at_removed, balance = (
                {"sig": needed, "root": roots} | AuditedJoin("JoinRemovedSignature"))
            balances.append(balance)
            at_root, balance = (
                {"sig": needed,
                 "removed": at_removed | "SendToRoot" >> beam.FlatMap(_removed_signature)}
                | AuditedJoin("JoinKeptSignature"))
            balances.append(balance)
            anchored = at_root | "Anchor" >> beam.ParDo(
                _Anchor(config.lsh.threshold if config.verify else None)).with_output_types(
                    Anchored)
            roots = anchored | "AnchoredRoots" >> beam.Map(lambda a: (a.id, a.root))
        (roots
         | "MembersPerRoot" >> beam.MapTuple(lambda node, root: (root, 1))
         | "ClusterSizes" >> beam.CombinePerKey(sum)
         | "CountClusterSizes" >> beam.ParDo(_CountClusterSizes()))
        result = {"roots": roots, "components_gate": components_gate}
        if needed is not None:
            result["needed"] = needed
        if self.with_removed:
            result["removed"] = anchored | "RemovedRecords" >> beam.Map(_removed_record)
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
            "records": batches | "RecordBuckets" >> beam.FlatMap(
                _packed_by_id_bucket, n).with_output_types(Tuple[int, Packed]),
            "root": self.roots | "RootBucket" >> beam.MapTuple(
                lambda node, root: (bucket_of_id(node, n), (node, root)))}
        joined, balance = inputs | AuditedJoin("JoinRoots")
        kept = joined | "Filter" >> beam.ParDo(_DropRooted(self.batch_bytes, self.size_of))
        return kept, balance


def _gate(found, balances):
    audit_gate = balances | "Balances" >> beam.Flatten() | "Audit" >> AuditGate()
    gate = (
        (found["components_gate"], audit_gate)
        | "Gates" >> beam.Flatten()
        | "AllGates" >> beam.combiners.ToList()
        | "Gate" >> beam.Map(_joined_messages))
    gate | "FailIfWrong" >> beam.Map(_raise_if_set)
    return gate


def _doc_bytes(doc: Doc) -> int:
    return len(doc.id) + len(doc.line) + 16


def _delete_spills(_, spills):
    for spill in spills:
        spill.delete()
    return True


class RemoveNearDuplicates(beam.PTransform):
    """Batches of ``DocRef`` kept by exact dedup, whose band entries and
    signatures the scan spilled (``ScanSpec(signer=..., spill_dir=...)``) ->
    dict of PCollections:

    * ``kept``: batches of the surviving refs (one per component, the smallest
      id; refs without a signature are kept);
    * ``removed`` (only with ``with_removed``): audit records;
    * ``gate``: one string, empty when the components converged and every join
      balanced, else the errors (for ``WriteStore(preconditions=...)``; the
      pipeline also raises on it);
    * ``spills_deleted``: one element once the band and signature spills are
      read and deleted (make the next disk-hungry step wait for it).

    ``written``: a PCollection that completes once the scan has written its
    spills (its digests).  LSH reads the band spill one bucket at a time and
    keeps one text per band key (copies are exact duplicates), so the removed
    exact duplicates never become nodes.
    """

    def __init__(self, config: NearDedupConfig, signer: Signer, spill_dir: str, written,
                 with_removed: bool = False, batch_bytes: int = 1 << 20):
        super().__init__()
        self.config = config
        self.signer = signer
        self.spill_dir = spill_dir
        self.written = written
        self.with_removed = with_removed
        self.batch_bytes = batch_bytes

    def expand(self, refs):
        from transforms.processing.refs import ref_bytes
        counted = refs | "CountSigned" >> beam.ParDo(_CountSigned()).with_output_types(
            List[DocRef])
        edges = self.written | "Lsh" >> LshEdgesFromSpill(self.signer, self.spill_dir)
        found = edges | "Connect" >> ConnectNearDuplicates(
            self.config, SignaturesFromSpill(self.signer, self.spill_dir, self.written),
            self.with_removed)
        done = found.get("needed", edges)
        spills_deleted = (
            done
            | "SpillsRead" >> beam.combiners.Count.Globally()
            | "DeleteSpills" >> beam.Map(_delete_spills,
                                         self.signer.spills(self.spill_dir)))
        kept, balance = counted | "Drop" >> DropNearDuplicates(
            found["roots"], self.signer.num_buckets, self.batch_bytes, ref_bytes)
        result = {"kept": kept, "gate": _gate(found, found["balances"] + [balance]),
                  "spills_deleted": spills_deleted}
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
    refs, with spilled signatures), for documents that carry their line:
    signatures are made here and move through the runner's shuffles.
    """

    def __init__(self, config: NearDedupConfig, with_removed: bool = False,
                 num_buckets: int = 16, batch_bytes: int = 1 << 20):
        super().__init__()
        self.config = config
        self.with_removed = with_removed
        self.num_buckets = num_buckets
        self.batch_bytes = batch_bytes

    def expand(self, docs):
        config, n = self.config, self.num_buckets
        signed_docs = (
            docs
            | "Batch" >> beam.BatchElements(min_batch_size=config.min_batch,
                                            max_batch_size=config.max_batch)
            | "Signatures" >> beam.ParDo(_SignDocs(config)))
        signed = signed_docs | "SignedOnly" >> beam.MapTuple(lambda s, _: s).with_output_types(
            List[Signed])
        edges = signed | "Lsh" >> LshEdgesFromSignatures(config.lsh, n)
        found = edges | "Connect" >> ConnectNearDuplicates(
            config, SignaturesByJoin(signed, n), self.with_removed)
        batches = signed_docs | "DocsOnly" >> beam.MapTuple(lambda _, d: d).with_output_types(
            List[Doc])
        kept, balance = batches | "Drop" >> DropNearDuplicates(
            found["roots"], n, self.batch_bytes, _doc_bytes)
        result = {"kept": kept | "Unbatch" >> beam.FlatMap(lambda batch: batch),
                  "gate": _gate(found, found["balances"] + [balance])}
        if self.with_removed:
            result["removed"] = found["removed"]
        return result
