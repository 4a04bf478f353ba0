"""Fast, strict decoding of FITS image stamps (alert cutouts, ATLAS stamps).

An alert cutout is a tiny FITS file: one primary HDU holding a 2-d image
(ZTF: 63x63 float32, gzip-compressed). Opening it with astropy costs about
0.5 ms, almost all of it in building header and HDU objects. :func:`parse_image`
reads only what the pixels need -- the primary header's 80-character cards up
to ``END`` (SIMPLE, BITPIX, NAXIS, NAXIS1, NAXIS2, BSCALE, BZERO) -- and
converts the big-endian data the way astropy does, with bounds checks on the
header size, the axes and the data length. The header consecutive cutouts of an
alert stream share is read once and remembered (:func:`cached_image_layout`).

Anything outside that simple case (no primary image, NAXIS other than 2,
extensions, tile-compressed images, random groups, integer data with BLANK,
64-bit integers with an offset, a duplicated or unreadable structural card)
is not guessed at: :func:`decode_stamp` hands those to astropy, so the result
is always astropy's. Truncated data is an error either way.
:func:`decode_stamp` is what the readers use; ``tests/test_fits.py`` checks
it pixel for pixel against astropy on the real samples and on synthetic
files of every BITPIX.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import NamedTuple

import deflate
import numpy as np
from zlib_ng import zlib_ng

from rbda.errors import InputFileError

BLOCK = 2880
CARD = 80
#: Largest primary header parsed here (the real ATLAS stamps' full headers take 13 blocks).
MAX_HEADER_BLOCKS = 100
#: Largest image axis accepted (stamps are tens of pixels; a larger one is not a stamp).
MAX_AXIS = 4096
#: Largest decompressed stamp accepted, bytes (a gzip bomb stops here).
MAX_STAMP_BYTES = 64 * 2**20
GZIP_MAGIC = b"\x1f\x8b"

_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_STRUCTURAL = {b"SIMPLE", b"BITPIX", b"NAXIS", b"NAXIS1", b"NAXIS2", b"BSCALE", b"BZERO"}
#: Keywords whose presence means astropy would do more than read a plain image.
_HAND_TO_ASTROPY = {b"XTENSION", b"ZIMAGE", b"GROUPS", b"BLANK", b"PCOUNT", b"GCOUNT", b"ZCMPTYPE"}


class Unsupported(Exception):
    """A valid-looking FITS file outside what :func:`parse_image` handles (astropy reads it)."""


class Corrupt(ValueError):
    """Bytes that cannot be the FITS image they claim to be (e.g. data shorter than the header says)."""


def _value_bytes(card: bytes) -> bytes:
    """The value field of a ``KEY = value / comment`` card, as bytes (no strings expected here)."""
    if card[8:10] != b"= ":
        raise Unsupported(f"card {card[:8].decode('ascii', 'replace').strip()!r} has no value indicator")
    return card[10:].split(b"/", 1)[0]


def _value(card: bytes) -> str:
    return _value_bytes(card).decode("ascii").strip()


def _int(card: bytes) -> int:
    text = _value_bytes(card)
    try:
        return int(text)  # (bytes, surrounding blanks allowed)
    except ValueError:
        raise Unsupported(f"integer card value {text.decode('ascii', 'replace').strip()!r}") from None


def _float(card: bytes) -> float:
    text = _value(card).upper().replace("D", "E")  # FITS allows a D exponent
    try:
        return float(text)
    except ValueError:
        raise Unsupported(f"real card value {text!r}") from None


def _incomplete_header(raw: bytes) -> Corrupt:
    """The error of bytes that end before their header's last block does."""
    return Corrupt(f"header ends after {len(raw)} bytes without an END card")


def _header(raw: bytes) -> tuple[dict[bytes, bytes], int, int]:
    """Structural cards of the primary header, the data's offset (header length) and the end of its END
    card (the bytes read)."""
    cards: dict[bytes, bytes] = {}
    for block in range(MAX_HEADER_BLOCKS):
        start = block * BLOCK
        if start + BLOCK > len(raw):
            raise _incomplete_header(raw)
        for pos in range(start, start + BLOCK, CARD):
            card = raw[pos : pos + CARD]
            key = card[:8].rstrip()
            if key == b"END":
                if card[8:].strip():
                    raise Unsupported("END card with content")
                return cards, start + BLOCK, pos + CARD
            if key in _HAND_TO_ASTROPY:
                raise Unsupported(f"keyword {key.decode()}")
            if key in _STRUCTURAL:
                if key in cards:
                    raise Unsupported(f"keyword {key.decode()} repeated")
                cards[key] = card
            if pos == 0 and key != b"SIMPLE":
                raise Unsupported("first card is not SIMPLE")
    raise Unsupported(f"primary header longer than {MAX_HEADER_BLOCKS} blocks")


class ImageLayout(NamedTuple):
    """What a primary header says of its image: the data's type, axes, scaling and offset."""

    bitpix: int
    #: The data's (big-endian) type.
    dtype: np.dtype
    height: int
    width: int
    bscale: float
    bzero: float
    #: The data's offset: the header's length.
    offset: int
    #: The header's bytes up to and with its END card: all that was read of it.
    read: int


