"""The local Redis: Debian's `redis-server`, bound to 127.0.0.1, append-only file in its data dir,
with a password (`requirepass`, kept in `<stack_dir>/redis.password`; the config file that
carries it is written mode 0600, so the password never appears on a command line)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from labelloop.stack.process import ManagedProcess
from labelloop.stack.secrets import stack_secret
from labelloop.stack.settings import StackSettings


class RedisServer:
    """Redis on 127.0.0.1:`redis_port`; layout `<stack_dir>/redis/{data/,redis.log,redis.pid}`; ready on PING."""

    name = "redis"

    def __init__(self, settings: StackSettings, stack_dir: Path) -> None:
        self.port = settings.redis_port
        self.home = stack_dir / self.name
        self.data_dir = self.home / "data"
        self.password_file = stack_dir / "redis.password"
        self.config_file = self.home / "redis.conf"
        server = shutil.which("redis-server") or "redis-server"
        self.process = ManagedProcess(
            self.name,
            [
                server,
                str(self.config_file),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.data_dir),
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--logfile",
                "",
            ],
            dict(os.environ),
            self.home / "redis.log",
            self.is_ready,
            ports=(self.port,),
            prepare=self._prepare,
            start_timeout_s=settings.start_timeout_s,
            stop_timeout_s=settings.stop_timeout_s,
        )

    @property
    def password(self) -> str:
        return stack_secret(self.password_file)

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(f'requirepass "{self.password}"\n')

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def is_ready(self) -> bool:
        """True when Redis answers PING."""
        import redis

        client = redis.Redis(
            host="127.0.0.1",
            port=self.port,
            password=self.password,
            socket_timeout=2,
            socket_connect_timeout=2,
        )
        try:
            return bool(client.ping())
        finally:
            client.close()
