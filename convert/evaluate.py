"""mAP of a model on a YOLO-format data set, with one pipeline whatever the model file.

PyTorch, ONNX and TFLite models differ only in how the input becomes per-stride sigmoid maps.
Everything else is the device's own code: `edge.detect.letterbox` places the frame, `edge.detect.postprocess`
decodes and suppresses, and a `.tflite` runs through `edge.detector.Detector` itself. The figure
is therefore the accuracy of what ships, and a gap between two rows is the model's, not the
pipeline's. mAP itself comes from pycocotools.
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from convert.dataset import COCO_ID_OFFSET, Sample, coco_detections, coco_ground_truth, read_image
from convert.errors import ConvertError
from convert.progress import progress
from edge.detect.detections import Detections
from edge.errors import EdgeError
from edge.detect.letterbox import boxes_to_frame, letterbox_into
from edge.model.metadata import FORMAT_NAME, ModelMeta, parse_metadata, read_metadata, sidecar_path
from edge.detect.postprocess import Decoder

# The usual mAP protocol: keep nearly every candidate, so the precision-recall curve runs to the end.
EVAL_CONF = 0.001
EVAL_IOU = 0.6
EVAL_MAX_DET = 300
DEFAULT_IMGSZ = 320
LAYOUT_VERSION = 1
# COCOeval.stats: [0] AP@[.5:.95], [1] AP@.5 (all areas, 100 detections per image)
STAT_MAP50_95, STAT_MAP50 = 0, 1
PERCENT = 100.0
WARMUP_INVOKES = 5


@dataclass(frozen=True)
class EvalResult:
    model: str
    backend: str
    precision: str
    imgsz: list[int]
    data: str
    classes: list[int] | None
    images: int
    detections: int
    map50_95: float  # percent
    map50: float  # percent
    seconds: float

    def as_dict(self) -> dict:
        return asdict(self)


class Backend:
    """A model file that turns a BGR frame into detections in frame pixels."""

    kind = ""

    def __init__(self, path: Path, meta: ModelMeta, classes: list[int] | None):
        self.path = path
        self.meta = meta
        self.classes = tuple(classes) if classes is not None else None

    @property
    def precision(self) -> str:
        return self.meta.precision

    def detect(self, frame: np.ndarray) -> Detections:
        raise NotImplementedError

    def invoke_ms(self, frames: list[np.ndarray], runs: int) -> float:
        """Median time of the model call alone over `runs` calls on these frames, after a warm-up."""
        raise NotImplementedError


class TFLiteBackend(Backend):
    """The device's Detector, exactly as `edge-detect` builds it, with the mAP thresholds."""

    kind = "tflite"

    def __init__(self, path: Path, classes: list[int] | None, threads: int):
        from edge.detect.detector import DetectSettings, Detector
        from edge.model.metadata import read_metadata

        try:
            check_class_range(classes, read_metadata(path).nc, path)
            self.detector = Detector(path, DetectSettings(conf=EVAL_CONF, iou=EVAL_IOU, max_det=EVAL_MAX_DET,
                                                          multi_label=True, classes=_tuple(classes)),
                                     threads=threads)
        except EdgeError as exc:
            raise ConvertError(str(exc)) from None
        super().__init__(path, self.detector.meta, classes)

    def detect(self, frame: np.ndarray) -> Detections:
        return self.detector.detect(frame)[0]

    def invoke_ms(self, frames: list[np.ndarray], runs: int) -> float:
        model = self.detector.model
        scratch = np.empty((*self.meta.imgsz_hw, 3), np.uint8)
        times = []
        for i in range(WARMUP_INVOKES + runs):
            letterbox_into(frames[i % len(frames)], model.input_view(), "bgr", scratch)
            start = time.perf_counter()
            model.invoke()
            times.append(time.perf_counter() - start)
        return statistics.median(times[WARMUP_INVOKES:]) * 1000.0


