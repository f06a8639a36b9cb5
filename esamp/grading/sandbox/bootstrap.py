"""One sandboxed check as a process tree; its top process is also the judge.

Started by runner.py as ``python -I -S -c <runner.LOADER>``: the loader reads the configuration (JSON on
stdin) with the code of this module and of ``isolation``/``judge``/``protocol``, which the parent read and
compiled once when it imported the package, and runs them from memory.  So no check ever loads trusted code from the
package directory, which a candidate running under the user's own uid could rewrite (and the command line
names no path to attack)::

    bootstrap (trusted)   namespaces, read-only mounts; then the judge: runs the test, writes the verdict
      └─ init             PID 1 of the new PID namespace (when there is one); reaps, relays the status
           └─ child       rlimits, throw-away uid, then execve(python -I -S .harness/child.py)

Pipes: the result pipe to the parent (``result_fd``) is held only by trusted code -- it is close-on-exec
in the child and closed in init -- and carries ``isolation`` (written just before the exec),
``verdict`` (written by the judge, with the run's nonce) and ``sandbox_error``.  The candidate talks to
the judge only through the request/answer pipes (fds 3 and 4 in the child).  This process never
executes candidate code, is not dumpable (no same-uid ptrace, no access to its /proc entries) and,
with a PID namespace, is not even visible from inside.
"""
import json
import os
import signal
import sys
import time

try:
    from . import isolation, judge
except ImportError:  # run by runner.LOADER, which put the trusted modules into sys.modules from memory
    import isolation
    import judge

EXIT_GRACE = 1.0  # seconds the child gets to exit after the judge hung up
JUDGE_MIN_AS = 512 << 20  # the judge's own address-space cap (only decoded answers can grow it)


def report(fd, obj):
    try:
        os.write(fd, (json.dumps(obj) + "\n").encode())
    except OSError:
        pass


def stage_child_files(cfg, workdir):
    """The child's programs (sent by the parent, like ours), the candidate's source and the child's part
    of the spec -- never the test, which stays in this process."""
    os.mkdir(os.path.join(workdir, ".harness"), 0o755)
    for name, text in cfg["child_files"].items():
        with open(os.path.join(workdir, ".harness", name), "w", encoding="utf-8") as dst:
            dst.write(text)
    spec = cfg["spec"]
    with open(os.path.join(workdir, "spec.json"), "w") as f:
        json.dump({"mode": spec["mode"], "entry_point": spec["entry_point"], "cap": cfg["max_call_bytes"]}, f)
    with open(os.path.join(workdir, "program.py"), "w", encoding="utf-8") as f:
        f.write(cfg["program"])


def exec_child(cfg, iso, workdir, can_drop, req_r, ans_w, rfd):
    """Last trusted steps in the child's process: fd layout, limits, uid; then exec the child."""
    import fcntl
    try:
        # fds: 0=/dev/null, 1/2=output pipes, 3=requests, 4=answers; 5=result pipe, closed by the exec
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (req_r, ans_w, rfd)]
        os.dup2(high[0], 3)
        os.dup2(high[1], 4)
        rfd = os.dup2(high[2], 5, inheritable=False)
        os.closerange(6, 65536)
        isolation.confine_process(cfg["limits"], iso, can_drop, workdir)
        iso["missing"] = isolation.missing(iso)
        report(rfd, {"event": "isolation", "isolation": iso})
        if (cfg["require_isolation"] and iso["missing"]) or (iso["root"] and not iso["uid_dropped"]):
            # Fail closed: without the full isolation the candidate may share a uid and a writable filesystem
            # with the judge; it does not run at all -- and never as root, whatever the caller accepts.
            os._exit(111)
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "HOME": workdir, "TMPDIR": workdir}
        python = cfg["python"]
        argv = [python, "-I"] + ([] if cfg["site"] else ["-S"]) + [os.path.join(".harness", "child.py")]
        os.execve(python, argv, env)
    except BaseException as e:  # noqa: BLE001
        report(rfd, {"event": "sandbox_error", "error": "child setup: %s: %s" % (type(e).__name__, e)})
    os._exit(111)


