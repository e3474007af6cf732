package trigger

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

// Def is a trigger: a source of events and the job each event (or batch
// of events) starts. It is what `submit trigger create` records and what
// the config file's triggers: list holds, in JSON or YAML.
type Def struct {
	// Name identifies the trigger in its namespace: letters, digits, -
	// and _, at most 40.
	Name   string `json:"name"`
	Source Source `json:"source"`
	// Job is the template of the jobs the trigger submits.
	Job Template `json:"job"`
	// Batch groups events into one job; zero: one job per event.
	Batch Batch `json:"batch,omitzero"`
}

// Source is where a trigger's events come from: exactly one of NATS,
// AMQP, Jobs and Webhook.
type Source struct {
	// NATS is a subject of a NATS server under <ns>.notify. (ns the
	// coordinator's namespace): the namespace's notification stream keeps
	// what is published there, also while no coordinator runs.
	NATS string `json:"nats,omitempty"`
	// AMQP is a durable RabbitMQ queue, declared if missing; Exchange (a
	// topic exchange, declared if missing) and RoutingKey (default "#")
	// bind it. Without an exchange, publishers use the default exchange
	// with the queue's name as routing key; with deploy/rabbitmq's roles a
	// notifier may publish only to the exchange <ns>.notify.
	AMQP       string `json:"amqp,omitempty"`
	Exchange   string `json:"exchange,omitempty"`
	RoutingKey string `json:"routing_key,omitempty"`
	// URL is the broker of a NATS or AMQP source; empty: the
	// coordinator's bus, with the coordinator's credentials.
	URL string `json:"url,omitempty"`
	// Format is how a message's body becomes job input: "s3" (an S3
	// bucket notification: one input per created object, its URL) or
	// "json" (the body is one JSON input; the default).
	Format string `json:"format,omitempty"`
	// Jobs chains the trigger to other jobs of the namespace: its events
	// are their ends, done (the end records on the job log, which the
	// run.skein.job.done job events mirror), and each input is
	// such a job's result (a map job's results one by one). The value
	// names the jobs: "trigger:NAME" for the jobs trigger NAME submitted,
	// "*" for every job but the trigger's own.
	Jobs string `json:"jobs,omitempty"`
	// Webhook names the coordinators' webhook path /webhook/<name>
	// (coordinator --webhook-listen): each POST there, an S3 server's
	// bucket notification with Format "s3", is recorded on the bus for
	// every trigger of that name and then run as a message of a NATS or
	// AMQP source would be (webhook.go).
	Webhook string `json:"webhook,omitempty"`
}

// Template is the job a trigger submits, as `submit map|call|mapreduce`
// would: the event's inputs become a map's iterdata elements, or a call's
// argument Param.
type Template struct {
	Kind           wire.JobKind    `json:"kind"`
	Function       string          `json:"function"`
	ExtraParams    json.RawMessage `json:"extra_params,omitempty"`
	Param          string          `json:"param,omitempty"`
	Pool           string          `json:"pool,omitempty"`
	ReduceFunction string          `json:"reduce_function,omitempty"`
	ChunkSize      int64           `json:"chunk_size,omitempty"`
	ChunkN         int             `json:"chunk_n,omitempty"`
	Retries        int             `json:"retries,omitempty"`
	TimeoutS       float64         `json:"timeout,omitempty"`
}

// Batch groups events: a job is submitted once Count events are in, or
// Window after the first one, whichever comes first.
type Batch struct {
	Count  int      `json:"count,omitempty"`
	Window Duration `json:"window,omitzero"`
}

// Duration is a time.Duration written as "30s" in JSON.
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n float64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("a duration: %q (like \"30s\") or seconds", b)
		}
		*d = Duration(n * float64(time.Second))
		return nil
	}
	v, err := time.ParseDuration(s)
	*d = Duration(v)
	return err
}

// Sentinel errors.
var (
	ErrInvalid = errors.New("invalid trigger")
	ErrUnknown = errors.New("unknown trigger")
)

