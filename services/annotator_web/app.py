"""The annotator-web ASGI app: the static page and its JSON API.

`create_app(settings, backend, health)` builds it; `__main__` serves it with uvicorn. The page
never says who the user is: every API call takes the identity from the sealed session cookie
(see sessions.py) and calls human-tasks with the person's own token (see backend.py).

API (JSON; POSTs must be `Content-Type: application/json`, a cross-site form cannot send that):
- `POST /api/login {"token"}` -> WhoAmI; 200 {name, role, projects, undo_window_s} + cookie.
- `POST /api/logout` -> 204, cookie cleared.  `GET /api/me` -> 200 as login, or 401.
- `GET /api/projects` -> the person's projects with their labels and keys, and `multi_label`.
- `POST /api/projects/{p}/lease` -> 200 one leased task (tasks.task_view), 204 when the queue
  has nothing for this person.
- `POST /api/answer {"lease_id", "label"}` -> 200 {finalized, duplicate}; a multi-label
  project's answer is `{"lease_id", "labels": [...]}` (the labels that apply, possibly none).
- `POST /api/release {"lease_ids": [...]}` -> 200 {released, gone}: leases already ended
  (expired, answered) count as gone, not as errors, so a closing page can release blindly.
- `GET /api/projects/{p}/stats` -> queue depth, leases, oldest age, answers.
- `GET /api/projects/{p}/overview` (admins) -> counts, serving model, threshold, audited
  precision against the target.
- `GET /api/projects/{p}/media?uri=&sig=` -> the bytes of a leased task's image (media.py: the
  link is signed for the project; 403 for a person not scoped to it or a link the app did not make).
- `GET /healthz`, `/readyz` as on the metrics port.
Errors: statuses.py (gRPC -> HTTP) and 400/401/403/415 with the same JSON shape.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from labelloop.annotator_web.backend import Backend, BackendError
from labelloop.annotator_web.media import MediaLinks
from labelloop.annotator_web.sessions import COOKIE, Session, SessionCodec
from labelloop.annotator_web.settings import WebSettings
from labelloop.annotator_web.tasks import label_keys, task_view
from labelloop.core import metrics
from labelloop.core.errors import InvalidArgument, NotFound
from labelloop.core.health import Health
from labelloop.core.media import MediaStore, sniff_content_type
from labelloop.v1 import auth_pb2

log = logging.getLogger("annotator_web")

STATIC = Path(__file__).resolve().parent / "static"
ROLES = {auth_pb2.ROLE_ANNOTATOR: "annotator", auth_pb2.ROLE_ADMIN: "admin"}
SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiError(Exception):
    """An error response the handler decided on (not from gRPC)."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def _error(status: int, kind: str, message: str) -> JSONResponse:
    headers = {"Retry-After": "2"} if status == 503 else None
    return JSONResponse({"error": kind, "message": message}, status_code=status, headers=headers)


