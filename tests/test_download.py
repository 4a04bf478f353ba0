"""`rbda download` against a local HTTP server on 127.0.0.1 (no network needed)."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from rbda.cli import main as rbda_main
from rbda.ingest.download import FALLBACK_FILE_NAME, DownloadError, download, part_path, unpack, url_file_name
from rbda.errors import RbdaError, SettingError

PAYLOAD = bytes(range(256)) * 4000  # 1,024,000 bytes


def make_tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


ARCHIVE_FILES = {"chunks/chunk_0.pkl": b"first chunk", "chunks/chunk_1.pkl": b"second chunk"}
ARCHIVE = make_tar_gz(ARCHIVE_FILES)


class Handler(http.server.BaseHTTPRequestHandler):
    """Routes:

    /data.bin        the payload, honouring Range requests (206)
    /archive.tar.gz  a small tar.gz archive
    /drop-once.bin   the first request promises the payload but closes halfway
    /drop-always.bin every request closes halfway
    /no-range.bin    drops halfway once, then ignores Range (always 200, whole file)
    /busy-once.bin   HTTP 503 once, then the payload
    anything else    404
    """

    protocol_version = "HTTP/1.1"
    server: "RecordingServer"

    def log_message(self, *args: object) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        record = self.server.record(self.path, self.headers.get("Range"))
        if self.path == "/data.bin":
            self.send_payload(PAYLOAD, honour_range=True)
        elif self.path == "/archive.tar.gz":
            self.send_payload(ARCHIVE, honour_range=True)
        elif self.path == "/drop-once.bin":
            if record == 1:
                self.send_truncated(PAYLOAD)
            else:
                self.send_payload(PAYLOAD, honour_range=True)
        elif self.path == "/drop-always.bin":
            self.send_truncated(PAYLOAD)
        elif self.path == "/no-range.bin":
            if record == 1:
                self.send_truncated(PAYLOAD)
            else:
                self.send_payload(PAYLOAD, honour_range=False)
        elif self.path == "/busy-once.bin" and record == 1:
            self.send_error(503, "busy")
        elif self.path == "/busy-once.bin":
            self.send_payload(PAYLOAD, honour_range=True)
        else:
            self.send_error(404, "Not Found")

    def send_payload(self, data: bytes, honour_range: bool) -> None:
        start = 0
        requested = self.headers.get("Range")
        if honour_range and requested:
            start = int(requested.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def send_truncated(self, data: bytes) -> None:
        """Promise the whole body, send half of it, then drop the connection."""
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2])
        self.wfile.flush()
        self.close_connection = True


class RecordingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[tuple[str, str | None]] = []
        self.lock = threading.Lock()

    def record(self, path: str, range_header: str | None) -> int:
        """Log a request; return how many requests this path has had, this one included."""
        with self.lock:
            self.requests.append((path, range_header))
            return sum(1 for p, _ in self.requests if p == path)


@pytest.fixture()
def server():
    srv = RecordingServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


def fetch(url: str, output: Path, **kwargs) -> Path:
    kwargs.setdefault("retries", 3)
    kwargs.setdefault("backoff_seconds", 0.01)
    kwargs.setdefault("timeout", 5.0)
    return download(url, output, **kwargs)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_download_with_matching_checksum(server, tmp_path):
    out = tmp_path / "raw" / "data.bin"
    assert fetch(f"{server.url}/data.bin", out, sha256=sha(PAYLOAD).upper()) == out
    assert out.read_bytes() == PAYLOAD
    assert sorted(p.name for p in out.parent.iterdir()) == ["data.bin"]


def test_http_404_fails_at_once_and_leaves_nothing(server, tmp_path):
    out = tmp_path / "missing.bin"
    with pytest.raises(DownloadError, match=r"missing\.bin failed: HTTP 404"):
        fetch(f"{server.url}/missing.bin", out)
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests) == 1  # a 404 is not retried


def test_dropped_connection_resumes_with_range_request(server, tmp_path):
    out = tmp_path / "drop.bin"
    fetch(f"{server.url}/drop-once.bin", out, sha256=sha(PAYLOAD))
    assert out.read_bytes() == PAYLOAD
    half = len(PAYLOAD) // 2
    assert server.requests == [("/drop-once.bin", None), ("/drop-once.bin", f"bytes={half}-")]
    assert not part_path(out).exists()


def test_server_ignoring_range_restarts_from_scratch(server, tmp_path):
    out = tmp_path / "norange.bin"
    fetch(f"{server.url}/no-range.bin", out)
    assert out.read_bytes() == PAYLOAD  # not the first half followed by the whole file


def test_transient_http_error_is_retried(server, tmp_path):
    out = tmp_path / "busy.bin"
    fetch(f"{server.url}/busy-once.bin", out)
    assert out.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/busy-once.bin"] * 2


def test_connection_dropping_every_time_fails_and_keeps_only_the_partial_file(server, tmp_path):
    out = tmp_path / "always.bin"
    with pytest.raises(DownloadError, match=r"failed after 3 attempts: connection") as info:
        fetch(f"{server.url}/drop-always.bin", out, retries=2)
    assert not out.exists()
    assert str(part_path(out)) in str(info.value)  # the message says where the bytes are kept
    assert [p.name for p in tmp_path.iterdir()] == ["always.bin.part"]


def test_checksum_mismatch_fails_and_leaves_nothing(server, tmp_path):
    out = tmp_path / "data.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError, match=f"sha256 mismatch, expected {wrong}, got {sha(PAYLOAD)}"):
        fetch(f"{server.url}/data.bin", out, sha256=wrong)
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_clear_failure(tmp_path):
    srv = RecordingServer()  # bound, then closed: nothing listens on the port any more
    port = srv.server_address[1]
    srv.server_close()
    with pytest.raises(DownloadError, match="cannot connect"):
        fetch(f"http://127.0.0.1:{port}/data.bin", tmp_path / "x.bin", retries=1)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [({"sha256": "abc"}, "--sha256"), ({"retries": -1}, "--retries")],
)
def test_bad_settings_are_rejected_before_any_request(server, tmp_path, kwargs, setting):
    with pytest.raises(SettingError, match=setting):
        fetch(f"{server.url}/data.bin", tmp_path / "x.bin", **kwargs)
    assert server.requests == []


def test_bad_url_scheme_is_rejected(tmp_path):
    with pytest.raises(SettingError, match="--url"):
        download("file:///etc/passwd", tmp_path / "x")


def test_cli_downloads_and_unpacks_a_tar_archive(server, tmp_path):
    out = tmp_path / "archives" / "hits.download"
    dest = tmp_path / "raw" / "hits"
    status = rbda_main([
        "download", "--url", f"{server.url}/archive.tar.gz", "--sha256", sha(ARCHIVE),
        "--output", str(out), "--unpack-to", str(dest), "--retry-wait", "0.01",
    ])
    assert status == 0
    assert out.read_bytes() == ARCHIVE
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == ARCHIVE_FILES
    assert sorted(p.name for p in dest.parent.iterdir()) == ["hits"]  # no staging folder left


def test_cli_reports_a_404_without_traceback(server, tmp_path, capsys):
    out = tmp_path / "x.bin"
    status = rbda_main(["download", "--url", f"{server.url}/nothing.tar.gz", "--output", str(out)])
    assert status == 2
    assert "rbda download: error: download of" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_unpack_zip(tmp_path):
    archive = tmp_path / "ztf.download"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ztf/stamps.pkl", b"pickle bytes")
    unpack(archive, tmp_path / "raw")
    assert (tmp_path / "raw" / "ztf" / "stamps.pkl").read_bytes() == b"pickle bytes"


def test_unpack_plain_file_places_it_under_its_url_name(tmp_path):
    downloaded = tmp_path / "ztf.download"
    downloaded.write_bytes(b"not an archive")
    name = url_file_name("https://example.org/files/ztf%20stamps.pkl?dl=1")
    assert name == "ztf stamps.pkl"
    unpack(downloaded, tmp_path / "raw", file_name=name)
    assert (tmp_path / "raw" / "ztf stamps.pkl").read_bytes() == b"not an archive"


def test_unpack_refuses_a_non_empty_destination(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(ARCHIVE)
    dest = tmp_path / "raw"
    dest.mkdir()
    (dest / "keep.txt").write_text("user data")
    with pytest.raises(SettingError, match="--unpack-to"):
        unpack(archive, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


def test_unpack_rejects_path_traversal_and_leaves_nothing(tmp_path):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(make_tar_gz({"../outside.txt": b"x"}))
    with pytest.raises(RbdaError, match=r"refusing to unpack member '\.\./outside\.txt'"):
        unpack(archive, tmp_path / "raw")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz"]


def test_corrupt_tar_fails_cleanly(tmp_path):
    archive = tmp_path / "broken.tar.gz"
    archive.write_bytes(ARCHIVE[: len(ARCHIVE) // 2])
    with pytest.raises(RbdaError, match="cannot unpack the tar archive"):
        unpack(archive, tmp_path / "raw")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.tar.gz"]


# --- hostile archives: only regular files and folders inside the destination -------------

def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w") -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def unpack_refused(tmp_path: Path, archive_bytes: bytes, member_name: str, why: str, name: str = "evil.tar"):
    """Unpacking is refused naming the archive and the member; nothing is left anywhere."""
    archive = tmp_path / name
    archive.write_bytes(archive_bytes)
    with pytest.raises(RbdaError) as info:
        unpack(archive, tmp_path / "raw")
    message = str(info.value)
    assert str(archive) in message
    assert f"member {member_name!r}" in message
    assert why in message
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no staging folder, nothing outside
    return message


@pytest.mark.parametrize(
    ("members", "bad", "why"),
    [
        ([(member("/tmp/rbda-absolute.txt"), b"x")], "/tmp/rbda-absolute.txt", "an absolute path"),
        ([(member("ok.txt"), b"x"), (member("../outside.txt"), b"x")], "../outside.txt", "'..'"),
        ([(member("a/../../outside.txt"), b"x")], "a/../../outside.txt", "'..'"),
        ([(member("up", tarfile.SYMTYPE, ".."), None)], "up", "a symbolic link"),
        ([(member("etc", tarfile.SYMTYPE, "/etc"), None), (member("etc/rbda.txt"), b"x")], "etc", "a symbolic link"),
        # a link inside the destination, then a member written through it: old code admitted both
        ([(member("real"), b"x"), (member("alias", tarfile.SYMTYPE, "real"), None)], "alias", "a symbolic link"),
        # a chain of links, each step inside, the last one out
        ([(member("d", tarfile.DIRTYPE), None), (member("d/l1", tarfile.SYMTYPE, "l2"), None),
          (member("d/l2", tarfile.SYMTYPE, "../.."), None), (member("d/l1/x.txt"), b"x")], "d/l1", "a symbolic link"),
        ([(member("hard", tarfile.LNKTYPE, "/etc/passwd"), None)], "hard", "a hard link"),
        ([(member("real"), b"x"), (member("copy", tarfile.LNKTYPE, "real"), None)], "copy", "a hard link"),
        ([(member("null", tarfile.CHRTYPE), None)], "null", "a device file"),
        ([(member("disk", tarfile.BLKTYPE), None)], "disk", "a device file"),
        ([(member("pipe", tarfile.FIFOTYPE), None)], "pipe", "a FIFO"),
    ],
    ids=["absolute", "dotdot", "inner-dotdot", "symlink-up", "symlink-outside-then-write", "symlink-inside",
         "symlink-chain", "hardlink-outside", "hardlink-inside", "char-device", "block-device", "fifo"],
)
def test_unpack_refuses_hostile_tar_members(tmp_path, members, bad, why):
    unpack_refused(tmp_path, tar_bytes(members), bad, why)
    assert not Path("/tmp/rbda-absolute.txt").exists()


def path_overflow_tar(destination_length: int) -> bytes:
    """CVE-2025-4517: links whose resolved path passes PATH_MAX fool ``os.path.realpath``.

    ``a``..``p`` link to folders with long names, so ``a/b/.../p/lll...`` is short as
    written but longer than PATH_MAX once resolved: ``realpath`` then stops
    following links and takes ``lll.../..`` as a plain folder and its parent, while
    the kernel follows ``lll...`` (a link back to the top) and ``..`` leaves it.
    ``filter="data"`` before Python 3.11.13 / 3.12.11 admits ``escape/pwned.txt``.
    """
    steps = "abcdefghijklmnop"
    long_folder = "d" * min(247, (3950 - destination_length) // len(steps) - 1)
    members: list[tuple[tarfile.TarInfo, bytes | None]] = []
    path = ""
    for step in steps:
        members.append((member(f"{path}{long_folder}", tarfile.DIRTYPE), None))
        members.append((member(f"{path}{step}", tarfile.SYMTYPE, long_folder), None))
        path += long_folder + "/"
    loop = "/".join(steps) + "/" + "l" * 254
    members.append((member(loop, tarfile.SYMTYPE, "../" * len(steps)), None))
    members.append((member("escape", tarfile.SYMTYPE, loop + "/.."), None))
    members.append((member("escape/pwned.txt"), b"written outside the destination"))
    return tar_bytes(members)


def test_unpack_refuses_the_realpath_overflow_trick(tmp_path):
    # The staging folder the old code extracted into: <parent>/.raw.XXXXXXXX.unpacking
    archive_bytes = path_overflow_tar(len(str(tmp_path / ".raw.abcdefgh.unpacking")))
    # the first link refuses the archive; nothing is extracted, pwned.txt is never written
    unpack_refused(tmp_path, archive_bytes, "a", "a symbolic link")
    assert not (tmp_path / "pwned.txt").exists()


def zip_bytes(entries: list[tuple[str, bytes, int | None]]) -> bytes:
    """Zip entries (name, data, Unix mode or None)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, data, mode in entries:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("entries", "bad", "why"),
    [
        ([("/tmp/rbda-absolute.txt", b"x", None)], "/tmp/rbda-absolute.txt", "an absolute path"),
        ([("../outside.txt", b"x", None)], "../outside.txt", "'..'"),
        ([("a\\..\\..\\outside.txt", b"x", None)], "a\\..\\..\\outside.txt", "'..'"),
        ([("up", b"..", 0o120777)], "up", "a symbolic link"),
        ([("pipe", b"", 0o010644)], "pipe", "a FIFO"),
        ([("null", b"", 0o020644)], "null", "a device file"),
    ],
    ids=["absolute", "dotdot", "backslash-dotdot", "symlink", "fifo", "device"],
)
def test_unpack_refuses_hostile_zip_members(tmp_path, entries, bad, why):
    unpack_refused(tmp_path, zip_bytes(entries), bad, why, name="evil.zip")


