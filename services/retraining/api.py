"""The ModelService gRPC API (proto/labelloop/v1/models.proto): `labelloop model ...` calls it.

Errors map through the core interceptor: NotFound -> NOT_FOUND, FailedPrecondition ->
FAILED_PRECONDITION, InvalidArgument -> INVALID_ARGUMENT, DependencyUnavailable -> UNAVAILABLE.
"""

from __future__ import annotations

from typing import Any

from labelloop.core.errors import InvalidArgument
from labelloop.core.thresholds import Threshold
from labelloop.retraining.service import RetrainingService
from labelloop.v1 import models_pb2, models_pb2_grpc


def _project(request: Any) -> str:
    if not request.project_id:
        raise InvalidArgument("project_id", "is required")
    return str(request.project_id)


def _action_response(
    version: int, triton_version: int, threshold: Threshold
) -> models_pb2.ModelActionResponse:
    return models_pb2.ModelActionResponse(
        version=version,
        triton_version=triton_version,
        threshold=threshold.threshold,
        label_upper_thresholds=threshold.label_upper,
        label_lower_thresholds=threshold.label_lower,
    )


class ModelApi(models_pb2_grpc.ModelServiceServicer):
    """Thin adapter from gRPC messages to RetrainingService."""

    def __init__(self, service: RetrainingService) -> None:
        self.service = service

    def ListModels(
        self, request: models_pb2.ListModelsRequest, context: Any
    ) -> models_pb2.ListModelsResponse:
        pid = _project(request)
        self.service.projects.get(pid)  # NOT_FOUND for an unknown project
        current = self.service.lifecycle.current_threshold(pid)
        out = models_pb2.ListModelsResponse(
            serving_triton_version=self.service.lifecycle.serving_version(pid),
            threshold=current.threshold,
            training=self.service.is_training(pid),
            label_upper_thresholds=current.label_upper,
            label_lower_thresholds=current.label_lower,
        )
        for record in self.service.registry.versions(pid):
            calibrated = Threshold.from_record(record.threshold)
            info = out.versions.add(
                version=record.version,
                family=record.tags.get("family", ""),
                mlflow_run_id=record.run_id,
                aliases=list(record.aliases),
                decision=record.tags.get("decision", ""),
                reason=record.tags.get("reason", ""),
                threshold=calibrated.threshold,
                triton_version=record.triton_version,
                human_labels=int(record.tags.get("human_labels", "0")),
                label_upper_thresholds=calibrated.label_upper,
                label_lower_thresholds=calibrated.label_lower,
            )
            info.metrics.update(record.metrics)
            info.created_at.FromMilliseconds(record.created_ms)
        return out

    def PromoteModel(
        self, request: models_pb2.PromoteModelRequest, context: Any
    ) -> models_pb2.ModelActionResponse:
        pid = _project(request)
        if request.version < 1:
            raise InvalidArgument("version", "must be a registered version number (>= 1)")
        return _action_response(*self.service.lifecycle.promote(pid, int(request.version)))

    def RollbackModel(
        self, request: models_pb2.RollbackModelRequest, context: Any
    ) -> models_pb2.ModelActionResponse:
        return _action_response(*self.service.lifecycle.rollback(_project(request)))

    def RetrainModel(
        self, request: models_pb2.RetrainModelRequest, context: Any
    ) -> models_pb2.RetrainModelResponse:
        labels, running = self.service.request_retrain(_project(request))
        return models_pb2.RetrainModelResponse(human_labels=labels, training_running=running)
