"""Idle and half-open connections: a connection must send a whole request head within a deadline, or is closed.

What the HTTP server offers, as ``bentoml serve`` (BentoML 1.4.40) starts uvicorn (0.54): BentoML passes uvicorn
only ``backlog`` (2,048), ``timeout_keep_alive`` (``bentoml serve --timeout-keep-alive``, uvicorn's default 5 s)
and ``timeout_graceful_shutdown``; uvicorn's ``limit_concurrency`` and ``h11_max_incomplete_event_size`` keep
their defaults (no limit; a 16 KiB request head). The keep-alive timer closes a connection that is silent for
``timeout_keep_alive`` seconds *after a response*; it is armed only then, and any byte cancels it. So a
connection that never sends a byte, or trickles its request head, is held forever: nothing in the server's
settings bounds it, and the ASGI app (where the body deadline lives, :func:`serving.service.read_body`) sees a
request only once its head is complete.

:func:`close_idle_connections` therefore adds one deadline to uvicorn's own HTTP protocol classes: from the moment
a connection opens, and again after each response, it has :data:`HEAD_TIMEOUT_S` seconds to deliver a complete
request head, else the server closes it (as its keep-alive timer would). A request being served is never cut by
it: its body has its own deadline in the ASGI layer.
"""

from __future__ import annotations

import importlib
import logging
import os

logger = logging.getLogger("custbase.service")

#: Seconds a connection has, after it opens or after a response, to send a complete request head.
HEAD_TIMEOUT_S = float(os.environ.get("CUSTBASE_HEAD_TIMEOUT_S", "5"))

_PROTOCOLS = (("uvicorn.protocols.http.h11_impl", "H11Protocol"),
              ("uvicorn.protocols.http.httptools_impl", "HttpToolsProtocol"))
_HOOKS = ("connection_made", "data_received", "on_response_complete", "connection_lost")


def _serving(protocol) -> bool:
    cycle = getattr(protocol, "cycle", None)
    return cycle is not None and not cycle.response_complete


def _cancel(protocol) -> None:
    timer = getattr(protocol, "_custbase_head_timer", None)
    if timer is not None:
        timer.cancel()
        protocol._custbase_head_timer = None


def _expire(protocol) -> None:
    protocol._custbase_head_timer = None
    if not _serving(protocol) and not protocol.transport.is_closing():
        protocol.transport.close()


def _arm(protocol, seconds: float) -> None:
    _cancel(protocol)
    if not protocol.transport.is_closing():
        protocol._custbase_head_timer = protocol.loop.call_later(seconds, _expire, protocol)


def _with_deadline(cls, seconds: float) -> None:
    made, received, completed, lost = (getattr(cls, name) for name in _HOOKS)

    def connection_made(self, transport):
        made(self, transport)
        _arm(self, seconds)

    def data_received(self, data):
        received(self, data)
        if _serving(self):  # a whole head arrived: the request is the ASGI layer's now
            _cancel(self)

    def on_response_complete(self):
        completed(self)
        _arm(self, seconds)

    def connection_lost(self, exc):
        _cancel(self)
        lost(self, exc)

    for name, hook in zip(_HOOKS, (connection_made, data_received, on_response_complete, connection_lost)):
        setattr(cls, name, hook)
    cls._custbase_head_deadline = seconds


def close_idle_connections(seconds: float = HEAD_TIMEOUT_S) -> list[str]:
    """Give every connection of uvicorn's HTTP protocols ``seconds`` to send each complete request head (see the
    module's text); returns the classes changed. Idempotent; 0 or less turns nothing on."""
    changed = []
    if seconds <= 0:
        return changed
    for module_name, class_name in _PROTOCOLS:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError):
            continue  # httptools is optional; h11 is what uvicorn uses without it
        if getattr(cls, "_custbase_head_deadline", None) is not None:
            changed.append(class_name)
            continue
        if not all(hasattr(cls, name) for name in _HOOKS):
            logger.warning("uvicorn's %s lacks %s: idle connections are not closed (this uvicorn is not 0.54-like)",
                           class_name, ", ".join(n for n in _HOOKS if not hasattr(cls, n)))
            continue
        _with_deadline(cls, seconds)
        changed.append(class_name)
    return changed