def test_unpack_admits_a_tar_of_dot_with_folders_and_files(tmp_path):
    archive = tmp_path / "good.tar.gz"
    archive.write_bytes(tar_bytes([(member("./", tarfile.DIRTYPE), None), (member("./chunks", tarfile.DIRTYPE), None),
                                   (member("./chunks/c0.pkl"), b"zero"), (member("chunks/c1.pkl"), b"one")], "w:gz"))
    dest = unpack(archive, tmp_path / "raw")
    assert {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()} == {
        "chunks/c0.pkl": b"zero", "chunks/c1.pkl": b"one"}


def test_unpacked_folder_has_a_plain_mkdir_mode_not_0700(tmp_path):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(ARCHIVE)
    from rbda.atomic import current_umask

    dest = unpack(archive, tmp_path / "raw")
    assert dest.stat().st_mode & 0o777 == 0o777 & ~current_umask()
    plain = tmp_path / "plain"
    plain.write_bytes(b"not an archive")
    assert unpack(plain, tmp_path / "raw2").stat().st_mode & 0o777 == 0o777 & ~current_umask()


# --- names taken from URLs -----------------------------------------------------------------

@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://example.org/pub/all_chunks.tar.gz", "all_chunks.tar.gz"),
        ("https://example.org/pub/..%2F..%2Fetc%2Fpasswd", "passwd"),
        ("https://example.org/pub/x%2F..%2F..%2Fvictim.txt", "victim.txt"),
        ("https://example.org/pub/a%5C..%5Cvictim.txt", "victim.txt"),
        ("https://example.org/pub/..%2F", FALLBACK_FILE_NAME),
        ("https://example.org/pub/%2E%2E", FALLBACK_FILE_NAME),
        ("https://example.org/pub/.hidden", "hidden"),
        ("https://example.org/pub/evil%00.pkl", "evil.pkl"),
        ("https://example.org/pub/line%0Abreak%1B.pkl", "linebreak.pkl"),
        ("https://example.org/", FALLBACK_FILE_NAME),
        ("https://example.org", FALLBACK_FILE_NAME),
    ],
)
def test_url_file_name_is_a_safe_base_name(url, name):
    assert url_file_name(url) == name


