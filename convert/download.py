"""Fetch one file over HTTP(S): resumed with a Range request after a cut, checked by size and sha256.

The bytes go to `<dest>.partial` and become `<dest>` only once they match the expected digest, so
the cache never holds a file that was not verified; a mismatch deletes the download.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from convert.errors import ConvertError

log = logging.getLogger(__name__)

CHUNK = 1 << 16
ATTEMPTS = 3  # a connection cut mid-file is resumed this many times before giving up
TIMEOUT = 30.0  # seconds without data before a read is treated as a cut
_FIX = "download the file yourself and pass its path to --weights"


class _Interrupted(Exception):
    """The body stopped before its end: worth resuming, unlike a refused connection or an HTTP error."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, size: int | None, sha256: str, label: str | None = None,
          attempts: int = ATTEMPTS, timeout: float = TIMEOUT) -> Path:
    """Download `url` to `dest` by way of `dest.partial` (resumed if present), checked against size and sha256."""
    label = label or dest.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    for attempt in range(1, attempts + 1):
        try:
            _transfer(url, partial, size, timeout, label)
            break
        except _Interrupted as exc:
            have = partial.stat().st_size if partial.exists() else 0
            if attempt == attempts:
                raise ConvertError(f"download of {url} stopped at {have} bytes ({exc}) {attempts} times: "
                                   f"run the command again to resume, or {_FIX}") from None
            log.warning("%s: connection cut at %d bytes (%s); resuming", label, have, exc)
    _verify(partial, size, sha256, label)
    os.replace(partial, dest)
    return dest


def _transfer(url: str, partial: Path, size: int | None, timeout: float, label: str):
    have = partial.stat().st_size if partial.exists() else 0
    if size is not None and have >= size:
        if have == size:
            return  # complete from an earlier run; _verify decides
        partial.unlink()
        have = 0
    headers = {"User-Agent": "edge-yolo", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # nothing past what we hold: let the checksum judge it
            return
        raise ConvertError(f"could not download {url}: HTTP {exc.code} {exc.reason}; {_FIX}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConvertError(f"could not reach {url} ({reason}): check the network, or {_FIX}") from None
    with response:
        if have and not _resumes(response, have):
            if response.status == 206:  # some other range: start over rather than splice it in
                partial.unlink()
                raise _Interrupted("a range other than the one asked for")
            log.info("%s: the server does not resume; downloading from the start", label)
            have = 0
        length = response.headers.get("Content-Length")
        length = int(length) if length and length.isdigit() else None
        total = have + length if length is not None else size
        with open(partial, "ab" if have else "wb") as out:
            shown = _Progress(label, total, have)
            try:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    shown.update(len(chunk))
            except (http.client.HTTPException, OSError) as exc:  # IncompleteRead, reset, timeout
                raise _Interrupted(type(exc).__name__) from None
            finally:
                shown.close()
    if length is not None and partial.stat().st_size < have + length:
        raise _Interrupted("closed early")


def _resumes(response, have: int) -> bool:
    """A 206 whose Content-Range starts where our partial file ends."""
    return response.status == 206 and response.headers.get("Content-Range", "").startswith(f"bytes {have}-")


def _verify(partial: Path, size: int | None, sha256: str, label: str):
    got = partial.stat().st_size if partial.exists() else 0
    if size is not None and got != size:
        partial.unlink(missing_ok=True)
        raise ConvertError(f"{label}: downloaded {got} bytes where the registry says {size}: the file was deleted; "
                           f"run again, or {_FIX}")
    digest = sha256_of(partial)
    if digest != sha256:
        partial.unlink()
        raise ConvertError(f"{label}: sha256 {digest} does not match the registry's {sha256}: "
                           f"the file was deleted; run again, or {_FIX}")


class _Progress:
    """A bar on a terminal; otherwise one line per 10%, at most one a second (logs stay short)."""

    def __init__(self, label: str, total: int | None, done: int):
        self.label, self.total, self.done = label, total, done
        self.bar = None
        self.next_pct, self.last = 0, 0.0
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=done, desc=label, unit="B", unit_scale=True, file=sys.stderr,
                            dynamic_ncols=True, leave=False)

    def update(self, n: int):
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            return
        if not self.total:
            return
        pct = min(100, 100 * self.done // self.total)
        now = time.monotonic()
        if pct >= self.next_pct and (now - self.last >= 1.0 or pct == 100):
            print(f"{self.label}: {pct}% of {self.total / 1e6:.1f} MB", file=sys.stderr)
            self.next_pct, self.last = pct // 10 * 10 + 10, now

    def close(self):
        if self.bar is not None:
            self.bar.close()
