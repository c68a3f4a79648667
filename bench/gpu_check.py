"""GPU readiness in one command, for the day a GPU is lent: our trainer vs TRL's RewardTrainer on the device, MFU
against the matmul rate measured there, peak GPU memory, and the train stage under torchrun and DDP.

    bash bench/gpu_check.sh [--device cuda|cpu] [--quick] [--out DIR]

cuda (default): deberta-v3-small dims (scratch-deberta-v3-small, random init, 8k SentencePiece vocabulary trained
on the bench conversations, bench/workloads.py), max length 512, batch 32 pairs, bf16 autocast (ours: as the train
stage runs on CUDA; TRL: RewardConfig bf16=True). `--device cpu --quick`: scratch-tiny dims, fp32, a few steps:
the same code end to end on a CPU machine (tests/e2e/test_gpu_check.py). Each step is a subprocess with a time
limit, and a failing step is reported without stopping the others:
- ceiling: one layer's token-wise matmuls at the training step's rows, forward + backward, in the run's dtype
  (bench.system.model_gemm_peak; CUDA events, best of 5), and one 8192^2 bf16 matmul for reference;
- ours / trl: pairs/s and tokens/s over the timed steps (after a synchronize), model TFLOP/s (6 x non-embedding
  params x tokens + attention, as bench/__main__.py), MFU against that ceiling, peak GPU memory;
- ours eval: the evaluate stage's scoring (bf16 inference on CUDA);
- torchrun: the tokenize stage, then `torchrun --standalone --nproc-per-node 1 -m stages.train` in a temporary
  project (train.device set to the run's device); it must exit 0 and write the model directory dvc.yaml names.
  With one process rewardkit trains without DDP, so
- ddp: one torchrun worker joins a process group (nccl on CUDA, gloo on CPU), wraps our RewardModel in
  DistributedDataParallel and runs a few bf16 Bradley-Terry steps: the loss must be finite and the weights change.
The table goes to stdout and, with the logs, to DIR (default $OUT, else bench/out/gpu_check).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import system, workloads

ROOT = workloads.ROOT
# (workload, batch pairs, timed steps, warm-up steps, eval pairs, step time limit s)
SETTINGS = {False: ("small", 32, 20, 3, 256, 240), True: ("tiny", 4, 2, 1, 8, 120)}
MAX_LENGTH = 512
SMOKE = {False: (24, 8), True: (8, 4)}  # the torchrun smoke run: (pairs, batch) at max length 256
HEADER = "| check | result | pairs/s | tokens/s | model TFLOP/s | MFU | peak GPU memory MB | notes |"


def run(name: str, cmd: list[str], log: Path, timeout: float, cwd: Path = ROOT, env: dict | None = None) -> dict:
    """Run one step; its output is appended to `log`. Returns its last JSON line (or {}) plus ok/seconds/error."""
    start = time.perf_counter()
    environment = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", **(env or {})}
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout)
        stdout, out, code = proc.stdout, proc.stdout + proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout, code = "", -1
        out = f"{_text(e.stdout)}{_text(e.stderr)}\ntimed out after {timeout:.0f} s"
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"\n===== {name}: {shlex.join(cmd)} (exit {code})\n{out}")
    result = next((r for r in map(_json, reversed(stdout.splitlines())) if r is not None), {})
    tail = [line for line in out.splitlines() if line.strip()][-1:] or ["no output"]
    return {**result, "ok": code == 0, "seconds": time.perf_counter() - start,
            **({} if code == 0 else {"error": f"exit {code}: {tail[0][:200]}"})}


def _json(line: str) -> dict | None:
    """The JSON object on `line`, if it is one (TRL also prints Python dicts)."""
    try:
        return json.loads(line) if line.startswith("{") else None
    except json.JSONDecodeError:
        return None


def _text(output) -> str:
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


def model_flops(config, n_params: int, result: dict, training: bool) -> float:
    return ((6 if training else 2) * n_params * result["tokens"]
            + system.attention_flops(config, result.get("sq_tokens", 0), training))


def ceilings(config, rows: int, device: str) -> dict:
    """TFLOP/s of the model's matmuls at `rows` (training layout) and, on CUDA, of one 8192^2 bf16 matmul."""
    out = {"model_gemm": system.model_gemm_peak(system.layer_gemms(config.hidden_size, config.intermediate_size,
                                                                   rows), True, 2, 5, device) / 1e3}
    if device == "cuda":
        out["square_8192"] = system.model_gemm_peak([(8192, 8192, 8192)], False, 2, 5, device) / 1e3
    return out


