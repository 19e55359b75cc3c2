"""Kafka's four compression codecs, with a cap on what one batch may inflate to.

A record batch names its codec in attributes bits 0-2 and carries its records compressed as
one stream. What each codec's stream looks like is what the Java client writes, because that
is what every broker and client expects to read:

- gzip: one gzip member (RFC 1952).
- snappy: the xerial snappy-java framing (``SnappyOutputStream``): a 16-byte header, then
  blocks of big-endian int32 length + raw snappy, each from 32 KiB of input. Readers accept
  plain raw snappy too (older and non-Java writers), told apart by the header's magic.
- lz4: the LZ4 frame format with independent blocks (KIP-57; Java's reader rejects linked
  blocks). We write exactly Java's frame: 64 KiB blocks, no checksums, no content size.
- zstd: a standard zstd frame.

``decompress`` never trusts the peer: the output is capped (``max_size``). The cap is
enforced before anything is inflated wherever the stream states sizes (zstd and lz4 frame
and block headers, snappy's length varints, gzip's ISIZE trailer), and otherwise by inflating
into a buffer no larger than the cap (nor than the format's densest ratio allows for the
input), so a small hostile input never costs more than that. Every failure is a
``DecompressionError``; ``DecompressionLimitError`` when the cap is the reason.
"""

from __future__ import annotations

import enum
import struct
import zlib
from collections.abc import Callable
from typing import Final, TypeAlias

import cramjam

from pykaf._errors import DecompressionError, DecompressionLimitError, LocalProtocolError

__all__ = [
    "DEFAULT_MAX_DECOMPRESSED",
    "Compression",
    "compress",
    "decompress",
    "validate_level",
]

BytesLike: TypeAlias = bytes | bytearray | memoryview

# 64 MiB: a fetched batch is at most the broker's max.message.bytes (1 MiB by default, rarely
# above a few tens of MiB) compressed, and Kafka text compresses 3-10x, so real batches
# inflate to well under this; a hostile 1 KiB input that claims gigabytes costs at most this
# much memory. Consumers with huge batches and extreme ratios raise it per call.
DEFAULT_MAX_DECOMPRESSED: Final = 64 * 1024 * 1024

_MiB: Final = 1024 * 1024


class Compression(enum.IntEnum):
    """A codec, valued as its id in record-batch attributes bits 0-2."""

    NONE = 0
    GZIP = 1
    SNAPPY = 2
    LZ4 = 3
    ZSTD = 4

    @classmethod
    def parse(cls, value: Compression | int | str) -> Compression:
        """A codec from user input: a ``Compression``, its id, or its name (any case)."""
        if isinstance(value, Compression):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            if 0 <= value < len(_BY_ID):
                return _BY_ID[value]
        elif isinstance(value, str):
            # lower(), not casefold(): casefold maps "\u017fnappy" (long s) to "snappy".
            found = _BY_NAME.get(value.lower())
            if found is not None:
                return found
        raise LocalProtocolError(
            f"unknown compression {value!r}: expected one of {', '.join(_BY_NAME)}"
            f" (or their codec ids 0-{len(_BY_ID) - 1})"
        )

    @classmethod
    def from_attributes(cls, attributes: int) -> Compression:
        """The codec of a received record batch; ids 5-7 are the peer's error."""
        codec = attributes & 0x07
        if codec >= len(_BY_ID):
            raise DecompressionError(f"record batch names unknown compression codec {codec}")
        return _BY_ID[codec]


_BY_ID: Final = tuple(Compression)
_BY_NAME: Final = {codec.name.lower(): codec for codec in Compression}

# Kafka's own ranges (KIP-390), so a level valid for a Java producer is valid here.
_LEVELS: Final[dict[Compression, tuple[int, int]]] = {
    Compression.GZIP: (1, 9),
    Compression.LZ4: (1, 17),
    Compression.ZSTD: (-131072, 22),
}
_GZIP_DEFAULT_LEVEL: Final = 6  # zlib's default, what Java's Deflater uses
_LZ4_DEFAULT_LEVEL: Final = 9  # Kafka's default: the fast compressor, see _lz4_compress
_ZSTD_DEFAULT_LEVEL: Final = 3  # zstd's and Kafka's default


