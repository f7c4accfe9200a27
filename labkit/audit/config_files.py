"""Configuration files in their own formats, read into one shape the checks walk: leaves
(file, key, value), each marked when its value is an address something listens on.

YAML and JSON (Traefik, Prometheus, the gateway's etcd keys) are flattened to dotted keys;
supervisord's INI is read as supervisord reads it, and each program's command line and
environment become leaves of their own, so etcd's and Prometheus's flags are checked too.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from supervisor.datatypes import dict_of_key_value_pairs

from ..errors import LabError

# command-line flags and environment variables whose value is an address a program binds:
# etcd's, Prometheus's, the telemetry store's, and labstack's (LAB_HOST, see labstack.settings)
LISTEN_FLAGS = {"--listen-client-urls", "--listen-peer-urls", "--listen-metrics-urls",
                "--web.listen-address", "--host", "--bind", "--listen"}
LISTEN_ENV = {"LAB_HOST"}
_TRAEFIK_ENTRY_POINT = re.compile(r"entryPoints\.[^.]+\.address$")


@dataclass(frozen=True)
class Leaf:
    file: str  # "traefik.yml"
    key: str  # "entryPoints.web.address", "[program:etcd] command --listen-client-urls"
    value: str
    name: str  # the key's own name: "address", "--listen-client-urls", "LAB_HOST"
    listens: bool = False  # the value is an address a component binds

    @property
    def location(self) -> str:
        return f"{self.file} {self.key}"

    @property
    def section(self) -> str:
        """supervisord's section ("[program:etcd]"), or the file for other formats."""
        return self.key.split(" ", 1)[0] if self.key.startswith("[") else self.file


def read(path: Path) -> list[Leaf]:
    """The leaves of one configuration file; files of other kinds give none."""
    try:
        if path.suffix in (".yml", ".yaml"):
            return list(_tree(path.name, yaml.safe_load(path.read_text())))
        if path.suffix == ".json":
            return list(_tree(path.name, json.loads(path.read_text())))
        if path.suffix in (".conf", ".ini"):
            return list(_supervisord(path))
    except (yaml.YAMLError, json.JSONDecodeError, configparser.Error, ValueError) as error:
        raise LabError(f"cannot read {path} as {path.suffix[1:]}: {error}") from None
    return []


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _tree(file: str, data: object, prefix: str = "") -> Iterator[Leaf]:
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _tree(file, value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _tree(file, value, f"{prefix}.{index}")
    elif data is not None:
        name = re.split(r"[./]", prefix)[-1]  # a dotted YAML path, or an etcd key
        yield Leaf(file, prefix, _text(data), name, bool(_TRAEFIK_ENTRY_POINT.search(prefix)))


def _supervisord(path: Path) -> Iterator[Leaf]:
    # supervisord's own %(name)s expansion is not ours to do: %% is its escaped %
    conf = configparser.RawConfigParser(strict=False)
    conf.read_string(path.read_text(), source=str(path))
    for section in conf.sections():
        where = f"[{section}]"
        for option, raw in conf.items(section):
            value = raw.replace("%%", "%")
            if option == "command":
                yield from _command(path.name, where, shlex.split(value))
            elif option == "environment":
                for name, setting in dict_of_key_value_pairs(value).items():
                    yield Leaf(path.name, f"{where} environment {name}", setting, name,
                               name in LISTEN_ENV)
            else:
                listens = section == "inet_http_server" and option == "port"
                yield Leaf(path.name, f"{where} {option}", value, option, listens)


def _command(file: str, where: str, args: list[str]) -> Iterator[Leaf]:
    """A command line's flags as leaves (`--flag=value` and `--flag value`), and its other
    arguments as leaves of the command itself."""
    index = 0
    while index < len(args):
        arg = args[index]
        if arg.startswith("-") and len(arg) > 1:
            flag, has_value, value = arg.partition("=")
            following = args[index + 1] if index + 1 < len(args) else ""
            if not has_value and following and not following.startswith("-"):
                value, index = following, index + 1
            yield Leaf(file, f"{where} command {flag}", value, flag, flag in LISTEN_FLAGS)
        else:
            yield Leaf(file, f"{where} command", arg, "command")
        index += 1
