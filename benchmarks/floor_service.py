"""The HTTP floor: no-op endpoints served by BentoML exactly as the custbase service is.

``POST /noop`` is a plain ``@bentoml.api`` (the floor the issue names); ``POST /noop_app`` is a no-op route of a
FastAPI app mounted the way :mod:`serving.service` mounts its own, behind the same kind of pure ASGI middleware.
Both parse the same JSON body the scoring endpoint gets and return a small JSON list.
"""

from __future__ import annotations

import bentoml
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

app = FastAPI(title="floor")


class Body(BaseModel):
    customer_ids: list[int]
    reasons: str = "action"


@app.post("/noop_app")
async def noop_app(body: Body) -> JSONResponse:
    return JSONResponse([{"customer_id": i} for i in body.customer_ids])


@bentoml.service(name="floor", workers=1, traffic={"timeout": 30})
@bentoml.asgi_app(app, path="/")
class Floor:
    @bentoml.api
    def noop(self, customer_ids: list[int], reasons: str = "action") -> list[int]:
        return customer_ids
