"""The sync client verifies TLS: a hub whose certificate chains to the configured CA bundle is
trusted, the same hub without that bundle is refused (and the gate only records the error), and
the configured bundle wins even when the environment names another one."""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from passgated.config import HubSpec
from passgated.sync import SyncClient
from tests.helpers import gate_lists
from tests.hub.server import HubServer
from tests.hub.test_api import setup_venue


def make_ca_and_server(tmp: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 signed by it."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "passgate test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_file, cert_file, key_file = tmp / "ca.pem", tmp / "hub.pem", tmp / "hub.key"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_file, cert_file, key_file


def sync_client(tmp: Path, name: str, hub: HubServer, token: str, ca: Path | None) -> SyncClient:
    root = tmp / name
    root.mkdir()
    lists = gate_lists(root)
    spec = HubSpec(hub.url, token, ca_bundle=str(ca) if ca else None)
    return SyncClient(spec, journal_path=root / "journal.db", gate_id="arena-g1", lists=lists,
                      trust_dir=root / "trust")


def test_tls_with_a_custom_ca_bundle(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    ca, cert, key = make_ca_and_server(tmp_path)
    hub = HubServer(f"sqlite:///{tmp_path / 'hub.db'}", tls=(str(cert), str(key))).start()
    try:
        assert hub.url.startswith("https://")
        admin = hub.admin()
        admin.trust_env = False  # else $REQUESTS_CA_BUNDLE overrides Session.verify
        admin.verify = str(ca)
        token = setup_venue(hub, admin)["g1"]
        trusted = sync_client(tmp_path, "with-ca", hub, token, ca)
        assert trusted.sync_once().ok and trusted.status()["last_error"] is None
        stranger = sync_client(tmp_path, "without-ca", hub, token, None)
        result = stranger.sync_once()
        assert not result.ok and "CERTIFICATE_VERIFY_FAILED" in (stranger.status()["last_error"] or "")
        trusted.close()
        stranger.close()
        admin.close()
    finally:
        hub.close()
