"""The daemon's HTTP endpoint: a small Flask app served by waitress on a background thread.

Routes: ``/metrics`` (a Prometheus registry in the text format), ``/healthz`` (200 or 503 with the
health callable's detail), and, when a page source is given, ``/status`` (the server-rendered
status page, ``live/templates/status.html``) with ``/`` redirecting to it, and any blueprints given
(the FDSN event service, ``service/fdsnws.py``, when ``metrics.serve_events`` is on). No home-made HTTP: Flask
routes and renders, waitress (a maintained, pure-Python WSGI server) listens.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import waitress
from flask import Blueprint, Flask, Response, redirect, render_template
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

Health = Callable[[], "bool | tuple[bool, str]"]
Page = Callable[[], Any]  # returns the object the status template renders (live/status.StatusPage)
TEXT = "text/plain; charset=utf-8"


def health_answer(health: Health | None) -> tuple[int, str]:
    """``(status code, detail)`` of ``/healthz``: 200 or 503, and 503 when the check itself raises."""
    if health is None:
        return 200, "ok"
    try:
        result = health()
    except Exception as exc:  # a failing check is an unhealthy service, not a crashed endpoint
        return 503, f"health check failed: {exc}"
    ok, detail = result if isinstance(result, tuple) else (bool(result), "")
    return (200, detail or "ok") if ok else (503, detail or "unhealthy")


def utc_text(t: float | None) -> str:
    """Jinja filter ``utc``: POSIX seconds → ``YYYY-MM-DD HH:MM:SS.s`` UTC (``—`` for none)."""
    if t is None:
        return "—"
    return datetime.fromtimestamp(round(t, 1), timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-5]


def create_app(registry: CollectorRegistry, health: Health | None = None, page: Page | None = None,
               blueprints: Sequence[tuple[Blueprint, str]] = ()) -> Flask:
    """The WSGI app: ``/metrics`` of ``registry``, ``/healthz`` of ``health``, ``/status`` of ``page``, and
    each ``(blueprint, url prefix)`` of ``blueprints``."""
    app = Flask(__name__)
    app.add_template_filter(utc_text, "utc")
    for blueprint, prefix in blueprints:
        app.register_blueprint(blueprint, url_prefix=prefix)

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), status=200, content_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz() -> Response:
        code, text = health_answer(health)
        return Response(text + "\n", status=code, content_type=TEXT)

    if page is not None:
        @app.get("/")
        def root() -> Response:
            return redirect("/status", code=302)

        @app.get("/status")
        def status() -> Response:
            code, text = health_answer(health)
            html = render_template("status.html", page=page(), health_ok=code == 200, health_detail=text)
            return Response(html, status=200, content_type="text/html; charset=utf-8")

    @app.errorhandler(404)
    def not_found(_exc: Exception) -> Response:
        where = ", ".join(["/metrics", "/healthz"] + (["/status"] if page is not None else [])
                          + [f"{prefix}/" for _, prefix in blueprints])
        return Response(f"not found: try {where}\n", status=404, content_type=TEXT)

    return app


class WebServer:
    """The running endpoint: ``host``, ``port`` (the bound one), ``url``; ``close()`` stops it."""

    def __init__(self, app: Flask, host: str, port: int) -> None:
        self._server = waitress.create_server(app, host=host, port=port, threads=4, ident="eqt-monitor",
                                              asyncore_loop_timeout=0.5, clear_untrusted_proxy_headers=True)
        self.host, self.port = host, int(self._server.effective_port)
        self.url = f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"
        self._thread = threading.Thread(target=self._server.run, name="metrics-http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop serving, close open connections and release the port."""
        server = self._server

        def stop() -> None:  # runs on the loop's thread (closing its sockets from here would race its select)
            for channel in list(server._map.values()):
                if channel is not server and channel is not server.trigger:
                    channel.handle_close()  # open (keep-alive) connections
            server.close()  # the listening socket and the trigger: the map is empty, the loop ends

        server.trigger.pull_trigger(stop)
        self._thread.join(timeout=5)
        server.task_dispatcher.shutdown()

    def __enter__(self) -> "WebServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(host: str, port: int, registry: CollectorRegistry, health: Health | None = None,
          page: Page | None = None, blueprints: Sequence[tuple[Blueprint, str]] = ()) -> WebServer:
    """Serve :func:`create_app` on ``host:port`` (0: any free port) from a background thread;
    ``OSError`` when the address cannot be bound."""
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)  # "task queue depth" lines are noise here
    return WebServer(create_app(registry, health, page, blueprints), host, port)
