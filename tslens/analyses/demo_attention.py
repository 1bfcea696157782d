"""Where each head looks from the answer position: its attention mass on every demonstration
of a mixture prompt, grouped by the demonstration's task (issue 17, head level).

A head that averages over a task's demonstrations spreads its mass over all of them; a head
that reads the nearest one puts it on the last demonstration of each task. Both are measured
per head: the mass on each task's demonstrations and the share of that mass on the task's
nearest demonstration.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm

from tslens.analyses.demonstrations import nearest_demonstrations
from tslens.batching import default_batch_size
from tslens.engine.continuation import left_pad
from tslens.hooks.capture import capturing
from tslens.resume import cached
from tslens.scoring import pad_token_id, prompt_token_ids


@torch.inference_mode()
def attention_to_demonstrations(
    model,
    texts: Sequence[str],
    spans: Sequence[Sequence[Sequence[int]]],
    batch_size: int | None = None,
    progress: bool = False,
) -> Float[Tensor, "prompt layer head demo"]:
    """Attention probability from each prompt's final token to each demonstration's tokens
    (summed over the demonstration), for every head of every layer. ``spans`` are token
    indices as :func:`tslens.analyses.demonstrations.demonstration_tokens` gives them."""
    ids = prompt_token_ids(model, texts)
    layers = list(range(model.cfg.n_layers))
    n_demos = max(len(s) for s in spans)
    out = torch.zeros(len(ids), len(layers), model.cfg.n_heads, n_demos)
    batch_size = batch_size or default_batch_size(model, max(len(i) for i in ids))
    bar = tqdm(total=len(ids), desc="attention", unit="prompt", disable=not progress, leave=False)
    for start in range(0, len(ids), batch_size):
        rows = list(range(start, min(start + batch_size, len(ids))))

        def compute(rows: list[int] = rows) -> dict[str, Tensor]:
            batch = left_pad([ids[i] for i in rows], pad_token_id(model), model.cfg.device)
            with capturing(model, ["pattern"], layers, [-1]) as store:
                model(batch.ids, attention_mask=batch.mask, position_ids=batch.positions,
                      logits_to_keep=1)  # fmt: skip
            pattern = torch.stack(store["pattern"], 1)[:, :, 0].float().cpu()  # [b, l, h, key]
            width = pattern.shape[-1]
            mass = torch.zeros(len(rows), len(layers), model.cfg.n_heads, n_demos)
            for b, i in enumerate(rows):
                shift = width - len(ids[i])  # left padding
                for j, span in enumerate(spans[i]):
                    mass[b, ..., j] = pattern[b, ..., [t + shift for t in span]].sum(-1)
            return {"mass": mass}

        got = cached("demo-attention", model, [[ids[i] for i in rows], [spans[i] for i in rows]],
                     compute)  # fmt: skip
        out[rows] = got["mass"]
        bar.update(len(rows))
    bar.close()
    return out


def head_summary(
    mass: Float[Tensor, "prompt layer head demo"],
    demo_tasks: Int[Tensor, "prompt demo"],
    tasks: Sequence[str],
    top: Sequence[tuple[int, int]] = (),
) -> dict[str, Any]:
    """Per head: mean attention mass on each task's demonstrations (``mass[layer][head][i]``),
    the share of task i's mass that lands on task i's nearest demonstration
    (``nearest_share``; 1 / (task i's count) if spread evenly), and the mean mass at each
    distance from the query (``by_distance[layer][head][d - 1]``). ``top`` heads are listed
    first in ``heads`` with their numbers, then the rest ranked by mass on demonstrations."""
    by_task, nearest_share = [], []
    for i in range(len(tasks)):
        own = (demo_tasks == i).float()[:, None, None]  # [prompt, 1, 1, demo]
        total = (mass * own).sum(-1)  # [prompt, layer, head]
        _, is_nearest = nearest_demonstrations(demo_tasks, i)  # [prompt, demo]
        nearest = (mass * is_nearest.float()[:, None, None]).sum(-1)
        by_task.append(total.mean(0))
        nearest_share.append(nearest.sum(0) / total.sum(0).clamp(min=1e-12))
    by_task_t = torch.stack(by_task, -1)  # [layer, head, task]
    share_t = torch.stack(nearest_share, -1)
    order = sorted(
        ((layer, head) for layer in range(mass.shape[1]) for head in range(mass.shape[2])),
        key=lambda lh: -float(by_task_t[lh].sum()),
    )
    ranked = [*top, *(lh for lh in order if lh not in set(top))]
    counts = [float((demo_tasks == i).sum(1).float().mean()) for i in range(len(tasks))]
    return {
        "tasks": list(tasks),
        "mean_count": counts,
        "mass": by_task_t.tolist(),
        "nearest_share": share_t.tolist(),
        "by_distance": mass.mean(0).tolist(),
        "heads": [
            {"layer": layer, "head": head, "top": (layer, head) in set(top),
             "mass": by_task_t[layer, head].tolist(),
             "nearest_share": share_t[layer, head].tolist()}
            for layer, head in ranked
        ],
    }  # fmt: skip
