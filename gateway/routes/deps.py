"""FastAPI dependencies shared by the routes: the services of this process and the key checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from gateway.auth import Caller
from gateway.services import Services, services

__all__ = ["Caller", "CallerDep", "Services", "require_admin", "require_admin_page",
           "require_caller", "services"]


async def require_caller(request: Request) -> Caller:
    return services(request).auth.check_caller(request)


async def require_admin(request: Request) -> None:
    services(request).auth.check_admin(request)


async def require_admin_page(request: Request) -> None:
    services(request).auth.check_admin(request, cookie=True)


CallerDep = Annotated[Caller, Depends(require_caller)]  # who asks (checked once per request)
