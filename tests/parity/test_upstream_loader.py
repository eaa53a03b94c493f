"""conftest's upstream loader: microsoft/LoRA's modules come from the checkout, are shared between imports, and
stay out of sys.modules and sys.path (upstream's ``model`` / ``data_utils`` never shadow anything)."""

from __future__ import annotations

import sys

import pytest

pytestmark = pytest.mark.upstream


def test_upstream_modules_are_shared_and_kept_out_of_sys_modules(upstream):
    pytest.importorskip("loralib")
    beam = upstream("gpt2_beam")
    assert beam.FT_Dataset is upstream("data_utils").FT_Dataset and beam.GPT2LMModel is upstream("model").GPT2LMModel
    assert upstream("model").__file__ == str(upstream.src / "model.py")
    assert not {"gpt2_beam", "model", "data_utils", "gpu", "exp_utils"} & set(sys.modules)
    assert str(upstream.src) not in sys.path
