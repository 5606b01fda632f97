"""Restart throughput of a user's task (the CNN of examples/cnn_digits) by each of its three routes.

Workload: ``SmallCNN(channels=8)`` on the 8x8 digits as (1, 8, 8) images, batch 32,
SGD with momentum 0.9 and lr 0.05, clip 10, ``AnnealedNoise(eta=0.01)``, He init: the
example's study. Each timed unit trains whole restarts of S updates, start to finish
(building and initializing the model, S updates, one evaluation on the 450 test images):

- pack: R restarts at once through ``train_pack`` (the generic ``VmapModel`` path), R in 1, 4, 16, 64;
- own loop: the fallback for models a pack cannot vectorize, ``train_with_loop`` on the same
  CNN with a plain ``train(ctx)`` (``torch.optim.SGD`` + ``ctx.attach_noise``), one restart after another;
- reference: ``robustness.training.reference.train_single`` (``nn.Module`` + ``torch.optim`` +
  ``GradientNoise``), one restart after another.

Every variant is timed in the same process in interleaved rounds (median over rounds),
and reported as restart-steps per second; ratios compare each route with the reference,
and the pack's cost per restart-step at R with its cost at R = 1.

Example:
    python benchmarks/bench_tasks.py --quick --threads 1
    python benchmarks/bench_tasks.py --threads 1 --json | tail -n 1 | python -m json.tool
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: find _common next to it
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "cnn_digits"))  # the user's task

import _common as C
from cnn import SmallCNN

from robustness.criterion import Criterion
from robustness.noise import AnnealedNoise
from robustness.training.config import TrainConfig
from robustness.training.loop import LoopContext, train_with_loop
from robustness.training.pack import BatchOrder, train_pack
from robustness.training.reference import train_single
from robustness.training.spec import RestartSpec
from robustness.training.tasks import TensorData

SCHEDULE = AnnealedNoise(eta=0.01)  # the example's noise arm; gamma = 0.55
LR, CLIP, MOMENTUM, BATCH = 0.05, 10.0, 0.9, 32  # examples/cnn_digits/cnn_digits.yaml
CRITERION = Criterion("test_accuracy", ">=", 0.9)


@dataclasses.dataclass(frozen=True)
class LoopCNN(SmallCNN):
    """The same CNN trained by a user's own loop: what a model a pack cannot batch would pay."""

    def train(self, ctx: LoopContext) -> dict[str, float]:
        data = ctx.data
        module = ctx.init(self.build_module(data))
        opt = torch.optim.SGD(module.parameters(), lr=ctx.spec.lr, momentum=MOMENTUM)
        ctx.attach_noise(opt)
        order = BatchOrder(ctx.seeds[1], data.n_train, ctx.config.batch_size)  # the pack's data order
        for step in range(ctx.config.steps):
            idx = order.indices(step)
            loss = self.loss(module(data.train_x[idx]), data.train_y[idx]).mean()
            if not math.isfinite(loss.item()):
                ctx.diverged(step)
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return {k: v.mean().item() for k, v in self.metrics(module(data.test_x), data.test_y).items()}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Example:\n  python benchmarks/bench_tasks.py --quick --threads 1 --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    default_dev = "cuda" if torch.cuda.is_available() else "cpu"
    parser.add_argument("--quick", action="store_true", help="shorter restarts and fewer rounds (<= 60 s on 2 CPU cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object with all figures as the last line")
    parser.add_argument("--device", default=default_dev, help=f"torch device (default: {default_dev})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch intra-op threads (default: torch's choice; pass 1 on a shared machine)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds (default: 3 with --quick, 5)")
    parser.add_argument("--restarts", default="1,4,16,64", help="comma-separated pack sizes (default: 1,4,16,64)")
    return parser.parse_args(argv)


def specs(R: int) -> list[RestartSpec]:
    return [RestartSpec.make(restart=r, lr=LR, schedule=SCHEDULE, clip_norm=CLIP, init="he") for r in range(R)]


