"""The GPU check's checks, one module each (bench/gpu_check.py runs them and prints one table): precision (bf16 vs
fp32 on the same batches), forward (our fast forward vs transformers'), speed (ours vs TRL), resume (kill and
resume), ddp (2 processes vs 1, step by step), fsdp (the fsdp + LoRA step of bench/gpu_fsdp.py)."""
