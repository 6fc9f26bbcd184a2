"""``synthetic_science``: graded multiple-choice computations in the science task's format.

Every question needs a computation whose number of steps grows with the level:

====== ======================================================== ===================================
level  what it asks                                             example worked reasoning
====== ======================================================== ===================================
1      one step, numbers 2..12 (unit up-conversion, a * b, a/b) ``3 * 100 = 300``
2      one step, two-digit numbers or a decimal down-conversion  ``2500 / 1000 = 2.5``
3      two steps (convert then share, rate over minutes, +/-)    ``2 kg = 2000 g; 2000 / 4 = 500``
4      three steps (ratio with conversion, speed, density)       ``..; ..; ..``
5      four steps, larger numbers (tank balance, mol yield, mix)  ``..; ..; ..; ..``
====== ======================================================== ===================================

Distractors are the results of typical mistakes (a skipped step, a wrong conversion factor, the wrong
operation), so partial reasoning is led to a wrong option rather than to a random one. Levels 1..3 have some
2-choice questions (``TWO_CHOICE_PROB``) like SciKnowEval's mcq-2-choices; arithmetic is exact (``Fraction``).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from scsdpo_verl.tasks.science import extract_answer, mcq_options

SYSTEM_PROMPT = (
    "Pick the correct option. Reply as <reasoning>your steps</reasoning><answer>X</answer> "
    "where X is the option letter."
)
NUM_LEVELS = 5
TWO_CHOICE_PROB = {1: 0.3, 2: 0.2, 3: 0.1, 4: 0.0, 5: 0.0}

# (big unit, small unit, factor): 1 big = factor small
CONVERSIONS = (("m", "cm", 100), ("kg", "g", 1000), ("L", "mL", 1000), ("cm", "mm", 10), ("min", "s", 60),
               ("h", "min", 60), ("km", "m", 1000))
DECIMAL_CONVERSIONS = (("m", "cm", 100), ("kg", "g", 1000), ("L", "mL", 1000), ("km", "m", 1000),
                       ("cm", "mm", 10), ("g", "mg", 1000))
CONTAINERS = ("bag", "jar", "cup", "box")
SUBSTANCES = ("salt", "sugar", "acid")


@dataclass(frozen=True)
class SciQuestion:
    """A generated question before formatting: its stem, worked steps, answer and mistaken answers."""

    stem: str
    steps: tuple[str, ...]
    answer: Fraction
    mistakes: tuple[Fraction, ...]
    family: str


def fmt(x: Fraction | int) -> str:
    """Exact decimal text of ``x`` (integers without a point; at most 3 decimals are ever generated)."""
    x = Fraction(x)
    if x.denominator == 1:
        return str(x.numerator)
    text = f"{float(x):.3f}".rstrip("0").rstrip(".")
    if Fraction(text) != x:
        raise ValueError(f"{x} has no short decimal form")
    return text


def _q(stem: str, steps: list[str], answer, mistakes, family: str) -> SciQuestion:
    return SciQuestion(stem, tuple(steps), Fraction(answer), tuple(Fraction(m) for m in mistakes), family)


# ----------------------------------------------------------------------------------------- level 1: one step


def _convert_up(rng: random.Random) -> SciQuestion:
    big, small, factor = rng.choice(CONVERSIONS)
    a = rng.randint(2, 12)
    stem = rng.choice((f"How many {small} are in {a} {big}?", f"Convert {a} {big} to {small}."))
    answer = a * factor
    return _q(stem, [f"{a} * {factor} = {answer}"], answer, [answer // 10, answer * 10, a, a + factor], "convert")


def _product(rng: random.Random) -> SciQuestion:
    a, b, box = rng.randint(2, 12), rng.randint(2, 12), rng.choice(CONTAINERS)
    unit = rng.choice(("g", "mL"))
    stem = f"One {box} holds {a} {unit}. How many {unit} do {b} of them hold?"
    return _q(stem, [f"{a} * {b} = {a * b}"], a * b, [a + b, a * b + a, a * (b - 1), a * b + 10], "product")


def _share(rng: random.Random) -> SciQuestion:
    a, b, unit = rng.randint(2, 12), rng.randint(2, 12), rng.choice(("g", "mL"))
    total = a * b
    stem = f"{total} {unit} is split into {b} equal parts. How many {unit} is each part?"
    return _q(stem, [f"{total} / {b} = {a}"], a, [total - b, a + 1, a - 1, b + a], "share")


def _speed(rng: random.Random) -> SciQuestion:
    v, t = rng.randint(2, 12), rng.randint(2, 12)
    stem = f"A cart moves {v} m each s. How many m does it move in {t} s?"
    return _q(stem, [f"{v} * {t} = {v * t}"], v * t, [v + t, v * t + v, v * (t - 1), v * t - 1], "speed")


# ----------------------------------------------------------------------------------------- level 2: one step, harder


def _convert_down(rng: random.Random) -> SciQuestion:
    big, small, factor = rng.choice(DECIMAL_CONVERSIONS)
    a = rng.randint(11, 99) * factor // 10  # one decimal in the answer, e.g. 2500 g -> 2.5 kg
    answer = Fraction(a, factor)
    stem = rng.choice((f"How many {big} are in {a} {small}?", f"Convert {a} {small} to {big}."))
    return _q(stem, [f"{a} / {factor} = {fmt(answer)}"], answer, [answer * 10, answer / 10, a * factor, a],
              "convert")


def _product2(rng: random.Random) -> SciQuestion:
    a, b, box = rng.randint(13, 99), rng.randint(3, 9), rng.choice(CONTAINERS)
    stem = f"One {box} holds {a} g. How many g do {b} of them hold?"
    return _q(stem, [f"{a} * {b} = {a * b}"], a * b, [a * b + 10, a * b - 10, a * (b - 1), a + b], "product")


def _share2(rng: random.Random) -> SciQuestion:
    a, b = rng.randint(12, 60), rng.randint(3, 9)
    total = a * b
    stem = f"{total} mL is poured equally into {b} cups. How many mL is in each cup?"
    return _q(stem, [f"{total} / {b} = {a}"], a, [a + 10, a - 10, total - b, a + b], "share")


# ----------------------------------------------------------------------------------------- level 3: two steps


def _convert_share(rng: random.Random) -> SciQuestion:
    a, b = rng.randint(2, 9), rng.choice((2, 4, 5, 8, 10, 20, 25, 40, 50))
    grams = a * 1000
    answer = Fraction(grams, b)
    stem = f"A {a} kg sample is split into {b} equal parts. How many g is each part?"
    steps = [f"{a} kg = {grams} g", f"{grams} / {b} = {fmt(answer)}"]
    return _q(stem, steps, answer, [answer / 10, answer * 10, Fraction(a * 100, b), grams * b], "convert_share")


def _rate_minutes(rng: random.Random) -> SciQuestion:
    r, m = rng.randint(2, 15), rng.randint(2, 9)
    seconds = m * 60
    stem = f"A pump moves {r} mL each s. How many mL does it move in {m} min?"
    steps = [f"{m} min = {seconds} s", f"{r} * {seconds} = {r * seconds}"]
    return _q(stem, steps, r * seconds, [r * m, r * m * 100, r * 60, r * seconds + r], "rate")


def _add_remove(rng: random.Random) -> SciQuestion:
    a, b = rng.randint(20, 99), rng.randint(10, 60)
    c = rng.randint(10, a + b - 5)
    answer = a + b - c
    stem = f"A jar holds {a} g. Then {b} g is added and {c} g is removed. How many g are left?"
    steps = [f"{a} + {b} = {a + b}", f"{a + b} - {c} = {answer}"]
    return _q(stem, steps, answer, [a + b + c, abs(a - b - c), a + b, a - c + 1], "balance")


# ----------------------------------------------------------------------------------------- level 4: three steps


def _ratio_mix(rng: random.Random) -> SciQuestion:
    p, q, w = rng.randint(2, 9), rng.choice((4, 5, 8, 10, 20, 25, 40, 50)), rng.randint(2, 9)
    substance = rng.choice(SUBSTANCES)
    grams = w * 1000
    parts = Fraction(grams, q)
    answer = parts * p
    stem = f"A mix has {p} g of {substance} per {q} g of water. How many g of {substance} go with {w} kg of water?"
    steps = [f"{w} kg = {grams} g", f"{grams} / {q} = {fmt(parts)}", f"{fmt(parts)} * {p} = {fmt(answer)}"]
    return _q(stem, steps, answer, [parts, answer / 10, answer * 10, Fraction(w * p * 100, q)], "ratio")


def _speed_convert(rng: random.Random) -> SciQuestion:
    v, t = 3 * rng.randint(1, 20), rng.randint(2, 12)
    metres = v * 1000
    per_min = Fraction(metres, 60)
    answer = per_min * t
    stem = f"A car goes {v} km each h. How many m does it go in {t} min?"
    steps = [f"{v} km = {metres} m", f"{metres} / 60 = {fmt(per_min)}", f"{fmt(per_min)} * {t} = {fmt(answer)}"]
    return _q(stem, steps, answer, [per_min, v * t, metres * t, answer / 10], "speed")


def _density(rng: random.Random) -> SciQuestion:
    d, v = rng.randint(2, 9), rng.randint(2, 12)
    ml, grams = v * 1000, v * 1000 * d
    stem = f"A liquid has {d} g in each mL. What is the mass of {v} L of it in kg?"
    steps = [f"{v} L = {ml} mL", f"{ml} * {d} = {grams} g", f"{grams} g = {d * v} kg"]
    return _q(stem, steps, d * v, [grams, d * v * 10, Fraction(d * v, 10), d + v], "density")


# ----------------------------------------------------------------------------------------- level 5: four steps


def _tank(rng: random.Random) -> SciQuestion:
    a, r, t, b = rng.randint(10, 50), 50 * rng.randint(1, 10), rng.randint(2, 20), rng.randint(1, 9)
    start, lost = a * 1000, r * t
    middle = start - lost
    answer = middle + b * 1000
    stem = f"A tank has {a} L. It loses {r} mL per min for {t} min, then gains {b} L. How many mL are in it?"
    steps = [f"{a} L = {start} mL", f"{r} * {t} = {lost}", f"{start} - {lost} = {middle}",
             f"{middle} + {b * 1000} = {answer}"]
    return _q(stem, steps, answer, [middle, middle + b, start + lost + b * 1000, start - r + b * 1000], "tank")


def _mol_yield(rng: random.Random) -> SciQuestion:
    m, mass, k = rng.randint(2, 9), rng.choice((2, 4, 5, 8, 10, 20, 25, 40, 50)), rng.randint(2, 4)
    grams = m * 1000
    mol_a = Fraction(grams, mass)
    made = mol_a * k
    lost = rng.randint(1, 9) * 5
    answer = made - lost
    stem = f"1 mol of X is {mass} g and makes {k} mol of Y. {m} kg of X is used and {lost} mol of Y is lost. " \
        "How many mol of Y are left?"
    steps = [f"{m} kg = {grams} g", f"{grams} / {mass} = {fmt(mol_a)}", f"{fmt(mol_a)} * {k} = {fmt(made)}",
             f"{fmt(made)} - {lost} = {fmt(answer)}"]
    return _q(stem, steps, answer, [made, mol_a - lost, made + lost, Fraction(m * k, mass) * 1000 / 10],
              "mol")


def _mix_split(rng: random.Random) -> SciQuestion:
    a, b, c, d = rng.randint(2, 9), 10 * rng.randint(2, 30), rng.randint(2, 9), 10 * rng.randint(2, 30)
    e = rng.choice((2, 4, 5, 10))
    first, second = a * b, c * d
    total = first + second
    answer = Fraction(total, e)
    stem = f"{a} bags of {b} g and {c} bags of {d} g are mixed and split into {e} equal parts. How many g is each?"
    steps = [f"{a} * {b} = {first}", f"{c} * {d} = {second}", f"{first} + {second} = {total}",
             f"{total} / {e} = {fmt(answer)}"]
    return _q(stem, steps, answer, [total, Fraction(b + d, e), Fraction(first, e), answer + 10], "mix")


FAMILIES: dict[int, tuple[Callable[[random.Random], SciQuestion], ...]] = {
    1: (_convert_up, _product, _share, _speed),
    2: (_convert_down, _product2, _share2),
    3: (_convert_share, _rate_minutes, _add_remove),
    4: (_ratio_mix, _speed_convert, _density),
    5: (_tank, _mol_yield, _mix_split),
}


def sample_question(level: int, rng: random.Random) -> SciQuestion:
    """One question of ``level`` (1..5), drawn with ``rng``."""
    return rng.choice(FAMILIES[level])(rng)


def pick_options(question: SciQuestion, n_options: int, rng: random.Random) -> tuple[list[str], int]:
    """Option texts (answer + ``n_options - 1`` distractors, shuffled) and the answer's position.

    Distractors come from the question's mistakes that are positive, short decimals and distinct from the
    answer; if too few survive, answer +/- small offsets fill up.
    """
    correct = fmt(question.answer)
    pool: list[str] = []
    for wrong in question.mistakes:
        try:
            text = fmt(wrong)
        except ValueError:
            continue
        if wrong > 0 and text != correct and text not in pool:
            pool.append(text)
    offset = 1
    while len(pool) < n_options - 1:
        for candidate in (question.answer + offset, question.answer - offset):
            text = fmt(candidate)
            if candidate > 0 and text != correct and text not in pool:
                pool.append(text)
        offset += 1
    options = [correct, *rng.sample(pool, n_options - 1)]
    rng.shuffle(options)
    return options, options.index(correct)


def answer_diagnosis(response: str, question: str, gold: str) -> dict[str, bool]:
    """Where a response to a synthetic science question went wrong: ``number_right`` (the last ``= N`` of its
    reasoning is the text of the correct option), ``letter_matches_number`` (its answer letter names the
    option whose text is that N: the lookup step, right or wrong number) and ``correct`` (the letter is
    ``gold``). ``question`` is the user message with its ``L: text`` option lines.
    """
    options = mcq_options(question)
    reasoning = response.split("</reasoning>")[0]
    results = re.findall(r"=\s*(-?[0-9][0-9.]*)", reasoning)
    number = results[-1].rstrip(".") if results else None
    letter = extract_answer(response) if "<answer>" in response else ""
    return {"number_right": number is not None and number == options.get(gold),
            "letter_matches_number": number is not None and options.get(letter) == number,
            "correct": letter == gold}


def _options_and_reasoning(solution: str, question: str, gold: str) -> tuple[dict[str, str], str, str]:
    """The question's options, the solution up to ``</reasoning>`` and the rest from it on (the two rewrites below),
    refusing a gold letter that is no option and a solution without ``</reasoning>``."""
    options = mcq_options(question)
    if gold not in options:
        raise ValueError(f"gold letter {gold!r} is not an option of the question (options {sorted(options)})")
    reasoning, close, rest = solution.partition("</reasoning>")
    if not close:
        raise ValueError(f"solution has no </reasoning>: {solution!r}")
    return options, reasoning, close + rest


def walk_options_solution(solution: str, question: str, gold: str) -> str:
    """``solution`` rewritten so that its reasoning ends by restating the option lines in order, up to and
    including the gold one: ``<reasoning>3 * 100 = 300; A: 30; B: 300</reasoning><answer>B</answer>``.

    An alternative worked-solution format (not the task's): the letter then follows from the line just written
    instead of a lookup across the prompt, the step the tiny models fail. ``bench/science_failures.py
    --continue-sft walk`` measures it against the task's own format (README, "Why science stays at its guessing
    rate"). ``question`` is the user message with its ``L: text`` lines.
    """
    options, reasoning, rest = _options_and_reasoning(solution, question, gold)
    letters = list(options)
    walk = "; ".join(f"{letter}: {options[letter]}" for letter in letters[:letters.index(gold) + 1])
    return f"{reasoning}; {walk}{rest}"


def tag_options_solution(solution: str, question: str, gold: str) -> str:
    """``solution`` rewritten so that its reasoning first restates every option line with its letter once more after
    the number, and ends by naming the gold letter after the result:
    ``<reasoning>A: 30 A; B: 300 B; 3 * 100 = 300 B</reasoning><answer>B</answer>``.

    An alternative worked-solution format (not the task's), the lookup turned around: in the prompt the letter comes
    before its number, so finding the letter of a number means attending back past it, which the tiny models did not
    learn (README); after the restatement the letter follows its number, and naming it after the result is copying
    the token that followed the same number earlier (an induction head's pattern). ``bench/science_failures.py
    --continue-sft tag`` measures it. ``question`` is the user message with its ``L: text`` lines.
    """
    options, reasoning, rest = _options_and_reasoning(solution, question, gold)
    opening, _, steps = reasoning.partition("<reasoning>")
    tagged = "; ".join(f"{letter}: {text} {letter}" for letter, text in options.items())
    return f"{opening}<reasoning>{tagged}; {steps} {gold}{rest}"
