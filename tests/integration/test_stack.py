"""The local stack as real processes: healthy, idempotent, and gone without a trace after `down`."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import redis
import tritonclient.grpc as grpcclient
from support import private_stack_settings, wait_until

from labelloop.core import kafka_clients
from labelloop.stack import LocalStack, ManagedProcess, StackError, StackSettings
from labelloop.stack.process import _is_alive, group_members, port_is_free
from labelloop.stack.settings import settings_env


def _stack_cli(command: str, settings: StackSettings) -> subprocess.CompletedProcess[str]:
    """`python -m labelloop.stack <command>` on the infrastructure of the stack `settings` name."""
    env = {**os.environ, **settings_env(settings)}
    return subprocess.run(
        [sys.executable, "-m", "labelloop.stack", command, "--no-services"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _processes_running(argv_part: str) -> list[int]:
    """Pids (non-zombie) whose command line contains `argv_part`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _is_alive(int(entry.name)):
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if argv_part in cmdline:
                found.append(int(entry.name))
    return found


def test_every_component_answers_its_own_client(stack: LocalStack) -> None:
    assert [row.name for row in stack.status()] == ["kafka", "redis", "triton", "mlflow"]
    assert all(row.healthy and row.pid for row in stack.status()), stack.status()

    admin = kafka_clients.admin(stack.bootstrap_servers)
    assert kafka_clients.cluster_broker_ports(admin, timeout_s=10) == [stack.kafka.port]
    assert redis.Redis.from_url(stack.redis_url, password=stack.redis_password).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(stack.redis_url).ping()  # the local Redis requires its password
    assert stack.service_env()["LABELLOOP_REDIS_PASSWORD"] == stack.redis_password
    triton = grpcclient.InferenceServerClient(stack.triton_grpc_url)
    assert triton.is_server_live() and triton.is_server_ready()
    triton.close()
    assert stack.model_repository.is_dir()
    assert stack.service_env()["LABELLOOP_KAFKA_BOOTSTRAP"] == stack.bootstrap_servers


def test_status_command_reports_the_running_stack(stack: LocalStack) -> None:
    result = _stack_cli("status", stack.settings)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert set(rows) == {"kafka", "redis", "triton", "mlflow"}
    assert all(row[-1] == "yes" for row in rows.values()), result.stdout
    assert rows["kafka"][1] == str(stack.kafka.process.running_pid())


def test_up_again_starts_no_duplicate(stack: LocalStack) -> None:
    pids = {row.name: row.pid for row in stack.status()}
    again = LocalStack(stack.settings, services=(), say=None).up()
    assert [r.started for r in again] == [False] * 4
    assert {r.name: r.pid for r in again} == pids
    assert len(_processes_running(str(stack.kafka.config_file))) == 1
    assert len(_processes_running(f"--grpc-port={stack.settings.triton_grpc_port}")) == 1


def test_mini_stack_goes_down_leaving_no_process(tmp_path: Path) -> None:
    settings = private_stack_settings(tmp_path)
    mini = LocalStack(settings, only={"redis"}, services=(), say=None)
    # A pid file naming a live process that is not redis-server (this test) must not fool `up`.
    mini.redis.process.pid_file.parent.mkdir(parents=True)
    mini.redis.process.pid_file.write_text(json.dumps({"pid": os.getpid(), "start_ticks": 1}))
    try:
        (started,) = mini.up()
        assert started.started and started.pid != os.getpid()
        assert redis.Redis(port=settings.redis_port, password=mini.redis_password).ping()
        assert mini.healthy()
        pid = started.pid
    finally:
        assert mini.down() == ["redis"]
    assert not _is_alive(pid) and group_members(pid) == []
    assert not mini.redis.process.pid_file.exists()
    assert port_is_free(settings.redis_port)
    assert mini.down() == []  # idempotent

    result = _stack_cli("status", settings)
    assert result.returncode == 1
    assert all(line.split()[1] == "-" and line.endswith("no") for line in result.stdout.splitlines()[1:])


def test_start_failure_is_reported_with_the_log_tail(tmp_path: Path) -> None:
    broken = ManagedProcess(
        "broken-redis",
        ["redis-server", "--port", "not-a-port"],
        dict(os.environ),
        tmp_path / "broken.log",
        lambda: False,
        start_timeout_s=30,
    )
    with pytest.raises(StackError, match=r"exited with code 1.*broken\.log") as failure:
        broken.start()
    assert "not-a-port" in str(failure.value) or "port" in str(failure.value).lower()
    assert broken.running_pid() is None


def test_start_timeout_stops_the_process(tmp_path: Path) -> None:
    duration = f"{300 + random.random():.6f}"  # makes the command line unique to this test
    never_ready = ManagedProcess(
        "never-ready",
        ["sleep", duration],
        dict(os.environ),
        tmp_path / "sleep.log",
        lambda: False,
        start_timeout_s=0.5,
        stop_timeout_s=5,
    )
    with pytest.raises(StackError, match="not ready after"):
        never_ready.start()
    assert _processes_running(f"sleep {duration}") == []
    assert not never_ready.pid_file.exists()


def test_a_port_taken_by_another_program_is_refused(tmp_path: Path) -> None:
    settings = private_stack_settings(tmp_path)
    other = LocalStack(settings, only={"redis"}, services=(), say=None)
    occupied = settings.redis_port
    blocker = subprocess.Popen(
        ["redis-server", "--port", str(occupied), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: not port_is_free(occupied), 30, message="blocker redis never listened")
        with pytest.raises(StackError, match=f"{occupied}.*in use by another program"):
            other.up()
    finally:
        blocker.terminate()
        blocker.wait(timeout=30)
    assert other.redis.process.running_pid() is None


def test_status_knows_the_stack_whatever_the_interpreter_is_called(stack: LocalStack) -> None:
    """A stack started by `python` is recognised by a caller that runs as `python3` (the
    `labelloop` command's interpreter): it once mistook MLflow for a stranger and dropped it."""
    other = Path(sys.executable).with_name("python3" if Path(sys.executable).name != "python3" else "python")
    assert other.exists(), f"{other} is missing from the virtual environment"
    result = subprocess.run(
        [str(other), "-m", "labelloop.stack", "status", "--no-services"],
        env={**os.environ, **settings_env(stack.settings)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert stack.mlflow.process.running_pid() is not None, "the pid file must survive"