class SecurityHeaders:
    """Adds the security headers (CSP without inline scripts, nosniff, no framing) to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(settings: WebSettings, backend: Backend, health: Health | None = None) -> Starlette:
    """The app: the page, the JSON API, health. `backend` is started and closed by the app's lifespan."""
    codec = SessionCodec(settings.session_secret, settings.session_max_age_s)
    links = MediaLinks(settings.session_secret)
    store = MediaStore(settings.media_root, settings.max_media_bytes)

    def observed(route: str, handler: Endpoint, *, needs_session: bool = True) -> Endpoint:
        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                if request.method == "POST" and not request.headers.get("content-type", "").startswith(
                    "application/json"
                ):
                    raise ApiError(
                        415, "unsupported_media_type", "send JSON (Content-Type: application/json)"
                    )
                if needs_session and _session(request) is None:
                    raise ApiError(401, "unauthenticated", "log in with your token")
                response = await handler(request)
            except BackendError as exc:
                response = _error(exc.http.status, exc.http.kind, exc.http.message)
                if exc.http.status == 401:
                    response.delete_cookie(COOKIE, path="/")
                if exc.http.status >= 500:
                    log.warning("%s %s: %s", request.method, request.url.path, exc)
            except ApiError as exc:
                response = _error(exc.status, exc.kind, exc.message)
            metrics.WEB_REQUESTS.labels(route, str(response.status_code)).inc()
            metrics.WEB_REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
            return response

        return endpoint

    def _session(request: Request) -> Session | None:
        return codec.open(request.cookies.get(COOKIE))

    def session_of(request: Request) -> Session:
        session = _session(request)
        assert session is not None  # checked by `observed`
        return session

    def project_of(request: Request, session: Session) -> str:
        project_id = str(request.path_params["project"])
        if not session.may_use(project_id):
            raise ApiError(403, "forbidden", f"your token is not scoped to project {project_id!r}")
        return project_id

    async def json_body(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            raise ApiError(400, "invalid", "the body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "invalid", "the body must be a JSON object")
        return body

    def string_field(body: dict[str, Any], name: str) -> str:
        value = body.get(name)
        if not isinstance(value, str) or not value:
            raise ApiError(422, "invalid", f"{name}: must be a non-empty string")
        return value

    def me(session: Session) -> dict[str, Any]:
        return {**session.public(), "undo_window_s": settings.undo_window_s}

    async def login(request: Request) -> Response:
        token = string_field(await json_body(request), "token").strip()
        info = await backend.whoami(token)
        if info.revoked:
            raise ApiError(401, "unauthenticated", "this token has been revoked")
        role = ROLES.get(info.role)
        if role is None:
            raise ApiError(
                403, "forbidden", "this token cannot label: log in with an annotator or admin token"
            )
        session = Session(token, info.name, role, tuple(info.project_ids))
        response = JSONResponse(me(session))
        response.set_cookie(
            COOKIE,
            codec.seal(session),
            max_age=settings.session_max_age_s,
            path="/",
            httponly=True,
            secure=settings.secure_cookie,
            samesite="strict",
        )
        log.info("%s logged in (%s)", info.name, role)
        return response

    async def logout(request: Request) -> Response:
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/")
        return response

    async def whoami(request: Request) -> Response:
        return JSONResponse(me(session_of(request)))

    async def projects(request: Request) -> Response:
        session = session_of(request)
        if session.projects:
            ids = list(session.projects)
        else:
            ids = [p.spec.project_id for p in await backend.projects(session.token)]
        out = []
        for project_id in ids:
            try:
                labels = await backend.labels(session.token, project_id)
            except BackendError as exc:
                if exc.http.kind != "not_found":
                    raise
                continue  # a token may name a project that is gone
            multi = await backend.is_multi_label(session.token, project_id)
            out.append({"project_id": project_id, "labels": label_keys(labels), "multi_label": multi})
        return JSONResponse({"projects": out})

    async def lease(request: Request) -> Response:
        session = session_of(request)
        project_id = project_of(request, session)
        leased = await backend.lease(session.token, project_id, session.name)
        if not leased.has_task:
            return Response(status_code=204)
        view = task_view(leased, multi_label=await backend.is_multi_label(session.token, project_id))
        if "media" in view["content"]:
            view["content"]["media"]["url"] = links.link(project_id, view["content"]["media"]["uri"])
        return JSONResponse(view)

    async def media(request: Request) -> Response:
        session = session_of(request)
        project_id = project_of(request, session)
        uri = request.query_params.get("uri", "")
        if not links.valid(project_id, uri, request.query_params.get("sig", "")):
            raise ApiError(403, "forbidden", "this media link was not issued for this project")

        def read() -> bytes:
            handle, _ = store.open(uri)
            with handle:
                return handle.read(store.max_bytes + 1)

        try:
            data = await anyio.to_thread.run_sync(read)
        except NotFound:
            raise ApiError(404, "not_found", "the media file is gone") from None
        except InvalidArgument as exc:
            raise ApiError(404, "not_found", str(exc)) from None
        content_type = sniff_content_type(data[:16])
        if content_type is None or len(data) > store.max_bytes:
            raise ApiError(415, "unsupported_media_type", "the media file is not an accepted image")
        return Response(data, media_type=content_type, headers={"Cache-Control": "private, max-age=3600"})

    async def answer(request: Request) -> Response:
        session = session_of(request)
        body = await json_body(request)
        lease_id = string_field(body, "lease_id")
        label: str | list[str]
        if "labels" in body:  # a multi-label answer: a list of label names, possibly empty
            chosen = body["labels"]
            if not isinstance(chosen, list) or not all(isinstance(x, str) and x for x in chosen):
                raise ApiError(422, "invalid", "labels: must be a list of non-empty strings")
            label = chosen
        else:
            label = string_field(body, "label")
        # only a label for metrics: a project the session may use, never an arbitrary string
        claimed = body.get("project_id")
        project_id = claimed if isinstance(claimed, str) and session.may_use(claimed) else "unknown"
        try:
            result = await backend.submit(session.token, lease_id, session.name, label)
        except BackendError as exc:
            metrics.WEB_ANSWERS.labels(project_id, exc.http.kind).inc()
            raise
        metrics.WEB_ANSWERS.labels(project_id, "duplicate" if result.duplicate else "ok").inc()
        return JSONResponse({"finalized": result.finalized, "duplicate": result.duplicate})

    async def release(request: Request) -> Response:
        session = session_of(request)
        lease_ids = (await json_body(request)).get("lease_ids")
        if not isinstance(lease_ids, list) or not all(isinstance(x, str) and x for x in lease_ids):
            raise ApiError(422, "invalid", "lease_ids: must be a list of lease ids")
        released = gone = 0
        for lease_id in lease_ids[:20]:
            try:
                await backend.release(session.token, lease_id, session.name)
                released += 1
            except BackendError as exc:
                if exc.http.kind != "lease_lost":
                    raise
                gone += 1
        return JSONResponse({"released": released, "gone": gone})

    async def stats(request: Request) -> Response:
        session = session_of(request)
        project_id = project_of(request, session)
        queue = await backend.queue_stats(session.token, project_id)
        return JSONResponse(
            {
                "project_id": queue.project_id,
                "queued": queue.queued,
                "leased": queue.leased,
                "oldest_age_s": round(queue.oldest_age_s, 1),
                "annotations": queue.annotations,
            }
        )

    async def overview(request: Request) -> Response:
        session = session_of(request)
        if session.role != "admin":
            raise ApiError(403, "forbidden", "the project overview is for admins")
        project_id = project_of(request, session)
        project = await backend.project(session.token, project_id)
        status = await backend.project_status(session.token, project_id)
        labeled = status.auto_labeled + status.human_labeled
        return JSONResponse(
            {
                "project_id": project_id,
                "labels": list(project.spec.labels),
                "ingested": status.ingested,
                "auto_labeled": status.auto_labeled,
                "waiting_for_people": status.waiting_for_people,
                "human_labeled": status.human_labeled,
                "dead_letters": status.dead_letters,
                "human_share": round(status.human_labeled / labeled, 4) if labeled else None,
                "serving_version": status.serving_version,
                "threshold": round(status.threshold, 4),
                "target_precision": project.spec.target_precision,
                "audits": status.audits,
                "audited_precision": round(status.audited_precision, 4) if status.audits else None,
                "annotators_per_task": project.spec.annotators_per_task,
            }
        )

    async def page(request: Request) -> Response:
        return FileResponse(STATIC / "index.html")

    async def overview_page(request: Request) -> Response:
        return FileResponse(STATIC / "overview.html")

    async def healthz(request: Request) -> Response:
        alive = health.alive if health else True
        return JSONResponse({"service": "annotator_web", "alive": alive}, status_code=200 if alive else 503)

    async def readyz(request: Request) -> Response:
        results = health.results() if health else {}
        ok = all(v is None for v in results.values())
        body = {"service": "annotator_web", "ready": ok, "dependencies": results}
        return JSONResponse(body, status_code=200 if ok else 503)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await backend.start()
        try:
            yield
        finally:
            await backend.close()

    routes = [
        Route("/", page),
        Route("/overview", overview_page),
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/api/login", observed("login", login, needs_session=False), methods=["POST"]),
        Route("/api/logout", observed("logout", logout, needs_session=False), methods=["POST"]),
        Route("/api/me", observed("me", whoami)),
        Route("/api/projects", observed("projects", projects)),
        Route("/api/projects/{project}/lease", observed("lease", lease), methods=["POST"]),
        Route("/api/projects/{project}/stats", observed("stats", stats)),
        Route("/api/projects/{project}/overview", observed("overview", overview)),
        Route("/api/projects/{project}/media", observed("media", media)),
        Route("/api/answer", observed("answer", answer), methods=["POST"]),
        Route("/api/release", observed("release", release), methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(SecurityHeaders)
    return app