def run_init(cfg, iso, workdir, can_drop, pipes, rfd):
    """PID 1 of the namespace: start the child, then reap everything and relay the child's status."""
    req_r, req_w, ans_r, ans_w = pipes
    try:
        isolation.prctl(isolation.PR_SET_PDEATHSIG, signal.SIGKILL)
        os.close(req_w)  # only the judge may hold the request pipe open: its hang-up must be seen
        os.close(ans_r)
        if iso["pid_namespace"] and iso["mount_namespace"]:
            try:
                isolation.mount("proc", "/proc", "proc", isolation.MS_NOSUID | isolation.MS_NODEV | isolation.MS_NOEXEC)
            except OSError as e:
                iso["notes"].append("mounting a private /proc failed: %s" % e)
        child = os.fork()
    except BaseException as e:  # noqa: BLE001
        report(rfd, {"event": "sandbox_error", "error": "init: %s: %s" % (type(e).__name__, e)})
        os._exit(111)
    if child == 0:
        exec_child(cfg, iso, workdir, can_drop, req_r, ans_w, rfd)  # never returns
    for fd in (req_r, ans_w, rfd):
        os.close(fd)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(111)
        if pid == child:
            os._exit(exit_code(status))


def exit_code(status):
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code


def kill_descendants(max_seconds=2.0):
    """SIGKILL and reap everything still below us (we are a child subreaper)."""
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


def wait_for_init(init_pid, grace):
    """init's relayed status; SIGKILL (the whole PID namespace with it) after ``grace`` seconds."""
    deadline = time.monotonic() + grace
    while True:
        pid, status = os.waitpid(init_pid, os.WNOHANG)
        if pid:
            return exit_code(status)
        if time.monotonic() > deadline:
            os.kill(init_pid, signal.SIGKILL)
            return exit_code(os.waitpid(init_pid, 0)[1])
        time.sleep(0.001)


def judge_check(cfg, channel):
    """(passed, error) -- run in this process, after the fork, while the child starts."""
    import resource
    limit = max(cfg["limits"]["as"], JUDGE_MIN_AS)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        if cfg["spec"]["mode"] == "test":
            return judge.run_test(cfg["spec"], channel)
        return judge.run_script(channel)
    except BaseException as e:  # noqa: BLE001 - a failure in here must never read as a pass
        return False, "judge failed: " + judge.describe(e)


def main(cfg):
    """Run one check; ``cfg`` is what the parent sent on our stdin (runner.py: ``_config``)."""
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 0)
    os.close(devnull)
    isolation.prctl(isolation.PR_SET_DUMPABLE, 0)  # see the module docstring
    rfd = cfg["result_fd"]
    os.set_inheritable(rfd, False)
    iso = isolation.new_report(os.geteuid() == 0)
    try:
        workdir, can_drop = isolation.enter_namespaces(cfg, iso)
        stage_child_files(cfg, workdir)
        req_r, req_w = os.pipe()
        ans_r, ans_w = os.pipe()
    except Exception as e:  # noqa: BLE001 - report any setup failure to the parent
        report(rfd, {"event": "sandbox_error", "error": "%s: %s" % (type(e).__name__, e)})
        os._exit(111)

    # Orphaned descendants (double fork + setsid) are re-parented to us instead of the host's init,
    # so they can be found and killed even where there is no PID namespace.
    isolation.prctl(isolation.PR_SET_CHILD_SUBREAPER, 1)
    init_pid = os.fork()
    if init_pid == 0:
        run_init(cfg, iso, workdir, can_drop, (req_r, req_w, ans_r, ans_w), rfd)  # never returns
    os.close(req_r)
    os.close(ans_w)

    def on_alarm(signum, frame):  # backstop in case the parent died without killing us
        try:
            os.kill(init_pid, signal.SIGKILL)
        except OSError:
            pass
        kill_descendants(0.5)
        os._exit(124)
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(max(1, int(cfg["timeout"]) + 3))

    channel = judge.Channel(req_w, ans_r, cfg["max_call_bytes"])
    passed, error = judge_check(cfg, channel)
    channel.close()
    # A child that broke the protocol may be stuck writing to a pipe nobody reads: no grace for it.
    code = wait_for_init(init_pid, 0.0 if channel.broken else EXIT_GRACE)
    signal.alarm(0)
    kill_descendants()
    if cfg["spec"]["mode"] == "script" and code != 0:
        passed = False  # "ran to the end" includes a clean exit (os._exit(0) midway sends no "done")
    report(rfd, {"event": "verdict", "nonce": cfg["nonce"], "passed": bool(passed), "error": error})
    os._exit(code)
