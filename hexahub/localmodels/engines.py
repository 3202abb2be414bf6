"""The blocking inference code. Everything here runs on a model's worker thread, never on
the event loop.

Chat and text completions run on llama.cpp (llama-cpp-python). The prompt is made with the
chat template stored in the GGUF file's metadata (`tokenizer.chat_template`, rendered the
way llama-cpp-python renders it; ChatML when a file has none). Generation is our own loop
over `Llama.generate`, so that each token is handed out as soon as it is sampled, the
cancel flag is checked per token, stop sequences never leak into the output (text that may
be the start of one is held back), `max_tokens` is exact and token counts are exact.
`Llama.generate` keeps the KV cache of the previous request and re-evaluates only the part
of the new prompt after the longest common prefix: llama.cpp's prompt caching, which makes
follow-up turns of a conversation start fast.

Embeddings run on sentence-transformers with the CPU build of torch, in batches.
"""

from __future__ import annotations

import codecs
import logging
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hexahub.localmodels import shipped
from hexahub.localmodels.errors import InvalidRequest, ModelUnavailable
from hexahub.localmodels.registry import BadModelFile, LocalModel, check_gguf, kv_cache_bytes

log = logging.getLogger("hexahub.localmodels")


def process_rss_bytes() -> int:
    """This process's resident memory (Linux; 0 elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def path_size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


@dataclass
class ChatRequest:
    """One chat (messages) or text (prompt) completion, with OpenAI's parameters."""

    messages: list[dict[str, Any]] | None = None
    prompt: str | None = None
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    temperature: float = 0.2
    top_p: float = 0.95
    top_k: int = 40
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None


@dataclass
class Generation:
    text: str
    finish_reason: str  # "stop", "length" or "cancelled"
    prompt_tokens: int
    completion_tokens: int
    first_token_seconds: float | None  # from the start of the job
    decode_seconds: float  # from the first token to the last


class ChatEngine:
    """A GGUF model loaded by llama.cpp."""

    def __init__(self, model: LocalModel) -> None:
        shipped.require_chat_runtime()
        try:
            check_gguf(model.path)
        except BadModelFile as exc:
            raise ModelUnavailable(f"local model {model.name!r}: {exc}") from exc
        from llama_cpp import Llama

        self.model = model
        try:
            self.llm = Llama(
                model_path=str(model.path),
                n_ctx=model.context_size,
                n_threads=model.threads,
                n_threads_batch=model.threads,
                n_gpu_layers=model.gpu_layers,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelUnavailable(
                f"local model {model.name!r}: llama.cpp could not load {model.path} ({exc}); "
                "the file may be truncated or corrupt, or made for a newer llama.cpp: "
                "download it again or choose another"
            ) from exc
        self._formatter = self._chat_formatter()
        self._pieces: dict[int, bytes] = {}

    # --- facts for metrics and `hexahub doctor` -------------------------------------------
    def memory_bytes(self) -> int:
        """Weights plus the KV cache at full context (f16), an estimate of the resident size."""
        weights = int(self.llm._model.size())
        return weights + kv_cache_bytes(dict(self.llm.metadata), self.llm.n_ctx())

    def close(self) -> None:
        self.llm.close()

    # --- prompts ---------------------------------------------------------------------------
    def _chat_formatter(self) -> Any:
        from llama_cpp import llama_chat_format

        template = self.llm.metadata.get("tokenizer.chat_template")
        if not template:
            return llama_chat_format.format_chatml
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        model = self.llm._model
        return llama_chat_format.Jinja2ChatFormatter(
            template=template,
            eos_token=model.token_get_text(eos) if eos != -1 else "",
            bos_token=model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )

    def prompt_tokens(self, request: ChatRequest) -> tuple[list[int], list[str]]:
        """The prompt as tokens, and the template's own stop strings."""
        if request.messages is None:
            text = request.prompt or ""
            return self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=True), []
        try:
            formatted = self._formatter(messages=request.messages, tools=request.tools)
        except Exception as exc:  # a template's raise_exception(), or a Jinja error
            raise InvalidRequest(
                f"messages: this model's chat template refused them: {exc}"
            ) from exc
        tokens = self.llm.tokenize(
            formatted.prompt.encode("utf-8"), add_bos=not formatted.added_special, special=True
        )
        stop = formatted.stop or []
        return tokens, [stop] if isinstance(stop, str) else [s for s in stop if s]

    # --- generation ------------------------------------------------------------------------
    def _piece(self, token: int) -> bytes:
        """A token's bytes (or _END for end-of-generation tokens), remembered: the loop
        below then costs a dictionary look-up per token instead of two calls into C."""
        import llama_cpp

        if llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token):
            piece = _END
        else:
            piece = self.llm.detokenize([token])
        self._pieces[token] = piece
        return piece

    def generate(
        self,
        request: ChatRequest,
        *,
        emit: Callable[[str], None] | None,
        cancelled: Callable[[], bool],
    ) -> Generation:
        started = time.perf_counter()
        tokens, template_stops = self.prompt_tokens(request)
        n_ctx = self.llm.n_ctx()
        room = n_ctx - len(tokens)
        if room <= 0:
            raise InvalidRequest(
                f"the prompt is {len(tokens)} tokens, and this model's context window is "
                f"{n_ctx}; shorten the conversation or register the model with a larger "
                "--context-size"
            )
        limit = min(request.max_tokens or room, room)
        stops = [s for s in (*request.stop, *template_stops) if s]
        grammar = self._grammar(request.response_format)
        self.llm.set_seed(request.seed if request.seed is not None else random.getrandbits(31))

        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending, pieces = "", []
        finish, count, matched = "length", 0, False
        first: float | None = None
        hold = max((len(s) for s in stops), default=0)
        for token in self.llm.generate(
            tokens,
            top_k=request.top_k,
            top_p=request.top_p,
            min_p=request.min_p,
            temp=request.temperature,
            repeat_penalty=request.repeat_penalty,
            presence_penalty=request.presence_penalty,
            frequency_penalty=request.frequency_penalty,
            grammar=grammar,
        ):
            if cancelled():
                finish = "cancelled"
                break
            piece = self._pieces.get(token)
            if piece is None:
                piece = self._piece(token)
            if piece is _END:
                finish = "stop"
                break
            count += 1
            if first is None:
                first = time.perf_counter()
            pending += decoder.decode(piece)
            out = ""
            if stops:
                cut = min((i for i in (pending.find(s) for s in stops) if i >= 0), default=-1)
                if cut >= 0:
                    out, pending, finish, matched = pending[:cut], "", "stop", True
                else:
                    keep = _partial_stop(pending, stops, hold)
                    out, pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
            else:
                out, pending = pending, ""
            if out:
                pieces.append(out)
                if emit is not None:
                    emit(out)
            if matched or count >= limit:
                break
        if finish != "cancelled" and not matched:
            # Held back as a possible stop sequence, or an unfinished UTF-8 character.
            rest = pending + decoder.decode(b"", final=True)
            if rest:
                pieces.append(rest)
                if emit is not None:
                    emit(rest)
        ended = time.perf_counter()
        return Generation(
            text="".join(pieces),
            finish_reason=finish,
            prompt_tokens=len(tokens),
            completion_tokens=count,
            first_token_seconds=None if first is None else first - started,
            decode_seconds=0.0 if first is None else ended - first,
        )

    def _grammar(self, response_format: dict[str, Any] | None) -> Any:
        if not response_format or response_format.get("type") in (None, "text"):
            return None
        import json

        from llama_cpp import llama_grammar

        kind = response_format.get("type")
        try:
            if kind == "json_object":
                return llama_grammar.LlamaGrammar.from_string(
                    llama_grammar.JSON_GBNF, verbose=False
                )
            if kind == "json_schema":
                schema = (response_format.get("json_schema") or {}).get("schema") or {}
                return llama_grammar.LlamaGrammar.from_json_schema(
                    json.dumps(schema), verbose=False
                )
        except Exception as exc:
            raise InvalidRequest(
                f"response_format: cannot be turned into a grammar: {exc}"
            ) from exc
        raise InvalidRequest(f"response_format: type {kind!r} is not supported by local models")


