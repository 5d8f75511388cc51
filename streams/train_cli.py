"""``streamcdp train``: fit the propensity models on an event log and write a versioned model file."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path

from streams.settings import Settings

DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "propensity-v1.json"


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from offline.training import TrainingConfig, train_from_file

    config = TrainingConfig(cutoff_every_days=args.cutoff_every_days, test_fraction=args.test_fraction)
    trained_at = datetime.now(UTC).isoformat(timespec="seconds")
    model, report = train_from_file(Path(args.events), config, trained_at=trained_at)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model)
    print(report)
    print(f"model written to {out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train --events FILE.jsonl [--out models/propensity-v1.json]``."""
    parser = subparsers.add_parser("train", help="train the propensity models (purchase in 7 days, churn in 60)")
    parser.add_argument("--events", required=True, help="JSONL event log (Segment Spec, e.g. from generate)")
    parser.add_argument("--out", default=str(DEFAULT_MODEL), help="model file to write (JSON)")
    parser.add_argument("--cutoff-every-days", type=float, default=7.0, help="days between snapshot cut-offs")
    parser.add_argument(
        "--test-fraction", type=float, default=0.3, help="share of the latest cut-offs held out for testing"
    )
    parser.set_defaults(handler=_train)
