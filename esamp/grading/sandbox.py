"""Run untrusted (model-generated) Python code in a throw-away, resource-limited child process.

Public API: :func:`run_untrusted`, :func:`run_many`, :class:`SandboxResult`, :func:`isolation_support`.

Process layout (one check)::

    parent (this module, any thread)
      └─ bootstrap   python -I -S -c _BOOTSTRAP_SRC   root if we are root; new session/process group
           └─ init   forked bootstrap; PID 1 of a new PID namespace when available; reaps, relays status
                └─ harness   execve(python -I -S harness.py) as a random unprivileged uid, rlimits set
                              - runs the untrusted code, then the test, then prints the success marker

Why each piece:

* **Separate process per check, wall-clock timeout.** The parent waits with ``select`` and a deadline;
  on timeout it SIGKILLs the bootstrap's whole process group.  When the PID namespace exists, the init
  process is PID 1 of it, so when init dies (killed, or after the harness exits) the kernel SIGKILLs
  *every* process in the namespace -- including children that called ``setsid()`` to leave the process
  group.  init has ``PR_SET_PDEATHSIG=SIGKILL`` and the bootstrap arms ``alarm()`` as a second line of
  defence if the parent itself dies.  The bootstrap is also a child subreaper and SIGKILLs whatever
  is left below it before exiting (cleanup even without a PID namespace); with a PID namespace a
  private /proc is mounted, so the child does not even see host processes.
* **rlimits** (set in the harness process before ``execve``): RLIMIT_CPU, RLIMIT_AS (address space),
  RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_CORE=0 and RLIMIT_NPROC.
* **RLIMIT_NPROC as root.**  The kernel never applies RLIMIT_NPROC to uid 0 (whatever its
  capabilities), so as root the harness drops to a *random* unprivileged uid/gid (picked from the
  uid_map range, >= 10**9, no passwd entry) with ``setgroups([])``/``setgid``/``setuid`` and
  ``PR_SET_NO_NEW_PRIVS``.  RLIMIT_NPROC counts processes per real uid system-wide, so a uid per run
  (rather than a shared ``nobody``) gives each check its own process budget: concurrent checks cannot
  starve each other, and nothing else can ever be killed by a by-uid sweep.  A fork bomb hits EAGAIN at
  ``max_processes`` and dies with the namespace.
* **Python for the unprivileged uid.**  The interpreter may live somewhere the dropped uid cannot
  traverse (here: ``/root/.pyenv``, /root is 0700).  Inside the private mount namespace the bootstrap
  hides the inaccessible ancestor (``/root``) behind an empty tmpfs and bind-mounts only the Python
  prefix back, read-only, at the same path (so rpaths/sys.prefix stay valid).
* **Filesystem.**  In a private mount namespace every existing mount is bind-remounted read-only and
  fresh size-limited tmpfs instances are mounted on the world-writable places (/tmp, /var/tmp,
  /dev/shm, /run/lock).  The working directory lives in that private /tmp and disappears with the
  namespace.  The unprivileged uid is a second, independent layer (it owns no host file).
* **Network.**  A new network namespace has only a loopback interface that is down: no connection
  (not even to the host's 127.0.0.1) and no DNS.  If ``unshare(CLONE_NEWNET)`` fails, the result says
  ``isolation["network_isolated"] = False`` -- never silently.
* **Environment / fds.**  Only PATH, LANG, HOME=TMPDIR=workdir reach the child; stdin is /dev/null;
  every other fd is closed except 3 (nonce pipe, read end) and 4 (result pipe, write end).
* **Output** is read through pipes by the parent: only the last ``capture_bytes`` of stdout/stderr are
  kept, and after ``max_output_bytes`` in total the child is killed (status ``output_limit``), so a
  flood of output can neither fill the disk nor the parent's memory.
* **-I -S.**  ``-I`` ignores PYTHON* variables and keeps the script directory / cwd off ``sys.path``
  (a generated ``math.py`` in the workdir cannot shadow the stdlib for the test code).  ``-S`` skips
  ``site``: no site-packages (HumanEval-style code needs only the stdlib; untrusted code cannot import
  the project's heavy dependencies), no ``.pth`` execution, faster start-up, and no ``exit``/``quit``
  builtins.  Pass ``allow_site_packages=True`` if generated code legitimately needs installed packages.

How success is decided -- never from the exit status alone
----------------------------------------------------------
The parent generates a random 128-bit nonce per run.  It reaches the child only through a pipe (fd 3)
whose contents are *not* in the program text, argv (world-readable in /proc), environment or any
file.  The harness reads fd 3 only *after* the test returned normally and writes
``{"event": "passed", "nonce": ...}`` to the result pipe (fd 4), then ``os._exit(0)`` (so atexit
handlers or finalisers registered by the untrusted code never run after the verdict).  The parent
requires that exact nonce **and** exit status 0.  Consequently ``exit()``, ``sys.exit(0)``,
``os._exit(0)``, ``raise SystemExit`` (caught by the harness as BaseException), killing the own process,
atexit handlers, and printing a made-up marker all fail.

In ``test`` mode (HumanEval), the harness additionally

* keeps its own state in function locals, not module globals (``sys.modules["__main__"]`` is
  reachable from the untrusted code), and compiles the trusted code before the untrusted code runs;
* executes the untrusted code in its own namespace and the trusted ``prelude`` (the prompt, which may
  define helpers such as ``poly``/``encode_cyclic``) and ``test`` code in a *separate* namespace, so a
  completion cannot redefine ``check`` or the helpers the test relies on;
* gives the test namespace a snapshot of the pristine builtins, and after the untrusted code ran
  restores the ``__dict__`` of ``builtins`` and of the stdlib modules HumanEval tests use (math, random,
  copy, string, ...), undoing monkeypatches such as ``builtins.abs = lambda x: 0``;
* wraps the candidate so that its return values are converted to plain builtin data (subclasses of
  int/float/str/list/dict/... are rebuilt as the exact base type, other objects are rejected).  This
  defeats "always equal" objects (``__eq__`` returning True) and numeric subclasses with rigged
  operators.  ``assert`` itself cannot be disabled at run time (no ``-O``) and uses the real
  AssertionError whatever ``builtins.AssertionError`` is bound to.

What is *not* prevented: the untrusted code runs in the same interpreter as the harness, so code that
deliberately introspects it (``os.read(3, ...)`` on the nonce pipe, ``sys._getframe``, ``gc``, ctypes)
can forge a pass -- no in-process scheme can stop that.  The sandbox guarantees *containment* (host
files, processes, network, secrets), and the marker protocol defeats accidental and lazy escapes, not
a determined adversary targeting this harness.  Other limits: the child can read world-readable host
files (the filesystem is read-only for it, not hidden), CPU time is bounded by the wall timeout but
still consumed, and without root (or when namespaces are unavailable) only rlimits + a temp dir + the
scrubbed environment apply -- reported in ``SandboxResult.isolation``.
"""
from __future__ import annotations

