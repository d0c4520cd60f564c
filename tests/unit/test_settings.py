"""Settings fail fast, naming the bad variable; defaults are the local stack's."""

from dataclasses import dataclass

import pytest

from labelloop.core.settings import CommonSettings, SettingsError, load, positive, setting
from labelloop.inference.settings import InferenceSettings


@dataclass(frozen=True)
class Example(CommonSettings):
    required_name: str = setting("x")
    rate: float = setting(1.0, positive)
    flags: tuple[str, ...] = setting(("a",))
    enabled: bool = setting(False)


def test_defaults_are_the_local_stack() -> None:
    s = load(CommonSettings, {})
    assert s.kafka_bootstrap == "127.0.0.1:19092"
    assert s.redis_url.startswith("redis://127.0.0.1:16379")


def test_values_are_parsed_by_type() -> None:
    s = load(
        Example,
        {
            "LABELLOOP_RATE": "0.5",
            "LABELLOOP_FLAGS": "a, b,c",
            "LABELLOOP_ENABLED": "true",
            "LABELLOOP_METRICS_PORT": "9",
        },
    )
    assert (s.rate, s.flags, s.enabled, s.metrics_port) == (0.5, ("a", "b", "c"), True, 9)


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"LABELLOOP_MAX_BATCH_SIZE": "many"}, "LABELLOOP_MAX_BATCH_SIZE"),
        ({"LABELLOOP_MAX_BATCH_SIZE": "0"}, "LABELLOOP_MAX_BATCH_SIZE"),
        ({"LABELLOOP_METRICS_PORT": "70000"}, "LABELLOOP_METRICS_PORT"),
        ({"LABELLOOP_TRITON_TIMEOUT_S": "soon"}, "LABELLOOP_TRITON_TIMEOUT_S"),
    ],
)
def test_a_bad_value_fails_naming_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load(InferenceSettings, env)


def test_a_bad_boolean_names_the_variable() -> None:
    with pytest.raises(SettingsError, match="LABELLOOP_ENABLED"):
        load(Example, {"LABELLOOP_ENABLED": "perhaps"})


def test_settings_are_frozen() -> None:
    s = load(CommonSettings, {})
    with pytest.raises(AttributeError):
        s.topic_prefix = "other"  # type: ignore[misc]
