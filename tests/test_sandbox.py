"""Hostile programs must fail quickly and leave the host untouched (esamp.grading.sandbox)."""
from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from esamp.grading.sandbox import SandboxResult, isolation, isolation_support, run_many, run_untrusted
from esamp.grading.sandbox.runner import IsolationUnavailable

pytestmark = pytest.mark.skipif(bool(isolation_support()["missing"]),
                                reason="no candidate runs without the sandbox's full isolation (root with namespaces, as in CI); "
                                       "tests/test_sandbox_unprivileged.py covers the unprivileged side")

# A toy HumanEval-style problem; the hostile completions below define a *wrong* solution, so any
# "pass" would mean the hack worked.
TEST = textwrap.dedent(
    """
    def check(candidate):
        assert candidate(2, 3) == 5
        assert candidate(10, -4) == 6
        assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9
    """
)
GOOD = "def add(a, b):\n    return a + b\n"
WRONG = "def add(a, b):\n    return 0\n"


def check(code: str, timeout: float = 5.0, **kw) -> SandboxResult:
    return run_untrusted(code, timeout=timeout, test=TEST, entry_point="add", **kw)


def naive(code: str) -> SandboxResult:
    """The usual `completion + test + check(...)` script, run in the sandbox in script mode.

    Used to show that a hack really fools a naive harness (so the real assertion can fail)."""
    return run_untrusted(code + "\n" + TEST + "\ncheck(add)\n", timeout=5.0)


def iso() -> dict:
    return isolation_support()


def _unshare_net_works() -> bool:
    exe = shutil.which("unshare")
    if os.geteuid() != 0 or exe is None:
        return False
    return subprocess.run([exe, "--net", "true"], capture_output=True).returncode == 0


def _procs_with_uid(uid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            if int(line.split()[1]) == uid:
                                out.append(int(entry))
                            break
            except OSError:
                pass
    return out


def _my_descendants() -> list[int]:
    parent = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parent[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    me, out = os.getpid(), []
    for pid in parent:
        p, seen = parent.get(pid), 0
        while p and seen < 1000:
            if p == me:
                out.append(pid)
                break
            p, seen = parent.get(p), seen + 1
    return out


# --------------------------------------------------------------------------------------------------
# sanity: the harness itself works, so every "must fail" below fails for the right reason
# --------------------------------------------------------------------------------------------------

def test_good_solution_passes_and_wrong_fails():
    good, wrong = check(GOOD), check(WRONG)
    assert good.passed and good.status == "passed" and good.returncode == 0, good
    assert not wrong.passed and wrong.status == "failed", wrong
    assert wrong.error and wrong.error.startswith("AssertionError"), wrong.error
    script = run_untrusted("print('hello')")
    assert script.passed and script.stdout == "hello\n"
    boom = run_untrusted("raise ValueError('nope')")
    assert not boom.passed and boom.error == "ValueError: nope"


def test_package_under_tmp_still_grades():
    """The sandbox mounts a private /tmp: a checkout or install under /tmp (a CI clone, say) must still find
    the child's programs (they are read before the namespaces are entered)."""
    import esamp

    root = Path(tempfile.mkdtemp(prefix="esamp-under-tmp-", dir="/tmp"))
    try:
        shutil.copytree(Path(esamp.__file__).parent, root / "esamp", ignore=shutil.ignore_patterns("__pycache__"))
        code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import esamp.grading.sandbox as sb; "
                "assert sb.__file__.startswith(sys.argv[1]), sb.__file__; "
                f"r = sb.run_untrusted({GOOD!r}, timeout=10, test={TEST!r}, entry_point='add'); "
                "print(json.dumps([r.passed, r.status, r.error]))")
        out = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=120)
        passed, status, error = json.loads(out.stdout.splitlines()[-1])
        assert passed and status == "passed", (status, error, out.stderr[-2000:])
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_isolation_is_reported_honestly():
    info = iso()
    for key in ("network_isolated", "uid_dropped", "nproc_limited", "pid_namespace", "mount_namespace"):
        assert isinstance(info.get(key), bool), (key, info)
    if _unshare_net_works():
        # As root with working namespaces (the CI machine): the full isolation must be in place.
        assert info["network_isolated"] and info["pid_namespace"] and info["mount_namespace"], info
        assert info["uid_dropped"] and info["uid"] >= 1000 and info["nproc_limited"], info
        assert info["fs_readonly"] and info["private_tmp"], info
    # Opting out is reported, never silent -- and by default nothing runs without the full isolation.
    off = run_untrusted("print('RAN')", isolate=False)
    assert off.isolation["network_isolated"] is False and off.network_isolated is False
    assert not off.passed and off.status == "unisolated" and off.stdout == "", off
    assert set(off.isolation_missing) == set(isolation.REQUIRED), off
    if os.geteuid() == 0:  # unisolated as root, the candidate could rewrite the Python every judge runs from
        with pytest.raises(IsolationUnavailable, match="as root"):
            run_untrusted("pass", isolate=False, require_isolation=False)


