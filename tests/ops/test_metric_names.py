"""Every metric name in the dashboards and alert rules is one the services declare in
services/core/metrics.py (as prometheus_client exports it), a Triton metric, or `up`.
test_metrics_live.py checks the same names against the running services."""

from __future__ import annotations

import pytest
from promql_names import (
    PROMETHEUS_SYNTHETIC,
    TRITON_METRICS,
    all_expressions,
    catalogue_exposition,
    exported_names,
    grafana_to_promql,
    metric_names,
    used_metric_names,
)


def test_metric_names_are_extracted_from_promql() -> None:
    expr = (
        'sum by (service, le) (rate(a_seconds_bucket{service=~"x|y", code!="OK"}[5m] offset 1h))'
        " / on (project) group_left (model) b_total > bool 0.5e-3"
        ' or label_replace(c, "dst", "$1", "src", "(.*)") unless absent(d{job="j"}) and e:recorded'
        " # f_in_a_comment"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b_total", "c", "d", "e:recorded"}
    assert metric_names("topk(5, sum without (instance) (x)) + 1h30m") == {"x"}
    assert metric_names("histogram_quantile(0.95, sum by (le) (rate(h_bucket[$__rate_interval])))") == {
        "h_bucket"
    }


def test_unknown_functions_and_name_matchers_are_errors() -> None:
    with pytest.raises(ValueError, match="unknown PromQL function 'rates'"):
        metric_names("rates(x_total[5m])")
    with pytest.raises(ValueError, match="__name__"):
        metric_names('{__name__="x_total"}')


def test_grafana_variables_become_promql() -> None:
    assert grafana_to_promql('rate(x{project=~"$project"}[$__rate_interval])') == 'rate(x{project=~".*"}[5m])'


def test_exported_names_come_from_type_lines() -> None:
    text = (
        "# HELP a_total A.\n# TYPE a_total counter\n"
        "# HELP h H.\n# TYPE h histogram\n"
        '# TYPE g gauge\ng{x="1"} 2.0\n'
        '# TYPE nv_inference_count counter\nnv_inference_count{model="m"} 3\n'
    )
    assert exported_names(text) == {"a_total", "h_bucket", "h_sum", "h_count", "g", "nv_inference_count"}


def test_the_catalogue_declares_what_the_dashboards_need() -> None:
    """Sanity check of the static reference: the catalogue renders its labelled metrics."""
    names = exported_names(catalogue_exposition())
    assert {
        "labelloop_consumer_lag",
        "labelloop_messages_consumed_total",
        "labelloop_batch_seconds_bucket",
    } <= names


def test_dashboards_and_alerts_use_only_declared_metrics() -> None:
    used = used_metric_names()
    assert len(all_expressions()) > 25 and len(used) > 25
    known = exported_names(catalogue_exposition()) | TRITON_METRICS | PROMETHEUS_SYNTHETIC
    unknown = {name: where for name, where in used.items() if name not in known}
    assert not unknown, "metrics used but declared nowhere (services/core/metrics.py, Triton):\n" + "\n".join(
        f"  {name}: {', '.join(where)}" for name, where in sorted(unknown.items())
    )


def test_the_overview_covers_what_operations_watch() -> None:
    """The issue's list for the overview dashboard, by the metric each item needs."""
    dashboard_names = {
        name
        for name, where in used_metric_names().items()
        if any(w.startswith("labelloop-overview.json") for w in where)
    }
    needed = {
        "labelloop_messages_consumed_total", "labelloop_messages_produced_total",
        "labelloop_routing_decisions_total", "labelloop_human_queue_depth",
        "labelloop_human_queue_oldest_age_seconds", "labelloop_audited_precision",
        "labelloop_serving_model_version", "labelloop_threshold", "labelloop_training_seconds_bucket",
        "labelloop_trainings_total", "labelloop_dead_letters_total", "labelloop_consumer_lag",
        "nv_inference_request_duration_us", "nv_inference_queue_duration_us",
    }  # fmt: skip
    assert needed <= dashboard_names, needed - dashboard_names
