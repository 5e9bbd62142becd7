"""API server throughput: object creates per second through HTTP against the store directly.

The server runs as it does in production, in its own process (uvicorn, uvloop, httptools,
SQLite in WAL mode in a temp dir). The load comes from a minimal keep-alive HTTP/1.1 client
over raw asyncio streams, so the numbers describe the server rather than a client library;
``--httpx`` adds rows for the same load through httpx. The baseline does the same creates
(validated first, as the server does) straight through the store API in this process.

    python benchmarks/apiserver_bench.py [--quick] [--httpx]

Goal: at least 1,000 creates/s through HTTP.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from corral.api.validation import validate_object
from corral.store import open_store

TOKEN = "bench-token"
GOAL = 1000.0
CONCURRENCY = 8
PATH = "/apis/corral.dev/v1alpha1/namespaces/default/models"


def model(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "corral.dev/v1alpha1",
        "kind": "Model",
        "metadata": {"name": name, "labels": {"bench": "yes"}},
        "spec": {"source": f"file:///models/{name}.gguf", "contextLength": 4096},
    }


class RawClient:
    """One keep-alive HTTP/1.1 connection: POST a JSON body, read the status line and body."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @classmethod
    async def connect(cls, port: int) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def post(self, path: str, body: bytes) -> int:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self._writer.write(head.encode() + body)
        status_line = await self._reader.readline()
        length = 0
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self._reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        self._writer.close()
        await self._writer.wait_closed()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def serve(port: int, database: Path) -> None:
    """The child process: the API server on uvicorn over a fresh SQLite store."""
    import uvicorn

    from corral.apiserver import create_app, ensure_builtin_namespaces

    async def main() -> None:
        store = await open_store(f"sqlite:///{database}")
        try:
            await ensure_builtin_namespaces(store)
            config = uvicorn.Config(
                create_app(store, admin_token=TOKEN),
                host="127.0.0.1",
                port=port,
                loop="none",
                http="httptools",
                lifespan="off",
                access_log=False,
                log_level="warning",
            )
            await uvicorn.Server(config).serve()
        finally:
            await store.close()

    import uvloop

    uvloop.run(main())


async def wait_ready(port: int, child: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        for _ in range(300):
            if child.returncode is not None:
                raise SystemExit(f"the server exited with code {child.returncode}")
            try:
                if (await http.get("/readyz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit("the server did not become ready in 15 s")


async def timed(count: int, workers: int, create: Callable[[int, int], Awaitable[None]]) -> float:
    """Creates per second when ``workers`` tasks share ``count`` creates."""
    share = count // workers

    async def worker(index: int) -> None:
        for offset in range(share):
            await create(index, index * share + offset)

    started = time.perf_counter()
    await asyncio.gather(*(worker(index) for index in range(workers)))
    return share * workers / (time.perf_counter() - started)


async def store_rate(count: int, workers: int, directory: Path, tag: str) -> float:
    store = await open_store(f"sqlite:///{directory / f'direct-{tag}.db'}")
    try:

        async def create(_worker: int, number: int) -> None:
            await store.create(validate_object(model(f"{tag}-{number}")), actor="admin")

        return await timed(count, workers, create)
    finally:
        await store.close()


async def raw_rate(port: int, count: int, workers: int, tag: str) -> float:
    clients = [await RawClient.connect(port) for _ in range(workers)]
    try:

        async def create(worker: int, number: int) -> None:
            status = await clients[worker].post(PATH, orjson.dumps(model(f"{tag}-{number}")))
            if status != 201:
                raise SystemExit(f"create answered {status}")

        return await timed(count, workers, create)
    finally:
        for client in clients:
            await client.close()


async def httpx_rate(port: int, count: int, workers: int, tag: str) -> float:
    clients = [
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        for _ in range(workers)
    ]
    try:

        async def create(worker: int, number: int) -> None:
            answer = await clients[worker].post(PATH, json=model(f"{tag}-{number}"))
            if answer.status_code != 201:
                raise SystemExit(f"create answered {answer.status_code}: {answer.text}")

        return await timed(count, workers, create)
    finally:
        for client in clients:
            await client.aclose()


async def run(count: int, with_httpx: bool) -> list[tuple[str, float, float]]:
    rows: list[tuple[str, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="corral-bench-") as temp:
        directory = Path(temp)
        port = free_port()
        child = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--serve", str(port), str(directory / "server.db")
        )
        try:
            await wait_ready(port, child)
            for label, workers in (("sequential, 1 client", 1), ("8 concurrent clients", 8)):
                tag = f"w{workers}"
                direct = await store_rate(count, workers, directory, tag)
                http = await raw_rate(port, count, workers, f"raw-{tag}")
                rows.append((f"{label}", http, direct))
                if with_httpx:
                    rows.append(
                        (
                            f"{label} (httpx)",
                            await httpx_rate(port, count, workers, f"hx-{tag}"),
                            direct,
                        )
                    )
        finally:
            child.terminate()
            await child.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer creates (a smoke run)")
    parser.add_argument("--httpx", action="store_true", help="also measure through httpx")
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), Path(args.serve[1]))
        return
    count = 800 if args.quick else 4000
    rows = asyncio.run(run(count, args.httpx))
    print(f"\nAPI server creates/s ({count} Model creates per row; SQLite WAL; goal {GOAL:,.0f}/s)")
    print(f"{'load':<32}{'HTTP /s':>10}{'store /s':>10}{'HTTP/store':>12}  goal")
    for label, http, direct in rows:
        verdict = "ok" if http >= GOAL else "MISSED"
        print(f"{label:<32}{http:>10,.0f}{direct:>10,.0f}{http / direct:>12.2f}  {verdict}")


if __name__ == "__main__":
    main()
