"""Training pipeline: collation, metrics, fit with dev-only model selection, DDP under torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.conversations import Conversation, collate, local_speakers
from core.metrics import plot_confusion, score
from core.model import MLSANConfig
from core.synthetic import make_conversations
from core.training import TrainOptions, class_weights, evaluate, fit

ROOT = Path(__file__).resolve().parents[1]
CFG = MLSANConfig(audio_dim=16, visual_dim=4, text_dim=8, voiceprint_dim=8, d_model=32, d_speaker=16, n_layers=1,
                  context_window=4, dropout=0.0)


def planted_conversations(n: int, seed: int) -> list[Conversation]:
    """The planted-speaker task (core/synthetic.py) as Conversation records."""
    b = make_conversations(n, seed=seed, cfg=CFG)
    return [Conversation(speaker=b.speaker[i].numpy(), labels=b.labels[i].numpy(), audio=b.audio[i].numpy(),
                         text=b.text[i].numpy()) for i in range(n)]


def test_collate_pads_masks_and_checks_dims():
    a = Conversation(speaker=np.array([0, 1, 0]), labels=np.array([1, 2, 3]), text=np.ones((3, 8), np.float32),
                     scored=np.array([True, False, True]))
    b = Conversation(speaker=np.array([0]), labels=np.array([4]), audio=np.ones((1, 16), np.float32),
                     voiceprint=np.ones((1, 8), np.float32), in_context=np.array([False]))
    batch = collate([a, b], CFG)
    assert batch.valid.tolist() == [[True, True, True], [True, False, False]]
    assert batch.labels.tolist() == [[1, -100, 3], [4, -100, -100]]
    assert batch.present[0, :, 2].all() and not batch.present[0, :, 0].any()
    assert batch.present[1, 0].tolist() == [True, False, False]
    assert batch.has_voiceprint.tolist() == [[False] * 3, [True, False, False]]
    assert batch.in_context[1, 0].item() is False
    bad = Conversation(speaker=np.array([0]), labels=np.array([0]), text=np.ones((1, 5), np.float32))
    with pytest.raises(ValueError, match="text features have 5 dimensions; the model expects 8"):
        collate([bad], CFG)


def test_local_speakers_in_order_of_appearance():
    assert local_speakers(["Ross", "Rachel", "Ross", "Joey"]).tolist() == [0, 1, 0, 2]


def test_metrics_on_known_predictions(tmp_path):
    y = np.array([0, 0, 0, 0, 1, 1, 6, 6])
    p = np.array([0, 0, 0, 1, 1, 1, 6, 0])
    s = score(y, p)
    assert s.accuracy == pytest.approx(75.0)
    assert s.uar == pytest.approx(100 * (3 / 4 + 1 + 1 / 2) / 3)  # recall over the classes present
    assert s.per_class_f1["joy"] == pytest.approx(100 * 0.8)  # P 2/3, R 1
    assert s.confusion[0].tolist() == [3, 1, 0, 0, 0, 0, 0] and s.confusion.sum() == 8
    assert plot_confusion(s, tmp_path / "cm.png", "t").stat().st_size > 1000
    with pytest.raises(ValueError):
        score(np.array([]), np.array([]))


def test_class_weights_favour_rare_classes():
    convs = [Conversation(speaker=np.zeros(10, np.int64), labels=np.array([0] * 9 + [6]))]
    w = class_weights(convs, 7, "inv")
    assert w[6] > w[0] and w[1] == 0
    assert class_weights(convs, 7, "none") is None


def test_fit_learns_and_keeps_the_best_dev_epoch():
    train, dev = planted_conversations(96, seed=0), planted_conversations(48, seed=1)
    model, hist = fit(CFG, train, dev, TrainOptions(epochs=6, batch_size=16, lr=3e-3, class_weighting="none"),
                      torch.device("cpu"))
    assert len(hist) == 6
    best = max(h["dev_weighted_f1"] for h in hist)
    assert evaluate(model, dev, torch.device("cpu")).weighted_f1 == pytest.approx(best, abs=1e-6)
    assert best > 50  # 4 classes: chance is ~25
    assert hist[-1]["erc"] < hist[0]["erc"]
    # the normaliser was fitted on the training audio
    assert model.audio_std.mean() > 1.5  # planted speaker shifts make the raw features wide


def test_distributed_training_with_torchrun(tmp_path):
    """Two CPU processes (gloo on loopback) train one model; parameters stay identical across ranks."""
    out = tmp_path / "ddp.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    # --standalone: a local rendezvous on a free loopback port
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_worker.py"), str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert res["epochs"] == 3 and res["dev_uar"] > 25


@pytest.mark.skipif(not (ROOT.parent / "shared" / "data" / "meld").is_dir() and not os.environ.get("MLSAN_DATA"),
                    reason="MELD CSVs not found (set MLSAN_DATA or place ../shared/data)")
def test_train_cli_end_to_end_on_a_slice_of_meld(tmp_path):
    out = tmp_path / "res.json"
    proc = subprocess.run([sys.executable, "-m", "core.train", "--dataset", "meld", "--limit", "30", "--epochs", "2",
                           "--seeds", "0", "1", "--ablation", "full", "no_context", "--threads", "1", "--out", str(out),
                           "--cache", str(tmp_path / "cache")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    res = json.loads(out.read_text())
    assert set(res["results"]) == {"full", "no_context"} and len(res["results"]["full"]) == 2
    row = res["results"]["full"][0]
    assert 0 <= row["weighted_f1"] <= 100 and set(row["per_class_f1"]) >= {"fear", "disgust"}
    assert "mean ± std over seeds" in proc.stdout and "p=" in proc.stdout  # the summary table with paired tests


def test_train_cli_missing_data_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "core.train", "--dataset", "meld", "--data", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "meld data not found" in proc.stderr
