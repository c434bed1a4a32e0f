"""ML-SAN: Multi-Level Speaker-Adaptive Network for emotion recognition in conversation.

Reads top to bottom:
  1. MLSANConfig: every size and switch, one frozen dataclass.
  2. TurnBatch / TurnFeatures / ModelOutput / ConversationState: what goes in and comes out.
  3. Building blocks: speaker encoder, FiLM calibration, modality gates, windowed context attention.
  4. MLSAN: `forward` over whole conversations (training) and `step` over one turn (live),
     which give the same numbers for the same history.
  5. The losses: emotion cross-entropy + lambda * speaker consistency (supervised contrastive).

The speaker enters at three levels:
  * input: calibration of the audio and visual features into a speaker-neutral space. It starts
    from the speaker's own running statistics over their *past* turns (mean and standard
    deviation, shrunk towards the global ones while there are few turns; the variance more
    strongly, as it is noisier), with a learned per-feature strength, followed by FiLM conditioned
    on a speaker vector built from what is observable live: a voiceprint (if any) and those
    statistics. A learned fallback vector stands in when nothing is known about the speaker;
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

from core import device as devices
from core.labels import EMOTIONS, MODALITIES

AUDIO, VISUAL, TEXT = 0, 1, 2  # column of each modality in presence masks and gate vectors


# ----------------------------------------------------------------------------------------------
# 1. Configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MLSANConfig:
    audio_dim: int = 88  # size of the per-turn audio feature vector (eGeMAPSv02 functionals: 88)
    visual_dim: int = 119  # size of the pooled face feature vector (core.features.visual.VISUAL_DIM)
    text_dim: int = 384  # size of the sentence embedding (all-MiniLM-L6-v2: 384)
    voiceprint_dim: int = 256  # size of the speaker voiceprint (resemblyzer d-vector: 256)
    d_model: int = 128  # width of projected features, fused latent and context encoder
    d_speaker: int = 64  # width of the speaker vector that conditions FiLM and the gates
    n_heads: int = 4  # attention heads in the context encoder
    n_layers: int = 2  # context encoder layers
    context_window: int = 16  # turns each turn attends to, itself included (1 = no context)
    dropout: float = 0.1  # dropout in projections and the context encoder
    input_dropout: float = 0.0  # dropout on the (calibrated) input features: regularises wide inputs
    stats_prior_mean: float = 2.0  # pseudo-turns shrinking a speaker's running mean towards the global mean
    stats_prior_var: float = 10.0  # pseudo-turns shrinking a speaker's running variance towards the global one
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
    stats_sum: list[Tensor] = field(default_factory=list)  # audio, visual: (K, D) per speaker, sum of
    stats_sumsq: list[Tensor] = field(default_factory=list)  # standardised features, and of their squares
    stats_n: Tensor | None = None  # (K, 2) number of past turns with audio / visual present
    turns: int = 0  # turns seen so far


# ----------------------------------------------------------------------------------------------
# 3. Building blocks
# ----------------------------------------------------------------------------------------------
def _zero_init(linear: nn.Linear) -> nn.Linear:
    nn.init.zeros_(linear.weight)
    nn.init.zeros_(linear.bias)
    return linear


def shrunk_stats(s: Tensor, s2: Tensor, n: Tensor, prior_mean: float, prior_var: float) -> tuple[Tensor, Tensor, Tensor]:
    """A speaker's running mean and std of globally standardised features, shrunk towards the
    global (0, 1) with pseudo-observations, and a count feature in [0, ~1].

    s, s2: sums of x and x**2 over n observations; n (...,) is broadcast over the feature dim."""
    n = n.unsqueeze(-1).to(s.dtype)
    mean = s / (n + prior_mean)
    scatter = (s2 - s * s / n.clamp_min(1)).clamp_min(0)  # sum of squared deviations from the sample mean
    std = ((scatter + prior_var) / (n + prior_var)).clamp_min(1e-2).sqrt()
    count = torch.log1p(n) / math.log(1 + 100.0)
    return mean, std, count


class SpeakerEncoder(nn.Module):
    """Speaker vector from a voiceprint and running feature statistics; learned fallback if neither."""

    def __init__(self, cfg: MLSANConfig):
        super().__init__()
        d = cfg.d_model
        self.voice = nn.Sequential(nn.Linear(cfg.voiceprint_dim, cfg.d_speaker), nn.GELU())
        self.no_voice = nn.Parameter(torch.zeros(cfg.d_speaker))  # "no voiceprint" fallback
        # per calibrated modality: projected mean (d) + mean log-std (1) + count (1)
        self.mix = nn.Sequential(nn.Linear(cfg.d_speaker + 2 * (d + 2), cfg.d_speaker), nn.GELU(),
                                 nn.Linear(cfg.d_speaker, cfg.d_speaker))

    def forward(self, voiceprint: Tensor | None, has_vp: Tensor, stats: Tensor) -> Tensor:
        """voiceprint (..., Dvp) or None; has_vp (...,) bool; stats (..., 2*(d+2))."""
        fallback = self.no_voice.expand(*has_vp.shape, -1)
        if voiceprint is None:
            v = fallback
        else:
            vp = F.normalize(torch.nan_to_num(voiceprint), dim=-1)
            v = torch.where(has_vp.unsqueeze(-1), self.voice(vp), fallback)
        return self.mix(torch.cat([v, stats], -1))


class FiLM(nn.Module):
    """x -> gamma(c) * x + beta(c); identity at initialisation.

    The condition c holds the speaker vector and the speaker's projected running mean of this
    modality; the linear path lets beta learn any further per-speaker shift exactly."""

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
        self.in_drop = nn.Dropout(cfg.input_dropout)
        self.speaker = SpeakerEncoder(cfg)
        # input-level calibration of audio and visual: per-feature strength of the speaker's mean
        # removal and std division (1 = full standardisation by the shrunk speaker statistics)
        self.cal_shift = nn.ParameterList([nn.Parameter(torch.ones(dim)) for dim in dims[:2]])
        self.cal_scale = nn.ParameterList([nn.Parameter(torch.ones(dim)) for dim in dims[:2]])
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

    def _standardize(self, x: Tensor, present: Tensor, i: int) -> Tensor:
        """Global standardisation; absent inputs become zeros, so nothing downstream can depend on
        their values (NaN included)."""
        name = MODALITIES[i]
        x = (x - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std")
        return torch.where(present.unsqueeze(-1), x, torch.zeros((), dtype=x.dtype, device=x.device))

    # -- per-turn fusion (shared by forward and step) ------------------------------------------------
    def _fuse(self, x: list[Tensor], present: Tensor, stats: list[tuple[Tensor, Tensor, Tensor]],
              voiceprint: Tensor | None, has_vp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x: standardised audio/visual/text (..., D_m), zero where absent; stats: the speaker's past
        (mean, std, count) of audio and visual. Returns fused latent, gates, speaker vector."""
        proj_mean = [F.linear(stats[i][0], self.proj[i].weight) for i in (AUDIO, VISUAL)]
        summary = torch.cat([torch.cat([proj_mean[i], stats[i][1].log().mean(-1, keepdim=True), stats[i][2]], -1)
                             for i in (AUDIO, VISUAL)], -1)
        spk = self.speaker(voiceprint, has_vp, summary)
        if not self.cfg.uses_speaker:
            spk = torch.zeros_like(spk)
        h = []
        for i in (AUDIO, VISUAL, TEXT):
            xi = x[i]
            if i != TEXT and self.cfg.use_film:  # level 1: calibrate into a speaker-neutral space
                mean, std, _ = stats[i]
                xi = (xi - self.cal_shift[i] * mean) * torch.exp(-self.cal_scale[i] * std.log())
                xi = torch.where(present[..., i, None], xi, torch.zeros((), dtype=xi.dtype, device=xi.device))
            hi = self.proj[i](self.in_drop(xi))
            if i != TEXT and self.cfg.use_film:
                hi = self.film[i](hi, torch.cat([spk, proj_mean[i]], -1))
            h.append(hi)
        hs = torch.stack([self.drop(v) for v in h], -2)  # (..., 3, d)
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
        present = batch.present & batch.valid.unsqueeze(-1)
        x = [self._standardize(v, present[..., i], i) for i, v in enumerate((batch.audio, batch.visual, batch.text))]
        stats = [self._past_speaker_stats(x[i], present[..., i], batch.speaker) for i in (AUDIO, VISUAL)]
        has_vp = batch.has_voiceprint if batch.has_voiceprint is not None else torch.zeros_like(batch.valid)
        fused, gates, spk = self._fuse(x, present, stats, batch.voiceprint, has_vp & batch.valid)
        x = self._context_input(fused, spk)
        visible = batch.in_context if batch.in_context is not None else batch.valid
        for layer in self.layers:
            x = layer(x, batch.speaker, visible, batch.valid)
        return ModelOutput(self._classify(x, fused), gates, fused, spk)

    @torch.no_grad()
    def _past_speaker_stats(self, x: Tensor, present: Tensor, speaker: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Causal per-speaker statistics of one modality: for each turn, over the *earlier* turns
        of the same speaker where the modality was present. x (B, T, D) standardised, zero where
        absent; present (B, T) (already false on padding). Inputs are constants: no gradient."""
        s, s2 = torch.zeros_like(x), torch.zeros_like(x)
        n = torch.zeros(present.shape, dtype=x.dtype, device=x.device)
        for k in speaker.unique().tolist():
            own = speaker == k
            m = (own & present).to(x.dtype)
            xm = x * m.unsqueeze(-1)
            sel = own.unsqueeze(-1)
            s = torch.where(sel, xm.cumsum(1) - xm, s)  # exclusive cumulative sums: past turns only
            s2 = torch.where(sel, (xm * x).cumsum(1) - xm * x, s2)
            n = torch.where(own, m.cumsum(1) - m, n)
        return shrunk_stats(s, s2, n, self.cfg.stats_prior_mean, self.cfg.stats_prior_var)

    # -- one turn at a time --------------------------------------------------------------------
    def init_state(self) -> ConversationState:
        dev, dt = self.empty.device, self.empty.dtype
        dims = (self.cfg.audio_dim, self.cfg.visual_dim)
        return ConversationState(
            keys=[torch.zeros(0, l.h, l.dh, dtype=dt, device=dev) for l in self.layers],
            values=[torch.zeros(0, l.h, l.dh, dtype=dt, device=dev) for l in self.layers],
            key_speaker=torch.zeros(0, dtype=torch.long, device=dev),
            key_visible=torch.zeros(0, dtype=torch.bool, device=dev),
            stats_sum=[torch.zeros(0, D, dtype=dt, device=dev) for D in dims],
            stats_sumsq=[torch.zeros(0, D, dtype=dt, device=dev) for D in dims],
            stats_n=torch.zeros(0, 2, dtype=dt, device=dev),
        )

    @torch.inference_mode()
    def step(self, turn: TurnFeatures, state: ConversationState) -> tuple[ModelOutput, ConversationState]:
        """Process one new turn given the state of the conversation so far (causal, O(window)).
        Everything stays on the model's device (mixed precision on CUDA); only the inputs move."""
        with devices.autocast(self.empty.device):
            return self._step(turn, state)

    def _step(self, turn: TurnFeatures, state: ConversationState) -> tuple[ModelOutput, ConversationState]:
        if turn.speaker < 0:
            raise ValueError("speaker index must be >= 0")
        cfg, dev, dt = self.cfg, self.empty.device, self.empty.dtype
        dims = (cfg.audio_dim, cfg.visual_dim, cfg.text_dim)
        xs, flags = [], []
        for i, (name, dim, x) in enumerate(zip(MODALITIES, dims, (turn.audio, turn.visual, turn.text))):
            flags.append(x is not None)
            if x is None:
                xs.append(torch.zeros(dim, dtype=dt, device=dev))
                continue
            x = torch.as_tensor(x).to(dev, dt, non_blocking=True).reshape(-1)
            if x.numel() != dim:
                raise ValueError(f"{name} features have {x.numel()} values; the model expects {dim}")
            xs.append((x - getattr(self, f"{name}_mean")) / getattr(self, f"{name}_std"))
        present = torch.tensor(flags, device=dev)

        k = turn.speaker
        grow = k + 1 - state.stats_n.shape[0]
        if grow > 0:  # first turn of a new speaker: room for their statistics
            state.stats_sum = [torch.cat([t, t.new_zeros(grow, t.shape[1])]) for t in state.stats_sum]
            state.stats_sumsq = [torch.cat([t, t.new_zeros(grow, t.shape[1])]) for t in state.stats_sumsq]
            state.stats_n = torch.cat([state.stats_n, state.stats_n.new_zeros(grow, 2)])
        stats = [shrunk_stats(state.stats_sum[i][k], state.stats_sumsq[i][k], state.stats_n[k, i],
                              cfg.stats_prior_mean, cfg.stats_prior_var) for i in (AUDIO, VISUAL)]

        vp = None
        has_vp = torch.tensor(turn.voiceprint is not None, device=dev)
        if turn.voiceprint is not None:
            vp = torch.as_tensor(turn.voiceprint).to(dev, dt).reshape(-1)
        fused, gates, spk = self._fuse(xs, present, stats, vp, has_vp)

        # this turn joins its speaker's statistics (they describe the *past* from the next turn on)
        for i in (AUDIO, VISUAL):
            if flags[i]:
                state.stats_sum[i][k] += xs[i]
                state.stats_sumsq[i][k] += xs[i] * xs[i]
                state.stats_n[k, i] += 1

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
