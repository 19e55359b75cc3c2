"""Child process hosting a librdkafka mock cluster, driven by JSON lines on stdin.

Run as ``python _mock_cluster_child.py LIBRDKAFKA_PATH BROKER_COUNT``. It is a plain script
(stdlib + ctypes only) so it starts the same way whether or not ``tests`` is a package.

Protocol: the first stdout line is ``{"ok": true, "bootstrap": "...", "pid": N}``. Then each
stdin line ``{"cmd": NAME, "args": {...}}`` gets exactly one stdout line, ``{"ok": true,
"result": ...}`` or ``{"ok": false, "error": "..."}``. ``stop`` (or EOF on stdin, i.e. the
parent died) destroys the cluster and exits.

The cluster runs in its own process so that its broker threads never contend for the test
process's GIL, and so that a crash in C code cannot take the test run down with it.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["main"]

_P = ctypes.c_void_p
_STR = ctypes.c_char_p
_I16 = ctypes.c_int16
_I32 = ctypes.c_int32
_I64 = ctypes.c_int64
_INT = ctypes.c_int
_SIZE = ctypes.c_size_t

# (name, restype, argtypes), copied from rdkafka.h / rdkafka_mock.h (librdkafka 2.x).
# rd_kafka_resp_err_t and the conf result enum are C ints.
_SIGNATURES: tuple[tuple[str, Any, list[Any]], ...] = (
    ("rd_kafka_conf_new", _P, []),
    ("rd_kafka_conf_set", _INT, [_P, _STR, _STR, _STR, _SIZE]),
    ("rd_kafka_new", _P, [_INT, _P, _STR, _SIZE]),
    ("rd_kafka_destroy", None, [_P]),
    ("rd_kafka_err2name", _STR, [_INT]),
    ("rd_kafka_mock_cluster_new", _P, [_P, _INT]),
    ("rd_kafka_mock_cluster_destroy", None, [_P]),
    ("rd_kafka_mock_cluster_bootstraps", _STR, [_P]),
    ("rd_kafka_mock_topic_create", _INT, [_P, _STR, _INT, _INT]),
    ("rd_kafka_mock_topic_set_error", None, [_P, _STR, _INT]),
    ("rd_kafka_mock_partition_set_leader", _INT, [_P, _STR, _I32, _I32]),
    ("rd_kafka_mock_partition_set_follower", _INT, [_P, _STR, _I32, _I32]),
    ("rd_kafka_mock_partition_set_follower_wmarks", _INT, [_P, _STR, _I32, _I64, _I64]),
    ("rd_kafka_mock_broker_set_down", _INT, [_P, _I32]),
    ("rd_kafka_mock_broker_set_up", _INT, [_P, _I32]),
    ("rd_kafka_mock_broker_set_rtt", _INT, [_P, _I32, _INT]),
    ("rd_kafka_mock_broker_set_rack", _INT, [_P, _I32, _STR]),
    ("rd_kafka_mock_push_request_errors_array", None, [_P, _I16, _SIZE, _P]),
    ("rd_kafka_mock_clear_request_errors", None, [_P, _I16]),
    # Variadic: (err, rtt_ms) int pairs follow. ctypes passes extra arguments beyond
    # argtypes through the C varargs convention.
    ("rd_kafka_mock_broker_push_request_error_rtts", _INT, [_P, _I32, _I16, _SIZE]),
    ("rd_kafka_mock_broker_error_stack_cnt", _INT, [_P, _I32, _I16, ctypes.POINTER(_SIZE)]),
    ("rd_kafka_mock_coordinator_set", _INT, [_P, _STR, _STR, _I32]),
    ("rd_kafka_mock_set_apiversion", _INT, [_P, _I16, _I16, _I16]),
    ("rd_kafka_mock_group_initial_rebalance_delay_ms", None, [_P, _I32]),
    ("rd_kafka_mock_start_request_tracking", None, [_P]),
    ("rd_kafka_mock_stop_request_tracking", None, [_P]),
    ("rd_kafka_mock_get_requests", ctypes.POINTER(_P), [_P, ctypes.POINTER(_SIZE)]),
    ("rd_kafka_mock_request_id", _I32, [_P]),
    ("rd_kafka_mock_request_api_key", _I16, [_P]),
    ("rd_kafka_mock_request_timestamp", _I64, [_P]),
    ("rd_kafka_mock_request_destroy_array", None, [ctypes.POINTER(_P), _SIZE]),
    ("rd_kafka_mock_clear_requests", None, [_P]),
)

_RD_KAFKA_PRODUCER = 0
_RD_KAFKA_CONF_OK = 0


class _MockError(Exception):
    pass


class _Cluster:
    def __init__(self, lib_path: str, broker_count: int) -> None:
        lib = ctypes.CDLL(lib_path)
        for name, restype, argtypes in _SIGNATURES:
            fn = getattr(lib, name)
            fn.restype = restype
            fn.argtypes = argtypes
        self._lib = lib
        errstr = ctypes.create_string_buffer(512)
        conf = lib.rd_kafka_conf_new()
        # The hosting producer never connects anywhere; silence its "no bootstrap.servers"
        # notice so stderr only carries what matters.
        if lib.rd_kafka_conf_set(conf, b"log_level", b"4", errstr, 512) != _RD_KAFKA_CONF_OK:
            raise _MockError(errstr.value.decode())
        # rd_kafka_new takes ownership of conf on success.
        self._rk = lib.rd_kafka_new(_RD_KAFKA_PRODUCER, conf, errstr, 512)
        if not self._rk:
            raise _MockError(f"rd_kafka_new failed: {errstr.value.decode()}")
        self._mc = lib.rd_kafka_mock_cluster_new(self._rk, broker_count)
        if not self._mc:
            lib.rd_kafka_destroy(self._rk)
            raise _MockError("rd_kafka_mock_cluster_new failed")
        self.bootstrap: str = lib.rd_kafka_mock_cluster_bootstraps(self._mc).decode()

    def destroy(self) -> None:
        if self._mc:
            self._lib.rd_kafka_mock_cluster_destroy(self._mc)
            self._mc = None
        if self._rk:
            self._lib.rd_kafka_destroy(self._rk)
            self._rk = None

    def _check(self, what: str, err: int) -> None:
        if err:
            name = self._lib.rd_kafka_err2name(err).decode()
            raise _MockError(f"{what} failed: {name} ({err})")

    # -- commands: each takes JSON-decoded keyword arguments --------------------------

    def create_topic(self, topic: str, partitions: int, replication: int) -> None:
        err = self._lib.rd_kafka_mock_topic_create(
            self._mc, topic.encode(), partitions, replication
        )
        self._check("rd_kafka_mock_topic_create", err)

    def set_topic_error(self, topic: str, code: int) -> None:
        self._lib.rd_kafka_mock_topic_set_error(self._mc, topic.encode(), code)

    def set_leader(self, topic: str, partition: int, broker_id: int) -> None:
        err = self._lib.rd_kafka_mock_partition_set_leader(
            self._mc, topic.encode(), partition, broker_id
        )
        self._check("rd_kafka_mock_partition_set_leader", err)

    def set_follower(self, topic: str, partition: int, broker_id: int) -> None:
        err = self._lib.rd_kafka_mock_partition_set_follower(
            self._mc, topic.encode(), partition, broker_id
        )
        self._check("rd_kafka_mock_partition_set_follower", err)

    def set_follower_watermarks(self, topic: str, partition: int, low: int, high: int) -> None:
        err = self._lib.rd_kafka_mock_partition_set_follower_wmarks(
            self._mc, topic.encode(), partition, low, high
        )
        self._check("rd_kafka_mock_partition_set_follower_wmarks", err)

    def broker_down(self, broker_id: int) -> None:
        self._check(
            "rd_kafka_mock_broker_set_down",
            self._lib.rd_kafka_mock_broker_set_down(self._mc, broker_id),
        )

    def broker_up(self, broker_id: int) -> None:
        self._check(
            "rd_kafka_mock_broker_set_up",
            self._lib.rd_kafka_mock_broker_set_up(self._mc, broker_id),
        )

    def set_rtt(self, broker_id: int, rtt_ms: int) -> None:
        self._check(
            "rd_kafka_mock_broker_set_rtt",
            self._lib.rd_kafka_mock_broker_set_rtt(self._mc, broker_id, rtt_ms),
        )

    def set_rack(self, broker_id: int, rack: str) -> None:
        self._check(
            "rd_kafka_mock_broker_set_rack",
            self._lib.rd_kafka_mock_broker_set_rack(self._mc, broker_id, rack.encode()),
        )

    def push_request_errors(self, api_key: int, codes: list[int]) -> None:
        array = (ctypes.c_int * len(codes))(*codes)
        self._lib.rd_kafka_mock_push_request_errors_array(
            self._mc, api_key, len(codes), ctypes.cast(array, _P)
        )

    def clear_request_errors(self, api_key: int) -> None:
        self._lib.rd_kafka_mock_clear_request_errors(self._mc, api_key)

    def push_broker_request_errors(
        self, broker_id: int, api_key: int, errors: list[list[int]]
    ) -> None:
        varargs: list[ctypes.c_int] = []
        for code, rtt_ms in errors:
            varargs += [ctypes.c_int(code), ctypes.c_int(rtt_ms)]
        err = self._lib.rd_kafka_mock_broker_push_request_error_rtts(
            self._mc, broker_id, api_key, len(errors), *varargs
        )
        self._check("rd_kafka_mock_broker_push_request_error_rtts", err)

    def broker_error_stack_count(self, broker_id: int, api_key: int) -> int:
        count = _SIZE(0)
        err = self._lib.rd_kafka_mock_broker_error_stack_cnt(
            self._mc, broker_id, api_key, ctypes.byref(count)
        )
        self._check("rd_kafka_mock_broker_error_stack_cnt", err)
        return int(count.value)

    def set_coordinator(self, key_type: str, key: str, broker_id: int) -> None:
        err = self._lib.rd_kafka_mock_coordinator_set(
            self._mc, key_type.encode(), key.encode(), broker_id
        )
        self._check("rd_kafka_mock_coordinator_set", err)

    def set_apiversion(self, api_key: int, min_version: int, max_version: int) -> None:
        err = self._lib.rd_kafka_mock_set_apiversion(self._mc, api_key, min_version, max_version)
        self._check("rd_kafka_mock_set_apiversion", err)

    def set_group_initial_rebalance_delay(self, delay_ms: int) -> None:
        self._lib.rd_kafka_mock_group_initial_rebalance_delay_ms(self._mc, delay_ms)

    def start_request_tracking(self) -> None:
        self._lib.rd_kafka_mock_start_request_tracking(self._mc)

    def stop_request_tracking(self) -> None:
        self._lib.rd_kafka_mock_stop_request_tracking(self._mc)

    def get_requests(self) -> list[list[int]]:
        count = _SIZE(0)
        array = self._lib.rd_kafka_mock_get_requests(self._mc, ctypes.byref(count))
        if not array:
            return []
        try:
            return [
                [
                    int(self._lib.rd_kafka_mock_request_id(array[i])),
                    int(self._lib.rd_kafka_mock_request_api_key(array[i])),
                    int(self._lib.rd_kafka_mock_request_timestamp(array[i])),
                ]
                for i in range(count.value)
            ]
        finally:
            self._lib.rd_kafka_mock_request_destroy_array(array, count.value)

    def clear_requests(self) -> None:
        self._lib.rd_kafka_mock_clear_requests(self._mc)

    def ping(self) -> str:
        return self.bootstrap


_COMMANDS: frozenset[str] = frozenset(
    name
    for name in vars(_Cluster)
    if not name.startswith("_") and callable(getattr(_Cluster, name)) and name != "destroy"
)


def _serve(cluster: _Cluster, out: Any) -> None:
    def reply(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    reply({"ok": True, "bootstrap": cluster.bootstrap, "pid": os.getpid()})
    # Ends on "stop" or on EOF: EOF means the parent is gone, so we must not linger.
    for raw in sys.stdin.buffer:
        try:
            request = json.loads(raw)
            cmd = request["cmd"]
            args = request.get("args", {})
        except (ValueError, KeyError, TypeError) as exc:
            reply({"ok": False, "error": f"bad request line: {exc}"})
            continue
        if cmd == "stop":
            cluster.destroy()
            reply({"ok": True, "result": None})
            return
        if cmd not in _COMMANDS:
            reply({"ok": False, "error": f"unknown command {cmd!r}"})
            continue
        method: Callable[..., Any] = getattr(cluster, cmd)
        try:
            result = method(**args)
        except (_MockError, TypeError, ValueError, ctypes.ArgumentError) as exc:
            reply({"ok": False, "error": str(exc)})
        else:
            reply({"ok": True, "result": result})


def main(argv: list[str]) -> int:
    lib_path, broker_count = argv[1], int(argv[2])
    # Keep a private handle on the real stdout for the protocol, and point fd 1 at stderr
    # so that anything C code prints cannot corrupt the JSON stream.
    out = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    try:
        cluster = _Cluster(lib_path, broker_count)
    except _MockError as exc:
        out.write(json.dumps({"ok": False, "error": str(exc)}) + "\n")
        out.flush()
        return 1
    try:
        _serve(cluster, out)
    finally:
        cluster.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
