"""`labelloop token create|list|revoke|whoami`: API tokens (TokenService on the ingest API).

`token create` prints the new token alone on standard output (everything else on standard
error), so `TOKEN=$(labelloop token create --role annotator --name alice --project news)` works.
Exit codes as the rest of the CLI: 0 success, 1 the operation failed, 2 bad usage or configuration.
"""

from __future__ import annotations

from typing import Annotated

import grpc
import typer
from rich.console import Console
from rich.table import Table

from labelloop.cli.settings import CliSettings
from labelloop.core import access, grpc_client
from labelloop.core.grpc_client import MissingToken, resolve_token
from labelloop.core.settings import SettingsError, load
from labelloop.v1 import auth_pb2, auth_pb2_grpc

token_app = typer.Typer(help="Create, list and revoke API tokens (admin).", no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _stub() -> tuple[grpc.Channel, auth_pb2_grpc.TokenServiceStub]:
    try:
        s = load(CliSettings)
        token = resolve_token(s.token, s.token_file)
    except (SettingsError, MissingToken) as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    channel = grpc_client.channel(s.ingest_addr, token, tls=s.grpc_tls())
    return channel, auth_pb2_grpc.TokenServiceStub(channel)


def _failed(exc: grpc.RpcError, what: str) -> typer.Exit:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code == grpc.StatusCode.UNAVAILABLE:
        err.print(f"[red]error:[/] {what}: the ingest service is unavailable ({details}). Is the stack up?")
    else:
        err.print(f"[red]error:[/] {what}: {code.name if code else 'error'}: {details}")
    return typer.Exit(1)


def _describe(info: auth_pb2.TokenInfo) -> list[str]:
    expires = info.expires_at.ToJsonString() if info.HasField("expires_at") else "never"
    return [
        info.token_id,
        info.name,
        access.role_name(info.role),
        ", ".join(info.project_ids) or "all",
        info.created_at.ToJsonString(),
        expires,
        "revoked" if info.revoked else "active",
    ]


@token_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="client, annotator or admin.")],
    name: Annotated[str, typer.Option(help="Who holds it (the annotator id for annotators).")],
    project: Annotated[
        list[str] | None,
        typer.Option(help="A project it may act on (repeat; required for client/annotator)."),
    ] = None,
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds (0: never expires).")] = 0,
) -> None:
    """Create a token; print it (once) alone on standard output."""
    if role not in access.ROLES_BY_NAME:
        err.print(f"[red]error:[/] --role {role!r}: use one of {', '.join(access.ROLES_BY_NAME)}")
        raise typer.Exit(2)
    channel, stub = _stub()
    with channel:
        try:
            response = stub.CreateToken(
                auth_pb2.CreateTokenRequest(
                    name=name,
                    role=access.ROLES_BY_NAME[role],  # type: ignore[arg-type]
                    project_ids=project or [],
                    ttl_seconds=ttl,
                ),
                timeout=10,
            )
        except grpc.RpcError as exc:
            raise _failed(exc, f"creating a token for {name!r}") from None
    err.print(
        f"created token {response.info.token_id} ({role} {name!r}, projects: "
        f"{', '.join(response.info.project_ids) or 'all'}); it is shown only now"
    )
    print(response.token)


@token_app.command("list")
def list_tokens() -> None:
    """Every token's record (never a secret)."""
    channel, stub = _stub()
    with channel:
        try:
            response = stub.ListTokens(auth_pb2.ListTokensRequest(), timeout=10)
        except grpc.RpcError as exc:
            raise _failed(exc, "listing tokens") from None
    table = Table("id", "name", "role", "projects", "created", "expires", "state")
    for info in response.tokens:
        table.add_row(*_describe(info))
    console.print(table)


@token_app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(help="The token's id (from `token list`).")]) -> None:
    """Revoke a token: every later call with it is refused (UNAUTHENTICATED)."""
    channel, stub = _stub()
    with channel:
        try:
            response = stub.RevokeToken(auth_pb2.RevokeTokenRequest(token_id=token_id), timeout=10)
        except grpc.RpcError as exc:
            raise _failed(exc, f"revoking token {token_id!r}") from None
    console.print(f"revoked token {response.info.token_id} ({response.info.name})")


@token_app.command("whoami")
def whoami() -> None:
    """The record of the token this command uses."""
    channel, stub = _stub()
    with channel:
        try:
            info = stub.WhoAmI(auth_pb2.WhoAmIRequest(), timeout=10)
        except grpc.RpcError as exc:
            raise _failed(exc, "asking who this token is") from None
    table = Table("id", "name", "role", "projects", "created", "expires", "state")
    table.add_row(*_describe(info))
    console.print(table)
