"""The image's HEALTHCHECK: healthy when the process in the container answers ``GET /healthz`` with 200.

One image runs the worker (``STREAMCDP_WEB_PORT``), the collector (``STREAMCDP_COLLECTOR_PORT``) and the
lag exporter (``STREAMCDP_WEB_PORT``); each serves on one of these ports, so the first that answers 200
decides. Standard library only: it runs every interval and must start fast.
"""

import os
import sys
import urllib.request

PORTS = (os.environ.get("STREAMCDP_WEB_PORT", "6066"), os.environ.get("STREAMCDP_COLLECTOR_PORT", "8088"))


def main() -> int:
    for port in PORTS:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=3) as response:
                if response.status == 200:
                    return 0
        except OSError:
            continue
    return 1


if __name__ == "__main__":
    sys.exit(main())
