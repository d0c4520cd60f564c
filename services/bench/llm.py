"""The LLM source in a bench run (`--llm-url URL --llm-model NAME`, or `--llm-sim-accuracy P`).

The bench starts the LLM source service (`python -m labelloop.llm_source`, metrics on 9107, the
bench's fixed ports) against the local stack, pointed at the given endpoint, or at a simulated
one it starts itself (bench/llm_sim.py: right with probability P, knowing the hidden labels; part
of the simulation harness like the simulated people). At the end it reads the service's counters
(`labelloop_llm_calls` by outcome, `labelloop_llm_tokens` by kind) for the bench's project and
stops what it started. The hourly budget is off (`LABELLOOP_LLM_CALLS_PER_HOUR=0`): a bench
streams thousands of items in minutes.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from labelloop.bench.llm_sim import ChatServer, SimulatedLlm
from labelloop.stack.services import LLM_SOURCE

METRICS_PORT = 9107
SIM_MODEL = "simulated"


@dataclass(frozen=True)
class LlmOptions:
    """What the bench was asked for: a real endpoint (`url`, `model`) or a simulated one."""

    url: str = ""
    model: str = ""
    sim_accuracy: float | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.url) or self.sim_accuracy is not None

    def check(self) -> str | None:
        """What is wrong with the options (None when fine): BenchError's message."""
        if self.url and self.sim_accuracy is not None:
            return "--llm-url and --llm-sim-accuracy exclude each other"
        if self.url and not self.model:
            return "--llm-url needs --llm-model"
        if self.sim_accuracy is not None and not 0.0 <= self.sim_accuracy <= 1.0:
            return f"--llm-sim-accuracy must be in [0, 1], got {self.sim_accuracy}"
        return None


class BenchLlm:
    """Starts the (simulated) endpoint and the LLM source; `report` reads its counters."""

    def __init__(self, options: LlmOptions, truth_by_text: Mapping[str, str], seed: int) -> None:
        from labelloop.core.settings import load
        from labelloop.stack import LocalStack, StackSettings

        self.options = options
        self.sim = (
            SimulatedLlm(truth_by_text, options.sim_accuracy, seed)
            if options.sim_accuracy is not None
            else None
        )
        self.server = ChatServer(self.sim.handle) if self.sim is not None else None
        url = self.server.url if self.server is not None else options.url
        model = SIM_MODEL if self.sim is not None else options.model
        self.source = f"llm:{model}"
        spec = LLM_SOURCE.with_env(
            {
                "LABELLOOP_LLM_BASE_URL": url,
                "LABELLOOP_LLM_MODEL": model,
                "LABELLOOP_LLM_CALLS_PER_HOUR": "0",
                "LABELLOOP_METRICS_PORT": str(METRICS_PORT),
            }
        )
        stack = LocalStack(load(StackSettings), services=[spec], say=None)
        self.process = stack.services[0].process

    def __enter__(self) -> BenchLlm:
        if self.server is not None:
            self.server.start()
        try:
            self.process.start()
        except BaseException:
            if self.server is not None:
                self.server.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.process.stop()
        finally:
            if self.server is not None:
                self.server.stop()

    def report(self, project_id: str) -> dict[str, Any]:
        """Calls by outcome, tokens by kind (the LLM source's counters for `project_id`), the
        endpoint, and for a simulated one its accuracy setting and what it answered."""
        calls: dict[str, int] = {}
        tokens: dict[str, int] = {}
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10) as resp:
                text = resp.read().decode()
        except OSError as exc:
            text = ""
            calls["unreadable"] = 0
            tokens["error"] = 0
            del exc
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.labels.get("project") != project_id or not sample.name.endswith("_total"):
                    continue
                if family.name == "labelloop_llm_calls":
                    calls[sample.labels["outcome"]] = int(sample.value)
                elif family.name == "labelloop_llm_tokens":
                    tokens[sample.labels["kind"]] = int(sample.value)
        out: dict[str, Any] = {
            "source": self.source,
            "calls": sum(calls.values()),
            "calls_by_outcome": calls,
            "failures": sum(n for outcome, n in calls.items() if outcome != "answered"),
            "tokens": tokens,
        }
        if self.sim is not None:
            out["simulated"] = {
                "accuracy_setting": self.sim.accuracy,
                "asked": self.sim.asked,
                "right": self.sim.right,
            }
        else:
            out["endpoint"] = self.options.url
        return out
