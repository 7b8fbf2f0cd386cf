"""`rpcfleet broker`: start (or `--stop`) a private local RabbitMQ node."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "start (or --stop) a private local RabbitMQ node (or --nodes N clustered) on loopback"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=5672, help="AMQP port (default 5672)")
    parser.add_argument("--dir", type=Path, default=Path(".rpcfleet/broker"),
                        help="state folder of the node (default .rpcfleet/broker)")
    parser.add_argument("--management", type=int, nargs="?", const=15672, default=None,
                        metavar="PORT", help="enable the management UI/API (default port 15672)")
    parser.add_argument("--nodes", type=int, default=1, metavar="N",
                        help="start N nodes clustered on ports PORT..PORT+N-1 (default 1)")
    parser.add_argument("--stop", action="store_true", help="stop the node started here")


def run(args: argparse.Namespace) -> int:
    from rpcfleet.broker import BrokerError, LocalBroker

    if args.nodes > 1:
        return _cluster(args)
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


def _cluster(args: argparse.Namespace) -> int:
    from rpcfleet.broker import BrokerError
    from rpcfleet.cluster import LocalCluster

    cluster = LocalCluster(directory=args.dir, port=args.port, count=args.nodes,
                           management_port=args.management)
    try:
        if args.stop:
            cluster.stop()
            print(f"cluster of {args.nodes} nodes stopped")
            return 0
        cluster.start()
        running = cluster.running_nodes()
    except BrokerError as exc:
        print(f"rpcfleet broker: {exc}")
        return 1
    print(f"cluster of {len(running)} running nodes: {', '.join(running)}")
    print(f"RPCFLEET_AMQP_URL={cluster.amqp_url}")
    print("use RPCFLEET_QUEUE_TYPE=quorum on workers and gateways to replicate the queues")
    print(f"stop it with: rpcfleet broker --stop --nodes {args.nodes} --port {args.port} "
          f"--dir {args.dir}")
    return 0
