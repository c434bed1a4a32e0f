"""The ML-SAN mechanisms: incremental == full, masking, gates, speaker vector, losses, devices."""

from __future__ import annotations

import pytest
import torch

from core.device import resolve_device
from core.labels import EMOTIONS
from core.model import MLSAN, MLSANConfig, TurnFeatures
from tests.model_helpers import SMALL, random_batch, replay, small_model

TOL = 1e-5

CONFIGS = [
    {},  # defaults of the small model: 2 layers, window 16 (> T: whole history)
    {"context_window": 4},  # window shorter than the conversation
    {"context_window": 1},  # no context
    {"context_window": 3, "n_layers": 3},
    {"use_film": False},
    {"use_gating": False},
    {"use_film": False, "use_gating": False, "use_speaker_loss": False, "speaker_aware_context": False},
]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_incremental_step_equals_full_forward(overrides):
    model = small_model(**overrides)
    batch = random_batch(model.cfg, B=3, T=13)
    with torch.no_grad():
        full = model(batch)
    for i in range(3):
        steps = replay(model, batch, i)
        ts = batch.valid[i].nonzero().flatten().tolist()
        assert len(steps) == len(ts)
        for t, out in zip(ts, steps):
            torch.testing.assert_close(out.probs, full.probs[i, t], atol=TOL, rtol=0)
            torch.testing.assert_close(out.gates, full.gates[i, t], atol=TOL, rtol=0)
            torch.testing.assert_close(out.logits, full.logits[i, t], atol=TOL, rtol=0)


def test_step_state_is_bounded_by_the_window():
    model = small_model(context_window=5)
    state = model.init_state()
    g = torch.Generator().manual_seed(0)
    for t in range(200):
        turn = TurnFeatures(speaker=t % 3, audio=torch.randn(10, generator=g), text=torch.randn(12, generator=g))
        _, state = model.step(turn, state)
    assert state.turns == 200
    assert all(k.shape[0] == 4 for k in state.keys) and all(v.shape[0] == 4 for v in state.values)
    assert state.key_speaker.shape == (4,) and state.stats_n.shape == (3, 2)
    assert state.stats_n[:, 0].tolist() == [67, 67, 66]  # audio seen in every turn, per speaker


def test_absent_modality_gets_zero_gate_and_cannot_change_the_output():
    model = small_model()
    batch = random_batch(model.cfg, B=2, T=9)
    batch.present[..., 1] = False  # no face anywhere
    batch.present[0, 3, 0] = False  # one turn without audio
    with torch.no_grad():
        out1 = model(batch)
        batch.visual = torch.full_like(batch.visual, float("nan"))  # garbage in the absent modality
        batch.audio[0, 3] = 1e6
        out2 = model(batch)
    assert torch.all(out1.gates[..., 1] == 0)
    assert out1.gates[0, 3, 0] == 0
    valid = batch.valid
    torch.testing.assert_close(out1.logits[valid], out2.logits[valid], atol=0, rtol=0)
    # gates of present modalities sum to one on turns that have any modality
    any_present = (batch.present & valid[..., None]).any(-1)
    torch.testing.assert_close(out1.gates.sum(-1)[any_present], torch.ones(int(any_present.sum())))


def test_turn_with_no_modality_at_all_gives_a_valid_prediction():
    model = small_model()
    out, _ = model.step(TurnFeatures(speaker=0), model.init_state())
    assert torch.all(out.gates == 0)
    assert torch.isfinite(out.probs).all() and abs(float(out.probs.sum()) - 1) < 1e-6


def test_gates_depend_on_the_speaker_when_gating_is_on_and_are_uniform_when_off():
    feats = dict(audio=torch.ones(10), visual=torch.ones(6), text=torch.ones(12))
    on = small_model(perturb=0.5)
    s = on.init_state()
    g1, s = on.step(TurnFeatures(speaker=0, voiceprint=torch.ones(8), **feats), s)
    g2, s = on.step(TurnFeatures(speaker=1, voiceprint=-torch.ones(8), **feats), s)
    assert (g1.gates - g2.gates).abs().max() > 1e-4  # same content, different speaker -> different trust
    off = small_model(use_gating=False)
    out, _ = off.step(TurnFeatures(speaker=0, audio=torch.ones(10), text=torch.ones(12)), off.init_state())
    torch.testing.assert_close(out.gates, torch.tensor([0.5, 0.0, 0.5]))


