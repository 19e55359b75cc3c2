"""The exception tree: one root, a protocol branch split by who erred, broker codes.

Protocol errors follow h11's split: ``LocalProtocolError`` when pykaf (or its caller)
asked for something the protocol cannot express, ``RemoteProtocolError`` when the bytes
that came from the peer are wrong. Broker errors carry Kafka's error code; one subclass
per code lives in ``_kafka_errors`` (generated from kio's table).
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "NotAJournalError",
    "BrokerError",
    "CorruptRecordError",
    "DecompressionError",
    "DecompressionLimitError",
    "FrameTooLargeError",
    "LocalProtocolError",
    "MissingFieldsError",
    "NoCommonVersionError",
    "NotKafkaError",
    "ProtocolError",
    "PykafError",
    "RecordBatchError",
    "RemoteProtocolError",
    "UnexpectedCorrelationIdError",
    "UnknownApiError",
    "UnknownBrokerError",
    "UnsupportedMagicError",
]


class PykafError(Exception):
    """Root of every error pykaf raises on purpose."""


class ProtocolError(PykafError):
    """The Kafka wire protocol could not be spoken: see the two subclasses."""


class LocalProtocolError(ProtocolError):
    """We (pykaf or its caller) asked for something the protocol cannot express."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that are not valid Kafka protocol."""


class MissingFieldsError(LocalProtocolError):
    """A request was built without fields its version requires."""

    def __init__(self, api: str, version: int, missing: list[str]) -> None:
        self.api = api
        self.version = version
        self.missing = tuple(missing)
        super().__init__(
            f"{api} v{version} needs the field(s) {', '.join(missing)}; pass them as keyword"
            " arguments"
        )


class UnknownApiError(LocalProtocolError):
    """An API key or version pykaf does not know (or does not register)."""


class NoCommonVersionError(LocalProtocolError):
    """The broker and pykaf share no version of an API."""

    def __init__(self, api: str, ours: tuple[int, int], theirs: tuple[int, int] | None) -> None:
        self.api = api
        self.ours = ours
        self.theirs = theirs
        where = (
            "the broker does not offer it at all"
            if theirs is None
            else f"the broker offers v{theirs[0]}..v{theirs[1]}"
        )
        super().__init__(
            f"no common version of {api}: pykaf speaks v{ours[0]}..v{ours[1]}, {where}"
        )


class FrameTooLargeError(RemoteProtocolError):
    """A frame length prefix is negative or above the configured maximum."""


class NotKafkaError(RemoteProtocolError):
    """The peer speaks another protocol (TLS, HTTP, ...) on a Kafka port."""


class UnexpectedCorrelationIdError(RemoteProtocolError):
    """A response answers a correlation id that was never sent (or already answered)."""


class RecordBatchError(RemoteProtocolError):
    """A record batch that cannot be read (the base of the next four errors).

    Raised by a consumer, it says where, so that ``seek`` can step past it (the records
    before it were handed out first; other partitions keep flowing): ``topic`` and
    ``partition``; ``offset``, the first offset it could not hand out; ``next_offset``, the
    offset after the batch as its header tells (``offset + 1`` when the header cannot be
    read). All are None when raised outside a consumer (decoding bytes directly).
    """

    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    next_offset: int | None = None


class CorruptRecordError(RecordBatchError):
    """A record batch failed its CRC or its own length bookkeeping."""


class UnsupportedMagicError(RecordBatchError):
    """A record batch in the pre-v2 message format (magic 0 or 1)."""


class DecompressionError(RecordBatchError):
    """A compressed batch could not be decompressed (corrupt or truncated)."""


class DecompressionLimitError(DecompressionError):
    """A batch decompresses to more than the configured cap (a decompression bomb?)."""


class BrokerError(PykafError):
    """An error code a broker returned. Subclassed once per code in ``pykaf.errors``."""

    code: ClassVar[int] = -1
    name: ClassVar[str] = "UNKNOWN_SERVER_ERROR"
    description: ClassVar[str] = "The server experienced an unexpected error."
    retriable: ClassVar[bool] = False

    def __init__(self, message: str | None = None) -> None:
        self.message = message
        text = f"[{self.name} ({self.code})] {self.description}"
        if message:
            text = f"{text} {message}"
        super().__init__(text)


