"""The training loop: epochs of SGD steps, evaluation, checkpoints and exact resume.

Two levels, so scripts can take what they need:

- ``fit(model, train_loader, test_loader, optimizer, epochs, ...)`` runs the loop
  for loaders and an optimizer you built, and returns the history: one dict per
  epoch (``epoch, lr, train_loss, train_acc, test_loss, test_acc, seconds,
  images_per_s``);
- ``train(model, train_data, test_data, TrainConfig(...), out_dir=...)`` builds the
  loaders, SGD and the schedule from a recipe, calls ``fit``, and writes
  ``metrics.csv``, ``metrics.json`` and ``curves.png`` into ``out_dir``.

Checkpoints (``tinyres.save``, atomic) are taken at the end of every epoch and
hold everything the next epoch depends on: the weights and BatchNorm buffers, the
optimizer's momentum, the schedule, the history, and the state of the random
generators (the loader's, which decides the order and the augmentation, and
tinyres's own). Resuming from one therefore gives *the same numbers* as a run that
was never stopped. A Ctrl-C (or, under ``tinyres train``, SIGTERM: ``cli/signals.py``)
in any phase leaves the last end-of-epoch checkpoint in place (a checkpoint of epoch 0
is written before the first step, so there always is one; a write cut short leaves the
previous file whole); ``resume`` repeats the interrupted epoch from its start. Loading a
checkpoint is all or nothing: if any entry fails, model, optimizer and schedule are put
back as they were and the error names the entry.

>>> import numpy as np
>>> import tinyres as tr
>>> from tinyres import nn
>>> from tinyres.data import ArrayDataset, DataLoader
>>> rng = np.random.default_rng(0)
>>> x = rng.standard_normal((64, 1, 2, 2)).astype(np.float32)
>>> data = ArrayDataset(x, (x.sum(axis=(1, 2, 3)) > 0).astype(np.int64))
>>> tr.manual_seed(0)
>>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
>>> opt = tr.optim.SGD(model.parameters(), lr=0.5)
>>> history = fit(model, DataLoader(data, 16, shuffle=True, generator=0), DataLoader(data, 64),
...               opt, epochs=3, progress=False)
>>> [h["epoch"] for h in history], history[-1]["test_acc"] > 0.9
([1, 2, 3], True)
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from tinyres import creation, nn, optim, parallel_training, phases
from tinyres.data import ArrayDataset, DataLoader, RandomCropFlip
from tinyres.engine import no_grad
from tinyres.history import plot_history, write_history
from tinyres.serialization import load, save

StepCallback = Callable[[int, float], None]
EpochCallback = Callable[[list[dict[str, Any]]], None]
TIMING_KEYS = ("seconds", "images_per_s")  # the only history entries that differ between runs


# ---- one epoch ---------------------------------------------------------------------------


def train_one_epoch(
    model: nn.Module,
    loader: DataLoader,
    optimizer: optim.Optimizer,
    loss_fn: nn.Module,
    *,
    first_step: int = 0,
    on_step: StepCallback | None = None,
    progress: tqdm | None = None,
) -> tuple[float, float, float]:
    """One pass of SGD steps; returns (mean loss, accuracy, images per second).

    Only Python floats survive a step (``loss.item()``), so no tensor of step k
    keeps step k's graph alive into step k+1: memory stays flat across steps. A loss
    that is not finite (the run diverged) stops the epoch with a FloatingPointError
    before the step, so it does not carry NaN into the weights.
    """
    model.train()
    total_loss = correct = seen = 0
    start = time.perf_counter()
    for i, (images, labels) in enumerate(loader):
        logits = model(images)
        loss = loss_fn(logits, labels)
        if not math.isfinite(loss.item()):
            step, epoch = first_step + i + 1, first_step // len(loader) + 1
            raise FloatingPointError(f"the loss became {loss.item()} at epoch {epoch}, step {step}")
        optimizer.zero_grad()
        loss.backward()
        phases.reached("step")
        optimizer.step()
        n = len(labels)
        total_loss += loss.item() * n
        correct += int((logits._data.argmax(axis=1) == labels._data).sum())
        seen += n
        speed = seen / (time.perf_counter() - start)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{total_loss / seen:.4f}", acc=f"{correct / seen:.3f}",
                                 img_s=f"{speed:.0f}")
        if on_step is not None:
            on_step(first_step + i + 1, loss.item())
    if seen == 0:
        raise ValueError("the training loader produced no batches (batch_size larger than the data "
                         "set with drop_last=True?)")
    return total_loss / seen, correct / seen, seen / (time.perf_counter() - start)


def evaluate(model: nn.Module, loader: DataLoader, loss_fn: nn.Module) -> tuple[float, float]:
    """(mean loss, accuracy) on ``loader``, in eval mode and without building a graph.

    Eval mode makes BatchNorm use its running statistics instead of the batch's, so
    the result does not depend on how the test set is batched. The model's mode is
    restored afterwards.
    """
    was_training = model.training
    model.eval()
    total_loss = correct = seen = 0
    try:
        with no_grad():
            for images, labels in loader:
                phases.reached("evaluation")
                logits = model(images)
                total_loss += loss_fn(logits, labels).item() * len(labels)
                correct += int((logits._data.argmax(axis=1) == labels._data).sum())
                seen += len(labels)
    finally:
        model.train(was_training)
    return total_loss / max(seen, 1), correct / max(seen, 1)


# ---- checkpoints -------------------------------------------------------------------------


def save_checkpoint(
    path: str | os.PathLike,
    *,
    epoch: int,
    model: nn.Module,
    optimizer: optim.Optimizer,
    scheduler: optim.lr_scheduler.LRScheduler | None,
    loader: DataLoader,
    history: list[dict[str, Any]],
    config: dict[str, Any] | None = None,
) -> None:
    """Everything needed to continue after ``epoch`` completed epochs (atomic write)."""
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # the bare model's keys, so a run with any number of ranks can resume
    save(
        {
            "epoch": epoch,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "history": history,
            "rng": {
                "loader": loader.generator.bit_generator.state,
                "tinyres": creation.generator().bit_generator.state,
            },
            "config": config,
        },
        path,
    )


def load_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: optim.Optimizer,
    scheduler: optim.lr_scheduler.LRScheduler | None,
    loader: DataLoader,
) -> tuple[int, list[dict[str, Any]], dict[str, Any] | None]:
    """Restore what ``save_checkpoint`` wrote; returns (epoch, history, config).

    Every refusal is a ``ValueError`` naming ``path``; the weights are checked against
    the model (keys and shapes) before anything is copied.
    """
    if isinstance(model, nn.parallel.DistributedDataParallel):
        model = model.module  # save_checkpoint wrote the bare model
    ckpt = load(path)
    keys = {"epoch", "model", "optimizer", "scheduler", "history", "rng"}
    missing = keys - set(ckpt) if isinstance(ckpt, dict) else keys
    if missing:
        raise ValueError(f"{path} is not a training checkpoint (as tinyres train writes them): "
                         f"it lacks {sorted(missing)}")
    _check_weights_fit(model, ckpt["model"], path)
    if (scheduler is None) != (ckpt["scheduler"] is None):
        raise ValueError(f"{path} was saved {'without' if scheduler else 'with'} a learning-rate "
                         "scheduler; resume with the same recipe")
    entry = "model"
    before = _training_state(model, optimizer, scheduler, loader)
    try:
        model.load_state_dict(ckpt["model"])
        entry = "optimizer"
        optimizer.load_state_dict(ckpt["optimizer"])
        entry = "scheduler"
        if scheduler is not None:
            scheduler.load_state_dict(ckpt["scheduler"])
        entry = "rng"
        loader.generator.bit_generator.state = ckpt["rng"]["loader"]
        creation.generator().bit_generator.state = ckpt["rng"]["tinyres"]
        entry = "epoch and history"
        epoch, history = int(ckpt["epoch"]), list(ckpt["history"])
    except BaseException as err:  # all or nothing: what was loaded before the failure is put back
        _restore_training_state(before, model, optimizer, scheduler, loader)
        if not isinstance(err, (KeyError, IndexError, TypeError, ValueError, RuntimeError)):
            raise
        raise ValueError(f"{path} is a damaged training checkpoint: its {entry!r} entry does not load "
                         f"({type(err).__name__}: {err}); the model and optimizer are as they were") from None
    return epoch, history, ckpt.get("config")


def _training_state(model: nn.Module, optimizer: optim.Optimizer,
                    scheduler: optim.lr_scheduler.LRScheduler | None, loader: DataLoader) -> tuple:
    """Copies of everything ``load_checkpoint`` changes, to put back if it fails part-way."""
    import copy

    return ({k: np.array(v._data) for k, v in model.state_dict(keep_vars=True).items()},
            copy.deepcopy(optimizer.state_dict()),
            copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
            loader.generator.bit_generator.state, creation.generator().bit_generator.state)


def _restore_training_state(state: tuple, model: nn.Module, optimizer: optim.Optimizer,
                            scheduler: optim.lr_scheduler.LRScheduler | None, loader: DataLoader) -> None:
    weights, optimizer_state, scheduler_state, loader_rng, tinyres_rng = state
    model.load_state_dict(weights)
    optimizer.load_state_dict(optimizer_state)
    if scheduler is not None:
        # Not load_state_dict (an update): a damaged file may have added entries of its own.
        own = scheduler.optimizer
        scheduler.__dict__.clear()
        scheduler.__dict__.update(scheduler_state, optimizer=own)
    loader.generator.bit_generator.state = loader_rng
    creation.generator().bit_generator.state = tinyres_rng


def _check_weights_fit(model: nn.Module, weights: Any, path: Any) -> None:
    """A short ValueError when ``weights`` belong to another model (or data set, whose
    channel count changes the first convolution), instead of a screen of key names."""
    if not isinstance(weights, dict):
        raise ValueError(f"{path}: its 'model' entry is a {type(weights).__name__}, not a state dict")
    own = model.state_dict()
    problems = {
        "missing": [k for k in own if k not in weights],
        "unexpected": [k for k in weights if k not in own],
        "of another shape": [k for k in own if k in weights and np.shape(weights[k]) != tuple(own[k].shape)],
    }
    found = [f"{len(names)} {kind} (first {names[0]})" for kind, names in problems.items() if names]
    if found:
        raise ValueError(f"{path} holds the weights of another model or data set: {len(own)} tensors "
                         f"expected, {', '.join(found)}; resume with the --model, --shortcut and --data "
                         "it was made with")


# ---- the loop ----------------------------------------------------------------------------


def _all_finite(model: nn.Module) -> bool:
    """No NaN or inf in the weights or the buffers (BatchNorm's running statistics)."""
    return all(np.isfinite(t._data).all() for t in model.state_dict().values() if t._data.dtype.kind == "f")


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    test_loader: DataLoader,
    optimizer: optim.Optimizer,
    epochs: int,
    *,
    scheduler: optim.lr_scheduler.LRScheduler | None = None,
    loss_fn: nn.Module | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    config: dict[str, Any] | None = None,
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Train for ``epochs`` epochs (counting those a resumed checkpoint already did).

    ``on_step(step, loss)`` runs after every optimizer step (steps count from 1
    across epochs); ``on_epoch(history)`` after every epoch's evaluation and
    checkpoint. With ``resume=True`` the run continues from ``checkpoint``, which
    must have been made with the same ``config`` (apart from ``epochs``, so a
    finished run can be extended).
    """
    loss_fn = loss_fn or nn.CrossEntropyLoss()
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        if checkpoint is None or not Path(checkpoint).is_file():
            raise FileNotFoundError(f"resume: no checkpoint at {checkpoint}")
        start_epoch, history, saved = load_checkpoint(
            checkpoint, model=model, optimizer=optimizer, scheduler=scheduler, loader=train_loader
        )
        _check_same_recipe(saved, config, checkpoint)

    def snapshot(epoch: int) -> None:
        if checkpoint is not None and parallel_training.is_writer():  # under mpiexec: rank 0 only
            save_checkpoint(checkpoint, epoch=epoch, model=model, optimizer=optimizer,
                            scheduler=scheduler, loader=train_loader, history=history, config=config)

    if not resume:
        snapshot(0)  # so even a Ctrl-C in the first epoch leaves a checkpoint to resume
    for epoch in range(start_epoch, epochs):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        bar = tqdm(total=len(train_loader), desc=f"epoch {epoch + 1}/{epochs}", unit="batch",
                   disable=not progress, leave=True, dynamic_ncols=True)
        # A diverging run stops at the checks below and in train_one_epoch with one message, the
        # checkpoint of the last good epoch kept; NumPy's overflow/invalid-value warnings say less.
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                train_loss, train_acc, speed = train_one_epoch(
                    model, train_loader, optimizer, loss_fn,
                    first_step=epoch * len(train_loader), on_step=on_step, progress=bar,
                )
                if isinstance(train_loader, parallel_training.ShardedLoader):  # the epoch over all ranks
                    train_loss, train_acc, speed = parallel_training.global_epoch_metrics(
                        train_loss, train_acc, speed, train_loader.seen)
                test_loss, test_acc = evaluate(model, test_loader, loss_fn)
                bar.set_postfix(loss=f"{train_loss:.4f}", acc=f"{train_acc:.3f}", test_acc=f"{test_acc:.4f}",
                                img_s=f"{speed:.0f}")
                if not (math.isfinite(test_loss) and _all_finite(model)):
                    raise FloatingPointError(f"the weights or the test loss ({test_loss}) became non-finite "
                                             f"at epoch {epoch + 1}, step {(epoch + 1) * len(train_loader)}")
        except FloatingPointError as err:
            kept = f"; the last good checkpoint is {checkpoint} (epoch {epoch}), kept" if checkpoint else ""
            raise FloatingPointError(f"{err}{kept}") from None
        finally:
            bar.close()
        if scheduler is not None:
            scheduler.step()
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "train_loss": train_loss,
            "train_acc": train_acc,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "seconds": time.perf_counter() - started,
            "images_per_s": speed,
        }
        history.append(record)
        snapshot(epoch + 1)
        if on_epoch is not None:
            on_epoch(history)
    return history


def _check_same_recipe(saved: dict[str, Any] | None, config: dict[str, Any] | None, path: Any) -> None:
    """Refuse to resume with different hyper-parameters (``epochs`` may grow)."""
    if saved is None or config is None:
        return

    def comparable(c: dict[str, Any]) -> dict[str, Any]:
        # Saved tuples come back from JSON as lists; compare them as lists.
        return {k: list(v) if isinstance(v, tuple) else v for k, v in c.items() if k != "epochs"}

    saved, config = comparable(saved), comparable(config)
    if "model" not in saved:  # a checkpoint from before the model's name was recorded
        config.pop("model", None)
    changed = sorted(k for k in saved.keys() | config.keys() if saved.get(k) != config.get(k))
    if changed:
        raise ValueError(f"resume: {path} was made with a different recipe (it differs in {changed}); "
                         "resume with the same options")


class DirectoryInUseError(OSError):
    """Another run holds the output directory's lock (an OSError: the CLI shows its message alone)."""


@contextlib.contextmanager
def lock_directory(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``directory/.lock`` so a second run into it stops at once.

    Two runs writing one checkpoint would each overwrite the other's epochs. The
    lock is ``flock``'s: the kernel drops it when the process ends, however it ends
    (kill -9 included), so a stale lock file never blocks the next run. Where
    ``fcntl`` does not exist (Windows) there is no lock.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(directory / ".lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise DirectoryInUseError(f"{directory} is in use by another training run ({owner}); wait for "
                                      "it, or choose another output directory") from None
        handle.truncate(0)
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- a recipe ----------------------------------------------------------------------------


@dataclass
class TrainConfig:
    """The hyper-parameters of a run (the paper's CIFAR recipe scaled to short runs).

    The paper: SGD, batch 128, lr 0.1 divided by 10 at 50% and 75% of training,
    momentum 0.9, weight decay 1e-4, 4-pixel pad + crop + flip. ``milestones`` are
    epochs; ``schedule="cosine"`` anneals to 0 instead. ``padding=None`` turns the
    augmentation off.
    """

    epochs: int = 15
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    nesterov: bool = False
    schedule: str = "multistep"
    milestones: tuple[int, ...] | None = None  # default: 50% and 75% of the epochs
    gamma: float = 0.1
    padding: int | None = 4
    flip: bool = True
    seed: int = 0

    def resolved_milestones(self) -> list[int]:
        if self.milestones is not None:
            return sorted(self.milestones)
        return sorted({max(1, self.epochs // 2), max(1, self.epochs * 3 // 4)})


def make_loaders(config: TrainConfig, train_data: ArrayDataset, test_data: ArrayDataset) -> tuple[
    DataLoader, DataLoader
]:
    """A shuffled, augmented training loader and a plain test loader."""
    augment = RandomCropFlip(config.padding, config.flip) if config.padding is not None else None
    # A stream of its own, so the data order does not share draws with the weight init.
    generator = np.random.default_rng([config.seed, 1])
    train_loader = DataLoader(train_data, config.batch_size, shuffle=True, transform=augment,
                              generator=generator)
    return train_loader, DataLoader(test_data, max(config.batch_size, 256))


def make_optimizer(model: nn.Module, config: TrainConfig) -> tuple[
    optim.SGD, optim.lr_scheduler.LRScheduler
]:
    """SGD with momentum and weight decay, and the schedule the config names."""
    opt = optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                    weight_decay=config.weight_decay, nesterov=config.nesterov)
    if config.schedule == "multistep":
        sched = optim.lr_scheduler.MultiStepLR(opt, config.resolved_milestones(), config.gamma)
    elif config.schedule == "cosine":
        sched = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.epochs)
    else:
        raise ValueError(f"unknown schedule {config.schedule!r}; expected 'multistep' or 'cosine'")
    return opt, sched


def train(
    model: nn.Module,
    train_data: ArrayDataset,
    test_data: ArrayDataset,
    config: TrainConfig,
    *,
    out_dir: str | os.PathLike | None = None,
    resume: bool = False,
    label: str = "model",
    on_step: StepCallback | None = None,
    on_epoch: EpochCallback | None = None,
    progress: bool = True,
    sync_bn: bool = True,
) -> list[dict[str, Any]]:
    """Train ``model`` with the recipe ``config``; returns the history.

    With ``out_dir``, the checkpoint (``checkpoint.npz``) and after every epoch the
    metrics (``metrics.csv``, ``metrics.json``) and the curves (``curves.png``) are
    written there. Build the model after ``tinyres.manual_seed(config.seed)`` for a
    reproducible initialisation.

    Under ``mpiexec -n N`` (a process group of N > 1 ranks) each rank trains on its share of
    every batch of ``config.batch_size`` (``tinyres.parallel_training``), the model wrapped in
    DistributedDataParallel, its batch norms synchronised unless ``sync_bn=False``; rank 0
    alone writes ``out_dir`` and shows progress.
    """
    train_loader, test_loader = make_loaders(config, train_data, test_data)
    recipe, loss_fn, world = asdict(config), None, parallel_training.world_size()
    # The model's name too: plain20's weights have resnet20's names and shapes (option A shortcuts
    # hold none), so only the name tells a resumed run it was handed another network's checkpoint.
    recipe["model"] = label
    if world > 1:
        from tinyres import distributed

        if sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:  # per-rank statistics: the numbers depend on N, so a resume must keep it
            recipe["ranks"] = world
        model = nn.parallel.DistributedDataParallel(model)
        train_loader = parallel_training.ShardedLoader(train_loader, distributed.get_rank(), world)
        loss_fn = parallel_training.ShardLoss(nn.CrossEntropyLoss(), train_loader)
        progress = progress and parallel_training.is_writer()
        on_epoch = on_epoch if parallel_training.is_writer() else None
    opt, sched = make_optimizer(model, config)
    checkpoint, lock = None, contextlib.nullcontext()
    if out_dir is not None:
        if Path(out_dir).exists() and not Path(out_dir).is_dir():
            raise NotADirectoryError(f"train: {out_dir} is a file; expected a directory for the outputs")
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        checkpoint, lock = Path(out_dir) / "checkpoint.npz", lock_directory(Path(out_dir))
        if not parallel_training.is_writer():  # the other ranks only read the checkpoint (--resume)
            lock = contextlib.nullcontext()

    def record_epoch(history: list[dict[str, Any]]) -> None:
        if out_dir is not None and parallel_training.is_writer():
            write_history(history, out_dir)
            plot_history({label: history}, Path(out_dir) / "curves.png")
        if on_epoch is not None:
            on_epoch(history)

    with lock:
        return fit(model, train_loader, test_loader, opt, config.epochs, scheduler=sched,
                   checkpoint=checkpoint, resume=resume, config=recipe, loss_fn=loss_fn, on_step=on_step,
                   on_epoch=record_epoch, progress=progress)
