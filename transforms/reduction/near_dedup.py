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
3. ``Verify`` (default on): each candidate edge is scored by the Jaccard of
   its two ends' sketches (exact for documents of at most ``SKETCH_SIZE``
   distinct shingles, else the bottom-k estimate) and dropped below the
   threshold.  Pairs are scored from the scan's spill (``JaccardsFromSpill``:
   only ids cross the runner) or, where documents are signed in the pipeline,
   by joins (``SketchesByJoin``).
4. ``Components``: large-star / small-star rounds (``transforms.processing.components``).
5. ``Anchor`` (with verification): each member is scored with its root the
   same way; a member below the threshold (linked only through a chain
   a~b~c) is kept, so every removed document has the document kept for it
   at or above the threshold.
6. ``DropNearDuplicates``: the records meet their roots in id buckets; a record
   with a root other than itself is removed (and, on request, written out as
   ``{"removed", "kept", "reason": "near_duplicate", "jaccard"}``, the Jaccard
   of step 5).

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
from transforms.reduction.minhash import (
    LshParams, MinHasher, band_keys, decode_sketch, encode_sketch, sketch_jaccard)
from transforms.processing.refs import (  # registers the refs' coders
    DocRef, Packed, Removal, chunked, pack, unpack)
from transforms.storage.spill import Spill, SpillWriter

