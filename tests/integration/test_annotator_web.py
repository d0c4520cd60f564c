"""The annotator web app end to end, in a real browser (Debian's chromium driven by Playwright),
against the real pipeline: ingest (tokens, projects, items), inference, routing and human-tasks
as processes on the test stack, and annotator-web in front of them.

People log in with tokens an admin created, label by keyboard only, undo, skip, reload in the
middle of the undo window; the answers are checked where they land: the `annotations` topic
(raw records) and the labels of record through `labelloop export`. Screenshots go to
`test-artifacts/annotator-web/` (ignored by git).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from models import serve, train_tfidf
from playwright import sync_api as playwright_api
from running import RunningServices
from support import REPO_ROOT, free_port, wait_until

from labelloop.core import model_repository
from labelloop.core.answers import Answer, AnswerLedger
from labelloop.core.label_log import label_records, replay
from labelloop.core.thresholds import Threshold, ThresholdStore
from labelloop.core.topics import ANNOTATIONS
from labelloop.stack.process import ManagedProcess
from labelloop.v1 import admin_pb2, auth_pb2, auth_pb2_grpc, common_pb2, human_tasks_pb2, ingest_pb2

ARTIFACTS = REPO_ROOT / "test-artifacts" / "annotator-web"
LABELS = ["business", "politics", "sports", "tech"]
UNDO_WINDOW_S = 1.5
# Leases outlive the lost-connection test's outage (its answer is sent some 20 s after its lease
# began). The expiry test runs human-tasks with leases of SHORT_LEASE_TTL_S instead.
LEASE_TTL_S = 60.0
SHORT_LEASE_TTL_S = 12.0


class WebApp:
    """The pipeline services plus annotator-web, as processes on the test stack."""

    def __init__(self, stack, workdir: Path) -> None:
        suffix = uuid.uuid4().hex[:8]
        self.services = RunningServices(
            stack,
            workdir,
            f"t-web-{suffix}",
            f"t:web:{suffix}",
            extra_env={"LABELLOOP_LEASE_TTL_S": str(LEASE_TTL_S)},
        )
        self.port = free_port()
        self.metrics_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **self.services.processes["ingest"].env,
            "LABELLOOP_WEB_PORT": str(self.port),
            "LABELLOOP_METRICS_PORT": str(self.metrics_port),
            "LABELLOOP_HUMAN_TASKS_ADDR": f"127.0.0.1:{self.services.grpc_ports['human_tasks']}",
            "LABELLOOP_INGEST_ADDR": f"127.0.0.1:{self.services.grpc_ports['ingest']}",
            "LABELLOOP_UNDO_WINDOW_S": str(UNDO_WINDOW_S),
        }
        env.pop("LABELLOOP_GRPC_PORT", None)

        def ready() -> bool:
            import urllib.request

            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=3) as r:
                return r.status == 200

        self.web = ManagedProcess(
            "annotator_web",
            [sys.executable, "-m", "labelloop.annotator_web"],
            env,
            workdir / "annotator_web" / "annotator_web.log",
            ready,
            ports=[self.port, self.metrics_port],
            start_timeout_s=60,
            stop_timeout_s=20,
        )

    def start(self) -> None:
        self.services.start()
        try:
            self.web.start()
        except BaseException:
            self.services.stop()
            raise

    def stop(self) -> None:
        self.web.stop()
        self.services.stop()

    def token(self, name: str, role: int, projects: list[str]) -> str:
        """A new token, created by the stack's admin over the real TokenService."""
        stub = auth_pb2_grpc.TokenServiceStub(self.services.channel("ingest"))
        created = stub.CreateToken(
            auth_pb2.CreateTokenRequest(name=name, role=role, project_ids=projects), timeout=10
        )
        return created.token

    def project(
        self,
        texts: dict[str, str],
        annotators: int = 1,
        model=None,
        audit_all: bool = False,
        multi_label_model=None,
        threshold: Threshold | None = None,
    ) -> str:
        """A new project with `texts` (item id -> text) ingested; returns its id once every item
        is waiting for people (no model yet, or `model` serving without a threshold: all go to
        people; with `audit_all`, the model auto-labels everything and every item is audited).
        `multi_label_model` (retraining.multilabel.OvrModel) makes it a multi-label project served
        by that model under `threshold`."""
        project_id = f"web-{uuid.uuid4().hex[:8]}"
        spec: dict = {"audit_rate": 1.0} if audit_all else {}
        if multi_label_model is not None:
            spec["task_type"] = common_pb2.TASK_TYPE_MULTI_LABEL
        self.services.create_project(project_id, LABELS, annotators_per_task=annotators, **spec)
        if model is not None:
            assert serve(self.services.stack, project_id, model, LABELS) == 1
        if multi_label_model is not None:
            multi_label_model.write_version(self.services.stack.model_repository, project_id, 1)
            stack = self.services.stack
            assert model_repository.load_and_wait(stack.triton_grpc_url, project_id, timeout=120) == 1
        if threshold is not None:
            ThresholdStore(self.services.redis, self.services.redis_prefix).set(project_id, threshold)
        if audit_all:
            thresholds = ThresholdStore(self.services.redis, self.services.redis_prefix)
            thresholds.set(project_id, Threshold(0.0, model_version=1))
        items = [
            common_pb2.Item(item_id=item_id, project_id=project_id, content=common_pb2.Content(text=text))
            for item_id, text in texts.items()
        ]
        self.services.ingest().SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=30)
        status = self.services.admin()
        wait_until(
            lambda: (
                status.GetProjectStatus(
                    admin_pb2.GetProjectStatusRequest(project_id=project_id), timeout=5
                ).waiting_for_people
                == len(texts)
            ),
            90,
            message=f"{len(texts)} tasks never reached human-tasks",
        )
        return project_id

    def leased(self, project_id: str) -> int:
        """Leases held on the project's queue now (the real GetQueueStats)."""
        stats = self.services.human_tasks().GetQueueStats(
            human_tasks_pb2.GetQueueStatsRequest(project_id=project_id), timeout=5
        )
        return stats.leased

    def annotations(self, project_id: str) -> list:
        return list(
            replay(
                self.services.stack.bootstrap_servers,
                self.services.topic_prefix,
                ANNOTATIONS,
                project_id=project_id,
            )
        )

    def export(self, project_id: str, out: Path) -> list[dict]:
        """The labels of record through `labelloop export` (JSONL)."""
        env = {**self.services.processes["ingest"].env, "LABELLOOP_TOKEN": self.services.token}
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "labelloop.cli.main",
                "export",
                "--project",
                project_id,
                "--out",
                str(out),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def web(stack, tmp_path_factory) -> Iterator[WebApp]:
    app = WebApp(stack, tmp_path_factory.mktemp("web"))
    app.start()
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator:
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Debian chromium is not installed: run make setup (deploy/local/setup.d/40-browser.sh)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def new_page(browser, web: WebApp, width: int = 1280, height: int = 800):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.errors = errors  # type: ignore[attr-defined]
    page.goto(web.url)
    return page


