"""`model_repository.load_and_wait` against a fake Triton client: a model retired while it loads
ends the wait at once instead of after the whole timeout (the retraining worker waited 120 s in a
bench run whose model was retired mid-deploy, and every other project's training waited with it)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import tritonclient.grpc as grpcclient

from labelloop.core import model_repository
from labelloop.core.model_repository import ModelLoadError


class FakeTriton:
    """Answers load_model at once and the repository index from a script, one listing per call
    (the last one repeats)."""

    def __init__(self, listings: list[list[dict[str, str]]]) -> None:
        self.listings = listings
        self.calls = 0

    def load_model(self, name: str, client_timeout: float | None = None) -> None:
        pass

    def get_model_repository_index(self, as_json: bool = False) -> dict[str, Any]:
        listing = self.listings[min(self.calls, len(self.listings) - 1)]
        self.calls += 1
        return {"models": listing}

    def close(self) -> None:
        pass


@pytest.fixture
def triton(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(listings: list[list[dict[str, str]]]) -> FakeTriton:
        fake = FakeTriton(listings)
        monkeypatch.setattr(grpcclient, "InferenceServerClient", lambda url: fake)
        return fake

    monkeypatch.setattr(model_repository, "GONE_GRACE_S", 0.2)
    return install


def test_a_model_retired_while_loading_ends_the_wait(triton: Any) -> None:
    triton([[{"name": "other", "version": "1", "state": "READY"}]])
    started = time.monotonic()
    with pytest.raises(ModelLoadError, match="left the model repository"):
        model_repository.load_and_wait("triton:1", "m", timeout=60.0)
    assert time.monotonic() - started < 10.0  # the grace, not the 60 s timeout


def test_a_listing_caught_mid_load_is_waited_for(triton: Any) -> None:
    fake = triton(
        [
            [],  # not listed for one look
            [{"name": "m", "version": "3", "state": "LOADING"}],
            [
                {"name": "m", "version": "2", "state": "READY"},
                {"name": "m", "version": "3", "state": "READY"},
            ],
        ]
    )
    assert model_repository.load_and_wait("triton:1", "m", timeout=60.0) == 3
    assert fake.calls == 3


def test_a_model_that_stays_unavailable_times_out(triton: Any) -> None:
    triton([[{"name": "m", "version": "3", "state": "UNAVAILABLE", "reason": "unloaded"}]])
    with pytest.raises(ModelLoadError, match="not ready after 1s"):
        model_repository.load_and_wait("triton:1", "m", timeout=1.0)
