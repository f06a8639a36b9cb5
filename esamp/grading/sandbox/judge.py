"""The trusted side of a check: runs the dataset's prelude and test, and decides the verdict.

This code runs in the bootstrap process, which never executes candidate code (it only writes the
candidate's source into the sandbox's working directory).  The candidate lives in the sandboxed
child; ``check`` gets a proxy for it (:meth:`Channel.proxy`).  Each call sends the arguments down
the request pipe as literal data (:mod:`protocol`) and waits for one answer: a literal value, rebuilt
here from exact builtin types, or the name of the exception the candidate raised.  So the only thing
the child can influence is what its function "returned" -- nothing it writes or does can mean "the
test passed", which is decided here, by ``check`` returning normally.

A child that dies, hangs up, answers out of turn or sends anything malformed or larger than the cap
makes that call raise :class:`CandidateLost` (a BaseException, so a test's ``except Exception``
cannot swallow it) and the channel stays broken: the verdict is a failure even if ``check`` somehow
returned.  Arguments are copies: a candidate that mutates its argument in place does not change the
test's object (none of the 164 HumanEval tests relies on that).
"""
from __future__ import annotations

import os

try:
    from . import protocol
except ImportError:  # run from the bootstrap script, which puts this directory on sys.path
    import protocol


class CandidateLost(BaseException):
    """The candidate process ended, hung up, or broke the protocol during a call."""


def describe(exc: BaseException) -> str:
    name, text = protocol.describe_exception(exc)
    return "%s: %s" % (name, text) if text else name


class Channel:
    """The judge's ends of the two pipes to the candidate process (requests out, answers in)."""

    def __init__(self, request_fd: int, answer_fd: int, cap: int):
        self.request_fd = request_fd
        self.reader = protocol.LineReader(answer_fd, cap)
        self.calls = 0
        self.broken: str | None = None  # why the channel is unusable; None while it is fine
        self.gone = False  # the candidate process ended (its exit status tells the rest)

    def close(self) -> None:
        """Hang up: the child reads end-of-file and exits."""
        try:
            os.close(self.request_fd)
        except OSError:
            pass

    def _lose(self, why: str, gone: bool = False):
        if self.broken is None:
            self.broken, self.gone = why, gone
        raise CandidateLost(why)

    def receive(self) -> dict:
        try:
            line = self.reader.read_line()
        except protocol.ProtocolError as e:
            self._lose("the candidate broke the protocol: %s" % e)
        except OSError:
            line = None
        if line is None:
            self._lose("the candidate process ended", gone=True)
        try:
            return protocol.loads(line)
        except protocol.ProtocolError as e:
            self._lose("the candidate broke the protocol: %s" % e)

    def call(self, args: tuple, kwargs: dict):
        if self.broken is not None:
            raise CandidateLost(self.broken)
        self.calls += 1
        try:
            request = {"id": self.calls, "args": protocol.encode(list(args))}
            if kwargs:
                request["kwargs"] = protocol.encode(dict(kwargs))
            line = protocol.dumps(request)
        except (TypeError, ValueError, RecursionError) as e:
            raise TypeError("the test passed the candidate something that is not plain data: %s" % e) from None
        try:
            protocol.write_all(self.request_fd, line)
        except OSError:
            self._lose("the candidate process ended", gone=True)
        answer = self.receive()
        keys = sorted(answer)
        if answer.get("id") != self.calls:
            self._lose("the candidate broke the protocol: answer to the wrong call")
        if keys == ["id", "ret"]:
            try:
                return protocol.decode(answer["ret"])
            except protocol.ProtocolError as e:
                self._lose("the candidate broke the protocol: %s" % e)
        if keys == ["id", "raise"] and type(answer["raise"]) is list and len(answer["raise"]) == 2:
            try:
                exc = protocol.rebuild_exception(*answer["raise"])
            except protocol.ProtocolError as e:
                self._lose("the candidate broke the protocol: %s" % e)
            raise exc
        self._lose("the candidate broke the protocol: malformed answer")

    def proxy(self, name: str):
        """The function ``check`` receives in place of the candidate."""
        call = self.call

        def candidate(*args, **kwargs):
            return call(args, kwargs)

        candidate.__name__ = candidate.__qualname__ = name
        return candidate

    def first(self) -> tuple[dict | None, str | None]:
        """The child's first message (``ready``/``load_error`` or ``done``/``error``), or the reason
        there is none: (None, None) if the process ended, (None, why) if it sent garbage."""
        try:
            return self.receive(), None
        except CandidateLost as e:
            return None, None if self.gone else str(e)


def _reported_error(value) -> str:
    """"Type: message" from a child's ``[type, message]`` report (display only, never trusted)."""
    if type(value) is list and len(value) == 2 and all(type(v) is str for v in value):
        return "%s: %s" % (value[0], value[1][:500]) if value[1] else value[0]
    return "the candidate broke the protocol: malformed error report"


def _show(exc: BaseException) -> None:
    """The failing test's traceback on stderr, for whoever reads the captured output."""
    import sys
    import traceback
    try:
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.flush()
    except Exception:  # noqa: BLE001 - stderr gone; the verdict does not depend on it
        pass


def run_test(spec: dict, channel: Channel) -> tuple[bool, str | None]:
    """Test mode: ``prelude`` + ``test`` here, then ``check(proxy)``.  Returns (passed, error); error
    None with passed False means the candidate process ended (the exit status describes it)."""
    try:
        # Set up while the child is still starting: both are trusted dataset code.
        prelude = compile(spec["prelude"], "prelude.py", "exec") if spec["prelude"] else None
        test = compile(spec["test"], "test.py", "exec")
        proxy = channel.proxy(spec["entry_point"])
        ns = {"__name__": "__check__"}
        if prelude is not None:
            exec(prelude, ns)  # the prompt: imports and helpers such as poly / encode_cyclic
        ns[spec["entry_point"]] = proxy  # some tests call the function by name
        exec(test, ns)
        check = ns[spec["check_name"]]
    except BaseException as e:  # noqa: BLE001 - a broken dataset entry fails this check only
        return False, "test setup failed: " + describe(e)
    first, why = channel.first()
    if first is None:
        return False, why
    if first.get("load_error") is not None:
        return False, _reported_error(first["load_error"])
    if first != {"ready": True}:
        return False, "the candidate broke the protocol: no ready message"
    try:
        check(proxy)
    except BaseException as e:  # noqa: BLE001 - SystemExit re-raised from the candidate included
        _show(e)
        if channel.broken is not None:
            return False, None if channel.gone else channel.broken
        return False, describe(e)
    if channel.broken is not None:  # check() swallowed a CandidateLost (a bare except)
        return False, None if channel.gone else channel.broken
    return True, None


def run_script(channel: Channel) -> tuple[bool, str | None]:
    """Script mode: the program's own report that it ran to the end (see the package docstring: a
    program decides for itself whether it "succeeds", so this mode needs no protection)."""
    first, why = channel.first()
    if first is None:
        return False, why
    if first == {"done": True}:
        return True, None
    if first.get("error") is not None:
        return False, _reported_error(first["error"])
    return False, "the program broke the protocol"
