"""The local stack's own credentials: random values written once to files under the run
directory (mode 0600) and reused on every start, so a stack restarted with `make up` keeps its
Redis password, Kafka SASL password and admin API token.

| file | what | who reads it |
|---|---|---|
| `<stack_dir>/admin.token` | the admin API token | services (`LABELLOOP_ADMIN_TOKEN`), CLI/bench/demo (`LABELLOOP_TOKEN_FILE`) |
| `<stack_dir>/redis.password` | Redis `requirepass` | services (`LABELLOOP_REDIS_PASSWORD`), CLI (`LABELLOOP_REDIS_PASSWORD_FILE`) |
| `<stack_dir>/kafka.password` | SASL password of Kafka user `labelloop` | services (`LABELLOOP_KAFKA_PASSWORD`), CLI (`LABELLOOP_KAFKA_PASSWORD_FILE`) |
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path


def stack_secret(path: Path, make: Callable[[], str] = lambda: secrets.token_urlsafe(24)) -> str:
    """The secret stored in `path`, created with `make()` (file mode 0600) the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process wrote it first
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(make() + "\n")
    return path.read_text().strip()
