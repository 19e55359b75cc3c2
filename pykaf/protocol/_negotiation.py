"""Version negotiation: the highest version of each API both pykaf and a broker speak.

Every connection starts with ApiVersions; pykaf never hard-codes a version. Also here:
the retry rule for a broker too old for the ApiVersions version we sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pykaf._error_codes import error_for_code
from pykaf._errors import NoCommonVersionError
from pykaf.protocol._apis import ApiSpec, all_apis, api_spec
from pykaf.protocol._messages import API_VERSIONS_KEY

__all__ = ["NegotiatedVersions", "api_versions_retry_version", "negotiate", "pick_version"]

_UNSUPPORTED_VERSION = 35

ApiRef = int | str | ApiSpec


class NegotiatedVersions(dict[int, int]):
    """API key -> the version to use. A plain dict that also keeps both sides' ranges,
    so that ``pick_version`` can say why an API has no common version."""

    __slots__ = ("ours", "theirs")

    def __init__(
        self,
        versions: Mapping[int, int],
        *,
        ours: Mapping[int, tuple[int, int]],
        theirs: Mapping[int, tuple[int, int]],
    ) -> None:
        super().__init__(versions)
        self.ours = dict(ours)
        self.theirs = dict(theirs)


def _our_ranges(
    wanted: Iterable[ApiRef] | Mapping[ApiRef, tuple[int, int]] | None,
) -> dict[int, tuple[int, int]]:
    if wanted is None:
        return {s.key: (s.min_version, s.max_version) for s in all_apis()}
    ours: dict[int, tuple[int, int]] = {}
    if isinstance(wanted, Mapping):
        for api, (low, high) in wanted.items():
            spec = api_spec(api)
            # A caller may narrow pykaf's range (code written for Fetch v4..v12), never widen it.
            ours[spec.key] = (max(low, spec.min_version), min(high, spec.max_version))
    else:
        for api in wanted:
            spec = api_spec(api)
            ours[spec.key] = (spec.min_version, spec.max_version)
    return ours


def negotiate(
    api_versions_response: Any,
    wanted: Iterable[ApiRef] | Mapping[ApiRef, tuple[int, int]] | None = None,
) -> NegotiatedVersions:
    """Map API key -> highest common version, for every API both sides know.

    ``api_versions_response`` is a kio ApiVersionsResponse of any version. ``wanted``
    limits the APIs considered (keys or names), or maps them to a narrower ``(min, max)``.
    An error code in the response raises its ``BrokerError``.
    """
    code = int(api_versions_response.error_code)
    if code != 0:
        raise error_for_code(code, "in the broker's ApiVersions response")
    ours = _our_ranges(wanted)
    theirs: dict[int, tuple[int, int]] = {}
    for entry in api_versions_response.api_keys:
        theirs[int(entry.api_key)] = (int(entry.min_version), int(entry.max_version))
    versions: dict[int, int] = {}
    for key, (our_low, our_high) in ours.items():
        their = theirs.get(key)
        if their is None:
            continue
        low, high = max(our_low, their[0]), min(our_high, their[1])
        if low <= high:
            versions[key] = high
    return NegotiatedVersions(versions, ours=ours, theirs=theirs)


def pick_version(negotiated: Mapping[int, int], api: ApiRef) -> int:
    """The version to use for ``api``, or ``NoCommonVersionError`` naming both ranges."""
    spec = api_spec(api)
    version = negotiated.get(spec.key)
    if version is not None:
        return version
    ours = getattr(negotiated, "ours", {}).get(spec.key, (spec.min_version, spec.max_version))
    theirs = getattr(negotiated, "theirs", {}).get(spec.key)
    raise NoCommonVersionError(spec.name, ours, theirs)


def api_versions_retry_version(api_versions_response: Any, *, sent_version: int) -> int | None:
    """The ApiVersions version to retry with after an UNSUPPORTED_VERSION answer, or None.

    A broker that does not know the ApiVersions version it was sent answers with
    UNSUPPORTED_VERSION and a v0 body listing its own ApiVersions range (the response
    decoder reads that body as v0). Like Kafka's Java client, retry at the broker's
    highest version (v0 when it lists none). None means "do not retry": no such error,
    or nothing lower than what was sent to try.
    """
    if int(api_versions_response.error_code) != _UNSUPPORTED_VERSION:
        return None
    ours = api_spec(API_VERSIONS_KEY)
    retry = 0
    for entry in api_versions_response.api_keys:
        if int(entry.api_key) == API_VERSIONS_KEY:
            retry = min(int(entry.max_version), ours.max_version)
            break
    if retry >= sent_version or retry < ours.min_version:
        return None
    return retry
