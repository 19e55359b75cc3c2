"""The compression layer: round trips, what other writers produce, hostile input, bombs."""

from __future__ import annotations

import gzip
import json
import random
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zlib
from pathlib import Path

import aiokafka.codec
import cramjam
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pykaf._errors import DecompressionError, DecompressionLimitError, LocalProtocolError
from pykaf.protocol._compression import (
    DEFAULT_MAX_DECOMPRESSED,
    Compression,
    compress,
    decompress,
    validate_level,
)

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
CODECS = list(Compression)
COMPRESSED = [c for c in Compression if c is not Compression.NONE]
LEVELS = {
    Compression.NONE: [None],
    Compression.GZIP: [None, 1, 5, 9],
    Compression.SNAPPY: [None],
    Compression.LZ4: [None, 1, 3, 9, 12, 17],
    Compression.ZSTD: [None, -131072, -5, 0, 1, 3, 19],
}


def kafkaish(size: int, seed: int = 7) -> bytes:
    """Records of about 100 bytes, like a JSON event stream: what batches really hold."""
    rng = random.Random(seed)
    users = [f"user-{rng.randrange(10**6):06d}" for _ in range(300)]
    out = bytearray()
    i = 0
    while len(out) < size:
        record = json.dumps(
            {
                "id": i,
                "ts": 1_700_000_000_000 + 7 * i,
                "user": rng.choice(users),
                "event": rng.choice(["click", "view", "buy"]),
                "v": rng.random(),
            }
        ).encode()
        out += record[:100].ljust(100)
        i += 1
    return bytes(out[:size])


def xxh32(data: bytes, seed: int = 0) -> int:
    """XXH32 written from its specification: for the lz4 frame checksums in these tests."""
    p1, p2, p3, p4, p5 = 2654435761, 2246822519, 3266489917, 668265263, 374761393
    mask = 0xFFFFFFFF

    def rotl(x: int, r: int) -> int:
        return ((x << r) | (x >> (32 - r))) & mask

    def lane(v: int, word: int) -> int:
        return rotl((v + word * p2) & mask, 13) * p1 & mask

    n, i = len(data), 0
    if n >= 16:
        v = [(seed + p1 + p2) & mask, (seed + p2) & mask, seed & mask, (seed - p1) & mask]
        while i + 16 <= n:
            for k in range(4):
                v[k] = lane(v[k], int.from_bytes(data[i + 4 * k : i + 4 * k + 4], "little"))
            i += 16
        h = rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)
    else:
        h = seed + p5
    h = (h + n) & mask
    while i + 4 <= n:
        h = rotl((h + int.from_bytes(data[i : i + 4], "little") * p3) & mask, 17) * p4 & mask
        i += 4
    while i < n:
        h = rotl((h + data[i] * p5) & mask, 11) * p1 & mask
        i += 1
    h = (h ^ (h >> 15)) * p2 & mask
    h = (h ^ (h >> 13)) * p3 & mask
    return h ^ (h >> 16)


def test_xxh32_helper_matches_reference_vectors() -> None:
    assert xxh32(b"") == 0x02CC5D05
    assert xxh32(b"a") == 0x550D7456
    assert xxh32(b"Nobody inspects the spammish repetition") == 0xE2293B2F


# --- the codec enum and levels --------------------------------------------------------------


def test_codec_ids_are_the_attribute_bits() -> None:
    assert [(c.name, int(c)) for c in Compression] == [
        ("NONE", 0),
        ("GZIP", 1),
        ("SNAPPY", 2),
        ("LZ4", 3),
        ("ZSTD", 4),
    ]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("gzip", Compression.GZIP),
        ("GZip", Compression.GZIP),
        ("none", Compression.NONE),
        ("SNAPPY", Compression.SNAPPY),
        ("lz4", Compression.LZ4),
        ("Zstd", Compression.ZSTD),
        (3, Compression.LZ4),
        (0, Compression.NONE),
        (Compression.ZSTD, Compression.ZSTD),
    ],
)
def test_parse_accepts_members_ids_and_names(
    value: Compression | int | str, expected: Compression
) -> None:
    assert Compression.parse(value) is expected


