"""The Grafana dashboards are valid dashboard JSON with well-formed panels, and every query in
them is valid PromQL (checked by promtool); the provisioning files point at them."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from promql_names import DASHBOARDS_DIR, dashboard_expressions, dashboard_panels
from toolchain import CHART, REPO, run

DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))
PROVISIONING = REPO / "deploy" / "grafana" / "provisioning"

# The part of Grafana's dashboard model (schemaVersion 39) these dashboards use; panels of the
# types below must carry what Grafana needs to draw them without asking the user.
_DATASOURCE = {
    "type": "object",
    "required": ["type", "uid"],
    "properties": {"type": {"const": "prometheus"}, "uid": {"type": "string", "minLength": 1}},
}
_GRID_POS = {
    "type": "object",
    "required": ["h", "w", "x", "y"],
    "additionalProperties": False,
    "properties": {
        "h": {"type": "integer", "minimum": 1},
        "w": {"type": "integer", "minimum": 1, "maximum": 24},
        "x": {"type": "integer", "minimum": 0, "maximum": 23},
        "y": {"type": "integer", "minimum": 0},
    },
}
_QUERY_PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos", "datasource", "targets", "fieldConfig"],
    "properties": {
        "id": {"type": "integer"},
        "type": {"enum": ["timeseries", "stat", "gauge", "bargauge", "table", "heatmap"]},
        "title": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "gridPos": _GRID_POS,
        "datasource": _DATASOURCE,
        "fieldConfig": {"type": "object", "required": ["defaults", "overrides"]},
        "targets": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["refId", "expr", "datasource"],
                "properties": {
                    "refId": {"type": "string", "pattern": "^[A-Z]$"},
                    "expr": {"type": "string", "minLength": 1},
                    "legendFormat": {"type": "string"},
                    "datasource": _DATASOURCE,
                },
            },
        },
    },
}
_ROW_PANEL = {
    "type": "object",
    "required": ["id", "type", "title", "gridPos", "collapsed", "panels"],
    "properties": {"type": {"const": "row"}, "gridPos": _GRID_POS, "panels": {"type": "array"}},
}
DASHBOARD_SCHEMA = {
    "type": "object",
    "required": ["uid", "title", "schemaVersion", "panels", "templating", "time", "tags"],
    "properties": {
        "uid": {"type": "string", "pattern": "^[a-zA-Z0-9_-]{1,40}$"},
        "title": {"type": "string", "minLength": 1},
        "schemaVersion": {"type": "integer", "minimum": 36},
        "time": {"type": "object", "required": ["from", "to"]},
        "refresh": {"type": "string"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "templating": {
            "type": "object",
            "required": ["list"],
            "properties": {
                "list": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name", "type"],
                        "properties": {"name": {"type": "string"}},
                    },
                }
            },
        },
        "panels": {
            "type": "array",
            "minItems": 1,
            "items": {
                "if": {"properties": {"type": {"const": "row"}}},
                "then": _ROW_PANEL,
                "else": _QUERY_PANEL,
            },
        },
    },
}


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def test_there_is_an_overview_dashboard() -> None:
    assert [p.name for p in DASHBOARDS] == ["labelloop-overview.json"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_matches_the_dashboard_schema(path: Path) -> None:
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(DASHBOARD_SCHEMA).iter_errors(load(path))
    ]
    assert not errors, "\n".join(errors)


def test_dashboard_schema_rejects_a_panel_without_targets() -> None:
    dashboard = load(DASHBOARDS[0])
    broken = next(p for p in dashboard["panels"] if p["type"] != "row")
    del broken["targets"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(DASHBOARD_SCHEMA).validate(dashboard)


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_have_unique_ids_and_do_not_overlap(path: Path) -> None:
    panels = list(dashboard_panels(load(path)))
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"panel {panel['id']} is wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), f"panel {panel['id']} repeats a refId"


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_panels_use_the_dashboard_datasource_variable(path: Path) -> None:
    dashboard = load(path)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in dashboard_panels(dashboard):
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_dashboard_query_is_valid_promql(promtool: str, path: Path, tmp_path: Path) -> None:
    """promtool parses each query (Grafana variables substituted) as a recording rule."""
    expressions = dashboard_expressions(path)
    assert len(expressions) >= 20
    rules = [{"record": f"dashboard:query:{i}", "expr": e.expr} for i, e in enumerate(expressions)]
    rules_file = tmp_path / "dashboard-queries.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": path.stem, "rules": rules}]}))
    result = run([promtool, "check", "rules", str(rules_file)])
    detail = "\n".join(f"{i}: {e.where}" for i, e in enumerate(expressions))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}\nqueries:\n{detail}"


def test_provisioning_points_at_the_dashboards() -> None:
    providers = yaml.safe_load((PROVISIONING / "dashboards" / "labelloop.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert "./deploy/grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts
    assert "./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in mounts
    (datasource,) = yaml.safe_load((PROVISIONING / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus" and datasource["url"] == "http://prometheus:9090"


def test_the_chart_ships_the_same_files() -> None:
    """The chart reads the dashboards and alert rules through symlinks: one copy of each."""
    assert (CHART / "files" / "dashboards").resolve() == DASHBOARDS_DIR.resolve()
    assert (CHART / "files" / "alerts.yml").resolve() == (
        REPO / "deploy" / "prometheus" / "alerts.yml"
    ).resolve()
