"""A small process supervisor for `make run`: starts the HELIOS processes, restarts one that dies,
and stops them all on Ctrl-C or SIGTERM.

Each child runs in a session of its own, so a terminal's Ctrl-C reaches only the supervisor, which
then stops the children in order: SIGTERM to each process group, SIGKILL after a grace period.
A child that exits is reported and restarted with exponential backoff; one that keeps dying
(MAX_RESTARTS times within RESTART_WINDOW_SECONDS) stops the whole stack with exit code 1, since a
stack with a missing piece would only look healthy.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType

logger = logging.getLogger(__name__)

GRACE_SECONDS = 10.0
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
FIRST_RESTART_DELAY_SECONDS = 0.5
MAX_RESTART_DELAY_SECONDS = 8.0
POLL_SECONDS = 0.1
# A second stop signal means "now" only when it comes this long after the first: one Ctrl-C can be
# delivered twice (to a wrapper's process group and by the wrapper itself).
HURRY_AFTER_SECONDS = 1.0
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class ProcessSpec:
    """One process of the stack: a name for the logs, its command line and extra environment."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass
class _Child:
    spec: ProcessSpec
    process: subprocess.Popen[bytes] | None = None
    restart_at: float | None = None
    recent_exits: deque[float] = field(default_factory=deque)


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the supervisor dies, even by SIGKILL (Linux)."""
    # Not on Linux, there is no prctl: the supervisor's own shutdown still stops the children.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Supervisor:
    """Runs the given processes until asked to stop; see the module docstring for the policy."""

    def __init__(
        self,
        specs: Sequence[ProcessSpec],
        *,
        grace_seconds: float = GRACE_SECONDS,
        first_restart_delay: float = FIRST_RESTART_DELAY_SECONDS,
    ) -> None:
        self.children = [_Child(spec) for spec in specs]
        self.grace_seconds = grace_seconds
        self.first_restart_delay = first_restart_delay
        self._stop_requested_at: float | None = None
        self._stop_signal = 0
        self._hurry = False

    def run(self) -> int:
        """Start every process and supervise them. Returns the exit code for the supervisor."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            for child in self.children:
                self._start(child)
            code = self._supervise()
            if self._stop_signal:
                name = signal.Signals(self._stop_signal).name
                logger.info("received %s, stopping", name, extra={"action": "stack_stopping"})
        finally:
            self._stop_all()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        logger.info("all processes stopped", extra={"action": "stack_stopped"})
        return code

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only flags here: logging from a signal handler can re-enter a write to stdout.
        now = time.monotonic()
        if self._stop_requested_at is None:
            self._stop_requested_at = now
            self._stop_signal = signum
        elif now - self._stop_requested_at >= HURRY_AFTER_SECONDS:
            self._hurry = True

    def _start(self, child: _Child) -> None:
        env = {**os.environ, **child.spec.env}
        child.process = subprocess.Popen(  # noqa: S603 - argv comes from the stack definition, not from input
            list(child.spec.argv),
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads here
        )
        child.restart_at = None
        logger.info(
            "started %s (pid %d)",
            child.spec.name,
            child.process.pid,
            extra={"action": "process_started", "process_name": child.spec.name, "pid": child.process.pid},
        )

    def _supervise(self) -> int:
        while self._stop_requested_at is None:
            now = time.monotonic()
            for child in self.children:
                if child.process is not None and child.process.poll() is not None:
                    if not self._schedule_restart(child, now):
                        return 1
                elif child.restart_at is not None and now >= child.restart_at:
                    self._start(child)
            time.sleep(POLL_SECONDS)
        return 0

    def _schedule_restart(self, child: _Child, now: float) -> bool:
        """Report the exit of `child` and plan its restart; False when it died too often."""
        assert child.process is not None
        code = child.process.returncode
        pid = child.process.pid
        child.process = None
        child.recent_exits.append(now)
        while child.recent_exits and now - child.recent_exits[0] > RESTART_WINDOW_SECONDS:
            child.recent_exits.popleft()
        extra = {"process_name": child.spec.name, "pid": pid, "returncode": code}
        if len(child.recent_exits) > MAX_RESTARTS:
            logger.error(
                "%s exited with code %s %d times within %ds: giving up and stopping everything",
                child.spec.name,
                code,
                len(child.recent_exits),
                RESTART_WINDOW_SECONDS,
                extra={"action": "process_failed", **extra},
            )
            return False
        delay = min(self.first_restart_delay * 2 ** (len(child.recent_exits) - 1), MAX_RESTART_DELAY_SECONDS)
        logger.error(
            "%s (pid %d) exited with code %s; restarting in %.1fs",
            child.spec.name,
            pid,
            code,
            delay,
            extra={"action": "process_exited", "restart_in_seconds": delay, **extra},
        )
        child.restart_at = now + delay
        return True

    def _stop_all(self) -> None:
        running = [child for child in self.children if child.process is not None and child.process.poll() is None]
        for child in running:
            self._signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_seconds
        for child in running:
            assert child.process is not None
            # A second Ctrl-C means "now": skip the rest of the grace period.
            while child.process.poll() is None and time.monotonic() < deadline and not self._hurry:
                time.sleep(POLL_SECONDS)
            if child.process.poll() is None:
                logger.warning("%s did not stop in time, killing it", child.spec.name, extra={"action": "killed"})
                self._signal_group(child, signal.SIGKILL)
                child.process.wait()
            logger.info(
                "%s stopped (code %s)",
                child.spec.name,
                child.process.returncode,
                extra={"action": "process_stopped", "process_name": child.spec.name},
            )

    @staticmethod
    def _signal_group(child: _Child, sig: signal.Signals) -> None:
        assert child.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.process.pid, sig)
