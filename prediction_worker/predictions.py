"""The worker's output: each site's availability trace and forecast, its verdicts, windows and prediction
stored in Redis (the value of record) and published retained, re-published after a reconnect.

Message contract of `edgeoff/v1/predictions/{site}` (retained JSON :class:`~edgeoff.wire.messages.Prediction`,
QoS 1), the fields of the model fixed by the wire contract:

* while the detector holds the site up: `availability` is the forecast of the next window, `model` the
  forecaster that made it (`svr`, `svr-features`, `ewm`, `last-value`, `training-mean`, `mttf`, `belief`
  (then the probability that the site stays up for the next task), `steady-state:{node}` or `prior`, see
  :mod:`prediction_worker.availability_trace`);
* while the site is suspected or offline: `availability` 0.0 and `model` `detector:down` (:data:`DOWN_MODEL`).
  This is how the agent learns of a failure within the detection time; the forecast is published again
  when the site is back up;
* `epoch` is the worker's incarnation (from Redis, taken at the first write) and `version` grows by one with
  every published change of a site within it; `ts` is the wall clock of the change.

A prediction is published when the up/down verdict changes, or when the forecast moves by more than
`epsilon`. A changed prediction is published even when Redis cannot store it (a `detector:down` must reach
the agents during a Redis outage): it gets the next version of the epoch from memory, and the record, the
verdicts and the windows that could not be stored are written once Redis answers again, with a version
never below the published one. A prediction on a site's topic that this worker did not publish (forged,
or left by a stale worker) is answered within `repair_s` by the worker's own, in a new epoch, so that the
agents take it whatever version the other one claimed. Repeated store errors are logged once per
interval (edgeoff.ops.logs.RateLimitedLog), never once per poll.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgeoff.ops.logs import RateLimitedLog
from edgeoff.traces import NodeTrace
from edgeoff.wire import topics
from edgeoff.wire.codec import encode_json
from edgeoff.wire.errors import StoreError
from edgeoff.wire.messages import DOWN_MODEL, MAX_COUNTER, Prediction
from edgeoff.wire.mqtt import Counters, MqttClient
from prediction_worker.availability_trace import (
    AvailabilityWindow,
    SitePredictor,
    SiteTrace,
    seed_model,
    seed_windows,
)
from prediction_worker.detector import Verdict
from prediction_worker.settings import WorkerSettings
from prediction_worker.store import PredictionStore

__all__ = ["PredictionPublishing", "Seed"]

log = logging.getLogger("edgeoff.worker")


def _fraction(value: float) -> float:
    """`value` in [0, 1] (NaN: 0): what a Prediction accepts, whatever a forecaster returned."""
    return min(max(value, 0.0), 1.0) if math.isfinite(value) else (1.0 if value > 0 else 0.0)


@dataclass(frozen=True)
class Seed:
    """A site's LANL node: its daily history seeds the availability series."""

    node: str
    trace: NodeTrace


@dataclass
class _SiteView:
    trace: SiteTrace
    predictor: SitePredictor
    published: Prediction | None = None
    dirty: bool = False  # a change could not be stored: retried at the next poll
    unstored_verdicts: list[Mapping[str, object]] = field(default_factory=list)  # oldest first, bounded
    repair_at: float | None = None  # a foreign prediction was seen: re-publish ours (new epoch) then
    foreign_epoch: int = 0  # the epoch it claimed (the new one must differ)