class UnknownBrokerError(BrokerError):
    """A code this version of pykaf does not know (a newer broker?)."""

    def __init__(self, code: int, message: str | None = None) -> None:
        self.unknown_code = code
        super().__init__(message)

    def __str__(self) -> str:
        tail = f" {self.message}" if self.message else ""
        return (
            f"[unknown error code {self.unknown_code}] The broker returned a code pykaf"
            f" does not know.{tail}"
        )


# -- client I/O errors (the asyncio client core) -------------------------------------
# Appended as one block (other modules edit the list above): socket and timeout failures
# are mapped to these once, where the client meets the socket, and always name the broker.

__all__ += [
    "BrokerConnectionError",
    "ClientClosedError",
    "ClientForkedError",
    "WrongEventLoopError",
    "KafkaTimeoutError",
    "NoBrokersError",
]


class BrokerConnectionError(PykafError, ConnectionError):
    """A broker could not be reached, or its connection broke (refused, reset, DNS...).

    ``address`` is ``"host:port"``; ``node_id`` is None for a bootstrap address whose id is
    not known yet. Retriable: the broker may come back, or another may take over.
    ``never_sent`` is True when it came while connecting: no request was written, so the
    broker did nothing of the call (False: a request may have been written before the
    connection broke, and done).
    """

    retriable: ClassVar[bool] = True
    never_sent: bool = False

    # Keywords have defaults so that copy and pickle (which call cls(message)) work.
    def __init__(self, message: str, *, address: str = "", node_id: int | None = None) -> None:
        # One argument only: OSError gives two or more arguments an errno meaning.
        super().__init__(message)
        self.address = address
        self.node_id = node_id


class NoBrokersError(BrokerConnectionError):
    """Every broker the client knows (and every bootstrap address) failed until the
    deadline. ``errors`` holds the last failure of each address tried."""

    def __init__(self, message: str, *, errors: tuple[PykafError, ...] = ()) -> None:
        super().__init__(message, address=",".join(_address_of(e) for e in errors))
        self.errors = errors


def _address_of(error: PykafError) -> str:
    return str(getattr(error, "address", "?"))


class KafkaTimeoutError(PykafError, TimeoutError):
    """An operation did not complete within its timeout (on the client's clock).

    Not to be confused with ``RequestTimedOutError``, the code a broker returns."""

    retriable: ClassVar[bool] = True

    def __init__(self, message: str, *, address: str | None = None) -> None:
        super().__init__(message)
        self.address = address


class ClientClosedError(PykafError):
    """The client was closed: before the call, or while the call was waiting."""


class ClientForkedError(ClientClosedError):
    """The client was created in another process, which this one forked from
    (``os.fork``, multiprocessing's "fork" start method, a pre-forking server): its
    threads and connections stayed there. Create a new client in this process."""


class WrongEventLoopError(PykafError, RuntimeError):
    """An asyncio client (``AsyncClient``, ``AsyncAdmin``, ``AsyncProducer``,
    ``AsyncConsumer``) was called outside the event loop it belongs to (the one it was
    first used in): from a plain thread, or from another thread's loop. Its state and its
    connections are that loop's alone. Call it from there (from another thread, through
    ``asyncio.run_coroutine_threadsafe``), or use the blocking client, which any thread
    may call. Also raised by a blocking producer's wait (``flush``, ``close``, a
    future's ``result``) called on its own loop's thread, from a delivery callback, where
    it would wait for itself. A ``RuntimeError``, as asyncio's "attached to a different
    loop" is."""


# -- producer errors ---------------------------------------------------------------------
# Appended as one block (the producer). Every record ends in exactly one report; a failed
# one carries a DeliveryError saying whether the record may be in the log anyway.

__all__ += [
    "BufferFullError",
    "DeliveryError",
    "DeliveryTimeoutError",
    "ProducerClosedError",
    "ProducerForkedError",
    "TransformError",
    "RecordTooLargeError",
]


class DeliveryError(PykafError):
    """A record was not delivered. ``maybe_persisted`` is True when it may have reached
    the log all the same (a request was written and its answer never came, or acks=0);
    ``cause`` is what failed (a ``BrokerError`` subclass, a connection error...) or None."""

    # Keywords have defaults so that copy and pickle (which call cls(message)) work.
    def __init__(
        self, message: str, *, maybe_persisted: bool = False, cause: BaseException | None = None
    ) -> None:
        super().__init__(message)
        self.maybe_persisted = maybe_persisted
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


