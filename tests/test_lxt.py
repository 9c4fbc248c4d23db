"""Agreement with LXT 2.1 (Achtibat et al., the reference implementation of AttnLRP).

LXT's efficient implementation patches model classes in place (process-wide, and a class
patched for one rule cannot be patched again for another), so each reference runs in a
fresh process: this file run as a script, ``python tests/test_lxt.py MODEL RULE OUT``. It
builds the same random-weight model (float64), patches it with LXT's map, and saves LXT's
relevance (gradient × input of the target logit). The test computes ours on the unpatched
model and compares, to :math:`10^{-4}\\max|R|`.

The rule choices that match LXT's:

- **Linear layers**: LXT's gradient × input is LRP-0 with the bias absorbing; ours
  ``attn_lrp(epsilon=1e-12)`` / ``cp_lrp(epsilon=1e-12)``.
- **torchvision's ViT**: LXT 2.1 offers CP-LRP only (its map for
  ``torchvision.models.vision_transformer``: "AttnLRP outside the attention mechanism &
  CP-LRP inside the attention mechanism is easier to tune for gamma"), so the ViT is
  compared under CP-LRP; AttnLRP is compared on Llama.
- **Llama** under AttnLRP: LXT divides the gradient of Q and K by 4 and that of V by 2 —
  the uniform rule at both products — and lets softmax's own gradient act, which is its
  Taylor rule; RMSNorm's scale and, under CP-LRP, the gate of the MLP are held constant.
  LXT computes RMSNorm in float32 whatever the model's dtype: the one reason the two differ
  beyond rounding.

LXT needs ``transformers<5`` (4.57 here); ``make test`` runs this file in a second
environment, ``.venv-lxt``, which has it (the package itself works with transformers 5).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import types
from pathlib import Path

import torch
from torch import nn

for _name in ("torchvision._meta_registrations", "torchvision._autograd_registrations"):
    sys.modules.setdefault(_name, types.ModuleType(_name))

from lrp_tutor.zoo import FromEmbeddings  # noqa: E402

f64 = torch.float64
CASES = [("vit", "cp_lrp"), ("llama", "attn_lrp"), ("llama", "cp_lrp")]


def build(name: str) -> tuple[nn.Module, torch.Tensor]:
    """The model (random weights, float64, eval) and its input."""
    torch.manual_seed(0)
    if name == "vit":
        from torchvision.models import VisionTransformer

        model = VisionTransformer(32, 8, 2, 2, 16, 32, num_classes=5)
        shape = (1, 3, 32, 32)
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, intermediate_size=32, attn_implementation="eager",
        )  # fmt: skip
        model = FromEmbeddings(LlamaForCausalLM(config))
        shape = (1, 6, 16)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for key, p in model.named_parameters():
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=generator) / math.sqrt(p[0].numel()))
            elif "norm" in key or "ln" in key:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=generator))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=generator))
    x = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    return model.to(f64).eval(), x.to(f64)


def lxt_relevance(name: str, rule: str) -> tuple[torch.Tensor, int]:
    """LXT's relevance (run in a fresh process: it patches classes)."""
    from lxt.efficient import monkey_patch

    if name == "vit":
        import lxt.efficient.models.vit_torch as maps
        from torchvision.models import vision_transformer

        monkey_patch(vision_transformer, maps.cp_LRP)
    else:
        import lxt.efficient.models.llama as maps
        from transformers.models.llama import modeling_llama

        monkey_patch(modeling_llama, maps.attnLRP if rule == "attn_lrp" else maps.cp_LRP)
    model, x = build(name)
    x.requires_grad_(True)
    logits = model(x)
    target = int(logits[0].argmax())
    logits[0, target].backward()
    return (x * x.grad).detach(), target


if __name__ == "__main__":
    name, rule, out = sys.argv[1:4]
    relevance, target = lxt_relevance(name, rule)
    torch.save({"relevance": relevance, "target": target}, out)
    sys.exit(0)


import pytest  # noqa: E402

import lrp_tutor as lt  # noqa: E402

if os.environ.get("LRP_TUTOR_REQUIRE_LXT"):  # make test runs this file where LXT is installed
    import lxt  # noqa: F401
else:
    pytest.importorskip("lxt")


@pytest.mark.slow
@pytest.mark.parametrize("name, rule", CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_agrees_with_lxt(name, rule, tmp_path):
    out = tmp_path / "lxt.pt"
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), name, rule, str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    reference = torch.load(out)
    model, x = build(name)
    preset = lt.composites.attn_lrp if rule == "attn_lrp" else lt.composites.cp_lrp
    e = lt.explain(model, x, composite=preset(epsilon=1e-12), target=reference["target"])
    theirs = reference["relevance"]
    scale = theirs.abs().max().item()
    assert scale > 0
    difference = (e.relevance - theirs).abs().max().item()
    assert difference <= 1e-4 * scale, f"max |ours − LXT| = {difference:.3g}, max |R| = {scale:.3g}"
