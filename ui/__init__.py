"""The edge: every console script (:mod:`ui.cli`), the OpenAI-compatible HTTP server (:mod:`ui.http`)
and the Gradio app (:mod:`ui.web`). The only package that imports typer, gradio, fastapi or uvicorn;
typed errors from the packages below become messages and exit codes here, from one table.
"""
