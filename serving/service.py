"""The online scoring service: a FastAPI app served by BentoML 1.4 (``bentoml serve serving.service:CustbaseScoring``).

Endpoints (JSON; keys as in :mod:`serving.auth`; the OpenAPI document at ``/openapi.json``, Swagger UI at ``/docs``):

- ``POST /score``: ``{"customers": [CustomerFeatures, ...], "reasons": "action"}`` -> ``[CustomerScore, ...]``.
  ``CustomerFeatures`` is generated from the served feature set: ``customer_id``, optional ``as_of``,
  ``value_tier`` and one field per model feature (numbers, or one of the training categories; ``null`` when
  unknown), every feature required and unknown fields refused, so a misspelt feature is a 422 naming it.
- ``POST /score_customers``: ``{"customer_ids": [..], "reasons": "action"}`` -> one ``CustomerResult`` per id, from
  the online feature snapshot; an unknown id is an item with ``error`` set.

``reasons`` is ``none``, ``action`` (default: the reasons of the model behind the recommended action) or ``all``.

Each request is scored on its own, at once, on arrays (:func:`serving.runtime.scoring.score_records`, the batch job's
rule): no adaptive batching, so no request waits for, or fails with, another. The request guard
(:class:`RequestGuard`) answers before any work: 404 for unknown paths, 415 for a body that is not JSON, 413 for a
body over :data:`MAX_BODY_BYTES` or more than :data:`MAX_ITEMS` items, 408 (and the connection closed) for a body
that does not arrive within its deadline (:func:`read_body`), 503 (``Retry-After: 1``) when :data:`MAX_IN_FLIGHT`
requests are already being served: a request takes a capacity slot only once its body is read, so slow uploads
cannot starve the others. Then each call is priced before it is scored (:mod:`serving.admission`: items x the
seconds per item of its reasons mode, measured on the served models at start): over :data:`CALL_COST_MAX_S` it gets
413 naming the limit and the cheaper forms (``reasons: action``, fewer ids); a cheap call (at most
:data:`INLINE_COST_S`, e.g. one customer) is scored at once; a larger one must fit in the worker's cost budget
(:data:`COST_BUDGET_S`, 429 with ``Retry-After: 1`` while other calls hold it) and is scored in chunks in one
worker thread. A connection that does not send a whole request head within :data:`HEAD_TIMEOUT_S` of opening or
of its last response (idle, or trickling its head) is closed by the server (:mod:`serving.connections`). Numbers
must be finite and in the range the OpenAPI
document gives per feature (422 naming the field otherwise); ids are integers (not booleans) in 0 .. 2**53-1.
Access lines carry method, path, status, sizes and latency (not the client's Content-Type). Client errors are logged
as one line without values (a key the API does not declare is written ``<unknown key>``),
every log message is capped at :data:`MAX_LOG_LINE` characters; ``/metrics`` counts requests per known route only.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import re
import time
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import bentoml
from fastapi import FastAPI, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader, HTTPBearer
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, create_model
from starlette.staticfiles import StaticFiles

from serving.admission import CostBudget, ScoringCosts, cheaper_forms, measure_scoring_costs
from serving.auth import ApiKeyMiddleware
from serving.connections import HEAD_TIMEOUT_S, close_idle_connections
from serving.runtime.models import MODELS_FACTORY_ENV, MODELS_PICKLE_ENV, ScoringModels, models_from_environment
from serving.runtime.policy import Policy
from serving.runtime.schema import VERSION_COLUMNS, score_fields
from serving.runtime.scoring import score_records
from serving.runtime.snapshot import OnlineFeatureSnapshot, SnapshotMissing
from serving.runtime.spec import SNAPSHOT_ENV, ServingSpec, find_spec, spec_from_models

logger = logging.getLogger("custbase.service")

#: Items per request (ids or records) at most; more is refused with 413 before any work.
MAX_ITEMS = int(os.environ.get("CUSTBASE_MAX_ITEMS", "1000"))
#: Request body size at most, in bytes; more is refused with 413 before the body is read.
MAX_BODY_BYTES = int(os.environ.get("CUSTBASE_MAX_BODY_BYTES", str(4 * 1024 * 1024)))
#: Requests served at once at most; more get a fast 503 rather than a growing queue.
MAX_IN_FLIGHT = int(os.environ.get("CUSTBASE_MAX_IN_FLIGHT", "96"))
#: Estimated seconds of scoring (:mod:`serving.admission`, priced on the served models at start) that one call may
#: cost at most: a dearer call gets 413 naming this limit and the cheaper forms (reasons: action, fewer ids).
CALL_COST_MAX_S = float(os.environ.get("CUSTBASE_CALL_COST_MAX_S", "2.0"))
#: Estimated seconds of scoring admitted at once per worker (running or waiting); a call that does not fit while
#: others hold the budget gets a fast 429 with Retry-After. Calls of at most INLINE_COST_S never count against it.
COST_BUDGET_S = float(os.environ.get("CUSTBASE_COST_BUDGET_S", "4.0"))
#: Calls priced at most this are scored inline on the event loop (no thread hop, no budget): the single-customer
#: campaign call is never refused nor queued because of large ones.
INLINE_COST_S = float(os.environ.get("CUSTBASE_INLINE_COST_S", "0.01"))
#: Larger calls are scored in chunks of about this many seconds, one chunk at a time per worker, so a call that
#: arrives behind a large one waits for a chunk, not for the whole call.
CHUNK_COST_S = float(os.environ.get("CUSTBASE_CHUNK_COST_S", "0.2"))
#: Event-loop lag beyond which new requests get a fast 503: the queue in front of a busy loop stays short.
MAX_LOOP_LAG_S = float(os.environ.get("CUSTBASE_MAX_LOOP_LAG_S", "1.0"))
#: Largest id accepted: exact in JSON numbers everywhere (2**53 - 1), far above any bank's ids.
CUSTOMER_ID_MAX = 2**53 - 1
#: A request body must arrive within BODY_BASE_S + its size / BODY_MIN_RATE seconds (at most BODY_MAX_S), or 408:
#: a slow upload neither holds a capacity slot (taken only once the body is read) nor its connection for long.
BODY_BASE_S = float(os.environ.get("CUSTBASE_BODY_BASE_S", "2"))
BODY_MIN_RATE = float(os.environ.get("CUSTBASE_BODY_MIN_RATE", str(1024 * 1024)))
BODY_MAX_S = float(os.environ.get("CUSTBASE_BODY_MAX_S", "10"))
#: Longest log message, in characters.
MAX_LOG_LINE = 1_000
API_ROUTES: tuple[str, ...] = ("/score", "/score_customers")
#: Every path the service answers; any other gets 404 before auth and metrics.
KNOWN_ROUTES: frozenset[str] = frozenset(
    {*API_ROUTES, "/", "/docs", "/docs.json", "/openapi.json", "/metrics", "/healthz", "/livez", "/readyz", "/schema.json"}
)
DOCS_ASSETS = "/docs-assets"

_models_override: ScoringModels | None = None


def use_models(models: ScoringModels | None) -> None:
    """Test hook: make services created in this process use ``models`` (None restores the normal loading)."""
    global _models_override
    _models_override = models


def _load_spec() -> ServingSpec | None:
    spec = find_spec(getattr(bentoml.use_arguments(), "serving_spec", None))
    if spec is None and (os.environ.get(MODELS_PICKLE_ENV) or os.environ.get(MODELS_FACTORY_ENV)):
        spec = spec_from_models(models_from_environment(), Policy())
    return spec


SPEC = _load_spec()


def snapshot_path() -> Path:
    """The online feature snapshot: ``CUSTBASE_SNAPSHOT``, else ``paths.online_snapshot`` of the configuration
    (``CUSTBASE_CONFIG`` or ``custbase.yaml`` in the working directory), the file ``custbase score`` refreshes."""
    if os.environ.get(SNAPSHOT_ENV):
        return Path(os.environ[SNAPSHOT_ENV])
    from custbase.config import load_config

    configured = os.environ.get("CUSTBASE_CONFIG")
    return Path(load_config(Path(configured) if configured else None).paths.online_snapshot)


# --------------------------------------------------------------------------------------------- schema

def _integral(value: Any) -> Any:
    """JSON Schema counts 7.0 as an integer and so do we; a boolean is not a customer id."""
    if isinstance(value, bool):
        raise ValueError("customer ids are integers, not booleans")
    if isinstance(value, float) and value.is_integer() and abs(value) <= CUSTOMER_ID_MAX:
        return int(value)
    return value


CustomerId = Annotated[int, Field(strict=True, ge=0, le=CUSTOMER_ID_MAX, description="The bank's customer identifier."),
                       BeforeValidator(_integral)]
Reasons = Annotated[
    Literal["none", "action", "all"],
    Field(description="Reason codes: none; action (default: the top 3 of the model behind the recommended action); "
                      "all (the top 3 of each model)."),
]


def _feature_field(feature) -> tuple[Any, Any]:
    description = feature.description or feature.name.replace("_", " ")
    if feature.kind == "categorical" and feature.categories:
        return Optional[Literal[tuple(feature.categories)]], Field(..., description=description)  # type: ignore[valid-type]
    bounds = {k: v for k, v in (("ge", feature.minimum), ("le", feature.maximum)) if v is not None}
    return Optional[float], Field(..., description=description, allow_inf_nan=False, **bounds)


def customer_features_model(spec: ServingSpec | None) -> type[BaseModel]:
    """The request record of ``/score`` for the served feature set."""
    fields: dict[str, Any] = {
        "customer_id": (CustomerId, ...),
        "as_of": (Optional[dt.date], Field(None, description="Month end the features describe.")),
    }
    tiers = None
    if spec is None:
        fields["features"] = (dict[str, Optional[float]], Field(..., description="Feature name -> value."))
    else:
        for feature in spec.features:
            fields[feature.name] = _feature_field(feature)
        tiers = next((f.categories for f in spec.features if f.name == "value_tier" and f.categories), None)
        names = {f.name for f in spec.features}
        for name, text in (("is_dormant", "1 if the customer is dormant (policy input)."),
                           ("months_quiet", "Consecutive quiet months up to as_of; > 0 is outside the churn population (policy input)."),
                           ("product_count", "Products held (policy input).")):
            if name not in names:
                fields[name] = (Optional[float], Field(None, description=text, allow_inf_nan=False, ge=0, le=1e6))
    tier_type = Literal[tuple(tiers)] if tiers else Annotated[str, Field(min_length=1, max_length=64)]  # type: ignore[valid-type]
    fields["value_tier"] = (tier_type, Field(..., description="Value tier of the customer at as_of (required)."))
    return create_model("CustomerFeatures", __config__=ConfigDict(extra="forbid"), **fields)


#: Scores, segment, action and reasons of one customer: the fields of :data:`serving.runtime.schema.SCORE_FIELDS`.
CustomerScore = create_model("CustomerScore", __doc__="Scores, segment, action and reasons of one customer.", **score_fields())


class CustomerResult(BaseModel):
    """The score of one requested customer, or why there is none."""

    customer_id: int
    score: Optional[CustomerScore] = None
    error: Optional[str] = None


class ScoreCustomersRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_ids: list[CustomerId] = Field(..., min_length=1, max_length=MAX_ITEMS, description=f"1 to {MAX_ITEMS} ids.")
    reasons: Reasons = "action"


class ErrorBody(BaseModel):
    """Every error except 422: what went wrong, naming the field or limit."""

    detail: str


class ValidationIssue(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """422: one entry per invalid field; ``loc`` is the path to it (e.g. ``["body", "customers", 0, "age"]``)."""

    detail: list[ValidationIssue]


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "The body cannot be read as JSON text."},
    401: {"model": ErrorBody, "description": "Missing or invalid API key."},
    413: {"model": ErrorBody, "description": f"Body over {MAX_BODY_BYTES:,} bytes, more than {MAX_ITEMS:,} items, or a "
                                             f"call priced over {CALL_COST_MAX_S:.1f} s of scoring (the detail names "
                                             "the cheaper forms: reasons: action, fewer ids)."},
    415: {"model": ErrorBody, "description": "The body is not application/json."},
    429: {"model": ErrorBody, "description": f"The worker's scoring budget ({COST_BUDGET_S:.1f} s) is held by other "
                                             "calls: retry after 1 s, or send a cheaper call."},
    422: {"model": ValidationErrorBody, "description": "A field is missing, unknown, of the wrong type or out of range."},
    503: {"model": ErrorBody, "description": "At capacity (retry after 1 s) or no online feature snapshot."},
}


# --------------------------------------------------------------------------------------------- state


class Scoring:
    """What the endpoints score with: the models, the policy and the online feature snapshot."""

    def __init__(self, models: ScoringModels, policy: Policy, snapshot: OnlineFeatureSnapshot,
                 costs: ScoringCosts | None = None):
        from serving.runtime.models import matrix_models

        self.models, self.policy, self.snapshot = models, policy, snapshot
        matrix_models(models)  # the array form once, at start
        #: Seconds of scoring per item by reasons mode, measured on these models (the price of admission).
        self.costs = costs or measure_scoring_costs(models, policy)

    def score_features(self, customers: list[BaseModel], reasons: str) -> list[dict[str, Any]]:
        records = []
        for record in customers:
            data = record.model_dump()
            data.update(data.pop("features", None) or {})
            records.append(data)
        return [_api_score(r) for r in score_records(records, self.models, self.policy, reasons=reasons)]

    def score_ids(self, customer_ids: list[int], reasons: str) -> list[dict[str, Any]]:
        found = self.snapshot.lookup_records(customer_ids)
        rows = score_records(list(found.values()), self.models, self.policy, reasons=reasons)
        scored = {r["customer_id"]: _api_score(r) for r in rows}
        return [
            {"customer_id": i, "score": scored[i], "error": None} if i in scored
            else {"customer_id": i, "score": None,
                  "error": f"customer {i} is not in the online feature snapshot (not active at its as_of, or unknown)"}
            for i in customer_ids
        ]


def _as_of_text(value: Any) -> Optional[str]:
    if value is None:
        return None
    return value.isoformat() if isinstance(value, dt.date) else str(value)[:10]


def _api_score(row: dict[str, Any]) -> dict[str, Any]:
    """A score row of :func:`serving.runtime.scoring.score_records` as the JSON of :class:`CustomerScore`."""
    # Every field of CustomerScore that is a score column is copied as is: a new score column needs only its field.
    out = {k: row[k] for k in CustomerScore.model_fields if k in row}
    out["as_of"] = _as_of_text(row["as_of"])
    out["model_versions"] = {model: str(row[column]) for model, column in VERSION_COLUMNS.items()}
    return out


_BUDGET = CostBudget(COST_BUDGET_S)
_LIMITER = None


async def _admitted(path: str, costs: ScoringCosts, func, items: list, reasons: str) -> JSONResponse:
    """Score ``items`` with ``func(items, reasons)`` once the call's price is admitted.

    The price is the measured cost of its items and reasons mode (:class:`serving.admission.ScoringCosts`). Over
    :data:`CALL_COST_MAX_S`: 413 naming the limit and the cheaper forms. At most :data:`INLINE_COST_S`: scored at
    once on the event loop, outside the budget. Otherwise it must fit in the worker's :data:`COST_BUDGET_S` beside
    the calls admitted already (429 with ``Retry-After: 1`` otherwise) and is scored in one worker thread, in
    chunks of about :data:`CHUNK_COST_S`, so the calls behind it wait for a chunk rather than for all of it."""
    cost = costs.price(len(items), reasons)
    if cost > CALL_COST_MAX_S:
        logger.warning("client error 413 on POST %s: %d items with reasons %s priced %.2f s, over %.2f s per call",
                       path, len(items), reasons, cost, CALL_COST_MAX_S)
        return JSONResponse({"detail": (
            f"this call would cost about {cost:.2f} s of scoring ({len(items):,} items with reasons: {reasons}), over "
            f"the {CALL_COST_MAX_S:.2f} s one call may take (CUSTBASE_CALL_COST_MAX_S): send "
            f"{cheaper_forms(costs, len(items), reasons, CALL_COST_MAX_S)}")}, status_code=413)
    if cost <= INLINE_COST_S:
        return JSONResponse(func(items, reasons))
    if not _BUDGET.take(cost):
        logger.warning("client error 429 on POST %s: cost budget busy (%.2f of %.2f s admitted)", path,
                       _BUDGET.in_use_s, _BUDGET.capacity_s)
        return JSONResponse({"detail": (
            f"busy: {_BUDGET.in_use_s:.2f} s of the {_BUDGET.capacity_s:.2f} s scoring budget "
            f"(CUSTBASE_COST_BUDGET_S) are admitted and this call costs about {cost:.2f} s: retry after 1 s, or send "
            f"{cheaper_forms(costs, len(items), reasons, INLINE_COST_S)}, which is never queued")},
            status_code=429, headers={"Retry-After": "1"})
    import anyio

    global _LIMITER
    if _LIMITER is None:
        _LIMITER = anyio.CapacityLimiter(1)
    chunk = max(1, costs.items_within(CHUNK_COST_S, reasons))
    try:
        out: list = []
        for first in range(0, len(items), chunk):
            out += await anyio.to_thread.run_sync(func, items[first:first + chunk], reasons, limiter=_LIMITER)
        return JSONResponse(out)
    finally:
        _BUDGET.give_back(cost)


# --------------------------------------------------------------------------------------------- the app

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def log_path(loc) -> str:
    """A field's path for a log line: positions and the names the API declares; any other key (it came from the
    body, and can be anything, of any length) is written ``<unknown key>``."""
    parts = []
    for part in loc:
        if isinstance(part, int):
            parts.append(str(part))
        elif _NAME.fullmatch(str(part)) and str(part) in DECLARED_NAMES:
            parts.append(str(part))
        else:
            parts.append("<unknown key>")
    return ".".join(parts) or "body"


#: Field names a log line may quote: the request models' fields (filled in by :func:`build_app`).
DECLARED_NAMES: set[str] = {"customers", "customer_ids", "reasons", "body"}


class BoundedLines(logging.Filter):
    """Caps every log record's message at :data:`MAX_LOG_LINE` characters: no library's error can write a request
    back into the log at full length."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if len(message) > MAX_LOG_LINE:
            record.msg, record.args = message[:MAX_LOG_LINE] + f"... ({len(message):,} characters, cut)", None
        return True


