import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListModelsRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ModelVersionInfo(_message.Message):
    __slots__ = ("version", "family", "mlflow_run_id", "aliases", "metrics", "decision", "reason", "threshold", "triton_version", "human_labels", "created_at", "label_upper_thresholds", "label_lower_thresholds")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
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
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TRITON_VERSION_FIELD_NUMBER: _ClassVar[int]
    HUMAN_LABELS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LABEL_UPPER_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    LABEL_LOWER_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    version: int
    family: str
    mlflow_run_id: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    metrics: _containers.ScalarMap[str, float]
    decision: str
    reason: str
    threshold: float
    triton_version: int
    human_labels: int
    created_at: _timestamp_pb2.Timestamp
    label_upper_thresholds: _containers.ScalarMap[str, float]
    label_lower_thresholds: _containers.ScalarMap[str, float]
    def __init__(self, version: _Optional[int] = ..., family: _Optional[str] = ..., mlflow_run_id: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., metrics: _Optional[_Mapping[str, float]] = ..., decision: _Optional[str] = ..., reason: _Optional[str] = ..., threshold: _Optional[float] = ..., triton_version: _Optional[int] = ..., human_labels: _Optional[int] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., label_upper_thresholds: _Optional[_Mapping[str, float]] = ..., label_lower_thresholds: _Optional[_Mapping[str, float]] = ...) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("versions", "serving_triton_version", "threshold", "training", "label_upper_thresholds", "label_lower_thresholds")
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
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    SERVING_TRITON_VERSION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    TRAINING_FIELD_NUMBER: _ClassVar[int]
    LABEL_UPPER_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    LABEL_LOWER_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[ModelVersionInfo]
    serving_triton_version: int
    threshold: float
    training: bool
    label_upper_thresholds: _containers.ScalarMap[str, float]
    label_lower_thresholds: _containers.ScalarMap[str, float]
    def __init__(self, versions: _Optional[_Iterable[_Union[ModelVersionInfo, _Mapping]]] = ..., serving_triton_version: _Optional[int] = ..., threshold: _Optional[float] = ..., training: _Optional[bool] = ..., label_upper_thresholds: _Optional[_Mapping[str, float]] = ..., label_lower_thresholds: _Optional[_Mapping[str, float]] = ...) -> None: ...

class PromoteModelRequest(_message.Message):
    __slots__ = ("project_id", "version")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    version: int
    def __init__(self, project_id: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class RollbackModelRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class ModelActionResponse(_message.Message):
    __slots__ = ("version", "triton_version", "threshold", "label_upper_thresholds", "label_lower_thresholds")
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
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TRITON_VERSION_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    LABEL_UPPER_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    LABEL_LOWER_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    version: int
    triton_version: int
    threshold: float
    label_upper_thresholds: _containers.ScalarMap[str, float]
    label_lower_thresholds: _containers.ScalarMap[str, float]
    def __init__(self, version: _Optional[int] = ..., triton_version: _Optional[int] = ..., threshold: _Optional[float] = ..., label_upper_thresholds: _Optional[_Mapping[str, float]] = ..., label_lower_thresholds: _Optional[_Mapping[str, float]] = ...) -> None: ...

class RetrainModelRequest(_message.Message):
    __slots__ = ("project_id",)
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    def __init__(self, project_id: _Optional[str] = ...) -> None: ...

class RetrainModelResponse(_message.Message):
    __slots__ = ("human_labels", "training_running")
    HUMAN_LABELS_FIELD_NUMBER: _ClassVar[int]
    TRAINING_RUNNING_FIELD_NUMBER: _ClassVar[int]
    human_labels: int
    training_running: bool
    def __init__(self, human_labels: _Optional[int] = ..., training_running: _Optional[bool] = ...) -> None: ...
