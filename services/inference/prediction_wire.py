"""Predictions serialized straight into the protobuf wire format, a batch at a time.

Building a `Prediction` with one `ClassScore` message per class cost ~35 us per item in Python
(20 classes), more than the rest of the inference hot path. Here the scores of a whole batch are
laid out with numpy, and each record is the concatenation of three (or four) encoded parts, which a
protobuf parser reads as one message (fields may come in any order):

    field 1 `ingested`: the consumed ItemIngested bytes, as they came
    fields 2, 3, 6: model name, version and time, encoded once per batch
    field 4 `scores`: one ClassScore per label, in the project's label order
    field 7 `answered_by`: the cascade stage, when the model has a cascade

tests/unit/test_prediction_wire.py checks that the result parses to the message the plain
protobuf API builds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from labelloop.v1 import events_pb2

_VARINT = 0
_LEN = 2  # wire type of length-delimited fields
_FIXED32 = 5
INGESTED_FIELD = events_pb2.Prediction.DESCRIPTOR.fields_by_name["ingested"].number
SCORES_FIELD = events_pb2.Prediction.DESCRIPTOR.fields_by_name["scores"].number
ANSWERED_BY_FIELD = events_pb2.Prediction.DESCRIPTOR.fields_by_name["answered_by"].number
_SCORE = events_pb2.Prediction.DESCRIPTOR.fields_by_name["scores"].message_type
LABEL_FIELD = _SCORE.fields_by_name["label"].number
PROBABILITY_FIELD = _SCORE.fields_by_name["probability"].number


def varint(value: int) -> bytes:
    """The protobuf base-128 varint of a non-negative int."""
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _tag(field_number: int, wire_type: int) -> bytes:
    return varint(field_number << 3 | wire_type)


def scores_rows(labels: Sequence[str], probabilities: np.ndarray) -> np.ndarray:
    """One row of bytes per row of `probabilities` ([n, len(labels)]): the encoded
    `repeated ClassScore scores`, each probability as the float32 protobuf stores."""
    prefixes = []
    for label in labels:
        encoded = label.encode("utf-8")
        body = _tag(LABEL_FIELD, _LEN) + varint(len(encoded)) + encoded + _tag(PROBABILITY_FIELD, _FIXED32)
        prefixes.append(_tag(SCORES_FIELD, _LEN) + varint(len(body) + 4) + body)
    n = probabilities.shape[0]
    floats = np.ascontiguousarray(probabilities, dtype="<f4").view(np.uint8).reshape(n, len(labels), 4)
    rows = np.empty((n, sum(len(p) + 4 for p in prefixes)), dtype=np.uint8)
    at = 0
    for column, prefix in enumerate(prefixes):
        rows[:, at : at + len(prefix)] = np.frombuffer(prefix, dtype=np.uint8)
        at += len(prefix)
        rows[:, at : at + 4] = floats[:, column, :]
        at += 4
    return rows


def encode_predictions(
    ingested: Sequence[bytes],
    common: events_pb2.Prediction,
    labels: Sequence[str],
    probabilities: np.ndarray,
    answered_by: Sequence[int] | np.ndarray | None = None,
) -> list[bytes]:
    """Serialized Predictions: for each serialized ItemIngested in `ingested`, that item, the
    fields set in `common` (model name, version, predicted_at; no `ingested`, no `scores`), its
    row of `probabilities` as scores and, when given, its `answered_by` stage (an AnswerStage)."""
    if common.HasField("ingested") or len(common.scores) or common.answered_by:
        raise ValueError("`common` carries the fields shared by the batch only")
    tail = common.SerializeToString()
    rows = scores_rows(labels, probabilities)
    head = _tag(INGESTED_FIELD, _LEN)
    stage_tag = _tag(ANSWERED_BY_FIELD, _VARINT)
    stages = (
        [b"" if not s else stage_tag + varint(int(s)) for s in answered_by]
        if answered_by is not None
        else None
    )
    return [
        b"".join((head, varint(len(raw)), raw, tail, rows[index].tobytes(), stages[index] if stages else b""))
        for index, raw in enumerate(ingested)
    ]
