"""The LLM as a label source: one classification question to an OpenAI-compatible Chat
Completions endpoint (`POST {base_url}/chat/completions`).

The request asks for structured output: `response_format` of type `json_schema` whose schema
has one property, `label`, an enum of the project's labels; the answer is read from the
`content` of the first choice. Calls are bounded: at most `max_concurrency` in flight per
client, `timeout_s` each, retried `max_retries` times with exponential backoff (honouring a
`Retry-After` of at most `max_backoff_s`) on timeouts, connection errors, 429 and 5xx; other
4xx and unusable answers are not retried. Each project has a budget of calls per hour
(`HourlyBudget`, in Redis so replicas share it). The API key is sent as a bearer token and never
logged or shown in a repr.

`ask` never raises for the endpoint's failures: it returns an `LlmAnswer` whose `label` is None
and whose `outcome` says why, so the caller degrades to people (the item keeps its route).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from labelloop.core import metrics
from labelloop.core.redis_store import Keys, unavailable

log = logging.getLogger(__name__)

ANSWERED = "answered"
OUT_OF_SET = "out_of_set"
MALFORMED = "malformed"
TIMEOUT = "timeout"
UNAVAILABLE = "unavailable"
REJECTED = "rejected"
OVER_BUDGET = "over_budget"


@dataclass(frozen=True)
class LlmConfig:
    """Where and how to call the endpoint (from the LLM source's settings)."""

    base_url: str
    model: str
    api_key: str = field(default="", repr=False)
    timeout_s: float = 20.0
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 10.0
    max_concurrency: int = 4
    temperature: float = 0.0


@dataclass(frozen=True)
class LlmAnswer:
    """What one question came to: `label` (None unless `outcome` is ANSWERED), the number of
    HTTP attempts and the tokens the endpoint reported."""

    outcome: str
    label: str | None = None
    attempts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    detail: str = ""


def build_request(
    model: str,
    labels: Sequence[str],
    text: str,
    descriptions: Mapping[str, str] | None = None,
    temperature: float = 0.0,
) -> dict[str, Any]:
    """The Chat Completions request body for classifying `text` into one of `labels`."""
    described = "\n".join(
        f"- {label}: {descriptions[label]}" if descriptions and descriptions.get(label) else f"- {label}"
        for label in labels
    )
    return {
        "model": model,
        "temperature": temperature,
        "messages": [
            {
                "role": "system",
                "content": "You label data. Answer with the one label that fits the item best, "
                "as JSON with the single key `label`. The labels:\n" + described,
            },
            {"role": "user", "content": text},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {
                "name": "label",
                "strict": True,
                "schema": {
                    "type": "object",
                    "properties": {"label": {"type": "string", "enum": list(labels)}},
                    "required": ["label"],
                    "additionalProperties": False,
                },
            },
        },
    }


def parse_answer(body: bytes, labels: Sequence[str]) -> tuple[str, str | None, int, int, str]:
    """(outcome, label, prompt tokens, completion tokens, detail) of a 200 response's body."""
    try:
        document = json.loads(body)
        content = document["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        return MALFORMED, None, 0, 0, f"not a chat completion: {type(exc).__name__}"
    usage = document.get("usage") if isinstance(document, dict) else None
    prompt = int(usage.get("prompt_tokens", 0)) if isinstance(usage, dict) else 0
    completion = int(usage.get("completion_tokens", 0)) if isinstance(usage, dict) else 0
    try:
        label = json.loads(content)["label"] if isinstance(content, str) else None
    except (ValueError, KeyError, TypeError):
        label = None
    if not isinstance(label, str):
        return MALFORMED, None, prompt, completion, "the content is not JSON with a string `label`"
    if label not in labels:
        return OUT_OF_SET, None, prompt, completion, f"{label[:40]!r} is not one of the project's labels"
    return ANSWERED, label, prompt, completion, ""


class HourlyBudget:
    """At most `calls_per_hour` calls per project per clock hour, counted in Redis
    (`<prefix>:llm-budget:<project>:<hour>`, expiring after two hours). 0: unlimited."""

    def __init__(
        self,
        client: redis.Redis,
        key_prefix: str,
        calls_per_hour: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.keys = Keys(key_prefix)
        self.calls_per_hour = calls_per_hour
        self.clock = clock

    def take(self, project_id: str) -> bool:
        """Spend one call of the project's budget; False (and nothing spent) when it is used up."""
        if self.calls_per_hour <= 0:
            return True
        key = self.keys("llm-budget", project_id, str(int(self.clock() // 3600)))
        try:
            with self.client.pipeline() as pipe:
                pipe.incr(key)
                pipe.expire(key, 7200)
                spent, _ = pipe.execute()
            if spent > self.calls_per_hour:
                self.client.decr(key)
                return False
        except redis.RedisError as exc:
            raise unavailable(exc) from exc
        return True


class LlmClient:
    """Asks the endpoint of `config` to label items (thread-safe; see the module docstring)."""

    def __init__(
        self,
        config: LlmConfig,
        budget: HourlyBudget | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.config = config
        self.budget = budget
        self.sleep = sleep
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self.url = config.base_url.rstrip("/") + "/chat/completions"

    def ask(
        self, project_id: str, labels: Sequence[str], text: str, descriptions: Mapping[str, str] | None = None
    ) -> LlmAnswer:
        """The endpoint's label for `text` among `labels`, or why there is none."""
        if self.budget is not None and not self.budget.take(project_id):
            metrics.LLM_CALLS.labels(project_id, OVER_BUDGET).inc()
            return LlmAnswer(OVER_BUDGET, detail="the project's calls for this hour are spent")
        body = json.dumps(
            build_request(self.config.model, labels, text, descriptions, self.config.temperature)
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        answer = LlmAnswer(UNAVAILABLE)
        for attempt in range(1, self.config.max_retries + 2):
            retry_after, answer = self._attempt(body, headers, labels, attempt)
            if retry_after is None or attempt > self.config.max_retries:
                break
            self.sleep(retry_after)
        metrics.LLM_CALLS.labels(project_id, answer.outcome).inc()
        metrics.LLM_TOKENS.labels(project_id, "prompt").inc(answer.prompt_tokens)
        metrics.LLM_TOKENS.labels(project_id, "completion").inc(answer.completion_tokens)
        if answer.outcome != ANSWERED:
            log.info("llm gave no label for a %s item: %s %s", project_id, answer.outcome, answer.detail)
        return answer

    def _backoff(self, attempt: int, retry_after: str | None = None) -> float:
        wait = self.config.backoff_s * 2 ** (attempt - 1)
        if retry_after:
            with contextlib.suppress(ValueError):
                wait = max(wait, float(retry_after))
        return min(wait, self.config.max_backoff_s)

    def _attempt(
        self, body: bytes, headers: dict[str, str], labels: Sequence[str], attempt: int
    ) -> tuple[float | None, LlmAnswer]:
        """One HTTP call: (seconds to wait before retrying, or None when final; the answer)."""
        request = urllib.request.Request(self.url, data=body, headers=headers, method="POST")
        with self._slots:
            try:
                with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                status = exc.code
                if status == 429 or status >= 500:
                    return self._backoff(attempt, exc.headers.get("Retry-After")), LlmAnswer(
                        UNAVAILABLE, attempts=attempt, detail=f"HTTP {status}"
                    )
                return None, LlmAnswer(REJECTED, attempts=attempt, detail=f"HTTP {status}")
            except TimeoutError:
                return self._backoff(attempt), LlmAnswer(TIMEOUT, attempts=attempt, detail="timed out")
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                if isinstance(reason, TimeoutError):
                    return self._backoff(attempt), LlmAnswer(TIMEOUT, attempts=attempt, detail="timed out")
                return self._backoff(attempt), LlmAnswer(
                    UNAVAILABLE, attempts=attempt, detail=f"connection failed: {type(reason).__name__}"
                )
        outcome, label, prompt, completion, detail = parse_answer(raw, labels)
        return None, LlmAnswer(outcome, label, attempt, prompt, completion, detail)
