"""The lab's TLS files: its CA, made at each fresh `up`, and the short-lived certificates it
signs, renewed by the `certs` program (labkit.certs.main) every third of their life.

    .lab/tls/                          0700, the lab owner's only
        ca.pem, ca-key.pem             the lab CA (the key 0600; the CA lives 30 days)
        gateway-<n>.pem                Traefik's HTTPS certificate (*.localhost names)
        gateway-client-<n>.pem         Traefik's client certificate, for mTLS to instances
        prometheus.pem                 Prometheus's client certificate (it re-reads the file)
        instances/<echo-2>.pem         each instance slot's server certificate
        mtls.json                      {"mtls": true}: instances start on mTLS (labkit.security)

Every identity is one file, certificate then key (0600): OpenSSL, Go and gRPC all find both
in it, and it is replaced in one rename, so no reader sees a certificate with another's key.
Traefik does not watch files: a renewal writes generation n+1 and points Traefik's keys at it
(one etcd transaction); n-1 is removed. Instances and Prometheus re-read their files.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
import shutil
import ssl
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from labstack.identity import GATEWAY_NAME

from . import blocks, keyspace, paths, pki, privileges
from .kv import etcd_client, put_atomically
from .topology import MAX_REPLICAS, SERVICES, infra

CA_LIFETIME = dt.timedelta(days=30)
LEAF_LIFETIME = dt.timedelta(minutes=5)  # short: a leaked key is useless minutes later
RENEW_EVERY = LEAF_LIFETIME / 3  # two renewals may fail before anything expires
MODE_FILE = "mtls.json"
HTTPS_ROUTER = "https"  # Traefik's TCP router, service and transport for the TLS entry point


def folder(state: Path) -> Path:
    return state / "tls"


def ca_file(state: Path) -> Path:
    return folder(state) / "ca.pem"


def instance_file(state: Path, instance_id: str) -> Path:
    return folder(state) / "instances" / f"{instance_id}.pem"


def prometheus_file(state: Path) -> Path:
    return folder(state) / "prometheus.pem"


def gateway_file(state: Path, generation: int) -> Path:
    return folder(state) / f"gateway-{generation}.pem"


def gateway_client_file(state: Path, generation: int) -> Path:
    return folder(state) / f"gateway-client-{generation}.pem"


def _write_private(path: Path, data: bytes) -> None:
    """Replace `path` in one rename, readable by its owner only from the first byte."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700)
        if os.geteuid() == 0:  # owned as the folder it is in (the programs' user's)
            above = path.parent.parent.stat()
            os.chown(path.parent, above.st_uid, above.st_gid)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.unlink(missing_ok=True)  # a leftover of a killed writer
    # O_EXCL | O_NOFOLLOW: never through a link planted in the folder (it may be the
    # programs' user's, labkit.privileges)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
        _owned_like_its_folder(file.fileno(), path.parent)
    os.replace(partial, path)


def _owned_like_its_folder(fd: int, parent: Path) -> None:
    """labkit as root writes for the programs' user, who owns the folder (and must be able
    to open what root made there)."""
    if os.geteuid() == 0:
        owner = parent.stat()
        os.fchown(fd, owner.st_uid, owner.st_gid)


def _bundle(issued: pki.Issued) -> bytes:
    return issued.cert_pem + issued.key_pem


def load_ca(state: Path) -> pki.Issued:
    return pki.Issued(ca_file(state).read_bytes(), (folder(state) / "ca-key.pem").read_bytes())


def make_ca(state: Path, now: dt.datetime | None = None) -> None:
    """A new lab CA (at each fresh `up`): whatever the last one signed is trusted no more."""
    folder(state).mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder(state), 0o700)
    ca = pki.make_ca(f"lab CA, block {blocks.current()}", now or _now(), CA_LIFETIME)
    _write_private(folder(state) / "ca-key.pem", ca.key_pem)
    _write_private(ca_file(state), ca.cert_pem)
    os.chmod(ca_file(state), 0o644)  # public: every client of the gateway may trust it


def generation(state: Path) -> int:
    """The gateway files in force (0: none yet)."""
    numbers = [int(p.stem.rsplit("-", 1)[1]) for p in folder(state).glob("gateway-client-*.pem")]
    return max(numbers, default=0)


def renew(state: Path, now: dt.datetime | None = None,
          lifetime: dt.timedelta = LEAF_LIFETIME) -> int:
    """Issue every leaf certificate anew; returns the gateway's new generation (whose keys
    gateway_keys gives). Instance files are replaced in place: an instance re-reads its own."""
    now = now or _now()
    ca = load_ca(state)
    at = infra()
    new = generation(state) + 1
    hosts = tuple(s.host_rule for s in SERVICES.values())
    _write_private(gateway_file(state, new), _bundle(pki.issue(
        ca, "gateway", (pki.SERVER,), now, lifetime, addresses=(at.gateway_tls.host,),
        names=("localhost", *hosts))))
    _write_private(gateway_client_file(state, new), _bundle(pki.issue(
        ca, GATEWAY_NAME, (pki.CLIENT,), now, lifetime)))
    _write_private(prometheus_file(state), _bundle(pki.issue(
        ca, "prometheus", (pki.CLIENT,), now, lifetime)))
    for svc in SERVICES.values():
        for slot in range(1, MAX_REPLICAS + 1):
            instance = svc.instance_id(slot)
            _write_private(instance_file(state, instance), _bundle(pki.issue(
                ca, instance, (pki.SERVER,), now, lifetime,
                addresses=(svc.endpoint(slot).host,))))
    for old in (gateway_file(state, new - 2), gateway_client_file(state, new - 2)):
        old.unlink(missing_ok=True)  # n-1 stays: Traefik may still be switching from it
    return new


