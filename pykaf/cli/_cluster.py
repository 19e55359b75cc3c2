"""``pykaf cluster [--api-versions]``: the cluster id, the controller, the brokers and (when
asked) each broker's API version ranges, through ``pykaf.Admin``.

``--json``: ``{"cluster_id", "controller_id", "brokers": [{"id", "host", "port", "rack",
"api_versions"}], "errors": {NODE: text}}``; ``api_versions`` is null unless asked for, else
``[{"key", "name", "min", "max", "used"}]`` (``used``: the version pykaf picks, null when
none is common).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from pykaf import BrokerApiVersions
from pykaf.cli._admin_options import add_action, open_admin, parse_and_run
from pykaf.cli._connect import CommandParser
from pykaf.cli._tables import cell, error_text, print_json, report_failures, table
from pykaf.errors import LocalProtocolError
from pykaf.protocol import api_spec

__all__ = ["run_cluster"]


def _api_name(key: int) -> str:
    try:
        return api_spec(key).name
    except (LocalProtocolError, KeyError, ValueError):
        return f"api {key}"  # newer than the protocol tables pykaf knows


def _api_rows(versions: BrokerApiVersions) -> list[tuple[int, str, int, int, int | None]]:
    return [
        (key, _api_name(key), low, high, versions.negotiated.get(key))
        for key, (low, high) in sorted(versions.ranges.items())
    ]


def _api_json(versions: BrokerApiVersions) -> list[dict[str, Any]]:
    return [
        {"key": key, "name": name, "min": low, "max": high, "used": used}
        for key, name, low, high, used in _api_rows(versions)
    ]


def _cluster(args: argparse.Namespace) -> int:
    with open_admin(args) as admin:
        cluster = admin.describe_cluster()
        versions = admin.api_versions() if args.api_versions else None
    brokers = sorted(cluster.brokers, key=lambda b: b.node_id)
    errors = dict(versions.errors) if versions is not None else {}
    if args.json:
        print_json(
            {
                "cluster_id": cluster.cluster_id,
                "controller_id": cluster.controller_id,
                "brokers": [
                    {
                        "id": b.node_id,
                        "host": b.host,
                        "port": b.port,
                        "rack": b.rack,
                        "api_versions": (
                            _api_json(versions.ok[b.node_id])
                            if versions is not None and b.node_id in versions.ok
                            else None
                        ),
                    }
                    for b in brokers
                ],
                "errors": {str(node): error_text(e) for node, e in errors.items()},
            }
        )
    else:
        print(f"cluster id {cell(cluster.cluster_id)}  controller {cell(cluster.controller_id)}")
        rows = [
            (b.node_id, b.host, b.port, b.rack, b.node_id == cluster.controller_id) for b in brokers
        ]
        print(table(("BROKER", "HOST", "PORT", "RACK", "CONTROLLER"), rows))
        if versions is not None:
            for node_id, answer in sorted(versions.ok.items()):
                print(f"broker {node_id} API versions:")
                headers = ("KEY", "API", "MIN", "MAX", "USED")
                print(table(headers, _api_rows(answer), indent="  "))
    return report_failures(args.prog, "brokers", len(brokers), errors)


def _parser() -> CommandParser:
    parser = CommandParser(
        prog="pykaf cluster", description="The cluster id, the controller and the brokers."
    )
    add_action(parser, _cluster)
    parser.add_argument(
        "--api-versions", action="store_true", help="also each broker's API version ranges"
    )
    return parser


def run_cluster(argv: Sequence[str]) -> int:
    return parse_and_run(_parser(), argv)
