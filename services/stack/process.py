"""One long-running local process: started detached, found again by its pid file, stopped whole.

`ManagedProcess` is the unit `LocalStack` is made of (Kafka, Redis, Triton, MLflow, and later the
Labelloop services). Its guarantees:

- `start()` is idempotent: when the pid file names a live process that is the same program
  (same kernel start time, same executable) and it is healthy, nothing is started.
- A start waits on the process's own readiness check, never on a fixed delay; it fails with
  `StackError` carrying the tail of the log when the process exits or is not ready in time,
  and then leaves nothing running.
- The process runs in its own session (`start_new_session=True`) so it outlives the command
  that started it, and `stop()` signals the whole process group (SIGTERM, then SIGKILL after
  the stop timeout) and returns only when no member of the group is alive.

Linux only: liveness, identity and process groups are read from `/proc`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from labelloop.core.errors import LabelloopError

ReadyCheck = Callable[[], bool]
"""Returns True when the process serves; may raise, which counts as not ready."""

LOG_TAIL_LINES = 40


class StackError(LabelloopError):
    """A local-stack process failed to start, stop or become ready; the message says where to look."""


@dataclass(frozen=True)
class ProcessStatus:
    """One row of `status`: the process's pid (None when not running) and whether it is healthy."""

    name: str
    pid: int | None
    ports: tuple[int, ...]
    healthy: bool


@dataclass(frozen=True)
class StartResult:
    """What `start()` did: `started` is False when a healthy instance was already running."""

    name: str
    pid: int
    started: bool
    seconds: float


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]; None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return raw[raw.rfind(")") + 2 :].split()