import json
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Sequence

__all__ = ["SandboxResult", "run_untrusted", "run_many", "isolation_support"]

# --------------------------------------------------------------------------------------------------
# Code that runs in the child processes.  Kept as source strings: the bootstrap is passed with `-c`,
# the harness is written into the sandbox working directory.  Both use only the stdlib.
# --------------------------------------------------------------------------------------------------

_BOOTSTRAP_SRC = r'''
import ctypes, json, os, re, resource, signal, stat, sys

CLONE_NEWNS, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWPID = 0x00020000, 0x08000000, 0x40000000, 0x20000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MNT_DETACH, PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS, PR_SET_CHILD_SUBREAPER = 2, 1, 38, 36

libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
libc.unshare.argtypes = [ctypes.c_int]
libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def _check(ret, what):
    if ret != 0:
        e = ctypes.get_errno()
        raise OSError(e, "%s: %s" % (what, os.strerror(e)))


def _enc(s):
    return None if s is None else s.encode()


def mount(src, target, fstype, flags, data=None):
    _check(libc.mount(_enc(src), _enc(target), _enc(fstype), flags, _enc(data)), "mount %s" % target)


def unshare(flags):
    _check(libc.unshare(flags), "unshare")


def mountpoints():
    out = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4]  # space, tab, newline and backslash are escaped as \ooo
            out.append(re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), mp))
    return out


def remount_all_readonly(notes):
    root_ok = False
    for mp in mountpoints():
        try:
            st = os.statvfs(mp)
        except OSError:
            continue
        keep = st.f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)  # ST_* values equal MS_* for these
        try:
            mount(None, mp, None, MS_REMOUNT | MS_BIND | MS_RDONLY | keep)
            if mp == "/":
                root_ok = True
        except OSError as e:
            notes.append("read-only remount of %s failed: %s" % (mp, e))
    return root_ok


def inaccessible_ancestor(path):
    """Top-most strict ancestor of `path` that others cannot traverse (None if all can)."""
    parts = path.strip("/").split("/")
    for i in range(len(parts)):
        anc = "/" + "/".join(parts[:i])
        if not (os.stat(anc).st_mode & stat.S_IXOTH):
            return anc
    return None


def expose_paths(paths, stage_root, notes):
    """Make each directory in `paths` reachable by unprivileged uids (read-only), see module doc."""
    groups = {}
    for p in paths:
        anc = inaccessible_ancestor(p)
        if anc is not None:
            groups.setdefault(anc, []).append(p)
    ok = True
    for anc, ps in groups.items():
        if anc == "/":
            notes.append("cannot expose %s: / is not traversable" % ps)
            ok = False
            continue
        staged = []
        for p in ps:
            st = os.path.join(stage_root, "%d" % len(staged))
            os.makedirs(st, exist_ok=True)
            mount(p, st, None, MS_BIND | MS_REC)
            staged.append((p, st))
        mount("tmpfs", anc, "tmpfs", MS_NOSUID | MS_NODEV, "size=64k,nr_inodes=256,mode=0755")
        for p, st in staged:
            os.makedirs(p, mode=0o755, exist_ok=True)
            mount(st, p, None, MS_BIND | MS_REC)
            try:
                mount(None, p, None, MS_REMOUNT | MS_BIND | MS_RDONLY)
            except OSError as e:
                notes.append("read-only bind of %s failed: %s" % (p, e))
            libc.umount2(_enc(st), MNT_DETACH)
    return ok


def pick_uid():
    """A random uid >= 10**9 inside our uid_map (so setuid works in a user-namespaced container)."""
    import random
    ranges = []
    try:
        with open("/proc/self/uid_map") as f:
            for line in f:
                inside, _outside, count = (int(x) for x in line.split())
                ranges.append((inside, inside + count))
    except OSError:
        ranges = [(0, 1 << 32)]
    rng = random.SystemRandom()
    lo, hi = 10 ** 9, 2 * 10 ** 9
    for a, b in ranges:
        a2, b2 = max(a, lo), min(b, hi)
        if b2 - a2 > 1000:
            return rng.randrange(a2, b2)
    for a, b in ranges:  # small map (e.g. 65536 ids): stay inside it, above the usual system ids
        a2, b2 = max(a, 40000), min(b, 65534)
        if b2 - a2 > 100:
            return rng.randrange(a2, b2)
    return 65534


def main():
    cfg = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    rfd = cfg["result_fd"]

    def report(obj):
        try:
            os.write(rfd, (json.dumps(obj) + "\n").encode())
        except OSError:
            pass

    iso = {
        "root": os.geteuid() == 0, "uid_dropped": False, "uid": os.geteuid(), "nproc_limited": False,
        "network_isolated": False, "pid_namespace": False, "mount_namespace": False,
        "ipc_namespace": False, "fs_readonly": False, "private_tmp": False, "notes": [],
    }
    notes = iso["notes"]
    workdir = cfg["host_workdir"]
    python = cfg["python"]
    can_drop = False
    try:
        if cfg["isolate"] and iso["root"]:
            for key, flag in (("mount_namespace", CLONE_NEWNS), ("network_isolated", CLONE_NEWNET),
                              ("ipc_namespace", CLONE_NEWIPC), ("pid_namespace", CLONE_NEWPID)):
                try:
                    unshare(flag)
                    iso[key] = True
                except OSError as e:
                    notes.append("unshare %s failed: %s" % (key, e))
            if iso["mount_namespace"]:
                mount(None, "/", None, MS_REC | MS_PRIVATE)
                iso["fs_readonly"] = remount_all_readonly(notes)
                tmp_ok = False
                for d, size in (("/tmp", cfg["tmpfs_mb"]), ("/var/tmp", 1), ("/dev/shm", 1), ("/run/lock", 1)):
                    if os.path.isdir(d) and not os.path.islink(d):
                        try:
                            mount("tmpfs", d, "tmpfs", MS_NOSUID | MS_NODEV,
                                  "size=%dm,nr_inodes=4096,mode=1777" % size)
                            tmp_ok = tmp_ok or d == "/tmp"
                        except OSError as e:
                            notes.append("tmpfs on %s failed: %s" % (d, e))
                iso["private_tmp"] = tmp_ok
                if tmp_ok:
                    workdir = "/tmp/sandbox"
                    os.mkdir(workdir, 0o700)
                else:
                    # the host workdir sits on a now read-only mount: give it its own tmpfs
                    mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV,
                          "size=%dm,nr_inodes=4096,mode=0700" % cfg["tmpfs_mb"])
                stage = os.path.join(workdir, ".stage")
                os.mkdir(stage, 0o700)
                can_drop = expose_paths(cfg["needed_paths"], stage, notes)
                for name in os.listdir(stage):
                    os.rmdir(os.path.join(stage, name))
                os.rmdir(stage)
            else:
                can_drop = all(inaccessible_ancestor(p) is None for p in cfg["needed_paths"])
                if not can_drop:
                    notes.append("python is not reachable by an unprivileged uid without a mount namespace")
        elif cfg["isolate"]:
            notes.append("not root: no namespaces and no uid change (rlimits, temp dir, clean env only)")
        with open(os.path.join(workdir, "harness.py"), "w") as f:
            f.write(cfg["harness"])
        with open(os.path.join(workdir, "spec.json"), "w") as f:
            json.dump(cfg["spec"], f)
        with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as f:
            f.write(cfg["program"])
        nonce_r, nonce_w = os.pipe()
        os.write(nonce_w, cfg["nonce"].encode())
        os.close(nonce_w)
        cfg["nonce"] = None
    except Exception as e:  # noqa: BLE001 - report any setup failure to the parent
        report({"event": "sandbox_error", "error": "%s: %s" % (type(e).__name__, e)})
        os._exit(111)

    # Orphaned descendants (double fork + setsid) are re-parented to us instead of the host's init,
    # so they can be found and killed even where there is no PID namespace.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    init_pid = os.fork()
    if init_pid == 0:
        # ---- init: PID 1 of the new PID namespace (if any) --------------------------------------
        try:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if iso["pid_namespace"] and iso["mount_namespace"]:
                try:
                    mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
                except OSError as e:
                    notes.append("mounting a private /proc failed: %s" % e)
            child = os.fork()
        except BaseException as e:  # noqa: BLE001
            report({"event": "sandbox_error", "error": "init: %s: %s" % (type(e).__name__, e)})
            os._exit(111)
        if child == 0:
            run_harness(cfg, iso, workdir, python, can_drop, nonce_r, rfd)  # never returns
        os.close(nonce_r)
        while True:
            try:
                pid, status = os.wait()
            except ChildProcessError:
                os._exit(111)
            if pid == child:
                code = os.waitstatus_to_exitcode(status)
                os._exit(code if code >= 0 else 128 - code)

    # ---- bootstrap: relay the exit status; alarm() as a backstop if our parent dies -------------
    os.close(nonce_r)

    def on_alarm(signum, frame):
        try:
            os.kill(init_pid, signal.SIGKILL)
        except OSError:
            pass
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(cfg["timeout"]) + 3))
    _, status = os.waitpid(init_pid, 0)
    signal.alarm(0)
    kill_descendants()
    code = os.waitstatus_to_exitcode(status)
    os._exit(code if code >= 0 else 128 - code)


def kill_descendants(max_seconds=2.0):
    """SIGKILL and reap everything still below us (we are a child subreaper)."""
    import time
    end = time.monotonic() + max_seconds
    me = os.getpid()
    while time.monotonic() < end:
        try:
            with open("/proc/%d/task/%d/children" % (me, me)) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        reaped = False
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                break
            reaped = True
        if not kids and not reaped:
            time.sleep(0.005)


def run_harness(cfg, iso, workdir, python, can_drop, nonce_r, rfd):
    try:
        # fds: 0=/dev/null, 1/2=pipes to the parent, 3=nonce (read), 4=result (write), nothing else.
        a, b = os.dup(nonce_r), os.dup(rfd)
        os.dup2(a, 3)
        os.dup2(b, 4)
        rfd = 4  # the original number may have been reused by the dup2 calls
        os.closerange(5, 65536)
        for fd in (3, 4):
            os.set_inheritable(fd, True)
        lim = cfg["limits"]
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_CPU, (lim["cpu"], lim["cpu"] + 1))
        resource.setrlimit(resource.RLIMIT_AS, (lim["as"], lim["as"]))
        resource.setrlimit(resource.RLIMIT_FSIZE, (lim["fsize"], lim["fsize"]))
        resource.setrlimit(resource.RLIMIT_NOFILE, (lim["nofile"], lim["nofile"]))
        resource.setrlimit(resource.RLIMIT_NPROC, (lim["nproc"], lim["nproc"]))
        if iso["root"] and can_drop:
            uid = pick_uid()
            os.chown(workdir, uid, uid)
            os.chmod(workdir, 0o700)
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
            iso["uid_dropped"] = os.getuid() == uid and os.geteuid() == uid
            iso["uid"] = uid
        iso["nproc_limited"] = os.getuid() != 0
        libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        os.chdir(workdir)
        iso["workdir"] = workdir
        os.write(4, (json.dumps({"event": "isolation", "isolation": iso}) + "\n").encode())
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": workdir, "TMPDIR": workdir}
        argv = [python, "-I"] + ([] if cfg["site"] else ["-S"]) + ["harness.py"]
        os.execve(python, argv, env)
    except BaseException as e:  # noqa: BLE001
        try:
            os.write(rfd, (json.dumps({"event": "sandbox_error",
                                       "error": "harness setup: %s: %s" % (type(e).__name__, e)}) + "\n").encode())
        except OSError:
            pass
    os._exit(111)


main()
'''

