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
* `version` grows by one with every published change of a site (HINCRBY in Redis, so it never goes
  backwards, across reconnects and worker restarts alike); `ts` is the wall clock of the change.

A prediction is published when the up/down verdict changes, or when the forecast moves by more than
`epsilon`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from edgeoff.traces import NodeTrace
from edgeoff.wire import topics
from edgeoff.wire.codec import encode_json
from edgeoff.wire.errors import StoreError
from edgeoff.wire.messages import DOWN_MODEL, Prediction
from edgeoff.wire.mqtt import Counters, MqttClient
from prediction_worker.availability_trace import SitePredictor, SiteTrace, seed_model, seed_windows
from prediction_worker.detector import Verdict
from prediction_worker.settings import WorkerSettings
from prediction_worker.store import PredictionStore

__all__ = ["PredictionPublishing", "Seed"]

log = logging.getLogger("edgeoff.worker")


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


class PredictionPublishing:
    """Verdicts, windows and predictions of `PredictionWorker` (a mixin: the worker's state)."""

    settings: WorkerSettings
    store: PredictionStore
    mqtt: MqttClient
    counters: Counters
    seeds: Mapping[str, Seed]
    clock: Callable[[], float]
    wall_clock: Callable[[], float]
    _views: dict[str, _SiteView]
    _prediction_error: Any
    _availability: Any

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
                window_s=self.settings.window_s, max_windows=self.settings.max_windows, history=history
            ),
            predictor=SitePredictor(
                seed_node=seed.node if seed is not None else None,
                seed=seed_model(seed.trace) if seed is not None else None,
                window_h=self.settings.window_trace_h,
                min_windows=self.settings.min_windows,
                refit_every=self.settings.refit_every,
                task_windows=self.settings.belief_task_s / self.settings.window_s,
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
        try:
            self.store.append_verdict(verdict.site, record, self.settings.max_verdicts)
        except StoreError as exc:
            self.counters.incr("store_errors")
            log.error("worker: cannot store a verdict of %s: %s", verdict.site, exc)
        self._update(verdict.site, view)

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
                self.counters.incr("store_errors")
                log.error("worker: cannot store a window of %s: %s", site, exc)
                return

    def _update(self, site: str, view: _SiteView) -> None:
        """Publish the site's prediction when it changed (verdict, or forecast by more than epsilon)."""
        up = view.trace.up
        if up is None:
            return
        error_mae: float | None = None
        if up:
            forecast = view.predictor.forecast(view.trace.series())
            availability, model, error_mae = forecast.availability, forecast.model, forecast.error_mae
        else:
            availability, model = 0.0, DOWN_MODEL
        last = view.published
        changed = (
            last is None
            or (last.model == DOWN_MODEL) != (model == DOWN_MODEL)
            or abs(last.availability - availability) > self.settings.epsilon
        )
        if not (changed or view.dirty):
            return
        ts = self.wall_clock()
        try:
            version = self.store.write_prediction(
                site, availability, model, ts, self.settings.worker_id, error_mae
            )
        except StoreError as exc:
            view.dirty = True
            self.counters.incr("store_errors")
            log.error("worker: cannot store the prediction of %s (retried): %s", site, exc)
            return
        view.dirty = False
        prediction = Prediction(
            site=site, availability=availability, version=version, model=model, ts=ts, error_mae=error_mae
        )
        view.published = prediction
        self._publish(prediction)

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
                self.counters.incr("store_errors")
                log.error("worker: cannot re-read the prediction of %s: %s", site, exc)
                continue
            if record is None:
                view.dirty = True
                continue
            view.published = record
            self._publish(record)
        self.counters.incr("resyncs")
