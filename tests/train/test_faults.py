"""Training faults, tried for real: a SIGKILLed `sftkit train`, a kill while old checkpoints are deleted, a full
disk, a second training into the same folder. Each must end in a run that resumes to the weights of an unbroken
run, bit for bit, or in one clear error line."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import Trainer, TrainerCallback

from sftkit.cli import main
from sftkit.config import load_config
from sftkit.train import run_dir as rd
from sftkit.train.callbacks import MetricsJsonl
from sftkit.train.run_dir import COMPLETE, last_complete_checkpoint
from sftkit.train.sft import build, train
from tests.conftest import LF, REPO

COMMON = {"max_steps": 10, "save_steps": 2, "save_total_limit": 1, "logging_steps": 3, "learning_rate": 1e-3,
          "lr_scheduler": "cosine", "batch_size": 8}


def write_config(path: Path, model_dir, out_dir: Path, method: str = "full", **train) -> Path:
    raw = {"model": str(model_dir), "method": method,
           "data": {"datasets": [{"path": str(LF / "identity.json"),
                                  "replace": {"{{name}}": "Aurora", "{{author}}": "Team Dawn"}}],
                    "max_length": 64, "max_samples": 32},
           "train": {"output_dir": str(out_dir), **COMMON, **train},
           "lora": {"r": 4, "alpha": 8, "dropout": 0.0}}
    path.write_text(yaml.safe_dump(raw))
    return path


def sftkit(*args: str, **popen) -> subprocess.Popen:
    """A real `sftkit` process on one thread (deterministic kernels)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "src")}
    return subprocess.Popen([sys.executable, "-m", "sftkit.cli", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)


def finish(proc: subprocess.Popen) -> str:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return out


def tensors(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def steps_logged(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_weights(a: Path, b: Path) -> None:
    ta, tb = tensors(a), tensors(b)
    assert ta.keys() == tb.keys()
    for name in ta:
        assert torch.equal(ta[name], tb[name]), name  # bit for bit


def no_tmp_files(run: Path) -> bool:
    return not list(run.rglob("*.tmp"))


# ---- a real process, killed -------------------------------------------------------------------------------

def test_sigkill_of_sftkit_train_then_resume_is_bit_identical(tiny_model_dir, tmp_path, capsys):
    unbroken = sftkit("train", str(write_config(tmp_path / "a.yaml", tiny_model_dir, tmp_path / "a")))
    cfg_b = write_config(tmp_path / "b.yaml", tiny_model_dir, tmp_path / "b")
    killed = sftkit("train", str(cfg_b))
    deadline = time.time() + 300
    while last_complete_checkpoint(tmp_path / "b") is None:
        assert killed.poll() is None, killed.communicate()[1][-3000:]
        assert time.time() < deadline
        time.sleep(0.02)

    # a second training into the folder is refused while the first runs
    capsys.readouterr()
    assert main(["train", str(cfg_b), "train.resume=auto"]) == 2
    err = capsys.readouterr().err
    assert f"is in use by another sftkit train (pid {killed.pid})" in err and len(err.strip().splitlines()) == 1

    assert killed.poll() is None, "the run ended before it could be killed: raise max_steps"
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    killed.stdout.close()
    killed.stderr.close()
    finish(unbroken)

    # the same config, continued from whatever the kill left
    resumed = finish(sftkit("train", str(cfg_b), "train.resume=auto"))
    assert "run folder" in resumed
    a, b = tmp_path / "a", tmp_path / "b"
    assert_same_weights(a / "final", b / "final")
    assert steps_logged(b) == steps_logged(a)  # no step logged twice
    loss_a = json.loads((a / "final" / "sftkit.json").read_text())["metrics"]["train_loss"]
    loss_b = json.loads((b / "final" / "sftkit.json").read_text())["metrics"]["train_loss"]
    assert loss_b == pytest.approx(loss_a, rel=1e-6)  # the whole run's mean, not the resumed part's
    assert [d.name for d in b.glob("checkpoint-*")] == ["checkpoint-10"] and no_tmp_files(b)


# ---- kills around checkpoint rotation (fault injection in this process) -----------------------------------

@pytest.fixture(scope="module")
def reference(tiny_model_dir, tmp_path_factory) -> Path:
    """The unbroken run every interrupted one is compared with; ``TRAINER_LOSS`` keeps the Trainer's own mean
    training loss of that run (an independent figure for the whole-run loss)."""
    tmp = tmp_path_factory.mktemp("reference")
    real = Trainer.train

    def spy(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        TRAINER_LOSS.append(result.training_loss)
        return result

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Trainer, "train", spy)
        return train(load_config(write_config(tmp / "ref.yaml", tiny_model_dir, tmp / "run")))


TRAINER_LOSS: list[float] = []


class KillAtSave(TrainerCallback):
    """Stands for a SIGKILL after the Trainer wrote checkpoint-N and before anything else saw it."""

    def __init__(self, step: int):
        self.step = step

    def on_save(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


def interrupted(cfg_path: Path, step: int) -> Path:
    """Run until checkpoint-``step`` is written, then die before it is marked or older ones are rotated out."""
    trainer, run, _, _ = build(load_config(cfg_path))
    trainer.callback_handler.callbacks.insert(0, KillAtSave(step))
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    return run


def resume(cfg_path: Path) -> Path:
    return train(load_config(cfg_path, ["train.resume=auto"]))


def test_kill_before_the_new_checkpoint_is_marked_keeps_the_last_complete_one(tiny_model_dir, tmp_path, reference):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "run")  # save_total_limit: 1
    run = interrupted(cfg, 4)
    assert last_complete_checkpoint(run) == str(run / "checkpoint-2")  # not deleted before 4 was complete
    resume(cfg)
    assert_same_weights(reference / "final", run / "final")
    assert steps_logged(run) == steps_logged(reference)


def test_kill_while_deleting_an_old_checkpoint_resumes_from_a_complete_one(tiny_model_dir, tmp_path, reference,
                                                                          monkeypatch):
    import shutil

    real_rmtree = shutil.rmtree

    def killed_halfway(path, *args, **kwargs):
        path = Path(path)
        if path.name.endswith("checkpoint-4"):  # half of the files gone, the marker still there
            for name in ("model.safetensors", "optimizer.pt"):
                (path / name).unlink()
            raise KeyboardInterrupt("killed")
        real_rmtree(path, *args, **kwargs)

    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "run")
    monkeypatch.setattr(shutil, "rmtree", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(cfg))
    monkeypatch.undo()
    run = tmp_path / "run"
    assert last_complete_checkpoint(run) == str(run / "checkpoint-6")
    resume(cfg)
    assert_same_weights(reference / "final", run / "final")
    assert not list(run.glob(".deleting-*")) and no_tmp_files(run)


def test_a_marked_checkpoint_missing_files_is_never_resumed(tiny_model_dir, tmp_path, reference):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "run", save_total_limit=2)
    run = interrupted(cfg, 8)  # checkpoint-4 and -6 complete
    (run / "checkpoint-6" / "optimizer.pt").unlink()  # e.g. an older sftkit killed inside rmtree
    assert (run / "checkpoint-6" / COMPLETE).exists()
    assert last_complete_checkpoint(run) == str(run / "checkpoint-4")
    resume(cfg)
    assert_same_weights(reference / "final", run / "final")
    assert steps_logged(run) == steps_logged(reference)
    assert sorted(d.name for d in run.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-8"]


def test_resumed_train_loss_is_the_whole_runs(tiny_model_dir, tmp_path, reference):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "run")
    run = interrupted(cfg, 6)
    resume(cfg)
    whole = json.loads((reference / "final" / "sftkit.json").read_text())["metrics"]["train_loss"]
    info = json.loads((run / "final" / "sftkit.json").read_text())["metrics"]
    assert info["train_loss"] == pytest.approx(whole, rel=1e-6)
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["train_loss"] == pytest.approx(whole, rel=1e-6)
    assert whole == pytest.approx(TRAINER_LOSS[-1], rel=1e-6)  # the Trainer's own figure for an unbroken run


# ---- a full disk ------------------------------------------------------------------------------------------

def _enospc(path) -> OSError:
    return OSError(errno.ENOSPC, "No space left on device", str(path))


@pytest.mark.parametrize("where", ["checkpoint", "final", "metrics"])
def test_disk_full_ends_the_run_with_one_line(tiny_model_dir, tmp_path, monkeypatch, capsys, where):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "run")
    run = tmp_path / "run"
    if where == "checkpoint":
        real_save = torch.save

        def full_save(obj, f, *args, **kwargs):
            if str(f).endswith("checkpoint-4/optimizer.pt"):
                Path(f).write_bytes(b"\0" * 100)  # the part that fitted
                raise _enospc(f)
            return real_save(obj, f, *args, **kwargs)

        monkeypatch.setattr(torch, "save", full_save)
        culprit = run / "checkpoint-4" / "optimizer.pt"
    elif where == "final":
        import transformers.modeling_utils as mu

        real_file = mu.safe_save_file

        def full_file(tensors, filename, *args, **kwargs):
            if "final" in Path(filename).parent.name:  # the final model, not a checkpoint
                raise RuntimeError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
            return real_file(tensors, filename, *args, **kwargs)

        monkeypatch.setattr(mu, "safe_save_file", full_file)
        culprit = run
    else:
        from sftkit.train import callbacks

        def full_open(path, *args, **kwargs):
            if Path(path).name == "metrics.jsonl" and any(Path(path).parent.glob("checkpoint-*")):
                raise _enospc(path)
            return open(path, *args, **kwargs)

        monkeypatch.setattr(callbacks, "open", full_open, raising=False)
        culprit = run / "metrics.jsonl"
    capsys.readouterr()
    assert main(["train", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err  # progress bars may come before the one error line
    assert err.strip().splitlines()[-1] == (f"sftkit: error: disk full while writing {culprit}: free space and "
                                            "resume with train.resume=auto")
    assert no_tmp_files(run) and not (run / rd.PARTIAL_FINAL).exists() and not (run / "final").exists()
    if where == "checkpoint":
        assert not (run / "checkpoint-4" / COMPLETE).exists()
        assert last_complete_checkpoint(run) == str(run / "checkpoint-2")

    monkeypatch.undo()  # space freed: the advised command finishes the run
    assert main(["train", str(cfg), "train.resume=auto"]) == 0
    assert (run / "final" / "model.safetensors").exists()


def test_atomic_write_leaves_the_old_file_and_no_tmp(tmp_path, monkeypatch):
    target = tmp_path / "config.yaml"
    target.write_text("old")

    def full(fd):
        raise _enospc(target.with_name("config.yaml.tmp"))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        rd.atomic_write_text(target, "new")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["config.yaml"]


# ---- config faults, main process only, starting full training from a LoRA run -----------------------------

def test_max_steps_zero_is_an_error(tiny_model_dir, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "run")
    capsys.readouterr()
    assert main(["train", str(cfg), "train.max_steps=0"]) == 2
    assert "max_steps must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "run" / "checkpoint-1").exists()


def test_other_processes_write_nothing_to_the_run_folder(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")
    assert not rd.is_main_process()
    cfg = load_config(write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "run"))
    trainer, run, _, _ = build(cfg)
    assert not run.exists() or not list(run.iterdir())  # no config, data report, lock or rejects
    logger = MetricsJsonl(run / "metrics.jsonl")
    logger.on_log(trainer.args, trainer.state, trainer.control, logs={"loss": 1.0})
    assert not (run / "metrics.jsonl").exists()


def test_full_training_from_a_lora_run_saves_a_whole_model(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    lora = train(load_config(write_config(tmp_path / "l.yaml", tiny_model_dir, tmp_path / "lora", "lora",
                                          max_steps=2, save_steps=2, learning_rate=1e-2)))
    assert (lora / "final" / "adapter_config.json").exists()
    full = train(load_config(write_config(tmp_path / "f.yaml", lora, tmp_path / "full", "full", max_steps=2,
                                          save_steps=2)))
    final = full / "final"
    assert (final / "model.safetensors").exists() and not (final / "adapter_config.json").exists()
    assert json.loads((final / "sftkit.json").read_text())["adapter"] is False
    model, info = AutoModelForCausalLM.from_pretrained(final, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    changed = [n for n, p in base.named_parameters() if not torch.equal(p, dict(model.named_parameters())[n])]
    assert changed  # trained weights, not the base model's


def test_checkpoint_files_are_fsynced_before_the_marker(tiny_model_dir, tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst, *args, **kwargs):
        events.append(("replace", str(dst)))
        real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    run = train(load_config(write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "run", max_steps=2)))
    ckpt = run / "checkpoint-2"
    marked = events.index(("replace", str(ckpt / COMPLETE)))
    synced = {path for kind, path in events[:marked] if kind == "fsync"}
    files = {str(p) for p in ckpt.iterdir() if p.name != COMPLETE}
    assert files <= synced and str(ckpt) in synced  # every file, and the folder's entries


def test_no_training_rows_error_points_at_a_written_report(tiny_model_dir, tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", tiny_model_dir, tmp_path / "run")
    capsys.readouterr()
    assert main(["train", str(cfg), "data.max_length=8", "data.overflow=drop"]) == 2  # every record too long
    err = capsys.readouterr().err.strip().splitlines()[-1]
    report = tmp_path / "run" / "data_report.json"
    assert "no training rows" in err and str(report) in err
    assert json.loads(report.read_text())["train_rows"] == 0
