"""Run a function with a hard wall-clock timeout in a reusable worker subprocess.

Why not something simpler:

* ``signal.alarm`` (what math_verify uses by default) only works in the main thread of the main
  interpreter, and our graders are called from thread pools.
* A thread cannot be killed, so a thread-based timeout leaves a runaway sympy computation burning a
  core (and holding the GIL) forever.
* ``multiprocessing`` with "spawn"/"forkserver" re-imports the caller's ``__main__`` in the child (a
  script without an ``if __name__ == "__main__"`` guard would run again), and "fork" is unsafe once
  the parent has threads (CUDA, tokenizers, thread pools).

So each worker here is a plain ``python -c`` subprocess that talks JSON lines over its stdin/stdout
pipes. A call checks out an idle worker (starting one if needed, up to ``max_workers``), sends one
request and waits for the answer with ``select`` and a deadline. On timeout the worker is killed
(SIGKILL: pure-Python *and* C-level loops such as huge big-int powers stop) and discarded; the next
call starts a fresh one. Workers are reused across calls, so a typical call costs well under a
millisecond of overhead plus the work itself; starting a worker (importing sympy & co.) takes about a
second and is *not* counted against the per-call timeout.

The function to run is named by ``"module:qualname"`` and receives/returns JSON-serialisable values.

POSIX only (``select`` on pipes). The public entry points are :func:`call_with_timeout` and
:class:`WorkerPool`.
"""
from __future__ import annotations

import atexit
import importlib
import json
import os
import select
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Sequence

__all__ = ["CallTimeout", "WorkerError", "WorkerPool", "call_with_timeout", "default_pool"]

# Directory that contains the `esamp` package, so the worker can import it even when esamp is not
# installed (e.g. running from a checkout with `python -m pytest`).
_PKG_PARENT = str(Path(__file__).resolve().parents[2])


class CallTimeout(TimeoutError):
    """The call did not finish within its timeout; the worker that ran it was killed."""


class WorkerError(RuntimeError):
    """The function raised in the worker, or the worker died / could not be started."""


# --------------------------------------------------------------------------------------------------
# Worker side
# --------------------------------------------------------------------------------------------------

def _resolve(target: str):
    module_name, _, qualname = target.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _worker_main() -> None:  # pragma: no cover - runs in the subprocess
    """Entry point of a worker process: read one JSON request per line, answer one JSON line."""
    import signal

    # Ctrl-C in the terminal goes to the whole process group; let the parent handle it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The protocol owns the original stdout; anything the called code prints goes to stderr.
    proto_out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    proto_in = sys.stdin

    preload_errors = []
    for mod in sys.argv[1:]:
        try:
            if ":" in mod:  # "module:function": call it (e.g. to warm caches)
                _resolve(mod)()
            else:
                importlib.import_module(mod)
        except BaseException as e:  # noqa: BLE001 - reported to the parent, never fatal here
            preload_errors.append(f"{mod}: {type(e).__name__}: {e}")
    proto_out.write(json.dumps({"ready": True, "preload_errors": preload_errors}) + "\n")
    proto_out.flush()

    cache: dict[str, Any] = {}
    for line in proto_in:
        try:
            req = json.loads(line)
            fn = cache.get(req["target"])
            if fn is None:
                fn = cache[req["target"]] = _resolve(req["target"])
            res = fn(*req.get("args", ()), **req.get("kwargs", {}))
            out = json.dumps({"ok": True, "result": res})
        except BaseException as e:  # noqa: BLE001 - must never take the worker down
            try:
                out = json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"[:2000]})
            except BaseException:  # noqa: BLE001
                out = json.dumps({"ok": False, "error": "unprintable exception"})
        proto_out.write(out + "\n")
        proto_out.flush()


# --------------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------------

class _Worker:
    def __init__(self, preload: Sequence[str], startup_timeout: float):
        env = dict(os.environ)
        env["PYTHONPATH"] = _PKG_PARENT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from esamp.grading.timeout import _worker_main; _worker_main()", *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=None,  # inherit: real crashes in the worker stay visible
            env=env,
            close_fds=True,
        )
        self._out_fd = self.proc.stdout.fileno()
        self._buf = b""
        self.n_calls = 0
        try:
            hello = self._read_line(time.monotonic() + startup_timeout)
        except BaseException:
            self.kill()
            raise
        if hello is None or not json.loads(hello).get("ready"):
            self.kill()
            raise WorkerError("worker failed to start")
        errs = json.loads(hello).get("preload_errors") or []
        if errs:
            print(f"[esamp.grading.timeout] worker preload errors: {errs}", file=sys.stderr)

    def _read_line(self, deadline: float | None) -> bytes | None:
        """One line from the worker; None on EOF. Raises CallTimeout past `deadline`."""
        while b"\n" not in self._buf:
            if deadline is None:
                wait = None
            else:
                wait = deadline - time.monotonic()
                if wait <= 0:
                    raise CallTimeout("worker call timed out")
            ready, _, _ = select.select([self._out_fd], [], [], wait)
            if not ready:
                continue  # loop re-checks the deadline
            chunk = os.read(self._out_fd, 1 << 16)
            if not chunk:
                return None
            self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line

    def call(self, target: str, args: Sequence[Any], kwargs: dict, timeout: float | None) -> Any:
        payload = (json.dumps({"target": target, "args": list(args), "kwargs": kwargs}) + "\n").encode()
        self.n_calls += 1
        deadline = None if timeout is None else time.monotonic() + max(0.0, float(timeout))
        try:
            self.proc.stdin.write(payload)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            raise WorkerError(f"worker died: {e}") from e
        line = self._read_line(deadline)
        if line is None:
            raise WorkerError(f"worker died (exit code {self.proc.poll()})")
        msg = json.loads(line)
        if not msg.get("ok"):
            raise WorkerError(msg.get("error", "unknown worker error"))
        return msg.get("result")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
        except Exception:  # noqa: BLE001
            pass
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except Exception:  # noqa: BLE001
                pass
        try:
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001
            pass

    def close(self) -> None:
        """Polite shutdown (EOF on stdin), then kill."""
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=1)
        except Exception:  # noqa: BLE001
            pass
        self.kill()


