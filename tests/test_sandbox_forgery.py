"""Harness-aware completions must not forge a pass (esamp.grading.sandbox, test mode).

Every completion below is *wrong* (or only half right) and tries to get a pass anyway by attacking
the grader rather than the problem: forged messages on inherited descriptors, trace/profile
functions, frame walking, gc, signal handlers, ctypes, exit tricks, custom equality, malformed
protocol data.  Where the trick targets the test itself, ``in_process`` first shows that it does
fool a grader that runs the test in the candidate's interpreter -- so "graded FAILED" below is a
property of the sandbox, not of a broken hack.
"""
from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from esamp.grading.sandbox import SandboxResult, isolation_support, run_untrusted

pytestmark = pytest.mark.skipif(bool(isolation_support()["missing"]),
                                reason="no candidate runs without the sandbox's full isolation (root with namespaces, as in CI); "
                                       "tests/test_sandbox_unprivileged.py covers the unprivileged side")

# HumanEval-shaped: several asserts, a float tolerance, a trailing `assert True`.
TEST = textwrap.dedent(
    """
    def check(candidate):
        assert candidate(2, 3) == 5
        assert candidate(10, -4) == 6
        assert abs(candidate(0.5, 0.25) - 0.75) < 1e-9
        assert True
    """
)
HALF = "    return a + b if type(a) is int else 123.0\n"  # right on ints, wrong on the float assert


def judged(code: str, **kw) -> SandboxResult:
    return run_untrusted(code, timeout=10, test=TEST, entry_point="add", **kw)


def in_process(code: str) -> SandboxResult:
    """The reference grader's shape, ``completion + test + check(add)`` in one interpreter (run in
    the sandbox's script mode, which passes when the program does not raise)."""
    return run_untrusted(code + "\n" + TEST + "\ncheck(add)\n", timeout=10)


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


# Tricks aimed at the test (its frames, namespace, constants, assert statements).
TEST_ATTACKS = {
    "trace_jumps_over_asserts": src("""
        import dis, sys
        def _tracer(frame, event, arg):
            if frame.f_code.co_name != "check":
                return None
            last = max(line for _, line in dis.findlinestarts(frame.f_code) if line)
            def jump(frame, event, arg):
                if event == "line" and frame.f_lineno < last:
                    frame.f_lineno = last  # straight to the trailing `assert True`
                return jump
            return jump
        sys.settrace(_tracer)
        def add(a, b):
            return 0
    """),
    "profile_rewrites_test_frame": src("""
        import sys
        def _profile(frame, event, arg):
            if event == "call" and frame.f_code.co_name == "check":
                frame.f_locals["candidate"] = lambda a, b: a + b  # written back into the frame
        sys.setprofile(_profile)
        def add(a, b):
            return 0
    """),
    "frame_walk_reads_expected_values": src("""
        import sys
        def add(a, b):
            f = sys._getframe(1)
            while f is not None and f.f_code.co_name != "check":
                f = f.f_back
            if f is None:
                return 0
            consts = [c for c in f.f_code.co_consts if type(c) in (int, float)]
            for i in range(len(consts) - 2):
                if consts[i:i + 2] == [a, b]:
                    return consts[i + 2]  # the constant that follows the arguments: the expected value
            return 0
    """),
    "gc_patches_test_namespace_in_call": src("""
        import gc
        def add(a, b):
            for obj in gc.get_objects():
                if type(obj) is dict and callable(obj.get("check")):
                    obj["abs"] = lambda x: 0  # a global `abs` shadows the builtin in check
    """) + HALF,
    "gc_patches_builtins_at_import": src("""
        import gc
        for obj in gc.get_objects():
            if type(obj) is dict and obj.get("abs") is abs:
                obj["abs"] = lambda x: 0  # builtins and every snapshot of them
        def add(a, b):
    """) + HALF,
    "signal_handler_patches_test_globals": src("""
        import signal
        def _handler(signum, frame):
            while frame is not None and frame.f_code.co_name != "check":
                frame = frame.f_back
            if frame is not None:
                frame.f_globals["abs"] = lambda x: 0
        signal.signal(signal.SIGUSR1, _handler)
        def add(a, b):
            signal.raise_signal(signal.SIGUSR1)  # the handler runs on top of check's frame
            return a + b if type(a) is int else 123.0
    """),
    "ctypes_rewrites_test_constant": src("""
        import ctypes, sys
        def add(a, b):
            f = sys._getframe(1)
            while f is not None and f.f_code.co_name != "check":
                f = f.f_back
            if f is not None:
                for c in f.f_code.co_consts:
                    if type(c) is float and 0 < c < 1e-3:  # the tolerance 1e-9 ...
                        ctypes.c_double.from_address(id(c) + 16).value = 1e300  # ... becomes 1e300
    """) + HALF,
    "always_equal_result": src("""
        class Anything:
            def __eq__(self, other): return True
            def __ne__(self, other): return False
            def __sub__(self, other): return self
            def __abs__(self): return 0
        def add(a, b):
            return Anything()
    """),
    "rigged_builtin_subclasses": src("""
        class I(int):
            def __eq__(self, other): return True
            __hash__ = int.__hash__
        class F(float):
            def __sub__(self, other): return 0.0
        def add(a, b):
            return I(0) if type(a) is int else F(7.0)
    """),
    "class_spoofing_result": src("""
        class Fake:
            __class__ = property(lambda self: int)  # isinstance(Fake(), int) is True
            def __eq__(self, other): return True
            def __sub__(self, other): return self
            def __abs__(self): return 0
        def add(a, b):
            return Fake()
    """),
}

