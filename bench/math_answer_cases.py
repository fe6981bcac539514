"""A generator of realistic MATH-style (gold solution, model rationale) pairs, for measuring answer checkers.

There is no dataset hub here, so the pairs are written from the shapes MATH
answers take (integers with thousands separators, fractions, radicals,
multiples of pi, polynomials, factored forms, intervals, points, sets,
degrees, percentages, money, units, choices, equations, matrices, bases) and
the ways models spell them: the gold's own spelling, an equivalent one
(``\\dfrac12``, ``0.5``, ``11.25`` for ``\\frac{45}{4}``, reordered factors,
``2\\pi\\text{ m}``, ``50{,}000``), or a wrong one, inside rationales that box
the answer, state it on a final "The answer is" line (plain or Minerva's
``Final Answer: … I hope it is correct.``), or only leave it in the last
formula. Each catalogue entry is (gold, equivalent spellings, wrong answers).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

CATALOGUE: list[tuple[str, str, list[str], list[str]]] = [
    # kind, gold, equivalent spellings, wrong answers
    ("integer", "12", ["12.0", "12.00", "\\text{12}", "{12}"], ["13", "-12", "24"]),
    ("integer", "-7", ["-7.0", "- 7", "-{7}"], ["7", "-6"]),
    ("integer", "0", ["0.0", "-0"], ["1", "\\text{none}"]),
    ("integer", "1000", ["1{,}000", "1,000", "1000.0", "10^3"], ["100", "1001"]),
    ("integer", "50000", ["50,000", "50{,}000", "50\\,000", "5 \\cdot 10^4"], ["5000", "500000"]),
    ("integer", "1024", ["2^{10}", "2^10"], ["2^9", "1023"]),
    ("fraction", "\\frac{1}{2}", ["\\dfrac{1}{2}", "\\tfrac12", "0.5", "1/2", ".5", "\\frac{2}{4}", "\\frac 12"],
     ["\\frac{1}{3}", "2", "-\\frac{1}{2}"]),
    ("fraction", "\\frac{45}{4}", ["11.25", "\\dfrac{45}{4}", "45/4", "\\frac{90}{8}"], ["\\frac{45}{8}", "11.5"]),
    ("fraction", "-\\frac{3}{5}", ["\\frac{-3}{5}", "-0.6", "-\\dfrac35", "\\frac{3}{-5}"], ["\\frac{3}{5}", "-\\frac{5}{3}"]),
    ("fraction", "\\frac{7}{3}", ["2\\frac{1}{3}", "\\dfrac{7}{3}", "7/3"], ["\\frac{3}{7}", "2.3"]),
    ("fraction", "\\frac{1}{27}", ["\\dfrac{1}{27}", "27^{-1}", "\\frac{1}{3^3}"], ["\\frac{1}{9}", "27"]),
    ("radical", "2\\sqrt{5}", ["2\\sqrt5", "\\sqrt{20}", "2 \\sqrt{5}", "\\sqrt{5} \\cdot 2"], ["\\sqrt{10}", "4\\sqrt{5}"]),
    ("radical", "\\frac{\\sqrt{3}}{2}", ["\\frac{\\sqrt3}{2}", "\\frac{1}{2}\\sqrt{3}", "\\dfrac{\\sqrt{3}}{2}",
                                        "\\sqrt{\\frac{3}{4}}"], ["\\frac{\\sqrt{2}}{2}", "\\sqrt{3}"]),
    ("radical", "3\\sqrt{2}", ["3 \\sqrt 2", "\\sqrt{18}", "3\\sqrt{2}\\text{ units}"], ["2\\sqrt{3}", "\\sqrt{6}"]),
    ("radical", "\\sqrt[3]{2}", ["2^{1/3}", "\\sqrt[3]{2}"], ["\\sqrt{2}", "\\sqrt[3]{4}"]),
    ("pi", "2\\pi", ["2\\pi\\text{ m}", "2 \\pi", "\\pi \\cdot 2", "2\\pi \\text{ meters}"], ["\\pi", "4\\pi"]),
    ("pi", "16\\pi", ["16 \\pi", "16\\pi\\text{ square units}", "\\pi \\cdot 16"], ["8\\pi", "16"]),
    ("pi", "\\frac{\\pi}{3}", ["\\frac\\pi3", "\\dfrac{\\pi}{3}", "\\frac{1}{3}\\pi"], ["\\frac{\\pi}{6}", "60"]),
    ("polynomial", "6z^5+15z^4-22z^3-8z^2+17z-6",
     ["6z^5 + 15z^4 - 22z^3 - 8z^2 + 17z - 6", "15z^4+6z^5-22z^3-8z^2+17z-6", "-6+17z-8z^2-22z^3+15z^4+6z^5"],
     ["6z^5 - 11z^3 - 4z^2 + 13z - 6", "6z^5+15z^4-22z^3-8z^2+17z+6"]),
    ("polynomial", "x^2+7x+10", ["x^2 + 7x + 10", "10+7x+x^2", "(x+2)(x+5)"], ["x^2+10", "x^2+7x-10"]),
    ("factored", "(t+11)(t-11)", ["(t-11)(t+11)", "(t + 11)(t - 11)", "t^2-121"], ["(t-11)^2", "(t+11)^2"]),
    ("factored", "(2x-3)(x+4)", ["(x+4)(2x-3)", "\\left(2x-3\\right)\\left(x+4\\right)"], ["(2x+3)(x-4)"]),
    ("interval", "(-\\infty, 3]", ["(-\\infty,3]", "\\left(-\\infty, 3\\right]", "(- \\infty, 3 ]"],
     ["(-\\infty, 3)", "[3, \\infty)"]),
    ("interval", "[2,5)", ["[2, 5)", "\\left[2,5\\right)"], ["(2,5)", "[2,5]"]),
    ("point", "\\left( 3, \\frac{\\pi}{2} \\right)", ["(3,\\frac{\\pi}{2})", "(3, \\frac\\pi2)", "\\left(3,\\dfrac{\\pi}{2}\\right)"],
     ["(3, \\pi)", "(\\frac{\\pi}{2}, 3)"]),
    ("point", "(1,-2)", ["(1, -2)", "\\left(1,-2\\right)"], ["(-2,1)", "(1,2)"]),
    ("set", "1, 2, 3", ["1,2,3", "3, 2, 1", "\\{1, 2, 3\\}"], ["1, 2", "1, 2, 4"]),
    ("set", "-2, 5", ["5, -2", "-2,5", "x=-2, x=5"], ["2, -5", "-2"]),
    ("degrees", "90", ["90^\\circ", "90^{\\circ}", "90 \\text{ degrees}", "90^\\circ\\text{}"], ["45", "180"]),
    ("degrees", "30^\\circ", ["30", "30^{\\circ}", "30 ^\\circ"], ["60^\\circ", "150^\\circ"]),
    ("percent", "25", ["25\\%", "25 \\%", "25\\text{\\%}"], ["75\\%", "0.25\\%"]),
    ("money", "\\$5.40", ["5.40", "\\$5.4", "5.4", "\\$ 5.40"], ["\\$5.04", "540"]),
    ("decimal", "0.25", ["\\frac14", ".25", "0.250", "\\frac{1}{4}"], ["0.025", "2.5"]),
    ("decimal", "3.14", ["3.140", "\\frac{314}{100}"], ["\\pi", "3.1"]),
    ("units", "10", ["10\\text{ cm}", "10 \\text{cm}", "10\\text{ inches}", "10 \\mbox{ cm}"], ["100", "10\\sqrt{2}"]),
    ("units", "4", ["4\\text{ yd}^3", "4\\text{ cubic yards}", "4 \\text{ yd}^3"], ["108", "\\frac{4}{3}"]),
    ("choice", "\\text{(C)}", ["(C)", "\\text{C}", "C", "\\textbf{(C)}"], ["\\text{(B)}", "(D)"]),
    ("equation", "y = 2x + 3", ["y=2x+3", "y = 3 + 2x"], ["y = 2x - 3", "y = 3x + 2"]),
    ("equation", "x = 5", ["5", "x=5"], ["x = -5", "6"]),
    ("matrix", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", ["\\begin{pmatrix}1\\\\2\\end{pmatrix}",
                                                          "\\begin{pmatrix} 1 \\\\ 2 \\\\ \\end{pmatrix}"],
     ["\\begin{pmatrix} 2 \\\\ 1 \\end{pmatrix}"]),
    ("base", "1011_2", ["1011_{2}"], ["1101_2", "11_2"]),
    ("text", "\\text{Monday}", ["\\text{ Monday}", "Monday"], ["\\text{Tuesday}"]),
    ("expression", "\\frac{x+1}{x-1}", ["\\dfrac{x+1}{x-1}", "\\frac{1+x}{x-1}", "(x+1)/(x-1)"],
     ["\\frac{x-1}{x+1}", "\\frac{x+1}{x}"]),
    ("expression", "a^2 b^3", ["a^2b^3", "b^3a^2"], ["a^3b^2", "a^2 b^2"]),
    ("large", "\\frac{1}{1000000}", ["10^{-6}", "0.000001"], ["10^{-5}", "\\frac{1}{100000}"]),
]

SOLUTION_OPENERS = [
    "We use the given relation to simplify the expression step by step.",
    "Let $x$ be the unknown quantity. Substituting the given values gives $3x + 2 = 14$.",
    "By Vieta's formulas, $r + s = \\frac{5}{3}$ and $rs = -\\frac{7}{3}$.",
    "Since there are 3 feet in a yard, there are $3^3 = 27$ cubic feet in a cubic yard.",
    "Using the distance formula for each side, $AB = \\sqrt{(2-0)^2 + (5-1)^2} = 2\\sqrt{5}$.",
    "Completing the square, we rewrite the equation as $(x - 2)^2 + (y + 1)^2 = 9$.",
]
GOLD_TAILS = [
    "{opener} Therefore, the answer is $\\boxed{{{a}}}$.",
    "{opener} Thus, our final answer is $\\boxed{{{a}}}$.",
    "{opener} \\[\\boxed{{{a}}}.\\]",
]
BOXED = [
    "{opener} Therefore, the answer is $\\boxed{{{a}}}$.",
    "{opener} \\begin{{align*}}\nx &= 3 + 4 \\\\\n&= \\boxed{{{a}}}.\n\\end{{align*}}",
    "{opener} So our final answer is $\\boxed{{{a}}}$.",
    "{opener} Hence the value is \\[\\boxed{{{a}}}.\\]",
    "{opener} We first get $\\boxed{{7}}$, but that ignores one case; correcting it, the answer is $\\boxed{{{a}}}$.",
]
ANSWER_LINE = [
    "{opener} Therefore, the answer is ${a}$.",
    "{opener} So the answer is {a}.",
    "{opener}\nFinal Answer: The final answer is ${a}$. I hope it is correct.",
    "{opener} So, the final answer is: ${a}$",
]
NO_MARKER = [
    "{opener} This gives ${a}$.",
    "{opener} Simplifying, we get \\[{a}.\\]",
]


@dataclass(frozen=True)
class Case:
    kind: str
    relation: str  # same, equivalent or wrong
    style: str  # boxed, answer_line or no_marker
    gold_solution: str
    rationale: str


def cases(count: int, seed: int = 0) -> Iterator[Case]:
    """``count`` pairs: answers 40 % the gold's spelling, 30 % equivalent, 30 % wrong; styles about 88/8/4 %."""
    rng = random.Random(seed)
    for _ in range(count):
        kind, gold, equivalent, wrong = rng.choice(CATALOGUE)
        roll = rng.random()
        relation = "same" if roll < 0.4 else "equivalent" if roll < 0.7 else "wrong"
        answer = gold if relation == "same" else rng.choice(equivalent if relation == "equivalent" else wrong)
        roll = rng.random()
        style = "boxed" if roll < 0.88 else "answer_line" if roll < 0.96 else "no_marker"
        templates = {"boxed": BOXED, "answer_line": ANSWER_LINE, "no_marker": NO_MARKER}[style]
        opener = rng.choice(SOLUTION_OPENERS)
        rationale = rng.choice(templates).format(opener=opener, a=answer)
        gold_solution = rng.choice(GOLD_TAILS).format(opener=rng.choice(SOLUTION_OPENERS), a=gold)
        yield Case(kind, relation, style, gold_solution, rationale)
