"""etcd access shared by the registry and the gateway configuration."""

from __future__ import annotations

import base64
from collections.abc import Mapping

import etcd3gw

from .topology import Endpoint, infra


def etcd_client(endpoint: Endpoint | None = None,
                timeout: float | None = 2.0) -> etcd3gw.Etcd3Client:
    """A client of `endpoint`, by default this process's lab's etcd."""
    endpoint = endpoint or infra().etcd
    return etcd3gw.client(host=endpoint.host, port=endpoint.port, timeout=timeout, api_path="/v3/")


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def put_atomically(client: etcd3gw.Etcd3Client, items: Mapping[str, str]) -> None:
    """Write several keys in one etcd transaction, so a watcher never sees half of them."""
    puts = [{"request_put": {"key": _b64(k), "value": _b64(v)}} for k, v in items.items()]
    client.transaction({"compare": [], "success": puts, "failure": []})


def transact(client: etcd3gw.Etcd3Client, before: Mapping[str, str],
             after: Mapping[str, str], leases: Mapping[str, int] | None = None) -> None:
    """Turn the keys `before` into `after` in one transaction: changed and new keys are put,
    keys missing from `after` deleted. Nothing is sent when nothing changes. A key of
    `leases` is put whatever it held, attached to its lease (etcd deletes it at expiry)."""
    leases = leases or {}
    requests: list[dict] = [
        {"request_put": {"key": _b64(k), "value": _b64(v),
                         **({"lease": leases[k]} if k in leases else {})}}
        for k, v in after.items()
        if before.get(k) != v or k in leases
    ]
    requests += [{"request_delete_range": {"key": _b64(k)}} for k in before if k not in after]
    if requests:
        client.transaction({"compare": [], "success": requests, "failure": []})
