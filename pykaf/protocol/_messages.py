"""Kafka messages: the kio class for an (API, version), headers, and whole frames.

kio supplies one frozen dataclass per API, version and direction, and the codecs. This
module picks the class, builds it from plain values, frames it with the right header and
the 4-byte length prefix, and turns every failure into a pykaf error: bad bytes from the
peer become ``RemoteProtocolError``, bad values from the caller ``LocalProtocolError``.

Header rules (Kafka's ``headerVersions``): request header v2 for flexible request versions,
else v1; response header v1 for flexible responses, else v0, except ApiVersions responses,
which always use v0 so that a client can read the answer before it knows the broker's
versions. Headers are read and written here, not by kio: they are a few fixed fields, and
reading them ourselves lets unknown tagged header fields be skipped as Kafka requires.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.request_header.v1.header import RequestHeader as RequestHeaderV1
from kio.schema.request_header.v2.header import RequestHeader as RequestHeaderV2
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType
from kio.static.primitive import i16, i32

from pykaf._errors import LocalProtocolError, RemoteProtocolError, UnknownApiError
from pykaf.protocol._apis import LEGACY_OLDEST, ApiSpec, api_spec
from pykaf.protocol._builder import build_entity, find_bad_field
from pykaf.protocol._guard import check_bounds

__all__ = [
    "API_VERSIONS_KEY",
    "Buffer",
    "Payload",
    "RequestHeader",
    "RequestPrefix",
    "build_request",
    "build_response",
    "decode_request",
    "decode_request_with",
    "decode_response",
    "encode_request",
    "encode_response",
    "is_supported_request",
    "payload_api",
    "peek_request",
    "request_class",
    "request_header_version",
    "response_class",
    "response_header_version",
]

# kio's payloads are one dataclass per (API, version); no static type covers their fields,
# so this layer hands them out as Any and callers annotate the concrete kio class.
Payload: TypeAlias = Any
# What the decoders read from; kio's reader wants read-only memory, see _readonly().
Buffer: TypeAlias = bytes | bytearray | memoryview
RequestHeader: TypeAlias = RequestHeaderV1 | RequestHeaderV2

API_VERSIONS_KEY: Final = 18
_UNSUPPORTED_VERSION: Final = 35

_I16: Final = struct.Struct(">h")
_I32: Final = struct.Struct(">i")
_REQUEST_PREFIX: Final = struct.Struct(">hhi")  # api key, api version, correlation id
_LEN_AND_REQUEST_PREFIX: Final = struct.Struct(">ihhi")
_LEN_AND_CORRELATION: Final = struct.Struct(">ii")
_NULL_STRING: Final = b"\xff\xff"
_NO_TAGS: Final = b"\x00"


@dataclass(frozen=True, slots=True, kw_only=True)
class _Codec:
    spec: ApiSpec
    version: int
    cls: type[Any]
    flexible: bool
    read: Callable[[Buffer, int], tuple[Any, int]]
    write: Callable[[Any, Any], None]
    kind: str  # "request" or "response", for error messages


# (is_request, api key, version) -> codec, and kio class -> codec. Filled lazily: importing
# all ~600 kio modules up front would cost seconds at start-up.
_CODECS: dict[tuple[bool, int, int], _Codec] = {}
_BY_CLASS: dict[type, _Codec] = {}


def _codec(is_request: bool, api: int | str | ApiSpec, version: int) -> _Codec:
    if type(api) is int:
        codec = _CODECS.get((is_request, api, version))
        if codec is not None:
            return codec
    spec = api_spec(api)
    codec = _CODECS.get((is_request, spec.key, version))
    if codec is not None:
        return codec
    if type(version) is not int or not spec.oldest_version <= version <= spec.max_version:
        raise UnknownApiError(
            f"{spec.name} v{version} is not supported: pykaf speaks"
            f" {spec.name} v{spec.oldest_version}..v{spec.max_version}"
        )
    cls = None
    if spec.name in LEGACY_OLDEST:
        # Only then: the legacy classes are dataclasses built at import, a cost every
        # process paid when OffsetCommit v0-v1 is what old clients send to a broker.
        from pykaf.protocol._legacy_schemas import legacy_schema  # noqa: PLC0415

        cls = legacy_schema(is_request, spec.key, version)
    if cls is None:
        load = load_request_schema if is_request else load_response_schema
        cls = load(spec.key, version)
    codec = _Codec(
        spec=spec,
        version=version,
        cls=cls,
        flexible=bool(cls.__flexible__),
        read=entity_reader(cls),
        write=entity_writer(cls),
        kind="request" if is_request else "response",
    )
    _CODECS[(is_request, spec.key, version)] = codec
    _BY_CLASS[cls] = codec
    return codec


def _codec_for_entity(entity: object, is_request: bool) -> _Codec:
    cls = type(entity)
    codec = _BY_CLASS.get(cls)
    if codec is not None and (codec.kind == "request") == is_request:
        return codec
    kind = EntityType.request if is_request else EntityType.response
    if getattr(cls, "__type__", None) is not kind:
        raise LocalProtocolError(
            f"expected a kio {kind.name} payload (e.g. from build_{kind.name}), got"
            f" {cls.__module__}.{cls.__qualname__}"
        )
    kio_cls: Any = cls  # a kio payload class: its ClassVars are not in any static type
    codec = _codec(is_request, int(kio_cls.__api_key__), int(kio_cls.__version__))
    if codec.cls is not cls:
        raise LocalProtocolError(f"{cls.__qualname__} is not kio's {codec.cls.__qualname__}")
    return codec


def request_class(api: int | str | ApiSpec, version: int) -> type[Any]:
    """kio's request class for ``api`` (key or name) at ``version``.

    Raises ``UnknownApiError`` for an unknown API or a version outside pykaf's range.
    """
    return _codec(True, api, version).cls


def response_class(api: int | str | ApiSpec, version: int) -> type[Any]:
    """kio's response class for ``api`` (key or name) at ``version``."""
    return _codec(False, api, version).cls


