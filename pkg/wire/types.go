package wire

import "fmt"

// JobKind is the operation a job performs.
type JobKind string

const (
	JobCall      JobKind = "call"
	JobMap       JobKind = "map"
	JobMapReduce JobKind = "mapreduce"
)

// ReduceMode chooses when a map-reduce job's reducer starts.
type ReduceMode string

const (
	// ReduceStreaming starts the reducer on the first map result and feeds
	// it every result as it lands (the default).
	ReduceStreaming ReduceMode = "streaming"
	// ReduceBarrier starts the reducer only after every map is done.
	ReduceBarrier ReduceMode = "barrier"
)

// JobSpec is what a client submits. It mirrors the seeds' operator
// parameters; durations are in milliseconds, memory in MiB.
type JobSpec struct {
	ID   string  `msgpack:"id"`
	Kind JobKind `msgpack:"kind"`
	Pool string  `msgpack:"pool,omitempty"`

	Function string `msgpack:"fn"`
	// Data is the call's keyword arguments (call jobs).
	Data Value `msgpack:"data,omitempty"`
	// Iterdata is a JSON list; one task per element (map jobs).
	Iterdata Value `msgpack:"iter,omitempty"`
	// DataRef and IterdataRef stand for Data and Iterdata when those are
	// too large for one message: the value was recorded in chunks on the
	// job log (see InputRef). A spec sets a value or its reference.
	DataRef     *InputRef `msgpack:"data_ref,omitempty"`
	IterdataRef *InputRef `msgpack:"iter_ref,omitempty"`
	ExtraParams Value     `msgpack:"extra,omitempty"`

	ChunkSize int64 `msgpack:"chunk_size,omitempty"`
	ChunkN    int   `msgpack:"chunk_n,omitempty"`

	ReduceFunction      string     `msgpack:"reduce_fn,omitempty"`
	ReduceMode          ReduceMode `msgpack:"reduce_mode,omitempty"`
	ReducerOnePerObject bool       `msgpack:"reducer_one_per_object,omitempty"`
	ReducerWaitLocal    bool       `msgpack:"reducer_wait_local,omitempty"`

	TimeoutMS           int64 `msgpack:"timeout_ms,omitempty"`      // whole job
	TaskTimeoutMS       int64 `msgpack:"task_timeout_ms,omitempty"` // one attempt
	RuntimeMemory       int   `msgpack:"mem,omitempty"`
	MapRuntimeMemory    int   `msgpack:"map_mem,omitempty"`
	ReduceRuntimeMemory int   `msgpack:"reduce_mem,omitempty"`
	InvokePoolThreads   int   `msgpack:"pool_threads,omitempty"`
	Retries             int   `msgpack:"retries"`
	RemoteInvocation    bool  `msgpack:"remote_invocation,omitempty"`

	Env            map[string]string `msgpack:"env,omitempty"`
	IncludeModules []string          `msgpack:"include,omitempty"`
	ExcludeModules []string          `msgpack:"exclude,omitempty"`
	// Modules is the storage key of the packed include_modules archive.
	Modules string `msgpack:"modules,omitempty"`
	Clean   bool   `msgpack:"clean,omitempty"`

	// Monitor is "events" (default) or "poll" (the storage-polling
	// baseline).
	Monitor        string `msgpack:"monitor,omitempty"`
	PollIntervalMS int64  `msgpack:"poll_ms,omitempty"`

	// Trace carries the submitter's trace context (W3C traceparent).
	Trace map[string]string `msgpack:"trace,omitempty"`

	// SubmittedAt is when the submitter sent the job, by the submitter's
	// clock (unix ns). It is information only: nothing is decided by it.
	SubmittedAt int64 `msgpack:"submitted"`
	// Accepted and Deadline are set by the coordinator that accepts the
	// job, by its own clock (unix ns), and recorded with the spec on the
	// job log so that a coordinator that takes the job up after a restart
	// keeps them. Deadline is 0 for a job without a timeout.
	Accepted int64 `msgpack:"accepted,omitempty"`
	Deadline int64 `msgpack:"deadline,omitempty"`
	// Owner is the coordinator that accepted the job, set by it: the
	// job's first owner (term 1). Owner records on the job log
	// (JobOwnerSubject) hand the job on when an owner dies.
	Owner string `msgpack:"owner,omitempty"`
}

