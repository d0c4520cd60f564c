"""Projects: validation of a project's spec, defaults, and durable storage in Redis.

A project is stored as its serialized `labelloop.v1.Project` under `<prefix>:projects` (a hash
keyed by project id). Redis runs with an append-only file, so projects survive restarts of every
service and of Redis. Readers use `ProjectStore.get`, which caches for `cache_s` seconds.

Archiving (`ProjectStore.archive`, called by ingest's `ArchiveProject`) sets the record's
`archived_at` once; ingest then refuses the project's items and retraining, which scans for
archived projects, stops training it and retires its model (retraining/lifecycle.py).
"""

from __future__ import annotations

import threading
import time

import redis

from labelloop.core.errors import AlreadyExists, InvalidArgument, NotFound
from labelloop.core.identifiers import check_label_name, check_model_name, check_project_id
from labelloop.core.redis_store import Keys, unavailable
from labelloop.core.stream import now_timestamp
from labelloop.v1 import common_pb2

DEFAULT_TARGET_PRECISION = 0.95
DEFAULT_ANNOTATORS = 1
DEFAULT_AUDIT_RATE = 0.02
MAX_LABELS = 1000
MAX_LABEL_DESCRIPTION = 1000
"""Characters of one label's description (`ProjectSpec.label_descriptions`)."""
#: The modalities that have a model path (a family that trains them, inference that reads them):
#: a project of another modality is refused at creation instead of dead-lettering every item.
MODEL_MODALITIES = {common_pb2.MODALITY_TEXT: "text", common_pb2.MODALITY_IMAGE: "image"}


def is_archived(project: common_pb2.Project) -> bool:
    """True once the project was archived (`ProjectStore.archive`)."""
    return project.HasField("archived_at")


def is_multi_label(project: common_pb2.Project | common_pb2.ProjectSpec) -> bool:
    """True for a multi-label project (an item carries any subset of the label set)."""
    spec = project.spec if isinstance(project, common_pb2.Project) else project
    return spec.task_type == common_pb2.TASK_TYPE_MULTI_LABEL


def normalize_spec(spec: common_pb2.ProjectSpec) -> common_pb2.ProjectSpec:
    """Validate `spec` and fill defaults; InvalidArgument names the first bad field."""
    out = common_pb2.ProjectSpec()
    out.CopyFrom(spec)
    check_project_id(out.project_id, "spec.project_id")
    if out.modality == common_pb2.MODALITY_UNSPECIFIED:
        out.modality = common_pb2.MODALITY_TEXT
    if out.modality not in MODEL_MODALITIES:
        known = out.modality in common_pb2.Modality.values()
        name = common_pb2.Modality.Name(out.modality).removeprefix("MODALITY_").lower() if known else "?"
        raise InvalidArgument(
            "spec.modality",
            f"{name} ({out.modality}) has no model path yet (no family trains it, inference cannot read it); "
            f"supported: {', '.join(MODEL_MODALITIES.values())}",
        )
    if out.task_type == common_pb2.TASK_TYPE_UNSPECIFIED:
        out.task_type = common_pb2.TASK_TYPE_SINGLE_LABEL
    if out.task_type not in (common_pb2.TASK_TYPE_SINGLE_LABEL, common_pb2.TASK_TYPE_MULTI_LABEL):
        raise InvalidArgument("spec.task_type", f"unknown task type {out.task_type}")
    if out.task_type == common_pb2.TASK_TYPE_MULTI_LABEL and out.modality != common_pb2.MODALITY_TEXT:
        raise InvalidArgument(
            "spec.task_type",
            "multi-label projects are text projects for now (no multi-label model family for "
            f"{common_pb2.Modality.Name(out.modality).removeprefix('MODALITY_').lower()})",
        )
    labels = list(out.labels)
    for label in labels:
        check_label_name(label, "spec.labels")
    if len(set(labels)) != len(labels):
        raise InvalidArgument("spec.labels", "labels must be distinct")
    if not 2 <= len(labels) <= MAX_LABELS:
        raise InvalidArgument("spec.labels", f"need between 2 and {MAX_LABELS} labels, got {len(labels)}")
    for label, text in sorted(out.label_descriptions.items()):
        if label not in labels:
            raise InvalidArgument(
                f"spec.label_descriptions[{label!r}]", f"{label!r} is not a label of the project"
            )
        if len(text) > MAX_LABEL_DESCRIPTION:
            raise InvalidArgument(
                f"spec.label_descriptions[{label!r}]",
                f"at most {MAX_LABEL_DESCRIPTION} characters, got {len(text)}",
            )
        if any(ord(c) < 32 and c not in "\t\n" for c in text):
            raise InvalidArgument(f"spec.label_descriptions[{label!r}]", "control characters are not allowed")
        if not text.strip():
            del out.label_descriptions[label]  # an empty description is no description
    if out.target_precision == 0:
        out.target_precision = DEFAULT_TARGET_PRECISION
    if not 0 < out.target_precision <= 1:
        raise InvalidArgument("spec.target_precision", f"must be in (0, 1], got {out.target_precision}")
    if out.annotators_per_task == 0:
        out.annotators_per_task = DEFAULT_ANNOTATORS
    if not 1 <= out.annotators_per_task <= 15:
        raise InvalidArgument("spec.annotators_per_task", f"must be 1..15, got {out.annotators_per_task}")
    if not out.HasField("audit_rate"):
        out.audit_rate = DEFAULT_AUDIT_RATE
    if not 0 <= out.audit_rate <= 1:
        raise InvalidArgument("spec.audit_rate", f"must be in [0, 1], got {out.audit_rate}")
    if not out.model_name:
        out.model_name = out.project_id
    check_model_name(out.model_name, "spec.model_name")
    return out


