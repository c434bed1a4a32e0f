"""Checkpoints: bit-exact round trip; tampered, truncated, mismatched and pickled files refused."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, CheckpointError, load_checkpoint, save_checkpoint
from tests.model_helpers import random_batch, small_model


@pytest.fixture
def saved(tmp_path):
    model = small_model(seed=3)
    model.set_normalizer("audio", torch.arange(10.0), torch.full((10,), 2.0))
    d = save_checkpoint(tmp_path / "ckpt", model, feature_versions={"audio": "test-v1"}, extra={"note": "unit"})
    return model, d


def test_round_trip_is_bit_exact(saved):
    model, d = saved
    ck = load_checkpoint(d)
    a, b = model.state_dict(), ck.model.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert ck.feature_versions == {"audio": "test-v1"} and ck.extra == {"note": "unit"}
    assert ck.model.cfg == model.cfg
    batch = random_batch(model.cfg)
    with torch.no_grad():
        assert torch.equal(model(batch).logits, ck.model(batch).logits)
    # the weights file or config.json may be named instead of the directory
    assert torch.equal(load_checkpoint(d / WEIGHTS_NAME).model.proj[0].weight, model.proj[0].weight)
    assert load_checkpoint(d / CONFIG_NAME).model.cfg == model.cfg


def test_tampered_weights_are_refused(saved):
    _, d = saved
    w = d / WEIGHTS_NAME
    data = bytearray(w.read_bytes())
    data[-5] ^= 0xFF  # flip bits inside a tensor
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        load_checkpoint(d)


def test_truncated_weights_without_checksum_are_refused(saved):
    _, d = saved
    meta = json.loads((d / CONFIG_NAME).read_text())
    del meta["weights_sha256"]
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    w = d / WEIGHTS_NAME
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="cannot be read as safetensors"):
        load_checkpoint(d)


def test_config_that_does_not_fit_the_weights_is_refused(saved):
    _, d = saved
    meta = json.loads((d / CONFIG_NAME).read_text())
    meta["config"]["audio_dim"] = 11
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="has shape"):
        load_checkpoint(d)


def test_unknown_config_field_and_bad_json_are_refused(saved):
    _, d = saved
    meta = json.loads((d / CONFIG_NAME).read_text())
    meta["config"]["warp_drive"] = True
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="unknown config fields"):
        load_checkpoint(d)
    (d / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(d)


def test_pickle_is_never_loaded(saved, tmp_path):
    """A pickle posing as the weights file is refused without being unpickled."""
    _, d = saved
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (d / WEIGHTS_NAME).write_bytes(pickle.dumps(Evil()))
    meta = json.loads((d / CONFIG_NAME).read_text())
    del meta["weights_sha256"]
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        load_checkpoint(d)
    assert not marker.exists()


def test_missing_checkpoint_and_missing_parts(tmp_path, saved):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope")
    _, d = saved
    (d / WEIGHTS_NAME).unlink()
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_checkpoint(d)


def test_save_leaves_no_temporary_files(saved):
    _, d = saved
    assert sorted(p.name for p in d.iterdir()) == [CONFIG_NAME, WEIGHTS_NAME]
