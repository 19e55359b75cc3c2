"""``pykaf certs DIR``: a throwaway certificate authority and the certificates signed by it.

For local TLS (``pykaf broker --security-protocol SSL``) and tests only: the CA's key is
written beside its certificate, so whoever reads the directory can mint certificates
every client using ``ca.pem`` trusts. Elliptic-curve keys (P-256): generated in
milliseconds, and every Kafka client (Java, librdkafka, Python's ``ssl``) accepts them.

Files: ``ca.pem`` (trust this), ``ca.key``, ``server.pem`` + ``server.key`` (the broker;
valid for the hosts given, by default localhost and 127.0.0.1), ``client.pem`` +
``client.key`` (a client certificate for mutual TLS). Keys are written 0600 and in PEM
PKCS#8; the client key is encrypted when a password is given.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

__all__ = ["CertificateFiles", "run_certs", "write_certificates"]

DEFAULT_HOSTS: Final = ("localhost", "127.0.0.1", "::1")
DEFAULT_DAYS: Final = 30


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """Where ``write_certificates`` put each file."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def write_certificates(
    directory: str | os.PathLike[str],
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    days: int = DEFAULT_DAYS,
    client_key_password: str | None = None,
) -> CertificateFiles:
    """Write a fresh CA, a server certificate for ``hosts`` and a client certificate into
    ``directory`` (created if missing; existing files of the same names are replaced)."""
    try:
        from cryptography import x509  # noqa: PLC0415  (an optional dependency)
        from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: PLC0415
    except ImportError as exc:
        raise RuntimeError(
            "making certificates needs the 'cryptography' package: pip install cryptography"
            " (or pykaf[test])"
        ) from exc
    if not hosts:
        raise ValueError("the server certificate needs at least one host name or address")
    if type(days) is not int or days < 1:
        raise ValueError(f"days must be a whole number >= 1, not {days!r}")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    # A minute of slack: a broker on a machine whose clock is slightly behind still
    # accepts a certificate made a moment ago.
    not_before = now - datetime.timedelta(minutes=1)
    not_after = now + datetime.timedelta(days=days)

    def name(common_name: str) -> x509.Name:
        return x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pykaf throwaway"),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            ]
        )

    def builder(subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePrivateKey) -> Any:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = name("pykaf throwaway CA")
    ca_cert = (
        builder(ca_name, ca_name, ca_key)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )

    def leaf(common_name: str, usage: x509.ObjectIdentifier, sans: list[x509.GeneralName]) -> Any:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = builder(name(common_name), ca_name, key)
        if sans:
            cert = cert.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = (
            cert.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
            .sign(ca_key, hashes.SHA256())
        )
        return key, cert

    server_key, server_cert = leaf(
        hosts[0], ExtendedKeyUsageOID.SERVER_AUTH, [_subject_alt_name(x509, h) for h in hosts]
    )
    client_key, client_cert = leaf("pykaf client", ExtendedKeyUsageOID.CLIENT_AUTH, [])

    def key_bytes(key: ec.EllipticCurvePrivateKey, password: str | None = None) -> bytes:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode())
            if password
            else serialization.NoEncryption()
        )
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    def cert_bytes(cert: x509.Certificate) -> bytes:
        return cert.public_bytes(serialization.Encoding.PEM)

    files = CertificateFiles(
        directory=out,
        ca_cert=out / "ca.pem",
        ca_key=out / "ca.key",
        server_cert=out / "server.pem",
        server_key=out / "server.key",
        client_cert=out / "client.pem",
        client_key=out / "client.key",
    )
    _write(files.ca_cert, cert_bytes(ca_cert))
    _write(files.ca_key, key_bytes(ca_key), private=True)
    _write(files.server_cert, cert_bytes(server_cert))
    _write(files.server_key, key_bytes(server_key), private=True)
    _write(files.client_cert, cert_bytes(client_cert))
    _write(files.client_key, key_bytes(client_key, client_key_password), private=True)
    return files


def _subject_alt_name(x509: Any, host: str) -> Any:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def _write(path: Path, data: bytes, *, private: bool = False) -> None:
    # A key is created 0600 from the start: never readable by others, not even briefly.
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def run_certs(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="pykaf certs",
        description=(
            "Write a throwaway CA and certificates signed by it, for local TLS: ca.pem,"
            " server.pem + server.key (for pykaf broker --security-protocol SSL),"
            " client.pem + client.key (mutual TLS). Not for production: the CA's key sits"
            " beside its certificate."
        ),
    )
    parser.add_argument("directory", help="where to write the files (created if missing)")
    parser.add_argument(
        "--host",
        action="append",
        dest="hosts",
        help="a host name or IP address the server certificate is valid for (repeatable;"
        f" default: {', '.join(DEFAULT_HOSTS)})",
    )
    parser.add_argument("--days", type=int, default=DEFAULT_DAYS, help="validity in days")
    parser.add_argument(
        "--client-key-password-env",
        metavar="VAR",
        help="encrypt client.key with the password in this environment variable (a"
        " password on the command line would show in the process list)",
    )
    args = parser.parse_args(argv)
    password = None
    if args.client_key_password_env:
        password = os.environ.get(args.client_key_password_env)
        if not password:
            parser.error(f"the environment variable {args.client_key_password_env} is empty")
    try:
        files = write_certificates(
            args.directory,
            hosts=args.hosts or DEFAULT_HOSTS,
            days=args.days,
            client_key_password=password,
        )
    except (RuntimeError, ValueError, OSError) as exc:
        print(f"pykaf certs: {exc}", file=sys.stderr)
        return 1
    d = files.directory
    print(f"wrote {files.ca_cert}, {files.server_cert}, {files.client_cert} and their keys")
    print(
        f"broker: pykaf broker --security-protocol SSL --ssl-certfile {files.server_cert}"
        f" --ssl-keyfile {files.server_key}"
    )
    print(f"client: security_protocol='SSL', ssl_cafile='{d / 'ca.pem'}'")
    return 0