def _is_alive(pid: int) -> bool:
    """True when `pid` exists and is not a zombie."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] != "Z"


def _start_ticks(pid: int) -> int | None:
    """The kernel start time of `pid` (clock ticks since boot): with the pid, a unique identity."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields is not None else None


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is `pgid`, found by scanning /proc."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on `host:port` (a bind succeeds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` lines of `log` (empty text when it does not exist)."""
    try:
        with log.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 64 * 1024))
            text = f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class ManagedProcess:
    """A detached process with a pid file, a log file and a readiness check.

    `argv` is executed directly (no shell) with exactly `env` as its environment, stdout and
    stderr appended to `log` (the previous run's log is kept as `<log>.1`). `ports` are the
    loopback ports it listens on: `start()` refuses to run it when one is taken by another
    program. `prepare` runs before each fresh start (write config files, format storage).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: Mapping[str, str],
        log: Path,
        ready_check: ReadyCheck,
        *,
        pid_file: Path | None = None,
        ports: Sequence[int] = (),
        cwd: Path | None = None,
        prepare: Callable[[], None] | None = None,
        start_timeout_s: float = 120.0,
        stop_timeout_s: float = 30.0,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.log = Path(log)
        self.ready_check = ready_check
        self.pid_file = Path(pid_file) if pid_file is not None else self.log.with_suffix(".pid")
        self.ports = tuple(ports)
        self.cwd = cwd
        self.prepare = prepare
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._popen: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"ManagedProcess({self.name!r}, pid={self.running_pid()})"

    # -- identity -------------------------------------------------------------------------------

    def _read_pid_file(self) -> dict[str, object] | None:
        try:
            record = json.loads(self.pid_file.read_text())
        except (FileNotFoundError, ValueError):
            return None
        return record if isinstance(record, dict) and isinstance(record.get("pid"), int) else None

    def running_pid(self) -> int | None:
        """The pid of this program when the pid file names it and it is alive, else None.

        Identity is the pid plus the kernel start time recorded at start (a recycled pid has
        another start time). The command line is not compared: the same interpreter may be
        named `python` by one caller and `python3` by another.
        """
        record = self._read_pid_file()
        if record is None:
            return None
        pid = int(record["pid"])  # type: ignore[call-overload]
        if not _is_alive(pid) or _start_ticks(pid) != record.get("start_ticks"):
            return None
        return pid

    def is_healthy(self) -> bool:
        """True when the process is running and its readiness check passes now."""
        return self.running_pid() is not None and self._check()

    def status(self) -> ProcessStatus:
        pid = self.running_pid()
        return ProcessStatus(self.name, pid, self.ports, pid is not None and self._check())

    def _check(self) -> bool:
        try:
            return bool(self.ready_check())
        except Exception:
            return False

    # -- start ----------------------------------------------------------------------------------

    def start(self) -> StartResult:
        """Start the process unless a healthy instance runs; return once it is ready.

        Raises StackError (with the log's tail) when a port is taken by another program, the
        process exits, or it is not ready within `start_timeout_s`; a process that failed to
        become ready is stopped before the error is raised.
        """
        began = time.monotonic()
        pid = self.running_pid()
        if pid is not None:
            if not self._wait_ready(pid, began + self.start_timeout_s, popen=None):
                raise StackError(
                    f"{self.name}: running (pid {pid}) but not healthy after {self.start_timeout_s:.0f}s; "
                    f"see {self.log}, or stop it with `python -m labelloop.stack down`\n" + log_tail(self.log)
                )
            return StartResult(self.name, pid, started=False, seconds=time.monotonic() - began)

        self.stop()  # clears a stale pid file and any orphaned group members of a dead instance
        taken = [p for p in self.ports if not port_is_free(p)]
        if taken:
            raise StackError(
                f"{self.name}: port(s) {', '.join(map(str, taken))} on 127.0.0.1 are in use by another "
                "program; stop it or choose other ports (LABELLOOP_*_PORT)"
            )
        if self.prepare is not None:
            self.prepare()
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        if self.log.exists():
            os.replace(self.log, self.log.with_name(self.log.name + ".1"))
        with self.log.open("ab") as log:
            popen = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._popen = popen
        self._write_pid_file(popen.pid)
        if not self._wait_ready(popen.pid, began + self.start_timeout_s, popen=popen):
            code = popen.poll()
            self.stop()
            what = (
                f"exited with code {code}"
                if code is not None
                else (f"not ready after {self.start_timeout_s:.0f}s")
            )
            raise StackError(f"{self.name}: {what}; log {self.log}:\n{log_tail(self.log)}")
        return StartResult(self.name, popen.pid, started=True, seconds=time.monotonic() - began)

    def _write_pid_file(self, pid: int) -> None:
        record = {"pid": pid, "start_ticks": _start_ticks(pid), "argv": self.argv}
        tmp = self.pid_file.with_name(f".{self.pid_file.name}.tmp")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, self.pid_file)

    def _wait_ready(self, pid: int, deadline: float, popen: subprocess.Popen[bytes] | None) -> bool:
        """Poll the readiness check until it passes (True), the process dies or time runs out."""
        interval = 0.05
        while True:
            if self._check():
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait = min(interval, remaining)
            if popen is not None:
                try:
                    popen.wait(timeout=wait)
                    return False  # exited before it was ready
                except subprocess.TimeoutExpired:
                    pass
            else:
                if not _is_alive(pid):
                    return False
                time.sleep(wait)  # not our child: nothing to block on but the clock
            interval = min(interval * 1.5, 0.5)

    # -- stop -----------------------------------------------------------------------------------

    def stop(self) -> bool:
        """Stop the whole process group; True when something was running.

        SIGTERM first, SIGKILL after `stop_timeout_s`; returns when no group member is alive
        and the pid file is gone. Raises StackError if processes survive SIGKILL.
        """
        record = self._read_pid_file()
        if record is None:
            return False
        pgid = int(record["pid"])  # type: ignore[call-overload]
        ours = self.running_pid() is not None
        # A dead leader's pgid cannot be reused while members of its group live, so members
        # found here are the orphans of our instance.
        members = group_members(pgid) if ours or not _is_alive(pgid) else []
        stopped = False
        if members:
            stopped = True
            self._signal_group(pgid, signal.SIGTERM)
            if not self._wait_group_gone(pgid, self.stop_timeout_s):
                self._signal_group(pgid, signal.SIGKILL)
                if not self._wait_group_gone(pgid, 10.0):
                    raise StackError(
                        f"{self.name}: processes {group_members(pgid)} survive SIGKILL (group {pgid})"
                    )
        self._reap(pgid)
        self.pid_file.unlink(missing_ok=True)
        return stopped

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, sig)

    def _reap(self, pid: int) -> None:
        """Collect our own child's exit status so it does not linger as a zombie.

        Only through our own Popen: reaping with a bare waitpid could steal the status another
        Popen object of this process waits for.
        """
        if self._popen is not None and self._popen.pid == pid:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._popen.wait(timeout=5)
            self._popen = None

    def _wait_group_gone(self, pgid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        interval = 0.02
        own = self._popen if self._popen is not None and self._popen.pid == pgid else None
        while True:
            if own is not None:
                own.poll()
            if not group_members(pgid):
                return True
            if time.monotonic() >= deadline:
                return False
            if own is not None and own.returncode is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    own.wait(timeout=interval)
            else:
                time.sleep(interval)
            interval = min(interval * 1.5, 0.25)