// TaskKind tells a runtime what a task is.
type TaskKind string

const (
	TaskCall   TaskKind = "call"
	TaskMap    TaskKind = "map"
	TaskReduce TaskKind = "reduce"
)

// Object describes the slice of a storage object a task reads (set by
// pkg/partition.Expand). [Start, End) is the chunk's nominal byte range,
// not aligned: partition.OpenChunk reads the lines that start in it, each
// to its end (past End if need be), so every line of the object is read
// by exactly one chunk. URL is the object's own URL; Store is "local",
// "cos", "s3" or "http" (for http and https).
type Object struct {
	URL    string `msgpack:"url" json:"url"`
	Store  string `msgpack:"store" json:"store"` // "local", "cos", "s3", "http"
	Bucket string `msgpack:"bucket" json:"bucket"`
	Key    string `msgpack:"key" json:"key"`
	Part   int    `msgpack:"part" json:"part"`
	Parts  int    `msgpack:"parts" json:"parts"`
	Start  int64  `msgpack:"start" json:"start"`
	End    int64  `msgpack:"end" json:"end"`
	Size   int64  `msgpack:"size" json:"size"`
	// Group is the index of the input object within the job (for
	// reducer_one_per_object).
	Group int `msgpack:"group" json:"group"`
	// ETag is the object's entity tag when the job split it, where the
	// store gives a strong one: every read of the chunk is pinned to it,
	// so that an object written again meanwhile fails the read instead
	// of mixing two versions (storage.VersionGetter).
	ETag string `msgpack:"etag,omitempty" json:"etag,omitempty"`
}

// Task is one unit of work on a pool's queue.
type Task struct {
	Job     string   `msgpack:"job"`
	Index   int      `msgpack:"i"` // map: iterdata position; reduce: group
	Attempt int      `msgpack:"a"` // coordinator-level attempt, from 1
	Kind    TaskKind `msgpack:"kind"`

	Function string `msgpack:"fn"`
	// Args are positional arguments (a scalar iterdata element is the
	// first); Kwargs are keyword arguments (an object element, data, and
	// extra_params merged in).
	Args   []Value          `msgpack:"args,omitempty"`
	Kwargs map[string]Value `msgpack:"kwargs,omitempty"`
	// InputRef names a storage object holding {"args":…,"kwargs":…} when
	// the input is too large to ride on the bus.
	InputRef string  `msgpack:"input_ref,omitempty"`
	Obj      *Object `msgpack:"obj,omitempty"`

	// Reduce tasks: the stream subject their inputs are fed on, and how
	// many inputs to expect.
	Feed   string `msgpack:"feed,omitempty"`
	Expect int    `msgpack:"expect,omitempty"`
	// FeedFrom is the stream position where the reducer starts reading
	// its feed (the job spec's record on the job log, which every feed
	// message of the job follows), so that a redelivered reducer reads
	// every input again.
	FeedFrom uint64 `msgpack:"feed_from,omitempty"`
	// Ordered asks a reducer for its inputs in iterdata order.
	Ordered bool `msgpack:"ordered,omitempty"`
	// IndexBase is the smallest map index of the group (a group's map
	// tasks are consecutive).
	IndexBase int `msgpack:"index_base,omitempty"`

	Deadline  int64             `msgpack:"deadline,omitempty"` // unix ns; 0 = none
	TimeoutMS int64             `msgpack:"timeout_ms,omitempty"`
	MemoryMB  int               `msgpack:"mem,omitempty"`
	Env       map[string]string `msgpack:"env,omitempty"`
	Modules   string            `msgpack:"modules,omitempty"`
	Queued    int64             `msgpack:"queued"` // unix ns
	Monitor   string            `msgpack:"monitor,omitempty"`
	Trace     map[string]string `msgpack:"trace,omitempty"`
}

