"""The final-label fence through the real loop: routing and human-tasks handlers run in their
stream processors against the real Kafka and Redis, and every claim of "one final label per item"
is checked by counting records in the RAW labels topic (`label_records`), never a last-wins view.

A redelivery is the same record consumed again (what a crash before the commit, or ingest
re-claiming a pending item, causes): here the same prediction is produced twice.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from prometheus_client import REGISTRY
from support import wait_until

from labelloop.core import access, redis_store, stream
from labelloop.core.errors import DependencyUnavailable
from labelloop.core.final_labels import Claim, FinalLabelWriter, Outcome
from labelloop.core.label_log import PublishedAnswers, PublishedLabels, label_records, replay
from labelloop.core.projects import ProjectStore
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import ANNOTATIONS, MODELS, PREDICTIONS, TASKS, Topic
from labelloop.human_tasks.api import HumanTaskApi
from labelloop.human_tasks.handler import TaskHandler
from labelloop.human_tasks.queue import TaskQueue
from labelloop.human_tasks.upkeep import keep_queues, upkeep_once
from labelloop.routing.router import Router
from labelloop.v1 import common_pb2, events_pb2, human_tasks_pb2

PROJECT = "fence"
LABELS = ["ham", "spam"]


@dataclass
class Loop:
    """Routing and human-tasks handlers in their stream processors, a producer to feed them,
    and the human-task API (called in-process)."""

    stack: object
    prefix: str
    producer: stream.EventProducer
    routing: stream.StreamProcessor
    human_tasks: stream.StreamProcessor
    thresholds: ThresholdStore
    queue: TaskQueue
    api: HumanTaskApi
    writer: FinalLabelWriter

    def send(self, topic: Topic, key: str, message) -> None:
        self.producer.send(topic, key, message)
        self.producer.flush()

    def settle(self, until: Callable[[], object], timeout: float = 60) -> None:
        """Run both processors until `until()` holds."""
        wait_until(
            lambda: (self.routing.run_once(), self.human_tasks.run_once(), until())[2],
            timeout,
            message="the loop did not reach the expected state",
        )

    def records(self) -> dict[str, list[events_pb2.LabelFinalized]]:
        return label_records(self.stack.bootstrap_servers, self.prefix, PROJECT)  # type: ignore[attr-defined]

    def queued(self) -> int:
        return int(self.queue.client.zcard(self.queue.keys.queue(PROJECT)))  # type: ignore[arg-type]

    def lease(
        self, annotator: str = "ann-1", label: str = "spam"
    ) -> tuple[str, human_tasks_pb2.SubmitAnnotationRequest]:
        """Lease `annotator` the next task: its lease id, and the request answering it `label`."""
        lease = self.queue.lease(PROJECT, annotator)
        assert lease is not None, "no task to lease"
        return lease.lease_id, human_tasks_pb2.SubmitAnnotationRequest(
            lease_id=lease.lease_id, annotator_id=annotator, labels=[label]
        )

    def answer(self, annotator: str, label: str) -> bool:
        _, request = self.lease(annotator, label)
        with as_annotator(annotator):
            return self.api.SubmitAnnotation(request, None).finalized  # type: ignore[arg-type]


@contextlib.contextmanager
def as_annotator(annotator: str = "ann-1") -> Iterator[None]:
    """Calls in-process as `annotator`, as the interceptor would after checking their token."""
    caller = access.set_current(access.Principal("test", annotator, access.ANNOTATOR, (PROJECT,)))
    try:
        yield
    finally:
        access.reset_current(caller)


@pytest.fixture
def loop(stack, topic_prefix: str, redis_prefix: str) -> Iterator[Loop]:
    stream.ensure_topics(stack.bootstrap_servers, topic_prefix)
    client = redis_store.connect(stack.redis_url, stack.redis_password)
    projects = ProjectStore(client, redis_prefix, cache_s=0)
    projects.create(common_pb2.ProjectSpec(project_id=PROJECT, labels=LABELS, audit_rate=0.0))
    thresholds = ThresholdStore(client, redis_prefix, cache_s=0)
    writer = FinalLabelWriter(client, redis_prefix)
    queue = TaskQueue(client, redis_prefix, lease_ttl_s=60)

    def processor(name: str, inputs: list[Topic], handler) -> stream.StreamProcessor:
        return stream.StreamProcessor(
            service=name,
            bootstrap=stack.bootstrap_servers,
            prefix=topic_prefix,
            inputs=inputs,
            group_id=f"{topic_prefix}.{name}",
            handler=handler,
            producer=stream.EventProducer(stack.bootstrap_servers, topic_prefix, name),
            poll_timeout_ms=100,
        )

    routing = processor("routing", [PREDICTIONS, MODELS], Router(projects, thresholds, writer, "seed"))
    human_tasks = processor("human_tasks", [TASKS, MODELS], TaskHandler(queue, writer, rescore_limit=100))
    producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "test")
    api_producer = stream.EventProducer(stack.bootstrap_servers, topic_prefix, "human_tasks-api")
    api = HumanTaskApi(queue, projects, writer, api_producer)
    yield Loop(stack, topic_prefix, producer, routing, human_tasks, thresholds, queue, api, writer)
    for closable in (routing, human_tasks, routing.producer, human_tasks.producer, producer, api_producer):
        closable.close()
    keys = list(client.scan_iter(match=f"{redis_prefix}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def prediction(
    item_id: str, spam: float, version: int = 1, rescore: bool = False, text: str = "hello"
) -> events_pb2.Prediction:
    ingested = events_pb2.ItemIngested(
        item=common_pb2.Item(item_id=item_id, project_id=PROJECT, content=common_pb2.Content(text=text))
    )
    if rescore:
        ingested.rescore.requested_at.GetCurrentTime()
    else:
        ingested.arrival.SetInParent()
    return events_pb2.Prediction(
        ingested=ingested,
        model_name=PROJECT,
        model_version=version,
        scores=[
            common_pb2.ClassScore(label="ham", probability=1 - spam),
            common_pb2.ClassScore(label="spam", probability=spam),
        ],
    )


def key(item_id: str) -> str:
    return f"{PROJECT}/{item_id}"


def one_record_each(loop: Loop) -> dict[str, events_pb2.LabelFinalized]:
    records = loop.records()
    many = {item: len(labels) for item, labels in records.items() if len(labels) != 1}
    assert not many, f"items with more than one final-label record in the raw topic: {many}"
    return {item: labels[0] for item, labels in records.items()}


def test_a_redelivered_prediction_under_a_lower_threshold_leaves_the_item_with_people(loop: Loop) -> None:
    loop.send(PREDICTIONS, key("a"), prediction("a", 0.8))  # no threshold yet: to people
    loop.settle(lambda: loop.queued() == 1)
    loop.thresholds.set(PROJECT, Threshold(0.5, model_version=1))
    loop.send(PREDICTIONS, key("a"), prediction("a", 0.8))  # redelivered: now above the threshold
    loop.settle(lambda: loop.routing.processed >= 2 and loop.human_tasks.processed >= 2)
    assert loop.records() == {}, "the item is with people: no model label"
    assert loop.queued() == 1, "its task is still waiting (sent again, queued once)"
    assert loop.answer("ann-1", "ham")
    labels = one_record_each(loop)
    assert labels["a"].source == common_pb2.LABEL_SOURCE_HUMAN and list(labels["a"].labels) == ["ham"]


def test_a_model_label_never_follows_a_human_one(loop: Loop) -> None:
    loop.send(PREDICTIONS, key("b"), prediction("b", 0.7))
    loop.settle(lambda: loop.queued() == 1)
    assert loop.answer("ann-1", "ham")
    loop.thresholds.set(PROJECT, Threshold(0.5, model_version=2))
    loop.send(PREDICTIONS, key("b"), prediction("b", 0.9, version=2))  # redelivered, model sure
    loop.settle(lambda: loop.routing.processed >= 2)
    loop.settle(lambda: loop.human_tasks.processed >= 1)
    labels = one_record_each(loop)
    assert labels["b"].source == common_pb2.LABEL_SOURCE_HUMAN
    assert loop.queued() == 0, "no new task for a labeled item"


def test_a_redelivered_auto_label_is_published_once_and_a_different_one_is_dropped(loop: Loop) -> None:
    loop.thresholds.set(PROJECT, Threshold(0.6, model_version=1))
    for _ in range(2):  # the same decision, redelivered
        loop.send(PREDICTIONS, key("c"), prediction("c", 0.9))
    loop.settle(lambda: loop.routing.processed >= 2)
    loop.send(PREDICTIONS, key("c"), prediction("c", 0.1, version=2))  # a newer model says ham
    loop.settle(lambda: loop.routing.processed >= 3)
    labels = one_record_each(loop)
    assert list(labels["c"].labels) == ["spam"] and labels["c"].model_version == 1, "the first decision wins"
    assert loop.writer.state(PROJECT, "c") == "Emodel:spam"


def model_label(item_id: str, label: str, spam: float) -> events_pb2.LabelFinalized:
    return events_pb2.LabelFinalized(
        ingested=prediction(item_id, spam).ingested,
        labels=[label],
        source=common_pb2.LABEL_SOURCE_MODEL,
        model_name=PROJECT,
        model_version=1,
    )


def test_a_redelivered_prediction_gets_the_decision_of_its_aborted_first_attempt(loop: Loop) -> None:
    """Routing claims an auto-label in the fence and is killed before its transaction commits;
    before the prediction comes back, the threshold was tightened (a deploy publishes the
    stricter one first) or a vote changed the combined scores. The redelivery decided otherwise
    and was dropped against the unconfirmed claim: no label, no task, the item stuck (the chaos
    test's items that never got a final label). Now the first decision is published, once."""
    loop.thresholds.set(PROJECT, Threshold(0.6, model_version=1))
    aborted: list[object] = []  # what the killed attempt handed to its producer: never committed
    outcomes = loop.writer.finalize(
        [model_label("k", "spam", 0.8), model_label("v", "ham", 0.3)], lambda *sent: aborted.append(sent)
    )
    assert outcomes == [Outcome.NEW, Outcome.NEW] and len(aborted) == 2
    loop.thresholds.set(PROJECT, Threshold(0.9, model_version=1))  # stricter since: "k" to people
    loop.send(PREDICTIONS, key("k"), prediction("k", 0.8))
    loop.send(PREDICTIONS, key("v"), prediction("v", 0.95))  # now sure of spam: another decision
    loop.settle(lambda: loop.routing.processed >= 2 and loop.writer.state(PROJECT, "v") == "Emodel:ham")
    labels = one_record_each(loop)
    assert {item: (label.source, list(label.labels)) for item, label in labels.items()} == {
        "k": (common_pb2.LABEL_SOURCE_MODEL, ["spam"]),
        "v": (common_pb2.LABEL_SOURCE_MODEL, ["ham"]),
    }, "the first decision wins, and is published"
    assert labels["k"].confidence == pytest.approx(0.8) and labels["v"].confidence == pytest.approx(0.05)
    assert loop.writer.state(PROJECT, "k") == "Emodel:spam"
    tasks = replay(loop.stack.bootstrap_servers, loop.prefix, TASKS, project_id=PROJECT)  # type: ignore[attr-defined]
    assert [t.ingested.item.item_id for t in tasks] == [], "no task for a labeled item (raw topic)"

    # Two predictions of one item in one call: the second meets the first's claim unconfirmed
    # and is published with it once, not twice.
    sent: list[object] = []
    claims = [Claim.final(model_label("w", "spam", 0.8)), Claim.people(PROJECT, "w")]
    relabelled = loop.writer.claim(
        claims, lambda *out: sent.append(out), lambda c, ls: model_label("w", ls[0], 0.8)
    )
    assert relabelled == [Outcome.NEW, Outcome.DONE] and len(sent) == 1
    # Without a way to rebuild the label (human-tasks), it is dropped as before.
    assert loop.writer.claim([Claim.people(PROJECT, "w")], lambda *out: sent.append(out)) == [Outcome.FINAL]
    assert len(sent) == 1


def test_two_predictions_of_an_item_retried_one_at_a_time_publish_one_label(loop: Loop) -> None:
    """A batch that fails as a whole is retried one event at a time in the same transaction.
    Inference redelivered an item's prediction, so the batch holds it twice: each single's
    fence call met the other's unconfirmed claim, and the log could not show the first's label
    (not yet committed), so both published. `Batch.claims` now carries what the transaction
    already emits from one single to the next."""
    router = loop.routing.handler
    whole_failures = []

    def fails_whole(batch: stream.Batch) -> None:
        if len(batch.events) > 1:
            whole_failures.append(len(batch.events))
            raise RuntimeError("the whole batch fails (simulated)")
        router(batch)

    retrying = stream.StreamProcessor(
        service="routing-retry",
        bootstrap=loop.stack.bootstrap_servers,  # type: ignore[attr-defined]
        prefix=loop.prefix,
        inputs=[PREDICTIONS],
        group_id=f"{loop.prefix}.routing-retry",
        handler=fails_whole,
        producer=stream.EventProducer(loop.stack.bootstrap_servers, loop.prefix, "routing-retry"),  # type: ignore[attr-defined]
        poll_timeout_ms=100,
    )
    try:
        loop.thresholds.set(PROJECT, Threshold(0.6, model_version=1))
        loop.send(PREDICTIONS, key("x"), prediction("x", 0.9))
        loop.send(PREDICTIONS, key("x"), prediction("x", 0.9))  # redelivered by inference
        wait_until(lambda: (retrying.run_once(), retrying.processed >= 2)[1], 60, message="not routed")
    finally:
        retrying.close()
        retrying.producer.close()
    assert whole_failures == [2], "both predictions came in one batch, retried one at a time"
    labels = one_record_each(loop)
    assert list(labels["x"].labels) == ["spam"] and loop.writer.state(PROJECT, "x") == "Emodel:spam"


def _withdrawn_count() -> float:
    return REGISTRY.get_sample_value("labelloop_tasks_withdrawn_total", {"project": PROJECT}) or 0.0


def test_a_second_withdrawal_publishes_nothing(loop: Loop) -> None:
    withdrawn_before = _withdrawn_count()
    loop.send(PREDICTIONS, key("d"), prediction("d", 0.7))  # to people
    loop.settle(lambda: loop.queued() == 1)
    loop.thresholds.set(PROJECT, Threshold(0.6, model_version=1))
    loop.send(PREDICTIONS, key("d"), prediction("d", 0.7, rescore=True))  # a deploy: withdrawn
    loop.settle(lambda: loop.queued() == 0 and bool(loop.records()))
    # A later deploy rescores it again (or the withdrawal is redelivered): same or other label.
    loop.send(PREDICTIONS, key("d"), prediction("d", 0.7, version=1, rescore=True))
    loop.send(PREDICTIONS, key("d"), prediction("d", 0.05, version=2, rescore=True))
    loop.settle(lambda: loop.routing.processed >= 4 and loop.human_tasks.processed >= 4)
    labels = one_record_each(loop)
    assert labels["d"].source == common_pb2.LABEL_SOURCE_MODEL and list(labels["d"].labels) == ["spam"]
    assert _withdrawn_count() - withdrawn_before == 1, "the operators' metric counts the task once"


def test_progress_counts_each_item_once_by_its_one_source(loop: Loop) -> None:
    loop.send(PREDICTIONS, key("e"), prediction("e", 0.7))
    loop.settle(lambda: loop.queued() == 1)
    loop.thresholds.set(PROJECT, Threshold(0.6, model_version=1))
    loop.send(PREDICTIONS, key("e"), prediction("e", 0.7))
    loop.send(PREDICTIONS, key("f"), prediction("f", 0.9))
    loop.settle(lambda: loop.routing.processed >= 3 and loop.human_tasks.processed >= 2)
    assert loop.answer("ann-1", "spam")
    counts = loop.writer.progress.counts(PROJECT)
    assert (counts.auto_labeled, counts.human_labeled) == (1, 1)
    assert set(one_record_each(loop)) == {"e", "f"}


class KafkaDown:
    """A producer whose flush fails, as EventProducer.flush does when Kafka is down."""

    transactional = False

    def send(self, *_args, **_kwargs) -> None:
        pass

    def flush(self, timeout_s: float = 30) -> None:
        raise DependencyUnavailable("kafka", "produce failed: broker down (simulated)")


def test_an_answer_whose_produce_failed_is_published_by_the_upkeep(loop: Loop) -> None:
    loop.send(PREDICTIONS, key("g"), prediction("g", 0.7))
    loop.settle(lambda: loop.queued() == 1)
    down = HumanTaskApi(loop.queue, loop.api.projects, loop.writer, KafkaDown())  # type: ignore[arg-type]
    _, request = loop.lease()
    with as_annotator(), pytest.raises(DependencyUnavailable):
        down.SubmitAnnotation(request, None)  # type: ignore[arg-type]
    assert loop.records() == {}
    # The client never retries; the upkeep publishes the stored answer (once).
    assert upkeep_once(loop.queue, loop.api.projects, loop.api, republish_after_s=0) == 0
    assert upkeep_once(loop.queue, loop.api.projects, loop.api, republish_after_s=0) == 0
    labels = one_record_each(loop)
    assert labels["g"].source == common_pb2.LABEL_SOURCE_HUMAN and list(labels["g"].labels) == ["spam"]
    annotations = replay(loop.stack.bootstrap_servers, loop.prefix, ANNOTATIONS)  # type: ignore[attr-defined]
    assert [a.item_id for a in annotations] == ["g"]
    assert loop.queue.unproduced(PROJECT, time.time() + 1) == []


def test_a_repeat_submit_while_the_first_is_producing_publishes_nothing(loop: Loop) -> None:
    """A page sends a held answer on unload and again on load: the second call arrives while the
    first is between recording the answer and confirming its label. Only one of them publishes."""
    loop.send(PREDICTIONS, key("r"), prediction("r", 0.7))
    loop.settle(lambda: loop.queued() == 1)
    lease_id, request = loop.lease()
    # The first call recorded the answer and is still producing (it holds the production).
    assert loop.queue.answer(lease_id, "ann-1", "spam").complete
    with as_annotator():
        repeat = loop.api.SubmitAnnotation(request, None)  # type: ignore[arg-type]
        assert repeat.duplicate
        assert loop.records() == {}, "the repeat published while the first call held the production"
        assert not loop.queue.take_over(lease_id)
        # The first call failed (its hold is let go): the next repeat produces, exactly once.
        loop.queue.let_go(lease_id)
        assert loop.api.SubmitAnnotation(request, None).duplicate  # type: ignore[arg-type]
        assert loop.api.SubmitAnnotation(request, None).duplicate  # type: ignore[arg-type]
    labels = one_record_each(loop)
    assert labels["r"].source == common_pb2.LABEL_SOURCE_HUMAN and list(labels["r"].labels) == ["spam"]
    assert loop.queue.unproduced(PROJECT, time.time() + 1) == []


class FailsOnceAfterSending(FinalLabelWriter):
    """The fence, failing once after the label was handed to the producer: as a publication
    that times out while Kafka is down, whose records may still reach the log later."""

    failed = False

    def finalize(self, decisions, send, **kwargs):  # type: ignore[no-untyped-def,override]
        outcome = super().finalize(decisions, send, **kwargs)
        if not self.failed:
            self.failed = True
            raise DependencyUnavailable("kafka", "events not acknowledged in 30s (simulated)")
        return outcome


def test_a_publication_that_failed_after_sending_is_never_read_beside_its_retry(loop: Loop) -> None:
    """An answer's events go out in one Kafka transaction: the failed attempt is aborted, so
    its records, already handed to the producer, are never read; the retry's are the only ones.
    (Flushed by an idempotent producer, the first attempt's label reached the log with the
    retry's: two final labels for one item.)"""
    loop.send(PREDICTIONS, key("t"), prediction("t", 0.7))
    loop.settle(lambda: loop.queued() == 1)
    producer = stream.EventProducer(
        loop.stack.bootstrap_servers,  # type: ignore[attr-defined]
        loop.prefix,
        "human_tasks-api",
        transactional_id=f"{loop.prefix}.human_tasks.answers.test",
    )
    writer = FailsOnceAfterSending(loop.queue.client, loop.queue.prefix)
    api = HumanTaskApi(loop.queue, loop.api.projects, writer, producer)
    _, request = loop.lease()
    try:
        with as_annotator():
            with pytest.raises(DependencyUnavailable):
                api.SubmitAnnotation(request, None)  # type: ignore[arg-type]
            assert api.SubmitAnnotation(request, None).duplicate  # type: ignore[arg-type]  # the retry
    finally:
        producer.close()
    labels = one_record_each(loop)
    assert list(labels["t"].labels) == ["spam"]
    annotations = replay(loop.stack.bootstrap_servers, loop.prefix, ANNOTATIONS)  # type: ignore[attr-defined]
    assert [a.item_id for a in annotations] == ["t"], "one annotation record"
    # (aborting also purges what had not left the producer yet: the raw topic may hold the
    # first attempt's records, marked aborted, or not at all; readers see the retry's alone)


def test_a_redis_error_that_is_not_an_outage_does_not_stop_the_upkeep(loop: Loop) -> None:
    projects = loop.api.projects
    projects.create(common_pb2.ProjectSpec(project_id="other", labels=LABELS))
    loop.queue.client.set(loop.queue.keys.leases(PROJECT), "not a sorted set")  # WRONGTYPE from now on
    short = TaskQueue(loop.queue.client, loop.queue.prefix, lease_ttl_s=0.01)
    task = events_pb2.TaskRouted(
        task_id="h", ingested=prediction("h", 0.5).ingested, priority=1, annotators_required=1
    )
    task.ingested.item.project_id = "other"
    short.enqueue([task])
    assert short.lease("other", "ann-1") is not None
    stop = stream.StopFlag()
    thread = threading.Thread(
        target=keep_queues, args=(short, projects, loop.api, stop, 0.05, 60.0), daemon=True
    )
    thread.start()
    try:
        # The fence project fails every round (WRONGTYPE); the other one's lease is still reaped.
        wait_until(
            lambda: short.client.zcard(short.keys.queue("other")) == 1,
            10,
            message="the expired lease was not reaped",
        )
        wait_until(lambda: upkeep_once(short, projects, loop.api, 60.0) == 1, 5)
        assert thread.is_alive(), "the upkeep thread died"
    finally:
        stop.set()
        thread.join(5)


def test_a_decision_committed_but_never_confirmed_is_not_published_again(loop: Loop) -> None:
    """A crash between the commit of a final label and its confirmation leaves the decision
    unconfirmed in Redis while the label is in the log, and the retried answer (or human-tasks'
    upkeep) proposes it again. That published a second record (found by `make test`'s chaos run:
    two human final labels for one item after human-tasks was killed); the writer now reads the log
    first. A decision whose first publication was aborted is published again, once."""
    bootstrap = loop.stack.bootstrap_servers  # type: ignore[attr-defined]
    client = loop.queue.client
    writer = FinalLabelWriter(client, loop.queue.prefix, PublishedLabels(bootstrap, loop.prefix))
    producer = stream.EventProducer(
        bootstrap, loop.prefix, "fence-test", transactional_id=f"{loop.prefix}.fence.test"
    )

    def human(item_id: str) -> events_pb2.LabelFinalized:
        return events_pb2.LabelFinalized(
            ingested=prediction(item_id, 0.7).ingested, labels=["spam"], source=common_pb2.LABEL_SOURCE_HUMAN
        )

    try:
        producer.begin()  # committed, then a crash before the confirm
        assert writer.finalize([human("c")], producer.send) == [Outcome.NEW]
        producer.commit([], None)
        producer.begin()  # a crash before the commit: aborted
        assert writer.finalize([human("a")], producer.send) == [Outcome.NEW]
        producer.abort()
        assert writer.state(PROJECT, "c") == writer.state(PROJECT, "a") == "Dhuman:spam"
        assert client.hlen(writer.claimed_key(PROJECT)) == 2

        producer.begin()  # the retries: "c" is in the log, "a" is not
        assert writer.finalize([human("c"), human("a")], producer.send) == [Outcome.DONE, Outcome.AGAIN]
        producer.commit([], None)
        writer.confirm([human("a")])

        # Without the log (as before), a decision left unconfirmed is published again.
        plain = FinalLabelWriter(client, loop.queue.prefix)
        producer.begin()
        assert plain.finalize([human("p")], producer.send) == [Outcome.NEW]
        producer.commit([], None)
        producer.begin()
        assert plain.finalize([human("p")], producer.send) == [Outcome.AGAIN]
        producer.commit([], None)
    finally:
        producer.close()
    assert {item: len(labels) for item, labels in loop.records().items()} == {"c": 1, "a": 1, "p": 2}
    assert writer.state(PROJECT, "c") == writer.state(PROJECT, "a") == "Ehuman:spam"
    # claim times are kept only while a decision is unconfirmed ("p" never was)
    assert [k.decode() for k in client.hkeys(writer.claimed_key(PROJECT))] == ["p"]


class ConfirmFailsOnce(FinalLabelWriter):
    """The fence, losing Redis once right after the Kafka commit of an answer's events: the
    answer's record and its final label are in the log, nothing after them was marked."""

    failed = False

    def confirm(self, decisions):  # type: ignore[no-untyped-def,override]
        if not self.failed:
            self.failed = True
            raise DependencyUnavailable("redis", "connection lost (simulated)")
        return super().confirm(decisions)


def test_an_answer_committed_but_never_marked_is_not_recorded_twice(loop: Loop) -> None:
    """Human-tasks lost Redis after committing an answer's events and before marking them
    produced: the client's retry (or the upkeep) produces them again. The final label went
    through the fence; the answer's own `annotations` record was produced a second time (one
    answer counted twice: audits, agreement, the raw topic). Now it is produced once."""
    bootstrap = loop.stack.bootstrap_servers  # type: ignore[attr-defined]
    loop.send(PREDICTIONS, key("m"), prediction("m", 0.7))
    loop.settle(lambda: loop.queued() == 1)
    producer = stream.EventProducer(
        bootstrap, loop.prefix, "human_tasks-api", transactional_id=f"{loop.prefix}.human_tasks.answers.m"
    )
    writer = ConfirmFailsOnce(loop.queue.client, loop.queue.prefix, PublishedLabels(bootstrap, loop.prefix))
    api = HumanTaskApi(
        loop.queue, loop.api.projects, writer, producer, answers_log=PublishedAnswers(bootstrap, loop.prefix)
    )
    lease_id, request = loop.lease()
    try:
        with as_annotator():
            with pytest.raises(DependencyUnavailable):
                api.SubmitAnnotation(request, None)  # type: ignore[arg-type]
            assert [a.lease_id for a in replay(bootstrap, loop.prefix, ANNOTATIONS)] == [lease_id]
            assert loop.queue.unproduced(PROJECT, time.time() + 1) == [lease_id]
            assert api.SubmitAnnotation(request, None).duplicate  # type: ignore[arg-type]  # the retry
    finally:
        producer.close()
    annotations = list(replay(bootstrap, loop.prefix, ANNOTATIONS))
    assert [(a.item_id, a.lease_id, list(a.labels)) for a in annotations] == [("m", lease_id, ["spam"])]
    labels = one_record_each(loop)
    assert list(labels["m"].labels) == ["spam"]
    assert writer.state(PROJECT, "m") == "Ehuman:spam"
    assert loop.queue.unproduced(PROJECT, time.time() + 1) == []
