"""Scientific reasoning as multiple choice (SciKnowEval L3): prompt format, answer parser, scorer, loaders.

Answer format: ``<reasoning>...</reasoning><answer>X</answer>`` with X an option letter.

Reward (the SDPO reference's rule, kept exactly so numbers stay comparable):

    pred   = text after the LAST "<answer>" (the whole text if there is none),
             cut at the first "</answer>" after it, whitespace stripped
    reward = 1  iff  pred == gold letter   (case-sensitive: "c" != "C")

so a missing closing tag still counts ("<answer>C" -> "C"). ``pred`` alone decides the reward, which makes it
the right key for majority voting.

Two input layouts are accepted (``format=`` or auto-detected):

- ``"sciknoweval"``: rows in the Hugging Face dataset's schema (``question``, ``choices={text,label}``,
  ``answerKey``, ``domain``, ``type``, ``details.level``), from a local json/jsonl/parquet file or the hub.
  Rows are filtered to level L3 and the two MCQ types, then split 90/10 per domain. The split replicates
  ``datasets.Dataset.train_test_split(test_size=0.1, seed=42)`` applied to each domain's rows in file order,
  which is how the SDPO reference made its committed splits (checked to give the same indices).
- ``"sdpo"``: the SDPO reference's processed JSON lines (``idx``, ``answer``, ``prompt``, ``system``, ...),
  one file per domain and split, e.g. ``datasets/sciknoweval/chemistry/train.json``; used as they are.

Both map to the same rows: the reference's system prompt, the user message
``question + "\\n\\n" + "A: ..." lines + "\\nPlease reason step by step."``, ``data_source="sciknoweval/<domain>"``
and ``question_id="sciknoweval/<domain>/<idx>"`` where idx is the row's position among its domain's kept rows.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from scsdpo_verl.tasks.records import FilterReport, detect_format_by_keys, read_records, require
from scsdpo_verl.tasks.reference import check_split_count
from scsdpo_verl.tasks.schema import data_error, make_row

DOMAINS = ("biology", "chemistry", "material", "physics")
LEVEL = "L3"
MCQ_TYPES = ("mcq-4-choices", "mcq-2-choices")
HUB_ID = "hicai-zju/SciKnowEval"
FORMATS = ("sciknoweval", "sdpo")
ABILITY = "mcq"

# The SDPO reference's system prompt for SciKnowEval (data/format/sciknoweval.py at lasgroup/SDPO@0e6d510),
# quoted verbatim because the paper's numbers were produced with it.
# Our own wording of the reference's answer format. Reference-format rows carry the reference's exact system
# prompt in their ``system`` field, which the sdpo loader uses, so the paper runs see the original text.
SYSTEM_PROMPT = (
    "Answer the multiple-choice question. Put your reasoning between <reasoning> and </reasoning>, then only the "
    "letter of the option you choose between <answer> and </answer>, for example <answer>A</answer>.\n"
)
INSTRUCTION_SUFFIX = "Please reason step by step."
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
_LETTER = re.compile(r"[A-Z]")
_OPTION_LINE = re.compile(r"^([A-Z]): (.+)$", re.M)


# --------------------------------------------------------------------------------------------------- prompt


def format_mcq_question(question: str, choices: Sequence[str], labels: Sequence[str] | None = None) -> str:
    """User message: the question, a blank line, one ``L: text`` line per choice, then the instruction."""
    labels = list(labels) if labels is not None else [chr(ord("A") + i) for i in range(len(choices))]
    if len(labels) != len(choices):
        raise ValueError(f"{len(labels)} labels for {len(choices)} choices")
    lines = "\n".join(f"{label}: {text}" for label, text in zip(labels, choices, strict=True))
    return f"{question}\n\n{lines}\n{INSTRUCTION_SUFFIX}"


def mcq_options(question: str) -> dict[str, str]:
    """The ``L: text`` option lines of a user message written by ``format_mcq_question``, letter -> text (read
    after the blank line that ends the question, so a stem line shaped like an option is not one)."""
    return dict(_OPTION_LINE.findall(question.rsplit("\n\n", 1)[-1]))


def format_mcq_solution(reasoning: str, letter: str) -> str:
    """A response in the expected format, e.g. ``<reasoning>2 * 3 = 6</reasoning><answer>B</answer>``."""
    return f"<reasoning>{reasoning}</reasoning>{ANSWER_OPEN}{letter}{ANSWER_CLOSE}"


# --------------------------------------------------------------------------------------------------- scorer


def extract_answer(text: str) -> str:
    """The text after the last ``<answer>`` and before the next ``</answer>``, stripped (see module doc)."""
    after_last_open = text.split(ANSWER_OPEN)[-1]
    return after_last_open.split(ANSWER_CLOSE)[0].strip()


def score_mcq(solution_str: str, ground_truth: str) -> dict[str, Any]:
    """Score one response against the gold letter: ``{score, acc, pred, feedback}`` (feedback "" if right).

    The feedback names what was wrong without revealing the gold letter.
    """
    gold = ground_truth.strip()
    pred = extract_answer(solution_str)
    correct = pred == gold
    if correct:
        feedback = ""
    elif ANSWER_OPEN not in solution_str:
        feedback = "The response has no <answer>...</answer> block; end with <answer>X</answer>, X an option letter."
    elif not _LETTER.fullmatch(pred):
        feedback = f"The answer {pred[:40]!r} is not a single capital option letter."
    else:
        feedback = f"The answer {pred} is incorrect."
    return {"score": float(correct), "acc": correct, "pred": pred, "feedback": feedback}


# --------------------------------------------------------------------------------------------------- split


def split_indices(n: int, *, test_fraction: float = 0.1, seed: int = 42) -> tuple[list[int], list[int]]:
    """Deterministic train/test index split of ``range(n)``, identical to ``datasets``' ``train_test_split``.

    perm = numpy.random.default_rng(seed).permutation(n); n_test = ceil(test_fraction * n);
    n_train = floor((1 - test_fraction) * n); test = perm[:n_test]; train = perm[n_test:n_test + n_train].
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    permutation = np.random.default_rng(seed).permutation(n).tolist()
    n_test = math.ceil(test_fraction * n)
    n_train = math.floor((1.0 - test_fraction) * n)
    return permutation[n_test : n_test + n_train], permutation[:n_test]


