package chaos

import (
	"path/filepath"
	"testing"
	"time"
)

// The test: three coordinators share a namespace, twenty jobs
// run at once, and every 5 s a coordinator is SIGKILLed (and a new one
// started) or, every other time, paused (SIGSTOP) for longer than the
// lease: every job's result is exact, and a paused coordinator never ends
// a job that was taken from it. SKEIN_FLEET_KILLS sets how many actions
// (make chaos: 20).
func TestFleetNATS(t *testing.T) {
	path := requireBinary(t, "nats-server", "scripts/services/nats.sh installs it")
	runFleet(t, func(procs *Procs, dir string) (Broker, error) { return NewNATSServer(procs, path, dir) })
}

func TestFleetRabbitMQ(t *testing.T) {
	script := requireBinary(t, filepath.Join(RabbitMQDir, "rabbitmq-server"), "scripts/services/rabbitmq.sh installs it")
	requireBinary(t, "epmd", "it comes with rabbitmq-server's Erlang")
	runFleet(t, func(procs *Procs, dir string) (Broker, error) { return NewRabbitMQServer(procs, script, dir) })
}

func runFleet(t *testing.T, newBroker func(*Procs, string) (Broker, error)) {
	b := buildPrograms(t)
	kills := envInt(t, "SKEIN_FLEET_KILLS", 0)
	ctx, procs, broker, dataDir := roundSetup(t, newBroker)
	// Every other action, the first one too, is a 6 s SIGSTOP (more than
	// twice the lease) instead of a SIGKILL; 90 tasks per job keep the
	// jobs running for about 30 s: a pause, a kill, a pause.
	cfg := FleetConfig{Bins: b, Procs: procs, Broker: broker, DataDir: filepath.Join(dataDir, "programs"), Logf: t.Logf,
		Tasks: 90, Pause: 6 * time.Second}
	if kills > 0 {
		// Enough work for that many kills, 5 s apart.
		// 20 jobs of 0.2 s tasks on 12 slots run 15 tasks of each job
		// per 5 s.
		cfg.Tasks = max(90, kills*2*15+30)
		cfg.Kills = kills
		cfg.Deadline = time.Duration(kills)*20*time.Second + 2*time.Minute
	}
	r := RunFleet(ctx, cfg)
	t.Log("\n" + r.Summary())
	if r.Failed() {
		t.Errorf("\n%s", processLogs(procs))
	}
	if r.Pauses > 0 && r.TakenFromPaused == 0 {
		t.Errorf("no job was taken over from a paused coordinator: the pauses tested nothing")
	}
	if r.Kills == 0 {
		t.Errorf("no coordinator was killed: the jobs ended before the first kill")
	}
	if len(r.JobsPerCoordinator) < 2 {
		t.Errorf("the jobs were not spread over the coordinators: %v", r.JobsPerCoordinator)
	}
}
