"""The lab's generated configurations, checked: nothing listens beyond loopback (the
Traefik API and dashboard included), no plaintext secret, control sockets for their owner.

`generate` writes the configurations as `labkit up` would (labkit.backends.local_config and
the gateway's routes), starting nothing; `check` reads any folder of them, so a running
lab's `.lab/` can be checked the same way.
"""

from __future__ import annotations

import ipaddress
import json
import re
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from ..backends import local_config
from ..errors import LabError
from ..gateway import route_keys
from ..topology import SERVICES
from .config_files import Leaf, read
from .findings import CHECKED, FAILED, Finding, ToolRun

TOOL = "configs"
ROUTES = "traefik-routes.json"  # the gateway's dynamic configuration: the keys labkit puts in etcd
_SECRET_WORDS = {"password", "passwd", "secret", "token", "credential", "credentials", "apikey"}
_SECRET_PAIRS = {("api", "key"), ("private", "key"), ("secret", "key"), ("access", "key")}
_REFERENCE_WORDS = {"file", "path", "env"}  # password_file: where the secret is, not the secret
# not plaintext: a reference to the environment, or a hash (htpasswd, supervisord's {SHA})
_NOT_PLAINTEXT = re.compile(r"^(\$\{[^}]+\}|\$\w+|%\(ENV_\w+\)s|\{\{.*\}\}|\{SHA\}.+|"
                            r"\$(apr1|2[aby]|5|6|argon2\w*)\$.+)$")
_USERINFO = re.compile(r"://[^/\s:@]+:([^/\s@]+)@")
_BASIC_AUTH_USER = re.compile(r"basicauth[./]users[./]\d+$", re.IGNORECASE)
_WILDCARD = re.compile(r"(?<![\d.])0\.0\.0\.0(?![\d.])|\[::\]|^::$")


def generate(folder: Path) -> list[Path]:
    """The lab's configuration files in `folder`, as `labkit up` writes them (nothing starts):
    supervisord.conf (every program's command line: etcd's and Prometheus's flags, each
    instance's address), traefik.yml, prometheus.yml, rules.yml, and the gateway's routes."""
    local_config.write_all(folder)
    routes = {key: value for svc in SERVICES.values() for key, value in route_keys(svc).items()}
    (folder / ROUTES).write_text(json.dumps(routes, indent=1) + "\n")
    return sorted(path for path in folder.iterdir() if path.is_file())


def audit(folder: Path | None = None) -> ToolRun:
    """Check `folder`'s configuration files, or the lab's, generated into a temporary one."""
    started = time.monotonic()
    try:
        if folder is not None:
            files, source = _files(folder), f"read from {folder}"
            found = check(files)
        else:
            with tempfile.TemporaryDirectory(prefix="labkit-audit-") as scratch:
                files, source = generate(Path(scratch)), "generated as `labkit up` writes them"
                found = check(files)
    except LabError as error:
        return ToolRun(TOOL, FAILED, str(error), seconds=time.monotonic() - started)
    names = ", ".join(path.name for path in files)
    return ToolRun(TOOL, CHECKED, f"{len(files)} files {source}: {names}", tuple(found),
                   time.monotonic() - started)


def _files(folder: Path) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.suffix in (".yml", ".yaml", ".json", ".conf"))
    if not files:
        raise LabError(f"no configuration files (.yml, .json, .conf) in {folder}")
    return files


def check(files: Iterable[Path]) -> list[Finding]:
    leaves = [leaf for path in files for leaf in read(path)]
    return [*_listeners(leaves), *_wildcards(leaves), *_secrets(leaves), *_traefik_api(leaves),
            *_open_control_apis(leaves), *_sockets(leaves)]


def _finding(rule: str, severity: str, leaf: Leaf, message: str) -> Finding:
    return Finding(TOOL, rule, severity, leaf.location, message, leaf.location)


def hosts(value: str) -> list[str]:
    """The hosts in a listen address: "127.0.0.1:80", ":80" and "80" (every interface: ""),
    "[::1]:80", or URLs, comma-separated ("http://127.0.0.1:2379,http://...")."""
    found = []
    for part in filter(None, (p.strip() for p in value.split(","))):
        part = part.split("/")[0] if "://" not in part else part  # Traefik's ":53/udp"
        if "://" in part:
            found.append(urlsplit(part).hostname or "")
        elif part.isdecimal():
            found.append("")
        elif part.startswith("["):
            found.append(part[1:part.find("]")])
        elif part.count(":") == 1:
            found.append(part.rsplit(":", 1)[0])
        else:
            found.append(part)
    return found


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "" (every interface) or a name that may resolve anywhere


