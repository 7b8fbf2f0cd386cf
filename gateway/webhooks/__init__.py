"""Signed callbacks (Standard Webhooks 1.0) delivered from the store's outbox."""

from gateway.webhooks.dispatcher import CallbackDispatcher
from gateway.webhooks.signing import SecretError, Signer
from gateway.webhooks.urls import CallbackUrlRefused, UrlGuard

__all__ = ["CallbackDispatcher", "CallbackUrlRefused", "SecretError", "Signer", "UrlGuard"]
