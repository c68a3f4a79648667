"""TRL's RewardTrainer on the same model directory and data, timed over a fixed number of steps.
Prints pairs/s over the steps after the first `--warmup` (measured with a callback).

Copied from ../shared/peers/trl_rm.py; the bench's changes: reading TRL's own count of real (non-pad) training
tokens at the start and end of the timed steps (`tokens` in the JSON line), for tokens/s; and, for the quality
comparison (bench/quality.py), --lr, --seed and --save DIR (the trained model and tokenizer, save_model).

usage: python trl_rm.py MODEL_DIR DATA.jsonl [--steps 20] [--warmup 2] [--batch 10] [--max-length 128]
                        [--lr 5e-5] [--seed 0] [--save DIR]
"""
import argparse, json, time, tempfile, torch
from datasets import Dataset
from transformers import AutoTokenizer, AutoModelForSequenceClassification, TrainerCallback
from trl import RewardConfig, RewardTrainer

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("data")
ap.add_argument("--steps", type=int, default=20); ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--batch", type=int, default=10); ap.add_argument("--max-length", type=int, default=128)
ap.add_argument("--lr", type=float, default=5e-5); ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--save")
a = ap.parse_args()
torch.manual_seed(a.seed)
tok = AutoTokenizer.from_pretrained(a.model)
model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=1)
rows = [json.loads(l) for l in open(a.data)]
ds = Dataset.from_list(rows)

class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == a.warmup: self.t0, self.tok0 = time.perf_counter(), self.trainer._total_train_tokens
        if state.global_step == a.warmup + a.steps:
            self.el, self.tokens = time.perf_counter() - self.t0, self.trainer._total_train_tokens - self.tok0

clock = Clock()
with tempfile.TemporaryDirectory() as out:
    cfg = RewardConfig(output_dir=out, max_length=a.max_length, per_device_train_batch_size=a.batch,
                       learning_rate=a.lr, seed=a.seed, max_steps=a.steps + a.warmup, report_to="none", save_strategy="no",
                       logging_steps=1000, bf16=False, gradient_checkpointing=False, use_cpu=True,
                       dataloader_drop_last=True, lr_scheduler_type="constant")
    tr = RewardTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[clock])
    clock.trainer = tr
    tr.train()
    if a.save: tr.save_model(a.save)
print(json.dumps({"impl": "trl", "pairs_per_s": a.steps * a.batch / clock.el, "s_per_step": clock.el / a.steps, "kept_pairs": len(tr.train_dataset),
                  "tokens": clock.tokens}))
