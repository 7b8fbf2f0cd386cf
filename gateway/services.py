"""What one gateway process holds while it runs, built in the lifespan and passed to routes
through `request.app.state.services` (no module-level globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from gateway.amqp.link import BrokerLink
from gateway.amqp.rpc import RpcClient
from gateway.auth import Auth
from gateway.fleet.listener import EventListener
from gateway.fleet.queues import QueueStats
from gateway.fleet.retirements import Retirements
from gateway.fleet.view import FleetView
from gateway.metrics import Metrics
from gateway.settings import GatewaySettings
from transport.tracing import Tracing

if TYPE_CHECKING:  # the jobs service builds on these services
    from gateway.jobs.service import JobService


@dataclass
class Services:
    settings: GatewaySettings
    auth: Auth
    metrics: Metrics
    link: BrokerLink
    rpc: RpcClient
    view: FleetView
    events: EventListener
    queues: QueueStats
    tracing: Tracing
    retirements: Retirements
    jobs: JobService | None = None  # set by the lifespan while the jobs service runs

    @classmethod
    def build(cls, settings: GatewaySettings) -> Services:
        metrics = Metrics()
        link = BrokerLink(settings)
        view = FleetView()
        link.route = view.route  # a method two pools announce goes to the first one only
        queues = QueueStats(link, view)
        metrics.watch_fleet(view, queues)
        return cls(settings=settings, auth=Auth(settings), metrics=metrics, link=link,
                   rpc=RpcClient(link, metrics, settings.publish_timeout), view=view,
                   events=EventListener(link, view), queues=queues, tracing=Tracing(),
                   retirements=Retirements(link, view))


def services(connection: HTTPConnection) -> Services:
    """The services of this process, from a request or a WebSocket."""
    found: Services = connection.app.state.services
    return found
