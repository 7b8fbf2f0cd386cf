"""`rpcfleet broker`: start (or `--stop`) a private local RabbitMQ node."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "start (or --stop) a private local RabbitMQ node on loopback"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=5672, help="AMQP port (default 5672)")
    parser.add_argument("--dir", type=Path, default=Path(".rpcfleet/broker"),
                        help="state folder of the node (default .rpcfleet/broker)")
    parser.add_argument("--management", type=int, nargs="?", const=15672, default=None,
                        metavar="PORT", help="enable the management UI/API (default port 15672)")
    parser.add_argument("--stop", action="store_true", help="stop the node started here")


def run(args: argparse.Namespace) -> int:
    from rpcfleet.broker import BrokerError, LocalBroker

    node = LocalBroker(directory=args.dir, port=args.port, management_port=args.management)
    try:
        if args.stop:
            node.stop()
            print(f"broker {node.nodename} stopped")
            return 0
        node.start()
    except BrokerError as exc:
        print(f"rpcfleet broker: {exc}")
        return 1
    print(f"broker {node.nodename} is up: {node.amqp_url}")
    if node.management_url:
        print(f"management: {node.management_url} (guest/guest)")
    print(f"stop it with: rpcfleet broker --stop --port {args.port} --dir {args.dir}")
    return 0
