"""Tool use in the ToolAlpaca style: prompt format, action parser, scorer, loaders.

A response calls tools with pairs of lines (any other text, e.g. ``Thought:`` lines, is ignored)::

    Action: get_weather
    Action Input: {"city": "Paris", "unit": "C"}

Reward (the SDPO reference's rule, with a stricter parser):

    reward = 1  iff  multiset(predicted action names) == multiset(gold action names)
                 and merge(predicted inputs) == merge(gold inputs)
                 and every "Action Input:" is followed by a valid JSON object

where ``merge`` applies ``dict.update`` in order (a later call's key overrides an earlier one, exactly as in the
reference, so only the union of arguments is checked, not which call carried them).

Parser details, and where they differ from the reference's regexes:

- names: the token after each ``Action:`` up to whitespace or ``(``, trailing ``.,;:`` removed; an ``Action:``
  with no name is a format error. (The reference takes a word (``\\w+``), so it can never match a gold name such as
  ``[Optional]updateUserProfile``, which occurs once in its tool-use test split.)
- inputs: the JSON object starting at the first ``{`` after each ``Action Input:`` (an optional ```` ```json ````
  fence is skipped), decoded with ``json.JSONDecoder.raw_decode`` so nested objects and trailing text work
  (the reference's non-greedy ``{.*?}`` stops at the first ``}`` and silently drops nested inputs).
- an input that is not valid JSON scores 0 and the feedback says which one (the reference skips it silently).
- duplicate keys inside one object: the last value wins (standard JSON decoding, as in the reference).
- values compare type-strictly after canonicalisation: ``true`` != ``1`` and ``"3"`` != ``3``, while ``3`` ==
  ``3.0`` (one JSON number). Python's ``==``, used by the reference, would equate ``true`` and ``1``.

``pred`` is a canonical string (sorted action names, canonical merged inputs, a validity flag); two responses
with the same ``pred`` get the same reward, so majority voting can group on it.

Two scorers (``SCORERS``; a task's ``scorer`` key, carried to every backend in the rows' ``extra_info``):

- ``"strict"`` (default): the parser above.
- ``"reference"``: the SDPO reference's behaviour, for scoring as the paper did (``score_tooluse_reference``):
  a name is the word (``\\w+``) after ``Action:`` and any whitespace, line breaks included; an input is the text
  from ``{`` after ``Action Input:`` to the *first* ``}`` (so a nested object is cut short, fails to decode and
  is skipped without a word, as is any input that is not valid JSON); names compare as multisets and the merged
  inputs with Python's ``==`` (``true`` equals ``1``); ``pred`` is ``Actions: <names in order>, Inputs:
  <merged dict>`` in Python's notation, so the majority vote groups answers as the reference's does. On the
  reference's tool-use test split the gold answers of 2 of the 68 items score 0 with it and 1 with ``strict``
  (a nested input, and a tool named ``[Optional]updateUserProfile``): ``gold_disagreements`` counts them for
  any split.

Input layouts (``format=`` or auto-detected):

- ``"toolalpaca"``: ToolAlpaca's JSON (a list of APIs with ``Name``, ``Description``, ``NLDocumentation``,
  ``Instructions`` and ``Golden_Answers``, or training ``Instances`` with ``intermediate_steps``); the prompt is
  this module's wording of the ToolAlpaca layout (tool documentation, format lines, question).
- ``"sdpo"``: the SDPO reference's processed JSON lines (``idx``, ``prompt`` holding documentation, format
  instructions and question, ``answer`` a JSON list of ``{"Action", "Action_Input"}``); the prompt is used as is.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scsdpo_verl.tasks.records import FilterReport, detect_format_by_keys, read_records, require
from scsdpo_verl.tasks.reference import check_split_count
from scsdpo_verl.tasks.schema import SCORERS, data_error, make_row

FORMATS = ("toolalpaca", "sdpo")
ABILITY = "tooluse"
DATA_SOURCE = "tooluse"

_ACTION_MARK = re.compile(r"Action:")
_ACTION_NAME = re.compile(r"[ \t]*([^\s(]+)")  # up to whitespace or "(" (e.g. "get_time(city=..)")
_INPUT_MARK = re.compile(r"Action Input:")
_FENCE = re.compile(r"\s*(?:```(?:json)?\s*)?")
_DECODER = json.JSONDecoder()
# the reference's two patterns (behaviour reproduced, see the module docstring)
_REFERENCE_NAME = re.compile(r"Action:\s*(\w+)")
_REFERENCE_INPUT = re.compile(r"Action Input:\s*(\{.*?\})", re.DOTALL)


# --------------------------------------------------------------------------------------------------- parser


@dataclass
class ParsedActions:
    """Everything the scorer needs from one response."""

    names: list[str] = field(default_factory=list)
    inputs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def parse_actions(text: str) -> ParsedActions:
    """Extract the action names and the JSON inputs of every ``Action:`` / ``Action Input:`` in ``text``."""
    parsed = ParsedActions()
    for k, mark in enumerate(_ACTION_MARK.finditer(text), start=1):
        match = _ACTION_NAME.match(text, mark.end())
        name = match.group(1).rstrip(".,;:") if match else ""
        if name:
            parsed.names.append(name)
        else:
            parsed.errors.append(f"Action {k} has no tool name.")
    for k, mark in enumerate(_INPUT_MARK.finditer(text), start=1):
        start = _FENCE.match(text, mark.end()).end()
        if not text.startswith("{", start):
            parsed.errors.append(f"Action Input {k} is not followed by a JSON object.")
            continue
        try:
            value, _ = _DECODER.raw_decode(text, start)
        except json.JSONDecodeError as err:
            parsed.errors.append(f"Action Input {k} is not valid JSON ({err.msg}).")
            continue
        parsed.inputs.append(value)
    return parsed


def canonical(value: Any) -> Any:
    """JSON value with integral floats turned into ints and dict keys sorted (bools stay bools)."""
    if isinstance(value, dict):
        return {key: canonical(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [canonical(v) for v in value]
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    return value


def canonical_json(value: Any) -> str:
    """A string that is equal for two JSON values iff they are equal type-strictly (see module doc)."""
    return json.dumps(canonical(value), ensure_ascii=False)


def merge_inputs(inputs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``dict.update`` over the inputs in order: later keys override earlier ones."""
    merged: dict[str, Any] = {}
    for item in inputs:
        merged.update(item)
    return merged


