"""Page handlers render in turn, so a crowd of page viewers leaves the API its time.

Rendering a page holds the interpreter; without pacing, eight viewers loading pages
in a loop cut the archive's ``query`` throughput by most of it (``bench/ui.py``).

Examples
--------
>>> turn = PageTurns()
>>> Route("/{instrument}/", turn(pages.overview))  # doctest: +SKIP
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response

#: Pages rendered at once; more wait their turn. Rendering holds the interpreter, so a
#: crowd of page viewers would otherwise take the API's time (bench/ui.py).
PAGE_RENDERS = 1
#: The share of the process's time a queue of pages may take: while pages queue, each
#: waits three times as long as the one before took to render (see PageTurns).
PAGE_SHARE = 1 / 4


class PageTurns:
    """Page handlers (run in worker threads) render in turn; a queue of them is paced.

    One viewer's pages render at once. When pages queue up (many viewers, or a
    script), each waits after the one before for ``1 / share - 1`` times that one's
    render time, so the queue takes at most ``share`` of the process's time and the
    API keeps the rest.

    Parameters
    ----------
    renders : int
        Pages rendered at once.
    share : float
        Of the process's time, what a queue of pages may take.
    """

    def __init__(self, renders: int = PAGE_RENDERS, share: float = PAGE_SHARE):
        self._slots = threading.BoundedSemaphore(renders)
        self._lock = threading.Lock()
        self._queued = 0
        self._next_start = 0.0
        self._pause = 1 / share - 1

    def __call__(self, handler: Callable[[Request], Response]) -> Callable[[Request], Response]:
        """``handler``, rendering only in its turn."""

        def in_turn(request: Request) -> Response:
            with self._lock:
                self._queued += 1
            with self._slots:  # waiting threads hold no interpreter time
                with self._lock:
                    self._queued -= 1
                    wait = self._next_start - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                started = time.monotonic()
                try:
                    return handler(request)
                finally:
                    ended = time.monotonic()
                    with self._lock:
                        pause = (ended - started) * self._pause if self._queued else 0.0
                        self._next_start = ended + pause

        in_turn.__name__ = in_turn.__qualname__ = handler.__name__
        in_turn.__doc__ = handler.__doc__
        return in_turn
