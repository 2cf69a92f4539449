"""Options made from config dataclasses (ui/cli/options.py): every field is a flag whose help shows the
dataclass default, a bad value exits 2 naming the field, a flag left out keeps the dataclass default, and
``--help`` of each console script stays light."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import typer
import typer.main
from typer.testing import CliRunner

from assistant.config import AssistantConfig
from assistant.evaluation.run import EvalConfig
from assistant.from_kb.config import FromKBConfig
from finetune.config import TrainConfig
from finetune.data import DataConfig
from index.config import IndexConfig
from ui.cli import assistant as assistant_cli
from ui.cli import finetune as finetune_cli
from ui.cli import index as index_cli
from ui.cli import ingest as ingest_cli
from ui.cli.options import Flag, config_options, default_of

runner = CliRunner()
APPS = {"ingest": ingest_cli.app, "index": index_cli.app, "finetune": finetune_cli.app, "assistant": assistant_cli.app}
EVERY = None  # all fields of the dataclass
# (script, command path, dataclass, fields the command takes from it, fields it spells its own way)
COMMANDS: list[tuple[str, tuple[str, ...], type, tuple[str, ...] | None, dict[str, str]]] = [
    ("ingest", ("add",), IndexConfig, ("kb", "password", "ocr", "embedder", "max_tokens", "overlap",
                                       "lock_timeout_s"), {}),
    ("ingest", ("sync",), IndexConfig, ("kb", "password", "ocr"), {}),
    ("ingest", ("list",), IndexConfig, ("kb",), {}),
    ("ingest", ("rm",), IndexConfig, ("kb",), {}),
    ("index", ("search",), IndexConfig, ("kb", "k", "mode", "reranker"), {}),
    ("index", ("reindex",), IndexConfig, ("kb", "embedder", "max_tokens", "overlap"), {}),
    ("index", ("eval",), IndexConfig, ("mode", "embedder"), {}),
    ("index", ("collect-orphans",), IndexConfig, ("kb",), {}),
    ("finetune", ("train",), TrainConfig, EVERY, {}),
    ("finetune", ("data", "check"), DataConfig, EVERY, {"val_files": "--val-file"}),
    ("finetune", ("data", "from-kb"), FromKBConfig, EVERY, {}),
    *[("assistant", (name,), AssistantConfig, EVERY, {}) for name in ("ask", "chat", "eval", "ui")],
    # serve's own --api-key is the key clients send ($ASSISTANT_API_KEY); eval's --progress defaults on
    ("assistant", ("serve",), AssistantConfig, tuple(f.name for f in dataclasses.fields(AssistantConfig)
                                                     if f.name != "api_key"), {}),
    ("assistant", ("eval",), EvalConfig, ("data", "out", "markdown", "plot", "systems", "limit"), {}),
]


def command(script: str, path: tuple[str, ...]) -> Any:
    cmd = typer.main.get_command(APPS[script])
    for name in path:
        cmd = cmd.commands[name]
    return cmd


def shown_default(cls: type, f: dataclasses.Field, flag: str) -> str | None:
    """What ``--help`` must show as the default: the dataclass's, nothing for None/empty ones."""
    value = default_of(cls, f.name)
    if value is dataclasses.MISSING or value is None or value in ((), {}, ""):
        return None
    if isinstance(value, bool):
        return flag.lstrip("-") if value else "no-" + flag.lstrip("-")
    return ",".join(value) if isinstance(value, tuple) else str(value)


@pytest.mark.parametrize("script,path,cls,names,spelled", COMMANDS,
                         ids=[f"{c[0]} {' '.join(c[1])} {c[2].__name__}" for c in COMMANDS])