// EventType is a task's state change.
type EventType string

const (
	EventStarted EventType = "started"
	EventDone    EventType = "done"
	EventFailed  EventType = "failed"
)

// ErrorKind classifies a task failure.
type ErrorKind string

const (
	ErrUser      ErrorKind = "error"   // the function returned or raised an error
	ErrPanic     ErrorKind = "panic"   // a Go function panicked
	ErrTimeout   ErrorKind = "timeout" // the attempt ran past its deadline
	ErrOOM       ErrorKind = "oom"     // the attempt exceeded runtime_memory
	ErrUnknownFn ErrorKind = "unknown_function"
	ErrBadInput  ErrorKind = "bad_input" // arguments do not fit the function
	ErrLost      ErrorKind = "lost"      // redelivered past the bus' limit
	ErrCancelled ErrorKind = "cancelled"
	ErrInternal  ErrorKind = "internal" // the runtime itself failed
)

// TaskError describes a failed attempt.
type TaskError struct {
	Kind      ErrorKind `msgpack:"kind" json:"kind"`
	Type      string    `msgpack:"type,omitempty" json:"type,omitempty"` // e.g. a Python exception class
	Message   string    `msgpack:"msg" json:"message"`
	Stack     string    `msgpack:"stack,omitempty" json:"stack,omitempty"`
	Retryable bool      `msgpack:"retryable" json:"retryable"`
}

func (e *TaskError) Error() string {
	if e.Type != "" {
		return string(e.Kind) + ": " + e.Type + ": " + e.Message
	}
	return string(e.Kind) + ": " + e.Message
}

// Event reports a task attempt's progress. Timestamps are unix ns.
type Event struct {
	Job      string    `msgpack:"job"`
	Task     int       `msgpack:"i"`
	Kind     TaskKind  `msgpack:"kind"`
	Attempt  int       `msgpack:"a"`
	Delivery int       `msgpack:"d,omitempty"` // bus delivery count
	Type     EventType `msgpack:"t"`
	Worker   string    `msgpack:"w"`

	Queued   int64 `msgpack:"q,omitempty"`
	Started  int64 `msgpack:"s,omitempty"`
	Finished int64 `msgpack:"f,omitempty"`
	PeakKB   int64 `msgpack:"mem,omitempty"`

	Result    Value      `msgpack:"r,omitempty"`
	ResultRef string     `msgpack:"rref,omitempty"`
	Error     *TaskError `msgpack:"err,omitempty"`
	Log       string     `msgpack:"log,omitempty"` // captured output, bounded
	// Arrivals (reduce events) are when each distinct input reached the
	// reducer, unix ns, in arrival order.
	Arrivals []int64           `msgpack:"arr,omitempty"`
	Trace    map[string]string `msgpack:"trace,omitempty"`
}

// Events is a batch of events of one job, published as one message.
type Events struct {
	Events []Event `msgpack:"evs"`
}

// JobState is a job's lifecycle state.
type JobState string

const (
	StatePending   JobState = "pending"
	StateRunning   JobState = "running"
	StateDone      JobState = "done"
	StateFailed    JobState = "failed"
	StateCancelled JobState = "cancelled"
	StateTimedOut  JobState = "timed_out"
)

// Terminal reports whether s is a final state.
func (s JobState) Terminal() bool {
	return s == StateDone || s == StateFailed || s == StateCancelled || s == StateTimedOut
}