@pytest.mark.parametrize(
    "value", ["", "gz", "brotli", " gzip", "\u017fnappy", "1", 5, -1, 7, True, 1.0, None, b"gzip"]
)
def test_parse_rejects_anything_else_naming_the_valid_names(value: object) -> None:
    with pytest.raises(LocalProtocolError) as info:
        Compression.parse(value)  # type: ignore[arg-type]
    assert "none, gzip, snappy, lz4, zstd" in str(info.value)


def test_from_attributes_reads_bits_0_to_2() -> None:
    assert Compression.from_attributes(0b1111_0011) is Compression.LZ4
    assert Compression.from_attributes(0x10) is Compression.NONE
    for bad in (5, 6, 7, 0xFF):
        with pytest.raises(DecompressionError, match="unknown compression codec"):
            Compression.from_attributes(bad)


@pytest.mark.parametrize(
    ("codec", "low", "high"),
    [(Compression.GZIP, 1, 9), (Compression.LZ4, 1, 17), (Compression.ZSTD, -131072, 22)],
)
def test_levels_are_kafkas_ranges(codec: Compression, low: int, high: int) -> None:
    for level in (None, low, high):
        validate_level(codec, level)
    for level in (low - 1, high + 1):
        with pytest.raises(LocalProtocolError, match=rf"{low}\.\.{high}"):
            validate_level(codec, level)
        with pytest.raises(LocalProtocolError, match=rf"{low}\.\.{high}"):
            compress(codec, b"data", level)
    with pytest.raises(LocalProtocolError):
        validate_level(codec, True)


@pytest.mark.parametrize("codec", [Compression.NONE, Compression.SNAPPY])
def test_codecs_without_levels_refuse_one(codec: Compression) -> None:
    validate_level(codec, None)
    with pytest.raises(LocalProtocolError, match="no compression levels"):
        compress(codec, b"data", 1)


def test_caller_errors_are_local() -> None:
    with pytest.raises(LocalProtocolError):
        compress(9, b"x")  # type: ignore[arg-type]
    with pytest.raises(LocalProtocolError):
        decompress(9, b"x")  # type: ignore[arg-type]
    for bad in (-1, True, 1.5):
        with pytest.raises(LocalProtocolError, match="max_size"):
            decompress(Compression.GZIP, b"x", max_size=bad)  # type: ignore[arg-type]


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("codec", "level"), [(c, level) for c in Compression for level in LEVELS[c]]
)
@pytest.mark.parametrize("size", [0, 1, 100, 32 * KiB, 64 * KiB, 64 * KiB + 1, 300 * KiB])
def test_round_trip_each_codec_and_level(codec: Compression, level: int | None, size: int) -> None:
    data = kafkaish(size)
    packed = compress(codec, data, level)
    assert isinstance(packed, bytes)
    assert decompress(codec, packed) == data
    if size >= 32 * KiB and codec is not Compression.NONE and (level is None or level > 0):
        assert len(packed) < len(data) // 2  # it really compressed


@pytest.mark.parametrize("codec", CODECS)
def test_round_trip_incompressible(codec: Compression) -> None:
    data = random.Random(1).randbytes(200 * KiB)
    assert decompress(codec, compress(codec, data)) == data


@pytest.mark.parametrize("codec", CODECS)
def test_accepts_bytearray_and_memoryview_slices(codec: Compression) -> None:
    data = kafkaish(70 * KiB)
    view = memoryview(b"junk" + data + b"junk")[4:-4]
    packed = compress(codec, view)
    assert compress(codec, bytearray(data)) == packed
    wide = memoryview(data).cast("I")  # a view of 4-byte items still means its bytes
    assert decompress(codec, compress(codec, wide)) == data
    assert decompress(codec, memoryview(b"\xff" + packed)[1:]) == data
    assert decompress(codec, bytearray(packed)) == data


@given(data=st.data(), payload=st.binary(min_size=0, max_size=64 * KiB))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_arbitrary_bytes(data: st.DataObject, payload: bytes) -> None:
    codec = data.draw(st.sampled_from(CODECS))
    level = data.draw(st.sampled_from(LEVELS[codec]))
    assert decompress(codec, compress(codec, payload, level)) == payload


