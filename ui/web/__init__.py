"""The Gradio web UI (``assistant ui``): chat with cited answers, manage the knowledge base's documents.

:func:`ui.web.app.build_app` / :func:`ui.web.app.launch` build and serve it; :mod:`ui.web.uploads`
stores and ingests uploads.
"""
