"""The exact primitives every analysis runs on (``docs/architecture.md``).

The public verbs, all taking a :class:`Lens` (or a bare ``TransformerBridge``, wrapped once):

- :func:`answer_logprobs` / :func:`answer_is_greedy` / :func:`answer_token_logprobs`: exact
  P(answer | prompt), packed scoring (:mod:`tslens.engine.scoring`);
- :func:`capture_activations`: activations at hook points and positions, optionally reduced per
  batch (:mod:`tslens.engine.capture`);
- :func:`patched_answer_logprobs`: answers under final-position patches, many variants per
  prompt over one prefix cache (:mod:`tslens.engine.patching`);
- :func:`ablated_answer_logprobs` / :func:`head_statistics`: answers with heads ablated
  (:mod:`tslens.engine.ablation`);
- :func:`beam_search` and the decoders (:mod:`tslens.engine.search`, :mod:`tslens.engine.decoders`);
- ``with lens.run(prompts, answers) as r: r.patch(...); r.ablate(...); r.capture(...);
  r.score()``: any mix of interventions and reads declared, then computed in one pass
  (:mod:`tslens.engine.run`);
- :func:`batched`: the one batch loop (progress, resume, OOM back-off) for anything else;
- :mod:`tslens.engine.continuation`: the one way tslens runs a prompt once and continues its
  KV cache, under all of the above.
"""

from tslens.engine.ablation import ablated_answer_logprobs, head_statistics
from tslens.engine.batching import batched, status
from tslens.engine.capture import capture_activations
from tslens.engine.decoders import branch_complete_answers, sample_complete_answers
from tslens.engine.lens import Lens, as_lens
from tslens.engine.patching import patched_answer_logprobs
from tslens.engine.run import Run, run
from tslens.engine.scoring import answer_is_greedy, answer_logprobs, answer_token_logprobs
from tslens.engine.search import beam_search

__all__ = [
    "Lens",
    "Run",
    "ablated_answer_logprobs",
    "answer_is_greedy",
    "answer_logprobs",
    "answer_token_logprobs",
    "as_lens",
    "batched",
    "beam_search",
    "branch_complete_answers",
    "capture_activations",
    "head_statistics",
    "patched_answer_logprobs",
    "run",
    "sample_complete_answers",
    "status",
]
