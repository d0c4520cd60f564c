"""Tokens and roles against the real services: every RPC refuses a call without a token or with
a bad one (UNAUTHENTICATED), each wrong role and each foreign project (PERMISSION_DENIED, naming
what is missing); annotators act as themselves; revoked and expired tokens stop working; the
health service stays open; secrets are stored only as hashes; `labelloop token ...` works."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from running import RunningServices
from support import wait_until

from labelloop.core import access, grpc_client
from labelloop.core.tokens import TokenStore, digest
from labelloop.v1 import (
    admin_pb2,
    admin_pb2_grpc,
    auth_pb2,
    auth_pb2_grpc,
    common_pb2,
    human_tasks_pb2,
    human_tasks_pb2_grpc,
    ingest_pb2,
    ingest_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    rules_pb2,
    rules_pb2_grpc,
)


@pytest.fixture(scope="module")
def services(stack, tmp_path_factory):
    running = RunningServices(
        stack,
        tmp_path_factory.mktemp("auth"),
        f"t-auth-{uuid.uuid4().hex[:8]}",
        f"t:auth:{uuid.uuid4().hex[:8]}",
    )
    running.start(("ingest", "inference", "routing", "human_tasks", "retraining"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def world(services):
    """Two projects (news: one task waiting per item, sport) and a token per role."""
    news, sport = f"news-{uuid.uuid4().hex[:6]}", f"sport-{uuid.uuid4().hex[:6]}"
    for project in (news, sport):
        services.create_project(project, ["a", "b"], model_name=f"none-{project}")
    tokens = TokenStore(services.redis, services.redis_prefix)
    secrets = {
        "client": tokens.create("shop", access.CLIENT, [news])[0],
        "alice": tokens.create("alice", access.ANNOTATOR, [news])[0],
        "bob": tokens.create("bob", access.ANNOTATOR, [news])[0],
        "carol": tokens.create("carol", access.ANNOTATOR, [sport])[0],
    }
    return {"news": news, "sport": sport, "tokens": tokens, **secrets}


def stubs(services: RunningServices, token: str) -> dict[str, Any]:
    """Every API's stub, calling with `token` ("" sends none)."""
    ingest, human, models = (services.channel(s, token) for s in ("ingest", "human_tasks", "retraining"))
    return {
        "ingest": ingest_pb2_grpc.IngestServiceStub(ingest),
        "projects": admin_pb2_grpc.ProjectServiceStub(ingest),
        "tokens": auth_pb2_grpc.TokenServiceStub(ingest),
        "rules": rules_pb2_grpc.RuleServiceStub(ingest),
        "human": human_tasks_pb2_grpc.HumanTaskServiceStub(human),
        "models": models_pb2_grpc.ModelServiceStub(models),
    }


def item(project: str, item_id: str | None = None) -> common_pb2.Item:
    return common_pb2.Item(
        item_id=item_id or uuid.uuid4().hex[:10], project_id=project, content=common_pb2.Content(text="hello")
    )


def every_rpc(project: str) -> list[tuple[str, str, Callable[[], Any]]]:
    """(stub, method, request factory) for every RPC of every API."""
    return [
        ("ingest", "Submit", lambda: ingest_pb2.SubmitRequest(item=item(project))),
        ("ingest", "SubmitBatch", lambda: ingest_pb2.SubmitBatchRequest(items=[item(project)])),
        ("ingest", "SubmitStream", lambda: iter([ingest_pb2.SubmitRequest(item=item(project))])),
        (
            "projects",
            "CreateProject",
            lambda: admin_pb2.CreateProjectRequest(
                spec=common_pb2.ProjectSpec(project_id=f"x-{uuid.uuid4().hex[:6]}", labels=["a", "b"])
            ),
        ),
        ("projects", "GetProject", lambda: admin_pb2.GetProjectRequest(project_id=project)),
        ("projects", "ListProjects", lambda: admin_pb2.ListProjectsRequest()),
        ("projects", "GetProjectStatus", lambda: admin_pb2.GetProjectStatusRequest(project_id=project)),
        ("projects", "ArchiveProject", lambda: admin_pb2.ArchiveProjectRequest(project_id=project)),
        ("tokens", "CreateToken", lambda: auth_pb2.CreateTokenRequest(name="x", role=access.ADMIN)),
        ("tokens", "ListTokens", lambda: auth_pb2.ListTokensRequest()),
        ("tokens", "RevokeToken", lambda: auth_pb2.RevokeTokenRequest(token_id="nope")),
        ("tokens", "WhoAmI", lambda: auth_pb2.WhoAmIRequest()),
        (
            "rules",
            "AddRule",
            lambda: rules_pb2.AddRuleRequest(
                project_id=project,
                rule=rules_pb2.Rule(name="r", label="a", keywords=rules_pb2.KeywordMatcher(terms=["x"])),
            ),
        ),
        ("rules", "ListRules", lambda: rules_pb2.ListRulesRequest(project_id=project)),
        ("rules", "RemoveRule", lambda: rules_pb2.RemoveRuleRequest(project_id=project, name="r")),
        ("human", "LeaseTask", lambda: human_tasks_pb2.LeaseTaskRequest(project_id=project)),
        (
            "human",
            "SubmitAnnotation",
            lambda: human_tasks_pb2.SubmitAnnotationRequest(lease_id="l", labels=["a"]),
        ),
        ("human", "ReleaseTask", lambda: human_tasks_pb2.ReleaseTaskRequest(lease_id="l")),
        ("human", "GetQueueStats", lambda: human_tasks_pb2.GetQueueStatsRequest(project_id=project)),
        ("human", "GetTaskMedia", lambda: human_tasks_pb2.GetTaskMediaRequest(lease_id="l")),
        ("models", "ListModels", lambda: models_pb2.ListModelsRequest(project_id=project)),
        ("models", "PromoteModel", lambda: models_pb2.PromoteModelRequest(project_id=project, version=1)),
        ("models", "RollbackModel", lambda: models_pb2.RollbackModelRequest(project_id=project)),
        ("models", "RetrainModel", lambda: models_pb2.RetrainModelRequest(project_id=project)),
    ]


