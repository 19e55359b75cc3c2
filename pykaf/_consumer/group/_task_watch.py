"""The group's background tasks (heartbeats, the metadata watch) said when a bug ends them.

Both loops handle every error the client raises (a broker away, a coordinator moved)
themselves. Anything else is a bug, and used to end the task in silence: with no more
heartbeats, the coordinator evicted the member a session timeout later without a word
of why, and with no metadata watch, new partitions went unassigned. ``watch`` attaches
a done-callback that says it at ERROR with the traceback the first time for each task,
then at WARNING in one line, and calls ``restart`` so that the work goes on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from pykaf._errors import ClientClosedError

__all__ = ["TaskWatch"]

log = logging.getLogger("pykaf.consumer")


class TaskWatch:
    """One group's watch over its background tasks (see the module doc)."""

    def __init__(self, group_id: str, closing: Callable[[], bool]) -> None:
        self._group_id = group_id
        self._closing = closing
        self._said: set[str] = set()  # the tasks whose traceback was logged already

    def watch(self, task: asyncio.Task[Any], what: str, restart: Callable[[], object]) -> None:
        """Say when ``task`` (the group's ``what`` task) ends by an unexpected error,
        then call ``restart()``; a cancelled task, or one that ended normally or on the
        client's close, is left alone."""

        def ended(done: asyncio.Task[Any]) -> None:
            if done.cancelled() or self._closing():
                return
            error = done.exception()  # retrieved: asyncio prints nothing more
            if error is None or isinstance(error, ClientClosedError):
                return
            message = "group %r: its %s task stopped on an unexpected error (%s: %s); restarted"
            details = (self._group_id, what, type(error).__name__, error)
            if what in self._said:
                log.warning(message, *details)
            else:
                self._said.add(what)
                log.error(message, *details, exc_info=error)
            restart()

        task.add_done_callback(ended)
