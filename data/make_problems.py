"""Write data/problems.jsonl, the project's bundled math word problems in the training format,
data/worked_examples.jsonl, other problems with a worked solution, for format priming, and two small sets
in other datasets' shapes, for training on your own data by the knobs alone: data/gsm8k_style.jsonl
('question', and an 'answer' that ends in '#### N', as GSM8K's) and data/math_style.jsonl ('problem', and a
worked 'solution' with the answer in \\boxed{}, as MATH's).

Seeded, so running it again writes the same file:  python data/make_problems.py
Columns follow open-r1/DAPO-Math-17k-Processed: 'prompt' (problem text) and 'solution' (answer).
"""

import json
import os
import random

SEED = 1234
N_GENERATED = 400
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "problems.jsonl")
WORKED_SEED = 4321  # the worked examples for format priming: other problems than the ones above
N_WORKED = 200
WORKED_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worked_examples.jsonl")
SHAPES_SEED = 5678  # the two sets in other shapes: problems of their own, from a third seed
N_SHAPES = 60
GSM8K_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gsm8k_style.jsonl")
MATH_OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "math_style.jsonl")

NAMES = ["Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kira", "Liam"]
ITEMS = ["apples", "marbles", "stickers", "books", "pencils", "coins", "cards", "shells", "stamps", "beads"]

# Hand-written problems: a mix of plain integers, a negative, decimals and a LaTeX fraction.
HAND_WRITTEN = [
    ("A train leaves at 9:00 and arrives at 11:30. How many minutes does the trip take?", "150"),
    ("What is the sum of the first 10 positive integers?", "55"),
    ("A rectangle is 7 cm wide and 12 cm long. What is its area in square centimetres?", "84"),
    ("The temperature was 4 degrees and fell by 11 degrees. What is the temperature now?", "-7"),
    ("How many seconds are there in one hour?", "3600"),
    ("A shirt costs 20 dollars and is sold at 15 percent off. What is the sale price in dollars?", "17"),
    ("What is 2 to the power 10?", "1024"),
    ("If 3x + 5 = 20, what is x?", "5"),
    ("A car travels 180 km in 3 hours. What is its average speed in km per hour?", "60"),
    ("What is the least common multiple of 4 and 6?", "12"),
    ("What is the greatest common divisor of 48 and 36?", "12"),
    ("A pizza is cut into 8 equal slices and 3 are eaten. What fraction of the pizza is left?", "\\frac{5}{8}"),
    ("What is half of 7?", "3.5"),
    ("How many edges does a cube have?", "12"),
    ("What is 15 percent of 200?", "30"),
    ("A square has a perimeter of 36. What is its area?", "81"),
    ("What is the product of 25 and 40?", "1000"),
    ("What is 1000 minus 1?", "999"),
    ("How many prime numbers are less than 20?", "8"),
    ("What is the value of 7 squared minus 5 squared?", "24"),
    ("A bag has 3 red and 5 blue balls. How many balls must you add, all red, so that half are red?", "2"),
    ("What is the next number in the sequence 2, 4, 8, 16?", "32"),
    ("If a dozen eggs cost 3 dollars, how many dollars do 60 eggs cost?", "15"),
    ("What is the sum of the interior angles of a triangle, in degrees?", "180"),
    ("What is 0.25 plus 0.5?", "0.75"),
    ("A number doubled and then increased by 6 gives 30. What is the number?", "12"),
    ("How many minutes are in a day?", "1440"),
    ("What is 12 times 12?", "144"),
    ("What is the remainder when 100 is divided by 7?", "2"),
    ("A class of 30 students splits into groups of 4 with the rest in one smaller group. How many groups?", "8"),
]


def generated(rng: random.Random):
    """One word problem: (text, answer, a line of worked solution that reaches the answer)."""
    kind = rng.randrange(6)
    name, other = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    a, b = rng.randint(2, 60), rng.randint(2, 40)
    if kind == 0:
        return (f"{name} has {a} {item} and gets {b} more from {other}. How many {item} does {name} have now?", a + b,
                f"{name} starts with {a} {item} and gets {b} more, so we add: {a} + {b} = {a + b}.")
    if kind == 1:
        a = a + b
        return (f"{name} had {a} {item} and gave {b} to {other}. How many {item} does {name} have left?", a - b,
                f"{name} gives away {b} of the {a} {item}, so we subtract: {a} - {b} = {a - b}.")
    if kind == 2:
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        return (f"{name} buys {a} boxes with {b} {item} in each box. How many {item} is that in all?", a * b,
                f"There are {a} boxes of {b} {item} each, so we multiply: {a} x {b} = {a * b}.")
    if kind == 3:
        b = rng.randint(2, 9)
        q = rng.randint(2, 15)
        return (f"{name} shares {b * q} {item} equally among {b} friends. How many {item} does each friend get?", q,
                f"{b * q} {item} split equally among {b} friends is a division: {b * q} / {b} = {q}.")
    if kind == 4:
        c = rng.randint(2, 20)
        return (f"{name} has {a} {item}, {other} has {b} {item}, and they find {c} more together. "
                f"How many {item} do they have in total?", a + b + c,
                f"Together they have {a} + {b} = {a + b} {item}, and {c} more makes {a + b} + {c} = {a + b + c}.")
    price = rng.randint(2, 9)
    return (f"One of the {item} costs {price} dollars. How many dollars do {a} of them cost?", price * a,
            f"Each costs {price} dollars and there are {a} of them, so {a} x {price} = {price * a}.")


def main():
    rng = random.Random(SEED)
    rows = [{"prompt": p, "solution": s, "data_source": "hand-written"} for p, s in HAND_WRITTEN]
    for _ in range(N_GENERATED):
        problem, answer, _working = generated(rng)
        rows.append({"prompt": problem, "solution": str(answer), "data_source": "generated"})
    with open(OUT, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(rows)} problems to {OUT}")
    # Worked examples for format priming: other problems (another seed, none of the ones above, so
    # priming never sees a held-out problem), in the columns of unsloth/OpenMathReasoning-mini.
    seen, worked, rng = {r["prompt"] for r in rows}, [], random.Random(WORKED_SEED)
    while len(worked) < N_WORKED:
        problem, answer, working = generated(rng)
        if problem not in seen:
            seen.add(problem)
            worked.append({"problem": problem, "generated_solution": working, "expected_answer": str(answer)})
    with open(WORKED_OUT, "w", encoding="utf-8") as f:
        for row in worked:
            f.write(json.dumps(row) + "\n")
    print(f"wrote {len(worked)} worked examples to {WORKED_OUT}")
    # The same kind of problems in GSM8K's and MATH's shapes (train_grpo.py: DATASET_PROMPT_COLUMN,
    # DATASET_ANSWER_COLUMN, ANSWER_FORMAT=gsm8k or boxed).
    shaped, rng = [], random.Random(SHAPES_SEED)
    while len(shaped) < N_SHAPES:
        problem, answer, working = generated(rng)
        if problem not in seen:
            seen.add(problem)
            shaped.append((problem, answer, working))
    for path, shape in ((GSM8K_OUT, lambda p, a, w: {"question": p, "answer": f"{w}\n#### {a:,}"}),
                        (MATH_OUT, lambda p, a, w: {"problem": p, "solution": f"{w} So it is $\\boxed{{{a}}}$."})):
        with open(path, "w", encoding="utf-8") as f:
            for row in shaped:
                f.write(json.dumps(shape(*row)) + "\n")
        print(f"wrote {len(shaped)} problems to {path}")


if __name__ == "__main__":
    main()
