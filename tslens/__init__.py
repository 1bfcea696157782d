"""tslens: task superposition (Xiong et al. 2024) measured on TransformerLens 4 models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tslens")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

from tslens.analyses.mixture import MixtureResult, measure_mixture, tasks_solved
from tslens.errors import TslensError
from tslens.models import load_model
from tslens.prompts import MixturePrompt, build_mixture_prompts
from tslens.scoring import answer_logprobs, answer_logprobs_naive
from tslens.tasks import get_task, list_tasks, register_task, resolve_tasks

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
