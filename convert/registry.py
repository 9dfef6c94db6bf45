"""The committed table of official YOLOv5 release files (`models/registry.tsv`) and name lookup.

A name on `--weights` is only ever downloaded against a size and sha256 recorded here, so what
arrives is byte for byte the file someone checked; entries without a hash are listed and refused.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from convert.errors import ConvertError

REGISTRY = Path(__file__).resolve().parent.parent / "models" / "registry.tsv"
SHOWN = "models/registry.tsv"  # how messages name the table
COLUMNS = ("name", "tag", "url", "size", "sha256", "source")
_HEX64 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Entry:
    name: str  # yolov5s
    tag: str  # v7.0
    url: str
    size: int | None  # bytes; None when unknown
    sha256: str  # "" when no checksum was verified
    source: str  # where size and hash come from

    @property
    def key(self) -> str:
        return f"{self.name}@{self.tag}"

    @property
    def filename(self) -> str:
        return f"{self.name}.pt"


def load_registry(path: Path = REGISTRY) -> list[Entry]:
    """Parse the table; a malformed row is an error naming its line, never a silent skip."""
    if not path.is_file():
        raise ConvertError(f"the model registry {path} is missing (it ships with the source tree): "
                           "pass --weights the path of a .pt file")
    entries, seen = [], set()
    lines = path.read_text(encoding="utf-8").splitlines()
    rows = [(i, line) for i, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    if not rows or tuple(rows[0][1].split("\t")) != COLUMNS:
        raise ConvertError(f"{path}: the first row must be the header {' '.join(COLUMNS)} (tab-separated)")
    for number, line in rows[1:]:
        cells = line.split("\t")
        if len(cells) != len(COLUMNS):
            raise ConvertError(f"{path}:{number}: {len(cells)} columns, expected {len(COLUMNS)} (tab-separated)")
        name, tag, url, size, sha, source = (c.strip() for c in cells)
        if sha and not _HEX64.fullmatch(sha):
            raise ConvertError(f"{path}:{number}: sha256 must be 64 lower-case hex digits or empty")
        if size and not size.isdigit():
            raise ConvertError(f"{path}:{number}: size must be a number of bytes or empty")
        if (name, tag) in seen:
            raise ConvertError(f"{path}:{number}: {name}@{tag} is listed twice")
        seen.add((name, tag))
        entries.append(Entry(name, tag, url, int(size) if size else None, sha, source))
    return entries


def _version(tag: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", tag))


def lookup(spec: str, entries: list[Entry]) -> Entry | None:
    """`yolov5s`, `yolov5s.pt` or `yolov5s@v7.0` → its entry; a bare name takes the newest tag with a hash.

    None when the name is not in the table; an unknown tag of a known name is an error listing the tags.
    """
    name, _, tag = spec.partition("@")
    name = name.removesuffix(".pt")
    same = [e for e in entries if e.name == name]
    if not same:
        return None
    if tag:
        match = next((e for e in same if e.tag == tag), None)
        if match is None:
            raise ConvertError(f"{name} has no release {tag} in {SHOWN}: "
                               f"known tags are {', '.join(e.tag for e in same)}")
        return match
    verified = [e for e in same if e.sha256]
    return max(verified or same, key=lambda e: _version(e.tag))


def known_names(entries: list[Entry]) -> list[str]:
    return list(dict.fromkeys(e.name for e in entries))