def test_a_passing_verdict_without_the_required_isolation_does_not_count():
    """Behind the bootstrap's refusal to run such a candidate, the parent discards the verdict too."""
    from esamp.grading.sandbox.runner import _classify, _Run, _Tail

    run = _Run(out=_Tail(10), err=_Tail(10), returncode=0)
    verdict = {"event": "verdict", "passed": True, "error": None}
    assert _classify(run, verdict, None, 5.0, 100, []) == ("passed", True, None)
    assert _classify(run, verdict, None, 5.0, 100, None) == ("passed", True, None)  # not required
    status, passed, error = _classify(run, verdict, None, 5.0, 100, ["uid_dropped", "pid_namespace"])
    assert (status, passed) == ("unisolated", False) and "uid_dropped, pid_namespace" in error
    assert isolation.missing({}) == list(isolation.REQUIRED)  # no report at all: nothing held


# --------------------------------------------------------------------------------------------------
# resource abuse
# --------------------------------------------------------------------------------------------------

def test_infinite_loop_times_out():
    t0 = time.monotonic()
    r = check(GOOD + "while True:\n    pass\n", timeout=1.5)
    wall = time.monotonic() - t0
    assert not r.passed and r.status == "timeout" and r.timed_out
    assert 1.4 <= r.elapsed and wall < 1.5 + 2.0, (r.elapsed, wall)


def test_fork_bomb_is_contained():
    info = iso()
    if not info.get("nproc_limited"):
        pytest.skip(f"no process limit available here: {info}")
    # 1) counting fork loop: the per-run process limit stops it.
    counter = textwrap.dedent(
        """
        import os, time
        n = 0
        try:
            while True:
                if os.fork() == 0:
                    time.sleep(60)
                    os._exit(0)
                n += 1
        except OSError:
            pass
        print("forked", n)
        """
    )
    r = run_untrusted(counter, timeout=5, max_processes=16)
    assert r.passed, r
    assert int(r.stdout.split()[-1]) < 16, r.stdout
    # 2) a real exponential fork bomb.
    before = len([p for p in os.listdir("/proc") if p.isdigit()])
    # Long-lived helpers that earlier tests in this session started (e.g. the math-grading worker pool)
    # are our descendants too; only new ones count.
    pre_existing = set(_my_descendants())
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    t0 = time.monotonic()
    r = check(bomb + GOOD, timeout=2)
    assert not r.passed and r.status == "timeout"
    assert time.monotonic() - t0 < 2 + 3
    time.sleep(0.2)
    if r.isolation.get("uid_dropped"):
        assert _procs_with_uid(int(r.isolation["uid"])) == []
    assert set(_my_descendants()) <= pre_existing
    after = len([p for p in os.listdir("/proc") if p.isdigit()])
    assert after <= before + 30, (before, after)


def test_detached_background_process_is_killed_and_does_not_block():
    code = GOOD + textwrap.dedent(
        """
        import os, time
        if os.fork() == 0:
            os.setsid()
            time.sleep(120)
            os._exit(0)
        """
    )
    pre_existing = set(_my_descendants())  # e.g. the math-grading worker pool of earlier tests
    r = check(code, timeout=10)
    assert r.passed and r.elapsed < 5, r  # did not wait for the sleeper (which holds stdout open)
    time.sleep(0.2)
    if r.isolation.get("uid_dropped"):
        assert _procs_with_uid(int(r.isolation["uid"])) == []
    assert set(_my_descendants()) <= pre_existing


