"""A separate process that writes to a store: ``python writer_process.py URL COUNT [PREFIX]``.

It creates COUNT objects (0 means until killed) and prints ``<name> <resourceVersion>`` after
each create returns, so the parent knows exactly which writes were acknowledged. Used by the
cross-process watch test and the kill -9 durability test.
"""

from __future__ import annotations

import asyncio
import itertools
import sys

from corral.store import open_store


async def main(url: str, count: int, prefix: str) -> None:
    store = await open_store(url)
    try:
        numbers = itertools.count() if count == 0 else range(count)
        for number in numbers:
            name = f"{prefix}-{number}"
            created = await store.create(
                {
                    "kind": "Endpoint",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"number": number},
                }
            )
            print(name, created["metadata"]["resourceVersion"], flush=True)
    finally:
        await store.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "w"))