class PredictionPublishing:
    """Verdicts, windows and predictions of `PredictionWorker` (a mixin: the worker's state)."""

    settings: WorkerSettings
    window: AvailabilityWindow
    store: PredictionStore
    mqtt: MqttClient
    counters: Counters
    seeds: Mapping[str, Seed]
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    _views: dict[str, _SiteView]
    _prediction_error: Any
    _availability: Any
    _errors: RateLimitedLog
    _epoch: int  # 0 until the first epoch is taken from Redis

    def _take_epoch(self, avoid: int = 0) -> bool:
        """A new epoch from Redis (never `avoid`, a foreign prediction's epoch); False when Redis fails."""
        try:
            epoch = self.store.next_epoch()
            if epoch == avoid:
                epoch = self.store.next_epoch()
        except StoreError as exc:
            self._store_error("epoch", exc)
            return False
        self._epoch = epoch
        self.counters.incr("epochs")
        log.info("worker %s: epoch %d", self.settings.worker_id, epoch)
        return True

    def _store_error(self, what: str, exc: StoreError) -> None:
        self.counters.incr("store_errors")
        self._errors.log(logging.ERROR, what, "worker: cannot store %s: %s", what, exc)

    def _view(self, site: str) -> _SiteView:
        view = self._views.get(site)
        if view is not None:
            return view
        seed = self.seeds.get(site)
        history: list[float] = [] if seed is None else [float(v) for v in seed_windows(seed.trace)]
        try:
            history += self.store.windows(site, self.settings.max_windows)
        except StoreError as exc:
            log.warning("worker: cannot restore the windows of %s: %s", site, exc)
        view = _SiteView(
            trace=SiteTrace(
                window_s=self.window.seconds, max_windows=self.settings.max_windows, history=history
            ),
            predictor=SitePredictor(
                seed_node=seed.node if seed is not None else None,
                seed=seed_model(seed.trace) if seed is not None else None,
                window_h=self.window.trace_h,
                min_windows=self.settings.min_windows,
                refit_every=self.settings.refit_every,
                task_windows=self.settings.belief_task_s / self.window.seconds,
            ),
        )
        self._views[site] = view
        return view

    def _on_verdict(self, verdict: Verdict) -> None:
        view = self._view(verdict.site)
        closed = view.trace.record(verdict.up, verdict.at)
        if closed:
            self._windows_closed(verdict.site, view, closed)
        self.counters.incr(f"verdicts.{'up' if verdict.up else 'down'}")
        log.info(
            "worker: site %s %s (session %d, %s)",
            verdict.site,
            "up" if verdict.up else "DOWN",
            verdict.session,
            verdict.reason,
        )
        record = {
            "up": verdict.up,
            "session": verdict.session,
            "reason": verdict.reason,
            "ts": self.wall_clock() - (self.clock() - verdict.at),
            "worker": self.settings.worker_id,
        }
        view.unstored_verdicts.append(record)
        del view.unstored_verdicts[: -self.settings.max_verdicts]  # Redis keeps no more than these anyway
        self._store_verdicts(verdict.site, view)
        self._update(verdict.site, view)

    def _store_verdicts(self, site: str, view: _SiteView) -> None:
        while view.unstored_verdicts:
            try:
                self.store.append_verdict(site, view.unstored_verdicts[0], self.settings.max_verdicts)
            except StoreError as exc:
                self._store_error(f"the verdicts of {site}", exc)
                return
            del view.unstored_verdicts[0]

    def _windows_closed(self, site: str, view: _SiteView, closed: int) -> None:
        forecast = view.published  # the forecast of the next window, made before these windows closed
        windows = view.trace.windows
        if forecast is not None and forecast.model != DOWN_MODEL and len(windows) >= closed:
            actual = windows[len(windows) - closed]  # the first window closed: the one that was forecast
            self._prediction_error.labels(site=site).observe(abs(forecast.availability - actual))
        view.predictor.windows_closed(closed)
        for value in list(view.trace.windows)[-min(closed, len(view.trace.windows)) :]:
            try:
                self.store.append_window(site, value, self.settings.max_windows)
            except StoreError as exc:
                self._store_error(f"the windows of {site}", exc)
                return

    def _update(self, site: str, view: _SiteView) -> None:
        """Publish the site's prediction when it changed (verdict, or forecast by more than epsilon)."""
        up = view.trace.up
        if up is None:
            return
        error_mae: float | None = None
        if up:
            forecast = view.predictor.forecast(view.trace.series())
            availability, model, error_mae = (
                _fraction(forecast.availability),
                forecast.model,
                forecast.error_mae,
            )
            error_mae = None if error_mae is None or not math.isfinite(error_mae) else _fraction(error_mae)
        else:
            availability, model = 0.0, DOWN_MODEL
        last = view.published
        changed = (
            last is None
            or (last.model == DOWN_MODEL) != (model == DOWN_MODEL)
            or abs(last.availability - availability) > self.settings.epsilon
        )
        if view.unstored_verdicts:
            self._store_verdicts(site, view)
        if not (changed or view.dirty):
            return
        ts = min(self.wall_clock(), 4.1e9)  # a wall clock far in the future must not make it unsendable
        last_version = last.version if last is not None and last.epoch == self._epoch else 0
        version = self._store_prediction(site, availability, model, ts, error_mae, last_version + 1)
        if version is None:  # not stored: published all the same, stored at a later poll
            view.dirty = True
            if not changed:
                return
            version = last_version + 1
        else:
            view.dirty = False
        prediction = Prediction(
            site=site,
            availability=availability,
            version=min(version, MAX_COUNTER),
            epoch=self._epoch,
            model=model,
            ts=ts,
            error_mae=error_mae,
        )
        view.published = prediction
        self._publish(prediction)

    def _store_prediction(
        self, site: str, availability: float, model: str, ts: float, error_mae: float | None, min_version: int
    ) -> int | None:
        """The version under which Redis stored the prediction (in the current epoch), or None."""
        if self._epoch == 0 and not self._take_epoch():
            return None
        for _ in range(2):  # a conflict (a corrupt or forged record of this epoch): once more, new epoch
            try:
                version = self.store.write_prediction(
                    site,
                    availability,
                    model,
                    ts,
                    self.settings.worker_id,
                    error_mae,
                    epoch=self._epoch,
                    min_version=min_version,
                )
            except StoreError as exc:
                self._store_error(f"the prediction of {site}", exc)
                return None
            if version > 0:
                return version
            self.counters.incr("prediction_conflicts")
            if not self._take_epoch():
                return None
            min_version = 1
        return None

    def _on_foreign_prediction(self, site: str, prediction: Prediction) -> None:
        """A prediction on `site`'s topic: unless it is one of ours, answer it with ours (new epoch)."""
        view = self._views.get(site)
        ours = view.published if view is not None else None
        if view is None or ours is None:
            return  # nothing of ours to answer with yet (our first prediction follows the first verdict)
        if prediction.epoch == ours.epoch and prediction.version <= ours.version:
            return  # our own (an echo, or a late copy of an earlier one)
        self.counters.incr("predictions.foreign")
        if view.repair_at is None:
            view.repair_at = self.clock() + self.settings.repair_s
            view.foreign_epoch = prediction.epoch

    def _repair(self, now: float) -> None:
        """Re-publish, in a new epoch, the sites whose topic carried a foreign prediction."""
        for site, view in self._views.items():
            if view.repair_at is None or now < view.repair_at:
                continue
            view.repair_at = None
            if not self._take_epoch(avoid=view.foreign_epoch):
                continue
            self.counters.incr("predictions.repaired")
            view.dirty = True
            self._update(site, view)

    def _publish(self, prediction: Prediction) -> None:
        info = self.mqtt.publish(
            topics.prediction(prediction.site),
            encode_json(prediction),
            qos=topics.QOS_AT_LEAST_ONCE,
            retain=True,
        )
        if info is None:
            self.counters.incr("predictions.not_published")  # re-published from Redis on reconnect
            return
        self.counters.incr("predictions.published")
        self._availability.labels(site=prediction.site).set(prediction.availability)
        log.info(
            "worker: prediction %s = %.4f (%s, v%d)",
            prediction.site,
            prediction.availability,
            prediction.model,
            prediction.version,
        )

    def _resync(self) -> None:
        """After a reconnect: each site's value of record from Redis, re-published retained."""
        for site, view in self._views.items():
            try:
                record = self.store.read_prediction(site)
            except StoreError as exc:
                self._store_error(f"the prediction of {site} (re-read)", exc)
                view.dirty = view.published is not None
                continue
            if record is None:
                view.dirty = True
                continue
            view.published = record
            self._publish(record)
        self.counters.incr("resyncs")
