"""The knobs stay the user's: after resolve_knobs no step writes into them, and run_config.json keeps the
knobs (top level) apart from what the run found and decided (FOUND)."""

import copy
import json
import os

import unsloth  # noqa: F401  (before trl, transformers and peft, as in training)
import pytest

import train_grpo


@pytest.mark.slow
def test_main_leaves_the_knobs_as_asked_and_records_its_findings_apart(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    asked = {}
    resolve = train_grpo.resolve_knobs

    def keep(argv):
        asked["k"] = resolve(argv)
        asked["copy"] = copy.deepcopy(asked["k"])
        return asked["k"]

    monkeypatch.setattr(train_grpo, "resolve_knobs", keep)
    assert train_grpo.main(["--smoke", "--max_steps=2", "--reuse_priming=false"]) is None
    assert asked["k"] == asked["copy"]  # no step assigned into the knob dict
    config = json.load(open(os.path.join(asked["k"]["OUTPUT_DIR"], "run_config.json")))
    found = config.pop("FOUND")
    assert config == json.loads(json.dumps(asked["copy"], default=str))  # the top level is the knobs, nothing else
    for key in ("FAST_INFERENCE_USED", "MODEL_SHA256", "MAX_PROMPT_LENGTH", "PRIMED_ADAPTER", "ALGORITHM_USED",
                "TIME_SPLIT_S", "STEPS_DONE"):
        assert key in found, key
    assert found["STEPS_DONE"] == 2 and found["FAST_INFERENCE_USED"] is False
