"""Nanoseconds per Gaussian for each way a CPU pack could draw its noise, side by side.

The noise of one restart-step is P standard normals (P parameters). What they
cost against the step itself sets a floor on the noise overhead that no fusion
can remove. Timed in one process, in interleaved rounds, on one thread, for a
deep-20 MNIST restart's P = 88,210 float32 draws into a reused buffer:

- ``torch``: ``torch.randn(generator=...)``, the pack's default stream (mt19937, vectorized Box-Muller);
- ``torch bfloat16``: the same into a bfloat16 buffer (a lower-precision draw);
- ``numpy pcg64`` / ``numpy sfc64``: NumPy's ziggurat ``standard_normal(dtype=float32, out=...)``
  on two counter-free generators, written into the tensor's memory;
- ``philox (torch ops)``: ``robustness.training.philox.philox_randn``, the keyed stream of
  ``rng: philox`` as it runs without the fused Triton kernel.

Floor = ns per Gaussian / ns per parameter of the step's compute at this run's
GEMM rate (6 x batch FLOPs per parameter and step: forward 2, backward 4 per MAC),
the overhead the draws would cause if everything else ran at GEMM speed.

    python benchmarks/bench_gaussians.py [--quick] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _common as C

from robustness.training.philox import noise_offsets, philox_randn

P = 784 * 50 + 50 + 19 * (50 * 50 + 50) + 50 * 10 + 10  # deep-20 MNIST, width 50


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds (about 10 s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    device = C.setup_torch(1, "cpu")
    machine = C.machine_info(device)
    out32, out16 = torch.empty(P), torch.empty(P, dtype=torch.bfloat16)
    view = out32.numpy()
    gen = torch.Generator().manual_seed(0)
    pcg, sfc = np.random.Generator(np.random.PCG64(0)), np.random.Generator(np.random.SFC64(0))
    seeds = torch.tensor([12345], dtype=torch.int64)
    step = [0]

    def philox() -> None:
        step[0] += 1
        philox_randn(seeds, noise_offsets(step[0], P))

    options = {
        "torch": lambda: torch.randn(P, generator=gen, out=out32),
        "torch bfloat16": lambda: torch.randn(P, generator=gen, out=out16),
        "numpy pcg64": lambda: pcg.standard_normal(out=view, dtype=np.float32),
        "numpy sfc64": lambda: sfc.standard_normal(out=view, dtype=np.float32),
        "philox (torch ops)": philox,
    }
    reps = {name: 20 for name in options}
    reps["philox (torch ops)"] = 2
    gemm = C.gemm_variant(device, n=1024)
    C.calibrate(gemm, 0.2, device)
    rounds = 5 if args.quick else 15
    ns: dict[str, list[float]] = {name: [] for name in options}
    gemm_s: list[float] = []
    for i in range(rounds):
        names = list(options)
        names = names[i % len(names):] + names[: i % len(names)]  # rotate the order each round
        for name in names:
            start = time.perf_counter()
            for _ in range(reps[name]):
                options[name]()
            ns[name].append((time.perf_counter() - start) / reps[name] / P * 1e9)
        gemm_s.append(C.time_block(gemm, gemm.steps, device))
    gemm_rate = gemm.flops / statistics.median(gemm_s)
    step_ns_per_param = 6 * C.BATCH / gemm_rate * 1e9  # one parameter's share of a step at the GEMM rate
    rows, results = [], []
    for name, values in ns.items():
        med = statistics.median(values)
        floor = med / step_ns_per_param
        results.append({"option": name, "ns_per_gaussian": med, "floor_at_gemm": floor, "ns_rounds": values})
        rows.append([name, f"{med:.2f}", f"{med / statistics.median(ns['torch']):.2f}x", f"{100 * floor:.1f}%"])
    text = [
        f"bench_gaussians: P = {P} float32 Gaussians per restart-step, 1 thread, {machine['device_name']}, "
        f"torch {machine['torch']}, numpy {np.__version__}, load average at start {machine['load_average_at_start']}",
        f"gemm 1024x1024 float32: {gemm_rate / 1e9:.1f} GFLOP/s; a step's compute per parameter at that rate "
        f"(6 x {C.BATCH} FLOPs): {step_ns_per_param:.2f} ns; medians of {rounds} interleaved rounds",
        "",
        C.format_table(["option", "ns/Gaussian", "vs torch", "floor@GEMM"], rows),
        "",
        "floor@GEMM: the noise overhead the draws alone would cause if the rest of the step ran at the GEMM rate.",
        f"wall time {time.perf_counter() - t0:.1f} s",
    ]
    payload = {"benchmark": "bench_gaussians", "date": C.now_utc(), "machine": machine,
               "settings": {"P": P, "batch": C.BATCH, "rounds": rounds, "threads": 1},
               "gemm_gflops": gemm_rate / 1e9, "results": results, "wall_s": time.perf_counter() - t0}
    C.emit(text, payload, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
