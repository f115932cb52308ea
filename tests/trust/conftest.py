from __future__ import annotations

import pytest

from tests.browser import TEST_POW_BITS
from tests.voters import standin_entry

# Four models that answer in recognisable styles, with a clear order of quality for the honest voters.
STYLES = {"tulip": 1.5, "cedar": 0.5, "fern": -0.5, "birch": -1.5}


@pytest.fixture(autouse=True)
def _test_pow_difficulty(settings):
    """The in-process proof of work at the test difficulty, as the LiveArena's daphne has it."""
    settings.ARENA_POW_BITS = TEST_POW_BITS
    yield


@pytest.fixture
def styled_models(standin, inprocess):
    return {
        style: standin_entry(standin, f"sim-{style[:2]}", f"style-{style}", display_name=f"Sim {i}",
                             organization=f"Lab {i}")
        for i, style in enumerate(STYLES)
    }
