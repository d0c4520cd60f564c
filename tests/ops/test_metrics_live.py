"""Every metric name the dashboards and alert rules use is exported by a running service or by
Triton: the live counterpart of test_metric_names.py.

Needs the `running_services` fixture (tests/conftest.py): a dict of service name -> metrics URL
(http://127.0.0.1:PORT/metrics) for the five services, plus "triton" for Triton's metrics URL.
Names are compared on `# TYPE` lines, so a labelled metric counts as exported even before its
first sample (prometheus_client writes HELP/TYPE for every registered metric).
"""

from __future__ import annotations

import urllib.request

import pytest
from promql_names import PROMETHEUS_SYNTHETIC, exported_names, used_metric_names

SERVICES = ("ingest", "inference", "routing", "human_tasks", "retraining")


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200, f"{url} answered {response.status}"
        return response.read().decode()


@pytest.mark.integration
def test_every_used_metric_is_exported_by_a_running_endpoint(running_services: dict[str, str]) -> None:
    missing_endpoints = [name for name in (*SERVICES, "triton") if name not in running_services]
    assert not missing_endpoints, f"running_services lacks {missing_endpoints}"
    exported: dict[str, set[str]] = {
        name: exported_names(scrape(url)) for name, url in running_services.items()
    }
    for name, names in exported.items():
        assert names, f"{name} at {running_services[name]} exports no metric"
    everything = set().union(*exported.values())
    used = used_metric_names()
    missing = {
        metric: where
        for metric, where in used.items()
        if metric not in everything and metric not in PROMETHEUS_SYNTHETIC
    }
    assert not missing, "used by dashboards/alerts but exported by no running endpoint:\n" + "\n".join(
        f"  {metric}: {', '.join(where)}" for metric, where in sorted(missing.items())
    )
    # The services export their own consumers' lag (the alert on it must have a source).
    assert "labelloop_consumer_lag" in set().union(*(exported[s] for s in SERVICES))