def gateway_keys(state: Path, generation: int) -> dict[str, str]:
    """Traefik's keys for generation `generation`: its HTTPS certificate, and for each
    service a serversTransport (named after it, as lab.policies.timeout's) that trusts the
    lab CA and presents the gateway's client certificate."""
    client = str(gateway_client_file(state, generation))
    serving = str(gateway_file(state, generation))
    store = f"{keyspace.TRAEFIK_ROOT}/tls/stores/default/defaultCertificate"
    keys = {f"{store}/certFile": serving, f"{store}/keyFile": serving, **https_keys()}
    for svc in SERVICES.values():
        transport = keyspace.transport(svc.name)
        keys.update({
            f"{transport}/rootCAs/0": str(ca_file(state)),
            f"{transport}/certificates/0/certFile": client,
            f"{transport}/certificates/0/keyFile": client,
        })
    return keys


def https_keys() -> dict[str, str]:
    """HTTPS at the gateway: a TCP router on the websecure entry point ends TLS (with the
    default store's certificate) and passes the connection to the web entry point, with a
    PROXY protocol v2 header so that it sees the real client's address."""
    root, name = f"{keyspace.TRAEFIK_ROOT}/tcp", HTTPS_ROUTER
    return {
        f"{root}/serversTransports/{name}/proxyProtocol/version": "2",
        f"{root}/services/{name}/loadBalancer/servers/0/address": infra().gateway.address,
        f"{root}/services/{name}/loadBalancer/serversTransport": name,
        f"{root}/routers/{name}/rule": "HostSNI(`*`)",
        f"{root}/routers/{name}/entryPoints/0": "websecure",
        f"{root}/routers/{name}/service": name,
        f"{root}/routers/{name}/tls/passthrough": "false",
    }


def publish(state: Path, generation: int) -> None:
    """Point Traefik at generation `generation`, in one transaction."""
    put_atomically(etcd_client(), gateway_keys(state, generation))


@contextlib.contextmanager
def _renewing(state: Path) -> Iterator[None]:
    """One renewal at a time (the `certs` program, lab.security.rotate in a kernel)."""
    folder(state).mkdir(mode=0o700, parents=True, exist_ok=True)
    # the programs' user's even when root made it (lab.security.rotate): a root-owned lock
    # left the certs program crashing on every start, and the certificates expired
    lock = os.open(folder(state) / ".renewing", os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        _owned_like_its_folder(lock, folder(state))
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
    finally:
        os.close(lock)


def rotate(state: Path, lifetime: dt.timedelta = LEAF_LIFETIME) -> int:
    """Renew every certificate now and switch Traefik to them; returns the generation."""
    with _renewing(state):
        new = renew(state, lifetime=lifetime)
        publish(state, new)
    return new


def age(state: Path) -> float:
    """Seconds since the last renewal (inf before the first)."""
    newest = gateway_client_file(state, generation(state))
    return time.time() - newest.stat().st_mtime if newest.exists() else float("inf")


def prepare(state: Path, user: privileges.User | None = None) -> None:
    """At a fresh `up`, before Traefik starts: a new CA, every certificate, mTLS off; the
    folder `user`'s (the programs' when labkit is root: the certs program renews into it)."""
    shutil.rmtree(folder(state), ignore_errors=True)  # nothing the last CA signed stays
    privileges.private_folder(folder(state), user)
    make_ca(state)
    renew(state)
    set_mtls(state, False)


def mtls(state: Path) -> bool:
    try:
        return bool(json.loads((folder(state) / MODE_FILE).read_text())["mtls"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return False


def set_mtls(state: Path, on: bool) -> None:
    """What instances started from now on serve: mTLS (on) or plain HTTP/h2c."""
    _write_private(folder(state) / MODE_FILE, json.dumps({"mtls": on}).encode())


def trusting_the_lab(state: Path | None = None) -> ssl.SSLContext:
    """A client context that trusts the system's CAs and, once `up` made it, the lab CA:
    https://<the lab's gateway> verifies as any site would."""
    context = httpx.create_ssl_context()
    lab_ca = ca_file(state or paths.state_dir())
    if lab_ca.exists():
        context.load_verify_locations(cafile=str(lab_ca))
    return context


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def main() -> None:
    """The `certs` program: renew every certificate every RENEW_EVERY, forever (run as
    `python -c "from labkit.certs import main; main()"`: labkit's package imports this module,
    which `-m` would then run a second time)."""
    state = Path(os.environ["LABKIT_STACK"])
    block = blocks.recorded(state)
    if block is None:
        print(f"certs: no lab recorded in {state}", file=sys.stderr)
        raise SystemExit(2)
    blocks.use(block)
    while True:
        # from the last renewal, whoever made it (`up`, lab.security.rotate, a previous run)
        time.sleep(max(RENEW_EVERY.total_seconds() - age(state), 0))
        if age(state) >= RENEW_EVERY.total_seconds():
            print(f"certs: renewed, generation {rotate(state)}", flush=True)


if __name__ == "__main__":
    main()