def stage_smoke(model: Path, rows: list[dict], batch: int, device: str, work: Path, log: Path,
                timeout: float) -> dict:
    """The tokenize stage, then the train stage under torchrun with one process, in a fresh project in `work`."""
    import yaml

    params = yaml.safe_load((ROOT / "params.yaml").read_text(encoding="utf-8"))
    params["model"]["name"] = str(model)
    params["train"].update(device=device, epochs=1, batch_size=batch, max_length=256, warmup_ratio=0.0,
                           stats_pairs=len(rows))
    (work / "data").mkdir(parents=True)
    (work / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    workloads.write_jsonl(work / "data" / "train.jsonl", rows)
    workloads.write_jsonl(work / "data" / "eval.jsonl", rows[:4])
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]

    def args(stage: str) -> list[str]:  # dvc.yaml's cmd after `python -m stages.<stage>`
        return shlex.split(stages[stage]["cmd"])[3:]

    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // 2)), "HF_HUB_OFFLINE": "1"}
    tokenized = run("tokenize stage", [sys.executable, "-m", "stages.tokenize", *args("tokenize")], log, timeout,
                    work, env)
    if not tokenized["ok"]:
        return tokenized
    train_args = args("train")
    trained = run("torchrun train stage", [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                           "--nproc-per-node", "1", "-m", "stages.train", *train_args],
                  log, timeout, work, env)
    model_dir = work / train_args[train_args.index("--model") + 1]
    written = (model_dir / "config.json").is_file() and any(model_dir.glob("*.safetensors"))
    if trained["ok"] and not written:
        trained.update(ok=False, error=f"exit 0 but no model in {model_dir}")
    return {**trained, "seconds": tokenized["seconds"] + trained["seconds"]}


def ddp_worker(model_dir: str, data: str, device_name: str, steps: int) -> None:
    """Run by torchrun: our RewardModel under DistributedDataParallel for a few steps; prints one JSON line."""
    import torch
    import torch.distributed as dist

    from rewardkit.encoding.tokenization import store_rows
    from rewardkit.modeling.batching import pad_batch
    from rewardkit.modeling.devices import autocast
    from rewardkit.modeling.model import load_base
    from rewardkit.modeling.objective import bt_loss_per_pair

    local_rank = int(os.environ["LOCAL_RANK"])
    device = torch.device("cuda", local_rank) if device_name == "cuda" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    model, tokenizer = load_base(model_dir, "cls", 0)
    model.to(device).train()
    rows = [json.loads(line) for line in open(data, encoding="utf-8")]
    pairs = store_rows(rows, Path(tempfile.mkdtemp()) / f"store-{local_rank}", tokenizer, model.hf.config, MAX_LENGTH)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    before = [p.detach().clone() for p in model.parameters()]
    losses = []
    for step in range(steps):
        index = [(2 * step) % len(pairs), (2 * step + 1) % len(pairs)]
        sequences, segments = pairs.sequences(index)
        with autocast(device, "auto"):
            rewards = ddp(*pad_batch(sequences, tokenizer.pad_token_id, 8, segments).to(device)).float()
        loss = bt_loss_per_pair(rewards[:2], rewards[2:]).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total = loss.detach().clone()
        dist.all_reduce(total)
        losses.append(total.item())
    changed = sum(not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters()))
    dist.destroy_process_group()
    print(json.dumps({"losses": losses, "params_changed": changed, "params": len(before),
                      "backend": "nccl" if device.type == "cuda" else "gloo"}))


