"""ASGI entry point: HTTP through Django, websockets through Channels.

Two checks wrap both: the client's address and scheme come from X-Forwarded-For / X-Forwarded-Proto only when
the connection comes from a proxy listed in ``ARENA_TRUSTED_PROXIES`` (the rate limits key on that address), and
a websocket is accepted only from a page of this very site: same scheme, host and port as the request.
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Django must be set up before anything imports models, so the HTTP app comes first.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import WebsocketDenier  # noqa: E402
from channels.sessions import SessionMiddlewareStack  # noqa: E402
from django.conf import settings  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402

from arena.events import server_loop_register  # noqa: E402
from config.routing import websocket_urlpatterns  # noqa: E402

DEFAULT_PORT = {"http": 80, "https": 443}


def _header(scope: dict, name: bytes) -> str | None:
    values = [value for key, value in scope.get("headers", []) if key.lower() == name]
    return b",".join(values).decode("latin-1") if values else None


def _trusted(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in settings.ARENA_TRUSTED_PROXIES)


def forwarded_client(scope: dict) -> tuple[str, str]:
    """(client address, scheme) of a connection, believing the forwarded headers only from a trusted proxy.

    X-Forwarded-For is read from the right: each trusted proxy appends the address it saw, so the first address
    from the right that is not itself a trusted proxy is the client. Whatever a client wrote further left is
    ignored, so a made-up X-Forwarded-For buys nobody a fresh rate-limit bucket.
    """
    peer = (scope.get("client") or ["", 0])[0] or ""
    scheme = scope.get("scheme") or ("ws" if scope["type"] == "websocket" else "http")
    if not _trusted(peer):
        return peer, scheme
    client = peer
    for hop in reversed([h.strip() for h in (_header(scope, b"x-forwarded-for") or "").split(",") if h.strip()]):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            break
        client = hop
        if not _trusted(hop):
            break
    proto = (_header(scope, b"x-forwarded-proto") or "").split(",")[-1].strip().lower()
    if proto in ("http", "https"):
        secure = proto == "https"
        scheme = ("wss" if secure else "ws") if scope["type"] == "websocket" else proto
    return client, scheme


class ForwardedClientMiddleware:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        server_loop_register()
        if scope["type"] in ("http", "websocket") and settings.ARENA_TRUSTED_PROXIES:
            client, scheme = forwarded_client(scope)
            port = (scope.get("client") or ["", 0])[1]
            scope = {**scope, "client": [client, port], "scheme": scheme}
        return await self.app(scope, receive, send)


def _origin_port(scheme: str, port: int | None) -> int:
    return port if port is not None else DEFAULT_PORT[scheme]


def same_origin(scope: dict) -> bool:
    """True when the websocket's Origin is this site as the request reached it: the scheme (http for ws, https
    for wss), the host and the port all match the Host header, and the host is allowed; or the Origin is one of
    ``CSRF_TRUSTED_ORIGINS`` exactly."""
    origin = _header(scope, b"origin")
    if not origin:
        return False
    if origin in settings.CSRF_TRUSTED_ORIGINS:
        return True
    try:
        parts = urlsplit(origin)
        origin_port = parts.port
    except ValueError:
        return False
    expected = "https" if scope.get("scheme") == "wss" else "http"
    if parts.scheme != expected or not parts.hostname:
        return False
    host, port = split_domain_port(_header(scope, b"host") or "")
    if not host or not validate_host(host, settings.ALLOWED_HOSTS):
        return False
    try:
        host_port = int(port) if port else None
    except ValueError:
        return False
    return parts.hostname.lower() == host.strip("[]").lower() and (
        _origin_port(parts.scheme, origin_port) == _origin_port(expected, host_port)
    )


class SameOriginValidator:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not same_origin(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.app(scope, receive, send)


application = ForwardedClientMiddleware(ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Sessions only, read lazily: no socket needs the user, and loading it at the handshake (as Channels'
        # AuthMiddleware does) dropped the connection without a word while the database was down. The battle
        # socket reads its session in connect(), where it can say why it closes.
        "websocket": SameOriginValidator(SessionMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
))

def _close_oversized_messages_with_1009() -> None:
    """Daphne's websocket library drops the TCP connection when a message is over daphne's size limit
    (--websocket-max-message-size, 1 MiB by default), so the client never learns why. Ask it to send the close
    frame first (1009, message too big), as RFC 6455 has it. Messages under the limit but over the consumer's own
    limit are answered with a 413 error frame on an open socket."""
    try:
        from daphne.ws_protocol import WebSocketFactory
    except ImportError:  # served by something other than daphne
        return
    if getattr(WebSocketFactory, "_arena_closes_with_1009", False):
        return
    set_options = WebSocketFactory.setProtocolOptions

    def setProtocolOptions(self, *args, **kwargs):
        kwargs.setdefault("failByDrop", False)
        return set_options(self, *args, **kwargs)

    WebSocketFactory.setProtocolOptions = setProtocolOptions
    WebSocketFactory._arena_closes_with_1009 = True


_close_oversized_messages_with_1009()

# The embedded default has no celery beat: this process refreshes the leaderboard itself (off in production).
from leaderboard.snapshots import leaderboard_timer_start  # noqa: E402

leaderboard_timer_start()
