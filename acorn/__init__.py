"""acorn: label only the tiles that teach the detector most.

Importing the package applies the offline settings (see ``acorn.runtime.env``) before any
ultralytics, MLflow or DVC module is loaded, so that no entry point can forget them.
"""

from acorn.runtime.env import configure_environment

configure_environment()

__version__ = "0.1.0"
