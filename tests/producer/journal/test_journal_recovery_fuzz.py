"""Recovery of a damaged journal directory: a Recovery or a JournalCorruptError, nothing
else; a refusal leaves every file byte for byte as it was; only the newest segment is cut."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pykaf._errors import JournalCorruptError
from pykaf._producer.journal import Done, JournalRecord, JournalStore

SEGMENT = 4096


def _baseline() -> dict[str, bytes]:
    with tempfile.TemporaryDirectory() as directory:
        store = JournalStore(directory, max_bytes=1 << 20, segment_bytes=SEGMENT)
        store.open()
        for serial in range(40):
            store.append([JournalRecord(serial, "t", serial % 2, serial, None, b"v" * 300, [])])
            if serial % 5 == 4:
                store.append([Done("t", 0, serial - 4, serial)])
        store.sync()
        store.close()
        return {p.name: p.read_bytes() for p in Path(directory).glob("*.journal")}


BASELINE = _baseline()
NAMES = sorted(BASELINE)


@settings(max_examples=150, deadline=None)
@given(
    victim=st.sampled_from(NAMES),
    flips=st.lists(st.tuples(st.integers(0, SEGMENT * 2), st.integers(1, 255)), max_size=3),
    cut=st.none() | st.integers(0, SEGMENT * 2),
    garbage=st.binary(max_size=40),
)
def test_a_damaged_directory_recovers_or_is_refused_untouched(
    victim: str, flips: list[tuple[int, int]], cut: int | None, garbage: bytes
) -> None:
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        for name, data in BASELINE.items():
            damaged = bytearray(data)
            if name == victim:
                for at, mask in flips:
                    if at < len(damaged):
                        damaged[at] ^= mask
                if cut is not None:
                    del damaged[cut:]
                damaged += garbage
            (root / name).write_bytes(bytes(damaged))
        before = {p.name: p.read_bytes() for p in root.glob("*.journal")}
        store = JournalStore(root, max_bytes=1 << 20, segment_bytes=SEGMENT)
        refused: JournalCorruptError | None = None
        try:
            recovery = store.open()
        except JournalCorruptError as exc:
            refused = exc
        if refused is not None:
            assert Path(refused.path).name in before
            assert {p.name: p.read_bytes() for p in root.glob("*.journal")} == before
            return
        try:
            after = {p.name: p.read_bytes() for p in root.glob("*.journal")}
            changed = [name for name in before if after[name] != before[name]]
            assert changed in ([], [NAMES[-1]])  # only the newest may be cut
            if recovery.torn_tail is not None:
                assert recovery.torn_tail.path.name == NAMES[-1]
            serials = [r.serial for r in store.read_pending(0, store.next_serial)]
            assert serials == sorted(serials)
        finally:
            store.close()