def test_memory_bomb_fails_and_host_is_fine():
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r1 = check("x = bytearray(8 * 2**30)\n" + GOOD, memory_mb=256)
    r2 = check("hog = []\nwhile True:\n    hog.append(b'x' * 2**20)\n" + GOOD, memory_mb=256, timeout=10)
    for r in (r1, r2):
        assert not r.passed and r.status == "failed", r
        assert "MemoryError" in (r.error or "") or "SIG" in (r.error or ""), r.error
        assert r.elapsed < 5, r.elapsed
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 100 * 1024  # KiB
    assert check(GOOD).passed  # still working afterwards


def test_huge_output_is_capped():
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    flood = "import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n" + GOOD
    r = check(flood, timeout=10)
    assert not r.passed and r.status == "output_limit", r.status
    assert r.elapsed < 8 and len(r.stdout) <= 64 * 1024
    # Output below the kill limit: the check still counts, only the tail is kept.
    chatty = "print('y' * (2 * 2**20))\nprint('END')\n" + GOOD
    r = check(chatty)
    assert r.passed and r.output_truncated and r.stdout.endswith("END\n") and len(r.stdout) == 64 * 1024
    assert r.stdout_bytes > 2 * 2**20
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 100 * 1024  # KiB


def test_big_file_is_refused():
    r = check("open('big.bin', 'wb').write(b'x' * (64 << 20))\n" + GOOD, max_file_mb=8)
    assert not r.passed and "File too large" in r.stderr + (r.error or ""), r


# --------------------------------------------------------------------------------------------------
# host files, environment, network
# --------------------------------------------------------------------------------------------------

def test_cannot_touch_files_outside_the_sandbox(tmp_path):
    info = iso()
    if not (info.get("fs_readonly") or info.get("uid_dropped")):
        pytest.skip(f"no filesystem protection available here (not root / no namespaces): {info}")
    target = tmp_path / "escaped.txt"
    sentinel = tmp_path / "sentinel.txt"
    sentinel.write_text("original")
    host_tmp = Path("/tmp") / f"esamp-escape-{uuid.uuid4().hex}"  # world-writable dir on the host
    code = GOOD + textwrap.dedent(
        f"""
        import os, shutil
        for action in (
            lambda: open({str(target)!r}, "w").write("pwned"),
            lambda: open({str(host_tmp)!r}, "w").write("pwned"),
            lambda: os.remove({str(sentinel)!r}),
            lambda: open({str(sentinel)!r}, "w").write("pwned"),
            lambda: shutil.rmtree({str(tmp_path)!r}),
        ):
            try:
                action()
            except Exception as e:
                print("blocked:", type(e).__name__)
        open("inside.txt", "w").write("the sandbox's own directory is writable")
        print("DONE", os.getcwd())
        """
    )
    try:
        r = check(code)
        assert "DONE" in r.stdout, r  # the program really ran
        assert r.passed  # (writing into its own working directory is allowed)
        assert not target.exists()
        assert sentinel.read_text() == "original"
        if r.isolation.get("private_tmp") or r.isolation.get("fs_readonly"):
            assert not host_tmp.exists()
        # the working directory is gone afterwards
        workdir = r.stdout.split("DONE", 1)[1].split()[0]
        if not r.isolation.get("private_tmp"):
            assert not Path(workdir).exists()
    finally:
        if host_tmp.exists():
            host_tmp.unlink()


def test_environment_secret_does_not_reach_the_child(monkeypatch):
    secret = "esamp-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("ESAMP_TEST_SECRET", secret)
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    code = textwrap.dedent(
        """
        import os
        print(dict(os.environ))
        for pid in os.listdir("/proc"):
            for name in ("environ", "cmdline"):
                try:
                    with open(f"/proc/{pid}/{name}", "rb") as f:
                        print(pid, name, f.read())
                except Exception:
                    pass
        print("DONE")
        """
    )
    r = run_untrusted(code)
    assert r.passed and "DONE" in r.stdout, r
    assert secret not in r.stdout + r.stderr
    assert "ESAMP_TEST_SECRET" not in r.stdout


