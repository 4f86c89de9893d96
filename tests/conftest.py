"""Shared fixtures. Real footage comes from ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    assert SHARED_DATA.is_dir(), f"real test footage expected at {SHARED_DATA} (the shared folder beside the checkout)"
    return SHARED_DATA


@pytest.fixture(scope="session")
def clips(shared_data: Path) -> dict[str, Path]:
    return {p.stem: p for p in (shared_data / "clips").glob("*.mp4")}


@pytest.fixture(scope="session")
def tiny_qwen2vl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Qwen2-VL folder (scripts/make_tiny_qwen2vl.py), built offline once per session."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_tiny_qwen2vl", ROOT / "scripts" / "make_tiny_qwen2vl.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2vl"))
