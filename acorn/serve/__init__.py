"""Label Studio ML backend serving the registry's champion (``acorn serve``).

``acorn.serve.app.create_app(ServeConfig)`` builds the ASGI app; ``acorn.serve.server.ServerThread``
runs it on a port inside a process (tests, benchmarks); ``acorn.serve.cli.serve`` is the command
line entry. Nothing is imported here, so ``acorn --help`` does not pay for FastAPI and MLflow.
"""