def image_layout(raw: bytes) -> ImageLayout:
    """The image layout of uncompressed FITS bytes' primary header, read card by card.

    Raises :class:`Unsupported` for headers it leaves to astropy and :class:`Corrupt` for ones that cannot
    be right."""
    cards, offset, read = _header(raw)
    if _value(cards[b"SIMPLE"]) != "T":
        raise Unsupported("SIMPLE is not T")
    for key in (b"BITPIX", b"NAXIS"):
        if key not in cards:
            raise Unsupported(f"no {key.decode()} card")
    bitpix, naxis = _int(cards[b"BITPIX"]), _int(cards[b"NAXIS"])
    if bitpix not in _DTYPES:
        raise Corrupt(f"BITPIX {bitpix} (expected one of {sorted(_DTYPES)})")
    if naxis != 2 or b"NAXIS1" not in cards or b"NAXIS2" not in cards:
        raise Unsupported(f"NAXIS {naxis}")
    width, height = _int(cards[b"NAXIS1"]), _int(cards[b"NAXIS2"])
    if not (0 < width <= MAX_AXIS and 0 < height <= MAX_AXIS):
        raise Unsupported(f"image of {width}x{height} pixels")
    bscale = _float(cards[b"BSCALE"]) if b"BSCALE" in cards else 1.0
    bzero = _float(cards[b"BZERO"]) if b"BZERO" in cards else 0.0
    return ImageLayout(bitpix, np.dtype(_DTYPES[bitpix]), height, width, bscale, bzero, offset, read)


#: The last header read without error: (its bytes up to and with its END card, its layout).
_last_header: list[tuple[bytes, ImageLayout | None]] = [(b"", None)]


def cached_image_layout(raw: bytes) -> ImageLayout:
    """:func:`image_layout` of ``raw``; the last header's remembered.

    Consecutive cutouts of an alert stream mostly share one header (ZTF's and DECam's are 6 cards,
    the same for every full-size cutout), and reading one card by card is most of what parsing a
    cutout takes. The last header read without error is remembered with its bytes up to and with
    its END card, all that the card-by-card read looked at: a header that starts with the same bytes
    has the same layout, once its header blocks are complete, as the card-by-card read requires
    (else the same error). A header that differs (Rubin's carry each cutout's WCS) costs a
    comparison that stops at its first differing byte, then is read card by card."""
    key, layout = _last_header[0]
    if layout is not None and raw.startswith(key):
        if layout.offset > len(raw):
            raise _incomplete_header(raw)
        return layout
    layout = image_layout(raw)
    _last_header[0] = (bytes(raw[: layout.read]), layout)
    return layout


def parse_image(raw: bytes) -> np.ndarray:
    """The primary image of uncompressed FITS bytes as float32 (NAXIS2, NAXIS1), as astropy gives it.

    Raises :class:`Unsupported` for files it leaves to astropy and
    :class:`Corrupt` for data that cannot be right.
    """
    bitpix, dtype, height, width, bscale, bzero, offset, _ = cached_image_layout(raw)
    count = width * height
    if len(raw) < offset + count * dtype.itemsize:
        raise Corrupt(f"{count * dtype.itemsize} bytes of {height}x{width} BITPIX {bitpix} data after the "
                      f"{offset}-byte header, found {max(len(raw) - offset, 0)}")
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=offset).reshape(height, width)
    if bscale == 1.0 and bzero == 0.0:
        return data.astype(np.float32)
    if bitpix > 0:
        if bscale == 1.0 and ((bitpix == 8 and bzero == -128) or bzero == float(1 << (bitpix - 1))):
            if bitpix == 64:
                raise Unsupported("unsigned 64-bit integers")  # exact only as uint64, as astropy keeps them
            # astropy's pseudo-unsigned (or signed-byte) integers: exact integers, then float32
            return (data.astype(np.float64) + bzero).astype(np.float32)
        # astropy scales 8/16-bit integers in float32, 32/64-bit ones in float64
        scaled = data.astype(np.float32 if bitpix <= 16 else np.float64)
    else:
        scaled = data.astype(data.dtype.newbyteorder("="))
    if bscale != 1.0:
        np.multiply(scaled, bscale, out=scaled)
    if bzero != 0.0:
        scaled += bzero
    return scaled.astype(np.float32, copy=False)


#: The shortest gzip stream: a 10-byte header, an empty deflate block and the 8-byte trailer.
_GZIP_MIN_BYTES = 20
#: The gzip header flag (byte 3) of a header CRC-16.
_GZIP_FHCRC = 0x02