# KEYS: projects, model_names ; ARGV: project id, project, model name ; 'ok', 'project' (the id
# is taken) or the project id that owns the model name
_CREATE = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then return 'project' end
local owner = redis.call('HGET', KEYS[2], ARGV[3])
if owner and owner ~= ARGV[1] then return owner end
redis.call('HSET', KEYS[2], ARGV[3], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return 'ok'
"""


class ProjectStore:
    """Durable project registry in Redis, with a short read cache."""

    def __init__(self, client: redis.Redis, key_prefix: str, cache_s: float = 2.0) -> None:
        self.client = client
        self.key = Keys(key_prefix)("projects")
        self.model_names_key = Keys(key_prefix)("model_names")  # hash model name -> project id
        self._create = client.register_script(_CREATE)
        self.cache_s = cache_s
        self._cache: dict[str, tuple[float, common_pb2.Project]] = {}
        self._lock = threading.Lock()

    def create(self, spec: common_pb2.ProjectSpec) -> common_pb2.Project:
        """Store a new project; AlreadyExists if the id is taken or its model name is another
        project's (a model name is unique per deployment: it names the Triton model and its
        directory, the registered model and its versions). Both are claimed in one script."""
        project = common_pb2.Project(spec=normalize_spec(spec), created_at=now_timestamp())
        project_id, model_name = project.spec.project_id, project.spec.model_name
        owner = next((p.spec.project_id for p in self.list() if p.spec.model_name == model_name), None)
        if owner is not None and owner != project_id:  # projects from before model names were claimed
            raise AlreadyExists(f"model name {model_name!r} is used by project {owner!r}")
        try:
            outcome = self._create(
                keys=[self.key, self.model_names_key],
                args=[project_id, project.SerializeToString(), model_name],
            )
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        if outcome == "project":
            raise AlreadyExists(f"project {project_id!r} already exists")
        if outcome != "ok":
            raise AlreadyExists(f"model name {model_name!r} is used by project {outcome!r}")
        return project

    def get(self, project_id: str, *, fresh: bool = False) -> common_pb2.Project:
        """The project (`fresh`: read from Redis, not the cache); NotFound when unknown."""
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(project_id)
        if hit and now - hit[0] < self.cache_s and not fresh:
            return hit[1]
        try:
            raw = self.client.hget(self.key, project_id)
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        if raw is None:
            raise NotFound(f"project {project_id!r} does not exist")
        project = common_pb2.Project()
        project.ParseFromString(raw)  # type: ignore[arg-type]
        with self._lock:
            self._cache[project_id] = (now, project)
        return project

    def archive(self, project_id: str) -> common_pb2.Project:
        """Mark the project archived (its first `archived_at` is kept: idempotent); the project.
        NotFound when unknown. Optimistic (WATCH): a concurrent write of the record retries."""
        key = self.key
        while True:
            try:
                with self.client.pipeline() as pipe:
                    pipe.watch(key)
                    raw = pipe.hget(key, project_id)
                    if raw is None:
                        raise NotFound(f"project {project_id!r} does not exist")
                    project = common_pb2.Project()
                    project.ParseFromString(raw)  # type: ignore[arg-type]
                    if not is_archived(project):
                        project.archived_at.CopyFrom(now_timestamp())
                        pipe.multi()
                        pipe.hset(key, project_id, project.SerializeToString())
                        pipe.execute()
                    break
            except redis.WatchError:
                continue
            except redis.RedisError as exc:
                raise unavailable(exc) from exc
        with self._lock:
            self._cache[project_id] = (time.monotonic(), project)
        return project

    def list(self) -> list[common_pb2.Project]:
        """Every project, sorted by id."""
        try:
            raw = self.client.hgetall(self.key)
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        projects = []
        for value in raw.values():  # type: ignore[union-attr]
            project = common_pb2.Project()
            project.ParseFromString(value)
            projects.append(project)
        return sorted(projects, key=lambda p: p.spec.project_id)
