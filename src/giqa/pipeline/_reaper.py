"""Ends the Ray processes a driver started when that driver dies without shutting Ray down.

``ray.init()`` without an address starts a local cluster (GCS server, raylet, dashboard and
runtime-env agents, workers) as children of the driver. If the driver is killed (SIGKILL, OOM
killer), they keep running. :func:`start` launches this module as a small watcher in its own
session: the driver sends it the process ids of its Ray processes over a pipe and writes
``done`` after ``ray.shutdown()``. When the pipe closes without ``done`` (the driver died), the
watcher terminates those processes and their descendants (SIGTERM, then SIGKILL after 3 s).
Linux (``/proc``) or any system with ``psutil``; elsewhere it does nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import IO, Any, Optional

__all__ = ["start", "descendants", "Watcher"]


def _children_map() -> dict[int, list[int]]:
    """pid -> child pids of every process (psutil, else /proc)."""
    out: dict[int, list[int]] = {}
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        for p in psutil.process_iter(["pid", "ppid"]):
            out.setdefault(p.info["ppid"] or 0, []).append(p.info["pid"])
        return out
    if not os.path.isdir("/proc"):
        return out
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                stat = fh.read().decode("ascii", "replace")
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        out.setdefault(ppid, []).append(int(name))
    return out


def descendants(pids: list[int]) -> list[int]:
    """``pids`` and every process below them, now."""
    children = _children_map()
    seen: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.append(pid)
        todo.extend(children.get(pid, []))
    return seen


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return b") Z " not in fh.read()  # a zombie is dead
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True


def _terminate(pids: list[int]) -> None:
    targets = [p for p in descendants(pids) if p != os.getpid()]
    for sig, wait in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 0.0)):
        for pid in targets:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + wait
        while wait and time.monotonic() < deadline and any(_alive(p) for p in targets):
            time.sleep(0.1)


def _watch(stream: IO[str]) -> int:
    pids: list[int] = []
    for line in stream:
        word = line.strip()
        if word == "done":
            return 0
        pids.extend(int(x) for x in word.split() if x.isdigit())
    _terminate(pids)  # the pipe closed without "done": the driver is gone
    return 0


class Watcher:
    """The driver's end: :meth:`watch` sends pids, :meth:`done` releases the watcher."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc

    def watch(self, pids: list[int]) -> None:
        if self.proc.stdin is not None and pids:
            self.proc.stdin.write(" ".join(map(str, pids)) + "\n")
            self.proc.stdin.flush()

    def watch_children(self) -> None:
        """Send every current descendant of this process (the Ray processes just started)."""
        self.watch([p for p in descendants([os.getpid()]) if p not in (os.getpid(), self.proc.pid)])

    def done(self) -> None:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write("done\n")
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start() -> Optional[Watcher]:
    """Launch the watcher (None where processes cannot be listed)."""
    if not os.path.isdir("/proc"):
        try:
            import psutil  # noqa: F401
        except ImportError:
            return None
    proc = subprocess.Popen([sys.executable, "-m", "giqa.pipeline._reaper"], stdin=subprocess.PIPE, text=True,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Watcher(proc)


def _main(argv: Any = None) -> int:
    return _watch(sys.stdin)


if __name__ == "__main__":  # pragma: no cover - run as a subprocess
    sys.exit(_main())