def validate_level(codec: Compression, level: int | None) -> None:
    """Raise ``LocalProtocolError`` unless ``level`` suits ``codec`` (None always does)."""
    if level is None:
        return
    codec = Compression.parse(codec)
    name = codec.name.lower()
    span = _LEVELS.get(codec)
    if span is None:
        raise LocalProtocolError(f"{name} has no compression levels; pass None")
    if not isinstance(level, int) or isinstance(level, bool) or not span[0] <= level <= span[1]:
        raise LocalProtocolError(
            f"{name} compression level must be an int in {span[0]}..{span[1]}"
            f" (or None for the default), not {level!r}"
        )


def _view(data: BytesLike) -> memoryview:
    view = memoryview(data)
    # Lengths and offsets below count bytes; a view of wider items would count items.
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


# --- compress -------------------------------------------------------------------------------


def compress(codec: Compression, data: BytesLike, level: int | None = None) -> bytes:
    """``data`` as ``codec``'s stream, in the form Kafka's Java client writes it.

    ``level`` is None for the codec's default or within Kafka's range for the codec
    (gzip 1..9, default 6; lz4 1..17, default 9, which like Kafka means lz4's fast mode while
    every other level is its high-compression mode; zstd -131072..22, default 3; none and
    snappy take no level).
    """
    try:
        compressor = _COMPRESSORS[codec]
    except KeyError:
        raise LocalProtocolError(f"unknown compression codec {codec!r}") from None
    validate_level(codec, level)
    return compressor(_view(data), level)


def _none_compress(view: memoryview, level: int | None) -> bytes:
    return bytes(view)


_GZIP_MIN: Final = 18  # header, an empty deflate stream, trailer


def _gzip_compress(view: memoryview, level: int | None) -> bytes:
    # Stdlib zlib, not cramjam: faster at the default level 6 (68 vs 51 MB/s measured).
    return zlib.compress(view, _GZIP_DEFAULT_LEVEL if level is None else level, wbits=31)


_XERIAL_MAGIC: Final = b"\x82SNAPPY\x00"
# Magic, then version 1 and minimum compatible version 1, as snappy-java writes them.
_XERIAL_HEADER: Final = _XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK: Final = 32 * 1024  # snappy-java's default block size (of input)
_BE_I32: Final = struct.Struct(">i")
_LE_U32: Final = struct.Struct("<I")
_LE_U64: Final = struct.Struct("<Q")


def _snappy_compress(view: memoryview, level: int | None) -> bytes:
    raw = cramjam.snappy.compress_raw
    pack = _BE_I32.pack
    parts: list[bytes | cramjam.Buffer] = [_XERIAL_HEADER]
    for start in range(0, len(view), _XERIAL_BLOCK):
        block = raw(view[start : start + _XERIAL_BLOCK])
        parts.append(pack(len(block)))
        parts.append(block)
    return b"".join(parts)


_LZ4_MAGIC: Final = 0x184D2204
# Magic, FLG 0x60 (version 01, independent blocks, no checksums, no content size), BD 0x40
# (64 KiB blocks), HC 0x82 = (xxh32(b"\x60\x40") >> 8) & 0xFF: byte for byte Java's header.
_LZ4_HEADER: Final = _LE_U32.pack(_LZ4_MAGIC) + b"\x60\x40\x82"
_LZ4_BLOCK: Final = 64 * 1024
_LZ4_UNCOMPRESSED: Final = 0x80000000
_LZ4_END: Final = b"\x00\x00\x00\x00"


