"""The health checks' short cache: results are reused for `cache_s`, and `invalidate` forgets
them, so a state change a check reads (retraining's rebuilt labeled sets) shows at once in
/readyz and the gRPC health status instead of a second later."""

from __future__ import annotations

from labelloop.core.health import Health


def test_results_are_cached_until_invalidated() -> None:
    state = {"rebuilt": False, "calls": 0}

    def labeled_sets() -> None:
        state["calls"] += 1
        if not state["rebuilt"]:
            raise RuntimeError("rebuilding")

    health = Health("retraining", cache_s=3600.0)
    health.add("labeled-sets", labeled_sets)
    assert not health.ready() and state["calls"] == 1
    state["rebuilt"] = True
    assert not health.ready() and state["calls"] == 1, "the cached result stands"
    health.invalidate()
    assert health.ready() and state["calls"] == 2
    assert health.results() == {"labeled-sets": None}
