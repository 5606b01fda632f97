"""Per-restart step cost of restart packs against a plain training loop, and achieved FLOP/s.

Workload: the paper's deep MNIST net (20 x 50 ReLU), batch 128, SGD, clipping at
10 and annealed noise (eta = 0.3): the product's real step. Compared side by side
in one process, in interleaved rounds (median over rounds):

- the loop: ``nn.Module`` + ``torch.optim.SGD`` in ``GradientNoise``, one restart
  per step, exactly the step of ``robustness.training.reference.train_single``;
- packs of R restarts (``PackTrainer.run``), R in {1, 8, 64, 256} (+1024 on CUDA);
- a large square fp32 GEMM on the same device: the FLOP/s ceiling.

FLOPs per restart per step = 6 x batch x (multiply-accumulates per example in the
linear layers): forward 2, backward 4 per MAC. Targets (issue section 5):
CPU: pack per-restart cost <= 0.5 x the loop's at R = 64, >= 30 % of the GEMM rate;
CUDA: >= 100 x the loop's restart throughput at R >= 1024, >= 30 % of the GEMM rate.

Example:
    python benchmarks/bench_population.py --quick --threads 1
    python benchmarks/bench_population.py --json | tail -n 1 | python -m json.tool
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find _common next to it

import _common as C

from robustness.noise import AnnealedNoise

SCHEDULE = AnnealedNoise(eta=0.3)  # the paper's best MNIST setting; gamma = 0.55
QUICK_BUDGET_S = 45.0  # leaves ~15 s of the 60 s for imports, data loading and output


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example:\n  python benchmarks/bench_population.py --quick --threads 1 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    C.add_common_args(parser)
    parser.add_argument("--restarts", default=None,
                        help="comma-separated pack sizes (default: 1,8,64,256 on CPU; 1,8,64,256,1024 on CUDA)")
    return parser.parse_args(argv)


def restart_list(spec: str | None, device: torch.device) -> list[int]:
    if spec is None:
        return [1, 8, 64, 256, 1024] if device.type == "cuda" else [1, 8, 64, 256]
    sizes = sorted({int(s) for s in spec.split(",") if s.strip()})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"--restarts needs positive integers, got {spec!r}")
    return sizes


def build(args: argparse.Namespace, device: torch.device, t0: float) -> dict[str, Any]:
    """Construct and calibrate every variant; in quick mode, drop packs that would break the budget."""
    block_s = 0.25 if args.quick else 1.0
    rounds = args.rounds or (3 if args.quick else 7)
    task, data, notes = C.load_task(args.data_dir)
    gemm = C.gemm_variant(device)
    module = task.build_module(data)
    flops = C.flops_per_restart_step(module, C.BATCH)
    loop_runner = C.LoopRunner(task, data, SCHEDULE, device)
    loop = C.Variant("loop", loop_runner.run, restarts=1, flops=flops)
    per_unit = {gemm.name: C.calibrate(gemm, block_s, device), "loop": C.calibrate(loop, block_s, device)}
    packs: list[tuple[int, C.Variant, Any]] = []
    skipped: list[int] = []
    build_s = 0.0  # construction time of the last pack (initializing R modules grows with R too)
    for R in restart_list(args.restarts, device):
        if args.quick and packs:
            last_R, last_v, _ = packs[-1]
            # Step cost grows at least linearly in R (more, once buffers stop fitting in cache): pad by 1.5.
            guess = 1.5 * per_unit[last_v.name] * R / last_R
            planned = sum(v.steps * per_unit[v.name] for v in [gemm, loop, *(p[1] for p in packs)])
            ahead = rounds * (planned + guess) + 2 * guess + build_s * R / last_R
            if time.perf_counter() - t0 + ahead > QUICK_BUDGET_S:
                skipped.append(R)
                continue
        start = time.perf_counter()
        trainer = C.make_pack(task, data, R, SCHEDULE, device, C.resolve_rng(args.rng, device))
        build_s = time.perf_counter() - start
        v = C.Variant(f"pack R={R}", lambda k, tr=trainer: tr.run(until=tr.step + k), restarts=R, flops=R * flops)
        per_unit[v.name] = C.calibrate(v, block_s, device)
        packs.append((R, v, trainer))
    if skipped:
        notes.append(f"--quick: skipped R = {skipped} to stay within {QUICK_BUDGET_S:.0f} s (run without --quick for them)")
    return {"task": task, "data": data, "module": module, "flops": flops, "gemm": gemm, "loop": loop,
            "loop_runner": loop_runner, "packs": packs, "skipped": skipped, "notes": notes,
            "rounds": rounds, "block_s": block_s}


def rows_and_records(b: dict[str, Any]) -> tuple[list[list[str]], list[dict[str, Any]], float, float]:
    gemm_rate = b["gemm"].flops / b["gemm"].median
    loop_s = b["loop"].median
    rows, records = [], []
    for R, v, trainer in [(1, b["loop"], None), *b["packs"]]:
        step_s = v.median
        per_restart = step_s / R
        rate = v.flops / step_s
        rec = {
            "variant": "loop" if trainer is None else "pack", "R": R, "step_ms": step_s * 1e3,
            "per_restart_ms": per_restart * 1e3, "ratio_vs_loop": per_restart / loop_s,
            "throughput_vs_loop": loop_s / per_restart, "restart_steps_per_s": R / step_s,
            "gflops": rate / 1e9, "gemm_fraction": rate / gemm_rate, "steps_per_block": v.steps,
            "times_ms": [t * 1e3 for t in v.times],
            "diverged": int((~trainer.active).sum()) if trainer is not None else int(b["loop_runner"].diverged),
        }
        records.append(rec)
        rows.append([rec["variant"], str(R), f"{rec['step_ms']:.2f}", f"{rec['per_restart_ms']:.3f}",
                     f"{rec['ratio_vs_loop']:.3f}", f"{rec['restart_steps_per_s']:.1f}", f"{rec['gflops']:.2f}",
                     f"{100 * rec['gemm_fraction']:.1f}%"])
    return rows, records, gemm_rate, loop_s


def targets(records: list[dict[str, Any]], device: torch.device, notes: list[str]) -> list[C.Target]:
    packs = [r for r in records if r["variant"] == "pack"]
    out: list[C.Target] = []
    if device.type == "cuda":
        big = [r for r in packs if r["R"] >= 1024]
        if big:
            best = max(big, key=lambda r: r["throughput_vs_loop"])
            out.append(C.Target(f"restart throughput vs loop at R={best['R']} (x)", best["throughput_vs_loop"], ">=", 100))
        else:
            notes.append("no pack with R >= 1024 measured: the CUDA throughput target is not judged")
    else:
        at64 = [r for r in packs if r["R"] == 64]
        if at64:
            out.append(C.Target("pack per-restart cost / loop at R=64", at64[0]["ratio_vs_loop"], "<=", 0.5))
        else:
            notes.append("no pack with R = 64 measured: the CPU per-restart target is not judged")
    if packs:
        best = max(packs, key=lambda r: r["gemm_fraction"])
        out.append(C.Target(f"best pack FLOP/s / GEMM FLOP/s (at R={best['R']})", best["gemm_fraction"], ">=", 0.30))
    return out


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = parse_args(argv)
    try:
        device = C.setup_torch(args.threads, args.device)
        restart_list(args.restarts, device)  # fail on a bad list before minutes of setup
        machine = C.machine_info(device)
        b = build(args, device, t0)
    except (ValueError, RuntimeError) as exc:
        return C.fail(str(exc))
    C.interleave([[b["gemm"]], [b["loop"]], *([v] for _, v, _ in b["packs"])], b["rounds"], device)
    rows, records, gemm_rate, loop_s = rows_and_records(b)
    notes = b["notes"]
    tgts = targets(records, device, notes)
    data, module = b["data"], b["module"]
    params = sum(p.numel() for p in module.parameters())
    header = ["variant", "R", "step ms", "per-restart ms", "vs loop", "restart-steps/s", "GFLOP/s", "of GEMM"]
    text = [
        f"bench_population: deep-{C.DEPTH}x{C.WIDTH} MLP on {data.name} (input dim {data.input_dim}), batch {C.BATCH}, "
        f"SGD lr {C.LR}, clip {C.CLIP:g}, {SCHEDULE}",
        f"device {device} ({machine['device_name']}), rng {C.resolve_rng(args.rng, device)}, torch {machine['torch']}, {machine['threads']} threads, "
        f"load average at start {machine['load_average_at_start']}",
        f"{params} parameters per restart; FLOPs per restart-step = 6 x {C.BATCH} x {C.linear_macs(module)} MACs "
        f"= {b['flops'] / 1e6:.1f} MFLOP (biases, ReLU, loss, noise, optimizer not counted)",
        f"{b['gemm'].name}: {gemm_rate / 1e9:.1f} GFLOP/s; medians of {b['rounds']} interleaved rounds",
        "",
        C.format_table(header, rows),
        "",
        "targets:",
        *(t.line() for t in tgts),
        *(f"note: {n}" for n in notes),
        f"wall time {time.perf_counter() - t0:.1f} s",
    ]
    payload = {
        "benchmark": "bench_population", "date": C.now_utc(), "machine": machine,
        "settings": {
            "quick": args.quick, "rounds": b["rounds"], "block_s": b["block_s"], "dataset": data.name,
            "rng": C.resolve_rng(args.rng, device),
            "input_dim": data.input_dim, "depth": C.DEPTH, "width": C.WIDTH, "batch": C.BATCH, "lr": C.LR,
            "clip_norm": C.CLIP, "schedule": SCHEDULE.params(), "dtype": "float32",
            "params_per_restart": params, "macs_per_example": C.linear_macs(module),
            "flops_per_restart_step": b["flops"], "flops_formula": "6 * batch * linear MACs per example",
        },
        "gemm": {"name": b["gemm"].name, "gflops": gemm_rate / 1e9, "times_ms": [t * 1e3 for t in b["gemm"].times]},
        "results": records, "skipped_restarts": b["skipped"],
        "targets": [t.as_dict() for t in tgts], "notes": notes, "wall_s": time.perf_counter() - t0,
    }
    for _, _, trainer in b["packs"]:
        trainer.close()
    C.emit(text, payload, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
