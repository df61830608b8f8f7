"""Shared fixtures: the project's stacks, and the Pulumi program run under recording mocks."""

from __future__ import annotations

import pytest

from lgcloud.config import load_stack


@pytest.fixture(scope="session")
def dev():
    return load_stack("dev")


@pytest.fixture(scope="session")
def scale():
    return load_stack("scale")
