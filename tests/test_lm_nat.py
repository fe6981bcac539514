"""The NAT layers on a tiny grouped-query Llama: identity at initialisation, α's range, modes, folder round trip."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from curator.errors import CuratorError  # noqa: E402
from curator.lm.loading import load_adapter_pair, load_causal_lm  # noqa: E402
from curator.lm.nat import NatLinear, NatModel, NatSpec, build_nat, load_nat, select_modules  # noqa: E402
from curator.lm.peft_lora import read_lora  # noqa: E402
from curator.testing.tiny import build_tiny_llama, build_tiny_lora  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def gqa(tmp_path_factory):
    """A tiny Llama with grouped-query attention (4 query heads, 2 key/value heads: v_proj 32 -> 16)."""
    root = tmp_path_factory.mktemp("nat-lm")
    base = build_tiny_llama(root / "base", num_attention_heads=4, num_key_value_heads=2)
    negative = build_tiny_lora(base, root / "neg", seed=3)  # random A and B on q_proj, v_proj, down_proj
    other = build_tiny_lora(base, root / "other", seed=4)
    return base, negative, other


def _model(base):
    return transformers.AutoModelForCausalLM.from_pretrained(base).eval()


def _nat(base, negative, targets="all-linear", width=128, seed=0) -> NatModel:
    model = _model(base)
    weights = read_lora(negative)
    spec = NatSpec(
        modules=select_modules(model, weights, targets), r=4, lora_alpha=8.0, lora_dropout=0.0,
        negative_rank=weights.rank, negative_scaling=weights.scaling, width=width,
    )  # fmt: skip
    torch.manual_seed(seed)
    return build_nat(model, weights, spec, {"base_model_name_or_path": str(base)})


def _ids(n: int = 3, length: int = 12, seed: int = 0):
    return torch.randint(3, 500, (n, length), generator=torch.Generator().manual_seed(seed))


def _randomise(nat: NatModel, scale: float = 0.5, seed: int = 1) -> None:
    """Trained-looking positive branch and unit (change2 no longer zero)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in nat.parameters():
            if p.requires_grad:
                p.copy_(torch.randn(p.shape, generator=generator) * scale)


def test_a_fresh_nat_model_equals_its_base_whatever_the_negative_branch(gqa):
    base, negative, _ = gqa
    ids = _ids()
    with torch.no_grad():
        expected = _model(base)(input_ids=ids).logits
        nat = _nat(base, negative)
        got = nat(input_ids=ids).logits
        nat.set_adapter("negative")
        negative_only = nat(input_ids=ids).logits
    assert torch.equal(got, expected)  # change2 = 0: the unit adds exactly nothing (the issue asks 1e-6)
    assert (negative_only - expected).abs().max() > 1e-2  # the negative branch is far from empty
    v_proj = nat.layers()["model.layers.0.self_attn.v_proj"]
    # Grouped-query attention: v_proj maps 32 to 16, so K and change1 read 16-wide branch outputs, Q the 32-wide input.
    assert (v_proj.base.in_features, v_proj.base.out_features) == (32, 16)
    assert (v_proj.unit_q.in_features, v_proj.unit_k.in_features, v_proj.unit_v1.in_features) == (32, 16, 16)
    assert v_proj.unit_v2.out_features == 16 and v_proj.unit_k.out_features == 128


def test_modes_match_peft_and_the_bare_base(gqa):
    base, negative, _ = gqa
    ids = _ids(seed=2)
    nat = _nat(base, negative)
    _randomise(nat)
    with torch.no_grad():
        peft_negative = (
            load_causal_lm(str(base), adapter=str(negative), device="cpu").model(input_ids=ids).logits
        )
        nat.set_adapter("negative")
        ours = nat(input_ids=ids).logits
        with nat.disable_adapter():
            bare = nat(input_ids=ids).logits
        nat.set_adapter("nat")
        mixed = nat(input_ids=ids).logits
    torch.testing.assert_close(ours, peft_negative, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(bare, _model(base)(input_ids=ids).logits, atol=0, rtol=0)
    assert (mixed - ours).abs().max() > 1e-2


def test_alpha_stays_in_range_and_training_drives_it_to_both_ends(gqa):
    base, negative, _ = gqa
    layer = _nat(base, negative).layers()["model.layers.1.self_attn.q_proj"]
    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        for scale in (0.1, 10.0, 1e3):  # huge scores saturate the softmax, never leave the range
            for p in (layer.unit_q.weight, layer.unit_k.weight, layer.pos_B.weight):
                p.copy_(torch.randn(p.shape) * scale)
            alpha = layer.alpha(x)
            assert alpha.min() >= -0.5 and alpha.max() <= 0.5
    for sign, end in ((1.0, 0.5), (-1.0, -0.5)):
        with torch.no_grad():  # start unsaturated, where the gradient is not zero
            for p in (layer.unit_q.weight, layer.unit_k.weight, layer.pos_B.weight):
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(6)) * 0.1)
        optimiser = torch.optim.Adam(
            [layer.unit_q.weight], lr=0.05
        )  # the query alone: a linear push on the scores
        for _ in range(300):
            h = x
            out = layer.base(x)
            branches = torch.stack((out + layer.pos_B(layer.pos_A(h)) * layer.scaling,
                                    out + layer.neg_B(layer.neg_A(h)) * layer.negative_scaling), -2)  # fmt: skip
            loss = -sign * layer.negative_weight(h, branches).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        alpha = layer.alpha(x)
        assert (alpha - end).abs().max() < 1e-3 and alpha.abs().max() <= 0.5