def test_network_is_unreachable():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(0.2)
    port = srv.getsockname()[1]
    code = GOOD + textwrap.dedent(
        f"""
        import socket
        s = socket.socket()
        s.settimeout(2)
        s.connect(("127.0.0.1", {port}))
        s.sendall(b"exfiltrated")
        """
    )
    try:
        r = check(code)
        if not r.network_isolated:
            assert r.isolation.get("network_isolated") is False
            pytest.skip(f"no network namespace here: {r.isolation.get('notes')}")
        assert not r.passed and r.status == "failed", r
        assert "OSError" in (r.error or "") or "unreachable" in (r.error or ""), r.error
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()
    dns = check(GOOD + "import socket\nsocket.getaddrinfo('pypi.org', 443)\n")
    assert not dns.passed, dns


# --------------------------------------------------------------------------------------------------
# faking success
# --------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "hack",
    [
        "import sys\nsys.exit(0)\n",
        "raise SystemExit\n",
        "raise SystemExit(0)\n",
        "import os\nos._exit(0)\n",
        "exit(0)\n",
        "quit()\n",
        "import os, signal\nos.kill(os.getpid(), signal.SIGTERM)\n",
        "raise KeyboardInterrupt\n",
    ],
)
def test_exit_at_import_fails(hack):
    # GOOD is defined first: a harness that trusts the exit status would report a pass.
    r = check(GOOD + hack)
    assert not r.passed and r.status == "failed", r


def test_exit_inside_candidate_fails():
    r = check("import os\ndef add(a, b):\n    os._exit(0)\n")
    assert not r.passed and r.status == "failed", r
    r = check("def add(a, b):\n    raise SystemExit(0)\n")
    assert not r.passed and r.status == "failed", r


def test_fake_markers_fail():
    fake = WRONG + textwrap.dedent(
        """
        import atexit, json, os, sys
        fake = json.dumps({"event": "passed", "nonce": "0" * 32}) + "\\n"
        print(fake)
        print("PASSED", "ok", "passed", "ESAMP-OK")
        for fd in range(3, 20):
            try:
                os.write(fd, fake.encode())
            except OSError:
                pass
        atexit.register(lambda: print(fake))
        sys.stdout.flush()
        os._exit(0)
        """
    )
    r = check(fake)
    assert not r.passed, r
    r = run_untrusted(fake.replace("os._exit(0)", "raise SystemExit(0)"))
    assert not r.passed, r


def test_redefining_check_fails():
    code = WRONG + "def check(candidate):\n    return True\nimport builtins\nbuiltins.check = check\n"
    r = check(code)
    assert not r.passed and (r.error or "").startswith("AssertionError"), r


def test_tampering_with_the_harness_module_fails():
    # The harness keeps its state out of module globals; rewriting whatever is reachable through
    # sys.modules["__main__"] (test source, spec dicts, helper functions) must not help.
    code = WRONG + textwrap.dedent(
        """
        import sys
        m = sys.modules["__main__"]
        noop = "def check(candidate):\\n    pass\\n"
        for k, v in list(vars(m).items()):
            if isinstance(v, dict) and "test" in v:
                v["test"] = noop
            elif isinstance(v, str) and "assert" in v:
                setattr(m, k, noop)
            elif callable(v) and not k.startswith("__"):
                setattr(m, k, lambda *a, **k: None)
        """
    )
    r = check(code)
    assert not r.passed and (r.error or "").startswith("AssertionError"), r


def test_monkeypatching_builtins_fails():
    # `abs` rigged to make the float assert pass, AssertionError rebound, assert-rewriting attempts.
    code = textwrap.dedent(
        """
        import builtins
        builtins.abs = lambda x: 0
        builtins.AssertionError = type("AssertionError", (Exception,), {})
        def add(a, b):
            if isinstance(a, float):
                return 123.0
            return a + b
        """
    )
    assert naive(code).passed  # the hack does fool the naive `code + test + check(add)` script
    r = check(code)
    assert not r.passed and (r.error or "").startswith("AssertionError"), r
    # patched while the test is running (from inside the candidate) is not seen by the test either
    code2 = textwrap.dedent(
        """
        def add(a, b):
            import builtins
            builtins.abs = lambda x: 0
            if isinstance(a, float):
                return 123.0
            return a + b
        """
    )
    assert not check(code2).passed