class DeliveryTimeoutError(DeliveryError, TimeoutError):
    """The record was not acknowledged within ``delivery_timeout``."""


class ProducerClosedError(DeliveryError):
    """The producer was closed before the record was acknowledged (or produce was called
    after close)."""


class ProducerForkedError(ProducerClosedError, ClientForkedError):
    """The producer was created in another process, which this one forked from: its
    records are that process's to send (and its journal, if any, that process's to
    write). Create a new producer in this process."""


class TransformError(DeliveryError):
    """The producer's ``transform_batch`` hook raised (or returned something that is not
    a list of records) for a batch: that batch's records are not sent. ``cause`` is the
    hook's exception (None for a bad return value)."""


class BufferFullError(PykafError):
    """``buffer_memory`` stayed full for ``max_block`` seconds: the record was not taken.
    From ``produce_batch``: ``taken`` is how many of its items were taken before it (the
    rest were not)."""

    taken: int | None = None


class RecordTooLargeError(PykafError):
    """A record is larger than ``max_request_size`` (or ``buffer_memory``) once encoded;
    it was not taken."""


# -- consumer errors ---------------------------------------------------------------------
# Appended as one block (the consumer's fetch side). Broker codes met while consuming
# (OFFSET_OUT_OF_RANGE, UNKNOWN_TOPIC_OR_PARTITION...) keep their generated classes.

__all__ += [
    "ConsumerClosedError",
    "ConsumerStateError",
    "InvalidRegexError",
    "NoOffsetError",
    "NotAssignedError",
]


class ConsumerClosedError(ClientClosedError):
    """The consumer was closed; it cannot be used again (create a new one)."""


class ConsumerStateError(PykafError):
    """The consumer cannot do this in its present state (no group_id for a commit,
    ``assign`` mixed with ``subscribe``...); the message says what to do instead."""


class NotAssignedError(ConsumerStateError):
    """The partition is not assigned to this consumer (assign or subscribe first)."""


class InvalidRegexError(PykafError, ValueError):
    """A subscription pattern is not a valid regular expression."""


class NoOffsetError(PykafError):
    """A partition has no position to start from (no committed offset) and
    ``auto_offset_reset`` is "error"; ``seek`` to choose one."""


# -- consumer group errors ---------------------------------------------------------------
# Appended as one block (group membership). A commit refused because the group moved on
# is not a broker code the caller can act on as such: it says what to do instead.

__all__ += ["CommitFailedError", "RebalancingCommitError"]


class CommitFailedError(PykafError):
    """An offset commit was refused because this member's generation of the group is
    over (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID: a rebalance completed without it, or
    its session expired). Its partitions may belong to another member now: do not retry;
    the next poll rejoins. ``cause`` is the broker error."""

    retriable: ClassVar[bool] = False

    # Keywords have defaults so that copy and pickle (which call cls(message)) work.
    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


class RebalancingCommitError(CommitFailedError):
    """An offset commit was refused because the group is rebalancing
    (REBALANCE_IN_PROGRESS, or this member is rejoining). Retriable: poll (which
    completes the rejoin), then commit again the offsets of partitions still assigned."""

    retriable: ClassVar[bool] = True


# -- consumer health errors ----------------------------------------------------------------
# Appended as one block (issue 10): what a consumer's ``on_error`` receives when something
# it could not do in the background would otherwise pass unseen.

__all__ += ["ConsumerHealthError", "ConsumerStartError", "FinalCommitError", "GroupJoinError"]


class ConsumerHealthError(PykafError):
    """What a consumer's ``on_error`` receives; ``cause`` is the error underneath."""

    def __init__(self, message: str, *, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause


class ConsumerStartError(ConsumerHealthError):
    """The consumer could not look its topics up (to assign or subscribe them) yet; it
    tries again at the next poll. ``cause`` is what failed (often no broker reachable)."""

    retriable: ClassVar[bool] = True


class GroupJoinError(ConsumerHealthError):
    """A consumer group could not be joined within its rebalance timeout; the consumer
    reads nothing of the group's topics meanwhile and keeps trying at every poll.
    ``cause`` is the last attempt's error."""

    retriable: ClassVar[bool] = True


class FinalCommitError(ConsumerHealthError):
    """``close()`` could not commit the offsets handed out last (within its timeout):
    they will be read again by the next member. ``offsets`` maps each partition to the
    ``OffsetAndMetadata`` that was not committed; ``cause`` is what failed."""

    retriable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        offsets: dict[Any, Any] | None = None,
        cause: BaseException | None = None,
    ) -> None:
        super().__init__(message, cause=cause)
        self.offsets = dict(offsets or {})


