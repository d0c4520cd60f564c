"""The TokenService gRPC API (proto/labelloop/v1/auth.proto), served by the ingest process, which
owns tokens. Who may call what is the interceptor's job (`labelloop.core.access`): create, list
and revoke are admin-only; WhoAmI answers any valid token.
"""

from __future__ import annotations

import grpc

from labelloop.core import access
from labelloop.core.tokens import TokenStore
from labelloop.v1 import auth_pb2, auth_pb2_grpc


class TokenApi(auth_pb2_grpc.TokenServiceServicer):
    """CreateToken, ListTokens, RevokeToken, WhoAmI over the token store."""

    def __init__(self, tokens: TokenStore) -> None:
        self.tokens = tokens

    def CreateToken(
        self, request: auth_pb2.CreateTokenRequest, context: grpc.ServicerContext
    ) -> auth_pb2.CreateTokenResponse:
        secret, info = self.tokens.create(
            request.name, request.role, list(request.project_ids), request.ttl_seconds
        )
        return auth_pb2.CreateTokenResponse(token=secret, info=info)

    def ListTokens(
        self, request: auth_pb2.ListTokensRequest, context: grpc.ServicerContext
    ) -> auth_pb2.ListTokensResponse:
        return auth_pb2.ListTokensResponse(tokens=self.tokens.list())

    def RevokeToken(
        self, request: auth_pb2.RevokeTokenRequest, context: grpc.ServicerContext
    ) -> auth_pb2.RevokeTokenResponse:
        return auth_pb2.RevokeTokenResponse(info=self.tokens.revoke(request.token_id))

    def WhoAmI(self, request: auth_pb2.WhoAmIRequest, context: grpc.ServicerContext) -> auth_pb2.TokenInfo:
        return self.tokens.info(access.current().token_id)
