"""The Celery app of others.py: benchfns.noop as a task, RabbitMQ as broker
and (rpc://) result backend."""

import os

from celery import Celery

import benchfns

app = Celery("benchcelery", broker=os.environ.get("SKEIN_BENCH_AMQP_URL", "amqp://localhost//"), backend="rpc://")
app.conf.task_default_queue = os.environ.get("SKEIN_BENCH_CELERY_QUEUE", "skein-bench")
app.conf.worker_prefetch_multiplier = 4
app.conf.result_expires = 600


@app.task
def noop(x):
    return benchfns.noop(x)
