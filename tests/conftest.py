"""Shared test fixtures."""

from __future__ import annotations

import pytest


@pytest.fixture
def write_text(tmp_path):
    """Write a text file into tmp_path and return its path."""

    def _write(name: str, text: str):
        path = tmp_path / name
        path.write_text(text)
        return path

    return _write
