"""Direct logit attribution (DLA): how much each attention head, MLP and the embedding write
the logit of an answer token at the final position.

The final residual is the sum of its components (embedding, every head's ``z @ W_O``, the
attention output biases, every MLP's output). With the final norm's scale frozen at its value
in the clean run the norm is linear, so each component's contribution to a logit is
``center(c) / scale * w_norm @ W_U[:, token]``, and these contributions plus the "rest" (norm
bias and unembedding bias) add up to the model's logit exactly (checked on every call).

Models with a norm between the attention output and the residual add (Gemma 2/3's
post-attention RMSNorm) get the same treatment one level down: with that norm's scale frozen at
the clean run, head ``h``'s share of the residual is ``z_h @ W_O[h] * gain / scale``, and the
heads still add up to the block's attention output exactly. This is an approximation in the
usual DLA sense only (a head's effect through the scale it shares with the other heads is not
attributed); the sum check below stays exact.

With ``center=True`` (the default) the unembedding is centered over the vocabulary, so the
attributions add up to ``logit - mean(logits)``: a push that raises every token alike changes
no probability and is not counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from einops import einsum
from jaxtyping import Float
from torch import Tensor

from tslens.engine.architecture import norm_eps, post_attention_norms, rms_gain
from tslens.engine.batching import batched
from tslens.engine.lens import as_lens
from tslens.engine.tokens import answer_token_ids
from tslens.errors import TslensError
from tslens.hooks.capture import capturing

LN_TYPES = ("LN", "LNPre")
RMS_TYPES = ("RMS", "RMSPre")


@dataclass
class LogitAttribution:
    """Contributions to the logit of ``k`` target tokens per prompt (float64, CPU)."""

    heads: Float[Tensor, "prompt k layer head"]
    attn_bias: Float[Tensor, "prompt k layer"]
    mlp: Float[Tensor, "prompt k layer"]
    embed: Float[Tensor, "prompt k"]
    rest: Float[Tensor, "prompt k"]  # the final norm's bias and the unembedding bias
    logits: Float[Tensor, "prompt k"]  # what the model computed (centered if ``center``)

    def total(self) -> Float[Tensor, "prompt k"]:
        """The sum of every component: equals ``logits`` up to float32 rounding."""
        return (
            self.heads.sum((-1, -2)) + self.attn_bias.sum(-1) + self.mlp.sum(-1)
            + self.embed + self.rest
        )  # fmt: skip


def answer_first_tokens(model, prompts: Sequence[str], answers: Sequence[Sequence[str]]):
    """The first token of every answer in context: ``[prompt][k]`` token ids."""
    lens = as_lens(model)
    ids = answer_token_ids(lens, prompts, answers, lens.token_ids(prompts))
    return [[a[0] for a in row] for row in ids]


def final_norm(model) -> tuple[str, Tensor, Tensor | None, float]:
    """``(type, gain, bias or None, eps)`` of the norm before the unembedding (the gain as
    :func:`tslens.engine.architecture.rms_gain` measures it for RMSNorms)."""
    kind = model.cfg.normalization_type
    module = getattr(model.ln_final, "original_component", model.ln_final)
    if kind not in LN_TYPES + RMS_TYPES:
        raise TslensError(f"direct logit attribution needs LayerNorm or RMSNorm, not {kind}")
    bias = getattr(module, "bias", None)
    gain = rms_gain(module) if kind in RMS_TYPES else module.weight.detach()
    return kind, gain, None if bias is None else bias.detach(), norm_eps(module)


def output_biases(model) -> Float[Tensor, "layer d_model"]:
    """Every layer's attention output bias; zeros for bias-free models."""
    try:
        return model.b_O.detach()
    except AttributeError:  # the bridge raises this for bias-free projections
        return torch.zeros(model.cfg.n_layers, model.cfg.d_model)