@pytest.mark.parametrize("codec", COMPRESSED)
def test_cap_is_inclusive(codec: Compression) -> None:
    data = kafkaish(100 * KiB)
    packed = compress(codec, data)
    assert decompress(codec, packed, max_size=len(data)) == data
    with pytest.raises(DecompressionLimitError):
        decompress(codec, packed, max_size=len(data) - 1)
    assert decompress(codec, compress(codec, b""), max_size=0) == b""


def test_none_passes_data_through() -> None:
    assert decompress(Compression.NONE, memoryview(b"abc")) == b"abc"
    assert compress(Compression.NONE, bytearray(b"abc")) == b"abc"


# --- what we write is what Kafka's Java client writes ---------------------------------------


def test_gzip_writes_one_gzip_member() -> None:
    data = kafkaish(50 * KiB)
    packed = compress(Compression.GZIP, data)
    assert packed[:3] == b"\x1f\x8b\x08"
    assert gzip.decompress(packed) == data
    assert aiokafka.codec.gzip_decode(packed) == data


def _xerial_block_ends(stream: bytes) -> set[int]:
    ends, pos = {16}, 16
    while pos < len(stream):
        pos += 4 + struct.unpack_from(">i", stream, pos)[0]
        ends.add(pos)
    return ends


def test_snappy_writes_xerial_framing_with_32k_blocks() -> None:
    data = kafkaish(100 * KiB)
    packed = compress(Compression.SNAPPY, data)
    assert packed[:16] == b"\x82SNAPPY\x00" + b"\x00\x00\x00\x01" + b"\x00\x00\x00\x01"
    pos, sizes = 16, []
    while pos < len(packed):
        (length,) = struct.unpack_from(">i", packed, pos)
        block = packed[pos + 4 : pos + 4 + length]
        sizes.append(len(cramjam.snappy.decompress_raw(block)))
        pos += 4 + length
    assert pos == len(packed)
    assert sizes == [32 * KiB, 32 * KiB, 32 * KiB, 4 * KiB]
    assert aiokafka.codec.snappy_decode(packed) == data
    assert compress(Compression.SNAPPY, b"") == packed[:16]


def test_lz4_writes_javas_frame() -> None:
    data = kafkaish(100 * KiB) + random.Random(2).randbytes(70 * KiB)
    packed = compress(Compression.LZ4, data)
    # Magic, FLG (version 1, independent blocks, nothing optional), BD (64 KiB), HC.
    assert packed[:7] == b"\x04\x22\x4d\x18\x60\x40" + bytes([xxh32(b"\x60\x40") >> 8 & 0xFF])
    assert packed[-4:] == b"\x00\x00\x00\x00"
    stored = [
        size & 0x80000000 for size in _lz4_block_sizes(packed)
    ]  # incompressible blocks are stored raw, as Java does
    assert any(stored)
    assert not all(stored)
    assert bytes(cramjam.lz4.decompress(packed)) == data  # checks the header checksum
    assert aiokafka.codec.lz4_decode(packed) == data
    high = compress(Compression.LZ4, data, 12)
    assert high[4] & 0x20, "high-compression frames must also use independent blocks"
    assert bytes(cramjam.lz4.decompress(high)) == data


def _lz4_block_sizes(frame: bytes) -> list[int]:
    pos, sizes = 7, []
    while True:
        (size,) = struct.unpack_from("<I", frame, pos)
        if size == 0:
            return sizes
        sizes.append(size)
        pos += 4 + (size & 0x7FFFFFFF)


def test_zstd_writes_a_standard_frame() -> None:
    data = kafkaish(100 * KiB)
    packed = compress(Compression.ZSTD, data)
    assert packed[:4] == b"\x28\xb5\x2f\xfd"
    assert bytes(cramjam.zstd.decompress(packed)) == data
    assert aiokafka.codec.zstd_decode(packed) == data


# --- what other writers produce, we read ----------------------------------------------------


