"""A tiny blocking HTTP GET for the tools that talk to a worker's API (demo, tests, benchmarks)."""

from __future__ import annotations

import urllib.error
import urllib.request


def http_get(url: str, token: str | None = None, timeout_s: float = 5.0) -> tuple[int, bytes]:
    """``(status, body)``; status 0 when nothing answered (worker not up yet, connection refused)."""
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):  # refused, reset, timed out
        return 0, b""
