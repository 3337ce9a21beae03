"""Shared test fixtures: paths to the reference samples and the bundled example."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SAMPLES = SHARED / "samples"


@pytest.fixture
def samples() -> Path:
    """../shared/samples; tests that read it skip when it is absent."""
    if not SAMPLES.is_dir():
        pytest.skip("../shared/samples is not present")
    return SAMPLES