def bound_logs() -> None:
    """Install :class:`BoundedLines` on every handler of the root logger and of the server's loggers."""
    bounded = BoundedLines()
    for name in (None, "uvicorn", "uvicorn.error", "uvicorn.access", "bentoml", "bentoml.access", "custbase"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, BoundedLines) for f in handler.filters):
                handler.addFilter(bounded)


def _client_error(request: Request, status: int, detail: Any) -> JSONResponse:
    # One line, no values from the body: the route and the kind of error at most.
    logger.warning("client error %d on %s %s", status, request.method, request.url.path)
    return JSONResponse({"detail": detail}, status_code=status)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    issues = [{"loc": [p if isinstance(p, int) else str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")),
               "type": str(e.get("type", ""))} for e in exc.errors()]
    for issue in issues:
        if issue["type"] == "too_long" and len(issue["loc"]) == 2:
            return _client_error(request, 413, f"{issue['loc'][1]}: at most {MAX_ITEMS:,} items per request")
    fields = ", ".join(f"{log_path(i['loc'][1:])} ({i['type'][:40]})" for i in issues[:5])
    logger.warning("client error 422 on %s %s: %d invalid field(s): %s", request.method, request.url.path, len(issues), fields)
    return JSONResponse({"detail": issues}, status_code=422)


def _swagger_assets() -> Path:
    from bentoml._internal import server

    return Path(server.__file__).parent / "static_content"


def build_app(spec: ServingSpec | None) -> FastAPI:
    """The FastAPI app of the endpoints for the feature set of ``spec``; set ``app.state.scoring`` (a
    :class:`Scoring`) before serving requests."""
    customer_features = customer_features_model(spec)
    DECLARED_NAMES.update(customer_features.model_fields)
    score_request = create_model(
        "ScoreRequest",
        __config__=ConfigDict(extra="forbid"),
        customers=(list[customer_features], Field(..., min_length=1, max_length=MAX_ITEMS,  # type: ignore[valid-type]
                                                  description=f"1 to {MAX_ITEMS:,} feature records.")),
        reasons=(Reasons, "action"),
    )
    app = FastAPI(
        title="custbase",
        version="1",
        description=(
            "Churn, upgrade-propensity and CLV scores with segment, recommended action and reason codes. "
            "Authorize with an API key (`Authorization: Bearer <key>` or `X-API-Key: <key>`). "
            f"Limits: {MAX_ITEMS:,} items and {MAX_BODY_BYTES:,} bytes per request (413 beyond); numbers finite and "
            "within each field's documented range (422 naming the field otherwise); at most "
            f"{MAX_IN_FLIGHT} requests in flight (503 with Retry-After beyond); a call priced over "
            f"{CALL_COST_MAX_S:.1f} s of scoring gets 413 (reasons cost most: ask reasons: action or fewer ids), and "
            f"one that does not fit in the worker's {COST_BUDGET_S:.1f} s scoring budget beside others gets 429 "
            "with Retry-After."
        ),
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
        responses=ERROR_RESPONSES,
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    security = [Security(HTTPBearer(auto_error=False, description="An API key from CUSTBASE_API_KEYS.")),
                Security(APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from CUSTBASE_API_KEYS."))]

    def scoring() -> Scoring:
        return app.state.scoring

    async def score(body) -> Any:
        """Score 1 to ``MAX_ITEMS`` customer feature records (each record's features as the schema lists them)."""
        return await _admitted("/score", scoring().costs, scoring().score_features, body.customers, body.reasons)

    # The request model is built here, so the annotation is set as an object (a string would not resolve).
    score.__annotations__ = {"body": score_request, "return": Any}
    app.post("/score", response_model=list[CustomerScore], dependencies=security, summary="Score feature records")(score)

    @app.post("/score_customers", response_model=list[CustomerResult], dependencies=security, summary="Score customers by id")
    async def score_customers(body: ScoreCustomersRequest) -> Any:
        """Score customers by id from the online feature snapshot; unknown ids come back as per-item errors."""
        try:
            return await _admitted("/score_customers", scoring().costs, scoring().score_ids, body.customer_ids, body.reasons)
        except SnapshotMissing as err:
            logger.error("%s", err)
            return JSONResponse({"detail": str(err)}, status_code=503)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        # Swagger UI from BentoML's bundled copy, served here: no third-party script in the page.
        return get_swagger_ui_html(openapi_url="/openapi.json", title="custbase API",
                                   swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{DOCS_ASSETS}/favicon-light-32x32.png")

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> PlainTextResponse:
        return PlainTextResponse(METRICS.render(), media_type="text/plain; version=0.0.4")

    app.mount(DOCS_ASSETS, StaticFiles(directory=_swagger_assets()), name="docs-assets")
    return app


app = build_app(SPEC)

# --------------------------------------------------------------------------------------------- guard and metrics


class RouteMetrics:
    """Prometheus counters and a latency histogram per known route and status (labels bounded by construction)."""

    BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.histogram: dict[str, list[float]] = {}  # route -> [bucket counts..., +Inf, sum]

    def observe(self, route: str, status: int, seconds: float) -> None:
        route = route if route in KNOWN_ROUTES else "other"
        key = (route, int(status))
        self.requests[key] = self.requests.get(key, 0) + 1
        counts = self.histogram.setdefault(route, [0.0] * (len(self.BUCKETS) + 2))
        for i, bound in enumerate(self.BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        counts[-2] += 1
        counts[-1] += seconds

    def render(self) -> str:
        lines = ["# TYPE custbase_requests_total counter"]
        lines += [f'custbase_requests_total{{route="{r}",status="{s}"}} {n}' for (r, s), n in sorted(self.requests.items())]
        lines.append("# TYPE custbase_request_seconds histogram")
        for route, counts in sorted(self.histogram.items()):
            lines += [f'custbase_request_seconds_bucket{{route="{route}",le="{b}"}} {int(c)}' for b, c in zip(self.BUCKETS, counts)]
            lines.append(f'custbase_request_seconds_bucket{{route="{route}",le="+Inf"}} {int(counts[-2])}')
            lines.append(f'custbase_request_seconds_count{{route="{route}"}} {int(counts[-2])}')
            lines.append(f'custbase_request_seconds_sum{{route="{route}"}} {counts[-1]:.6f}')
        lines.append(f"custbase_in_flight {GUARD_STATE['in_flight']}")
        return "\n".join(lines) + "\n"


METRICS = RouteMetrics()
GUARD_STATE: dict[str, Any] = {"in_flight": 0, "loop_lag": 0.0, "watcher": None}


async def _watch_loop_lag(interval: float = 0.05) -> None:
    """How late the event loop runs a timer: the wait a request arriving now has in front of it."""
    import asyncio

    previous = 0.0
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval)
        lag = max(0.0, time.perf_counter() - started - interval)
        # The smaller of two samples: a lone pause (the OS scheduling another process) is not a queue.
        GUARD_STATE["loop_lag"], previous = min(lag, previous), lag


async def _send_json(send, status: int, payload: dict, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
    import json

    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """Pure ASGI middleware answering before any work: unknown path 404, index pages redirected to ``/docs``,
    non-JSON body 415, body over :data:`MAX_BODY_BYTES` 413 (declared or streamed), over :data:`MAX_IN_FLIGHT`
    requests 503; it also records the per-route metrics."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in ("/", "/docs.json"):
            target = b"/docs" if path == "/" else b"/openapi.json"
            await send({"type": "http.response.start", "status": 307, "headers": [(b"location", target), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if path not in KNOWN_ROUTES and not path.startswith(DOCS_ASSETS + "/"):
            await _send_json(send, 404, {"detail": "not found: the routes are POST /score, POST /score_customers, GET /docs"})
            return
        started = time.perf_counter()
        status_seen = {"status": 500}

        async def recording_send(message):
            if message["type"] == "http.response.start":
                status_seen["status"] = message["status"]
            await send(message)

        route = path if path in KNOWN_ROUTES else "docs-assets"
        try:
            if path in API_ROUTES and scope.get("method") == "POST":
                await self._api(scope, receive, recording_send)
            else:
                await self.app(scope, receive, recording_send)
        finally:
            METRICS.observe(route if route != "docs-assets" else "/docs", status_seen["status"], time.perf_counter() - started)

    async def _api(self, scope, receive, send):
        headers = dict(scope.get("headers", []))
        media = headers.get(b"content-type", b"application/json").split(b";")[0].strip().lower()
        if media != b"application/json":
            logger.warning("client error 415 on POST %s", scope["path"])
            await _send_json(send, 415, {"detail": "send the body as application/json"})
            return
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            logger.warning("client error 413 on POST %s", scope["path"])
            await _send_json(send, 413, {"detail": f"body over {MAX_BODY_BYTES:,} bytes: split the request"})
            return
        body = await read_body(receive, send, declared=int(declared) if declared is not None else None, path=scope["path"])
        if body is None:
            return  # answered already (408 or 413), or the client went away
        if GUARD_STATE["watcher"] is None:
            import asyncio

            GUARD_STATE["watcher"] = asyncio.get_running_loop().create_task(_watch_loop_lag())
        if GUARD_STATE["in_flight"] >= MAX_IN_FLIGHT or GUARD_STATE["loop_lag"] > MAX_LOOP_LAG_S:
            await _send_json(send, 503, {"detail": "at capacity: retry after 1 s"}, ((b"retry-after", b"1"),))
            return
        GUARD_STATE["in_flight"] += 1  # a slot for work: the body is in hand
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            await self.app(scope, replay, send)
        finally:
            GUARD_STATE["in_flight"] -= 1


async def read_body(receive, send, *, declared: int | None, path: str) -> bytes | None:
    """The whole request body, bounded in size and in time; None when it was refused (413, 408) or abandoned.

    The deadline is ``BODY_BASE_S + size / BODY_MIN_RATE`` (``BODY_MAX_S`` when the size is not declared, and at
    most that): a client that trickles its body gets 408 and its connection is closed."""
    import asyncio

    budget = BODY_MAX_S if declared is None else min(BODY_MAX_S, BODY_BASE_S + declared / BODY_MIN_RATE)
    deadline = time.monotonic() + budget
    chunks, size = [], 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), timeout=max(deadline - time.monotonic(), 0.001))
        except asyncio.TimeoutError:
            logger.warning("client error 408 on POST %s: body not received within %.1f s (%d bytes so far)", path, budget, size)
            await _send_json(send, 408, {"detail": f"request body not received within {budget:.1f} s: send it at once"},
                             ((b"connection", b"close"),))
            return None
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        if size > MAX_BODY_BYTES:
            logger.warning("client error 413 on POST %s", path)
            await _send_json(send, 413, {"detail": f"body over {MAX_BODY_BYTES:,} bytes: split the request"},
                             ((b"connection", b"close"),))
            return None
        if not message.get("more_body"):
            return b"".join(chunks)


# BentoML's access line would quote the request's Content-Type, which is whatever the client sent (up to the 16 KiB
# request head): it carries method, path, status, sizes and latency only.
@bentoml.service(name="custbase", traffic={"timeout": 30}, workers=1, metrics={"enabled": False},
                 logging={"access": {"request_content_type": False}})
@bentoml.asgi_app(app, path="/")
class CustbaseScoring:
    """Churn, upgrade and CLV scores with segment, recommended action and reasons."""

    def __init__(self) -> None:
        models = _models_override or models_from_environment(SPEC.refs() if SPEC else None)
        app.state.scoring = Scoring(models, SPEC.policy if SPEC else Policy(), OnlineFeatureSnapshot(snapshot_path()))
        bound_logs()
        # Before the first connection: the server's settings bound neither idle nor half-open connections.
        patched = close_idle_connections(HEAD_TIMEOUT_S)
        logger.info("connections must send each request head within %.1f s (%s)", HEAD_TIMEOUT_S, ", ".join(patched) or "off")
        logger.info("serving models %s; online feature snapshot %s", models.versions(), app.state.scoring.snapshot.path)
        logger.info("scoring cost per item, measured: %s; per call at most %.2f s, budget %.2f s per worker",
                    ", ".join(f"{m} {v * 1000:.3f} ms" for m, v in app.state.scoring.costs.per_item_s.items()),
                    CALL_COST_MAX_S, COST_BUDGET_S)
        # Everything loaded so far (models, libraries: ~200k objects) lives as long as the worker. Freezing it keeps
        # Python's full garbage collections, which would walk it all (~75-120 ms), off the request path: they were
        # the open-loop p99.
        gc.freeze()


CustbaseScoring.add_asgi_middleware(RequestGuard)
CustbaseScoring.add_asgi_middleware(ApiKeyMiddleware)
