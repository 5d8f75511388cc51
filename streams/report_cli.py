"""``streamcdp report triggers``: what each trigger kind earned, from a worker's ``GET /triggers/stats``.

Per kind: sends and holdouts, each arm's conversion rate, the uplift (treatment rate minus holdout rate)
with its 95 % interval (Newcombe's hybrid score interval, ``core.uplift``), attributed revenue per arm,
then per channel the delivery, open and click rates of the sends. ``--json`` prints the endpoint's answer.
``report conversion-schema`` prints the JSON Schema of ``trigger-conversions``.
"""

from __future__ import annotations

import argparse
import sys

import orjson

from schemas.conversions import conversion_json_schema
from schemas.errors import StreamcdpError
from streams.http_probe import http_get
from streams.settings import Settings


class ReportUnavailable(StreamcdpError):
    """The worker's stats endpoint did not answer with a report."""


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _money(minor_units: int) -> str:
    return f"{minor_units / 100:.2f}"


def format_trigger_report(document: dict) -> str:
    """The text table of a ``/triggers/stats`` answer (one block per kind)."""
    lines = []
    if not document.get("complete", True):
        lines.append(f"INCOMPLETE: partitions {document.get('missing_partitions')} were not counted")
    header = (
        f"{'kind':<24} {'sent':>7} {'holdout':>7} {'conv T':>7} {'conv H':>7} "
        f"{'uplift':>8} {'95% interval':>19} {'revenue T':>11} {'revenue H':>11}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    kinds: dict = document.get("kinds", {})
    for kind, report in kinds.items():
        rates = report["conversion_rate"]
        uplift = report["uplift"]
        if uplift is None:
            difference, interval = "-", "-"
        else:
            difference = f"{100 * uplift['difference']:+.1f}pp"
            interval = f"[{100 * uplift['low']:+.1f}, {100 * uplift['high']:+.1f}]pp"
        lines.append(
            f"{kind:<24} {report['sent']:>7} {report['holdout']:>7} {_percent(rates['treatment']):>7} "
            f"{_percent(rates['holdout']):>7} {difference:>8} {interval:>19} "
            f"{_money(report['revenue']['treatment']):>11} {_money(report['revenue']['holdout']):>11}"
        )
        for channel, figures in report["channels"].items():
            lines.append(
                f"  {channel:<22} sent {figures['sent']:>6}  delivered {_percent(figures['delivery_rate']):>6}"
                f"  opened {_percent(figures['open_rate']):>6}  clicked {_percent(figures['click_rate']):>6}"
            )
    if not kinds:
        lines.append("(no trigger sent or held out yet)")
    return "\n".join(lines)


def fetch_trigger_stats(url: str, token: str, timeout_s: float = 10.0) -> dict:
    """The worker's ``/triggers/stats`` answer (``url``: the worker's base URL)."""
    status, body = http_get(url.rstrip("/") + "/triggers/stats", token=token, timeout_s=timeout_s)
    if status != 200:
        detail = body[:200].decode(errors="replace") if body else "no answer"
        message = f"{url}/triggers/stats answered {status or 'nothing'}: {detail}"
        raise ReportUnavailable(message)
    return orjson.loads(body)


def _triggers(args: argparse.Namespace, settings: Settings) -> int:
    url = args.url or f"http://{settings.web_host}:{settings.web_port}"
    document = fetch_trigger_stats(url, settings.api_token)
    if args.json:
        sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(format_trigger_report(document))
    return 0


def _conversion_schema(args: argparse.Namespace, settings: Settings) -> int:
    sys.stdout.write(orjson.dumps(conversion_json_schema(), option=orjson.OPT_INDENT_2).decode() + "\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``report triggers [--url U] [--json]`` and ``report conversion-schema``."""
    parser = subparsers.add_parser("report", help="reports over the running pipeline (trigger uplift)")
    actions = parser.add_subparsers(dest="report_action", required=True)
    triggers = actions.add_parser(
        "triggers", help="per trigger kind: sends, holdouts, conversion rates, uplift with 95%% interval, revenue"
    )
    triggers.add_argument("--url", help="a worker's base URL (default: STREAMCDP_WEB_HOST:STREAMCDP_WEB_PORT)")
    triggers.add_argument("--json", action="store_true", help="print the endpoint's JSON answer")
    triggers.set_defaults(handler=_triggers)
    actions.add_parser("conversion-schema", help="the JSON Schema of the trigger-conversions payload").set_defaults(
        handler=_conversion_schema
    )
