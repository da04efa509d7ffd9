from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import make_repo

TINY = """
import random
import florsql as flor

lr = flor.arg("lr", 0.1)
epochs = flor.arg("epochs", 3)
w = 1.0
for epoch in flor.loop("epoch", range(epochs)):
    for step in flor.loop("step", range(4)):
        w -= lr * (w - random.random())
        flor.log("loss", w * w)
    flor.log("w", w)
flor.log("done", "yes")
"""


@pytest.fixture
def tiny_repo(tmp_path: Path) -> Path:
    """A temp git repo with a short pure-python training script, committed."""
    return make_repo(tmp_path / "proj", {"train.py": TINY})
