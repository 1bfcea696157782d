"""What each kind of measurement produces: the statistic names a claim may read, with what
each means. The registry is checked against this table when it loads (a typo in a claim's
statistic or condition is refused, naming the claim), and the tests check that every kind's
measurement produces exactly these names.
"""

from __future__ import annotations

STATISTICS: dict[str, dict[str, str]] = {
    "mixture": {
        "solved_fraction": "share of the K task answers among the K most likely complete answers",
        "all_answers_share": "share of prompts on which every task's answer has P >= 0.1",
        "last_demo_gap": "mean over tasks of P(task k) when the last demonstration is task k "
        "minus when it is not",
        "top_nontask_over_task": "median over prompts of the best non-task answer's P over the "
        "mean task-answer P",
        "superposition_cost": "mean over tasks of (accuracy on single-task prompts) minus "
        "(share of K-task prompts with the task's answer among the top K)",
        "min_accuracy": "lowest single-task accuracy (greedy answer) over the tasks",
        "mean_accuracy": "mean single-task accuracy over the tasks",
    },
    "curve": {
        "max_deviation": "largest |mean over prompts of P(task 0) - share| over interior shares",
        "within_prompt_deviation": "largest, over interior shares, mean over prompts of "
        "|P(task 0) on the prompt - share|",
        "monotone_steps": "share of the steps between consecutive shares on which mean "
        "P(task 0) rises",
        "absent_over_present": "mean P(answer) with none of its task's demonstrations over "
        "mean P with half of them",
        "present_p": "mean P(answer) at share 0.5",
    },
    "vectors": {
        "icl_p": "mean P(task answer) on single-task in-context prompts",
        "patched_p": "mean P(task answer) with its pure vector patched at the layer chosen on "
        "the other half of the queries",
        "recovered": "patched_p over icl_p, mean over tasks",
        "interpolation_effect": "mean over tasks of P(task k) with all weight on k's vector "
        "minus with all weight on the other's, at k's held-out layer",
        "monotone_steps": "share of the lambda steps on which P(task 0) rises",
    },
    "geometry": {
        "span_residual_ratio": "mixture centroid's distance from the line through its own "
        "tasks' centroids over its distance from the line through two other tasks' centroids, "
        "at the held-out layer",
        "distance_probability_rho": "Spearman rho between distance to a present task's "
        "centroid and that task's P, at the held-out layer",
    },
    "collapse": {
        "continue_after_first": "P(decoding finishes task k's answer | it produced its first "
        "t tokens), mean over tasks and later tokens",
        "tasks_per_prompt_sampled": "distinct task answers among a prompt's sampled decodes",
    },
    "function_vectors": {
        "gain": "P(task answer) with the function vector added at the held-out layer minus "
        "zero-shot P, mean over tasks",
        "zero_shot_p": "zero-shot P(task answer), mean over tasks",
    },
    "demos": {
        "additivity": "summed single-deletion effects over the all-at-once deletion effect, "
        "mean over tasks",
    },
    "heads": {
        "baseline_accuracy": "single-task ICL accuracy without ablation",
        "fv_drop": "accuracy drop with the top-n FV heads mean-ablated",
        "induction_drop": "accuracy drop with the top-n induction heads mean-ablated",
        "random_drop": "accuracy drop with n random heads from neither list mean-ablated",
    },
}


def produces(kind: str) -> set[str]:
    """The statistic names a measurement of ``kind`` produces (empty for an unknown kind)."""
    return set(STATISTICS.get(kind, {}))
