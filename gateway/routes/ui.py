"""The fleet page (admin): plain HTML and a small script, no build step."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import FileResponse

from gateway.errors import NotFound
from gateway.routes.deps import require_admin_page

UI = Path(__file__).resolve().parents[1] / "ui"
SCRIPTS = frozenset({"fleet", "charts"})

router = APIRouter(tags=["fleet"], include_in_schema=False)


@router.get("/ui", dependencies=[Depends(require_admin_page)])
async def page() -> FileResponse:
    return FileResponse(UI / "index.html", headers={"Cache-Control": "no-store"})


@router.get("/ui/login")
async def login() -> FileResponse:
    return FileResponse(UI / "login.html")


@router.get("/ui/{name}.js")
async def script(name: str) -> FileResponse:
    if name not in SCRIPTS:
        raise NotFound(f"no script {name}.js")
    return FileResponse(UI / f"{name}.js", media_type="text/javascript")


@router.get("/ui/fleet.css")
async def style() -> FileResponse:
    return FileResponse(UI / "fleet.css", media_type="text/css")
