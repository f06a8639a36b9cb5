"""Parent side of one check: start the bootstrap, pump its pipes under a deadline, read the verdict.

:func:`run_untrusted` is the sequence of the steps below; the design is in the package docstring.
"""
from __future__ import annotations

import functools
import json
import marshal
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from esamp.grading.sandbox import isolation as _isolation

_HERE = os.path.dirname(os.path.abspath(__file__))
TRUSTED_MODULES = ("protocol", "isolation", "judge", "bootstrap")  # the bootstrap's code, in import order
CHILD_FILES = ("child.py", "protocol.py")  # what the child runs, staged in its working directory


def _read_package_files(names: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for name in names:
        with open(os.path.join(_HERE, name), encoding="utf-8") as f:
            out[name] = f.read()
    return out


# Read once, when the parent imports this module -- before any candidate has run.  Every check's bootstrap
# gets its code from here, on its stdin; nothing trusted is loaded from the package directory afterwards,
# which a candidate running under the user's own uid (no root) could rewrite to forge later verdicts.
_CHILD_SOURCES = _read_package_files(CHILD_FILES)
# Compiled here once (marshalled, hex): the bootstrap runs the same interpreter build (_base_python), and
# compiling ~1000 lines in every check would cost it several milliseconds.
_TRUSTED_CODE = {name: marshal.dumps(compile(src, "<esamp sandbox>/" + name, "exec")).hex()
                 for name, src in _read_package_files(tuple(m + ".py" for m in TRUSTED_MODULES)).items()}

# The bootstrap's whole command line (``python -I -S -c LOADER``): it names no file.  It builds the trusted
# modules from the code in its configuration and runs ``bootstrap.main``.
LOADER = """\
import json, marshal, sys, types
cfg = json.loads(sys.stdin.buffer.read().decode("utf-8"))
for name in cfg.pop("trusted_modules"):
    module = sys.modules[name] = types.ModuleType(name)
    exec(marshal.loads(bytes.fromhex(cfg["trusted_code"][name + ".py"])), module.__dict__)
del cfg["trusted_code"]
sys.modules["bootstrap"].main(cfg)
"""


class IsolationUnavailable(RuntimeError):
    """The sandbox refuses to run a check: the candidate could rewrite the code the judge runs from."""


@dataclass
class SandboxResult:
    """Outcome of one :func:`run_untrusted` call.

    ``passed`` is the judge's verdict (it came back through the result pipe, which only trusted
    processes hold, with this run's nonce) -- and, unless the caller passed ``require_isolation=False``,
    only where the full isolation held; it is the only field to trust for grading.  ``status`` is one of
    ``passed``, ``failed``, ``timeout``, ``output_limit``, ``sandbox_error``, ``unisolated`` (the
    isolation could not be set up, so the candidate did not run); ``returncode`` is the candidate
    process's exit status (informational: in test mode it exits 0 when the judge hangs up, whatever the
    verdict).  ``isolation_missing`` lists the measures of ``isolation.REQUIRED`` that were not in place.
    """

    status: str
    passed: bool
    returncode: int | None
    stdout: str
    stderr: str
    elapsed: float
    timed_out: bool
    error: str | None = None
    output_truncated: bool = False
    stdout_bytes: int = 0
    stderr_bytes: int = 0
    isolation: dict[str, Any] = field(default_factory=dict)
    isolation_missing: list[str] = field(default_factory=list)
    require_isolation: bool = True

    @property
    def network_isolated(self) -> bool:
        return bool(self.isolation.get("network_isolated", False))


class _Tail:
    """Keeps the last `cap` bytes written to it and counts the total."""

    def __init__(self, cap: int):
        self.cap = cap
        self.buf = bytearray()
        self.total = 0

    def add(self, data: bytes) -> None:
        self.total += len(data)
        self.buf += data
        if len(self.buf) > 2 * self.cap:
            del self.buf[: len(self.buf) - self.cap]

    def text(self) -> str:
        return bytes(self.buf[-self.cap:]).decode("utf-8", errors="replace")


@dataclass
class _Run:
    """What one bootstrap process left behind."""

    out: _Tail
    err: _Tail
    results: bytearray = field(default_factory=bytearray)  # the result pipe (bounded, see _pump)
    result_bytes: int = 0
    timed_out: bool = False
    output_limit: bool = False
    returncode: int | None = None


def _base_python() -> str:
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def _needed_paths(site: bool) -> list[str]:
    paths = {os.path.realpath(sys.base_prefix), os.path.dirname(_base_python())}
    if site:
        paths.add(os.path.realpath(sys.prefix))
        paths.add(os.path.dirname(os.path.realpath(sys.executable)))
    # Drop paths nested in another needed path (binding the outer one covers them).
    out = sorted(paths)
    return [p for p in out if not any(p != q and p.startswith(q.rstrip("/") + "/") for q in out)]


def _config(program: str, spec: dict[str, Any], *, timeout: float, memory_mb: int, max_processes: int,
            max_file_mb: int, tmpfs_mb: int, allow_site_packages: bool, isolate: bool,
            require_isolation: bool, max_call_bytes: int) -> dict[str, Any]:
    """The bootstrap's configuration (sent on its stdin: never in argv, environment or a file)."""
    site = bool(allow_site_packages)
    host_workdir = tempfile.mkdtemp(prefix="esamp-sbx-")
    os.chmod(host_workdir, 0o700)
    return {
        "host_workdir": host_workdir, "python": os.path.abspath(sys.executable) if site else _base_python(),
        "site": site, "isolate": bool(isolate), "needed_paths": _needed_paths(site), "tmpfs_mb": int(tmpfs_mb),
        "timeout": float(timeout), "spec": spec, "program": program, "nonce": secrets.token_hex(16),
        "max_call_bytes": int(max_call_bytes), "require_isolation": bool(require_isolation),
        "trusted_modules": list(TRUSTED_MODULES), "trusted_code": _TRUSTED_CODE, "child_files": _CHILD_SOURCES,
        "limits": {"cpu": max(1, int(timeout + 0.999)) + 1, "as": int(memory_mb) << 20,
                   "fsize": int(max_file_mb) << 20, "nofile": 256, "nproc": int(max_processes)},
    }


def _spawn(cfg: dict[str, Any], res_w: int) -> subprocess.Popen:
    try:
        proc = subprocess.Popen(
            [_base_python(), "-I", "-S", "-c", LOADER],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            pass_fds=(res_w,), start_new_session=True, cwd="/",
            env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    finally:
        os.close(res_w)  # the bootstrap holds the only write end now
    try:
        proc.stdin.write(json.dumps({**cfg, "result_fd": res_w}).encode("utf-8"))
        proc.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    return proc


def _pump(proc: subprocess.Popen, res_r: int, run: _Run, deadline: float, max_output_bytes: int) -> None:
    """Read stdout, stderr and the result pipe until they close, the deadline passes or the output
    exceeds ``max_output_bytes``; then make sure the bootstrap's process group is gone."""
    sel = selectors.DefaultSelector()
    streams = {proc.stdout.fileno(): run.out, proc.stderr.fileno(): run.err, res_r: None}
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    exited_at = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                run.timed_out = True
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.5:
                break  # the sandbox is gone but something (an escaped orphan?) holds the pipes open
            for key, _ in sel.select(min(deadline - now, 0.25 if exited_at is None else 0.05)):
                try:
                    data = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
                elif streams[key.fd] is not None:
                    streams[key.fd].add(data)
                else:
                    run.result_bytes += len(data)
                    if len(run.results) < (1 << 20):
                        run.results += data
            if run.out.total + run.err.total + run.result_bytes > max_output_bytes:
                run.output_limit = True
                break
    finally:
        sel.close()
    if not (run.timed_out or run.output_limit):
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            run.timed_out = True
    if run.timed_out or run.output_limit:
        _kill_tree(proc.pid)
        _kill_group(proc.pid)
    run.returncode = proc.wait()


def _events(raw: bytes, nonce: str) -> tuple[dict[str, Any], dict[str, Any] | None, str | None]:
    """(isolation report, verdict, sandbox error) from the result pipe; a verdict counts only with
    this run's nonce."""
    isolation: dict[str, Any] = {}
    verdict, sandbox_error = None, None
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            ev = json.loads(line)
        except ValueError:
            continue
        kind = ev.get("event") if isinstance(ev, dict) else None
        if kind == "isolation" and not isolation and isinstance(ev.get("isolation"), dict):
            isolation = ev["isolation"]
        elif kind == "sandbox_error" and sandbox_error is None:
            sandbox_error = str(ev.get("error"))
        elif kind == "verdict" and verdict is None and ev.get("nonce") == nonce:
            verdict = ev
    return isolation, verdict, sandbox_error


def _classify(run: _Run, verdict: dict[str, Any] | None, sandbox_error: str | None, timeout: float,
              max_output_bytes: int, missing: list[str] | None) -> tuple[str, bool, str | None]:
    """(status, passed, error).  ``missing``: the required isolation measures not in place (None: the
    caller does not require isolation).  A check without its isolation report misses all of them."""
    if missing:
        return "unisolated", False, ("the sandbox could not isolate the candidate (missing: %s), so its "
                                     "verdict does not count" % ", ".join(missing))
    if sandbox_error is not None:
        return "sandbox_error", False, sandbox_error
    if run.timed_out:
        return "timeout", False, f"timed out after {timeout:g}s"
    if run.output_limit:
        return "output_limit", False, f"output exceeded {max_output_bytes} bytes"
    if verdict is not None and verdict.get("passed") is True:
        return "passed", True, None
    if verdict is not None and isinstance(verdict.get("error"), str):
        return "failed", False, verdict["error"]
    rc = run.returncode
    if rc is not None and rc > 128:
        sig = rc - 128
        error = f"killed by {_signal_name(sig)}"
        return "failed", False, error + (" (CPU time limit)" if sig == signal.SIGXCPU else "")
    return "failed", False, f"exited with status {rc} before the check finished"


def run_untrusted(
    program: str,
    timeout: float = 5.0,
    memory_mb: int = 1024,
    *,
    test: str | None = None,
    entry_point: str | None = None,
    prelude: str = "",
    check_name: str = "check",
    max_processes: int = 64,
    max_file_mb: int = 16,
    tmpfs_mb: int = 64,
    max_output_bytes: int = 16 << 20,
    capture_bytes: int = 64 << 10,
    allow_site_packages: bool = False,
    isolate: bool = True,
    require_isolation: bool = True,
    max_call_bytes: int = 4 << 20,
) -> SandboxResult:
    """Run untrusted Python source in a fresh sandboxed process and report whether it succeeded.

    Script mode (``test is None``): success means ``program`` ran to completion without raising.
    Test mode (``test`` and ``entry_point`` given): ``program`` runs in the sandboxed child;
    ``prelude`` and ``test`` (trusted) run in the judge, which calls ``check(proxy)``; every call
    of the proxy is answered by the child's ``entry_point`` with literal data of at most
    ``max_call_bytes``.  Success means ``check`` returned normally.  See the package docstring.

    ``require_isolation`` (default): the candidate runs only under the full isolation (root: its own
    uid and namespaces, ``isolation.REQUIRED``); otherwise it does not run and the status is
    ``unisolated``.  ``require_isolation=False`` runs it with whatever this machine allows and counts
    the verdict; it raises :class:`IsolationUnavailable` when the candidate would share our uid while
    the Python the judge runs from is writable by that uid (:func:`unisolated_refusal`).
    """
    if test is not None and not entry_point:
        raise ValueError("test mode needs entry_point")
    if not require_isolation:
        why = unisolated_refusal(isolate)
        if why is not None:
            raise IsolationUnavailable(why)
    spec = {"mode": "script" if test is None else "test", "test": test or "", "prelude": prelude or "",
            "entry_point": entry_point or "", "check_name": check_name}
    cfg = _config(program, spec, timeout=timeout, memory_mb=memory_mb, max_processes=max_processes,
                  max_file_mb=max_file_mb, tmpfs_mb=tmpfs_mb, allow_site_packages=allow_site_packages,
                  isolate=isolate, require_isolation=require_isolation, max_call_bytes=max_call_bytes)
    run = _Run(out=_Tail(capture_bytes), err=_Tail(capture_bytes))
    res_r, res_w = os.pipe()
    start = time.monotonic()
    proc = None
    try:
        proc = _spawn(cfg, res_w)
        _pump(proc, res_r, run, start + timeout, max_output_bytes)
    finally:
        elapsed = time.monotonic() - start
        _close(proc, res_r)
        isolation, verdict, sandbox_error = _events(bytes(run.results), cfg["nonce"])
        if isolation.get("uid_dropped") and not isolation.get("pid_namespace"):
            _kill_uid(int(isolation.get("uid") or 0))
        _rmtree(cfg["host_workdir"])
    missing = _isolation.missing(isolation)
    status, passed, error = _classify(run, verdict, sandbox_error, timeout, max_output_bytes,
                                      missing if require_isolation else None)
    out, err = run.out, run.err
    return SandboxResult(
        status=status, passed=passed, returncode=run.returncode, stdout=out.text(), stderr=err.text(),
        elapsed=elapsed, timed_out=run.timed_out, error=error,
        output_truncated=out.total > capture_bytes or err.total > capture_bytes or run.output_limit,
        stdout_bytes=out.total, stderr_bytes=err.total, isolation=isolation, isolation_missing=missing,
        require_isolation=bool(require_isolation),
    )


@functools.lru_cache(maxsize=1)
def _writable_python_path() -> str | None:
    """The first path of the interpreter or its standard library (files, bytecode caches, extension
    modules) that this process may write, or None.  Every bootstrap loads these besides the sources it
    is sent.  Cached: the answer only changes if someone changes the installation's permissions."""
    import sysconfig

    if os.access(_base_python(), os.W_OK):
        return _base_python()
    roots = {sysconfig.get_paths(vars={"installed_base": sys.base_prefix, "base": sys.base_prefix})[key]
             for key in ("stdlib", "platstdlib")}
    for root in sorted(roots):
        for folder, _dirs, files in os.walk(root):
            for path in [folder] + [os.path.join(folder, f) for f in files]:
                if os.access(path, os.W_OK):
                    return path
    return None


def unisolated_refusal(isolate: bool = True) -> str | None:
    """Why a candidate may not run unisolated here (None: it may).  Not root, the candidate runs under our
    own uid, so it can write whatever we can; if that includes the interpreter or standard library the
    next bootstrap starts from, one candidate could rewrite the judge of every later check.  As root it
    runs under a throw-away uid or not at all -- except with ``isolate=False``, which is refused."""
    if os.geteuid() == 0:  # the bootstrap never runs a candidate as root (it refuses if the uid drop failed)
        return None if isolate else ("isolate=False as root would run the candidate as root, which can "
                                     "rewrite the Python installation every later check's judge runs from")
    writable = _writable_python_path()
    if writable is not None:
        return ("the candidate would run under this user's uid, which can write %s, part of the Python "
                "every check's judge runs from" % writable)
    return None


# --------------------------------------------------------------------------------------------------
# host-side cleanup
# --------------------------------------------------------------------------------------------------

def _close(proc: subprocess.Popen | None, res_r: int) -> None:
    if proc is not None:
        if proc.poll() is None:
            _kill_tree(proc.pid)
            _kill_group(proc.pid)
            proc.wait()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            try:
                f.close()
            except (OSError, AttributeError):
                pass
    try:
        os.close(res_r)
    except OSError:
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _live_descendants(root: int) -> list[int]:
    """Pids below ``root`` in the host's process tree that are not zombies (read from /proc)."""
    children: dict[int, list[int]] = {}
    zombies = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        if fields[0] == "Z":
            zombies.add(int(entry))
    out, todo = [], list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo += children.get(pid, ())
    return [p for p in out if p not in zombies]


def _kill_tree(root: int, max_seconds: float = 2.0) -> None:
    """SIGKILL every process below the bootstrap ``root``, before the bootstrap itself is killed.

    Killing the bootstrap's process group misses a descendant that called ``setsid()``; where a PID
    namespace exists its end kills everything, but without root there is none.  The bootstrap is a child
    subreaper, so while it lives every orphan of the check is re-parented to it and stays in this tree:
    kill the tree (repeatedly -- a process not yet killed may fork meanwhile) until nothing in it lives.
    (A candidate under our own uid could still kill the bootstrap first; see the package docstring.)"""
    end = time.monotonic() + max_seconds
    while time.monotonic() < end:
        pids = _live_descendants(root)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        time.sleep(0.005)


def _kill_uid(uid: int, rounds: int = 20) -> None:
    """SIGKILL every process whose real uid is `uid` (used when there was no PID namespace)."""
    if not uid:
        return
    for _ in range(rounds):
        found = False
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                found = True
                                os.kill(int(entry), signal.SIGKILL)
                            break
            except (OSError, ValueError):
                continue
        if not found:
            return
        time.sleep(0.01)


def _rmtree(path: str) -> None:
    """Remove the host working directory even if the child made parts of it unreadable.

    rmtree never follows symlinks.  Root ignores permission bits; otherwise (same uid as the child)
    re-open mode-000 directories first, skipping symlinks (a chmod could only touch our own files)."""
    if os.geteuid() != 0:
        for root, dirs, _files in os.walk(path):
            for d in dirs:
                p = os.path.join(root, d)
                try:
                    if not os.path.islink(p):
                        os.chmod(p, 0o700)
                except OSError:
                    pass
    shutil.rmtree(path, ignore_errors=True)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"