def table(rows: list[tuple], ceiling: dict) -> str:
    out = [HEADER, "|---|---|---:|---:|---:|---:|---:|---|"]
    for check, r, flops, notes in rows:
        speed = (f"{r['pairs_per_s']:.2f} | {r['tokens'] / r['timed_s']:,.0f} | {flops / r['timed_s'] / 1e12:.3f} | "
                 f"{100 * flops / r['timed_s'] / 1e12 / ceiling['model_gemm']:.1f}%") if flops else "| | |"
        memory = f"{r['peak_gpu_mb']:,.0f}" if "peak_gpu_mb" in r else ""
        out.append(f"| {check} | {'ok' if r['ok'] else 'FAILED'} ({r['seconds']:.0f} s) | {speed} | {memory} | "
                   f"{notes or r.get('error', '')} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--quick", action="store_true", help="scratch-tiny dims, a few steps (the CPU test)")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or ROOT / "bench" / "out" / "gpu_check"))
    parser.add_argument("--ddp-worker", nargs=3, metavar=("MODEL", "DATA", "STEPS"), help=argparse.SUPPRESS)
    a = parser.parse_args()
    if a.ddp_worker:
        return ddp_worker(a.ddp_worker[0], a.ddp_worker[1], a.device, int(a.ddp_worker[2]))
    import torch

    from bench.__main__ import model_config, non_embedding_params

    if a.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device is visible (use --device cpu --quick on a CPU machine)")
    name, batch, steps, warmup, eval_pairs, limit = SETTINGS[a.quick]
    a.out.mkdir(parents=True, exist_ok=True)
    log = a.out / "gpu_check.log"
    log.write_text("", encoding="utf-8")
    started = time.perf_counter()
    train, held_out = workloads.bench_data(*((60, 20) if a.quick else ()))
    model = workloads.model_dir(name, train)
    data = workloads.first_rows(train, (steps + warmup) * batch)
    config = model_config(model)
    n_params = non_embedding_params(config)
    common = [str(model), str(data), "--steps", str(steps), "--warmup", str(warmup), "--batch", str(batch),
              "--max-length", str(MAX_LENGTH), "--device", a.device]
    ours = run("ours", [sys.executable, "-m", "bench.ours", "train", *common], log, limit)
    # TRL drops the pairs longer than max length: the few quick pairs would leave it no batch, so it gets more
    trl_pairs = (steps + warmup) * batch * (4 if a.quick else 1)
    trl_data = workloads.first_rows(train, trl_pairs)
    trl = run("trl", [sys.executable, str(ROOT / "bench" / "peers" / "trl_rm.py"), str(model), str(trl_data),
                      *common[2:],
                      *(["--bf16"] if a.device == "cuda" else [])], log, limit)
    evaluation = run("ours eval", [sys.executable, "-m", "bench.ours", "eval", str(model),
                                   str(workloads.first_rows(held_out, eval_pairs)), "--batch", str(batch),
                                   "--max-length", str(MAX_LENGTH), "--device", a.device], log, limit)
    with tempfile.TemporaryDirectory() as tmp:
        pairs, smoke_batch = SMOKE[a.quick]
        smoke_rows = workloads.read_jsonl(workloads.first_rows(train, pairs))
        smoke = stage_smoke(model, smoke_rows, smoke_batch, a.device, Path(tmp) / "project", log, limit)
    ddp = run("ddp", [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "1", "-m",
                      "bench.gpu_check", "--device", a.device, "--ddp-worker", str(model), str(data), "2"], log, limit,
              env={"OMP_NUM_THREADS": "1"})
    if ddp["ok"] and not (all(map(math.isfinite, ddp["losses"])) and ddp["params_changed"]):
        ddp.update(ok=False, error=f"losses {ddp['losses']}, {ddp['params_changed']} parameters changed")
    rows_per_step = round(ours["tokens"] / steps) if ours.get("tokens") else batch * 2 * MAX_LENGTH
    ceiling = ceilings(config, rows_per_step, a.device)
    precision = "bf16 autocast" if a.device == "cuda" else "fp32"
    rows = []
    given = {"ours train": (steps + warmup) * batch, "trl train (RewardTrainer)": trl_pairs}
    for check, r, training in (("ours train", ours, True), ("trl train (RewardTrainer)", trl, True),
                               ("ours eval", evaluation, False)):
        if r.get("tokens"):
            r["timed_s"] = steps * r["s_per_step"] if training else r["seconds"]
        flops = model_flops(config, n_params, r, training) if r.get("tokens") else 0.0
        notes = f"kept {r['kept_pairs']} of {given[check]} pairs" if "kept_pairs" in r else ""
        rows.append((check, r, flops, notes))
    rows.append(("torchrun --nproc-per-node 1 train stage", smoke, 0.0, "" if not smoke["ok"] else
                 f"tokenize + train stage ({pairs} pairs, batch {smoke_batch}, length 256) exited 0, model written"))
    rows.append(("DDP, 1 process", ddp, 0.0, "" if not ddp["ok"] else
                 f"{ddp['backend']}: 2 steps, losses {', '.join(f'{x:.4f}' for x in ddp['losses'])}, "
                 f"{ddp['params_changed']}/{ddp['params']} parameter tensors changed"))
    device_name = torch.cuda.get_device_name() if a.device == "cuda" else system.cpu_model()
    lines = [f"device: {device_name}; {system.versions('torch', 'transformers', 'trl', 'accelerate', 'datasets')}",
             f"workload: {name} dims ({n_params / 1e6:.1f}M non-embedding params, vocabulary {config.vocab_size:,}), "
             f"max length {MAX_LENGTH}, batch {batch} pairs, {steps} timed steps after {warmup} warm-up, {precision}",
             f"ceiling: model matmuls at {rows_per_step:,} rows, forward + backward: {ceiling['model_gemm']:.3f} "
             f"TFLOP/s" + (f"; one 8192^2 bf16 matmul: {ceiling['square_8192']:.1f} TFLOP/s"
                           if "square_8192" in ceiling else ""), "", table(rows, ceiling)]
    if ours.get("tokens") and trl.get("tokens"):
        lines += ["", f"ours/trl: {ours['pairs_per_s'] / trl['pairs_per_s']:.2f}x pairs/s, "
                  f"{(ours['tokens'] / ours['timed_s']) / (trl['tokens'] / trl['timed_s']):.2f}x tokens/s"]
    lines.append(f"total {time.perf_counter() - started:.0f} s; every step's output: {log}")
    text = "\n".join(lines)
    print(text)
    (a.out / "gpu_check.md").write_text(text + "\n", encoding="utf-8")
    (a.out / "gpu_check.json").write_text(json.dumps({"ours": ours, "trl": trl, "eval": evaluation, "stage": smoke,
                                                      "ddp": ddp, "ceiling": ceiling}, indent=1), encoding="utf-8")
    sys.exit(0 if all(r["ok"] for _, r, _, _ in rows) else 1)


if __name__ == "__main__":
    main()
