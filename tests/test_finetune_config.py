"""TrainConfig validation, TOML loading and the 1:1 mapping of `finetune train` flags to its fields."""
from __future__ import annotations

import sys

import pytest

from finetune.config import DEFAULT_TARGETS, TrainConfig, field_names, load_config
from finetune.errors import ConfigError


def test_defaults_follow_the_tutorial_recipe():
    c = TrainConfig(data=("a.jsonl",))
    assert (c.model, c.lora_r, c.lora_alpha, c.lora_dropout) == ("Qwen/Qwen3-0.6B", 8, 32, 0.1)
    assert (c.batch_size, c.grad_accum, c.learning_rate, c.thinking) == (4, 4, 1e-4, "off")
    assert c.target_modules == DEFAULT_TARGETS and "gate" not in c.target_modules


def test_every_problem_reported_at_once_with_the_bad_value():
    with pytest.raises(ConfigError) as err:
        TrainConfig(data=(), lora_r=0, thinking="maybe", val_ratio=1.5, early_stopping_patience=2, eval_steps=0)
    msg = str(err.value)
    for part in ("data is empty", "lora_r must be an integer >= 1, got 0", "'maybe'", "val_ratio", "1.5",
                 "early_stopping_patience needs evaluation"):
        assert part in msg


def test_combinations_checked():
    with pytest.raises(ConfigError, match="multiple of eval_steps"):
        TrainConfig(data=("a",), early_stopping_patience=1, eval_steps=10, save_steps=15)
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        TrainConfig(data=("a",), load_in_4bit=True, device="cpu")
    with pytest.raises(ConfigError, match="repeat options"):
        TrainConfig(data=("a",), trl={"learning_rate": 1.0})
    with pytest.raises(ConfigError, match="system_override needs"):
        TrainConfig(data=("a",), system_override=True)


def test_toml_then_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('data = ["a.jsonl", "b.jsonl"]\nlora-r = 16\nthinking = "keep"\n'
                    '[trl]\nweight_decay = 0.01\noptim = "adamw_torch"\n', encoding="utf-8")
    c = load_config(path, {"lora_r": 4, "trl": {"optim": "sgd"}, "model": None})
    assert c.data == ("a.jsonl", "b.jsonl") and c.lora_r == 4 and c.thinking == "keep"
    assert dict(c.trl) == {"weight_decay": 0.01, "optim": "sgd"} and c.model == "Qwen/Qwen3-0.6B"
    assert c.as_dict()["data"] == ["a.jsonl", "b.jsonl"]
    hash(c)  # frozen and hashable despite the trl mapping


def test_toml_errors_name_file_and_keys(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('data = ["a"]\nlora_rank = 8\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.toml: unknown keys \['lora_rank'\]"):
        load_config(bad)
    broken = tmp_path / "broken.toml"
    broken.write_text("data = [", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


def test_cli_train_flags_map_one_to_one_to_fields():
    import typer.main

    from ui.cli.finetune import app

    command = typer.main.get_command(app).commands["train"]
    names = {p.name for p in command.params}
    assert names == set(field_names()) | {"config"}


def test_cli_import_is_light():
    import subprocess

    code = "import sys, ui.cli.finetune; print(sorted({'torch', 'transformers', 'trl'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_cli_reports_config_errors_and_parses_trl(tmp_path):
    from typer.testing import CliRunner

    from ui.cli.finetune import app, parse_trl

    runner = CliRunner()
    result = runner.invoke(app, ["train", "--data", "x.jsonl", "--lora-r", "0", "--thinking", "no"])
    assert result.exit_code == 2 and "lora_r must be an integer >= 1, got 0" in result.output  # bad input: 2
    assert "thinking must be one of off, keep" in result.output and "Traceback" not in result.output
    # --trl KEY=VALUE items reach TrainConfig as a mapping (which refuses keys the config owns)
    result = runner.invoke(app, ["train", "--data", "x.jsonl", "--trl", "weight_decay=0.01", "--trl", "max_steps=3"])
    assert result.exit_code == 2 and "max_steps" in result.output and "repeat options" in result.output
    result = runner.invoke(app, ["train", "--data", "x.jsonl", "--trl", "weight_decay"])
    assert result.exit_code == 2 and "expected KEY=VALUE" in result.output
    assert parse_trl(["weight_decay=0.01", "optim=adamw_torch"]) == {"weight_decay": 0.01, "optim": "adamw_torch"}
    # flags override the TOML file; a flag left out keeps the file's value
    path = tmp_path / "run.toml"
    path.write_text('data = ["a.jsonl"]\nlora-r = 16\nlora-alpha = 0\n', encoding="utf-8")
    result = runner.invoke(app, ["train", "--config", str(path), "--lora-r", "0"])
    assert result.exit_code == 2 and "lora_r must be an integer >= 1, got 0" in result.output
    assert "lora_alpha must be an integer >= 1, got 0" in result.output


def test_deepspeed_configs_ship_and_parse():
    import json

    from finetune.deepspeed import config_path

    for stage, expected in ((2, 2), (3, 3), ("3-offload", 3)):
        config = json.loads(config_path(stage).read_text(encoding="utf-8"))
        assert config["zero_optimization"]["stage"] == expected
        assert config["train_micro_batch_size_per_gpu"] == "auto"  # filled in by transformers from the flags
