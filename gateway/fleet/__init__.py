"""The live fleet as this gateway process sees it, fed by worker beats."""

from gateway.fleet.listener import EventListener
from gateway.fleet.queues import QueueStats
from gateway.fleet.view import FleetView

__all__ = ["EventListener", "FleetView", "QueueStats"]
