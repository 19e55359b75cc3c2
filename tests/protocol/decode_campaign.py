"""The decode fuzz campaign: every API, version and direction, decoded the way pykaf does.

Run by ``test_decode_fuzz.py`` in a child process whose address space is capped with
``RLIMIT_AS``: kio aborts the process when an allocation fails (a count bomb), and the cap
turns even an int32 count into a failed allocation; in a child, that abort fails one test
instead of killing pytest. By hand: ``python tests/protocol/decode_campaign.py --examples 50``.

Cases, per (API, version):
- ``request``: the bytes a broker reads (``ServerConnection``), every version pykaf speaks;
- ``response``: the bytes a client reads (``ClientConnection``), every version pykaf speaks,
  and for Produce also the hand-written decoder (``produce-outcomes``);
- ``kio-request`` / ``kio-response``: versions kio ships below pykaf's floor, through the
  bounds check and kio's reader directly (no connection decodes them, the check must
  still hold for every schema kio has);
- ``subscription`` / ``assignment``: the consumer protocol bytes other group members write.

Each case decodes a frame holding one of everything (every array with one element, so every
count exists) and then that frame with a count bomb at EVERY byte offset (compact
0xffffffff, the largest 5-byte varint, int32 0x7fffffff, int16 0x7fff), then hypothesis
draws entities and mutates them (bombs, random bytes, cuts). Any outcome but "decoded" or a
``PykafError`` is a failure; an abort is the parent's failure to see.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import resource
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from kio.index import load_request_schema, load_response_schema
from kio.schema.errors import ErrorCode
from kio.schema.index import api_key_map, schema_name_map
from kio.serial import entity_reader, entity_writer
from kio.serial._introspect import (
    EntityField,
    EntityTupleField,
    PrimitiveTupleField,
    classify_field,
    get_schema_field_type,
)
from kio.static.constants import EntityType
from kio.static.primitive import Records, i64Timedelta

from pykaf._consumer.group._protocol import decode_assignment, decode_subscription
from pykaf._errors import PykafError
from pykaf.protocol._apis import all_apis
from pykaf.protocol._framing import ClientConnection, ServerConnection
from pykaf.protocol._guard import check_bounds
from pykaf.protocol._messages import encode_request, encode_response

st.register_type_strategy(Records, st.binary(max_size=64).map(Records))
st.register_type_strategy(
    i64Timedelta,
    st.integers(-(2**40), 2**40).map(lambda ms: datetime.timedelta(milliseconds=ms)),
)

# Written over a frame at one offset: compact counts (0xffffffff, and the largest value a
# 5-byte varint holds), an int32 count, an int16 string length.
BOMBS: dict[str, tuple[bytes, bool]] = {  # name -> (bytes, inserted rather than overwritten)
    "compact": (b"\xff\xff\xff\xff\x0f", True),
    "compact-max": (b"\xff\xff\xff\xff\x7f", True),
    "int32": (b"\x7f\xff\xff\xff", False),
    "int16": (b"\x7f\xff", False),
}

_SAMPLES: dict[str, Any] = {
    "bool": True,
    "int8": 1,
    "uint8": 1,
    "int16": 1,
    "uint16": 1,
    "int32": 1,
    "uint32": 1,
    "int64": 1,
    "uint64": 1,
    "float64": 1.5,
    "string": "s",
    "bytes": b"b",
    "records": b"r",
    "uuid": uuid.UUID(int=1),
    "error_code": ErrorCode.none,
    "timedelta_i32": datetime.timedelta(milliseconds=1),
    "timedelta_i64": datetime.timedelta(milliseconds=1),
    "datetime_i64": datetime.datetime.fromtimestamp(1, datetime.UTC),
}


def one_of_everything(cls: type) -> Any:
    """An entity whose every array holds one element and every field is set, so its
    frame has every count and length the schema can put on the wire."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        kind = classify_field(field)
        if isinstance(kind, EntityField):
            values[field.name] = one_of_everything(kind.type_)
        elif isinstance(kind, EntityTupleField):
            values[field.name] = (one_of_everything(kind.type_),)
        elif isinstance(kind, PrimitiveTupleField):
            values[field.name] = (_SAMPLES[get_schema_field_type(field)],)
        else:
            values[field.name] = _SAMPLES[get_schema_field_type(field)]
    return cls(**values)


