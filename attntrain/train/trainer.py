"""The training loop: batches -> loss -> AdamW step, with evaluation, best/last checkpoints,
early stopping, clean interruption (Ctrl-C / SIGTERM) and exact resume.

Exact resume: the batch order of epoch e depends only on (seed, e), and a checkpoint stores the
epoch, the batch position inside it, the optimizer, the schedule and the RNG state. A resumed run
therefore replays the same updates as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import time

import torch
from tqdm import tqdm

from attntrain.config import Config, save_config
from attntrain.data import build_task
from attntrain.errors import Diverged, UserError
from attntrain.io import append_jsonl, atomic_write_json, atomic_write_text, finite_json, read_jsonl
from attntrain.model.build import build_model, count_parameters
from attntrain.model.hf_import import configure, load_init
from attntrain.model.vectors import load_vectors
from attntrain.train import distributed, warm_start
from attntrain.train.fingerprint import KEY as FINGERPRINT, check_same_data, data_fingerprint, task_state
from attntrain.train.schedule import (Budget, budget as resolve_budget, ema_decay, resolve as resolve_schedule,
                                      steps_per_epoch)
from attntrain.train.checkpoint import (RunDir, load_checkpoint, load_weights, read_run_json, reading, resume_hint,
                                        save_checkpoint, save_weights)
from attntrain.train.progress import (FitResult, Progress, StopFlag, check_not_finished, diverged_message, log,
                                      open_tensorboard, seed_everything, stop_reason)
from attntrain.train.loop import (amp_dtype, autocast, build_optimizer, choose_outside_bias, evaluate, evaluate_split,
                                  lr_factor, move, peak_memory_mb, resolve_device)


class Trainer:
    def __init__(self, cfg: Config, run: RunDir, *, resume: bool, allow_data_change: bool = False):
        if not resume:  # model.init hf:...: the checkpoint's architecture (a resumed run's config already has it)
            cfg = configure(cfg, log)
        self.cfg, self.run = cfg, run
        self.allow_data_change = allow_data_change
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.seed)
        distributed.setup(cfg.train)
        self.device = resolve_device(distributed.device_for(cfg.train.device))
        self.amp = amp_dtype(self.device, cfg.train.amp)
        self.init = None if resume else warm_start.start(cfg)  # model.init: may set how the input is read
        self.task = build_task(cfg)
        unknown = [split for split in cfg.train.eval_splits if split not in self.task.splits]
        if unknown:  # found now, not after training
            raise UserError(f"train.eval_splits: unknown split '{unknown[0]}'; this task has "
                            f"{', '.join(self.task.splits)}")
        distributed.on_main(lambda: self._prepare_task(resume))  # rank 0 builds vocabularies, writes the run files
        if not distributed.is_main():
            self.task.prepare(task_state(read_run_json(run.task_state))[0])
        self.model = build_model(cfg, self.task.info())
        if not resume:
            load_init(self.model, cfg)  # model.init hf:...: the checkpoint's embedding and encoder weights
            load_vectors(self.model, self.task, cfg, log)  # model.embed.vectors: the word table from a file
        if self.init is not None:
            log(self.init.load(self.model))
        self.model = self.model.to(self.device)
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.scaler = torch.amp.GradScaler(enabled=self.amp == torch.float16)
        self.progress = Progress()
        # Exponential moving average of the weights (train.ema): what gets evaluated and kept as best.
        self._params = list(self.model.parameters())
        self.ema = ([p.detach().clone() for p in self._params] if cfg.train.ema or cfg.train.ema_horizon
                    else None)
        self.schedule = None  # steps of warm-up / evaluation / averaging, resolved when fit() knows the run length
        self.tensorboard = (open_tensorboard(run.path / "tensorboard") if cfg.train.tensorboard and distributed.is_main()
                            else None)
        self._saved_step: int | None = None  # step of the newest checkpoint written by this process
        self._evaluated_step: int | None = None  # step of the newest dev evaluation
        self.on_eval = None  # called as on_eval(step, dev metric) after each dev record (tune: may raise to prune)
        if resume:
            self._restore()
        else:
            distributed.seed_rank(cfg.seed)
        self.forward = distributed.wrap(self.model, self.device)  # DDP with several processes
        if cfg.train.compile:
            self.forward = torch.compile(self.forward)

    def _prepare_task(self, resume: bool) -> None:
        run = self.run
        state, saved = (task_state(read_run_json(run.task_state)) if resume and run.task_state.is_file()
                        else (None, None))
        if state is None and self.init is not None:  # model.init: the pretrained run's vocabulary / statistics
            state = self.init.task_state
        with reading(run.task_state, "does not fit this task (vocabularies of another run?)"):
            self.task.prepare(state)
        check_same_data(saved, self.task, run.path, allow_change=self.allow_data_change)
        run.path.mkdir(parents=True, exist_ok=True)
        if not resume:  # a resumed run's config.yaml is replaced once its checkpoint has loaded (_restore)
            save_config(self.cfg, run.config)
        fingerprint = saved if saved and not self.allow_data_change else data_fingerprint(self.task)
        atomic_write_json(run.task_state, {**self.task.state(), FINGERPRINT: fingerprint})

    # ---- records -----------------------------------------------------------------------------
    def _record(self, record: dict) -> None:
        """One metrics.jsonl line; with train.tensorboard its numbers also go to runs/<name>/tensorboard/."""
        if not distributed.is_main():
            return
        append_jsonl(self.run.metrics, record)
        if self.tensorboard is not None and record["kind"] not in ("start", "stop"):
            prefix = record["kind"] if "split" not in record else f"{record['kind']}_{record['split']}"
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "epoch"):
                    self.tensorboard.add_scalar(f"{prefix}/{key}", value, record.get("step", 0))
            self.tensorboard.flush()

    # ---- state -------------------------------------------------------------------------------
    def _restore(self) -> None:
        folder = self.run.latest()
        if folder is None:
            raise UserError(f"{self.run.path}: no checkpoint to resume from")
        try:
            state = load_checkpoint(folder, self.model)
        except UserError as e:  # name the settings that changed since the checkpoint was written
            raise UserError(f"{e}{distributed.changed_settings(self.run.config, self.cfg)}") from None
        with reading(folder / "trainer.pt", "does not fit this model and config", resume_hint(folder)):
            self.optimizer.load_state_dict(state["optimizer"])
            self.scaler.load_state_dict(state["scaler"])
            self.progress = Progress(**state["progress"])
        if self.ema is not None:
            saved = state.get("ema")  # None when the run was trained without train.ema until now
            self.ema = ([t.to(self.device) for t in saved] if saved is not None
                        else [p.detach().clone() for p in self._params])
        distributed.restore_rng(state["rng"], state.get("rng_ranks"), seed=self.cfg.seed, step=self.progress.step)
        if self.device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], self.device)
        distributed.check_batching(state.get("batching"), self.cfg)
        distributed.on_main(lambda: save_config(self.cfg, self.run.config))  # only once the checkpoint fits
        if distributed.is_main():
            self._trim_metrics(self.progress.step)
        log(f"resumed from {folder} (step {self.progress.step}, epoch {self.progress.epoch})")

    def _trim_metrics(self, step: int) -> None:
        """Drop records logged after the checkpoint: the resumed run writes them again."""
        if not self.run.metrics.is_file():
            return
        kept = [r for r in read_jsonl(self.run.metrics) if r.get("step", 0) <= step]
        atomic_write_text(self.run.metrics, "".join(json.dumps(finite_json(r), ensure_ascii=False) + "\n" for r in kept))

    def _save(self) -> None:
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "progress": self.progress.__dict__,
            "rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None,
            "ema": self.ema,
            "rng_ranks": distributed.rng_states(),  # several processes: every rank's dropout stream
            "batching": distributed.batching(self.cfg),  # what the saved data position means
        }
        if distributed.is_main():
            save_checkpoint(self.run, self.model, state)
        distributed.barrier()
        self._saved_step = self.progress.step

    def _save_if_needed(self) -> None:
        if self._saved_step != self.progress.step:
            self._save()

    # ---- loop --------------------------------------------------------------------------------
    def budget(self) -> Budget:
        """The run's length: max_steps overrides max_epochs; min_steps extends a short run (schedule.budget)."""
        per_epoch = steps_per_epoch(self.task, self.cfg.train)
        return resolve_budget(self.cfg.train, per_epoch)

    def total_steps(self) -> int:
        return self.budget().total

    def _record_stop(self, stopped: str, budget: Budget) -> str:
        code, sentence = stop_reason(self.cfg.train, self.progress, stopped, budget)
        p = self.progress
        self._record({"kind": "stop", "reason": code, "step": p.step, "epoch": p.epoch, "best": p.best,
                      "best_step": p.best_step, "detail": sentence})
        log(f"stopped: {sentence}")
        return sentence

    def _set_lr(self, total: int) -> float:
        t = self.cfg.train
        factor = lr_factor(self.progress.step, total=total, warmup=self.schedule.warmup, schedule=t.schedule,
                           min_ratio=t.min_lr_ratio)
        for group in self.optimizer.param_groups:  # lr_scale: train.layer_decay's factor for the group
            group["lr"] = t.lr * factor * group.get("lr_scale", 1.0)
        return t.lr * factor

    def _local_batches(self, group: list[list[int]]) -> tuple[list[dict], list[float] | None]:
        """The batches of one step this process runs (several processes: its share, with loss weights)."""
        if not distributed.active():
            return [self.task.batch("train", indices) for indices in group], None
        return distributed.local_share(self.task, self.model.head, group)

    def _step(self, batches: list[dict], weights: list[float] | None = None) -> tuple[float, int, bool]:
        """One optimizer step over `accumulate` batches; returns (mean loss, real tokens, finite).

        weights: with several processes, each local batch's loss weight (see distributed.local_share);
        loss and tokens are then summed over the processes. A step whose loss or gradient norm is
        NaN/inf changes nothing (no update, no average) and returns finite=False (the same on every process).
        """
        total_loss, tokens = 0.0, 0
        for i, batch in enumerate(batches):
            batch = move(batch, self.device)
            with distributed.accumulating(self.forward, last=i == len(batches) - 1):
                with autocast(self.device, self.amp):
                    loss = self.forward(batch)["loss"] / len(batches)
                    if weights is not None:
                        loss = loss * weights[i]
                self.scaler.scale(loss).backward()
            total_loss += float(loss.detach())
            if weights is None or weights[i]:  # a weight-0 batch stands in for an empty share
                tokens += int(batch["mask"].sum())
        if weights is not None:
            total_loss, tokens = distributed.all_sum([total_loss / distributed.world_size(), tokens])
            tokens = int(tokens)
        self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip or math.inf)
        if not self._finite(total_loss, norm):
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.update()
            return total_loss, tokens, False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            decay = ema_decay(self.schedule.ema, self.progress.step)  # ramps up to train.ema / ema_horizon
            with torch.no_grad():
                torch._foreach_lerp_(self.ema, self._params, 1.0 - decay)
        return total_loss, tokens, True

    def _finite(self, loss: float, grad_norm: torch.Tensor) -> bool:
        """fp16 loss scaling makes inf gradients routine (the scaler skips those steps): there only the loss counts."""
        return math.isfinite(loss) and (self.scaler.is_enabled() or bool(torch.isfinite(grad_norm)))

    def _count_nonfinite(self, loss: float) -> None:
        """A skipped step: count it, and stop (Diverged, exit 3) after train.max_nonfinite in a row."""
        t, p = self.cfg.train, self.progress
        p.skipped, p.window_skipped, p.nonfinite_run = p.skipped + 1, p.window_skipped + 1, p.nonfinite_run + 1
        log(f"step {p.step}: non-finite {'loss' if not math.isfinite(loss) else 'gradient norm'}, step skipped "
            f"({p.nonfinite_run} in a row, train.max_nonfinite {t.max_nonfinite})")
        if p.nonfinite_run < t.max_nonfinite:
            return
        self._record({"kind": "stop", "reason": "non-finite", "step": p.step, "skipped": p.skipped})
        raise Diverged(diverged_message(t, p, self.run))

    @contextlib.contextmanager
    def averaged_weights(self):
        """Inside the block the model holds the EMA weights (when train.ema is set), then its own again."""
        if self.ema is None:
            yield
            return
        own = [p.detach().clone() for p in self._params]
        with torch.no_grad():
            torch._foreach_copy_(self._params, self.ema)
        try:
            yield
        finally:
            with torch.no_grad():
                torch._foreach_copy_(self._params, own)

    def _improves(self, value: float) -> bool:
        best = self.progress.best
        if not math.isfinite(value) or not all(bool(torch.isfinite(w).all()) for w in self._params):
            return False  # never keep NaN weights or a NaN score as the best
        return best is None or (value > best if self.cfg.train.metric_mode == "max" else value < best)

    def _evaluate_dev(self) -> bool:
        """Evaluate on dev, keep the best weights; returns True when early stopping triggers."""
        t, p = self.cfg.train, self.progress
        with self.averaged_weights():
            metrics = evaluate(self.model, self.task, "dev", self.device, amp=self.amp)
            if t.metric not in metrics:
                raise UserError(f"train.metric: '{t.metric}' is not reported by this head; available: "
                                f"{', '.join(metrics)}")
            value = metrics[t.metric]
            # a dev loss of NaN means some outputs are NaN even when the metric looks fine: never the best
            improved = self._improves(value) and math.isfinite(metrics.get("loss", 0.0))
            if improved and distributed.is_main():
                save_weights(self.model, self.run.best, {"step": p.step, t.metric: value})
        distributed.barrier()
        if improved:
            p.best, p.best_step, p.bad_evals = value, p.step, 0
        else:
            p.bad_evals += 1
        self._record({"kind": "eval", "split": "dev", "step": p.step, **metrics})
        self._evaluated_step = p.step
        best = f"{p.best:.2f} at step {p.best_step}" if p.best is not None else "none yet"
        log(f"step {p.step}: dev {t.metric} {value:.2f} (best {best})")
        if self.on_eval is not None:
            self.on_eval(p.step, value)
        return t.patience is not None and p.bad_evals >= t.patience

    def fit(self) -> FitResult:
        cfg, t, p = self.cfg, self.cfg.train, self.progress
        budget = self.budget()
        if p.step and self.run.metrics.is_file():
            check_not_finished(self.run, self.progress, budget, self.cfg.train.eval_splits)
        total = budget.total
        self.schedule = resolve_schedule(t, total)
        self.model.train()
        params = count_parameters(self.model)
        with StopFlag() as flag:  # before the start record: a signal from then on saves and stops
            if p.step == 0:
                batches0 = self.task.batches("train", shuffle=True, epoch=0)
                record = {"kind": "start", "step": 0, "parameters": params, "device": str(self.device),
                          "train_examples": len(self.task.split("train")), "batches_per_epoch": len(batches0),
                          "padding_fraction": self.task.padding("train", batches0), "total_steps": total,
                          "budget": budget.limit}
                if getattr(self.task, "data_checks", None):  # held-out inputs seen in train, label conflicts
                    record["data_checks"] = self.task.data_checks
                self._record(record)
                log(f"{params:,} parameters on {self.device}; {record['train_examples']} training examples, "
                    f"{len(batches0)} batches/epoch, padding {100 * record['padding_fraction']:.1f}%; "
                    f"budget {budget.describe()}")
                if self.task.train_subset is not None:
                    log(f"training subset: {self.task.train_subset.describe()}; dev and test whole")
            for warning in self.schedule.warnings:
                log(f"warning: {warning}")
            stopped = "finished"
            bar = tqdm(total=total, initial=p.step, desc=f"fit {cfg.name}",
                       disable=not t.progress or not distributed.is_main(), dynamic_ncols=True)
            window_tokens, window_start = 0, time.perf_counter()
            session_start = time.perf_counter() - p.elapsed
            while stopped == "finished" and p.step < total and p.epoch < budget.max_epochs:
                order = self.task.batches("train", shuffle=True, epoch=p.epoch)
                while p.batch_in_epoch < len(order) and p.step < total:
                    group = order[p.batch_in_epoch: p.batch_in_epoch + t.accumulate]
                    lr = self._set_lr(total)
                    step_start = time.perf_counter()
                    loss, tokens, finite = self._step(*self._local_batches(group))
                    p.step += 1
                    p.batch_in_epoch += len(group)
                    p.tokens += tokens
                    p.elapsed = time.perf_counter() - session_start
                    window_tokens += tokens
                    if finite:
                        p.window_loss, p.window_steps, p.nonfinite_run = p.window_loss + loss, p.window_steps + 1, 0
                    else:
                        self._count_nonfinite(loss)
                    if p.step % t.log_every == 0 or p.step == total:
                        speed = window_tokens / max(time.perf_counter() - window_start, 1e-9)
                        mean = p.window_loss / p.window_steps if p.window_steps else None
                        self._record({"kind": "train", "step": p.step, "epoch": p.epoch, "loss": mean,
                                      "skipped": p.window_skipped, "lr": lr, "tokens_per_s": speed,
                                      "elapsed": p.elapsed})
                        p.window_loss, p.window_steps, p.window_skipped = 0.0, 0, 0
                        window_tokens, window_start = 0, time.perf_counter()
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{tokens / (time.perf_counter() - step_start):.0f}",
                                    refresh=False)
                    evaluate_now = p.step % self.schedule.eval_every == 0 or p.step == total
                    if evaluate_now and self._evaluate_dev():
                        stopped = "early_stop"
                    if (p.step % t.save_every == 0) if t.save_every else evaluate_now:
                        self._save()
                    if stopped != "finished":
                        break
                    requested = distributed.any_stop(flag.requested)  # every process stops at the same step
                    if requested:
                        stopped = requested
                        break
                else:
                    p.epoch += 1
                    p.batch_in_epoch = 0
            if stopped not in ("finished", "early_stop"):
                self._save_if_needed()
                bar.close()
                reason = self._record_stop(stopped, budget)
                log(f"resume with: attntrain fit --resume {self.run.path}")
                return FitResult(str(self.run.path), stopped, p.step, p.best, {}, reason)
        bar.close()
        if p.best is None or self._evaluated_step != p.step:
            self._evaluate_dev()
        self._save_if_needed()
        reason = self._record_stop(stopped, budget)
        return FitResult(str(self.run.path), stopped, p.step, p.best, self.final_eval(), reason)

    def _choose_decoding(self) -> None:
        """model.head.outside_bias: dev: the O bias with the best dev metric, saved as decoding.json (one record)."""
        head = self.model.head
        if self.cfg.model.head.outside_bias != "dev" or not getattr(head, "spans", lambda: False)():
            return
        metric = self.cfg.train.metric if self.cfg.train.metric_mode == "max" else "f1"
        bias, scores = choose_outside_bias(self.model, self.task, self.device, metric, amp=self.amp)
        if distributed.is_main():
            atomic_write_json(self.run.decoding, {"outside_bias": bias})
        self._record({"kind": "decoding", "split": "dev", "step": self.progress.step, "outside_bias": bias,
                      "dev": {str(b): v for b, v in scores.items()}})
        log(f"model.head.outside_bias: {bias:g} (dev {metric} {scores[bias]:.2f}; 0 gives {scores[0.0]:.2f})")

    def final_eval(self) -> dict:
        """Evaluate the best checkpoint on the configured splits, once, and write eval_<split>.json."""
        load_weights(self.model, self.run.best)
        self._choose_decoding()
        results = {}
        for split in self.cfg.train.eval_splits:
            metrics = evaluate_split(self.model, self.task, split, self.device, self.run.path, amp=self.amp)
            metrics.update(step=self.progress.best_step, train_seconds=round(self.progress.elapsed, 1),
                           peak_memory_mb=round(peak_memory_mb(self.device), 1))
            if distributed.is_main():
                atomic_write_json(self.run.eval_file(split), metrics)
            self._record({"kind": "final", "split": split, "step": self.progress.step, **metrics})
            results[split] = metrics
        distributed.barrier()  # the other processes return once rank 0 has written everything
        return results
