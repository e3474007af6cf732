"""SkeinJobTrigger: waits in the triggerer for a Skein job to end.

It runs ``submit wait JOB`` as an asyncio subprocess. That command blocks on
the job's completion event on the bus, so the triggerer holds one idle
process per deferred task and polls nothing.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, AsyncIterator

from airflow.triggers.base import BaseTrigger, TriggerEvent

from skein_provider.hooks.skein import SkeinHook

_TAIL = 8000  # characters of stderr carried in a failure event

# MIN_DEFERRAL is the least time, in seconds, between the start of the wait
# and the event. Airflow's scheduler fails a task whose trigger fires
# before it has handled the executor's report of the deferral ("finished
# with state success, but the task instance's state attribute is queued"):
# a Skein job that ends within a scheduler loop of its deferral would hit
# that race. Deferral is for long jobs; two seconds cost them nothing.
MIN_DEFERRAL = 2.0


class SkeinJobTrigger(BaseTrigger):
    """Fires one event when the job ends: {"status": "success"|"error", "job_id", "exit_code", "message"}."""

    def __init__(self, job_id: str, skein_conn_id: str | None = SkeinHook.default_conn_name, submit_path: str | None = None):
        super().__init__()
        self.job_id = job_id
        self.skein_conn_id = skein_conn_id
        self.submit_path = submit_path

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            "skein_provider.triggers.skein.SkeinJobTrigger",
            {"job_id": self.job_id, "skein_conn_id": self.skein_conn_id, "submit_path": self.submit_path},
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        hook = SkeinHook(skein_conn_id=self.skein_conn_id, submit_path=self.submit_path)
        self.log.info("waiting for Skein job %s (submit wait)", self.job_id)
        started = time.monotonic()
        try:
            rc, _out, err = await hook.async_wait(self.job_id)
        except Exception as e:  # a missing binary or connection: report it to the task
            yield TriggerEvent({"status": "error", "job_id": self.job_id, "exit_code": None, "message": str(e)})
            return
        left = MIN_DEFERRAL - (time.monotonic() - started)
        if left > 0:
            await asyncio.sleep(left)
        for line in err.splitlines():
            self.log.info("submit: %s", line)
        if rc == 0:
            yield TriggerEvent({"status": "success", "job_id": self.job_id, "exit_code": 0, "message": ""})
        else:
            yield TriggerEvent({"status": "error", "job_id": self.job_id, "exit_code": rc, "message": err[-_TAIL:]})