def log_in(page, token: str) -> None:
    """Log in by keyboard: the token field has focus; type, Enter."""
    page.get_by_label("Your token").wait_for()
    page.keyboard.type(token)
    page.keyboard.press("Enter")
    page.locator("#who").wait_for(state="visible")


def shown_item(page) -> str:
    """The id of the item on screen (its text starts with "<id>: ")."""
    page.locator("#task").wait_for(state="visible")
    return page.locator("#content").inner_text().split(":", 1)[0].strip()


UNNAMED_CONTROLS = """() => [...document.querySelectorAll('button, input, select, a, [tabindex]')]
  .filter((el) => el.getClientRects().length > 0)
  .filter((el) => !(el.getAttribute('aria-label') || el.getAttribute('aria-labelledby')
                    || (el.labels && el.labels.length) || el.textContent.trim()))
  .map((el) => el.outerHTML.slice(0, 80))"""


def next_item(page, previous: str | None) -> str:
    wait_until(
        lambda: page.locator("#task").is_visible() and shown_item(page) != previous,
        20,
        message="the next task never appeared",
    )
    return shown_item(page)


KEY = {label: str(i + 1) for i, label in enumerate(LABELS)}


def texts(n: int, tag: str) -> dict[str, str]:
    return {f"{tag}-{i}": f"{tag}-{i}: a news item about {LABELS[i % 4]} number {i}" for i in range(n)}