# Tricks aimed at the harness (its descriptors, its frames, its exit-status handling).
FORGED = [
    {"event": "verdict", "nonce": "0" * 32, "passed": True, "error": None},
    {"event": "passed", "nonce": "0" * 32},
    {"ready": True}, {"id": 1, "ret": 5}, {"done": True},
]
_FORGE = src("""
    import json, os, sys
    def forge():
        seen, wrote, proc = {}, [], []
        for fd in range(3, 256):
            try:
                blocking = os.get_blocking(fd)
                os.set_blocking(fd, False)
                try:
                    seen[fd] = os.read(fd, 4096).decode("latin-1")  # the old harness's nonce pipe
                finally:
                    os.set_blocking(fd, blocking)
            except OSError:
                pass
        msgs = FORGED + [{"event": e, "nonce": s.strip(), "passed": True} for s in seen.values()
                         for e in ("passed", "verdict")]
        # Other processes' descriptors first, and reported before the inherited ones are written:
        # the judge kills the candidate as soon as it reads a forgery on the answer pipe.
        for pid in os.listdir("/proc"):  # other processes' descriptors: the judge's, the parent's
            if not pid.isdigit() or int(pid) == os.getpid():
                continue
            try:
                fds = os.listdir("/proc/%s/fd" % pid)
            except OSError:
                continue
            for fd in fds:
                try:
                    w = os.open("/proc/%s/fd/%s" % (pid, fd), os.O_WRONLY | os.O_NONBLOCK)
                    os.write(w, (json.dumps(msgs[0]) + "\\n").encode())
                    os.close(w)
                    proc.append("%s/%s" % (pid, fd))
                except OSError:
                    pass
        print("PROC", json.dumps(proc))
        sys.stdout.flush()
        for fd in range(3, 256):
            for msg in msgs:
                try:
                    os.write(fd, (json.dumps(msg) + "\\n").encode())
                    wrote.append(fd)
                except OSError:
                    pass
        print("FORGERY", json.dumps({"wrote": sorted(set(wrote))}))
        sys.stdout.flush()
""").replace("FORGED", json.dumps(FORGED).replace("true", "True").replace("null", "None"))

HARNESS_ATTACKS = {
    "descriptors_forged_at_import": _FORGE + "forge()\nos._exit(0)\ndef add(a, b):\n    return 0\n",
    "descriptors_forged_in_call": _FORGE + "def add(a, b):\n    forge()\n    os._exit(0)\n",
    "frame_walk_calls_harness_success": src("""
        import sys
        def add(a, b):
            f = sys._getframe()
            while f is not None:
                for name, value in list(f.f_locals.items()):
                    if name in ("succeed", "report_pass") and callable(value):
                        value()  # the old in-process harness kept its success path here
                f = f.f_back
            return 0
    """),
    "atexit_forgery_then_exit_at_import": src("""
        import atexit, os, sys
        atexit.register(lambda: os.write(4, b'{"id": 1, "ret": 5}\\n{"done": true}\\n'))
        def add(a, b):
            return 0
        sys.exit(0)
    """),
    "forged_answer_then_exit_in_call": src("""
        import os
        def add(a, b):
            os.write(4, b'{"id": 1, "ret": 5}\\n')  # right for the first call only ...
            os._exit(0)  # ... then gone, with status 0
    """),
    "system_exit_in_call": "def add(a, b):\n    raise SystemExit(0)\n",
    "kill_self_in_call": "import os, signal\ndef add(a, b):\n    os.kill(os.getpid(), signal.SIGKILL)\n",
}