# -- journal errors ----------------------------------------------------------------------
# Appended as one block (issue 12, custody on disk). The journal's store raises them; the
# producer turns them into back-pressure or a failed report, never a silent drop.

__all__ += [
    "JournalCorruptError",
    "JournalDiskError",
    "JournalError",
    "JournalFailedError",
    "JournalFullError",
    "JournalKeptError",
    "JournalLockedError",
    "JournalSyncError",
]


class JournalError(PykafError):
    """The producer's journal (``journal_dir``) cannot do what was asked: see the subclasses."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its message and attributes, not through __init__ (whose arguments
        # are the parts of the message): pickle and copy keep str() and every attribute.
        return (_restore_journal_error, (type(self), self.args, self.__dict__))


def _restore_journal_error(
    cls: type[JournalError], args: tuple[Any, ...], state: dict[str, Any]
) -> JournalError:
    """The inverse of ``JournalError.__reduce__``."""
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class JournalCorruptError(JournalError):
    """A journal file is damaged somewhere other than a torn tail; nothing was cut or deleted.

    ``path`` and ``position`` (a byte offset in that file) name the damage, ``reason`` what
    is wrong there."""

    # Keywords have defaults so that copy and pickle (which call cls(message)) work.
    def __init__(self, path: object = "", position: int = 0, reason: str = "") -> None:
        self.path = str(path)
        self.position = position
        self.reason = reason
        super().__init__(
            f"journal file {self.path} is damaged at byte {position} ({reason}); this is not"
            " a torn tail, so nothing was cut and the file was kept. Move the journal"
            " directory aside to start empty, or truncate the file to"
            f" {position} bytes (and move later segments away) to keep what precedes it"
        )


class JournalLockedError(JournalError):
    """Another journal store (in this process or another) holds the directory's lock.

    ``directory`` is the journal directory, ``holder_pid`` the pid written by the holder
    (None when it could not be read)."""

    def __init__(self, directory: object = "", holder_pid: int | None = None) -> None:
        self.directory = str(directory)
        self.holder_pid = holder_pid
        holder = f"process {holder_pid}" if holder_pid is not None else "another process"
        super().__init__(
            f"journal directory {self.directory} is in use by {holder}; two producers cannot"
            " share a journal: stop that one, or give this producer its own journal_dir"
        )


class JournalKeptError(ProducerClosedError):
    """The producer closed before the record was acknowledged, and the record stays in its
    journal (custody "journal"/"journal_sync"): the next producer opened on the same
    ``journal_dir`` sends it (``pykaf journal replay`` drains it too). Not a loss: the
    record is still in custody, only this process's report ends here."""


class JournalFullError(JournalError):
    """The journal holds ``max_bytes`` already and nothing could be reclaimed; the entries
    were not written. Retriable: space returns as records are acknowledged. From
    ``produce_batch``: ``taken`` is how many of its items were taken before it."""

    retriable: ClassVar[bool] = True
    taken: int | None = None

    def __init__(
        self, directory: object = "", used_bytes: int = 0, max_bytes: int = 0, needed: int = 0
    ) -> None:
        self.directory = str(directory)
        self.used_bytes = used_bytes
        self.max_bytes = max_bytes
        self.needed = needed
        super().__init__(
            f"journal {self.directory} is full ({used_bytes} of {max_bytes} bytes used,"
            f" {needed} more needed): raise journal_max_bytes, or wait for the brokers to"
            " acknowledge what it holds"
        )


class JournalDiskError(JournalError):
    """The disk refused a journal operation (ENOSPC, EIO, EROFS, ...). ``errno`` and
    ``path`` say what and where, ``operation`` which call failed; ``__cause__`` is the
    ``OSError``. The store says in its message whether it can still be used. From
    ``produce_batch``: ``taken`` is how many of its items were taken before it."""

    taken: int | None = None

    def __init__(
        self,
        message: str = "",
        *,
        errno: int | None = None,
        path: object = "",
        operation: str = "",
    ) -> None:
        super().__init__(message)
        self.errno = errno
        self.path = str(path)
        self.operation = operation


