"""Download a raw survey archive over HTTP(S) and unpack it.

:func:`download` fetches ``url`` into ``output`` with

* **retries** with exponential back-off on transient failures (a dropped
  connection, a timeout, HTTP 408/425/429/5xx);
* **resume**: bytes arrive in ``output + ".part"``; after a drop, the next
  attempt asks for the rest with an HTTP ``Range`` request (a server that
  ignores it sends the whole file again, which replaces the partial one);
* a **sha256** check when an expected digest is given;
* an **atomic rename** of the complete ``.part`` file to ``output``.

The partial file has a fixed name (rather than the random one of
:func:`rbda.atomic.atomic_path`) precisely so that a later call can resume it.
A permanent failure (HTTP 404, a checksum mismatch) removes it, so nothing is
left behind; when only the retries run out it is kept for the next call, and
the error says so.

:func:`unpack` extracts a tar (any compression) or zip archive into a
temporary folder beside the destination and renames it into place; any other
file is placed in the folder as it is (hard link, or a copy across devices).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

from rbda import __version__
from rbda.errors import RbdaError, SettingError
from rbda.progress import Progress

log = logging.getLogger(__name__)

CHUNK_BYTES = 1 << 20
# HTTP statuses worth retrying; any other error status is final.
TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
SHA256_PATTERN = re.compile(r"^[0-9a-fA-F]{64}$")


class DownloadError(RbdaError):
    """A download that failed for good (after retries, or at once for a permanent error)."""


class _Transient(Exception):
    """An attempt failed in a way that another attempt may fix."""


def part_path(output: Path) -> Path:
    """Where the bytes of ``output`` accumulate until the download is complete."""
    return output.with_name(output.name + ".part")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_range_start(value: str | None) -> int | None:
    """The first byte of a ``Content-Range: bytes START-END/TOTAL`` header."""
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value or "")
    return int(match.group(1)) if match else None


def _attempt(url: str, part: Path, timeout: float, log_every: float) -> None:
    """One request: append the missing bytes to ``part``; raise :class:`_Transient` to retry."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": f"rbda/{__version__}"})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:
            # Our partial file is not a prefix the server recognises: start over.
            part.unlink()
            raise _Transient(f"HTTP 416 for a resume at byte {have}; restarting") from exc
        if exc.code in TRANSIENT_STATUSES:
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"download of {url} failed: HTTP {exc.code} {exc.reason}") from exc
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        raise _Transient(f"cannot connect: {getattr(exc, 'reason', exc)}") from exc

    with response:
        status = response.status
        if status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if not have or start != have:
                with contextlib.suppress(FileNotFoundError):
                    part.unlink()
                raise _Transient(f"asked for bytes from {have}, got a part starting at {start}; restarting")
            mode, done = "ab", have
        else:
            if have:
                log.info("server sent the whole file again (HTTP %s); discarding %d partial bytes", status, have)
            mode, done = "wb", 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        progress = Progress(total, f"download {part.name[:-5]}", unit="bytes", log_every=log_every)
        try:
            with open(part, mode) as f:
                while True:
                    block = response.read(CHUNK_BYTES)
                    if not block:
                        break
                    f.write(block)
                    done += len(block)
                    progress.update(done)
        except (http.client.HTTPException, OSError) as exc:
            raise _Transient(f"connection dropped after {done} bytes: {exc!r}") from exc
        finally:
            progress.close()
        if total is not None and done < total:
            raise _Transient(f"connection closed after {done} of {total} bytes")


def download(
    url: str,
    output: str | Path,
    sha256: str | None = None,
    *,
    retries: int = 5,
    backoff_seconds: float = 2.0,
    timeout: float = 60.0,
    log_every: float = 30.0,
) -> Path:
    """Download ``url`` to ``output`` (see the module docstring); return ``output``."""
    output = Path(output)
    if sha256 is not None and not SHA256_PATTERN.match(sha256):
        raise SettingError("--sha256", "64 hexadecimal digits", sha256)
    if urllib.parse.urlsplit(url).scheme not in {"http", "https", "ftp"}:
        raise SettingError("--url", "an http://, https:// or ftp:// URL", url)
    if retries < 0:
        raise SettingError("--retries", "a number >= 0", retries)
    output.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(output)

    for attempt in range(retries + 1):
        try:
            _attempt(url, part, timeout, log_every)
            break
        except _Transient as exc:
            if attempt == retries:
                kept = f"; the {part.stat().st_size} bytes received are kept in {part} for the next call" if part.exists() else ""
                raise DownloadError(f"download of {url} failed after {retries + 1} attempts: {exc}{kept}") from exc
            wait = backoff_seconds * 2**attempt
            log.warning("attempt %d of %d failed (%s); retrying in %.1f s", attempt + 1, retries + 1, exc, wait)
            time.sleep(wait)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
            raise

    if sha256 is not None:
        got = sha256_of(part)
        if got.lower() != sha256.lower():
            part.unlink()
            raise DownloadError(
                f"download of {url}: sha256 mismatch, expected {sha256.lower()}, got {got}; "
                "the file was deleted (check the URL and the configured sha256)"
            )
        log.info("sha256 verified: %s", got)
    os.replace(part, output)
    log.info("downloaded %s -> %s (%d bytes)", url, output, output.stat().st_size)
    return output


def _is_tar(archive: Path) -> bool:
    try:
        return tarfile.is_tarfile(archive)
    except (EOFError, OSError, zlib.error, tarfile.TarError) as exc:
        # A compressed stream that ends early or is corrupt (gzip raises EOFError).
        raise RbdaError(f"{archive}: cannot unpack the tar archive: {exc!r}") from exc


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tar:
        # The "data" filter refuses absolute paths, "..", links outside the
        # folder and device files.
        tar.extractall(into, filter="data")


def _extract_zip(archive: Path, into: Path) -> None:
    root = into.resolve()
    with zipfile.ZipFile(archive) as zf:
        for name in zf.namelist():
            target = (into / name).resolve()
            if root != target and root not in target.parents:
                raise RbdaError(f"{archive}: member {name!r} would be written outside {into}")
        zf.extractall(into)


def unpack(archive: str | Path, destination: str | Path, file_name: str | None = None) -> Path:
    """Unpack ``archive`` into the folder ``destination``, which must not exist or be empty.

    A tar or zip archive is extracted; any other file is placed in the folder
    under ``file_name`` (default: its own name). The folder appears complete
    or not at all.
    """
    archive, destination = Path(archive), Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise SettingError("--unpack-to", "a folder that does not exist yet or is empty", str(destination))
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".unpacking", dir=destination.parent))
    try:
        if zipfile.is_zipfile(archive):
            _extract_zip(archive, staging)
            kind = "zip archive"
        elif _is_tar(archive):
            try:
                _extract_tar(archive, staging)
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise RbdaError(f"{archive}: cannot unpack the tar archive: {exc}") from exc
            kind = "tar archive"
        else:
            placed = staging / (file_name or archive.name)
            try:
                os.link(archive, placed)
            except OSError:
                shutil.copy2(archive, placed)
            kind = "single file"
        if destination.exists():
            destination.rmdir()
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    n_files = sum(1 for p in destination.rglob("*") if p.is_file())
    log.info("unpacked %s (%s) into %s: %d files", archive, kind, destination, n_files)
    return destination


def url_file_name(url: str) -> str | None:
    """The last path component of ``url`` (``all_chunks.tar.gz``), or None."""
    name = urllib.parse.unquote(urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1])
    return name or None