def inflate(blob: bytes, wbits: int, limit: int, error: type[Exception] = ValueError) -> bytes:
    """zlib/deflate/gzip bytes (``wbits`` as :func:`zlib.decompressobj`) inflated to at most ``limit``
    bytes; ``error`` for more (a bomb stops there), for a truncated stream or for corrupt bytes.

    zlib-ng does the inflating: the same streaming API and bytes as :mod:`zlib`, about 1.4x
    faster on ZTF's gzip cutouts (benchmarks/bench_predict.py).
    """
    if limit < 1:  # zlib reads a limit of 0 as "none"
        raise ValueError(f"a positive inflate limit, got {limit}")
    inflater = zlib_ng.decompressobj(wbits)
    try:
        raw = inflater.decompress(blob, limit)
    except zlib_ng.error as exc:
        raise error(f"corrupt compressed stream ({exc})") from None
    if inflater.unconsumed_tail:
        raise error(f"decompresses to more than {limit} bytes")
    if not inflater.eof:
        raise error("truncated compressed stream")
    return raw


def decompress(blob: bytes, max_bytes: int = MAX_STAMP_BYTES) -> bytes:
    """gzip-compressed bytes decompressed (at most ``max_bytes``); other bytes unchanged.

    A stream whose trailer gives a size (ISIZE) of at most ``max_bytes`` is inflated by libdeflate in
    one call into a buffer of that size (about 1.2x zlib-ng on ZTF's cutouts; benchmarks/bench_predict.py);
    a stream libdeflate refuses or inflates to another size (corrupt, truncated, a size that lies,
    bytes after the stream), whose size is over the bound, or whose header carries its own CRC
    (libdeflate does not check it) goes through :func:`inflate`, whose result or error stands.
    libdeflate's output always passes the stream's CRC-32 and size; it is laxer than zlib only on
    codes no compressor writes (distance codes 30-31, length symbols 286-287), so a stream crafted
    with those decodes here where zlib-ng calls it corrupt."""
    if blob[:2] != GZIP_MAGIC:
        return blob
    size = int.from_bytes(blob[-4:], "little")
    if len(blob) >= _GZIP_MIN_BYTES and 0 < size <= max_bytes and not blob[3] & _GZIP_FHCRC:
        # (the binding reads a size of 0 as "unknown")
        try:
            raw = deflate.gzip_decompress(blob, size)
        except deflate.DeflateError:
            pass
        else:
            if len(raw) == size:
                return bytes(raw)  # bytes: the parser's card keys are hashed
    return inflate(blob, 16 + zlib_ng.MAX_WBITS, max_bytes, Corrupt)


def astropy_image(raw: bytes | Path, ignore_missing_simple: bool = False) -> np.ndarray | None:
    """The first HDU with data, read by astropy, as float32 (None when there is none).

    Truncated data is an error here too: astropy only warns ("File may have been truncated") and
    returns the image with the missing pixels made up (found by tests/test_fuzz.py)."""
    from astropy.io import fits

    source = raw if isinstance(raw, Path) else io.BytesIO(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=fits.verify.VerifyWarning)
        warnings.filterwarnings("error", message="File may have been truncated")
        with fits.open(source, memmap=False, ignore_missing_simple=ignore_missing_simple) as hdus:
            data = next((h.data for h in hdus if h.data is not None), None)
            return None if data is None else np.array(data, dtype=np.float32)


def decode_stamp(blob: object, path: str | Path, where: str | None = None,
                 ignore_missing_simple: bool = False, max_bytes: int = MAX_STAMP_BYTES) -> np.ndarray:
    """A stamp's (gzip-compressed or plain) FITS bytes as a float32 2-d image.

    The fast parser reads what it can; astropy reads the rest. Bytes that are
    not a readable FITS image, or whose image is not 2-d, are an
    :class:`InputFileError` naming ``path`` and ``where``; so are FITS bytes
    (inflated, or plain) over ``max_bytes``: a caller that knows how large a
    stamp can be (an alert survey's cutout size) passes that bound.
    """
    if not isinstance(blob, (bytes, bytearray, memoryview)):
        raise InputFileError(path, f"FITS stamp bytes, got {type(blob).__name__}", where)
    blob = bytes(blob)
    if len(blob) > max_bytes:
        raise InputFileError(path, f"FITS stamp bytes of at most {max_bytes} bytes, got {len(blob)}", where)
    try:
        raw = decompress(blob, max_bytes)
        try:
            return parse_image(raw)
        except Unsupported:
            data = astropy_image(raw, ignore_missing_simple)
    except Exception as exc:  # noqa: BLE001 - corrupt gzip/FITS raise many types
        raise InputFileError(path, f"a gzip-compressed or plain FITS image ({exc.__class__.__name__}: {exc})",
                             where) from None
    if data is None or data.ndim != 2:
        raise InputFileError(path, f"a 2-d FITS image, got {None if data is None else data.shape}", where)
    return data


def read_stamp_file(path: Path, ignore_missing_simple: bool = False) -> np.ndarray:
    """A FITS stamp file (``.fits`` or ``.fits.gz``) as a float32 2-d image."""
    try:
        blob = Path(path).read_bytes()
    except OSError as exc:
        raise InputFileError(path, f"a readable FITS stamp ({exc})") from None
    return decode_stamp(blob, path, ignore_missing_simple=ignore_missing_simple)


__all__ = ["decode_stamp", "read_stamp_file", "parse_image", "decompress", "astropy_image",
           "Unsupported", "Corrupt"]
