"""Who may call what: the pure access policy of every Labelloop gRPC API (no I/O).

A caller is a `Principal` (built from a token record by `labelloop.core.tokens`); each RPC has one
`Rule` in `RULES`, keyed by its full method name: the roles that may call it (admins may call
everything) and, where the request names projects, how to read them so the caller's project scope
can be checked. `authorize` raises `PermissionDenied` with a message naming what is missing; the
gRPC interceptor (`labelloop.core.grpc_server`) calls it for every call except the standard
health service (`PUBLIC_SERVICES`), and an RPC without a rule is admin-only.

Servicers that act on a project the request does not name (an answer under a lease) call
`require_project`; the annotator id of leases and answers comes from `annotator_id`, never from
the request alone. `current()` is the principal of the call being served (set by the
interceptor for the handler's thread).
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from labelloop.core.errors import PermissionDenied, Unauthenticated
from labelloop.v1 import auth_pb2

CLIENT = auth_pb2.ROLE_CLIENT
ANNOTATOR = auth_pb2.ROLE_ANNOTATOR
ADMIN = auth_pb2.ROLE_ADMIN

ROLE_NAMES: dict[int, str] = {CLIENT: "client", ANNOTATOR: "annotator", ADMIN: "admin"}
ROLES_BY_NAME: dict[str, int] = {name: role for role, name in ROLE_NAMES.items()}

PUBLIC_SERVICES = ("grpc.health.v1.Health",)
"""Services served without a token (load balancers and kubelets probe them)."""


def role_name(role: int) -> str:
    """'client', 'annotator', 'admin' (or 'unspecified')."""
    return ROLE_NAMES.get(role, "unspecified")


@dataclass(frozen=True)
class Principal:
    """The caller of one RPC, as its token says."""

    token_id: str
    name: str
    role: int
    project_ids: tuple[str, ...] = ()

    def describe(self) -> str:
        return f"token {self.token_id!r} ({self.name}, {role_name(self.role)})"

    def may_act_on(self, project_id: str) -> bool:
        """Admins without projects act on every project; everyone else only on their own."""
        if self.role == ADMIN and not self.project_ids:
            return True
        return project_id in self.project_ids


ProjectsOf = Callable[[Any], Iterable[str]]


@dataclass(frozen=True)
class Rule:
    """Who may call one RPC: `roles` (besides admin) and the projects the request acts on.

    `projects` is None when the request names no project (the servicer checks it, or the call is
    not about one project)."""

    roles: frozenset[int] = field(default_factory=frozenset)
    projects: ProjectsOf | None = None


def _one(field_name: str) -> ProjectsOf:
    return lambda request: [getattr(request, field_name)]


def _item_project(request: Any) -> Iterable[str]:
    return [request.item.project_id]


def _batch_projects(request: Any) -> Iterable[str]:
    return {item.project_id for item in request.items}


def _spec_project(request: Any) -> Iterable[str]:
    return [request.spec.project_id]


_PKG = "/labelloop.v1."
_SUBMITTERS = frozenset({CLIENT})
_ANNOTATORS = frozenset({ANNOTATOR})
_READERS = frozenset({CLIENT, ANNOTATOR})
_EVERYONE = frozenset({CLIENT, ANNOTATOR, ADMIN})

RULES: dict[str, Rule] = {
    # ingest: client apps submit to their projects
    f"{_PKG}IngestService/Submit": Rule(_SUBMITTERS, _item_project),
    f"{_PKG}IngestService/SubmitBatch": Rule(_SUBMITTERS, _batch_projects),
    f"{_PKG}IngestService/SubmitStream": Rule(_SUBMITTERS, _item_project),  # checked per message
    # projects: admins manage them; clients and annotators read their own
    f"{_PKG}ProjectService/CreateProject": Rule(frozenset(), _spec_project),
    f"{_PKG}ProjectService/GetProject": Rule(_READERS, _one("project_id")),
    f"{_PKG}ProjectService/GetProjectStatus": Rule(_READERS, _one("project_id")),
    f"{_PKG}ProjectService/ListProjects": Rule(_READERS),  # the servicer lists the caller's projects
    f"{_PKG}ProjectService/ArchiveProject": Rule(frozenset(), _one("project_id")),
    # human tasks: annotators, on their projects, as themselves (lease-bound calls: the servicer)
    f"{_PKG}HumanTaskService/LeaseTask": Rule(_ANNOTATORS, _one("project_id")),
    f"{_PKG}HumanTaskService/GetQueueStats": Rule(_ANNOTATORS, _one("project_id")),
    f"{_PKG}HumanTaskService/SubmitAnnotation": Rule(_ANNOTATORS),
    f"{_PKG}HumanTaskService/ReleaseTask": Rule(_ANNOTATORS),
    f"{_PKG}HumanTaskService/GetTaskMedia": Rule(_ANNOTATORS),
    # rules: admins manage them; the project's clients and annotators may read them
    f"{_PKG}RuleService/AddRule": Rule(frozenset(), _one("project_id")),
    f"{_PKG}RuleService/RemoveRule": Rule(frozenset(), _one("project_id")),
    f"{_PKG}RuleService/ListRules": Rule(_READERS, _one("project_id")),
    # models: admins
    f"{_PKG}ModelService/ListModels": Rule(frozenset(), _one("project_id")),
    f"{_PKG}ModelService/PromoteModel": Rule(frozenset(), _one("project_id")),
    f"{_PKG}ModelService/RollbackModel": Rule(frozenset(), _one("project_id")),
    f"{_PKG}ModelService/RetrainModel": Rule(frozenset(), _one("project_id")),
    # tokens: admins; anyone may ask who they are
    f"{_PKG}TokenService/CreateToken": Rule(),
    f"{_PKG}TokenService/ListTokens": Rule(),
    f"{_PKG}TokenService/RevokeToken": Rule(),
    f"{_PKG}TokenService/WhoAmI": Rule(_EVERYONE),
}
ADMIN_ONLY = Rule()


def is_public(method: str) -> bool:
    """True for the RPCs served without a token (`/grpc.health.v1.Health/Check`, `.../Watch`)."""
    return method.lstrip("/").split("/", 1)[0] in PUBLIC_SERVICES


def short_method(method: str) -> str:
    """'/labelloop.v1.IngestService/Submit' -> 'IngestService/Submit'."""
    service, _, name = method.lstrip("/").partition("/")
    return f"{service.rsplit('.', 1)[-1]}/{name}"


def rule_for(method: str) -> Rule:
    """The rule of `method`; an RPC without one is admin-only."""
    return RULES.get(method, ADMIN_ONLY)


def check_role(principal: Principal, method: str) -> Rule:
    """The method's rule, once `principal`'s role may call it; PermissionDenied otherwise."""
    rule = rule_for(method)
    if principal.role == ADMIN or principal.role in rule.roles:
        return rule
    allowed = sorted({role_name(r) for r in rule.roles} | {"admin"})
    raise PermissionDenied(
        f"{short_method(method)} needs role {' or '.join(allowed)}; "
        f"{principal.describe()} has role {role_name(principal.role)}"
    )


def require_project(principal: Principal, project_id: str) -> None:
    """PermissionDenied unless `principal` may act on `project_id` (empty ids are left to the
    servicer's validation, which names the field)."""
    if project_id and not principal.may_act_on(project_id):
        scope = ", ".join(principal.project_ids) or "none"
        raise PermissionDenied(
            f"{principal.describe()} is not scoped to project {project_id!r} (its projects: {scope})"
        )


def authorize(principal: Principal, method: str, request: Any) -> None:
    """Raise PermissionDenied unless `principal` may call `method` with `request`."""
    rule = check_role(principal, method)
    if rule.projects is not None:
        for project_id in rule.projects(request):
            require_project(principal, project_id)


def authorize_stream(principal: Principal, method: str, requests: Iterator[Any]) -> Iterator[Any]:
    """The requests of a client stream, each authorized before the servicer sees it."""
    rule = check_role(principal, method)
    for request in requests:
        if rule.projects is not None:
            for project_id in rule.projects(request):
                require_project(principal, project_id)
        yield request


def annotator_id(principal: Principal, requested: str) -> str:
    """The annotator id a lease or answer is recorded under: an annotator's own name (a request
    naming someone else is refused); an admin may act for a named annotator (the bench's
    simulated people) or as itself."""
    if principal.role == ANNOTATOR:
        if requested and requested != principal.name:
            raise PermissionDenied(
                f"annotator_id {requested!r} is not the caller: {principal.describe()} answers as "
                f"{principal.name!r} (leave annotator_id empty)"
            )
        return principal.name
    if principal.role == ADMIN:
        return requested or principal.name
    raise PermissionDenied(f"{principal.describe()} cannot annotate")


def visible_projects(principal: Principal, project_ids: Iterable[str]) -> list[str]:
    """The subset of `project_ids` the principal may see, in order."""
    return [p for p in project_ids if principal.may_act_on(p)]


_CURRENT: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "labelloop_principal", default=None
)


def current() -> Principal:
    """The principal of the RPC being served (set by the interceptor); Unauthenticated if none,
    so a servicer reached without the interceptor fails closed."""
    principal = _CURRENT.get()
    if principal is None:
        raise Unauthenticated("no authenticated caller for this call")
    return principal


def set_current(principal: Principal | None) -> contextvars.Token[Principal | None]:
    """Bind the principal of the call served on this thread (the interceptor's job)."""
    return _CURRENT.set(principal)


def reset_current(token: contextvars.Token[Principal | None]) -> None:
    _CURRENT.reset(token)
