"""verifiers.math against its grading policy (verifiers/README.md, "Math grading policy"), lines 1-16.

One test group per numbered line of the policy; the test names carry the line number. Lines 17-18 (hostile
input, infrastructure outcomes) are in test_verifiers_math_hostile.py; threads, Ray, batches, worker kills
and the CLI in test_verifiers_math_infra.py.
"""

import pytest

from verifiers.math import verify
from verifiers.verdict import Verdict


def boxed(answer: str, reference: str, **options) -> Verdict:
    return verify(f"Some working first.\nSo the final answer is $\\boxed{{{answer}}}$.", reference, **options)


def assert_grade(v: Verdict, score: float, status: str = "ok") -> None:
    assert (v.score, v.status) == (score, status), v


# 1. Only the text after the last </think> is graded; an unclosed <think> is no_answer.
@pytest.mark.parametrize(
    "completion, score, status",
    [
        (r"<think>maybe \boxed{3}</think> The answer is \boxed{5}", 1.0, "ok"),
        (r"<think>it is \boxed{5}</think> so \boxed{3}", 0.0, "ok"),
        (r"<think>a</think><think>b \boxed{3}</think>\boxed{5}", 1.0, "ok"),
        (r"reasoning started in the prompt</think>\boxed{5}", 1.0, "ok"),
        (r"<think>long reasoning, never finished \boxed{5}", 0.0, "no_answer"),
        (r"<think>\boxed{5}</think>", 0.0, "no_answer"),
        (r"\boxed{5}", 1.0, "ok"),
    ],
)
def test_policy_1_think(completion, score, status):
    assert_grade(verify(completion, "5"), score, status)


# 2. Extraction rules, tried in the order given; default strict ("boxed",).
@pytest.mark.parametrize(
    "completion, reference, extract, score, status",
    [
        ("The answer is 5.", "5", ("boxed",), 0.0, "no_answer"),
        ("#### 72", "72", ("boxed",), 0.0, "no_answer"),
        ("there are 3 cats and 42 dogs", "42", ("boxed",), 0.0, "no_answer"),
        (r"\fbox{5}", "5", ("boxed",), 1.0, "ok"),
        (r"\boxed {5}", "5", ("boxed",), 1.0, "ok"),
        (r"so \boxed 5 is it", "5", ("boxed",), 1.0, "ok"),
        (r"$\boxed{\frac{1}{2}}$", r"\frac12", ("boxed",), 1.0, "ok"),
        (r"$\boxed{\boxed{5}}$", "5", ("boxed",), 1.0, "ok"),
        (r"\boxed{\{1, 2\}}", r"\{1,2\}", ("boxed",), 1.0, "ok"),
        ("Janet has 72 eggs.\n#### 72", "72", ("gsm8k",), 1.0, "ok"),
        ("#### 1,234", "1234", ("gsm8k",), 1.0, "ok"),
        ("#### 71", "72", ("gsm8k",), 0.0, "ok"),
        ("The answer is 12.", "12", ("answer_is",), 1.0, "ok"),
        ("The answer is 3.5.", "3.5", ("answer_is",), 1.0, "ok"),
        (r"Answer: $\frac{1}{2}$", "0.5", ("answer_is",), 1.0, "ok"),
        ("**Answer:** 7", "7", ("answer_is",), 1.0, "ok"),
        ("Final Answer: The final answer is $5$. I hope it is correct.", "5", ("answer_is",), 1.0, "ok"),
        (r"The answer is $\boxed{8}$", "8", ("answer_is",), 1.0, "ok"),
        ("the answer is: x = 4\nmore text", "4", ("answer_is",), 1.0, "ok"),
        ("we get 3 then 42 apples", "42", ("last_number",), 1.0, "ok"),
        ("a total of 1,500.5 dollars", "1500.5", ("last_number",), 1.0, "ok"),
        ("no digits here", "4", ("last_number",), 0.0, "no_answer"),
        (r"\boxed{5} #### 6", "5", ("boxed", "gsm8k"), 1.0, "ok"),
        (r"\boxed{5} #### 6", "5", ("gsm8k", "boxed"), 0.0, "ok"),
        ("#### 6", "6", ("boxed", "gsm8k"), 1.0, "ok"),
        ("The answer is 9", "9", ("boxed", "gsm8k", "answer_is"), 1.0, "ok"),
    ],
)
def test_policy_2_extraction(completion, reference, extract, score, status):
    assert_grade(verify(completion, reference, extract=extract), score, status)


