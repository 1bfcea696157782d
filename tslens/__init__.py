"""tslens: task superposition (Xiong et al. 2024) measured on TransformerLens 4 models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tslens")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from tslens.errors import TslensError

# The public names, each imported from its module on first use (PEP 562), so that importing
# tslens (the command line does, for --help) does not import torch and transformers.
_LAZY = {
    "MixtureResult": "tslens.analyses.mixture", "measure_mixture": "tslens.analyses.mixture",
    "tasks_solved": "tslens.analyses.mixture", "load_model": "tslens.models",
    "MixturePrompt": "tslens.prompts", "build_mixture_prompts": "tslens.prompts",
    "answer_logprobs": "tslens.scoring", "answer_logprobs_naive": "tslens.scoring",
    "get_task": "tslens.tasks", "list_tasks": "tslens.tasks", "register_task": "tslens.tasks",
    "resolve_tasks": "tslens.tasks",
}  # fmt: skip


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'tslens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = [
    "MixturePrompt",
    "MixtureResult",
    "TslensError",
    "answer_logprobs",
    "answer_logprobs_naive",
    "build_mixture_prompts",
    "get_task",
    "list_tasks",
    "load_model",
    "measure_mixture",
    "register_task",
    "resolve_tasks",
    "tasks_solved",
]