class FloatBackend(Backend):
    """PyTorch or ONNX: letterbox into a float input, run, then the device's decode and NMS."""

    def __init__(self, path: Path, meta: ModelMeta, classes: list[int] | None):
        super().__init__(path, meta, classes)
        height, width = meta.imgsz_hw
        self.input = np.empty((height, width, 3), np.float32)
        self.scratch = np.empty((height, width, 3), np.uint8)
        self.decoder = Decoder(meta, {s: None for s in meta.strides}, conf=EVAL_CONF, iou=EVAL_IOU,
                               classes=self.classes, max_det=EVAL_MAX_DET, multi_label=True)

    def heads(self, image_hwc: np.ndarray) -> dict[int, np.ndarray]:
        """Per-stride NHWC `(1, H/s, W/s, na*(5+nc))` sigmoid maps for one float image in [0, 1]."""
        raise NotImplementedError

    def detect(self, frame: np.ndarray) -> Detections:
        params = letterbox_into(frame, self.input, "bgr", self.scratch)
        outputs = self.heads(self.input)
        dets = self.decoder(outputs)
        return Detections(boxes_to_frame(dets.xyxy, params), dets.score, dets.class_id)

    def invoke_ms(self, frames: list[np.ndarray], runs: int) -> float:
        times = []
        for i in range(WARMUP_INVOKES + runs):
            letterbox_into(frames[i % len(frames)], self.input, "bgr", self.scratch)
            start = time.perf_counter()
            self.heads(self.input)
            times.append(time.perf_counter() - start)
        return statistics.median(times[WARMUP_INVOKES:]) * 1000.0


