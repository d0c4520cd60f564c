"""Item and project validation name the bad field."""

import pytest

from labelloop.core.errors import InvalidArgument
from labelloop.core.projects import normalize_spec
from labelloop.ingest.validation import validate_item
from labelloop.v1 import common_pb2

TEXT = common_pb2.Project(
    spec=common_pb2.ProjectSpec(project_id="p", modality=common_pb2.MODALITY_TEXT, labels=["a", "b"])
)
IMAGE = common_pb2.Project(
    spec=common_pb2.ProjectSpec(project_id="i", modality=common_pb2.MODALITY_IMAGE, labels=["a", "b"])
)


def item(text: str | None = "hello", uri: str | None = None, item_id: str = "1") -> common_pb2.Item:
    it = common_pb2.Item(item_id=item_id, project_id="p")
    if text is not None:
        it.content.text = text
    if uri is not None:
        it.content.media.uri = uri
    return it


@pytest.mark.parametrize(
    ("bad", "project", "field"),
    [
        (item(text="   "), TEXT, "item.content.text"),
        (item(text="x" * 101), TEXT, "item.content.text"),
        (item(text=None), TEXT, "item.content"),
        (item(text=None, uri="s3://b/k.jpg"), TEXT, "item.content"),
        (item(text="a photo"), IMAGE, "item.content"),
        (item(item_id="x" * 300), TEXT, "item.item_id"),
    ],
)
def test_bad_items_name_the_field(bad: common_pb2.Item, project: common_pb2.Project, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_item(bad, project, max_text_bytes=100, max_metadata_bytes=100)
    assert info.value.field == field


def test_good_items_pass() -> None:
    assert validate_item(item(), TEXT, 100, 100) is None
    assert validate_item(item(text=None, uri="s3://b/k.jpg"), IMAGE, 100, 100) is None


def test_project_defaults_are_filled() -> None:
    spec = normalize_spec(common_pb2.ProjectSpec(project_id="news", labels=["a", "b"]))
    assert spec.target_precision == 0.95
    assert spec.annotators_per_task == 1
    assert spec.audit_rate == pytest.approx(0.02)
    assert spec.model_name == "news"
    assert spec.modality == common_pb2.MODALITY_TEXT


def test_an_explicit_zero_audit_rate_is_kept() -> None:
    assert (
        normalize_spec(common_pb2.ProjectSpec(project_id="n", labels=["a", "b"], audit_rate=0.0)).audit_rate
        == 0.0
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (common_pb2.ProjectSpec(project_id="Bad Id", labels=["a", "b"]), "spec.project_id"),
        (common_pb2.ProjectSpec(project_id="p", labels=["a"]), "spec.labels"),
        (common_pb2.ProjectSpec(project_id="p", labels=["a", "a"]), "spec.labels"),
        (
            common_pb2.ProjectSpec(project_id="p", labels=["a", "b"], target_precision=1.5),
            "spec.target_precision",
        ),
        (common_pb2.ProjectSpec(project_id="p", labels=["a", "b"], audit_rate=2), "spec.audit_rate"),
        (
            common_pb2.ProjectSpec(project_id="p", labels=["a", "b"], annotators_per_task=-1),
            "spec.annotators_per_task",
        ),
        (
            common_pb2.ProjectSpec(project_id="p", labels=["a", "b"], modality=common_pb2.MODALITY_AUDIO),
            "spec.modality",
        ),
        (
            common_pb2.ProjectSpec(project_id="p", labels=["a", "b"], modality=common_pb2.MODALITY_VIDEO),
            "spec.modality",
        ),
        (common_pb2.ProjectSpec(project_id="p", labels=["a", "b"], modality=42), "spec.modality"),  # type: ignore[arg-type]
    ],
)
def test_bad_specs_name_the_field(spec: common_pb2.ProjectSpec, field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize_spec(spec)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("descriptions", "field"),
    [
        ({"c": "not a label"}, "spec.label_descriptions['c']"),
        ({"a": "x" * 1001}, "spec.label_descriptions['a']"),
        ({"b": "bell\x07"}, "spec.label_descriptions['b']"),
    ],
)
def test_bad_label_descriptions_name_the_label(descriptions: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        normalize_spec(
            common_pb2.ProjectSpec(project_id="p", labels=["a", "b"], label_descriptions=descriptions)
        )
    assert info.value.field == field


def test_label_descriptions_are_kept_and_blank_ones_dropped() -> None:
    spec = normalize_spec(
        common_pb2.ProjectSpec(
            project_id="p",
            labels=["a", "b"],
            label_descriptions={"a": "x" * 1000, "b": "  "},
        )
    )
    assert dict(spec.label_descriptions) == {"a": "x" * 1000}


def test_metadata_is_measured_in_bytes() -> None:
    it = item()
    it.metadata["note"] = "é" * 60  # 60 characters, 120 bytes
    with pytest.raises(InvalidArgument) as info:
        validate_item(it, TEXT, max_text_bytes=100, max_metadata_bytes=100)
    assert info.value.field == "item.metadata"


def test_every_event_of_an_accepted_item_fits_a_kafka_message() -> None:
    from labelloop.core.topics import MAX_MESSAGE_BYTES
    from labelloop.ingest.validation import largest_event_bytes
    from labelloop.v1 import events_pb2

    big = item(text="x" * 524288, item_id="i" * 256)  # the default text limit, 512 KiB
    big.metadata.update({f"k{i}": "v" * 1000 for i in range(16)})
    validate_item(big, TEXT, max_text_bytes=524288, max_metadata_bytes=16384)
    # the real largest event: the withdrawal routing emits, then its dead letter
    ingested = events_pb2.ItemIngested(item=big, channel="grpc", rescore=events_pb2.Rescore())
    ingested.rescore.requested_at.GetCurrentTime()
    prediction = events_pb2.Prediction(
        ingested=ingested,
        model_name="p",
        model_version=3,
        scores=[common_pb2.ClassScore(label=x, probability=0.5) for x in TEXT.spec.labels],
    )
    withdrawal = events_pb2.TaskRouted(
        task_id=big.item_id,
        ingested=ingested,
        prediction=prediction,
        withdraw=events_pb2.Withdrawal(
            label=events_pb2.LabelFinalized(ingested=ingested, labels=["a"], model_name="p")
        ),
    )
    letter = events_pb2.DeadLetter(
        source_topic="labelloop.tasks", key=b"p/" + big.item_id.encode(), value=withdrawal.SerializeToString()
    )
    assert letter.ByteSize() <= largest_event_bytes(big, TEXT.spec.labels) <= MAX_MESSAGE_BYTES


def test_an_item_whose_events_would_not_fit_is_rejected_in_bytes() -> None:
    # A deployment that raised LABELLOOP_MAX_TEXT_BYTES past what a message can carry three times.
    with pytest.raises(InvalidArgument) as info:
        validate_item(item(text="é" * 400_000), TEXT, max_text_bytes=10**7, max_metadata_bytes=100)
    assert info.value.field == "item" and "over the" in info.value.reason
