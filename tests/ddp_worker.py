"""Run under torchrun by tests/test_training.py: two CPU processes train with DDP (gloo).

Checks that gradients were averaged (parameters identical on every rank after training) and
writes rank 0's dev score to the file named by argv[1]."""

import json
import sys

import torch
import torch.distributed as dist

from core.model import MLSANConfig
from core.training import TrainOptions, evaluate, fit, init_distributed
from tests.test_training import planted_conversations

device = init_distributed()
assert device is not None and dist.get_world_size() == 2
cfg = MLSANConfig(audio_dim=16, visual_dim=4, text_dim=8, voiceprint_dim=8, d_model=32, d_speaker=16, n_layers=1,
                  context_window=4, dropout=0.0)
train, dev = planted_conversations(64, seed=0), planted_conversations(32, seed=1)
model, hist = fit(cfg, train, dev, TrainOptions(epochs=3, batch_size=8, lr=3e-3, class_weighting="none"), device)
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
gathered = [torch.zeros_like(flat) for _ in range(2)]
dist.all_gather(gathered, flat)
assert torch.equal(gathered[0], gathered[1]), "ranks diverged: gradients were not synchronised"
if dist.get_rank() == 0:
    with open(sys.argv[1], "w") as f:
        json.dump({"epochs": len(hist), "dev_uar": evaluate(model, dev, device).uar}, f)
dist.destroy_process_group()
