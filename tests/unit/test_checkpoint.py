"""Checkpoints verified on load (manifest, keep two, damaged ones set aside), the code fingerprint in the run key,
the stop-on-signal context, and file-system errors as one line: all in-process, on a toy model, in a second."""
from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
from pathlib import Path

import pytest
import torch

from rewardkit.config import ModelConfig, TrainConfig
from rewardkit.errors import UserError, file_system_error, run_main
from rewardkit.io import atomic_path, native_os_errors
from rewardkit.modeling.artifact import check_model_dir, safetensors_problem
from rewardkit.training import checkpoint, loop, preemption, run_key
from rewardkit.training.distributed import Ranks

CPU = torch.device("cpu")


def toy_state(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    model(torch.ones(2, 4)).sum().backward()
    optimizer.step()
    scheduler.step()
    return model, optimizer, scheduler


def save(directory: Path, step: int) -> None:
    model, optimizer, scheduler = toy_state(step)
    checkpoint.save(directory, step=step, model=model, optimizer=optimizer, scheduler=scheduler,
                    curve=[{"step": s, "loss": 0.5} for s in range(1, step + 1)])


def names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_each_checkpoint_has_a_manifest_and_the_last_two_are_kept(tmp_path):
    for step in (5, 10, 15):
        save(tmp_path, step)
    assert names(tmp_path) == ["step-00000010.json", "step-00000010.pt", "step-00000015.json", "step-00000015.pt"]
    manifest = json.loads((tmp_path / "step-00000015.json").read_text())
    pt = tmp_path / "step-00000015.pt"
    assert manifest["size"] == pt.stat().st_size and manifest["file"] == pt.name and manifest["step"] == 15
    state = checkpoint.load_latest(tmp_path)
    assert state["step"] == 15 and len(state["curve"]) == 15
    assert torch.equal(state["model"]["weight"], toy_state(15)[0].state_dict()["weight"])


@pytest.mark.parametrize("damage, why", [
    (lambda pt: pt.write_bytes(pt.read_bytes()[: pt.stat().st_size // 2]), "truncated"),
    (lambda pt: pt.write_bytes(flip(pt.read_bytes(), pt.stat().st_size // 2)), "sha256 differs"),
    (lambda pt: pt.with_suffix(".json").unlink(), "no manifest"),
    (lambda pt: pt.with_suffix(".json").write_text('{"size": 12'), "manifest step-00000010.json is unreadable"),
    (lambda pt: pt.unlink(), "the file is missing"),
])
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_previous_one_used(tmp_path, capsys, damage, why):
    save(tmp_path, 5)
    save(tmp_path, 10)
    damage(tmp_path / "step-00000010.pt")
    left = [n for n in names(tmp_path) if n.startswith("step-00000010")]
    state = checkpoint.load_latest(tmp_path)
    assert state["step"] == 5
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: checkpoint {tmp_path}/step-00000010.pt is damaged (")
    assert why in lines[0] and lines[0].endswith("resuming from the one of step 5")
    assert "step-00000010.pt.damaged" in lines[0]
    assert [n for n in names(tmp_path) if n.startswith("step-00000010")] == [n + ".damaged" for n in left]
    assert checkpoint.steps_on_disk(tmp_path) == [5]  # the next run does not even look at it


def flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


def test_an_unloadable_checkpoint_that_matches_its_manifest_is_set_aside_too(tmp_path, capsys):
    save(tmp_path, 5)
    pt = tmp_path / "step-00000005.pt"
    pt.write_bytes(b"not a zip archive")  # as if written so by a buggy writer: the manifest agrees
    from rewardkit.io import file_sha256, write_json
    write_json(pt.with_suffix(".json"), {"file": pt.name, "step": 5, "size": pt.stat().st_size,
                                         "sha256": file_sha256(pt)})
    assert checkpoint.load_latest(tmp_path) is None
    line, = capsys.readouterr().err.splitlines()
    assert "torch.load failed" in line and line.endswith("training from scratch")


def test_both_damaged_means_from_scratch_and_a_finished_run_keeps_only_the_damaged(tmp_path, capsys):
    save(tmp_path, 5)
    save(tmp_path, 10)
    for pt in tmp_path.glob("*.pt"):
        pt.write_bytes(flip(pt.read_bytes(), 100))
    assert checkpoint.load_latest(tmp_path) is None
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and all(line.endswith("training from scratch") for line in lines)
    save(tmp_path, 15)
    checkpoint.remove(tmp_path)
    assert all(n.endswith(".damaged") for n in names(tmp_path)) and len(names(tmp_path)) == 4
    shutil.rmtree(tmp_path)
    tmp_path.mkdir()
    save(tmp_path, 5)
    checkpoint.remove(tmp_path)
    assert not tmp_path.exists()


def test_resume_on_one_process_is_load_latest(tmp_path):
    assert checkpoint.resume(tmp_path / "none", Ranks()) is None
    save(tmp_path, 5)
    assert checkpoint.resume(tmp_path, Ranks())["step"] == 5


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")  # meta copies are no-ops
def test_a_checkpoint_resumes_onto_a_model_on_another_device_with_its_rng_state(tmp_path):
    """#23: the meta device stands in for a GPU. A checkpoint saved on the CPU is read to the CPU (the RNG states
    must be CPU byte tensors; main read it to the training device: set_rng_state's TypeError on CUDA) and
    load_state_dict moves weights and optimizer state to where the parameters are."""
    save(tmp_path, 5)
    saved_torch, saved_python = torch.get_rng_state(), random.getstate()  # what the checkpoint holds
    torch.manual_seed(99)
    random.seed(99)
    with torch.device("meta"):
        model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    state = loop.TrainState(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0))
    loop.resume(state, tmp_path, Ranks(), total=10)
    assert state.step == 5 and len(state.curve) == 5
    assert torch.equal(torch.get_rng_state(), saved_torch) and random.getstate() == saved_python
    assert model.weight.device.type == "meta"
    assert {t.device.type for t in optimizer.state[model.weight].values() if t.ndim} == {"meta"}


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("CUDA error: out of memory"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 4294967296 bytes"),
    MemoryError(),
], ids=["cuda-oom", "cuda-error", "cpu-allocator", "memory-error"])
def test_out_of_memory_while_loading_leaves_the_checkpoint_and_stops_with_one_line(tmp_path, capsys, monkeypatch,
                                                                                     error):
    """#23: only a damaged file may be set aside; running out of memory says nothing about the file."""
    save(tmp_path, 5)
    save(tmp_path, 10)
    on_disk = names(tmp_path)

    def load(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "load", load)
    with pytest.raises(SystemExit) as stopped:
        run_main(lambda: checkpoint.load_latest(tmp_path))
    assert stopped.value.code == 2
    line, = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: out of memory loading checkpoint {tmp_path}/step-00000010.pt (")
    assert "left in place" in line
    assert names(tmp_path) == on_disk  # nothing renamed to *.damaged, nothing deleted


def test_an_os_error_while_loading_is_not_damage(tmp_path, monkeypatch):
    save(tmp_path, 5)

    def load(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(torch, "load", load)
    with pytest.raises(OSError):
        checkpoint.load_latest(tmp_path)
    assert checkpoint.steps_on_disk(tmp_path) == [5]


# ------------------------------------------------------------------------------------------------ run key
def copy_package(tmp_path: Path) -> Path:
    source = run_key.source_dir("rewardkit")
    return Path(shutil.copytree(source, tmp_path / "rewardkit", ignore=shutil.ignore_patterns("__pycache__")))


def test_the_fingerprint_covers_the_training_code_and_only_it(tmp_path):
    package = run_key.source_dir("rewardkit")
    files = {p.relative_to(package).as_posix() for p in run_key.code_files()}
    assert {"training/job.py", "training/loop.py", "training/checkpoint.py", "training/preemption.py",
            "modeling/objective.py", "modeling/model.py", "modeling/fast/deberta.py", "__init__.py",
            "training/__init__.py", "modeling/fast/__init__.py"} <= files
    # data/splitting.py carves the validation slice; validation, the server and the score CLI play no part
    assert not files & {"data/validation.py", "serving/server.py", "scoring/jsonl.py"}
    package = copy_package(tmp_path)
    same = run_key.code_fingerprint()
    assert run_key.code_fingerprint(package_dir=package) == same  # where the project lies does not count
    (package / "data" / "validation.py").write_text("# not imported by training\n", encoding="utf-8")
    assert run_key.code_fingerprint(package_dir=package) == same
    with open(package / "modeling" / "objective.py", "a", encoding="utf-8") as f:
        f.write("# an edit\n")
    assert run_key.code_fingerprint(package_dir=package) != same


def test_the_run_key_changes_with_code_packages_data_and_numeric_params_only(monkeypatch):
    model_cfg, cfg = ModelConfig(name="scratch-tiny"), TrainConfig()
    key = run_key.run_key("abc", model_cfg, cfg)
    assert run_key.run_key("abc", model_cfg, TrainConfig(checkpoint_every=7)) == key
    assert run_key.run_key("abc", model_cfg, TrainConfig(stats_pairs=5)) == key  # measured after training
    assert run_key.run_key("abc", model_cfg, TrainConfig(validation_fraction=0.3)) == key  # no slice: unused
    assert run_key.run_key("abd", model_cfg, cfg) != key
    assert run_key.run_key("abc", model_cfg, TrainConfig(lr=1e-3)) != key
    every_10 = run_key.run_key("abc", model_cfg, TrainConfig(eval_every=10))
    assert every_10 != key  # a validation slice is carved out of the training pairs
    assert run_key.run_key("abc", model_cfg, TrainConfig(eval_every=3)) == every_10  # scored more often: same run
    assert run_key.run_key("abc", model_cfg, TrainConfig(eval_every=10, validation_fraction=0.2)) != every_10
    monkeypatch.setattr(run_key, "code_fingerprint", lambda: "edited")
    assert run_key.run_key("abc", model_cfg, cfg) != key
    monkeypatch.undo()
    versions = run_key.package_versions()
    assert set(versions) >= {"torch", "transformers", "tokenizers", "sentencepiece"}
    monkeypatch.setattr(run_key, "package_versions", lambda: {**versions, "torch": "0.0.1"})
    assert run_key.run_key("abc", model_cfg, cfg) != key


# ----------------------------------------------------------------------------------------- stop on signal
@pytest.fixture
def python_ctrl_c():
    """Python's Ctrl-C handler, as in a terminal: a shell's background job starts with SIGINT ignored, and Python
    then installs none (CI may run the tests so)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ranks_agree_on_the_highest_signal_any_of_them_asked_for():
    """The requests of three ranks summed as the training loop sums them: SIGTERM wins over SIGINT, none is 0."""
    ranks = [preemption.StopOnSignal() for _ in range(3)]
    ranks[1].signum, ranks[2].signum = signal.SIGINT, signal.SIGTERM
    summed = sum(stop.request_counts() for stop in ranks).tolist()
    assert ranks[0].from_counts(summed) == signal.SIGTERM
    assert ranks[0].from_counts(sum(stop.request_counts() for stop in ranks[:2]).tolist()) == signal.SIGINT
    assert ranks[0].from_counts(ranks[0].request_counts().tolist()) == 0


def test_a_signal_becomes_a_request_and_the_handlers_come_back(python_ctrl_c):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with preemption.StopOnSignal() as stop:
        assert not stop.requested and stop.agreed(Ranks()) == 0
        signal.raise_signal(signal.SIGTERM)  # the process goes on
        assert stop.requested and stop.agreed(Ranks()) == signal.SIGTERM
        signal.raise_signal(signal.SIGTERM)  # again (directly and through torchrun's agent): still going on
        assert stop.signum == signal.SIGTERM
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
    with pytest.raises(KeyboardInterrupt), preemption.StopOnSignal() as stop:
        signal.raise_signal(signal.SIGINT)
        assert stop.signum == signal.SIGINT
        signal.raise_signal(signal.SIGINT)  # twice: as without the handler, at once
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_stopped_is_one_line_and_exits_128_plus_the_signal(capsys, tmp_path):
    error = preemption.Stopped(signal.SIGTERM, 9, 24, tmp_path)
    assert error.exit_code == 143 and preemption.Stopped(signal.SIGINT, 1, 2, tmp_path).exit_code == 130

    def main():
        raise error

    with pytest.raises(SystemExit) as exited:
        run_main(main)
    assert exited.value.code == 143
    assert capsys.readouterr().err == (f"error: stopped by SIGTERM after step 9/24; its checkpoint is in {tmp_path}: "
                                       "rerun the train stage (dvc repro) to resume from it\n")


# ------------------------------------------------------------------------------------ file-system errors
@pytest.mark.parametrize("code, start", [
    (errno.ENOSPC, "error: no space left on device writing out/x.json: free some space (df -h out) and rerun"),
    (errno.EDQUOT, "error: disk quota exceeded writing out/x.json: "),
    (errno.EROFS, "error: read-only file system: out/x.json: write to a writable file system, or remount out "),
    (errno.EACCES, "error: permission denied: out/x.json: check who owns out and its files (ls -l out)"),
])
def test_file_system_errors_are_one_line_and_exit_2(capsys, code, start):
    def main():
        raise OSError(code, os.strerror(code), "out/x.json")

    with pytest.raises(SystemExit) as exited:
        run_main(main)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(start) and err.count("\n") == 1


def test_other_os_errors_keep_their_traceback():
    assert file_system_error(OSError(errno.EIO, "I/O error", "x")) is None
    assert file_system_error(PermissionError(errno.EACCES, "Permission denied")) is None  # bind() to port 80
    with pytest.raises(FileNotFoundError):
        run_main(lambda: open("/nonexistent/x"))


def test_atomic_path_names_the_output_of_a_write_that_failed(tmp_path):
    with pytest.raises(OSError) as error, atomic_path(tmp_path / "out.jsonl"):
        raise OSError(errno.ENOSPC, "No space left on device")  # what f.write raises: no file name
    assert error.value.filename == str(tmp_path / "out.jsonl")
    with pytest.raises(OSError) as error, atomic_path(tmp_path / "a.jsonl"), atomic_path(tmp_path / "b.jsonl"):
        raise OSError(errno.ENOSPC, "No space left on device")  # which of the two: not known, their directory
    assert error.value.filename == str(tmp_path)
    with pytest.raises(OSError) as error, atomic_path(tmp_path / "model", is_dir=True) as tmp:
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "config.json"))
    assert error.value.filename == str(tmp_path / "model" / "config.json")
    assert os.listdir(tmp_path) == []  # no temporary file or directory left


def test_native_writers_full_disk_becomes_an_os_error():
    with pytest.raises(OSError) as error, native_os_errors("m/model.safetensors"):
        raise RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert (error.value.errno, error.value.filename) == (errno.ENOSPC, "m/model.safetensors")
    with pytest.raises(OSError) as error, native_os_errors("ckpt.pt"):
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded")
        except OSError:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 704 vs 598") from None
    assert error.value.errno == errno.EDQUOT
    with pytest.raises(RuntimeError), native_os_errors("x"):
        raise RuntimeError("a bug, not a full disk")


# ------------------------------------------------------------------------------------ damaged model dirs
@pytest.fixture
def model_dir(tmp_path) -> Path:
    from safetensors.torch import save_file

    directory = tmp_path / "reward_model"
    directory.mkdir()
    save_file({"w": torch.arange(12.0).reshape(3, 4), "b": torch.zeros(3)}, directory / "model.safetensors")
    (directory / "config.json").write_text('{"model_type": "deberta-v2"}')
    (directory / "reward_model.json").write_text('{"pooling": "cls", "max_length": 64}')
    return directory


def test_a_whole_model_dir_passes_and_a_damaged_one_names_its_file(model_dir):
    assert check_model_dir(model_dir)["pooling"] == "cls"
    weights = model_dir / "model.safetensors"
    data = weights.read_bytes()
    assert safetensors_problem(weights) is None
    weights.write_bytes(data[:-5])
    assert "truncated or overwritten" in safetensors_problem(weights)
    weights.write_bytes(data[:40])
    assert "truncated" in safetensors_problem(weights)
    weights.write_bytes(data[:8] + b"#" + data[9:])
    assert "not a safetensors header" in safetensors_problem(weights)
    with pytest.raises(UserError) as error:
        check_model_dir(model_dir)
    assert str(error.value).startswith(f"{weights} is damaged (its header is not a safetensors header): restore "
                                       f"the model with `dvc checkout {model_dir}`, or retrain it with `dvc repro "
                                       "train`")


def test_a_damaged_json_or_missing_weights_or_dir_is_one_user_error(model_dir):
    (model_dir / "config.json").write_text('{"model_type": ')
    with pytest.raises(UserError, match=r"config.json is damaged \(not valid JSON"):
        check_model_dir(model_dir)
    (model_dir / "config.json").write_text("{}")
    (model_dir / "model.safetensors").unlink()
    with pytest.raises(UserError, match=r"model.safetensors is damaged \(the file is missing\)"):
        check_model_dir(model_dir)
    with pytest.raises(UserError, match="not found: train it with `dvc repro train`"):
        check_model_dir(model_dir.parent / "nothing")
