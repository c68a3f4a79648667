"""Profile our training step with torch.profiler: where the time of `rewardkit.training.loop.optimize` goes.

    python -m bench.profile [--workload small] [--steps 2] [--warmup 1] [--max-length 512] [--threads N]
        [--precision fp32|bf16] [--shapes]

Runs the real loop on the bench data (as bench/ours.py does) with the profiler stepped by `train_steps`'s
`on_step` callback: the first `--warmup` steps are not recorded; `--precision bf16` profiles the step under bf16
autocast (train.precision=bf16), so the casts and the ops autocast keeps in fp32 show up by name. Prints the top operators by self CPU time with
their share, and the share of matmul-class operators (what the 6ND GFLOP/s estimate counts). `--shapes` records input
shapes and groups the table by them (which call of an operator costs). The Chrome trace goes to
bench/out/profile-<workload>-<precision>.json.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bench import workloads
from bench.ours import SEED, read_rows
from rewardkit.config import TrainConfig
from rewardkit.encoding.tokenization import store_rows
from rewardkit.modeling.model import load_base
from rewardkit.training.distributed import Ranks
from rewardkit.training.loop import optimize

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::matmul", "aten::linear")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", choices=sorted(workloads.WORKLOADS), default="small")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="train.precision")
    parser.add_argument("--shapes", action="store_true", help="record input shapes and group operators by them")
    a = parser.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    train, _ = workloads.bench_data()
    model, tokenizer = load_base(str(workloads.model_dir(a.workload, train)), "cls", SEED)
    rows = read_rows(str(workloads.first_rows(train, (a.steps + a.warmup) * a.batch)))
    cfg = TrainConfig(max_length=a.max_length, batch_size=a.batch, epochs=1, lr=5e-5, scheduler="constant",
                      warmup_ratio=0.0, checkpoint_every=0, device="cpu", seed=SEED, precision=a.precision)
    prof = profile(activities=[ProfilerActivity.CPU], record_shapes=a.shapes)

    def on_step(record: dict) -> None:  # record the steps after the warm-up ones
        if record["step"] == a.warmup:
            prof.start()
        elif record["step"] == a.warmup + a.steps:
            prof.stop()

    with tempfile.TemporaryDirectory() as work:  # trained from a token store, as the train stage is
        pairs = store_rows(rows, Path(work) / "store", tokenizer, model.hf.config, a.max_length)
        optimize(model, pairs, cfg, torch.device("cpu"), Ranks(), tokenizer.pad_token_id, Path(work) / "ckpt",
                 on_step=on_step)
    events = prof.key_averages(group_by_input_shape=a.shapes)
    total = sum(e.self_cpu_time_total for e in events)
    print(f"threads {torch.get_num_threads()}; {a.precision}; {a.steps} profiled steps; self CPU total {total / 1e6:.1f} s")
    print(f"{'operator':<48} {'self s':>8} {'share':>6} {'calls':>7}" + ("  input shapes" if a.shapes else ""))
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:a.top]:
        print(f"{e.key[:48]:<48} {e.self_cpu_time_total / 1e6:8.2f} {100 * e.self_cpu_time_total / total:5.1f}% "
              f"{e.count:7d}" + (f"  {e.input_shapes}"[:120] if a.shapes else ""))
    matmul = sum(e.self_cpu_time_total for e in events if e.key in MATMUL_OPS)
    print(f"matmul-class operators ({', '.join(MATMUL_OPS)}): {100 * matmul / total:.1f}% of self CPU time")
    trace = workloads.OUT / f"profile-{a.workload}-{a.precision}.json"
    prof.export_chrome_trace(str(trace))
    print(f"trace: {trace}")


if __name__ == "__main__":
    main()