def test_gzip_from_pythons_gzip_module_and_concatenated_members() -> None:
    a, b = kafkaish(40 * KiB, seed=1), kafkaish(10 * KiB, seed=2)
    assert decompress(Compression.GZIP, gzip.compress(a, mtime=12345)) == a
    assert decompress(Compression.GZIP, gzip.compress(a) + gzip.compress(b)) == a + b
    assert decompress(Compression.GZIP, aiokafka.codec.gzip_encode(a)) == a


def xerial(blocks: list[bytes], version: int = 1, compatible: int = 1) -> bytes:
    """A xerial stream built by hand from its description: header, then (int32 BE, block)."""
    out = b"\x82SNAPPY\x00" + struct.pack(">ii", version, compatible)
    for block in blocks:
        raw = bytes(cramjam.snappy.compress_raw(block))
        out += struct.pack(">i", len(raw)) + raw
    return out


def test_snappy_from_other_writers() -> None:
    data = kafkaish(100 * KiB)
    chunks = [data[i : i + 8 * KiB] for i in range(0, len(data), 8 * KiB)]
    assert decompress(Compression.SNAPPY, xerial(chunks)) == data
    # Version fields vary between snappy-java releases and other writers.
    assert decompress(Compression.SNAPPY, xerial([data], version=7, compatible=0)) == data
    assert decompress(Compression.SNAPPY, xerial([])) == b""
    # Concatenated streams: snappy-java skips a second header between blocks.
    assert decompress(Compression.SNAPPY, xerial(chunks[:3]) + xerial(chunks[3:])) == data
    # Raw snappy without framing (librdkafka and other non-Java writers).
    assert decompress(Compression.SNAPPY, bytes(cramjam.snappy.compress_raw(data))) == data
    assert decompress(Compression.SNAPPY, aiokafka.codec.snappy_encode(data)) == data


def lz4_frame(data: bytes, *, flags: int = 0x60, content_size: int | None = None) -> bytes:
    """An lz4 frame built by hand: 64 KiB independent blocks, checksums as the flags ask."""
    descriptor = bytes([flags | (0x08 if content_size is not None else 0), 0x40])
    if content_size is not None:
        descriptor += struct.pack("<Q", content_size)
    out = struct.pack("<I", 0x184D2204) + descriptor + bytes([xxh32(descriptor) >> 8 & 0xFF])
    for i in range(0, len(data), 64 * KiB):
        block = bytes(cramjam.lz4.compress_block(data[i : i + 64 * KiB], store_size=False))
        out += struct.pack("<I", len(block)) + block
        if flags & 0x10:
            out += struct.pack("<I", xxh32(block))
    out += b"\x00\x00\x00\x00"
    if flags & 0x04:
        out += struct.pack("<I", xxh32(data))
    return out


def test_lz4_from_other_writers() -> None:
    data = kafkaish(150 * KiB)
    # cramjam's own frame writer: linked blocks and a content checksum.
    assert decompress(Compression.LZ4, bytes(cramjam.lz4.compress(data))) == data
    for linked in (True, False):
        for checksum in (True, False):
            writer = cramjam.lz4.Compressor(block_linked=linked, content_checksum=checksum)
            writer.compress(data)
            assert decompress(Compression.LZ4, bytes(writer.finish())) == data
    # Hand-built: content size declared, block and content checksums.
    for flags in (0x60, 0x70, 0x64, 0x74):
        for size in (None, len(data)):
            frame = lz4_frame(data, flags=flags, content_size=size)
            assert bytes(cramjam.lz4.decompress(frame)) == data  # the frame is valid
            assert decompress(Compression.LZ4, frame) == data
    assert decompress(Compression.LZ4, aiokafka.codec.lz4_encode(data)) == data
    two = bytes(cramjam.lz4.compress(b"one")) + lz4_frame(b"two")
    assert decompress(Compression.LZ4, two) == b"onetwo"


SKIPPABLE = struct.pack("<II", 0x184D2A53, 5) + b"meta!"


