"""The original reward_model_training loop (Muffakham/RLHF_techniques), as its README and script describe it, timed: per batch,
prompt+response string concatenation, tokenization inside the loop, two forward passes
(chosen, rejected), Bradley-Terry loss, AdamW, fp32. Prints pairs/s over the timed steps.

Copied from ../shared/peers/original_loop.py; the bench's only change is counting the real (non-pad) tokens of
the timed steps (`tokens` in the JSON line), for tokens/s, and the sum of their sequences' squared lengths
(`sq_tokens`), for attention FLOPs. It needs no EOS token (it tokenizes prompt + response as one text).

usage: python original_loop.py MODEL_DIR DATA.jsonl [--steps 20] [--warmup 2] [--batch 10] [--max-length 128]
"""
import argparse, json, time, torch, torch.nn.functional as F
from transformers import AutoTokenizer, AutoModelForSequenceClassification

ap = argparse.ArgumentParser()
ap.add_argument("model"); ap.add_argument("data")
ap.add_argument("--steps", type=int, default=20); ap.add_argument("--warmup", type=int, default=2)
ap.add_argument("--batch", type=int, default=10); ap.add_argument("--max-length", type=int, default=128)
a = ap.parse_args()
torch.manual_seed(0)
tok = AutoTokenizer.from_pretrained(a.model)
model = AutoModelForSequenceClassification.from_pretrained(a.model, num_labels=1).train()
opt = torch.optim.AdamW(model.parameters(), lr=5e-5)
rows = [json.loads(l) for l in open(a.data)]
need = (a.steps + a.warmup) * a.batch
rows = (rows * (need // len(rows) + 1))[:need]
t0, tokens, squares = None, 0, 0
for i in range(a.steps + a.warmup):
    if i == a.warmup: t0 = time.perf_counter()
    b = rows[i * a.batch:(i + 1) * a.batch]
    enc = lambda k: tok([r["prompt"] + r[k] for r in b], return_tensors="pt", padding=True, truncation=True, max_length=a.max_length)
    c, r = enc("chosen"), enc("rejected")
    if i >= a.warmup:
        tokens += int(c.attention_mask.sum() + r.attention_mask.sum())
        squares += int((c.attention_mask.sum(1) ** 2).sum() + (r.attention_mask.sum(1) ** 2).sum())
    opt.zero_grad()
    rc = model(input_ids=c.input_ids, attention_mask=c.attention_mask).logits.squeeze(-1)
    rr = model(input_ids=r.input_ids, attention_mask=r.attention_mask).logits.squeeze(-1)
    loss = -F.logsigmoid(rc - rr).mean()
    loss.backward(); opt.step()
el = time.perf_counter() - t0
print(json.dumps({"impl": "original", "pairs_per_s": a.steps * a.batch / el, "s_per_step": el / a.steps, "last_loss": loss.item(),
                  "tokens": tokens, "sq_tokens": squares}))
