"""The sans-I/O wire layer: bytes in, events out. No asyncio, sockets or clocks here.

- Messages: kio's generated types for every API and version, with a thin layer to pick
  the class for a negotiated version, build it from plain fields, and encode/decode it
  with the right headers (``build_request``, ``encode_request``, ``decode_response``...).
- Framing: ``ClientConnection`` / ``ServerConnection`` turn bytes into matched events.
- Record batches (magic 2): ``encode_batch`` / ``decode_batches``, our own and fast.
- Compression: gzip, snappy (xerial and raw), lz4 (frame), zstd, with a size cap.
- SASL: PLAIN, SCRAM-SHA-256/512 and OAUTHBEARER, client and broker sides
  (``sasl_client``, ``sasl_server``, ``scram_credentials``).

Names load on first use (``pykaf._lazy``): a producer never imports the SASL state
machines or the broker's side of framing it does not use, and no kio schema module is
imported before a message of its API is built or read.
"""

from typing import TYPE_CHECKING

from pykaf._lazy import lazy_exports

if TYPE_CHECKING:
    from pykaf.protocol._apis import KIP_896_FLOORS, ApiSpec, all_apis, api_spec
    from pykaf.protocol._compression import (
        DEFAULT_MAX_DECOMPRESSED,
        Compression,
        compress,
        decompress,
        validate_level,
    )
    from pykaf.protocol._framing import (
        DEFAULT_MAX_FRAME_SIZE,
        KAFKA_SASL_MAX_RECEIVE_SIZE,
        NEED_DATA,
        ClientConnection,
        ConnectionClosed,
        NeedData,
        Request,
        Response,
        ServerConnection,
        UnsupportedRequest,
    )
    from pykaf.protocol._messages import (
        build_request,
        build_response,
        decode_request,
        decode_response,
        encode_request,
        encode_response,
        payload_api,
        peek_request,
        request_class,
        response_class,
    )
    from pykaf.protocol._negotiation import (
        NegotiatedVersions,
        api_versions_retry_version,
        negotiate,
        pick_version,
    )
    from pykaf.protocol._records import (
        BATCH_OVERHEAD,
        BatchHeader,
        ControlType,
        Record,
        RecordBatch,
        TimestampType,
        decode_batches,
        encode_batch,
        iter_batch_headers,
        parse_control_record,
        split_lines,
        using_c_accelerator,
    )
    from pykaf.protocol._sasl import (
        SASL_MECHANISMS,
        SaslClient,
        SaslServer,
        sasl_client,
        sasl_server,
    )
    from pykaf.protocol._sasl_scram import (
        MAX_SCRAM_ITERATIONS,
        MIN_SCRAM_ITERATIONS,
        ScramCredentials,
        scram_credentials,
    )
else:
    __getattr__, __dir__ = lazy_exports(
        __name__,
        {
            "pykaf.protocol._apis": "KIP_896_FLOORS ApiSpec all_apis api_spec",
            "pykaf.protocol._compression": (
                "DEFAULT_MAX_DECOMPRESSED Compression compress decompress validate_level"
            ),
            "pykaf.protocol._framing": (
                "DEFAULT_MAX_FRAME_SIZE KAFKA_SASL_MAX_RECEIVE_SIZE NEED_DATA ClientConnection"
                " ConnectionClosed NeedData Request Response ServerConnection UnsupportedRequest"
            ),
            "pykaf.protocol._messages": (
                "build_request build_response decode_request decode_response encode_request"
                " encode_response payload_api peek_request request_class response_class"
            ),
            "pykaf.protocol._negotiation": (
                "NegotiatedVersions api_versions_retry_version negotiate pick_version"
            ),
            "pykaf.protocol._records": (
                "BATCH_OVERHEAD BatchHeader ControlType Record RecordBatch TimestampType"
                " decode_batches encode_batch iter_batch_headers parse_control_record"
                " split_lines using_c_accelerator"
            ),
            "pykaf.protocol._sasl": (
                "SASL_MECHANISMS SaslClient SaslServer sasl_client sasl_server"
            ),
            "pykaf.protocol._sasl_scram": (
                "MAX_SCRAM_ITERATIONS MIN_SCRAM_ITERATIONS ScramCredentials scram_credentials"
            ),
        },
    )

__all__ = [
    "BATCH_OVERHEAD",
    "DEFAULT_MAX_DECOMPRESSED",
    "DEFAULT_MAX_FRAME_SIZE",
    "KAFKA_SASL_MAX_RECEIVE_SIZE",
    "KIP_896_FLOORS",
    "MAX_SCRAM_ITERATIONS",
    "MIN_SCRAM_ITERATIONS",
    "NEED_DATA",
    "ApiSpec",
    "BatchHeader",
    "ClientConnection",
    "Compression",
    "ConnectionClosed",
    "ControlType",
    "NeedData",
    "NegotiatedVersions",
    "Record",
    "RecordBatch",
    "SASL_MECHANISMS",
    "SaslClient",
    "SaslServer",
    "ScramCredentials",
    "Request",
    "Response",
    "ServerConnection",
    "TimestampType",
    "UnsupportedRequest",
    "all_apis",
    "api_spec",
    "api_versions_retry_version",
    "build_request",
    "build_response",
    "compress",
    "decode_batches",
    "decode_request",
    "decode_response",
    "decompress",
    "encode_batch",
    "encode_request",
    "encode_response",
    "iter_batch_headers",
    "negotiate",
    "parse_control_record",
    "payload_api",
    "peek_request",
    "pick_version",
    "request_class",
    "response_class",
    "sasl_client",
    "sasl_server",
    "scram_credentials",
    "split_lines",
    "using_c_accelerator",
    "validate_level",
]
