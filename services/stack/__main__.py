"""`python -m labelloop.stack fetch|up|down|status` — the commands behind `make setup/up/down/status`.

Reads `StackSettings` from `LABELLOOP_*` (run directory, ports). Exit status: 0 on success;
1 when a component fails to start or stop, or (`status`) when something is not healthy;
2 for a bad setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from labelloop.core.settings import SettingsError, load
from labelloop.stack.kafka_broker import fetch_kafka_jars
from labelloop.stack.local_stack import LocalStack, format_status
from labelloop.stack.process import StackError
from labelloop.stack.settings import StackSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m labelloop.stack", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("fetch", help="fetch the Kafka broker jars with Maven (skipped when present)")
    for name, text in (
        ("up", "start Kafka, Redis, Triton, MLflow and the services; wait until ready"),
        ("down", "stop everything `up` started; leaves no process behind"),
        ("status", "show each component's pid, ports and health; exit 1 if any is down"),
    ):
        command = commands.add_parser(name, help=text)
        command.add_argument(
            "--no-services",
            action="store_true",
            help="only the infrastructure (Kafka, Redis, Triton, MLflow)",
        )
    args = parser.parse_args(argv)
    try:
        settings = load(StackSettings)
        if args.command == "fetch":
            fetch_kafka_jars(Path(settings.kafka_libs_dir).resolve())
            return 0
        stack = LocalStack(settings, services=() if args.no_services else None)
        if args.command == "up":
            stack.up()
            return 0
        if args.command == "down":
            stack.down()
            return 0
        rows = stack.status()
        print(format_status(rows))
        return 0 if all(row.healthy for row in rows) else 1
    except SettingsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except StackError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