def _lz4_compress(view: memoryview, level: int | None) -> bytes:
    if level is not None and level != _LZ4_DEFAULT_LEVEL:
        # Like Kafka: any level but the default selects lz4's high-compression mode.
        compressor = cramjam.lz4.Compressor(level=level, content_checksum=False, block_linked=False)
        compressor.compress(view.tobytes())  # its compress() takes bytes only
        return bytes(compressor.finish())
    # Like Kafka, the default level is lz4's fast mode. We frame the blocks ourselves: about
    # 6x faster than cramjam's frame writer and exactly the frame Java writes.
    block_of = cramjam.lz4.compress_block
    pack = _LE_U32.pack
    parts: list[bytes | memoryview | cramjam.Buffer] = [_LZ4_HEADER]
    for start in range(0, len(view), _LZ4_BLOCK):
        chunk = view[start : start + _LZ4_BLOCK]
        block = block_of(chunk, store_size=False)
        if len(block) < len(chunk):
            parts.append(pack(len(block)))
            parts.append(block)
        else:  # incompressible: stored as is, flagged by the size's high bit (as Java does)
            parts.append(pack(len(chunk) | _LZ4_UNCOMPRESSED))
            parts.append(chunk)
    parts.append(_LZ4_END)
    return b"".join(parts)


def _zstd_compress(view: memoryview, level: int | None) -> bytes:
    return bytes(cramjam.zstd.compress(view, level=_ZSTD_DEFAULT_LEVEL if level is None else level))


_COMPRESSORS: Final[dict[Compression, Callable[[memoryview, int | None], bytes]]] = {
    Compression.NONE: _none_compress,
    Compression.GZIP: _gzip_compress,
    Compression.SNAPPY: _snappy_compress,
    Compression.LZ4: _lz4_compress,
    Compression.ZSTD: _zstd_compress,
}


# --- decompress -----------------------------------------------------------------------------


def decompress(
    codec: Compression, data: BytesLike, *, max_size: int = DEFAULT_MAX_DECOMPRESSED
) -> bytes:
    """The bytes ``data`` (``codec``'s stream, as any Kafka client writes it) decompresses to.

    Raises ``DecompressionLimitError`` if that is more than ``max_size`` bytes (refused from
    the stream's own size fields where it has them, before decompressing; otherwise memory
    stays within about ``max_size``), ``DecompressionError`` if ``data`` is corrupt or
    truncated. ``Compression.NONE`` returns ``data`` as is: there is nothing to inflate.
    """
    try:
        decompressor = _DECOMPRESSORS[codec]
    except KeyError:
        raise LocalProtocolError(f"unknown compression codec {codec!r}") from None
    if not isinstance(max_size, int) or isinstance(max_size, bool) or max_size < 0:
        raise LocalProtocolError(f"max_size must be an int >= 0, not {max_size!r}")
    return decompressor(_view(data), max_size)


def _none_decompress(view: memoryview, cap: int) -> bytes:
    return bytes(view)


def _too_big(codec: str, cap: int, at_least: int | None = None) -> DecompressionLimitError:
    size = "more than" if at_least is None else f"at least {at_least} bytes, over"
    return DecompressionLimitError(
        f"{codec} batch decompresses to {size} the cap of {cap} bytes (max_size)"
    )


def _truncated(codec: str) -> DecompressionError:
    return DecompressionError(f"{codec} stream is truncated")


def _corrupt(codec: str, exc: BaseException) -> DecompressionError:
    return DecompressionError(f"{codec} stream is corrupt: {exc}")


def _guarded(exc: BaseException) -> bool:
    """Whether a cramjam failure is the input's fault (so becomes a DecompressionError)."""
    # pyo3 turns a Rust panic into PanicException, a BaseException: the input's fault too.
    if isinstance(exc, MemoryError | KeyboardInterrupt | SystemExit | GeneratorExit):
        return False
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


_FULL: Final = "failed to write whole buffer"  # cramjam's error when the output buffer is full


def _inflate_into(
    codec: str,
    inflate: Callable[[memoryview, bytearray], int],
    view: memoryview,
    *,
    hint: int,
    most: int,
    cap: int,
) -> bytes:
    """Decompress into a buffer of ``hint`` bytes, then if need be of min(most, cap) bytes.

    ``most`` is the most the format lets these bytes inflate to: the output can never outgrow
    the buffer, and a tiny input never costs a cap-sized buffer.
    """
    ceiling = min(most, cap)
    size = min(hint, ceiling)
    while True:
        out = bytearray(size)
        try:
            written = inflate(view, out)
        except BaseException as exc:
            if not _guarded(exc):
                raise
            if _FULL not in str(exc):
                raise _corrupt(codec, exc) from exc
            if size < ceiling:  # the hint was low (a lying or multi-part size): once more
                size = ceiling
                continue
            if ceiling == cap:
                raise _too_big(codec, cap) from None
            raise DecompressionError(
                f"{codec} stream inflates past the {most} bytes its format allows"
            ) from None
        return bytes(out) if written == size else bytes(memoryview(out)[:written])


