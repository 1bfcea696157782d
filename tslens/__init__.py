"""tslens: task superposition (Xiong et al. 2024) measured on TransformerLens 4 models."""

from tslens.errors import TslensError as TslensError
from tslens.version import __version__ as __version__

# The public names, each imported from its module on first use (PEP 562), so that importing
# tslens (the command line does, for --help) does not import torch and transformers.
_LAZY = {
    "Lens": "tslens.engine.lens",
    "as_lens": "tslens.engine.lens",
    "MixturePrompt": "tslens.prompts",
    "PromptSpec": "tslens.prompts",
    "build_mixture_prompts": "tslens.prompts",
    "MixtureResult": "tslens.analyses.prompt.mixture",
    "measure_mixture": "tslens.analyses.prompt.mixture",
    "tasks_solved": "tslens.analyses.prompt.mixture",
    "load_model": "tslens.sources.loader",
    "answer_logprobs": "tslens.engine.scoring",
    "get_task": "tslens.tasks",
    "list_tasks": "tslens.tasks",
    "register_task": "tslens.tasks",
    "resolve_tasks": "tslens.tasks",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'tslens' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = sorted(["TslensError", "__version__", *_LAZY])