def test_an_annotator_labels_by_keyboard_undoes_skips_and_exactly_those_answers_land(
    web: WebApp, browser, tmp_path
) -> None:
    project_id = web.project(texts(6, "kb"))
    token = web.token("alice", auth_pb2.ROLE_ANNOTATOR, [project_id])
    page = new_page(browser, web)
    page.screenshot(path=str(ARTIFACTS / "login.png"))

    # A wrong token says so and keeps the form.
    page.get_by_label("Your token").fill("not-a-token")
    page.keyboard.press("Enter")
    wait_until(
        lambda: "not valid" in page.locator("#login-error").inner_text(),
        10,
        message=lambda: f"login error: {page.locator('#login-error').inner_text()!r}",
    )
    page.get_by_label("Your token").fill("")
    log_in(page, token)

    answered: dict[str, str] = {}
    item = shown_item(page)
    assert page.locator("#reason-badge").inner_text().lower() == "no model"
    assert page.locator("#labels button").count() == len(LABELS)
    assert page.evaluate(UNNAMED_CONTROLS) == []  # every visible control has an accessible name
    # The page holds the task shown plus one leased ahead.
    wait_until(lambda: web.leased(project_id) == 2, 10, message=lambda: f"{web.leased(project_id)} leased")
    page.screenshot(path=str(ARTIFACTS / "task.png"))

    # 1: answer with a key; the next task is there at once and has the focus.
    page.keyboard.press(KEY["sports"])
    answered[item] = "sports"
    item = next_item(page, item)
    assert page.evaluate("() => document.activeElement && document.activeElement.id") == "task"

    # 2: answer, change our mind within the undo window, answer again.
    page.keyboard.press(KEY["tech"])
    page.locator("#undo-bar").wait_for(state="visible")
    page.keyboard.press("Control+z")
    wait_until(lambda: shown_item(page) == item, 5, message="undo did not bring the task back")
    assert "was not sent" in page.locator("#message").inner_text()
    page.keyboard.press(KEY["politics"])
    answered[item] = "politics"
    item = next_item(page, item)

    # 3: skip (Space): the task goes back, unanswered.
    skipped = item
    page.keyboard.press(" ")
    item = next_item(page, item)

    # 4: answer, then wait until nothing is held any more.
    page.keyboard.press(KEY["business"])
    answered[item] = "business"
    item = next_item(page, item)
    wait_until(lambda: page.locator("#undo-bar").is_hidden(), 10, message="the held answer was never sent")
    wait_until(
        lambda: page.locator("#stat-mine").inner_text() == "3",
        10,
        message=lambda: f"my answers shows {page.locator('#stat-mine').inner_text()}",
    )
    page.keyboard.press("?")
    page.locator("#help").wait_for(state="visible")
    page.screenshot(path=str(ARTIFACTS / "keys.png"))
    page.keyboard.press("Escape")
    page.set_viewport_size({"width": 390, "height": 844})
    page.screenshot(path=str(ARTIFACTS / "task-phone.png"), full_page=True)
    assert page.errors == []  # type: ignore[attr-defined]

    # Exactly the three answers reached the annotations topic (raw records, the undone one never
    # sent), and the labels of record hold them with the annotator's name, the skipped item not.
    wait_until(lambda: len(web.annotations(project_id)) >= 3, 30, message="annotations never arrived")
    records = web.annotations(project_id)
    assert sorted((a.item_id, a.labels[0], a.annotator_id) for a in records) == sorted(
        (item_id, label, "alice") for item_id, label in answered.items()
    )
    rows = wait_until(
        lambda: (r := web.export(project_id, tmp_path / "labels.jsonl")) and len(r) >= 3 and r,
        30,
        message="export never held the three labels",
    )
    assert {(r["id"], r["label"], r["source"], r["annotators"]) for r in rows} == {
        (item_id, label, "human", "alice") for item_id, label in answered.items()
    }
    assert skipped not in {r["id"] for r in rows}

    # Leaving the page gives back the leases it held.
    wait_until(lambda: web.leased(project_id) == 2, 10, message=lambda: f"{web.leased(project_id)} leased")
    page.goto("about:blank")
    wait_until(
        lambda: web.leased(project_id) == 0, 10, message=lambda: f"{web.leased(project_id)} still leased"
    )
    page.context.close()


