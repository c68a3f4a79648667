"""The bf16 verdicts of `python -m bench` (#24): where bf16 rows were run, ours in bf16 against TRL in fp32 and
in bf16, against the bf16 model-GEMM ceiling, and evaluation in bf16 against fp32; each target met or missed.
Rows and ceilings are those `bench/__main__.py` builds (one dict per trainer run; ceilings per workload and
precision)."""
from __future__ import annotations


def met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def precision_verdicts(rows: list[dict], ceilings: dict) -> list[str]:
    """The bf16 targets (#24), where bf16 rows were run: against TRL in fp32 and bf16, the bf16 ceiling, and
    evaluation bf16 vs fp32."""
    out = []
    for name in dict.fromkeys(r["workload"] for r in rows):
        by = {r["impl"]: r for r in rows if r["workload"] == name}
        ours = by.get("ours bf16")
        if ours is None:
            continue
        out.append(f"{name}: ours bf16/fp32 = {ours['tokens_s'] / by['ours']['tokens_s']:.2f}x tokens/s")
        if name == "small":
            for peer, want in (("trl", 3), ("trl bf16", 1.5)):
                if peer in by:
                    ratio = ours["tokens_s"] / by[peer]["tokens_s"]
                    out.append(f"target small ours bf16 >= {want}x {peer if ' ' in peer else 'trl fp32'} "
                               f"tokens/s: {ratio:.2f}x, {met(ratio >= want)}")
            share = ours["gflops"] / ceilings[name]["bf16"]["train"]
            out.append(f"target small ours bf16 >= 60% of the bf16 model-GEMM peak: {100 * share:.0f}%, "
                       f"{met(share >= 0.6)}")
        if name == "tiny":
            for impl, peer in (("ours", "trl"), ("ours bf16", "trl bf16")):
                if peer in by:
                    ratio = by[impl]["pairs_s"] / by[peer]["pairs_s"]
                    out.append(f"target tiny {impl} >= 6x {peer} pairs/s: {ratio:.2f}x, {met(ratio >= 6)}")
        ratio = by["ours eval bf16"]["pairs_s"] / by["ours eval"]["pairs_s"]
        out.append(f"target {name} evaluation bf16 >= 1.8x fp32 pairs/s: {ratio:.2f}x, {met(ratio >= 1.8)}")
    return out