def test_speaker_vector_for_unseen_speakers_uses_voiceprint_stats_and_fallback():
    model = small_model(perturb=0.3)
    a = torch.randn(10)
    # no voiceprint, no history: the learned fallback
    o1, _ = model.step(TurnFeatures(speaker=0, audio=a), model.init_state())
    o1b, _ = model.step(TurnFeatures(speaker=5, audio=a), model.init_state())
    torch.testing.assert_close(o1.speaker_vec, o1b.speaker_vec)  # nothing known: same vector
    # a voiceprint changes it
    o2, _ = model.step(TurnFeatures(speaker=0, audio=a, voiceprint=torch.randn(8)), model.init_state())
    assert (o1.speaker_vec - o2.speaker_vec).abs().max() > 1e-4
    # the speaker's own past turns change it (running statistics)
    s = model.init_state()
    for _ in range(3):
        _, s = model.step(TurnFeatures(speaker=0, audio=a + 2.0), s)
    o3, _ = model.step(TurnFeatures(speaker=0, audio=a), s)
    assert (o1.speaker_vec - o3.speaker_vec).abs().max() > 1e-4


def test_film_is_identity_at_initialisation():
    torch.manual_seed(0)
    model = MLSAN(MLSANConfig(**SMALL)).eval()
    x, cond = torch.randn(5, 32), torch.randn(5, 16 + 32)
    torch.testing.assert_close(model.film[0](x, cond), x, atol=0, rtol=0)


def test_loss_is_erc_plus_lambda_times_speaker_loss():
    torch.manual_seed(0)
    for lam in (0.0, 0.3, 1.0):
        model = MLSAN(MLSANConfig(**SMALL, speaker_loss_weight=lam))
        batch = random_batch(model.cfg)
        out = model(batch)
        total, parts = model.loss(out, batch)
        expected = parts["erc"] + lam * parts.get("speaker", 0.0)
        assert abs(float(total.detach()) - expected) < 1e-5
        if lam > 0:
            assert parts["speaker"] > 0
    off = MLSAN(MLSANConfig(**SMALL, use_speaker_loss=False))
    total, parts = off.loss(off(random_batch(off.cfg)), random_batch(off.cfg))
    assert "speaker" not in parts and abs(float(total.detach()) - parts["erc"]) < 1e-6


def test_speaker_loss_separates_speakers_when_trained():
    """Training only the speaker loss on the fused latent makes same-speaker turns closer."""
    torch.manual_seed(0)
    model = MLSAN(MLSANConfig(**SMALL, dropout=0.0))
    batch = random_batch(model.cfg, B=4, T=12, p_present=1.0)
    # speaker identity is carried by the audio: a per-speaker offset
    offsets = torch.randn(3, model.cfg.audio_dim) * 2
    batch.audio = batch.audio + offsets[batch.speaker]
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        loss = model.speaker_loss(model(batch).fused, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.6 * losses[0]


def test_labels_and_device_selection():
    assert MLSANConfig().labels == EMOTIONS == ("neutral", "joy", "surprise", "anger", "sadness", "disgust", "fear")
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_wrong_feature_size_is_a_clear_error():
    model = small_model()
    with pytest.raises(ValueError, match="audio features have 3 values; the model expects 10"):
        model.step(TurnFeatures(speaker=0, audio=torch.zeros(3)), model.init_state())


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="divisible"):
        MLSANConfig(d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="context_window"):
        MLSANConfig(context_window=0)


def test_mixed_precision_path_runs_and_stays_close(monkeypatch):
    """The autocast path used on CUDA, forced on the CPU with bfloat16: same decisions, close numbers."""
    import core.device

    model = small_model()
    batch = random_batch(model.cfg, B=2, T=9)
    with torch.no_grad():
        ref = model(batch)
    ref_steps = replay(model, batch, 0)
    monkeypatch.setattr(core.device, "autocast_dtype", lambda device: torch.bfloat16)
    with torch.no_grad(), core.device.autocast(torch.device("cpu")):
        amp = model(batch)
    amp_steps = replay(model, batch, 0)
    assert amp.logits.dtype == torch.bfloat16 and amp_steps[0].logits.dtype == torch.bfloat16  # autocast was on
    torch.testing.assert_close(amp.probs, ref.probs, atol=0.05, rtol=0)
    for a, r in zip(amp_steps, ref_steps):
        torch.testing.assert_close(a.probs, r.probs, atol=0.05, rtol=0)
        assert torch.isfinite(a.probs).all()
