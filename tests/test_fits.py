"""rbda.ingest.fits: the fast stamp parser gives astropy's pixels, or hands the file to astropy, or fails clearly."""

from __future__ import annotations

import gzip
import io
import warnings

import numpy as np
import pytest
from astropy.io import fits

from rbda.errors import InputFileError
from rbda.ingest import fits as rbda_fits
from rbda.ingest.fits import (MAX_STAMP_BYTES, Corrupt, Unsupported, astropy_image, cached_image_layout, decode_stamp,
                              decompress, image_layout, inflate, parse_image, read_stamp_file)


def same_pixels(a: np.ndarray, b: np.ndarray) -> None:
    """Equal shape, float32, and equal bit for bit where not NaN, NaN at the same places."""
    assert a.dtype == np.float32 and b.dtype == np.float32
    assert a.shape == b.shape
    assert np.array_equal(a, b, equal_nan=True)


def fits_bytes(data: np.ndarray, **cards) -> bytes:
    hdu = fits.PrimaryHDU(data)
    for key, value in cards.items():
        hdu.header[key] = value
    buf = io.BytesIO()
    hdu.writeto(buf)
    return buf.getvalue()


def scaled_fits_bytes(data: np.ndarray, bitpix: int, bscale: float, bzero: float) -> bytes:
    """Raw integer/float ``data`` stored as is, with BSCALE/BZERO cards (no rescaling on write)."""
    hdu = fits.PrimaryHDU(data, do_not_scale_image_data=True)
    hdu.header["BSCALE"] = bscale
    hdu.header["BZERO"] = bzero
    buf = io.BytesIO()
    hdu.writeto(buf)
    assert hdu.header["BITPIX"] == bitpix
    return buf.getvalue()


def reference(raw: bytes) -> np.ndarray:
    return astropy_image(raw)


@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "int64", "float32", "float64"])
def test_every_bitpix_matches_astropy(dtype):
    rng = np.random.default_rng(1)
    data = (rng.normal(0, 1e3, (63, 61)) if dtype.startswith("float")
            else rng.integers(0, 120 if dtype == "uint8" else 30000, (63, 61))).astype(dtype)
    if dtype.startswith("float"):
        data[3, 4] = np.nan
        data[5, 6] = np.finfo(np.float32).max
    raw = fits_bytes(data)
    same_pixels(parse_image(raw), reference(raw))


@pytest.mark.parametrize("dtype,bitpix", [("uint8", 8), ("int16", 16), ("int32", 32), ("int64", 64),
                                          ("float32", -32), ("float64", -64)])
@pytest.mark.parametrize("bscale,bzero", [(0.1, 0.0), (1.0, 100.5), (2.5e-3, -17.25), (3.0, 7.0)])
def test_bscale_bzero_match_astropy(dtype, bitpix, bscale, bzero):
    rng = np.random.default_rng(bitpix + 100)
    data = (rng.normal(0, 100, (21, 25)) if bitpix < 0 else rng.integers(0, 127, (21, 25))).astype(dtype)
    raw = scaled_fits_bytes(data, bitpix, bscale, bzero)
    same_pixels(parse_image(raw), reference(raw))


@pytest.mark.parametrize("dtype", ["uint16", "uint32", "int8"])
def test_pseudo_unsigned_and_signed_bytes_match_astropy(dtype):
    info = np.iinfo(dtype)
    data = np.linspace(info.min, info.max, 30 * 30).astype(dtype).reshape(30, 30)
    raw = fits_bytes(data)
    same_pixels(decode_stamp(raw, "x.fits"), reference(raw))


def test_uint64_goes_to_astropy():
    raw = fits_bytes(np.arange(16, dtype=np.uint64).reshape(4, 4) + np.uint64(2**63))
    with pytest.raises(Unsupported):
        parse_image(raw)
    same_pixels(decode_stamp(raw, "x.fits"), reference(raw))