class TorchBackend(FloatBackend):
    """A network in memory (a checkpoint just loaded, or a model being pruned), fused for inference."""

    kind = "pytorch"

    def __init__(self, model, path: Path, imgsz_hw: tuple[int, int], classes: list[int] | None):
        import copy

        import torch

        from convert.onnx_export import SigmoidHeads

        self.torch = torch
        fused = copy.deepcopy(model).fuse().eval()
        self.network = SigmoidHeads(fused).eval()
        meta = parse_metadata({
            "format": FORMAT_NAME, "layout_version": LAYOUT_VERSION, "imgsz": list(imgsz_hw),
            "precision": "fp32", "strides": fused.strides, "anchors": fused.anchors_px.tolist(),
            "nc": fused.detect.nc, "names": list(fused.names),
        }, str(path))
        super().__init__(Path(path), meta, classes)

    def heads(self, image_hwc: np.ndarray) -> dict[int, np.ndarray]:
        height = image_hwc.shape[0]
        x = self.torch.from_numpy(image_hwc).permute(2, 0, 1).unsqueeze(0)
        with self.torch.inference_mode():
            outs = self.network(x)
        return {height // o.shape[2]: o.permute(0, 2, 3, 1).numpy() for o in outs}


class OnnxBackend(FloatBackend):
    kind = "onnxruntime"

    def __init__(self, path: Path, classes: list[int] | None, threads: int):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.log_severity_level = 3
        try:
            self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise ConvertError(f"{path}: onnxruntime cannot load it ({str(exc).strip().splitlines()[0][:200]})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4 or not all(isinstance(d, int) for d in inputs[0].shape):
            raise ConvertError(f"{path}: expected one static NCHW image input, as `edge-convert export` writes")
        self.input_name = inputs[0].name
        self.input_dtype = np.float16 if inputs[0].type == "tensor(float16)" else np.float32
        meta = _onnx_metadata(path)
        if tuple(inputs[0].shape[2:]) != meta.imgsz_hw:
            raise ConvertError(f"{path}: input is {inputs[0].shape[2:]} but the metadata beside it says {list(meta.imgsz_hw)}")
        raw = dict(meta.raw, precision="fp16" if self.input_dtype == np.float16 else "fp32")
        super().__init__(path, parse_metadata(raw, str(path)), classes)

    def heads(self, image_hwc: np.ndarray) -> dict[int, np.ndarray]:
        height = image_hwc.shape[0]
        x = image_hwc.transpose(2, 0, 1)[None].astype(self.input_dtype)
        outs = self.session.run(None, {self.input_name: x})
        return {height // o.shape[2]: o.transpose(0, 2, 3, 1).astype(np.float32) for o in outs}


def _onnx_metadata(path: Path) -> ModelMeta:
    """Anchors and names are not in the ONNX graph: take them from the converted models beside it."""
    candidates = [sidecar_path(path)] + sorted(path.parent.glob(f"{path.stem}_*.tflite"))
    for candidate in candidates:
        if candidate.is_file():
            try:
                return read_metadata(candidate)
            except EdgeError:
                continue
    raise ConvertError(f"{path}: no edge-yolo metadata beside it (expected {path.stem}_fp32.tflite or "
                       f"{sidecar_path(path).name}): the anchors and class names are not in the ONNX graph")


def _tuple(classes):
    return tuple(classes) if classes is not None else None


def open_backend(path: Path, imgsz=None, classes: list[int] | None = None, threads: int | None = None) -> Backend:
    """The backend for a `.pt`, `.onnx` or `.tflite` file; `imgsz` sets the PyTorch input size."""
    from convert.export import parse_imgsz

    path = Path(path)
    threads = threads or os.cpu_count() or 1
    if not path.is_file():
        raise ConvertError(f"model {path} does not exist: pass --model with a .pt, .onnx or .tflite file")
    suffix = path.suffix.lower()
    if suffix == ".pt":
        import torch

        from convert.checkpoint import load_checkpoint

        torch.set_num_threads(threads)
        backend: Backend = TorchBackend(load_checkpoint(path).model, path, parse_imgsz(imgsz or DEFAULT_IMGSZ), classes)
    elif suffix == ".onnx":
        backend = OnnxBackend(path, classes, threads)
    elif suffix == ".tflite":
        backend = TFLiteBackend(path, classes, threads)
    else:
        raise ConvertError(f"{path}: unknown model type {suffix!r}; pass a .pt, .onnx or .tflite file")
    if imgsz is not None and suffix != ".pt" and parse_imgsz(imgsz) != backend.meta.imgsz_hw:
        raise ConvertError(f"{path.name} takes {backend.meta.imgsz_hw[0]}x{backend.meta.imgsz_hw[1]} input, "
                           f"not --imgsz {imgsz}: a converted model has a fixed size")
    check_class_range(classes, backend.meta.nc, path)
    return backend


def check_class_range(classes: list[int] | None, nc: int, path: Path) -> None:
    wrong = [c for c in classes or () if not 0 <= c < nc]
    if wrong:
        raise ConvertError(f"--classes {wrong[0]} is out of range: {path.name} has classes 0..{nc - 1}")


def run_detections(backend: Backend, samples: list[Sample], desc: str | None = None) -> tuple[list[tuple[int, int]], list[dict]]:
    """Image sizes `(w, h)` and COCO result records of every sample, through the backend."""
    sizes, results = [], []
    for index, sample in enumerate(progress(samples, desc=desc or f"eval {backend.path.name}")):
        frame = read_image(sample.image)
        sizes.append((frame.shape[1], frame.shape[0]))
        dets = backend.detect(frame)
        results += coco_detections(index, dets.xyxy, dets.score, dets.class_id)
    return sizes, results


def coco_map(ground_truth: dict, results: list[dict], classes: list[int] | None = None) -> tuple[float, float]:
    """(mAP50-95, mAP50) in percent, by pycocotools; `classes` restricts the categories averaged."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if not ground_truth["annotations"]:
        which = "" if classes is None else f" of class(es) {', '.join(map(str, classes))}"
        raise ConvertError(f"the labels hold no boxes{which}: there is nothing to measure")
    if not results:
        return 0.0, 0.0
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):  # pycocotools prints progress and the summary table
        gt = COCO()
        gt.dataset = ground_truth
        gt.createIndex()
        dt = gt.loadRes(results)
        evaluator = COCOeval(gt, dt, "bbox")
        evaluator.params.imgIds = [image["id"] for image in ground_truth["images"]]
        if classes is not None:
            evaluator.params.catIds = [c + COCO_ID_OFFSET for c in classes]
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    stats = evaluator.stats
    return float(stats[STAT_MAP50_95]) * PERCENT, float(stats[STAT_MAP50]) * PERCENT


def evaluate(backend: Backend, samples: list[Sample], data_name: str) -> EvalResult:
    """Run the backend over the samples and score it against their labels."""
    started = time.perf_counter()
    classes = list(backend.classes) if backend.classes is not None else None
    sizes, results = run_detections(backend, samples)
    ground_truth = coco_ground_truth(samples, sizes, backend.meta.names, classes)
    map50_95, map50 = coco_map(ground_truth, results, classes)
    return EvalResult(
        model=backend.path.name, backend=backend.kind, precision=backend.precision,
        imgsz=list(backend.meta.imgsz_hw), data=data_name, classes=classes, images=len(samples),
        detections=len(results), map50_95=map50_95, map50=map50,
        seconds=round(time.perf_counter() - started, 1),
    )