# Deflate's densest code is a 258-byte match in 2 bits: 1032x.
_DEFLATE_RATIO: Final = 1032


def _gzip_decompress(view: memoryview, cap: int) -> bytes:
    # A gzip member ends with ISIZE, its length mod 2**32. A stream is at least as long as its
    # last member, so an ISIZE over the cap refuses it unread; otherwise ISIZE sizes the
    # buffer (exact for Kafka's single member).
    if len(view) < _GZIP_MIN:
        raise _truncated("gzip")
    (last_size,) = _LE_U32.unpack_from(view, len(view) - 4)
    if last_size > cap:
        raise _too_big("gzip", cap, last_size)
    most = _DEFLATE_RATIO * len(view)
    return _inflate_into(
        "gzip", cramjam.gzip.decompress_into, view, hint=last_size, most=most, cap=cap
    )


# The densest snappy element copies 64 bytes for a 3-byte tag, so no block inflates more than
# about 21.4x: a length header claiming more is a lie, refused before allocating for it.
_SNAPPY_RATIO: Final = 22


def _snappy_raw_len(codec: str, block: memoryview) -> int:
    # Reads only the uncompressed-length varint that starts every raw snappy block.
    try:
        size = cramjam.snappy.decompress_raw_len(block)
    except BaseException as exc:
        if _guarded(exc):
            raise _corrupt(codec, exc) from exc
        raise
    if size > _SNAPPY_RATIO * len(block):
        raise DecompressionError(
            f"{codec} block of {len(block)} bytes claims to inflate to {size} bytes"
        )
    return size


def _snappy_raw_into(codec: str, block: memoryview, out: memoryview) -> None:
    try:
        written = cramjam.snappy.decompress_raw_into(block, out)
    except BaseException as exc:
        if _guarded(exc):
            raise _corrupt(codec, exc) from exc
        raise
    if written != len(out):
        raise DecompressionError(
            f"{codec} block inflated to {written} bytes, its header says {len(out)}"
        )


def _snappy_decompress(view: memoryview, cap: int) -> bytes:
    if view[:8].tobytes() != _XERIAL_MAGIC:
        size = _snappy_raw_len("snappy", view)
        if size > cap:
            raise _too_big("snappy", cap, size)
        out = bytearray(size)
        _snappy_raw_into("snappy", view, memoryview(out))
        return bytes(out)
    # xerial framing. Every block states its inflated size up front, so the whole output
    # size is known (and refused if over the cap) before anything is decompressed.
    end = len(view)
    if end < len(_XERIAL_HEADER):
        raise DecompressionError("xerial snappy header is truncated")
    # The two version ints that follow the magic are not checked: snappy-java's own reader
    # does not insist on them either, and peers differ.
    blocks: list[tuple[memoryview, int]] = []
    total = 0
    pos = len(_XERIAL_HEADER)
    while pos < end:
        if end - pos < 4:
            raise DecompressionError("xerial snappy block length is truncated")
        if view[pos : pos + 8].tobytes() == _XERIAL_MAGIC and end - pos >= len(_XERIAL_HEADER):
            # Concatenated xerial streams: snappy-java skips a header found between blocks.
            pos += len(_XERIAL_HEADER)
            continue
        (length,) = _BE_I32.unpack_from(view, pos)
        pos += 4
        if length <= 0 or length > end - pos:
            raise DecompressionError(
                f"xerial snappy block length {length} does not fit the {end - pos} bytes left"
            )
        block = view[pos : pos + length]
        pos += length
        size = _snappy_raw_len("xerial snappy", block)
        total += size
        if total > cap:
            raise _too_big("snappy", cap, total)
        blocks.append((block, size))
    out = bytearray(total)
    target = memoryview(out)
    offset = 0
    for block, size in blocks:
        _snappy_raw_into("xerial snappy", block, target[offset : offset + size])
        offset += size
    return bytes(out)