@pytest.mark.parametrize("extract", [(), ("boxes",), ("boxed", "last")])
def test_policy_2_unknown_rule_is_a_value_error(extract):
    with pytest.raises(ValueError, match="extract="):
        verify(r"\boxed{1}", "1", extract=extract)


# 3. Several different boxed answers: wrong (no hedging). The same answer repeated is fine.
@pytest.mark.parametrize(
    "completion, score",
    [
        (r"It is \boxed{5} or \boxed{6}.", 0.0),
        (r"First \boxed{6}, no wait: \boxed{5}.", 0.0),
        (r"\boxed{5}. Again: \boxed{5}", 1.0),
        (r"\boxed{5} and \boxed{ 5 }", 1.0),
        (r"Put it in \boxed{}: \boxed{5}", 1.0),
    ],
)
def test_policy_3_several_boxes(completion, score):
    v = verify(completion, "5")
    assert_grade(v, score)
    if score == 0.0:
        assert "different boxed answers" in v.detail


# 3. (cont.) boxes="each_part": several boxes are the parts of one answer, joined in order as a list.
@pytest.mark.parametrize(
    "completion, reference, score",
    [
        (r"(a) \boxed{3} (b) \boxed{5}", "3, 5", 1.0),
        (r"(a) \boxed{5} (b) \boxed{3}", "3, 5", 1.0),  # a comma list is unordered (line 14)
        (r"(a) \boxed{3} (b) \boxed{5}", "(3, 5)", 0.0),  # ... and not a tuple
        (r"(a) \boxed{3} (b) \boxed{6}", "3, 5", 0.0),
        (r"(a) \boxed{3}", "3, 5", 0.0),
        (r"(a) \boxed{3} (b) \boxed{3}", "3, 3", 1.0),
        (r"\boxed{5}. Again: \boxed{5}", "5", 0.0),  # each box is a part: two parts for one value
        (r"Only one: \boxed{5}", "5", 1.0),
    ],
)
def test_policy_3_each_part_option(completion, reference, score):
    assert_grade(verify(completion, reference, boxes="each_part"), score)


def test_policy_3_boxes_option_default_and_validation():
    assert_grade(verify(r"(a) \boxed{3} (b) \boxed{5}", "3, 5"), 0.0)  # default "one": a hedge
    with pytest.raises(ValueError, match="boxes="):
        verify(r"\boxed{1}", "1", boxes="all")


