"""annotator-web's pure parts: gRPC -> HTTP statuses, the task view and label keys, session cookies."""

from __future__ import annotations

import grpc
import pytest

from labelloop.annotator_web.sessions import Session, SessionCodec
from labelloop.annotator_web.statuses import http_error
from labelloop.annotator_web.tasks import label_keys, reason_name, task_view
from labelloop.v1 import common_pb2, events_pb2, human_tasks_pb2


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        (grpc.StatusCode.UNAUTHENTICATED, 401, "unauthenticated"),
        (grpc.StatusCode.PERMISSION_DENIED, 403, "forbidden"),
        (grpc.StatusCode.INVALID_ARGUMENT, 422, "invalid"),
        (grpc.StatusCode.NOT_FOUND, 404, "not_found"),
        (grpc.StatusCode.FAILED_PRECONDITION, 409, "lease_lost"),
        (grpc.StatusCode.UNAVAILABLE, 503, "unavailable"),
        (grpc.StatusCode.DEADLINE_EXCEEDED, 503, "unavailable"),
        (grpc.StatusCode.UNIMPLEMENTED, 503, "not_implemented"),
        (grpc.StatusCode.INTERNAL, 502, "upstream_error"),
    ],
)
def test_grpc_statuses_map_to_http(code: grpc.StatusCode, status: int, kind: str) -> None:
    error = http_error(code, "labels: 'x' is not in project 'news''s label set", "human-tasks")
    assert (error.status, error.kind) == (status, kind)
    assert error.body()["error"] == kind
    assert "human-tasks" in error.message  # which service said it


def test_lease_lost_and_bad_label_messages_say_what_happened() -> None:
    lost = http_error(grpc.StatusCode.FAILED_PRECONDITION, "lease abc is no longer active", "human-tasks")
    assert "expired or was released" in lost.message and "lease abc" in lost.message
    bad = http_error(grpc.StatusCode.INVALID_ARGUMENT, "labels: 'x' is not in the label set", "human-tasks")
    assert "labels: 'x'" in bad.message
    down = http_error(
        grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses; ipv4:10.0.0.1", "human-tasks"
    )
    assert down.message == "the labeling service did not answer (human-tasks)"
    missing = http_error(grpc.StatusCode.UNIMPLEMENTED, "", "ingest")
    assert "ingest does not implement" in missing.message


def test_label_keys_are_digits_then_letters_then_none() -> None:
    keys = label_keys([f"l{i}" for i in range(40)])
    assert [k["key"] for k in keys[:11]] == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "a", "b"]
    assert keys[34]["key"] == "z"
    assert keys[35]["key"] == "" and keys[39]["label"] == "l39"


def _lease(reason: int, scores: list[tuple[str, float]]) -> human_tasks_pb2.LeaseTaskResponse:
    item = common_pb2.Item(item_id="i1", project_id="news", content=common_pb2.Content(text="hello"))
    prediction = events_pb2.Prediction(
        model_name="news-tfidf",
        model_version=3,
        scores=[common_pb2.ClassScore(label=label, probability=p) for label, p in scores],
    )
    task = events_pb2.TaskRouted(
        task_id="i1",
        ingested=events_pb2.ItemIngested(item=item),
        prediction=prediction,
        reason=reason,  # type: ignore[arg-type]
        annotators_required=2,
    )
    response = human_tasks_pb2.LeaseTaskResponse(has_task=True, task=task, lease_id="L1")
    response.lease_expires_at.FromSeconds(1_900_000_000)
    return response


SCORES = [("a", 0.1), ("b", 0.5), ("c", 0.3), ("d", 0.1)]


def test_uncertain_task_suggests_the_top_label_with_the_top_three_scores() -> None:
    view = task_view(_lease(events_pb2.TASK_REASON_UNCERTAIN, SCORES))
    assert view["reason"] == "uncertain"
    assert view["suggestion"] == view["preselect"] == "b"
    assert [s["label"] for s in view["top3"]] == ["b", "c", "a"]
    assert view["content"] == {"text": "hello"}
    assert (view["lease_id"], view["lease_expires_at"], view["annotators_required"]) == (
        "L1",
        1_900_000_000,
        2,
    )
    assert view["model"] == {"name": "news-tfidf", "version": 3}


def test_audit_task_neither_preselects_nor_shows_the_model_answer() -> None:
    view = task_view(_lease(events_pb2.TASK_REASON_AUDIT, SCORES))
    assert view["reason"] == "audit"
    assert view["suggestion"] is None and view["preselect"] is None
    assert view["top3"] == [] and view["model"] is None


def test_review_task_shows_neither_the_model_nor_the_label_under_review() -> None:
    lease = _lease(events_pb2.TASK_REASON_REVIEW, SCORES)
    lease.task.review_of.labels.append("c")
    lease.task.review_of.annotators.append("ann-1")
    view = task_view(lease)
    assert view["reason"] == "review" and "review" in view["reason_text"]
    assert view["suggestion"] is None and view["preselect"] is None
    assert view["top3"] == [] and view["model"] is None
    assert "ann-1" not in str(view) and "review_of" not in str(view)


def test_no_model_task_has_no_suggestion() -> None:
    view = task_view(_lease(events_pb2.TASK_REASON_NO_MODEL, []))
    assert view["reason"] == "no_model" and view["suggestion"] is None and view["top3"] == []
    assert "No model yet" in view["reason_text"]


def test_unknown_reason_numbers_are_unspecified() -> None:
    assert reason_name(99) == "unspecified"
    assert reason_name(events_pb2.TASK_REASON_UNCERTAIN) == "uncertain"


def test_session_cookie_round_trips_and_rejects_tampering_and_other_keys() -> None:
    codec = SessionCodec("s" * 40, max_age_s=60)
    session = Session("secret-token", "ann", "annotator", ("news",))
    cookie = codec.seal(session)
    assert "secret-token" not in cookie and "ann" not in cookie  # sealed, not just signed
    assert codec.open(cookie) == session
    assert codec.open(cookie[:-4] + "AAAA") is None
    assert SessionCodec("t" * 40, max_age_s=60).open(cookie) is None
    assert codec.open(None) is None and codec.open("garbage") is None
    assert session.may_use("news") and not session.may_use("other")
    assert Session("t", "root", "admin", ()).may_use("anything")
    assert "token" not in session.public()
