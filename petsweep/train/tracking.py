"""Metric logging: metrics.jsonl in the run dir always; W&B as an optional mirror that never fails a run."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import warnings

from petsweep.records.status import RunDir, write_atomic

log = logging.getLogger("petsweep")

# True while the runs of a fused group are built: their W&B runs live side by side in one process
_ALONGSIDE = contextvars.ContextVar("petsweep_wandb_alongside", default=False)


@contextlib.contextmanager
def alongside_others():
    """Trackers started in this block open a W&B run of their own beside the process's other open runs
    (a fused group's members), instead of finishing the previous one (a warm worker's last run)."""
    token = _ALONGSIDE.set(True)
    try:
        yield
    finally:
        _ALONGSIDE.reset(token)


def wandb_keys(row: dict) -> dict:
    """An evaluation row of metrics.jsonl under W&B's namespaced names: eval/<metric> (the dev split).
    train/loss and train/lr come every trainer.log_every steps (Tracker.log_train), one meaning each: the mean
    loss over those steps, the lr after the step (an evaluation row's loss is the mean since the last one)."""
    named = {}
    for key, value in row.items():
        if key in ("step", "train_loss", "lr"):
            continue
        if key.startswith("dev_"):
            named[f"eval/{key.removeprefix('dev_')}"] = value
        else:
            named[f"train/{key.removeprefix('train_')}"] = value
    return named


def wandb_summary(result: dict, scalar_keys) -> dict:
    """The run's scalars, plus every test metric (test/<metric>) and train-subset metric."""
    summary = {k: result[k] for k in scalar_keys if result.get(k) is not None}
    summary.update({f"test/{k}": v for k, v in (result.get("metrics") or {}).items()})
    summary.update({f"train_subset/{k}": v for k, v in (result.get("train_subset_metrics") or {}).items()})
    if result.get("best_dev_score") is not None:
        summary[f"eval/best_{result['metric']}"] = result["best_dev_score"]
    return summary


class Tracker:
    """Writes one JSON line per evaluation and mirrors it to W&B when `wandb_cfg` is given.

    Args:
        run: the run directory (metrics.jsonl lives there).
        wandb_cfg: the `logger.wandb` node (project, entity, mode, tags) or None.
        run_id, group, name, config: W&B identity: id = run hash (a resumed run continues the same
            W&B run), group = sweep name.
        tags, job_type: W&B's (default: the logger's tags; none); petsweep.records.labels gives them.
    """

    def __init__(
        self,
        run: RunDir,
        wandb_cfg: dict | None,
        run_id: str,
        group: str,
        name: str,
        config: dict,
        tags: list | None = None,
        job_type: str | None = None,
    ):
        self.run, self._wandb = run, None
        if wandb_cfg:
            self._wandb = self._start_wandb(wandb_cfg, run_id, group, name, config, tags, job_type)

    def _start_wandb(
        self, cfg: dict, run_id: str, group: str, name: str, config: dict, tags=None, job_type=None
    ):
        try:
            import wandb

            return wandb.init(
                project=cfg.get("project"),
                entity=cfg.get("entity"),
                mode=cfg.get("mode", "offline"),
                tags=list(cfg.get("tags") or []) if tags is None else list(tags),
                job_type=job_type,
                id=run_id,
                resume="allow",
                group=group,
                name=name,
                config=config,
                dir=str(self.run.path),
                reinit="create_new" if _ALONGSIDE.get() else "finish_previous",
            )
        except Exception as err:  # a mirror must never take the run down with it
            warnings.warn(f"W&B mirror disabled: {type(err).__name__}: {err}", stacklevel=2)
            return None

    def _mirror(self, action: str, fn) -> None:
        if self._wandb is None:
            return
        try:
            fn(self._wandb)
        except Exception as err:
            warnings.warn(f"W&B {action} failed, mirror disabled: {err}", stacklevel=3)
            self._wandb = None

    def log(self, row: dict) -> None:
        self.run.append_metrics(row)
        self._mirror("log", lambda w: w.log(wandb_keys(row), step=row["step"]))

    def log_train(self, step: int, loss: float, lr: float) -> None:
        """W&B's train/loss (the mean over the last trainer.log_every steps) and train/lr, every log_every
        steps; metrics.jsonl keeps evaluation rows only."""
        self._mirror("log", lambda w: w.log({"train/loss": loss, "train/lr": lr}, step=step))

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after `step` (written by an interrupted attempt after its last checkpoint)."""
        if not self.run.metrics_file.exists():
            return
        rows = [json.loads(line) for line in self.run.metrics_file.read_text().splitlines() if line.strip()]
        kept = "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows if r["step"] <= step)
        write_atomic(self.run.metrics_file, kept)

    def finish(self, summary: dict, exit_code: int = 0) -> None:
        def close(w):
            w.summary.update(summary)
            w.finish(exit_code=exit_code)

        self._mirror("finish", close)


class NullTracker(Tracker):
    """What ranks other than 0 log: nothing (rank 0 writes metrics.jsonl and the W&B mirror)."""

    def __init__(self):
        self._wandb = None

    def log(self, row: dict) -> None:
        pass

    def truncate_after(self, step: int) -> None:
        pass