def test_save_and_load_round_trip_to_identical_logits(gqa, tmp_path):
    base, negative, _ = gqa
    nat = _nat(base, negative, targets=["q_proj", "v_proj"], width=16)  # the released code's targets
    _randomise(nat)
    nat.eval()
    nat.save_pretrained(tmp_path / "nat")
    config = json.loads((tmp_path / "nat" / "nat_config.json").read_text())
    assert config["format"] == "curator-nat" and config["width"] == 16 and len(config["modules"]) == 4
    assert config["base_model_name_or_path"] == str(base) and len(config["negative"]["digest"]) == 32
    assert sorted(p.name for p in (tmp_path / "nat").iterdir()) == [
        "nat_config.json",
        "nat_model.safetensors",
    ]
    ids = _ids(seed=7)
    rng_before = torch.get_rng_state()
    loaded = load_causal_lm(str(base), adapter=str(tmp_path / "nat"), device="cpu")
    assert torch.equal(torch.get_rng_state(), rng_before)  # loading draws no random numbers of the caller's
    assert isinstance(loaded.model, NatModel) and not any(p.requires_grad for p in loaded.model.parameters())
    with torch.no_grad():
        assert torch.equal(loaded.model(input_ids=ids).logits, nat(input_ids=ids).logits)
        out = loaded.model.generate(ids[:1, :4], max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 9)
    with pytest.raises(CuratorError, match="cannot be merged"):
        loaded.model.merge_and_unload()


def test_one_base_serves_nat_and_its_own_negative_branch(gqa, tmp_path):
    base, negative, other = gqa
    nat = _nat(base, negative)
    _randomise(nat)
    nat.save_pretrained(tmp_path / "nat")
    p, n = load_adapter_pair(str(base), str(tmp_path / "nat"), str(negative), device="cpu")
    assert p.model is n.model and (p.adapter, n.adapter) == ("nat", "negative")
    p2, n2 = load_adapter_pair(str(base), str(tmp_path / "nat"), str(other), device="cpu")
    assert p2.model is not n2.model  # another adapter is not NAT's negative branch: a model of its own
    ids = _ids(seed=9)
    with torch.no_grad():
        with n.active() as model:
            shared = model(input_ids=ids).logits
        separate = load_causal_lm(str(base), adapter=str(negative), device="cpu").model(input_ids=ids).logits
        with p.active() as model:
            mixed = model(input_ids=ids).logits
    torch.testing.assert_close(shared, separate, atol=1e-5, rtol=1e-5)
    assert (mixed - shared).abs().max() > 1e-2


def test_modules_are_chosen_as_peft_names_them(gqa):
    base, negative, _ = gqa
    model, weights = _model(base), read_lora(negative)
    assert select_modules(model, weights, "all-linear") == tuple(sorted(weights.modules))
    assert len(select_modules(model, weights, ["q_proj", "v_proj"])) == 4
    assert select_modules(model, weights, r".*\.1\.self_attn\.q_proj") == ("model.layers.1.self_attn.q_proj",)
    with pytest.raises(CuratorError, match="has no branch on 'model.layers.0.self_attn.k_proj'"):
        select_modules(model, weights, ["k_proj"])
    with pytest.raises(CuratorError, match="match no linear projection"):
        select_modules(model, weights, ["nothing"])
    assert isinstance(_nat(base, negative).layers()["model.layers.0.mlp.down_proj"], NatLinear)


def test_a_folder_for_another_model_is_refused(gqa, tmp_path):
    base, negative, _ = gqa
    nat = _nat(base, negative)
    nat.save_pretrained(tmp_path / "nat")
    wider = build_tiny_llama(tmp_path / "wider", hidden_size=48, num_attention_heads=4, num_key_value_heads=2)
    with pytest.raises(CuratorError, match="has shape"):
        load_nat(_model(wider), tmp_path / "nat")
    (tmp_path / "nat" / "nat_config.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(CuratorError, match="not a NAT config"):
        load_nat(_model(base), tmp_path / "nat")
