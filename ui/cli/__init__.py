"""The console scripts, one module each, named after the script: :mod:`ui.cli.ingest`,
:mod:`ui.cli.index`, :mod:`ui.cli.finetune`, :mod:`ui.cli.assistant` (each exposes ``app``).

They share :mod:`ui.errors` (the one table from typed errors to messages and exit codes)
and :mod:`ui.cli.options` (config dataclass fields -> command-line options).
"""
