"""FastAPI dependencies shared by the routes: the services of this process and the key checks."""

from __future__ import annotations

from fastapi import Request

from gateway.services import Services, services

__all__ = ["Services", "require_admin", "require_admin_page", "require_caller", "services"]


async def require_caller(request: Request) -> None:
    services(request).auth.check_caller(request)


async def require_admin(request: Request) -> None:
    services(request).auth.check_admin(request)


async def require_admin_page(request: Request) -> None:
    services(request).auth.check_admin(request, cookie=True)
