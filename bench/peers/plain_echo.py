"""The ceiling of the HTTP layer: a FastAPI echo with no broker behind it.

    uvicorn bench.peers.plain_echo:app
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/echo")
async def echo(request: Request) -> dict[str, Any]:
    return {"result": await request.json()}
