"""API-key / bearer-token authentication as a pure ASGI middleware.

Keys come from ``CUSTBASE_API_KEYS`` (comma-separated). A request is let through when its
``Authorization: Bearer <key>`` or ``X-API-Key: <key>`` header equals one of them (compared with
``hmac.compare_digest``). Health, readiness, metrics and the API docs stay open. With no key configured every
protected request is refused: the service fails closed.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterable

API_KEYS_ENV = "CUSTBASE_API_KEYS"
OPEN_PATHS: frozenset[str] = frozenset(
    {"/", "/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/schema.json", "/openapi.json"}
)
OPEN_PREFIXES: tuple[str, ...] = ("/static_content/", "/assets/", "/docs-assets/")


def api_keys_from_env(environ: dict[str, str] | None = None) -> tuple[str, ...]:
    raw = (environ if environ is not None else os.environ).get(API_KEYS_ENV, "")
    return tuple(k.strip() for k in raw.split(",") if k.strip())


def is_open_path(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


class ApiKeyMiddleware:
    """ASGI middleware refusing requests without a valid key with 401 (JSON body, ``WWW-Authenticate: Bearer``)."""

    def __init__(self, app, keys: Iterable[str] | None = None):
        self.app = app
        self.keys = tuple(k.encode() for k in (api_keys_from_env() if keys is None else keys))

    def _presented(self, headers: list[tuple[bytes, bytes]]) -> bytes | None:
        for name, value in headers:
            name = name.lower()
            if name == b"x-api-key":
                return value.strip()
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                return value[7:].strip()
        return None

    def _allowed(self, key: bytes | None) -> bool:
        if not key:
            return False
        # Compare against every key (no early exit) so timing says nothing about which key nearly matched.
        return bool(sum(hmac.compare_digest(key, k) for k in self.keys))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or is_open_path(scope.get("path", "")) or self._allowed(self._presented(scope.get("headers", []))):
            await self.app(scope, receive, send)
            return
        detail = "missing or invalid API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
        if not self.keys:
            detail = f"no API keys are configured on this service: set {API_KEYS_ENV}"
        body = json.dumps({"error": "unauthorized", "detail": detail}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"www-authenticate", b'Bearer realm="custbase"'),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
