"""edge/ must run on a device with neither torch nor tensorflow installed."""

from __future__ import annotations

import json
import subprocess
import sys

FORBIDDEN = ("torch", "tensorflow")

PROBE = """
import importlib, json, pkgutil, sys
import edge
names = [m.name for m in pkgutil.walk_packages(edge.__path__, "edge.")]
for name in names:
    importlib.import_module(name)
print(json.dumps({"modules": names, "loaded": sorted(m for m in sys.modules if m.split(".")[0] in %r)}))
"""


def test_importing_every_edge_module_loads_neither_torch_nor_tensorflow():
    result = subprocess.run([sys.executable, "-c", PROBE % (FORBIDDEN,)], capture_output=True, text=True, check=True)
    report = json.loads(result.stdout)
    assert {"edge.cli", "edge.detect.detector", "edge.model.interpreter", "edge.detect.postprocess"} <= set(report["modules"])
    assert report["loaded"] == []
