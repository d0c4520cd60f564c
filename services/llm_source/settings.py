"""LLM source settings (env `LABELLOOP_*`). The API key comes from `LABELLOOP_LLM_API_KEY` (in
Kubernetes, a Secret through `config.envFromSecrets`); it is never logged."""

from __future__ import annotations

from dataclasses import dataclass, field

from labelloop.core.settings import CommonSettings, SettingsError, non_negative, port, positive, setting

ASK_MODES = ("all", "uncertain", "none")


def ask_mode(value: str) -> str | None:
    return None if value in ASK_MODES else f"must be one of {', '.join(ASK_MODES)}"


@dataclass(frozen=True)
class LlmSourceSettings(CommonSettings):
    """The LLM source: which items to ask about, the endpoint, and its limits."""

    metrics_port: int = setting(9107, port)
    llm_base_url: str = setting("http://127.0.0.1:8081/v1")
    """The OpenAI-compatible API's base URL; requests go to `{base_url}/chat/completions`."""
    llm_model: str = setting("")
    """The model name sent in each request (required unless `llm_ask` is none)."""
    llm_api_key: str = field(default="", repr=False)
    """Bearer key of the endpoint; empty: none sent."""
    llm_ask: str = setting("uncertain", ask_mode)
    """all: every item; uncertain: items without a model or below the project's threshold; none."""
    llm_timeout_s: float = setting(20.0, positive)
    llm_max_retries: int = setting(3, non_negative)
    llm_backoff_s: float = setting(0.5, non_negative)
    llm_max_concurrency: int = setting(4, positive)
    llm_calls_per_hour: int = setting(1000, non_negative)
    """Per project; 0: unlimited."""
    max_poll_records: int = setting(64, positive)

    def __post_init__(self) -> None:
        if self.llm_ask != "none" and not self.llm_model:
            raise SettingsError("LABELLOOP_LLM_MODEL is required unless LABELLOOP_LLM_ASK=none")
