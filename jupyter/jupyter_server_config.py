"""The lab's Jupyter server configuration: every UI of the running lab through the server.

One file for every way of running the server: `make lab` and binder/start (Binder, and the
workshop hub's learner servers) put this folder on JUPYTER_CONFIG_PATH, where Jupyter looks for
`jupyter_server_config.py` besides the user's own configuration (`--config=<this file>` works
too). The entries are
labkit.jupyter_proxy's, one per row of labkit.links.PROXIED, shown in JupyterLab's launcher.
"""

from labkit.jupyter_proxy import servers

c = get_config()  # noqa: F821 (provided by the Jupyter config loader)
c.ServerProxy.servers = servers()