def test_monkeypatching_stdlib_modules_fails():
    test = "import math\ndef check(candidate):\n    assert math.isclose(candidate(2), 4.0)\n"
    code = "import math\nmath.isclose = lambda *a, **k: True\ndef sq(x):\n    return -1\n"
    assert run_untrusted(code + test + "check(sq)\n").passed  # fools a naive harness
    r = run_untrusted(code, test=test, entry_point="sq")
    assert not r.passed and (r.error or "").startswith("AssertionError"), r
    ok = run_untrusted("def sq(x):\n    return x * x\n", test=test, entry_point="sq")
    assert ok.passed, ok


def test_prompt_helpers_cannot_be_redefined():
    prelude = "def helper(x):\n    return x + 1\n\ndef f(x):\n    '''returns helper(x) * 2'''\n"
    test = "def check(candidate):\n    assert candidate(3) == helper(3) * 2\n"
    hack = "def helper(x):\n    return 0\n\ndef f(x):\n    return 0\n"
    assert run_untrusted(hack + test + "check(f)\n").passed  # fools a naive harness
    r = run_untrusted(hack, test=test, entry_point="f", prelude=prelude)
    assert not r.passed, r
    # (check_humaneval prepends the prompt header to the candidate, so the candidate has its own copy)
    good_code = "def helper(x):\n    return x + 1\n\ndef f(x):\n    return helper(x) * 2\n"
    good = run_untrusted(good_code, test=test, entry_point="f", prelude=prelude)
    assert good.passed, good


def test_always_equal_objects_fail():
    code = textwrap.dedent(
        """
        class Anything:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __sub__(self, other): return 0
            def __rsub__(self, other): return 0
            def __abs__(self): return 0
            def __lt__(self, other): return True
        class RiggedFloat(float):
            def __eq__(self, other): return True
            def __sub__(self, other): return 0.0
        def add(a, b):
            return Anything() if isinstance(a, int) else RiggedFloat(7.0)
        """
    )
    assert naive(code).passed  # fools a naive harness
    r = check(code)
    assert not r.passed and "TypeError" in (r.error or ""), r
    sub = "class MyInt(int):\n    pass\ndef add(a, b):\n    return MyInt(a + b) if isinstance(a, int) else a + b\n"
    assert check(sub).passed  # honest subclasses of plain types are fine (converted to the base type)
    rig = "class E(float):\n    def __eq__(s, o): return True\n    def __sub__(s, o): return 0.0\n" \
          "def add(a, b):\n    return E(-1.0)\n"
    assert not check(rig).passed


# --------------------------------------------------------------------------------------------------
# misc
# --------------------------------------------------------------------------------------------------

def test_run_many_keeps_order_and_runs_in_parallel():
    progs = [f"print({i})" for i in range(6)] + [{"program": "raise ValueError('x')"}]
    rs = run_many(progs, timeout=5, n_workers=3)
    assert [r.stdout for r in rs[:6]] == [f"{i}\n" for i in range(6)]
    assert all(r.passed for r in rs[:6]) and not rs[6].passed
    t0 = time.monotonic()
    rs = run_many(["import time\ntime.sleep(1.0)"] * 4, timeout=5, n_workers=4)
    assert all(r.passed for r in rs)
    assert time.monotonic() - t0 < 3.8  # sequential would take > 4 s


def test_result_pipe_and_isolation_are_json_serialisable():
    r = run_untrusted("pass")
    json.dumps(r.isolation)
    assert r.elapsed > 0 and r.returncode == 0


# --------------------------------------------------------------------------------------------------
# the judge: the test runs in a trusted process and sees the candidate only through literal data
# --------------------------------------------------------------------------------------------------

