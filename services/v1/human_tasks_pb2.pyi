import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from labelloop.v1 import common_pb2 as _common_pb2
from labelloop.v1 import events_pb2 as _events_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class LeaseTaskRequest(_message.Message):
    __slots__ = ("project_id", "annotator_id")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    annotator_id: str
    def __init__(self, project_id: _Optional[str] = ..., annotator_id: _Optional[str] = ...) -> None: ...

class LeaseTaskResponse(_message.Message):
    __slots__ = ("has_task", "task", "lease_id", "lease_expires_at")
    HAS_TASK_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    LEASE_EXPIRES_AT_FIELD_NUMBER: _ClassVar[int]
    has_task: bool
    task: _events_pb2.TaskRouted
    lease_id: str
    lease_expires_at: _timestamp_pb2.Timestamp
    def __init__(self, has_task: _Optional[bool] = ..., task: _Optional[_Union[_events_pb2.TaskRouted, _Mapping]] = ..., lease_id: _Optional[str] = ..., lease_expires_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class SubmitAnnotationRequest(_message.Message):
    __slots__ = ("lease_id", "annotator_id", "labels", "spans", "boxes")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    annotator_id: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    spans: _containers.RepeatedCompositeFieldContainer[_common_pb2.Span]
    boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Box]
    def __init__(self, lease_id: _Optional[str] = ..., annotator_id: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., spans: _Optional[_Iterable[_Union[_common_pb2.Span, _Mapping]]] = ..., boxes: _Optional[_Iterable[_Union[_common_pb2.Box, _Mapping]]] = ...) -> None: ...

class SubmitAnnotationResponse(_message.Message):
    __slots__ = ("finalized", "duplicate")
    FINALIZED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    finalized: bool
    duplicate: bool
    def __init__(self, finalized: _Optional[bool] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class ReleaseTaskRequest(_message.Message):
    __slots__ = ("lease_id", "annotator_id")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    annotator_id: str
    def __init__(self, lease_id: _Optional[str] = ..., annotator_id: _Optional[str] = ...) -> None: ...

class ReleaseTaskResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetQueueStatsRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class QueueStats(_message.Message):
    __slots__ = ("project_id", "queued", "leased", "oldest_age_s", "annotations")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    QUEUED_FIELD_NUMBER: _ClassVar[int]
    LEASED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_AGE_S_FIELD_NUMBER: _ClassVar[int]
    ANNOTATIONS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    queued: int
    leased: int
    oldest_age_s: float
    annotations: int
    def __init__(self, project_id: _Optional[str] = ..., queued: _Optional[int] = ..., leased: _Optional[int] = ..., oldest_age_s: _Optional[float] = ..., annotations: _Optional[int] = ...) -> None: ...

class GetTaskMediaRequest(_message.Message):
    __slots__ = ("lease_id", "annotator_id")
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    lease_id: str
    annotator_id: str
    def __init__(self, lease_id: _Optional[str] = ..., annotator_id: _Optional[str] = ...) -> None: ...

class TaskMedia(_message.Message):
    __slots__ = ("data", "content_type", "sha256")
    DATA_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    content_type: str
    sha256: str
    def __init__(self, data: _Optional[bytes] = ..., content_type: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...