_HARNESS_SRC = r'''
# Runs as the unprivileged sandbox uid.  fd 3: nonce pipe (read only after the test passed),
# fd 4: result pipe to the parent.  See esamp/grading/sandbox.py for the protocol.
#
# All state lives in _main()'s locals and closure cells, never in module globals: the untrusted code
# can reach this module as sys.modules["__main__"] and could rebind a global (e.g. the test source).
# Reaching locals/cells takes deliberate frame/gc introspection, which no in-process harness can stop.


def _main():
    import builtins, importlib, json, os, sys
    import traceback

    write, read, exit_, dumps = os.write, os.read, os._exit, json.dumps
    BaseException_, isinstance_, type_, str_ = BaseException, isinstance, type, str
    int_, float_, complex_, bytes_, list_, tuple_, dict_, set_, frozenset_ = (
        int, float, complex, bytes, list, tuple, dict, set, frozenset)
    TypeError_, NameError_, compile_, exec_ = TypeError, NameError, compile, exec
    print_exception = traceback.print_exception
    stdout, stderr, modules = sys.stdout, sys.stderr, sys.modules

    def report(obj):
        try:
            write(4, (dumps(obj) + "\n").encode())
        except BaseException_:
            pass

    def flush():
        for s in (stdout, stderr):
            try:
                s.flush()
            except BaseException_:
                pass

    def fail(stage, exc):
        try:
            name = type_(exc).__name__
        except BaseException_:
            name = "?"
        try:
            msg = str_(exc)[:500]
        except BaseException_:
            msg = "<unprintable>"
        report({"event": "error", "stage": stage, "type": name, "message": msg})
        try:
            print_exception(type_(exc), exc, exc.__traceback__, file=stderr)
        except BaseException_:
            pass
        flush()
        exit_(1)

    def succeed():
        # Only reached once the test returned normally: now, and only now, read the nonce.
        flush()
        try:
            nonce = read(3, 256)
        except BaseException_:
            nonce = b""
        try:
            write(4, b'{"event": "passed", "nonce": "' + nonce + b'"}\n')
        except BaseException_:
            pass
        exit_(0)

    with open("spec.json") as f:
        spec = json.load(f)
    with open("program.py", encoding="utf-8") as f:
        program = f.read()
    entry, check_name = spec["entry_point"], spec["check_name"]

    if spec["mode"] == "script":
        try:
            exec_(compile_(program, "program.py", "exec"), {"__name__": "__main__", "__builtins__": builtins})
        except BaseException_ as e:
            fail("program", e)
        succeed()

    # ---- test mode --------------------------------------------------------------------------------
    try:  # compile the trusted parts before any untrusted code runs (code objects are immutable)
        prelude_code = compile_(spec["prelude"], "prelude.py", "exec") if spec["prelude"] else None
        test_code = compile_(spec["test"], "test.py", "exec")
        guarded = {"builtins": builtins}
        for name in spec["guard_modules"]:
            try:
                guarded[name] = importlib.import_module(name)
            except ImportError:
                pass
    except BaseException_ as e:
        fail("setup", e)
    del spec
    guarded = tuple_(guarded.items())
    snapshots = tuple_((m, dict_(m.__dict__)) for _, m in guarded)
    pristine_builtins = dict_(builtins.__dict__)

    def restore_modules():
        for m, snap in snapshots:
            d = m.__dict__
            d.clear()
            d.update(snap)
        for name, m in guarded:
            modules[name] = m

    exact = (int_, float_, complex_, str_, bytes_, bool, type_(None))

    def plain(v, depth=0):
        # Rebuild the candidate's return value from plain builtin data: subclasses of the builtin
        # types lose their overridden methods (__eq__, __sub__, ...), any other object is refused.
        t = type_(v)
        if t in exact:
            return v
        if depth > 200:
            raise TypeError_("candidate returned a too deeply nested (or cyclic) value")
        d = depth + 1
        if isinstance_(v, int_):
            return int_.__int__(v)
        if isinstance_(v, float_):
            return float_.__float__(v)
        if isinstance_(v, complex_):
            return complex_.__complex__(v)
        if isinstance_(v, str_):
            return str_.__str__(v)
        if isinstance_(v, bytes_):
            return bytes_.__bytes__(v)
        if isinstance_(v, list_):
            return [plain(x, d) for x in list_.__iter__(v)]
        if isinstance_(v, tuple_):
            return tuple_([plain(x, d) for x in tuple_.__iter__(v)])
        if isinstance_(v, dict_):
            return {plain(k, d): plain(x, d) for k, x in dict_.items(v)}
        if isinstance_(v, frozenset_):
            return frozenset_([plain(x, d) for x in frozenset_.__iter__(v)])
        if isinstance_(v, set_):
            return set_([plain(x, d) for x in set_.__iter__(v)])
        raise TypeError_("candidate returned an unsupported type %r (only plain builtin data is accepted)"
                         % t.__name__)

    def guard(fn):
        def candidate(*args, **kwargs):
            return plain(fn(*args, **kwargs))
        return candidate

    cand_ns = {"__name__": "__candidate__", "__builtins__": builtins}
    try:
        exec_(compile_(program, "program.py", "exec"), cand_ns)
    except BaseException_ as e:
        fail("program", e)
    try:
        restore_modules()
        if entry not in cand_ns:
            raise NameError_("the code does not define %r" % entry)
        candidate = guard(cand_ns[entry])
        test_ns = {"__name__": "__check__", "__builtins__": dict_(pristine_builtins)}
        if prelude_code is not None:
            exec_(prelude_code, test_ns)
        test_ns[entry] = candidate
        exec_(test_code, test_ns)
        test_ns[check_name](candidate)
    except BaseException_ as e:
        fail("test", e)
    succeed()


_main()
'''

