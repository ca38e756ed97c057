import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))

DATA = TESTS / "data"


@pytest.fixture
def data_dir() -> Path:
    return DATA
