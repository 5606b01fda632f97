"""Can a CPU pack hide its noise draws? Drawing the next update's Gaussians on a second thread while this one trains.

Workload: the deep-20 MNIST net, batch 128, SGD, clip 10, a pack of R restarts
(default 64), torch's per-restart generators (the CPU path), one training thread.
Three variants of the same pack run side by side in interleaved rounds:

- ``clean``: ``NoNoise()``, the step without draws;
- ``inline``: ``AnnealedNoise(eta=0.3)`` as ``PackTrainer`` draws it, in the step;
- ``overlap``: the same noise, but restart r's Gaussians for update t+1 are drawn on a
  second thread into an (R, P) buffer while update t+1's forward and backward run, and
  added row by row as the pack adds them. The draws come from the same generators in the same
  order, so the noise is bit-identical; only where the time goes changes.

The overlap hides the draws only by using a second core. What matters in a sweep,
where every core already trains a pack, is throughput per core: restart-steps per
second divided by the cores a variant keeps busy. The script prints both.

Example:
    python benchmarks/bench_noise_overlap.py --quick
    python benchmarks/bench_noise_overlap.py --restarts 64 --json | tail -n 1
"""

from __future__ import annotations

import argparse
import math
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find _common next to it

import _common as C

from robustness.noise import AnnealedNoise, NoNoise
from robustness.training.pack import PackTrainer


class OverlappedNoise:
    """Replaces a pack's ``_add_noise``: adds this update's pre-drawn Gaussians, then draws the next update's."""

    def __init__(self, pack: PackTrainer) -> None:
        self.pack = pack
        self.rows = list(pack._noisy)
        self.buf = torch.empty(len(self.rows), pack.theta.shape[1])
        self.pool = ThreadPoolExecutor(1)
        self.pending: Future[None] | None = None

    def _draw(self) -> None:
        with torch.inference_mode():
            for i, r in enumerate(self.rows):
                torch.randn(self.buf.shape[1], generator=self.pack.noise_gens[r], out=self.buf[i])

    def __call__(self, g: torch.Tensor) -> None:
        pack = self.pack
        if self.pending is None:
            self.pending = self.pool.submit(self._draw)
        self.pending.result()
        for i, r in enumerate(self.rows):  # the pack's own arithmetic, so that the results are bit-identical
            g[r].add_(self.buf[i], alpha=math.sqrt(pack._schedules[pack._schedule_of[r]].variance(pack.step)))
        self.pending = self.pool.submit(self._draw)  # the next update's, during its forward and backward


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example:\n  python benchmarks/bench_noise_overlap.py --quick --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="fewer rounds (<= 60 s on 2 CPU cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with all figures as the last line")
    parser.add_argument("--data-dir", default=None, help="MNIST folder (default: $ROBUSTNESS_DATA_DIR, else ../shared/data/mnist)")
    parser.add_argument("--restarts", type=int, default=64, help="pack size R (default 64)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default 9, 5 with --quick)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.restarts < 1:
        return C.fail("--restarts must be >= 1")
    device = C.setup_torch(1, "cpu")  # one training thread, as a pack in a sweep slot has
    task, data, notes = C.load_task(args.data_dir)
    R = args.restarts
    packs = {"clean": C.make_pack(task, data, R, NoNoise(), device),
             "inline": C.make_pack(task, data, R, AnnealedNoise(eta=0.3), device),
             "overlap": C.make_pack(task, data, R, AnnealedNoise(eta=0.3), device)}
    packs["overlap"]._add_noise = OverlappedNoise(packs["overlap"])  # type: ignore[method-assign]
    cores = {"clean": 1, "inline": 1, "overlap": 2}
    variants = {n: C.Variant(n, lambda k, tr=tr: tr.run(until=tr.step + k), restarts=R, flops=0.0)
                for n, tr in packs.items()}
    block_s = 0.5 if args.quick else 1.5
    for v in variants.values():
        C.calibrate(v, block_s, device)
    k = min(v.steps for v in variants.values())
    for v in variants.values():
        v.steps = k
    C.interleave([list(variants.values())], args.rounds or (5 if args.quick else 9), device)
    # The overlap draws exactly what the inline pack draws: same generators, same order.
    same = all(torch.equal(packs["inline"].theta[r], packs["overlap"].theta[r]) for r in range(R))

    clean = variants["clean"].median
    rows, results = [], []
    for n, v in variants.items():
        rate = R / v.median
        per_core = rate / cores[n]
        results.append({"variant": n, "R": R, "step_ms": v.median * 1e3, "overhead": v.median / clean - 1,
                        "cores": cores[n], "restart_steps_per_s": rate, "per_core": per_core,
                        "times_ms": [t * 1e3 for t in v.times]})
        rows.append((n, f"{v.median * 1e3:.2f}", f"{v.median / clean - 1:+.1%}", str(cores[n]), f"{rate:.0f}",
                     f"{per_core:.0f}"))
    best = max(results[1:], key=lambda r: r["per_core"])
    lines = [f"bench_noise_overlap: deep-20x50 MLP on {data.name}, batch {C.BATCH}, R = {R}, 1 training thread; "
             f"AnnealedNoise(eta=0.3) vs NoNoise(); medians of {len(variants['clean'].times)} interleaved rounds",
             f"device cpu ({C.machine_info(device)['cpu_model']}), torch {torch.__version__}", "",
             C.format_table(["variant", "step ms", "vs clean", "cores", "restart-steps/s", "per core"], rows), "",
             f"overlap and inline trained the same restarts bit for bit: {'yes' if same else 'NO'}",
             f"per core, the better noisy variant is {best['variant']}: "
             f"{best['per_core'] / results[0]['per_core'] - 1:+.1%} against the clean step"]
    lines += [f"note: {n}" for n in notes]
    payload: dict[str, Any] = {"benchmark": "bench_noise_overlap", "date": C.now_utc(),
                               "machine": C.machine_info(device), "settings": {"quick": args.quick, "R": R},
                               "results": results, "bit_identical": same}
    C.emit(lines, payload, as_json=args.json)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