def variants(data: TensorData, config: TrainConfig, sizes: list[int], device: torch.device) -> list[C.Variant]:
    """One unit = whole restarts of ``config.steps`` updates; ``restarts`` counts them per unit."""
    task, loop_task, spec = SmallCNN(channels=8), LoopCNN(channels=8), specs(1)[0]

    def pack(R: int) -> C.Variant:
        chosen = specs(R)
        return C.Variant(f"pack R={R}", lambda k: [train_pack(task, chosen, config, criterion=CRITERION, device=device,
                                                               data=data) for _ in range(k)], restarts=R, flops=0.0)

    own = C.Variant("own loop", lambda k: [train_with_loop(loop_task, spec, config, criterion=CRITERION,
                                                           device=device, data=data) for _ in range(k)],
                    restarts=1, flops=0.0)
    ref = C.Variant("reference", lambda k: [train_single(task, spec, config, criterion=CRITERION, device=device,
                                                         data=data) for _ in range(k)], restarts=1, flops=0.0)
    return [ref, own, *(pack(R) for R in sizes)]


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    args = parse_args(argv)
    try:
        device = C.setup_torch(args.threads, args.device)
        sizes = sorted({int(s) for s in args.restarts.split(",") if s.strip()})
        if not sizes or sizes[0] < 1:
            raise ValueError(f"--restarts needs positive integers, got {args.restarts!r}")
    except ValueError as exc:
        return C.fail(str(exc))
    machine = C.machine_info(device)
    steps = 40 if args.quick else 200
    rounds = args.rounds or (3 if args.quick else 5)
    config = TrainConfig(steps=steps, batch_size=BATCH, eval_every=steps, optimizer="sgd", momentum=MOMENTUM)
    data = SmallCNN(channels=8).load_data()
    all_v = variants(data, config, sizes, device)
    for v in all_v:
        C.calibrate(v, 0.0, device)  # warm up; one unit (whole restarts) per timed block
    C.interleave([[v] for v in all_v], rounds, device)
    ref_rate = steps / all_v[0].median
    pack1 = next((v for v in all_v if v.name == "pack R=1"), None)
    records, rows = [], []
    for v in all_v:
        rate = v.restarts * steps / v.median  # restart-steps per second
        per_step_us = 1e6 / rate
        rec = {"variant": v.name, "R": v.restarts, "unit_s": v.median, "restart_steps_per_s": rate,
               "us_per_restart_step": per_step_us, "vs_reference": rate / ref_rate,
               "cost_vs_R1": (per_step_us / (1e6 * pack1.median / steps)) if pack1 and v.name.startswith("pack") else None,
               "times_s": v.times}
        records.append(rec)
        rows.append([v.name, str(v.restarts), f"{v.median:.3f}", f"{rate:.0f}", f"{per_step_us:.0f}",
                     f"{rec['vs_reference']:.2f}", "-" if rec["cost_vs_R1"] is None else f"{rec['cost_vs_R1']:.3f}"])
    by = {r["variant"]: r for r in records}
    biggest = by[f"pack R={sizes[-1]}"]
    params = sum(p.numel() for p in SmallCNN(channels=8).build_module(data).parameters())
    header = ["variant", "R", "unit s", "restart-steps/s", "us/restart-step", "vs reference", "cost vs R=1"]
    text = [
        f"bench_tasks: examples/cnn_digits SmallCNN(channels=8), {params} parameters, batch {BATCH}, SGD lr {LR} "
        f"momentum {MOMENTUM}, clip {CLIP:g}, {SCHEDULE}; {steps} updates per restart + one evaluation",
        f"device {device} ({machine['device_name']}), torch {machine['torch']}, {machine['threads']} threads, "
        f"load average at start {machine['load_average_at_start']}; medians of {rounds} interleaved rounds",
        "",
        C.format_table(header, rows),
        "",
        f"own loop / reference: {by['own loop']['vs_reference']:.2f} x the restart-steps/s",
        f"pack R={biggest['R']} / reference: {biggest['vs_reference']:.2f} x; "
        f"/ own loop: {biggest['restart_steps_per_s'] / by['own loop']['restart_steps_per_s']:.2f} x",
        f"wall time {time.perf_counter() - t0:.1f} s",
    ]
    payload = {
        "benchmark": "bench_tasks", "date": C.now_utc(), "machine": machine,
        "settings": {"quick": args.quick, "rounds": rounds, "steps_per_restart": steps, "batch": BATCH, "lr": LR,
                     "momentum": MOMENTUM, "clip_norm": CLIP, "schedule": SCHEDULE.params(), "channels": 8,
                     "params_per_restart": params, "restarts": sizes},
        "results": records, "wall_s": time.perf_counter() - t0,
    }
    C.emit(text, payload, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
