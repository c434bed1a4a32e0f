"""ML-SAN: Multi-Level Speaker-Adaptive Network for emotion recognition in conversation.

Reads top to bottom:
  1. MLSANConfig: every size and switch, one frozen dataclass.
  2. TurnBatch / TurnFeatures / StepOutput: what goes in and comes out.
  3. Building blocks: speaker encoder, FiLM calibration, modality gates, windowed context attention.
  4. MLSAN: `forward` over whole conversations (training) and `step` over one turn (live),
     which give the same numbers for the same history.
  5. The losses: emotion cross-entropy + lambda * speaker consistency (supervised contrastive).

The speaker enters at three levels:
  * input: FiLM on the projected audio and visual features, conditioned on a speaker vector built
    from what is observable live: a voiceprint (if any) and the speaker's own running feature
    statistics over their *past* turns (shrunk towards zero while there are few of them);
    a learned fallback vector stands in when nothing is known about the speaker;
  * interaction: speaker-conditioned soft gates over the modalities present in the turn
    (absent modalities get exactly zero weight);
  * output: an auxiliary loss that keeps speaker identity recoverable from the fused latent.

Context is causal and bounded: each turn attends to itself and at most `context_window - 1` past
turns, with a learned same-speaker / other-speaker bias and a relative-distance bias. A step keeps
a per-layer key/value cache of the last window, so its cost does not grow with the conversation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from core.labels import EMOTIONS, MODALITIES

AUDIO, VISUAL, TEXT = 0, 1, 2  # column of each modality in presence masks and gate vectors


# ----------------------------------------------------------------------------------------------
# 1. Configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MLSANConfig:
    audio_dim: int = 88  # size of the per-turn audio feature vector (eGeMAPSv02 functionals: 88)
    visual_dim: int = 64  # size of the pooled face feature vector (blendshapes + head pose)
    text_dim: int = 384  # size of the sentence embedding (all-MiniLM-L6-v2: 384)
    voiceprint_dim: int = 256  # size of the speaker voiceprint (resemblyzer d-vector: 256)
    d_model: int = 128  # width of projected features, fused latent and context encoder
    d_speaker: int = 64  # width of the speaker vector that conditions FiLM and the gates
    n_heads: int = 4  # attention heads in the context encoder
    n_layers: int = 2  # context encoder layers
    context_window: int = 16  # turns each turn attends to, itself included (1 = no context)
    dropout: float = 0.1  # dropout in projections and the context encoder
    stats_prior: float = 3.0  # pseudo-count shrinking a speaker's running stats towards zero
    use_film: bool = True  # level 1: speaker-conditioned FiLM on audio and visual inputs
    use_gating: bool = True  # level 2: speaker-conditioned modality gates (else: equal weights)
    use_speaker_loss: bool = True  # level 3: auxiliary speaker-consistency loss
    speaker_aware_context: bool = True  # same-speaker bias + speaker vector in the context encoder
    speaker_loss_weight: float = 0.3  # lambda in: loss = ERC loss + lambda * speaker loss
    speaker_temperature: float = 0.1  # temperature of the supervised contrastive speaker loss
    labels: tuple[str, ...] = EMOTIONS  # output classes, in order

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
        if self.context_window < 1:
            raise ValueError("context_window must be >= 1 (1 means: no context)")
        for name in ("audio_dim", "visual_dim", "text_dim", "voiceprint_dim", "d_model", "d_speaker", "n_layers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")

    @property
    def uses_speaker(self) -> bool:
        """Whether any level consumes the speaker vector."""
        return self.use_film or self.use_gating

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = list(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "MLSANConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}")
        d = dict(d)
        if "labels" in d:
            d["labels"] = tuple(d["labels"])
        return cls(**d)


# ----------------------------------------------------------------------------------------------
# 2. Inputs and outputs
# ----------------------------------------------------------------------------------------------
@dataclass
class TurnBatch:
    """A batch of B conversations of up to T turns (right-padded)."""

    audio: Tensor  # (B, T, audio_dim) float
    visual: Tensor  # (B, T, visual_dim) float
    text: Tensor  # (B, T, text_dim) float
    present: Tensor  # (B, T, 3) bool: audio / visual / text present in the turn
    speaker: Tensor  # (B, T) long: speaker index local to the conversation (0, 1, ...)
    valid: Tensor  # (B, T) bool: a real turn (False: padding)
    voiceprint: Tensor | None = None  # (B, T, voiceprint_dim) float, or None: no voiceprints
    has_voiceprint: Tensor | None = None  # (B, T) bool
    in_context: Tensor | None = None  # (B, T) bool: later turns may attend to it (default: valid)
    labels: Tensor | None = None  # (B, T) long emotion index, -100 = unlabelled
    speaker_key: Tensor | None = None  # (B, T) long global speaker id for the speaker loss (-1: use local)

    def to(self, device: torch.device) -> "TurnBatch":
        return TurnBatch(**{k: (v.to(device) if isinstance(v, Tensor) else v) for k, v in self.__dict__.items()})


@dataclass
class TurnFeatures:
    """One turn for the incremental step. A modality set to None is missing."""

    speaker: int  # speaker index local to the conversation
    audio: Tensor | None = None  # (audio_dim,)
    visual: Tensor | None = None  # (visual_dim,)
    text: Tensor | None = None  # (text_dim,)
    voiceprint: Tensor | None = None  # (voiceprint_dim,)
    in_context: bool = True  # whether later turns may attend to this one


@dataclass
class ModelOutput:
    logits: Tensor  # (..., n_classes)
    gates: Tensor  # (..., 3) modality trust weights; 0 for absent modalities
    fused: Tensor  # (..., d_model) fused latent (the speaker loss acts here)
    speaker_vec: Tensor  # (..., d_speaker)

    @property
    def probs(self) -> Tensor:
        return self.logits.float().softmax(-1)


@dataclass
class ConversationState:
    """Everything `step` needs from the past: bounded in size whatever the conversation length."""

    keys: list[Tensor] = field(default_factory=list)  # per layer: (n, H, dh), n <= window - 1
    values: list[Tensor] = field(default_factory=list)
    key_speaker: Tensor | None = None  # (n,) long
    key_visible: Tensor | None = None  # (n,) bool: in_context flag of cached turns
    stats_sum: Tensor | None = None  # (K, 2, d_model) per speaker, per FiLM modality: sum of features
    stats_sumsq: Tensor | None = None  # (K, 2, d_model)
    stats_n: Tensor | None = None  # (K, 2) number of past turns with that modality present
    turns: int = 0  # turns seen so far


# ----------------------------------------------------------------------------------------------
# 3. Building blocks
# ----------------------------------------------------------------------------------------------
def _zero_init(linear: nn.Linear) -> nn.Linear:
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


def shrunk_stats(s: Tensor, s2: Tensor, n: Tensor, prior: float) -> tuple[Tensor, Tensor, Tensor]:
    """Running mean/std shrunk towards (0, 1) with `prior` pseudo-observations, and a count feature.

    s, s2: sums of x and x**2 over n observations (n broadcast on the last dim)."""
    n = n.unsqueeze(-1).to(s.dtype)
    mean = s / (n + prior)
    m2 = (s2 + prior) / (n + prior)
    std = (m2 - mean * mean).clamp_min(1e-4).sqrt()
    count = torch.log1p(n) / math.log(1 + 100.0)
    return mean, std, count


class SpeakerEncoder(nn.Module):
    """Speaker vector from a voiceprint and running feature statistics; learned fallback if neither."""

    def __init__(self, cfg: MLSANConfig):
        super().__init__()
        d = cfg.d_model
        self.voice = nn.Sequential(nn.Linear(cfg.voiceprint_dim, cfg.d_speaker), nn.GELU())
        self.no_voice = nn.Parameter(torch.zeros(cfg.d_speaker))  # "no voiceprint" fallback
        # stats of two FiLM modalities: mean (d) + std (d) + count (1) each
        self.mix = nn.Sequential(nn.Linear(cfg.d_speaker + 2 * (2 * d + 1), cfg.d_speaker), nn.GELU(),
                                 nn.Linear(cfg.d_speaker, cfg.d_speaker))

    def forward(self, voiceprint: Tensor | None, has_vp: Tensor, stats: Tensor) -> Tensor:
        """voiceprint (..., Dvp) or None; has_vp (...,) bool; stats (..., 2*(2d+1))."""
        fallback = self.no_voice.expand(*has_vp.shape, -1)
        if voiceprint is None:
            v = fallback
        else:
            vp = F.normalize(torch.nan_to_num(voiceprint), dim=-1)
            v = torch.where(has_vp.unsqueeze(-1), self.voice(vp), fallback)
        return self.mix(torch.cat([v, stats], -1))


class FiLM(nn.Module):
    """x -> gamma(c) * x + beta(c); identity at initialisation.

    The condition c holds the speaker vector and the speaker's running mean of this modality's
    projected features; the linear path lets beta learn an exact per-speaker mean subtraction."""

    def __init__(self, d_cond: int, d: int):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(d_cond, d), nn.GELU())
        self.out = _zero_init(nn.Linear(d, 2 * d))
        self.skip = _zero_init(nn.Linear(d_cond, 2 * d))

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        g, b = (self.out(self.hidden(cond)) + self.skip(cond)).chunk(2, -1)
        return (1 + g) * x + b


class ModalityGate(nn.Module):
    """Soft weights over present modalities, conditioned on the speaker vector and the content."""

    def __init__(self, cfg: MLSANConfig):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(cfg.d_speaker + 3 * cfg.d_model, cfg.d_model), nn.GELU(),
                                 nn.Linear(cfg.d_model, 3))
        self.use_gating = cfg.use_gating

    def forward(self, h: Tensor, speaker_vec: Tensor, present: Tensor) -> Tensor:
        """h (..., 3, d), speaker_vec (..., ds), present (..., 3) bool -> weights (..., 3)."""
        p = present.to(h.dtype)
        if self.use_gating:
            logits = self.net(torch.cat([speaker_vec, h.flatten(-2)], -1)).float()
            w = logits.masked_fill(~present, -1e4).softmax(-1)
        else:
            w = torch.ones_like(p, dtype=torch.float32)
        w = w * p  # absent modalities: exactly zero
        return (w / w.sum(-1, keepdim=True).clamp_min(1e-12)).to(h.dtype)


class ContextLayer(nn.Module):
    """Pre-norm transformer layer with causal sliding-window attention over past turns."""

    def __init__(self, cfg: MLSANConfig):
        super().__init__()
        d, self.h, self.w = cfg.d_model, cfg.n_heads, cfg.context_window
        self.dh = d // self.h
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ff = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Dropout(cfg.dropout), nn.Linear(2 * d, d))
        self.drop = nn.Dropout(cfg.dropout)
        self.dist_bias = nn.Parameter(torch.zeros(self.h, self.w))  # by distance 0..w-1
        self.same_bias = nn.Parameter(torch.zeros(self.h, 2))  # other speaker / same speaker
        self.speaker_aware = cfg.speaker_aware_context

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, same: Tensor, allowed: Tensor) -> Tensor:
        """q (N, H, dh); k, v (N, W, H, dh); same, allowed (N, W) with column W-1 = self."""
        scores = torch.einsum("nhd,nwhd->nhw", q, k) / math.sqrt(self.dh)
        scores = scores + self.dist_bias.flip(-1).to(scores.dtype)  # column j: distance w-1-j
        if self.speaker_aware:
            scores = scores + self.same_bias[:, same.long()].permute(1, 0, 2).to(scores.dtype)
        scores = scores.float().masked_fill(~allowed.unsqueeze(1), float("-inf"))
        attn = self.drop(scores.softmax(-1)).to(v.dtype)
        return torch.einsum("nhw,nwhd->nhd", attn, v).flatten(-2)

    def forward(self, x: Tensor, speaker: Tensor, visible: Tensor, valid: Tensor) -> Tensor:
        """Whole conversations: x (B, T, d); speaker, visible, valid (B, T)."""
        B, T, d = x.shape
        w = self.w
        q, k, v = self.qkv(self.norm1(x)).view(B, T, 3, self.h, self.dh).unbind(2)

        def windows(t: Tensor, fill) -> Tensor:  # (B, T, ...) -> (B*T, w, ...) of turns t-w+1..t
            pad = t.new_full((B, w - 1, *t.shape[2:]), fill)
            t = torch.cat([pad, t], 1)
            idx = torch.arange(T, device=t.device)[:, None] + torch.arange(w, device=t.device)[None, :]
            return t[:, idx].reshape(B * T, w, *t.shape[2:])

        kw, vw = windows(k, 0.0), windows(v, 0.0)
        spk_w = windows(speaker, -1)
        ok = windows(visible & valid, False)
        is_self = torch.zeros(w, dtype=torch.bool, device=x.device)
        is_self[-1] = True
        allowed = ok | is_self
        same = spk_w == speaker.reshape(B * T, 1)
        a = self._attend(q.reshape(B * T, self.h, self.dh), kw, vw, same, allowed)
        x = x + self.drop(self.proj(a.view(B, T, d)))
        return x + self.drop(self.ff(self.norm2(x)))

    def step(self, x: Tensor, speaker: int, state_k: Tensor, state_v: Tensor, key_speaker: Tensor,
             key_visible: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """One turn: x (d,); cached keys/values (n, H, dh) of the last n <= w-1 turns, oldest first.
        Same numbers as `forward` (whose window padding is masked out anyway), without the padding."""
        q, k, v = self.qkv(self.norm1(x)).view(3, self.h, self.dh).unbind(0)
        n = state_k.shape[0]
        keys, vals = torch.cat([state_k, k[None]]), torch.cat([state_v, v[None]])  # (n+1, H, dh)
        scores = torch.einsum("hd,whd->hw", q, keys) / math.sqrt(self.dh)
        scores = scores + self.dist_bias[:, : n + 1].flip(-1).to(scores.dtype)  # key j: distance n-j
        if self.speaker_aware:
            same = torch.cat([key_speaker == speaker, key_speaker.new_ones(1, dtype=torch.bool)])
            scores = scores + self.same_bias[:, same.long()].to(scores.dtype)
        allowed = torch.cat([key_visible, key_visible.new_ones(1)])
        attn = scores.float().masked_fill(~allowed, float("-inf")).softmax(-1).to(vals.dtype)
        x = x + self.proj(torch.einsum("hw,whd->hd", attn, vals).flatten())
        return x + self.ff(self.norm2(x)), k, v


# ----------------------------------------------------------------------------------------------
# 4. The network
# ----------------------------------------------------------------------------------------------
class MLSAN(nn.Module):
    def __init__(self, cfg: MLSANConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        dims = (cfg.audio_dim, cfg.visual_dim, cfg.text_dim)
        # Fixed input normalisation (set from training data; saved in checkpoints).
        for name, dim in zip(MODALITIES, dims):
            self.register_buffer(f"{name}_mean", torch.zeros(dim))
            self.register_buffer(f"{name}_std", torch.ones(dim))
        self.proj = nn.ModuleList([nn.Linear(dim, d) for dim in dims])  # audio, visual, text
        self.drop = nn.Dropout(cfg.dropout)
        self.speaker = SpeakerEncoder(cfg)
        self.film = nn.ModuleList([FiLM(cfg.d_speaker + d, d) for _ in range(2)])  # audio, visual
        self.gate = ModalityGate(cfg)
        self.empty = nn.Parameter(torch.zeros(d))  # fused latent of a turn with no modality at all
        self.speaker_in = nn.Linear(cfg.d_speaker, d)
        self.layers = nn.ModuleList([ContextLayer(cfg) for _ in range(cfg.n_layers)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(2 * d, len(cfg.labels))
        self.speaker_head = nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, 64))

    # -- normalisation -------------------------------------------------------------------------
    def set_normalizer(self, modality: str, mean: Tensor, std: Tensor) -> None:
        """Fix the input standardisation of one modality (from training-set statistics)."""
        getattr(self, f"{modality}_mean").copy_(torch.as_tensor(mean, dtype=torch.float32))
        getattr(self, f"{modality}_std").copy_(torch.as_tensor(std, dtype=torch.float32).clamp_min(1e-6))

    def _project(self, x: Tensor, present: Tensor, i: int) -> Tensor:
        """Standardise and project one modality; absent inputs are replaced by zeros first, so the
        output never depends on their values (NaN included)."""
        name = MODALITIES[i]
        x = (x - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")
        x = torch.where(present.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))
        return self.proj[i](x)

    # -- per-turn fusion (shared by forward and step) ------------------------------------------------
    def _fuse(self, h: list[Tensor], present: Tensor, mean: Tensor, std: Tensor, count: Tensor,
              voiceprint: Tensor | None, has_vp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """h: projected audio/visual/text (..., d); mean/std (..., 2, d), count (..., 2, 1): the
        speaker's past statistics of projected audio and visual. Returns fused, gates, speaker_vec."""
        stats = torch.cat([mean, std, count], -1).flatten(-2)
        spk = self.speaker(voiceprint, has_vp, stats)
        if not self.cfg.uses_speaker:
            spk = torch.zeros_like(spk)
        if self.cfg.use_film:
            h = [self.film[i](h[i], torch.cat([spk, mean[..., i, :]], -1)) for i in (AUDIO, VISUAL)] + [h[TEXT]]
        hs = torch.stack([self.drop(x) for x in h], -2)  # (..., 3, d)
        gates = self.gate(hs, spk, present)
        fused = (gates.unsqueeze(-1) * hs).sum(-2)
        fused = torch.where(present.any(-1, keepdim=True), fused, self.empty.to(fused.dtype))
        return fused, gates, spk

    def _classify(self, ctx: Tensor, fused: Tensor) -> Tensor:
        return self.head(torch.cat([self.norm(ctx), fused], -1))

    def _context_input(self, fused: Tensor, spk: Tensor) -> Tensor:
        return fused + self.speaker_in(spk) if self.cfg.speaker_aware_context else fused

    # -- whole conversations -------------------------------------------------------------------
    def forward(self, batch: TurnBatch) -> ModelOutput:
        B, T = batch.speaker.shape
        present = batch.present & batch.valid.unsqueeze(-1)
        h = [self._project(x, present[..., i], i) for i, x in enumerate((batch.audio, batch.visual, batch.text))]
        mean, std, count = self._past_speaker_stats(h[:2], present[..., :2], batch.speaker, batch.valid)
        has_vp = batch.has_voiceprint if batch.has_voiceprint is not None else torch.zeros_like(batch.valid)
        fused, gates, spk = self._fuse(h, present, mean, std, count, batch.voiceprint, has_vp & batch.valid)
        x = self._context_input(fused, spk)
        visible = batch.in_context if batch.in_context is not None else batch.valid
        for layer in self.layers:
            x = layer(x, batch.speaker, visible, batch.valid)
        return ModelOutput(self._classify(x, fused), gates, fused, spk)

    def _past_speaker_stats(self, h: list[Tensor], present: Tensor, speaker: Tensor, valid: Tensor):
        """Causal per-speaker statistics: for each turn, over the *earlier* turns of its speaker."""
        K = int(speaker.max().item()) + 1 if speaker.numel() else 1
        onehot = F.one_hot(speaker.clamp_min(0), K).to(h[0].dtype) * valid.unsqueeze(-1)  # (B, T, K)
        x = torch.stack(h, 2)  # (B, T, 2, d)
        p = present.to(x.dtype)  # (B, T, 2)
        w = onehot.unsqueeze(-1) * p.unsqueeze(2)  # (B, T, K, 2)

        def past(t: Tensor) -> Tensor:  # exclusive cumulative sum over turns
            return t.cumsum(1) - t

        s = past(torch.einsum("btkm,btmd->btkmd", w, x))
        s2 = past(torch.einsum("btkm,btmd->btkmd", w, x * x))
        n = past(w)
        own = speaker.clamp_min(0)[:, :, None, None, None].expand(-1, -1, 1, 2, x.shape[-1])
        s, s2 = s.gather(2, own).squeeze(2), s2.gather(2, own).squeeze(2)
        n = n.gather(2, own[..., 0]).squeeze(2)
        return shrunk_stats(s, s2, n, self.cfg.stats_prior)

    # -- one turn at a time --------------------------------------------------------------------
    def init_state(self) -> ConversationState:
        dev, dt, d = self.empty.device, self.empty.dtype, self.cfg.d_model
        return ConversationState(
            keys=[torch.zeros(0, l.h, l.dh, dtype=dt, device=dev) for l in self.layers],
            values=[torch.zeros(0, l.h, l.dh, dtype=dt, device=dev) for l in self.layers],
            key_speaker=torch.zeros(0, dtype=torch.long, device=dev),
            key_visible=torch.zeros(0, dtype=torch.bool, device=dev),
            stats_sum=torch.zeros(0, 2, d, dtype=dt, device=dev),
            stats_sumsq=torch.zeros(0, 2, d, dtype=dt, device=dev),
            stats_n=torch.zeros(0, 2, dtype=dt, device=dev),
        )

    @torch.inference_mode()
    def step(self, turn: TurnFeatures, state: ConversationState) -> tuple[ModelOutput, ConversationState]:
        """Process one new turn given the state of the conversation so far (causal, O(window))."""
        if turn.speaker < 0:
            raise ValueError("speaker index must be >= 0")
        cfg, dev, dt = self.cfg, self.empty.device, self.empty.dtype
        dims = (cfg.audio_dim, cfg.visual_dim, cfg.text_dim)
        h, flags = [], []
        for i, (name, dim, x) in enumerate(zip(MODALITIES, dims, (turn.audio, turn.visual, turn.text))):
            flags.append(x is not None)
            if x is None:  # the projection of an absent (zeroed) input is exactly the bias
                h.append(self.proj[i].bias)
                continue
            x = torch.as_tensor(x).to(dev, dt, non_blocking=True).reshape(-1)
            if x.numel() != dim:
                raise ValueError(f"{name} features have {x.numel()} values; the model expects {dim}")
            h.append(self.proj[i]((x - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")))
        present = torch.tensor(flags, device=dev)

        K = state.stats_n.shape[0]
        if turn.speaker >= K:  # first turn of a new speaker: grow the per-speaker statistics
            grow = turn.speaker + 1 - K
            state.stats_sum = torch.cat([state.stats_sum, state.stats_sum.new_zeros(grow, 2, cfg.d_model)])
            state.stats_sumsq = torch.cat([state.stats_sumsq, state.stats_sumsq.new_zeros(grow, 2, cfg.d_model)])
            state.stats_n = torch.cat([state.stats_n, state.stats_n.new_zeros(grow, 2)])
        k = turn.speaker
        mean, std, count = shrunk_stats(state.stats_sum[k], state.stats_sumsq[k], state.stats_n[k], cfg.stats_prior)

        vp = None
        has_vp = torch.tensor(turn.voiceprint is not None, device=dev)
        if turn.voiceprint is not None:
            vp = torch.as_tensor(turn.voiceprint).to(dev, dt).reshape(-1)
        fused, gates, spk = self._fuse(h, present, mean, std, count, vp, has_vp)

        # update this speaker's statistics with the current turn (used from the next turn on)
        x2 = torch.stack(h[:2])
        p2 = present[:2].to(x2.dtype)
        state.stats_sum[k] += p2[:, None] * x2
        state.stats_sumsq[k] += p2[:, None] * x2 * x2
        state.stats_n[k] += p2

        x = self._context_input(fused, spk)
        keep = cfg.context_window - 1
        for i, layer in enumerate(self.layers):
            x_new, k_i, v_i = layer.step(x, k, state.keys[i], state.values[i], state.key_speaker, state.key_visible)
            state.keys[i] = torch.cat([state.keys[i], k_i[None]])[-keep:] if keep else state.keys[i]
            state.values[i] = torch.cat([state.values[i], v_i[None]])[-keep:] if keep else state.values[i]
            x = x_new
        if keep:
            state.key_speaker = torch.cat([state.key_speaker, state.key_speaker.new_full((1,), k)])[-keep:]
            state.key_visible = torch.cat([state.key_visible, state.key_visible.new_full((1,), turn.in_context)])[-keep:]
        state.turns += 1
        return ModelOutput(self._classify(x, fused), gates, fused, spk), state

    # ------------------------------------------------------------------------------------------
    # 5. Losses
    # ------------------------------------------------------------------------------------------
    def loss(self, out: ModelOutput, batch: TurnBatch, class_weight: Tensor | None = None,
             label_smoothing: float = 0.0) -> tuple[Tensor, dict[str, float]]:
        """Total loss = emotion cross-entropy + lambda * speaker loss (if enabled)."""
        if batch.labels is None:
            raise ValueError("the batch has no labels")
        labels = batch.labels.masked_fill(~batch.valid, -100)
        erc = F.cross_entropy(out.logits.flatten(0, 1).float(), labels.flatten(), weight=class_weight,
                              ignore_index=-100, label_smoothing=label_smoothing)
        parts = {"erc": float(erc.detach())}
        total = erc
        if self.cfg.use_speaker_loss and self.cfg.speaker_loss_weight > 0:
            spk = self.speaker_loss(out.fused, batch)
            parts["speaker"] = float(spk.detach())
            total = total + self.cfg.speaker_loss_weight * spk
        return total, parts

    def speaker_loss(self, fused: Tensor, batch: TurnBatch) -> Tensor:
        """Supervised contrastive loss: turns of the same speaker attract, others repel."""
        B, T = batch.speaker.shape
        local = batch.speaker + torch.arange(B, device=fused.device)[:, None] * 10_000
        key = local if batch.speaker_key is None else torch.where(batch.speaker_key >= 0, batch.speaker_key + 10_000 * B, local)
        m = batch.valid.flatten()
        z = F.normalize(self.speaker_head(fused.flatten(0, 1)[m]).float(), dim=-1)
        key = key.flatten()[m]
        if z.shape[0] < 2:
            return fused.sum() * 0
        sim = z @ z.T / self.cfg.speaker_temperature
        eye = torch.eye(len(z), dtype=torch.bool, device=z.device)
        pos = (key[:, None] == key[None, :]) & ~eye
        has_pos = pos.any(1)
        if not has_pos.any():
            return fused.sum() * 0
        log_prob = sim.masked_fill(eye, float("-inf")).log_softmax(1)
        per_anchor = -(log_prob.masked_fill(~pos, 0).sum(1) / pos.sum(1).clamp_min(1))
        return per_anchor[has_pos].mean()
