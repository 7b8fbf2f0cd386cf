"""The gateway: a FastAPI app turning HTTP calls into AMQP requests and replies back."""

from gateway.app import app_from_env, create_app
from gateway.errors import GatewayError
from gateway.services import Services

__all__ = ["GatewayError", "Services", "app_from_env", "create_app"]
