#!/usr/bin/env python3
"""Seeded generator of dataset/financial_rewards.jsonl: preference pairs of financial Q&A for reward models.

Every number in an answer is computed here from inputs drawn with random.Random(seed); none is typed in. Each
prompt gets one careful, correct "chosen" answer and 1-3 "rejected" answers that fail in realistic ways: a wrong
formula (simple instead of compound interest, an off-by-one period, an unconverted rate), the right formula with
a slipped number, overconfident or unsafe advice, a vague non-answer, a wrong definition or a hallucinated fact.

Surface cues are kept weak on purpose: openers and neutral context sentences come from pools both sides share,
many rejected answers are long and confident, some chosen answers are short, and the length of each pair is
steered so the longer answer is the chosen one only about CHOSEN_LONGER_TARGET of the time. The printed summary
(checked again by tests/test_dataset.py) reports that fraction and the accuracy of the best single-token and
first-words cue.

    python dataset/make_financial_rewards.py [--seed S] [--n N] [--out PATH]

Standard library only (and `rewardkit.text`, which is too); the same seed and N always give byte-identical output.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root: run as a script from anywhere
from rewardkit.text import normalise  # noqa: E402  (the near-duplicate key of the validate stage)

DEFAULT_SEED = 20240611
DEFAULT_N = 2400
DEFAULT_OUT = Path(__file__).resolve().parent / "financial_rewards.jsonl"
CATEGORY_WEIGHTS = {"interest": 14, "loans": 13, "ratios": 12, "returns": 12, "inflation": 10, "tax": 10,
                    "diversification": 9, "risk": 10, "definitions": 10}
REJECTS_PER_PROMPT = (1, 1, 1, 2, 2, 2, 2, 3, 3)  # drawn uniformly: ~1.9 rejected answers per prompt
MULTI_TURN_P = 0.16          # share of prompts with an earlier User/Assistant exchange
OPENER_P = 0.4               # either side starts with a conversational opener this often
CHOSEN_LONGER_TARGET = 0.60  # per pair, aim for the chosen answer to be the longer one this often
MAX_LONGER_CHOSEN = 0.65     # checks: the longer answer may be the chosen one in at most this share of pairs
MAX_CUE_ACCURACY = 0.70      # checks: no single token / first-words feature may separate pairs better than this


# =============================================================================================== helpers

def money(x: float) -> str:
    """12345.678 -> '$12,345.68' (negative amounts as '-$12.00')."""
    return ("-" if x < 0 else "") + f"${abs(x) * (1 + 1e-12):,.2f}"  # 431.375 -> $431.38, as by hand


def dollars(x: float) -> str:
    """Whole dollars, for inputs drawn as round amounts: 12000 -> '$12,000'."""
    return ("-" if x < 0 else "") + f"${abs(x):,.0f}"


def pct(x: float, digits: int = 2) -> str:
    """0.0475 -> '4.75%', 0.05 -> '5%', 0.123456 -> '12.35%'."""
    s = f"{x * 100 * (1 + 1e-12):.{digits}f}"  # 4.375% -> 4.38%, as by hand
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return ("0" if s in ("-0", "") else s) + "%"


def an(amount: str) -> str:
    """The article as the number is read aloud: 'a $12,000', 'an $8,000', 'an 11%', 'a 110%'."""
    lead = re.match(r"-?\$?(\d+)", amount).group(1)
    return ("an " if lead.startswith("8") or lead in ("11", "18") else "a ") + amount


def dec(x: float, digits: int = 4) -> str:
    """A rate as a decimal: 0.0475 -> '0.0475', 0.05 -> '0.05'."""
    s = f"{x:.{digits}f}".rstrip("0").rstrip(".")
    return s or "0"


def ratio(x: float) -> str:
    return f"{x:.2f}"


def draw_rate(rng: random.Random, lo: float, hi: float, step: float = 0.25) -> float:
    """A rate in percent steps of `step` between lo and hi percent, as a fraction."""
    return rng.randint(round(lo / step), round(hi / step)) * step / 100


def slip(rng: random.Random, x: float, fmt: Callable[[float], str]) -> float:
    """A nearby wrong value, as a rushed calculation produces: 4-20% off, never equal once formatted."""
    scale = max(abs(x), 0.01)  # a zero or tiny value still gets a visible slip
    for _ in range(1000):
        wrong = x + rng.choice((-1, 1)) * rng.uniform(0.04, 0.2) * scale
        if fmt(wrong) != fmt(x):
            return wrong
    raise ValueError(f"no visible slip of {x!r}")


def maybe(rng: random.Random, p: float, sentence: str) -> list[str]:
    return [sentence] if rng.random() < p else []


def some(rng: random.Random, pool: Iterable[str], lo: int, hi: int) -> list[str]:
    """lo..hi sentences from `pool`, in pool order (so they read as a paragraph)."""
    pool = list(pool)
    keep = sorted(rng.sample(range(len(pool)), rng.randint(lo, min(hi, len(pool)))))
    return [pool[i] for i in keep]


@dataclass
class Item:
    """One question: a correct answer, failure kind -> flawed answer, neutral sentences either side may carry."""
    question: str
    chosen: list[str]
    rejected: dict[str, list[str]]
    extras: list[str] = field(default_factory=list)


OPENERS_CALC = ("Sure.", "Good question.", "Happy to help.", "Let's work it out.", "Here's the calculation.", "OK.",
                "Great question!", "Let me run the numbers.", "Sure thing.", "Here's how it works out.")
OPENERS_ADVICE = ("Good question.", "Happy to help.", "Let's think it through.", "Thanks for asking.", "OK.",
                  "Fair question.", "Here's my take.", "Great question!", "Glad you asked.")
OPENERS_DEF = ("Sure.", "Good question.", "Happy to explain.", "In short:", "Great question!", "OK.",
               "Here's a quick explanation.", "Glad you asked.")

VAGUE = {
    "calc": ("It really depends on the specific terms involved, so it's hard to give an exact number.",
             "There are a lot of moving parts here, and small details can change the answer quite a bit.",
             "An online calculator can give you a precise figure in a few seconds.",
             "In general, it's worth reading the fine print carefully before you commit to anything.",
             "A financial professional could look at your full situation and give you a tailored answer."),
    "advice": ("Everyone's situation is different, so there isn't one right answer here.",
               "It depends on your goals, your timeline and how comfortable you are with ups and downs.",
               "Some people do well with this and some don't, so it's really a personal decision.",
               "You might want to talk it over with a financial advisor before deciding.",
               "Take your time, do some research and go with what feels right for you."),
    "term": ("Its exact meaning depends on the context you see it in.",
             "It comes up a lot in investing, so it's worth getting familiar with.",
             "Different sources describe it in slightly different ways.",
             "Most beginner investing guides cover it in more detail."),
}


# =============================================================================================== interest

FREQS = ((1, "annually"), (4, "quarterly"), (12, "monthly"), (365, "daily"))
INTEREST_ASSUME = ("This assumes the rate stays fixed and you make no deposits or withdrawals.",
                   "That's before any tax on the interest, and it assumes the rate doesn't change.",
                   "It assumes a fixed rate for the whole period; a variable rate would change the result.")
INTEREST_EXTRAS = ("APY already includes the effect of compounding, so it's the easier number for comparing accounts.",
                   "More frequent compounding helps a little, but the gap between monthly and daily is small.",
                   "Interest from a regular savings account is generally taxable in the year it's credited.",
                   "Online banks often pay higher rates than branch banks, so it can pay to shop around.",
                   "Deposits at an insured bank are covered by FDIC insurance up to $250,000 per depositor, "
                   "per bank, per ownership category.")


def interest_compound(rng: random.Random) -> Item:
    p, r, t = rng.randrange(10, 400) * 100, draw_rate(rng, 1.5, 8.0), rng.randint(2, 25)
    n, how = rng.choice(FREQS)
    a = p * (1 + r / n) ** (n * t)
    calc = f"{dollars(p)} × (1 + {dec(r)}/{n})^{n * t}"
    q = rng.choice((f"If I put {dollars(p)} in an account paying {pct(r)} compounded {how}, how much will I have "
                    f"after {t} years?",
                    f"How much will {dollars(p)} grow to in {t} years at {pct(r)} interest, compounded {how}?",
                    f"I'm depositing {dollars(p)} at {pct(r)} a year, compounded {how}. What's the balance after "
                    f"{t} years if I don't touch it?",
                    f"What is {dollars(p)} worth after {t} years at {pct(r)} compounded {how}?"))

    def answer(value: float, formula: str, work: str, p_assume: float) -> list[str]:
        lead = rng.choice((f"Use {formula} with P = {dollars(p)}, r = {dec(r)} and t = {t}: A = {work} = "
                           f"{money(value)}.",
                           f"The balance works out as {formula} = {work} ≈ {money(value)}.",
                           f"You'd have about {money(value)}, since {formula} = {work}."))
        return [lead] + maybe(rng, 0.65, f"That's {money(value - p)} of interest on top of your {dollars(p)}.") \
            + maybe(rng, p_assume, rng.choice(INTEREST_ASSUME))

    rejected = {
        "simple_interest": answer(p * (1 + r * t), "A = P(1 + r·t)", f"{dollars(p)} × (1 + {dec(r)} × {t})", 0.35),
        "slip": answer(slip(rng, a, money), "A = P(1 + r/n)^(n·t)", calc, 0.35),
        "off_by_one": [f"Interest is first credited at the end of year one, so you only compound over {t - 1} "
                       f"years: A = {dollars(p)} × (1 + {dec(r)}/{n})^{n * (t - 1)} = "
                       f"{money(p * (1 + r / n) ** (n * (t - 1)))}."],
    }
    if n != 1:
        rejected["ignored_frequency"] = answer(p * (1 + r) ** t, "A = P(1 + r)^t", f"{dollars(p)} × (1 + {dec(r)})^{t}",
                                               0.35)
    if n != 365:
        rejected["hallucinated_rule"] = [
            f"Banks are required to compound savings daily, whatever the account says, so use n = 365: "
            f"A = {dollars(p)} × (1 + {dec(r)}/365)^{365 * t} = {money(p * (1 + r / 365) ** (365 * t))}."]
    rejected["vague"] = [rng.choice((f"At {pct(r)} for {t} years, compound interest means you earn interest on your "
                                     f"interest, so the balance grows faster the longer you leave it.",
                                     "Compound interest means you earn interest on your interest, so the balance "
                                     "grows faster the longer you leave it."))] + some(rng, VAGUE["calc"], 0, 2)
    return Item(q, answer(a, "A = P(1 + r/n)^(n·t)", calc, 0.6), rejected, list(INTEREST_EXTRAS))


def interest_simple(rng: random.Random) -> Item:
    p, r, m = rng.randrange(10, 300) * 100, draw_rate(rng, 2.0, 9.0), rng.choice((6, 9, 15, 18, 21, 30, 42))
    i = p * r * m / 12
    q = rng.choice((f"How much simple interest will I earn on {dollars(p)} at {pct(r)} a year over {m} months?",
                    f"A friend borrowed {dollars(p)} from me at {pct(r)} simple annual interest for {m} months. "
                    f"How much interest does she owe?",
                    f"What's the simple interest on {dollars(p)} at {pct(r)} per year for {m} months?"))
    years = f"{m}/12 = {dec(m / 12, 3)}"
    chosen = [rng.choice((f"Simple interest is I = P × r × t, with t in years ({years}): {dollars(p)} × {dec(r)} × "
                          f"{dec(m / 12, 3)} = {money(i)}.",
                          f"You'd earn {money(i)}. With I = P·r·t and t = {years} years: {dollars(p)} × {dec(r)} × "
                          f"{dec(m / 12, 3)} = {money(i)}."))]
    chosen += maybe(rng, 0.6, f"The total owed at the end would be {money(p + i)}.")
    chosen += maybe(rng, 0.4, "Simple interest is charged on the original principal only, so nothing compounds.")
    compounded = p * ((1 + r / 12) ** m - 1)
    rejected = {
        "months_as_years": [f"Simple interest is I = P × r × t = {dollars(p)} × {dec(r)} × {m} = {money(p * r * m)}."]
        + maybe(rng, 0.5, f"So the total comes to {money(p + p * r * m)}."),
        "compounded": [f"Interest compounds monthly, so I = P((1 + r/12)^{m} − 1) = {dollars(p)} × ((1 + {dec(r)}/12)"
                       f"^{m} − 1) = {money(compounded)}."]
        + maybe(rng, 0.5, f"The total owed at the end would be {money(p + compounded)}."),
        "slip": [f"Simple interest is I = P × r × t, with t in years ({years}): {dollars(p)} × {dec(r)} × "
                 f"{dec(m / 12, 3)} = {money(slip(rng, i, money))}."],
        "vague": ["Simple interest is only charged on the original amount, so it's fairly small."]
        + some(rng, VAGUE["calc"], 1, 3),
    }
    return Item(q, chosen, rejected, list(INTEREST_EXTRAS))


def interest_apy(rng: random.Random) -> Item:
    card = rng.random() < 0.5
    r = draw_rate(rng, 15.0, 29.0) if card else draw_rate(rng, 1.5, 6.0)
    n, how = rng.choice(((365, "daily"), (12, "monthly"))) if card else rng.choice(FREQS[1:])
    apy = (1 + r / n) ** n - 1
    thing = "credit card charges" if card else "savings account pays"
    q = rng.choice((f"My {thing} {pct(r)} APR, compounded {how}. What's the effective annual rate?",
                    f"What APY does {an(pct(r))} APR work out to with {how} compounding?",
                    f"How is APR different from APY? My {thing} {pct(r)} APR compounded {how}."))
    verb = "cost" if card else "yield"
    chosen = [f"APY = (1 + APR/n)^n − 1 = (1 + {dec(r)}/{n})^{n} − 1 ≈ {pct(apy)}.",
              f"APR is the simple annual rate; APY adds the effect of compounding, so the effective {verb} is "
              f"{pct(apy)} rather than {pct(r)}."]
    if rng.random() < 0.3:
        chosen = chosen[:1]
    wrong_apy = slip(rng, apy, pct)
    rejected = {
        "same_thing": [f"APR and APY are just two names for the same rate, so the effective annual rate is "
                       f"{pct(r)}."] + maybe(rng, 0.5, "Compounding only matters for loans longer than a year."),
        "slip": [f"APY = (1 + APR/n)^n − 1 = (1 + {dec(r)}/{n})^{n} − 1 ≈ {pct(wrong_apy)}."]
        + maybe(rng, 0.6, f"So the effective {verb} is {pct(wrong_apy)} rather than {pct(r)}."),
        "hallucinated_rule": [f"APY is always lower than APR because it is quoted after the bank's fees, so expect "
                              f"about {pct(r * (1 - 1 / n) if n < 12 else r * 0.95)}."],
        "vague": ["APY is usually a bit different from APR because of how interest is calculated."]
        + some(rng, VAGUE["calc"], 0, 2),
    }
    return Item(q, chosen, rejected, list(INTEREST_EXTRAS))


def interest_continuous(rng: random.Random) -> Item:
    p, r, t = rng.randrange(10, 300) * 100, draw_rate(rng, 2.0, 8.0), rng.randint(2, 20)
    a = p * math.exp(r * t)
    q = rng.choice((f"What does {dollars(p)} grow to in {t} years at {pct(r)} compounded continuously?",
                    f"How much is {dollars(p)} worth after {t} years with continuous compounding at {pct(r)}?"))
    work = f"{dollars(p)} × e^({dec(r)} × {t})"
    chosen = [f"For continuous compounding A = P·e^(r·t) = {work} = {money(a)}."]
    chosen += maybe(rng, 0.6, f"Monthly compounding would give slightly less, {money(p * (1 + r / 12) ** (12 * t))}, "
                              f"so continuous compounding is the upper limit.")
    rejected = {
        "monthly_instead": [f"Continuous compounding is the same as monthly compounding, so A = P(1 + r/12)^(12t) = "
                            f"{money(p * (1 + r / 12) ** (12 * t))}."],
        "missing_t": [f"For continuous compounding A = P·e^r = {dollars(p)} × e^{dec(r)} = {money(p * math.exp(r))}."],
        "slip": [f"For continuous compounding A = P·e^(r·t) = {work} = {money(slip(rng, a, money))}."],
        "simple_interest": [f"Continuous compounding just means interest accrues every day on the original deposit, "
                            f"so A = P(1 + r·t) = {money(p * (1 + r * t))}."],
    }
    return Item(q, chosen, rejected, list(INTEREST_EXTRAS))


def interest_doubling(rng: random.Random) -> Item:
    r = draw_rate(rng, 2.0, 12.0, 0.5)
    exact, rule = math.log(2) / math.log(1 + r), 72 / (r * 100)
    q = rng.choice((f"At {pct(r)} a year compounded annually, how long until my money doubles?",
                    f"How many years does it take to double an investment earning {pct(r)} a year?"))
    chosen = [f"Solve (1 + r)^t = 2: t = ln 2 / ln(1 + {dec(r)}) ≈ {exact:.1f} years."]
    chosen += maybe(rng, 0.7, f"The rule of 72 gives a quick check: 72 / {dec(r * 100, 2)} ≈ {rule:.1f} years.")
    chosen += maybe(rng, 0.4, "That assumes the return stays the same every year and is reinvested.")
    rejected = {
        "rule_of_100": [f"Divide 100 by the rate: 100 / {dec(r * 100, 2)} ≈ {100 / (r * 100):.1f} years to double."],
        "linear": [f"Each year you earn {pct(r)} of the original amount, so doubling takes 1 / {dec(r)} ≈ "
                   f"{1 / r:.1f} years."] + maybe(rng, 0.4, "That's the exact answer, not an estimate."),
        "slip": [f"Solve (1 + r)^t = 2: t = ln 2 / ln(1 + {dec(r)}) ≈ {slip(rng, exact, lambda x: f'{x:.1f}'):.1f} "
                 f"years."] + maybe(rng, 0.4, "That assumes the return stays the same every year and is reinvested."),
        "vague": ["It depends on the rate, but money tends to double faster than most people expect."]
        + some(rng, VAGUE["calc"], 0, 2),
    }
    return Item(q, chosen, rejected, list(INTEREST_EXTRAS))


# =============================================================================================== loans

LOANS = (  # kind, principal low/high/step, rate % low/high, terms in years
    ("car loan", 8_000, 45_000, 500, 3.0, 10.0, (3, 4, 5, 6)),
    ("mortgage", 120_000, 650_000, 5_000, 3.0, 7.5, (15, 20, 30)),
    ("personal loan", 3_000, 30_000, 500, 7.0, 18.0, (2, 3, 4, 5)),
    ("student loan", 10_000, 80_000, 1_000, 4.0, 8.0, (10, 15, 20)),
)
LOAN_FORMULA = ("For a fixed-rate loan the payment is M = L·i / (1 − (1 + i)^(−N)), where i is the monthly rate "
                "and N the number of payments.",
                "Use the amortisation formula M = L·i / (1 − (1 + i)^(−N)) with i = annual rate / 12 and N = 12 × "
                "years.")
LOAN_ASSUME = ("This assumes a fixed rate, on-time payments and no fees.",
               "It assumes the rate is fixed and there are no origination fees.",
               "That assumes you pay exactly on schedule with no extra payments.")
LOAN_EXTRAS = ("Paying even a little extra toward principal each month shortens the loan and cuts total interest.",
               "Lenders quote APR to include some fees, so compare APRs rather than note rates across offers.",
               "Your actual rate depends on your credit score, the term and the lender.",
               "Most lenders let you prepay without penalty, but it's worth checking the loan agreement.")


def payment(principal: float, rate: float, years: int) -> float:
    i, n = rate / 12, years * 12
    return principal * i / (1 - (1 + i) ** -n)


def draw_loan(rng: random.Random) -> tuple[str, int, float, int]:
    kind, lo, hi, step, rlo, rhi, terms = rng.choice(LOANS)
    return kind, rng.randrange(lo, hi + 1, step), draw_rate(rng, rlo, rhi, 0.125), rng.choice(terms)


def loans_payment(rng: random.Random) -> Item:
    kind, loan, r, years = draw_loan(rng)
    n, m = years * 12, payment(loan, r, years)
    q = rng.choice((f"What would the monthly payment be on {an(dollars(loan))} {kind} at {pct(r, 3)} for {years} "
                    f"years?",
                    f"I'm taking out {an(dollars(loan))} {kind} at {pct(r, 3)} interest over {years} years. How much "
                    f"will I pay each month, and how much interest in total?",
                    f"How much is the monthly payment on a {years}-year {kind} of {dollars(loan)} at {pct(r, 3)}?"))
    i_text = f"i = {dec(r, 5)}/12 ≈ {r / 12:.6f} and N = {n}"

    def answer(pay: float, p_formula: float = 0.75, p_assume: float = 0.5) -> list[str]:
        out = maybe(rng, p_formula, rng.choice(LOAN_FORMULA)) + [f"Here {i_text}, so M = {money(pay)} a month."]
        out += maybe(rng, 0.7, f"Over {n} payments you'd repay {money(pay * n)} in total, so the interest comes to "
                               f"{money(pay * n - loan)}.")
        return out + maybe(rng, p_assume, rng.choice(LOAN_ASSUME))

    flat = loan * r * years
    annual = loan * r / (1 - (1 + r) ** -years)
    bad = payment(loan, r, years) * 1.0
    rejected = {
        "flat_interest": [f"Interest is {dollars(loan)} × {dec(r, 5)} × {years} = {money(flat)}, so you repay "
                          f"{money(loan + flat)} in total.",
                          f"Spread over {n} months that's {money((loan + flat) / n)} a month."]
        + maybe(rng, 0.3, rng.choice(LOAN_ASSUME)),
        "annual_then_divide": [f"Work it out per year and divide by 12: the annual payment is L·r / (1 − (1 + r)^(−"
                               f"years)) = {money(annual)}, which is {money(annual / 12)} a month."]
        + maybe(rng, 0.5, f"Total interest is about {money(annual * years - loan)}."),
        "total_interest_wrong": maybe(rng, 0.6, rng.choice(LOAN_FORMULA))
        + [f"Here {i_text}, so M = {money(m)} a month.", f"Total interest is {n} × {money(m)} = {money(m * n)}."],
        "slip": answer(slip(rng, bad, money), 0.7, 0.35),
        "vague": [rng.choice((f"Monthly payments on a {kind} depend on the rate, the term and the lender's fees.",
                              f"On {dollars(loan)} over {years} years the payment will be manageable for most "
                              f"budgets, but the exact figure depends on the lender."))]
        + some(rng, VAGUE["calc"], 0, 3),
    }
    if kind in ("car loan", "mortgage"):
        rejected["bad_advice"] = [f"Your payment would be {money(m)} a month.",
                                  "Tip: always take the longest term you can get. A lower monthly payment means the "
                                  "loan is cheaper overall."]
    return Item(q, answer(m), rejected, list(LOAN_EXTRAS))


def loans_first_payment(rng: random.Random) -> Item:
    kind, loan, r, years = draw_loan(rng)
    n, m = years * 12, payment(loan, r, years)
    first = loan * r / 12
    q = rng.choice((f"On {an(dollars(loan))} {kind} at {pct(r, 3)} for {years} years, how much of my first payment "
                    f"goes to interest?",
                    f"My {kind} is {dollars(loan)} at {pct(r, 3)} over {years} years. How is the first monthly "
                    f"payment split between interest and principal?"))
    chosen = [f"The first month's interest is the balance times the monthly rate: {dollars(loan)} × {dec(r, 5)}/12 = "
              f"{money(first)}.",
              f"Your payment is {money(m)} (from M = L·i / (1 − (1 + i)^(−N)) with N = {n}), so {money(m - first)} "
              f"goes to principal."]
    chosen += maybe(rng, 0.6, "Early payments are interest-heavy; the principal share grows each month as the "
                              "balance falls.")
    total_interest = m * n - loan
    rejected = {
        "even_split": [f"Your payment is {money(m)}.", f"Each payment on an amortising loan is split evenly between "
                       f"interest and principal, so {money(m / 2)} goes to interest."],
        "rate_on_payment": [f"Your payment is {money(m)}, and the interest portion is the payment times the rate: "
                            f"{money(m)} × {dec(r, 5)} = {money(m * r)}.", f"The other {money(m - m * r)} goes to "
                                                                          f"principal."],
        "averaged": [f"Total interest over the loan is {money(total_interest)}, spread evenly over {n} payments, so "
                     f"{money(total_interest / n)} of each payment, including the first, is interest."],
        "slip": [f"The first month's interest is the balance times the monthly rate: {dollars(loan)} × "
                 f"{dec(r, 5)}/12 = {money(slip(rng, first, money))}."] + maybe(rng, 0.5, chosen[-1]),
    }
    return Item(q, chosen, rejected, list(LOAN_EXTRAS))


def loans_compare_terms(rng: random.Random) -> Item:
    loan = rng.randrange(150_000, 700_001, 5_000)
    r15 = draw_rate(rng, 3.0, 6.5, 0.125)
    r30 = r15 + draw_rate(rng, 0.25, 0.875, 0.125)
    m15, m30 = payment(loan, r15, 15), payment(loan, r30, 30)
    i15, i30 = m15 * 180 - loan, m30 * 360 - loan
    q = rng.choice((f"For {an(dollars(loan))} mortgage, which is cheaper overall: 15 years at {pct(r15, 3)} or "
                    f"30 years at {pct(r30, 3)}?",
                    f"Should I take a 15-year mortgage at {pct(r15, 3)} or a 30-year at {pct(r30, 3)} on "
                    f"{dollars(loan)}? I care about total cost."))
    chosen = [f"With M = L·i / (1 − (1 + i)^(−N)): the 15-year payment is {money(m15)} and the 30-year is "
              f"{money(m30)}.",
              f"Total interest is {money(i15)} versus {money(i30)}, so the 15-year saves {money(i30 - i15)}."]
    chosen += maybe(rng, 0.6, f"The catch is a payment {money(m15 - m30)} a month higher; pick the 15-year only if "
                              f"that fits comfortably alongside your savings.")
    rejected = {
        "payment_only": [f"The 30-year is cheaper: its payment is {money(m30)} a month versus {money(m15)} for the "
                         f"15-year."] + maybe(rng, 0.6, f"That's {money(m15 - m30)} a month back in your pocket, "
                                                        f"which is the real measure of a loan's cost."),
        "flat_interest": [f"Interest is principal × rate × years: {dollars(loan)} × {dec(r15, 5)} × 15 = "
                          f"{money(loan * r15 * 15)} for the 15-year and {dollars(loan)} × {dec(r30, 5)} × 30 = "
                          f"{money(loan * r30 * 30)} for the 30-year.", "So the 15-year is cheaper overall."],
        "slip": [f"With M = L·i / (1 − (1 + i)^(−N)): the 15-year payment is {money(m15)} and the 30-year is "
                 f"{money(m30)}.", f"Total interest is {money(slip(rng, i15, money))} versus "
                                   f"{money(slip(rng, i30, money))}, so the 15-year is cheaper."],
        "vague": ["Both have pros and cons; a 15-year builds equity faster while a 30-year is more flexible."]
        + some(rng, VAGUE["calc"], 0, 2),
    }
    return Item(q, chosen, rejected, list(LOAN_EXTRAS))


# =============================================================================================== ratios

COMPANIES = ("a coffee roaster", "a regional grocery chain", "a small software company", "a furniture maker",
             "an online clothing store", "a trucking company", "a dental practice", "a craft brewery",
             "a hardware wholesaler", "a local bakery", "a solar installer", "a pet-supply retailer")
RATIO_EXTRAS = ("Ratios are most useful compared with the company's own history and with close competitors.",
                "The figures come from the income statement and balance sheet, so check which period they cover.",
                "One year's numbers can be distorted by one-off items, so a multi-year view helps.",
                "Industry norms vary a lot, so there's no single 'good' value.")


def draw_company(rng: random.Random) -> tuple[str, str]:
    name = rng.choice(COMPANIES)
    return name, name[0].upper() + name[1:]


def ratio_item(rng: random.Random, q: str, formula: str, parts: str, value: float, fmt, interpretation: list[str],
               wrong: dict[str, tuple[str, str, float]], extra_rejects: dict[str, list[str]]) -> Item:
    """A ratio question: chosen shows formula = parts = value; each wrong entry is (formula, parts, value[, fmt])."""
    chosen = [f"{formula} = {parts} ≈ {fmt(value)}."] + interpretation
    rejected = {kind: [f"{f} = {pt} ≈ {(rest[0] if rest else fmt)(v)}."] + maybe(rng, 0.4, rng.choice(RATIO_EXTRAS))
                for kind, (f, pt, v, *rest) in wrong.items()}
    rejected["slip"] = [f"{formula} = {parts} ≈ {fmt(slip(rng, value, fmt))}."] \
        + maybe(rng, 0.5, rng.choice(RATIO_EXTRAS))
    rejected.update(extra_rejects)
    rejected["vague"] = ["You'd need to look at the full financial statements to judge that properly."] \
        + some(rng, VAGUE["calc"], 0, 2)
    return Item(q, chosen, rejected, list(RATIO_EXTRAS))


def ratios_gross_margin(rng: random.Random) -> Item:
    name, cap = draw_company(rng)
    rev = rng.randrange(200, 9000) * 1000
    cogs = round(rev * rng.uniform(0.35, 0.8), -3)
    gp = rev - cogs
    q = rng.choice((f"{cap} had revenue of {dollars(rev)} and cost of goods sold of {dollars(cogs)}. What's its "
                    f"gross margin?",
                    f"What is the gross margin for {name} with sales of {dollars(rev)} and COGS of {dollars(cogs)}?"))
    interp = maybe(rng, 0.7, f"So about {round(100 * gp / rev)} cents of each sales dollar is left after direct costs, "
                             f"before operating expenses, interest and taxes.")
    return ratio_item(rng, q, "Gross margin = (revenue − COGS) / revenue",
                      f"({dollars(rev)} − {dollars(cogs)}) / {dollars(rev)}", gp / rev, lambda x: pct(x, 1), interp,
                      {"markup": ("Gross margin = gross profit / COGS", f"{dollars(gp)} / {dollars(cogs)}",
                                  gp / cogs),
                       "cost_ratio": ("Gross margin = COGS / revenue", f"{dollars(cogs)} / {dollars(rev)}",
                                      cogs / rev)},
                      {})


def ratios_net_margin(rng: random.Random) -> Item:
    name, cap = draw_company(rng)
    rev = rng.randrange(300, 20000) * 1000
    ni = round(rev * rng.uniform(0.02, 0.22), -3)
    nm = ni / rev
    q = rng.choice((f"{cap} earned net income of {dollars(ni)} on revenue of {dollars(rev)}. What's its net profit "
                    f"margin?",
                    f"How do I calculate net margin? Revenue was {dollars(rev)} and net income {dollars(ni)}."))
    interp = maybe(rng, 0.7, f"That means it keeps about {100 * nm:.0f} cents of profit per dollar of sales after "
                             f"all expenses, interest and taxes.")
    extra = {}
    if nm < 0.2:
        extra["wrong_claim"] = [f"Net margin = net income / revenue = {dollars(ni)} / {dollars(rev)} ≈ {pct(nm, 1)}.",
                                "Anything under 20% means the business is actually losing money once you account for "
                                "reinvestment."]
    return ratio_item(rng, q, "Net margin = net income / revenue", f"{dollars(ni)} / {dollars(rev)}", nm,
                      lambda x: pct(x, 1), interp,
                      {"over_expenses": ("Net margin = net income / total expenses",
                                         f"{dollars(ni)} / ({dollars(rev)} − {dollars(ni)})", ni / (rev - ni))}, extra)


def ratios_pe(rng: random.Random) -> Item:
    price = rng.randrange(1200, 45000) / 100
    eps = round(price / rng.uniform(6, 45), 2)
    pe = price / eps
    q = rng.choice((f"A stock trades at {money(price)} and earned {money(eps)} per share over the last year. What's "
                    f"its P/E ratio?",
                    f"What's the P/E of a stock priced at {money(price)} with trailing EPS of {money(eps)}?",
                    f"Is a stock at {money(price)} with earnings of {money(eps)} a share expensive? What's the P/E?"))
    interp = [f"Investors are paying about {money(pe)} for each dollar of last year's earnings."]
    interp += maybe(rng, 0.6, "On its own that says little: compare it with peers, the company's history and its "
                              "expected growth.")
    if rng.random() < 0.3:
        interp = interp[1:]
    verdict = ("Anything under 20 is a bargain, so it's a clear buy." if pe < 20 else
               "Anything over 20 is overpriced, so avoid it; it's bound to fall back.")
    return ratio_item(rng, q, "P/E = price / earnings per share", f"{money(price)} / {money(eps)}", pe,
                      lambda x: f"{x:.1f}", interp,
                      {"inverted": ("P/E = earnings per share / price", f"{money(eps)} / {money(price)}", eps / price,
                                    lambda x: f"{x:.3f}")},
                      {"overconfident": [f"P/E = price / earnings per share = {money(price)} / {money(eps)} ≈ "
                                         f"{pe:.1f}.", verdict]})


def ratios_current(rng: random.Random) -> Item:
    name, cap = draw_company(rng)
    cl = rng.randrange(50, 5000) * 1000
    ca = round(cl * rng.uniform(0.6, 3.2), -3)
    cr = ca / cl
    q = rng.choice((f"{cap} has current assets of {dollars(ca)} and current liabilities of {dollars(cl)}. What's "
                    f"its current ratio, and is that OK?",
                    f"Work out the current ratio: current assets {dollars(ca)}, current liabilities {dollars(cl)}."))
    interp = [f"It has {money(cr)} of current assets for every dollar due within a year."
              if cr >= 1 else "Below 1 means its short-term obligations exceed the assets it can turn into cash "
                              "within a year, which is worth a closer look."]
    interp += maybe(rng, 0.5, "The quick ratio, which leaves out inventory, is a stricter test.")
    claim = ("Any current ratio under 2 means the company can't pay its bills and is effectively insolvent."
             if cr < 2 else "A ratio above 2 guarantees the company is financially safe.")
    return ratio_item(rng, q, "Current ratio = current assets / current liabilities", f"{dollars(ca)} / {dollars(cl)}",
                      cr, ratio, interp,
                      {"inverted": ("Current ratio = current liabilities / current assets",
                                    f"{dollars(cl)} / {dollars(ca)}", cl / ca)},
                      {"wrong_claim": [f"Current ratio = current assets / current liabilities = {ratio(cr)}.", claim]})


def ratios_debt_to_equity(rng: random.Random) -> Item:
    name, cap = draw_company(rng)
    eq = rng.randrange(100, 8000) * 1000
    tl = round(eq * rng.uniform(0.2, 3.5), -3)
    de = tl / eq
    q = rng.choice((f"{cap} has total liabilities of {dollars(tl)} and shareholders' equity of {dollars(eq)}. What's "
                    f"its debt-to-equity ratio?",
                    f"What's the D/E ratio with {dollars(tl)} of liabilities and {dollars(eq)} of equity?"))
    interp = maybe(rng, 0.6, f"So creditors have put in about {money(de)} for every dollar from shareholders.")
    interp += maybe(rng, 0.5, "Some analysts count only interest-bearing debt in the numerator, which gives a lower "
                              "figure.")
    return ratio_item(rng, q, "Debt-to-equity = total liabilities / shareholders' equity",
                      f"{dollars(tl)} / {dollars(eq)}", de, ratio, interp,
                      {"debt_ratio": ("Debt-to-equity = liabilities / (liabilities + equity)",
                                      f"{dollars(tl)} / {dollars(tl + eq)}", tl / (tl + eq)),
                       "inverted": ("Debt-to-equity = equity / liabilities", f"{dollars(eq)} / {dollars(tl)}",
                                    eq / tl)}, {})


# =============================================================================================== returns

RETURN_ASSUME = ("Fees and taxes would reduce it.", "It ignores taxes and trading costs.",
                 "That doesn't account for fees or taxes.")
RETURN_EXTRAS = ("Past returns don't guarantee future ones.",
                 "Comparing against a benchmark such as a broad index fund shows whether the risk was worth it.",
                 "Deposits and withdrawals along the way can distort a simple start-to-end comparison.",
                 "Keeping records of what you paid makes these calculations, and your taxes, much easier.")


def returns_roi(rng: random.Random) -> Item:
    cost = rng.randrange(20, 800) * 100
    sale = round(cost * rng.uniform(0.7, 2.2), -1)
    div = round(cost * rng.uniform(0.01, 0.12), -1) if rng.random() < 0.6 else 0
    roi = (sale + div - cost) / cost
    with_div = f", received {dollars(div)} in dividends," if div else ""
    q = rng.choice((f"I bought shares for {dollars(cost)}{with_div} and sold them for {dollars(sale)}. What was my "
                    f"ROI?",
                    f"What's the return on investment if I paid {dollars(cost)}{with_div} and sold for "
                    f"{dollars(sale)}?"))
    parts = f"({dollars(sale)} + {dollars(div)} − {dollars(cost)})" if div else f"({dollars(sale)} − {dollars(cost)})"
    formula = "ROI = (sale + dividends − cost) / cost" if div else "ROI = (sale − cost) / cost"
    chosen = [f"{formula} = {parts} / {dollars(cost)} ≈ {pct(roi, 1)}."]
    chosen += maybe(rng, 0.6, "That's the return over the whole holding period, not per year.")
    chosen += maybe(rng, 0.4, rng.choice(RETURN_ASSUME))
    rejected = {
        "over_sale": [f"ROI = gain / sale price = {dollars(sale + div - cost)} / {dollars(sale)} ≈ "
                      f"{pct((sale + div - cost) / sale, 1)}."] + maybe(rng, 0.4, rng.choice(RETURN_ASSUME)),
        "slip": [f"{formula} = {parts} / {dollars(cost)} ≈ {pct(slip(rng, roi, lambda x: pct(x, 1)), 1)}."]
        + maybe(rng, 0.5, "That's the return over the whole holding period, not per year."),
        "vague": ["Your ROI depends on what you paid and what you got back."] + some(rng, VAGUE["calc"], 0, 2),
    }
    if div:
        rejected["ignored_dividends"] = [f"ROI = (sale − cost) / cost = ({dollars(sale)} − {dollars(cost)}) / "
                                         f"{dollars(cost)} ≈ {pct((sale - cost) / cost, 1)}."] \
            + maybe(rng, 0.5, "Dividends don't count toward ROI because they're paid out separately.")
    return Item(q, chosen, rejected, list(RETURN_EXTRAS))


def returns_cagr(rng: random.Random) -> Item:
    v0 = rng.randrange(50, 2000) * 100
    y = rng.randint(3, 15)
    v1 = round(v0 * rng.uniform(0.9, 3.5), -2)
    start = rng.randint(2005, 2024 - y)
    cagr = (v1 / v0) ** (1 / y) - 1
    q = rng.choice((f"My portfolio went from {dollars(v0)} in January {start} to {dollars(v1)} in January "
                    f"{start + y}. What's the compound annual growth rate?",
                    f"What's the CAGR of an investment that grew from {dollars(v0)} to {dollars(v1)} over {y} years?"))
    work = f"({dollars(v1)} / {dollars(v0)})^(1/{y}) − 1"
    chosen = [f"CAGR = (end / start)^(1/years) − 1 = {work} ≈ {pct(cagr)} a year."]
    chosen += maybe(rng, 0.6, "That's the steady yearly rate that links the two values; the actual years were "
                              "surely bumpier.")
    total = v1 / v0 - 1
    future = v1 * (1 + cagr) ** 5
    rejected = {
        "simple_average": [f"Total growth is {pct(total, 1)} over {y} years, so that's {pct(total, 1)} / {y} = "
                           f"{pct(total / y)} a year."] + maybe(rng, 0.4, rng.choice(RETURN_ASSUME)),
        "slip": [f"CAGR = (end / start)^(1/years) − 1 = {work} ≈ {pct(slip(rng, cagr, pct))} a year."],
        "overconfident": [f"CAGR = {work} ≈ {pct(cagr)}.", f"You can count on that rate going forward, so in five "
                                                          f"more years you'll have {money(future)}."],
        "vague": [rng.choice(("Growth rates are tricky because markets go up and down from year to year.",
                              f"Going from {dollars(v0)} to {dollars(v1)} in {y} years is a solid result, though "
                              f"growth rates are tricky because markets move around."))]
        + some(rng, VAGUE["calc"], 0, 2),
    }
    if "January" in q:
        rejected["off_by_one"] = [f"{start} through {start + y} is {y + 1} years, so CAGR = ({dollars(v1)} / "
                                  f"{dollars(v0)})^(1/{y + 1}) − 1 ≈ {pct((v1 / v0) ** (1 / (y + 1)) - 1)} a year."]
    return Item(q, chosen, rejected, list(RETURN_EXTRAS))


def returns_annualise(rng: random.Random) -> Item:
    m = rng.choice((3, 4, 6, 8, 9, 18, 24, 30))
    r = rng.uniform(0.01, 0.09) if m < 12 else rng.uniform(0.05, 0.35)
    r = round(r, 3)
    ann = (1 + r) ** (12 / m) - 1
    q = rng.choice((f"My fund returned {pct(r, 1)} over {m} months. What's that annualised?",
                    f"How do I annualise {an(pct(r, 1))} return earned over {m} months?"))
    work = f"(1 + {dec(r, 3)})^(12/{m}) − 1"
    chosen = [f"Annualised return = (1 + r)^(12/months) − 1 = {work} ≈ {pct(ann)}."]
    chosen += maybe(rng, 0.6, "That assumes the same pace for a whole year, so treat it as a rate, not a forecast."
                    if m < 12 else "It's the yearly rate that compounds to the same total.")
    rejected = {
        "slip": [f"Annualised return = (1 + r)^(12/months) − 1 = {work} ≈ {pct(slip(rng, ann, pct))}."],
        "overconfident": [f"Annualised that's {pct(ann)}, so that's what you'll earn every year from here on."],
    }
    if pct(r * 12 / m) != pct(ann):  # scaling linearly is wrong, but only visibly so when the numbers differ
        rejected["linear"] = [f"Scale it to a year: {pct(r, 1)} × 12/{m} = {pct(r * 12 / m)} annualised."] \
            + maybe(rng, 0.4, rng.choice(RETURN_ASSUME))
    return Item(q, chosen, rejected, list(RETURN_EXTRAS))


def returns_sequence(rng: random.Random) -> Item:
    up, down = round(rng.uniform(0.1, 0.6), 2), round(rng.uniform(0.1, 0.5), 2)
    amt = rng.randrange(20, 500) * 100
    total = (1 + up) * (1 - down) - 1
    geo = (1 + total) ** 0.5 - 1
    q = rng.choice((f"My fund went up {pct(up, 0)} one year and down {pct(down, 0)} the next. What's my overall "
                    f"return on {dollars(amt)}?",
                    f"If {dollars(amt)} gains {pct(up, 0)} and then loses {pct(down, 0)}, where do I end up?"))
    chosen = [f"Returns multiply: (1 + {dec(up)}) × (1 − {dec(down)}) − 1 = {pct(total, 1)}, so {dollars(amt)} "
              f"became {money(amt * (1 + total))}."]
    chosen += maybe(rng, 0.6, f"The simple average of {pct((up - down) / 2, 1)} a year overstates it; the compound "
                              f"average is {pct(geo, 1)} a year.")
    rejected = {
        "arithmetic": [f"Average the two years: ({pct(up, 0)} − {pct(down, 0)}) / 2 = {pct((up - down) / 2, 1)} a "
                       f"year, so over two years you're at {pct(up - down, 1)} and {dollars(amt)} became "
                       f"{money(amt * (1 + up - down))}."],
        "slip": [f"Returns multiply: (1 + {dec(up)}) × (1 − {dec(down)}) − 1 = "
                 f"{pct(w := slip(rng, total, lambda x: pct(x, 1)), 1)}, so {dollars(amt)} became "
                 f"{money(amt * (1 + w))}."],
    }
    return Item(q, chosen, rejected, list(RETURN_EXTRAS))


# =============================================================================================== inflation

INFLATION_EXTRAS = ("Inflation varies from year to year, so any long projection is an estimate.",
                    "Official inflation figures, such as CPI, track a broad basket of goods and services.",
                    "Your own inflation rate depends on what you spend money on.",
                    "Treasury Inflation-Protected Securities adjust their principal with CPI.")


def inflation_real(rng: random.Random) -> Item:
    i, pi = draw_rate(rng, 2.0, 12.0), draw_rate(rng, 1.5, 8.0)
    if i == pi:
        i += 0.01
    real = (1 + i) / (1 + pi) - 1
    q = rng.choice((f"My investments returned {pct(i)} last year and inflation was {pct(pi)}. What was my real return?",
                    f"What's the inflation-adjusted return on {an(pct(i))} nominal return with {pct(pi)} inflation?"))
    work = f"(1 + {dec(i)}) / (1 + {dec(pi)}) − 1"
    chosen = [f"Real return = (1 + nominal) / (1 + inflation) − 1 = {work} ≈ {pct(real)}."]
    chosen += maybe(rng, 0.6, f"The shortcut nominal − inflation gives {pct(i - pi)}, close enough when both are "
                              f"small.")
    rejected = {
        "added": [f"Real return = nominal + inflation = {pct(i)} + {pct(pi)} = {pct(i + pi)}, since inflation "
                  f"raises the value of your assets too."],
        "slip": [f"Real return = (1 + nominal) / (1 + inflation) − 1 = {work} ≈ {pct(slip(rng, real, pct))}."],
        "dismissive": [f"Your return was {pct(i)}. Inflation only matters for cash, not for invested money, so "
                       f"that's your real return too."],
        "vague": ["Inflation eats into returns, so your real return is lower than it looks."]
        + some(rng, VAGUE["calc"], 0, 2),
    }
    return Item(q, chosen, rejected, list(INFLATION_EXTRAS))


def inflation_purchasing_power(rng: random.Random) -> Item:
    x, pi, t = rng.randrange(10, 1000) * 100, draw_rate(rng, 1.5, 6.0), rng.randint(5, 30)
    pv = x / (1 + pi) ** t
    q = rng.choice((f"If inflation averages {pct(pi)}, what will {dollars(x)} be worth in today's money in {t} years?",
                    f"How much purchasing power does {dollars(x)} lose over {t} years at {pct(pi)} inflation?"))
    work = f"{dollars(x)} / (1 + {dec(pi)})^{t}"
    chosen = [f"In today's dollars: amount / (1 + inflation)^years = {work} ≈ {money(pv)}."]
    chosen += maybe(rng, 0.6, f"That's {an(pct(1 - pv / x, 1))} loss of purchasing power if it sits in cash earning "
                              f"nothing.")
    rejected = {
        "linear": [f"Each year takes {pct(pi)} off, so over {t} years you lose {pct(pi * t, 1)}: {dollars(x)} × "
                   f"(1 − {dec(pi)} × {t}) = {money(x * (1 - pi * t))}."],
        "wrong_direction": [f"Inflation compounds: {dollars(x)} × (1 + {dec(pi)})^{t} = "
                            f"{money(x * (1 + pi) ** t)}, so it will be worth that much in {t} years."],
        "slip": [f"In today's dollars: amount / (1 + inflation)^years = {work} ≈ {money(slip(rng, pv, money))}."],
    }
    return Item(q, chosen, rejected, list(INFLATION_EXTRAS))


def inflation_future_cost(rng: random.Random) -> Item:
    x, pi, t = rng.randrange(20, 5000) * 10, draw_rate(rng, 1.5, 6.0), rng.randint(5, 25)
    fv = x * (1 + pi) ** t
    thing = rng.choice(("groceries", "my rent", "a year of college", "our annual expenses", "a new car"))
    q = rng.choice((f"If {thing} cost {dollars(x)} today, what will that cost in {t} years at {pct(pi)} inflation?",
                    f"At {pct(pi)} inflation, how much will I need in {t} years to buy what {dollars(x)} buys now?"))
    work = f"{dollars(x)} × (1 + {dec(pi)})^{t}"
    chosen = [f"Future cost = today's cost × (1 + inflation)^years = {work} ≈ {money(fv)}."]
    chosen += maybe(rng, 0.5, f"That assumes {pct(pi)} every year; actual inflation will vary.")
    rejected = {
        "linear": [f"Add {pct(pi)} for each year: {dollars(x)} × (1 + {dec(pi)} × {t}) = {money(x * (1 + pi * t))}."],
        "inverted": [f"Discount by inflation: {dollars(x)} / (1 + {dec(pi)})^{t} ≈ {money(x / (1 + pi) ** t)}."],
        "slip": [f"Future cost = today's cost × (1 + inflation)^years = {work} ≈ {money(slip(rng, fv, money))}."],
        "vague": [f"Prices will definitely be higher than {dollars(x)}, but nobody can predict inflation exactly."]
        + some(rng, VAGUE["calc"], 0, 2),
    }
    return Item(q, chosen, rejected, list(INFLATION_EXTRAS))


# =============================================================================================== tax

BRACKETS = (0.12, 0.22, 0.24, 0.32, 0.35, 0.37)
TAX_EXTRAS = ("Your marginal bracket, not your average tax rate, is the one that matters for extra income.",
              "Tax rules change, so it's worth checking the current year's brackets.",
              "Treasury interest is taxed federally but exempt from state and local income tax.",
              "Holding taxable bonds inside an IRA or 401(k) defers the tax question.")


def tax_equivalent_yield(rng: random.Random) -> Item:
    m, tau = draw_rate(rng, 2.0, 4.5), rng.choice(BRACKETS)
    tey = m / (1 - tau)
    q = rng.choice((f"I'm in the {pct(tau, 0)} federal bracket. What's the tax-equivalent yield of a municipal bond "
                    f"paying {pct(m)}?",
                    f"A muni yields {pct(m)} tax-free. What taxable yield would match it at {an(pct(tau, 0))} tax "
                    f"rate?"))
    work = f"{pct(m)} / (1 − {dec(tau)})"
    chosen = [f"Tax-equivalent yield = muni yield / (1 − tax rate) = {work} ≈ {pct(tey)}."]
    chosen += maybe(rng, 0.6, "That counts federal tax only; if the bond is also exempt from your state's tax, the "
                              "equivalent yield is higher.")
    rejected = {
        "multiplied": [f"Tax-equivalent yield = muni yield × (1 + tax rate) = {pct(m)} × (1 + {dec(tau)}) ≈ "
                       f"{pct(m * (1 + tau))}."],
        "after_tax": [f"After tax you keep {pct(m)} × (1 − {dec(tau)}) ≈ {pct(m * (1 - tau))}, so that's the "
                      f"equivalent yield."],
        "slip": [f"Tax-equivalent yield = muni yield / (1 − tax rate) = {work} ≈ {pct(slip(rng, tey, pct))}."],
        "hallucinated": [f"Municipal bond interest is fully taxable at the federal level, so the tax-equivalent "
                         f"yield is simply {pct(m)}."],
    }
    return Item(q, chosen, rejected, list(TAX_EXTRAS))


def tax_after_tax(rng: random.Random) -> Item:
    x, y, tau = rng.randrange(50, 2000) * 100, draw_rate(rng, 2.5, 6.0), rng.choice(BRACKETS)
    interest = x * y
    q = rng.choice((f"I have {dollars(x)} in a CD paying {pct(y)}. I'm in the {pct(tau, 0)} bracket. What do I "
                    f"actually earn after tax?",
                    f"What's my after-tax return on {dollars(x)} in {an(pct(y))} savings account if my tax rate is "
                    f"{pct(tau, 0)}?"))
    chosen = [f"Interest is {dollars(x)} × {dec(y)} = {money(interest)}; tax at {pct(tau, 0)} takes "
              f"{money(interest * tau)}, so you keep {money(interest * (1 - tau))}, an after-tax yield of "
              f"{pct(y * (1 - tau))}."]
    chosen += maybe(rng, 0.6, "That interest is taxed as ordinary income, and state tax may apply on top.")
    rejected = {
        "capital_gains_rate": [f"Interest is {dollars(x)} × {dec(y)} = {money(interest)}.",
                               f"Bank interest is taxed at the 15% long-term capital-gains rate, so you keep "
                               f"{money(interest * 0.85)}."],
        "divided": [f"After-tax yield = yield / (1 − tax rate) = {pct(y)} / (1 − {dec(tau)}) ≈ {pct(y / (1 - tau))}, "
                    f"or {money(x * y / (1 - tau))} a year."],
        "slip": [f"Interest is {dollars(x)} × {dec(y)} = {money(interest)}; tax at {pct(tau, 0)} takes "
                 f"{money(w := slip(rng, interest * tau, money))}, so you keep {money(interest - w)}."],
        "vague": [f"You'll owe some tax on the interest, so you'll keep a bit less than the advertised {pct(y)}."]
        + some(rng, VAGUE["calc"], 0, 2),
    }
    return Item(q, chosen, rejected, list(TAX_EXTRAS))


def tax_compare(rng: random.Random) -> Item:
    while True:
        m, y, tau = draw_rate(rng, 2.0, 4.5), draw_rate(rng, 3.0, 6.5), rng.choice(BRACKETS)
        tey = m / (1 - tau)
        if abs(tey - y) >= 0.002 and y > m:
            break
    muni = tey > y
    best = "the muni" if muni else "the corporate bond"
    q = rng.choice((f"Which is better for me in the {pct(tau, 0)} bracket: a municipal bond yielding {pct(m)} or a "
                    f"corporate bond yielding {pct(y)}?",
                    f"Muni at {pct(m)} or taxable corporate at {pct(y)}? My federal rate is {pct(tau, 0)}."))
    chosen = [f"Compare after tax: the corporate bond keeps {pct(y)} × (1 − {dec(tau)}) ≈ {pct(y * (1 - tau))}, "
              f"while the muni's {pct(m)} is federally tax-free (a tax-equivalent yield of {pct(tey)}).",
              f"So {best} pays more after tax."]
    chosen += maybe(rng, 0.5, "That looks at yield only; credit quality, maturity and call features matter too.")
    rejected = {
        "slip": [f"Compare after tax: the corporate bond keeps {pct(y)} × (1 − {dec(tau)}) ≈ "
                 f"{pct(slip(rng, y * (1 - tau), pct))}, while the muni's {pct(m)} is federally tax-free.",
                 f"So {best} pays more after tax."],
        "vague": ["Munis are tax-free, which helps, but corporate bonds often pay more."]
        + some(rng, VAGUE["calc"], 0, 2),
    }
    if muni:
        rejected["raw_compare"] = [f"The corporate bond pays more, {pct(y)} against {pct(m)}, so it's the better "
                                   f"choice."] + maybe(rng, 0.5, rng.choice(TAX_EXTRAS))
    else:
        rejected["always_muni"] = [f"Go with the muni. Tax-free income always beats taxable income, whatever the "
                                   f"yields, so {pct(m)} tax-free is the better deal."]
    return Item(q, chosen, rejected, list(TAX_EXTRAS))


def tax_early_withdrawal(rng: random.Random) -> Item:
    b, tau, age = rng.randrange(50, 1000) * 100, rng.choice(BRACKETS[:4]), rng.randint(28, 54)
    lost = b * (tau + 0.10)
    q = rng.choice((f"I'm {age}. If I withdraw {dollars(b)} from my 401(k), how much will I actually keep? I'm in the "
                    f"{pct(tau, 0)} bracket.",
                    f"What happens tax-wise if I cash out {dollars(b)} of my 401(k) at {age}? My bracket is "
                    f"{pct(tau, 0)}."))
    chosen = ["Before age 59½ a 401(k) withdrawal is generally taxed as ordinary income plus a 10% additional tax, "
              "unless an exception applies.",
              f"Roughly: {dollars(b)} × ({dec(tau)} + 0.10) = {money(lost)} in federal tax, leaving about "
              f"{money(b - lost)}."]
    chosen += maybe(rng, 0.6, "A large withdrawal can push part of it into a higher bracket, state tax may apply, "
                              "and the plan usually withholds 20% up front.")
    rejected = {
        "penalty_only": [f"You'll just pay the 10% early-withdrawal penalty, so you keep {money(b * 0.9)}."],
        "twenty_percent": [f"The early-withdrawal penalty is 20%, and that covers the income tax too, so you keep "
                           f"{money(b * 0.8)}."],
        "rollover_myth": [f"There's no penalty as long as you reinvest the money somewhere within a year, so you can "
                          f"keep the full {dollars(b)}."],
        "slip": [chosen[0], f"Roughly: {dollars(b)} × ({dec(tau)} + 0.10) = {money(w := slip(rng, lost, money))} in "
                            f"federal tax, leaving about {money(b - w)}."],
    }
    return Item(q, chosen, rejected, list(TAX_EXTRAS))


# =============================================================================================== diversification

DIVERS_EXTRAS = ("It's worth reviewing your holdings at least once a year.",
                 "Fees matter too: a 1% annual fee compounds into a big drag over decades.",
                 "Writing down your target allocation makes it easier to stick to a plan.",
                 "Retirement accounts and taxable accounts can be looked at together as one portfolio.")


def divers_weighted(rng: random.Random) -> Item:
    w, rs, rb = rng.choice((0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)), draw_rate(rng, 6.0, 10.0), draw_rate(rng, 2.0, 5.0)
    x = rng.randrange(50, 2000) * 100
    er = w * rs + (1 - w) * rb
    q = rng.choice((f"If I put {pct(w, 0)} of {dollars(x)} in stocks expected to return {pct(rs)} and the rest in "
                    f"bonds expected to return {pct(rb)}, what's my expected return?",
                    f"What's the expected return of {pct(w, 0)} stocks and {pct(1 - w, 0)} bonds if stocks return "
                    f"{pct(rs)} and bonds {pct(rb)}? I have {dollars(x)}."))
    work = f"{dec(w)} × {pct(rs)} + {dec(1 - w)} × {pct(rb)}"
    chosen = [f"It's the weighted average: {work} = {pct(er)}, or about {money(x * er)} in a typical year."]
    chosen += maybe(rng, 0.6, "These are expectations, not promises; the stock part can lose money in any given year.")
    rejected = {
        "unweighted": [f"Average the two: ({pct(rs)} + {pct(rb)}) / 2 = {pct((rs + rb) / 2)}, or "
                       f"{money(x * (rs + rb) / 2)} a year."],
        "slip": [f"It's the weighted average: {work} = {pct(e := slip(rng, er, pct))}, or about {money(x * e)} a "
                 f"year."],
        "overconfident": [f"It's the weighted average, {pct(er)}.", f"Because the mix is diversified, you're "
                                                                   f"guaranteed to earn at least {money(x * er)} "
                                                                   f"every year."],
    }
    return Item(q, chosen, rejected, list(DIVERS_EXTRAS))


def divers_rebalance(rng: random.Random) -> Item:
    total = rng.randrange(200, 5000) * 100
    target = rng.choice((0.5, 0.6, 0.7, 0.8))
    cur = target + rng.choice((0.05, 0.06, 0.08, 0.1, 0.12, 0.15))
    q = rng.choice((f"My {dollars(total)} portfolio drifted to {pct(cur, 0)} stocks from {an(pct(target, 0))} target. "
                    f"How much should I sell to rebalance?",
                    f"I want {pct(target, 0)} stocks but I'm at {pct(cur, 0)} of {dollars(total)}. How much stock "
                    f"do I sell?"))
    sell = total * (cur - target)
    chosen = [f"Target stock value = {pct(target, 0)} × {dollars(total)} = {money(total * target)}; you hold "
              f"{money(total * cur)}, so sell about {money(sell)} of stock and move it to bonds."]
    chosen += maybe(rng, 0.6, "In a taxable account that can trigger capital gains, so redirecting new contributions "
                              "or rebalancing inside tax-advantaged accounts may be cheaper.")
    rejected = {
        "pct_of_holding": [f"Sell {pct(cur - target, 0)} of your stocks: {pct(cur - target, 0)} × "
                           f"{money(total * cur)} = {money(total * cur * (cur - target))}."],
        "slip": [f"Target stock value = {pct(target, 0)} × {dollars(total)} = {money(total * target)}; you hold "
                 f"{money(total * cur)}, so sell about {money(slip(rng, sell, money))} of stock."],
        "momentum": ["Don't rebalance. Stocks that have been going up will keep going up, so selling winners just "
                     "costs you returns."],
        "vague": ["Rebalancing is about getting back to your target mix."] + some(rng, VAGUE["advice"], 0, 2),
    }
    return Item(q, chosen, rejected, list(DIVERS_EXTRAS))


def divers_concentration(rng: random.Random) -> Item:
    v, f, d = rng.randrange(50, 3000) * 100, rng.choice((0.4, 0.5, 0.6, 0.7, 0.8, 0.9)), rng.choice((0.3, 0.4, 0.5))
    q = rng.choice((f"About {pct(f, 0)} of my {dollars(v)} portfolio is my employer's stock. Is that a problem?",
                    f"I hold {pct(f, 0)} of my {dollars(v)} in my company's shares. Should I worry?"))
    loss = v * f * d
    chosen = [f"Yes, that's a lot of concentration. If the stock fell {pct(d, 0)}, you'd lose about {money(loss)}, "
              f"{pct(f * d, 0)} of your portfolio, possibly just when your job is at risk too."]
    chosen += maybe(rng, 0.7, "Many planners suggest keeping any single stock to around 10% or less; you could sell "
                              "gradually, mind taxes and blackout windows, and move the proceeds into broad funds.")
    rejected = {
        "insider": ["No problem. You know your company better than any outside investor, so holding it is actually "
                    "lower risk than an index fund."],
        "concentration_wins": ["Keep it. Diversification is just protection against ignorance, and concentrated "
                               "portfolios always outperform in the long run."],
        "slip": [f"Yes, that's a lot of concentration. If the stock fell {pct(d, 0)}, you'd lose about "
                 f"{money(v * d)}, which is why most planners suggest trimming it."],
        "vague": ["It's common to own some company stock."] + some(rng, VAGUE["advice"], 1, 3),
    }
    return Item(q, chosen, rejected, list(DIVERS_EXTRAS))


def divers_sector(rng: random.Random) -> Item:
    k, x, d = rng.randint(5, 15), rng.randrange(50, 2000) * 100, rng.choice((0.25, 0.3, 0.35, 0.4))
    sector = rng.choice(("tech", "bank", "energy", "biotech"))
    q = rng.choice((f"I own {k} different {sector} stocks worth {dollars(x)} in total. Am I diversified?",
                    f"Is a portfolio of {k} {sector} stocks diversified enough? It's about {dollars(x)}."))
    chosen = [f"Not really. Stocks in one sector tend to move together, so a {sector} sell-off of {pct(d, 0)} could "
              f"take your {dollars(x)} down to about {money(x * (1 - d))} even if every company is sound."]
    chosen += maybe(rng, 0.6, "Adding other sectors, international stocks and bonds, or simply a broad index fund, "
                              "spreads that risk.")
    rejected = {
        "count_enough": [f"Yes. Owning {k} stocks is plenty; research shows that 10 or more stocks eliminate "
                         f"nearly all investment risk."],
        "overconfident": [f"{sector.capitalize()} stocks are where the growth is, so concentrating there is the smart "
                          f"move; other sectors just drag down returns."],
        "vague": ["Diversification means different things to different people."] + some(rng, VAGUE["advice"], 1, 3),
    }
    return Item(q, chosen, rejected, list(DIVERS_EXTRAS))


# =============================================================================================== risk

RISK_EXTRAS = ("Whatever you decide, keep records of every transaction for tax purposes.",
               "It helps to write down your goals and time horizon before making a move.",
               "Check any platform's fees before you send money.",
               "Make sure you understand exactly what you're buying before you buy it.")


def risk_emergency_crypto(rng: random.Random) -> Item:
    k = rng.randint(3, 8)
    monthly = rng.randrange(15, 60) * 100
    e = k * monthly
    q = rng.choice((f"I have {dollars(e)} in my emergency fund, about {k} months of expenses. Should I put it in "
                    f"crypto so it grows faster?",
                    f"Is it smart to keep my {dollars(e)} emergency fund in Bitcoin instead of a savings account?"))
    left = e * 0.4
    chosen = ["I wouldn't. An emergency fund has to be there at full value when something goes wrong, and crypto has "
              "fallen more than 50% in past downturns.",
              f"If yours fell 60% just as you lost a job, {dollars(e)} would be about {money(left)}, roughly "
              f"{left / monthly:.1f} months of expenses instead of {k}."]
    chosen += maybe(rng, 0.6, "Keep it in a high-yield savings account or money market fund, and use a small slice of "
                              "money you won't need if you want crypto exposure.")
    rejected = {
        "all_in": ["Yes. Crypto has outperformed every other asset over the long run, so your emergency fund will "
                   "grow much faster there.", "Just buy and hold, and you'll be fine."],
        "fdic": ["It's safe as long as you use a major exchange, since balances there are FDIC-insured up to "
                 "$250,000."],
        "half": [f"Put half in Bitcoin. If it doubles, your fund covers {k * 1.5:.1f} months instead of {k}, and the "
                 f"savings half protects you."],
        "vague": ["Crypto can be volatile, but it has also made some people a lot of money."]
        + some(rng, VAGUE["advice"], 1, 3),
    }
    return Item(q, chosen, rejected, list(RISK_EXTRAS))


def risk_guaranteed(rng: random.Random) -> Item:
    weekly = rng.random() < 0.5
    w = draw_rate(rng, 1.0, 5.0, 0.5) if weekly else draw_rate(rng, 5.0, 20.0, 1.0)
    periods, unit = (52, "week") if weekly else (12, "month")
    x = rng.randrange(10, 500) * 100
    ann = (1 + w) ** periods - 1
    q = rng.choice((f"Someone online is offering a guaranteed {pct(w)} return every {unit}. Should I invest "
                    f"{dollars(x)}?",
                    f"A crypto trading group promises {pct(w)} per {unit}, guaranteed. Is it worth putting "
                    f"{dollars(x)} in?"))
    chosen = [f"That's a red flag. {pct(w)} a {unit} compounds to about {pct(ann, 0)} a year ((1 + {dec(w)})^"
              f"{periods} − 1), which no legitimate investment can guarantee.",
              "Guaranteed high returns, pressure to act fast and paying early investors with new money are hallmarks "
              "of a Ponzi scheme."]
    chosen += maybe(rng, 0.6, "Don't send money; check the seller's registration with your regulator (in the US, "
                              "the SEC or FINRA BrokerCheck) and report the offer.")
    rejected = {
        "test_small": [f"Start with a small amount to test it. If the payouts arrive, you'll know it's legitimate and "
                       f"can add the rest of your {dollars(x)}."],
        "endorse": [f"At {pct(w)} a {unit}, {dollars(x)} would grow to {money(x * (1 + ann))} in a year: "
                    f"(1 + {dec(w)})^{periods} − 1 ≈ {pct(ann, 0)}.",
                    "Since it's guaranteed, that's a great opportunity."],
        "vague": ["Returns like that are possible in some markets."] + some(rng, VAGUE["advice"], 1, 3),
    }
    return Item(q, chosen, rejected, list(RISK_EXTRAS))


def risk_leverage(rng: random.Random) -> Item:
    x, lev = rng.randrange(10, 500) * 100, rng.choice((3, 5, 10, 20))
    d, g = rng.choice((0.05, 0.1, 0.15, 0.2)), rng.choice((0.03, 0.05, 0.08))
    q = rng.choice((f"I have {dollars(x)}. Should I trade with {lev}x leverage to boost my returns?",
                    f"Is {lev}x leverage a good way to grow {dollars(x)} faster?"))
    exposure, loss = x * lev, x * lev * d
    worst = (f"{an(pct(d, 0))} drop would cost {money(loss)}, more than you put in" if loss > x else
             f"{an(pct(d, 0))} drop would cost {money(loss)}")
    chosen = [f"Be very careful. At {lev}x you control {money(exposure)}, so {an(pct(1 / lev, 1))} move against you "
              f"wipes out your whole {dollars(x)}, and {worst}."]
    chosen += maybe(rng, 0.6, "Leverage magnifies losses exactly as much as gains, and margin calls can force you to "
                              "sell at the worst time.")
    rejected = {
        "upside_only": [f"Leverage is how professionals make money. At {lev}x, {an(pct(g, 0))} gain becomes "
                        f"{pct(g * lev, 0)}, or {money(x * lev * g)} on your {dollars(x)}."],
        "stop_loss": ["Yes, just set a stop-loss. It guarantees you can never lose more than 2%, so the leverage is "
                      "only upside."],
        "vague": ["Leverage can boost returns, but it also has some risk."] + some(rng, VAGUE["advice"], 1, 3),
    }
    return Item(q, chosen, rejected, list(RISK_EXTRAS))


def risk_card_vs_invest(rng: random.Random) -> Item:
    b, a, e = rng.randrange(20, 300) * 100, draw_rate(rng, 18.0, 29.0), draw_rate(rng, 6.0, 10.0, 0.5)
    q = rng.choice((f"I have {dollars(b)} on a credit card at {pct(a)} APR. Should I pay it off or invest the money "
                    f"for an expected {pct(e)} a year?",
                    f"Pay off {dollars(b)} of credit card debt at {pct(a)}, or invest it and hope for {pct(e)}?"))
    chosen = [f"Pay off the card first. Clearing it is effectively a guaranteed {pct(a)} return: the balance costs "
              f"about {money(b * a)} a year in interest, while investing {dollars(b)} at {pct(e)} might earn "
              f"{money(b * e)}, and that isn't guaranteed."]
    chosen += maybe(rng, 0.5, "Keep a small emergency cushion so you don't end up back on the card.")
    rejected = {
        "invest": [f"Invest it. Markets average about {pct(e)} a year and your money compounds, while card interest "
                   f"is just a fixed cost you can pay down later."],
        "minimum": ["Just make the minimum payments; they're designed to keep the interest manageable, and you keep "
                    "your cash working in the market."],
        "slip": [f"Pay off the card first. The balance costs about {money(slip(rng, b * a / 12, money))} a year in "
                 f"interest at {pct(a)}, while investing might earn {money(b * e)}."],
        "vague": ["Both paying down debt and investing are good habits."] + some(rng, VAGUE["advice"], 1, 3),
    }
    return Item(q, chosen, rejected, list(RISK_EXTRAS))


def risk_all_in(rng: random.Random) -> Item:
    age, b = rng.randint(25, 62), rng.randrange(100, 8000) * 100
    what = rng.choice(("a single hot tech stock", "one meme stock", "a small biotech company", "a new cryptocurrency"))
    q = rng.choice((f"I'm {age} with {dollars(b)} in my retirement account. Should I move all of it into {what}?",
                    f"Would it be smart to put my whole {dollars(b)} retirement balance into {what}? I'm {age}."))
    chosen = [f"I'd strongly advise against it. Putting everything in {what} is one concentrated bet that can lose "
              f"most of its value and never recover: a 70% drop would leave you {money(b * 0.3)} with "
              f"{max(65 - age, 3)} or so years to go."]
    chosen += maybe(rng, 0.6, "If you want to speculate, cap it at a small share you can afford to lose and keep the "
                              "rest in diversified funds.")
    rejected = {
        "yolo": [f"Yes, go for it. At {age} time is on your side, so short-term risk doesn't matter and a big winner "
                 f"could set you up for life."],
        "protected": ["Retirement accounts are protected, so you can't lose money inside them; it's a safe place to "
                      "take big swings."],
        "vague": [f"Lots of people have made money with {what}."] + some(rng, VAGUE["advice"], 1, 3),
    }
    return Item(q, chosen, rejected, list(RISK_EXTRAS))


def risk_heloc(rng: random.Random) -> Item:
    h, r, d = rng.randrange(20, 300) * 1000, draw_rate(rng, 6.0, 10.0), rng.choice((0.2, 0.3, 0.4))
    q = rng.choice((f"Should I take {an(dollars(h))} home equity loan at {pct(r)} to invest in stocks?",
                    f"My bank will lend me {dollars(h)} against my house at {pct(r)}. Good idea to put it in the "
                    f"market?"))
    chosen = [f"It's risky. You'd pay about {money(h * r)} a year in interest no matter what, and if stocks fell "
              f"{pct(d, 0)} you'd hold {money(h * (1 - d))} but still owe {dollars(h)}, with your home as collateral."]
    chosen += maybe(rng, 0.5, f"Stocks have beaten {pct(r)} in many periods, but not reliably, so most people are "
                              f"better off investing from income instead.")
    rejected = {
        "free_money": [f"Yes. Stocks return more than {pct(r)} over time, so it's basically free money, and "
                       f"your house keeps appreciating either way."],
        "vague": ["Home equity can be a useful tool."] + some(rng, VAGUE["advice"], 1, 3),
        "slip": [f"It's risky. You'd pay about {money(h * r / 12)} a year in interest, and if stocks fell "
                 f"{pct(d, 0)} you'd still owe the full {dollars(h)}."],
    }
    return Item(q, chosen, rejected, list(RISK_EXTRAS))


# =============================================================================================== definitions

# name used in questions, the word itself, correct definitions, wrong/hallucinated definitions, neutral extras
TERMS = (
    ("a bond", "bond",
     ("A bond is a loan you make to a government or company: it pays interest (the coupon) on a schedule and repays "
      "the face value at maturity. Prices move opposite to interest rates, and you can lose money if the issuer "
      "defaults or you sell after rates rise.",),
     ("A bond is a share of ownership in a company that pays a fixed dividend. Because the payment is fixed, bond "
      "prices don't change with interest rates.",
      "A bond is a government-insured savings product: the FDIC covers bonds up to $250,000, so you can't lose "
      "money."),
     ("Bonds are often grouped by issuer: government, municipal and corporate.",)),
    ("an ETF", "ETF",
     ("An ETF (exchange-traded fund) holds a basket of securities, often tracking an index, and trades on an exchange "
      "throughout the day at market prices. It charges an annual expense ratio and isn't insured against losses.",),
     ("An ETF is a fund you can only buy or sell once a day, at the closing price.",
      "An ETF is a government-backed savings fund, so its value can't fall below what you paid."),
     ("ETFs and mutual funds can hold the same kinds of assets; the main difference is how they trade.",)),
    ("a mutual fund", "mutual fund",
     ("A mutual fund pools money from many investors into a professionally managed portfolio. Shares are bought and "
      "sold once a day at the fund's net asset value (NAV), calculated after the market closes.",),
     ("A mutual fund trades all day on an exchange like a stock, with prices changing minute by minute.",
      "A mutual fund is a fund that guarantees your principal, because losses are shared among all investors."),
     ("Some mutual funds are actively managed and others track an index.",)),
    ("an index fund", "index fund",
     ("An index fund tries to match the return of a market index, such as the S&P 500, by holding its securities. "
      "Because it doesn't pick stocks, costs are usually low, but it falls when the index falls.",),
     ("An index fund picks the best performers in an index so it can beat the market.",
      "An index fund can't lose value because it owns the whole market."),
     ("Index funds come as both ETFs and mutual funds.",)),
    ("bond yield", "yield",
     ("Yield is the income an investment pays as a percentage of its price. For a bond, current yield is the annual "
      "coupon divided by the current price, so it rises when the price falls.",),
     ("Yield is always the same as a bond's coupon rate, whatever the bond's price.",
      "Yield is the total profit you made on a bond when you sold it."),
     ("Yield to maturity also counts the gain or loss from buying above or below face value.",)),
    ("duration", "duration",
     ("Duration measures how sensitive a bond's price is to interest-rate changes, in years. A rough rule: the price "
      "changes by about −duration × the change in yield, so longer duration means more rate risk.",),
     ("Duration is simply the time left until a bond matures.",
      "Duration measures how long a company has been issuing bonds; higher duration means a safer issuer."),
     ("For a zero-coupon bond, duration equals its time to maturity; coupons make it shorter.",)),
    ("liquidity", "liquidity",
     ("Liquidity is how quickly and cheaply you can turn an asset into cash without moving its price much. Cash and "
      "large-company stocks are very liquid; real estate and private investments are not.",),
     ("Liquidity is how profitable an asset is: the more it earns, the more liquid it is.",
      "Liquidity refers to how much debt a company has; real estate is one of the most liquid assets because "
      "everyone needs housing."),
     ("Liquidity matters most when you may need the money on short notice.",)),
    ("a dividend", "dividend",
     ("A dividend is a payment a company makes to shareholders, usually in cash out of profits. It isn't guaranteed: "
      "the board can raise, cut or suspend it.",),
     ("A dividend is guaranteed interest that a company is legally required to pay on its shares.",
      "A dividend is the increase in a stock's price over a year."),
     ("Many companies pay dividends quarterly.",)),
    ("an expense ratio", "expense ratio",
     ("An expense ratio is a fund's annual operating cost, expressed as a percentage of your investment and taken out "
      "of the fund's returns.",),
     ("An expense ratio is a one-time fee charged when you first buy into a fund.",
      "An expense ratio is only charged in years when the fund makes money."),
     ("Index funds tend to have much lower expense ratios than actively managed funds.",)),
    ("market capitalization", "market cap",
     ("Market capitalization is a company's share price multiplied by its shares outstanding: the market value of all "
      "its stock.",),
     ("Market capitalization is a company's total annual revenue.",
      "Market capitalization is the amount of cash a company has in the bank."),
     ("Companies are often grouped as small-cap, mid-cap and large-cap by this measure.",)),
    ("the bid-ask spread", "bid-ask spread",
     ("The bid-ask spread is the gap between the highest price a buyer will pay (bid) and the lowest price a seller "
      "will accept (ask). It's an implicit trading cost, usually narrow for heavily traded securities.",),
     ("The bid-ask spread is the commission your broker charges on each trade.",
      "The bid-ask spread is the difference between a stock's high and low price for the day."),
     ("Limit orders let you control the price you pay inside the spread.",)),
    ("short selling", "short selling",
     ("Short selling means borrowing shares, selling them, and buying them back later to return, hoping the price "
      "falls. Because a price can keep rising, potential losses are unlimited.",),
     ("Short selling means selling a stock you own shortly after buying it.",
      "Short selling is a low-risk strategy, because the most you can lose is what you put in."),
     ("Short sellers also pay a fee to borrow the shares.",)),
    ("a call option", "call option",
     ("A call option gives the buyer the right, but not the obligation, to buy a stock at a set strike price until "
      "expiration. The buyer pays a premium and can lose all of it if the option expires worthless.",),
     ("A call option obligates you to buy 100 shares at the strike price when it expires.",
      "A call option is a guaranteed way to profit from a rising stock without any risk."),
     ("Most listed stock options cover 100 shares per contract.",)),
    ("a put option", "put option",
     ("A put option gives the buyer the right, but not the obligation, to sell a stock at the strike price until "
      "expiration, so it gains value when the stock falls.",),
     ("A put option gives you the right to buy a stock at a discount to its market price.",
      "A put option obligates the company to buy back your shares if the price falls."),
     ("Investors sometimes buy puts as insurance against a fall in stocks they own.",)),
    ("a stock split", "stock split",
     ("In a stock split a company gives shareholders more shares at a proportionally lower price, so the total value "
      "of your holding doesn't change.",),
     ("A stock split doubles the value of your investment, because you get twice as many shares.",
      "A stock split is when a company divides itself into two separate companies."),
     ("A reverse split does the opposite: fewer shares at a higher price.",)),
    ("dollar-cost averaging", "dollar-cost averaging",
     ("Dollar-cost averaging means investing a fixed amount at regular intervals regardless of price. It reduces the "
      "risk of bad timing but doesn't guarantee a profit or protect against a falling market.",),
     ("Dollar-cost averaging guarantees you buy at the lowest average price, so you can't lose money.",
      "Dollar-cost averaging means only buying when prices have dropped."),
     ("Automatic monthly contributions to a retirement plan are a common example.",)),
    ("a capital gain", "capital gain",
     ("A capital gain is the profit from selling an asset for more than its cost basis. In the US, gains on assets "
      "held a year or less are taxed as ordinary income; longer-held gains get lower long-term rates.",),
     ("A capital gain is taxed every year on the increase in value, even if you never sell.",
      "A capital gain is taxed at a flat 50%, however long you held the asset."),
     ("Losses can offset gains, and up to $3,000 a year of net losses can offset ordinary income.",)),
    ("a certificate of deposit", "CD",
     ("A certificate of deposit (CD) is a bank deposit that pays a fixed rate for a fixed term. Withdrawing early "
      "usually costs a penalty, and CDs at insured banks are covered by FDIC insurance up to the legal limits.",),
     ("A CD is a stock issued by a bank, so its value rises and falls with the market.",
      "A CD lets you withdraw anytime without a penalty, which makes it more flexible than a savings account."),
     ("Laddering CDs with different maturities keeps some money coming due regularly.",)),
    ("a money market fund", "money market fund",
     ("A money market fund is a mutual fund that invests in short-term, high-quality debt such as Treasury bills. It "
      "aims to keep a stable value but, unlike a bank deposit, it isn't FDIC-insured.",),
     ("A money market fund is FDIC-insured just like a savings account.",
      "A money market fund invests in fast-growing stocks to beat inflation."),
     ("Don't confuse it with a money market deposit account, which is a bank product.",)),
    ("a Treasury bill", "T-bill",
     ("A Treasury bill is short-term US government debt maturing in a year or less. It's sold at a discount and pays "
      "its full face value at maturity; the difference is your interest.",),
     ("A Treasury bill pays a coupon every month and matures in ten years.",
      "A Treasury bill is a bill you pay to the Treasury when you file your taxes late."),
     ("T-bill interest is exempt from state and local income tax.",)),
    ("beta", "beta",
     ("Beta measures how much a stock tends to move with the overall market: a beta of 1.5 means it has typically "
      "moved about 1.5 times as much as the market, in both directions.",),
     ("Beta measures a company's profitability compared with its competitors.",
      "A low-beta stock can't lose money when the market falls."),
     ("Beta is estimated from past prices, so it can change over time.",)),
    ("amortization", "amortization",
     ("Amortization is paying off a loan through regular payments that cover both interest and principal. Early "
      "payments are mostly interest; later ones are mostly principal.",),
     ("Amortization means each payment is split equally between interest and principal.",
      "Amortization means all the interest is charged at the end of the loan."),
     ("An amortization schedule lists the split of every payment.",)),
    ("collateral", "collateral",
     ("Collateral is an asset you pledge to secure a loan, such as a house for a mortgage. If you default, the lender "
      "can take it.",),
     ("Collateral is the interest rate you pay on a secured loan.",
      "Collateral is a co-signer's credit score that a lender uses instead of yours."),
     ("Secured loans usually carry lower rates than unsecured ones because of the collateral.",)),
    ("asset allocation", "asset allocation",
     ("Asset allocation is how you divide a portfolio among asset classes such as stocks, bonds and cash. It's the "
      "main driver of a portfolio's risk and return.",),
     ("Asset allocation means choosing which individual stocks to buy.",
      "Asset allocation is a fee your broker charges to manage your money."),
     ("Target-date funds shift their allocation toward bonds as the date approaches.",)),
    ("CPI", "CPI",
     ("The Consumer Price Index (CPI) tracks the average change over time in prices paid by urban consumers for a "
      "basket of goods and services, and it's the most common measure of inflation.",),
     ("CPI is the interest rate the Federal Reserve sets for banks.",
      "CPI measures how much consumers spend in total each year, not prices."),
     ("Core CPI leaves out food and energy, which swing a lot.",)),
)
DEF_QUESTIONS = ("What is {name}?", "Can you explain {name} in simple terms?", "What does '{word}' mean?",
                 "What's {name}, and how does it work?", "Explain {name} like I'm new to investing.",
                 "I keep seeing the term '{word}'. What is it?", "In plain English, what is {name}?")


def definition_example(rng: random.Random, word: str) -> str | None:
    """A worked example for terms that have one: every number drawn and computed here."""
    if word == "bond":
        face, c = rng.choice((1000, 5000, 10000)), draw_rate(rng, 2.0, 7.0)
        return f"For example, {an(dollars(face))} bond with {an(pct(c))} coupon pays {money(face * c)} a year."
    if word == "yield":
        c, price = draw_rate(rng, 2.0, 7.0), rng.randrange(850, 1150, 5)
        return (f"For example, a $1,000 bond paying {an(pct(c))} coupon ({money(1000 * c)} a year) and priced at "
                f"{dollars(price)} has a current yield of {pct(1000 * c / price)}.")
    if word == "duration":
        dur, dy = rng.randint(3, 15), rng.choice((0.005, 0.01, 0.02))
        return (f"For example, with a duration of {dur} years, {an(pct(dy))} rise in rates would cut the price by "
                f"roughly {pct(dur * dy, 1)}.")
    if word == "expense ratio":
        x, er = rng.randrange(10, 500) * 100, rng.choice((0.0003, 0.001, 0.005, 0.0075, 0.01))
        return (f"For example, {dollars(x)} in a fund with {an(pct(er))} expense ratio costs about {money(x * er)} "
                f"a year.")
    if word == "market cap":
        price, shares = rng.randrange(500, 40000) / 100, rng.randrange(10, 900) * 1_000_000
        return (f"For example, {shares:,} shares at {money(price)} gives a market cap of {dollars(price * shares)}.")
    if word == "stock split":
        k, shares, price = rng.choice((2, 3, 4, 5)), rng.randrange(10, 500), rng.randrange(100, 900)
        return (f"For example, in a {k}-for-1 split, {shares} shares at {dollars(price)} become {shares * k} shares "
                f"at {money(price / k)}, still worth {dollars(shares * price)}.")
    if word == "T-bill":
        face, price = 1000, rng.randrange(9500, 9950) / 10
        return (f"For example, buying a $1,000 bill for {money(price)} earns {money(face - price)}, or "
                f"{pct((face - price) / price)} over the bill's term.")
    return None


def gen_definitions(rng: random.Random) -> Item:
    name, word, good, bad, extras = rng.choice(TERMS)
    q = rng.choice(DEF_QUESTIONS).format(name=name, word=word)
    example = definition_example(rng, word)
    chosen = [rng.choice(good)]
    if example and rng.random() < 0.6:
        chosen.append(example)
    rejected = {f"wrong_{i}": [b] for i, b in enumerate(bad)}
    rejected["vague"] = [f"'{word[0].upper() + word[1:]}' is an important financial term that's used in a lot of "
                         f"different ways."] + some(rng, VAGUE["term"], 1, 2)
    return Item(q, chosen, rejected, list(extras) + ([example] if example else []))


# =============================================================================================== assembly

CATEGORIES: dict[str, tuple[Callable[[random.Random], Item], ...]] = {
    "interest": (interest_compound, interest_simple, interest_apy, interest_continuous, interest_doubling),
    "loans": (loans_payment, loans_payment, loans_first_payment, loans_compare_terms),
    "ratios": (ratios_gross_margin, ratios_net_margin, ratios_pe, ratios_current, ratios_debt_to_equity),
    "returns": (returns_roi, returns_cagr, returns_annualise, returns_sequence),
    "inflation": (inflation_real, inflation_purchasing_power, inflation_future_cost),
    "tax": (tax_equivalent_yield, tax_after_tax, tax_compare, tax_early_withdrawal),
    "diversification": (divers_weighted, divers_rebalance, divers_concentration, divers_sector),
    "risk": (risk_emergency_crypto, risk_guaranteed, risk_leverage, risk_card_vs_invest, risk_all_in, risk_heloc),
    "definitions": (gen_definitions,),
}
OPENERS = {"risk": OPENERS_ADVICE, "diversification": OPENERS_ADVICE, "definitions": OPENERS_DEF}
LEAD_INS = {  # generic enough to fit every question of the category
    "interest": ("I'm trying to understand how interest works.", "I have a question about interest rates.",
                 "I'm comparing a few accounts and want to get the math right."),
    "loans": ("I'm shopping for a loan and want to understand the numbers.", "I'm comparing loan offers.",
              "I'm trying to get a handle on what my borrowing really costs."),
    "ratios": ("I'm looking at a company's financial statements.", "I'm studying for a finance exam.",
               "I'm learning how to read financial ratios."),
    "returns": ("I've been tracking my investments.", "I want to know how well my money has actually done.",
                "I'm trying to measure some investment returns properly."),
    "inflation": ("Prices seem to keep going up.", "I'm planning for the long term.",
                  "I'm worried about inflation eating my savings."),
    "tax": ("I'm trying to figure out what I actually keep after taxes.", "I have a tax question about my money.",
            "Tax season has me thinking about my investments."),
    "diversification": ("I'm reviewing my portfolio.", "I want to make sure I'm not taking on too much risk.",
                        "I'm new to investing."),
    "risk": ("I want to grow my money faster.", "I'm trying to make a smart money decision.",
             "I'm feeling behind on saving."),
    "definitions": ("I'm new to investing and keep seeing unfamiliar terms.",
                    "I'm trying to learn some finance basics.", "My bank's app uses a lot of jargon."),
}
ACKS = ("Happy to help. What would you like to know?", "Sure, what's your question?",
        "Of course. What are the details?", "Glad to help. What are you working on?",
        "Sounds good. What would you like to figure out?")


def make_prompt(rng: random.Random, category: str, question: str) -> str:
    if rng.random() < MULTI_TURN_P:
        return (f"User: {rng.choice(LEAD_INS[category])}\nAssistant: {rng.choice(ACKS)}\n"
                f"User: {question}\nAssistant:")
    return f"User: {question}\nAssistant:"


def render(rng: random.Random, sentences: list[str], openers: tuple[str, ...]) -> str:
    """' ' + optional opener + sentences: responses start with one space, as in Anthropic-HH."""
    return " " + " ".join(maybe(rng, OPENER_P, rng.choice(openers)) + sentences)


def steer_length(rng: random.Random, chosen: str, rejected: str, extras: list[str]) -> str:
    """Decide per pair which side should be longer; lengthen the rejected answer with neutral extras if needed.

    Correct answers tend to be longer, which a reward model would learn as a shortcut. Here the rejected side is
    made the longer one in about 1 - CHOSEN_LONGER_TARGET of pairs (when the extras allow).
    """
    if rng.random() < CHOSEN_LONGER_TARGET:
        return rejected
    pool = [e for e in extras if e not in rejected]
    rng.shuffle(pool)
    while len(rejected) <= len(chosen) and pool:
        rejected += " " + pool.pop()
    return rejected


def generate(seed: int = DEFAULT_SEED, n: int = DEFAULT_N) -> list[dict[str, str]]:
    rng = random.Random(seed)
    names, weights = list(CATEGORY_WEIGHTS), list(CATEGORY_WEIGHTS.values())
    rows: list[dict[str, str]] = []
    seen_prompts: set[str] = set()
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 50 * n:
            raise RuntimeError(f"could only make {len(rows)} distinct pairs; lower --n")
        category = rng.choices(names, weights)[0]
        item = rng.choice(CATEGORIES[category])(rng)
        prompt = make_prompt(rng, category, item.question)
        if normalise(prompt) in seen_prompts:
            continue
        seen_prompts.add(normalise(prompt))
        openers = OPENERS.get(category, OPENERS_CALC)
        chosen_sentences = item.chosen + maybe(rng, 0.25, rng.choice(item.extras))
        chosen = render(rng, chosen_sentences, openers)
        kinds = rng.sample(sorted(item.rejected), min(rng.choice(REJECTS_PER_PROMPT), len(item.rejected)))
        done: set[str] = {normalise(chosen)}
        for kind in kinds:
            rejected = steer_length(rng, chosen, render(rng, item.rejected[kind], openers), item.extras)
            if normalise(rejected) in done:
                continue
            done.add(normalise(rejected))
            rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                         "id": f"fin-{len(rows) + 1:05d}", "category": category})
            if len(rows) == n:
                break
    return rows


# =============================================================================================== checks

TOKEN_RE = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def features(text: str) -> set[str]:
    """Surface features a shallow model could latch onto: every token, the first word, the first three words."""
    words = text.lower().split()
    return {f"tok:{t}" for t in TOKEN_RE.findall(text.lower())} | {f"first1:{' '.join(words[:1])}",
                                                                    f"first3:{' '.join(words[:3])}"}


def cue_accuracy(rows: list[dict[str, str]]) -> tuple[float, str]:
    """Best accuracy of a one-feature rule ('the answer having f is chosen' or its opposite; ties count 1/2)."""
    only_chosen, only_rejected = Counter(), Counter()
    cache: dict[str, set[str]] = {}  # a chosen answer is shared by all pairs of its prompt
    for row in rows:
        for side in ("chosen", "rejected"):
            if row[side] not in cache:
                cache[row[side]] = features(row[side])
        fc, fr = cache[row["chosen"]], cache[row["rejected"]]
        only_chosen.update(fc - fr)
        only_rejected.update(fr - fc)
    best, best_feature = 0.5, ""
    for f in sorted(set(only_chosen) | set(only_rejected)):
        acc = 0.5 + (only_chosen[f] - only_rejected[f]) / (2 * len(rows))
        if max(acc, 1 - acc) > best:
            best, best_feature = max(acc, 1 - acc), f
    return best, best_feature


def longer_chosen_fraction(rows: list[dict[str, str]]) -> float:
    return sum(len(r["chosen"]) > len(r["rejected"]) for r in rows) / len(rows)


def summary(rows: list[dict[str, str]]) -> dict[str, object]:
    acc, feature = cue_accuracy(rows)
    return {"pairs": len(rows), "prompts": len({r["prompt"] for r in rows}),
            "multi_turn_prompts": len({r["prompt"] for r in rows if r["prompt"].count("User: ") > 1}),
            "categories": dict(sorted(Counter(r["category"] for r in rows).items())),
            "longer_is_chosen": longer_chosen_fraction(rows), "best_cue_accuracy": acc, "best_cue": feature}


def problems(rows: list[dict[str, str]], info: dict[str, object]) -> list[str]:
    """Everything that must hold for the shipped file; `info` is summary(rows)."""
    out = []
    for row in rows:
        for side in ("chosen", "rejected"):
            if "{" in row[side] or "}" in row[side] or re.search(r"\b(None|nan|inf)\b", row[side]):
                out.append(f"{row['id']}: placeholder in {side}: {row[side][:80]!r}")
    if info["longer_is_chosen"] > MAX_LONGER_CHOSEN:
        out.append(f"longer answer is the chosen one in {info['longer_is_chosen']:.3f} of pairs")
    if info["best_cue_accuracy"] > MAX_CUE_ACCURACY:
        out.append(f"feature {info['best_cue']!r} alone separates pairs with accuracy {info['best_cue_accuracy']:.3f}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"random seed (default {DEFAULT_SEED})")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help=f"number of pairs (default {DEFAULT_N})")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output JSONL (default %(default)s)")
    args = parser.parse_args(argv)
    rows = generate(args.seed, args.n)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    info = summary(rows)
    print(f"wrote {args.out}: {info['pairs']} pairs, {info['prompts']} prompts "
          f"({info['multi_turn_prompts']} multi-turn)")
    print("per category: " + ", ".join(f"{k} {v}" for k, v in info["categories"].items()))
    print(f"longer answer is the chosen one: {info['longer_is_chosen']:.3f} (max {MAX_LONGER_CHOSEN})")
    print(f"best single-feature cue: {info['best_cue']} with accuracy {info['best_cue_accuracy']:.3f} "
          f"(max {MAX_CUE_ACCURACY})")
    bad = problems(rows, info)
    for line in bad:
        print(f"check failed: {line}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