def test_every_field_is_a_flag_with_the_dataclass_default_in_its_help(script, path, cls, names, spelled) -> None:
    params = {p.name: p for p in command(script, path).params}
    page = runner.invoke(APPS[script], [*path, "--help"], env={"COLUMNS": "250"}).output  # no flag cut short
    for f in dataclasses.fields(cls):
        if names is not EVERY and f.name not in names:
            continue
        param = params[f.name]
        flag = spelled.get(f.name) or "--" + f.name.replace("_", "-")
        if param.param_type_name == "argument":  # from-kb's Q&A files
            flag = f.name
        assert flag in param.opts and flag in page, (f.name, param.opts)
        help_text = param.help.replace("\\[", "[")
        assert help_text.startswith(f.metadata["help"]), (f.name, help_text)
        shown = shown_default(cls, f, flag)
        if param.required or shown is None:
            assert "[default:" not in help_text, (f.name, help_text)
        else:
            assert help_text.endswith(f"[default: {shown}]"), (f.name, help_text, shown)


def test_no_flag_of_before_the_redesign_went_missing() -> None:
    """Flags users type (console scripts and flags must not change; --no-x forms were added)."""
    expect = {("ingest", ("add",)): "--kb --password --ocr --no-ocr --embedder --max-tokens --overlap "
                                    "--lock-timeout-s --json",
              ("index", ("search",)): "--kb --k --mode --reranker --json",
              ("finetune", ("data", "check")): "--system --system-override --strict --dedup --no-dedup "
                                               "--min-chars --max-chars --scrub-pii --val-ratio --val-file --seed "
                                               "--max-length --json",
              ("finetune", ("data", "from-kb")): "--out --kb --model --k -k --mode --embedder --system-prompt "
                                                 "--max-new-tokens --context-tokens --distractor-ratio "
                                                 "--distractor-depth --on-miss --seed --generate-questions "
                                                 "--generator-model --endpoint --qa-out --device --json",
              ("assistant", ("eval",)): "--data --out --markdown --plot --systems --limit --progress --no-progress "
                                        "--kb --model --adapter --endpoint --api-key --k -k --retrieval-only"}
    for (script, path), flags in expect.items():
        have = {o for p in command(script, path).params for o in (*p.opts, *p.secondary_opts)}
        assert set(flags.split()) <= have, (script, path, set(flags.split()) - have)