def test_zstd_with_and_without_content_size() -> None:
    data = kafkaish(300 * KiB)
    with_size = bytes(cramjam.zstd.compress(data, level=3))
    assert with_size[4] >> 6 or with_size[4] & 0x20  # declares its content size
    streamed = cramjam.zstd.Compressor(level=3)
    streamed.compress(data)
    without_size = bytes(streamed.finish())
    assert without_size[4] >> 6 == 0
    assert not without_size[4] & 0x20
    assert decompress(Compression.ZSTD, with_size) == data
    assert decompress(Compression.ZSTD, without_size) == data
    assert decompress(Compression.ZSTD, aiokafka.codec.zstd_encode(data)) == data
    both = SKIPPABLE + with_size + without_size + SKIPPABLE
    assert decompress(Compression.ZSTD, both) == data + data
    assert decompress(Compression.LZ4, SKIPPABLE + lz4_frame(b"x")) == b"x"


# --- corrupt and truncated input ------------------------------------------------------------


@pytest.mark.parametrize("codec", COMPRESSED)
def test_every_truncation_is_a_decompression_error(codec: Compression) -> None:
    data = kafkaish(80 * KiB)
    packed = compress(codec, data)
    cuts = {*range(40), *range(len(packed) - 40, len(packed)), len(packed) // 2}
    if codec is Compression.SNAPPY:
        # xerial has no end marker: a cut between blocks leaves a valid, shorter stream
        # (snappy-java cannot tell either). Every other cut must be caught.
        cuts -= _xerial_block_ends(packed)
    for cut in sorted(cuts):
        with pytest.raises(DecompressionError):
            decompress(codec, packed[:cut])


@pytest.mark.parametrize("codec", COMPRESSED)
def test_trailing_garbage_is_a_decompression_error(codec: Compression) -> None:
    packed = compress(codec, kafkaish(10 * KiB))
    for tail in (b"\x00", b"garbage!", b"\x00" * 20):
        with pytest.raises(DecompressionError):
            decompress(codec, packed + tail)


@pytest.mark.parametrize("codec", COMPRESSED)
def test_random_bytes_are_a_decompression_error(codec: Compression) -> None:
    rng = random.Random(3)
    for size in (0, 1, 7, 16, 100, 5000):
        blob = rng.randbytes(size)
        with pytest.raises(DecompressionError):
            decompress(codec, blob)


def test_checksum_mismatches_are_decompression_errors() -> None:
    data = kafkaish(70 * KiB)
    packed = bytearray(gzip.compress(data))
    packed[-6] ^= 1  # the CRC-32 in the trailer
    with pytest.raises(DecompressionError):
        decompress(Compression.GZIP, packed)
    packed = bytearray(gzip.compress(data))
    packed[-2] ^= 1  # ISIZE
    with pytest.raises(DecompressionError):
        decompress(Compression.GZIP, packed)
    for flags, where in ((0x64, -1), (0x70, -8)):  # content checksum; last block's checksum
        frame = bytearray(lz4_frame(data, flags=flags))
        frame[where] ^= 0x10
        with pytest.raises(DecompressionError):
            decompress(Compression.LZ4, frame)
    frame = bytearray(compress(Compression.LZ4, data))
    frame[6] ^= 1  # the header checksum
    with pytest.raises(DecompressionError):
        decompress(Compression.LZ4, frame)


def test_lying_sizes_are_decompression_errors() -> None:
    data = kafkaish(10 * KiB)
    for size in (len(data) - 1, len(data) + 1):
        with pytest.raises(DecompressionError):
            decompress(Compression.LZ4, lz4_frame(data, content_size=size))
    # A raw snappy header claiming far more than its bytes can encode.
    with pytest.raises(DecompressionError, match="claims"):
        decompress(Compression.SNAPPY, b"\xff\xff\xff\xff\x0f\x00\x00")
    # A xerial block length pointing past the end, a negative one, a zero one.
    good = xerial([data])
    for length in (len(good), -5, 0):
        bad = good[:16] + struct.pack(">i", length) + good[20:]
        with pytest.raises(DecompressionError):
            decompress(Compression.SNAPPY, bad)


MUTATION_SOURCES = {codec: compress(codec, kafkaish(3 * KiB)) for codec in COMPRESSED}
MUTATION_SOURCES[Compression.SNAPPY] = xerial([kafkaish(3 * KiB)[:1500], kafkaish(1500)])


def _decompress_or_error(codec: Compression, blob: bytes) -> None:
    try:
        out = decompress(codec, blob, max_size=1 * MiB)
    except DecompressionError:
        return
    assert isinstance(out, bytes)
    assert len(out) <= 1 * MiB


@given(codec=st.sampled_from(COMPRESSED), blob=st.binary(max_size=2 * KiB))
@settings(max_examples=400, deadline=None)
def test_fuzz_arbitrary_bytes_give_bytes_or_decompression_error(
    codec: Compression, blob: bytes
) -> None:
    _decompress_or_error(codec, blob)


@given(
    codec=st.sampled_from(COMPRESSED),
    edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4),
    cut=st.integers(0, 10**6),
)
@settings(max_examples=400, deadline=None)
def test_fuzz_mutated_streams_give_bytes_or_decompression_error(
    codec: Compression, edits: list[tuple[int, int]], cut: int
) -> None:
    blob = bytearray(MUTATION_SOURCES[codec])
    for where, value in edits:
        blob[where % len(blob)] = value
    _decompress_or_error(codec, bytes(blob[: len(blob) - cut % 8]))


