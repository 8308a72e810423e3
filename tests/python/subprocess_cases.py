"""Running code that may crash or hang in a child interpreter, so that a signal or a time-out fails one
test instead of ending the run. ``run_case``/``expect_raises`` run one snippet per child; ``CaseBatch``
runs many cases in few children (an interpreter that imports torch takes seconds to start, a tiny case a
fraction of one) and still gives each case its own outcome: the child prints each case's id before
running it, so a crash or a hang is charged to that case, and the cases after it run in a new child."""

import json
import resource
import signal
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from typing import Dict, List, Optional

import pytest

TIMEOUT_S = 120
# Children that fuzz sizes may try to allocate without bound; the machines running these tests have no
# swap, so such a child would bring in the OOM killer, which may pick another process. With a cap on
# address space the allocation fails inside the child instead (torch itself maps about 2 GiB).
CHILD_ADDRESS_SPACE_BYTES = 8 << 30


def _cap_address_space():  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE_BYTES, CHILD_ADDRESS_SPACE_BYTES))


def run_case(code: str, timeout: float = TIMEOUT_S) -> str:
    """Runs `code` in a fresh interpreter; returns its stdout. A signal, a non-zero exit or a
    time-out fails the test with what the child printed."""
    program = textwrap.dedent(code)
    try:
        done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"hung for {timeout} s:\n{program}\n{e.stdout}\n{e.stderr}")
    if done.returncode != 0:
        pytest.fail(f"exit {done.returncode} (a negative code is a signal):\n{program}\n{done.stdout}\n{done.stderr}")
    return done.stdout


def expect_raises(body: str, exception: str, fragment: str, timeout: float = TIMEOUT_S):
    """`body` must raise `exception` (a builtin exception's name) whose message holds `fragment`."""
    out = run_case(
        f"""
import sys
try:
{textwrap.indent(textwrap.dedent(body), "    ")}
except {exception} as e:
    print("RAISED", type(e).__name__, str(e)[:2000])
    sys.exit(0)
print("NO EXCEPTION")
""",
        timeout,
    )
    assert out.startswith("RAISED"), out
    assert fragment in out, out


# -- many cases in few children ------------------------------------------------------------------


@dataclass
class Outcome:
    """How one case ended: "ok", "raised" (with the exception's type and message), "crashed" (a
    signal or an exit without a result) or "hung" (past its time limit)."""

    kind: str
    exception: str = ""
    message: str = ""
    detail: str = ""
    bases: tuple = ()  # the exception's class and its bases, by name

    def raised_one_of(self, names) -> bool:
        return self.kind == "raised" and any(name in names for name in self.bases)

    def __str__(self):
        if self.kind == "raised":
            return f"raised {self.exception}: {self.message}"
        return f"{self.kind} {self.detail}".strip()


# The child's loop. faulthandler's watchdog is a C thread: it fires (printing every thread's Python
# stack, then exiting) even while the main thread is inside the engine holding the GIL.
_CHILD_LOOP = """
import faulthandler, json, sys
import torch
torch.set_num_threads(1)  # the cases are tiny; leave the other cores to whatever else runs
{setup}
for case in json.loads(sys.argv[1]):
    print("CASE", json.dumps(case["id"]), flush=True)
    faulthandler.dump_traceback_later({timeout}, exit=True)
    try:
        run(case)
        outcome = dict(kind="ok")
    except Exception as e:
        outcome = dict(kind="raised", exception=type(e).__name__, message=str(e)[:1000],
                       bases=[c.__name__ for c in type(e).__mro__])
    faulthandler.cancel_dump_traceback_later()
    print("RESULT", json.dumps(dict(id=case["id"], **outcome)), flush=True)
"""


def _signal_name(returncode: int) -> str:
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


