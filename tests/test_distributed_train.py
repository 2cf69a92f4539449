"""The multi-process path of ``finetune train``, actually run: ``torchrun`` and ``accelerate launch`` with
2 processes on CPU (gloo) on a tiny random Qwen3 with the real tokenizer.

``accelerate launch`` trains 4 steps of 1 example per process (8 training records: one epoch) with
a checkpoint at step 2; ``torchrun`` then continues, with ``--resume``, a copy of that run as an
interruption right after the checkpoint would have left it. Checked for both: every process ends
with the adapter that was saved (each process's digest is in the run card), the run card records
world size 2, only the main process prints. Also: the two processes split the data, the resumed run
trains exactly the remaining batches and ends with the uninterrupted run's weights, and 2 processes
x 1 example train as 1 process x 2 examples. LoRA dropout is 0 so that last comparison is exact
up to float summation order.

Slow (a minute or two on 2 busy cores): ``pytest -m slow tests/test_distributed_train.py``.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from finetune.config import TrainConfig

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SYSTEM = "You are a test bot."
TRAIN = [("What is the capital of France?", "Paris."), ("Who wrote Hamlet?", "Shakespeare."),
         ("你好吗？", "我很好，谢谢！"), ("Color of the sky?", "Blue, mostly."), ("Largest planet?", "Jupiter."),
         ("Boiling point of water at sea level?", "100 degrees Celsius."), ("Author of Don Quixote?", "Cervantes."),
         ("Speed of light, roughly?", "300,000 km/s.")]
VAL = [("Capital of Italy?", "Rome."), ("Who painted the Mona Lisa?", "Leonardo.")]
STEPS, SAVE, PROCESSES = 4, 2, 2  # 4 steps x 2 processes x 1 example = the 8 records once
# TrainConfig fields shared by every run here (given as flags to the launched ones).
SETTINGS = dict(system=SYSTEM, max_steps=STEPS, grad_accum=1, save_steps=SAVE, eval_steps=SAVE, logging_steps=SAVE,
                learning_rate=1e-3, lr_scheduler="constant_with_warmup", warmup_ratio=0.0, device="cpu")
# accelerate's MULTI_CPU type starts one process unless run through mpirun; MULTI_GPU is its torchrun-based
# launcher, which starts num_processes processes, and they train on CPU over gloo with --device cpu.
ACCELERATE_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: MULTI_GPU
num_machines: 1
machine_rank: 0
num_processes: 2
mixed_precision: 'no'
use_cpu: false
gpu_ids: all
rdzv_backend: static
same_network: true
main_training_function: main
"""


def write_alpaca(path: Path, pairs) -> Path:
    path.write_text("\n".join(json.dumps({"instruction": q, "input": "", "output": a}, ensure_ascii=False)
                              for q, a in pairs), encoding="utf-8")
    return path


