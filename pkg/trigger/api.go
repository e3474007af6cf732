package trigger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/skeinrun/skein/bus"
	"github.com/skeinrun/skein/pkg/client"
)

// APISubject is where coordinators answer trigger requests (create, list,
// delete): a subject of the API, so a submitter's rights reach it.
const APISubject = "api.trigger"

// TriggerSubject is the stream subject of a trigger's records.
func TriggerSubject(name string) string { return "trigger." + name }

// recordBody is a trigger record: a definition, or none for a deletion.
type recordBody struct {
	Def *Def `json:"def,omitempty"`
}

// Request is a trigger API request.
type Request struct {
	Op   string `json:"op"` // create, list, delete
	Def  *Def   `json:"def,omitempty"`
	Name string `json:"name,omitempty"`
}

// Response is a trigger API reply.
type Response struct {
	Triggers []Def `json:"triggers,omitempty"`
}

func (r *Runner) serve(ctx context.Context, m bus.Message) ([]byte, error) {
	var req Request
	if err := json.Unmarshal(m.Data, &req); err != nil {
		return nil, fmt.Errorf("%w: a malformed request: %v", ErrInvalid, err)
	}
	var resp Response
	switch req.Op {
	case "create":
		if req.Def == nil {
			return nil, fmt.Errorf("%w: create needs a definition", ErrInvalid)
		}
		rec, err := r.put(ctx, *req.Def, false)
		if err != nil {
			return nil, err
		}
		resp.Triggers = []Def{rec}
	case "list":
		resp.Triggers = r.List()
	case "delete":
		if !r.known(req.Name) {
			return nil, fmt.Errorf("%w %q", ErrUnknown, req.Name)
		}
		b, _ := json.Marshal(recordBody{})
		m := bus.Message{Data: b}
		r.sign(&m)
		if _, err := r.cfg.Bus.PublishSeq(ctx, TriggerSubject(req.Name), m); err != nil {
			return nil, fmt.Errorf("recording the trigger's deletion: %w", err)
		}
	default:
		return nil, fmt.Errorf("%w: unknown op %q (want create, list or delete)", ErrInvalid, req.Op)
	}
	return json.Marshal(resp)
}

// put records a definition; dedup gives a config file's record a message
// id, so that coordinators started together record it once.
func (r *Runner) put(ctx context.Context, d Def, dedup bool) (Def, error) {
	if err := d.Validate(); err != nil {
		return Def{}, err
	}
	if d.Source.NATS != "" {
		if err := notifySubject(r.cfg.Namespace, d.Source.NATS); err != nil {
			return Def{}, err
		}
	}
	b, err := json.Marshal(recordBody{Def: &d})
	if err != nil {
		return Def{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m := bus.Message{Data: b}
	if dedup {
		m.ID = "trigger-" + d.JobID([]string{string(b)})
	}
	r.sign(&m)
	if _, err := r.cfg.Bus.PublishSeq(ctx, TriggerSubject(d.Name), m); err != nil {
		return Def{}, fmt.Errorf("recording the trigger: %w", err)
	}
	return d, nil
}

// sign signs a record the runner writes, when the coordinators sign.
func (r *Runner) sign(m *bus.Message) {
	if r.cfg.Sign != nil {
		r.cfg.Sign(m)
	}
}

func (r *Runner) known(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.defs[name]
	return ok
}

// List returns the triggers the runner knows, by name.
func (r *Runner) List() []Def {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Def, 0, len(r.defs))
	for _, rec := range r.defs {
		out = append(out, rec.Def)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Call sends a trigger API request on b (what `submit trigger` does), as
// the client sends its own (client.Request): a copy beside a request
// that a stopped coordinator took, and again after a while. Each request
// is safe to send twice: a create records the same definition again, a
// list changes nothing, and a delete of a trigger already deleted is
// "unknown" only once the first has answered.
func Call(ctx context.Context, b bus.Bus, req Request) (Response, error) {
	data, err := json.Marshal(req)
	if err != nil {
		return Response{}, err
	}
	out, err := client.New(b).Request(ctx, APISubject, data)
	if err != nil {
		var re *bus.RemoteError
		if errors.As(err, &re) {
			return Response{}, &client.InvalidError{Msg: re.Msg}
		}
		return Response{}, err
	}
	var resp Response
	if err := json.Unmarshal(out, &resp); err != nil {
		return Response{}, fmt.Errorf("a malformed trigger API reply: %w", err)
	}
	return resp, nil
}
