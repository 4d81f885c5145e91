"""Data-parallel training over several processes: torch.distributed + DistributedDataParallel.

Started by torchrun (`torchrun --nproc-per-node N -m attntrain fit CONFIG`, or `attntrain fit CONFIG
--nproc N`, which calls torchrun's own launcher), each process (rank) trains a copy of the model:

- Batches: the global batch order stays a function of (seed, epoch); each step's batches are cut into
  disjoint shares, one per rank (`local_share`), so the union over ranks is the single-process step.
- Loss: a rank's loss of a batch is (its sum of token losses) / (the batch's real tokens over all
  ranks) x world size; DDP averages gradients over ranks, so the gradient is the single-process one
  up to the order of float sums.
- Evaluation: every rank runs a disjoint share of the batches (`shard`), `sync_meter` sums the
  meters' counts, rank 0 computes the metrics and sends them to all (`compute_on_main`).
- Files: rank 0 alone writes; the others wait at a barrier. Every collective is reached by every
  rank in the same order, so none waits alone.

With one process (no torchrun) every function here is a no-op and training is bit-identical to before.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import os
import signal
import sys
from typing import Any, Callable, TypeVar

import torch
import torch.distributed as dist

from attntrain.errors import UserError

T = TypeVar("T")
IGNORE = -100  # attntrain.model.heads.IGNORE (kept here so this file imports no model code)


# ---- who am I ------------------------------------------------------------------------------------
def launched() -> bool:
    """True inside a process started by torchrun (or another launcher setting WORLD_SIZE) with > 1 ranks."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


# ---- start -----------------------------------------------------------------------------------------
def check_backend(backend: str, device: str, *, processes: int) -> str:
    """The process-group backend for train.backend / train.device; a clear UserError for impossible asks."""
    cuda = torch.cuda.is_available() and device != "cpu"
    if backend == "nccl" and not cuda:
        raise UserError("train.backend: nccl needs CUDA GPUs (train.device is "
                        f"'{device}'{'' if torch.cuda.is_available() else ', and no GPU is visible'}); "
                        "use train.backend: gloo (or auto) on CPU")
    if device.startswith("cuda:") and processes > 1:
        raise UserError(f"train.device: '{device}' names one GPU, but {processes} processes cannot share it; "
                        "use auto or cuda (each process takes its local GPU)")
    if cuda and processes > torch.cuda.device_count():
        raise UserError(f"{processes} processes per machine but {torch.cuda.device_count()} GPU(s) visible; "
                        "use --nproc-per-node <= the number of GPUs (or train.device: cpu)")
    return ("nccl" if cuda else "gloo") if backend == "auto" else backend


def setup(train_cfg) -> None:
    """Join the process group torchrun prepared (once per process); nothing without torchrun."""
    if not launched() or active():
        return
    if not dist.is_available():
        raise UserError("this torch build has no torch.distributed; run with one process")
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    backend = check_backend(train_cfg.backend, train_cfg.device, processes=local)
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    elif local_rank() == 0 and not os.environ.get("ATTNTRAIN_LAUNCHER"):  # --nproc has warned already
        for warning in check_launch(local, train_cfg):
            print(warning, file=sys.stderr)
    dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    atexit.register(teardown)


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def device_for(name: str) -> str:
    """train.device for this rank: auto/cuda become this rank's local GPU when several processes run."""
    if launched() and name in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{local_rank()}"
    return name


def wrap(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """The module the training forward goes through: DDP around the model when several ranks train."""
    if not active():
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index if device.index is not None else local_rank()] if device.type == "cuda" else None
    # The buffers are constants (position tables, id maps): no need to send them at each forward.
    return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)


def accumulating(module: torch.nn.Module, last: bool):
    """DDP averages gradients once per optimizer step: skip the all-reduce on all but the last batch."""
    if last or not hasattr(module, "no_sync"):
        return contextlib.nullcontext()
    return module.no_sync()


# ---- collectives, with a clear message when a peer is gone -----------------------------------------
class PeerLost(UserError):
    """Another process of the run stopped (died or was killed) while this one waited for it."""

    exit_code = 1


@contextlib.contextmanager
def peers():
    """Turns the backend's error about a vanished peer into one line (the run resumes from its checkpoint)."""
    try:
        yield
    except (RuntimeError, dist.DistError) as e:
        if not active() or isinstance(e, UserError):
            raise
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise PeerLost(f"rank {rank()}: another process of this run stopped ({first}); continue with "
                       "`attntrain fit --resume RUN_DIR` (it restarts from the last checkpoint)") from None


def barrier() -> None:
    if active():
        with peers():
            dist.barrier()