# --- decompression bombs --------------------------------------------------------------------


def zstd_rle_frame(size: int, *, declare: bool) -> bytes:
    """A valid zstd frame of ``size`` zero bytes in 128 KiB RLE blocks (4 bytes each)."""
    block = 128 * KiB
    header = struct.pack("<I", 0xFD2FB528)
    # Descriptor: 4-byte content size or none; window descriptor 0x38 = a 128 KiB window.
    header += b"\x80\x38" + struct.pack("<I", size) if declare else b"\x00\x38"
    body = ((1 << 1 | block << 3).to_bytes(3, "little") + b"\x00") * (size // block - 1)
    return header + body + (1 | 1 << 1 | block << 3).to_bytes(3, "little") + b"\x00"


def gzip_of_zeros(size: int) -> bytes:
    """A valid gzip member of ``size`` zero bytes in about size/1000 bytes, built in ms.

    After a full flush deflate forgets its history, so each MiB of zeros compresses to the
    same bytes: compress one MiB once and repeat it.
    """
    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = deflater.compress(bytes(MiB)) + deflater.flush(zlib.Z_FULL_FLUSH)
    body = chunk * (size // MiB) + deflater.flush()
    crc = 0
    for _ in range(size // MiB):
        crc = zlib.crc32(bytes(MiB), crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    return header + body + struct.pack("<II", crc, size & 0xFFFFFFFF)


def snappy_raw_of_zeros(size: int) -> bytes:
    """A valid raw snappy block of ``size`` zeros: a 1-byte literal, then 64-byte copies."""
    copies, rest = divmod(size - 1, 64)
    length = bytearray()
    n = size
    while n >= 0x80:
        length.append(n & 0x7F | 0x80)
        n >>= 7
    length.append(n)
    tail = bytes([(rest - 1) << 2 | 2, 1, 0]) if rest else b""
    return bytes(length) + b"\x00\x00" + b"\xfe\x01\x00" * copies + tail


def test_bomb_builders_build_valid_streams() -> None:
    size = 3 * MiB
    assert bytes(cramjam.zstd.decompress(zstd_rle_frame(size, declare=False))) == bytes(size)
    assert bytes(cramjam.zstd.decompress(zstd_rle_frame(size, declare=True))) == bytes(size)
    assert gzip.decompress(gzip_of_zeros(size)) == bytes(size)
    assert bytes(cramjam.snappy.decompress_raw(snappy_raw_of_zeros(size + 5))) == bytes(size + 5)


def streamed(writer: cramjam.zstd.Compressor | cramjam.lz4.Compressor, size: int) -> bytes:
    zeros = bytes(MiB)
    for _ in range(size // MiB):
        writer.compress(zeros)
    return bytes(writer.finish())


def _xerial_block_of_zeros(size: int) -> bytes:
    raw = bytes(cramjam.snappy.compress_raw(bytes(size)))
    return struct.pack(">i", len(raw)) + raw


def _lz4_declared_bomb() -> bytes:
    """1 GiB declared in the header, then the real 64 KiB blocks of zeros that make it up."""
    descriptor = bytes([0x68, 0x40]) + struct.pack("<Q", GiB)
    block = bytes(cramjam.lz4.compress_block(bytes(64 * KiB), store_size=False))
    header = struct.pack("<I", 0x184D2204) + descriptor + bytes([xxh32(descriptor) >> 8 & 0xFF])
    return header + (struct.pack("<I", len(block)) + block) * (GiB // (64 * KiB)) + bytes(4)


def _gzip_lying_about_its_size() -> bytes:
    bomb = gzip_of_zeros(GiB)
    return bomb[:-4] + struct.pack("<I", 1000)  # as if 4 GiB + 1000 bytes: ISIZE wraps


# Each builds a 1 GiB bomb: (codec, builder, refused from headers before decompressing).
BOMBS = {
    "gzip": (Compression.GZIP, lambda: gzip_of_zeros(GiB), True),
    "gzip-small-isize": (Compression.GZIP, _gzip_lying_about_its_size, False),
    "zstd-streamed": (
        Compression.ZSTD,
        lambda: streamed(cramjam.zstd.Compressor(level=1), GiB),
        False,
    ),
    "zstd-rle": (Compression.ZSTD, lambda: zstd_rle_frame(GiB, declare=False), True),
    "zstd-declared": (Compression.ZSTD, lambda: zstd_rle_frame(GiB, declare=True), True),
    "lz4-streamed": (
        Compression.LZ4,
        lambda: streamed(
            cramjam.lz4.Compressor(level=1, block_linked=False, content_checksum=False), GiB
        ),
        False,
    ),
    "lz4-declared": (Compression.LZ4, _lz4_declared_bomb, True),
    "snappy-raw": (Compression.SNAPPY, lambda: snappy_raw_of_zeros(GiB), True),
    "snappy-xerial": (
        Compression.SNAPPY,
        lambda: xerial([]) + _xerial_block_of_zeros(MiB) * 1024,
        True,
    ),
}


@pytest.mark.parametrize("name", list(BOMBS))
@pytest.mark.parametrize("cap", [DEFAULT_MAX_DECOMPRESSED, 1 * MiB])
def test_bombs_are_refused_within_the_cap(name: str, cap: int) -> None:
    codec, build, from_headers = BOMBS[name]
    bomb = build()
    assert len(bomb) < GiB // 20
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionLimitError):
            decompress(codec, bomb, max_size=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Python-side memory follows the cap, never the bomb's gigabyte ...
    assert peak < cap + 2 * MiB
    if from_headers:  # ... and nothing at all when the headers alone give it away.
        assert peak < 1 * MiB


def test_bombs_keep_process_memory_near_the_cap() -> None:
    """The real resident peak (cramjam's own allocations included), in a fresh process.

    Only the bombs that get past the headers: the others allocate nothing (see above). Their
    builders stream, so the baseline peak is the interpreter plus the few MB of bombs.
    """
    script = textwrap.dedent(
        f"""
        import json, resource, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import test_compression as t
        from pykaf._errors import DecompressionLimitError
        from pykaf.protocol._compression import decompress
        bombs = [(codec, build()) for codec, build, unread in t.BOMBS.values() if not unread]
        def peak():
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        report = {{"before": peak()}}
        for cap, key in ((1 << 20, "small_cap"), (t.DEFAULT_MAX_DECOMPRESSED, "default_cap")):
            for codec, bomb in bombs:
                try:
                    decompress(codec, bomb, max_size=cap)
                except DecompressionLimitError:
                    pass
                else:
                    raise SystemExit("bomb not refused")
            report[key] = peak()
        print(json.dumps(report))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True
    )
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["small_cap"] - report["before"] < 32 * MiB
    assert report["default_cap"] - report["before"] < 2 * DEFAULT_MAX_DECOMPRESSED
