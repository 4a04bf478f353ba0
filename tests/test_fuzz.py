"""A bounded fuzz pass over the byte-level readers: FITS stamps and Avro alert packets.

Hypothesis mutates valid files (byte flips, insertions, truncations, spliced header
values) and also draws raw bytes; each reader must either return what it promises (a
2-d float32 image; alert batches whose ids are strings) or raise the error a user sees
(:class:`~rbda.errors.InputFileError`), never another exception, and must answer within
a few seconds per input (a hang fails the example). Examples are derandomised (the same
inputs on every run) and bounded, so the pass takes seconds; marked ``fuzz`` to run it
alone (``pytest -m fuzz``). Anything it found is pinned in ``test_found_by_fuzzing``.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import signal

import fastavro
import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rbda.alerts.packets import AlertReader  # noqa: E402
from rbda.errors import InputFileError  # noqa: E402
from rbda.ingest.fits import decode_stamp  # noqa: E402
from test_predict import SCHEMA, fits_blob, packet  # noqa: E402

pytestmark = pytest.mark.fuzz

#: Seconds one input may take (a hang fails the example).
PER_INPUT_SECONDS = 5
FUZZ = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@contextlib.contextmanager
def answer_within(seconds: int = PER_INPUT_SECONDS):
    def alarm(signum, frame):
        raise TimeoutError(f"no answer in {seconds} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    image = rng.normal(size=(25, 25))
    plain = fits_blob(image, compress=False)
    ints = io.BytesIO()
    from astropy.io import fits

    fits.PrimaryHDU((image * 100).astype(np.int16)).writeto(ints)
    return {"plain": plain, "gzip": gzip.compress(plain), "int16": ints.getvalue()}


FITS_SEEDS = _seeds()


@st.composite
def mutated(draw, seeds: dict[str, bytes]):
    """A seed file with a few byte-level mutations: flips, overwrites, insertions, deletions, a cut."""
    data = bytearray(seeds[draw(st.sampled_from(sorted(seeds)))])
    for _ in range(draw(st.integers(0, 6))):
        if not data:
            break
        kind = draw(st.sampled_from(["flip", "write", "insert", "delete", "cut", "card"]))
        pos = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "write":
            chunk = draw(st.binary(min_size=1, max_size=16))
            data[pos:pos + len(chunk)] = chunk
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=64))
        elif kind == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif kind == "cut":
            del data[pos:]
        else:  # a header card's value replaced by a hostile one (FITS cards are 80 bytes)
            card = draw(st.integers(0, 8)) * 80
            value = draw(st.sampled_from([b"-999999999", b"99999999999", b"0", b"1e308", b"NAN", b"'x'", b"T", b"F"]))
            data[card + 10:card + 30] = value.rjust(20)
    return bytes(data)


def _check_image(blob: bytes) -> None:
    with answer_within():
        try:
            image = decode_stamp(blob, "fuzz.fits", max_bytes=2**20)
        except InputFileError:
            return
    assert isinstance(image, np.ndarray) and image.ndim == 2 and image.dtype == np.float32


@FUZZ
@given(mutated(FITS_SEEDS))
def test_fits_decoder_on_mutated_stamps(blob):
    _check_image(blob)


@FUZZ
@given(st.binary(max_size=6000))
def test_fits_decoder_on_raw_bytes(blob):
    _check_image(blob)


def _avro_seeds() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    out = {}
    for codec in ("null", "deflate", "snappy"):
        buf = io.BytesIO()
        fastavro.writer(buf, SCHEMA, [packet(i, rng, size=21 + 2 * i) for i in range(3)], codec=codec,
                        sync_interval=4000)
        out[codec] = buf.getvalue()
    return out


AVRO_SEEDS = _avro_seeds()


def _check_packets(tmp_path_factory, blob: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "p.avro"
    path.write_bytes(blob)
    with answer_within():
        reader = AlertReader([path], skip_bad=True)
        batches = list(reader.batches())
        strict = AlertReader([path])
        try:
            strict_count = sum(len(b) for b in strict.batches())
        except InputFileError:
            strict_count = None
    for batch in batches:
        assert batch.raw.images.dtype == np.float32 and batch.raw.images.shape[1:] == (3, 63, 63) or \
            batch.raw.images.shape[2] == batch.raw.images.shape[3]
        assert all(isinstance(c, str) and c for c in batch.columns["candid"])
    assert all(b.reason for b in reader.bad)
    if strict_count is not None:
        assert strict_count == sum(len(b) for b in batches) and not reader.bad


@FUZZ
@given(blob=mutated(AVRO_SEEDS))
def test_alert_reader_on_mutated_packets(tmp_path_factory, blob):
    _check_packets(tmp_path_factory, blob)


@FUZZ
@given(blob=st.binary(max_size=3000).map(lambda b: b"Obj\x01" + b))
def test_alert_reader_on_raw_bytes_after_the_magic(tmp_path_factory, blob):
    _check_packets(tmp_path_factory, blob)


def test_found_by_fuzzing():
    """Pinned: a stamp astropy reads (here: a BLANK card hands it over) whose data is cut short was
    returned with made-up pixels and only a warning; it is an error like any truncated stamp."""
    from astropy.io import fits

    buf = io.BytesIO()
    hdu = fits.PrimaryHDU(np.arange(625, dtype=np.int16).reshape(25, 25))
    hdu.header["BLANK"] = -32768
    hdu.writeto(buf)
    whole = buf.getvalue()
    assert decode_stamp(whole, "ok.fits").shape == (25, 25)
    data_end = 2880 + 25 * 25 * 2  # one header block, then the int16 pixels
    for cut in (8, 1000):
        with pytest.raises(InputFileError, match="truncated"):
            decode_stamp(whole[:data_end - cut], "cut.fits")