def test_the_models_suggestion_and_top_three_are_shown_and_enter_accepts_it(web: WebApp, browser) -> None:
    model = train_tfidf(
        ["shares and profits", "the election vote", "the football match", "a new phone chip"] * 3,
        LABELS * 3,
    )
    project_id = web.project({"sg-0": "sg-0: the match and the football league"}, model=model)
    page = new_page(browser, web)
    log_in(page, web.token("hana", auth_pb2.ROLE_ANNOTATOR, [project_id]))
    shown_item(page)
    assert page.locator("#reason-badge").inner_text().lower() == "uncertain"
    assert "suggests “sports”" in page.locator("#suggestion-text").inner_text()
    assert page.locator("#top3 meter").count() == 3
    assert page.locator("#labels button.suggested").inner_text().endswith("sports")
    page.screenshot(path=str(ARTIFACTS / "task-suggestion.png"))
    page.keyboard.press("Enter")
    wait_until(
        lambda: (
            [(a.item_id, a.labels[0], a.annotator_id) for a in web.annotations(project_id)]
            == [("sg-0", "sports", "hana")]
        ),
        30,
        message="Enter did not answer with the suggestion",
    )
    page.context.close()


def test_an_audit_shows_neither_the_models_answer_nor_a_preselected_label(web: WebApp, browser) -> None:
    model = train_tfidf(
        ["shares and profits", "the election vote", "the football match", "a new phone chip"] * 3,
        LABELS * 3,
    )
    project_id = web.project({"au-0": "au-0: the match and the football league"}, model=model, audit_all=True)
    page = new_page(browser, web)
    log_in(page, web.token("kim", auth_pb2.ROLE_ANNOTATOR, [project_id]))
    shown_item(page)
    assert page.locator("#reason-badge").inner_text().lower() == "audit"
    assert "hidden" in page.locator("#suggestion-text").inner_text()
    assert page.locator("#top3 li").count() == 0
    assert page.locator("#labels button.suggested").count() == 0
    assert page.locator('#labels button[aria-pressed="true"]').count() == 0
    page.keyboard.press("Enter")  # nothing to accept: it says so and answers nothing
    wait_until(
        lambda: "no suggestion" in page.locator("#message").inner_text(), 5, message="Enter was silent"
    )
    assert page.locator("#content").inner_text().startswith("au-0")
    page.screenshot(path=str(ARTIFACTS / "audit.png"))
    page.keyboard.press(KEY["sports"])
    wait_until(
        lambda: (
            [(a.item_id, a.audit, list(a.audited_labels)) for a in web.annotations(project_id)]
            == [("au-0", True, ["sports"])]
        ),
        30,
        message=lambda: f"annotations: {web.annotations(project_id)}",
    )
    page.context.close()


