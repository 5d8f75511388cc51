"""Worker gauges read when Prometheus scrapes: readiness and the size of the state on disk.

Both are cheap to read and change outside the processing loop (readiness in the rebalance listener,
the state size when RocksDB compacts), so they are computed per scrape instead of kept up to date.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from streams import metrics


def directory_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (0 when it does not exist yet)."""
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.stat(os.path.join(root, name)).st_size
            except FileNotFoundError:
                continue  # compacted away between the listing and the stat
    return total


def watch_worker(is_ready: Callable[[], bool], data_dir: Path) -> None:
    """Serve ``streamcdp_ready`` and ``streamcdp_state_bytes`` from the running worker at every scrape."""
    metrics.ready.set_function(lambda: 1.0 if is_ready() else 0.0)
    state_dir = Path(data_dir) / "state"
    metrics.state_bytes.set_function(lambda: float(directory_bytes(state_dir)))