// JobStatus is the answer to a status query and the body of progress
// notices.
type JobStatus struct {
	ID      string   `msgpack:"id" json:"id"`
	State   JobState `msgpack:"state" json:"state"`
	Kind    JobKind  `msgpack:"kind" json:"kind"`
	Total   int      `msgpack:"total" json:"total"`
	Done    int      `msgpack:"done" json:"done"`
	Failed  int      `msgpack:"failed" json:"failed"`
	Running int      `msgpack:"running" json:"running"`
	Retried int      `msgpack:"retried" json:"retried"`
	// Stopped counts the tasks that were running when the job ended
	// other than done (cancelled, failed, timed out): the runtimes stop
	// them, and the job's status no longer counts them as running.
	Stopped int `msgpack:"stopped,omitempty" json:"stopped,omitempty"`
	// Submitted is when the coordinator accepted the job, by its clock
	// (the clock of Ended).
	Submitted int64 `msgpack:"submitted" json:"submitted"`
	// From is the stream position of the job's spec on the job log: every
	// record of the job (task events, feeds, its end) comes after it, so
	// a reader of the job's subjects starts there.
	From  uint64     `msgpack:"from,omitempty" json:"from,omitempty"`
	Ended int64      `msgpack:"ended,omitempty" json:"ended,omitempty"`
	Error *TaskError `msgpack:"err,omitempty" json:"error,omitempty"`
	// FailedTask is the index of the task whose failure ended the job;
	// -1 when the job failed of itself (its compute backend, its broker),
	// not because of one of its tasks.
	FailedTask int `msgpack:"failed_task,omitempty" json:"failed_task,omitempty"`
	// Completion latency (function end -> coordinator recorded), in
	// microseconds, over the job's tasks.
	LatencyP50us int64 `msgpack:"lat50,omitempty" json:"latency_p50_us,omitempty"`
	LatencyP99us int64 `msgpack:"lat99,omitempty" json:"latency_p99_us,omitempty"`
	// The pace of a map (or call) job that ended done: its tasks per
	// second from the start of their publishing to the job's end, and
	// their mean run time in microseconds. Coordinators reading the job
	// log pace the function's next jobs from it (pkg/coordinator).
	TasksPerSec   float64 `msgpack:"rate,omitempty" json:"tasks_per_second,omitempty"`
	TaskRunMeanUs int64   `msgpack:"run_us,omitempty" json:"task_run_mean_us,omitempty"`
	// Owner is the coordinator that holds the job (empty when none is
	// known to, while a dead owner's job is being taken over).
	Owner string `msgpack:"owner,omitempty" json:"owner,omitempty"`
}

// End is a job's terminal record on the job log.
type End struct {
	Status JobStatus `msgpack:"status"`
}

// DecodeEnd decodes the record found on job's end subject and accepts it
// only if it is an end record of that job with a final state: anything
// else on the subject (garbage, another job's end, a state that is not
// final) is an error wrapping ErrMalformed, to be logged and ignored.
func DecodeEnd(data []byte, job string) (JobStatus, error) {
	var end End
	if err := Decode(data, KindEnd, &end); err != nil {
		return JobStatus{}, err
	}
	switch {
	case end.Status.ID != job:
		return JobStatus{}, fmt.Errorf("%w: an end record of job %q on the end subject of job %q", ErrMalformed, end.Status.ID, job)
	case !end.Status.State.Terminal():
		return JobStatus{}, fmt.Errorf("%w: an end record with state %q", ErrMalformed, end.Status.State)
	}
	return end.Status, nil
}

// Cancel is broadcast to runtimes when a job is cancelled or ends early.
type Cancel struct {
	Job    string `msgpack:"job"`
	Reason string `msgpack:"reason,omitempty"`
}

