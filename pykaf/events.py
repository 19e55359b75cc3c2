"""The telemetry event stream's values (issue 15): subscribe with ``on_event=`` on any
client, or ``client.events.subscribe(callback)``::

    import pykaf
    from pykaf.events import BatchAcknowledged

    def watch(event):
        if isinstance(event, BatchAcknowledged):
            print(event.topic, event.partition, event.records, event.latency)

    producer = pykaf.Producer("127.0.0.1:9092", on_event=watch)
"""

from pykaf._telemetry._bus import EventBus, EventCallback
from pykaf._telemetry._events import *  # noqa: F403
from pykaf._telemetry._events import __all__ as _event_names

__all__ = [*_event_names, "EventBus", "EventCallback"]  # noqa: PLE0604
