"""The packaged lm-eval tasks: indexing, data loading errors, the filters through lm-eval with a scripted LM,
and a real run of the runner on a tiny random Qwen3 (hf backend, CPU, offline)."""

from __future__ import annotations

import json
import os

import pytest

lm_eval = pytest.importorskip("lm_eval")
torch = pytest.importorskip("torch")

from lm_eval.api.model import LM  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from scsdpo_verl.eval.lm_eval_tasks import load_docs  # noqa: E402
from scsdpo_verl.eval.majority import bootstrap_majority_accuracy, exact_majority_accuracy  # noqa: E402
from scsdpo_verl.eval.runner import (  # noqa: E402
    PACKAGED_TASK_DIR,
    TASK_DATA_SOURCES,
    evaluate_in_turn,
    lm_eval_task_name,
    read_samples,
    run_lm_eval,
    sampling_settings,
    summarise_records,
    write_task_config,
)
from scsdpo_verl.tasks.schema import TaskDataError, write_parquet  # noqa: E402
from scsdpo_verl.tasks.synthetic import generate  # noqa: E402

os.environ.update({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"})


@pytest.fixture(scope="module")
def science_parquet(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "test.parquet"
    write_parquet(list(generate("synthetic_science", 3, 0, split="test")), path)
    return path


def test_packaged_tasks_are_indexed():
    manager = TaskManager(include_path=str(PACKAGED_TASK_DIR), include_defaults=False)
    expected = {f"scsdpo_{name}" for name in TASK_DATA_SOURCES}
    assert expected <= set(manager.all_tasks)
    assert "scsdpo" in manager.all_tags  # the tag that selects all seven


def test_packaged_task_reads_data_path_from_metadata(science_parquet):
    # the lm-eval CLI route: --include_path <package tasks> --metadata '{"data_path": ...}'
    manager = TaskManager(include_path=str(PACKAGED_TASK_DIR), include_defaults=False,
                          metadata={"data_path": str(science_parquet)})
    task = manager.load(["scsdpo_synthetic_science"])["tasks"]["scsdpo_synthetic_science"]
    assert len(list(task.eval_docs)) == 3 and task.config.repeats == 16
    assert [f.name for f in task._filters] == ["mean@16", "maj@16", "maj@16_bootstrap"]


def test_task_names():
    assert lm_eval_task_name("science", "Chemistry") == "scsdpo_sciknoweval_chemistry"
    assert lm_eval_task_name("synthetic_tooluse") == "scsdpo_synthetic_tooluse"
    assert lm_eval_task_name("scsdpo_tooluse") == "scsdpo_tooluse"
    with pytest.raises(ValueError, match="domain"):
        lm_eval_task_name("science")
    with pytest.raises(ValueError, match="unknown evaluation task"):
        lm_eval_task_name("gsm8k")


def test_load_docs_flattens_rows_and_filters_by_source(science_parquet):
    docs = load_docs(data_path=str(science_parquet), data_source="synthetic_science", version=1.0)["test"]
    assert len(docs) == 3
    assert set(docs.column_names) == {"question_id", "data_source", "system", "user", "ground_truth", "difficulty",
                                      "index", "scorer"}
    assert set(docs["scorer"]) == {"strict"}  # rows without extra_info.scorer: the default
    assert docs[0]["system"] and "Please reason step by step." in docs[0]["user"]
    with pytest.raises(ValueError, match="no rows with data_source 'tooluse'"):
        load_docs(data_path=str(science_parquet), data_source="tooluse")


def test_evaluation_scores_with_the_rows_scorer(tmp_path):
    from scsdpo_verl.eval.lm_eval_tasks import score_responses
    from scsdpo_verl.tasks.tooluse import make_gold

    rows = [json.loads(json.dumps(r)) for r in generate("synthetic_tooluse", 1, 0, split="test")]
    rows[0]["reward_model"]["ground_truth"] = make_gold([("addPet", {"pet": {"name": "Rex"}})])
    rows[0]["extra_info"]["scorer"] = "reference"
    path = tmp_path / "tool.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n")
    doc = load_docs(data_path=str(path))["test"][0]
    assert doc["scorer"] == "reference"
    nested = 'Action: addPet\nAction Input: {"pet": {"name": "Rex"}}'
    assert score_responses(doc, [nested])[1] == [0.0]  # the reference parser cannot read a nested input
    assert score_responses({**doc, "scorer": "strict"}, [nested])[1] == [1.0]


def test_load_docs_error_names_file_row_and_field(tmp_path):
    rows = [json.loads(json.dumps(r)) for r in generate("synthetic_science", 2, 0, split="test")]
    del rows[1]["reward_model"]["ground_truth"]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(TaskDataError, match=r"bad.jsonl, row 1, field 'reward_model.ground_truth'"):
        load_docs(data_path=str(path))


class ScriptedLM(LM):
    """Answers each prompt with a fixed cycle of answers: call i on a prompt returns script[i % len(script)]."""

    def __init__(self, gold_by_user_text: dict[str, str], script):
        super().__init__()
        self.gold_by_user_text, self.script, self.calls = gold_by_user_text, script, {}

    def generate_until(self, requests, disable_tqdm=False):
        out = []
        for request in requests:
            context = request.args[0]
            gold = next(g for text, g in self.gold_by_user_text.items() if text in context)
            i = self.calls.get(context, 0)
            self.calls[context] = i + 1
            out.append(self.script[i % len(self.script)](gold))
        return out

    def loglikelihood(self, requests, disable_tqdm=False):
        raise NotImplementedError

    def loglikelihood_rolling(self, requests, disable_tqdm=False):
        raise NotImplementedError


def test_filters_compute_mean_exact_and_bootstrap_majority(science_parquet, tmp_path):
    rows = list(generate("synthetic_science", 3, 0, split="test"))
    gold = {r["prompt"][-1]["content"]: r["reward_model"]["ground_truth"] for r in rows}
    wrong = lambda g: "E" if g != "E" else "F"  # noqa: E731
    # k = 5 samples per question: right, wrong(W), right, wrong(W), another wrong (V)
    script = [lambda g: f"<answer>{g}</answer>", lambda g: f"<answer>{wrong(g)}</answer>",
              lambda g: f"ok <answer>{g}</answer>", lambda g: f"<answer>{wrong(g)}</answer>", lambda g: "no tag"]
    config_dir = tmp_path / "tasks"
    write_task_config("synthetic_science", science_parquet, config_dir, repeats=5, max_gen_toks=8)
    manager = TaskManager(include_path=str(config_dir), include_defaults=False)
    output = lm_eval.simple_evaluate(model=ScriptedLM(gold, script), tasks=["scsdpo_synthetic_science"],
                                     task_manager=manager, log_samples=False)
    results = output["results"]["scsdpo_synthetic_science"]
    preds = ["G", "W", "G", "W", "no tag"]  # per question: votes 2-2-1, the right answer G seen first wins ties
    accs = [1.0, 0.0, 1.0, 0.0, 0.0]
    assert results["acc,mean@5"] == pytest.approx(0.4)
    assert results["acc,maj@5"] == pytest.approx(exact_majority_accuracy(preds, accs)) == pytest.approx(1.0)
    assert results["acc,maj@5_bootstrap"] == pytest.approx(bootstrap_majority_accuracy(preds, accs))
    assert 0.3 < results["acc,maj@5_bootstrap"] < 0.9


def _tiny_model_dir(path, seed=0):
    """A random 1-layer Qwen3 and a byte-level BPE tokenizer with a ChatML template, saved to ``path``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast, Qwen3Config

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=280, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    core.train_from_iterator(["<answer>A</answer> <reasoning>2 + 2</reasoning>"], trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    )
    config = Qwen3Config(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, head_dim=8, max_position_embeddings=2048,
                         pad_token_id=0, eos_token_id=2, bos_token_id=None, tie_word_embeddings=True)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_run_lm_eval_on_a_tiny_qwen3(science_parquet, tmp_path):
    torch.set_num_threads(1)
    model_dir = _tiny_model_dir(tmp_path / "model")
    out = tmp_path / "eval"
    results = run_lm_eval(model_dir, "synthetic_science", science_parquet, out, repeats=3, limit=2, max_gen_toks=4,
                          batch_size=8)
    assert (out / "results.json").is_file() and (out / "lm_eval_task" / "scsdpo_synthetic_science.yaml").is_file()
    assert json.loads((out / "results.json").read_text())["metrics"] == results["metrics"]
    records = read_samples(out / "samples.jsonl")
    assert len(records) == results["num_questions"] == 2
    assert all(len(r["responses"]) == len(r["accs"]) == len(r["preds"]) == 3 for r in records)
    assert set(results["metrics"]) == {"mean@3", "maj@3", "maj@3_bootstrap"}
    # lm-eval's own filters and the re-scoring of the logged samples agree
    assert results["lm_eval_metrics"] == pytest.approx(results["metrics"])
    assert summarise_records(records) == pytest.approx(results["metrics"])


def test_evaluate_in_turn_gives_each_checkpoint_what_a_run_of_its_own_gives(science_parquet, tmp_path):
    # two different random models; the second evaluated after the first, in one call, must sample exactly what
    # it samples when evaluated alone (lm-eval reseeds at each call: no RNG state leaks from one to the next)
    torch.set_num_threads(1)
    models = [_tiny_model_dir(tmp_path / f"model{i}", seed=i) for i in (0, 1)]
    settings = {"repeats": 3, "limit": 2, "max_gen_toks": 6, "batch_size": 8, "temperature": 1.0}
    checkpoints = [{"model_dir": model, "out_dir": tmp_path / f"turn{i}", "seed": 1234 + i,
                    "benchmark": tmp_path / "bench" / f"turn{i}.tsv"} for i, model in enumerate(models)]
    in_turn = evaluate_in_turn(checkpoints, "synthetic_science", science_parquet, **settings)
    alone = run_lm_eval(models[1], "synthetic_science", science_parquet, tmp_path / "alone", seed=1235, **settings)
    turn_samples = read_samples(tmp_path / "turn1" / "samples.jsonl")
    assert turn_samples == read_samples(tmp_path / "alone" / "samples.jsonl")
    assert in_turn[1]["metrics"] == alone["metrics"]
    # and the two models (and seeds) did sample differently, so the equality above says something
    assert read_samples(tmp_path / "turn0" / "samples.jsonl") != turn_samples
    from scsdpo_verl.analysis.tables import read_benchmark
    for checkpoint in checkpoints:
        measured = read_benchmark(checkpoint["benchmark"])  # what the cost table reads
        assert measured["cpu_s"] > 0 and 0 < measured["wall_s"] < 600 and measured["max_rss_mb"] > 50



@pytest.mark.parametrize(("backend", "device"), [("hf", "cpu"), ("vllm", "cuda")])
def test_sampling_settings_are_the_evaluation_section_less_the_seed_with_the_backends_device(backend, device):
    import inspect

    section = {"backend": backend, "repeats": 16, "limit": None, "temperature": 0.6, "top_p": 0.95,
               "max_gen_toks": 48, "batch_size": 8, "seed": 1000}
    settings = sampling_settings(section)
    assert settings == {"backend": backend, "repeats": 16, "limit": None, "temperature": 0.6, "top_p": 0.95,
                        "max_gen_toks": 48, "batch_size": 8, "device": device}  # the seed is set per run
    assert set(settings) <= set(inspect.signature(run_lm_eval).parameters)  # what the scripts pass it