def parse_gold(ground_truth: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Gold action names and inputs from the JSON list ``[{"Action": name, "Action_Input": json-string|object}]``."""
    try:
        items = json.loads(ground_truth)
    except json.JSONDecodeError as err:
        raise ValueError(f"tool-use ground truth is not JSON ({err.msg}): {ground_truth[:80]!r}") from err
    if not isinstance(items, list) or not items:
        raise ValueError(f"tool-use ground truth must be a non-empty JSON list: {ground_truth[:80]!r}")
    names, inputs = [], []
    for k, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("Action"), str) or "Action_Input" not in item:
            raise ValueError(f"tool-use ground truth item {k} needs 'Action' (str) and 'Action_Input': {item!r}")
        raw = item["Action_Input"]
        try:
            value = json.loads(raw) if isinstance(raw, str) else raw
        except json.JSONDecodeError as err:
            raise ValueError(f"tool-use ground truth item {k}: Action_Input is not JSON ({err.msg})") from err
        if not isinstance(value, dict):
            raise ValueError(f"tool-use ground truth item {k}: Action_Input must be a JSON object, got {raw!r}")
        names.append(item["Action"])
        inputs.append(value)
    return names, inputs


def make_gold(calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Ground-truth string in the reference's layout from ``[(name, arguments), ...]``."""
    return json.dumps([{"Action": name, "Action_Input": json.dumps(args)} for name, args in calls])


def format_calls(calls: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """A response making ``calls``: ``Action: name`` / ``Action Input: {...}`` lines (compact JSON)."""
    return "\n".join(f"Action: {name}\nAction Input: {json.dumps(args, separators=(',', ':'))}"
                     for name, args in calls)


# --------------------------------------------------------------------------------------------------- scorer


def score_tooluse(solution_str: str, ground_truth: str) -> dict[str, Any]:
    """Score one response: ``{score, acc, pred, feedback}``; the feedback is "" iff the score is 1.

    As in the reference, the feedback states the expected actions/inputs when they differ (it leaks the
    answer; the SDPO experiments run with environment feedback off).
    """
    gold_names, gold_inputs = parse_gold(ground_truth)
    parsed = parse_actions(solution_str)
    pred_inputs = merge_inputs(parsed.inputs)
    names_ok = Counter(parsed.names) == Counter(gold_names)
    inputs_ok = canonical_json(pred_inputs) == canonical_json(merge_inputs(gold_inputs))
    correct = names_ok and inputs_ok and not parsed.errors

    pred = f"Actions: {json.dumps(sorted(parsed.names))}, Inputs: {canonical_json(pred_inputs)}"
    if parsed.errors:
        pred += ", invalid"
    problems = list(parsed.errors)
    if not parsed.names:
        problems.append("No 'Action:' line was found.")
    if not names_ok:
        problems.append(f"Actions mismatch: called {parsed.names}, expected {gold_names}.")
    if not inputs_ok:
        problems.append(f"Action inputs mismatch: got {canonical_json(pred_inputs)}, "
                        f"expected {canonical_json(merge_inputs(gold_inputs))}.")
    return {"score": float(correct), "acc": correct, "pred": pred, "feedback": " ".join(problems)}


def parse_actions_reference(text: str) -> tuple[list[str], dict[str, Any]]:
    """The SDPO reference's reading of a response: (action names in order, merged decodable inputs)."""
    merged: dict[str, Any] = {}
    for block in _REFERENCE_INPUT.findall(text):
        try:
            value = json.loads(block)
        except json.JSONDecodeError:
            continue  # the reference skips an input it cannot decode, silently
        merged.update(value)
    return _REFERENCE_NAME.findall(text), merged


def score_tooluse_reference(solution_str: str, ground_truth: str) -> dict[str, Any]:
    """Score one response as the SDPO reference does: ``{score, acc, pred, feedback}`` (see the module doc)."""
    gold_names, gold_inputs = parse_gold(ground_truth)
    names, inputs = parse_actions_reference(solution_str)
    expected = merge_inputs(gold_inputs)
    names_ok = Counter(names) == Counter(gold_names)
    inputs_ok = inputs == expected  # Python equality, as the reference: True == 1 == 1.0
    correct = names_ok and inputs_ok
    problems = []
    if not names_ok:
        problems.append(f"Actions mismatch: called {names}, expected {gold_names}.")
    if not inputs_ok:
        problems.append(f"Action inputs mismatch: got {inputs}, expected {expected}.")
    return {"score": float(correct), "acc": correct, "pred": f"Actions: {names!r}, Inputs: {inputs!r}",
            "feedback": " ".join(problems)}


def score_tooluse_with(scorer: str):
    """The scoring function of a scorer name in ``SCORERS``; an unknown name raises naming the choices."""
    if scorer == "strict":
        return score_tooluse
    if scorer == "reference":
        return score_tooluse_reference
    raise ValueError(f"unknown tool-use scorer {scorer!r}; expected one of {SCORERS}")


def gold_disagreements(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Question ids of the rows whose gold answer (``extra_info.solution``) the two scorers score differently."""
    ids = []
    for row in rows:
        solution, gold = row["extra_info"]["solution"], row["reward_model"]["ground_truth"]
        if score_tooluse(solution, gold)["score"] != score_tooluse_reference(solution, gold)["score"]:
            ids.append(row["extra_info"]["question_id"])
    return ids


# --------------------------------------------------------------------------------------------------- prompt


def format_toolalpaca_prompt(name: str, description: str, documentation: str, question: str) -> str:
    """User message for a ToolAlpaca API: its documentation, the reply format and the question."""
    return (
        "Answer the user's question by calling the tools below.\n"
        f"Name: {name}\nDescription: {description}\nDocumentation:\n{documentation.rstrip()}\n\n"
        "Reply in this format (one Action / Action Input pair per call):\n"
        "Thought: what to do next\n"
        "Action: the tool name\n"
        "Action Input: the arguments as a JSON object, taken from the question\n\n"
        f"Question: {question}"
    )


def _tool_row(*, idx: int, split: str, user: str, gold: str, qid: str, domain: str) -> dict:
    names, inputs = parse_gold(gold)
    return make_row(
        data_source=DATA_SOURCE,
        messages=[{"role": "user", "content": user}],
        ability=ABILITY,
        ground_truth=gold,
        index=idx,
        split=split,
        question_id=qid,
        solution=format_calls(list(zip(names, inputs, strict=True))),
        domain=domain,
    )


def _checked_gold(gold: str, source: str | Path, row: int, field_name: str) -> str:
    try:
        parse_gold(gold)
    except ValueError as err:
        raise data_error(source, row, field_name, str(err)) from err
    return gold


# --------------------------------------------------------------------------------------------------- loaders


def _instance_calls(instance: Any, source: Path, row: int, j: int) -> list[dict[str, Any]]:
    """Gold calls of a ToolAlpaca training instance: its steps' (action, action_input), minus ``getDetails``."""
    where = f"Instances[{j}].intermediate_steps"
    if not isinstance(instance, dict):
        raise data_error(source, row, f"Instances[{j}]", "expected an object")
    steps = instance.get("intermediate_steps") or []
    calls = []
    for k, step in enumerate(steps):
        try:
            action, action_input = step[0][0], step[0][1]
        except (TypeError, IndexError, KeyError) as err:
            raise data_error(source, row, f"{where}[{k}]", "expected [[action, action_input, log], observation]"
                             ) from err
        if action != "getDetails":
            calls.append({"Action": action, "Action_Input": action_input})
    return calls


def load_toolalpaca(path: str | Path, *, split: str = "train") -> tuple[list[dict[str, Any]], FilterReport]:
    """Rows from a ToolAlpaca JSON file: one per (API, instruction) with a golden answer.

    Evaluation files pair ``Instructions[j]`` with ``Golden_Answers[j]``; training files carry ``Instances``
    whose ``intermediate_steps`` (``[[action, action_input, log], observation]``) give the calls; instances
    without steps or with only the ``getDetails`` helper are dropped and counted.
    """
    path = Path(path)
    apis = read_records(path)
    report = FilterReport(source=f"{path} [{split}]")
    rows: list[dict[str, Any]] = []
    for i, api in enumerate(apis):
        name = require(api, "Name", str, path, i)
        description = require(api, "Description", str, path, i)
        documentation = require(api, "NLDocumentation", str, path, i)
        items: list[tuple[str, str]] = []
        if "Golden_Answers" in api:
            questions = require(api, "Instructions", list, path, i)
            answers = require(api, "Golden_Answers", list, path, i)
            if len(questions) != len(answers):
                raise data_error(path, i, "Golden_Answers", f"{len(answers)} answers for {len(questions)} "
                                 "instructions")
            report.read += len(questions)
            for j, (question, answer) in enumerate(zip(questions, answers, strict=True)):
                gold = _checked_gold(json.dumps(answer), path, i, f"Golden_Answers[{j}]")
                items.append((question, gold))
        else:
            instances = require(api, "Instances", list, path, i)
            report.read += len(instances)
            for j, instance in enumerate(instances):
                calls = _instance_calls(instance, path, i, j)
                if not calls:
                    report.drop("no_tool_calls")
                    continue
                question = require(instance, "input", str, path, i).rsplit("\nHint: ", 1)[0]
                items.append((question, _checked_gold(json.dumps(calls), path, i, f"Instances[{j}]")))
        for j, (question, gold) in enumerate(items):
            user = format_toolalpaca_prompt(name, description, documentation, question)
            rows.append(_tool_row(idx=len(rows), split=split, user=user, gold=gold,
                                  qid=f"toolalpaca/{name}/{j}", domain=name))
    report.kept = len(rows)
    report.log()
    return rows, report


def load_sdpo_tooluse(
    path: str | Path, *, split: str = "train", check_counts: bool = False
) -> tuple[list[dict[str, Any]], FilterReport]:
    """Rows from one SDPO-reference processed tool-use file (JSON lines), prompts used as they are.

    With ``check_counts`` the row count must equal the pinned one (only the test split's, 68, is pinned).
    """
    path = Path(path)
    records = read_records(path)
    report = FilterReport(source=f"{path} [{split}]", read=len(records))
    rows = []
    for i, record in enumerate(records):
        idx = require(record, "idx", int, path, i)
        user = require(record, "prompt", str, path, i)
        gold = _checked_gold(require(record, "answer", str, path, i), path, i, "answer")
        rows.append(_tool_row(idx=idx, split=split, user=user, gold=gold,
                              qid=f"tooluse/{idx}", domain="tooluse"))
    report.kept = len(rows)
    report.log()
    if check_counts:
        check_split_count(path, "tooluse", split, len(rows))
    return rows, report


def detect_format(path: str | Path) -> str:
    """``"sdpo"`` (keys prompt/answer) or ``"toolalpaca"`` (keys Name/NLDocumentation) from the first record."""
    return detect_format_by_keys(
        path, {"sdpo": ("SDPO", ("prompt", "answer")), "toolalpaca": ("ToolAlpaca", ("Name", "NLDocumentation"))}
    )


def sdpo_split_file(root: str | Path, split: str) -> Path:
    """``<base>/<split>.json``; ``root`` is a clone of the SDPO repository, its ``datasets`` or ``datasets/tooluse``."""
    root = Path(root)
    base = next((b for b in (root / "datasets" / "tooluse", root / "tooluse") if b.is_dir()), root)
    file = base / f"{split}.json"
    if not file.is_file():
        raise FileNotFoundError(f"{root}: missing reference split file {file}")
    return file


def load_tooluse(
    path: str | Path, *, split: str = "train", format: str | None = None, check_counts: bool = False
) -> tuple[list[dict[str, Any]], list[FilterReport]]:
    """Tool-use rows of ``split`` from a file in either layout, or from an SDPO clone / tooluse folder.

    ``check_counts`` applies to the SDPO layout only (see ``load_sdpo_tooluse``).
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown tool-use format {format!r}; expected one of {FORMATS}")
    path = Path(path)
    if path.is_dir():
        if format == "toolalpaca":
            raise ValueError(f"{path}: format 'toolalpaca' needs a file, got a folder")
        path, format = sdpo_split_file(path, split), "sdpo"
    format = format or detect_format(path)
    if format == "sdpo":
        rows, report = load_sdpo_tooluse(path, split=split, check_counts=check_counts)
    else:
        rows, report = load_toolalpaca(path, split=split)
    return rows, [report]
