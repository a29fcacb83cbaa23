"""The download helper, against a local HTTP server on 127.0.0.1 (never the internet).

Python's SimpleHTTPRequestHandler ignores Range headers, so the server here is a tiny handler that
honours ``Range: bytes=N-`` (206 Partial Content) and records every request it sees.
"""

import hashlib
import http.server
import os
import re
import threading

import pytest

from t2i_lib.storage import download
from t2i_lib.storage.download import DownloadError, cache_dir, fetch

PAYLOAD = os.urandom(300_000) + b"end of the test file"
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class RangeHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's naming)
        srv = self.server
        srv.requests.append({"path": self.path, "range": self.headers.get("Range")})
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        rng = self.headers.get("Range") if srv.honour_range else None
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m:
            start = int(m.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    srv.files = {"/data/file.bin": PAYLOAD}
    srv.requests = []
    srv.honour_range = True
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}/data/file.bin"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("T2I_OFFLINE", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    monkeypatch.setenv("T2I_CACHE", str(tmp_path / "cache"))


def test_fresh_download_checks_hash_and_leaves_no_part(server, tmp_path, capsys):
    dest = tmp_path / "out" / "file.bin"
    got = fetch(server.url, SHA, dest, size=len(PAYLOAD), desc="test file")
    assert got == dest and dest.read_bytes() == PAYLOAD
    assert not dest.with_name("file.bin.part").exists()
    assert len(server.requests) == 1 and server.requests[0]["range"] is None
    out = capsys.readouterr().out
    assert "Downloading test file (300.0 KB)" in out and str(dest) in out


def test_quiet_prints_nothing(server, tmp_path, capsys):
    fetch(server.url, None, tmp_path / "q.bin", quiet=True)
    assert capsys.readouterr().out == "" and (tmp_path / "q.bin").read_bytes() == PAYLOAD


def test_wrong_hash_raises_and_leaves_nothing(server, tmp_path):
    dest = tmp_path / "file.bin"
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        fetch(server.url, wrong, dest)
    assert wrong in str(info.value) and SHA in str(info.value)
    assert not dest.exists() and not dest.with_name("file.bin.part").exists()


def test_partial_download_is_resumed_with_a_range_request(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.with_name("file.bin.part").write_bytes(PAYLOAD[:123_456])
    assert fetch(server.url, SHA, dest).read_bytes() == PAYLOAD
    assert [r["range"] for r in server.requests] == ["bytes=123456-"]


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.honour_range = False  # answers 200 with the whole file: appending would corrupt it
    dest = tmp_path / "file.bin"
    dest.with_name("file.bin.part").write_bytes(b"x" * 1000)
    assert fetch(server.url, SHA, dest).read_bytes() == PAYLOAD


def test_complete_part_file_is_accepted_after_416(server, tmp_path):
    dest = tmp_path / "file.bin"
    dest.with_name("file.bin.part").write_bytes(PAYLOAD)
    assert fetch(server.url, SHA, dest).read_bytes() == PAYLOAD
    assert server.requests[0]["range"] == f"bytes={len(PAYLOAD)}-"


@pytest.mark.parametrize("how", ["env", "argument"])
def test_offline_with_missing_file_explains_what_to_do(server, tmp_path, monkeypatch, how):
    dest = tmp_path / "file.bin"
    kwargs = {}
    if how == "env":
        monkeypatch.setenv("T2I_OFFLINE", "1")
    else:
        kwargs["allow_download"] = False
    with pytest.raises(DownloadError) as info:
        fetch(server.url, SHA, dest, size=len(PAYLOAD), **kwargs)
    msg = str(info.value)
    assert server.url in msg and str(dest) in msg and "300.0 KB" in msg and "place the file there by hand" in msg
    assert server.requests == [] and not dest.exists()


def test_existing_good_file_needs_no_request(server, tmp_path, monkeypatch):
    dest = tmp_path / "file.bin"
    dest.write_bytes(PAYLOAD)
    monkeypatch.setenv("T2I_OFFLINE", "1")  # even offline, a file that is there is simply returned
    assert fetch(server.url, SHA, dest) == dest
    assert fetch(server.url, SHA, dest) == dest  # second time through the verified-hash note
    assert server.requests == []


def test_existing_file_with_wrong_hash_is_replaced(server, tmp_path, capsys):
    dest = tmp_path / "file.bin"
    dest.write_bytes(b"an old version")
    assert fetch(server.url, SHA, dest).read_bytes() == PAYLOAD
    assert "downloading it again" in capsys.readouterr().out


def test_cache_dir_env_override_and_default_destination(server, tmp_path):
    assert cache_dir() == tmp_path / "cache"
    sub = cache_dir("mnist")
    assert sub == tmp_path / "cache" / "mnist" and sub.is_dir()
    assert fetch(server.url, SHA) == tmp_path / "cache" / "file.bin"


def test_default_cache_dir_without_env(monkeypatch, tmp_path):
    monkeypatch.delenv("T2I_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert cache_dir() == tmp_path / "home" / ".cache" / "t2i-book"


def test_local_file_url(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(PAYLOAD)
    assert fetch(src.as_uri(), SHA, tmp_path / "copy.bin").read_bytes() == PAYLOAD


def test_http_error_is_reported(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch(server.url.replace("file.bin", "missing.bin"), None, tmp_path / "m.bin")


def test_non_zero_local_rank_waits_for_rank_zero(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    dest = tmp_path / "file.bin"
    monkeypatch.setattr(download.time, "sleep", lambda s: dest.write_bytes(PAYLOAD))  # "rank 0" finishes
    assert fetch("http://127.0.0.1:9/never-contacted.bin", SHA, dest) == dest
