"""Training and prediction over `Conversation`s: one loop for every corpus.

Model selection uses the dev conversations only. Under `torchrun` (several processes), the model
is wrapped in DistributedDataParallel and each process trains on its shard of every batch list;
rank 0 evaluates and keeps the best weights. One process on the CPU is the default.
"""

from __future__ import annotations

import copy
import os
import random
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from core.conversations import Conversation, collate
from core.device import autocast
from core.labels import MODALITIES
from core.metrics import Scores, score
from core.model import MLSAN, MLSANConfig, TurnBatch


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 30  # passes over the training conversations
    batch_size: int = 16  # conversations per step
    lr: float = 1e-3  # AdamW learning rate
    weight_decay: float = 1e-2  # AdamW weight decay
    patience: int = 8  # stop after this many epochs without a better dev score
    class_weighting: str = "sqrt_inv"  # none | inv | sqrt_inv: cross-entropy weights from train label counts
    label_smoothing: float = 0.0  # cross-entropy label smoothing
    modality_dropout: float = 0.0  # probability of hiding each present modality of a turn (robustness)
    select_metric: str = "weighted_f1"  # dev metric that picks the best epoch: weighted_f1 | uar
    seed: int = 0  # seeds python, numpy and torch
    grad_clip: float = 1.0  # max gradient norm


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def class_weights(convs: list[Conversation], n_classes: int, mode: str) -> torch.Tensor | None:
    """Cross-entropy weights from the labelled turns of `convs` (see `label_weights`)."""
    if mode == "none":
        return None
    return label_weights(np.concatenate([np.asarray(c.labels)[np.asarray(c.labels) >= 0] for c in convs]),
                         n_classes, mode)


def label_weights(labels: np.ndarray, n_classes: int, mode: str = "sqrt_inv") -> torch.Tensor:
    """(Square-root) inverse class frequencies, mean 1 over the classes present, 0 for absent ones."""
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    inv = counts.sum() / np.maximum(counts, 1) / n_classes
    if mode == "sqrt_inv":
        inv = np.sqrt(inv)
    elif mode != "inv":
        raise ValueError(f"unknown class weighting {mode!r}; use none, inv or sqrt_inv")
    inv[counts == 0] = 0
    return torch.tensor(inv / inv[counts > 0].mean(), dtype=torch.float32)


def fit_normalizer(model: MLSAN, convs: list[Conversation]) -> None:
    """Set the model's fixed input standardisation from the training conversations."""
    for i, name in enumerate(MODALITIES):
        rows = [getattr(c, name)[c.presence()[:, i]] for c in convs if getattr(c, name) is not None]
        rows = [r for r in rows if len(r)]
        if rows:
            x = np.concatenate(rows).astype(np.float64)
            model.set_normalizer(name, torch.tensor(x.mean(0)), torch.tensor(x.std(0) + 1e-3))


def _drop_modalities(batch: TurnBatch, p: float, g: torch.Generator) -> TurnBatch:
    """Hide each present modality with probability p, keeping at least one per turn."""
    if p <= 0:
        return batch
    keep = torch.rand(batch.present.shape, generator=g) >= p
    present = batch.present & keep
    none_left = ~present.any(-1) & batch.present.any(-1)
    present = torch.where(none_left.unsqueeze(-1), batch.present, present)
    return TurnBatch(**{**batch.__dict__, "present": present})


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def predict(model: MLSAN, convs: list[Conversation], device: torch.device,
            batch_size: int = 32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, predictions and probabilities of every scored, labelled turn (full causal forward)."""
    model.eval()
    ys, ps, probs = [], [], []
    with torch.no_grad():
        for i in range(0, len(convs), batch_size):
            b = collate(convs[i:i + batch_size], model.cfg).to(device)
            with autocast(device):
                out = model(b)
            m = (b.labels >= 0) & b.valid
            ys.append(b.labels[m].cpu().numpy())
            pr = out.probs[m].cpu().numpy()
            probs.append(pr)
            ps.append(pr.argmax(-1))
    return np.concatenate(ys), np.concatenate(ps), np.concatenate(probs)


def evaluate(model: MLSAN, convs: list[Conversation], device: torch.device) -> Scores:
    y, p, _ = predict(model, convs, device)
    return score(y, p, model.cfg.labels)


def fit(cfg: MLSANConfig, train: list[Conversation], dev: list[Conversation], opts: TrainOptions,
        device: torch.device, on_epoch: Callable[[int, dict], None] | None = None,
        train_sampler: Callable[[np.random.Generator], list[Conversation]] | None = None) -> tuple[MLSAN, list[dict]]:
    """Train from scratch; return the model at the best dev epoch and the per-epoch history.

    `train_sampler`, if given, draws the epoch's training conversations afresh each epoch (e.g. new
    random sequences of RAVDESS clips); `train` is then used for the normaliser and class weights."""
    seed_everything(opts.seed)
    rank, world = _world()
    model = MLSAN(cfg)
    fit_normalizer(model, train)
    model.to(device)
    net: torch.nn.Module = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    weight = class_weights(train, len(cfg.labels), opts.class_weighting)
    weight = weight.to(device) if weight is not None else None
    optim = torch.optim.AdamW(model.parameters(), lr=opts.lr, weight_decay=opts.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optim, T_max=max(opts.epochs, 1))
    rng = np.random.default_rng(opts.seed)
    g = torch.Generator().manual_seed(opts.seed)
    best, best_state, history, stale = -1.0, None, [], 0
    for epoch in range(opts.epochs):
        model.train()
        convs = train_sampler(rng) if train_sampler is not None else list(train)
        order = rng.permutation(len(convs))
        batches = [order[i:i + opts.batch_size] for i in range(0, len(order), opts.batch_size)]
        if world > 1:  # every rank takes the same number of steps on its own part of each batch
            batches = [b[rank::world] for b in batches if len(b) >= world]
        losses = []
        for idx in batches:
            batch = _drop_modalities(collate([convs[j] for j in idx], cfg), opts.modality_dropout, g).to(device)
            with autocast(device):
                out = net(batch)
                loss, parts = model.loss(out, batch, class_weight=weight, label_smoothing=opts.label_smoothing)
            optim.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), opts.grad_clip)
            optim.step()
            losses.append(parts)
        sched.step()
        row = {"epoch": epoch + 1, **{k: float(np.mean([p.get(k, 0.0) for p in losses])) for k in losses[0]}}
        if rank == 0:
            s = evaluate(model, dev, device)
            row.update(dev_weighted_f1=s.weighted_f1, dev_uar=s.uar)
            current = s.weighted_f1 if opts.select_metric == "weighted_f1" else s.uar
            if current > best:
                best, best_state, stale = current, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
        history.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)
        stop = torch.tensor(int(rank == 0 and stale >= opts.patience))
        if world > 1:
            dist.broadcast(stop, 0)
        if int(stop):
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.eval(), history


def init_distributed() -> torch.device | None:
    """Under torchrun: join the process group; return this process's device (None: not distributed)."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    dist.init_process_group(backend)
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")
