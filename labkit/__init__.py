"""labkit: drive the Microservice Patterns Lab's live stack from Python.

    import labkit
    lab = labkit.connect()          # starts the local stack if none is running
    lab.scale("echo", 3)
    df = lab.load("http://echo.localhost/", rps=100, seconds=5)
    lab.plot.requests_per_instance(df)
"""

from .errors import LabError, LabTimeout
from .lab import Lab, connect

__all__ = ["Lab", "LabError", "LabTimeout", "connect"]
