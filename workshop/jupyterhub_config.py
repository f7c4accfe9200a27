"""JupyterHub for a workshop on one machine: each learner's server starts their own lab.

Run it as an ordinary user (never root), from the repository after `make setup` and
`workshop/setup.sh`:  WORKSHOP_PASSWORD=... make workshop   (see workshop/README.md)

- Learners sign in with any name and the shared password (`shared-password` authenticator).
- Each learner's server is `binder/start jupyterhub-singleuser`, as on Binder: it starts the
  learner's lab (state folder `<home>/.lab`, so the first free address block) and the lab
  stops when the server stops, whatever stops it: the learner, the idle culler, a crash.
- Every learner's server runs as the hub's user, in `<workshop dir>/homes/<name>`, with a copy
  of the notebooks. The learners are not isolated from one another: see the README.

Settings, from the environment:
  WORKSHOP_PASSWORD      the learners' shared password (8+ characters); required
  WORKSHOP_ADMIN_PASSWORD  the `instructor` user's password (32+ characters); optional
  WORKSHOP_API_TOKEN     a token for the instructor's scripts (admin on users and servers)
  WORKSHOP_URL           where the hub listens (default http://127.0.0.1:8100)
  WORKSHOP_DIR           its database, cookie secret and learners' homes (default .workshop/)
  WORKSHOP_IDLE_TIMEOUT  seconds without activity before a server is culled (default 3600)
"""

import os
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv that runs the hub runs the learners too
STATE = Path(os.environ.get("WORKSHOP_DIR", REPO / ".workshop")).resolve()
HOMES = STATE / "homes"
IDLE_TIMEOUT = int(os.environ.get("WORKSHOP_IDLE_TIMEOUT", "3600"))

if os.getuid() == 0:
    sys.exit("workshop: run the hub as an ordinary user: learners' servers and labs run as "
             "the hub's user, and nothing of the lab runs as root")

c = get_config()  # type: ignore[name-defined]  # noqa: F821 - JupyterHub provides it

# Ports: 8000 and 8081, JupyterHub's defaults, are the gateway and Traefik API of the lab in
# block 0 (127.0.0.1); the learners' labs use 127.k.0.0/16, k >= 1 while block 0 is busy.
c.JupyterHub.bind_url = os.environ.get("WORKSHOP_URL", "http://127.0.0.1:8100")
c.JupyterHub.hub_bind_url = "http://127.0.0.1:8101"
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:8102"
c.ConfigurableHTTPProxy.command = [str(REPO / "workshop/node_modules/.bin/configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(STATE / "proxy.pid")
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
STATE.mkdir(mode=0o700, parents=True, exist_ok=True)

c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["WORKSHOP_PASSWORD"]
if os.environ.get("WORKSHOP_ADMIN_PASSWORD"):
    c.SharedPasswordAuthenticator.admin_password = os.environ["WORKSHOP_ADMIN_PASSWORD"]
    c.Authenticator.admin_users = {"instructor"}
c.Authenticator.allow_all = True

c.JupyterHub.spawner_class = "simple"  # every server as the hub's user, each in its own home
c.SimpleLocalProcessSpawner.home_dir_template = str(HOMES / "{username}")
c.Spawner.cmd = [str(REPO / "binder/start"), "jupyterhub-singleuser"]
c.Spawner.notebook_dir = "~"
c.Spawner.default_url = "/lab/tree/notebooks/00-tour.ipynb"
c.Spawner.environment = {
    "PATH": f"{BIN}:{os.environ['PATH']}",
    "LABKIT_STATE_DIR": lambda spawner: f"{spawner.home_dir}/.lab",
}
c.Spawner.start_timeout = 180  # binder/start brings the lab up first (~3 s; more when busy)
c.Spawner.http_timeout = 120


def copy_notebooks(spawner) -> None:  # noqa: ANN001 - JupyterHub's Spawner
    """A learner's own copy of the notebooks, made at their first start (reset: delete it)."""
    notebooks = Path(spawner.home_dir) / "notebooks"
    if not notebooks.exists():
        notebooks.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        shutil.copytree(REPO / "notebooks", notebooks,
                        ignore=shutil.ignore_patterns(".ipynb_checkpoints"))


c.Spawner.pre_spawn_hook = copy_notebooks

# The idle culler stops a server (and so its lab) after WORKSHOP_IDLE_TIMEOUT s without activity
c.JupyterHub.services = [{
    "name": "idle-culler",
    "command": [sys.executable, "-m", "jupyterhub_idle_culler", f"--timeout={IDLE_TIMEOUT}",
                f"--cull-every={max(10, min(300, IDLE_TIMEOUT // 4))}"],
}]
c.JupyterHub.load_roles = [{
    "name": "idle-culler",
    "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
    "services": ["idle-culler"],
}]
if os.environ.get("WORKSHOP_API_TOKEN"):
    c.JupyterHub.services.append({"name": "instructor",
                                  "api_token": os.environ["WORKSHOP_API_TOKEN"]})
    c.JupyterHub.load_roles.append({
        "name": "instructor",
        "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"],
        "services": ["instructor"],
    })
