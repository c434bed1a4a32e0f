"""The shipped default checkpoint: loads, matches the installed extractors, and `core.evaluate`
reproduces the MELD test score recorded at training time."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from core.checkpoint import load_checkpoint
from core.data.paths import default_data_root
from core.labels import EMOTIONS

ROOT = Path(__file__).resolve().parents[1]
DEFAULT = ROOT / "models" / "default"


def test_default_checkpoint_loads_and_is_small():
    ck = load_checkpoint(DEFAULT)
    assert ck.model.cfg.labels == EMOTIONS
    assert ck.extra["trained_modalities"] == ["audio", "text"]  # the visual branch is untrained
    size = sum(p.stat().st_size for p in DEFAULT.iterdir() if p.is_file())
    assert size < 8 * 2**20, f"default checkpoint is {size / 2**20:.1f} MB"


def test_default_checkpoint_matches_the_installed_extractors():
    from core.features.audio import AudioFeatures
    from core.features.text import TextEmbedder
    from speakers.voiceprint import VoiceprintExtractor

    ck = load_checkpoint(DEFAULT)
    audio = AudioFeatures(ck.extra["audio_features"])
    assert ck.feature_versions["audio"] == audio.version and ck.model.cfg.audio_dim == audio.dim
    adapter = ck.extra.get("text_adapter")
    text = TextEmbedder(ck.extra["text_encoder"], adapter=ck.directory / adapter if adapter else None)
    assert ck.feature_versions["text"] == text.version
    assert ck.feature_versions["voiceprint"] == VoiceprintExtractor("cpu").version


@pytest.mark.skipif(default_data_root() is None or not (default_data_root() / "meld").is_dir(),
                    reason="MELD CSVs not found (set MLSAN_DATA or place ../shared/data)")
def test_evaluate_cli_reproduces_the_recorded_meld_test_score(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "core.evaluate", "--dataset", "meld", "--split", "test",
                           "--out-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m = re.search(r"^meld test weighted_f1=(\d+\.\d\d) ", proc.stdout, re.M)
    assert m, proc.stdout[-2000:]
    recorded = load_checkpoint(DEFAULT).extra["metrics"]["meld_test_weighted_f1"]
    assert abs(float(m.group(1)) - recorded) < 0.02
    assert (tmp_path / "meld_test_confusion.png").stat().st_size > 1000


def test_evaluate_cli_missing_checkpoint_is_a_one_line_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "core.evaluate", "--checkpoint", str(tmp_path / "nope")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "checkpoint not found" in proc.stderr