class WorkerPool:
    """A small pool of reusable worker subprocesses; thread-safe.

    Args:
        preload: modules each worker imports at start-up (before it reports ready), so the first call
            does not pay for them inside its timeout; a "module:function" entry is imported and called
            without arguments (e.g. to warm caches).
        max_workers: at most this many workers run at once; further callers wait for a free one (the
            per-call timeout starts once a worker is checked out).
        max_calls_per_worker: recycle a worker after this many calls (bounds memory growth of caches).
        startup_timeout: seconds to wait for a new worker to become ready.
    """

    def __init__(
        self,
        preload: Sequence[str] = (),
        max_workers: int | None = None,
        max_calls_per_worker: int = 5000,
        startup_timeout: float = 120.0,
    ):
        self.preload = tuple(preload)
        self.max_workers = max(1, max_workers or min(4, os.cpu_count() or 1))
        self.max_calls_per_worker = max_calls_per_worker
        self.startup_timeout = startup_timeout
        self._reset()
        _all_pools.add(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[_Worker] = []
        self._n_out = 0  # workers checked out (busy) + being started
        self._closed = False

    def _check_fork(self) -> None:
        # After os.fork() the child must not share the parent's pipes: forget (do not kill) them.
        if os.getpid() != self._pid:
            self._reset()

    def _acquire(self) -> _Worker:
        self._check_fork()
        with self._cond:
            while True:
                if self._closed:
                    raise WorkerError("pool is closed")
                while self._idle:
                    w = self._idle.pop()
                    if w.alive():
                        self._n_out += 1
                        return w
                    w.kill()
                if self._n_out < self.max_workers:
                    self._n_out += 1
                    break
                self._cond.wait()
        try:  # start outside the lock: takes ~1 s
            return _Worker(self.preload, self.startup_timeout)
        except BaseException:
            with self._cond:
                self._n_out -= 1
                self._cond.notify()
            raise

    def _release(self, w: _Worker, healthy: bool) -> None:
        if os.getpid() != self._pid:
            return
        retire = (not healthy) or w.n_calls >= self.max_calls_per_worker
        if retire:
            w.kill()
        with self._cond:
            self._n_out -= 1
            if not retire:
                if self._closed:
                    w.close()
                else:
                    self._idle.append(w)
            self._cond.notify()

    def call(self, target: str, *args: Any, timeout: float | None = 5.0, **kwargs: Any) -> Any:
        """Run ``target(*args, **kwargs)`` in a worker; raise CallTimeout after `timeout` seconds
        (None: wait forever) and WorkerError if it raised or the worker died. A worker that died
        before answering (e.g. killed by the OOM killer) is replaced and the call retried once."""
        for attempt in range(2):
            w = self._acquire()
            healthy = False
            try:
                res = w.call(target, args, kwargs, timeout)
                healthy = True
                return res
            except WorkerError:
                if w.alive():  # the function itself raised: the worker is fine
                    healthy = True
                    raise
                if attempt == 1:
                    raise
            finally:
                self._release(w, healthy)
        raise AssertionError("unreachable")

    def warmup(self, n: int = 1) -> None:
        """Start up to `n` workers now (e.g. before a timed evaluation loop)."""
        ws = []
        try:
            for _ in range(min(n, self.max_workers)):
                ws.append(self._acquire())
        finally:
            for w in ws:
                self._release(w, True)

    def n_idle(self) -> int:
        with self._cond:
            return len(self._idle)

    def close(self) -> None:
        if os.getpid() != self._pid:
            return
        with self._cond:
            self._closed = True
            idle, self._idle = self._idle, []
            self._cond.notify_all()
        for w in idle:
            w.close()


_all_pools: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()
_default_pool: WorkerPool | None = None
_default_lock = threading.Lock()


def default_pool() -> WorkerPool:
    """The shared pool used by :func:`call_with_timeout` (created lazily)."""
    global _default_pool
    with _default_lock:
        if _default_pool is None or _default_pool._closed:
            _default_pool = WorkerPool()
        return _default_pool


def call_with_timeout(target: str, *args: Any, timeout: float | None = 5.0, **kwargs: Any) -> Any:
    """``target`` ("module:function") run in the shared worker pool with a hard timeout."""
    return default_pool().call(target, *args, timeout=timeout, **kwargs)


@atexit.register
def _close_all() -> None:  # pragma: no cover
    for p in list(_all_pools):
        try:
            p.close()
        except Exception:  # noqa: BLE001
            pass


def _after_fork_in_child() -> None:  # pragma: no cover
    global _default_lock
    _default_lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)
