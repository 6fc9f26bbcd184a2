"""Published numbers (``config/published.yaml``) beside this run's: loading, checking, comparing.

The file holds sources (citation, where, whether secondary) and tables of accuracies in percent, each under one
protocol: ``budget: {unit: hours, value: 5}`` (the best validation mean@16 within 5 h of cumulative step time)
or ``budget: null`` (the source states none). The workflow config's ``reporting.published`` maps its model keys
and task keys onto the file's model and benchmark names; what is not mapped is not compared.

``compare_with_published(table, ...)`` pairs every mapped published value with this run's cell of the main table
(tables.build_main_table's tidy frame): same model, method (by algorithm; ``delta_sc_sdpo_minus_sdpo`` is the Δ
row), benchmark ("average" with the table's average) and the column of the same protocol: the best-within-budget
column of the same budget, or the final checkpoint's mean@k or maj@k for a value whose source states no budget
(``compared_with`` names it). A value measured under a budget this config does not report is listed but not
compared (``compared_with`` ""): comparing it with another column would compare two protocols.
``difference`` = this run - paper, in accuracy units.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from scsdpo_verl.analysis import metric_names as names
from scsdpo_verl.analysis.budgets import UNITS, Budget, is_budget_metric

COMPARED = ("base", "grpo", "sdpo", "sc_sdpo", "delta_sc_sdpo_minus_sdpo")  # rows compared with our methods
DELTA = "delta_sc_sdpo_minus_sdpo"
AVERAGE = names.AVERAGE_BENCHMARK
_METRIC = re.compile(r"^(?P<kind>mean|maj)@(?P<k>\d+)$")
VALUE_COLUMNS = ("source", "secondary", "model", "method", "benchmark", "metric", "budget", "value")
COMPARISON_COLUMNS = ("model", "published_model", "method", "algorithm", "label", "benchmark", "published_benchmark",
                      "published_metric", "budget", "source", "secondary", "paper", "compared_with", "this_run",
                      "half_width", "std", "n_seeds", "difference")


@dataclass(frozen=True)
class Published:
    """The checked contents of a published-numbers file: ``sources`` by id, ``values`` one row per number
    (fractions, not percent; ``budget`` the label of the protocol's budget, '' when unstated)."""

    path: Path
    sources: dict[str, dict[str, Any]]
    values: pd.DataFrame


@dataclass(frozen=True)
class PublishedNames:
    """The config's names -> the file's: ``models`` (model key -> published model), ``benchmarks`` (task key ->
    published benchmark)."""

    models: dict[str, str] = field(default_factory=dict)
    benchmarks: dict[str, str] = field(default_factory=dict)


def _need(condition: bool, where: str, problem: str) -> None:
    if not condition:
        raise ValueError(f"{where}: {problem}")


def load_published(path: str | Path) -> Published:
    """Read and check a published-numbers file; every problem is one line naming the file and the key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: published-numbers file not found")
    data = yaml.safe_load(path.read_text()) or {}
    _need(isinstance(data, dict) and isinstance(data.get("sources"), dict) and data["sources"], str(path),
          "needs a non-empty mapping 'sources'")
    _need(isinstance(data.get("tables"), list), str(path), "needs a list 'tables'")
    for name, source in data["sources"].items():
        where = f"{path}: sources.{name}"
        _need(isinstance(source, dict), where, "expected a mapping")
        for key in ("citation", "where"):
            _need(isinstance(source.get(key), str) and source[key].strip(), f"{where}.{key}", "a non-empty string")
        _need(isinstance(source.get("secondary"), bool), f"{where}.secondary", "true or false")
    rows = []
    for i, table in enumerate(data["tables"]):
        where = f"{path}: tables[{i}]"
        _need(isinstance(table, dict), where, "expected a mapping")
        _need(table.get("source") in data["sources"], f"{where}.source",
              f"{table.get('source')!r} is not one of sources ({', '.join(data['sources'])})")
        _need(isinstance(table.get("model"), str), f"{where}.model", "a model name")
        _need(bool(_METRIC.match(str(table.get("metric")))), f"{where}.metric",
              f"{table.get('metric')!r} is not mean@k or maj@k")
        budget = table.get("budget")
        if budget is not None:
            _need(isinstance(budget, dict) and budget.get("unit") in UNITS, f"{where}.budget.unit",
                  f"one of {UNITS}")
            try:
                label = Budget(budget["unit"], budget.get("value")).label
            except ValueError as err:
                raise ValueError(f"{where}.budget.value: {err}") from None
        else:
            label = ""
        benchmarks = table.get("benchmarks")
        _need(isinstance(benchmarks, list) and benchmarks and all(isinstance(b, str) for b in benchmarks),
              f"{where}.benchmarks", "a non-empty list of names")
        _need(isinstance(table.get("rows"), dict) and table["rows"], f"{where}.rows", "a mapping method -> values")
        source = data["sources"][table["source"]]
        for method, values in table["rows"].items():
            _need(isinstance(values, list) and len(values) == len(benchmarks), f"{where}.rows.{method}",
                  f"{len(values) if isinstance(values, list) else 'no'} values for {len(benchmarks)} benchmarks")
            for benchmark, value in zip(benchmarks, values, strict=True):
                ok = isinstance(value, (int, float)) and not isinstance(value, bool) and -100 <= value <= 100
                _need(ok, f"{where}.rows.{method}", f"{value!r} ({benchmark}) is not a percentage")
                rows.append({"source": table["source"], "secondary": source["secondary"], "model": table["model"],
                             "method": method, "benchmark": benchmark, "metric": table["metric"], "budget": label,
                             "value": value / 100.0})
    return Published(path, dict(data["sources"]), pd.DataFrame(rows, columns=VALUE_COLUMNS))


def mapping_from_config(config: Mapping[str, Any], published: Published) -> PublishedNames:
    """The ``reporting.published`` mapping of a workflow config, checked against the config and the file."""
    spec = config.get("reporting", {}).get("published", {})
    mapping = PublishedNames(dict(spec.get("models", {})), dict(spec.get("benchmarks", {})))
    for section, ours, theirs in (("models", config.get("models", {}), set(published.values["model"])),
                                  ("benchmarks", config.get("tasks", {}), set(published.values["benchmark"]))):
        for key, name in getattr(mapping, section).items():
            _need(key in ours, f"reporting.published.{section}.{key}", f"not a key of the config's "
                  f"{'models' if section == 'models' else 'tasks'}")
            _need(name in theirs, f"reporting.published.{section}.{key}",
                  f"{name!r} is not in {published.path} (has {', '.join(sorted(theirs))})")
    return mapping


def published_path(config: Mapping[str, Any], base_dir: str | Path) -> Path:
    """The published-numbers file a workflow config names (``reporting.published.file``, config/published.yaml by
    default), relative to ``base_dir`` (the repository) unless absolute."""
    path = Path(config.get("reporting", {}).get("published", {}).get("file", "config/published.yaml"))
    return path if path.is_absolute() else Path(base_dir) / path


def published_from_config(config: Mapping[str, Any], path: str | Path) -> tuple[Published, PublishedNames]:
    """The published numbers of ``path`` and the config's mapping onto them (empty when the config maps nothing:
    then nothing is compared)."""
    published = load_published(path)
    return published, mapping_from_config(config, published)


def _cell(table: pd.DataFrame, model: str, method: str, benchmark: str, metric: str) -> pd.Series | None:
    rows = table[(table["model"] == model) & (table["method"] == method) & (table["benchmark"] == benchmark)
                 & (table["metric"] == metric)]
    return rows.iloc[0] if len(rows) else None


def compare_with_published(table: pd.DataFrame, published: Published, mapping: PublishedNames, *,
                           roles: Mapping[str, str | None], final_metrics: Mapping[str, str]) -> pd.DataFrame:
    """One row per published value the mapping reaches (COMPARISON_COLUMNS): this run's cell beside it.

    ``roles``: published method (base, grpo, sdpo, sc_sdpo, delta_sc_sdpo_minus_sdpo) -> the table's method key
    (None when absent); ``final_metrics``: "mean"/"maj" -> the table's final metric name (e.g. mean@16 and
    maj@16_bootstrap).
    """
    budget_metrics = [m for m in dict.fromkeys(table["metric"]) if is_budget_metric(m)]
    labels = dict(zip(table["method"], table["label"], strict=False))
    rows = []
    values = published.values[published.values["method"].isin(COMPARED)]
    for model, published_model in mapping.models.items():
        for _, entry in values[values["model"] == published_model].iterrows():
            if entry["benchmark"] == AVERAGE:
                benchmarks = [AVERAGE]
            else:
                benchmarks = [task for task, name in mapping.benchmarks.items() if name == entry["benchmark"]]
            method = roles.get(entry["method"])
            kind = _METRIC.match(entry["metric"])["kind"]
            for benchmark in benchmarks:
                # the column of the same protocol: the budget's, or the final checkpoint when the source states none;
                # a budget this config does not report leaves the value uncompared (compared_with "")
                compared = final_metrics[kind] if not entry["budget"] else next(
                    (m for m in budget_metrics if m.endswith(f"≤ {entry['budget']}") and kind == "mean"), "")
                ours = _cell(table, model, method, benchmark, compared) if method is not None and compared else None
                this_run = float(ours["mean"]) if ours is not None else math.nan
                rows.append({
                    "model": model, "published_model": published_model, "method": method,
                    "algorithm": entry["method"], "label": labels.get(method, entry["method"]),
                    "benchmark": benchmark, "published_benchmark": entry["benchmark"],
                    "published_metric": entry["metric"], "budget": entry["budget"], "source": entry["source"],
                    "secondary": bool(entry["secondary"]), "paper": float(entry["value"]), "compared_with": compared,
                    "this_run": this_run,
                    "half_width": float(ours["half_width"]) if ours is not None else math.nan,
                    "std": float(ours["std"]) if ours is not None and "std" in ours else math.nan,
                    "n_seeds": int(ours["n_seeds"]) if ours is not None else 0,
                    "difference": this_run - float(entry["value"]),
                })
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def paper_rows(comparison: pd.DataFrame, order: Sequence[str] = COMPARED) -> list[dict[str, Any]]:
    """Main-table rows from a comparison: per method, "<label> (paper)" with the published values in the columns
    they are compared with (a primary source's value where there is one, else the secondary's, marked †), and
    "<label>: this run − paper" with the difference (± this run's interval)."""
    comparison = comparison[comparison["compared_with"] != ""]
    if comparison.empty:
        return []
    chosen = (comparison.sort_values("secondary", kind="stable")
              .drop_duplicates(["model", "algorithm", "benchmark", "compared_with"], keep="first"))
    rank = {name: i for i, name in enumerate(order)}
    chosen = chosen.assign(_rank=chosen["algorithm"].map(rank)).sort_values(["model", "_rank"], kind="stable")
    paper, difference = [], []
    for _, row in chosen.iterrows():
        keys = {"model": row["model"], "benchmark": row["benchmark"], "metric": row["compared_with"]}
        mark = "†" if row["secondary"] else ""
        paper.append({**keys, "method": f"paper_{row['algorithm']}", "label": f"{row['label']} (paper{mark})",
                      "mean": row["paper"], "half_width": math.nan, "ci_low": math.nan, "ci_high": math.nan,
                      "std": math.nan, "n_seeds": 0})
        if not math.isnan(row["this_run"]):
            difference.append({**keys, "method": f"{row['algorithm']}_minus_paper",
                               "label": f"{row['label']}: this run − paper", "mean": row["difference"],
                               "half_width": row["half_width"], "ci_low": row["difference"] - row["half_width"],
                               "ci_high": row["difference"] + row["half_width"], "std": row["std"],
                               "n_seeds": row["n_seeds"]})
    return paper + difference


def source_notes(published: Published, comparison: pd.DataFrame) -> list[str]:
    """Footer lines: what the (paper) rows are, and each source used, with its citation (secondary marked †)."""
    if comparison.empty:
        return []
    notes = ["(paper) rows: published numbers, each in the column of this run measured the same way (the "
             "best-within-budget column of the source's budget; the final checkpoint where the source states no "
             "budget); 'this run − paper': this run's mean minus the published value, ± this run's interval. Where "
             f"sources disagree the primary one is shown; {published.path.name} and paper_comparison.csv hold them "
             "all."]
    uncompared = sorted(set(comparison[comparison["compared_with"] == ""]["budget"]))
    if uncompared:
        notes.append(f"Not compared: the published values measured within {', '.join(uncompared)} (this config "
                     "reports no such budget; reporting.budgets).")
    for source in dict.fromkeys(comparison["source"]):
        info = published.sources[source]
        mark = "† secondary: " if info["secondary"] else ""
        used = dict.fromkeys(comparison[comparison["source"] == source]["compared_with"])
        columns = ", ".join(c for c in used if c) or "nothing (see above)"
        notes.append(f"{mark}{source}: {' '.join(info['citation'].split())} ({info['where']}); compared with: "
                     f"{columns}.")
    return notes