def refusal(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return info.value


def call(api: dict[str, Any], stub: str, method: str, request: Callable[[], Any]) -> Any:
    return getattr(api[stub], method)(request(), timeout=15)


def test_every_rpc_refuses_a_missing_or_bad_token(services, world) -> None:
    rpcs = every_rpc(world["news"])
    assert {f"{s}.{m}" for s, m, _ in rpcs} >= {"ingest.Submit", "models.RetrainModel", "tokens.WhoAmI"}
    assert len(rpcs) == len(access.RULES), "the table covers every RPC with a rule"
    nobody, stranger = stubs(services, ""), stubs(services, "llt_not-a-real-token-at-all")
    for stub, method, request in rpcs:
        err = refusal(lambda s=stub, m=method, r=request: call(nobody, s, m, r))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (stub, method, err)
        assert "missing token" in err.details() and "Bearer" in err.details()
        err = refusal(lambda s=stub, m=method, r=request: call(stranger, s, m, r))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, (stub, method, err)
        assert "unknown token" in err.details()


def test_each_wrong_role_is_refused_naming_the_role(services, world) -> None:
    news = world["news"]
    denied = {
        "client": {
            "CreateProject",
            "ArchiveProject",
            "CreateToken",
            "ListTokens",
            "RevokeToken",
            "AddRule",
            "RemoveRule",
            "LeaseTask",
            "SubmitAnnotation",
            "ReleaseTask",
            "GetQueueStats",
            "GetTaskMedia",
            "ListModels",
            "PromoteModel",
            "RollbackModel",
            "RetrainModel",
        },
        "alice": {
            "Submit",
            "SubmitBatch",
            "SubmitStream",
            "CreateProject",
            "ArchiveProject",
            "CreateToken",
            "ListTokens",
            "RevokeToken",
            "AddRule",
            "RemoveRule",
            "ListModels",
            "PromoteModel",
            "RollbackModel",
            "RetrainModel",
        },
    }
    for who, methods in denied.items():
        api = stubs(services, world[who])
        for stub, method, request in every_rpc(news):
            if method not in methods:
                continue
            err = refusal(lambda a=api, s=stub, m=method, r=request: call(a, s, m, r))
            assert err.code() == grpc.StatusCode.PERMISSION_DENIED, (who, method, err)
            assert f"{method} needs role" in err.details() and "has role" in err.details(), err.details()
    # ... and what each role may do, it may
    client = stubs(services, world["client"])
    assert client["ingest"].Submit(ingest_pb2.SubmitRequest(item=item(news)), timeout=15).item_id
    assert client["projects"].GetProject(admin_pb2.GetProjectRequest(project_id=news), timeout=15)
    alice = stubs(services, world["alice"])
    stats = alice["human"].GetQueueStats(human_tasks_pb2.GetQueueStatsRequest(project_id=news), timeout=15)
    assert stats.project_id == news


def test_projects_outside_the_token_are_refused(services, world) -> None:
    news, sport = world["news"], world["sport"]
    client = stubs(services, world["client"])
    err = refusal(lambda: client["ingest"].Submit(ingest_pb2.SubmitRequest(item=item(sport)), timeout=15))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert f"not scoped to project {sport!r}" in err.details() and news in err.details()
    batch = ingest_pb2.SubmitBatchRequest(items=[item(news), item(sport)])
    err = refusal(lambda: client["ingest"].SubmitBatch(batch, timeout=15))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and sport in err.details()
    stream = iter([ingest_pb2.SubmitRequest(item=item(news)), ingest_pb2.SubmitRequest(item=item(sport))])
    err = refusal(lambda: client["ingest"].SubmitStream(stream, timeout=15))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and sport in err.details()
    err = refusal(
        lambda: client["projects"].GetProject(admin_pb2.GetProjectRequest(project_id=sport), timeout=15)
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    listed = client["projects"].ListProjects(admin_pb2.ListProjectsRequest(), timeout=15)
    assert [p.spec.project_id for p in listed.projects] == [news], "a client lists only its projects"

    alice = stubs(services, world["alice"])
    err = refusal(
        lambda: alice["human"].LeaseTask(human_tasks_pb2.LeaseTaskRequest(project_id=sport), timeout=15)
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and sport in err.details()
    err = refusal(
        lambda: alice["human"].GetQueueStats(
            human_tasks_pb2.GetQueueStatsRequest(project_id=sport), timeout=15
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def test_an_annotator_acts_only_as_itself(services, world) -> None:
    news = world["news"]
    admin = stubs(services, services.token)
    items = [item(news, f"who-{i}") for i in range(2)]
    assert admin["ingest"].SubmitBatch(ingest_pb2.SubmitBatchRequest(items=items), timeout=15).accepted == 2
    alice, bob, carol = (stubs(services, world[n])["human"] for n in ("alice", "bob", "carol"))

    def lease_as_alice() -> human_tasks_pb2.LeaseTaskResponse | None:
        got = alice.LeaseTask(human_tasks_pb2.LeaseTaskRequest(project_id=news), timeout=15)
        return got if got.has_task else None

    err = refusal(
        lambda: alice.LeaseTask(
            human_tasks_pb2.LeaseTaskRequest(project_id=news, annotator_id="bob"), timeout=15
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "annotator_id 'bob' is not the caller" in err.details() and "'alice'" in err.details()

    lease = wait_until(lease_as_alice, 60, interval=0.2, message="no task reached alice")
    holder = services.redis.hget(f"{services.redis_prefix}:lease:{lease.lease_id}", "annotator")
    assert holder == b"alice", "the lease is recorded under the token's annotator"

    answer = human_tasks_pb2.SubmitAnnotationRequest(lease_id=lease.lease_id, labels=["a"])
    err = refusal(lambda: bob.SubmitAnnotation(answer, timeout=15))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION and "another annotator" in err.details()
    err = refusal(
        lambda: bob.SubmitAnnotation(
            human_tasks_pb2.SubmitAnnotationRequest(
                lease_id=lease.lease_id, annotator_id="alice", labels=["a"]
            ),
            timeout=15,
        )
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, "bob cannot claim to be alice"
    err = refusal(lambda: carol.SubmitAnnotation(answer, timeout=15))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and news in err.details()
    err = refusal(
        lambda: carol.ReleaseTask(human_tasks_pb2.ReleaseTaskRequest(lease_id=lease.lease_id), timeout=15)
    )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED

    assert alice.SubmitAnnotation(answer, timeout=15).finalized


def test_whoami_revocation_and_expiry(services, world) -> None:
    news = world["news"]
    admin = stubs(services, services.token)["tokens"]
    created = admin.CreateToken(
        auth_pb2.CreateTokenRequest(name="dave", role=access.ANNOTATOR, project_ids=[news]), timeout=15
    )
    assert created.token.startswith("llt_") and created.info.name == "dave" and not created.info.revoked
    dave = stubs(services, created.token)
    me = dave["tokens"].WhoAmI(auth_pb2.WhoAmIRequest(), timeout=15)
    assert (me.token_id, me.name, me.role, list(me.project_ids)) == (
        created.info.token_id,
        "dave",
        access.ANNOTATOR,
        [news],
    )
    # whoever answers to WhoAmI on the ingest port is also accepted by human-tasks
    dave["human"].GetQueueStats(human_tasks_pb2.GetQueueStatsRequest(project_id=news), timeout=15)

    err = refusal(
        lambda: admin.CreateToken(auth_pb2.CreateTokenRequest(name="eve", role=access.CLIENT), timeout=15)
    )
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and "project_ids" in err.details()

    listed = admin.ListTokens(auth_pb2.ListTokensRequest(), timeout=15)
    assert created.info.token_id in {t.token_id for t in listed.tokens}
    assert all(created.token not in str(t) for t in listed.tokens), "a listing never carries a secret"

    revoked = admin.RevokeToken(auth_pb2.RevokeTokenRequest(token_id=created.info.token_id), timeout=15)
    assert revoked.info.revoked
    assert admin.RevokeToken(
        auth_pb2.RevokeTokenRequest(token_id=created.info.token_id), timeout=15
    ).info.revoked
    for stub, method, request in (
        ("tokens", "WhoAmI", auth_pb2.WhoAmIRequest),
        ("human", "GetQueueStats", lambda: human_tasks_pb2.GetQueueStatsRequest(project_id=news)),
    ):
        err = refusal(lambda s=stub, m=method, r=request: call(dave, s, m, r))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "revoked" in err.details()
    err = refusal(lambda: admin.RevokeToken(auth_pb2.RevokeTokenRequest(token_id="no-such"), timeout=15))
    assert err.code() == grpc.StatusCode.NOT_FOUND

    short = admin.CreateToken(
        auth_pb2.CreateTokenRequest(name="temp", role=access.CLIENT, project_ids=[news], ttl_seconds=1),
        timeout=15,
    )
    assert short.info.HasField("expires_at")
    temp = stubs(services, short.token)["tokens"]

    def expired() -> grpc.RpcError | None:
        try:
            temp.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=15)
        except grpc.RpcError as exc:
            return exc
        return None

    err = wait_until(expired, 20, interval=0.2, message="a 1 s token kept working")
    assert err.code() == grpc.StatusCode.UNAUTHENTICATED and "expired at" in err.details()


def test_secrets_are_stored_only_as_hashes(services, world) -> None:
    secret = world["alice"]
    stored = b" ".join(
        key + b" " + b" ".join(v for kv in services.redis.hgetall(key).items() for v in kv)
        if services.redis.type(key) == b"hash"
        else key
        for key in services.redis.scan_iter(f"{services.redis_prefix}:token*")
    )
    assert stored, "token keys were found"
    assert secret.encode() not in stored and services.token.encode() not in stored
    assert digest(secret).encode() in stored


def test_the_health_service_needs_no_token(services) -> None:
    for name in ("ingest", "human_tasks", "retraining"):
        with grpc.insecure_channel(f"127.0.0.1:{services.grpc_ports[name]}") as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_the_cli_creates_lists_and_revokes_tokens(services, world, tmp_path) -> None:
    token_file = tmp_path / "admin.token"
    token_file.write_text(services.token + "\n")
    env = {
        **os.environ,
        "COLUMNS": "250",
        "LABELLOOP_INGEST_ADDR": f"127.0.0.1:{services.grpc_ports['ingest']}",
        "LABELLOOP_TOKEN_FILE": str(token_file),
    }
    env.pop("LABELLOOP_TOKEN", None)

    def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "labelloop.cli.main", "token", *args],
            env={**env, **extra},
            capture_output=True,
            text=True,
            timeout=120,
        )

    made = cli("create", "--role", "annotator", "--name", "frank", "--project", world["news"])
    assert made.returncode == 0, made.stderr
    secret = made.stdout.strip()
    assert made.stdout == secret + "\n" and secret.startswith("llt_"), "the token alone on stdout"
    assert "frank" in made.stderr
    channel = grpc_client.channel(f"127.0.0.1:{services.grpc_ports['ingest']}", secret)
    with channel:
        me = auth_pb2_grpc.TokenServiceStub(channel).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=15)
    assert me.name == "frank"
    whoami = cli("whoami", LABELLOOP_TOKEN=secret)
    assert whoami.returncode == 0 and "frank" in whoami.stdout, whoami.stderr
    listing = cli("list")
    assert listing.returncode == 0 and me.token_id in listing.stdout and secret not in listing.stdout
    assert cli("revoke", me.token_id).returncode == 0
    denied = cli("whoami", LABELLOOP_TOKEN=secret)
    assert denied.returncode == 1 and "UNAUTHENTICATED" in denied.stderr and "revoked" in denied.stderr
    as_annotator = cli("list", LABELLOOP_TOKEN=world["alice"])
    assert as_annotator.returncode == 1 and "PERMISSION_DENIED" in as_annotator.stderr
    bad_role = cli("create", "--role", "root", "--name", "x")
    assert bad_role.returncode == 2 and "--role" in bad_role.stderr
    none = cli("list", LABELLOOP_TOKEN_FILE=str(tmp_path / "missing"))
    assert none.returncode == 2 and "LABELLOOP_TOKEN" in none.stderr
