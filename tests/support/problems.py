"""Checking the archive's error answers: JSON ``{"error": ..., "message": ...}``."""

from __future__ import annotations


def expect(response, status: int, code: str | None = None) -> dict:
    """Assert ``response`` is an error answer of ``status`` (and ``code``); return its body."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) >= {"error", "message"} and body["message"], body
    if code:
        assert body["error"] == code
    return body
