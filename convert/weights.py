"""`--weights` takes a path or an official model name (`yolov5s`, `yolov5s@v7.0`).

A name resolves to a verified file in the cache: downloaded once against the size and sha256 in
`models/registry.tsv`, then used offline (a cached file whose hash matches touches no network).
An existing path always wins, so a local file called `yolov5s` is never shadowed by the registry.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from convert.download import fetch, sha256_of
from convert.errors import ConvertError
from convert.registry import SHOWN, Entry, known_names, load_registry, lookup

log = logging.getLogger(__name__)

CACHE_ENV = "EDGE_YOLO_WEIGHTS_CACHE"
# Replaces https://github.com/ultralytics/yolov5/releases/download: a mirror holding <tag>/<name>.pt.
URL_ENV = "EDGE_YOLO_WEIGHTS_URL"
# The options of every edge-convert command that name a checkpoint to read.
WEIGHT_OPTIONS = ("weights", "teacher")


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edge-yolo" / "weights"


def resolve_weights(arg: str | Path, entries: list[Entry] | None = None, cache: Path | None = None,
                    base_url: str | None = None) -> Path:
    """The checkpoint file `arg` stands for: itself if it exists, else the cached registry file."""
    path = Path(arg)
    if path.exists():
        return path
    text = str(arg)
    if "/" in text or os.sep in text:
        return path  # a path that is missing: the loader says so
    entries = load_registry() if entries is None else entries
    entry = lookup(text, entries)
    if entry is None:
        if path.suffix and "@" not in text:
            return path
        raise ConvertError(f"--weights {text}: no such file, and not a model in {SHOWN}; "
                           f"known names: {', '.join(known_names(entries))} (NAME or NAME@TAG)")
    return cached_entry(entry, cache or cache_dir(), base_url or os.environ.get(URL_ENV))


def cached_entry(entry: Entry, cache: Path, base_url: str | None = None) -> Path:
    if not entry.sha256:
        raise ConvertError(f"{entry.key} has no verified checksum in {SHOWN}, so it is not downloaded: "
                           f"download {entry.url} yourself and pass its path to --weights")
    dest = cache / entry.tag / entry.filename
    if dest.is_file():
        if sha256_of(dest) == entry.sha256:
            log.info("%s: using the verified copy in %s", entry.key, dest)
            return dest
        log.warning("%s: the cached %s does not match its sha256; downloading it again", entry.key, dest)
        dest.unlink()
    url = f"{base_url.rstrip('/')}/{entry.tag}/{entry.filename}" if base_url else entry.url
    log.info("%s: downloading %s to %s", entry.key, url, dest)
    return fetch(url, dest, entry.size, entry.sha256, label=f"{entry.filename} ({entry.tag})")


def resolve_weight_args(args) -> None:
    """Resolve, in place, each checkpoint option a parsed command line carries."""
    for option in WEIGHT_OPTIONS:
        value = getattr(args, option, None)
        if value is not None:
            setattr(args, option, resolve_weights(value))
