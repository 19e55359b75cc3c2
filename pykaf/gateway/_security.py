"""Who is calling, and what they may do: authentication and per-principal permissions.

Credentials, in the order they are looked at: an ``Authorization`` header (``Bearer
<token>`` or ``Basic <user:password>``), else a verified client certificate (TLS; the
principal is the subject's CN, or what ``client_cert_principals`` maps it to). A request
without credentials is anonymous (principal None) when no authentication is configured,
or when ``allow_anonymous`` is set; otherwise it gets 401, as does any credential that is
not accepted. A 401 never says what was wrong (which user, which part), only how to
authenticate (``WWW-Authenticate``).

Failed authentications are budgeted per client address (``auth_failure_limit`` per
``auth_failure_window``): past it, the address's requests get 429 with Retry-After before
any credential is looked at, so wrong passwords in a loop cost no hashing.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from pykaf.gateway._asgi import HttpError, Request
from pykaf.gateway._auth_certs import common_name
from pykaf.gateway._auth_config import (
    check_bool,
    check_number,
    check_optional_str,
    check_str_map,
    settings_from_mapping,
)
from pykaf.gateway._auth_failures import FailureBudget, FailureEpisodes
from pykaf.gateway._auth_permissions import ACTIONS, Action, RuleSet, check_rules
from pykaf.gateway._auth_secrets import PasswordTable, TokenTable

__all__ = ["Action", "Security", "SecuritySettings", "check_binding"]

_CLIENT_CERT_MODES: Final = ("none", "optional", "required")
_VERBS: Final = {
    "produce": "produce to",
    "describe": "describe",
    "create": "create",
    "delete": "delete",
}

Rules = Mapping[str, Sequence[str]]


@dataclass(frozen=True, kw_only=True)
class SecuritySettings:
    """Authentication, permissions and the HTTP side's TLS. Nothing configured: every
    request is anonymous and may do everything (fit for loopback only: ``check_binding``
    refuses to serve beyond it that way unless ``allow_anonymous`` is set)."""

    #: Bearer tokens → principal. A token is given plain or as ``sha256:<hex>``
    #: (``hash_token``), so a config file need not hold the secret itself.
    tokens: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: HTTP Basic: user → password, plain or a salted hash from ``hash_password``
    #: (``scrypt:...``, ``pbkdf2:...``). The principal is the user name.
    users: Mapping[str, str] = field(default_factory=dict, repr=False)
    #: Accept a verified TLS client certificate as credentials (the principal: its
    #: subject's CN). Needs TLS with ``tls_ca_certs`` (the CA that signs client certs).
    client_cert: bool = False
    #: Certificate subject (RFC 4514, "CN=app,O=org") or CN → principal. When given, a
    #: certificate that maps to no principal is refused (401).
    client_cert_principals: Mapping[str, str] = field(default_factory=dict)
    #: Serve requests without credentials (as principal None, with
    #: ``anonymous_permissions``) even though authentication is configured, and serve
    #: beyond loopback without authentication.
    allow_anonymous: bool = False
    #: principal → {topic pattern: [actions]} (patterns: "name", "prefix-*", "*";
    #: actions: produce, describe, create, delete, "*"; "create" does not grant
    #: "delete"); the principal "*" means every authenticated principal. None: every
    #: authenticated principal may do everything.
    permissions: Mapping[str, Rules] | None = None
    #: {topic pattern: [actions]} for anonymous requests. None: everything when no
    #: authentication is configured, nothing otherwise.
    anonymous_permissions: Rules | None = None
    #: Add the caller's principal to each record in this header (None: do not).
    principal_header: str | None = None
    #: The realm named in ``WWW-Authenticate``.
    realm: str = "pykaf gateway"
    #: Failed authentications one client address may have per ``auth_failure_window``
    #: seconds (then one more every window / limit); past it, its requests get 429 with
    #: Retry-After, before their credentials are checked: no password hashing, and no
    #: guessing. Every request from the address is refused meanwhile, good credentials
    #: too (telling them apart would be the check it is spared). Clients behind one proxy
    #: share its address, unless the server takes the forwarded one (``pykaf gateway``
    #: does from proxies at 127.0.0.1/::1, or those listed in FORWARDED_ALLOW_IPS).
    #: None: no budget.
    auth_failure_limit: int | None = 20
    auth_failure_window: float = 60.0
    #: TLS on the HTTP side (served by the server, e.g. ``pykaf gateway``): the server's
    #: certificate chain and key (PEM), the key's password, the CA file that verifies
    #: client certificates, and whether a client certificate is asked for: "none",
    #: "optional" or "required" (None: "optional" with ``client_cert``, else "none").
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    tls_keyfile_password: str | None = field(default=None, repr=False)
    tls_ca_certs: str | None = None
    tls_client_cert: Literal["none", "optional", "required"] | None = None

    def __post_init__(self) -> None:
        check_str_map("tokens", self.tokens)
        check_str_map("users", self.users)
        check_str_map("client_cert_principals", self.client_cert_principals)
        check_bool("client_cert", self.client_cert)
        check_bool("allow_anonymous", self.allow_anonymous)
        if self.permissions is not None:
            if not isinstance(self.permissions, Mapping):
                raise ValueError("permissions must be a table of principal = {pattern: actions}")
            for principal, rules in self.permissions.items():
                check_rules(rules, f"permissions for {principal!r}")
        if self.anonymous_permissions is not None:
            check_rules(self.anonymous_permissions, "anonymous_permissions")
        for name in ("principal_header", "tls_certfile", "tls_keyfile", "tls_ca_certs"):
            check_optional_str(name, getattr(self, name))
        check_optional_str("tls_keyfile_password", self.tls_keyfile_password)
        check_optional_str("realm", self.realm)
        check_number(
            "auth_failure_limit", self.auth_failure_limit, low=1, optional=True, integer=True
        )
        check_number("auth_failure_window", self.auth_failure_window, low=1e-3)
        if self.auth_failure_window == float("inf"):
            raise ValueError("auth_failure_window must be a finite number of seconds")
        if '"' in self.realm or "\\" in self.realm:
            raise ValueError(f"realm must not hold quotes or backslashes, not {self.realm!r}")
        if self.tls_client_cert is not None and self.tls_client_cert not in _CLIENT_CERT_MODES:
            raise ValueError(
                f"tls_client_cert must be one of {', '.join(_CLIENT_CERT_MODES)}, not"
                f" {self.tls_client_cert!r}"
            )
        if self.tls_certfile is None and (self.tls_keyfile or self.tls_ca_certs):
            raise ValueError("tls_keyfile and tls_ca_certs need tls_certfile (the server's)")
        if self.client_cert_mode != "none" and self.tls_certfile and not self.tls_ca_certs:
            raise ValueError(
                "client certificates need tls_ca_certs: the CA file that verifies them"
            )
        if self.client_cert and self.client_cert_mode == "none":
            raise ValueError("client_cert=true cannot work with tls_client_cert='none'")
        # Fail at startup, not at the first request: a malformed stored hash.
        TokenTable(self.tokens)
        PasswordTable(self.users)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> SecuritySettings:
        """From a config file's ``[security]`` table: unknown keys and bad values raise
        ValueError naming them."""
        return settings_from_mapping(cls, values, "security")

    @property
    def authentication_configured(self) -> bool:
        return bool(self.tokens or self.users or self.client_cert)

    @property
    def client_cert_mode(self) -> Literal["none", "optional", "required"]:
        if self.tls_client_cert is not None:
            return self.tls_client_cert
        return "optional" if self.client_cert else "none"


def check_binding(host: str, settings: SecuritySettings) -> None:
    """Refuse (ValueError) to serve on ``host`` beyond loopback with no authentication,
    unless ``allow_anonymous`` says so: a gateway open to the network by accident would let
    anyone write to Kafka."""
    if settings.authentication_configured or settings.allow_anonymous:
        return
    if _is_loopback(host):
        return
    raise ValueError(
        f"the gateway would listen on {host!r}, beyond this machine, with no"
        " authentication: configure bearer tokens, Basic users or client certificates"
        " ([security] tokens, users, client_cert), or set allow_anonymous = true to serve"
        " anyone who can reach it"
    )


def _is_loopback(host: str) -> bool:
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # another host name: it may resolve anywhere


class Security:
    """Checks each request: ``authenticate`` names the principal (or raises 401),
    ``authorize`` checks one action on one topic (or raises 403).

    ``rejected`` counts refusals by reason ("missing_credentials", "bad_credentials",
    "forbidden", "too_many_failures": an address past its failure budget) for /metrics."""

    def __init__(self, settings: SecuritySettings) -> None:
        self.settings = settings
        self._configured = settings.authentication_configured
        self._tokens = TokenTable(settings.tokens)
        self._passwords = PasswordTable(settings.users)
        self._failures = FailureEpisodes()
        self._budget = FailureBudget(settings.auth_failure_limit, settings.auth_failure_window)
        self.rejected: dict[str, int] = {
            "missing_credentials": 0,
            "bad_credentials": 0,
            "forbidden": 0,
            "too_many_failures": 0,
        }
        challenges = []
        if self._tokens:
            challenges.append(f'Bearer realm="{settings.realm}"')
        if self._passwords:
            challenges.append(f'Basic realm="{settings.realm}", charset="UTF-8"')
        if not challenges and settings.client_cert:
            # No registered HTTP scheme asks for a certificate, but a 401 must carry a
            # challenge (RFC 9110): an honest name rather than a scheme that would not work.
            challenges.append(f'ClientCertificate realm="{settings.realm}"')
        self._challenge = ", ".join(challenges)
        self._schemes = frozenset(
            name for name, table in (("bearer", self._tokens), ("basic", self._passwords)) if table
        )
        self._how = " or ".join(
            how
            for how, on in (
                ("a bearer token", bool(self._tokens)),
                ("HTTP Basic credentials", bool(self._passwords)),
                ("a client certificate", settings.client_cert),
            )
            if on
        )
        self._rules: dict[str, RuleSet] = {}
        self._everyone = RuleSet({})
        if settings.permissions is None:
            self._everyone = RuleSet.everything()
        else:
            for principal, rules in settings.permissions.items():
                if principal == "*":
                    self._everyone = RuleSet(rules)
                else:
                    self._rules[principal] = RuleSet(rules)
            self._rules = {p: r.merged(self._everyone) for p, r in self._rules.items()}
        if settings.anonymous_permissions is not None:
            self._anonymous = RuleSet(settings.anonymous_permissions)
        else:
            self._anonymous = RuleSet({} if self._configured else {"*": ACTIONS})

    # -- authentication ---------------------------------------------------------------

    async def authenticate(self, request: Request) -> str | None:
        if not self._configured:
            return None  # open (loopback, or allowed): credentials are not looked at
        if self._budget:  # some address failed lately: this one may be out of tries
            wait = self._budget.wait(_address(request))
            if wait:
                raise self._too_many_failures(wait)
        header = request.headers.get("authorization")
        scheme, _, credentials = (header or "").strip().partition(" ")
        scheme = scheme.lower()
        if scheme in self._schemes:
            principal = await self._from_header(scheme, credentials.strip(), request)
        elif self.settings.client_cert and _client_cert_name(request) is not None:
            # An Authorization header of a scheme not configured here may be meant for
            # something else (a proxy): the verified certificate decides.
            principal = self._from_certificate(request)
        elif header is not None:
            principal = None
        elif self.settings.allow_anonymous:
            return None
        else:
            raise self._unauthorized(request, "missing_credentials", "no credentials")
        if principal is None:
            raise self._unauthorized(request, "bad_credentials", "credentials not accepted")
        self._failures.succeeded(_address(request))
        return principal

    async def _from_header(self, scheme: str, credentials: str, request: Request) -> str | None:
        if scheme == "bearer":
            return self._tokens.principal(credentials)
        return await self._basic(credentials, request)

    async def _basic(self, credentials: str, request: Request) -> str | None:
        try:
            text = base64.b64decode(credentials, validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            return None
        user, sep, password = text.partition(":")
        if not sep:
            return None
        table = self._passwords
        if table.known_good(user, password):
            return user
        if table.needs_slow_check(user):
            # scrypt/PBKDF2 take tens of milliseconds: off the event loop (hashlib lets
            # go of the GIL), so other requests keep flowing meanwhile. The check holds
            # one of the address's tries while it runs: concurrent guesses from one
            # address stay within its budget too.
            address = _address(request)
            wait = self._budget.reserve(address)
            if wait:
                raise self._too_many_failures(wait)
            try:
                good = await asyncio.to_thread(table.check, user, password)
            finally:
                self._budget.release(address)
        else:
            good = table.check(user, password)
        if not good:
            return None
        table.remember(user, password)
        return user

    def _from_certificate(self, request: Request) -> str | None:
        tls = request.scope["extensions"]["tls"]
        if tls.get("client_cert_error"):
            return None
        name: str = tls["client_cert_name"]
        cn = common_name(name)
        mapping = self.settings.client_cert_principals
        if mapping:
            found = mapping.get(name)
            if found is None and cn is not None:
                found = mapping.get(cn)
            return found
        return cn or None

    def _unauthorized(self, request: Request, reason: str, detail: str) -> HttpError:
        self.rejected[reason] += 1
        address = _address(request)
        self._failures.failed(address, detail)
        if reason == "bad_credentials":  # none sent costs no check and guesses nothing
            self._budget.failed(address)
        return HttpError(
            401,
            f"authentication required: send {self._how}",
            error_code=40101,
            headers={"www-authenticate": self._challenge},
        )

    def _too_many_failures(self, wait: int) -> HttpError:
        self.rejected["too_many_failures"] += 1
        limit, window = self.settings.auth_failure_limit, self.settings.auth_failure_window
        message = (
            f"too many failed authentications from this address ({limit} within {window:g}"
            f" s): its requests are refused without being checked; retry after {wait} s"
        )
        # 42901: Confluent's "too many requests" refinement, as the request rate's.
        return HttpError(429, message, error_code=42901, headers={"retry-after": str(wait)})

    # -- permissions ------------------------------------------------------------------

    def may(self, principal: str | None, action: Action, topic: str | None) -> bool:
        """Whether ``principal`` may take ``action`` on ``topic`` (None: on the cluster as
        a whole, e.g. listing topics, which is allowed when any rule grants ``action``;
        filter the list with ``may`` per topic)."""
        if principal is None:
            return self._anonymous.allows(action, topic)
        return self._rules.get(principal, self._everyone).allows(action, topic)

    def authorize(self, principal: str | None, action: Action, topic: str | None) -> None:
        """Raise 403 (error code 40301) unless ``principal`` may take ``action`` on
        ``topic``; the message names the principal, the action and the topic."""
        if self.may(principal, action, topic):
            return
        self.rejected["forbidden"] += 1
        who = "anonymous requests" if principal is None else f"principal {principal!r}"
        what = "the cluster's topics" if topic is None else f"topic {topic!r}"
        raise HttpError(403, f"{who} may not {_VERBS.get(action, action)} {what}", error_code=40301)


def _client_cert_name(request: Request) -> str | None:
    tls = request.scope.get("extensions", {}).get("tls")
    if not tls:
        return None
    name = tls.get("client_cert_name")
    return name if isinstance(name, str) and name else None


def _address(request: Request) -> str:
    client = request.scope.get("client")
    return str(client[0]) if client else "an unknown address"