def test_gzip_and_plain_bytes_decode_the_same():
    data = np.random.default_rng(0).normal(size=(63, 63)).astype(np.float32)
    raw = fits_bytes(data)
    same_pixels(decode_stamp(gzip.compress(raw), "x.fits.gz"), decode_stamp(raw, "x.fits"))
    same_pixels(decode_stamp(raw, "x.fits"), data)


def test_integer_data_with_blank_is_read_by_astropy():
    data = np.arange(100, dtype=np.int16).reshape(10, 10)
    raw = fits_bytes(data, BLANK=5)
    with pytest.raises(Unsupported):
        parse_image(raw)
    out = decode_stamp(raw, "x.fits")
    same_pixels(out, reference(raw))
    assert np.isnan(out[0, 5])


def test_image_in_an_extension_and_cubes_go_to_astropy():
    data = np.arange(36, dtype=np.float32).reshape(6, 6)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data)]).writeto(buf)
    same_pixels(decode_stamp(buf.getvalue(), "ext.fits"), data)
    cube = fits_bytes(np.zeros((2, 6, 6), np.float32))
    with pytest.raises(Unsupported):
        parse_image(cube)
    with pytest.raises(InputFileError, match=r"cube.fits \(candid 7\).*2-d FITS image, got \(2, 6, 6\)"):
        decode_stamp(cube, "cube.fits", "candid 7")


def test_compressed_image_goes_to_astropy():
    data = np.random.default_rng(2).normal(size=(16, 16)).astype(np.float32)
    buf = io.BytesIO()
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, compression_type="GZIP_1")]).writeto(buf)
    raw = buf.getvalue()
    same_pixels(decode_stamp(raw, "c.fits"), reference(raw))


@pytest.mark.parametrize("cut", [100, 2880, 2880 + 10])
def test_truncated_stamps_are_errors(cut):
    raw = fits_bytes(np.ones((63, 63), np.float32))
    with pytest.raises(Corrupt if cut > 2880 else Exception):
        parse_image(raw[:cut])
    with pytest.raises(InputFileError, match="t.fits"):
        decode_stamp(raw[:cut], "t.fits", "cutoutScience")
    with pytest.raises(InputFileError, match="gzip"):
        decode_stamp(gzip.compress(raw)[:-20], "t.fits.gz", "cutoutScience")


# named cases: an id made from the gzip bytes would carry the time of collection (gzip's mtime), and
# the two test processes of scripts/test.sh must collect the same ids
@pytest.mark.parametrize("blob", [b"", b"not a fits file at all" * 200, gzip.compress(b"PNG" * 1000, mtime=0),
                                  None, 5], ids=["empty", "text", "gzip-not-fits", "none", "int"])
def test_not_fits_is_an_error_naming_the_file(blob):
    with pytest.raises(InputFileError, match=r"bad\.avro \(candid 1, cutoutDifference\)"):
        decode_stamp(blob, "bad.avro", "candid 1, cutoutDifference")


@pytest.fixture
def nothing_remembered(monkeypatch):
    """rbda.ingest.fits remembers no header in this test (and as it did after it)."""
    monkeypatch.setattr(rbda_fits, "_last_header", [(b"", None)])
    return rbda_fits._last_header


def outcome(fn, raw):
    """What ``fn(raw)`` gives: its result, or its exception's type and message."""
    try:
        return fn(raw)
    except Exception as exc:  # noqa: BLE001
        return type(exc), str(exc)


def test_a_remembered_header_gives_what_reading_it_card_by_card_gives(nothing_remembered):
    """The last header read is remembered by its bytes up to END; the next stamp of the same header gets
    the same layout, pixels and errors as reading its cards would give: a header block cut short, or data
    cut short, are still refused, with the same message."""
    rng = np.random.default_rng(5)
    first, second = (fits_bytes(rng.normal(size=(63, 63)).astype(np.float32)) for _ in range(2))
    same_pixels(parse_image(first), reference(first))
    key, remembered = nothing_remembered[0]
    assert key == first[: first.index(b"END" + b" " * 77) + 80]
    assert cached_image_layout(second) is remembered
    same_pixels(parse_image(second), reference(second))
    assert cached_image_layout(second) == image_layout(second)
    for cut in (600, 2000, 2879, 2880, 2880 + 100, 2880 + 63 * 63 * 4 - 1):  # the header block, the data, cut short
        with_it = outcome(parse_image, second[:cut])
        nothing_remembered[0] = (b"", None)
        assert with_it == outcome(parse_image, second[:cut]), cut
        assert with_it[0] is Corrupt, (cut, with_it)
        parse_image(first)  # (remembered again)


