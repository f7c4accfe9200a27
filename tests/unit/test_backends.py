"""The backend protocol: what labkit's generic modules may ask of a backend."""

import ast
import inspect
from pathlib import Path

import pytest

import labkit
from labkit import block_claims, paths
from labkit.backends.base import Backend
from labkit.backends.local import LocalBackend
from labkit.errors import LabError


def test_the_local_backend_is_a_backend(tmp_path):
    backend: Backend = LocalBackend(tmp_path)  # also checked statically
    assert isinstance(backend, Backend)


def test_the_local_backend_matches_every_signature_of_the_protocol():
    members = [name for name, _ in inspect.getmembers(Backend, inspect.isfunction)
               if not name.startswith("_")]
    assert members, "the protocol declares methods"
    for name in members:
        declared = inspect.signature(getattr(Backend, name))
        implemented = inspect.signature(getattr(LocalBackend, name))
        assert list(declared.parameters) == list(implemented.parameters), name


def test_the_local_backend_opens_its_clients_once_and_closes_them(tmp_path):
    backend = LocalBackend(tmp_path)
    gateway, registry = backend.gateway, backend.registry
    assert backend.gateway is gateway and backend.registry is registry
    backend.close()
    assert gateway.api.is_closed
    assert backend.gateway is not gateway, "a closed backend opens new clients on next use"
    backend.close()


def test_the_generic_modules_know_only_the_protocol():
    for module in ("faults", "deploy", "rollout", "versions"):
        tree = ast.parse((Path(labkit.__file__).parent / f"{module}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not {"backends.local", "backends.local_config"} & imported, module


def test_up_without_prometheus_fails_at_once_with_the_install_hint(tmp_path, monkeypatch):
    state = tmp_path / "lab"
    assert not (paths.BIN / "prometheus").exists(), "the venv ships no Prometheus"
    monkeypatch.setattr(paths.shutil, "which", lambda name: None)  # and none on PATH
    backend = LocalBackend(state)
    with pytest.raises(LabError) as refused:
        backend.up(lambda _message: None)
    assert paths.install_hint(("prometheus",)) in str(refused.value)
    assert "sudo apt-get" in str(refused.value) and "brew install" in str(refused.value)
    assert not state.exists(), "nothing was written before the check"
    assert block_claims.holder(backend.block) is None, "no block was claimed"