func validName(s string, n int) bool {
	if s == "" || len(s) > n {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Validate reports every bad field of d.
func (d *Def) Validate() error {
	var errs []error
	bad := func(f string, a ...any) { errs = append(errs, fmt.Errorf(f, a...)) }
	if !validName(d.Name, 40) {
		bad("name %q: 1 to 40 letters, digits, - and _", d.Name)
	}
	s := d.Source
	n := 0
	for _, v := range []string{s.NATS, s.AMQP, s.Jobs, s.Webhook} {
		if v != "" {
			n++
		}
	}
	if n != 1 {
		bad("source: give exactly one of nats (a subject), amqp (a queue), jobs and webhook")
	}
	if s.Webhook != "" {
		if !validName(s.Webhook, 40) {
			bad("source webhook %q: 1 to 40 letters, digits, - and _ (the path /webhook/<name>)", s.Webhook)
		}
		if s.URL != "" {
			bad("source url: a webhook's events are recorded on the coordinator's bus")
		}
	}
	if (s.Exchange != "" || s.RoutingKey != "") && s.AMQP == "" {
		bad("source exchange and routing_key: only with an amqp queue")
	}
	if s.Jobs != "" {
		if s.Format != "" {
			bad("source format: a jobs source's inputs are the jobs' results")
		}
		if s.URL != "" {
			bad("source url: a jobs source reads the coordinator's bus")
		}
		if k, v, ok := strings.Cut(s.Jobs, ":"); s.Jobs != "*" && (!ok || k != "trigger" || !validName(v, 40)) {
			bad("source jobs %q: want trigger:NAME or *", s.Jobs)
		}
		if k, v, _ := strings.Cut(s.Jobs, ":"); k == "trigger" && v == d.Name {
			bad("source jobs %q: a trigger cannot follow its own jobs", s.Jobs)
		}
	}
	switch s.Format {
	case "", "json", "s3":
	default:
		bad("source format %q: want s3 or json", s.Format)
	}
	t := d.Job
	switch t.Kind {
	case wire.JobMap, wire.JobMapReduce:
		if t.Param != "" {
			bad("job param: for call jobs (a map's inputs are its iterdata)")
		}
	case wire.JobCall:
	default:
		bad("job kind %q: want map, mapreduce or call", t.Kind)
	}
	if t.Function == "" {
		bad("job function: required")
	}
	if t.Kind == wire.JobMapReduce && t.ReduceFunction == "" {
		bad("job reduce_function: required for mapreduce")
	}
	if len(t.ExtraParams) > 0 {
		var m map[string]json.RawMessage
		if json.Unmarshal(t.ExtraParams, &m) != nil {
			bad("job extra_params: want a JSON object")
		}
	}
	if t.Pool != "" && !validName(t.Pool, 100) {
		bad("job pool %q: letters, digits, - and _", t.Pool)
	}
	if d.Batch.Count < 0 || d.Batch.Window < 0 {
		bad("batch: count and window must not be negative")
	}
	if d.Batch.Count > 10000 {
		bad("batch count %d: at most 10000", d.Batch.Count)
	}
	if errs != nil {
		return fmt.Errorf("%w %q: %w", ErrInvalid, d.Name, errors.Join(errs...))
	}
	return nil
}

// JobID is the id of the job that the events with ids events start: the
// same events always give the same id, so that an event delivered again
// starts no second job (coordinator.SubmitOnce).
func (d *Def) JobID(events []string) string {
	h := sha256.New()
	h.Write([]byte(d.Name))
	for _, e := range events {
		h.Write([]byte{0})
		h.Write([]byte(e))
	}
	return "tr-" + d.Name + "-" + hex.EncodeToString(h.Sum(nil)[:12])
}

// jobPrefix is the start of every id of the trigger's jobs.
func jobPrefix(name string) string { return "tr-" + name + "-" }
