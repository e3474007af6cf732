"""The Celery app of others.py: a no-op task on RabbitMQ (the broker
SKEIN_BENCH_CELERY_BROKER names), results back over AMQP (rpc://)."""

import os

from celery import Celery

import benchfns

QUEUE = "skeinbench"

app = Celery("celerybench", broker=os.environ["SKEIN_BENCH_CELERY_BROKER"], backend="rpc://")
app.conf.task_default_queue = QUEUE
app.conf.worker_prefetch_multiplier = 64
app.conf.broker_connection_retry_on_startup = True


@app.task
def noop(x):
    return benchfns.noop(x)
