"""The embedded broker's TLS: one server context per cluster, built from PEM files.

Kafka's listener names: PLAINTEXT or SSL. With ``ssl_cafile`` the listener requires a
client certificate signed by that CA (Kafka's ``ssl.client.auth=required``).
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Final

__all__ = ["BROKER_SECURITY_PROTOCOLS", "server_tls_context"]

BROKER_SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL")


def server_tls_context(
    security_protocol: str,
    *,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    cafile: str | Path | None = None,
) -> ssl.SSLContext | None:
    """The listener's TLS context (None for PLAINTEXT); ValueError says what to fix."""
    protocol = str(security_protocol).upper()
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        raise ValueError(
            f"security_protocol {security_protocol!r}: SASL is not available in the embedded"
            " broker yet; use 'SSL' (with ssl_cafile for client certificates) or 'PLAINTEXT'"
        )
    if protocol not in BROKER_SECURITY_PROTOCOLS:
        raise ValueError(
            f"security_protocol must be one of {', '.join(BROKER_SECURITY_PROTOCOLS)},"
            f" not {security_protocol!r}"
        )
    files = {"ssl_certfile": certfile, "ssl_keyfile": keyfile, "ssl_cafile": cafile}
    given = [name for name, path in files.items() if path is not None]
    if protocol == "PLAINTEXT":
        if given:
            raise ValueError(
                f"{', '.join(given)} given with security_protocol 'PLAINTEXT': use 'SSL'"
            )
        return None
    if certfile is None:
        raise ValueError(
            "security_protocol 'SSL' needs ssl_certfile (the broker's certificate, PEM) and"
            " ssl_keyfile (its key); `pykaf certs DIR` makes a throwaway pair"
        )
    for name in given:
        path = Path(str(files[name]))
        if not path.is_file():
            raise ValueError(f"{name}: no such file: {str(path)!r}")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(certfile), None if keyfile is None else str(keyfile))
    except ssl.SSLError as exc:
        raise ValueError(
            f"ssl_certfile/ssl_keyfile cannot be loaded ({exc.reason or exc}): PEM files"
            " that belong together (an unencrypted key)"
        ) from None
    if cafile is not None:
        try:
            context.load_verify_locations(str(cafile))
        except ssl.SSLError as exc:
            raise ValueError(f"ssl_cafile holds no usable CA certificate ({exc})") from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
