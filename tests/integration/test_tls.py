"""TLS and mutual TLS on the gRPC servers, with a CA generated in the test: a client holding the
CA (and, for mutual TLS, a certificate it signed) gets through, with its token; a client without
the CA, a plaintext client, and a client without a certificate are refused."""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path
from types import SimpleNamespace

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support import free_port, private_stack_settings

from labelloop.core import access, grpc_client, grpc_server, redis_store
from labelloop.core.grpc_client import ClientTls
from labelloop.core.health import Health
from labelloop.core.settings import SettingsError
from labelloop.core.tokens import TokenStore
from labelloop.ingest.token_api import TokenApi
from labelloop.stack import LocalStack
from labelloop.v1 import auth_pb2, auth_pb2_grpc


def _write(path: Path, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> tuple[str, str]:
    key_file, cert_file = path.with_suffix(".key"), path.with_suffix(".crt")
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return str(cert_file), str(key_file)


def _issue(
    name: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None, server: bool = False
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[1].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    return key, builder.sign(issuer[0] if issuer else key, hashes.SHA256())


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> SimpleNamespace:
    """A CA, a server certificate for 127.0.0.1, a client certificate it signed, and a stranger
    CA with its own client certificate."""
    home = tmp_path_factory.mktemp("pki")
    ca = _issue("labelloop test CA", None)
    other_ca = _issue("someone else's CA", None)
    ca_file, _ = _write(home / "ca", *ca)
    other_ca_file, _ = _write(home / "other-ca", *other_ca)
    server_cert, server_key = _write(home / "server", *_issue("127.0.0.1", ca, server=True))
    client_cert, client_key = _write(home / "client", *_issue("annotator-app", ca))
    stranger_cert, stranger_key = _write(home / "stranger", *_issue("stranger", other_ca))
    return SimpleNamespace(**locals())


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    redis_only = LocalStack(
        private_stack_settings(tmp_path_factory.mktemp("tls-redis")), only={"redis"}, services=(), say=None
    )
    redis_only.up()
    try:
        yield TokenStore(redis_store.connect(redis_only.redis_url, redis_only.redis_password), "t:tls")
    finally:
        redis_only.down()


def serve(tokens: TokenStore, cert: str, key: str, client_ca: str = "") -> tuple[grpc.Server, str]:
    settings = SimpleNamespace(
        grpc_tls_cert_file=cert, grpc_tls_key_file=key, grpc_tls_client_ca_file=client_ca
    )
    port = free_port()
    server = grpc_server.build_server(
        "tls-probe",
        port,
        [lambda s: auth_pb2_grpc.add_TokenServiceServicer_to_server(TokenApi(tokens), s)],
        Health("tls-probe", cache_s=0),
        tokens,
        host="127.0.0.1",
        tls=grpc_server.server_credentials(settings),
    )
    return server, f"127.0.0.1:{port}"


def whoami(target: str, token: str, tls: ClientTls | None) -> str:
    with grpc_client.channel(target, token, tls=tls) as channel:
        return auth_pb2_grpc.TokenServiceStub(channel).WhoAmI(auth_pb2.WhoAmIRequest(), timeout=5).name


def refused(target: str, token: str, tls: ClientTls | None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        whoami(target, token, tls)
    return info.value


def test_tls_with_the_ca_and_refused_without_it(pki, tokens) -> None:
    secret, _ = tokens.create("tls-admin", access.ADMIN)
    server, target = serve(tokens, pki.server_cert, pki.server_key)
    try:
        assert whoami(target, secret, ClientTls(pki.ca_file)) == "tls-admin"
        assert refused(target, secret, ClientTls(pki.other_ca_file)).code() == grpc.StatusCode.UNAVAILABLE
        assert refused(target, secret, None).code() == grpc.StatusCode.UNAVAILABLE, "plaintext is refused"
        err = refused(target, "llt_wrong-token-over-tls", ClientTls(pki.ca_file))
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED, "TLS does not replace the token"
    finally:
        server.stop(grace=None)


def test_mutual_tls_needs_a_client_certificate_signed_by_the_client_ca(pki, tokens) -> None:
    secret, _ = tokens.create("mtls-admin", access.ADMIN)
    server, target = serve(tokens, pki.server_cert, pki.server_key, client_ca=pki.ca_file)
    try:
        assert whoami(target, secret, ClientTls(pki.ca_file, pki.client_cert, pki.client_key)) == "mtls-admin"
        assert refused(target, secret, ClientTls(pki.ca_file)).code() == grpc.StatusCode.UNAVAILABLE
        stranger = ClientTls(pki.ca_file, pki.stranger_cert, pki.stranger_key)
        assert refused(target, secret, stranger).code() == grpc.StatusCode.UNAVAILABLE
    finally:
        server.stop(grace=None)


def test_tls_settings_name_the_bad_variable(pki, tmp_path) -> None:
    missing = SimpleNamespace(
        grpc_tls_cert_file=str(tmp_path / "nope.crt"),
        grpc_tls_key_file=pki.server_key,
        grpc_tls_client_ca_file="",
    )
    with pytest.raises(SettingsError, match="LABELLOOP_GRPC_TLS_CERT_FILE"):
        grpc_server.server_credentials(missing)
    ca_only = SimpleNamespace(
        grpc_tls_cert_file="", grpc_tls_key_file="", grpc_tls_client_ca_file=pki.ca_file
    )
    with pytest.raises(SettingsError, match="LABELLOOP_GRPC_TLS_CLIENT_CA_FILE"):
        grpc_server.server_credentials(ca_only)
    plain = SimpleNamespace(grpc_tls_cert_file="", grpc_tls_key_file="", grpc_tls_client_ca_file="")
    assert grpc_server.server_credentials(plain) is None
