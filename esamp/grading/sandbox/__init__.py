"""Run untrusted (model-generated) Python code in a throw-away, resource-limited child process, and
grade it with a test that runs where no untrusted code runs.

Public API: :func:`run_untrusted`, :func:`run_many`, :class:`SandboxResult`, :func:`isolation_support`.

Process layout (one check; modules in this package)::

    parent (runner.py, any thread)
      └─ bootstrap + judge   python -I -S -c LOADER       trusted; root if we are root; own session
           └─ init           PID 1 of a new PID namespace when available; reaps, relays the status
                └─ child     execve(python -I -S child.py) as a random unprivileged uid, rlimits set:
                             runs the untrusted program and answers the judge's calls

How the verdict is decided (test mode, HumanEval)
-------------------------------------------------
The dataset's prompt (helpers such as ``poly``/``encode_cyclic``) and test run in the *judge*
(judge.py, inside the bootstrap process), which never imports or executes the candidate's code.
``check`` receives a proxy: every call sends its arguments down a pipe as literal data
(protocol.py: JSON with tags for tuples, sets, bytes...) and gets back one literal value -- rebuilt
from exact builtin types, so no custom ``__eq__`` survives -- or the name of the exception raised
(re-raised as that builtin type, else -- and for the control-flow exceptions StopIteration,
StopAsyncIteration, GeneratorExit, SystemExit, KeyboardInterrupt -- as a plain Exception).  Answers are capped at
``max_call_bytes``; a child that dies, hangs up, or sends anything malformed makes the call raise and
the verdict fail.  The check passes when ``check`` returns normally *in the judge*; the judge then
writes ``{"event": "verdict", "nonce": ..., "passed": true}`` to the result pipe, which the child
never holds (it is close-on-exec before the child's exec), with a 128-bit nonce that reaches the
bootstrap only on its stdin.  So the candidate's process holds nothing that can mean "passed":
exit statuses, printed markers, writes to any descriptor, trace/profile functions, frame walking,
``gc`` and ``ctypes`` pokes, signal handlers and patched builtins all act on the child, where no
test frame, test namespace or verdict exists (the child never even sees the test's source).

Script mode (no test) runs a program and reports whether it ran to the end without raising (the
child's own report plus exit status 0).  There a program decides for itself whether it "succeeds";
there is nothing to forge.

Fail closed
-----------
* **A verdict counts only under the full isolation** (``isolation.REQUIRED``: a throw-away uid, PID,
  mount, IPC and network namespaces, a read-only filesystem, private temp directories).  Where any of
  it is missing the bootstrap does not even exec the candidate, and the result is ``unisolated`` (not
  passed); ``SandboxResult.isolation_missing`` says what was missing.  ``require_isolation=False`` is
  the explicit opt-in to count verdicts without it (HumanEval: ``task.allow_unisolated=true``, recorded
  in results.json and per sample).  A candidate never runs as root, whatever the caller accepts.
* **Trusted code is never loaded from where a candidate can write.**  The parent reads and compiles
  ``bootstrap``/``isolation``/``judge``/``protocol`` (and reads the child's two files) once, when it
  imports this package, and sends the code to every bootstrap on its stdin (runner.LOADER); the
  bootstrap's command line names no file.  Besides those it loads only the interpreter and the standard library, and
  ``require_isolation=False`` is refused (:class:`IsolationUnavailable`) where the candidate would run
  under a uid that can write them (:func:`unisolated_refusal`).

Containment, and why each piece
-------------------------------
* **Separate process per check, wall-clock timeout.** The parent waits with ``select`` and a deadline;
  on timeout it SIGKILLs every process below the bootstrap (found through /proc: the bootstrap is a
  child subreaper, so orphans that called ``setsid()`` are still below it), then the bootstrap's
  process group.  When the PID namespace exists, init is
  PID 1 of it, so when init dies (killed, or after the child exits) the kernel SIGKILLs *every*
  process in the namespace -- including children that called ``setsid()`` to leave the process
  group.  init has ``PR_SET_PDEATHSIG=SIGKILL`` and the bootstrap arms ``alarm()`` as a second line of
  defence if the parent itself dies.  The bootstrap is also a child subreaper and SIGKILLs whatever
  is left below it before exiting (cleanup even without a PID namespace); with a PID namespace a
  private /proc is mounted, so the child does not even see host processes (nor the judge).
* **rlimits** (set in the child before ``execve``): RLIMIT_CPU, RLIMIT_AS (address space),
  RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE=0 and RLIMIT_NPROC.  The judge caps its own address space.
* **RLIMIT_NPROC as root.**  The kernel never applies RLIMIT_NPROC to uid 0, so as root the child
  drops to a *random* unprivileged uid/gid (from the uid_map range, >= 10**9, no passwd entry) with
  ``setgroups([])``/``setgid``/``setuid`` and ``PR_SET_NO_NEW_PRIVS``.  A uid per run gives each check
  its own process budget, and nothing else can ever be killed by a by-uid sweep.  It also keeps the
  child away from the judge: no signals, no ptrace, no /proc/<pid>/fd of a root process.
* **Python for the unprivileged uid.**  The interpreter may live somewhere the dropped uid cannot
  traverse (e.g. ``/root/.pyenv``).  Inside the private mount namespace the bootstrap hides the
  inaccessible ancestor behind an empty tmpfs and bind-mounts only the Python prefix back, read-only,
  at the same path.  The child's two modules are copied into its working directory.
* **Filesystem.**  In a private mount namespace every mount is bind-remounted read-only and fresh
  size-limited tmpfs instances cover /tmp, /var/tmp, /dev/shm, /run/lock.  The working directory
  lives in that private /tmp and disappears with the namespace.
* **Network.**  A new network namespace has only a loopback interface that is down.  If
  ``unshare(CLONE_NEWNET)`` fails, ``isolation["network_isolated"]`` is False -- never silently.
* **Environment / fds.**  Only PATH, LANG, HOME=TMPDIR=workdir reach the child; stdin is /dev/null;
  its only other fds are 3 (requests, read end) and 4 (answers, write end).
* **Output** is read through pipes by the parent: only the last ``capture_bytes`` of stdout/stderr are
  kept, and after ``max_output_bytes`` in total the child is killed (status ``output_limit``).
* **-I -S.**  ``-I`` ignores PYTHON* variables and the script directory; ``-S`` skips ``site`` (no
  site-packages, no ``.pth`` execution, faster start-up, no ``exit``/``quit`` builtins).  Pass
  ``allow_site_packages=True`` if generated code legitimately needs installed packages.

What is *not* prevented: a candidate that answers the test's inputs correctly by any means (e.g. a
memorised table) passes -- the judge sees only answers.  The child can read world-readable host files
(the filesystem is read-only for it, not hidden), CPU time is bounded by the wall timeout but still
consumed.

Without root (only with ``require_isolation=False``): rlimits, a temp dir and the scrubbed environment
apply, nothing else, and the child shares the user's uid.  What still holds: no check loads trusted
code the child could have rewritten (above), control-flow exceptions are plain failures, and on timeout
or exit every process still below the bootstrap is killed.  What does not: the child can write every
file the user can (a *later* process importing a rewritten checkout runs the rewrite), signal or kill
the bootstrap (its orphans then escape), and, on a kernel that allows same-uid ptrace
(``kernel.yama.ptrace_scope=0``), read the nonce from the parent's memory and write a verdict through
``/proc/<parent>/fd``.  Unisolated verdicts are for trusted code only.  ``isolate=False`` turns the
namespaces and the uid change off (then nothing counts unless ``require_isolation=False``, which root
is refused).
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from esamp.grading.sandbox.runner import IsolationUnavailable, SandboxResult, run_untrusted, unisolated_refusal

__all__ = ["SandboxResult", "IsolationUnavailable", "run_untrusted", "run_many", "isolation_support",
           "unisolated_refusal"]


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1  # respects taskset/cpuset, unlike os.cpu_count()
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def run_many(
    programs: Sequence[str | dict[str, Any]],
    timeout: float = 5.0,
    n_workers: int | None = None,
    **kwargs: Any,
) -> list[SandboxResult]:
    """Run many programs in parallel: a pool of ``n_workers`` threads (default: the CPUs this process
    may use), each driving one sandbox subprocess at a time.

    Each item is a program string or a dict of :func:`run_untrusted` keyword arguments (must contain
    ``program``); ``timeout`` and ``kwargs`` are defaults for every item.  Results keep input order.
    """
    items = [p if isinstance(p, dict) else {"program": p} for p in programs]
    if not items:
        return []
    n = n_workers or _cpu_count()
    n = max(1, min(n, len(items)))

    def one(item: dict[str, Any]) -> SandboxResult:
        kw = {"timeout": timeout, **kwargs, **item}
        return run_untrusted(kw.pop("program"), **kw)

    if n == 1:
        return [one(it) for it in items]
    with ThreadPoolExecutor(max_workers=n, thread_name_prefix="esamp-sandbox") as pool:
        return list(pool.map(one, items))


_SUPPORT: dict[str, Any] | None = None
_SUPPORT_LOCK = threading.Lock()


def isolation_support() -> dict[str, Any]:
    """Isolation this machine gives: the isolation report of one trivial check (cached), with
    ``missing``, the measures of ``isolation.REQUIRED`` it lacked (empty: checks run and count here)."""
    global _SUPPORT
    with _SUPPORT_LOCK:
        if _SUPPORT is None:
            r = run_untrusted("pass", timeout=30)
            _SUPPORT = {**r.isolation, "missing": r.isolation_missing}
            if r.status == "sandbox_error":
                _SUPPORT["error"] = r.error
        return dict(_SUPPORT)
