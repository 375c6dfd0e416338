"""tests/deploy: the `cluster` test runs only when asked for (`make test-cluster`, `-m cluster`
or SAMPLAN_TEST_CLUSTER=1); the rest of the folder runs with the whole suite."""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    asked = "cluster" in (config.getoption("markexpr", "") or "") or os.environ.get(
        "SAMPLAN_TEST_CLUSTER")
    if asked:
        return
    skip = pytest.mark.skip(reason="the cluster test runs with `make test-cluster`")
    for item in items:
        if "cluster" in item.keywords:
            item.add_marker(skip)
