"""The operator commands talk to a gateway's admin API, as the fleet page does."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import httpx

from rpcfleet.settings import OperatorSettings


def add_gateway_arguments(parser: argparse.ArgumentParser) -> None:
    settings = OperatorSettings()
    parser.add_argument("--gateway", default=settings.gateway_url,
                        help="gateway base URL (env RPCFLEET_GATEWAY_URL)")
    parser.add_argument("--key", default=settings.admin_key,
                        help="admin API key (env RPCFLEET_ADMIN_KEY)")


def request(args: argparse.Namespace, method: str, path: str, body: Any = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {args.key}"} if args.key else {}
    return httpx.request(method, args.gateway.rstrip("/") + path, json=body, headers=headers,
                         timeout=10)


def call(args: argparse.Namespace, command: str, method: str, path: str, expected: int,
         body: Any = None) -> httpx.Response | None:
    """The response when it has the expected status; otherwise say why and return None."""
    try:
        response = request(args, method, path, body)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        print(f"rpcfleet {command}: cannot reach {args.gateway}: {exc}", file=sys.stderr)
        return None
    except UnicodeEncodeError:  # a header is Latin-1: an API key is ASCII
        print(f"rpcfleet {command}: the key holds characters an HTTP header cannot carry",
              file=sys.stderr)
        return None
    if response.status_code != expected:
        print(f"rpcfleet {command}: {error_text(response)}", file=sys.stderr)
        return None
    return response


def error_text(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except (ValueError, KeyError, TypeError):
        return f"{response.status_code}: {response.text[:200]}"
