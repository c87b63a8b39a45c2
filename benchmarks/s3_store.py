"""A store job on two s3:// roots (SeaweedFS on loopback): with Beam's S3 clients
shared per options (transforms.storage.files.share_s3_clients) vs Beam 2.77 as
shipped (a new boto3 client, i.e. a new Session parsing the S3 model, per call).

    python -m benchmarks.s3_store [--repeats 2]

The job: prepare_corpus of the bundled sample corpus (356 documents), DirectRunner
in memory, --output_roots s3://bucket-a/P,s3://bucket-b/P, R=2, 3 shards; each run
a fresh prefix.  Wall, CPU (user+sys of the job's process tree; the server's own
CPU is not counted) and peak RSS per run, the two variants alternating.
"""
import argparse
import os
import sys
import uuid

from benchmarks.harness import measure
from tests.s3_server import S3Server

JOB = """
import sys
from transforms.storage import commit, files
if sys.argv[1] == "baseline":
    files.share_s3_clients = commit.share_s3_clients = lambda: None
from pipelines import prepare_corpus
prepare_corpus.run(sys.argv[2:])
"""


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    rows = {"shared": [], "baseline": []}
    with S3Server(["bucket-a", "bucket-b"]) as s3:
        for _ in range(args.repeats):
            for variant in ("shared", "baseline"):
                prefix = uuid.uuid4().hex[:8]
                job = ["--output_roots", f"s3://bucket-a/{prefix},s3://bucket-b/{prefix}",
                       "--num_shards", "3", "--run_config", "direct", *s3.beam_flags]
                result = measure([sys.executable, "-c", JOB, variant, *job],
                                 env={**os.environ, "PYTHONWARNINGS": "ignore"})
                rows[variant].append(result)
                print(f"  {variant}: {result['wall_s']:.1f} s wall, {result['cpu_s']:.1f} s CPU, "
                      f"{result['peak_rss_mb']:.0f} MB", file=sys.stderr)
    print("| variant | wall s (runs) | CPU s (runs) | peak RSS MB |\n| --- | ---: | ---: | ---: |")
    for variant, runs in rows.items():
        walls = " / ".join(f"{r['wall_s']:.1f}" for r in runs)
        cpus = " / ".join(f"{r['cpu_s']:.1f}" for r in runs)
        print(f"| {variant} | {walls} | {cpus} | {max(r['peak_rss_mb'] for r in runs):.0f} |")

if __name__ == "__main__":
    main()
