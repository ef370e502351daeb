"""Fixtures shared by the namespace tests."""

from __future__ import annotations

from collections.abc import Iterator

import netns as nslab
import pytest


@pytest.fixture(scope="module")
def lab() -> Iterator[nslab.Lab]:
    """Client and server namespaces with the echo service running on the server; at the end,
    proves the root namespace's ruleset was not touched."""
    reason = nslab.skip_reason("nft")
    if reason:
        pytest.skip(reason)
    before = nslab.root_ruleset()
    with nslab.Lab() as lab:
        lab.start_echo()
        yield lab
    assert nslab.root_ruleset() == before, "root namespace ruleset changed"