def test_placing_a_file_never_writes_outside_or_overwrites(tmp_path, monkeypatch):
    victim = tmp_path / "victim.txt"
    victim.write_text("user data")
    downloaded = tmp_path / "x.download"
    downloaded.write_bytes(b"payload")
    with pytest.raises(SettingError, match="file name"):
        unpack(downloaded, tmp_path / "raw", file_name="../victim.txt")
    # across devices (no hard link possible) the copy is placed under a fresh name only
    monkeypatch.setattr("rbda.ingest.download.os.link", lambda *a: (_ for _ in ()).throw(OSError(18, "cross-device")))
    dest = unpack(downloaded, tmp_path / "raw", file_name=url_file_name("https://h/..%2Fvictim.txt"))
    assert (dest / "victim.txt").read_bytes() == b"payload"
    assert victim.read_text() == "user data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "victim.txt", "x.download"]


def test_download_without_checksum_logs_a_warning(server, tmp_path, caplog):
    caplog.set_level("WARNING", logger="rbda.ingest.download")
    fetch(f"{server.url}/data.bin", tmp_path / "a.bin")
    warnings = [r for r in caplog.records if r.levelname == "WARNING" and "sha256" in r.getMessage()]
    assert len(warnings) == 1 and "/data.bin" in warnings[0].getMessage()
    caplog.clear()
    fetch(f"{server.url}/data.bin", tmp_path / "b.bin", sha256=sha(PAYLOAD))
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
