"""What a failed Triton request means (core/triton_client.py): the model rejecting one input is
poison for that input (the stream loop isolates and dead-letters it: test_events.py
`test_a_handler_failure_dead_letters_only_the_failing_event`); Triton down or the model failing
on everything is an outage (pause and retry), as before. Before, every failure was an outage,
so one bad input stalled its partition forever."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from labelloop.core.errors import DependencyUnavailable, PoisonMessage
from labelloop.core.triton_client import TritonClassifier


class FakeTriton:
    """Answers like tritonclient.grpc.InferenceServerClient for a 2-class model."""

    def __init__(self, *, broken: bool = False, status: str = "StatusCode.INTERNAL") -> None:
        self.broken = broken
        self.status = status

    def is_model_ready(self, name: str, client_timeout: float) -> bool:
        return True

    def get_model_metadata(self, name: str, as_json: bool, client_timeout: float) -> dict:
        return {"outputs": [{"name": "PROBS"}]}

    def _answer(self, inputs) -> object:
        texts = [row[0] for row in inputs[0]._data]
        if self.broken or any(b"POISON" in t for t in texts):
            raise InferenceServerException("bad TEXT input: no", status=self.status)
        probs = np.tile(np.array([[0.3, 0.7]], dtype=np.float32), (len(texts), 1))
        return SimpleNamespace(
            as_numpy=lambda _name: probs, get_response=lambda: SimpleNamespace(model_version="1")
        )

    def async_infer(self, model, inputs, callback, outputs, client_timeout, model_version="") -> None:
        try:
            callback(result=self._answer(inputs), error=None)
        except InferenceServerException as exc:
            callback(result=None, error=exc)

    def infer(self, model, inputs, outputs, client_timeout, model_version="") -> object:
        return self._answer(inputs)


def classifier(fake: FakeTriton) -> TritonClassifier:
    out = TritonClassifier.__new__(TritonClassifier)
    out.url, out.timeout_s, out.model_check_s, out._ready, out._outputs = "fake", 5.0, 2.0, {}, {}
    out.client = fake  # type: ignore[assignment]
    return out


@pytest.fixture(autouse=True)
def keep_inputs(monkeypatch) -> None:
    """Let the fake read what was sent (InferInput keeps its numpy data only serialized)."""
    import tritonclient.grpc as triton

    original = triton.InferInput.set_data_from_numpy

    def remember(self, data):
        self._data = data
        return original(self, data)

    monkeypatch.setattr(triton.InferInput, "set_data_from_numpy", remember)


def test_good_inputs_are_answered() -> None:
    answer = classifier(FakeTriton()).predict("m", ["a", "b", "c"], batch_size=2)
    assert answer.probabilities.shape == (3, 2) and answer.model_version == 1


def test_an_input_the_model_rejects_is_poison() -> None:
    with pytest.raises(PoisonMessage) as info:
        classifier(FakeTriton()).predict("m", ["fine", "POISON"], batch_size=8)
    assert info.value.error_type == "InferenceError" and "bad TEXT input" in info.value.reason


def test_a_model_that_fails_on_everything_is_an_outage() -> None:
    with pytest.raises(DependencyUnavailable, match="probe"):
        classifier(FakeTriton(broken=True)).predict("m", ["fine"], batch_size=8)


@pytest.mark.parametrize("status", ["StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"])
def test_triton_unreachable_is_an_outage(status: str) -> None:
    with pytest.raises(DependencyUnavailable):
        classifier(FakeTriton(status=status)).predict("m", ["POISON"], batch_size=8)
