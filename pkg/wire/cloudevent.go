package wire

import "encoding/json"

// JobEvent types: a job's lifecycle as other programs see it
// (docs/pipelines.md). The data schema is JobEventData, version
// JobEventSchema; fields are only ever added to it.
const (
	JobEventSubmitted  = "run.skein.job.submitted"
	JobEventProgress   = "run.skein.job.progress"
	JobEventTaskFailed = "run.skein.job.task_failed"
	JobEventDone       = "run.skein.job.done"
	JobEventFailed     = "run.skein.job.failed"
	JobEventCancelled  = "run.skein.job.cancelled"
	JobEventTimedOut   = "run.skein.job.timed_out"

	// JobEventSchema is the dataschema of every job event.
	JobEventSchema = "urn:skein:job-event:v1"
)

// CloudEvent is a CloudEvents 1.0 event in its JSON form.
type CloudEvent struct {
	SpecVersion     string          `json:"specversion"`
	ID              string          `json:"id"`
	Source          string          `json:"source"`
	Type            string          `json:"type"`
	Subject         string          `json:"subject,omitempty"`
	Time            string          `json:"time,omitempty"`
	DataContentType string          `json:"datacontenttype,omitempty"`
	DataSchema      string          `json:"dataschema,omitempty"`
	Data            json.RawMessage `json:"data,omitempty"`
}

// JobEventData is the data of a job event: the job's status when the
// event was made and, for a task failure, the task and its error.
type JobEventData struct {
	Job    JobStatus  `json:"job"`
	Task   *int       `json:"task,omitempty"`
	Error  *TaskError `json:"error,omitempty"`
	Result *JobResult `json:"result,omitempty"`
}

// JobResult says where a done job's result is.
type JobResult struct {
	// Fetch is how to read it: the API's result call (`submit result
	// JOB`, pkg/client's Result).
	Fetch string `json:"fetch"`
	// Ref is the storage URL of a call job's result that was stored by
	// reference, when it was.
	Ref string `json:"ref,omitempty"`
}

// JobEventType is the event type of a job that ended in state s.
func JobEventType(s JobState) string {
	switch s {
	case StateDone:
		return JobEventDone
	case StateCancelled:
		return JobEventCancelled
	case StateTimedOut:
		return JobEventTimedOut
	default:
		return JobEventFailed
	}
}