def test_candidate_values_cross_as_exact_literal_data():
    test = textwrap.dedent(
        """
        import math
        def check(candidate):
            sent = [1, (2, 3), {4}, frozenset({5}), {"k": (6,), 7: [8]}, b"\\x00\\xff", 1 + 2j, 2 ** 200,
                    -0.0, float("inf"), None, True, "\\u00e9\\n", [[[]]]]
            v = candidate(sent)
            assert v == sent and v is not sent
            assert [type(x) for x in v] == [type(x) for x in sent]
            assert list(v[4]) == ["k", 7] and type(v[4]["k"]) is tuple
            assert math.copysign(1.0, v[8]) == -1.0 and v[11] is True
            assert math.isnan(candidate(float("nan")))
            assert candidate(x=3, y=(4,)) == {"x": 3, "y": (4,)}  # keyword arguments
        """
    )
    program = "def echo(*args, **kwargs):\n    return args[0] if args else kwargs\n"
    r = run_untrusted(program, test=test, entry_point="echo")
    assert r.passed, (r.error, r.stderr)
    assert not run_untrusted("def echo(*a, **k):\n    return 1\n", test=test, entry_point="echo").passed


def test_arguments_are_copies():
    test = "def check(candidate):\n    xs = [0]\n    assert candidate(xs) == 2\n    assert xs == [0]\n"
    r = run_untrusted("def grow(xs):\n    xs.append(1)\n    return len(xs)\n", test=test, entry_point="grow")
    assert r.passed, r.error


def test_exceptions_reach_the_test_as_builtin_types():
    program = textwrap.dedent(
        """
        class Custom(Exception):
            pass
        def f(x):
            if x < 0:
                raise ValueError("negative")
            if x == 0:
                raise Custom("zero")
            return x
        """
    )
    test = textwrap.dedent(
        """
        def check(candidate):
            try:
                candidate(-1)
            except ValueError as e:
                assert str(e) == "negative"
            else:
                assert False
            try:
                candidate(0)
            except ValueError:
                assert False, "only builtin exception types are rebuilt as themselves"
            except Exception as e:
                assert str(e) == "Custom: zero"
            assert candidate(5) == 5
        """
    )
    assert run_untrusted(program, test=test, entry_point="f").passed
    r = run_untrusted(program.replace('"negative"', '"oops"'), test=test, entry_point="f")
    assert not r.passed and r.error.startswith("AssertionError"), r.error


def test_a_lost_candidate_fails_even_if_the_test_swallows_it():
    test = "def check(candidate):\n    try:\n        candidate(1)\n    except BaseException:\n        pass\n"
    assert run_untrusted("def f(x):\n    return x\n", test=test, entry_point="f").passed
    r = run_untrusted("import os\ndef f(x):\n    os._exit(0)\n", test=test, entry_point="f")
    assert not r.passed and r.status == "failed", r


def test_endless_call_times_out():
    t0 = time.monotonic()
    r = check("def add(a, b):\n    while True:\n        pass\n", timeout=1.5)
    assert not r.passed and r.status == "timeout" and time.monotonic() - t0 < 1.5 + 2.0, r


@pytest.mark.parametrize("exc", ["StopIteration", "StopAsyncIteration", "GeneratorExit", "SystemExit",
                                 "KeyboardInterrupt"])
def test_control_flow_exceptions_are_failures_not_signals(exc):
    """A candidate that raises StopIteration ends the test's `map` early: rebuilt by name, `all()` of the
    shortened iterator is True and a wrong solution passes (as it does in the reference harness).  Every
    control-flow exception must come back as a plain failed call."""
    test = ("def check(candidate):\n    assert all(map(candidate, [1, 2, 3]))\n"
            "    assert candidate(0) is False\n")
    assert run_untrusted("def f(x):\n    return x > 0\n", test=test, entry_point="f").passed
    r = run_untrusted(f"def f(x):\n    raise {exc}('stop')\n", test=test, entry_point="f")
    assert not r.passed and r.status == "failed", r
    assert r.error == f"Exception: {exc}: stop", r.error
    # a test that expects an error still sees one (an Exception, as the candidate did raise)
    expects = "def check(candidate):\n    try:\n        candidate(1)\n    except Exception as e:\n        assert 'stop' in str(e)\n    else:\n        assert False\n"
    assert run_untrusted(f"def f(x):\n    raise {exc}('stop')\n", test=expects, entry_point="f").passed
