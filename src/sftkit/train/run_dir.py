"""The run folder's safety rules: one training per folder, writes that survive a kill or a full disk.

- Only the main process writes, deletes or prints (``is_main_process``), so a multi-process launch
  needs no rewrite.
- ``.lock`` is held (``flock``) for the whole run: a second ``sftkit train`` into the folder fails
  with a clear error instead of mixing weights and metrics.
- A checkpoint is resumable only when its marker exists and every file it lists still has its
  recorded size. The marker is written after the files and the folder are fsynced.
- Old checkpoints are deleted only after a newer one is marked, and a deletion first renames the
  folder to ``.deleting-*`` so a half-deleted checkpoint is never resumed.
- Text files are replaced atomically (``*.tmp`` + rename, removed on failure).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import sys
from pathlib import Path

from sftkit.errors import SftkitError

COMPLETE = "SFTKIT_COMPLETE"  # a checkpoint's manifest, written last
LOCK = ".lock"
DELETING = ".deleting-"
PARTIAL_FINAL = ".final-partial"
_HELD: dict[str, int] = {}  # run folder -> open lock file descriptor


def is_main_process() -> bool:
    """True on the process that owns the run folder: rank 0 of a multi-process launch, or the only one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def wait_for_everyone() -> None:
    """In a multi-process launch, return when every process got here (no-op in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def lock_run_dir(run_dir: Path) -> None:
    """Hold ``run_dir/.lock`` until ``release_run_dir`` or the end of the process.

    Raises:
        SftkitError: another process holds it.
    """
    key = str(Path(run_dir).resolve())
    if key in _HELD or not is_main_process():
        return
    fd = os.open(Path(run_dir) / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise SftkitError(f"{run_dir} is in use by another sftkit train (pid {pid}); wait for it to end or "
                          "choose another train.output_dir") from None
    except OSError as e:  # a file system without locks (some network mounts): train, but say so
        os.close(fd)
        print(f"sftkit: warning: cannot lock {run_dir} ({e.strerror}); make sure no other training writes there",
              file=sys.stderr)
        return
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD[key] = fd


def release_run_dir(run_dir: Path) -> None:
    """Let another training use the folder."""
    fd = _HELD.pop(str(Path(run_dir).resolve()), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock


def fsync_dir(path: Path) -> None:
    """Make a folder's entries (new, renamed, deleted files) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """fsync every file and folder under ``path`` (and ``path`` itself)."""
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))


