"""The lab's services and their shared runtime.

Each service runs as `python -m labstack.<name>` and is configured only by
LAB_* environment variables (see labstack.settings).
"""
