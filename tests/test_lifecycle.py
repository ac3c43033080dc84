"""A run's lifecycle around the training itself: early stopping, watching it (status, show), redoing runs
after a fix (invalidate), and uploading to W&B when the server does not answer."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

from conftest import run_cli

from petsweep.compose import compose
from petsweep.model.resolve import run_dir
from petsweep.records.status import RunDir
from petsweep.run.app import run


def test_early_stopping_ends_after_patience_evaluations_without_a_new_best(tiny):
    patient = ("trainer.max_steps=60", "trainer.eval_every=2", "trainer.early_stopping_patience=2")
    cfg = compose(tiny("encoder", *patient, "method.lr=0.0000001"))  # too small to improve anything
    result = run(cfg)
    rows = [json.loads(line) for line in RunDir(run_dir(cfg)).metrics_file.read_text().splitlines()]
    assert result["stopped_early"] and result["steps"] < 60
    assert result["steps"] - result["best_step"] == 2 * 2  # two evaluations of two steps without a new best
    assert [r["step"] for r in rows][-1] == result["steps"]
    assert max(r["dev_accuracy"] for r in rows if r["step"] > result["best_step"]) <= result["best_dev_score"]


def test_no_patience_trains_every_step(tiny):
    result = run(compose(tiny("encoder")))
    assert not result["stopped_early"] and result["steps"] == 6


def test_status_reads_progress_and_takes_a_run_dir_a_sweep_or_a_root(tiny, tmp_path):
    cfg = compose(tiny("encoder", "sweep_name=watch"))
    result = run(cfg)
    path = run_dir(cfg)
    for where in (path, path.parent, path.parent.parent):
        out = run_cli("-m", "petsweep.cli", "status", str(where))
        assert out.returncode == 0, out.stderr
        header, row, summary = out.stdout.strip().splitlines()
        assert header.split()[:5] == ["state", "run", "step", "dev", "eta"]
        assert row.startswith("COMPLETED") and "6/6" in row and f"accuracy {result['score']:.4f}" in row
        assert summary == "1 runs: 1 done"
    rows = json.loads(run_cli("-m", "petsweep.cli", "status", str(path), "--json").stdout)
    assert rows[0]["state"] == "COMPLETED" and rows[0]["step"] == 6 and rows[0]["score"] == result["score"]


def test_show_finds_a_run_by_hash_prefix(tiny, tmp_path):
    cfg = compose(tiny("encoder", "sweep_name=show"))
    result = run(cfg)
    out = run_cli("-m", "petsweep.cli", "show", result["run_id"][:6], "--root", str(tmp_path / "runs"))
    assert out.returncode == 0, out.stderr
    assert f"run      {run_dir(cfg)}" in out.stdout and "state    COMPLETED" in out.stdout
    assert f"trainable {result['trainable_params']:,}" in out.stdout and "method:" in out.stdout
    missing = run_cli("-m", "petsweep.cli", "show", "fffffff", "--root", str(tmp_path / "runs"))
    assert missing.returncode == 2 and "no run under" in missing.stderr


def test_invalidate_moves_chosen_runs_aside_and_the_rerun_records_why(tiny, tmp_path):
    low, high = (compose(tiny("encoder", "sweep_name=fix", f"method.lr={lr}")) for lr in (0.001, 0.01))
    run(low), run(high)
    sweep = run_dir(low).parent
    out = run_cli(
        "-m", "petsweep.cli", "invalidate", str(sweep), "--where", "method.lr=0.01", "--reason", "bug 12"
    )
    assert out.returncode == 0 and "moved aside 1 run(s)" in out.stdout, out.stderr
    assert not run_dir(high).exists() and RunDir(run_dir(low)).result() is not None  # the other is untouched
    [moved] = (sweep / ".invalidated").glob(f"*/{run_dir(high).name}")
    assert json.loads((moved / "result.json").read_text())["config"]["method"]["lr"] == 0.01  # kept, not lost

    again = run(high)  # the same config trains again, from scratch
    provenance = json.loads((run_dir(high) / "provenance.json").read_text())
    assert again["steps"] == 6 and provenance["replaces"] == [
        {"path": str(moved), "reason": "bug 12", "when": provenance["replaces"][0]["when"]}
    ]
    status = run_cli("-m", "petsweep.cli", "status", str(sweep))
    assert status.stdout.strip().endswith("2 runs: 2 done")  # moved runs are history, not runs


def test_sync_stops_an_upload_the_server_never_answers(tiny, tmp_path):
    """A W&B server that accepts the connection and says nothing (a dead proxy): the upload is stopped at
    --timeout, wandb's last words are printed, and the command exits non-zero."""
    cfg = compose(tiny("encoder", "logger=wandb", "sweep_name=sync"))
    run(cfg)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: held.extend(server.accept() for _ in range(8)), daemon=True).start()
    env = {"WANDB_BASE_URL": f"http://127.0.0.1:{server.getsockname()[1]}", "WANDB_API_KEY": "x" * 40}
    out = run_cli(
        "-m", "petsweep.cli", "sync", str(run_dir(cfg).parent), "--timeout", "5", env=env, timeout=120
    )
    server.close()
    assert out.returncode == 1, out.stdout + out.stderr
    assert out.stdout.splitlines()[0].startswith("timed out")
    assert "no answer within 5 s" in out.stdout and "0 of 1 W&B runs synced" in out.stdout


