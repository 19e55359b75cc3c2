"""A joined member's session: heartbeats keep it, ``max_poll_interval`` and LeaveGroup end it.

Apart from the group driver (``_driver.GroupMembership``) because it is a different clock:
the driver runs joins when the application asks (``ensure_active``), while the session
runs on its own in a background task for as long as one generation lasts, so that slow
processing does not cost the membership. It beats every ``heartbeat_interval``; when the
application has not polled for ``max_poll_interval`` it leaves the group (LeaveGroup,
unless static) and resets the generation, so the next poll rejoins. The LeaveGroup request
lives here too because both ends of a session send it: the poll timeout and the driver's
``leave``.

What a heartbeat answer means for the membership is ``_membership.Membership``'s to say
(``heartbeat_error``); this module only sends, waits and logs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Final

from pykaf._client._async_client import AsyncClient
from pykaf._client._backoff import Backoff
from pykaf._client._targets import Coordinator
from pykaf._client._versions import BrokerApiVersions
from pykaf._consumer._health import Health
from pykaf._consumer._settings import ConsumerSettings
from pykaf._consumer.group._commit import coordinator_versions
from pykaf._consumer.group._membership import (
    LOST_COORDINATOR,
    LOST_POLL_TIMEOUT,
    ErrorAction,
    Generation,
    Membership,
)
from pykaf._error_codes import error_for_code
from pykaf._errors import BrokerConnectionError, ClientClosedError, PykafError
from pykaf.protocol._messages import build_request

__all__ = ["Session"]

log = logging.getLogger("pykaf.consumer")

# NOT_COORDINATOR and friends: the client forgot the coordinator; beat again after a
# backoff rather than at the next interval, or the session may expire meanwhile.
_COORDINATOR_RETRY: Final = frozenset({14, 15, 16})
_LOAD_IN_PROGRESS: Final = 14


class Session:
    """The heartbeat loop and the LeaveGroup of one member (see the module doc).

    ``versions`` is the coordinator's, as the last join negotiated it (None before the
    first join: a LeaveGroup then asks the coordinator first)."""

    def __init__(
        self,
        client: AsyncClient,
        settings: ConsumerSettings,
        state: Membership,
        *,
        group_id: str,
        coordinator: Coordinator,
        backoff: Backoff,
        rand: Callable[[], float],
        health: Health | None = None,
    ) -> None:
        self._client = client
        self._health = health or Health(log, None)
        self._settings = settings
        self._state = state
        self._group_id = group_id
        self._coordinator = coordinator
        self._backoff = backoff
        self._rand = rand
        self.versions: BrokerApiVersions | None = None

    async def heartbeats(self, generation: Generation) -> None:
        """Beat every ``heartbeat_interval`` while ``generation`` lasts; leave the group
        when the application has not polled for ``max_poll_interval``."""
        state = self._state
        settings = self._settings
        timeout = min(self._client.settings.request_timeout, settings.session_timeout)
        next_beat = time.monotonic() + settings.heartbeat_interval
        health, key = self._health, f"heartbeat {self._group_id}"
        # The coordinator could not be reached since the last answer (no connection, or
        # it said it is not, or no longer, the coordinator).
        unreachable = False
        while state.stable and state.generation == generation:
            now = time.monotonic()
            if state.poll_expired(now):
                await self._poll_timeout()
                return
            wait = min(next_beat, state.poll_deadline()) - now
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            versions = self.versions
            assert versions is not None
            request = build_request(
                "Heartbeat",
                versions.version("Heartbeat"),
                group_id=self._group_id,
                generation_id=generation.generation_id,
                member_id=generation.member_id,
                group_instance_id=settings.group_instance_id,
            )
            try:
                answer = await self._client.request(
                    request, to=self._coordinator, purpose="group", timeout=timeout
                )
            except ClientClosedError:
                return
            except PykafError as exc:
                # Broken connection, no coordinator...: the client forgot the coordinator;
                # try again soon (the session is what bounds this). A failing group shows
                # once per episode at WARNING, not at every beat.
                unreachable = unreachable or isinstance(exc, BrokerConnectionError)
                self._beat_failed(key, str(exc))
                next_beat = time.monotonic() + self._backoff.delay(1, self._rand())
                continue
            code = int(answer.error_code)
            next_beat = time.monotonic() + settings.heartbeat_interval
            if code in _COORDINATOR_RETRY:
                unreachable = unreachable or code != _LOAD_IN_PROGRESS
                self._beat_failed(key, error_for_code(code).name)
                next_beat = time.monotonic() + self._backoff.delay(1, self._rand())
                continue
            health.recovered(key, f"group {self._group_id!r}: heartbeats answered again")
            was_unreachable, unreachable = unreachable, False
            if code == 0:
                continue
            action = state.heartbeat_error(code, generation)
            if action in (ErrorAction.REJOIN, ErrorAction.FATAL):
                if was_unreachable and state.fatal is None and state.lost_reason is not None:
                    # Forgotten while it could not reach its coordinator (moved, down).
                    state.lost_reason = LOST_COORDINATOR
                log.info(
                    "group %r: heartbeat answered %s", self._group_id, error_for_code(code).name
                )
                return
            if action is ErrorAction.FAIL:
                self._beat_failed(key, str(error_for_code(code)))

    def _beat_failed(self, key: str, cause: str) -> None:
        self._health.failed(
            key,
            f"group {self._group_id!r}: heartbeat failed: {cause}",
            hint="retrying; the membership is lost if the coordinator does not answer"
            " within session_timeout",
        )

    async def _poll_timeout(self) -> None:
        log.warning(
            "group %r: no poll for max_poll_interval (%gs): leaving the group; the next poll"
            " rejoins (process records faster, poll fewer at a time, or raise"
            " max_poll_interval)",
            self._group_id,
            self._settings.max_poll_interval,
        )
        await self.send_leave("consumer poll timeout has expired")
        self._state.reset_generation("max_poll_interval expired", lost=LOST_POLL_TIMEOUT)

    async def send_leave(self, reason: str) -> None:
        """LeaveGroup for this member (a static member, or one that never joined, sends
        none); bounded by the client's close_timeout, never raises: leaving is best effort
        and the session's expiry is the fallback."""
        generation = self._state.generation
        if not self._state.dynamic or not generation.member_id:
            return
        client = self._client
        timeout = min(client.settings.request_timeout, client.settings.close_timeout)
        try:
            versions = self.versions or await coordinator_versions(client, self._group_id, timeout)
            version = versions.version("LeaveGroup")
            request = build_request(
                "LeaveGroup",
                version,
                group_id=self._group_id,
                member_id=generation.member_id,
                members=[
                    {"member_id": generation.member_id, "group_instance_id": None, "reason": reason}
                ],
            )
            # Not on the "group" connection: a JoinGroup held there would delay it.
            answer = await client.request(
                request, to=self._coordinator, purpose="other", timeout=timeout
            )
        except PykafError as exc:
            log.info("group %r: LeaveGroup not answered: %s", self._group_id, exc)
            return
        code = int(answer.error_code)
        if code:
            log.info("group %r: LeaveGroup: %s", self._group_id, error_for_code(code))
