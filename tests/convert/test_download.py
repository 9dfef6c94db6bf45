"""`--weights NAME` downloads: the committed registry, and fetching real files from a loopback mirror.

The mirror serves the shared release files under their registry entries, so every digest checked
here is the one committed in models/registry.tsv for a real file; no network beyond 127.0.0.1.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from convert.cli import main
from convert.download import ATTEMPTS, _Progress, sha256_of
from convert.errors import ConvertError
from convert.registry import COLUMNS, REGISTRY, load_registry, lookup
from convert.weights import CACHE_ENV, URL_ENV, resolve_weights

RELEASES = "https://github.com/ultralytics/yolov5/releases/download"


class Mirror:
    """http.server on a free loopback port serving {url path: file}, with Range and a cut-off mode."""

    def __init__(self, files: dict[str, Path]):
        self.files = {k: v.read_bytes() for k, v in files.items()}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut = 0  # the next this-many responses stop half way through their body
        self.ranges = True  # False: answer every request with the whole file, as some servers do
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                mirror.requests.append((self.path, self.headers.get("Range")))
                body = mirror.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                start = 0
                wanted = mirror.ranges and re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if wanted:
                    start = int(wanted.group(1))
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                if mirror.cut:
                    mirror.cut -= 1
                    self.wfile.write(body[start:start + (len(body) - start) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(body[start:])

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture(scope="module")
def entries():
    return load_registry()


@pytest.fixture(scope="module")
def v60_pt(shared) -> Path:
    return shared / "models" / "zoo" / "official_v6.0_yolov5n" / "yolov5n.pt"


@pytest.fixture
def mirror(yolov5n_pt, v60_pt):
    # ../shared/models/yolov5n.pt is the v6.1 release file, byte-identical to v7.0's (same registry hash).
    m = Mirror({"/v6.1/yolov5n.pt": yolov5n_pt, "/v7.0/yolov5n.pt": yolov5n_pt, "/v6.0/yolov5n.pt": v60_pt})
    yield m
    m.stop()


def _version(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in tag.lstrip("v").split("."))


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


# --- the committed table -------------------------------------------------------------------------

def test_registry_parses_with_unique_entries_and_valid_hashes(entries):
    lines = [line for line in REGISTRY.read_text().splitlines() if line and not line.startswith("#")]
    assert tuple(lines[0].split("\t")) == COLUMNS
    assert len(entries) == len(lines) - 1
    assert len({e.key for e in entries}) == len(entries)
    for e in entries:
        assert re.fullmatch(r"[0-9a-f]{64}", e.sha256) or e.sha256 == "", e.key
        assert e.url == f"{RELEASES}/{e.tag}/{e.name}.pt", e.key
        assert e.source, e.key
        if e.sha256:
            assert e.size, f"{e.key} has a hash but no size"
    names = {e.name for e in entries}
    assert names == {f"yolov5{s}{p6}" for s in "nsmlx" for p6 in ("", "6")}
    assert {e.tag for e in entries} == {"v6.0", "v6.1", "v6.2", "v7.0"}
    assert len(entries) == len(names) * 4  # every model at every release, with or without a hash


def test_the_served_files_are_the_real_files_the_registry_describes(entries, yolov5n_pt, v60_pt):
    for key, path in (("yolov5n@v6.1", yolov5n_pt), ("yolov5n@v7.0", yolov5n_pt), ("yolov5n@v6.0", v60_pt)):
        entry = lookup(key, entries)
        assert (entry.size, entry.sha256) == (path.stat().st_size, sha256_of(path)), key


def test_a_bare_name_takes_the_newest_release_with_a_hash(entries):
    for name in {e.name for e in entries}:
        entry = lookup(name, entries)
        assert entry.sha256
        newer = [e for e in entries if e.name == name and e.sha256 and _version(e.tag) > _version(entry.tag)]
        assert not newer, name
    assert lookup("yolov5s.pt", entries) == lookup("yolov5s", entries)


# --- resolving names -----------------------------------------------------------------------------

def test_good_file_is_downloaded_verified_and_cached(mirror, yolov5n_pt, tmp_path, capsys):
    got = resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=mirror.url)
    assert got == tmp_path / "v6.1" / "yolov5n.pt"
    assert got.read_bytes() == yolov5n_pt.read_bytes()
    assert not list(tmp_path.rglob("*.partial"))
    assert "100%" in capsys.readouterr().err
    default = resolve_weights("yolov5n", cache=tmp_path, base_url=mirror.url)
    assert default == tmp_path / "v7.0" / "yolov5n.pt" and sha256_of(default) == sha256_of(yolov5n_pt)
    assert [path for path, _ in mirror.requests] == ["/v6.1/yolov5n.pt", "/v7.0/yolov5n.pt"]


def test_wrong_sha256_is_one_line_and_the_file_is_deleted(mirror, entries, tmp_path):
    # A registry whose v6.1 hash is the v6.0 file's: the served bytes (the real v6.1 file) do not match it.
    v61, v60 = lookup("yolov5n@v6.1", entries), lookup("yolov5n@v6.0", entries)
    wrong = [dataclasses.replace(e, sha256=v60.sha256) if e == v61 else e for e in entries]
    with pytest.raises(ConvertError) as exc:
        resolve_weights("yolov5n@v6.1", entries=wrong, cache=tmp_path, base_url=mirror.url)
    message = _one_line(exc)
    assert v60.sha256 in message and sha256_of_bytes(mirror.files["/v6.1/yolov5n.pt"]) in message
    assert "deleted" in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_wrong_size_is_one_line_and_the_file_is_deleted(yolov5n_pt, v60_pt, entries, tmp_path):
    swapped = Mirror({"/v6.1/yolov5n.pt": v60_pt})  # the v6.0 file where the v6.1 one belongs
    try:
        with pytest.raises(ConvertError) as exc:
            resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=swapped.url)
    finally:
        swapped.stop()
    message = _one_line(exc)
    assert f"downloaded {v60_pt.stat().st_size} bytes" in message
    assert str(lookup("yolov5n@v6.1", entries).size) in message and "deleted" in message
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_a_cut_download_resumes_with_a_range_request(mirror, yolov5n_pt, tmp_path):
    mirror.cut = 1
    got = resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=mirror.url)
    size = yolov5n_pt.stat().st_size
    assert mirror.requests == [("/v6.1/yolov5n.pt", None), ("/v6.1/yolov5n.pt", f"bytes={size // 2}-")]
    assert sha256_of(got) == sha256_of(yolov5n_pt)


def test_a_download_cut_every_time_keeps_its_part_and_the_next_run_resumes(mirror, yolov5n_pt, tmp_path):
    mirror.cut = ATTEMPTS
    with pytest.raises(ConvertError) as exc:
        resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=mirror.url)
    assert "run the command again to resume" in _one_line(exc)
    partial = tmp_path / "v6.1" / "yolov5n.pt.partial"
    kept = partial.stat().st_size
    assert 0 < kept < yolov5n_pt.stat().st_size
    got = resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=mirror.url)
    assert mirror.requests[-1] == ("/v6.1/yolov5n.pt", f"bytes={kept}-")
    assert sha256_of(got) == sha256_of(yolov5n_pt) and not partial.exists()


def test_a_server_without_ranges_gets_the_whole_file_again(mirror, yolov5n_pt, tmp_path):
    mirror.cut, mirror.ranges = 1, False
    got = resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=mirror.url)
    assert len(mirror.requests) == 2 and mirror.requests[1][1] is not None  # asked to resume, got a 200
    assert sha256_of(got) == sha256_of(yolov5n_pt)


def test_missing_file_on_the_server_is_one_line(mirror, tmp_path):
    with pytest.raises(ConvertError) as exc:
        resolve_weights("yolov5s@v7.0", cache=tmp_path, base_url=mirror.url)
    assert "HTTP 404" in _one_line(exc) and not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_progress_off_a_terminal_is_at_most_one_line_per_ten_percent(capsys):
    shown = _Progress("f.pt", 1000, 0)
    for _ in range(1000):
        shown.update(1)
    shown.close()
    lines = capsys.readouterr().err.splitlines()
    assert 2 <= len(lines) <= 11 and lines[-1].startswith("f.pt: 100% of")


def test_server_down_is_one_line(mirror, tmp_path):
    url = mirror.url
    mirror.stop()
    with pytest.raises(ConvertError) as exc:
        resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=url)
    message = _one_line(exc)
    assert message.startswith(f"could not reach {url}/v6.1/yolov5n.pt") and "pass its path to --weights" in message


def test_server_down_through_the_command_line_is_one_error_line(mirror, tmp_path, monkeypatch, capsys):
    url = mirror.url
    mirror.stop()
    monkeypatch.setenv(URL_ENV, url)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert main(["export", "--weights", "yolov5n@v6.1", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("edge-convert: error:")]
    assert len(errors) == 1 and "could not reach" in errors[0]


def test_cached_file_is_used_offline(mirror, yolov5n_pt, tmp_path):
    first = resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=mirror.url)
    asked = len(mirror.requests)
    url = mirror.url
    mirror.stop()
    assert resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=url) == first
    assert len(mirror.requests) == asked


def test_a_damaged_cached_file_is_fetched_again(mirror, yolov5n_pt, tmp_path):
    cached = resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=mirror.url)
    cached.write_bytes(cached.read_bytes()[:1000])
    again = resolve_weights("yolov5n@v6.1", cache=tmp_path, base_url=mirror.url)
    assert sha256_of(again) == sha256_of(yolov5n_pt) and len(mirror.requests) == 2


def test_an_entry_without_a_verified_hash_is_refused_without_network(entries, tmp_path):
    unverified = next(e for e in entries if not e.sha256)
    with pytest.raises(ConvertError) as exc:
        resolve_weights(unverified.key, cache=tmp_path, base_url="http://127.0.0.1:9")
    message = _one_line(exc)
    assert "no verified checksum" in message and unverified.url in message and "pass its path" in message


def test_unknown_name_lists_the_known_names(entries, tmp_path):
    with pytest.raises(ConvertError) as exc:
        resolve_weights("yolov5q", cache=tmp_path)
    message = _one_line(exc)
    assert all(name in message for name in {e.name for e in entries})
    with pytest.raises(ConvertError) as exc:
        resolve_weights("yolov5s@v9.9", cache=tmp_path)
    assert "v7.0" in _one_line(exc)


def test_an_existing_path_wins_over_a_registry_name(tmp_path, monkeypatch, yolov5n_pt):
    monkeypatch.chdir(tmp_path)
    Path("yolov5s").write_bytes(yolov5n_pt.read_bytes()[:100])
    assert resolve_weights("yolov5s", cache=tmp_path / "cache", base_url="http://127.0.0.1:9") == Path("yolov5s")
    missing = Path("runs/best.pt")
    assert resolve_weights(missing, cache=tmp_path / "cache") == missing  # the loader reports it missing
    assert not (tmp_path / "cache").exists()


def sha256_of_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