class JournalSyncError(JournalDiskError):
    """An fsync of the journal failed. What it covered may not be on disk, and a later
    fsync could succeed without writing it (the kernel may have dropped the dirty pages),
    so the store stops: ``first_unsynced_serial`` and later records are not in custody.
    Close the store and open it again (recovery reads what the disk really holds)."""

    def __init__(
        self,
        message: str = "",
        *,
        errno: int | None = None,
        path: object = "",
        operation: str = "fsync",
        first_unsynced_serial: int = 0,
    ) -> None:
        super().__init__(message, errno=errno, path=path, operation=operation)
        self.first_unsynced_serial = first_unsynced_serial


class JournalFailedError(JournalDiskError):
    """The journal store failed earlier (a failed fsync, or a write it could not undo) and
    refuses every further append and sync; ``__cause__`` is the first failure. Close the
    store and open it again."""


class NotAJournalError(JournalError):
    """The path is missing, not a directory, or holds neither a ``LOCK`` nor a segment."""

    def __init__(self, path: object = "", reason: str = "") -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(
            f"{self.path} is not a journal directory: {reason} (a journal directory is the"
            " producer's journal_dir: it holds LOCK and <20 digits>.journal segment files)"
        )


# SASL (issue 13). Messages name what to fix and never carry a password, a token, a salted
# password or a proof: they end up in logs and tracebacks.
__all__ += [
    "SaslAuthenticationError",
    "SaslConfigurationError",
    "SaslError",
    "SaslProtocolError",
    "SaslServerSignatureError",
]


class SaslError(PykafError):
    """A SASL exchange failed (the base of the four SASL errors)."""


class SaslConfigurationError(SaslError, ValueError):
    """The SASL settings cannot be used as given: an unknown mechanism, a missing username,
    password or token, or a password that SASLprep (RFC 4013) prohibits."""


class SaslAuthenticationError(SaslError):
    """The credentials were refused: a wrong password or token, or an unknown user (the
    broker's side does not say which, as Kafka does not)."""


class SaslServerSignatureError(SaslAuthenticationError):
    """The SCRAM server could not prove it knows the password: its ServerSignature is wrong.
    The peer is not the broker that holds these credentials (or it stores others); do not
    trust the connection."""


class SaslProtocolError(SaslError, RemoteProtocolError):
    """The peer's SASL message is malformed or breaks the mechanism's rules (a SCRAM nonce
    that does not extend ours, an iteration count outside the accepted range, ...)."""


# -- TLS errors (issue 13) ---------------------------------------------------------------
# Appended as one block. A TLS failure is a configuration mismatch between the client and
# the listener: it does not fix itself, so it is not retriable (as Kafka's Java client
# treats SslAuthenticationException); the message says what to change.

__all__ += [
    "SecurityProtocolMismatchError",
    "TlsCertificateError",
    "TlsError",
    "TlsHostnameMismatchError",
]


class TlsError(BrokerConnectionError):
    """TLS with a broker failed; ``__cause__`` is the ``ssl`` module's error."""

    retriable: ClassVar[bool] = False


class TlsCertificateError(TlsError):
    """A certificate was refused: the broker's (not signed by a CA the client trusts,
    expired, or not for this host) or the client's (the broker requires one it trusts)."""


class TlsHostnameMismatchError(TlsCertificateError):
    """The broker's certificate is valid, but not for the host name or address the client
    connected to (its advertised listener)."""


class SecurityProtocolMismatchError(TlsError):
    """The listener speaks the other protocol: a TLS client at a PLAINTEXT listener, or a
    plaintext client at a TLS one."""


# -- admin ----------------------------------------------------------------------------
# An admin call on many items answers item by item (``Outcomes``); this error gathers the
# failed ones when the caller asks for all-or-nothing (``raise_for_errors()``).

__all__ += ["AdminItemsError"]


class AdminItemsError(PykafError):
    """Some items of an admin call failed; ``errors`` maps each failed item to its own
    typed error (the others succeeded)."""

    def __init__(self, errors: dict[Any, PykafError]) -> None:
        self.errors = errors
        shown = "; ".join(f"{item}: {error}" for item, error in list(errors.items())[:10])
        more = f" (and {len(errors) - 10} more)" if len(errors) > 10 else ""
        super().__init__(f"{len(errors)} item(s) failed: {shown}{more}")