def test_headers_that_differ_or_fail_are_read_card_by_card(nothing_remembered):
    """Alternating headers (Rubin's carry each cutout's WCS) are each read card by card and give their own
    layouts; a header that fails is not remembered; END's 80 bytes inside a card before the END card
    (a comment, then a blank card) do not cut the remembered bytes short."""
    rng = np.random.default_rng(6)
    stamps = [fits_bytes(rng.normal(size=(30, 30)).astype(np.float32), CRVAL1=float(i)) for i in range(3)]
    stamps += [fits_bytes(np.ones((size, 3), np.float32)) for size in (4, 5)]
    for raw in stamps * 2:
        same_pixels(parse_image(raw), reference(raw))
    remembered = nothing_remembered[0]
    for raw in (stamps[-1].replace(b"NAXIS1  =", b"NAXISX  ="), fits_bytes(np.ones((4, 4), np.int16), BLANK=-1)):
        with pytest.raises(Unsupported):
            parse_image(raw)
        assert nothing_remembered[0] == remembered
    good = fits_bytes(np.ones((4, 4), np.float32))
    comment = b"COMMENT " + b"x" * 29 + b"END" + b" " * 40  # then a blank card
    shifted = good[:80] + comment + b" " * 80 + good[80:2880 - 160] + good[2880:]
    assert shifted.index(b"END" + b" " * 77) % 80 != 0
    same_pixels(parse_image(shifted), reference(shifted))
    assert nothing_remembered[0][0] == shifted[: shifted.index(b"END" + b" " * 77, 200) + 80]
    other = shifted.replace(b"NAXIS1  =                    4", b"NAXIS1  =                    2")
    same_pixels(parse_image(other), reference(other))


def test_header_without_end_within_the_limit_is_refused():
    card = b"COMMENT".ljust(80)
    raw = b"SIMPLE  =                    T".ljust(80) + card * (36 * 101)
    with pytest.raises(Unsupported, match="longer than"):
        parse_image(raw)


def test_absurd_axes_are_not_parsed():
    raw = fits_bytes(np.ones((4, 4), np.float32)).replace(b"NAXIS1  =                    4",
                                                          b"NAXIS1  =              9999999")
    with pytest.raises(Unsupported):
        parse_image(raw)
    with pytest.raises(InputFileError):
        decode_stamp(raw, "big.fits")


def test_corrupt_gzip_is_the_callers_error_with_the_reason():
    blob = bytearray(gzip.compress(fits_bytes(np.random.default_rng(3).normal(size=(63, 63)).astype(np.float32))))
    blob[40:60] = bytes(b ^ 0xFF for b in blob[40:60])  # inside the deflate stream
    with pytest.raises(Corrupt, match="corrupt compressed stream"):
        inflate(bytes(blob), 16 + 15, MAX_STAMP_BYTES, Corrupt)
    with pytest.raises(InputFileError, match=r"c\.fits\.gz.*corrupt compressed stream"):
        decode_stamp(bytes(blob), "c.fits.gz")


def test_gzip_bomb_is_refused():
    with pytest.raises(InputFileError, match="more than"):
        decode_stamp(gzip.compress(b"\0" * (65 * 2**20)), "bomb.fits.gz")


def _isize(blob: bytes, size: int) -> bytes:
    """A gzip stream whose trailer claims ``size`` uncompressed bytes."""
    return blob[:-4] + (size % 2**32).to_bytes(4, "little")