class CaseBatch:
    """Cases (JSON-able dicts with an "id") run by `setup`, Python source that defines ``run(case)``.
    ``outcome(id)`` runs the batch on first use and returns that case's Outcome."""

    def __init__(self, setup: str, cases: List[dict], per_case_timeout_s: float = 60, cap_memory: bool = True):
        self.setup = textwrap.dedent(setup)
        self.cases = list(cases)
        self.per_case_timeout_s = per_case_timeout_s
        self.cap_memory = cap_memory
        self._outcomes: Optional[Dict[str, Outcome]] = None

    def outcome(self, case_id: str) -> Outcome:
        if self._outcomes is None:
            self._outcomes = {}
            remaining = list(self.cases)
            while remaining:
                remaining = self._run_child(remaining)
        return self._outcomes[case_id]

    def _run_child(self, cases: List[dict]) -> List[dict]:
        """Runs `cases` in one child; returns the cases left to run after a crash or a hang."""
        program = _CHILD_LOOP.format(setup=self.setup, timeout=self.per_case_timeout_s)
        # The watchdog ends a hung case; this outer limit only covers a child too stuck even for it.
        limit = TIMEOUT_S + self.per_case_timeout_s * (len(cases) + 1)
        try:
            done = subprocess.run(
                [sys.executable, "-c", program, json.dumps(cases)],
                capture_output=True,
                text=True,
                timeout=limit,
                preexec_fn=_cap_address_space if self.cap_memory else None,
            )
            stdout, stderr, returncode, timed_out = done.stdout, done.stderr, done.returncode, False
        except subprocess.TimeoutExpired as e:
            stdout, stderr, returncode, timed_out = _text(e.stdout), _text(e.stderr), None, True
        started, finished = [], set()
        for line in stdout.splitlines():
            if line.startswith("CASE "):
                started.append(json.loads(line[5:]))
            elif line.startswith("RESULT "):
                result = json.loads(line[7:])
                case_id = result.pop("id")
                finished.add(case_id)
                result["bases"] = tuple(result.get("bases", ()))
                self._outcomes[case_id] = Outcome(**result)
        unfinished = [case_id for case_id in started if case_id not in finished]
        if not unfinished:
            if not started:  # the child died before its first case: its setup failed
                for case in cases:
                    self._outcomes[case["id"]] = Outcome("crashed", detail=f"setup failed:\n{stderr[-3000:]}")
            elif timed_out or returncode != 0:  # every case ran, then the interpreter died on the way out
                how = "hung" if timed_out else _signal_name(returncode)
                self._outcomes[started[-1]] = Outcome(
                    "hung" if timed_out else "crashed", detail=f"at exit, after this case ({how}):\n{stderr[-3000:]}"
                )
            return []
        culprit = unfinished[-1]
        hung = timed_out or "Timeout (" in stderr
        how = f"after {self.per_case_timeout_s} s" if hung else _signal_name(returncode)
        self._outcomes[culprit] = Outcome("hung" if hung else "crashed", detail=f"({how}):\n{stderr[-3000:]}")
        index = next(i for i, case in enumerate(cases) if case["id"] == culprit)
        return cases[index + 1 :]


def _text(value) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else (value or "")


# A message with these is a LibTorch error that escaped from inside the engine (c10::Error carries its C++
# backtrace), not a check that names what was wrong.
_LIBTORCH_MARKERS = ("Exception raised from", "INTERNAL ASSERT", "c10::", "at::", "std::")


def assert_ran_or_refused_clearly(outcome: Outcome, accepted):
    """The acceptance rule of the mutation suites: the case ran, or raised one of `accepted` (exception
    names; subclasses count) with a message, a RuntimeError only without LibTorch's internals in it."""
    if outcome.kind == "ok":
        return
    assert outcome.kind == "raised", str(outcome)
    assert outcome.raised_one_of(accepted), f"unexpected exception type: {outcome}"
    assert outcome.message.strip(), f"an exception without a message: {outcome}"
    if outcome.raised_one_of(("RuntimeError",)):
        assert not any(marker in outcome.message for marker in _LIBTORCH_MARKERS), f"not a clear error: {outcome}"
