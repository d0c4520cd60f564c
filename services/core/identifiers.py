"""The shapes of every identifier Labelloop builds keys, paths or metric labels from, in one place.

Each pattern is applied with `re.fullmatch` (a `$` would accept a trailing newline) and is what
every store that receives the id accepts:
- project ids become parts of Redis keys (never containing ':'), Kafka keys
  (`<project>/<item id>`, never containing '/'), MLflow experiment names and metric labels;
- model names become directories of the Triton model repository and registered-model names:
  no path separators, no leading '.', so never `.` or `..`;
- label names become MLflow parameter keys (`labels.<name>`) and are joined with ',' in the
  final-label fence: letters, digits, '_', '-', '.', inner spaces;
- lease ids are what `TaskQueue.lease` hands out (32 hex digits).
Item ids are free-form (see ingest/validation.py) and only ever used as hash fields, set members
or after a fixed namespace in a key (core/queues.py), so they need no pattern.
"""

from __future__ import annotations

import re

from labelloop.core.errors import InvalidArgument

PROJECT_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
LABEL_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_.-]| (?=[A-Za-z0-9_.-])){0,99}")
LEASE_ID = re.compile(r"[0-9a-f]{32}")

PROJECT_ID_RULE = "1-64 of lowercase letters, digits, '-', '_', starting with a letter or digit"
MODEL_NAME_RULE = "1-128 of letters, digits, '_', '-', '.', starting with a letter or digit"
LABEL_NAME_RULE = (
    "1-100 of letters, digits, '_', '-', '.' and single inner spaces, starting with a letter or digit"
)


def is_project_id(value: str) -> bool:
    """True when `value` is a well-formed project id."""
    return PROJECT_ID.fullmatch(value) is not None


def check_project_id(value: str, field: str = "project_id") -> str:
    """`value`, or InvalidArgument naming `field`."""
    if not is_project_id(value):
        raise InvalidArgument(field, f"{value!r} is not a valid project id ({PROJECT_ID_RULE})")
    return value


def check_model_name(value: str, field: str = "model_name") -> str:
    """`value`, or InvalidArgument naming `field` (a path-safe Triton model name)."""
    if MODEL_NAME.fullmatch(value) is None:
        raise InvalidArgument(field, f"{value!r} is not a valid model name ({MODEL_NAME_RULE})")
    return value


def check_label_name(value: str, field: str = "labels") -> str:
    """`value`, or InvalidArgument naming `field`."""
    if LABEL_NAME.fullmatch(value) is None:
        raise InvalidArgument(field, f"{value!r} is not a valid label name ({LABEL_NAME_RULE})")
    return value


def check_lease_id(value: str, field: str = "lease_id") -> str:
    """`value`, or InvalidArgument naming `field`."""
    if LEASE_ID.fullmatch(value) is None:
        raise InvalidArgument(field, f"{value!r} is not a lease id (32 hex digits, as LeaseTask returns)")
    return value
