"""Shared fixtures: where the real evaluation data lives (../shared/data beside the repo)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Session fixtures shared by the assistant, server and UI tests (tiny Qwen3, fake-embedder KB),
# registered once so each is built once per run.
pytest_plugins = ["fixtures_assistant"]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder; tests that need it skip with a reason where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (a checkout without ../shared)")
    return SHARED_DATA
