"""Model metadata (docs/model-contract.md): read it from the model file or its sidecar, write it.

The metadata is a JSON document stored as the member ``edge_yolo.json`` of a zip archive appended
to the TFLite flatbuffer. Interpreters ignore the trailing bytes and ``zipfile`` finds an archive
at the end of any file, so no extra dependency is needed on either side of the contract.

The archive's comment ends with the sha256 of every byte of the file before it (flatbuffer,
metadata and zip records alike), so a flipped bit anywhere, in the model or in its metadata, is
found before the interpreter ever parses the file (``edge.model.integrity``).
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from edge.errors import EdgeError

MEMBER_NAME = "edge_yolo.json"
FORMAT_NAME = "edge-yolo"
SUPPORTED_LAYOUT_VERSIONS = (1,)
PRECISIONS = ("fp32", "fp16", "int8")
REQUIRED_KEYS = ("format", "layout_version", "imgsz", "precision", "strides", "anchors", "nc", "names")
ZIP_COMMENT_PREFIX = b"edge-yolo flatbuffer_size="
HASH_FIELD = b" sha256="  # the comment's last field: the file's last 64 bytes are the hash, in hex
HASH_HEX_CHARS = 64
INTEGRITY_KEY, INTEGRITY_SHA256 = "integrity", "sha256"  # declared in the JSON, so a garbled trailer is noticed
REEXPORT_FIX = "re-export the model with `edge-convert export`"


@dataclass(frozen=True)
class ModelMeta:
    """What the runtime needs to read a model's outputs.

    ``imgsz_hw`` is (height, width) of the input; ``anchors_wh`` is (levels, anchors per level, 2)
    in input pixels, level i belonging to ``strides[i]``.
    """

    imgsz_hw: tuple[int, int]
    strides: tuple[int, ...]
    anchors_wh: np.ndarray
    names: tuple[str, ...]
    nc: int
    precision: str
    raw: dict[str, Any] = field(repr=False)

    @property
    def num_anchors(self) -> int:
        return self.anchors_wh.shape[1]

    @property
    def channels_per_anchor(self) -> int:
        """Box (4) + objectness (1) + one probability per class."""
        return 5 + self.nc

    def anchors_for(self, stride: int) -> np.ndarray:
        return self.anchors_wh[self.strides.index(stride)]


def sidecar_path(model_path: str | Path) -> Path:
    """``x_int8.tflite`` → ``x_int8.json``: used when the model file carries no metadata."""
    return Path(model_path).with_suffix(".json")


def read_metadata(model_path: str | Path) -> ModelMeta:
    """Metadata appended to the model, else from the sidecar JSON, else an EdgeError."""
    path = Path(model_path)
    document = _read_appended(path)
    origin = f"{path} (appended {MEMBER_NAME})"
    if document is None:
        sidecar = sidecar_path(path)
        if not sidecar.is_file():
            raise EdgeError(
                f"{path} carries no edge-yolo metadata and there is no sidecar {sidecar.name}; "
                f"{REEXPORT_FIX} (or copy its .json next to the model)"
            )
        origin = str(sidecar)
        try:
            document = sidecar.read_text(encoding="utf-8")
        except OSError as exc:
            raise EdgeError(f"cannot read metadata {sidecar}: {exc.strerror}") from None
    return parse_metadata(document, origin)


def _read_appended(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.read(MEMBER_NAME).decode("utf-8")
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError):
        return None
    except OSError:
        # missing or unreadable model: the interpreter loader reports it with the fix
        return None


def parse_metadata(document: str | bytes | dict, origin: str = "metadata") -> ModelMeta:
    """Validate a metadata document; every problem is one EdgeError line naming ``origin``."""
    if isinstance(document, dict):
        raw = document
    else:
        try:
            raw = json.loads(document)
        except ValueError as exc:
            raise EdgeError(f"{origin}: metadata is not valid JSON ({exc}); {REEXPORT_FIX}") from None
    if not isinstance(raw, dict):
        raise EdgeError(f"{origin}: metadata must be a JSON object; {REEXPORT_FIX}")
    raw = {key: value for key, value in raw.items() if key != INTEGRITY_KEY}  # about the file, not the model
    missing = [key for key in REQUIRED_KEYS if key not in raw]
    if missing:
        raise EdgeError(f"{origin}: metadata lacks {', '.join(missing)}; {REEXPORT_FIX}")
    if raw["format"] != FORMAT_NAME:
        raise EdgeError(f"{origin}: metadata format is {raw['format']!r}, expected {FORMAT_NAME!r}; {REEXPORT_FIX}")
    if raw["layout_version"] not in SUPPORTED_LAYOUT_VERSIONS:
        supported = ", ".join(map(str, SUPPORTED_LAYOUT_VERSIONS))
        raise EdgeError(
            f"{origin}: output layout_version {raw['layout_version']!r} is not supported "
            f"(this edge-yolo reads {supported}); upgrade edge-yolo or {REEXPORT_FIX}"
        )
    if raw["precision"] not in PRECISIONS:
        raise EdgeError(f"{origin}: precision {raw['precision']!r} is not one of {', '.join(PRECISIONS)}")

    imgsz = _int_list(raw["imgsz"], "imgsz", origin)
    if len(imgsz) != 2:
        raise EdgeError(f"{origin}: imgsz must be [height, width], received {raw['imgsz']!r}")
    strides = _int_list(raw["strides"], "strides", origin)
    try:
        anchors = np.asarray(raw["anchors"], dtype=np.float32)
    except (TypeError, ValueError):
        anchors = np.empty(0)
    if anchors.ndim != 3 or anchors.shape[0] != len(strides) or anchors.shape[2] != 2:
        raise EdgeError(
            f"{origin}: anchors must have shape ({len(strides)} levels, anchors, 2), "
            f"received {anchors.shape}; {REEXPORT_FIX}"
        )
    names = _names(raw["names"], origin)
    nc = raw["nc"]
    if not isinstance(nc, int) or nc != len(names):
        raise EdgeError(f"{origin}: nc is {nc!r} but names lists {len(names)} classes; {REEXPORT_FIX}")
    return ModelMeta(
        imgsz_hw=(imgsz[0], imgsz[1]),
        strides=tuple(strides),
        anchors_wh=anchors,
        names=names,
        nc=nc,
        precision=raw["precision"],
        raw=raw,
    )


def _int_list(value: Any, key: str, origin: str) -> list[int]:
    if not isinstance(value, list) or not value or not all(isinstance(v, int) and v > 0 for v in value):
        raise EdgeError(f"{origin}: {key} must be a list of positive integers, received {value!r}")
    return value


def _names(value: Any, origin: str) -> tuple[str, ...]:
    # names may arrive as a list or as {"0": "person", ...} (JSON turns int keys into strings)
    if isinstance(value, dict):
        try:
            ordered = sorted(value.items(), key=lambda item: int(item[0]))
        except ValueError:
            ordered = None
        if ordered is None or [int(k) for k, _ in ordered] != list(range(len(ordered))):
            raise EdgeError(f"{origin}: names keys must be 0..nc-1")
        value = [name for _, name in ordered]
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value):
        raise EdgeError(f"{origin}: names must be a list of strings")
    return tuple(value)


def write_metadata(tflite_path: str | Path, meta: dict[str, Any]) -> None:
    """Append ``meta`` as ``edge_yolo.json`` to the model, replacing metadata appended earlier.

    The flatbuffer's own size is recorded in the zip comment; replacing metadata cuts the file
    back to that size, so repeated writes never stack archives. The comment ends with the sha256
    of all the bytes before the hash itself.
    """
    path = Path(tflite_path)
    flatbuffer_size = _flatbuffer_size(path)
    document = json.dumps({**meta, INTEGRITY_KEY: INTEGRITY_SHA256}, indent=1, sort_keys=False).encode("utf-8")
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.comment = ZIP_COMMENT_PREFIX + str(flatbuffer_size).encode("ascii") + HASH_FIELD + b"0" * HASH_HEX_CHARS
        zf.writestr(MEMBER_NAME, document)
    with open(path, "r+b") as fh:
        flatbuffer = fh.read(flatbuffer_size)
        unhashed = archive.getvalue()[:-HASH_HEX_CHARS]
        digest = hashlib.sha256(flatbuffer + unhashed).hexdigest().encode("ascii")
        fh.truncate(flatbuffer_size)
        fh.seek(flatbuffer_size)
        fh.write(unhashed + digest)


def _flatbuffer_size(path: Path) -> int:
    """Size of the model without any archive appended by ``write_metadata``."""
    total = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as zf:
            if MEMBER_NAME not in zf.namelist():
                return total
            if zf.comment.startswith(ZIP_COMMENT_PREFIX):
                recorded = int(zf.comment[len(ZIP_COMMENT_PREFIX):].split(b" ", 1)[0])
                if 0 < recorded < total:
                    return recorded
            # no usable comment: the archive starts at its first local header
            return min(info.header_offset for info in zf.infolist())
    except (zipfile.BadZipFile, ValueError):
        return total


def class_ids_from(tokens: Iterable[str | int], names: Sequence[str]) -> tuple[int, ...]:
    """Class filter from user tokens: ints, names, or comma-separated mixes (``"person,2"``)."""
    index = {name: i for i, name in enumerate(names)}
    ids: list[int] = []
    for token in tokens:
        for part in str(token).split(","):
            part = part.strip()
            if not part:
                continue
            if part.lstrip("-").isdigit():
                class_id = int(part)
                if not 0 <= class_id < len(names):
                    raise EdgeError(f"class id {class_id} is out of range: this model has classes 0..{len(names) - 1}")
            elif part in index:
                class_id = index[part]
            else:
                raise EdgeError(f"unknown class {part!r}; use a class id or one of the model's names, e.g. {names[0]!r}")
            ids.append(class_id)
    return tuple(dict.fromkeys(ids))
