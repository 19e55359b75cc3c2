"""pykaf.gateway: Kafka over HTTP, with journal custody behind it.

An ASGI application (``create_app(settings)``, mountable in any ASGI framework) serving
kafboy's routes (``POST /async/{topic}``, ``/sync/{topic}``, ``/batch/...``,
``/safe/...``) and Confluent's REST v3 (clusters, topics, records), and ``pykaf
gateway`` to serve it. Install with ``pip install 'pykaf[gateway]'``.
"""

from pykaf.gateway._app import Gateway, create_app
from pykaf.gateway._auth_secrets import hash_password, hash_token
from pykaf.gateway._config import ConfigError, load_config
from pykaf.gateway._limits import LimitSettings, RateLimit
from pykaf.gateway._security import SecuritySettings, check_binding
from pykaf.gateway._server import ServerSettings, serve, serve_async
from pykaf.gateway._settings import Custody, GatewaySettings
from pykaf.gateway._tls_scope import uvicorn_http_protocol, uvicorn_options

__all__ = [
    "ConfigError",
    "Custody",
    "Gateway",
    "GatewaySettings",
    "LimitSettings",
    "RateLimit",
    "SecuritySettings",
    "ServerSettings",
    "check_binding",
    "create_app",
    "hash_password",
    "hash_token",
    "load_config",
    "serve",
    "serve_async",
    "uvicorn_http_protocol",
    "uvicorn_options",
]
