"""`Registry.by_alias`: only "not found" reads as "no such version"; any other MLflow error is an
outage (DependencyUnavailable), so the gate never promotes without comparing to the champion."""

from __future__ import annotations

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

from labelloop.core.errors import DependencyUnavailable
from labelloop.retraining.registry import Registry


class Raising:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def get_model_version_by_alias(self, name: str, alias: str):
        raise self.exc


def registry(exc: Exception) -> Registry:
    out = Registry.__new__(Registry)
    out.prefix = "t"
    out.client = Raising(exc)  # type: ignore[assignment]
    return out


@pytest.mark.parametrize(
    "exc",
    [
        MlflowException("Registered model alias champion not found.", databricks_pb2.INVALID_PARAMETER_VALUE),
        MlflowException("Registered Model with name=t.p not found", databricks_pb2.RESOURCE_DOES_NOT_EXIST),
    ],
)
def test_not_found_is_no_champion(exc: Exception) -> None:
    assert registry(exc).by_alias("p", "champion") is None


@pytest.mark.parametrize(
    "exc",
    [
        MlflowException("database is locked", databricks_pb2.INTERNAL_ERROR),
        MlflowException("bad alias name", databricks_pb2.INVALID_PARAMETER_VALUE),
        MlflowException("API request failed: 503", databricks_pb2.TEMPORARILY_UNAVAILABLE),
    ],
)
def test_any_other_mlflow_error_is_an_outage(exc: Exception) -> None:
    with pytest.raises(DependencyUnavailable, match="mlflow"):
        registry(exc).by_alias("p", "champion")