_SKIPPABLE_MASK: Final = 0xFFFFFFF0
_SKIPPABLE: Final = 0x184D2A50  # skippable frames, shared by the zstd and lz4 formats
_ZSTD_MAGIC: Final = 0xFD2FB528
_ZSTD_BLOCK_MAX: Final = 128 * 1024
_ZSTD_DICT_ID_SIZES: Final = (0, 1, 2, 4)
_ZSTD_FCS_SIZES: Final = (0, 2, 4, 8)


def _skip_frame(codec: str, view: memoryview, pos: int) -> int:
    """The end of the skippable frame at ``pos`` (metadata that both formats allow)."""
    pos += 8 + _LE_U32.unpack_from(view, pos + 4)[0]
    if pos > len(view):
        raise _truncated(codec)
    return pos


def _add_frame(
    codec: str, known: int, bound: int, *, declared: int, exact: int, upper: int, cap: int
) -> tuple[int, int]:
    """Fold one frame into the running (must inflate to, may inflate to) pair; check the cap.

    ``exact`` is what the frame's stored and RLE blocks certainly inflate to, ``upper`` the
    most all its blocks can; ``declared`` the content size its header states (or -1).
    """
    if declared >= 0:
        if not exact <= declared <= upper:
            raise DecompressionError(
                f"{codec} frame declares {declared} bytes, its blocks hold {exact}..{upper}"
            )
        exact = upper = declared
    known += exact
    if known > cap:
        raise _too_big(codec, cap, known)
    return known, bound + upper


def _zstd_bounds(view: memoryview, cap: int) -> int:
    """An upper bound on the frames' output, from headers alone; refuses what must exceed cap.

    Walks frame and block headers (a few bytes per 128 KiB of output, no decompression):
    frames that declare their content size count exactly; raw and RLE blocks count exactly;
    a compressed block counts as the format's 128 KiB maximum.
    """
    end = len(view)
    if end == 0:
        raise _truncated("zstd")
    known = 0  # bytes the stream must inflate to
    bound = 0
    pos = 0
    while pos < end:
        if end - pos < 8:
            raise _truncated("zstd")
        (magic,) = _LE_U32.unpack_from(view, pos)
        if magic & _SKIPPABLE_MASK == _SKIPPABLE:
            pos = _skip_frame("zstd", view, pos)
            continue
        if magic != _ZSTD_MAGIC:
            raise DecompressionError(f"not a zstd frame (magic {magic:#010x})")
        descriptor = view[pos + 4]
        pos += 5
        if descriptor & 0x08:
            raise DecompressionError("zstd frame header sets its reserved bit")
        single_segment = descriptor & 0x20
        pos += 0 if single_segment else 1  # window descriptor
        pos += _ZSTD_DICT_ID_SIZES[descriptor & 0x03]
        fcs_flag = descriptor >> 6
        fcs_size = 1 if single_segment and fcs_flag == 0 else _ZSTD_FCS_SIZES[fcs_flag]
        if end - pos < fcs_size:
            raise _truncated("zstd")
        declared = int.from_bytes(view[pos : pos + fcs_size], "little") if fcs_size else -1
        if fcs_size == 2:
            declared += 256
        pos += fcs_size
        if declared > cap - known:
            raise _too_big("zstd", cap, declared + known)
        exact = 0
        compressed = 0  # the most the compressed blocks may inflate to
        while True:
            if end - pos < 3:
                raise _truncated("zstd")
            header = view[pos] | view[pos + 1] << 8 | view[pos + 2] << 16
            pos += 3
            kind = (header >> 1) & 0x03
            size = header >> 3
            if size > _ZSTD_BLOCK_MAX:
                raise DecompressionError(f"zstd block of {size} bytes is over the format's max")
            if kind == 0:  # raw
                exact += size
                pos += size
            elif kind == 1:  # RLE: one byte, repeated size times
                exact += size
                pos += 1
                if declared < 0 and known + exact > cap:  # refuse an RLE bomb unread
                    raise _too_big("zstd", cap, known + exact)
            elif kind == 2:
                compressed += _ZSTD_BLOCK_MAX
                pos += size
            else:
                raise DecompressionError("zstd block uses the reserved block type")
            if header & 1:  # last block
                break
        if descriptor & 0x04:
            pos += 4  # content checksum
        if pos > end:
            raise _truncated("zstd")
        known, bound = _add_frame(
            "zstd", known, bound, declared=declared, exact=exact, upper=exact + compressed, cap=cap
        )
    return bound


