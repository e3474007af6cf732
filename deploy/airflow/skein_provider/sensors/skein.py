"""SkeinJobSensor: waits for a job submitted earlier with wait_for_result=False.

The job id comes from ``job_id`` (templated) or from an upstream task's XCom
(``job_id_from_task``, default key ``return_value``, which is what a Skein
operator with wait_for_result=False pushes). Waiting is event driven: the
sensor runs ``submit wait JOB`` (in the worker, or with deferrable=True in the
triggerer through SkeinJobTrigger). When the job has ended it pushes the
job's result (fetch_result=True, the default) or the job id.
"""

from __future__ import annotations

import datetime
from typing import Any, Mapping, Sequence

from airflow.sdk import BaseSensorOperator
from airflow.sdk.exceptions import AirflowException, AirflowSensorTimeout

from skein_provider.hooks.skein import SkeinError, SkeinHook, error_for
from skein_provider.triggers.skein import SkeinJobTrigger, trigger_kwargs, within

_DONE = {"done", "succeeded", "success", "completed", "complete", "finished", "ok"}
_FAILED = {"failed", "error", "cancelled", "canceled", "timed_out", "timeout", "timedout"}


class SkeinJobSensor(BaseSensorOperator):
    """Waits for a Skein job to end and pushes its result.

    :param job_id: the job id (templated).
    :param job_id_from_task: an upstream task id whose XCom holds the job id.
    :param job_id_key: the XCom key to pull (default return_value).
    :param fetch_result: push the job's result (default True) rather than its id.
    :param deferrable: wait in the triggerer instead of a worker slot.
    :param min_deferral: with deferrable=True, the least seconds between the deferral and
        the trigger's event (default 5; see the operators' min_deferral).
    """

    template_fields: Sequence[str] = ("job_id",)
    ui_color = "#c4daff"

    def __init__(
        self,
        *,
        job_id: str | None = None,
        job_id_from_task: str | None = None,
        job_id_key: str = "return_value",
        fetch_result: bool = True,
        deferrable: bool = False,
        min_deferral: int | float | None = None,
        skein_conn_id: str | None = SkeinHook.default_conn_name,
        submit_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not job_id and not job_id_from_task:
            raise AirflowException(f"{type(self).__name__}: set job_id or job_id_from_task")
        if job_id and job_id_from_task:
            raise AirflowException(f"{type(self).__name__}: job_id and job_id_from_task are exclusive")
        self.job_id = job_id
        self.job_id_from_task = job_id_from_task
        self.job_id_key = job_id_key
        self.fetch_result = fetch_result
        self.deferrable = deferrable
        self.min_deferral = min_deferral
        self._trigger_kwargs = trigger_kwargs(type(self).__name__, min_deferral)
        self.skein_conn_id = skein_conn_id
        self.submit_path = submit_path
        self._hook: SkeinHook | None = None

    @property
    def hook(self) -> SkeinHook:
        if self._hook is None:
            self._hook = SkeinHook(skein_conn_id=self.skein_conn_id, submit_path=self.submit_path)
        return self._hook

    def _job(self, context: Mapping[str, Any]) -> str:
        job = self.job_id
        if self.job_id_from_task:
            job = context["ti"].xcom_pull(task_ids=self.job_id_from_task, key=self.job_id_key)
        if not isinstance(job, str) or not job.strip():
            src = f"XCom {self.job_id_key} of task {self.job_id_from_task}" if self.job_id_from_task else "job_id"
            raise AirflowException(f"{type(self).__name__}: {src} is {job!r}, not a Skein job id")
        return job.strip()

    def _done(self, job: str) -> Any:
        return self.hook.result(job) if self.fetch_result else job

    def execute(self, context: Mapping[str, Any]) -> Any:
        job = self._job(context)
        if self.deferrable:
            self.log.info("deferring until Skein job %s ends", job)
            self.defer(
                trigger=SkeinJobTrigger(job_id=job, skein_conn_id=self.skein_conn_id, submit_path=self.submit_path,
                                        **within(self._trigger_kwargs, float(self.timeout) if self.timeout else None)),
                method_name="execute_complete",
                timeout=datetime.timedelta(seconds=self.timeout) if self.timeout else None,
            )
        if self.mode == "reschedule":
            super().execute(context)
            return self._done(job)
        self.log.info("waiting for Skein job %s (submit wait)", job)
        try:
            self.hook.wait(job, timeout=self.timeout if self.timeout else None)
        except SkeinError as e:
            if e.exit_code is not None and e.exit_code < 0:
                raise AirflowSensorTimeout(f"Skein job {job} did not end within the sensor's timeout of {self.timeout} s") from e
            raise
        return self._done(job)

    def poke(self, context: Mapping[str, Any]) -> bool:
        """One look at the job's status (used in mode="reschedule")."""
        job = self._job(context)
        status = self.hook.status(job)
        state = status.get("state") or status.get("status") if isinstance(status, dict) else status
        state = str(state).lower()
        if state in _DONE:
            return True
        if state in _FAILED:
            raise AirflowException(f"Skein job {job} ended as {state}")
        return False

    def execute_complete(self, context: Mapping[str, Any], event: dict[str, Any] | None = None) -> Any:
        if not event:
            raise AirflowException("the Skein trigger returned no event")
        job = str(event.get("job_id"))
        if event.get("status") != "success":
            rc = event.get("exit_code")
            if rc is None:
                raise AirflowException(f"waiting for Skein job {job} failed: {event.get('message')}")
            raise error_for(int(rc), str(event.get("message") or ""), f"Skein job {job}")
        return self._done(job)

    def on_kill(self) -> None:
        if self._hook is not None:
            self._hook.kill()
