"""Shared fixtures: an isolated data cache and one tiny trained run per session."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory):
    # Rendered scenes go to a per-session cache, never the user's ~/.cache.
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    mp.undo()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, _isolated_cache):
    """A fully trained (seconds-long) tiny run directory with model.ckpt."""
    from trainer.config import load_config
    from trainer.train import fit

    out = tmp_path_factory.mktemp("tiny-run")
    fit(load_config("tiny"), out)
    return out