def test_a_reload_in_the_undo_window_sends_the_held_answer_and_says_so(web: WebApp, browser) -> None:
    project_id = web.project(texts(3, "rl"))
    token = web.token("carol", auth_pb2.ROLE_ANNOTATOR, [project_id])
    page = new_page(browser, web)
    log_in(page, token)
    item = shown_item(page)
    page.keyboard.press(KEY["tech"])
    page.reload()  # inside the undo window
    wait_until(
        lambda: "recorded" in page.locator("#message").inner_text(),
        20,
        message=lambda: f"message: {page.locator('#message').inner_text()!r}",
    )
    assert "NOT" not in page.locator("#message").inner_text()

    # The page sends the held answer when it closes and again when it loads (it cannot know the
    # first got through): one answer, under one lease. Annotation records are at-least-once per
    # lease (a repeat submit re-produces an answer whose events were not yet marked produced);
    # every consumer counts them per lease.
    def answers() -> set[tuple[str, str, str]]:
        return {(a.item_id, a.labels[0], a.lease_id) for a in web.annotations(project_id)}

    wait_until(lambda: len(answers()) == 1, 30, message=lambda: f"annotations: {answers()}")
    [(answered_item, label, _lease)] = answers()
    assert (answered_item, label) == (item, "tech")
    # ... and its final label exists once, counted on the raw labels topic.
    stack = web.services.stack
    records = wait_until(
        lambda: label_records(stack.bootstrap_servers, web.services.topic_prefix, project_id).get(item),
        30,
        message="no final label for the answered item",
    )
    assert len(records) == 1, records
    page.context.close()


def test_two_annotators_on_a_two_person_project_reach_consensus(web: WebApp, browser, tmp_path) -> None:
    project_id = web.project(texts(2, "k2"), annotators=2)
    pages = []
    for name in ("dora", "erik"):
        page = new_page(browser, web)
        log_in(page, web.token(name, auth_pb2.ROLE_ANNOTATOR, [project_id]))
        pages.append(page)
    truth = {"k2-0": "business", "k2-1": "politics"}
    for page in pages:
        item = None
        for _ in range(2):
            item = next_item(page, item)
            page.keyboard.press(KEY[truth[item]])
    rows = wait_until(
        lambda: (r := web.export(project_id, tmp_path / "k2.jsonl")) and len(r) == 2 and r,
        60,
        message="the two items never reached consensus",
    )
    assert {(r["id"], r["label"], r["annotators"]) for r in rows} == {
        (item_id, label, "dora,erik") for item_id, label in truth.items()
    }
    for page in pages:
        page.context.close()


@contextlib.contextmanager
def lease_ttl(web: WebApp, ttl_s: float) -> Iterator[None]:
    """human-tasks restarted with leases of `ttl_s` for the block, and as before after it."""
    process = web.services.processes["human_tasks"]
    before = process.env["LABELLOOP_LEASE_TTL_S"]

    def restart(value: str) -> None:
        process.stop()
        process.env["LABELLOOP_LEASE_TTL_S"] = value
        process.start()

    restart(str(ttl_s))
    try:
        yield
    finally:
        restart(before)


def test_an_expired_lease_is_said_and_the_next_task_loads(web: WebApp, browser) -> None:
    with lease_ttl(web, SHORT_LEASE_TTL_S):
        project_id = web.project(texts(3, "ex"))
        page = new_page(browser, web)
        log_in(page, web.token("fay", auth_pb2.ROLE_ANNOTATOR, [project_id]))
        item = shown_item(page)
        # Answering a lease the server no longer honours: 409 with a message people can act on.
        gone = page.request.post(f"{web.url}/api/answer", data={"lease_id": "0" * 32, "label": "tech"})
        assert gone.status == 409 and gone.json()["error"] == "lease_lost", gone.text()
        # A malformed lease id is a bad request, not a lost lease.
        bad = page.request.post(f"{web.url}/api/answer", data={"lease_id": "no-such-lease", "label": "tech"})
        assert bad.status == 422, bad.text()
        # Walk away: the lease runs out, the page says so and shows a task again.
        wait_until(
            lambda: "expired" in page.locator("#message").inner_text(),
            SHORT_LEASE_TTL_S + 15,
            message=lambda: f"message: {page.locator('#message').inner_text()!r}",
        )
        page.locator("#task").wait_for(state="visible")
        page.keyboard.press(KEY["sports"])
        wait_until(
            lambda: len(web.annotations(project_id)) == 1, 30, message="the answer after expiry never landed"
        )
        assert item
        page.context.close()


