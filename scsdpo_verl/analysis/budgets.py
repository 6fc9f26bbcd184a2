"""Best validation accuracy within a training budget, the SDPO paper's protocol.

The SDPO paper reports, per run, the best validation mean@16 among the evaluations made within 1 h and 5 h of
training time, where training time is the cumulative step time the trainer logs (verl's ``timing_s/step``
summed, validation excluded; both backends log the running sum as ``timing_s/step_cumulative``), not the last
checkpoint's accuracy. A budget here is a number of hours or seconds on that axis, or a number of steps (the
CPU configs: their step times depend on the machine, their steps do not).

For a run and a budget B: the validations at steps s with x(s) <= B, x = the cumulative step time (hours or
seconds) or the step; the validation before the first step (x = 0) always counts. The value is the highest
validation mean@k among them (the mean over the run's ``val-core/<source>/acc/mean@k`` columns), ``best_step``
its step, and ``reached`` says whether the run's last logged step got to B: a run that ended before B reports
its best over the whole run, and the tables mark it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from scsdpo_verl.analysis import metric_names as names
from scsdpo_verl.analysis.runs import metric_columns

UNITS = ("hours", "seconds", "steps")
DEFAULT_BUDGETS = {"unit": "hours", "values": [1, 5]}  # the SDPO paper's (schema default of reporting.budgets)
BUDGET_COLUMNS = ("budget", "metric", "value", "best_step", "reached", "k")


@dataclass(frozen=True)
class Budget:
    unit: str  # hours | seconds | steps
    value: float

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"reporting.budgets.unit: {self.unit!r} is not one of {UNITS}")
        if not (isinstance(self.value, (int, float)) and self.value > 0 and math.isfinite(self.value)):
            raise ValueError(f"reporting.budgets.values: {self.value!r} is not a positive number")

    @property
    def label(self) -> str:
        """'1 h', '90 s', '4 steps'."""
        short = {"hours": "h", "seconds": "s", "steps": "steps" if self.value != 1 else "step"}[self.unit]
        return f"{self.value:g} {short}"

    @property
    def axis(self) -> str:
        """The training-log column the budget is measured on."""
        return names.STEP if self.unit == "steps" else names.CUMULATIVE_STEP_TIME

    @property
    def limit(self) -> float:
        """The budget on that column (seconds for hours and seconds, steps for steps)."""
        return self.value * 3600.0 if self.unit == "hours" else float(self.value)


def budgets_from_config(config: Mapping[str, Any]) -> list[Budget]:
    """The budgets of a workflow config's ``reporting.budgets`` (``{unit, values}``; the paper's 1 h and 5 h when
    absent)."""
    spec = config.get("reporting", {}).get("budgets", DEFAULT_BUDGETS)
    return [Budget(spec["unit"], value) for value in spec["values"]]


def budget_metric(k: int, budget: Budget) -> str:
    """The metric name of a budget column, e.g. 'best mean@16 ≤ 5 h'."""
    return f"best {names.EVAL_MEAN.format(k=k)} ≤ {budget.label}"


def is_budget_metric(metric: str) -> bool:
    return metric.startswith("best ")


def best_within_budgets(training: pd.DataFrame, budgets: Sequence[Budget]) -> pd.DataFrame:
    """One row per (run, budget): the run columns + budget label, metric name, value, best_step, reached, k.

    Raises naming the run when a time budget meets a log without the cumulative step time, or a run has no
    validation."""
    columns = [*names.RUN_COLUMNS, *BUDGET_COLUMNS]
    if training.empty or not budgets:
        return pd.DataFrame(columns=columns)
    val_columns = metric_columns(training, names.VAL_MEAN_AT_K)
    ks = {int(names.VAL_MEAN_AT_K.match(c)["k"]) for c in val_columns}
    rows = []
    for _, run in training.groupby(list(names.RUN_KEYS), sort=False):
        first = run.iloc[0]
        where = f"run {first['model']}/{first['task']}/{first['method']}/seed{first['seed']}"
        run_val = [c for c in val_columns if run[c].notna().any()]
        if not run_val:
            raise ValueError(f"{where}: no validation (val-core/<source>/acc/mean@k) in its metrics.jsonl")
        run_ks = {int(names.VAL_MEAN_AT_K.match(c)["k"]) for c in run_val} & ks
        if len(run_ks) != 1:
            raise ValueError(f"{where}: validation with several k ({sorted(run_ks)}); one is expected")
        k = run_ks.pop()
        run = run.sort_values(names.STEP)
        validations = run.assign(_value=run[run_val].mean(axis=1, skipna=True)).dropna(subset=["_value"])
        for budget in budgets:
            if budget.axis not in run or run[budget.axis].isna().all():
                raise ValueError(f"{where}: no '{budget.axis}' in its metrics.jsonl; the {budget.label} budget is "
                                 "measured on it")
            within = validations[validations[budget.axis] <= budget.limit]
            best = within.loc[within["_value"].idxmax()] if not within.empty else None
            rows.append({**{c: first[c] for c in names.RUN_COLUMNS}, "budget": budget.label,
                         "metric": budget_metric(k, budget),
                         "value": float(best["_value"]) if best is not None else math.nan,
                         "best_step": int(best[names.STEP]) if best is not None else None,
                         "reached": bool(run[budget.axis].max() >= budget.limit), "k": k})
    return pd.DataFrame(rows, columns=columns)