def all_sum(values: list[float]) -> list[float]:
    """Element-wise sum over ranks (float64 on CPU; the NCCL backend needs the tensor on the GPU)."""
    if not active():
        return list(values)
    device = f"cuda:{torch.cuda.current_device()}" if dist.get_backend() == "nccl" else "cpu"
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    with peers():
        dist.all_reduce(tensor)
    return tensor.cpu().tolist()


def gather_objects(value: Any) -> list[Any]:
    if not active():
        return [value]
    out = [None] * world_size()
    with peers():
        dist.all_gather_object(out, value)
    return out


def broadcast(value: T) -> T:
    """Rank 0's value on every rank."""
    if not active():
        return value
    box = [value]
    with peers():
        dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(fn: Callable[[], T]) -> T:
    """Run fn on rank 0 only (file writes, checks); every rank gets its result, or raises its UserError."""
    result, error = None, None
    if is_main():
        try:
            result = fn()
        except UserError as e:
            error = str(e)
    result, error = broadcast((result, error))
    if error is not None:
        raise UserError(error)
    return result


def any_stop(requested: str | None) -> str | None:
    """A signal seen by any rank stops every rank at the same step (SIGINT wins over SIGTERM)."""
    if not active():
        return requested
    sigint, sigterm = all_sum([float(requested == "SIGINT"), float(requested == "SIGTERM")])
    return "SIGINT" if sigint else "SIGTERM" if sigterm else None


# ---- data ------------------------------------------------------------------------------------------
def shard(batches: list[T]) -> list[T]:
    """This rank's evaluation batches: every world_size-th one (whole batches, so metrics are exact)."""
    return batches[rank()::world_size()] if active() else batches


def loss_count(head: torch.nn.Module, batch: dict) -> int:
    """How many targets a head's mean loss divides by: the labels that are not IGNORE (seq2seq: that
    its softmax covers as well)."""
    labels = batch["labels"]
    real = labels[labels != IGNORE]
    column = getattr(head, "label_column", None)
    if column is not None:
        return int((column.cpu()[real] != IGNORE).sum())
    return int(real.numel())


def local_share(task, head, group: list[list[int]]) -> tuple[list[dict], list[float]]:
    """This rank's part of one optimizer step: for each global batch, its examples r, r+N, r+2N, ...

    Returns the collated local batches and each one's loss weight, N x (local targets / the batch's
    targets over all ranks): a rank's weighted mean loss is then its share of the batch's total loss
    (times N, which DDP's averaging divides away). A rank whose share of a batch is empty runs one
    example with weight 0, so all ranks run the same forwards and backwards.
    """
    N, r = world_size(), rank()
    batches, counts = [], []
    for indices in group:
        mine = indices[r::N]
        batch = task.batch("train", mine or indices[:1])
        batches.append(batch)
        counts.append(loss_count(head, batch) if mine else 0)
    totals = all_sum(counts)
    weights = [N * count / max(total, 1.0) for count, total in zip(counts, totals)]
    return batches, weights


# ---- meters ----------------------------------------------------------------------------------------
def sync_meter(meter) -> None:
    """Sum a meter's counts over ranks, in place: numbers and tensors are added, dicts (seq2seq
    hypotheses by example index) merged, lists (tag sequences for span scores) concatenated. Names in the meter's `settings` (e.g. the beam width) are left
    alone. Which attributes count is read from rank 0, so every rank runs the same collectives even
    when its share was empty."""
    if not active():
        return
    kept = set(getattr(meter, "settings", ()))

    def kind(value) -> str | None:
        if isinstance(value, torch.Tensor):
            return "tensor"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return "number"
        return "dict" if isinstance(value, dict) else "list" if isinstance(value, list) else None

    names = broadcast({k: kind(v) for k, v in vars(meter).items() if k not in kept and kind(v)})
    with peers():
        for name, what in names.items():
            value = getattr(meter, name)
            if what == "tensor":
                summed = torch.tensor(all_sum(value.double().flatten().tolist()), dtype=torch.float64)
                setattr(meter, name, summed.view(value.shape).to(value.dtype))
            elif what == "number":
                total = all_sum([float(value or 0)])[0]
                setattr(meter, name, int(round(total)) if isinstance(value, int) else total)
            elif what == "list":
                setattr(meter, name, [item for part in gather_objects(value or []) for item in part])
            else:
                merged = {}
                for part in gather_objects(value or {}):
                    merged.update(part)
                setattr(meter, name, merged)


def compute_on_main(meter) -> dict:
    """meter.compute() on rank 0 (it may write files, e.g. hyp_<split>.txt); the metrics reach every rank."""
    if not active():
        return meter.compute()
    return on_main(meter.compute)


# ---- checkpoints ---------------------------------------------------------------------------------
BATCHING_KEYS = ("seed", "data.max_tokens", "train.accumulate", "data.train_limit", "data.max_len",
                 "data.train_fraction", "data.train_examples", "data.subset_seed")