def test_the_overview_shows_an_admins_project_counts(web: WebApp, browser) -> None:
    project_id = web.project(texts(4, "ov"))
    page = new_page(browser, web)
    log_in(page, web.services.token)
    page.goto(f"{web.url}/overview#project={project_id}")
    wait_until(
        lambda: page.locator("#ingested").inner_text() == "4",
        20,
        message=lambda: f"ingested shows {page.locator('#ingested').inner_text()!r}",
    )
    assert page.locator("#waiting_for_people").inner_text() == "4"
    assert page.locator("#human_labeled").inner_text() == "0"
    assert page.locator("#serving_version").inner_text() == "none yet"
    assert page.locator("#audited_precision").inner_text() == "no audits yet"
    # Audits recorded (as retraining records people's verdicts on auto-labels) show against the target.
    ledger = AnswerLedger(web.services.redis, web.services.redis_prefix)
    for i, agree in enumerate([True] * 9 + [False]):
        ledger.record(project_id, f"audited-{i}", Answer(0, 0.97, agree, 25.0, audit=True))
    wait_until(
        lambda: page.locator("#audited_precision").inner_text() == "0.900",
        20,
        message=lambda: f"audited precision shows {page.locator('#audited_precision').inner_text()!r}",
    )
    assert page.locator("#audit_note").inner_text() == "10 audits: BELOW the target"
    page.screenshot(path=str(ARTIFACTS / "overview.png"))
    # An annotator is refused the overview API.
    annotator = new_page(browser, web)
    log_in(annotator, web.token("gus", auth_pb2.ROLE_ANNOTATOR, [project_id]))
    refused = annotator.request.get(f"{web.url}/api/projects/{project_id}/overview")
    assert refused.status == 403 and refused.json()["error"] == "forbidden"
    page.context.close()
    annotator.context.close()


def test_a_revoked_token_ends_the_session_at_its_next_call(web: WebApp, browser) -> None:
    project_id = web.project(texts(2, "rv"))
    tokens = auth_pb2_grpc.TokenServiceStub(web.services.channel("ingest"))
    created = tokens.CreateToken(
        auth_pb2.CreateTokenRequest(name="ivan", role=auth_pb2.ROLE_ANNOTATOR, project_ids=[project_id]),
        timeout=10,
    )
    page = new_page(browser, web)
    log_in(page, created.token)
    shown_item(page)
    tokens.RevokeToken(auth_pb2.RevokeTokenRequest(token_id=created.info.token_id), timeout=10)
    page.keyboard.press(KEY["tech"])  # the answer goes out after the undo window, and is refused
    page.get_by_label("Your token").wait_for()
    assert "log in again" in page.locator("#login-error").inner_text()
    assert web.annotations(project_id) == []
    # The cookie is gone too: the API says who is not logged in.
    assert page.request.get(f"{web.url}/api/me").status == 401
    page.context.close()