def request_header_version(api: int | str | ApiSpec, version: int) -> int:
    return 2 if _codec(True, api, version).flexible else 1


def response_header_version(api: int | str | ApiSpec, version: int) -> int:
    codec = _codec(False, api, version)
    return 1 if codec.flexible and codec.spec.key != API_VERSIONS_KEY else 0


def build_request(api: int | str | ApiSpec, version: int, /, **fields: object) -> Payload:
    """Build the kio request for ``api`` at ``version`` from plain values.

    Nested entities may be dicts (or entities of any version), arrays lists or tuples,
    durations ints in milliseconds (or timedeltas), timestamps ints in epoch milliseconds,
    error codes ints, UUIDs strings. Fields this version lacks are dropped, so one call
    site can pass a superset and build any version; missing required fields raise
    ``MissingFieldsError`` naming each one ("topics[0].name"). So does a topic id left
    unset where a field given is dropped for it (a ``name`` at OffsetFetch v10): a zero
    id would reach the broker in place of the name meant.
    """
    codec = _codec(True, api, version)
    return build_entity(
        codec.cls, fields, api=codec.spec.name, version=version, replacements_required=True
    )


def build_response(api: int | str | ApiSpec, version: int, /, **fields: object) -> Payload:
    """Build the kio response for ``api`` at ``version``, by the rules of build_request."""
    codec = _codec(False, api, version)
    return build_entity(codec.cls, fields, api=codec.spec.name, version=version)


# -- encoding ------------------------------------------------------------------------


def _write_body(codec: _Codec, buffer: io.BytesIO, entity: object) -> None:
    try:
        codec.write(buffer, entity)
    except Exception as exc:
        # The slow path, only after a failure: walk the entity to name the bad field.
        where = find_bad_field(entity, flexible=codec.flexible)
        detail = where if where else f"{type(exc).__name__}: {exc}"
        raise LocalProtocolError(
            f"cannot encode {codec.spec.name} v{codec.version} {codec.kind}: {detail}"
        ) from exc