# Stdlib modules whose attributes are restored after the untrusted code ran (test mode).
_GUARD_MODULES = ("math", "random", "copy", "string", "re", "collections", "itertools", "functools",
                  "operator", "heapq", "hashlib", "typing")


# --------------------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------------------

@dataclass
class SandboxResult:
    """Outcome of one :func:`run_untrusted` call.

    ``passed`` is the marker-based success flag (the nonce came back through the result pipe *and*
    the exit status was 0); it is the only field to trust for grading.  ``status`` is one of
    ``passed``, ``failed``, ``timeout``, ``output_limit``, ``sandbox_error``.
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

    @property
    def network_isolated(self) -> bool:
        return bool(self.isolation.get("network_isolated", False))


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


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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
) -> SandboxResult:
    """Run untrusted Python source in a fresh sandboxed process and report whether it succeeded.

    Script mode (``test is None``): success means ``program`` ran to completion without raising.
    Test mode (``test`` and ``entry_point`` given): ``program`` is executed, then ``prelude`` and
    ``test`` (trusted) in a separate namespace, then ``check(<entry_point>)``; success means the
    check returned normally.  See the module docstring for the isolation and marker design.
    """
    if test is not None and not entry_point:
        raise ValueError("test mode needs entry_point")
    site = bool(allow_site_packages)
    python = os.path.abspath(sys.executable) if site else _base_python()
    nonce = secrets.token_hex(16)
    spec = {"mode": "script" if test is None else "test", "test": test or "", "prelude": prelude or "",
            "entry_point": entry_point or "", "check_name": check_name,
            "guard_modules": list(_GUARD_MODULES)}
    host_workdir = tempfile.mkdtemp(prefix="esamp-sbx-")
    os.chmod(host_workdir, 0o700)
    res_r, res_w = os.pipe()
    cfg = {
        "result_fd": res_w, "host_workdir": host_workdir, "python": python, "site": site,
        "isolate": bool(isolate), "needed_paths": _needed_paths(site), "tmpfs_mb": int(tmpfs_mb),
        "timeout": float(timeout), "harness": _HARNESS_SRC, "spec": spec, "program": program,
        "nonce": nonce,
        "limits": {"cpu": max(1, int(timeout + 0.999)) + 1, "as": int(memory_mb) << 20,
                   "fsize": int(max_file_mb) << 20, "nofile": 256, "nproc": int(max_processes)},
    }
    out, err, res, res_total = _Tail(capture_bytes), _Tail(capture_bytes), bytearray(), 0
    timed_out = output_limit = False
    returncode: int | None = None
    isolation: dict[str, Any] = {}
    passed_marker = False
    harness_error: str | None = None
    sandbox_error: str | None = None
    start = time.monotonic()
    proc = None
    try:
        try:
            proc = subprocess.Popen(
                [_base_python(), "-I", "-S", "-c", _BOOTSTRAP_SRC],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                pass_fds=(res_w,), start_new_session=True, cwd="/",
                env={"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"},
            )
        finally:
            os.close(res_w)
        try:
            proc.stdin.write(json.dumps(cfg).encode("utf-8"))
            proc.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        deadline = start + timeout
        sel = selectors.DefaultSelector()
        streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err, res_r: None}
        for fd in streams:
            os.set_blocking(fd, False)
            sel.register(fd, selectors.EVENT_READ)
        exited_at = None
        while sel.get_map():
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                timed_out = True
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.5:
                break  # the sandbox is gone but something (an escaped orphan?) holds the pipes open
            for key, _ in sel.select(min(remaining, 0.25 if exited_at is None else 0.05)):
                try:
                    data = os.read(key.fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not data:
                    sel.unregister(key.fd)
                    continue
                tail = streams[key.fd]
                if tail is None:
                    res_total += len(data)
                    if len(res) < (1 << 20):
                        res += data
                else:
                    tail.add(data)
            if out.total + err.total + res_total > max_output_bytes:
                output_limit = True
                break
        sel.close()
        if not (timed_out or output_limit):
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
        if timed_out or output_limit:
            _kill_group(proc.pid)
        returncode = proc.wait()
    finally:
        elapsed = time.monotonic() - start
        if proc is not None:
            if proc.poll() is None:
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
        # parse the result pipe: first `isolation` event is the trusted one (written before exec)
        for line in bytes(res).decode("utf-8", errors="replace").splitlines():
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if not isinstance(ev, dict):
                continue
            kind = ev.get("event")
            if kind == "isolation" and not isolation and isinstance(ev.get("isolation"), dict):
                isolation = ev["isolation"]
            elif kind == "sandbox_error" and not isolation:
                sandbox_error = str(ev.get("error"))
            elif kind == "passed" and isolation and ev.get("nonce") == nonce:
                passed_marker = True
            elif kind == "error" and isolation:
                msg = str(ev.get("message") or "")
                harness_error = f"{ev.get('type')}: {msg}" if msg else str(ev.get("type"))
        if isolation and isolation.get("uid_dropped") and not isolation.get("pid_namespace"):
            _kill_uid(int(isolation.get("uid") or 0))
        _rmtree(host_workdir)

    passed = passed_marker and returncode == 0 and not timed_out and not output_limit
    if sandbox_error is not None:
        status, error = "sandbox_error", sandbox_error
    elif timed_out:
        status, error = "timeout", f"timed out after {timeout:g}s"
    elif output_limit:
        status, error = "output_limit", f"output exceeded {max_output_bytes} bytes"
    elif passed:
        status, error = "passed", None
    else:
        status = "failed"
        if harness_error:
            error = harness_error
        elif returncode is not None and returncode > 128:
            sig = returncode - 128
            error = f"killed by {_signal_name(sig)}"
            if sig == signal.SIGXCPU:
                error += " (CPU time limit)"
        elif passed_marker:
            error = f"exited with status {returncode}"
        else:
            error = f"exited with status {returncode} without the success marker"
    return SandboxResult(
        status=status, passed=passed, returncode=returncode, stdout=out.text(), stderr=err.text(),
        elapsed=elapsed, timed_out=timed_out, error=error,
        output_truncated=out.total > capture_bytes or err.total > capture_bytes or output_limit,
        stdout_bytes=out.total, stderr_bytes=err.total, isolation=isolation,
    )


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
    """Isolation this machine gives (runs one trivial sandboxed program; cached)."""
    global _SUPPORT
    with _SUPPORT_LOCK:
        if _SUPPORT is None:
            _SUPPORT = dict(run_untrusted("pass", timeout=30).isolation)
        return dict(_SUPPORT)