def test_a_lost_connection_shows_a_banner_retries_and_loses_no_answer(web: WebApp, browser) -> None:
    project_id = web.project(texts(3, "lc"))
    page = new_page(browser, web)
    log_in(page, web.token("judy", auth_pb2.ROLE_ANNOTATOR, [project_id]))
    item = shown_item(page)
    tries: list[str] = []  # each finished or failed try to send the answer

    def answer_try(request) -> None:
        if request.method == "POST" and request.url.endswith("/api/answer"):
            tries.append(request.url)

    page.on("requestfinished", answer_try)
    page.on("requestfailed", answer_try)
    web.services.kill("human_tasks")
    try:
        page.keyboard.press(KEY["politics"])  # held, then sent while human-tasks is down
        page.locator("#banner").wait_for(state="visible", timeout=30_000)
        assert "Connection lost" in page.locator("#banner-text").inner_text()
        page.screenshot(path=str(ARTIFACTS / "connection-lost.png"))
        # After its fourth failed try the page waits 8 s before the fifth (backoff 1, 2, 4, 8 s):
        # "Retry now" must send it at once. Clicked while the service is still down, so the
        # page's own backoff cannot hide the banner first.
        wait_until(lambda: page.evaluate("1") and len(tries) >= 4, 60, message=lambda: f"{len(tries)} tries")
        with page.expect_request(
            lambda r: r.method == "POST" and r.url.endswith("/api/answer"), timeout=4_000
        ):
            page.locator("#banner-retry").click()
        wait_until(
            lambda: page.locator("#banner-text").inner_text().startswith("Connection lost"),
            30,
            message=lambda: f"banner says {page.locator('#banner-text').inner_text()!r}",
        )
        assert page.locator("#banner").is_visible()
    finally:
        web.services.start(["human_tasks"])
    # Back: wake the page's waiting try now (as the button does), not at its next backoff step.
    page.evaluate("window.dispatchEvent(new Event('labelloop-retry'))")
    page.locator("#banner").wait_for(state="hidden", timeout=60_000)
    wait_until(
        lambda: [(a.item_id, a.labels[0]) for a in web.annotations(project_id)] == [(item, "politics")],
        60,
        message=lambda: f"annotations: {[(a.item_id, a.labels[0]) for a in web.annotations(project_id)]}",
    )
    page.context.close()


def test_an_image_task_shows_its_image_and_only_people_of_its_project_can_fetch_it(
    web: WebApp, browser
) -> None:
    """The image of a leased task is served through a link signed for its project: the person
    sees it; a person of another project gets 403 for the same link and for the same URI signed
    for their own project; an edited URI and no session are refused too."""
    import numpy as np

    from labelloop.core.media import DEFAULT_MEDIA_ROOT, MediaStore
    from labelloop.datasets.images import png_bytes

    project_id = f"img-{uuid.uuid4().hex[:8]}"
    web.services.create_project(project_id, LABELS, modality=common_pb2.MODALITY_IMAGE)
    image = png_bytes(np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1)))
    ref = MediaStore(DEFAULT_MEDIA_ROOT).put(image)
    other_ref = MediaStore(DEFAULT_MEDIA_ROOT).put(png_bytes(np.full((16, 16), 99, dtype=np.uint8)))
    item = common_pb2.Item(item_id="img-0", project_id=project_id, content=common_pb2.Content(media=ref))
    assert (
        web.services.ingest().SubmitBatch(ingest_pb2.SubmitBatchRequest(items=[item]), timeout=30).accepted
        == 1
    )
    status = web.services.admin()
    wait_until(
        lambda: (
            status.GetProjectStatus(
                admin_pb2.GetProjectStatusRequest(project_id=project_id), timeout=5
            ).waiting_for_people
            == 1
        ),
        90,
        message="the image task never reached human-tasks",
    )
    other_project = f"other-{uuid.uuid4().hex[:8]}"
    web.services.create_project(other_project, LABELS)

    page = new_page(browser, web)
    log_in(page, web.token("iris", auth_pb2.ROLE_ANNOTATOR, [project_id]))
    img = page.locator("#content img")
    img.wait_for(state="visible")
    wait_until(
        lambda: img.evaluate("(el) => el.complete && el.naturalWidth") == 64, 20, message="image not loaded"
    )
    page.screenshot(path=str(ARTIFACTS / "image-task.png"))
    link = img.get_attribute("src")
    assert link is not None and link.startswith(f"/api/projects/{project_id}/media?")
    own = page.context.request.get(web.url + link)
    assert own.status == 200 and own.headers["content-type"] == "image/png" and own.body() == image

    stranger = new_page(browser, web)
    log_in(stranger, web.token("mallory", auth_pb2.ROLE_ANNOTATOR, [other_project]))
    refused = stranger.context.request.get(web.url + link)
    assert refused.status == 403 and refused.json()["error"] == "forbidden"
    # The same URI and signature under the stranger's own project: not signed for it.
    moved = link.replace(f"/api/projects/{project_id}/", f"/api/projects/{other_project}/")
    assert stranger.context.request.get(web.url + moved).status == 403
    # The person of the project cannot reach another file by editing the URI.
    edited = link.replace(ref.uri.split("/")[-1], other_ref.uri.split("/")[-1])
    assert page.context.request.get(web.url + edited).status == 403
    anonymous = browser.new_context()
    assert anonymous.request.get(web.url + link).status == 401
    anonymous.close()
    assert not page.errors  # type: ignore[attr-defined]