// Request is the body of every coordinator API call.
type Request struct {
	Job    string   `msgpack:"job,omitempty"`
	Spec   *JobSpec `msgpack:"spec,omitempty"`
	Offset int      `msgpack:"off,omitempty"`
	Limit  int      `msgpack:"lim,omitempty"`
	// Retry marks a submit sent again after an attempt got no answer: a
	// coordinator that knows the job (the first attempt arrived) answers
	// with its status instead of refusing the id.
	Retry bool `msgpack:"retry,omitempty"`
	// AcceptHeld marks a submit's copy whose sender takes a Held answer:
	// a coordinator still taking the same job id from an earlier copy
	// answers it at once with Response.Held, instead of holding the
	// copy (and one of its request handlers) until that copy is done.
	AcceptHeld bool `msgpack:"accept_held,omitempty"`
	// Chunk is one chunk of a large job input (APIInput).
	Chunk *InputChunk `msgpack:"chunk,omitempty"`
}

// InputRef names a job input (data or iterdata) too large for a message.
// Either URL names a storage artifact of the job holding it (when the
// submitter has storage configured), or it was recorded in chunks on the
// job log, on the subject JobInputSubject(job), at the stream positions
// From to To: the value is the chunks' Data one after the other (cut
// anywhere, so an element larger than a message spans chunks). Size and
// SHA256 are those of the value: a reader checks them, so a chunk
// missing, doubled or forged, or a changed object, is an error, never a
// wrong input.
type InputRef struct {
	URL    string `msgpack:"url,omitempty"`
	From   uint64 `msgpack:"from"`
	To     uint64 `msgpack:"to"`
	Parts  int    `msgpack:"parts"`
	Size   int64  `msgpack:"size"`
	SHA256 []byte `msgpack:"sha256"`
}

// InputChunk is part Part (from 0) of a job's large input: the body of an
// APIInput request, and of the record the coordinator keeps of it on the
// job log (KindInput).
type InputChunk struct {
	Job  string `msgpack:"job"`
	Part int    `msgpack:"part"`
	Data []byte `msgpack:"data"`
}

// Response is the body of every coordinator API answer.
type Response struct {
	Status *JobStatus `msgpack:"status,omitempty"`
	// Results is a page of a map job's results (in iterdata order) or the
	// single result of a call or map-reduce job.
	Results []Value `msgpack:"results,omitempty"`
	Total   int     `msgpack:"total,omitempty"`
	// List is set when the job's result is the list of Results.
	List bool `msgpack:"list,omitempty"`
	// Seq is the stream position of a recorded input chunk (APIInput).
	Seq uint64 `msgpack:"seq,omitempty"`
	// Held answers a submit's copy (Request.AcceptHeld) that reached a
	// coordinator still taking the same job id from an earlier copy: the
	// answer goes to that one. It carries nothing else.
	Held bool `msgpack:"held,omitempty"`
}

// API subjects served by the coordinator.
const (
	APISubmit = "api.submit"
	APIStatus = "api.status"
	APIResult = "api.result"
	APICancel = "api.cancel"
	// APIInput records one chunk of a large job input on the job log
	// before the job is submitted (Request.Chunk; Response.Seq).
	APIInput = "api.input"
)

// Subjects on the event stream.
func TaskEvents(job string) string      { return "task." + job }
func JobSpecSubject(job string) string  { return "job." + job + ".spec" }
func JobEndSubject(job string) string   { return "job." + job + ".end" }
func ProgressSubject(job string) string { return "progress." + job }

// JobInputSubject holds the chunks of a job's large inputs on the job log.
func JobInputSubject(job string) string { return "job." + job + ".input" }

// FeedItem is one map result forwarded to a reducer.
type FeedItem struct {
	Index int     `msgpack:"i"`
	Value Value   `msgpack:"v,omitempty"`
	Ref   string  `msgpack:"ref,omitempty"` // value stored by reference
	Obj   *Object `msgpack:"obj,omitempty"`
	// Finished is when the map function ended (unix ns).
	Finished int64 `msgpack:"f,omitempty"`
}

