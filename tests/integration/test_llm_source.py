"""The LLM client against a real HTTP server speaking the Chat Completions protocol, the test's
own (Starlette on uvicorn, 127.0.0.1): the request it sends (structured output with the label
enum, the bearer key), normal answers, an answer outside the label set, malformed JSON, timeouts,
429 and 5xx retried with backoff, a 4xx not retried, the concurrency limit, and the per-project
budget of calls per hour in the stack's Redis; and the LLM source service end to end: items
without a model are asked about and its votes land on the votes topic, one per item, while a
429 storm costs only retries."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from running import RunningServices
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from support import free_port, wait_until

from labelloop.bench.llm_sim import ChatServer, SimulatedLlm, completion
from labelloop.core import redis_store
from labelloop.core.label_log import replay
from labelloop.core.label_model_store import LabelModelStore
from labelloop.core.topics import VOTES
from labelloop.llm_source.client import (
    ANSWERED,
    MALFORMED,
    OUT_OF_SET,
    OVER_BUDGET,
    REJECTED,
    TIMEOUT,
    UNAVAILABLE,
    HourlyBudget,
    LlmClient,
    LlmConfig,
)
from labelloop.stack.process import ManagedProcess
from labelloop.v1 import common_pb2, human_tasks_pb2, ingest_pb2

LABELS = ["sports", "politics", "tech"]
KEY = "sk-test-" + uuid.uuid4().hex


@dataclass
class Endpoint:
    """A scripted Chat Completions server: each request takes the next behaviour of `script`
    (the last one repeats): ("label", x), ("content", raw), ("status", code), ("sleep", s),
    ("body", raw bytes)."""

    url: str = ""
    script: list[tuple[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0

    def next(self) -> tuple[str, Any]:
        return self.script.pop(0) if len(self.script) > 1 else self.script[0]


@pytest.fixture(scope="module")
def endpoint() -> Iterator[Endpoint]:
    state = Endpoint()

    async def completions(request: Request) -> Response:
        state.requests.append(await request.json())
        state.headers.append(dict(request.headers))
        kind, value = state.next()
        state.in_flight += 1
        state.most_in_flight = max(state.most_in_flight, state.in_flight)
        try:
            if kind == "sleep":
                await asyncio.sleep(value)
                kind, value = "label", "tech"
            elif kind == "hold":
                await asyncio.sleep(0.3)
                kind, value = "label", "tech"
        finally:
            state.in_flight -= 1
        if kind == "status":
            return JSONResponse(
                {"error": {"message": "scripted"}}, status_code=value, headers={"Retry-After": "0"}
            )
        if kind == "body":
            return Response(value, media_type="application/json")
        return completion(json.dumps({"label": value}) if kind == "label" else value, 50, 5)

    with ChatServer(completions) as server:  # the bench's simulated endpoint's server
        state.url = server.url
        yield state


def client(endpoint: Endpoint, script: list[tuple[str, Any]], **config: Any) -> tuple[LlmClient, list[float]]:
    endpoint.script = script
    endpoint.requests.clear()
    endpoint.headers.clear()
    waits: list[float] = []
    options = {"timeout_s": 2.0, "max_retries": 2, "backoff_s": 0.01, **config}
    llm = LlmClient(LlmConfig(endpoint.url, "tiny-model", api_key=KEY, **options), sleep=waits.append)
    return llm, waits


def test_a_normal_answer_and_the_request_it_came_from(endpoint: Endpoint) -> None:
    llm, _ = client(endpoint, [("label", "politics")])
    answer = llm.ask("p", LABELS, "The election is near", {"politics": "government, elections"})
    assert (answer.outcome, answer.label, answer.attempts) == (ANSWERED, "politics", 1)
    assert (answer.prompt_tokens, answer.completion_tokens) == (50, 5)
    (request,) = endpoint.requests
    assert request["model"] == "tiny-model"
    schema = request["response_format"]["json_schema"]["schema"]
    assert request["response_format"]["type"] == "json_schema"
    assert schema["properties"] == {"label": {"type": "string", "enum": LABELS}}
    assert schema["required"] == ["label"]
    assert request["messages"][-1] == {"role": "user", "content": "The election is near"}
    assert "politics: government, elections" in request["messages"][0]["content"]
    assert endpoint.headers[0]["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(llm.config), "the key never shows in a repr (or a log line made from it)"


def test_unusable_answers_give_no_label_and_are_not_retried(endpoint: Endpoint) -> None:
    for script, outcome in [
        ([("label", "cooking")], OUT_OF_SET),
        ([("content", "politics, I think")], MALFORMED),
        ([("content", json.dumps({"lab": "tech"}))], MALFORMED),
        ([("body", b"{not json")], MALFORMED),
        ([("status", 400)], REJECTED),
        ([("status", 401)], REJECTED),
    ]:
        llm, waits = client(endpoint, script)
        answer = llm.ask("p", LABELS, "x")
        assert (answer.outcome, answer.label, answer.attempts) == (outcome, None, 1), script
        assert len(endpoint.requests) == 1 and waits == [], script


def test_429_and_5xx_are_retried_with_backoff_then_answered(endpoint: Endpoint) -> None:
    llm, waits = client(endpoint, [("status", 429), ("status", 503), ("label", "tech")], backoff_s=0.5)
    answer = llm.ask("p", LABELS, "x")
    assert (answer.outcome, answer.label, answer.attempts) == (ANSWERED, "tech", 3)
    assert waits == [0.5, 1.0], "exponential backoff"
    llm, waits = client(endpoint, [("status", 500)], backoff_s=0.5, max_retries=2)
    answer = llm.ask("p", LABELS, "x")
    assert (answer.outcome, answer.attempts, len(endpoint.requests)) == (UNAVAILABLE, 3, 3)
    assert waits == [0.5, 1.0]


def test_a_slow_endpoint_times_out_and_is_retried(endpoint: Endpoint) -> None:
    # the first attempt is cut at 1 s, not waited on for 4 (room for a slow machine's retry)
    llm, _ = client(endpoint, [("sleep", 4.0), ("label", "sports")], timeout_s=1.0)
    started = time.monotonic()
    answer = llm.ask("p", LABELS, "x")
    assert (answer.outcome, answer.label, answer.attempts) == (ANSWERED, "sports", 2)
    assert time.monotonic() - started < 3.5
    llm, _ = client(endpoint, [("sleep", 1.0)], timeout_s=0.2, max_retries=1)
    assert llm.ask("p", LABELS, "x").outcome == TIMEOUT


def test_a_server_that_is_down_is_unavailable(endpoint: Endpoint) -> None:
    llm = LlmClient(
        LlmConfig(f"http://127.0.0.1:{free_port()}/v1", "m", max_retries=1, backoff_s=0), sleep=lambda s: None
    )
    answer = llm.ask("p", LABELS, "x")
    assert (answer.outcome, answer.attempts) == (UNAVAILABLE, 2)


def test_the_concurrency_limit_holds(endpoint: Endpoint) -> None:
    # requests the earlier tests gave up on (timeouts) may still be sleeping on the server
    wait_until(lambda: endpoint.in_flight == 0, 10, message="the endpoint is idle")
    llm, _ = client(endpoint, [("hold", None)], max_concurrency=2)
    endpoint.most_in_flight = 0
    threads = [threading.Thread(target=llm.ask, args=("p", LABELS, "x")) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert len(endpoint.requests) == 6
    assert endpoint.most_in_flight == 2


def test_the_budget_counts_calls_per_project_per_hour(endpoint: Endpoint, stack) -> None:
    redis_client = redis_store.connect(stack.redis_url, stack.redis_password)
    now = [1_000_000.0]
    budget = HourlyBudget(redis_client, f"t:llm:{uuid.uuid4().hex[:8]}", 3, clock=lambda: now[0])
    endpoint.script = [("label", "tech")]
    endpoint.requests.clear()
    llm = LlmClient(LlmConfig(endpoint.url, "m", backoff_s=0), budget=budget, sleep=lambda s: None)
    outcomes = [llm.ask("news", LABELS, "x").outcome for _ in range(5)]
    assert outcomes == [ANSWERED] * 3 + [OVER_BUDGET] * 2
    assert len(endpoint.requests) == 3, "over budget: no call"
    assert llm.ask("sport", LABELS, "x").outcome == ANSWERED, "budgets are per project"
    now[0] += 3600
    assert llm.ask("news", LABELS, "x").outcome == ANSWERED, "a new hour, a new budget"
    redis_client.close()


def test_the_llm_source_service_votes_on_the_items_it_asks_about(endpoint: Endpoint, stack, tmp_path) -> None:
    topic_prefix, redis_prefix = f"t-llm-{uuid.uuid4().hex[:8]}", f"t:llm:{uuid.uuid4().hex[:8]}"
    services = RunningServices(stack, tmp_path, topic_prefix, redis_prefix)
    metrics_port = free_port()

    def ready() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=3) as resp:
            return resp.status == 200

    llm_source = ManagedProcess(
        "llm_source",
        [sys.executable, "-m", "labelloop.llm_source"],
        {
            **os.environ,
            **stack.service_env(),
            "LABELLOOP_TOPIC_PREFIX": topic_prefix,
            "LABELLOOP_REDIS_KEY_PREFIX": redis_prefix,
            "LABELLOOP_METRICS_PORT": str(metrics_port),
            "LABELLOOP_LLM_BASE_URL": endpoint.url,
            "LABELLOOP_LLM_MODEL": "tiny-model",
            "LABELLOOP_LLM_API_KEY": KEY,
            "LABELLOOP_LLM_BACKOFF_S": "0.05",
            "PYTHONUNBUFFERED": "1",
        },
        tmp_path / "llm_source.log",
        ready,
        ports=[metrics_port],
        start_timeout_s=90,
        stop_timeout_s=20,
    )
    endpoint.script = [("status", 429), ("status", 503), ("label", "politics")]
    endpoint.requests.clear()
    try:
        services.start(("ingest", "inference", "routing", "human_tasks"))
        llm_source.start()
        project = f"llm-{uuid.uuid4().hex[:6]}"
        services.create_project(project, LABELS, model_name=f"none-{project}")
        ingest = services.ingest()
        for i in range(5):
            item = common_pb2.Item(
                item_id=str(i), project_id=project, content=common_pb2.Content(text=f"post {i}")
            )
            ingest.Submit(ingest_pb2.SubmitRequest(item=item), timeout=10)

        def votes() -> list:
            return list(replay(stack.bootstrap_servers, topic_prefix, VOTES, project_id=project))

        wait_until(lambda: len(votes()) >= 5, 90, message=lambda: f"votes: {len(votes())}")
        cast = votes()
        assert sorted(v.item_id for v in cast) == [str(i) for i in range(5)], "one vote per item"
        assert {(v.vote.source, v.vote.label) for v in cast} == {("llm:tiny-model", "politics")}
        assert len(endpoint.requests) == 7, "five questions, two of them retried once"
        # people answer the five tasks (politics but for item 4): the label model learns the
        # LLM was right 4 times in 5, through the votes it stashed
        human = services.human_tasks()
        answered: set[str] = set()

        def answer_one() -> bool:
            lease = human.LeaseTask(
                human_tasks_pb2.LeaseTaskRequest(project_id=project, annotator_id="ann"), timeout=10
            )
            if lease.has_task:
                item_id = lease.task.ingested.item.item_id
                label = "sports" if item_id == "4" else "politics"
                human.SubmitAnnotation(
                    human_tasks_pb2.SubmitAnnotationRequest(
                        lease_id=lease.lease_id, annotator_id="ann", labels=[label]
                    ),
                    timeout=10,
                )
                answered.add(item_id)
            return len(answered) == 5

        wait_until(answer_one, 120, message="every task answered")
        model = LabelModelStore(services.redis, redis_prefix).load(project, LABELS)
        counts = model.counts["llm:tiny-model"]
        assert (counts[1, 1], counts[0, 1], counts.sum()) == (4, 1, 5)
        assert model.judged("llm:tiny-model") == 5
        log = llm_source.log.read_text(errors="replace")
        assert KEY not in log and KEY not in services.log("inference"), "the key is never logged"
    finally:
        llm_source.stop()
        services.stop()


def test_the_client_against_the_benchs_simulated_endpoint() -> None:
    """The bench's simulated LLM over real HTTP: the client's questions reach it as Chat
    Completions requests and its answers come back as labels, right about as often as set."""
    truth = {f"post {i} about {label}": label for i, label in enumerate(["tech", "sports", "politics"] * 100)}
    sim = SimulatedLlm(truth, 0.8, seed=3)
    with ChatServer(sim.handle) as server:
        llm = LlmClient(LlmConfig(server.url, "simulated", timeout_s=5.0, max_retries=0))
        answers = [llm.ask("p", ["tech", "sports", "politics"], text) for text in truth]
    assert all(a.outcome == "answered" and a.prompt_tokens > 0 for a in answers)
    right = sum(a.label == y for a, y in zip(answers, truth.values(), strict=True))
    assert sim.asked == 300 and sim.right == right
    assert 0.7 < right / 300 < 0.9
