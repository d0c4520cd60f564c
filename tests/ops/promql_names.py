"""Which metric names the dashboards and alert rules use, and which names an endpoint exports.

Shared by the static check (test_metric_names.py: against the catalogue in
services/core/metrics.py) and the live one (test_metrics_live.py: against the running services'
and Triton's /metrics). A name counts as used when it appears as a metric selector in a PromQL
expression of an alert rule (deploy/prometheus/alerts.yml), a dashboard panel target, or a
dashboard variable query (deploy/grafana/dashboards/*.json).

The extraction is a small PromQL lexer, not a full parser: it drops comments, strings, label
matchers `{...}`, ranges `[...]`, Grafana variables and the label lists of `by/without/on/
ignoring/group_left/group_right`; what is left is numbers, operators, keywords, function calls
and metric names. An unknown function name is an error, so a typo cannot pass as a metric name.
That the expressions are valid PromQL is checked by promtool (test_prometheus.py,
test_grafana.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
ALERT_RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
DASHBOARDS_DIR = REPO / "deploy" / "grafana" / "dashboards"

# Triton's own metrics (served on its port 8002), which dashboards may use besides the
# catalogue. Counters carry no `_total` suffix; durations are cumulative microseconds.
TRITON_METRICS = frozenset(
    {
        "nv_inference_request_success",
        "nv_inference_request_failure",
        "nv_inference_count",
        "nv_inference_exec_count",
        "nv_inference_request_duration_us",
        "nv_inference_queue_duration_us",
        "nv_inference_compute_input_duration_us",
        "nv_inference_compute_infer_duration_us",
        "nv_inference_compute_output_duration_us",
        "nv_inference_pending_request_count",
        "nv_cpu_utilization",
        "nv_cpu_memory_total_bytes",
        "nv_cpu_memory_used_bytes",
    }
)
# Series Prometheus makes itself for every target, exported by no endpoint.
PROMETHEUS_SYNTHETIC = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

AGGREGATIONS = frozenset(
    {
        "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
        "bottomk", "topk", "quantile", "limitk", "limit_ratio",
    }
)  # fmt: skip
FUNCTIONS = frozenset(
    {
        "abs", "absent", "absent_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
        "day_of_month", "day_of_week", "day_of_year", "days_in_month", "delta", "deriv", "exp",
        "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
        "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters",
        "double_exponential_smoothing", "hour", "idelta", "increase", "irate", "label_join",
        "label_replace", "ln", "log2", "log10", "minute", "month", "predict_linear", "rate",
        "resets", "round", "scalar", "sgn", "sort", "sort_desc", "sort_by_label",
        "sort_by_label_desc", "sqrt", "time", "timestamp", "vector", "year", "avg_over_time",
        "min_over_time", "max_over_time", "sum_over_time", "count_over_time",
        "quantile_over_time", "stddev_over_time", "stdvar_over_time", "last_over_time",
        "present_over_time", "mad_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
        "cos", "cosh", "sin", "sinh", "tan", "tanh", "deg", "rad", "pi", "start", "end",
    }
)  # fmt: skip
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset({"and", "or", "unless", "atan2", "offset", "bool", "inf", "nan"})

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<variable>\$\{[^}]*\}|\$\w+)
    | (?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?[a-zA-Z]*)
    | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<open>[({\[])
    | (?P<close>[)}\]])
    | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=,@:])
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Token:
    kind: str
    text: str


def _tokens(expr: str) -> list[_Token]:
    out: list[_Token] = []
    pos = 0
    while pos < len(expr):
        match = _TOKEN.match(expr, pos)
        if match is None:
            raise ValueError(f"cannot read PromQL at {expr[pos : pos + 30]!r} in {expr!r}")
        kind = match.lastgroup or ""
        if kind not in ("space", "comment", "string", "variable"):
            out.append(_Token(kind, match.group()))
        pos = match.end()
    return out


def _skip_group(tokens: list[_Token], start: int) -> int:
    """Index just past the bracket group opening at `start`."""
    depth = 0
    for i in range(start, len(tokens)):
        if tokens[i].kind == "open":
            depth += 1
        elif tokens[i].kind == "close":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError("unbalanced brackets")


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects. Raises ValueError on an unknown function."""
    tokens = _tokens(expr)
    names: set[str] = set()
    i = 0
    while i < len(tokens):
        token = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if token.kind == "open" and token.text in "{[":
            if token.text == "{":
                names.update(_names_in_matchers(tokens, i))
            i = _skip_group(tokens, i)
            continue
        if token.kind == "name":
            word = token.text
            lowered = word.lower()
            if lowered in LABEL_LIST_KEYWORDS:
                i += 1
                if i < len(tokens) and tokens[i].text == "(":
                    i = _skip_group(tokens, i)
                continue
            if lowered in KEYWORDS or lowered in AGGREGATIONS:
                i += 1
                continue
            if nxt is not None and nxt.text == "(":
                if word not in FUNCTIONS:
                    raise ValueError(f"unknown PromQL function {word!r} in {expr!r}")
                i += 1
                continue
            names.add(word)
        i += 1
    return names


