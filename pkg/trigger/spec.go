package trigger

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/skeinrun/skein/pkg/wire"
)

// Spec is the job that events start: its id derived from the events'
// ids (JobID), its inputs the events' inputs in order. It returns nil
// when the events carry no input (an S3 notification of a removal): there
// is nothing to run.
func (d *Def) Spec(events []Event) (*wire.JobSpec, error) {
	ids := make([]string, len(events))
	var inputs []json.RawMessage
	for i, e := range events {
		ids[i] = e.ID
		inputs = append(inputs, e.Inputs...)
	}
	if len(inputs) == 0 {
		return nil, nil
	}
	t := d.Job
	spec := &wire.JobSpec{
		ID: d.JobID(ids), Kind: t.Kind, Pool: t.Pool, Function: t.Function,
		ReduceFunction: t.ReduceFunction, ChunkSize: t.ChunkSize, ChunkN: t.ChunkN, Retries: t.Retries,
		TimeoutMS:   int64(t.TimeoutS * 1000),
		SubmittedAt: time.Now().UnixNano(),
	}
	switch t.Kind {
	case wire.JobMap, wire.JobMapReduce:
		it, err := json.Marshal(inputs)
		if err != nil {
			return nil, err
		}
		spec.Iterdata = wire.Value(it)
		if len(t.ExtraParams) > 0 {
			spec.ExtraParams = wire.Value(t.ExtraParams)
		}
	case wire.JobCall:
		data := map[string]json.RawMessage{}
		if len(t.ExtraParams) > 0 {
			if err := json.Unmarshal(t.ExtraParams, &data); err != nil {
				return nil, fmt.Errorf("trigger %s: extra_params: %w", d.Name, err)
			}
		}
		switch {
		case t.Param != "" && len(inputs) == 1 && len(events) == 1 && d.Batch.Count <= 1 && d.Batch.Window == 0:
			data[t.Param] = inputs[0]
		case t.Param != "":
			all, err := json.Marshal(inputs)
			if err != nil {
				return nil, err
			}
			data[t.Param] = all
		default:
			if len(inputs) != 1 {
				return nil, fmt.Errorf("trigger %s: %d inputs for a call without param (name the argument that gets their list)", d.Name, len(inputs))
			}
			var kw map[string]json.RawMessage
			if err := json.Unmarshal(inputs[0], &kw); err != nil {
				return nil, fmt.Errorf("trigger %s: a call without param takes an object as its keyword arguments: %w", d.Name, err)
			}
			for k, v := range kw {
				data[k] = v
			}
		}
		b, err := json.Marshal(data)
		if err != nil {
			return nil, err
		}
		spec.Data = wire.Value(b)
	}
	return spec, nil
}
