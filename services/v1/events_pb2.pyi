import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from labelloop.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnswerStage(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ANSWER_STAGE_UNSPECIFIED: _ClassVar[AnswerStage]
    ANSWER_STAGE_FAST: _ClassVar[AnswerStage]
    ANSWER_STAGE_ENCODER: _ClassVar[AnswerStage]

class TaskReason(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TASK_REASON_UNSPECIFIED: _ClassVar[TaskReason]
    TASK_REASON_NO_MODEL: _ClassVar[TaskReason]
    TASK_REASON_UNCERTAIN: _ClassVar[TaskReason]
    TASK_REASON_AUDIT: _ClassVar[TaskReason]
    TASK_REASON_EXPLORATION: _ClassVar[TaskReason]
    TASK_REASON_REVIEW: _ClassVar[TaskReason]

class ModelEventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    MODEL_EVENT_KIND_UNSPECIFIED: _ClassVar[ModelEventKind]
    MODEL_EVENT_KIND_TRAINED: _ClassVar[ModelEventKind]
    MODEL_EVENT_KIND_PROMOTED: _ClassVar[ModelEventKind]
    MODEL_EVENT_KIND_REJECTED: _ClassVar[ModelEventKind]
    MODEL_EVENT_KIND_DEPLOYED: _ClassVar[ModelEventKind]
    MODEL_EVENT_KIND_LOAD_FAILED: _ClassVar[ModelEventKind]
    MODEL_EVENT_KIND_ROLLED_BACK: _ClassVar[ModelEventKind]
    MODEL_EVENT_KIND_THRESHOLD_UPDATED: _ClassVar[ModelEventKind]
    MODEL_EVENT_KIND_TRAINING_FAILED: _ClassVar[ModelEventKind]
    MODEL_EVENT_KIND_RETIRED: _ClassVar[ModelEventKind]
ANSWER_STAGE_UNSPECIFIED: AnswerStage
ANSWER_STAGE_FAST: AnswerStage
ANSWER_STAGE_ENCODER: AnswerStage
TASK_REASON_UNSPECIFIED: TaskReason
TASK_REASON_NO_MODEL: TaskReason
TASK_REASON_UNCERTAIN: TaskReason
TASK_REASON_AUDIT: TaskReason
TASK_REASON_EXPLORATION: TaskReason
TASK_REASON_REVIEW: TaskReason
MODEL_EVENT_KIND_UNSPECIFIED: ModelEventKind
MODEL_EVENT_KIND_TRAINED: ModelEventKind
MODEL_EVENT_KIND_PROMOTED: ModelEventKind
MODEL_EVENT_KIND_REJECTED: ModelEventKind
MODEL_EVENT_KIND_DEPLOYED: ModelEventKind
MODEL_EVENT_KIND_LOAD_FAILED: ModelEventKind
MODEL_EVENT_KIND_ROLLED_BACK: ModelEventKind
MODEL_EVENT_KIND_THRESHOLD_UPDATED: ModelEventKind
MODEL_EVENT_KIND_TRAINING_FAILED: ModelEventKind
MODEL_EVENT_KIND_RETIRED: ModelEventKind

class ItemIngested(_message.Message):
    __slots__ = ("item", "ingested_at", "channel", "arrival", "rescore")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    INGESTED_AT_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ARRIVAL_FIELD_NUMBER: _ClassVar[int]
    RESCORE_FIELD_NUMBER: _ClassVar[int]
    item: _common_pb2.Item
    ingested_at: _timestamp_pb2.Timestamp
    channel: str
    arrival: Arrival
    rescore: Rescore
    def __init__(self, item: _Optional[_Union[_common_pb2.Item, _Mapping]] = ..., ingested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., channel: _Optional[str] = ..., arrival: _Optional[_Union[Arrival, _Mapping]] = ..., rescore: _Optional[_Union[Rescore, _Mapping]] = ...) -> None: ...

class Arrival(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Rescore(_message.Message):
    __slots__ = ("requested_at",)
    REQUESTED_AT_FIELD_NUMBER: _ClassVar[int]
    requested_at: _timestamp_pb2.Timestamp
    def __init__(self, requested_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("ingested", "model_name", "model_version", "scores", "no_model", "predicted_at", "answered_by", "votes")
    INGESTED_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    NO_MODEL_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_AT_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    VOTES_FIELD_NUMBER: _ClassVar[int]
    ingested: ItemIngested
    model_name: str
    model_version: int
    scores: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassScore]
    no_model: bool
    predicted_at: _timestamp_pb2.Timestamp
    answered_by: AnswerStage
    votes: _containers.RepeatedCompositeFieldContainer[SourceVote]
    def __init__(self, ingested: _Optional[_Union[ItemIngested, _Mapping]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., scores: _Optional[_Iterable[_Union[_common_pb2.ClassScore, _Mapping]]] = ..., no_model: _Optional[bool] = ..., predicted_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., answered_by: _Optional[_Union[AnswerStage, str]] = ..., votes: _Optional[_Iterable[_Union[SourceVote, _Mapping]]] = ...) -> None: ...

class SourceVote(_message.Message):
    __slots__ = ("source", "label", "version")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    source: str
    label: str
    version: int
    def __init__(self, source: _Optional[str] = ..., label: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class VoteCast(_message.Message):
    __slots__ = ("project_id", "item_id", "vote", "cast_at", "prediction")
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    VOTE_FIELD_NUMBER: _ClassVar[int]
    CAST_AT_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    item_id: str
    vote: SourceVote
    cast_at: _timestamp_pb2.Timestamp
    prediction: Prediction
    def __init__(self, project_id: _Optional[str] = ..., item_id: _Optional[str] = ..., vote: _Optional[_Union[SourceVote, _Mapping]] = ..., cast_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ...) -> None: ...

class TaskRouted(_message.Message):
    __slots__ = ("task_id", "ingested", "prediction", "reason", "priority", "annotators_required", "routed_at", "enqueue", "withdraw", "answer_probability", "review_of", "uncertain_labels", "audited_labels")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    INGESTED_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    ANNOTATORS_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    ROUTED_AT_FIELD_NUMBER: _ClassVar[int]
    ENQUEUE_FIELD_NUMBER: _ClassVar[int]
    WITHDRAW_FIELD_NUMBER: _ClassVar[int]
    ANSWER_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    REVIEW_OF_FIELD_NUMBER: _ClassVar[int]
    UNCERTAIN_LABELS_FIELD_NUMBER: _ClassVar[int]
    AUDITED_LABELS_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    ingested: ItemIngested
    prediction: Prediction
    reason: TaskReason
    priority: float
    annotators_required: int
    routed_at: _timestamp_pb2.Timestamp
    enqueue: Enqueue
    withdraw: Withdrawal
    answer_probability: float
    review_of: ReviewOf
    uncertain_labels: _containers.RepeatedScalarFieldContainer[str]
    audited_labels: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, task_id: _Optional[str] = ..., ingested: _Optional[_Union[ItemIngested, _Mapping]] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ..., reason: _Optional[_Union[TaskReason, str]] = ..., priority: _Optional[float] = ..., annotators_required: _Optional[int] = ..., routed_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., enqueue: _Optional[_Union[Enqueue, _Mapping]] = ..., withdraw: _Optional[_Union[Withdrawal, _Mapping]] = ..., answer_probability: _Optional[float] = ..., review_of: _Optional[_Union[ReviewOf, _Mapping]] = ..., uncertain_labels: _Optional[_Iterable[str]] = ..., audited_labels: _Optional[_Iterable[str]] = ...) -> None: ...

class ReviewOf(_message.Message):
    __slots__ = ("labels", "annotators")
    LABELS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    labels: _containers.RepeatedScalarFieldContainer[str]
    annotators: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, labels: _Optional[_Iterable[str]] = ..., annotators: _Optional[_Iterable[str]] = ...) -> None: ...

class Enqueue(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Withdrawal(_message.Message):
    __slots__ = ("label", "audit")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    label: LabelFinalized
    audit: TaskRouted
    def __init__(self, label: _Optional[_Union[LabelFinalized, _Mapping]] = ..., audit: _Optional[_Union[TaskRouted, _Mapping]] = ...) -> None: ...

class AnnotationSubmitted(_message.Message):
    __slots__ = ("task_id", "item_id", "project_id", "annotator_id", "labels", "lease_id", "audit", "audited_labels", "duration_ms", "annotated_at", "reason", "answer_probability", "model_version", "predicted_label", "predicted_confidence", "consensus_labels", "reviewed_labels", "reviewed_annotators", "spans", "boxes", "consensus_no_label", "predicted_scores")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    ANNOTATOR_ID_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    LEASE_ID_FIELD_NUMBER: _ClassVar[int]
    AUDIT_FIELD_NUMBER: _ClassVar[int]
    AUDITED_LABELS_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    ANNOTATED_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    ANSWER_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_LABEL_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_LABELS_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_LABELS_FIELD_NUMBER: _ClassVar[int]
    REVIEWED_ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    CONSENSUS_NO_LABEL_FIELD_NUMBER: _ClassVar[int]
    PREDICTED_SCORES_FIELD_NUMBER: _ClassVar[int]
    task_id: str
    item_id: str
    project_id: str
    annotator_id: str
    labels: _containers.RepeatedScalarFieldContainer[str]
    lease_id: str
    audit: bool
    audited_labels: _containers.RepeatedScalarFieldContainer[str]
    duration_ms: int
    annotated_at: _timestamp_pb2.Timestamp
    reason: TaskReason
    answer_probability: float
    model_version: int
    predicted_label: str
    predicted_confidence: float
    consensus_labels: _containers.RepeatedScalarFieldContainer[str]
    reviewed_labels: _containers.RepeatedScalarFieldContainer[str]
    reviewed_annotators: _containers.RepeatedScalarFieldContainer[str]
    spans: _containers.RepeatedCompositeFieldContainer[_common_pb2.Span]
    boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Box]
    consensus_no_label: bool
    predicted_scores: _containers.RepeatedCompositeFieldContainer[_common_pb2.ClassScore]
    def __init__(self, task_id: _Optional[str] = ..., item_id: _Optional[str] = ..., project_id: _Optional[str] = ..., annotator_id: _Optional[str] = ..., labels: _Optional[_Iterable[str]] = ..., lease_id: _Optional[str] = ..., audit: _Optional[bool] = ..., audited_labels: _Optional[_Iterable[str]] = ..., duration_ms: _Optional[int] = ..., annotated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reason: _Optional[_Union[TaskReason, str]] = ..., answer_probability: _Optional[float] = ..., model_version: _Optional[int] = ..., predicted_label: _Optional[str] = ..., predicted_confidence: _Optional[float] = ..., consensus_labels: _Optional[_Iterable[str]] = ..., reviewed_labels: _Optional[_Iterable[str]] = ..., reviewed_annotators: _Optional[_Iterable[str]] = ..., spans: _Optional[_Iterable[_Union[_common_pb2.Span, _Mapping]]] = ..., boxes: _Optional[_Iterable[_Union[_common_pb2.Box, _Mapping]]] = ..., consensus_no_label: _Optional[bool] = ..., predicted_scores: _Optional[_Iterable[_Union[_common_pb2.ClassScore, _Mapping]]] = ...) -> None: ...

class LabelFinalized(_message.Message):
    __slots__ = ("ingested", "labels", "source", "confidence", "model_name", "model_version", "annotators", "finalized_at", "threshold", "answer_probability", "audited", "spans", "boxes")
    INGESTED_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    ANNOTATORS_FIELD_NUMBER: _ClassVar[int]
    FINALIZED_AT_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ANSWER_PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    AUDITED_FIELD_NUMBER: _ClassVar[int]
    SPANS_FIELD_NUMBER: _ClassVar[int]
    BOXES_FIELD_NUMBER: _ClassVar[int]
    ingested: ItemIngested
    labels: _containers.RepeatedScalarFieldContainer[str]
    source: _common_pb2.LabelSource
    confidence: float
    model_name: str
    model_version: int
    annotators: _containers.RepeatedScalarFieldContainer[str]
    finalized_at: _timestamp_pb2.Timestamp
    threshold: float
    answer_probability: float
    audited: bool
    spans: _containers.RepeatedCompositeFieldContainer[_common_pb2.Span]
    boxes: _containers.RepeatedCompositeFieldContainer[_common_pb2.Box]
    def __init__(self, ingested: _Optional[_Union[ItemIngested, _Mapping]] = ..., labels: _Optional[_Iterable[str]] = ..., source: _Optional[_Union[_common_pb2.LabelSource, str]] = ..., confidence: _Optional[float] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., annotators: _Optional[_Iterable[str]] = ..., finalized_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., threshold: _Optional[float] = ..., answer_probability: _Optional[float] = ..., audited: _Optional[bool] = ..., spans: _Optional[_Iterable[_Union[_common_pb2.Span, _Mapping]]] = ..., boxes: _Optional[_Iterable[_Union[_common_pb2.Box, _Mapping]]] = ...) -> None: ...

class ModelEvent(_message.Message):
    __slots__ = ("project_id", "kind", "model_name", "model_version", "family", "mlflow_run_id", "metrics", "threshold", "class_thresholds", "reason", "at", "label_upper_thresholds", "label_lower_thresholds")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class ClassThresholdsEntry(_message.Message):
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
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    MODEL_NAME_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    MLFLOW_RUN_ID_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    CLASS_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    LABEL_UPPER_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    LABEL_LOWER_THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    project_id: str
    kind: ModelEventKind
    model_name: str
    model_version: int
    family: str
    mlflow_run_id: str
    metrics: _containers.ScalarMap[str, float]
    threshold: float
    class_thresholds: _containers.ScalarMap[str, float]
    reason: str
    at: _timestamp_pb2.Timestamp
    label_upper_thresholds: _containers.ScalarMap[str, float]
    label_lower_thresholds: _containers.ScalarMap[str, float]
    def __init__(self, project_id: _Optional[str] = ..., kind: _Optional[_Union[ModelEventKind, str]] = ..., model_name: _Optional[str] = ..., model_version: _Optional[int] = ..., family: _Optional[str] = ..., mlflow_run_id: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., threshold: _Optional[float] = ..., class_thresholds: _Optional[_Mapping[str, float]] = ..., reason: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., label_upper_thresholds: _Optional[_Mapping[str, float]] = ..., label_lower_thresholds: _Optional[_Mapping[str, float]] = ...) -> None: ...

class DeadLetter(_message.Message):
    __slots__ = ("source_topic", "source_partition", "source_offset", "key", "value", "reason", "service", "error_type", "at")
    SOURCE_TOPIC_FIELD_NUMBER: _ClassVar[int]
    SOURCE_PARTITION_FIELD_NUMBER: _ClassVar[int]
    SOURCE_OFFSET_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes
    value: bytes
    reason: str
    service: str
    error_type: str
    at: _timestamp_pb2.Timestamp
    def __init__(self, source_topic: _Optional[str] = ..., source_partition: _Optional[int] = ..., source_offset: _Optional[int] = ..., key: _Optional[bytes] = ..., value: _Optional[bytes] = ..., reason: _Optional[str] = ..., service: _Optional[str] = ..., error_type: _Optional[str] = ..., at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
