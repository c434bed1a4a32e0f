"""Per-turn latency of the incremental step vs recomputing the whole conversation.

For each context length L: step through L turns, then time further steps (the live path), and
time one full forward pass over all L+1 turns (what a non-incremental model would do per turn).
Prints a table; the last line is `speedup_at_1000=<ratio>`.

    python bench/step.py [--device auto] [--repeats 30] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.device import resolve_device  # noqa: E402
from core.model import MLSAN, MLSANConfig, TurnBatch, TurnFeatures  # noqa: E402

LENGTHS = (1, 10, 100, 1000, 5000)
N_SPEAKERS = 4


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def random_turn(cfg: MLSANConfig, t: int, device: torch.device) -> TurnFeatures:
    return TurnFeatures(speaker=t % N_SPEAKERS, audio=torch.randn(cfg.audio_dim, device=device),
                        visual=torch.randn(cfg.visual_dim, device=device) if t % 3 else None,
                        text=torch.randn(cfg.text_dim, device=device), voiceprint=torch.randn(cfg.voiceprint_dim, device=device))


def full_batch(cfg: MLSANConfig, T: int, device: torch.device) -> TurnBatch:
    present = torch.ones(1, T, 3, dtype=torch.bool, device=device)
    present[0, ::3, 1] = False
    return TurnBatch(audio=torch.randn(1, T, cfg.audio_dim, device=device),
                     visual=torch.randn(1, T, cfg.visual_dim, device=device),
                     text=torch.randn(1, T, cfg.text_dim, device=device), present=present,
                     speaker=(torch.arange(T, device=device) % N_SPEAKERS)[None],
                     valid=torch.ones(1, T, dtype=torch.bool, device=device),
                     voiceprint=torch.randn(1, T, cfg.voiceprint_dim, device=device),
                     has_voiceprint=torch.ones(1, T, dtype=torch.bool, device=device))


def median_ms(fn, repeats: int, device: torch.device) -> float:
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=30, help="timed steps / forwards per length")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads for both paths (1: best for per-turn work on a laptop CPU)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = MLSANConfig()
    model = MLSAN(cfg).to(device).eval()
    print(f"device={device} torch_threads={torch.get_num_threads()} d_model={cfg.d_model} "
          f"layers={cfg.n_layers} window={cfg.context_window}")
    print(f"{'context':>8} {'step_ms':>9} {'full_ms':>9} {'speedup':>9}")
    speedups = {}
    state, t = model.init_state(), 0
    for L in LENGTHS:
        while t < L:  # grow the conversation to L turns
            _, state = model.step(random_turn(cfg, t, device), state)
            t += 1
        turns = [random_turn(cfg, t + i, device) for i in range(args.repeats)]
        it = iter(turns)

        def one_step():
            nonlocal state
            _, state = model.step(next(it), state)

        step_ms = median_ms(one_step, args.repeats, device)
        t += args.repeats
        batch = full_batch(cfg, L + 1, device)
        with torch.no_grad():
            full_ms = median_ms(lambda: model(batch), max(3, args.repeats // 10 if L >= 1000 else args.repeats), device)
        speedups[L] = full_ms / step_ms
        print(f"{L:>8} {step_ms:>9.3f} {full_ms:>9.3f} {speedups[L]:>8.1f}x", flush=True)
    print(f"speedup_at_1000={speedups[1000]:.1f}")


if __name__ == "__main__":
    main()
