"""What the benchmarks share about the machine they run on.

A freshly booted virtual machine pays extra the first time each page of its
memory is used: until the page cache has cycled through the memory once,
writing a new file costs several times more CPU than on a machine that has been
up a while (5 ms instead of 1 ms per MiB on the 2-core machines here). Before a
measurement that writes a large file, :func:`warm_memory` writes and deletes a
scratch file of that size, so that the measurement gets pages used before and
shows the steady state, whichever side (ours or the baseline) runs first.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

_BLOCK = 1 << 20


def warm_memory(folder: Path, size: int) -> float:
    """Write and delete a scratch file of ``size`` bytes in ``folder``; return the seconds.

    Examples
    --------
    >>> import tempfile
    >>> warm_memory(Path(tempfile.mkdtemp()), 4 << 20) >= 0
    True
    """
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"warm-{os.getpid()}.scratch"
    block = os.urandom(_BLOCK)
    start = time.perf_counter()
    try:
        with open(path, "wb") as handle:
            for _ in range(max(1, size // _BLOCK)):
                handle.write(block)
    finally:
        path.unlink(missing_ok=True)
    return time.perf_counter() - start