def _frame(buffer: io.BytesIO) -> bytes:
    # The length prefix was written as a placeholder; patch it in place, then copy once.
    with buffer.getbuffer() as view:
        _I32.pack_into(view, 0, len(view) - 4)
    return buffer.getvalue()


def _check_int32(name: str, value: int) -> None:
    if type(value) is not int or not -(2**31) <= value <= 2**31 - 1:
        raise LocalProtocolError(f"{name} must be an int32, got {value!r}")


def _encode_client_id(client_id: str | None) -> bytes:
    # Kafka keeps client_id a nullable non-compact string even in header v2.
    if client_id is None:
        return _NULL_STRING
    raw = client_id.encode()
    if len(raw) > 2**15 - 1:
        raise LocalProtocolError(f"client_id is {len(raw)} bytes; 32767 at most")
    return _I16.pack(len(raw)) + raw


def encode_request(request: Payload, *, correlation_id: int, client_id: str | None) -> bytes:
    """Frame a kio request: length prefix, request header (v1 or v2), body."""
    codec = _codec_for_entity(request, is_request=True)
    _check_int32("correlation_id", correlation_id)
    buffer = io.BytesIO()
    buffer.write(_LEN_AND_REQUEST_PREFIX.pack(0, codec.spec.key, codec.version, correlation_id))
    buffer.write(_encode_client_id(client_id))
    if codec.flexible:
        buffer.write(_NO_TAGS)
    _write_body(codec, buffer, request)
    return _frame(buffer)


def encode_response(api_key: int, version: int, correlation_id: int, response: Payload) -> bytes:
    """Frame a kio response: length prefix, response header (v0 or v1), body.

    ``api_key``/``version`` must match the response's class; they are asked for so that a
    broker cannot answer one request with another API's response by mistake.
    """
    codec = _codec_for_entity(response, is_request=False)
    if (codec.spec.key, codec.version) != (api_key, version):
        raise LocalProtocolError(
            f"{codec.spec.name} v{codec.version} response given where API key {api_key}"
            f" v{version} was expected"
        )
    _check_int32("correlation_id", correlation_id)
    buffer = io.BytesIO()
    buffer.write(_LEN_AND_CORRELATION.pack(0, correlation_id))
    if codec.flexible and codec.spec.key != API_VERSIONS_KEY:
        buffer.write(_NO_TAGS)
    _write_body(codec, buffer, response)
    return _frame(buffer)


# -- decoding ------------------------------------------------------------------------


def _readonly(payload: Buffer) -> Buffer:
    # kio's native reader refuses writable buffers; a read-only view costs no copy.
    if isinstance(payload, bytes):
        return payload
    view = memoryview(payload)
    return view if view.readonly else view.toreadonly()