def test_streams_libdeflate_refuses_decode_or_fail_as_zlib_ng_says():
    raw = fits_bytes(np.random.default_rng(4).normal(size=(63, 63)).astype(np.float32))
    blob = gzip.compress(raw)
    assert decompress(blob) == raw == decompress(blob + b"\0\0\0\0")  # trailing bytes: the stream's data, as zlib reads it
    assert decompress(blob + gzip.compress(b"second member")) == raw  # the first member, as zlib reads it
    with pytest.raises(Corrupt, match="corrupt compressed stream"):  # a trailer size that lies: zlib-ng's error
        decompress(_isize(blob, len(raw) - 1))
    with pytest.raises(Corrupt, match="more than 1000 bytes"):  # a bomb whose trailer claims a small size
        decompress(_isize(gzip.compress(b"\0" * 5000), 100), max_bytes=1000)
    with pytest.raises(Corrupt, match="truncated compressed stream"):
        decompress(blob[: len(blob) // 2])
    assert decompress(gzip.compress(b"")) == b""
    header = bytearray(blob[:10])
    header[3] |= 0x02  # a header CRC-16 (libdeflate skips it unchecked): zlib-ng reads it and finds it wrong
    with pytest.raises(Corrupt, match="header crc mismatch"):
        decompress(bytes(header) + b"\0\0" + blob[10:])


def _outcome(fn, blob):
    try:
        return fn(blob)
    except Corrupt as exc:
        return f"Corrupt: {exc}"


def test_damaged_streams_give_libdeflates_path_the_bytes_or_error_of_zlib_ngs():
    rng = np.random.default_rng(5)
    blob = gzip.compress(fits_bytes(rng.normal(size=(63, 63)).astype(np.float32)))
    limit = 30_000  # the stream inflates to 20,160 bytes
    kinds = set()
    for i in range(300):
        damaged = bytearray(blob)
        low, high = (4, 10) if i % 3 == 0 else (0, len(damaged))  # a third in the header's MTIME, XFL and OS
        for pos in rng.integers(low, high, size=rng.integers(1, 4)):
            damaged[pos] = int(rng.integers(0, 256))
        damaged = bytes(damaged[: rng.choice([len(damaged), int(rng.integers(10, len(damaged)))])])
        outcome = _outcome(lambda b: decompress(b, limit), damaged)
        assert outcome == _outcome(lambda b: inflate(b, 16 + 15, limit, Corrupt), damaged)
        kinds.add(type(outcome))
    assert kinds == {bytes, str}  # both paths' results compared, not only their errors


# --- the real samples -----------------------------------------------------------------------------

@pytest.mark.realsamples
def test_real_ztf_pickle_cutouts_match_astropy(real_samples):
    from rbda.ingest.safe_pickle import load_pickle

    n = 0
    for name in ("small_dataset.pkl", "single_stamp.pkl"):
        frame = load_pickle(real_samples / "ztf_alerce" / name, encoding="latin1")
        for column in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
            for blob in frame[column]:
                same_pixels(decode_stamp(blob, name), reference(gzip.decompress(blob)))
                n += 1
    assert n == 93


@pytest.mark.realsamples
def test_real_ztf_avro_cutouts_match_astropy(real_samples):
    import fastavro

    files = sorted((real_samples / "ztf_avro").glob("*.avro"))
    assert len(files) == 20
    for path in files:
        with open(path, "rb") as fh:
            for packet in fastavro.reader(fh):
                for column in ("cutoutScience", "cutoutTemplate", "cutoutDifference"):
                    blob = packet[column]["stampData"]
                    raw = gzip.decompress(blob)
                    fast = parse_image(raw)  # the fast path itself, no fallback
                    same_pixels(fast, reference(raw))


@pytest.mark.realsamples
def test_real_atlas_stamps_match_astropy(real_samples):
    for kind in ("istamp", "dstamp"):
        path = real_samples / "atlas" / f"01a59897o0020c_000002_{kind}.fits.gz"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = astropy_image(path, ignore_missing_simple=True)
        fast = parse_image(gzip.decompress(path.read_bytes()))
        same_pixels(fast, expected)
        same_pixels(read_stamp_file(path, ignore_missing_simple=True), expected)
        assert fast.shape == (61, 61)