@pytest.mark.parametrize("app,args,field", [
    (assistant_cli.app, ["ask", "q", "-k", "0"], "k=0"),
    (assistant_cli.app, ["chat", "--mode", "fuzzy"], "mode='fuzzy'"),
    (assistant_cli.app, ["eval", "--data", "gold.jsonl", "--systems", "base,nope"], "systems=nope"),
    (ingest_cli.app, ["add", "x.txt", "--max-tokens", "100", "--overlap", "100"], "overlap=100"),
    (index_cli.app, ["search", "q", "--mode", "fuzzy"], "mode='fuzzy'"),
    (index_cli.app, ["eval", "--beir", "b", "--mode", "fuzzy"], "mode='fuzzy'"),
    (finetune_cli.app, ["data", "check", "x.jsonl", "--val-ratio", "1.5"], "val_ratio"),
    (finetune_cli.app, ["data", "from-kb", "qa.jsonl", "--out", "o.jsonl", "--on-miss", "guess"], "on_miss='guess'"),
    (finetune_cli.app, ["train", "--data", "x.jsonl", "--batch-size", "0"], "batch_size"),
])
def test_a_bad_value_exits_2_naming_the_field(app, args, field, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # nothing is created: the config is refused before any work
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and field in result.output and "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


class Stop(Exception):
    """Raised by a spy once it has seen what the command built."""


def spy(seen: list) -> Any:
    def record(*args: Any, **kwargs: Any) -> Any:
        seen.append(args + tuple(kwargs.values()))
        raise Stop
    return record


def test_flags_left_out_keep_the_dataclass_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list = []
    kb = tmp_path / "kb"
    monkeypatch.setattr(assistant_cli, "_assistant", spy(seen))
    runner.invoke(assistant_cli.app, ["ask", "q", "-k", "3", "--retrieval-only"], env={"QDA_KB": str(kb)})
    assert seen.pop() == (AssistantConfig(kb=kb, k=3, retrieval_only=True),)

    monkeypatch.setattr(ingest_cli, "open_kb", spy(seen))
    runner.invoke(ingest_cli.app, ["add", "x.txt", "--kb", str(kb), "--no-ocr", "--overlap", "20"])
    assert seen.pop() == (IndexConfig(kb=kb, ocr=False, overlap=20),)

    monkeypatch.setattr(index_cli, "require_store", lambda kb: None)
    monkeypatch.setattr(index_cli, "open_kb", spy(seen))
    runner.invoke(index_cli.app, ["search", "q", "-k", "7"], env={"QDA_KB": str(kb)})
    assert seen.pop() == (IndexConfig(kb=kb, k=7),)

    monkeypatch.setattr(finetune_cli, "prepare_config", spy(seen))
    runner.invoke(finetune_cli.app, ["data", "check", "a.jsonl", "--val-file", "v.jsonl", "--no-dedup"])
    assert seen.pop() == ([Path("a.jsonl")], DataConfig(val_files=(Path("v.jsonl"),), dedup=False))

    import assistant.from_kb.build as build

    monkeypatch.setattr(build, "build_from_kb", spy(seen))
    runner.invoke(finetune_cli.app, ["data", "from-kb", "qa.jsonl", "--out", "o.jsonl", "--seed", "4"])
    assert seen.pop()[0] == FromKBConfig(qa=("qa.jsonl",), out="o.jsonl", seed=4)


def test_train_flags_override_only_what_was_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list = []
    monkeypatch.setattr(finetune_cli, "load_config", spy(seen))
    runner.invoke(finetune_cli.app, ["train", "--data", "a.jsonl", "--data", "b.jsonl", "--no-dedup",
                                     "--trl", "weight_decay=0.01"])
    assert seen.pop() == (None, {"data": ("a.jsonl", "b.jsonl"), "dedup": False, "trl": {"weight_decay": 0.01}})


def test_eval_builds_both_configs(monkeypatch: pytest.MonkeyPatch) -> None:
    import assistant.evaluation.run as run

    seen: list = []
    monkeypatch.setattr(assistant_cli, "_assistant", lambda config: seen.append(config) or _Closable())
    monkeypatch.setattr(run, "run_eval", spy(seen))
    runner.invoke(assistant_cli.app, ["eval", "--data", "g.jsonl", "--systems", "base, base+rag", "--no-progress",
                                      "--kb", "kb2"])
    config, (settings, _) = seen
    assert config == AssistantConfig(kb=Path("kb2"))
    assert settings == EvalConfig(data=("g.jsonl",), systems=("base", "base+rag"), progress=False)


class _Closable:
    def close(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class Settings:
    size: int = dataclasses.field(default=3, metadata={"help": "how many"})
    secret: str = "x"


def test_the_helper_refuses_unknown_undocumented_and_clashing_fields() -> None:
    def cmd(size: int = 0, *, config: Settings) -> None:
        pass

    with pytest.raises(TypeError, match="no fields"):
        config_options(Settings, include=("sise",))
    with pytest.raises(TypeError, match=r"\['secret'\] have no help"):
        config_options(Settings)
    with pytest.raises(TypeError, match="clashes"):
        config_options(Settings, include=("size",))(cmd)
    with pytest.raises(TypeError, match="needs a parameter 'settings'"):
        config_options(Settings, include=("size",), into="settings")(lambda config: None)
    assert Flag().names == ()


@pytest.mark.parametrize("module,commands", [
    ("ui.cli.ingest", ["add", "sync", "list", "rm"]),
    ("ui.cli.index", ["search", "reindex", "eval", "collect-orphans"]),
    ("ui.cli.finetune", ["train", "merge", "eval", "chat", "data check", "data from-kb"]),
    ("ui.cli.assistant", ["ask", "chat", "serve", "eval", "ui"]),
])
def test_help_of_each_script_imports_nothing_heavy(cli_help, module: str, commands: list[str]) -> None:
    out, heavy = cli_help(module, ["--help"], *[[*c.split(), "--help"] for c in commands])
    assert heavy == [] and out.count("Usage:") == len(commands) + 1