# --------------------------------------------------------------------------------------------------- loaders


def _normalise_domains(domains: Sequence[str] | None, source: str) -> tuple[str, ...]:
    if domains is None:
        return DOMAINS
    chosen = tuple(d.lower() for d in domains)
    unknown = sorted(set(chosen) - set(DOMAINS))
    if unknown:
        raise data_error(source, None, "domains", f"unknown domain(s) {unknown}; known: {list(DOMAINS)}")
    return chosen


def _science_row(*, domain: str, idx: int, split: str, user: str, gold: str, system: str) -> dict[str, Any]:
    return make_row(
        data_source=f"sciknoweval/{domain}",
        messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
        ability=ABILITY,
        ground_truth=gold,
        index=idx,
        split=split,
        question_id=f"sciknoweval/{domain}/{idx}",
        domain=domain,
    )


def load_sciknoweval(
    path: str | Path | None = None,
    *,
    split: str = "train",
    domains: Sequence[str] | None = None,
    test_fraction: float = 0.1,
    seed: int = 42,
    system_prompt: str = SYSTEM_PROMPT,
    check_counts: bool = False,
) -> tuple[list[dict[str, Any]], FilterReport]:
    """Rows of one split from SciKnowEval in the Hugging Face schema (local file, or the hub when ``path`` is None).

    Filter: level L3, type in ``MCQ_TYPES``, domain in ``domains``; then ``split_indices`` per domain over its kept
    rows in file order. Returns the rows (domains in ``DOMAINS`` order, each in permutation order) and the
    filter report. A row with a missing field or a domain outside the four raises ``TaskDataError``. With
    ``check_counts`` each domain's split size must equal the SDPO reference's pinned count.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    source = str(path) if path is not None else f"hub:{HUB_ID}"
    chosen = _normalise_domains(domains, source)
    if path is None:
        import datasets  # optional dependency (workflow extra); only needed online

        records = [dict(r) for r in datasets.load_dataset(HUB_ID, split="test")]
    else:
        records = read_records(path)

    report = FilterReport(source=f"{source} [{split}]", read=len(records))
    by_domain: dict[str, list[tuple[str, str]]] = {d: [] for d in chosen}
    for i, record in enumerate(records):
        domain = require(record, "domain", str, source, i).lower()
        if domain not in DOMAINS:
            raise data_error(source, i, "domain", f"unknown domain {record['domain']!r}; known: {list(DOMAINS)}")
        if require(record, "details.level", str, source, i) != LEVEL:
            report.drop(f"level_not_{LEVEL}")
            continue
        if require(record, "type", str, source, i) not in MCQ_TYPES:
            report.drop("type_not_mcq")
            continue
        if domain not in by_domain:
            report.drop("domain_not_selected")
            continue
        question = require(record, "question", str, source, i)
        texts = require(record, "choices.text", list, source, i)
        labels = require(record, "choices.label", list, source, i)
        gold = require(record, "answerKey", str, source, i).strip()
        if len(texts) != len(labels) or len(texts) < 2:
            raise data_error(source, i, "choices", f"{len(texts)} texts for {len(labels)} labels")
        if gold not in labels:
            raise data_error(source, i, "answerKey", f"{gold!r} is not one of the labels {labels}")
        by_domain[domain].append((format_mcq_question(question, texts, labels), gold))

    rows: list[dict[str, Any]] = []
    for domain in DOMAINS:
        if domain not in by_domain:
            continue
        items = by_domain[domain]
        train_idx, test_idx = split_indices(len(items), test_fraction=test_fraction, seed=seed)
        report.dropped[f"other_split_{domain}"] += len(test_idx if split == "train" else train_idx)
        if check_counts:
            check_split_count(source, domain, split, len(train_idx if split == "train" else test_idx))
        for idx in train_idx if split == "train" else test_idx:
            user, gold = items[idx]
            rows.append(_science_row(domain=domain, idx=idx, split=split, user=user, gold=gold,
                                     system=system_prompt))
    report.kept = len(rows)
    report.log()
    return rows, report


def _domain_from_path(path: Path) -> str | None:
    for part in reversed(path.parts[:-1]):
        if part.lower() in DOMAINS:
            return part.lower()
    return None


def load_sdpo_science(
    path: str | Path,
    *,
    split: str = "train",
    domain: str | None = None,
    system_prompt: str | None = None,
    check_counts: bool = False,
) -> tuple[list[dict[str, Any]], FilterReport]:
    """Rows from one SDPO-reference processed split file (JSON lines), used as they are (no filtering).

    ``domain`` defaults to the folder name (``.../chemistry/train.json``). The system message is the row's own
    ``system`` field, or ``system_prompt``, or ``SYSTEM_PROMPT``. With ``check_counts`` the number of
    rows must equal the reference's pinned count for (domain, split), else ``ReferenceDataError`` names the file.
    """
    path = Path(path)
    domain = (domain or _domain_from_path(path) or "").lower()
    if domain not in DOMAINS:
        raise data_error(path, None, "domain", f"cannot tell the domain ({domain!r}); pass domain= one of "
                         f"{list(DOMAINS)} or keep the file under a folder named after it")
    records = read_records(path)
    report = FilterReport(source=f"{path} [{split}]", read=len(records))
    rows = []
    for i, record in enumerate(records):
        idx = require(record, "idx", int, path, i)
        gold = require(record, "answer", str, path, i).strip()
        user = require(record, "prompt", str, path, i)
        if not _LETTER.fullmatch(gold):
            raise data_error(path, i, "answer", f"expected one capital letter, got {gold!r}")
        if f"\n{gold}: " not in user:
            raise data_error(path, i, "prompt", f"no choice line '{gold}: ...' for the gold answer")
        system = record.get("system") or system_prompt or SYSTEM_PROMPT
        rows.append(_science_row(domain=domain, idx=idx, split=split, user=user, gold=gold, system=system))
    report.kept = len(rows)
    report.log()
    if check_counts:
        check_split_count(path, domain, split, len(rows))
    return rows, report


def detect_format(path: str | Path) -> str:
    """``"sciknoweval"`` (keys answerKey, choices) or ``"sdpo"`` (keys idx, answer, prompt) from the first record."""
    return detect_format_by_keys(
        path, {"sciknoweval": ("SciKnowEval", ("answerKey", "choices")), "sdpo": ("SDPO", ("idx", "answer", "prompt"))}
    )


def sdpo_split_files(root: str | Path, split: str, domains: Sequence[str] | None = None) -> list[Path]:
    """The reference split files ``<base>/<domain>/<split>.json``; ``root`` is a clone of the SDPO repository,
    its ``datasets`` folder, or its ``datasets/sciknoweval`` folder."""
    root = Path(root)
    base = next((b for b in (root / "datasets" / "sciknoweval", root / "sciknoweval") if b.is_dir()), root)
    files = [base / d / f"{split}.json" for d in _normalise_domains(domains, str(root))]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: missing reference split file(s) {missing}")
    return files


def load_science(
    path: str | Path | None = None,
    *,
    split: str = "train",
    format: str | None = None,
    domains: Sequence[str] | None = None,
    **kw: Any,
) -> tuple[list[dict[str, Any]], list[FilterReport]]:
    """Science rows of ``split`` from a file or folder in either layout (see module doc); hub when ``path`` is None.

    A folder means the SDPO layout (``<root>/[datasets/sciknoweval/]<domain>/<split>.json``).
    """
    if format is not None and format not in FORMATS:
        raise ValueError(f"unknown science format {format!r}; expected one of {FORMATS}")
    if path is None:
        rows, report = load_sciknoweval(None, split=split, domains=domains, **kw)
        return rows, [report]
    path = Path(path)
    if path.is_dir():
        if format == "sciknoweval":
            raise ValueError(f"{path}: format 'sciknoweval' needs a file, got a folder")
        rows, reports = [], []
        for file in sdpo_split_files(path, split, domains):
            file_rows, report = load_sdpo_science(file, split=split, **kw)
            rows += file_rows
            reports.append(report)
        return rows, reports
    format = format or detect_format(path)
    if format == "sdpo":
        rows, report = load_sdpo_science(path, split=split, **kw)
    else:
        rows, report = load_sciknoweval(path, split=split, domains=domains, **kw)
    return rows, [report]