# 3. (cont.) Hedging inside one box: text between two values, or a chain of different values, is wrong
#    (math-verify alone would read only one of the values).
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        (r"\frac{\sqrt{3}}{7} \text{ or perhaps } \frac{\pi}{9}", r"\frac{\sqrt{3}}{7}", 0.0),
        (r"\frac{\sqrt{3}}{7} \text{ and/or } \frac{\pi}{9}", r"\frac{\sqrt{3}}{7}", 0.0),
        (r"\frac{\sqrt{3}}{7} \mbox{ maybe } \frac{\pi}{9}", r"\frac{\sqrt{3}}{7}", 0.0),
        (r"\frac{\sqrt{3}}{7} \mathrm{or} \frac{\pi}{9}", r"\frac{\sqrt{3}}{7}", 0.0),
        (r"\frac{\sqrt{3}}{7} \mathit{or} \frac{\pi}{9}", r"\frac{\sqrt{3}}{7}", 0.0),
        (r"\frac{\sqrt{3}}{7} \mathbf{or} \frac{\pi}{9}", r"\frac{\sqrt{3}}{7}", 0.0),
        (r"2\mathrm{m} + \frac{1}{2}", "2.0", 0.0),
        (r"2\mathbf{v} + \frac{1}{2}", r"\frac12", 0.0),
        (r"\text{not } \frac{\sqrt{3}}{7}", r"\frac{\sqrt{3}}{7}", 0.0),
        (r"\frac{\sqrt{3}}{7} = \frac{\pi}{9}", r"\frac{\pi}{9}", 0.0),
        (r"\frac{\sqrt{3}}{7} \approx \frac{\pi}{9}", r"\frac{\sqrt{3}}{7}", 0.0),
        ("x = 5 = 6", "6", 0.0),
        (r"\pi \approx 3.3", r"\pi", 0.0),
        (r"\frac{\pi}{9} \approx 0.349", r"\frac{\pi}{9}", 1.0),
        (r"x = \pi \approx 3.14", r"\pi", 1.0),
        (r"x \approx 3.14", "3.14", 1.0),
        (r"\frac{\sqrt{3}}{7} \text{ or } \frac{\pi}{9}", r"\frac{\pi}{9}, \frac{\sqrt{3}}{7}", 1.0),
        (r"\frac{\sqrt{3}}{7} \textbf{ and } \frac{\pi}{9}", r"\frac{\sqrt{3}}{7}", 0.0),
        (r"9.8 \text{ m}/\text{s}^2", "9.8", 1.0),
    ],
)
def test_policy_3_hedging_inside_one_box(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 4. An empty box is no_answer.
@pytest.mark.parametrize("completion", [r"\boxed{}", r"\boxed{ }", r"\boxed{} and \fbox{}", r"$\boxed{\boxed{}}$"])
def test_policy_4_empty_box(completion):
    assert_grade(verify(completion, "5"), 0.0, "no_answer")


# 5. Text identical to the reference after light normalization is correct.
@pytest.mark.parametrize(
    "answer, reference",
    [
        (r"\dfrac{1}{2}", r"\frac{1}{2}"),
        (r"\text{Monday}", r"\text{Monday}"),
        ("x^2 + 1", "x^2+1"),
        (r"\left(1, 2\right)", "(1,2)"),
        (r"\tfrac{3}{4}", r"$\frac34$"),
        (r"10^{10^{10}}", r"10^{10^{10}}"),
        (r"\frac{\pi}{4}", r"\boxed{\frac{\pi}{4}}"),
    ],
)
def test_policy_5_identical_text(answer, reference):
    assert_grade(boxed(answer, reference), 1.0)


# 6. An integer reference needs an answer written as a number, not an expression that evaluates to it.
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        ("56088", "56088", 1.0),
        ("56,088", "56088", 1.0),
        ("56{,}088", "56088", 1.0),
        ("56,\\!088", "56088", 1.0),
        ("56088.0", "56088", 1.0),
        ("x = 56088", "56088", 1.0),
        (r"56088 \text{ apples}", "56088", 1.0),
        ("-7", "-7", 1.0),
        ("\u22127", "-7", 1.0),
        (r"1.5 \times 10^{3}", "1500", 1.0),
        (r"123 \times 456", "56088", 0.0),
        ("2^{10}", "1024", 0.0),
        (r"\frac{10}{2}", "5", 0.0),
        (r"\sqrt{25}", "5", 0.0),
        ("5!", "120", 0.0),
        ("56089", "56088", 0.0),
        # the last side is what must be a written number; a label in front of it is fine
        ("AB = 5", "5", 1.0),
        ("f(2) = 5", "5", 1.0),
        ("m+n = 5", "5", 1.0),
        (r"m + n = 2 + 3 = 5", "5", 1.0),
        (r"\angle A = 30^\circ", "30", 1.0),
        (r"m\angle ABC = 30^{\circ}", "30", 1.0),
        (r"\overline{AB} = 7", "7", 1.0),
        (r"a_{10} = 55", "55", 1.0),
        (r"123 \times 456 = 56088", "56088", 1.0),
        (r"56088 = 123 \times 456", "56088", 0.0),
        (r"AB = 2^{10}", "1024", 0.0),
        (r"m+n = 123\times456", "56088", 0.0),
        ("AB = 6", "5", 0.0),
        ("1,\\! 000", "1000", 1.0),  # `,\!` with a space after it is still a thousands separator
        ("1,\\!000,\\! 000", "1000000", 1.0),
        ("1,\\! 001", "1000", 0.0),
    ],
)
def test_policy_6_integer_reference_needs_a_number(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 7. With question=, an answer that restates an expression of the question is wrong.
@pytest.mark.parametrize(
    "question, answer, reference, score",
    [
        (r"Simplify $(x+1)^2 - x^2$.", "(x+1)^2-x^2", "2x+1", 0.0),
        (r"Simplify $(x+1)^2 - x^2$.", "2x+1", "2x+1", 1.0),
        (r"Simplify $(x+1)^2 - x^2$.", "1+2x", "2x+1", 1.0),
        (r"What is $123 \times 456$?", r"123 \times 456", "56088", 0.0),
        (r"Reduce $\frac{6}{8}$ to lowest terms.", r"\frac{6}{8}", r"\frac34", 0.0),
        (r"If $x = 5$, what is $x$?", "5", "5", 1.0),
        (r"Write $\frac{3}{4}$ as a fraction.", r"\frac{3}{4}", r"\frac34", 1.0),
    ],
)
def test_policy_7_answer_echoing_the_question(question, answer, reference, score):
    assert_grade(boxed(answer, reference, question=question), score)


def test_policy_7_without_question_an_unreduced_equal_value_counts():
    assert_grade(boxed(r"\frac{6}{8}", r"\frac34"), 1.0)


# 8. Exact values compare exactly (rationals exactly, irrationals at 60 significant digits).
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        (r"\frac{2}{4}", r"\frac12", 1.0),
        ("0.5", r"\frac{1}{2}", 1.0),
        (r"\frac{1}{2006!}", r"\frac{1}{2004!}", 0.0),
        (r"\frac{1}{2004!}", r"\frac{1}{2004!}", 1.0),
        (r"\frac{2005 \cdot 2006}{2006!}", r"\frac{1}{2004!}", 1.0),
        ("2^{64}+1", "2^{64}", 0.0),
        ("18446744073709551616", "2^{64}", 1.0),
        ("123456789012345678901234567891", "123456789012345678901234567890", 0.0),
        (r"1+\frac{1}{e}", r"1-\frac{1}{e}", 0.0),
        (r"\frac{e-1}{e}", r"1-\frac{1}{e}", 1.0),
        (r"\frac{355}{113}", r"\pi", 0.0),
        (r"2\sqrt{2}", r"\sqrt{8}", 1.0),
        (r"\frac{1}{2}\sqrt{3}", r"\frac{\sqrt{3}}{2}", 1.0),
        (r"\sqrt{5+2\sqrt{6}}", r"\sqrt{2}+\sqrt{3}", 1.0),
        (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt2}{2}", 1.0),
        (r"\sqrt[3]{27}", "3.0", 1.0),
        ("4", r"4\sqrt(2)", 0.0),
        (r"\sqrt{2}+\frac{1}{2006!}", r"\sqrt{2}+\frac{1}{2004!}", 0.0),
        (r"\pi+2^{-300}", r"\pi", 0.0),
        (r"\frac{1}{2004!}+\sqrt{2}", r"\sqrt{2}+\frac{1}{2004!}", 1.0),
        (r"\frac{\pi}{4}", r"\frac{\pi}{3}", 0.0),
        (r"2\pi", r"\pi + \pi", 1.0),
        (r"\binom{5}{2}", r"\frac{20}{2}", 1.0),
        (r"\ln(e^{2})", r"2.0", 1.0),
        (r"-\frac{3}{2}", r"\frac{-3}{2}", 1.0),
        (r"\frac{3}{2}", r"\frac{-3}{2}", 0.0),
    ],
)
def test_policy_8_exact_values(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 9. A decimal approximates a value with no finite decimal expansion within rel_tol; never a terminating one.
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        ("0.3333333", r"\frac13", 1.0),
        ("0.33", r"\frac13", 0.0),
        ("0.333", r"\frac{1}{3}", 0.0),
        ("3.1415927", r"\pi", 1.0),
        ("3.14", r"\pi", 0.0),
        ("0.8660254", r"\frac{\sqrt{3}}{2}", 1.0),
        ("1.4142136", r"\sqrt{2}", 1.0),
        ("0.5000001", r"\frac12", 0.0),
        ("0.1", r"\frac{1}{10}", 1.0),
        ("2.50", r"\frac52", 1.0),
        (r"\frac13", "0.33", 0.0),
        (r"\frac13", "0.3333333", 1.0),
        ("0.6666667", r"\frac23", 1.0),
        ("0.6666666", r"\frac23", 1.0),
        ("0.666", r"\frac23", 0.0),
    ],
)
def test_policy_9_floats_vs_fractions(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


def test_policy_9_decimal_never_approximates_an_integer():
    assert_grade(boxed("4.9999999", "5"), 0.0)
    assert_grade(boxed("1000000.5", "1000000"), 0.0)


def test_policy_9_rel_tol_option():
    assert_grade(boxed("3.14", r"\pi", rel_tol=1e-3), 1.0)
    assert_grade(boxed("3.1415927", r"\pi", rel_tol=0.0), 0.0)


# 10. Percentages: p% equals p and p/100.
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        (r"50\%", "50", 1.0),
        ("50", r"50\%", 1.0),
        ("0.5", r"50\%", 1.0),
        (r"\frac12", r"50\%", 1.0),
        (r"50\%", "0.5", 1.0),
        ("50%", r"50\%", 1.0),
        (r"12.5\%", "12.5", 1.0),
        ("5", r"50\%", 0.0),
        (r"25\%", r"50\%", 0.0),
        (r"0.5\%", "50", 0.0),
        (r"33\frac{1}{3}\%", r"\frac13", 1.0),
        (r"1 + 10\%", "1.1", 1.0),
        (r"1 + 10\%", "0.011", 0.0),
    ],
)
def test_policy_10_percentages(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 11. Units and \text{} are ignored; text answers compare as words (case-insensitive); choice letters.
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        (r"10\text{ cm}", "10", 1.0),
        ("10 cm", "10", 1.0),
        (r"10\mathrm{m}^2", "10", 1.0),
        (r"10 \text{ square meters}", "10", 1.0),
        (r"90^\circ", "90", 1.0),
        (r"90^{\circ}", "90", 1.0),
        ("90°", "90", 1.0),
        (r"\$5.50", "5.5", 1.0),
        (r"\text{5}", "5", 1.0),
        (r"\frac{1}{2}\text{ cup}", "0.5", 1.0),
        (r"3\mathrm{e}^{2}", "3.0", 0.0),
        (r"5 \text{ m} \cdot \text{s}^{-1}", "5", 1.0),
        (r"\pi r^2 \text{ cm}^2", r"\pi r^2", 1.0),
        ("2x + 3 dollars", "2x+3", 1.0),
        ("3n+2m", "3n+2", 0.0),
        ("2x+3h", "2x+3", 0.0),
        ("t+9min", "t+9", 0.0),
        (r"4\pi r^2 m", r"4\pi r^2", 0.0),
        (r"\mathrm{e}^{2}", "e^2", 1.0),
        (r"\mathbf{v}", "v", 1.0),
        (r"11\text{ cm}", "10", 0.0),
        (r"\text{monday}", r"\text{Monday}", 1.0),
        (r"\text{Tuesday}", r"\text{Monday}", 0.0),
        ("(B)", "B", 1.0),
        (r"\text{(B)}", "B", 1.0),
        ("C", "B", 0.0),
        ("€5", "5", 1.0),
        ("5€", "5", 1.0),
        ("£12.50", "12.5", 1.0),
        ("¥300", "300", 1.0),
        (r"\pounds 7", "7", 1.0),
        ("€6", "5", 0.0),
        (r"\textbf{5 cm}", "5", 1.0),
        (r"5 \textbf{ cm}", "5", 1.0),
        (r"5 \textit{cm}", "5", 1.0),
        (r"\textit{12 apples}", "12", 1.0),
        (r"6 \textbf{ cm}", "5", 0.0),
    ],
)
def test_policy_11_units_and_text(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 12. Equations: `x = 5` is 5; chains keep the last side; different variables differ; equation references.
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        ("x=5", "5", 1.0),
        ("5", "x=5", 1.0),
        ("x = 2+3 = 5", "5", 1.0),
        ("x=6", "5", 0.0),
        ("y=5", "x=5", 0.0),
        (r"x = \frac{1}{2}", "0.5", 1.0),
        ("2x+3", "y=2x+3", 1.0),
        ("2x-y+3=0", "y=2x+3", 1.0),
        ("y=2x+4", "y=2x+3", 0.0),
        ("y^2+x^2=1", "x^2+y^2=1", 1.0),
        ("x = 5 and y = 6", "6", 0.0),
        ("x = 5 and y = 6", "6.0", 0.0),
        ("y = 6, x = 5", "x=5, y=6", 1.0),
        ("x = 5, y = 7", "x=5, y=6", 0.0),
    ],
)
def test_policy_12_equations(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 12. (cont.) An equation reference whose left side is not a single name needs an equal equation; an
#     assignment (symbol, subscripted name, applied function) accepts its value.
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        ("6", "x+y+z=6", 0.0),
        ("x=6", "x+y+z=6", 0.0),
        ("x+y=6", "x+y+z=6", 0.0),
        ("z+y+x=6", "x+y+z=6", 1.0),
        ("2x+2y+2z=12", "x+y+z=6", 1.0),
        ("4", "xy=4", 0.0),
        ("y=4", "xy=4", 0.0),
        ("yx=4", "xy=4", 1.0),
        ("3", "2x=x+3", 0.0),
        ("x+3", "2x=x+3", 0.0),
        ("x=3", "2x=x+3", 1.0),
        ("y=3", "2x=x+3", 0.0),
        ("3", "x=2x-3", 0.0),  # the name on the left is also on the right: an equation in x
        ("2x-3", "x=2x-3", 0.0),
        ("x=3", "x=2x-3", 1.0),
        ("1", "x^2+y^2=1", 0.0),
        ("6, 4", "x+y+z=6, xy=4", 0.0),  # inside lists too
        ("5", "f(2)=5", 1.0),
        ("6", "f(2)=5", 0.0),
        (r"\frac12", "a_{1} = \\frac12", 1.0),
        ("x^2", "f(x) = x^2", 1.0),
        (r"\frac{1}{2}", r"\alpha = \frac12", 1.0),
        ("g(x) = x^2", "f(x) = x^2", 0.0),
        ("2x=10", "x=5", 0.0),  # the reference gives x's value; restating an equation does not
        ("m+n=5", "x=5", 0.0),
        ("F(x) = 2x", "f(x) = 2x", 1.0),  # names compare case-insensitively, like letters elsewhere
    ],
)
def test_policy_12_equation_references(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 12. (cont.) An answer equation counts as a value only when its left side is a label (names only).
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        (r"x+y = \frac12", r"\frac12", 1.0),
        (r"xy = \frac12", r"\frac12", 1.0),
        (r"2x = \frac12", r"\frac12", 0.0),
        (r"x+1 = \frac12", r"\frac12", 0.0),
        ("x^2 = 4", "4", 0.0),
        ("2x+1 = x+4", "3", 0.0),
        ("x = 2x - 3", "3", 0.0),
        ("y = 2x+3", "2x+3", 1.0),
        ("2x+3 = y", "2x+3", 0.0),
        ("x+y+z=6, xy=4", "6, 4", 1.0),
        ("2x=6, 4", "3, 4", 0.0),
    ],
)
def test_policy_12_answer_equations_against_values(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 13. An interval and the equivalent inequality are the same answer, both ways; ends must match.
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        ("1<x<2", "(1,2)", 1.0),
        ("(1,2)", "1<x<2", 1.0),
        (r"1\le x<2", "[1,2)", 1.0),
        (r"(-\infty,3]", r"x\le 3", 1.0),
        (r"x\le 3", r"(-\infty,3]", 1.0),
        (r"(-\infty,3)", r"(-\infty,3]", 0.0),
        ("x<3", r"(-\infty,3]", 0.0),
        ("[1,2]", "[1,3]", 0.0),
        (r"(2,\infty)\cup(-\infty,1)", r"(-\infty,1)\cup(2,\infty)", 1.0),
        (r"(0, \frac{1}{2006!})", r"(0, \frac{1}{2004!})", 0.0),
    ],
)
def test_policy_13_intervals_vs_inequalities(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 14. Sets and comma lists are unordered; tuples are ordered; a set is not an interval or tuple; no lists
#     for one value.
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        ("2, 1", "1, 2", 1.0),
        (r"\{1,2\}", "1, 2", 1.0),
        (r"\{2,1\}", r"\{1,2\}", 1.0),
        ("(2,1)", "(1,2)", 0.0),
        ("(1,3,2)", "(1,2,3)", 0.0),
        ("(1, 2, 3)", "(1,2,3)", 1.0),
        (r"(\frac12, 3)", "(0.5, 3)", 1.0),
        ("1,2,3", "1,2", 0.0),
        ("1", "1,2", 0.0),
        (r"\sqrt{2}, -\sqrt{2}", r"\sqrt{2}", 0.0),
        (r"\sqrt{2} \text{ or } -\sqrt{2}", r"\sqrt{2}", 0.0),
        (r"-\sqrt{2}, \sqrt{2}", r"\pm\sqrt{2}", 1.0),
        (r"\pm\sqrt{2}", r"\sqrt{2}, -\sqrt{2}", 1.0),
        ("(1,2)", r"\{1,2\}", 0.0),
        ("(2,1)", r"\{1,2\}", 0.0),
        (r"\{\frac{1}{2006!}, 1\}", r"\{\frac{1}{2004!}, 1\}", 0.0),
        (r"19, 46, \text{ and } 82", "19, 46, 82", 1.0),  # an Oxford comma before "and"
        (r"19, 46, \text{and } 82", "82, 46, 19", 1.0),
        (r"19, 46 \text{, and } 82", "19, 46, 82", 1.0),
        (r"19, 46, \text{ or } 82", "19, 46, 82", 1.0),
        (r"19, 46, \text{ and } 83", "19, 46, 82", 0.0),
        (r"19, \text{ and } 46", "19, 46, 82", 0.0),
    ],
)
def test_policy_14_sets_and_tuples(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 15. Matrices: same shape and entries (pmatrix = bmatrix).
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        (r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 1.0),
        (r"\begin{pmatrix}1&2\\4&3\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 0.0),
        (r"\begin{pmatrix}1&3\\2&4\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", 0.0),
        (r"\begin{pmatrix}1&2\end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", 0.0),
        (r"\begin{pmatrix}0.5\\1\end{pmatrix}", r"\begin{pmatrix}\frac12\\1\end{pmatrix}", 1.0),
        (r"\begin{pmatrix}1\\2\\3\end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", 0.0),
    ],
)
def test_policy_15_matrices(answer, reference, score):
    assert_grade(boxed(answer, reference), score)


