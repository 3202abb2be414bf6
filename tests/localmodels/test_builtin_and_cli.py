"""The built-in local models merged into the models file, and `hexahub models add|remove`."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hexahub.cli import app
from hexahub.core import doctor, migrate
from hexahub.gateway.config import ModelsFileError, parse_models_file
from hexahub.localmodels import builtin, shipped
from hexahub.localmodels.registry import load_registry
from tests.conftest import make_settings
from tests.gateway.conftest import Hub
from tests.localmodels.conftest import require_local_packages

runner = CliRunner(env={"COLUMNS": "200"})


def names(spec: object) -> dict[str, list[tuple[str, str]]]:
    return {
        m.name: [(d.provider, d.model) for d in m.deployments]
        for m in spec.models  # type: ignore[attr-defined]
    }


def test_no_models_file_offers_local_chat_and_embed(tmp_path: Path) -> None:
    require_local_packages()
    settings = make_settings(tmp_path, local_threads=3)
    spec = builtin.configured_models(settings)
    assert [(p.name, p.kind) for p in spec.providers] == [("local", "local")]
    assert spec.providers[0].is_local
    assert spec.providers[0].settings["threads"] == 3
    assert names(spec) == {
        "local-chat": [("local", shipped.DEFAULT_CHAT_MODEL)],
        "local-embed": [("local", shipped.DEFAULT_EMBEDDING_MODEL)],
    }
    renamed = make_settings(tmp_path, local_chat_model="chat", local_embedding_model="embed")
    assert set(names(builtin.configured_models(renamed))) == {"chat", "embed"}
    off = make_settings(tmp_path, local_models_enabled=False)
    assert builtin.configured_models(off).providers == []


def test_the_models_file_decides_when_it_declares_local(tmp_path: Path) -> None:
    spec = parse_models_file(
        """
providers:
  - {name: box, kind: local, settings: {context_size: 4096}}
  - {name: cloud, kind: openai, base_url: "https://api.example.org/v1"}
models:
  - name: local-chat
    deployments: [{provider: cloud, model: gpt-4o-mini}]
"""
    )
    merged = builtin.with_builtin_models(spec, make_settings(tmp_path))
    assert [p.name for p in merged.providers] == ["box", "cloud"]
    box = merged.providers[0]
    assert box.settings["context_size"] == 4096  # the file's own value wins
    assert box.settings["queue_size"] == 64  # the rest from HEXAHUB_LOCAL_*
    assert names(merged) == {"local-chat": [("cloud", "gpt-4o-mini")]}


def test_bad_local_settings_in_the_models_file_are_named(tmp_path: Path) -> None:
    spec = parse_models_file(
        "providers:\n  - {name: box, kind: local, settings: {context_size: lots}}\n"
    )
    with pytest.raises(ModelsFileError, match=r"providers\.box: .*context_size: 'lots'"):
        builtin.with_builtin_models(spec, make_settings(tmp_path))


def test_without_the_packages_no_local_names_are_offered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shipped, "chat_available", lambda: False)
    monkeypatch.setattr(shipped, "embeddings_available", lambda: False)
    spec = builtin.configured_models(make_settings(tmp_path))
    assert spec.providers == [] and spec.models == []


def test_models_add_list_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_local_packages()
    data = tmp_path / "data"
    monkeypatch.setenv("HEXAHUB_DATA_DIR", str(data))
    monkeypatch.setenv("HEXAHUB_SECRET_KEY", "test-secret-key-" + "x" * 32)
    migrate.upgrade(make_settings(tmp_path).resolved_database_url)
    gguf = tmp_path / "my-model.gguf"
    source = shipped.default_chat_gguf()
    assert source is not None
    shutil.copyfile(source, gguf)

    added = runner.invoke(
        app,
        [
            "models",
            "add",
            str(gguf),
            "--name",
            "qwen-coder",
            "--context-size",
            "1024",
            "--threads",
            "2",
            "--gpu-layers",
            "0",
        ],
    )
    assert added.exit_code == 0, added.output
    assert "qwen-coder" in added.output and "restart" in added.output
    [entry] = load_registry(data / "models")
    assert (entry.name, entry.kind, entry.context_size, entry.threads, entry.gpu_layers) == (
        "qwen-coder",
        "chat",
        1024,
        2,
        0,
    )
    assert entry.path == str(gguf)

    listed = runner.invoke(app, ["models", "list"])
    assert listed.exit_code == 0, listed.output
    assert "qwen-coder" in listed.output and "local-chat" in listed.output

    again = runner.invoke(app, ["models", "add", str(gguf), "--name", "qwen-coder"])
    assert again.exit_code == 1 and "registered already" in again.output

    junk = tmp_path / "junk.gguf"
    junk.write_text("not a model")
    refused = runner.invoke(app, ["models", "add", str(junk), "--name", "junk"])
    assert refused.exit_code == 1 and "not a GGUF model file" in refused.output

    removed = runner.invoke(app, ["models", "remove", "qwen-coder"])
    assert removed.exit_code == 0, removed.output
    assert load_registry(data / "models") == []
    assert "qwen-coder" not in runner.invoke(app, ["models", "list"]).output
    unknown = runner.invoke(app, ["models", "remove", "qwen-coder"])
    assert unknown.exit_code == 1 and "no local model named" in unknown.output


def test_doctor_checks_files_and_estimates_memory(tmp_path: Path) -> None:
    require_local_packages()
    settings = make_settings(tmp_path)
    models_dir = settings.resolved_models_dir
    models_dir.mkdir(parents=True)
    (models_dir / "half.gguf").write_bytes(b"GGUF")  # cut short inside its header
    found = {f.check: f for f in doctor.check_local_models(settings)}
    assert found["local chat runtime"].status == doctor.OK
    assert "MB when loaded" in found["default chat model"].detail
    assert "MB when loaded" in found["default embedding model"].detail
    assert found["local model half"].status == doctor.WARN
    assert "half.gguf" in found["local model half"].detail
    assert found["local models memory"].status == doctor.OK


async def test_doctor_shows_what_a_running_server_has_loaded(hub: Hub) -> None:
    import openai

    client = openai.AsyncOpenAI(base_url=hub.v1, api_key=hub.key, max_retries=0)
    hub.clients.append(client)
    await client.chat.completions.create(
        model="local-chat", messages=[{"role": "user", "content": "Hi"}], max_tokens=1
    )
    port = int(hub.url.rsplit(":", 1)[1])
    finding = await doctor.check_loaded_local_models(hub.settings.model_copy(update={"port": port}))
    assert finding.status == doctor.OK
    assert "smollm2-135m-instruct (" in finding.detail and "MB" in finding.detail
