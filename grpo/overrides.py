"""`--name=value` command-line overrides for the UPPER_CASE knobs of an entry point.

Pure and fast: the entry points call it before importing torch, so a typo fails in a second.

    >>> apply_overrides({"MAX_STEPS": 100, "LEARNING_RATE": 5e-6}, ["--max_steps=5"])
    {'MAX_STEPS': 5, 'LEARNING_RATE': 5e-06}
"""

from __future__ import annotations

import ast
import difflib

from grpo.checks import BadInput

TRUE = {"true", "1", "yes", "on"}
FALSE = {"false", "0", "no", "off"}


class OverrideError(BadInput):
    """A bad command-line override: unknown knob, malformed argument or wrong type."""


def knobs_of(namespace: dict) -> dict:
    """The UPPER_CASE, plain-valued globals of a module: its knobs."""
    kinds = (bool, int, float, str, tuple, list)
    return {k: v for k, v in namespace.items() if k.isupper() and not k.startswith("_") and isinstance(v, kinds)}


def convert(name: str, text: str, default):
    """Convert `text` to the type of `default`, or raise OverrideError naming the knob."""
    def fail(expected: str):
        raise OverrideError(f"--{name.lower()}={text}: expected {expected} (default {default!r})")

    if isinstance(default, bool):
        low = text.strip().lower()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
        fail("true or false")
    for kind, expected in ((int, "an integer"), (float, "a number")):
        if isinstance(default, kind):
            try:
                return kind(text)
            except ValueError:
                fail(expected)
    if isinstance(default, str):
        return text
    if isinstance(default, (tuple, list)):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = [part.strip() for part in text.split(",") if part.strip()]
        if not isinstance(value, (tuple, list)):
            value = [value]
        if default:
            value = [convert(name, str(v), default[0]) if not isinstance(v, type(default[0])) else v for v in value]
        return type(default)(value)
    fail(type(default).__name__)


def resolve(namespace: dict, argv: list[str], script: str, check=None, presets=None) -> dict:
    """An entry point's knobs for this run: defaults, then a preset (`--preset=NAME` of `presets`; `--smoke` is
    `--preset=smoke`), then each `--name=value`, then `check(knobs)`. Exits non-zero naming the knob on any error.
    The result has PRESET set to the preset's name ("" for none) and SMOKE to whether it is the smoke preset."""
    import sys

    knobs = knobs_of(namespace)
    presets = presets or {}
    if "--help" in argv or "-h" in argv:
        print(help_text(namespace, script, presets))
        sys.exit(0)
    chosen = ["smoke" for a in argv if a == "--smoke"] + [
        a.split("=", 1)[1] for a in argv if a.startswith("--preset=")
    ]
    try:
        if len(set(chosen)) > 1:
            raise OverrideError(f"one preset at a time, got {', '.join(sorted(set(chosen)))}")
        if chosen and chosen[0] not in presets:
            raise OverrideError(f"--preset={chosen[0]}: no such preset; known: {', '.join(presets) or 'none'}")
        if chosen:
            knobs.update(presets[chosen[0]])
        knobs = apply_overrides(knobs, [a for a in argv if a != "--smoke" and not a.startswith("--preset=")])
        knobs["PRESET"] = chosen[0] if chosen else ""
        knobs["SMOKE"] = knobs["PRESET"] == "smoke"
        if check is not None:
            check(knobs)
    except ValueError as e:  # OverrideError is a ValueError
        sys.exit(f"{script}: error: {e}")
    return knobs


def knob_comments(source: str) -> dict:
    """`NAME = value  # comment` lines of a script's source: {NAME: comment}; section headers too.

    >>> knob_comments("# model\\nSTEPS = 5  # optimizer steps\\n")
    {'STEPS': 'optimizer steps'}
    """
    out = {}
    for line in source.splitlines():
        name, sep, rest = line.partition(" = ")
        if sep and name.isidentifier() and name.isupper() and not name.startswith("_") and "  # " in rest:
            out[name] = rest.split("  # ", 1)[1].strip()
    return out


def help_text(namespace: dict, script: str, presets: dict) -> str:
    """What --help prints: usage, then every knob with its default and its comment, read from the source."""
    knobs = knobs_of(namespace)
    comments = {}
    path = namespace.get("__file__")
    if path:
        with open(path, encoding="utf-8") as f:
            comments = knob_comments(f.read())
    doc = (namespace.get("__doc__") or "").strip().splitlines()
    choice = (["--smoke"] if "smoke" in presets else []) + (["--preset=NAME"] if set(presets) - {"smoke"} else [])
    lines = [
        doc[0] if doc else script,
        "",
        f"usage: python {script} {'[' + ' | '.join(choice) + '] ' if choice else ''}[--name=value ...]",
        "",
        "Every knob is an UPPER_CASE constant at the top of the script; --lowercase_name=value overrides it.",
        "",
    ]
    for name, preset in presets.items():
        flag = "--smoke (the CPU preset)" if name == "smoke" else f"--preset={name}"
        lines += [f"{flag} first applies: " + ", ".join(f"{k.lower()}={v!r}" for k, v in preset.items()), ""]
    lines.append("knobs (default, then what it does):")
    width = max(len(name) for name in knobs) + 2
    for name, value in knobs.items():
        shown = ",".join(map(str, value)) if isinstance(value, (tuple, list)) else repr(value)
        lines.append(f"  --{name.lower():<{width}} {shown}")
        if comments.get(name):
            lines.append(f"  {'':<{width + 2}} {comments[name]}")
    return "\n".join(lines)


def apply_overrides(knobs: dict, args: list[str]) -> dict:
    """Return a copy of `knobs` with each `--name=value` applied. Raises OverrideError."""
    out = dict(knobs)
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise OverrideError(f"{arg!r}: overrides are written --name=value, e.g. --max_steps=5")
        name, text = arg[2:].split("=", 1)
        key = name.upper()
        if key not in knobs:
            close = difflib.get_close_matches(name.lower(), [k.lower() for k in knobs], n=3, cutoff=0.6)
            hint = f" (did you mean {', '.join('--' + c for c in close[:3])}?)" if close else ""
            raise OverrideError(
                f"unknown knob --{name}{hint}; the knobs are the UPPER_CASE constants at the top of the script"
            )
        out[key] = convert(key, text, knobs[key])
    return out