@torch.inference_mode()
def direct_logit_attribution(
    model,
    prompts: Sequence[str],
    tokens: Sequence[Sequence[int]],
    center: bool = True,
    batch_size: int | None = None,
) -> LogitAttribution:
    """DLA of ``tokens[i]`` (the same count ``k`` per prompt) at the final position of
    ``prompts[i]``; see the module docstring. Raises if the components do not add up to the
    model's logits (an architecture whose residual stream is not a plain sum)."""
    lens = as_lens(model)
    layers = list(range(lens.n_layers))
    kind, w_norm, b_norm, eps = (
        t.double().cpu() if isinstance(t, Tensor) else t for t in final_norm(model)
    )
    w_o, b_o = model.W_O.detach().double().cpu(), output_biases(model).double().cpu()
    w_u, b_u = model.W_U.detach().double().cpu(), model.b_U.detach().double().cpu()
    if center:  # subtract the mean over the vocabulary
        w_u, b_u = w_u - w_u.mean(-1, keepdim=True), b_u - b_u.mean()
    post_norms = post_attention_norms(model)
    kinds = ("z", "attn_out", "mlp_out") + (("attn_pre_norm",) if post_norms else ())
    if post_norms:  # [layer, d_model] gains and [layer] epsilons of the post-attention norms
        post_gain = torch.stack([rms_gain(norm) for norm in post_norms]).cpu()
        post_eps = torch.tensor([norm_eps(norm) for norm in post_norms], dtype=torch.float64)
    ids = lens.token_ids(prompts)
    parts: list[LogitAttribution] = []

    def run(chunk: list[int]) -> dict[str, Tensor]:
        """The final position's components and logits of one batch (float32, CPU)."""
        batch = lens.left_pad([ids[i] for i in chunk])
        with (
            capturing(model, kinds, layers, [-1]) as acts,
            capturing(model, ("resid_pre",), [0], [-1]) as embed,
        ):
            logits = model(batch.ids, attention_mask=batch.mask, position_ids=batch.positions,
                           logits_to_keep=1)[:, -1]  # fmt: skip
        out = {name: torch.stack(acts[name], dim=1)[:, :, 0].cpu() for name in kinds}
        return {**out, "resid_0": embed["resid_pre"][0][:, 0].cpu(), "logits": logits.cpu()}

    batches = batched(lens, len(ids), run, kind="dla", batch_size=batch_size or lens.batch_size(),
                      key=lambda chunk: [[ids[i] for i in chunk], kinds])  # fmt: skip
    for chunk, got in batches:
        got = {name: value.double() for name, value in got.items()}
        z, attn_out, mlp_out, logits = got["z"], got["attn_out"], got["mlp_out"], got["logits"]
        resid_0 = got["resid_0"]
        head_out = einsum(z, w_o, "b l h e, l h e d -> b l h d")
        bias_out = b_o.expand(len(z), -1, -1)
        if post_norms:  # through each post-attention norm, its scale frozen at this run
            pre_norm = got["attn_pre_norm"]  # [batch, layer, d_model]
            post_scale = (pre_norm.pow(2).mean(-1) + post_eps).sqrt()  # [batch, layer]
            factor = post_gain / post_scale[..., None]  # [batch, layer, d_model]
            head_out = head_out * factor[:, :, None]
            bias_out = bias_out * factor
        resid = resid_0 + attn_out.sum(1) + mlp_out.sum(1)
        if kind in LN_TYPES:
            resid = resid - resid.mean(-1, keepdim=True)
        scale = (resid.pow(2).mean(-1) + eps).sqrt()  # [batch]: frozen from the clean run
        target = torch.tensor([list(tokens[i]) for i in chunk])
        # the direction in residual space that reads each target's logit: [batch, k, d_model]
        unembed = w_u[:, target].permute(1, 2, 0)
        readout = unembed * w_norm / scale[:, None, None]
        rest = b_u[target] + (0 if b_norm is None else (unembed * b_norm).sum(-1))

        def attribute(component: Tensor, pattern: str, readout: Tensor = readout) -> Tensor:
            if kind in LN_TYPES:  # the norm centers every component too
                component = component - component.mean(-1, keepdim=True)
            return einsum(component, readout, pattern)

        parts.append(
            LogitAttribution(
                heads=attribute(head_out, "b l h d, b k d -> b k l h"),
                attn_bias=attribute(bias_out, "b l d, b k d -> b k l"),
                mlp=attribute(mlp_out, "b l d, b k d -> b k l"),
                embed=attribute(resid_0, "b d, b k d -> b k"),
                rest=rest,
                logits=(logits - logits.mean(-1, keepdim=True) if center else logits).gather(
                    -1, target
                ),
            )
        )
    out = LogitAttribution(
        *(torch.cat([getattr(p, f) for p in parts]) for f in LogitAttribution.__dataclass_fields__)
    )
    error = (out.total() - out.logits).abs().max().item()
    if error > 1e-3 * (1 + out.logits.abs().max().item()):
        raise TslensError(
            f"the attributions miss the logits by {error:.3g}: this model's residual stream is "
            "not embedding + heads + MLPs through one final norm, so DLA does not apply"
        )
    return out
