"""Hardening, checked on a running lab: who runs its processes, where they listen, the admin
API's token, and the permissions of its secrets and of supervisord's control socket."""

from __future__ import annotations

import os
import pwd
import secrets
import socket
import subprocess
import sys
from types import SimpleNamespace

import httpx
import psutil
import pytest

from labkit import admin_token, hardening, privileges
from labkit.topology import INFRA_COMPONENTS, SERVICES, service

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

ME = pwd.getpwuid(os.geteuid()).pw_name


def programs_user() -> str:
    """Who the programs should run as: the unprivileged user under root, else labkit's."""
    user = privileges.service_user()
    return ME if user is None else user.name


def test_the_labs_programs_run_unprivileged_when_labkit_is_root(lab) -> None:
    table = hardening.processes(lab.backend)
    programs = table[table.program != "supervisord"]
    running = {s.instance_id(n) for s in SERVICES.values()
               for n in lab.backend.active_slots(s)}
    assert set(INFRA_COMPONENTS) | running <= set(programs.program), table.to_string()
    wrong = programs[programs.user != programs_user()]
    assert wrong.empty, f"expected every program to run as {programs_user()}:\n{wrong}"
    # supervisord stays labkit's (root's): it starts each program as the user
    assert set(table[table.program == "supervisord"].user) == {ME}


def test_every_listening_socket_of_the_lab_is_on_loopback(lab) -> None:
    table = hardening.listening(lab.backend)
    # the infrastructure and every running instance listen: the table is not empty by accident
    assert set(INFRA_COMPONENTS) <= set(table.program), table.to_string()
    assert len(table) >= len(INFRA_COMPONENTS) + sum(
        len(lab.backend.active_slots(s)) for s in SERVICES.values())
    offenders = table[~table.loopback]
    assert offenders.empty, f"listening beyond loopback:\n{offenders.to_string()}"


def test_a_socket_beyond_loopback_is_named(lab, monkeypatch) -> None:
    """The check above can fail: a program's socket on 0.0.0.0 shows as an offender (faked:
    nothing may really listen beyond loopback on this machine)."""
    pid = lab.backend.instance_pid(service("echo"), 1)
    fake = SimpleNamespace(pid=pid, status=psutil.CONN_LISTEN, type=socket.SOCK_STREAM,
                           laddr=("0.0.0.0", 8080), raddr=())
    real = psutil.net_connections
    monkeypatch.setattr(psutil, "net_connections", lambda kind: [*real(kind), fake])
    table = hardening.listening(lab.backend)
    offenders = table[~table.loopback]
    assert offenders[["program", "address", "port"]].values.tolist() == [
        ["echo-1", "0.0.0.0", 8080]]


def test_the_admin_api_refuses_a_call_without_the_labs_token(lab) -> None:
    url = f"{service('echo').admin_endpoint(1).url}/admin/faults"
    assert httpx.put(url, json={"error_rate": 1}, timeout=2).status_code == 401
    another = {"Authorization": f"Bearer {secrets.token_urlsafe(32)}"}
    assert httpx.put(url, json={"error_rate": 1}, headers=another, timeout=2).status_code == 403
    answer = httpx.get(url, headers=admin_token.headers(lab.backend.state), timeout=2)
    assert answer.status_code == 200 and answer.json()["error_rate"] == 0, "nothing changed"
    lab.fault("echo", 1, error_rate=0)  # labkit's own calls carry the token
    lab.heal()


def test_secrets_and_the_control_socket_are_owner_only(lab) -> None:
    state = lab.backend.state
    table = hardening.secrets(state).set_index("path")
    name = state.name
    user = privileges.service_user()
    expected = {
        # root's, its programs' user passing through by name (0710), else labkit's user's
        name: ("0700", ME) if user is None else ("0710", ME),
        f"{name}/supervisor.sock": ("0700", ME),
        f"{name}/admin-token": ("0600", programs_user()),
        f"{name}/auth": ("0700", programs_user()),
    }
    for path, (mode, owner) in expected.items():
        assert (table.loc[path, "mode"], table.loc[path, "owner"]) == (mode, owner), path
    keys = table[table.index.str.startswith(f"{name}/auth/")]
    assert len(keys) >= 2, f"the auth service's key and client secret: {keys}"
    assert set(keys["mode"]) == {"0600"}, keys


@pytest.mark.skipif(privileges.service_user() is None, reason="labkit is not root here")
def test_the_programs_user_cannot_drive_supervisord(lab) -> None:
    """The control socket is root's alone: the user the programs run as cannot connect."""
    user = privileges.service_user()
    assert user is not None
    probe = ("import socket, sys; s = socket.socket(socket.AF_UNIX)\n"
             "try: s.connect(sys.argv[1])\nexcept PermissionError: sys.exit(13)")
    refused = subprocess.run([sys.executable, "-c", probe,
                              str(lab.backend.state / "supervisor.sock")],
                             user=user.uid, group=user.gid, extra_groups=[], timeout=10,
                             check=False)
    assert refused.returncode == 13, "the programs' user connected to supervisord's socket"