def test_a_multi_label_task_toggles_labels_by_key_and_click_marks_the_uncertain_and_enter_submits(
    web: WebApp, browser, tmp_path
) -> None:
    from labelloop.retraining.multilabel import OvrFamily

    model = OvrFamily().fit(
        ["shares and profits", "the election vote", "the football match", "a new phone chip"] * 3
        + ["the football match and the election vote"] * 3,
        [("business",), ("politics",), ("sports",), ("tech",)] * 3 + [("politics", "sports")] * 3,
        LABELS,
    )
    # sports is always a confident "on", business and tech always a confident "off", politics
    # never decided: the task reaches people with politics alone marked uncertain.
    threshold = Threshold(
        model_version=1,
        label_upper={"sports": 0.0, "business": 1.01, "tech": 1.01, "politics": 1.01},
        label_lower={"sports": -0.01, "business": 1.0, "tech": 1.0, "politics": -0.01},
    )
    project_id = web.project(
        {"ml-0": "ml-0: the football match and the election vote"},
        multi_label_model=model,
        threshold=threshold,
    )
    page = new_page(browser, web)
    log_in(page, web.token("mila", auth_pb2.ROLE_ANNOTATOR, [project_id]))
    shown_item(page)
    button = {label: page.locator(f'#labels button[data-label="{label}"]') for label in LABELS}

    def pressed(label: str) -> bool:
        return button[label].get_attribute("aria-pressed") == "true"

    assert [label for label in LABELS if "uncertain" in (button[label].get_attribute("class") or "")] == [
        "politics"
    ]
    assert button["politics"].inner_text().endswith("?")
    assert "politics" in page.locator("#suggestion-text").inner_text()
    assert page.locator("#accept-text").inner_text() == "Submit the labels that are on"
    assert page.evaluate(UNNAMED_CONTROLS) == []
    page.screenshot(path=str(ARTIFACTS / "multi-label-task.png"))
    # A key toggles its label, and so does a click; nothing is sent yet.
    before = pressed("tech")
    page.keyboard.press(KEY["tech"])
    assert pressed("tech") != before
    button["tech"].click()
    assert pressed("tech") == before
    for label in LABELS:
        if pressed(label) != (label in ("sports", "politics")):
            page.keyboard.press(KEY[label])
    assert [label for label in LABELS if pressed(label)] == ["politics", "sports"]
    assert web.annotations(project_id) == []
    page.screenshot(path=str(ARTIFACTS / "multi-label-toggled.png"))
    page.keyboard.press("Enter")
    wait_until(
        lambda: (
            [(a.item_id, list(a.labels), a.annotator_id) for a in web.annotations(project_id)]
            == [("ml-0", ["politics", "sports"], "mila")]
        ),
        30,
        message=lambda: f"annotations: {[(a.item_id, list(a.labels)) for a in web.annotations(project_id)]}",
    )
    rows = wait_until(
        lambda: (r := web.export(project_id, tmp_path / "ml.jsonl")) and r,
        60,
        message="the multi-label answer never became the label of record",
    )
    assert [(r["id"], r["label"], json.loads(r["labels"]), r["source"]) for r in rows] == [
        ("ml-0", "politics|sports", ["politics", "sports"], "human")
    ]
    records = label_records(web.services.stack.bootstrap_servers, web.services.topic_prefix, project_id)
    assert {k: len(v) for k, v in records.items()} == {"ml-0": 1}
    assert page.errors == []  # type: ignore[attr-defined]
    page.context.close()
