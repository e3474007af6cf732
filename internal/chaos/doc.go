// Package chaos is Skein's chaos suite (issue 12): the real programs and
// a real broker, started by the suite on loopback ports and data
// directories of its own, and killed on a schedule while jobs run.
//
// # A round
//
// Run starts a broker (a nats-server with a JetStream file store, or a
// rabbitmq-server node of its own), one coordinator and three runtimes,
// then submits, through submit processes:
//
//   - main: a map of 2,000 short sleeps whose results name their element;
//   - side: a map of 300 such sleeps beside it;
//   - cancel: a map of 20,000 tasks, submitted with --no-wait and
//     cancelled (submit cancel) as soon as its id is known, while the
//     coordinator still publishes its tasks;
//   - timeout: a map of 1 s sleeps with --timeout 3;
//   - late: a map of 200 sleeps submitted once the restarted coordinator
//     serves.
//
// Meanwhile a random runtime is SIGKILLed every 2 s and a replacement
// started, the broker is SIGKILLed once (5 s in) and started again on the
// same store, and the coordinator is SIGKILLed once (10 s in, or 3 s
// after the broker is back) and started again. A coordinator or broker
// that exits by itself is a failure, and is restarted like a service
// manager would.
//
// # What is checked
//
// The jobs that must succeed exit 0 with a result that is exact and
// complete (element i of job J is "J/i"); the cancelled job's submit wait
// exits 6 and the timed-out job's submit exits 4 (docs/cli.md). The
// events the runtimes published on the bus (pkg/client Events) give the
// tasks that ran twice (more than one "done" event) and the tasks the
// bus delivered more than once. After every job ended, no task message
// may stay on the pool's queue. Every failure is reported with its
// evidence: the job, the elements missing or wrong, the exit, and the
// log lines of the processes involved; each process's log stays in the
// round's log directory.
//
// The test (chaos_test.go) runs one round per bus under make test, and
// SKEIN_CHAOS_ROUNDS rounds under make chaos, which prints a table of the
// figures (docs/chaos.md).
package chaos