def _listeners(leaves: list[Leaf]) -> Iterator[Finding]:
    for leaf in leaves:
        outside = [host or "every interface" for host in hosts(leaf.value)
                   if not is_loopback(host)] if leaf.listens else []
        if outside:
            yield _finding("listen-beyond-loopback", "high", leaf,
                           f"listens on {leaf.value!r}, that is on {', '.join(outside)}: "
                           f"only 127.0.0.0/8 or ::1 keep it on this machine")


def _wildcards(leaves: list[Leaf]) -> Iterator[Finding]:
    for leaf in leaves:
        if not leaf.listens and _WILDCARD.search(leaf.value):
            yield _finding("wildcard-address", "high", leaf,
                           f"names the wildcard address in {leaf.value[:80]!r}: whatever binds "
                           f"it listens on every interface")


def _words(name: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)]


def _secret_name(name: str) -> bool:
    words = _words(name)
    if not words or words[-1] in _REFERENCE_WORDS:
        return False
    pairs = set(zip(words, words[1:], strict=False))  # ("api", "key") in "X_API_KEY"
    return bool(_SECRET_WORDS & set(words) or _SECRET_PAIRS & pairs)


def _secrets(leaves: list[Leaf]) -> Iterator[Finding]:
    advice = "read it from the environment or a file, or store a hash"
    for leaf in leaves:
        value = leaf.value.strip()
        if _secret_name(leaf.name) and value and not _NOT_PLAINTEXT.match(value):
            yield _finding("plaintext-secret", "high", leaf,
                           f"holds a plaintext secret ({leaf.name}=****): {advice}")
        elif _BASIC_AUTH_USER.search(leaf.key) and not _NOT_PLAINTEXT.match(
                value.partition(":")[2]):
            yield _finding("plaintext-secret", "high", leaf,
                           f"a basic-auth user with a plaintext password: {advice}")
        else:
            password = _USERINFO.search(value)
            if password and not _NOT_PLAINTEXT.match(password.group(1)):
                yield _finding("plaintext-secret", "high", leaf,
                               f"a URL with a plaintext password (user:****@): {advice}")


def _traefik_api(leaves: list[Leaf]) -> Iterator[Finding]:
    """Traefik serves its API and dashboard (api.insecure) on the entry point `traefik`, which
    it creates on :8080, every interface, unless the configuration declares it."""
    by_file: dict[str, dict[str, Leaf]] = defaultdict(dict)
    for leaf in leaves:
        by_file[leaf.file][leaf.key] = leaf
    for keys in by_file.values():
        insecure = keys.get("api.insecure")
        if insecure is None or insecure.value != "true":
            continue
        declared = keys.get("entryPoints.traefik.address")
        if declared is None:
            yield _finding("listen-beyond-loopback", "high", insecure,
                           "Traefik's API and dashboard (api.insecure) go to entry point "
                           "'traefik', which is not declared: Traefik opens it on :8080, "
                           "every interface")
        else:
            yield _finding("unauthenticated-api", "medium", insecure,
                           f"Traefik's API and dashboard answer anyone who reaches "
                           f"{declared.value}, without authentication (api.insecure)")


def _open_control_apis(leaves: list[Leaf]) -> Iterator[Finding]:
    """Control APIs that answer without authentication: anyone who reaches them (on a shared
    machine, any local user) may reconfigure or stop the component."""
    flags = {(leaf.section, leaf.name) for leaf in leaves if " command " in leaf.key}
    keys = {leaf.key for leaf in leaves}
    for leaf in leaves:
        if leaf.name in ("--web.enable-lifecycle", "--web.enable-admin-api"):
            yield _finding("unauthenticated-api", "medium", leaf,
                           f"Prometheus's {leaf.name[len('--web.enable-'):]} API (/-/reload, "
                           f"/-/quit, ...) answers without authentication")
        elif (leaf.name == "--listen-client-urls" and "http://" in leaf.value
              and (leaf.section, "--client-cert-auth") not in flags):
            yield _finding("unauthenticated-api", "medium", leaf,
                           "etcd's client API (the registry and the gateway's routes) takes "
                           "writes without authentication or TLS (no --client-cert-auth)")
        elif leaf.key == "[inet_http_server] port" and \
                "[inet_http_server] username" not in keys:
            yield _finding("unauthenticated-api", "medium", leaf,
                           "supervisord's HTTP API (start, stop, signal any program) without a "
                           "username and password")


def _sockets(leaves: list[Leaf]) -> Iterator[Finding]:
    for leaf in leaves:
        if leaf.key == "[unix_http_server] chmod":
            try:
                mode = int(leaf.value, 8)
            except ValueError:
                raise LabError(f"{leaf.location}: {leaf.value!r} is not an octal mode") from None
            if mode & 0o077:
                yield _finding("socket-permissions", "high", leaf,
                               f"supervisord's control socket is mode {leaf.value}: other users "
                               f"can start, stop and signal the lab's processes (use 0700)")
