"""Fixtures of the unit tests: the service on fresh fakes, and BLAST+ stood in for."""

from __future__ import annotations

import pytest

from blast_core.blast import search
from unit.fakes import FakeBlast, FakeWorld, build


@pytest.fixture(autouse=True)
def no_programs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A unit test never runs BLAST+: reaching it is a mistake in the test, said at once."""

    def refuse(args, *_, **__):
        raise AssertionError(f"a unit test tried to run {args[0]}; use the blast fixture")

    monkeypatch.setattr(search, "run_measured", refuse)
    monkeypatch.setattr(search, "run_tool", refuse)


@pytest.fixture
def world() -> FakeWorld:
    return build()


@pytest.fixture
def blast(monkeypatch: pytest.MonkeyPatch) -> FakeBlast:
    """BLAST+ stood in for where the service runs it (FakeBlast)."""
    return FakeBlast().install(monkeypatch)
