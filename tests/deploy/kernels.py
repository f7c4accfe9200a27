"""Run a notebook in a Jupyter server's own kernel, over its REST and websocket API, as
JupyterLab's Run All does: a session for the notebook's path, then each code cell in turn.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


class CellError(AssertionError):
    """A cell raised: its exception, as the kernel reported it."""


def _request(code: str, session: str) -> str:
    return json.dumps({
        "header": {"msg_id": uuid.uuid4().hex, "msg_type": "execute_request", "version": "5.3",
                   "session": session, "username": "test", "date": ""},
        "parent_header": {}, "metadata": {}, "channel": "shell",
        "content": {"code": code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
    })


async def run_notebook(server: str, token: str, notebook: str, cells: list[str],
                       timeout: float) -> None:
    """Run `cells` in a kernel of `server` (e.g. http://127.0.0.1:8100/user/ana/) whose
    working folder is `notebook`'s (a path under the server's root); raise CellError on the
    first error, TimeoutError after `timeout` s. The kernel is shut down either way."""
    headers = {"Authorization": f"token {token}"}
    async with httpx.AsyncClient(base_url=server, headers=headers, timeout=60) as api:
        made = await api.post("api/sessions", json={
            "path": notebook, "name": Path(notebook).name, "type": "notebook",
            "kernel": {"name": "python3"}})
        made.raise_for_status()
        session = made.json()
        try:
            url = f"{server.replace('http', 'ws', 1)}api/kernels/{session['kernel']['id']}/channels"
            socket = await websocket_connect(HTTPRequest(url, headers=headers))
            try:
                await asyncio.wait_for(_execute_all(socket, cells), timeout)
            finally:
                socket.close()
        finally:
            await api.delete(f"api/sessions/{session['id']}")


async def _execute_all(socket, cells: list[str]) -> None:  # noqa: ANN001 - tornado's connection
    session = uuid.uuid4().hex
    for number, code in enumerate(cells, 1):
        request = _request(code, session)
        msg_id = json.loads(request)["header"]["msg_id"]
        await socket.write_message(request)
        error = None
        while True:
            raw = await socket.read_message()
            if raw is None:
                raise CellError(f"the kernel's connection closed during cell {number}")
            message = json.loads(raw)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            if message["msg_type"] == "error":
                error = message["content"]
            if message["msg_type"] == "execute_reply":
                break
        if message["content"]["status"] != "ok":
            error = error or message["content"]
            raise CellError(f"cell {number} failed: {error.get('ename')}: {error.get('evalue')}"
                            f"\n{code[:500]}")