def flags(settings: dict) -> list[str]:
    return [str(x) for key, value in settings.items() for x in (f"--{key.replace('_', '-')}", value)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    """This environment without any launcher's variables; one torch thread per process (2 processes, 2 cores)."""
    launcher = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    env = {k: v for k, v in os.environ.items() if k not in launcher and not k.startswith("ACCELERATE_")}
    return env | {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def launch(prefix: list[str], args: list[str]) -> str:
    """Run ``prefix -m ui.cli.finetune train args`` (the README's command); its output. Fails on exit status != 0."""
    cmd = [*prefix, "-m", "ui.cli.finetune", "train", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the launcher and both training processes
        output, _ = proc.communicate()
        pytest.fail(f"{' '.join(cmd)} did not finish in 10 minutes:\n{output[-4000:]}")
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{output[-6000:]}"
    return output


def finished(out: Path, output: str) -> SimpleNamespace:
    card = json.loads((out / "run_card.json").read_text(encoding="utf-8"))
    return SimpleNamespace(out=out, output=output, card=card)


def interrupted_copy(run: Path, dest: Path) -> Path:
    """What ``run`` left behind had it stopped right after its step-SAVE checkpoint: that folder alone."""
    dest.mkdir()
    shutil.copytree(run / f"checkpoint-{SAVE}", dest / f"checkpoint-{SAVE}")
    return dest


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    from finetune.tiny import build_tiny_qwen3

    root = tmp_path_factory.mktemp("distributed")
    (root / "accelerate.yaml").write_text(ACCELERATE_CONFIG, encoding="utf-8")
    args = ["--data", str(write_alpaca(root / "train.jsonl", TRAIN)), "--val-data",
            str(write_alpaca(root / "val.jsonl", VAL)), "--model", str(build_tiny_qwen3(root / "base")),
            "--batch-size", "1", "--lora-dropout", "0", *flags(SETTINGS)]
    return SimpleNamespace(root=root, args=args)


@pytest.fixture(scope="module")
def accelerate_run(workspace):
    """``accelerate launch --num-processes 2 -m ui.cli.finetune train``, from the start."""
    out = workspace.root / "accelerate"
    prefix = [str(BIN / "accelerate"), "launch", "--config-file", str(workspace.root / "accelerate.yaml"),
              "--num-processes", str(PROCESSES), "--main-process-port", str(free_port())]
    return finished(out, launch(prefix, [*workspace.args, "--output-dir", str(out)]))


@pytest.fixture(scope="module")
def torchrun_resumed(workspace, accelerate_run):
    """``torchrun --nproc-per-node 2 -m ui.cli.finetune train --resume`` of the accelerate run, interrupted
    after its first checkpoint (the same data-parallel set-up: accelerate's launcher is torchrun's)."""
    out = interrupted_copy(accelerate_run.out, workspace.root / "torchrun-resumed")
    prefix = [str(BIN / "torchrun"), "--standalone", "--nproc-per-node", str(PROCESSES)]
    return finished(out, launch(prefix, [*workspace.args, "--output-dir", str(out), "--resume"]))


@pytest.fixture(params=["accelerate_run", "torchrun_resumed"])
def run(request):
    return request.getfixturevalue(request.param)


def saved_adapter(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(folder / "adapter_model.safetensors")


def logged_tokens(checkpoint: Path) -> float:
    state = json.loads((checkpoint / "trainer_state.json").read_text(encoding="utf-8"))
    return [h["num_tokens"] for h in state["log_history"] if "num_tokens" in h][-1]


@pytest.mark.slow
def test_every_process_ends_with_the_saved_adapter(run):
    from finetune.trainer import weights_digest

    effective = run.card["effective"]
    assert effective["world_size"] == PROCESSES and run.card["metrics"]["global_step"] == STEPS
    saved = saved_adapter(run.out)
    # each process hashed its own weights: rank 0's hash alone would not show that rank 1 kept in step
    assert effective["adapter_sha256_by_rank"] == [weights_digest(saved)] * PROCESSES
    assert any(t.abs().max() > 0 for name, t in saved.items() if "lora_B" in name)  # lora_B starts at 0


@pytest.mark.slow
def test_only_the_main_process_reports_and_each_writes_its_own_files(run):
    assert run.output.count(f"train: {len(TRAIN)} examples") == 1  # the data report
    assert run.output.count(f"training on cpu (fp32) in {PROCESSES} process(es)") == 1
    assert run.output.count("adapter saved to") == 1
    written = {p.name for p in (run.out / f"checkpoint-{STEPS}").iterdir()}
    assert {f"rng_state_{rank}.pth" for rank in range(PROCESSES)} <= written  # one RNG state per process


@pytest.mark.slow
def test_processes_split_the_data(accelerate_run):
    card = accelerate_run.card
    # 4 steps of 1 example per process cover the 8 records once only if the two processes read different ones
    assert card["examples"]["train"]["examples"] == len(TRAIN)
    assert card["metrics"]["train_tokens"] == card["examples"]["train"]["tokens"]


@pytest.mark.slow
def test_resume_under_torchrun_continues_to_the_uninterrupted_weights(accelerate_run, torchrun_resumed):
    state = json.loads((torchrun_resumed.out / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "loss" in h] == [SAVE, STEPS]
    # tokens count per session: the resumed one trained exactly the batches after the checkpoint
    before = logged_tokens(accelerate_run.out / f"checkpoint-{SAVE}")
    assert 0 < before < accelerate_run.card["metrics"]["train_tokens"]
    assert torchrun_resumed.card["metrics"]["train_tokens"] == accelerate_run.card["metrics"]["train_tokens"] - before
    # optimizer, scheduler and data position came back: the same weights, bit for bit
    assert (torchrun_resumed.card["effective"]["adapter_sha256_by_rank"]
            == accelerate_run.card["effective"]["adapter_sha256_by_rank"])


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_two_processes_train_as_one_process_on_the_global_batch(accelerate_run, workspace):
    """2 processes x 1 example = 1 process x 2 examples (same order, loss averaged over both): the gradient
    all-reduce and the loss scaling of AssistantSFTTrainer under several processes are right."""
    import torch

    from finetune.train import train

    base = workspace.args[workspace.args.index("--model") + 1]
    config = TrainConfig(data=(str(workspace.root / "train.jsonl"),), val_data=(str(workspace.root / "val.jsonl"),),
                         model=base, output_dir=str(workspace.root / "one-process"), batch_size=2, lora_dropout=0.0,
                         **SETTINGS)
    one = train(config, say=lambda _: None)
    assert one.run_card["effective"]["world_size"] == 1
    for key in ("train_loss", "eval_loss", "train_tokens"):
        assert accelerate_run.card["metrics"][key] == pytest.approx(one.metrics[key], rel=1e-5)
    two, single = saved_adapter(accelerate_run.out), saved_adapter(one.adapter_dir)
    assert two.keys() == single.keys()
    for name in two:  # fp32; the updates are ~1e-3, summation order differs between the two set-ups
        torch.testing.assert_close(two[name], single[name], rtol=0, atol=2e-5)


def test_replica_seed_gives_each_process_its_own_stream():
    import torch

    from finetune.trainer import ReplicaSeed

    seeds = []
    for rank, world in ((0, 2), (1, 2), (0, 1)):
        torch.manual_seed(7)
        ReplicaSeed().on_train_begin(SimpleNamespace(seed=42, process_index=rank, world_size=world), None, None)
        seeds.append(torch.initial_seed())
    assert seeds == [42, 43, 7]  # one process: left as the Trainer seeded it


def test_sampler_seed_is_fixed_and_can_be_overridden():
    from finetune.train import sft_kwargs

    kwargs = sft_kwargs(TrainConfig(data=("a.jsonl",), seed=5), device="cpu", precision="fp32", has_eval=False)
    assert kwargs["data_seed"] == 5 and kwargs["log_level_replica"] == "error"
    config = TrainConfig(data=("a.jsonl",), seed=5, trl={"data_seed": 9})
    assert sft_kwargs(config, device="cpu", precision="fp32", has_eval=False)["data_seed"] == 9


def test_processes_that_disagree_fail_the_run():
    from finetune.errors import FinetuneError
    from finetune.train import _check_replicas

    _check_replicas(None)  # sharded (FSDP, ZeRO-3): nothing to compare
    _check_replicas(["a" * 64] * 2)
    with pytest.raises(FinetuneError, match="different adapter weights"):
        _check_replicas(["a" * 64, "b" * 64])


def test_a_data_stage_error_is_raised_past_the_main_process_first_barrier():
    from contextlib import contextmanager

    from finetune.train import _main_first
    from finetune.train_errors import NoTrainingData

    events: list[str] = []

    class State:  # accelerate.PartialState's main_process_first: a barrier on the way out for the main process
        @contextmanager
        def main_process_first(self):
            yield
            events.append("barrier")

    def stage():
        events.append("stage")
        raise NoTrainingData("no training example left")

    with pytest.raises(NoTrainingData, match="no training example left"):
        _main_first(State(), stage)
    assert events == ["stage", "barrier"]  # the others were released, to meet the same error themselves
    assert _main_first(State(), lambda: 5) == 5
