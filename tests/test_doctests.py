"""The examples in the docstrings run: each one is a small test of the function it documents."""

import doctest
import importlib

import pytest


@pytest.mark.parametrize("name", ["evaluate", "export", "chat", "rewards", "grpo.trainer", "grpo.overrides",
                                  "grpo.difficulty", "grpo.callbacks", "grpo.health", "grpo.stats"])
def test_docstring_examples_hold(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module)
    assert result.attempted > 0 and result.failed == 0, name
