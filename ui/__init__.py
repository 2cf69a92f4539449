"""The Gradio web UI (``assistant ui``): chat with cited answers, manage the knowledge base's documents.

``ui.app.build_app`` / ``ui.app.launch`` build and serve it; ``ui.uploads`` stores and ingests uploads.
"""