def _zstd_decompress(view: memoryview, cap: int) -> bytes:
    bound = _zstd_bounds(view, cap)
    return _inflate_into(
        "zstd", cramjam.zstd.decompress_into, view, hint=bound, most=bound, cap=cap
    )


# An lz4 sequence turns each input byte into at most 255 output bytes (a 0xFF match-length
# byte); 256 per byte plus a little is a safe ceiling for one compressed block.
_LZ4_RATIO: Final = 256
_LZ4_BLOCK_MAXES: Final = {4: 64 * 1024, 5: 256 * 1024, 6: _MiB, 7: 4 * _MiB}


def _lz4_bounds(view: memoryview, cap: int) -> int:
    """An upper bound on the frames' output from frame and block headers; see _zstd_bounds."""
    end = len(view)
    if end == 0:
        raise _truncated("lz4")
    known = 0
    bound = 0
    pos = 0
    while pos < end:
        if end - pos < 8:
            raise _truncated("lz4")
        (magic,) = _LE_U32.unpack_from(view, pos)
        if magic & _SKIPPABLE_MASK == _SKIPPABLE:
            pos = _skip_frame("lz4", view, pos)
            continue
        if magic != _LZ4_MAGIC:
            raise DecompressionError(f"not an lz4 frame (magic {magic:#010x})")
        flags = view[pos + 4]
        block_max = _LZ4_BLOCK_MAXES.get((view[pos + 5] >> 4) & 0x07)
        if flags >> 6 != 1 or block_max is None:
            raise DecompressionError("lz4 frame header has an unknown version or block size")
        pos += 6
        declared = -1
        if flags & 0x08:  # content size
            if end - pos < 8:
                raise _truncated("lz4")
            (declared,) = _LE_U64.unpack_from(view, pos)
            pos += 8
            if declared > cap - known:
                raise _too_big("lz4", cap, declared + known)
        pos += (4 if flags & 0x01 else 0) + 1  # dictionary id, header checksum
        block_checksum = 4 if flags & 0x10 else 0
        exact = 0
        compressed = 0  # the most the compressed blocks may inflate to
        while True:
            if end - pos < 4:
                raise _truncated("lz4")
            (size,) = _LE_U32.unpack_from(view, pos)
            pos += 4
            if size == 0:  # end mark
                break
            stored = size & _LZ4_UNCOMPRESSED
            size &= ~_LZ4_UNCOMPRESSED
            if size > block_max:
                raise DecompressionError(f"lz4 block of {size} bytes is over the frame's max")
            if stored:
                exact += size
            else:
                compressed += min(block_max, size * _LZ4_RATIO + 64)
            pos += size + block_checksum
        if flags & 0x04:
            pos += 4  # content checksum
        if pos > end:
            raise _truncated("lz4")
        known, bound = _add_frame(
            "lz4", known, bound, declared=declared, exact=exact, upper=exact + compressed, cap=cap
        )
    return bound


def _lz4_decompress(view: memoryview, cap: int) -> bytes:
    bound = _lz4_bounds(view, cap)
    return _inflate_into("lz4", cramjam.lz4.decompress_into, view, hint=bound, most=bound, cap=cap)


_DECOMPRESSORS: Final[dict[Compression, Callable[[memoryview, int], bytes]]] = {
    Compression.NONE: _none_decompress,
    Compression.GZIP: _gzip_decompress,
    Compression.SNAPPY: _snappy_decompress,
    Compression.LZ4: _lz4_decompress,
    Compression.ZSTD: _zstd_decompress,
}