// Feed carries map results to a reduce group's reducer. The last feed of a
// group has EOS set and Count = the number of distinct items the reducer
// must have seen in all.
type Feed struct {
	Job   string     `msgpack:"job"`
	Group int        `msgpack:"g"`
	Items []FeedItem `msgpack:"items,omitempty"`
	EOS   bool       `msgpack:"eos,omitempty"`
	Count int        `msgpack:"count,omitempty"`
}

// FeedSubject is the stream subject of one reduce group's inputs.
func FeedSubject(job string, group int) string {
	return "feed." + job + "." + itoa(group)
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	neg := i < 0
	if neg {
		i = -i
	}
	var b [20]byte
	p := len(b)
	for i > 0 {
		p--
		b[p] = byte('0' + i%10)
		i /= 10
	}
	if neg {
		p--
		b[p] = '-'
	}
	return string(b[p:])
}

// LocalReducePool is the queue of a reducer_wait_local job's reducers: the
// submitting process consumes it.
func LocalReducePool(job string) string { return "rl-" + job }

// ReducePool is the queue of a pool's reduce tasks: runtimes take them
// apart from the maps, so that a reducer starts while maps are still
// queued.
func ReducePool(pool string) string { return pool + "-reduce" }

// JobLogMarkSubject is a mark a recovering coordinator records on the
// job log to learn where the log ends (mark is unique to the recovery).
func JobLogMarkSubject(mark string) string { return "job." + mark + ".mark" }

// JobPublishedSubject marks, on the job log, that all of a job's tasks
// were published.
func JobPublishedSubject(job string) string { return "job." + job + ".published" }

// Published is the body of a JobPublishedSubject record.
type Published struct {
	Job   string `msgpack:"job"`
	Tasks int    `msgpack:"tasks"`
}

// JobQueuedSubject records, on the job log, how far the publishing of a
// job's tasks got while it runs (a Queued body): a coordinator that takes
// the job over publishes again only the tasks after that point. A record
// of a later point supersedes an earlier one.
func JobQueuedSubject(job string) string { return "job." + job + ".queued" }

// Queued is the body of a JobQueuedSubject record: the first attempts of
// tasks 0 … Through-1, and of the reducers of the groups in Reducers, are
// on the job's queues (or were taken from them).
type Queued struct {
	Job      string `msgpack:"job"`
	Through  int    `msgpack:"through"`
	Reducers []int  `msgpack:"reducers,omitempty"`
}

// JobOwnerSubject carries the owner records of a job on the job log: a
// coordinator that takes the job over from a dead owner records one. The
// first record of each term wins (the job log is totally ordered, so every
// reader agrees on it).
func JobOwnerSubject(job string) string { return "job." + job + ".owner" }

// Owner is the body of a JobOwnerSubject record: Coordinator owns Job from
// term Term on (the spec's Owner holds term 1).
type Owner struct {
	Job         string `msgpack:"job"`
	Coordinator string `msgpack:"coord"`
	Term        int    `msgpack:"term"`
}

// AliveSubject is where coordinators broadcast their heartbeats.
const AliveSubject = "coord.alive"

// Alive is a coordinator's heartbeat: Coordinator (its lease identity)
// is alive; Node is where its direct API subjects are (APIAt).
type Alive struct {
	Coordinator string `msgpack:"coord"`
	Node        string `msgpack:"node"`
	// Seq counts the coordinator's heartbeats: hearing its own back, it
	// knows when that one was sent.
	Seq uint64 `msgpack:"seq"`
}

// APIAt is the subject on which the coordinator node answers op (one of
// the API subjects) for the jobs it holds: other coordinators forward
// requests there.
func APIAt(op, node string) string { return op + "-" + node }

// JobEventsSubject carries a job's lifecycle events for other programs
// (CloudEvents, JSON; docs/pipelines.md): JobEventsSubject("*") follows
// every job of the namespace.
func JobEventsSubject(job string) string { return "jobevents." + job }
