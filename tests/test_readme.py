"""The README's Python snippets run as written.

Two kinds of block are not executed here, on purpose: the GPU block (it needs a CUDA
device; tests/backends/cuda covers that API) and the forecasting blocks (several full fits, or a Dask
cluster; tests/forecast/ and tests/integrations/ cover each call in them).
"""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.DOTALL)
RUNNABLE = [block for block in BLOCKS if 'backend="cuda"' not in block and "Forecaster(" not in block]


def test_readme_has_runnable_blocks():
    assert len(RUNNABLE) >= 2, "README lost its API tour or its custom-model example"


@pytest.mark.parametrize("block", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_readme_block_runs(block):
    exec(compile(block, str(README), "exec"), {})
