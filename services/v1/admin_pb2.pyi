from labelloop.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ArchiveProjectRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class CreateProjectRequest(_message.Message):
    __slots__ = ("spec",)
    SPEC_FIELD_NUMBER: _ClassVar[int]
    spec: _common_pb2.ProjectSpec
    def __init__(self, spec: _Optional[_Union[_common_pb2.ProjectSpec, _Mapping]] = ...) -> None: ...

class GetProjectRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ListProjectsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListProjectsResponse(_message.Message):
    __slots__ = ("projects",)
    PROJECTS_FIELD_NUMBER: _ClassVar[int]
    projects: _containers.RepeatedCompositeFieldContainer[_common_pb2.Project]
    def __init__(self, projects: _Optional[_Iterable[_Union[_common_pb2.Project, _Mapping]]] = ...) -> None: ...

class GetProjectStatusRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ProjectStatus(_message.Message):
    __slots__ = ("project_id", "ingested", "auto_labeled", "waiting_for_people", "human_labeled", "dead_letters", "serving_version", "threshold", "audits", "audited_precision", "target_precision", "label_upper_thresholds", "label_lower_thresholds")
    class LabelUpperThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class LabelLowerThresholdsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    INGESTED_FIELD_NUMBER: _ClassVar[int]
    AUTO_LABELED_FIELD_NUMBER: _ClassVar[int]
    WAITING_FOR_PEOPLE_FIELD_NUMBER: _ClassVar[int]
    HUMAN_LABELED_FIELD_NUMBER: _ClassVar[int]
    DEAD_LETTERS_FIELD_NUMBER: _ClassVar[int]
    SERVING_VERSION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    AUDITS_FIELD_NUMBER: _ClassVar[int]
    AUDITED_PRECISION_FIELD_NUMBER: _ClassVar[int]
    TARGET_PRECISION_FIELD_NUMBER: _ClassVar[int]
    LABEL_UPPER_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    LABEL_LOWER_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    ingested: int
    auto_labeled: int
    waiting_for_people: int
    human_labeled: int
    dead_letters: int
    serving_version: int
    threshold: float
    audits: int
    audited_precision: float
    target_precision: float
    label_upper_thresholds: _containers.ScalarMap[str, float]
    label_lower_thresholds: _containers.ScalarMap[str, float]
    def __init__(self, project_id: _Optional[str] = ..., ingested: _Optional[int] = ..., auto_labeled: _Optional[int] = ..., waiting_for_people: _Optional[int] = ..., human_labeled: _Optional[int] = ..., dead_letters: _Optional[int] = ..., serving_version: _Optional[int] = ..., threshold: _Optional[float] = ..., audits: _Optional[int] = ..., audited_precision: _Optional[float] = ..., target_precision: _Optional[float] = ..., label_upper_thresholds: _Optional[_Mapping[str, float]] = ..., label_lower_thresholds: _Optional[_Mapping[str, float]] = ...) -> None: ...
