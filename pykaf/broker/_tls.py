"""The embedded broker's TLS: one server context per cluster, built from PEM files.

Kafka's listener names: PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL. A broker may have one of
each (a plaintext listener beside a TLS one); the TLS ones (SSL, SASL_SSL) use the files
given. With ``ssl_cafile`` it
requires a client certificate signed by that CA (Kafka's ``ssl.client.auth=required``).
"""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Final

__all__ = ["BROKER_SECURITY_PROTOCOLS", "listener_contexts", "security_protocol_name"]

BROKER_SECURITY_PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_TLS_PROTOCOLS: Final = ("SSL", "SASL_SSL")


def security_protocol_name(security_protocol: str) -> str:
    """The protocol's canonical name; ValueError says what to use instead."""
    protocol = str(security_protocol).upper()
    if protocol not in BROKER_SECURITY_PROTOCOLS:
        raise ValueError(
            f"security_protocol must be one of {', '.join(BROKER_SECURITY_PROTOCOLS)},"
            f" not {security_protocol!r}"
        )
    return protocol


def listener_contexts(
    protocols: Sequence[str],
    *,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
    cafile: str | Path | None = None,
) -> list[ssl.SSLContext | None]:
    """The TLS context of each listener (None: PLAINTEXT), one shared context built once;
    ValueError says what to fix."""
    names = [security_protocol_name(p) for p in protocols]
    if len(set(names)) != len(names):
        raise ValueError(
            f"listeners {', '.join(names)}: one listener per security protocol at most"
        )
    files = {"ssl_certfile": certfile, "ssl_keyfile": keyfile, "ssl_cafile": cafile}
    given = [name for name, path in files.items() if path is not None]
    tls_names = [name for name in names if name in _TLS_PROTOCOLS]
    if not tls_names:
        if given:
            raise ValueError(
                f"{', '.join(given)} given with security_protocol {names[0]!r}: use 'SSL'"
                " or 'SASL_SSL'"
            )
        return [None] * len(names)
    if certfile is None:
        raise ValueError(
            f"security_protocol {tls_names[0]!r} needs ssl_certfile (the broker's certificate,"
            " PEM) and ssl_keyfile (its key); `pykaf certs DIR` makes a throwaway pair"
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
    return [context if name in _TLS_PROTOCOLS else None for name in names]
