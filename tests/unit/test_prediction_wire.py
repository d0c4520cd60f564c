"""Predictions encoded straight to the wire parse to the message the protobuf API builds."""

from __future__ import annotations

import numpy as np
import pytest

from labelloop.core.stream import now_timestamp
from labelloop.inference.prediction_wire import encode_predictions, varint
from labelloop.v1 import events_pb2


def item(i: int, text: str) -> events_pb2.ItemIngested:
    event = events_pb2.ItemIngested(channel="grpc", ingested_at=now_timestamp())
    event.item.item_id = f"item-{i}"
    event.item.project_id = "p"
    event.item.content.text = text
    event.item.metadata["source"] = "test"
    return event


def test_encoded_predictions_equal_the_ones_built_field_by_field() -> None:
    # labels of several lengths (one over 127 bytes: a two-byte length), a non-ASCII one, a
    # text long enough for a multi-byte length, and probabilities including 0 and 1
    labels = ["a", "sports", "ça-va", "x" * 130]
    items = [item(0, "short"), item(1, "long " * 500), item(2, "")]
    probabilities = np.array(
        [[0.1, 0.2, 0.3, 0.4], [0.0, 1.0, 0.0, 0.0], [0.25, 0.25, 0.25, 0.25]], dtype=np.float32
    )
    at = now_timestamp()
    common = events_pb2.Prediction(model_name="m", model_version=7, predicted_at=at)

    encoded = encode_predictions([i.SerializeToString() for i in items], common, labels, probabilities)

    for index, value in enumerate(encoded):
        expected = events_pb2.Prediction(
            ingested=items[index], model_name="m", model_version=7, predicted_at=at
        )
        for label, p in zip(labels, probabilities[index], strict=True):
            expected.scores.add(label=label, probability=float(p))
        assert events_pb2.Prediction.FromString(value) == expected
    decoded = events_pb2.Prediction.FromString(encoded[0])
    assert [s.label for s in decoded.scores] == labels, "scores keep the project's label order"


def test_common_fields_must_not_carry_the_item_or_scores() -> None:
    common = events_pb2.Prediction(model_name="m")
    common.scores.add(label="a", probability=1.0)
    with pytest.raises(ValueError):
        encode_predictions([b""], common, ["a"], np.ones((1, 1), dtype=np.float32))


@pytest.mark.parametrize("value", [1, 127, 128, 300, 2**21, 2**35])
def test_varint_matches_protobuf(value: int) -> None:
    message = events_pb2.Prediction(model_version=value)
    assert message.SerializeToString() == b"\x18" + varint(value)


def test_answer_stage_per_item_is_encoded_when_given() -> None:
    items = [item(0, "sure"), item(1, "unsure"), item(2, "no stage")]
    probabilities = np.array([[0.9, 0.1], [0.4, 0.6], [0.5, 0.5]], dtype=np.float32)
    common = events_pb2.Prediction(model_name="m", model_version=2)
    stages = [
        events_pb2.ANSWER_STAGE_FAST,
        events_pb2.ANSWER_STAGE_ENCODER,
        events_pb2.ANSWER_STAGE_UNSPECIFIED,
    ]

    encoded = encode_predictions(
        [i.SerializeToString() for i in items], common, ["a", "b"], probabilities, stages
    )

    decoded = [events_pb2.Prediction.FromString(v) for v in encoded]
    assert [d.answered_by for d in decoded] == stages
    expected = events_pb2.Prediction(ingested=items[1], model_name="m", model_version=2)
    expected.answered_by = events_pb2.ANSWER_STAGE_ENCODER
    for label, p in zip(["a", "b"], probabilities[1], strict=True):
        expected.scores.add(label=label, probability=float(p))
    assert decoded[1] == expected
    with pytest.raises(ValueError):
        encode_predictions([b""], events_pb2.Prediction(answered_by=1), ["a"], np.ones((1, 1), np.float32))
