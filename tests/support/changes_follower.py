"""Writers in threads and one reader of the changes feed, run together until all is read.

Examples
--------
>>> seen = follow_while_writing(writer, reader_client, writers=8, page=25)  # doctest: +SKIP
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import httpx

__all__ = ["follow_while_writing"]


def follow_while_writing(
    writer: Callable[[int], None], reader: httpx.Client, writers: int, page: int
) -> list[dict]:
    """Run ``writer(0..writers-1)`` in threads while ``reader`` follows ``changes``.

    The reader asks ``hispec/changes`` ``page`` records at a time from seq 0 and
    stops once the writers are done and a page says there is no more. Any
    exception in a writer or the reader fails the call.

    Returns
    -------
    list of dict
        Every record the changes feed gave, in the order given.
    """
    errors: list[BaseException] = []
    done = threading.Event()
    seen: list[dict] = []

    def write(index: int) -> None:
        try:
            writer(index)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    def follow() -> None:
        since = 0
        try:
            while True:
                finished = done.is_set()  # read before asking, so the last page is complete
                answer = reader.get("hispec/changes", params={"since": since, "limit": page})
                body = answer.json()
                seen.extend(body["records"])
                since = body["next"]
                if finished and not body["more"]:
                    return
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    follower = threading.Thread(target=follow)
    follower.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    done.set()
    follower.join(timeout=120)
    assert not errors, errors
    assert not follower.is_alive(), "the changes reader never caught up"
    return seen
