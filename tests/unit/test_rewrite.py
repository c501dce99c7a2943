"""Rewrite rules on real models: what they match, why they refuse, what they build."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgehad.core.errors import UserInputError
from edgehad.rewrite import apply_rules, explain, get_rules, rules


def _inputs(model):
    ex = model.example_inputs
    return (ex,) if isinstance(ex, torch.Tensor) else tuple(ex)


@pytest.mark.parametrize("name", sorted(rules()))
def test_every_rule_rewrites_its_example_and_the_result_runs(name):
    rule = rules()[name]
    model = rule.example().eval()
    x = _inputs(model)
    modules_before = len(list(model.modules()))
    new, reports = apply_rules(model, x, [rule])
    assert reports[0].rewritten, reports[0].as_dict()
    with torch.no_grad():
        out, ref = new(*x), model(*x)
    assert out.shape == ref.shape
    changed = not torch.allclose(out, ref, atol=1e-6)
    assert changed == (name != "insert-se")  # insert-se starts as the identity, the others change the function
    first = reports[0].rewritten[0]
    assert dict(model.named_modules())[first] is not dict(new.named_modules())[first]
    assert len(list(model.modules())) == modules_before  # the original is untouched


def test_unknown_rule_lists_the_valid_ones():
    with pytest.raises(UserInputError, match="unknown rewrite rule 'attn-to-aft': valid rules are act-to-hard-gate"):
        get_rules("attn-to-aft")


def test_attention_to_aft_copies_the_projections():
    from edgehad.zoo import get_model

    model = get_model("transformer_encoder", seq_len=8, dim=16, heads=2, depth=1)
    new, _ = apply_rules(model, _inputs(model), get_rules("attention-to-aft"))
    old, aft = model.blocks[0].attn, new.blocks[0].attn.aft
    torch.testing.assert_close(torch.cat([aft.q.weight, aft.k.weight, aft.v.weight]), old.qkv.weight)
    torch.testing.assert_close(aft.proj.weight, old.proj.weight)


def test_multihead_attention_and_its_masks():
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(16, 2, dim_feedforward=32, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = (torch.randn(1, 6, 16),)
    new, reports = apply_rules(model, x, get_rules("attention-to-aft"))
    assert reports[0].rewritten == ["layers.0.self_attn", "layers.1.self_attn"]
    with torch.no_grad():
        assert new(*x).shape == (1, 6, 16)

    class Causal(nn.Module):
        def __init__(self):
            super().__init__()
            self.enc = model

        def forward(self, x):
            return self.enc(x, mask=nn.Transformer.generate_square_subsequent_mask(6))

    why = explain(Causal().eval(), x, get_rules("attention-to-aft"))[0].skipped
    assert set(why) == {"enc.layers.0.self_attn", "enc.layers.1.self_attn"}
    assert all("attn_mask" in r or "is_causal" in r for r in why.values())


def _bert():
    # transformers is an optional peer, declared by no extra: these two tests check the rule on a real
    # BertModel where it is installed, and say why they skip where it is not.
    transformers = pytest.importorskip("transformers", reason="transformers is not installed (optional: only "
                                       "these BERT cases use it; pip install transformers to run them)")
    BertConfig, BertModel = transformers.BertConfig, transformers.BertModel

    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=64, max_position_embeddings=32, attn_implementation="eager")
    return BertModel(cfg).eval()


def test_bert_self_attention_is_recognised_and_rewritten():
    bert = _bert()
    ids = (torch.randint(0, 50, (1, 12)),)
    new, reports = apply_rules(bert, ids, get_rules("attention-to-aft"))
    assert reports[0].rewritten == [f"encoder.layer.{i}.attention.self" for i in range(2)]
    aft = new.encoder.layer[0].attention.self.aft
    torch.testing.assert_close(aft.q.weight, bert.encoder.layer[0].attention.self.query.weight)
    assert isinstance(aft.proj, nn.Identity)  # BERT's output projection stays in BertSelfOutput
    with torch.no_grad():
        assert new(*ids).last_hidden_state.shape == (1, 12, 32)


def test_bert_with_padding_mask_is_left_unchanged_with_the_reason():
    class Padded(nn.Module):
        def __init__(self):
            super().__init__()
            self.bert = _bert()

        def forward(self, ids):
            mask = torch.ones_like(ids)
            mask[:, -3:] = 0  # three padding positions
            return self.bert(ids, attention_mask=mask).last_hidden_state

    report = explain(Padded(), (torch.randint(0, 50, (1, 12)),), get_rules("attention-to-aft"))[0]
    assert report.rewritten == []
    assert all("hides positions" in r for r in report.skipped.values()) and len(report.skipped) == 2


def test_ffn_to_glu_keeps_the_parameter_budget_and_starts_as_the_truncated_mlp():
    from edgehad.cost import count_params
    from edgehad.zoo import get_model

    model = get_model("transformer_encoder", seq_len=8, dim=24, heads=2, depth=1)
    new, reports = apply_rules(model, _inputs(model), get_rules("ffn-to-glu"))
    assert reports[0].rewritten == ["blocks.0.mlp"]
    mlp_params = count_params(model.blocks[0].mlp)
    glu_params = count_params(new.blocks[0].mlp)
    assert abs(glu_params - mlp_params) / mlp_params < 0.02
    glu = new.blocks[0].mlp[0]
    assert glu.variant == "geglu" and glu.hidden == 64  # 2/3 of 96
    x = torch.randn(3, 24)
    with torch.no_grad():  # value branch = 1: the GLU computes the MLP restricted to its kept units
        kept = [int(i) for i in torch.nonzero(
            (model.blocks[0].mlp[0].weight[:, None] == glu.w.weight[None]).all(-1).any(1)).flatten()]
        ref = nn.functional.linear(nn.functional.gelu(nn.functional.linear(
            x, model.blocks[0].mlp[0].weight[kept], model.blocks[0].mlp[0].bias[kept])),
            model.blocks[0].mlp[2].weight[:, kept], model.blocks[0].mlp[2].bias)
        torch.testing.assert_close(glu(x), ref, atol=1e-5, rtol=1e-5)


def test_explain_gives_reasons_for_what_it_leaves():
    from edgehad.zoo import get_model

    model = get_model("mobilenet_v2", width_mult=0.35, num_classes=10, input_size=64)
    report = explain(model, _inputs(model), get_rules("insert-se,attention-to-aft"))
    se, attn = report
    assert se.rewritten and any("depthwise" in r for r in se.skipped.values())
    tiny = nn.Sequential(nn.Conv2d(1, 8, 3), nn.BatchNorm2d(8), nn.ReLU())
    wrapped = nn.Sequential(tiny, nn.Flatten())
    why = explain(wrapped.eval(), (torch.randn(1, 1, 6, 6),), get_rules("insert-se"))[0].skipped
    assert why == {"0": "8 channels (< 16): too few to gate"}
    assert attn.rewritten == [] and attn.note.startswith("nothing in this model looks like")
