"""ds_weight (IWSI) against METHODS §3.6 computed independently, with the model's own loss."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curator import CuratorError
from curator.testing import make_candidates, manifest_of, run_filter
from curator_plugins.ds_weight import DSWeight, gsm8k_rationale, read_validation_set

torch = pytest.importorskip("torch")

GSM8K_ANSWER = (
    "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
    "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 1,072"
)


def test_gsm8k_references_become_rationales():
    assert gsm8k_rationale(GSM8K_ANSWER) == (
        "Natalia sold 48/2 = 24 clips in May.\n"
        "Natalia sold 48+24 = 72 clips altogether in April and May.\nThe answer is 1072."
    )


def test_validation_set_from_rationales_or_gsm8k_answers(tmp_path):
    (tmp_path / "v.jsonl").write_text(
        "\n".join(json.dumps({"question": f"q{i}", "rationale": f"r{i}"}) for i in range(5)) + "\n"
    )
    assert read_validation_set(tmp_path / "v.jsonl", limit=3) == (["q0", "q1", "q2"], ["r0", "r1", "r2"])
    pq.write_table(pa.table({"question": ["q"], "answer": [GSM8K_ANSWER]}), tmp_path / "g.parquet")
    assert read_validation_set(tmp_path / "g.parquet") == (["q"], [gsm8k_rationale(GSM8K_ANSWER)])
    import pyarrow.feather as feather

    feather.write_feather(pa.table({"question": ["q"], "rationale": ["r"]}), tmp_path / "v.arrow")  # any input format
    assert read_validation_set(tmp_path / "v.arrow") == (["q"], ["r"])
    (tmp_path / "nulls.jsonl").write_text('{"question": "q", "rationale": "r"}\n{"question": null}\n')
    with pytest.raises(CuratorError, match=r"nulls.jsonl:2: column 'question' is null"):
        read_validation_set(tmp_path / "nulls.jsonl")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "q", "text": "t"}) + "\n")
    with pytest.raises(CuratorError, match="'rationale' or GSM8K 'answer'"):
        read_validation_set(tmp_path / "bad.jsonl")


def mean_token_loss(model, tokenizer, question: str, rationale: str) -> float:
    """l_i as HF computes a causal LM loss: mean cross-entropy over every predicted token."""
    ids = torch.tensor([tokenizer(f"Q: {question}\nA: {rationale}")["input_ids"]])
    with torch.no_grad():
        return model(ids, labels=ids).loss.item()


@pytest.fixture(scope="module")
def setup(tiny_llama, tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("ds")
    rng = np.random.default_rng(0)
    valid = [{"question": f"Tom has {a} eggs and buys {b}. How many?", "rationale": f"{a} + {b} = {a + b}."}
             for a, b in rng.integers(1, 99, (6, 2))]
    (root / "valid.jsonl").write_text("".join(json.dumps(v) + "\n" for v in valid))
    groups, rationales = [], []
    for _ in range(25):
        a, b = rng.integers(1, 99, 2)
        groups.append([str(a + b)] * 4)
        rationales.append([f"{a} + {b} = {a + b}.", "eggs eggs eggs " * int(rng.integers(1, 9)),
                           f"Tom has {a} eggs. The answer is {a + b}.", "".join(rng.choice(list("xyz!?"), 30))])
    table = make_candidates(groups, rationales=rationales)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama).eval()
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    return root, table, valid, model, tokenizer


def test_ds_weight_equals_the_formula_and_keeps_keep_percent(setup, tiny_llama):
    root, table, valid, model, tokenizer = setup
    result = run_filter(
        "ds_weight", table, base_dir=root, batch_rows=17,
        model=str(tiny_llama), valid="valid.jsonl", keep_percent=80, batch_tokens=200,
    )
    losses = np.array([mean_token_loss(model, tokenizer, q, r) for q, r in
                       zip(table.column("question").to_pylist(), table.column("rationale").to_pylist(), strict=True)])
    valid_loss = np.mean([mean_token_loss(model, tokenizer, v["question"], v["rationale"]) for v in valid])
    ratio = np.clip(valid_loss / losses, 0, 2)
    expected = np.array([r if r > 1 else min(1 / r, 5) for r in ratio])
    np.testing.assert_allclose(result.column("ds_loss").to_numpy(), losses, rtol=1e-5)
    np.testing.assert_allclose(result.column("ds_weight").to_numpy(), expected, rtol=1e-5)
    keep = result.column("keep").to_numpy(zero_copy_only=False)
    assert keep.sum() == 80  # 80 % of 100 rows
    assert expected[keep].max() <= expected[~keep].min()
    step = manifest_of(result)["steps"][0]
    assert step["facts"]["L_v"] == pytest.approx(valid_loss, rel=1e-5)
    assert step["facts"]["valid_rows"] == 6


def test_caps_are_parameters_and_zero_loss_has_no_weight_as_in_iwsi():
    from curator_plugins.ds_weight import ds_weights

    # IWSI's record_weights.py gives l_i = 0 the weight w' = 0, and filter_data.py (K-Mixed) leaves
    # w' = 0 out of the percentile pool and drops it: a null DS weight does both here.
    losses = np.array([0.0, 1.0, 2.0, 4.0, 100.0, np.nan])
    np.testing.assert_allclose(
        ds_weights(losses, 2.0, clip_max=2.0, inverse_cap=5.0), [np.nan, 2.0, 1.0, 2.0, 5.0, np.nan]
    )
    np.testing.assert_allclose(ds_weights(losses, 2.0, clip_max=1.5, inverse_cap=3.0)[1:5], [1.5, 1.0, 2.0, 3.0])


def test_options_are_checked():
    with pytest.raises(CuratorError, match="keep_percent"):
        DSWeight.from_options({"model": "m", "valid": "v.jsonl", "keep_percent": 120}, step="ds")
    with pytest.raises(CuratorError, match="'max_length' must be positive"):
        DSWeight.from_options({"model": "m", "valid": "v.jsonl", "max_length": 0}, step="ds")
    assert "keep_percent" not in DSWeight(model="m", valid="v").score_options()
