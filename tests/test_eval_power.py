"""bench/eval_power.py: the split of a measured change's noise into the draw and the problems, and
the chances and sizes that follow from it."""

import json
import math
import random

import pytest

from bench import eval_power


def samples(primed, trained):
    """eval_samples.jsonl rows from per-problem lists of right (1) / wrong (0), one list per model."""
    rows = []
    for model, problems in (("base", [[0] * len(p) for p in primed]), ("primed", primed), ("trained", trained)):
        for i, outcomes in enumerate(problems):
            rows += [{"model": model, "problem": i, "correct": bool(c)} for c in outcomes]
    return rows


def test_the_split_of_constructed_changes():
    # every problem moves by the same half, sample by sample: all of the noise is the draw's
    same = eval_power.noise_parts(eval_power.paired_differences(samples([[0] * 4] * 3, [[1, 1, 0, 0]] * 3)))
    assert same["change"] == 0.5 and same["within"] == pytest.approx(1 / 3) and same["between"] == 0.0
    # one problem always turns right, one never: none of it is the draw's
    split = eval_power.noise_parts(eval_power.paired_differences(samples([[0] * 4] * 2, [[1] * 4, [0] * 4])))
    assert split["change"] == 0.5 and split["within"] == 0.0 and split["between"] == pytest.approx(0.5)
    assert eval_power.standard_error(split, 100, 4) == pytest.approx(math.sqrt(0.5 / 100))
    assert eval_power.standard_error(split, 100, 4, draw_only=True) == 0.0
    with pytest.raises(ValueError, match="2 paired samples"):
        eval_power.noise_parts([[1], [0]])


def test_the_split_recovers_known_variances_from_simulated_draws():
    """2000 problems, each with its own chance of a right answer before and after; 4 independent samples
    each. The split must recover the two variances that generated them."""
    rng = random.Random(0)
    p = [rng.uniform(0.1, 0.9) for _ in range(2000)]
    q = [min(1.0, max(0.0, pi + rng.choice([-0.2, 0.0, 0.3]))) for pi in p]
    primed = [[int(rng.random() < pi) for _ in range(4)] for pi in p]
    trained = [[int(rng.random() < qi) for _ in range(4)] for qi in q]
    parts = eval_power.noise_parts(eval_power.paired_differences(samples(primed, trained)))
    true_within = sum(a * (1 - a) + b * (1 - b) for a, b in zip(p, q)) / len(p)
    deltas = [b - a for a, b in zip(p, q)]
    mean = sum(deltas) / len(deltas)
    true_between = sum((d - mean) ** 2 for d in deltas) / len(deltas)
    assert parts["within"] == pytest.approx(true_within, rel=0.05)
    assert parts["between"] == pytest.approx(true_between, rel=0.25)
    assert parts["change"] == pytest.approx(mean, abs=0.02)


def test_chances_and_the_sizes_that_reach_them():
    se = 0.02
    assert eval_power.chance_shown(0.0, se) == pytest.approx(0.025, abs=1e-4)  # no gain: the interval's own 2.5%
    assert eval_power.chance_shown(eval_power.smallest_shown(se, 0.8), se) == pytest.approx(0.8, abs=1e-6)
    parts = {"within": 0.36 ** 2, "between": 0.05 ** 2}
    n = eval_power.samples_needed(parts, 0.05, 100, 0.8)
    assert eval_power.chance_shown(0.05, eval_power.standard_error(parts, 100, n)) >= 0.8
    assert eval_power.chance_shown(0.05, eval_power.standard_error(parts, 100, n - 1)) < 0.8
    m = eval_power.problems_needed(parts, 0.025, 4, 0.8)
    assert eval_power.chance_shown(0.025, eval_power.standard_error(parts, m, 4)) >= 0.8
    assert eval_power.chance_shown(0.025, eval_power.standard_error(parts, m - 1, 4)) < 0.8
    # when the problems' own spread is too wide for 100 problems, no number of samples reaches it
    assert eval_power.samples_needed({"within": 0.1, "between": 0.02}, 0.025, 100, 0.8) == math.inf


def test_a_run_scored_again_is_read_as_further_draws(tmp_path, capsys):
    def write(folder, trained):
        folder.mkdir(parents=True)
        with open(folder / "eval_samples.jsonl", "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in samples([[0, 0, 1, 1]] * 4, trained))

    run = tmp_path / "run"
    write(run, [[1, 0, 1, 1]] * 4)  # +0.25
    write(run / "eval_s1", [[0, 0, 1, 1]] * 4)  # +0.00
    k = {"EFFECT": 0.025, "N_PROBLEMS": 100, "N_SAMPLES": 4, "POWER": 0.8}
    r = eval_power.row(str(run), k)
    assert r["changes"] == [0.25, 0.0]
    assert r["observed_draw_sd"] == pytest.approx(math.sqrt(0.125 ** 2 * 2))
    assert r["parts"]["n_samples"] == 8  # the two draws' pairs pooled per problem
    eval_power.main([str(run), "--effect=0.05"])
    out = capsys.readouterr().out
    assert "+0.250, +0.000" in out and "true +0.050" in out
    with pytest.raises(SystemExit, match="no eval_samples.jsonl"):
        eval_power.main([str(tmp_path / "nowhere")])
    with pytest.raises(SystemExit):
        eval_power.main([str(run), "--efect=0.05"])
    with pytest.raises(SystemExit):
        eval_power.main([str(run), "--effect=0"])
    single = tmp_path / "single"
    single.mkdir()
    (single / "eval_samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples([[0], [1]], [[1], [1]])))
    with pytest.raises(SystemExit, match="n_samples=2 or more"):
        eval_power.main([str(single)])


def test_draws_of_one_run_pool_over_the_same_problems(tmp_path):
    """The same problems scored twice alike are no more evidence about the problems: the pooled interval
    stays the single draw's, where resampling each draw's problems apart (right for different seeds)
    would narrow it."""
    from bench import bench_smollm2

    rows = samples([[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 0], [0, 1, 0, 1]] * 5,
                   [[1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 0, 0], [0, 1, 0, 1]] * 5)
    for folder in (tmp_path / "run", tmp_path / "run" / "eval_s1"):
        folder.mkdir(parents=True)
        (folder / "eval_samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    draws = [
        eval_power.paired_differences(eval_power.read_samples(d)) for d in eval_power.draws_of(str(tmp_path / "run"))
    ]
    assert len(draws) == 2
    one_mean, one = eval_power.pooled_draws(eval_power.pool(draws[:1]))
    both_mean, both = eval_power.pooled_draws(eval_power.pool(draws))
    assert both_mean == one_mean == pytest.approx(0.125) and both == one and one[0] < 0.125 < one[1]
    _, apart, _ = bench_smollm2.pooled_change(eval_power.draws_of(str(tmp_path / "run")))
    assert apart[1] - apart[0] < 0.8 * (one[1] - one[0])