def atomic_write_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: a kill leaves the old or the new file, never a mix; a failed write leaves
    no ``*.tmp`` (a kill's is removed when the run is started again)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def _disk_full(e: BaseException, run_dir: Path) -> tuple[bool, str | None]:
    """(whether ``e`` or one of its causes says the disk is full, the file it names). torch and safetensors wrap
    the OSError: torch as "file write failed", safetensors as "StorageFull"."""
    for _ in range(10):
        if e is None:
            break
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return True, e.filename
        text = str(e)
        if "No space left on device" in text or "StorageFull" in text:
            return True, None
        if "write failed" in text:
            with contextlib.suppress(OSError):
                if shutil.disk_usage(run_dir).free < 64 * 2**20:
                    return True, None
        e = e.__cause__ or e.__context__
    return False, None


@contextlib.contextmanager
def disk_full_is_user_error(run_dir: Path):
    """Turn "no space left" while writing the run into one clear line; leave no ``*.tmp`` behind."""
    try:
        yield
    except Exception as e:
        full, where = _disk_full(e, run_dir)
        if not full:
            raise
        remove_tmp_files(run_dir)
        raise SftkitError(f"disk full while writing {where or run_dir}: free space and resume with "
                          "train.resume=auto") from None


def remove_tmp_files(run_dir: Path) -> None:
    """Delete ``*.tmp`` files a failed write may have left in the run folder (only by the process holding its lock:
    never under another training's feet)."""
    if str(Path(run_dir).resolve()) in _HELD:
        for p in Path(run_dir).rglob("*.tmp"):
            if p.is_file():
                p.unlink(missing_ok=True)


# ---- checkpoints -----------------------------------------------------------------------------------------

def checkpoint_step(path: Path) -> int | None:
    """N for a ``checkpoint-N`` folder, else None."""
    prefix, _, n = Path(path).name.rpartition("-")
    return int(n) if prefix == "checkpoint" and n.isdigit() else None


def checkpoints(run_dir: Path) -> list[Path]:
    """``checkpoint-N`` folders, oldest step first."""
    found = [d for d in Path(run_dir).glob("checkpoint-*") if d.is_dir() and checkpoint_step(d) is not None]
    return sorted(found, key=checkpoint_step)


def mark_complete(ckpt: Path) -> None:
    """fsync a fully written checkpoint, then write its manifest (every file and its size) as the marker."""
    ckpt = Path(ckpt)
    fsync_tree(ckpt)
    files = {str(p.relative_to(ckpt)): p.stat().st_size for p in sorted(ckpt.rglob("*"))
             if p.is_file() and p.name != COMPLETE}
    atomic_write_text(ckpt / COMPLETE, json.dumps({"step": checkpoint_step(ckpt), "files": files}, indent=1))


def is_complete_final(run_dir: Path) -> bool:
    """The run folder holds a finished ``final/`` (it is renamed into place whole, ``sftkit.json`` inside)."""
    return (Path(run_dir) / "final" / "sftkit.json").is_file()


def is_complete(ckpt: Path) -> bool:
    """A checkpoint can be resumed from: marked, and every file of its manifest is there with its size."""
    ckpt = Path(ckpt)
    try:
        manifest = json.loads((ckpt / COMPLETE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if isinstance(manifest, int):  # a marker of sftkit <= 0.1 (the step only): trust it if the state is there
        return (ckpt / "trainer_state.json").is_file()
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or "trainer_state.json" not in files:
        return False
    for name, size in files.items():
        p = ckpt / name
        if not p.is_file() or p.stat().st_size != size:
            return False
    return True


def last_complete_checkpoint(run_dir: Path) -> str | None:
    """The newest checkpoint that can be resumed from, or None."""
    done = [d for d in checkpoints(run_dir) if is_complete(d)]
    return str(done[-1]) if done else None


def discard(path: Path) -> None:
    """Delete a folder so that a kill at any moment leaves it whole or out of sight: rename to
    ``.deleting-<name>`` (atomic, durable), then delete."""
    path = Path(path)
    if not path.exists():
        return
    gone = path.with_name(DELETING + path.name)
    if gone.exists():
        shutil.rmtree(gone)
    os.replace(path, gone)
    fsync_dir(path.parent)
    shutil.rmtree(gone)


def prune_checkpoints(run_dir: Path, keep: int) -> None:
    """Keep the newest ``keep`` complete checkpoints; delete older ones and interrupted leftovers older than the
    newest complete one. Call only after the newest checkpoint is marked complete."""
    all_ckpts = checkpoints(run_dir)
    done = [d for d in all_ckpts if is_complete(d)]
    if not done:
        return
    newest = checkpoint_step(done[-1])
    kept = set(done[-keep:])
    for d in all_ckpts:
        if d not in kept and checkpoint_step(d) <= newest:
            discard(d)


def clean_interrupted(run_dir: Path) -> None:
    """Remove what an interrupted run left: half-deleted folders, a half-saved final model, ``*.tmp`` files and
    checkpoints that were never completed."""
    run_dir = Path(run_dir)
    for d in [*run_dir.glob(DELETING + "*"), run_dir / PARTIAL_FINAL]:
        if d.is_dir():
            shutil.rmtree(d)
    for d in checkpoints(run_dir):
        if not is_complete(d):
            discard(d)
    remove_tmp_files(run_dir)


# ---- metrics ---------------------------------------------------------------------------------------------

def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the lines of ``metrics.jsonl`` up to ``last_step`` (a resumed run logs the later steps again);
    a line cut short by a kill is dropped."""
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and rec["step"] <= last_step:
            kept.append(line + "\n")
    atomic_write_text(path, "".join(kept))


def whole_run_train_loss(log_history: list[dict], global_step: int) -> float | None:
    """Mean training loss over every step of the run, across resumes, from the logged loss windows; None when
    the logs do not cover the run up to ``global_step``."""
    total, prev = 0.0, 0
    for rec in log_history:
        if "loss" in rec and isinstance(rec.get("step"), int) and rec["step"] > prev:
            total += rec["loss"] * (rec["step"] - prev)
            prev = rec["step"]
    return total / prev if prev == global_step and prev > 0 else None


@contextlib.contextmanager
def guarded_run(run_dir: Path):
    """The body of a recipe's ``train``: a full disk is a one-line user error, any failure removes the temporary
    files it left, and the run folder's lock is released at the end, whatever happened."""
    try:
        with disk_full_is_user_error(run_dir):
            yield
    except BaseException:
        if run_dir.is_dir():
            remove_tmp_files(run_dir)
        raise
    finally:
        release_run_dir(run_dir)
