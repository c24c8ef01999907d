"""Reading HTTP answers off raw sockets, for tests that must control every byte sent.

Examples
--------
>>> answer_is_whole(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
True
>>> answer_is_whole(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\no")
False
"""

from __future__ import annotations

__all__ = ["answer_is_whole"]


def answer_is_whole(answer: bytes) -> bool:
    """Whether ``answer`` holds a whole HTTP response with a Content-Length."""
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return False
