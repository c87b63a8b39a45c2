"""The SDK worker command of a multi-process DirectRunner run with warm workers.

    <python> -I -S _warm_launcher.py <pool name> <workers> <Beam's worker command>

Run by the FnApiRunner (through ``sh -c``) in place of Beam's own worker command, with
the environment Beam gives a worker (its control and logging addresses, pipeline
options, worker id).  Standard library only, and run isolated (``-I -S``: no
site-packages, nothing from the environment or the current folder on ``sys.path``),
so it starts in ~17 ms.  It offers the environment and the current folder to the
warm workers of ``pipelines.warm_workers`` (one abstract Unix socket each,
``<pool name>-<n>``, tried from the one the worker id points at), and the first that accepts them
(answers ``A``) becomes this worker, with this process's stdin, stdout and stderr
(passed over the socket): the launcher then lives as long as that process
and exits with its status (1 when it ends without sending one).  A warm worker that
is gone, taken by another launcher, or refuses (its environment at start differs from
this one in a way it cannot take over) is skipped; when none accepts, the launcher
execs Beam's own command, so the runner gets a worker either way.
"""
import json
import os
import socket
import sys

ACCEPTED = b"A"
FDS_MARKER = b"F"
# how long a launcher waits for a warm worker's answer (seconds): a worker takes a
# queued launcher's request once it is done with the one before (refused or vanished)
ANSWER_TIMEOUT = 120.0


def offer(path: str, request: bytes):
    """The connected socket of the warm worker at ``path`` once it accepted ``request``,
    else None (gone, taken, refused, or no answer in ``ANSWER_TIMEOUT``)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(ANSWER_TIMEOUT)
        conn.connect(path)
        # stdin, stdout and stderr first: the worker takes them as its own (Beam's
        # worker writes where the runner's process pointed them, e.g. a run's log file)
        socket.send_fds(conn, [FDS_MARKER], [0, 1, 2])
        conn.sendall(len(request).to_bytes(8, "big") + request)
        if conn.recv(1) == ACCEPTED:
            conn.settimeout(None)
            return conn
    except OSError:
        pass
    conn.close()
    return None


def main(argv) -> None:
    name, count, beam_command = argv[1], int(argv[2]), argv[3]
    request = json.dumps({"env": dict(os.environ), "cwd": os.getcwd()}).encode("utf-8")
    digits = "".join(c for c in os.environ.get("WORKER_ID", "") if c.isdigit())
    first = int(digits) % count if digits and count else 0
    for k in range(count):
        conn = offer(f"\0{name}-{(first + k) % count}", request)   # abstract sockets
        if conn is None:
            continue
        status = b""
        try:
            while True:   # the worker sends its exit status last; EOF when it is gone
                chunk = conn.recv(64)
                if not chunk:
                    break
                status = chunk[-1:]
        except OSError:
            pass
        os._exit(status[0] if status else 1)
    sys.stdout.flush()
    os.execv("/bin/sh", ["/bin/sh", "-c", beam_command])


if __name__ == "__main__":
    main(sys.argv)
