"""The ``assistant`` console script: ``ask``, ``chat``, ``serve`` (from :mod:`assistant.cli`) plus ``ui``.

    assistant ui --kb kb --model ~/models/Qwen3-0.6B            # http://127.0.0.1:7860
    assistant ui --adapter outputs/qwen3-lora --port 7861
    assistant ui --kb new-kb --retrieval-only                   # an empty KB is created; upload in the UI

Every flag but --host/--port/--max-upload-mb is a field of :class:`assistant.config.AssistantConfig`.
"""
from pathlib import Path
from typing import Optional

import typer

from assistant.cli import _assistant, app, config_options, friendly
from assistant.config import AssistantConfig

__all__ = ["app"]


@app.command()
@friendly
@config_options
def ui(host: str = typer.Option("127.0.0.1", help="address to listen on (0.0.0.0: every interface)"),
       port: int = typer.Option(7860, help="TCP port"),
       max_upload_mb: float = typer.Option(100.0, "--max-upload-mb", help="largest file the Documents tab accepts"),
       config: Optional[AssistantConfig] = None) -> None:
    """Open the web UI: chat with cited answers, upload and manage documents."""
    kb = Path(config.kb)
    if not (kb / "kb.sqlite").is_file():
        from index.kb import KnowledgeBase

        KnowledgeBase.open(kb, embedder=config.embedder).close()
        typer.secho(f"created an empty knowledge base at {kb}; add documents in the Documents tab", err=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        typer.secho(f"warning: serving on {host}: anyone who can reach it can read and change your documents",
                    fg="yellow", err=True)
    from ui.app import launch

    launch(_assistant(config), kb_dir=kb, host=host, port=port, max_upload_mb=max_upload_mb)


if __name__ == "__main__":
    app()
