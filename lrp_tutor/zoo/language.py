r"""Language models explained from their input embeddings.

:func:`lrp_tutor.explain` explains a function of a floating-point input; a language model
takes token ids, which carry no relevance. Relevance therefore stops at the embeddings
:math:`e_t` of the tokens *t*, and each token's relevance is :math:`R_t = \sum_d R_{t,d}`.

>>> import torch
>>> class Tiny(torch.nn.Module):  # stands in for a Hugging Face model
...     def forward(self, inputs_embeds, use_cache=True):
...         return type("Out", (), {"logits": inputs_embeds.cumsum(1)})()
>>> FromEmbeddings(Tiny())(torch.ones(1, 3, 2))  # the logits at the last token
tensor([[3., 3.]])
"""

from __future__ import annotations

import inspect

from torch import Tensor, nn

__all__ = ["FromEmbeddings"]


class FromEmbeddings(nn.Module):
    """A Hugging Face model (BERT, GPT-2, Llama, …) as a classifier of its input embeddings.

    Parameters
    ----------
    model : nn.Module
        Called as ``model(inputs_embeds=embeddings)``; its output has ``.logits``.
    position : int or None, default -1
        The position whose logits are explained when the model gives logits per token
        (a language model's next-token prediction: the last); None keeps them all. Logits
        of shape (N, classes) (sequence classification) are returned as they are.

    Examples
    --------
    With ``llm`` a ``transformers`` model and ``input_ids`` from its tokenizer::

        embeddings = llm.get_input_embeddings()(input_ids)
        e = lt.explain(FromEmbeddings(llm), embeddings, composite=lt.composites.attn_lrp())
        per_token = e.relevance.sum(-1)  # R_t, one number per token
    """

    def __init__(self, model: nn.Module, position: int | None = -1) -> None:
        super().__init__()
        self.model, self.position = model, position
        parameters = inspect.signature(model.forward).parameters
        self._no_cache = "use_cache" in parameters  # no key-value cache: one forward pass

    def forward(self, embeddings: Tensor) -> Tensor:
        """The logits, shape (N, classes), of the model at ``embeddings`` (N, tokens, width)."""
        options = {"use_cache": False} if self._no_cache else {}
        logits = self.model(inputs_embeds=embeddings, **options).logits
        if logits.ndim == 3 and self.position is not None:
            return logits[:, self.position]
        return logits
