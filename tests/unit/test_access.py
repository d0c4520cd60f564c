"""The pure access policy: every RPC has a rule; roles, project scopes, annotator identity,
stream messages and bearer metadata are checked with messages naming what is missing."""

from __future__ import annotations

import pytest

from labelloop.core import access
from labelloop.core.access import ADMIN, ANNOTATOR, CLIENT, Principal
from labelloop.core.errors import PermissionDenied, Unauthenticated
from labelloop.core.tokens import bearer_token
from labelloop.v1 import (
    admin_pb2,
    auth_pb2,
    common_pb2,
    human_tasks_pb2,
    ingest_pb2,
    models_pb2,
    rules_pb2,
)

ALICE = Principal("t1", "alice", ANNOTATOR, ("news",))
SHOP = Principal("t2", "shop", CLIENT, ("news", "sport"))
ROOT = Principal("t3", "root", ADMIN)
SCOPED_ADMIN = Principal("t4", "ops", ADMIN, ("news",))

SUBMIT = "/labelloop.v1.IngestService/Submit"
BATCH = "/labelloop.v1.IngestService/SubmitBatch"
STREAM = "/labelloop.v1.IngestService/SubmitStream"
LEASE = "/labelloop.v1.HumanTaskService/LeaseTask"
CREATE_PROJECT = "/labelloop.v1.ProjectService/CreateProject"
CREATE_TOKEN = "/labelloop.v1.TokenService/CreateToken"
WHOAMI = "/labelloop.v1.TokenService/WhoAmI"
PROMOTE = "/labelloop.v1.ModelService/PromoteModel"


def item(project: str) -> common_pb2.Item:
    return common_pb2.Item(item_id="i", project_id=project, content=common_pb2.Content(text="x"))


def test_every_rpc_of_every_service_has_a_rule() -> None:
    files = (admin_pb2, auth_pb2, human_tasks_pb2, ingest_pb2, models_pb2, rules_pb2)
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in files
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    assert methods, "the services were found"
    assert methods - set(access.RULES) == set(), "an RPC without a rule would be admin-only by accident"
    assert set(access.RULES) - methods == set(), "a rule names an RPC that does not exist"


def test_roles_per_rpc() -> None:
    access.authorize(SHOP, SUBMIT, ingest_pb2.SubmitRequest(item=item("news")))
    access.authorize(ALICE, LEASE, human_tasks_pb2.LeaseTaskRequest(project_id="news"))
    access.authorize(ROOT, PROMOTE, models_pb2.PromoteModelRequest(project_id="any", version=1))
    for principal in (SHOP, ALICE, ROOT):
        access.authorize(principal, WHOAMI, auth_pb2.WhoAmIRequest())

    with pytest.raises(
        PermissionDenied, match=r"IngestService/Submit needs role admin or client.*has role annotator"
    ):
        access.authorize(ALICE, SUBMIT, ingest_pb2.SubmitRequest(item=item("news")))
    with pytest.raises(PermissionDenied, match=r"LeaseTask needs role admin or annotator.*role client"):
        access.authorize(SHOP, LEASE, human_tasks_pb2.LeaseTaskRequest(project_id="news"))
    for principal in (SHOP, ALICE):
        with pytest.raises(PermissionDenied, match="needs role admin;"):
            access.authorize(principal, CREATE_TOKEN, auth_pb2.CreateTokenRequest())
        with pytest.raises(PermissionDenied, match="needs role admin;"):
            access.authorize(principal, PROMOTE, models_pb2.PromoteModelRequest(project_id="news"))
        with pytest.raises(PermissionDenied, match="needs role admin;"):
            access.authorize(principal, CREATE_PROJECT, admin_pb2.CreateProjectRequest())


def test_rules_are_managed_by_admins_and_read_by_the_projects_people() -> None:
    add = "/labelloop.v1.RuleService/AddRule"
    listing = "/labelloop.v1.RuleService/ListRules"
    access.authorize(ROOT, add, rules_pb2.AddRuleRequest(project_id="news"))
    access.authorize(ALICE, listing, rules_pb2.ListRulesRequest(project_id="news"))
    with pytest.raises(PermissionDenied, match="needs role admin"):
        access.authorize(ALICE, add, rules_pb2.AddRuleRequest(project_id="news"))
    with pytest.raises(PermissionDenied, match="not scoped to project 'other'"):
        access.authorize(ALICE, listing, rules_pb2.ListRulesRequest(project_id="other"))
    with pytest.raises(PermissionDenied, match="not scoped to project 'other'"):
        access.authorize(SCOPED_ADMIN, add, rules_pb2.AddRuleRequest(project_id="other"))


