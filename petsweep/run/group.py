"""A fused group of runs, start to record: claim each, build each as it would be built alone, train them
together on one frozen backbone (petsweep.train.fused), and record each in its own run dir.

Every member is a run like any other: its own claim, train.log, heartbeat, checkpoints, result.json, status
and W&B run. Each is recorded the moment it ends, while the others go on: one that finishes (its steps, early
stopping) COMPLETED with its result.json, one that fails (NaN, an error) FAILED with its traceback. An error
in the group's shared forward or backward records every member still training FAILED with that error.
`petsweep cancel` (SIGTERM) records every unfinished member CANCELLED (the ended keep their records); a rerun
resumes each from its own checkpoints.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

from petsweep.records.status import RunDir
from petsweep.spec.errors import EXIT_CANCELLED, EXIT_FAILED, PetsweepError, RunCancelled
from petsweep.spec.resolved import ResolvedRun
from petsweep.train import ranks, resources

if TYPE_CHECKING:
    from petsweep.run.app import Checked

log = logging.getLogger("petsweep")

# the member whose work is running: its train.log takes only its own lines (None: a line for every member)
_CURRENT = contextvars.ContextVar("petsweep_group_member", default=None)


@contextlib.contextmanager
def as_member(run_path: RunDir):
    token = _CURRENT.set(run_path.path)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _own_lines(run_path: RunDir):
    return lambda record: _CURRENT.get() in (None, run_path.path)


class _Run:
    """A member as the group sees it: config, claim, and what became of it."""

    def __init__(self, cfg, spec, resolved: ResolvedRun, run_path: RunDir):
        self.cfg, self.spec, self.resolved, self.run_path = cfg, spec, resolved, run_path
        self.overrides = resolved.overrides
        self.prepared = None
        self.init_source = None  # init_from's checkpoint (fusable.why_alone keeps such runs alone)
        self.code: int | None = None
        self.beats = contextlib.ExitStack()  # its heartbeat, from its claim until it ends


def _close_mirror(run: _Run, code: int) -> None:
    """A member that failed or was cancelled closes its own W&B run (the others' stay open)."""
    if run.prepared is not None:
        run.prepared.tracker.finish({}, exit_code=code)


def _ended(run: _Run, code: int) -> None:
    run.code = code
    run.beats.close()  # a run that ended beats no more, while the others of its group go on


def _check_all(members: list[ResolvedRun], codes: list[int | None]) -> list[tuple[int, Checked]]:
    """Each member checked (app.before_claim, as `execute` checks a solo run: a member refused there is
    refused as a solo run is, one line and its exit code in `codes`); the others as (index, Checked). Nothing
    is claimed or written (a COMPLETED record of another identity aside, moved to its own id as a solo run's
    is)."""
    from petsweep.run.app import before_claim
    from petsweep.spec.errors import report_user_error

    checked = []
    for k, resolved in enumerate(members):
        try:
            checked.append((k, before_claim(resolved)))  # a solo run's checks, refused as it is refused
        except PetsweepError as err:
            codes[k] = report_user_error(err)
    return checked


def _claim_all(checked: list[tuple[int, Checked]], codes: list[int | None], runs: list) -> None:
    """Each checked member claimed, into `runs` as (index, _Run) (filled as it goes: a signal midway leaves
    the claims made so far there); a finished run answers from its record."""
    from petsweep.run.app import claim_run, decide_device, keep_only, summary_text
    from petsweep.spec.errors import report_user_error

    for k, member in checked:
        spec, cfg, run_path = member.spec, member.cfg, member.run_path
        if member.reused is not None:
            print(summary_text(member.reused, run_path, reused=True), flush=True)
            keep_only(run_path, spec.trainer.keep)  # a kill between its record and its pruning left files
            codes[k] = 0
            continue
        refused = claim_run(run_path, cfg, None)
        if refused:
            codes[k] = report_user_error(PetsweepError(refused))
            continue
        run = _Run(cfg, spec, decide_device(member.resolved, spec), run_path)
        run.init_source = member.init_source
        runs.append((k, run))


def _fail(run: _Run, err: BaseException, trace: str) -> None:
    from petsweep.run.app import record_failure
    from petsweep.spec.errors import disk_problem

    recorded = record_failure(run.run_path, err, trace)
    _close_mirror(run, 1)
    # where its status could not be written (a full disk) the member reads INTERRUPTED, not FAILED
    state = "FAILED" if recorded else "INTERRUPTED"
    what = disk_problem(err) or f"{type(err).__name__}: {err}"
    print(f"error: run {run.run_path.path} {state}: {what}", flush=True)
    _ended(run, EXIT_FAILED)


def check_members(cfgs: list[dict], specs: list | None = None) -> None:
    """Every member may fuse, and all are equal but for the keys routed per member (fusable.ROUTED_KEYS: the
    planner only groups such runs; a group that reaches here otherwise is refused in one line, before anything
    is claimed). `specs`: the members' validated specs, where the caller holds them (a `budget=` member's
    choice is read from its spec, not solved again)."""
    from petsweep.run.fusable import differing_keys, group_key, why_alone
    from petsweep.spec.identity import run_slug

    for cfg in cfgs:
        why = why_alone(cfg)
        if why is not None:
            raise PetsweepError(f"fused group: {run_slug(cfg)} cannot train fused: {why}")
    if len({group_key(cfg, spec) for cfg, spec in zip(cfgs, specs or [None] * len(cfgs))}) > 1:
        names = ", ".join(run_slug(cfg) for cfg in cfgs)
        raise PetsweepError(
            f"fused group: its runs ({names}) differ in {', '.join(differing_keys(cfgs))}; only runs equal "
            "in backbone, task, precision and every other key not routed per member share a frozen backbone"
        )


def run_group(cfgs: list[dict], overrides: list[list[str]] | None = None) -> list[int]:
    """execute_group of configs not planned (in-process callers, tests): each member's id and directory are
    made here, and execute_group validates it. `overrides`: each member's command-line overrides."""
    from petsweep.model.resolve import unvalidated_run
    from petsweep.spec.errors import report_user_error

    try:
        check_members(cfgs)
        members = [unvalidated_run(c, o) for c, o in zip(cfgs, overrides or [None] * len(cfgs))]
    except PetsweepError as err:
        return [report_user_error(err)] * len(cfgs)
    return execute_group(members)


def execute_group(members: list[ResolvedRun]) -> list[int]:
    """Run the fused group `members` (launchers/fusion.py chose them), the one way a group executes; an exit
    code per run, as run.py's."""
    from petsweep.run.app import cancel_on_sigterm, log_to_run, restore_signals
    from petsweep.spec.errors import report_user_error

    codes: list[int | None] = [None] * len(members)
    checked = _check_all(members, codes)  # each member typed once here, as a solo run is
    try:
        check_members([members[k].config for k, _ in checked], [m.spec for _, m in checked])
    except PetsweepError as err:
        return [report_user_error(err)] * len(members)
    previous = cancel_on_sigterm()  # before the claims: `petsweep cancel` must find its handler
    claimed: list = []
    me = ranks.current()
    try:
        _claim_all(checked, codes, claimed)
    except RunCancelled as err:  # stopped while claiming: the claims made end CANCELLED, the rest never start
        restore_signals(previous)
        return _cancelled_while_claiming(members, codes, claimed, err, me)
    handlers = []
    for _, run in claimed:
        handlers.append(log_to_run(run.run_path, me))
        handlers[-1].addFilter(_own_lines(run.run_path))
    try:
        for _, run in claimed:
            run.beats.enter_context(run.run_path.heartbeat())
        _train_and_record([run for _, run in claimed])
    except RunCancelled as err:
        from petsweep.run.app import record_failure

        for _, run in claimed:
            if run.code is None:
                record_failure(run.run_path, err, traceback.format_exc())
                _close_mirror(run, EXIT_CANCELLED)
                _ended(run, EXIT_CANCELLED)
    except Exception as err:  # outside any member's own work: every run still training fails with it
        trace = traceback.format_exc()
        for _, run in claimed:
            if run.code is None:
                with as_member(run.run_path):
                    _fail(run, err, trace)
    finally:
        for _, run in claimed:
            run.beats.close()
        for handler in handlers:
            logging.getLogger("petsweep").removeHandler(handler)
        restore_signals(previous)
    for k, run in claimed:
        codes[k] = run.code if run.code is not None else EXIT_FAILED
    return codes


def _cancelled_while_claiming(members, codes, claimed, err: RunCancelled, me) -> list[int]:
    from petsweep.run.app import cancel_own_claim, record_failure

    for _, run in claimed:
        record_failure(run.run_path, err, traceback.format_exc())
    done = {k for k, _ in claimed}
    for k, member in enumerate(members):
        if codes[k] is None and k not in done:  # the one being claimed when the signal came, if it was
            cancel_own_claim(RunDir(Path(member.run_dir)), err, me)
    return [EXIT_CANCELLED if code is None else code for code in codes]


def _train_and_record(runs: list[_Run]) -> None:
    from petsweep.run.app import prepare, record, record_completed, stop_if_sweep_cancelled, training_of
    from petsweep.spec.identity import run_slug
    from petsweep.train.fused import Member, share_frozen, share_inputs, train_together
    from petsweep.train.tracking import alongside_others

    me = ranks.current()
    building = []
    for run in runs:
        with as_member(run.run_path):
            try:
                stop_if_sweep_cancelled(run.run_path)
                resources.use_overrides(run.overrides)  # its provenance.json records its own
                with alongside_others():  # each member its own W&B run
                    run.prepared = prepare(run.spec, run.cfg, run.resolved, run.run_path, run.init_source, me)
                if building:  # one copy of the frozen backbone for the whole group
                    share_frozen(run.prepared.attached.model, building[0].prepared.attached.model)
                    share_inputs(run.prepared, building[0].prepared)  # and one tokenisation of equal data
                building.append(run)
            except Exception as err:
                _fail(run, err, traceback.format_exc())
    members, built = [], []
    for run in building:
        with as_member(run.run_path):
            try:
                training = training_of(run.prepared)
                members.append(Member(run_slug(run.resolved.config), training))
                built.append(run)
            except Exception as err:
                _fail(run, err, traceback.format_exc())
    if not members:
        return
    log.info("training %d runs together on one frozen %s", len(members), built[0].spec.backbone.name)
    pad_id = built[0].prepared.objective.pad_id
    models = [run.prepared.attached.model for run in built]
    ids = [run.resolved.run_id for run in built]

    def ended(i: int) -> None:
        """Member i's record as soon as it ends (its result and COMPLETED, or FAILED with its error)."""
        run, member = built[i], members[i]
        if member.error is not None:
            _fail(run, member.error, member.trace)
            return
        try:
            result = record(run.prepared, member.outcome, fused_with=[x for x in ids if x != ids[i]])
            record_completed(run.run_path, result, run.spec.trainer.keep)
            _ended(run, 0)
        except Exception as err:
            _fail(run, err, traceback.format_exc())

    train_together(members, models, pad_id, lambda i: as_member(built[i].run_path), ended)