@dataclasses.dataclass
class Case:
    name: str
    cls: type
    # frame bytes (after the length prefix) for an entity, and where its body starts
    frame: Callable[[Any], bytes]
    # decode a frame as pykaf does; "decoded" or raises
    decode: Callable[[bytes], str]
    counts: dict[str, int] = dataclasses.field(default_factory=dict)

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1


def _prefixed(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big", signed=True) + payload


def _server_decode(payload: bytes) -> str:
    server = ServerConnection()
    server.receive_data(_prefixed(payload))
    server.next_event()
    return "decoded"


def _client_decode(send: Callable[[ClientConnection], object]) -> Callable[[bytes], str]:
    def decode(payload: bytes) -> str:
        client = ClientConnection(client_id="fuzz", first_correlation_id=7)
        send(client)
        client.receive_data(_prefixed(payload))
        client.next_event()
        return "decoded"

    return decode


def _kio_decode(cls: type) -> Callable[[bytes], str]:
    read = entity_reader(cls)

    def decode(payload: bytes) -> str:
        end = check_bounds(cls, payload, 0, what=cls.__name__)
        try:
            _, size = read(payload, 0)
        except Exception:  # a bounded frame kio refuses: as _read_body maps it
            return "refused by kio"
        if size != end:  # both must read the same schema the same way
            raise AssertionError(f"the bounds walk ends at {end}, kio's reader at {size}")
        return "decoded"

    return decode


def _entity_bytes(cls: type) -> Callable[[Any], bytes]:
    write = entity_writer(cls)

    def frame(entity: Any) -> bytes:
        import io

        buffer = io.BytesIO()
        write(buffer, entity)
        return buffer.getvalue()

    return frame


def _version_prefixed(version: int, cls: type) -> Callable[[Any], bytes]:
    body = _entity_bytes(cls)
    return lambda entity: version.to_bytes(2, "big") + body(entity)


def cases(only: str | None = None) -> Iterator[Case]:
    for spec in all_apis():
        if only and spec.name != only:
            continue
        snake = api_key_map[spec.key]
        kio_versions = sorted(
            v for v, kinds in schema_name_map[snake].items() if EntityType.request in kinds
        )
        for version in kio_versions:
            req_cls = load_request_schema(spec.key, version)
            resp_cls = load_response_schema(spec.key, version)
            tag = f"{spec.name} v{version}"
            if not spec.supports(version):
                yield Case(
                    f"{tag} kio-request", req_cls, _entity_bytes(req_cls), _kio_decode(req_cls)
                )
                yield Case(
                    f"{tag} kio-response", resp_cls, _entity_bytes(resp_cls), _kio_decode(resp_cls)
                )
                continue
            yield Case(
                f"{tag} request",
                req_cls,
                lambda e: encode_request(e, correlation_id=7, client_id="fuzz")[4:],
                _server_decode,
            )
            request = one_of_everything(req_cls)
            if spec.key == 0:
                request = dataclasses.replace(request, acks=1)  # acks=0 gets no response
            yield Case(
                f"{tag} response",
                resp_cls,
                lambda e, k=spec.key, v=version: encode_response(k, v, 7, e)[4:],
                _client_decode(lambda client, r=request: client.send(r)),
            )
            if spec.key == 0:
                yield Case(
                    f"{tag} produce-outcomes",
                    resp_cls,
                    lambda e, v=version: encode_response(0, v, 7, e)[4:],
                    _client_decode(
                        lambda client, v=version: client.send_produce(
                            v, acks=1, timeout_ms=1, topics=(), outcomes=True
                        )
                    ),
                )
    if only:
        return
    from kio.schema.consumer_protocol_assignment import v3 as assignment
    from kio.schema.consumer_protocol_subscription import v0, v1, v2, v3

    for version, module in enumerate((v0, v1, v2, v3)):
        cls = module.ConsumerProtocolSubscription
        yield Case(
            f"ConsumerProtocolSubscription v{version}",
            cls,
            _version_prefixed(version, cls),
            lambda data: (decode_subscription(data), "decoded")[1],
        )
    cls = assignment.ConsumerProtocolAssignment
    yield Case(
        "ConsumerProtocolAssignment v3",
        cls,
        _version_prefixed(3, cls),
        lambda data: (decode_assignment(data), "decoded")[1],
    )


class Campaign:
    def __init__(self) -> None:
        self.failures: list[str] = []

    def attempt(self, case: Case, payload: bytes, label: str) -> str:
        try:
            outcome = case.decode(payload)
        except PykafError as exc:
            outcome = "refused: count" if "claims" in str(exc) else "refused"
        except Exception:
            self.failures.append(
                f"{case.name} {label}: {traceback.format_exc(limit=3)}\n  frame {payload.hex()}"
            )
            outcome = "failed"
        case.count(label)
        return outcome

    def sweep(self, case: Case) -> None:
        payload = case.frame(one_of_everything(case.cls))
        if self.attempt(case, payload, "clean") != "decoded":
            self.failures.append(f"{case.name}: a valid frame was not decoded: {payload.hex()}")
        for offset in range(len(payload)):
            for name, (bomb, insert) in BOMBS.items():
                cut = offset + 1 if insert else offset + len(bomb)
                mutated = payload[:offset] + bomb + payload[cut:]
                if self.attempt(case, mutated, "bomb") == "refused: count":
                    case.count(f"bomb refused by count ({name})")

    def hypothesis(self, case: Case, examples: int, seed_value: int | None) -> None:
        strategy = st.from_type(case.cls)
        mutation = st.tuples(
            st.sampled_from(["byte", "cut", "insert", *BOMBS]),
            st.integers(0, 10_000),
            st.binary(min_size=1, max_size=8),
        )

        @settings(
            max_examples=examples,
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(entity=strategy, mutations=st.lists(mutation, max_size=6))
        def run(entity: Any, mutations: list[tuple[str, int, bytes]]) -> None:
            try:
                payload = case.frame(entity)
            except Exception:
                return  # an entity kio cannot write (its strategies reach past some ranges)
            self.attempt(case, payload, "hypothesis example")
            for kind, where, noise in mutations:
                offset = where % (len(payload) + 1)
                if kind == "byte":
                    mutated = payload[:offset] + noise[:1] + payload[offset + 1 :]
                elif kind == "cut":
                    mutated = payload[:offset]
                elif kind == "insert":
                    mutated = payload[:offset] + noise + payload[offset:]
                else:
                    bomb, insert = BOMBS[kind]
                    cut = offset + 1 if insert else offset + len(bomb)
                    mutated = payload[:offset] + bomb + payload[cut:]
                self.attempt(case, mutated, "hypothesis mutation")

        if seed_value is not None:
            run = seed(seed_value)(run)
        run()


def cap_address_space(headroom_mib: int) -> None:
    """Cap this process's address space a little above what it maps now."""
    with open("/proc/self/status") as status:
        size_kib = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = size_kib * 1024 + headroom_mib * 1024 * 1024
    _soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2, help="hypothesis examples per case")
    parser.add_argument("--headroom-mib", type=int, default=768)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", default=None, help="one API, by Kafka's name")
    parser.add_argument("--no-sweep", action="store_true")
    args = parser.parse_args(argv)
    all_cases = list(cases(args.only))
    cap_address_space(args.headroom_mib)
    campaign = Campaign()
    started = time.monotonic()
    for case in all_cases:
        print(f"case: {case.name}", file=sys.stderr, flush=True)
        if not args.no_sweep:
            campaign.sweep(case)
        if args.examples:
            campaign.hypothesis(case, args.examples, args.seed)
    report = {
        "seconds": round(time.monotonic() - started, 1),
        "cases": {case.name: case.counts for case in all_cases},
        "failures": campaign.failures[:20],
        "failure_count": len(campaign.failures),
    }
    print(json.dumps(report))
    return 1 if campaign.failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
