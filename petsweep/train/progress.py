"""Progress while a run trains: step/N, loss, it/s and ETA. A bar on a terminal, a plain line every
`trainer.log_every` steps otherwise (SLURM logs, launcher logs), and `progress.json` in the run dir, which
`petsweep status` and `petsweep show` read."""

from __future__ import annotations

import logging
import sys
import time

from petsweep.records.status import RunDir, write_json

log = logging.getLogger("petsweep")


def eta_text(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(seconds)
    if seconds < 3600:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class StepProgress:
    """Told of every step and evaluation by the training loop; reports every `every` steps.

    Rates count this session's steps only, so a resumed run's it/s and ETA are its own, not diluted by the
    steps it resumed past.
    """

    def __init__(self, run: RunDir, max_steps: int, every: int, start_step: int, active: bool = True):
        self.run, self.max_steps, self.every, self.active = run, max_steps, every, active
        self.start_step, self.started = start_step, time.perf_counter()
        self.loss_sum, self.loss_count = 0.0, 0
        self.dev_score: float | None = None
        self.best_dev: float | None = None
        self.bar = None
        self.last: dict | None = None  # the latest progress.json written
        if active and sys.stderr.isatty() and start_step < max_steps:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=max_steps, initial=start_step, unit="step", dynamic_ncols=True, leave=False)

    def step(self, step: int, loss: float) -> None:
        if not self.active:
            return
        self.loss_sum, self.loss_count = self.loss_sum + loss, self.loss_count + 1
        if self.bar is not None:
            self.bar.update(1)
        if step % self.every and step != self.max_steps:
            return
        loss = self.loss_sum / self.loss_count
        self.loss_sum, self.loss_count = 0.0, 0
        rate = (step - self.start_step) / max(1e-9, time.perf_counter() - self.started)
        eta = (self.max_steps - step) / rate if rate > 0 else None
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4g}", refresh=False)
        else:
            log.info(
                "step %d/%d  loss %.4g  %.2f it/s  ETA %s", step, self.max_steps, loss, rate, eta_text(eta)
            )
        self.last = {
            "step": step,
            "max_steps": self.max_steps,
            "train_loss": loss,
            "steps_per_s": rate,
            "eta_s": eta,
            "dev_score": self.dev_score,
            "best_dev_score": self.best_dev,
            "updated": time.time(),
        }
        write_json(self.run.progress_file, self.last)

    def evaluated(self, score: float | None, best: float | None) -> None:
        """An evaluation ended: progress.json (written before this step's evaluation) takes its scores, so a
        run at its last step shows its final dev score, not the previous evaluation's."""
        self.dev_score, self.best_dev = score, best
        if self.active and self.last is not None:
            self.last.update(dev_score=score, best_dev_score=best, updated=time.time())
            write_json(self.run.progress_file, self.last)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