_END = b"\x00end-of-generation"  # a marker, compared by identity


def _partial_stop(text: str, stops: list[str], hold: int) -> int:
    """How many characters at the end of `text` could be the start of a stop sequence."""
    for size in range(min(hold, len(text)), 0, -1):
        tail = text[-size:]
        if any(s.startswith(tail) for s in stops):
            return size
    return 0


class EmbeddingEngine:
    """A sentence-transformers model on the CPU."""

    def __init__(self, model: LocalModel) -> None:
        shipped.require_embedding_runtime()
        if not model.path.exists():
            raise ModelUnavailable(
                f"local model {model.name!r}: the folder {model.path} does not exist"
            )
        # The model is on disk: nothing may ask the Hugging Face Hub about it, or phone home.
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
            os.environ.setdefault(name, "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        try:
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
            pass
        torch.set_num_threads(model.threads)
        self.model = model
        try:
            self.st = SentenceTransformer(str(model.path), device="cpu", local_files_only=True)
        except Exception as exc:
            raise ModelUnavailable(
                f"local model {model.name!r}: sentence-transformers could not load "
                f"{model.path}: {exc}"
            ) from exc

    def memory_bytes(self) -> int:
        return sum(p.numel() * p.element_size() for p in self.st.parameters())

    def close(self) -> None:
        del self.st

    def count_tokens(self, texts: list[str]) -> list[int]:
        encoded = self.st.tokenizer(
            texts, add_special_tokens=True, truncation=True, max_length=self.st.max_seq_length
        )
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: list[str], batch_size: int) -> Any:
        """float32 vectors, one row per text (normalised when the model says so)."""
        return self.st.encode(
            texts, batch_size=batch_size, convert_to_numpy=True, show_progress_bar=False
        )


def load_engine(model: LocalModel) -> ChatEngine | EmbeddingEngine:
    if model.kind == "embedding":
        return EmbeddingEngine(model)
    return ChatEngine(model)
