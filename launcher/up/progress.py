"""The live progress of a run: the agent's retained policy topic (its progress) and the sites' statuses."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from typing import Any

from rich.console import Console

from edgeoff.wire import topics
from edgeoff.wire.messages import DOWN_MODEL
from edgeoff.wire.mqtt import Message, MqttClient, MqttEvent
from edgeoff.wire.settings import BrokerSettings
from launcher.up.children import Child, signal_group

__all__ = ["Progress", "follow"]

AGENT_GRACE_S = 60.0  # the agent finishes its current application run after --duration
INTERRUPT_GRACE_S = 15.0  # after Ctrl-C the agent finishes its current task and writes its results
POLL_S = 0.1


class Progress:
    """Watches, from the broker, the agent's retained policy topic (its progress), the sites' statuses and
    the prediction worker's verdicts.

    A hung site (the default failure mode) goes silent: the detector's verdict comes first (its prediction
    turns to `detector:down` after 10 missed heartbeats, 1.5 s), its status turns offline only when the
    broker gives up on its link (1.5 x keepalive) if the outage lasts that long.
    """

    def __init__(self, settings: BrokerSettings, agent: str) -> None:
        self.inbox: queue.Queue[MqttEvent] = queue.Queue()
        self.client = MqttClient(
            settings=settings,
            client_id=f"edgeoff-up-{os.getpid()}",
            inbox=self.inbox,
        )
        self.policy_topic = topics.agent_policy(agent)
        self.client.subscribe(self.policy_topic)
        self.client.subscribe(topics.all_sites("status"))
        self.client.subscribe(f"{topics.PREFIX}/predictions/+")
        self.client.start()
        self.progress: dict[str, Any] = {}
        self.policy_version = 0
        self.suspected: set[str] = set()  # sites whose latest prediction is the detector's down verdict
        self.down_verdicts = 0  # transitions to detector:down seen during the run
        self.offline_statuses = 0  # live (not retained) offline statuses: Last Wills and clean stops
        self.last_fallback: dict[str, Any] | None = None

    def drain(self) -> None:
        while True:
            try:
                event = self.inbox.get_nowait()
            except queue.Empty:
                return
            if not isinstance(event, Message):
                continue
            try:
                self._fold(event)
            except (ValueError, AttributeError, TypeError):
                continue

    def _fold(self, event: Message) -> None:
        body = json.loads(event.payload)
        if event.topic == self.policy_topic:
            self.progress = body.get("progress", {})
            self.policy_version = int(body.get("version", 0))
            self.last_fallback = body.get("last_fallback")
        elif "/predictions/" in event.topic:
            site = str(body["site"])
            if body.get("model") == DOWN_MODEL:
                if site not in self.suspected and not event.retain:
                    self.down_verdicts += 1
                self.suspected.add(site)
            else:
                self.suspected.discard(site)
        elif body.get("state") == "offline" and not event.retain:
            self.offline_statuses += 1

    def line(self) -> str:
        p = self.progress
        suspected = ",".join(sorted(self.suspected)) or "none"
        return (
            f"apps {p.get('apps_done', 0)} | detector: down {suspected} ({self.down_verdicts} verdicts) | "
            f"offline {self.offline_statuses} | failures {p.get('failures', 0)} | "
            f"fallbacks {p.get('fallbacks', 0)} | policy v{self.policy_version}"
        )

    def stop(self) -> None:
        self.client.stop()


def follow(
    console: Console,
    progress: Progress,
    agent: Child,
    started: float,
    duration: float,
    interrupted: threading.Event,
) -> None:
    """Show progress until the agent exits; on Ctrl-C (or past its grace time) ask it to stop."""
    asked_to_stop_at: float | None = None
    with console.status("starting") as status:
        while agent.proc.poll() is None:
            progress.drain()
            elapsed = time.monotonic() - started
            status.update(f"{min(elapsed, duration):5.0f}/{duration:.0f} s  {progress.line()}")
            overdue = elapsed > duration + AGENT_GRACE_S
            if (interrupted.is_set() or overdue) and asked_to_stop_at is None:
                console.print("stopping the agent after its current task")
                signal_group(agent.proc.pid, signal.SIGTERM)
                asked_to_stop_at = time.monotonic()
            if asked_to_stop_at is not None and time.monotonic() - asked_to_stop_at > INTERRUPT_GRACE_S:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                agent.proc.wait(POLL_S)
    progress.drain()
    console.print(progress.line())
