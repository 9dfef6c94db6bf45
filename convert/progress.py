"""Progress bars on stderr for the long steps; plain periodic lines when stderr is not a terminal."""
from __future__ import annotations

import sys

from tqdm import tqdm


def progress(iterable, desc: str, total: int | None = None, unit: str = "img"):
    tty = sys.stderr.isatty()
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5 if tty else 15.0, leave=tty)
