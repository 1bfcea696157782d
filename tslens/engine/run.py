"""Declare the interventions, run once (nnsight's idea on TransformerBridge hook points)::

    with lens.run(prompts, answers) as r:
        r.patch(layer=5, vectors=task_vector)        # into every prompt's final token
        r.ablate([(9, 3)])                           # zero head 9.3's output there
        acts = r.capture("resid_post")               # [prompt, layer, d_model], when done
        scores = r.score()                           # log P(answer | prompt), [prompt, k]
    acts.value, scores.value

Inside the block the calls only declare. When the block ends, one forward per batch does all
of it: the answers are packed behind their prompt (:mod:`tslens.engine.packing`, so each
prompt is computed once however many answers it has), the patches and ablations act at the
prompt's last token in the order they were declared, the captures read what the run computed
there (after the interventions) and the answers are scored exactly. Batching, the progress bar
and OOM back-off are :func:`tslens.engine.batching.batched`'s. Results are on the CPU.

The specialised verbs stay the fast paths for many variants per prompt
(:func:`tslens.engine.patching.patched_answer_logprobs` runs a whole sweep over one prefix
cache); a run is one variant, with any mix of interventions, in a single pass. Tested equal to
those verbs on every architecture tslens ships (tests/test_run.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from tslens.engine.batching import batched
from tslens.engine.packing import forward_packed, pack_answers, read_packed
from tslens.engine.tokens import answer_token_ids, check_context
from tslens.errors import TslensError
from tslens.hooks.ablate import ablating
from tslens.hooks.capture import capturing
from tslens.hooks.names import check_layers
from tslens.hooks.patch import patching

Head = tuple[int, int]


@dataclass
class Result:
    """What a :class:`Run` computes for one request, readable once its block has ended."""

    what: str
    parts: list[Tensor] = field(default_factory=list, repr=False)
    rows: list[list[int]] = field(default_factory=list, repr=False)
    _value: Tensor | None = field(default=None, repr=False)

    @property
    def value(self) -> Tensor:
        """The result, rows in prompt order (raises inside the block: nothing has run yet)."""
        if self._value is None:
            raise TslensError(f"{self.what} is computed when the `with lens.run(...)` block ends")
        return self._value

    def _finish(self, n: int) -> None:
        joined = torch.cat(self.parts)
        self._value = torch.empty((n, *joined.shape[1:]), dtype=joined.dtype)
        self._value[torch.tensor([i for rows in self.rows for i in rows])] = joined
        self.parts, self.rows = [], []


class Run:
    """The interventions and reads declared on a prompt set (see the module docstring)."""

    def __init__(self, lens: Any, prompts: Sequence[str], answers: Sequence[Sequence[str]] | None,
                 batch_size: int | None, progress: bool) -> None:  # fmt: skip
        self.lens, self.prompts, self.answers = lens, list(prompts), answers
        self.batch_size, self.progress = batch_size, progress
        self._interventions: list[tuple[str, dict[str, Any]]] = []
        self._captures: list[tuple[str, list[int], Result]] = []
        self._score: Result | None = None

    def patch(
        self,
        layer: int,
        vectors: Float[Tensor, " d"] | Float[Tensor, "prompt d"],
        mode: str = "replace",
        kind: str = "resid_post",
        head: int | None = None,
    ) -> None:
        """Write (``mode="replace"``) or add (``"add"``) ``vectors`` (one for all prompts or one
        per prompt) into the ``kind`` activation of ``layer`` at each prompt's last token; with
        ``head`` (``kind="z"``), into that head's ``z`` alone (``vectors`` of size ``d_head``)."""
        check_layers(self.lens, [layer])
        vectors = torch.as_tensor(vectors).expand(len(self.prompts), -1)
        self._interventions.append(
            ("patch", dict(layer=layer, vectors=vectors, mode=mode, kind=kind, head=head))
        )

    def ablate(self, heads: Sequence[Head] | Mapping[Head, Float[Tensor, " d_head"]]) -> None:
        """Replace each head's ``z`` at the prompt's last token: by zero (a list of
        ``(layer, head)``) or by the given ``[d_head]`` value (a mapping, e.g. the head's mean
        from :func:`tslens.engine.ablation.head_statistics`)."""
        if not isinstance(heads, Mapping):
            heads = {tuple(h): torch.zeros(self.lens.d_head) for h in heads}
        self._interventions.append(("ablate", dict(values=dict(heads))))

    def capture(self, kind: str = "resid_post", layers: Sequence[int] | None = None) -> Result:
        """The ``kind`` activation at each prompt's last token, ``[prompt, layer, ...]``, at
        ``layers`` (default all), as the run computes it (after the interventions)."""
        result = Result(f"capture {kind!r}")
        self._captures.append((kind, check_layers(self.lens, layers), result))
        return result

    def score(self) -> Result:
        """log P(answer | prompt) of every answer, ``[prompt, k]`` float64 (``-inf`` where a
        prompt has fewer answers), as :func:`tslens.engine.scoring.answer_logprobs` computes it."""
        if self.answers is None:
            raise TslensError("score() needs answers: lens.run(prompts, answers)")
        self._score = self._score or Result("score()")
        return self._score

    def _execute(self) -> None:
        lens, n = self.lens, len(self.prompts)
        prompt_ids = lens.token_ids(self.prompts)
        answer_ids = k = None
        if self._score is not None:
            answer_ids = answer_token_ids(lens, self.prompts, self.answers, prompt_ids)
            check_context(lens, prompt_ids, answer_ids)
            k = max(len(a) for a in answer_ids)
        order = sorted(range(n), key=lambda i: len(prompt_ids[i]))  # less padding
        size = self.batch_size or lens.batch_size(max(len(p) for p in prompt_ids))

        def compute(chunk: list[int]) -> dict[str, Tensor]:
            width = max(len(prompt_ids[i]) for i in chunk)
            with ExitStack() as stack:
                for what, spec in self._interventions:
                    stack.enter_context(self._hooks(what, spec, chunk, width))
                stores = [stack.enter_context(capturing(lens, [kind], layers, [width - 1]))
                          for kind, layers, _ in self._captures]  # fmt: skip
                if answer_ids is None:
                    batch = lens.left_pad([prompt_ids[i] for i in chunk])
                    lens(batch.ids, attention_mask=batch.mask, position_ids=batch.positions,
                         logits_to_keep=1)  # fmt: skip
                    out = {}
                else:
                    packed = pack_answers([prompt_ids[i] for i in chunk],
                                          [answer_ids[i] for i in chunk], lens.pad_id)  # fmt: skip
                    logits = forward_packed(lens, packed)
                    sums = read_packed(logits, packed.reads, len(chunk), k, greedy=False)[0]
                    out = {"score": sums.cpu()}
            for j, (kind, _, _) in enumerate(self._captures):
                out[f"capture{j}"] = torch.stack(stores[j][kind], dim=1)[:, :, 0].cpu()
            return out

        for chunk, got in batched(lens, order, compute, batch_size=size, desc="running",
                                  progress=self.progress):  # fmt: skip
            named = [(f"capture{j}", c[2]) for j, c in enumerate(self._captures)]
            for name, result in named + ([("score", self._score)] if self._score else []):
                result.parts.append(got[name])
                result.rows.append(chunk)
        for _, _, result in self._captures:
            result._finish(n)
        if self._score is not None:
            self._score._finish(n)

    def _hooks(self, what: str, spec: dict[str, Any], chunk: list[int], width: int):
        """One declared intervention's hooks for a batch whose prompts end at ``width - 1``."""
        if what == "ablate":
            return ablating(self.lens, spec["values"], torch.tensor([width - 1]))
        rows = len(chunk)
        heads = None if spec["head"] is None else torch.full((rows,), spec["head"])
        return patching(self.lens, torch.full((rows,), spec["layer"]), spec["vectors"][chunk],
                        width - 1, spec["mode"], spec["kind"], heads)  # fmt: skip


@contextmanager
def run(
    lens: Any,
    prompts: Sequence[str],
    answers: Sequence[Sequence[str]] | None = None,
    batch_size: int | None = None,
    progress: bool = False,
) -> Iterator[Run]:
    """``with run(lens, prompts, answers) as r: ...`` (also ``lens.run(...)``): declare
    patches, ablations, captures and scores on ``r``; they are computed in one pass when the
    block ends without an error (see the module docstring)."""
    declared = Run(lens, prompts, answers, batch_size, progress)
    yield declared
    with torch.inference_mode():
        declared._execute()
