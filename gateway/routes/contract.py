"""GET /asyncapi.json: the AMQP contract of the fleet as it is now (see gateway.asyncapi), public
like /openapi.json."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from gateway.asyncapi import asyncapi_document
from gateway.routes.deps import services
from protocol import codec

router = APIRouter(tags=["docs"])


@router.get("/asyncapi.json", summary="The AMQP contract as an AsyncAPI 3.0 document",
            response_description="requests and replies of every announced method, control "
                                 "commands and events")
async def asyncapi(request: Request) -> Response:
    return Response(codec.dumps(asyncapi_document(services(request).view.docs())),
                    media_type="application/json")