def _names_in_matchers(tokens: list[_Token], start: int) -> set[str]:
    """Names given as {__name__="..."} (strings were dropped by the lexer, so refuse those)."""
    end = _skip_group(tokens, start)
    if any(t.text == "__name__" for t in tokens[start:end]):
        raise ValueError("select metrics by name, not with a __name__ matcher")
    return set()


def grafana_to_promql(expr: str) -> str:
    """The expression with Grafana's variables replaced by values Prometheus would accept."""
    for variable, value in (
        ("$__rate_interval", "5m"),
        ("$__interval", "1m"),
        ("$__range", "1h"),
        ("${__rate_interval}", "5m"),
        ("${__interval}", "1m"),
        ("${__range}", "1h"),
    ):
        expr = expr.replace(variable, value)
    return re.sub(r"\$\{?[A-Za-z_]\w*(?::\w+)?\}?", ".*", expr)


@dataclass(frozen=True)
class Expression:
    where: str  # e.g. "alerts.yml: LabelloopServiceDown" or "labelloop-overview.json: panel 3 'x' A"
    expr: str  # PromQL as Prometheus would run it (Grafana variables substituted)


def alert_expressions(path: Path = ALERT_RULES) -> list[Expression]:
    doc = yaml.safe_load(path.read_text())
    found = []
    for group in doc["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            found.append(Expression(f"{path.name}: {name}", rule["expr"]))
    return found


def dashboard_panels(dashboard: dict) -> Iterator[dict]:
    """Every panel, including those nested in collapsed rows."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def _label_values_metric(query: str) -> str | None:
    """The series selector of a Grafana `label_values(selector, label)` query, if any."""
    match = re.fullmatch(r"\s*label_values\((.*),\s*[A-Za-z_]\w*\s*\)\s*", query, re.DOTALL)
    return match.group(1) if match else None


def dashboard_expressions(path: Path) -> list[Expression]:
    dashboard = json.loads(path.read_text())
    found = []
    for panel in dashboard_panels(dashboard):
        for target in panel.get("targets", []):
            if "expr" in target:
                where = f"{path.name}: panel {panel['id']} {panel.get('title', '')!r} {target.get('refId')}"
                found.append(Expression(where, grafana_to_promql(target["expr"])))
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        selector = _label_values_metric(text)
        expr = selector if selector is not None else text
        if expr.strip():
            found.append(Expression(f"{path.name}: variable {variable['name']}", grafana_to_promql(expr)))
    return found


def all_expressions() -> list[Expression]:
    found = alert_expressions()
    for path in sorted(DASHBOARDS_DIR.glob("*.json")):
        found.extend(dashboard_expressions(path))
    return found


def used_metric_names(expressions: Iterable[Expression] | None = None) -> dict[str, list[str]]:
    """Metric name -> where it is used, over all alert rules and dashboards."""
    used: dict[str, list[str]] = {}
    for expression in all_expressions() if expressions is None else expressions:
        for name in metric_names(expression.expr):
            used.setdefault(name, []).append(expression.where)
    return used


_SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
    "summary": ("", "_sum", "_count"),
}


def exported_names(exposition: str) -> set[str]:
    """Queryable series names an endpoint exports, read from its `# TYPE` lines.

    A labelled metric that was never updated has a `# TYPE` line but no sample yet, and it is
    still an exported metric, so TYPE lines decide (sample lines are added for untyped ones).
    Counters: the Prometheus text format names them with `_total` already (prometheus_client);
    Triton's counters have no suffix; in OpenMetrics the TYPE name lacks the `_total` its
    samples carry.
    """
    names: set[str] = set()
    openmetrics = exposition.rstrip().endswith("# EOF")
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) < 4:
                continue
            name, kind = parts[2], parts[3]
            if kind in _SUFFIXES:
                names.update(name + suffix for suffix in _SUFFIXES[kind])
            elif kind == "counter" and openmetrics and not name.endswith("_total"):
                names.add(name + "_total")
            elif kind == "info" and openmetrics:
                names.add(name + "_info")
            else:
                names.add(name)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def catalogue_exposition() -> str:
    """What a Labelloop service exports (HELP/TYPE for every catalogued metric), rendered by
    prometheus_client from the catalogue module itself, as `/metrics` would serve it."""
    from prometheus_client import REGISTRY, generate_latest

    import labelloop.core.metrics  # noqa: F401  (registers the catalogue)

    return generate_latest(REGISTRY).decode()
