"""Every name the analysis reads from run directories and evaluation outputs, in one place.

Training metrics use verl's names where verl has one (both backends log them); ``sc/*`` are this suite's.
If a backend renames something, change it here only.
"""

from __future__ import annotations

import re

# ---- per-step training log (metrics.jsonl: one JSON object per step, "step" 0 = before training) ----
STEP = "step"
GRAD_NORM = "actor/grad_norm"
ENTROPY = "actor/entropy"
RESPONSE_LENGTH = "response_length/mean"
TRAIN_SCORE = "critic/score/mean"
TEACHER_DIVERGENCE = "sd/divergence_mean"  # SDPO family: mean per-token teacher-student divergence (no GRPO value)
STEP_TIME = "timing_s/step"  # seconds of one training step (rollout + teacher + update), validation excluded
CUMULATIVE_STEP_TIME = "timing_s/step_cumulative"  # running sum of STEP_TIME (0 at the step-0 validation): budgets
PASS_RATE_HIST = re.compile(r"^sc/pass_rate_hist/(?P<k>\d+)$")  # questions of the step with k successes of n
VAL_MEAN_AT_K = re.compile(r"^val-core/(?P<source>.+)/acc/mean@(?P<k>\d+)$")
VAL_MAJ_AT_K = re.compile(r"^val-core/(?P<source>.+)/acc/maj@(?P<k>\d+)/mean$")

# ---- the run's recorded config (config.yaml in the run directory; the local trainer's keys) ----
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
CONFIG_METHOD = "method"  # grpo | sdpo | sc_sdpo
CONFIG_EXPONENT = "exponent"
CONFIG_NORMALIZE = "normalize"
CONFIG_GROUP_SIZE = "rollouts_per_question"
CONFIG_QUESTIONS_PER_STEP = "questions_per_step"
CONFIG_THREADS = "threads"
CONFIG_NORM_ADV_BY_STD = "norm_adv_by_std"

# ---- evaluation outputs (scsdpo_verl.eval.runner) ----
EVAL_RESULTS_FILE = "results.json"
EVAL_SAMPLES_FILE = "samples.jsonl"
EVAL_MEAN = "mean@{k}"
EVAL_MAJ_EXACT = "maj@{k}"
EVAL_MAJ_BOOTSTRAP = "maj@{k}_bootstrap"  # verl's maj@k/mean: the tables' and figures' maj@k by default
QUESTION_MEAN, QUESTION_MAJ, QUESTION_MAJ_BOOTSTRAP = "mean", "maj", "maj_bootstrap"  # per-question fields

# ---- tables: the benchmark name of the per-seed average over benchmarks ----
AVERAGE_BENCHMARK = "average"

# ---- Snakemake benchmark files (workflow: results/benchmarks/<rule>/<wildcards>.tsv; the cost table) ----
BENCHMARK_DIR = "benchmarks"
BENCHMARK_WALL_S = "s"
BENCHMARK_CPU_S = "cpu_time"
BENCHMARK_MAX_RSS_MB = "max_rss"

# ---- the columns that identify a run in every analysis frame ----
RUN_KEYS = ("model", "task", "method", "seed")
# ablation: the method is an ablation variant (config ablation.methods), not the main grid's method of its algorithm
RUN_COLUMNS = ("model", "task", "method", "algorithm", "label", "exponent", "normalize", "seed", "ablation")
