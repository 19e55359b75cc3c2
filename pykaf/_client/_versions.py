"""What one broker speaks: its ApiVersions answer, negotiated against pykaf's ranges."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pykaf._error_codes import error_for_code
from pykaf._errors import BrokerError
from pykaf.protocol._apis import ApiSpec, api_spec
from pykaf.protocol._negotiation import NegotiatedVersions, pick_version

__all__ = ["BrokerApiVersions"]

_UNSUPPORTED_VERSION: Final = 35


@dataclass(frozen=True, slots=True, kw_only=True)
class BrokerApiVersions:
    """A broker's API version ranges (``ranges``: key -> (min, max)) and the version pykaf
    uses for each API both sides speak (``negotiated``: key -> version)."""

    node_id: int | None
    address: str
    ranges: Mapping[int, tuple[int, int]]
    negotiated: Mapping[int, int]

    @classmethod
    def from_negotiated(
        cls, negotiated: NegotiatedVersions, *, node_id: int | None, address: str
    ) -> BrokerApiVersions:
        return cls(
            node_id=node_id,
            address=address,
            ranges=dict(negotiated.theirs),
            negotiated=NegotiatedVersions(
                negotiated, ours=negotiated.ours, theirs=negotiated.theirs
            ),
        )

    def version(self, api: int | str | ApiSpec) -> int:
        """The version to use for ``api``; ``NoCommonVersionError`` if there is none."""
        return pick_version(self.negotiated, api)

    def supports(self, api_key: int, version: int) -> bool:
        low_high = self.ranges.get(api_key)
        return low_high is not None and low_high[0] <= version <= low_high[1]

    def unsupported(self, api_key: int, version: int) -> BrokerError:
        """The error for a request at a version this broker does not speak: the
        UNSUPPORTED_VERSION the broker itself would answer, said before sending."""
        name = api_spec(api_key).name
        where = f"broker {self.node_id}" if self.node_id is not None else "the broker"
        low_high = self.ranges.get(api_key)
        offer = (
            f"offers v{low_high[0]}..v{low_high[1]}"
            if low_high is not None
            else "does not offer it at all"
        )
        return error_for_code(
            _UNSUPPORTED_VERSION, f"({name} v{version}: {where} at {self.address} {offer})"
        )
