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
file is placed in the folder as it is (hard link, or a copy across devices),
under a plain base name (:func:`url_file_name` / :func:`safe_file_name`).
Archives are hostile: every member is checked by rbda itself before anything
is written (a regular file or a folder, a relative name without ``..``, a
target that resolves inside the destination) and then streamed to that path;
links, devices and FIFOs refuse the whole archive, naming it and the member.
The standard library's ``filter="data"`` is not relied on: Python releases
before 3.11.13 / 3.12.11 let a path longer than PATH_MAX through it
(CVE-2025-4517).
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import stat
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
from rbda.atomic import current_umask
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
    else:
        log.warning("%s: no sha256 given, so the downloaded file is not verified "
                    "(its sha256 is %s; set it in the config or with --sha256 to check later downloads)",
                    url, sha256_of(part))
    os.replace(part, output)
    log.info("downloaded %s -> %s (%d bytes)", url, output, output.stat().st_size)
    return output


def _is_tar(archive: Path) -> bool:
    try:
        return tarfile.is_tarfile(archive)
    except (EOFError, OSError, zlib.error, tarfile.TarError) as exc:
        # A compressed stream that ends early or is corrupt (gzip raises EOFError).
        raise RbdaError(f"{archive}: cannot unpack the tar archive: {exc!r}") from exc


class RefusedMember(RbdaError):
    """An archive member that is not a plain file or folder inside the destination."""

    def __init__(self, archive: Path, member: str, why: str):
        self.archive, self.member = archive, member
        super().__init__(
            f"{archive}: refusing to unpack member {member!r}: {why}; only regular files and "
            "folders inside the destination are unpacked, and nothing was unpacked"
        )


def _member_parts(archive: Path, name: str) -> tuple[str, ...]:
    """The path components of a member name, checked: relative, no ``..``, no NUL."""
    if "\x00" in name:
        raise RefusedMember(archive, name, "the name holds a NUL character")
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        raise RefusedMember(archive, name, "an absolute path")
    parts = tuple(part for part in re.split(r"[/\\]", name) if part not in ("", "."))
    if ".." in parts:
        raise RefusedMember(archive, name, "a path with a '..' component")
    return parts


def _checked_target(archive: Path, name: str, parts: tuple[str, ...], root: Path) -> Path:
    """``root / parts``, after checking that it resolves inside ``root``."""
    target = root.joinpath(*parts)
    resolved = Path(os.path.realpath(target))
    if resolved == root or root not in resolved.parents:
        raise RefusedMember(archive, name, f"it would be written at {resolved}, outside the destination")
    return target


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"


def _tar_kind(member: tarfile.TarInfo) -> str | None:
    """Why a tar member is refused (None for a regular file or a folder)."""
    if member.isreg() or member.isdir():
        return None
    if member.issym():
        return f"a symbolic link (to {_shorten(member.linkname)!r})"
    if member.islnk():
        return f"a hard link (to {_shorten(member.linkname)!r})"
    if member.ischr() or member.isblk():
        return "a device file"
    if member.isfifo():
        return "a FIFO"
    return f"a tar member of type {member.type!r}, not a regular file or folder"


def _zip_kind(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member is refused (None for a regular file or a folder)."""
    mode = info.external_attr >> 16
    if info.is_dir() or not stat.S_IFMT(mode) or stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None  # no Unix file type recorded (Windows, zipfile.writestr): a plain file
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return f"a zip member of Unix mode {oct(mode)}, not a regular file or folder"


def _write_member(source, target: Path, mode: int) -> None:
    """Stream ``source`` into a new regular file ``target`` (never through a link)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(target, flags, mode)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK_BYTES)


def _extract(archive: Path, into: Path, members: list, name_of, kind_of, is_dir, open_member) -> None:
    """Check every member first, then create its folder or stream its bytes to the checked path.

    rbda's own checks, not only the standard library's ``filter="data"``
    (which Python before 3.11.13 / 3.12.11 lets through with a path longer
    than PATH_MAX, CVE-2025-4517): a member is a regular file or a folder, its
    name relative without ``..``, and its target resolves inside ``into``.
    Nothing but folders and regular files is ever created, so no later member
    can be redirected by a link an earlier one made.
    """
    root = Path(os.path.realpath(into))
    umask = current_umask()
    checked = []
    for member in members:
        name = name_of(member)
        parts = _member_parts(archive, name)
        why = kind_of(member)
        if why is not None:
            raise RefusedMember(archive, name, why)
        if not parts:
            if is_dir(member):
                continue  # "./", the destination itself (tar -C folder -cf x.tar .)
            raise RefusedMember(archive, name, "a file without a name")
        checked.append((member, name, _checked_target(archive, name, parts, root)))
    for member, name, target in checked:
        # Re-checked at write time: the folders above were made by earlier members.
        _checked_target(archive, name, target.relative_to(root).parts, root)
        if is_dir(member):
            target.mkdir(parents=True, exist_ok=True)
            continue
        if target.is_dir():
            raise RefusedMember(archive, name, "a file with the name of a folder made by an earlier member")
        with open_member(member) as source:
            _write_member(source, target, 0o666 & ~umask)


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tar:
        _extract(archive, into, tar.getmembers(), lambda m: m.name, _tar_kind, tarfile.TarInfo.isdir,
                 tar.extractfile)


