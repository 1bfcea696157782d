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

from tslens.analyses.prompt.demonstrations import nearest_demonstrations
from tslens.engine.capture import capture_activations
from tslens.engine.lens import as_lens


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
    indices as :func:`tslens.analyses.prompt.demonstrations.demonstration_tokens` gives them."""
    lens = as_lens(model)
    ids = lens.token_ids(texts)
    n_demos = max(len(s) for s in spans)

    def mass(chunk: list[int], acts: dict[str, Tensor]) -> dict[str, Tensor]:
        pattern = acts["pattern"].float()  # [batch, layer, head, key]
        width = pattern.shape[-1]
        out = torch.zeros(len(chunk), lens.n_layers, lens.n_heads, n_demos)
        for b, i in enumerate(chunk):
            shift = width - len(ids[i])  # left padding
            for j, span in enumerate(spans[i]):
                out[b, ..., j] = pattern[b, ..., [t + shift for t in span]].sum(-1)
        return {"mass": out}

    return capture_activations(
        lens, texts, ("pattern",), positions=-1, batch_size=batch_size, progress=progress,
        reduce=mass, reduce_key=[list(map(list, s)) for s in spans],
    )["mass"]  # fmt: skip


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