def test_unknown_rpcs_are_admin_only_and_health_is_public() -> None:
    with pytest.raises(PermissionDenied):
        access.authorize(SHOP, "/labelloop.v1.NewService/Thing", None)
    access.authorize(ROOT, "/labelloop.v1.NewService/Thing", None)
    assert access.is_public("/grpc.health.v1.Health/Check")
    assert access.is_public("/grpc.health.v1.Health/Watch")
    assert not access.is_public(SUBMIT)


def test_projects_are_checked_for_every_item() -> None:
    access.authorize(SHOP, BATCH, ingest_pb2.SubmitBatchRequest(items=[item("news"), item("sport")]))
    with pytest.raises(
        PermissionDenied, match=r"not scoped to project 'weather' \(its projects: news, sport\)"
    ):
        access.authorize(SHOP, BATCH, ingest_pb2.SubmitBatchRequest(items=[item("news"), item("weather")]))
    with pytest.raises(PermissionDenied, match="'sport'"):
        access.authorize(ALICE, LEASE, human_tasks_pb2.LeaseTaskRequest(project_id="sport"))


def test_admins_act_everywhere_unless_scoped() -> None:
    access.authorize(
        ROOT, CREATE_PROJECT, admin_pb2.CreateProjectRequest(spec=common_pb2.ProjectSpec(project_id="x"))
    )
    access.authorize(SCOPED_ADMIN, PROMOTE, models_pb2.PromoteModelRequest(project_id="news"))
    with pytest.raises(PermissionDenied, match="'sport'"):
        access.authorize(SCOPED_ADMIN, PROMOTE, models_pb2.PromoteModelRequest(project_id="sport"))
    assert access.visible_projects(SHOP, ["news", "weather", "sport"]) == ["news", "sport"]
    assert access.visible_projects(ROOT, ["news", "weather"]) == ["news", "weather"]


def test_a_stream_is_checked_message_by_message() -> None:
    requests = [ingest_pb2.SubmitRequest(item=item(p)) for p in ("news", "sport", "weather", "news")]
    seen = []
    with pytest.raises(PermissionDenied, match="'weather'"):
        for request in access.authorize_stream(SHOP, STREAM, iter(requests)):
            seen.append(request.item.project_id)
    assert seen == ["news", "sport"], "messages before the foreign one pass; none after it"
    with pytest.raises(PermissionDenied, match="needs role"):
        next(access.authorize_stream(ALICE, STREAM, iter(requests)))


def test_the_annotator_id_comes_from_the_token() -> None:
    assert access.annotator_id(ALICE, "") == "alice"
    assert access.annotator_id(ALICE, "alice") == "alice"
    with pytest.raises(PermissionDenied, match=r"annotator_id 'bob' is not the caller.*answers as 'alice'"):
        access.annotator_id(ALICE, "bob")
    assert access.annotator_id(ROOT, "sim-1") == "sim-1", "an admin may act for a simulated person"
    assert access.annotator_id(ROOT, "") == "root"
    with pytest.raises(PermissionDenied, match="cannot annotate"):
        access.annotator_id(SHOP, "")


def test_require_project_leaves_empty_ids_to_validation() -> None:
    access.require_project(ALICE, "")
    with pytest.raises(PermissionDenied, match="its projects: news"):
        access.require_project(ALICE, "sport")


def test_bearer_metadata() -> None:
    assert bearer_token([("x-other", "1"), ("authorization", "Bearer llt_abc")]) == "llt_abc"
    assert bearer_token([("authorization", b"bearer   llt_abc ")]) == "llt_abc"
    with pytest.raises(Unauthenticated, match="missing token: send 'authorization: Bearer <token>'"):
        bearer_token([("x-other", "1")])
    with pytest.raises(Unauthenticated, match="missing token"):
        bearer_token(None)
    with pytest.raises(Unauthenticated, match="malformed"):
        bearer_token([("authorization", "Basic dXNlcjpwdw==")])
    with pytest.raises(Unauthenticated, match="malformed"):
        bearer_token([("authorization", "Bearer ")])


def test_current_fails_closed_without_the_interceptor() -> None:
    with pytest.raises(Unauthenticated):
        access.current()
    bound = access.set_current(ALICE)
    try:
        assert access.current() is ALICE
    finally:
        access.reset_current(bound)
