"""LoRA adapters of the text encoder: identity at init, save/load round trip, used by TextEmbedder."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from core.features.lora import adapter_state, inject, save_adapter
from core.features.text import TextEmbedder

SENTENCES = ["I can't believe you did that!", "Okay, see you tomorrow.", "This is the worst day of my life."]


@pytest.fixture(scope="module")
def base() -> TextEmbedder:
    e = TextEmbedder()
    e.load()
    return e


def test_adapters_start_as_identity_and_round_trip(base, tmp_path):
    ref = base.embed(SENTENCES)
    tuned = TextEmbedder()
    tuned.load()
    bert = tuned._model[0].auto_model
    params = inject(bert, r=4, alpha=8.0)
    assert len(params) == 2 * 6 * 6  # 6 layers x 6 targeted linears x (A, B)
    np.testing.assert_allclose(tuned.embed(SENTENCES), ref, atol=1e-6)  # B = 0: no change yet
    with torch.no_grad():
        for p in params[1::2]:
            p.normal_(0, 0.02)
    changed = tuned.embed(SENTENCES)
    assert np.abs(changed - ref).max() > 1e-3
    path = tmp_path / "adapter.safetensors"
    save_adapter(bert, path, r=4, alpha=8.0)
    assert path.stat().st_size < 2**20 and len(adapter_state(bert)) == len(params)
    loaded = TextEmbedder(adapter=path)
    assert loaded.version.startswith(base.version + "/lora-")
    np.testing.assert_allclose(loaded.embed(SENTENCES), changed, atol=1e-5)


def test_missing_or_foreign_adapter_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="text adapter .* not found"):
        TextEmbedder(adapter=tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    save_file({"x": torch.zeros(2)}, str(bad))
    with pytest.raises(ValueError, match="not a LoRA adapter file"):
        TextEmbedder(adapter=bad).embed(["hi"])
