"""Shared fixtures: the project's stacks, and the Pulumi program run under recording mocks."""

from __future__ import annotations

import pytest

from lgcloud.model.config import load_stack


@pytest.fixture(scope="session")
def dev():
    return load_stack("dev")


@pytest.fixture(scope="session")
def scale():
    return load_stack("scale")


def pytest_collection_modifyitems(items):
    """Drills stop VMs and move services: they run after every other test, in file order."""
    items.sort(key=lambda item: item.get_closest_marker("drill") is not None)
