"""Label Studio ML backend serving the registry's champion (``acorn serve``).

``create_app(ServeConfig)`` builds the ASGI app; ``ServerThread`` runs it on a port inside a
process (tests, benchmarks); ``acorn.serve.cli.serve`` is the command line entry.
"""

from acorn.serve.app import create_app
from acorn.serve.config import ServeConfig
from acorn.serve.server import ServerThread

__all__ = ["ServeConfig", "ServerThread", "create_app"]