# 16. Symbolic expressions are equal as functions; `\sqrt(2)` is `\sqrt{2}`; `2\frac12` is a mixed number.
@pytest.mark.parametrize(
    "answer, reference, score",
    [
        ("(x+1)^2", "x^2+2x+1", 1.0),
        ("x^2+2x+2", "x^2+2x+1", 0.0),
        (r"\frac{x}{2}", "0.5x", 1.0),
        (r"\sin(2x)", r"2\sin x\cos x", 1.0),
        (r"r^2\pi", r"\pi r^2", 1.0),
        ("x + 10^{-20}", "x", 0.0),
        (r"x\sqrt{2}+\frac{1}{2006!}", r"x\sqrt{2}+\frac{1}{2004!}", 0.0),
        (r"2\frac{1}{2}", r"\frac52", 1.0),
        (r"-2\frac{1}{2}", "-2.5", 1.0),
        (r"4\sqrt(2)", r"4\sqrt{2}", 1.0),
        (r"\sqrt(x)", r"\sqrt{x}", 1.0),
        (r"4\sqrt(x)", "4x", 0.0),
        ("2(3)", r"\frac{12}{2}", 1.0),
        ("2i+1", "1+2i", 1.0),
        ("1-2i", "1+2i", 0.0),
        (r"\frac{a+b}{2}", r"\frac{b+a}{2}", 1.0),
        (r"a^2-b^2", "(a-b)(a+b)", 1.0),
        (r"a^2+b^2", "(a-b)(a+b)", 0.0),
        ("(x+1)^{3000}", "(x+1)^{2999}(x+2)", 0.0),
        (r"\frac{(x+1)^{3000}}{(x+1)^{2999}}", "x+1", 1.0),
        # symbols under roots are positive, as competition problems assume
        (r"\frac{1}{\sqrt{n}}", r"\sqrt{\frac{1}{n}}", 1.0),
        (r"1/\sqrt{n}", r"\sqrt{1/n}", 1.0),
        (r"\frac{\sqrt{ab}}{b}", r"\sqrt{\frac{a}{b}}", 1.0),
        (r"\frac{2}{\sqrt{n}}", r"\sqrt{\frac{1}{n}}", 0.0),
        (r"\frac{1}{\sqrt{n+1}}", r"\sqrt{\frac{1}{n}}", 0.0),
        ("x", "|x|", 0.0),
    ],
)
def test_policy_16_symbolic(answer, reference, score):
    assert_grade(boxed(answer, reference), score)