@pytest.mark.parametrize("name", sorted(TEST_ATTACKS))
def test_attacks_on_the_test_fool_an_in_process_grader_but_not_the_judge(name):
    code = TEST_ATTACKS[name]
    assert in_process(code).passed, "the trick should work when the test shares the interpreter"
    r = judged(code)
    assert not r.passed and r.status == "failed", r
    assert r.error and r.error.split(":")[0] in ("AssertionError", "TypeError"), r.error


@pytest.mark.parametrize("name", sorted(HARNESS_ATTACKS))
def test_attacks_on_the_harness_fail(name):
    r = judged(HARNESS_ATTACKS[name])
    assert not r.passed and r.status == "failed", r


def test_forged_descriptors_reach_nothing_trusted():
    info = isolation_support()
    for name in ("descriptors_forged_at_import", "descriptors_forged_in_call"):
        r = judged(HARNESS_ATTACKS[name])
        assert not r.passed and r.status == "failed", r
        # The answer pipe took the forgeries -- and they meant nothing.  The judge may kill the
        # candidate on reading the first one, before it reports; then the judge's error says so.
        if "FORGERY" in r.stdout:
            assert 4 in json.loads(r.stdout.split("FORGERY", 1)[1].splitlines()[0])["wrote"]
        else:
            assert r.returncode == -9 or r.returncode == 137, r
            assert "broke the protocol" in (r.error or ""), r
        proc = json.loads(r.stdout.split("PROC", 1)[1].splitlines()[0])  # printed before fd 4 was touched
        if info.get("uid_dropped"):
            assert proc == [], proc  # no other process's descriptor was writable


# Protocol abuse: an honest, *correct* function that also writes something onto the answer pipe.
# A judge that skipped junk and waited for the real answer would pass it; it must fail instead.
@pytest.mark.parametrize(
    "junk",  # a Python expression, evaluated in the child
    [
        """'{"id": 1, "ret": {"__class__": "Anything"}}'""",
        """'{"id": 1, "ret": {"t": [5], "s": [5]}}'""",
        """'{"id": 1, "ret": {"s": [[1]]}}'""",
        """'{"id": 1, "ret": {"i": "not hex"}}'""",
        """'{"id": 7, "ret": 5}'""",
        """'{"id": 1, "ret": 5, "passed": true}'""",
        """'{"id": 1, "ret": ' + '[' * 100_000 + ']' * 100_000 + '}'""",
        """'{"id": 1, "ret": "' + 'x' * (5 << 20) + '"}'""",
        "'passed'",
        "''",
    ],
    ids=["unknown_tag", "two_tags", "unhashable_set", "bad_int", "wrong_id", "extra_key", "deep",
         "oversized", "not_json", "empty_line"],
)
def test_malformed_answers_fail_the_call(junk):
    code = f"import os\ndef add(a, b):\n    os.write(4, ({junk} + '\\n').encode())\n    return a + b\n"
    r = judged(code)
    assert not r.passed and r.status == "failed", r
    assert "protocol" in (r.error or ""), r.error


def test_oversized_result_fails_without_hurting_the_host():
    r = judged("def add(a, b):\n    return list(range(2_000_000))\n", max_call_bytes=1 << 20)
    assert not r.passed and r.status == "failed" and "larger than" in (r.error or ""), r
    assert judged("def add(a, b):\n    return a + b\n", max_call_bytes=1 << 20).passed


def test_the_child_never_sees_the_test():
    secret = "esamp-test-secret-" + uuid.uuid4().hex
    test = TEST + f"\n# {secret}\n"
    hunt = src(f"""
        import gc, os
        SECRET = "{secret[:18]}" + "{secret[18:]}"  # (not the whole marker in this source)
        found = []
        for root, _dirs, files in os.walk("."):
            for name in files:
                try:
                    if SECRET.encode() in open(os.path.join(root, name), "rb").read():
                        found.append(name)
                except OSError:
                    pass
        for pid in os.listdir("/proc"):
            for what in ("cmdline", "environ"):
                try:
                    if SECRET.encode() in open("/proc/%s/%s" % (pid, what), "rb").read():
                        found.append(pid + what)
                except OSError:
                    pass
        found += [o[:40] for o in gc.get_objects() if type(o) is str and SECRET in o and o != SECRET]
        print("SEARCHED", found)
        def add(a, b):
            return a + b
    """)
    r = run_untrusted(hunt, timeout=10, test=test, entry_point="add")
    assert r.passed, r  # an honest solution that merely looked around
    assert "SEARCHED []" in r.stdout, r.stdout
