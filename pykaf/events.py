"""The telemetry event stream's values (issue 15): subscribe with ``on_event=`` on any
client, or ``client.events.subscribe(callback)``::

    import pykaf
    from pykaf.events import BatchAcknowledged

    def watch(event):
        if isinstance(event, BatchAcknowledged):
            print(event.topic, event.partition, event.records, event.latency)

    producer = pykaf.Producer("127.0.0.1:9092", on_event=watch)

Who emits what (each event once, by the component that knows its values):

- the client core (every client: producer, consumer, admin, raw client):
  ``ConnectionOpened`` (``time_to_connect``: TCP, TLS, ApiVersions, SASL and the
  ``authenticate`` hook), ``ConnectionFailed`` (an attempt to connect), ``ConnectionClosed``
  (``error`` None when the client closed it on purpose: ``close()``, a broker that moved,
  a SASL session replaced), ``RequestAnswered`` (bytes on the wire, length prefixes
  included; ``latency`` from the write to the answer read; ``broker`` None on a bootstrap
  connection not yet named by Metadata), ``Throttled`` (any answer with a throttle
  time > 0, the producer's Produce answers included: the producer then sends nothing to
  that broker until the throttle time has passed, KIP-219),
  ``MetadataRefreshed`` and ``LeaderMoved`` (a cached leader that a Metadata answer
  changed);
- the producer: batches, buffer and journal fill, replay, and ``DowntimeBegan`` /
  ``DowntimeEnded`` (the client core knows the cluster's outage episodes but not what
  custody saved meanwhile, so it leaves these to the producer);
- the consumer: group, commit and fetch events.

Subscribers of the client core's events run on the client's event loop (for the blocking
classes, their private loop thread): keep them short.
"""

from pykaf._telemetry._bus import EventBus, EventCallback
from pykaf._telemetry._events import *  # noqa: F403
from pykaf._telemetry._events import __all__ as _event_names

__all__ = [*_event_names, "EventBus", "EventCallback"]  # noqa: PLE0604