def _read_uvarint(view: memoryview, offset: int) -> tuple[int, int]:
    value = shift = 0
    for i in range(5):
        if offset + i >= len(view):
            raise ValueError("truncated varint")
        byte = view[offset + i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, offset + i + 1
        shift += 7
    raise ValueError("varint longer than 5 bytes")


def _skip_tagged_fields(codec: _Codec, data: Buffer, offset: int) -> int:
    # Unknown tagged fields must be skipped, not refused (KIP-482); no header tag is
    # defined today, so every one is skipped.
    with memoryview(data) as view:
        try:
            count, offset = _read_uvarint(view, offset)
            for _ in range(count):
                _tag, offset = _read_uvarint(view, offset)
                size, offset = _read_uvarint(view, offset)
                offset += size
                if offset > len(view):
                    raise ValueError("a tagged field runs past the end of the frame")
        except ValueError as exc:
            raise RemoteProtocolError(
                f"malformed {codec.spec.name} v{codec.version} {codec.kind} header: {exc}"
            ) from None
    return offset


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestPrefix:
    """The part of a request header every version shares, readable for any API/version."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None
    # Offset just past client_id (the tagged fields of header v2 follow, if flexible).
    end: int


def peek_request(payload: Buffer) -> RequestPrefix:
    """Read api key, version, correlation id and client id without knowing the API.

    Kafka lays these out identically in request headers v1 and v2, so a broker can answer
    (or refuse) a request for an API or version it does not speak.
    """
    view = memoryview(payload)
    if len(view) < 10:
        raise RemoteProtocolError(
            f"a request of {len(view)} bytes is too short for a request header (10 at least)"
        )
    api_key, api_version, correlation_id = _REQUEST_PREFIX.unpack_from(view, 0)
    (length,) = _I16.unpack_from(view, 8)
    end = 10
    client_id: str | None = None
    if length >= 0:
        end += length
        if end > len(view):
            raise RemoteProtocolError("request header client_id runs past the end of the frame")
        try:
            client_id = bytes(view[10:end]).decode()
        except UnicodeDecodeError:
            raise RemoteProtocolError("request header client_id is not UTF-8") from None
    elif length != -1:
        raise RemoteProtocolError(f"request header client_id has a negative length {length}")
    return RequestPrefix(
        api_key=api_key,
        api_version=api_version,
        correlation_id=correlation_id,
        client_id=client_id,
        end=end,
    )


def _supported_request_codec(api_key: int, version: int) -> _Codec | None:
    try:
        return _codec(True, api_key, version)
    except UnknownApiError:
        return None


def is_supported_request(api_key: int, version: int) -> bool:
    """Whether pykaf can decode requests of this API key and version."""
    return _supported_request_codec(api_key, version) is not None


def payload_api(payload: Payload) -> tuple[int, int]:
    """``(api key, version)`` of a kio request or response payload pykaf speaks."""
    cls = type(payload)
    codec = _BY_CLASS.get(cls)
    if codec is None:
        kind = getattr(cls, "__type__", None)
        if kind not in (EntityType.request, EntityType.response):
            raise LocalProtocolError(f"{cls.__qualname__} is not a kio request or response")
        codec = _codec_for_entity(payload, is_request=kind is EntityType.request)
    return codec.spec.key, codec.version


def _read_body(
    codec: _Codec,
    data: Buffer,
    offset: int,
    *,
    allow_trailing: bool = False,
    refuse_null_arrays: bool = False,
) -> Any:
    what = f"{codec.spec.name} v{codec.version} {codec.kind}"
    # First the bounds walk: kio's reader would abort the process on a count bomb.
    check_bounds(codec.cls, data, offset, what=what, refuse_null_arrays=refuse_null_arrays)
    try:
        entity, size = codec.read(data, offset)
    except Exception as exc:
        # kio raises its own DecodeError family, but also ValueError (bad varints, unknown
        # enum values), KeyError (unknown tags), OverflowError...: all mean bad bytes.
        raise RemoteProtocolError(f"malformed {what}: {type(exc).__name__}: {exc}") from exc
    except BaseException as exc:
        # A Rust panic inside kio arrives as pyo3's PanicException, a BaseException that
        # would otherwise unwind through the event loop: it too means bytes kio choked on.
        if type(exc).__name__ != "PanicException":
            raise
        raise RemoteProtocolError(f"malformed {what}: kio panicked: {exc}") from None
    trailing = len(memoryview(data)) - offset - size
    if trailing and not allow_trailing:
        raise RemoteProtocolError(
            f"{codec.spec.name} v{codec.version} {codec.kind} has {trailing} unread trailing"
            " bytes (a version mismatch?)"
        )
    return entity


def decode_request(frame_payload: Buffer) -> tuple[RequestHeader, Payload]:
    """Decode a request frame (the bytes after the length prefix): ``(header, request)``.

    An API or version pykaf does not speak is a ``RemoteProtocolError``; a broker that
    wants to answer such requests reads ``peek_request`` first.
    """
    data = _readonly(frame_payload)
    prefix = peek_request(data)
    codec = _supported_request_codec(prefix.api_key, prefix.api_version)
    if codec is None:
        raise RemoteProtocolError(
            f"the peer sent a request for API key {prefix.api_key} v{prefix.api_version},"
            " which pykaf does not speak"
        )
    return decode_request_with(codec.spec.key, codec.version, prefix, data)


def decode_request_with(
    api_key: int, version: int, prefix: RequestPrefix, data: Buffer, *, lenient: bool = False
) -> tuple[RequestHeader, Payload]:
    """Decode a request whose prefix was already read (see ``peek_request``).

    ``lenient`` ignores bytes after the body, as Kafka's own request parser does: some
    clients (librdkafka 2.x's all-topics Metadata v13) send a few, and a broker that
    refused them would refuse those clients.
    """
    codec = _codec(True, api_key, version)
    data = _readonly(data)
    header: RequestHeader
    if codec.flexible:
        offset = _skip_tagged_fields(codec, data, prefix.end)
        header = RequestHeaderV2(
            request_api_key=i16(prefix.api_key),
            request_api_version=i16(prefix.api_version),
            correlation_id=i32(prefix.correlation_id),
            client_id=prefix.client_id,
        )
    else:
        offset = prefix.end
        header = RequestHeaderV1(
            request_api_key=i16(prefix.api_key),
            request_api_version=i16(prefix.api_version),
            correlation_id=i32(prefix.correlation_id),
            client_id=prefix.client_id,
        )
    # Null arrays the schema forbids are refused as Kafka's parser does: kio reads any -1
    # count as None, and a handler would then iterate None.
    body = _read_body(codec, data, offset, allow_trailing=lenient, refuse_null_arrays=True)
    return header, body


def decode_response(
    api_key: int, version: int, payload: Buffer, *, strict: bool = False
) -> tuple[int, Payload]:
    """Decode a response frame (after the length prefix): ``(correlation_id, response)``.

    Bytes after the body are ignored unless ``strict``, as Kafka's Java client does:
    librdkafka (whose mock cluster we test against) appends an extra byte to flexible
    Metadata responses, and refusing it would refuse that peer.

    ApiVersions quirk: a broker that does not support the ApiVersions version we sent
    answers UNSUPPORTED_VERSION with a v0 body; such an answer decodes as a v0 response.
    """
    codec = _codec(False, api_key, version)
    data = _readonly(payload)
    size = len(memoryview(data))
    if size < 4:
        raise RemoteProtocolError(
            f"a response of {size} bytes is too short for a response header (4 at least)"
        )
    (correlation_id,) = _I32.unpack_from(data, 0)
    is_api_versions = codec.spec.key == API_VERSIONS_KEY
    offset = _skip_tagged_fields(codec, data, 4) if codec.flexible and not is_api_versions else 4
    if is_api_versions and version > 0 and size >= offset + 2:
        (error_code,) = _I16.unpack_from(data, offset)
        if error_code == _UNSUPPORTED_VERSION:
            return correlation_id, _read_api_versions_fallback(codec, data, offset)
    return correlation_id, _read_body(codec, data, offset, allow_trailing=not strict)


def _read_api_versions_fallback(codec: _Codec, data: Buffer, offset: int) -> Any:
    # Like Kafka's own client: try the version we asked for, and on failure read v0. Some
    # peers send neither layout (librdkafka's mock cluster writes a v0-style entry behind a
    # compact count): the error code alone is trustworthy then, so read what parses
    # leniently, or fall back to "UNSUPPORTED_VERSION, no ranges", which retries at v0.
    v0 = _CODECS.get((False, API_VERSIONS_KEY, 0)) or _codec(False, API_VERSIONS_KEY, 0)
    for attempt, lenient in ((codec, False), (v0, False), (codec, True)):
        try:
            return _read_body(attempt, data, offset, allow_trailing=lenient)
        except RemoteProtocolError:
            continue
    return v0.cls(error_code=ErrorCode.unsupported_version, api_keys=())