def _extract_zip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        _extract(archive, into, zf.infolist(), lambda i: i.filename, _zip_kind, zipfile.ZipInfo.is_dir,
                 zf.open)


def unpack(archive: str | Path, destination: str | Path, file_name: str | None = None) -> Path:
    """Unpack ``archive`` into the folder ``destination``, which must not exist or be empty.

    A tar or zip archive is extracted (regular files and folders only: any
    other member, or one whose path leads outside, refuses the whole archive
    with the archive and member named); any other file is placed in the folder
    under ``file_name`` (default: its own name), a plain base name. The folder
    appears complete or not at all, with the mode a plain ``mkdir`` gives.
    """
    archive, destination = Path(archive), Path(destination)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise SettingError("--unpack-to", "a folder that does not exist yet or is empty", str(destination))
    if file_name is not None and safe_file_name(file_name) != file_name:
        raise SettingError("file name", "a plain base name (no '/', '\\', '..', control characters, "
                                        "leading dot)", file_name)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{destination.name}.", suffix=".unpacking", dir=destination.parent))
    try:
        if zipfile.is_zipfile(archive):
            try:
                _extract_zip(archive, staging)
            except (zipfile.BadZipFile, EOFError, OSError, zlib.error, NotImplementedError) as exc:
                raise RbdaError(f"{archive}: cannot unpack the zip archive: {exc}") from exc
            kind = "zip archive"
        elif _is_tar(archive):
            try:
                _extract_tar(archive, staging)
            except (tarfile.TarError, EOFError, OSError, zlib.error) as exc:
                raise RbdaError(f"{archive}: cannot unpack the tar archive: {exc}") from exc
            kind = "tar archive"
        else:
            placed = staging / (file_name or archive.name)
            try:
                os.link(archive, placed)
            except FileExistsError:
                raise
            except OSError:
                # Exclusive creation: the fallback never replaces an existing file.
                with open(archive, "rb") as source, open(placed, "xb") as out:
                    shutil.copyfileobj(source, out, CHUNK_BYTES)
                shutil.copystat(archive, placed)
            kind = "single file"
        # mkdtemp makes the staging folder 0700; the destination gets a plain mkdir's mode.
        os.chmod(staging, 0o777 & ~current_umask())
        if destination.exists():
            destination.rmdir()
        os.replace(staging, destination)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    n_files = sum(1 for p in destination.rglob("*") if p.is_file())
    log.info("unpacked %s (%s) into %s: %d files", archive, kind, destination, n_files)
    return destination


#: The name a URL whose path leaves no usable file name is saved under.
FALLBACK_FILE_NAME = "download"
_UNSAFE_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def safe_file_name(name: str) -> str:
    """``name`` reduced to a plain base name: the last ``/`` or ``\\`` component, control
    characters (NUL included) removed, leading dots and surrounding blanks stripped;
    :data:`FALLBACK_FILE_NAME` when nothing is left."""
    base = re.split(r"[/\\]", name)[-1]
    base = _UNSAFE_CHARACTERS.sub("", base).strip().lstrip(".").strip()
    return base or FALLBACK_FILE_NAME


def url_file_name(url: str) -> str:
    """A safe file name for what ``url`` serves: its path's last component (``all_chunks.tar.gz``).

    The path is unquoted *before* it is split, so ``%2F``, ``%5C`` and ``..%2F`` cannot
    smuggle a folder into the name; the result is a plain base name
    (:func:`safe_file_name`), :data:`FALLBACK_FILE_NAME` when the path has none.
    """
    path = urllib.parse.unquote(urllib.parse.urlsplit(url).path)
    return safe_file_name(path.rstrip("/\\"))
