"""TRL's RewardTrainer on the same model directory and data, timed over a fixed number of steps.
Prints pairs/s over the steps after the first `--warmup` (measured with a callback).

Copied from ../shared/peers/trl_rm.py; the bench's changes: reading TRL's own count of real (non-pad) training
tokens at the start and end of the timed steps (`tokens` in the JSON line), for tokens/s, and the sum of squared
real sequence lengths of the timed forwards (`sq_tokens`, from a forward pre-hook), for attention FLOPs; for the
quality comparison (bench/quality.py), --lr, --seed and --save DIR (the trained model and tokenizer, save_model);
for BERT-family tokenizers, which have no EOS token (TRL appends one to every text and fails without it), the
tokenizer's SEP token as EOS (`eos_from_sep` in the JSON line: that token, or null when the tokenizer has an EOS);
and, for bench/gpu_check.py, --device cuda and --bf16 (RewardConfig bf16=True), with the steps timed after a
CUDA synchronize and the peak GPU memory (`peak_gpu_mb`); for bench/decoders.py, --grad-accum (micro-batches a step)
and the padded token slots (`slots`) and rows x padded width^2 (`sq_slots`) of the timed forwards, for its FLOPs.

usage: python trl_rm.py MODEL_DIR DATA.jsonl [--steps 20] [--warmup 2] [--batch 10] [--max-length 128]
                        [--lr 5e-5] [--seed 0] [--save DIR] [--device cpu|cuda] [--bf16] [--grad-accum 1]
                        [--gradient-checkpointing]
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
ap.add_argument("--save"); ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
ap.add_argument("--bf16", action="store_true")
ap.add_argument("--grad-accum", type=int, default=1)  # micro-batches of batch / grad-accum pairs a step
ap.add_argument("--gradient-checkpointing", action="store_true")  # RewardConfig's own default (bench.scale_targets)
a = ap.parse_args()
torch.manual_seed(a.seed)
tok = AutoTokenizer.from_pretrained(a.model)
eos_from_sep = None
if tok.eos_token is None and tok.sep_token is not None:  # BERT-family: TRL 1.16 needs an EOS to append
    tok.eos_token = eos_from_sep = tok.sep_token
model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=1)
rows = [json.loads(l) for l in open(a.data)]
ds = Dataset.from_list(rows)

squares = [0, 0, 0]  # of the training forwards so far: sum of squared real lengths, padded slots, rows x width^2
def count(m, args, kw):
    if m.training and "attention_mask" in kw:
        mask = kw["attention_mask"]
        squares[0] += int((mask.sum(1) ** 2).sum()); squares[1] += mask.numel(); squares[2] += mask.shape[0] * mask.shape[1] ** 2
model.register_forward_pre_hook(count, with_kwargs=True)

def clock_now():
    if a.device == "cuda": torch.cuda.synchronize()
    return time.perf_counter()

class Clock(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == a.warmup:
            self.t0, self.tok0, self.sq0 = clock_now(), self.trainer._total_train_tokens, list(squares)
        if state.global_step == a.warmup + a.steps:
            self.el, self.tokens = clock_now() - self.t0, self.trainer._total_train_tokens - self.tok0
            self.sq, self.slots, self.sq_slots = (now - then for now, then in zip(squares, self.sq0))

clock = Clock()
with tempfile.TemporaryDirectory() as out:
    cfg = RewardConfig(output_dir=out, max_length=a.max_length, per_device_train_batch_size=a.batch // a.grad_accum,
                       gradient_accumulation_steps=a.grad_accum,
                       learning_rate=a.lr, seed=a.seed, max_steps=a.steps + a.warmup, report_to="none", save_strategy="no",
                       logging_steps=1000, bf16=a.bf16, gradient_checkpointing=a.gradient_checkpointing, use_cpu=a.device == "cpu",
                       dataloader_drop_last=True, lr_scheduler_type="constant")
    tr = RewardTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[clock])
    clock.trainer = tr
    tr.train()
    if a.save: tr.save_model(a.save)
print(json.dumps({"impl": "trl", "pairs_per_s": a.steps * a.batch / clock.el, "s_per_step": clock.el / a.steps, "kept_pairs": len(tr.train_dataset),
                  "tokens": clock.tokens, "sq_tokens": clock.sq,
                  "slots": clock.slots, "sq_slots": clock.sq_slots, "eos_from_sep": eos_from_sep,
                  **({"peak_gpu_mb": torch.cuda.max_memory_allocated() / 2 ** 20} if a.device == "cuda" else {})}))
