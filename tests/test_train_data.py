"""Trainer input side: formats, tokenisation boundaries, --where, weights, batching (no model needed)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator.errors import CuratorError
from curator.formats import Example, fine_tune_cot, format_row, natural
from curator.testing.tiny import arithmetic_corpus, train_tokenizer
from curator.train.batching import collate, plan_batches
from curator.train.config import TrainConfig
from curator.train.data import IGNORE, encode_examples, read_training_table

CHAT_TEMPLATE = (
    "{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<s>assistant:{% endif %}"
)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(arithmetic_corpus(200))


def write_rows(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return str(path)


def test_text_formats_follow_methods():
    assert fine_tune_cot("2+3?", "2+3=5.", "5") == Example("2+3? ###", " 2+3=5. --> 5")
    assert fine_tune_cot("2+3?", "2+3=5.", None) == Example("2+3? ###", " 2+3=5.")
    assert natural("2+3?", "2+3=5. The answer is 5.") == Example("Q: 2+3?\nA:", " 2+3=5. The answer is 5.")


def test_chat_format_splits_at_the_assistant_turn(tokenizer):
    tokenizer.chat_template = CHAT_TEMPLATE
    try:
        example = format_row({"question": "2+3?", "rationale": "It is 5."}, "chat", tokenizer)
    finally:
        tokenizer.chat_template = None
    assert example == Example("<s>user: 2+3?\n<s>assistant:", " It is 5.")  # what follows the turn is not learned
    with pytest.raises(CuratorError, match="no chat template"):
        format_row({"question": "q", "rationale": "r"}, "chat", tokenizer)


def test_only_completion_tokens_and_eos_carry_loss(tokenizer):
    example = natural("Tom has 3 apples.", "He has 3. The answer is 3.")
    (sample,), truncated = encode_examples(
        [example], np.ones(1), tokenizer, max_length=512, loss_on_prompt=False
    )
    prompt = tokenizer(example.prompt)["input_ids"]
    completion = tokenizer(example.completion, add_special_tokens=False)["input_ids"]
    full = prompt + completion + [tokenizer.eos_token_id]
    assert truncated == 0
    assert sample.input_ids.tolist() == full[:-1]
    # Position i predicts token i+1: exactly the completion and EOS are targets, nothing of the prompt.
    learned = sample.targets[sample.targets != IGNORE].tolist()
    assert learned == completion + [tokenizer.eos_token_id]
    assert (sample.targets[: len(prompt) - 1] == IGNORE).all()
    assert sample.count == len(completion) + 1

    (with_prompt,), _ = encode_examples([example], np.ones(1), tokenizer, max_length=512, loss_on_prompt=True)
    assert with_prompt.targets.tolist() == full[1:]


def test_chat_template_that_closes_with_eos_gets_no_second_one(tokenizer):
    tokenizer.chat_template = CHAT_TEMPLATE.replace("\n{% endfor %}", "</s>{% endfor %}")
    try:
        example = format_row({"question": "2+3?", "rationale": "It is 5."}, "chat", tokenizer)
    finally:
        tokenizer.chat_template = None
    assert example.completion == " It is 5.</s>"
    (sample,), _ = encode_examples(
        [example], np.ones(1), tokenizer, max_length=64, loss_on_prompt=False, prompt_special_tokens=False
    )
    learned = sample.targets[sample.targets != IGNORE].tolist()
    assert learned == tokenizer(" It is 5.</s>", add_special_tokens=False)["input_ids"]
    assert learned.count(tokenizer.eos_token_id) == 1


def test_a_chat_templates_special_tokens_never_carry_loss(tokenizer):
    # SmolLM2's layout: markers are special tokens, the turn ends with EOS and the template adds a newline.
    tokenizer.chat_template = (
        "{% for m in messages %}<s>{{ m['role'] }}\n{{ m['content'] }}</s>\n{% endfor %}"
        "{% if add_generation_prompt %}<s>assistant\n{% endif %}"
    )
    try:
        example = format_row({"question": "2+3?", "rationale": "It is 5."}, "chat", tokenizer)
    finally:
        tokenizer.chat_template = None
    assert example.completion == "It is 5.</s>"  # the template's trailing newline is stripped
    special = set(tokenizer.all_special_ids)
    for loss_on_prompt in (False, True):
        (sample,), _ = encode_examples(
            [example], np.ones(1), tokenizer, max_length=64, loss_on_prompt=loss_on_prompt, prompt_special_tokens=False
        )
        learned = sample.targets[sample.targets != IGNORE].tolist()
        assert [t for t in learned if t in special] == [tokenizer.eos_token_id]  # only the closing EOS
        assert learned[-1] == tokenizer.eos_token_id  # and nothing of the template after it
        assert sample.input_ids[0] == tokenizer.convert_tokens_to_ids("<s>")
    assert learned[: len(tokenizer("user", add_special_tokens=False)["input_ids"])] == tokenizer(
        "user", add_special_tokens=False
    )["input_ids"]  # with loss_on_prompt the prompt's words are learnt, its markers are not


def test_truncation_keeps_the_prompt_and_cuts_the_completion(tokenizer):
    example = natural("Tom has 3.", " ".join(["step"] * 50))
    prompt = tokenizer(example.prompt)["input_ids"]
    max_length = len(prompt) + 4
    (sample,), truncated = encode_examples(
        [example], np.ones(1), tokenizer, max_length=max_length, loss_on_prompt=False
    )
    assert truncated == 1 and sample.length == max_length
    assert sample.input_ids[: len(prompt)].tolist() == prompt and sample.count == 5
    none, _ = encode_examples(
        [natural("word " * 40, "x")], np.ones(1), tokenizer, max_length=8, loss_on_prompt=False
    )
    assert none == []  # nothing left to learn: dropped, not trained on an empty target


def test_padding_never_carries_loss_and_packing_restarts_positions(tokenizer):
    examples = [natural("a", "b c d e f g"), natural("long question here", "x")]
    samples, _ = encode_examples(
        examples, np.array([1.0, 2.0]), tokenizer, max_length=64, loss_on_prompt=False
    )
    padded = collate(samples, packed=False, pad_id=0)
    pad = padded.attention_mask == 0
    assert pad.any()
    assert (padded.targets[pad] == IGNORE).all() and (padded.token_weights[pad] == 0).all()
    assert (padded.sample_index[pad] == -1).all()
    learn = padded.targets != IGNORE
    assert set(padded.token_weights[learn].tolist()) == {1.0, 2.0}

    packed = collate(samples, packed=True, pad_id=0)
    assert packed.attention_mask is None and packed.input_ids.shape == (1, sum(s.length for s in samples))
    first = samples[0].length
    assert packed.position_ids[0, first].item() == 0 and packed.position_ids[0, first - 1].item() == first - 1
    assert packed.count == padded.count == sum(s.count for s in samples)
    assert packed.tokens == padded.tokens


def test_batch_plan_covers_every_sample_once_within_budget():
    rng_lengths = np.random.default_rng(0).integers(20, 400, size=500)
    for packed in (True, False):
        plan = plan_batches(rng_lengths, 2048, packed, np.random.default_rng(1))
        flat = np.concatenate(plan)
        assert sorted(flat.tolist()) == list(range(500))
        for batch in plan:
            cost = rng_lengths[batch].sum() if packed else len(batch) * rng_lengths[batch].max()
            assert cost <= 2048 or len(batch) == 1
        again = plan_batches(rng_lengths, 2048, packed, np.random.default_rng(1))
        assert all(np.array_equal(a, b) for a, b in zip(plan, again, strict=True))
    grouped = plan_batches(rng_lengths, 2048, False, np.random.default_rng(1))
    padding = sum(len(b) * rng_lengths[b].max() - rng_lengths[b].sum() for b in grouped)
    assert padding < 0.1 * rng_lengths.sum()  # length grouping wastes little on padding


def test_where_and_weights_select_rows(tmp_path):
    rows = [
        {"id": "1", "question": "q", "rationale": "r", "keep": True, "dropped_by": None, "weight": 1.0},
        {
            "id": "2",
            "question": "q",
            "rationale": "r",
            "keep": False,
            "dropped_by": "correctness",
            "weight": 1.0,
        },
        {
            "id": "3",
            "question": "q",
            "rationale": "r",
            "keep": False,
            "dropped_by": "correctness",
            "weight": 0.0,
        },
        {"id": "4", "question": "q", "rationale": "r", "keep": False, "dropped_by": "entropy", "weight": 2.5},
    ]
    path = write_rows(tmp_path / "rows.parquet", rows)
    negatives = read_training_table(path, ["dropped_by=correctness"], ("question", "rationale"))
    assert negatives.table.column("id").to_pylist() == ["2"]
    assert (negatives.rows_read, negatives.rows_filtered, negatives.rows_zero_weight) == (4, 2, 1)
    kept = read_training_table(path, ["keep=true"], ())
    assert kept.table.column("id").to_pylist() == ["1"]
    assert read_training_table(path, ["dropped_by=null"], ()).table.column("id").to_pylist() == ["1"]
    others = read_training_table(path, ["dropped_by!=correctness"], ())
    assert others.table.column("id").to_pylist() == ["1", "4"]
    assert others.weights.tolist() == [1.0, 2.5]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (["colour=red"], "no column 'colour'"),
        (["keep"], "expected COLUMN=VALUE"),
        (["weight=heavy"], "not a value of column 'weight'"),
    ],
)
def test_bad_where_is_a_one_line_error(tmp_path, where, message):
    path = write_rows(
        tmp_path / "rows.parquet",
        [{"id": "1", "question": "q", "rationale": "r", "keep": True, "weight": 1.0}],
    )
    with pytest.raises(CuratorError, match=message):
        read_training_table(path, where, ())


def test_bad_inputs_name_file_and_column(tmp_path):
    with pytest.raises(CuratorError, match="no such file"):
        read_training_table(str(tmp_path / "missing.parquet"), [], ())
    path = write_rows(
        tmp_path / "rows.parquet", [{"id": "1", "question": "q", "rationale": "r", "weight": -1.0}]
    )
    with pytest.raises(CuratorError, match="row 1: column 'weight'"):
        read_training_table(path, [], ())
    with pytest.raises(CuratorError, match="missing column 'nce_beta'"):
        read_training_table(path, ["weight!=null"], ("nce_beta",))


def test_config_from_yaml_with_overrides(tmp_path):
    yaml_path = tmp_path / "train.yaml"
    yaml_path.write_text("data: d.parquet\nmodel: m\nlr: 3e-4\nlora-r: 8\npacking: false\n")
    config = TrainConfig.from_sources(yaml_path, {"output": "out", "lora_r": 4, "lr": None})
    assert (config.lr, config.lora_r, config.packing, config.output) == (3e-4, 4, "off", "out")
    yaml_path.write_text("data: d\nmodel: m\noutput: o\nlearning_rate: 1\n")
    with pytest.raises(CuratorError, match="unknown training option 'learning_rate'"):
        TrainConfig.from_sources(yaml_path, {})
    with pytest.raises(CuratorError, match="needs a teacher"):
        TrainConfig(data="d", model="m", output="o", objective="nce")
    with pytest.raises(CuratorError, match="objective must be one of"):
        TrainConfig(data="d", model="m", output="o", objective="dpo")


def test_dtypes_are_the_shared_list_and_training_refuses_float16():
    from curator.lm.loading import DTYPES

    for dtype in DTYPES:
        if dtype != "float16":
            assert TrainConfig(data="d", model="m", output="o", dtype=dtype).dtype == dtype
    with pytest.raises(CuratorError, match="dtype float16 is not supported for training"):
        TrainConfig(data="d", model="m", output="o", dtype="float16")
    with pytest.raises(CuratorError, match="dtype must be one of auto, bfloat16, float16, float32"):
        TrainConfig(data="d", model="m", output="o", dtype="half")
