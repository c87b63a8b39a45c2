"""The replicated sharded store: file layer, placement of replicas on roots,
shard planning, the commit protocol (manifest generations), writing, reading
with fail-over, verification and repair, spill files, the run report.

Layering (enforced by ``tests/test_layering.py``): ``storage`` imports only
``core``, never ``processing`` or ``reduction``.
"""