NAMESPACE = "dataprep.near_dedup"
BANDS_TAG = "bands"
REMOVED_TAG = "removed"
KEPT_IDS_TAG = "kept_ids"   # (root id, int_id) of the kept documents removed ones name
HISTOGRAM_PREFIX = "clusters_size_"
SKETCH_ZSTD_LEVEL = 1  # the sketch and pair spills: fast; ~0.77 of encode_sketch's bytes
PAIR_FLUSH_BYTES = 8 << 20  # a pair spill writer's buffer (one id bucket's pairs and sketches)


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
        """(band entries by band-key bucket, sketches by id bucket) under ``spill_dir``;
        the sketches in ``encode_sketch``'s form, zstd-compressed (``SKETCH_ZSTD_LEVEL``)."""
        return (Spill(spill_dir, "bands"),
                Spill(spill_dir, "sketches", zstd_level=SKETCH_ZSTD_LEVEL))

    def spill(self, ids: list[str], keys: list[bytes], texts: list[str], writers) -> list[bool]:
        """Sign ``texts``; write each signed one's band entries ``band key + text
        key + id`` and its sketch record ``id length (u16) + id + sketch``
        through ``writers`` (``SpillWriter``s of ``spills()``; the sketch in
        ``encode_sketch``'s form) -> signed or not.
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
                             len(raw_id).to_bytes(2, "little") + raw_id + encode_sketch(sketch))
        return signed


def band_bucket(band_key: bytes, num_buckets: int) -> int:
    """LSH bucket of a band key (from its hash bytes, not its band index)."""
    return int.from_bytes(band_key[2:10], "little") % num_buckets


def band_record(record: bytes) -> tuple[bytes, bytes, str]:
    """A spilled band entry -> ``(band key, text key, id)``."""
    return record[:10], record[10:26], record[26:].decode("utf-8", "surrogatepass")


def sketch_record(record: bytes) -> tuple[str, bytes]:
    """A spilled sketch record -> ``(id, sketch)``."""
    doc_id, encoded = encoded_sketch_record(record)
    return doc_id, decode_sketch(encoded)


def encoded_sketch_record(record: bytes) -> tuple[str, bytes]:
    """A spilled sketch record -> ``(id, sketch in encode_sketch's form)``."""
    size = int.from_bytes(record[:2], "little")
    return record[2:2 + size].decode("utf-8", "surrogatepass"), record[2 + size:]


def pair_record(a: str, b: str, encoded_sketch: bytes) -> bytes:
    """A pair ``(a, b)`` and a's sketch (``encode_sketch``'s form) -> a spill record:
    ``u16 len + a, u16 len + b, sketch`` (ids UTF-8)."""
    raw_a, raw_b = (x.encode("utf-8", "surrogatepass") for x in (a, b))
    return (len(raw_a).to_bytes(2, "little") + raw_a + len(raw_b).to_bytes(2, "little")
            + raw_b + encoded_sketch)


def read_pair_record(record: bytes) -> tuple[str, str, bytes]:
    """``pair_record``'s bytes -> ``(a, b, a's sketch in encode_sketch's form)``."""
    size_a = int.from_bytes(record[:2], "little")
    at = 2 + size_a
    size_b = int.from_bytes(record[at:at + 2], "little")
    return (record[2:at].decode("utf-8", "surrogatepass"),
            record[at + 2:at + 2 + size_b].decode("utf-8", "surrogatepass"),
            record[at + 2 + size_b:])


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


class Scored(NamedTuple):
    """A pair of documents ``a``, ``b`` and the Jaccard of their verification
    sketches (``sketch_jaccard``; 0.0 when either has none)."""
    a: str
    b: str
    jaccard: float


coders.registry.register_coder(Scored, coders.RowCoder)


class _Compare(beam.DoFn):
    """At node v: (v, {sig: [s], from: [(u, s_u)...]}) -> ``Scored(u, v, J)`` per
    incoming sketch, J the largest ``sketch_jaccard`` with v's sketches (0.0 if
    v has none)."""

    def process(self, joined):
        v, groups = joined
        sigs = list(groups["sig"])
        for u, sig_u in groups["from"]:
            yield Scored(u, v, max((sketch_jaccard(sig_u, s) for s in sigs), default=0.0))


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


class JaccardsByJoin(beam.PTransform):
    """``(a, b)`` pairs -> ``Scored(a, b, J)`` by two audited joins with ``(id,
    sketch)`` elements (``sketches``): a's sketch goes to b, compared there.
    ``name`` prefixes the joins' audit balances, appended to ``balances``."""

    def __init__(self, sketches, name: str, balances: list):
        super().__init__()
        self.sketches = sketches
        self.join_name = name
        self.balances = balances

    def expand(self, pairs):
        at_source, source_balance = (
            {"sig": self.sketches, "to": pairs} | AuditedJoin(f"{self.join_name}JoinSource"))
        outgoing = at_source | "SendSignature" >> beam.FlatMap(_send_signature)
        at_target, target_balance = (
            {"sig": self.sketches, "from": outgoing} | AuditedJoin(f"{self.join_name}JoinTarget"))
        self.balances += [source_balance, target_balance]
        return at_target | "Compare" >> beam.ParDo(_Compare()).with_output_types(Scored)


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


class SketchesByJoin:
    """Verification sketches of ``Signed`` batches made in the pipeline
    (``NearDedup``, ``NearDedupRecords``), for ``ConnectNearDuplicates``:
    ``attach(edges)`` joins them once with the candidate edges' nodes (a small
    share), ``jaccards(name)`` scores pairs of those nodes by two more joins
    (``JaccardsByJoin``).  ``balances``: the joins' audit balances."""

    def __init__(self, signed, num_buckets: int):
        self.signed = signed
        self.num_buckets = num_buckets
        self.balances = []
        self.needed = None

    def attach(self, edges) -> None:
        nodes = (edges
                 | "Nodes" >> beam.FlatMap(lambda edge: edge)
                 | "DistinctNodes" >> beam.Distinct())
        by_join = SignaturesByJoin(self.signed, self.num_buckets)
        self.needed = nodes | "Signatures" >> by_join
        self.balances += by_join.balances

    def jaccards(self, name: str) -> beam.PTransform:
        return JaccardsByJoin(self.needed, name, self.balances)


class SketchesFromSpill:
    """The scan's sketch spill (``Signer.spill``), for ``ConnectNearDuplicates``:
    ``jaccards(name)`` scores pairs by reading it (``JaccardsFromSpill``), so no
    sketch crosses the runner; ``written`` completes once the spill is written.
    ``pair_spills``: the spills ``jaccards`` made (delete them with the scan's)."""

    def __init__(self, signer: Signer, spill_dir: str, written):
        self.sketch_spill = signer.spills(spill_dir)[1]
        self.spill_dir = spill_dir
        self.num_buckets = signer.num_buckets
        self.written = written
        self.balances = []
        self.pair_spills = []

    def attach(self, edges) -> None:
        """Nothing to attach: every signed document's sketch is in the spill."""

    def jaccards(self, name: str) -> beam.PTransform:
        pairs = Spill(self.spill_dir, f"pairs-{name.lower()}", zstd_level=SKETCH_ZSTD_LEVEL)
        self.pair_spills.append(pairs)
        return JaccardsFromSpill(self.sketch_spill, pairs, self.num_buckets, self.written,
                                 name, self.balances)


class _SpillPairs(beam.DoFn):
    """``(id bucket, [(a, b)...])``, pairs whose a is in the bucket -> the bucket,
    once every pair is written with a's sketch (``pair_record``) into the pair
    spill, by b's id bucket.  Holds the bucket's pairs (ids) and those a's
    sketches; the bucket's sketch spill streams through."""

    def __init__(self, sketches: Spill, pairs: Spill, num_buckets: int):
        self.sketches = sketches
        self.pairs = pairs
        self.num_buckets = num_buckets

    def process(self, grouped, _written):
        bucket, pairs = grouped
        pairs = list(pairs)
        needed = {a.encode("utf-8", "surrogatepass") for a, _ in pairs}
        found = {}
        for record in self.sketches.read(bucket):
            size = int.from_bytes(record[:2], "little")
            if record[2:2 + size] in needed:
                doc_id, encoded = encoded_sketch_record(record)
                found[doc_id] = encoded
        writer = SpillWriter(self.pairs, bucket, PAIR_FLUSH_BYTES)
        for a, b in pairs:
            writer.add(bucket_of_id(b, self.num_buckets), pair_record(a, b, found.get(a, b"")))
        writer.close()
        yield bucket


class _ScorePairs(beam.DoFn):
    """An id bucket -> ``Scored(a, b, J)`` for every pair of the pair spill whose b
    is in the bucket.  Reads the bucket's pairs twice (b's ids, then the pairs:
    streamed) and holds those b's sketches from the sketch spill."""

    def __init__(self, sketches: Spill, pairs: Spill):
        self.sketches = sketches
        self.pairs = pairs

    def process(self, bucket, _spilled):
        needed = {read_pair_record(r)[1] for r in self.pairs.read(bucket)}
        if not needed:
            return
        held = {}
        for record in self.sketches.read(bucket):
            doc_id, encoded = encoded_sketch_record(record)
            if doc_id in needed:
                held[doc_id] = decode_sketch(encoded)
        for record in self.pairs.read(bucket):
            a, b, encoded = read_pair_record(record)
            yield Scored(a, b, sketch_jaccard(decode_sketch(encoded), held.get(b, b"")))


class JaccardsFromSpill(beam.PTransform):
    """``(a, b)`` pairs -> ``Scored(a, b, J)`` from the scan's sketch spill, in two
    passes over the id buckets; only ids cross the runner:

    1. the pairs, grouped by a's id bucket: the bucket's sketches are read
       (streamed; those of its a's held) and each pair is written with a's
       sketch into the ``pairs`` spill, by b's id bucket (``_SpillPairs``);
    2. per id bucket, once every pair is spilled: the bucket's pairs are scored
       against its b's sketches (``_ScorePairs``).

    Audited like a join: +1 per pair in, -1 per ``Scored`` out, under the key
    ``"<name>/pairs"`` (appended to ``balances``, for ``AuditGate``)."""

    def __init__(self, sketches: Spill, pairs: Spill, num_buckets: int, written, name: str,
                 balances: list):
        super().__init__()
        self.sketches = sketches
        self.pairs = pairs
        self.num_buckets = num_buckets
        self.written = written
        self.pairs_name = name
        self.balances = balances

    def expand(self, pairs):
        n, key = self.num_buckets, f"{self.pairs_name}/pairs"
        spilled = (
            pairs
            | "ByFirstBucket" >> beam.MapTuple(lambda a, b: (bucket_of_id(a, n), (a, b)))
            | "GroupByFirstBucket" >> beam.GroupByKey()
            | "SpillWithSketch" >> beam.ParDo(_SpillPairs(self.sketches, self.pairs, n),
                                              beam.pvalue.AsList(self.written)))
        scored = (
            pairs.pipeline
            | "Buckets" >> beam.Create(list(range(n)))
            | "Score" >> beam.ParDo(_ScorePairs(self.sketches, self.pairs),
                                    beam.pvalue.AsList(spilled)).with_output_types(Scored))
        sent = pairs | "Sent" >> beam.Map(lambda _, k: (k, 1), key)
        received = scored | "Received" >> beam.Map(lambda _, k: (k, -1), key)
        self.balances.append((sent, received) | "Balance" >> beam.Flatten())
        return scored


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
    """At an id bucket: ``{records: [[record]...], root: [(id, root, ...)...]}`` -> the
    records whose id has no root other than itself, in batches of at most
    ``batch_bytes`` (the bucket's survivors, re-batched).  Holds the bucket's roots
    (near-duplicates only); the records stream through.

    With ``removals`` (records are ``DocRef``s, roots ``(id, root, jaccard)``, and
    ``wanted``: the roots whose id falls in this bucket): a ``Removal`` per dropped
    ref to ``removed`` (its ``kept_int`` not known here: False), and ``(root id,
    int_id)`` to ``kept_ids`` for each surviving ref that is a wanted root."""

    def __init__(self, batch_bytes: int, size_of, removals: bool = False):
        self.batch_bytes = batch_bytes
        self.size_of = size_of
        self.removals = removals

    def setup(self):
        self.kept = Metrics.counter(NAMESPACE, "kept")
        self.removed = Metrics.counter(NAMESPACE, "near_duplicates_removed")

    def process(self, joined):
        _, groups = joined
        roots = {root[0]: root for root in groups["root"]}
        seen = [0]
        tagged = []   # removed records and kept ids, yielded after each batch of survivors
        wanted = set(groups["wanted"]) if self.removals else None

        def survivors():
            for batch in groups["records"]:
                batch = unpack(batch)
                seen[0] += len(batch)
                if wanted is None:
                    yield from (r for r in batch if r.id not in roots)
                    continue
                for r in batch:
                    if r.id not in roots:
                        if r.id in wanted:
                            tagged.append(beam.pvalue.TaggedOutput(
                                KEPT_IDS_TAG, (r.id, r.int_id)))
                        yield r
                    else:
                        _, root, jaccard = roots[r.id]
                        tagged.append(beam.pvalue.TaggedOutput(REMOVED_TAG, Removal(
                            r.file, r.line, r.id, r.int_id, "near_dedup.near_duplicate",
                            f"kept={root} jaccard={jaccard}", root, False, jaccard)))

        # Survivors of the whole bucket re-batched (at most batch_bytes each): the
        # incoming batches are slivers (a scan batch cut by text bucket, then by id
        # bucket), and later steps cut each batch again by shard and by file.
        kept = 0
        for out in chunked(survivors(), self.batch_bytes, self.size_of):
            kept += len(out)
            yield out
            yield from tagged
            tagged.clear()
        yield from tagged
        self.kept.inc(kept)
        self.removed.inc(seen[0] - kept)


class Anchored(NamedTuple):
    """A member ``id`` of a near-duplicate component, its component's kept
    document ``root`` and their Jaccard (``sketch_jaccard``, rounded to 4 places)."""
    id: str
    root: str
    jaccard: float


coders.registry.register_coder(Anchored, coders.RowCoder)


class _Verified(beam.DoFn):
    """``Scored`` candidate edge -> ``(a, b)`` when its Jaccard is at least
    ``threshold`` (counted ``verified_edges``), else counted ``rejected_edges``."""

    def __init__(self, threshold: float):
        self.threshold = threshold

    def setup(self):
        self.kept = Metrics.counter(NAMESPACE, "verified_edges")
        self.rejected = Metrics.counter(NAMESPACE, "rejected_edges")

    def process(self, scored: Scored):
        if scored.jaccard >= self.threshold:
            self.kept.inc()
            yield scored.a, scored.b
        else:
            self.rejected.inc()


class _Anchor(beam.DoFn):
    """``Scored(member, root, J)`` -> ``Anchored`` when J is at least ``threshold``
    (always when ``threshold`` is None: verification off); the others are kept,
    counted as ``kept_chain_members`` (linked to the root only through a chain
    a~b~c)."""

    def __init__(self, threshold: "float | None"):
        self.threshold = threshold

    def setup(self):
        self.chain = Metrics.counter(NAMESPACE, "kept_chain_members")

    def process(self, scored: Scored):
        if self.threshold is not None and scored.jaccard < self.threshold:
            self.chain.inc()
            return
        yield Anchored(scored.a, scored.b, round(scored.jaccard, 4))


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
    * ``anchored`` (with verification or ``with_removed``): the ``Anchored``
      members, the last step that reads sketches;
    * ``removed`` (only with ``with_removed``): audit records
      ``{"removed", "kept", "reason": "near_duplicate", "jaccard"}``;
    * ``balances``: audit balances of every join (for ``AuditGate``);
    * ``components_gate``: the convergence message (empty when converged).

    ``sketches`` scores pairs of documents (``SketchesByJoin`` or
    ``SketchesFromSpill``): the candidate edges (verification), then each
    member with its root (anchoring and the audit records).
    """

    def __init__(self, config: NearDedupConfig, sketches, with_removed: bool = False):
        super().__init__()
        self.config = config
        self.sketches = sketches
        self.with_removed = with_removed

    def expand(self, edges):
        config, sketches = self.config, self.sketches
        scoring = config.verify or self.with_removed
        if scoring:
            sketches.attach(edges)
        if config.verify:
            scored = edges | "Verify" >> sketches.jaccards("Verify")
            edges = scored | "Verified" >> beam.ParDo(_Verified(config.lsh.threshold))
        roots, components_gate = edges | "Components" >> ConnectedComponents(
            config.max_rounds, NAMESPACE, fail_unconverged=False)
        anchored = None
        if scoring:
            scored = roots | "Anchor" >> sketches.jaccards("Anchor")
            anchored = scored | "Anchored" >> beam.ParDo(
                _Anchor(config.lsh.threshold if config.verify else None)).with_output_types(
                    Anchored)
            roots = anchored | "AnchoredRoots" >> beam.Map(lambda a: (a.id, a.root))
        (roots
         | "MembersPerRoot" >> beam.MapTuple(lambda node, root: (root, 1))
         | "ClusterSizes" >> beam.CombinePerKey(sum)
         | "CountClusterSizes" >> beam.ParDo(_CountClusterSizes()))
        result = {"roots": roots, "components_gate": components_gate}
        if anchored is not None:
            result["anchored"] = anchored
        if self.with_removed:
            result["removed"] = anchored | "RemovedRecords" >> beam.Map(_removed_record)
        result["balances"] = list(sketches.balances)
        return result


class DropNearDuplicates(beam.PTransform):
    """Batches of records with an ``id`` + ``roots`` -> the batches without the
    rooted ids (``kept``), and the join's audit balance.

    Records and roots meet in ``num_buckets`` id buckets; a bucket's roots are
    held, its records stream through, so no grouped value grows with the
    corpus.  ``size_of`` gives a record's bytes for the ``batch_bytes`` bound.

    ``anchored`` (records are ``DocRef``s; the ``Anchored`` members, which are
    then the roots): also the removed records, a ``Removal`` per dropped ref with
    its file, line and id type, and the id type of the kept document it names:
    the result is then ``(kept, balances, removed)``.  The kept
    documents' id types come from the same join (each root is sent to its own id
    bucket, where its ref survives) and meet the removed records in a second
    join, by the kept id's bucket.
    """

    def __init__(self, roots, num_buckets: int, batch_bytes: int, size_of, anchored=None):
        super().__init__()
        self.roots = roots
        self.num_buckets = num_buckets
        self.batch_bytes = batch_bytes
        self.size_of = size_of
        self.anchored = anchored

    def expand(self, batches):
        n = self.num_buckets
        inputs = {
            "records": batches | "RecordBuckets" >> beam.FlatMap(
                _packed_by_id_bucket, n).with_output_types(Tuple[int, Packed])}
        if self.anchored is None:
            inputs["root"] = self.roots | "RootBucket" >> beam.MapTuple(
                lambda node, root: (bucket_of_id(node, n), (node, root)))
        else:
            inputs["root"] = self.anchored | "RootBucket" >> beam.Map(
                lambda a: (bucket_of_id(a.id, n), (a.id, a.root, a.jaccard)))
            inputs["wanted"] = (self.anchored
                                | "KeptIds" >> beam.Map(lambda a: a.root)
                                | "DistinctKeptIds" >> beam.Distinct()
                                | "KeptIdBucket" >> beam.Map(
                                    lambda root: (bucket_of_id(root, n), root)))
        joined, balance = inputs | AuditedJoin("JoinRoots")
        if self.anchored is None:
            kept = joined | "Filter" >> beam.ParDo(_DropRooted(self.batch_bytes, self.size_of))
            return kept, balance
        out = joined | "Filter" >> beam.ParDo(
            _DropRooted(self.batch_bytes, self.size_of, removals=True)).with_outputs(
                REMOVED_TAG, KEPT_IDS_TAG, main="kept")
        typed, kept_balance = {
            "removed": out[REMOVED_TAG] | "ByKeptId" >> beam.Map(
                lambda r: (bucket_of_id(r.kept, n), r)),
            "kept": out[KEPT_IDS_TAG] | "KeptIdTypes" >> beam.MapTuple(
                lambda root, int_id: (bucket_of_id(root, n), (root, int_id)))
        } | AuditedJoin("JoinKeptIds")
        removed = typed | "KeptIdType" >> beam.FlatMap(_with_kept_types)
        balances = (balance, kept_balance) | "Balances" >> beam.Flatten()
        return out.kept, balances, removed


def _with_kept_types(joined):
    """At a kept id's bucket: ``{removed: [Removal...], kept: [(id, int_id)...]}`` -> the
    removed records with ``kept_int`` set.  Every kept id named is there (a component's
    root is a document exact dedup kept); one missing is an error, not a guess."""
    _, groups = joined
    types = dict(groups["kept"])
    for removal in groups["removed"]:
        if removal.kept not in types:
            raise RuntimeError(f"near dedup: the kept document {removal.kept!r} of removed "
                               f"{removal.id!r} is not among the kept documents")
        yield removal._replace(kept_int=types[removal.kept])


def _gate(found, balances):
    audit_gate = balances | "Balances" >> beam.Flatten() | "Audit" >> AuditGate()
    # Both messages as side inputs of one element, not a Flatten of the two: Prism
    # (Beam 2.77) once panicked executing that two-singleton Flatten stage (a nil
    # pointer in stage.Execute, NearDedup-Gates; cf. apache/beam#34643).
    gate = (
        audit_gate.pipeline
        | "GateSeed" >> beam.Create([None])
        | "Gate" >> beam.Map(lambda _, components, audit: _joined_messages(components + audit),
                             beam.pvalue.AsList(found["components_gate"]),
                             beam.pvalue.AsList(audit_gate)))
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
    * ``removed`` (only with ``with_removed``): a ``Removal`` per removed ref
      (reason ``near_dedup.near_duplicate``, its file and line, the kept id and
      both ids' JSON types, the Jaccard with the kept one);
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
        sketches = SketchesFromSpill(self.signer, self.spill_dir, self.written)
        found = edges | "Connect" >> ConnectNearDuplicates(
            self.config, sketches, self.with_removed)
        done = found.get("anchored", edges)
        spills_deleted = (
            done
            | "SpillsRead" >> beam.combiners.Count.Globally()
            | "DeleteSpills" >> beam.Map(_delete_spills,
                                         list(self.signer.spills(self.spill_dir))
                                         + sketches.pair_spills))
        drop = counted | "Drop" >> DropNearDuplicates(
            found["roots"], self.signer.num_buckets, self.batch_bytes, ref_bytes,
            anchored=found["anchored"] if self.with_removed else None)
        kept, balance = drop[:2]
        result = {"kept": kept, "gate": _gate(found, found["balances"] + [balance]),
                  "spills_deleted": spills_deleted}
        if self.with_removed:
            result["removed"] = drop[2]
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
            config, SketchesByJoin(signed, n), self.with_removed)
        batches = signed_docs | "DocsOnly" >> beam.MapTuple(lambda _, d: d).with_output_types(
            List[Doc])
        kept, balance = batches | "Drop" >> DropNearDuplicates(
            found["roots"], n, self.batch_bytes, _doc_bytes)
        result = {"kept": kept | "Unbatch" >> beam.FlatMap(lambda batch: batch),
                  "gate": _gate(found, found["balances"] + [balance])}
        if self.with_removed:
            result["removed"] = found["removed"]
        return result
