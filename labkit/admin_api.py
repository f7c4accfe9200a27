"""A client of the instances' admin APIs (stack/labstack/admin.py): loopback only, on a port
of their own, never routed, each call with the lab's admin token (labkit.admin_token). One
resource per concern: /admin/faults, /admin/telemetry."""

from __future__ import annotations

from pathlib import Path

import httpx

from . import admin_token
from .errors import LabError
from .topology import Service


class AdminApi:
    def __init__(self, state: Path, timeout: float = 1.0) -> None:
        self.state = state  # where the lab's token is (read per call: each `up` makes one)
        self.client = httpx.Client(timeout=timeout)

    def call(self, svc: Service, slot: int, method: str, resource: str,
             body: dict | None = None) -> dict:
        """`method` on the instance's /admin/<resource>; its JSON answer, or a LabError that
        names the instance and what it said."""
        url = f"{svc.admin_endpoint(slot).url}/admin/{resource}"
        try:
            response = self.client.request(method, url, json=body,
                                           headers=admin_token.headers(self.state))
        except httpx.HTTPError as error:
            raise LabError(
                f"{svc.name}-{slot}'s admin API at {url} did not answer: {error}"
            ) from None
        if response.status_code != 200:
            detail = response.json().get("error", response.text)
            raise LabError(f"{svc.name}-{slot} refused the {resource} change: {detail}")
        return response.json()

    def close(self) -> None:
        self.client.close()
