"""Is this model file the one that was exported? Checked before the interpreter parses it.

The TFLite interpreter trusts every byte: of 150 copies of the int8 model with a few random bytes
changed, some crash it (segmentation fault in the constructor) and more load and quietly give
other detections. ``write_metadata`` ends the file with the sha256 of all the bytes before the
hash (``edge.model.metadata``); this recomputes it.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import zipfile
from pathlib import Path

from edge.errors import EdgeError
from edge.model.metadata import HASH_FIELD, HASH_HEX_CHARS, INTEGRITY_KEY, MEMBER_NAME, REEXPORT_FIX

log = logging.getLogger(__name__)

VERIFIED, UNHASHED, BARE = "verified", "unhashed", "bare"
# The metadata archive is a few kB at the end of the file; its member name in the last this many
# bytes means the archive is there, readable or not.
ARCHIVE_SEARCH_BYTES = 64 * 1024
_HEX = re.compile(rb"[0-9a-f]+")
_warned: set[str] = set()  # models already said to carry no hash: once per process is enough


def check_integrity(content: bytes, path: str | Path) -> str:
    """Whether the model's bytes are those written at export: VERIFIED, UNHASHED or BARE.

    UNHASHED: metadata from an edge-convert that wrote no hash (loads, with a warning logged);
    BARE: no metadata appended (a plain flatbuffer, or metadata in a sidecar). A file whose hash
    does not match, or that holds our archive but not a hash it can be checked against, is an
    EdgeError: bit rot on an SD card or an incomplete copy must never reach the interpreter.
    """
    damaged = (f"{path} is damaged: its bytes do not match the sha256 recorded when it was exported "
               f"(storage corruption or an incomplete copy); copy the model again or {REEXPORT_FIX}")
    tail = content[-(len(HASH_FIELD) + HASH_HEX_CHARS):]
    stored = tail[len(HASH_FIELD):]
    if tail.startswith(HASH_FIELD) and _HEX.fullmatch(stored):
        if hashlib.sha256(memoryview(content)[:-HASH_HEX_CHARS]).hexdigest().encode("ascii") != stored:
            raise EdgeError(damaged)
        return VERIFIED
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            raw = json.loads(archive.read(MEMBER_NAME))
    except (zipfile.BadZipFile, KeyError, ValueError, OSError, EOFError, RuntimeError):
        raw = None  # not our archive, or a damaged one
    if not isinstance(raw, dict):
        if MEMBER_NAME.encode() in content[-ARCHIVE_SEARCH_BYTES:]:
            raise EdgeError(damaged)  # our archive is there and cannot be read: cut or garbled
        return BARE
    if raw.get(INTEGRITY_KEY) is not None:
        raise EdgeError(damaged)  # the metadata says a hash follows; the end of the file is garbled
    if str(path) not in _warned:
        _warned.add(str(path))
        log.warning("%s carries no integrity hash (exported by an older edge-convert), so damage to it cannot be "
                    "detected; %s to add one", Path(path).name, REEXPORT_FIX)
    return UNHASHED