def batching(cfg) -> dict:
    """The settings that fix what a saved data position (epoch, batch) means; the process count is not one."""
    return {"seed": cfg.seed, "data.max_tokens": cfg.data.max_tokens, "train.accumulate": cfg.train.accumulate,
            "data.train_limit": cfg.data.train_limit, "data.max_len": cfg.data.max_len,
            **{f"data.{key}": getattr(cfg.data, key) for key in ("train_fraction", "train_examples", "subset_seed")}}


def check_batching(saved: dict | None, cfg) -> None:
    """A resume whose config changes the batch order would silently replay other examples: refuse it."""
    if saved is None:  # a checkpoint from before this record
        return
    now = batching(cfg)
    for key in BATCHING_KEYS:
        if key in saved and saved[key] != now[key]:
            raise UserError(f"{key} is {now[key]} but the checkpoint was trained with {saved[key]}; the saved data "
                            f"position would point at other examples. Resume with --set {key}={saved[key]}"
                            if saved[key] is not None else f"{key} was unset in the checkpoint's run; the saved "
                            "data position would point at other examples; resume without changing it")


def changed_settings(saved_config, cfg) -> str:
    """'; changed since: key old -> new, ...' between a run's config.yaml and cfg (empty when none differ)."""
    from attntrain.config import build_config, read_yaml

    def flat(tree: dict, prefix: str = "") -> dict:
        out = {}
        for key, value in tree.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
        return out

    before = flat(build_config(read_yaml(saved_config), str(saved_config)).to_dict())
    after = flat(cfg.to_dict())
    changed = [f"{key} {before.get(key)} -> {after.get(key)}" for key in sorted(set(before) | set(after))
               if before.get(key) != after.get(key) and key not in ("name", "runs_dir")]
    return f"; changed since it was saved: {', '.join(changed)}" if changed else ""


# ---- random state --------------------------------------------------------------------------------
def seed_rank(seed: int) -> None:
    """Different dropout masks per rank (rank 0 keeps the single-process stream)."""
    if active() and rank() > 0:
        torch.manual_seed(seed * 1_000_003 + rank())


def rng_states() -> list[torch.Tensor] | None:
    """Every rank's CPU RNG state (for the checkpoint; None with one process)."""
    return gather_objects(torch.get_rng_state()) if active() else None


def restore_rng(rng: torch.Tensor, per_rank: list | None, *, seed: int, step: int) -> None:
    """Same world size: each rank takes back its own stream; otherwise rank 0 takes the saved one and
    the others start fresh streams from (seed, rank, step)."""
    if per_rank is not None and len(per_rank) == world_size():
        torch.set_rng_state(per_rank[rank()])
    elif rank() == 0:
        torch.set_rng_state(rng)
    else:
        torch.manual_seed((seed * 1_000_003 + rank()) * 1_000_003 + step)


# ---- launcher --------------------------------------------------------------------------------------
def check_launch(nproc: int, train_cfg) -> list[str]:
    """Refuse what cannot run (UserError: NCCL without GPUs, more processes than GPUs); warn about
    more CPU processes than cores (they run, slowly). Returns the warnings."""
    check_backend(train_cfg.backend, train_cfg.device, processes=nproc)
    cuda = torch.cuda.is_available() and train_cfg.device != "cpu"
    if not cuda and nproc > (os.cpu_count() or 1):
        return [f"warning: --nproc {nproc} but {os.cpu_count()} CPU core(s); the processes will share cores "
                "and train slower than fewer would"]
    return []


def launch(nproc: int, argv: list[str], *, train_cfg, run_dir: str) -> int:
    """`attntrain fit ... --nproc N`: start N processes on this machine with torchrun's launcher
    (standalone rendezvous on a free local port). Returns the exit code for the command."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    for warning in check_launch(nproc, train_cfg):
        print(warning, file=sys.stderr)
    os.environ["ATTNTRAIN_LAUNCHER"] = "1"  # inherited by the processes
    import logging

    logging.getLogger("torch.distributed").setLevel(logging.ERROR)  # its banners and warnings, not errors
    args = get_args_parser().parse_args(["--standalone", f"--nproc-per-node={nproc}", "-m", "attntrain", *argv])
    try:
        run(args)
    except SignalException as e:
        print(f"stopped by {e.sigval.name}", file=sys.stderr)
        return 130
    except ChildFailedError as e:
        first = min(e.failures.values(), key=lambda f: f.timestamp)
        code = first.exitcode
        if code in (2, 130):  # the rank printed its own message (a UserError, or a clean stop)
            return code
        reason = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
        print(f"error: process rank {first.local_rank} failed ({reason}); the other processes were stopped. "
              f"Continue with `attntrain fit --resume {run_dir}` (from its last checkpoint)", file=sys.stderr)
        return 1
    return 0
