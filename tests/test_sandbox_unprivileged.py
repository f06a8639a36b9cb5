"""The sandbox run by a normal user (no root): no namespaces, no uid change, the candidate shares the user's
uid -- what must still hold (esamp.grading.sandbox, issue 25 items 4, 5 and 7).

Each test runs a small driver program as an unprivileged user: ourselves when the tests do not run as root,
else `nobody` (setpriv), in a private mount namespace where the Python installation is made reachable by
that user.  The driver imports a copy of the sandbox package that the user owns, like a user's own checkout.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest

import esamp
from esamp.grading.sandbox import isolation, unisolated_refusal
from esamp.grading.sandbox.runner import _base_python

NOBODY = 65534
TEST = "def check(candidate):\n    assert candidate(2, 3) == 5\n    assert candidate(10, -4) == 6\n"
WRONG = "def add(a, b):\n    return 0\n"
GOOD = "def add(a, b):\n    return a + b\n"


def _package_copy(root: Path) -> Path:
    """A copy of esamp's sandbox, HumanEval grading and task (stdlib only) under ``root``."""
    src = Path(esamp.__file__).parent
    dst = root / "pkg" / "esamp"
    shutil.copytree(src / "grading" / "sandbox", dst / "grading" / "sandbox",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("__init__.py", "checks.py"):
        shutil.copy(src / name, dst / name)
    shutil.copy(src / "grading" / "__init__.py", dst / "grading" / "__init__.py")
    shutil.copy(src / "grading" / "code.py", dst / "grading" / "code.py")
    (dst / "tasks").mkdir()
    for name in ("__init__.py", "base.py", "humaneval.py", "prompt_styles.py"):  # the refusal, without the ML stack
        shutil.copy(src / "tasks" / name, dst / "tasks" / name)
    return dst / "grading" / "sandbox"


def _as_nobody_script(driver: Path, stage: Path) -> list[str]:
    """`unshare -m sh -c ...`: expose the Python prefix (e.g. under /root, mode 700) read-only, then become
    nobody and run the driver."""
    prefix = os.path.realpath(sys.base_prefix)
    hidden = isolation.inaccessible_ancestor(prefix)
    lines = ["set -e", "mount --make-rprivate /"]
    if hidden is not None:
        lines += [f"mount --bind '{prefix}' '{stage}'",
                  f"mount -t tmpfs -o mode=0755,size=1m tmpfs '{hidden}'",
                  f"mkdir -p '{prefix}'",
                  f"mount --bind '{stage}' '{prefix}'",
                  f"mount -o remount,bind,ro '{prefix}'",
                  f"umount '{stage}'"]
    lines.append(f"exec setpriv --reuid={NOBODY} --regid={NOBODY} --clear-groups "
                 f"'{_base_python()}' -I -S '{driver}'")
    return ["unshare", "-m", "sh", "-c", "\n".join(lines)]


def run_unprivileged(driver_source: str, timeout: float = 180) -> dict:
    """Run ``driver_source`` (Python; ``PKG`` and ``SANDBOX_DIR`` are defined for it) as an unprivileged
    user; return the JSON object it prints on its last line."""
    root = Path(tempfile.mkdtemp(prefix="esamp-unpriv-"))
    try:
        sandbox_dir = _package_copy(root)
        driver = root / "driver.py"
        driver.write_text(f"import sys\nPKG = {str(root / 'pkg')!r}\nSANDBOX_DIR = {str(sandbox_dir)!r}\n"
                          "sys.path.insert(0, PKG)\n" + textwrap.dedent(driver_source))
        probe = root / "probe.py"
        probe.write_text("import os\nprint(os.getuid())\n")
        if os.geteuid() == 0:
            if shutil.which("unshare") is None or shutil.which("setpriv") is None:
                pytest.skip("cannot drop to an unprivileged user: `unshare` or `setpriv` is missing")
            stage = root / "stage"
            stage.mkdir()
            for path in [root, *root.rglob("*")]:
                os.chown(path, NOBODY, NOBODY)  # the user's own checkout: writable by the candidate too
            root.chmod(0o755)
            works = subprocess.run(_as_nobody_script(probe, stage), capture_output=True, text=True, timeout=60)
            if works.returncode != 0 or works.stdout.strip() != str(NOBODY):
                pytest.skip(f"cannot drop to an unprivileged user here: {works.stderr.strip()[-500:]}")
            cmd = _as_nobody_script(driver, stage)
        else:
            refusal = unisolated_refusal()
            if refusal is not None:  # then every unisolated check is refused here, as it must be
                pytest.skip(f"unisolated checks are refused for this user: {refusal}")
            cmd = [_base_python(), "-I", "-S", str(driver)]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
        assert out.returncode == 0, out.stderr[-3000:]
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        subprocess.run(["rm", "-rf", str(root)], check=False)


def test_the_driver_really_runs_unprivileged():
    res = run_unprivileged("""
        import json, os
        from esamp.grading.sandbox import run_untrusted
        r = run_untrusted("import os\\nprint(os.getuid())", require_isolation=False)
        print(json.dumps({"uid": os.getuid(), "child_uid": r.stdout.strip(), "passed": r.passed,
                          "missing": r.isolation_missing}))
    """)
    assert res["uid"] != 0 and res["child_uid"] == str(res["uid"]), res
    assert res["passed"] and "uid_dropped" in res["missing"], res


def test_without_isolation_nothing_counts_unless_asked_for():
    """Item 4: by default a check runs only under the full isolation -- here the candidate does not run at
    all and even a correct solution does not pass; `require_isolation=False` is the explicit opt-in."""
    res = run_unprivileged(f"""
        import json
        from esamp.grading.sandbox import run_untrusted
        strict = run_untrusted({GOOD!r}, test={TEST!r}, entry_point="add")
        marker = run_untrusted("print('RAN')")
        opted = run_untrusted({GOOD!r}, test={TEST!r}, entry_point="add", require_isolation=False)
        print(json.dumps({{"strict": [strict.passed, strict.status, strict.error, strict.isolation_missing],
                          "marker": [marker.passed, marker.status, marker.stdout],
                          "opted": [opted.passed, opted.status]}}))
    """)
    passed, status, error, missing = res["strict"]
    assert not passed and status == "unisolated", res
    assert "uid_dropped" in missing and "could not isolate" in error, res
    assert res["marker"] == [False, "unisolated", ""], res  # the candidate never ran
    assert res["opted"] == [True, "passed"], res


def test_a_humaneval_run_refuses_to_grade_unless_unisolated_verdicts_are_allowed():
    """Item 4: HumanEvalTask is built before any model loads; without isolation it refuses in one line that
    says why and how to run it.  With task.allow_unisolated=true it grades, and each sample says its check
    lacked the isolation."""
    res = run_unprivileged(f"""
        import json
        from esamp.tasks.base import Problem
        from esamp.tasks.humaneval import HumanEvalTask
        kw = dict(chat=True, limit=1, timeout=5.0, max_new_tokens=512, name="humaneval", workers=None,
                  prompt_style="plain")  # conf/task/humaneval.yaml's values (no hydra in this stdlib-only copy)
        try:
            HumanEvalTask(allow_unisolated=False, **kw)
            refused = None
        except ValueError as e:
            refused = str(e)
        task = HumanEvalTask(allow_unisolated=True, **kw)
        task._problems = {{"toy/0": {{"task_id": "toy/0", "prompt": "", "entry_point": "add", "test": {TEST!r}}}}}
        grades = task.grade_many(Problem(id="toy/0", prompt="", meta={{}}),
                                 ["```python\\n" + c + "```" for c in ({GOOD!r}, {WRONG!r})])
        summary = task.summarize([{{"isolation_missing": g["isolation_missing"]}} for g in grades])
        print(json.dumps({{"refused": refused, "grades": grades, "summary": summary}}))
    """)
    refused = res["refused"]
    assert refused is not None and "\n" not in refused, res
    assert refused.startswith("task=humaneval refuses to grade: the code sandbox cannot isolate"), refused
    assert "uid_dropped" in refused and "run as root" in refused and "task.allow_unisolated=true" in refused
    assert [g["correct"] for g in res["grades"]] == [True, False], res
    assert all("uid_dropped" in g["isolation_missing"] for g in res["grades"]), res
    summary = res["summary"]
    assert summary["sandbox_allow_unisolated"] is True and summary["samples_unisolated"] == 2, summary
    assert summary["samples_isolated"] == 0 and "uid_dropped" in summary["sandbox_isolation"]["missing"]


def test_a_candidate_cannot_rewrite_the_judge_of_later_checks():
    """Item 5: as a normal user the candidate can write the package it is graded by.  It finds the judge's
    path (the bootstrap's command line, or where the checkout is known to be) and rewrites the judge to
    pass everything; the next check's wrong solution must still fail."""
    attack = textwrap.dedent("""
        import os
        FORGERY = "\\ndef run_test(spec, channel):\\n    return True, None\\n"

        def judge_dir():
            pid = os.getpid()
            while pid > 1:  # the bootstrap's command line named its file (python -I -S .../bootstrap.py)
                try:
                    argv = open("/proc/%d/cmdline" % pid, "rb").read().split(b"\\0")
                    pid = int(open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError):
                    break
                for arg in argv:
                    if arg.endswith(b"/bootstrap.py"):
                        return os.path.dirname(arg.decode()), "cmdline"
            return KNOWN, "known path"

        where, how = judge_dir()
        for name in ("judge.py", "bootstrap.py"):
            with open(os.path.join(where, name), "a") as f:
                f.write(FORGERY if name == "judge.py" else "\\njudge.run_test = lambda spec, channel: (True, None)\\n")
        print("REWROTE", where, "found by", how)

        def add(a, b):
            return 0
    """)
    res = run_unprivileged(f"""
        import json, os
        from esamp.grading.sandbox import run_untrusted
        attack = {attack!r}.replace("KNOWN", repr(SANDBOX_DIR))
        first = run_untrusted(attack, test={TEST!r}, entry_point="add", require_isolation=False)
        judge_source = open(os.path.join(SANDBOX_DIR, "judge.py")).read()
        later = [run_untrusted({WRONG!r}, test={TEST!r}, entry_point="add", require_isolation=False)
                 for _ in range(2)]
        good = run_untrusted({GOOD!r}, test={TEST!r}, entry_point="add", require_isolation=False)
        print(json.dumps({{"first": [first.passed, first.stdout, first.stderr[-1000:]],
                          "rewritten": "return True, None" in judge_source,
                          "later": [[r.passed, r.status, r.error] for r in later],
                          "good": good.passed}}))
    """)
    assert not res["first"][0] and "REWROTE" in res["first"][1], res  # the attack ran and wrote ...
    assert res["rewritten"], res  # ... the judge's file on disk really holds the forgery ...
    for passed, status, error in res["later"]:  # ... and no later verdict reads it
        assert not passed and status == "failed" and error.startswith("AssertionError"), res
    assert res["good"], res


@pytest.mark.parametrize("ending", ["timeout", "return"])
def test_a_setsid_grandchild_does_not_survive_the_check(ending):
    """Item 7: without root there is no PID namespace whose end kills everything; a sleeper that left the
    process group with setsid() must still be gone once the check returns -- after a timeout too, when the
    bootstrap is killed before it can clean up."""
    code = textwrap.dedent(f"""
        import os, sys, time
        def add(a, b):
            pid = os.fork()
            if pid == 0:
                os.setsid()
                os.execv("/bin/sleep", ["sleep", "86399.25"])
            print("SLEEPER", pid, flush=True)
            time.sleep(0.3)  # let it start
            {"while True: pass" if ending == "timeout" else "return a + b"}
    """)
    res = run_unprivileged(f"""
        import json, os, signal, time
        from esamp.grading.sandbox import run_untrusted
        r = run_untrusted({code!r}, test={TEST!r}, entry_point="add", timeout=3, require_isolation=False)
        pid = int(r.stdout.split("SLEEPER")[1].split()[0])

        def alive():
            try:
                state = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()[0]
                cmd = open("/proc/%d/cmdline" % pid, "rb").read()
            except OSError:
                return False
            return state != "Z" and b"86399.25" in cmd

        survived = alive()
        if survived:
            os.kill(pid, signal.SIGKILL)  # do not leave it behind
        print(json.dumps({{"status": r.status, "survived": survived}}))
    """)
    assert res["status"] == ("timeout" if ending == "timeout" else "passed"), res
    assert res["survived"] is False, res
