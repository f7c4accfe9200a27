"""Where labkit is running: a learner's live Jupyter session, a headless run, or a terminal."""

from __future__ import annotations

import os
import sys


def in_kernel() -> bool:
    """True inside an IPython kernel (JupyterLab, papermill, nbclient alike)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    return getattr(shell, "kernel", None) is not None


def interactive() -> bool:
    """A person is watching: a JupyterLab session or a terminal, never papermill or CI.

    Only jupyter_server sets JPY_SESSION_NAME: papermill and nbclient kernels lack it.
    """
    if os.environ.get("CI"):
        return False
    return "JPY_SESSION_NAME" in os.environ if in_kernel() else sys.stderr.isatty()