def test_collect_takes_a_runs_root_and_writes_the_step_history(tiny, tmp_path):
    """Every sweep under a runs root in one table, `updated` as a timestamp, and a per-step history table
    from metrics.jsonl beside it."""
    import pandas as pd

    for seed, sweep in ((1, "a"), (2, "b")):
        run(compose(tiny("encoder", f"sweep_name={sweep}", f"seed={seed}")))
    out = run_cli(
        "-m", "petsweep.cli", "collect", str(tmp_path / "runs"),
        "-o", str(tmp_path / "t.parquet"), "--history", str(tmp_path / "h.parquet"),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    table, steps = pd.read_parquet(tmp_path / "t.parquet"), pd.read_parquet(tmp_path / "h.parquet")
    assert sorted(Path(d).parent.name for d in table["run_dir"]) == ["a", "b"]
    assert str(table["updated"].dtype).startswith("datetime64")
    assert len(steps) == 4 and sorted(steps["step"]) == [3, 3, 6, 6]  # two evaluations of each run
    assert {"train/loss", "train/lr", "eval/accuracy", "run_id", "method"} <= set(steps.columns)  # W&B names
    assert set(steps["run_id"]) == set(table["run_id"])
    figure = tmp_path / "c.png"
    drawn = run_cli(
        "-m", "petsweep.cli", "plot", str(tmp_path / "runs"), "--kind", "convergence", "-o", str(figure)
    )
    assert drawn.returncode == 0 and figure.stat().st_size > 0, drawn.stderr


def _finished_run(sweep: Path, name: str, lr) -> RunDir:
    """A COMPLETED run as invalidate sees it: status.json and the resolved config.yaml."""
    record = RunDir(sweep / name)
    record.set_status("COMPLETED")
    (record.path / "config.yaml").write_text(f"method:\n  name: lora\n  lr: {lr}\n  r: 8\nseed: 0\n")
    return record


def test_invalidate_compares_values_not_strings(tmp_path):
    from launchers.invalidate import invalidate

    sweep = tmp_path / "values"
    _finished_run(sweep, "a", "0.001"), _finished_run(sweep, "b", "0.01"), _finished_run(sweep, "c", "1.0e-3")

    def chosen(*where):
        return [p.name for p in invalidate(sweep, list(where), dry_run=True)]

    assert chosen("method.lr=1e-3") == ["a", "c"]  # was [] (the string "1e-3" matched nothing)
    assert chosen("method.lr=0.0010", "method.r=8.0") == ["a", "c"]
    assert chosen("method.name=lora", "seed=0") == ["a", "b", "c"]


def test_two_batches_moved_aside_in_one_second_keep_their_own_reasons(tmp_path):
    """#22 review: two invalidations within a second shared `.invalidated/<time>/`: the second's
    invalidated.json replaced the first's reason, and a run dir of the same name could not be moved."""
    from launchers.invalidate import invalidate

    sweep = tmp_path / "twice"
    _finished_run(sweep, "a", "0.001"), _finished_run(sweep, "b", "0.01")
    invalidate(sweep, ["method.lr=0.001"], reason="bug 1")
    invalidate(sweep, ["method.lr=0.01"], reason="bug 2")
    _finished_run(sweep, "a", "0.001")  # rerun, and invalidated again by the same reason's fix
    invalidate(sweep, ["method.lr=0.001"], reason="bug 3")
    batches = sorted((sweep / ".invalidated").iterdir())
    recorded = [json.loads((b / "invalidated.json").read_text()) for b in batches]
    assert sorted((r["reason"], r["runs"]) for r in recorded) == [
        ("bug 1", ["a"]),
        ("bug 2", ["b"]),
        ("bug 3", ["a"]),
    ]
    assert all((b / r["runs"][0] / "status.json").exists() for b, r in zip(batches, recorded))


def test_invalidate_refuses_a_key_no_run_has(tmp_path):
    _finished_run(tmp_path / "typo", "a", "0.001")
    out = run_cli("-m", "petsweep.cli", "invalidate", str(tmp_path / "typo"), "--where", "method.lrr=0.001")
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and len(errors) == 1, out.stderr
    assert "method.lrr" in errors[0] and "did you mean method.lr" in errors[0]
    assert (tmp_path / "typo" / "a").is_dir() and not (tmp_path / "typo" / ".invalidated").exists()


def test_invalidate_never_moves_a_run_claimed_while_it_waited_for_the_claim_lock(tmp_path):
    """A sweep holds the run's claim lock (claiming it: checked, not yet written) when invalidate comes: the
    run looked COMPLETED, but invalidate waits for the lock, sees the live RUNNING claim and leaves it."""
    import subprocess
    import sys

    from launchers.invalidate import invalidate

    record = _finished_run(tmp_path / "race", "a", "0.001")
    claimer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from petsweep.records.status import RunDir\n"
            f"run = RunDir({str(record.path)!r})\n"
            "with run.locked():\n"
            "    print('locked', flush=True); time.sleep(1.5); run.set_status('RUNNING'); run.beat()\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert claimer.stdout.readline().strip() == "locked"
        assert invalidate(tmp_path / "race", []) == []
        assert record.state() == "RUNNING" and record.path.is_dir()
        assert not list((tmp_path / "race").glob(".invalidated/*/a"))
    finally:
        claimer.kill()
        claimer.wait()


def test_a_truncated_result_json_is_not_completed_and_the_run_is_trained_again(tiny, tmp_path):
    """#22 item 9: a result.json cut short (a crash or a full disk mid-write) crashed status and show with a
    JSONDecodeError and the rerun reported the run done. It reads FAILED (one line) and is retrained."""
    cfg = compose(tiny("encoder", "sweep_name=cut"))
    result = run(cfg)
    record = RunDir(run_dir(cfg))
    record.result_file.write_text(record.result_file.read_text()[:40])
    assert record.state() == "FAILED" and "does not parse" in record.status()["error"]
    out = run_cli("-m", "petsweep.cli", "status", str(record.path))
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    assert out.stdout.strip().splitlines()[1].startswith("FAILED")
    shown = run_cli("-m", "petsweep.cli", "show", str(record.path))
    assert "Traceback" not in shown.stderr and "JSONDecodeError" not in shown.stderr, shown.stderr
    again = run(cfg)
    assert record.state() == "COMPLETED" and again["score"] == result["score"]


def test_progress_json_holds_the_dev_score_of_its_own_step(tiny):
    """#22 item 13: progress.json was written before the step's dev evaluation, so a finished run showed the
    previous evaluation's score at its last step. It holds the score of the evaluation at its step."""
    cfg = compose(tiny("encoder", "sweep_name=prog", "trainer.eval_every=3", "trainer.log_every=3"))
    run(cfg)
    record = RunDir(run_dir(cfg))
    last = [json.loads(line) for line in record.metrics_file.read_text().splitlines()][-1]
    progress = record.progress()
    assert progress["step"] == last["step"] == 6
    assert progress["dev_score"] == last["dev_accuracy"]
    # the trainer's order, step then its evaluation, with scores that differ (the tiny run's may coincide)
    from petsweep.train.progress import StepProgress

    (record.path.parent / "unit").mkdir()
    reporter = StepProgress(RunDir(record.path.parent / "unit"), 6, 3, 0)
    for step, score in ((3, 0.6875), (6, 0.75)):
        for s in range(step - 2, step + 1):
            reporter.step(s, 1.0)
        reporter.evaluated(score, score)
    assert reporter.run.progress() | {"updated": 0} == reporter.last | {"updated": 0}
    assert reporter.run.progress()["step"] == 6 and reporter.run.progress()["dev_score"] == 0.75


def test_a_requeued_slurm_task_on_another_node_claims_its_own_run(tmp_path, monkeypatch):
    """#22 item 10: a requeued task refused its own run ('already RUNNING ... on <node>') because the run's
    fresh heartbeat came from another host. The claim records the SLURM job/array task; the same task claims
    the run again, any other task still cannot."""
    import time

    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    record = RunDir(tmp_path / "run")
    assert record.claim("RUNNING") is not None and record.status()["slurm_task"] == "4242_3"
    status = record.status() | {"host": "other-node", "pid": 1, "updated": time.time()}
    (record.path / "status.json").write_text(json.dumps(status))  # as the first node left it
    record.beat()
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    assert record.claim("RUNNING") is None  # another task: the run is live elsewhere
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    (record.path / "status.json").write_text(json.dumps(status))
    assert record.claim("RUNNING") is not None  # the same task, requeued on this node


def test_a_signal_inside_the_claim_records_the_run_cancelled(tiny, monkeypatch):
    """#22 review: `petsweep cancel` signals a run as soon as it reads RUNNING, i.e. right after the claim;
    a RunCancelled raised there (the claim written, config.yaml not yet) escaped the code that records a
    run's end, and the run read RUNNING (then INTERRUPTED) instead of CANCELLED."""
    import pytest

    from petsweep.run import app
    from petsweep.spec.errors import RunCancelled

    real = app.claim_run

    def claim_then_signal(*args):
        real(*args)  # the claim is written, as the signal arrives
        raise RunCancelled("stopped by SIGTERM")

    monkeypatch.setattr(app, "claim_run", claim_then_signal)
    cfg = compose(tiny("encoder"))
    with pytest.raises(RunCancelled):
        run(cfg)
    status = RunDir(run_dir(cfg)).status()
    assert status["state"] == "CANCELLED" and "SIGTERM" in status["error"], status


def test_invalidate_selects_a_finished_run_by_what_it_trained_not_an_edited_config(tmp_path):
    """#22 review: config.yaml of a finished r=8 run edited to r: 4 steered `invalidate --where`: r=8 found
    nothing and r=4 would have moved the r=8 record. Its result.json's config says what it trained."""
    import shutil

    from launchers.invalidate import invalidate

    folder = Path(__file__).parent / "fixtures" / "old_records" / "1a02139" / "lora-encoder"
    run = tmp_path / "study" / "a"
    run.mkdir(parents=True)
    for name in ("config.yaml", "result.json"):
        shutil.copy(folder / name, run / name)
    (run / "status.json").write_text(json.dumps({"state": "COMPLETED", "updated": 0}))
    (run / "config.yaml").write_text((run / "config.yaml").read_text().replace("  r: 8\n", "  r: 4\n"))
    assert [p.name for p in invalidate(tmp_path / "study", ["method.r=8"], dry_run=True)] == ["a"]
    assert invalidate(tmp_path / "study", ["method.r=4"], dry_run=True) == []


def test_collect_reads_a_truncated_record_as_status_does_and_attempts_keep_their_order(tmp_path):
    """#22 review: collect wrote a COMPLETED row with NaN scores for a run whose result.json was cut short
    (status and show say FAILED); earlier attempts moved aside as <time>-2 ... <time>-10 sorted -10 first."""
    from analysis.load import run_row
    from petsweep.records.provenance import earlier_attempts

    run = tmp_path / "study" / "a"
    run.mkdir(parents=True)
    (run / "status.json").write_text(json.dumps({"state": "COMPLETED", "updated": 0}))
    (run / "result.json").write_text('{"run_id": "ab')  # cut short by a crash or a full disk
    assert run_row(run)["status"] == "FAILED"
    for batch in ("20261205-101010-10", "20261205-101010", "20261205-101010-2", "20261204-235959"):
        (tmp_path / "study" / ".invalidated" / batch / "a").mkdir(parents=True)
    order = [Path(a["path"]).parent.name for a in earlier_attempts(run)]
    assert order == ["20261204-235959", "20261205-101010", "20261205-101010-2", "20261205-101010-10"]


def test_a_stop_signal_whose_raise_python_drops_still_cancels_the_run_at_the_next_step(
    tiny, monkeypatch, capsys
):
    """Review of 2026-12-06, G2: a SIGTERM that landed while Python ran a __del__ (a tokenizer's regex cache
    being collected) raised RunCancelled there, where Python prints and drops it: the run trained to the end
    and the stopped sweep waited for it. The handler also notes the stop, and the next step raises it."""
    import os
    import signal

    import pytest

    from petsweep.spec.errors import EXIT_CANCELLED, RunCancelled, report_user_error
    from petsweep.train.loop import Training

    class Collected:
        def __del__(self):  # the signal arrives while Python collects this object
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # the handler runs here; its RunCancelled is printed and dropped

    real = Training.end_step
    steps = []

    def end_step_then_lost_signal(self, *args, **kwargs):
        real(self, *args, **kwargs)
        steps.append(self.progress.step)
        if len(steps) == 1:
            Collected()  # collected at once (no reference left)

    monkeypatch.setattr(Training, "end_step", end_step_then_lost_signal)
    cfg = compose(tiny("encoder", "trainer.max_steps=6", "trainer.save_every=3", "trainer.eval_every=6"))
    with pytest.raises(RunCancelled) as stopped:
        run(cfg)
    status = RunDir(run_dir(cfg)).status()
    assert status["state"] == "CANCELLED" and "SIGTERM" in status["error"], status
    assert steps == [1], steps  # stopped at the step after the signal, not trained to the end
    # its one line says the run recorded CANCELLED; a stop before any run was claimed says nothing was (G4)
    assert report_user_error(stopped.value) == EXIT_CANCELLED
    assert report_user_error(RunCancelled("stopped by SIGTERM")) == EXIT_CANCELLED
    lines = capsys.readouterr().err.splitlines()[-2:]
    assert lines == [
        "cancelled (stopped by SIGTERM): the run recorded CANCELLED; run the same command again to resume it",
        "cancelled (stopped by SIGTERM): no run was recorded; run the same command again to resume it",
    ], lines


def test_a_stop_whose_raise_python_dropped_before_the_claim_starts_no_run(tiny):
    """Review of 2026-12-06, G2a: a SIGTERM under stop_on_signals' handler (a process's start, before the run
    installs its own) whose raise landed in a __del__ was forgotten, and the run trained to the end. The
    stop is noted: the run does not start, and nothing is recorded."""
    import os
    import signal

    import pytest

    from petsweep.spec.errors import STOP, RunCancelled, stop_on_signals

    class Collected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            sum(range(1000))  # the handler runs here; its RunCancelled is printed and dropped

    cfg = compose(tiny("encoder", "trainer.max_steps=2"))
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    stop_on_signals()
    try:
        Collected()
        assert STOP.reason == "stopped by SIGTERM"
        with pytest.raises(RunCancelled):
            run(cfg)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        STOP.reason = None
    assert not (run_dir(cfg) / "status.json").exists()  # not claimed: nothing recorded
