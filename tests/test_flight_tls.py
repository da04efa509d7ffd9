"""TLS for the Flight SQL server: a self-signed certificate made here, clients that trust it
connect over ``grpc+tls://``, a client that does not is refused; off loopback the server needs
TLS unless told ``--insecure``."""

from __future__ import annotations

import datetime
import ipaddress
import threading
from collections.abc import Iterator
from pathlib import Path

import adbc_driver_flightsql.dbapi as adbc
import pyarrow.flight as flight
import pytest
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from florsql.cli import main
from florsql.flight import FlorFlightServer, ServerOptions
from florsql.flight import flight_sql_pb2 as pb
from florsql.flight.backend import open_service
from florsql.flight.wire import pack
from tests.conftest import TINY
from tests.helpers import make_repo

ROOT_CERTS = "adbc.flight.sql.client_option.tls_root_certs"


def self_signed(where: Path) -> tuple[Path, Path]:
    """A certificate for localhost and 127.0.0.1, valid for a day, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = where / "server.pem", where / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = self_signed(where)
    repo = make_repo(where / "proj", {"train.py": TINY})
    service = open_service(repo)
    options = ServerOptions("127.0.0.1", 0, tls_cert=cert, tls_key=key)
    server = FlorFlightServer(service, options)
    assert options.location.startswith("grpc+tls://")
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield f"grpc+tls://localhost:{server.port}", cert.read_text()
    finally:
        server.shutdown()
        thread.join(10)
        service.close()


def test_clients_that_trust_the_certificate_connect(tls_server: tuple[str, str]) -> None:
    uri, pem = tls_server
    with (
        adbc.connect(uri, db_kwargs={ROOT_CERTS: pem}, autocommit=True) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT 42 AS answer")
        assert cur.fetchall() == [(42,)]
    client = flight.connect(uri, tls_root_certs=pem.encode())
    cmd = pb.CommandStatementQuery(query="SELECT 1 AS one")
    info = client.get_flight_info(flight.FlightDescriptor.for_command(pack(cmd)))
    assert client.do_get(info.endpoints[0].ticket).read_all().to_pylist() == [{"one": 1}]


def test_a_client_that_does_not_trust_it_is_refused(tls_server: tuple[str, str]) -> None:
    uri, _ = tls_server
    with (
        pytest.raises(adbc.Error, match="certificate signed by unknown authority"),
        adbc.connect(uri, autocommit=True) as conn,
        conn.cursor() as cur,
    ):
        cur.execute("SELECT 1")
    with pytest.raises(flight.FlightUnavailableError):
        flight.connect(uri).list_actions()
    # Plain gRPC against the TLS port gets nowhere either.
    with pytest.raises(flight.FlightUnavailableError):
        flight.connect(uri.replace("grpc+tls", "grpc+tcp")).list_actions()


def test_off_loopback_serve_needs_tls_unless_insecure(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "proj", {"train.py": TINY})
    args = ["serve", "--host", "0.0.0.0", "--token", "t", "--repo", str(repo)]
    refused = CliRunner().invoke(main, args)
    assert refused.exit_code == 1
    assert "refusing to serve on 0.0.0.0 without TLS" in refused.output
    assert "--insecure" in refused.output
    half = CliRunner().invoke(main, [*args, "--tls-cert", str(self_signed(tmp_path)[0])])
    assert half.exit_code != 0 and "--tls-cert and --tls-key go together" in half.output
