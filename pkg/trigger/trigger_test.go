package trigger

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/skeinrun/skein/pkg/wire"
)

const s3Put = `{"Records":[{"eventVersion":"2.2","eventSource":"aws:s3","eventTime":"2026-11-30T10:00:00Z","eventName":"s3:ObjectCreated:Put",
 "s3":{"bucket":{"name":"books"},"object":{"key":"in/my+book.txt","size":12,"eTag":"abc","sequencer":"01"}}}]}`

func TestParseS3(t *testing.T) {
	ev, err := ParseS3([]byte(s3Put))
	if err != nil {
		t.Fatal(err)
	}
	if len(ev.Inputs) != 1 || string(ev.Inputs[0]) != `"s3://books/in/my book.txt"` {
		t.Fatalf("inputs %s", ev.Inputs)
	}
	again, _ := ParseS3([]byte(s3Put))
	other, _ := ParseS3([]byte(strings.Replace(s3Put, `"abc"`, `"abd"`, 1)))
	if again.ID != ev.ID || other.ID == ev.ID {
		t.Fatalf("ids: %s %s %s: the same upload must have one id, another upload another", ev.ID, again.ID, other.ID)
	}
	rm, err := ParseS3([]byte(strings.Replace(s3Put, "ObjectCreated:Put", "ObjectRemoved:Delete", 1)))
	if err != nil || len(rm.Inputs) != 0 {
		t.Fatalf("a removal: %v %v", rm.Inputs, err)
	}
	for _, bad := range []string{`not json`, `{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":""},"object":{"key":"k"}}}]}`} {
		if _, err := ParseS3([]byte(bad)); err == nil {
			t.Errorf("ParseS3(%q): no error", bad)
		}
	}
}

func FuzzParseS3(f *testing.F) {
	f.Add([]byte(s3Put))
	f.Add([]byte(`{"Records":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := ParseS3(b)
		if err != nil {
			return
		}
		for _, in := range ev.Inputs {
			var s string
			if json.Unmarshal(in, &s) != nil || !strings.HasPrefix(s, "s3://") {
				t.Fatalf("input %s", in)
			}
		}
	})
}

// CheckS3 decides what a webhook records: a body it accepts (and that is
// no test event) is one ParseS3 reads.
func FuzzCheckS3(f *testing.F) {
	f.Add([]byte(s3Put))
	f.Add([]byte(`{"Service":"S3","Event":"s3:TestEvent"}`))
	f.Add([]byte(`{"Records":[]}`))
	f.Add([]byte(`{"Records":[{"eventName":"s3:ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"%zz"}}}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		test, err := CheckS3(b)
		if err != nil || test {
			return
		}
		if _, err := ParseS3(b); err != nil {
			t.Fatalf("CheckS3 accepted %q, ParseS3 refuses it: %v", b, err)
		}
	})
}

func TestValidate(t *testing.T) {
	ok := Def{Name: "wc", Source: Source{NATS: "s3events", Format: "s3"}, Job: Template{Kind: wire.JobMap, Function: "wordcount"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		edit func(*Def)
		want string
	}{
		{"no source", func(d *Def) { d.Source = Source{} }, "exactly one"},
		{"two sources", func(d *Def) { d.Source.AMQP = "q" }, "exactly one"},
		{"bad name", func(d *Def) { d.Name = "a.b" }, "name"},
		{"bad kind", func(d *Def) { d.Job.Kind = "x" }, "kind"},
		{"no function", func(d *Def) { d.Job.Function = "" }, "function"},
		{"own jobs", func(d *Def) { d.Source = Source{Jobs: "trigger:wc"} }, "its own"},
		{"bad jobs", func(d *Def) { d.Source = Source{Jobs: "wc"} }, "trigger:NAME"},
		{"format", func(d *Def) { d.Source.Format = "xml" }, "format"},
		{"webhook and nats", func(d *Def) { d.Source.Webhook = "up" }, "exactly one"},
		{"webhook name", func(d *Def) { d.Source = Source{Webhook: "a/b"} }, "webhook"},
		{"webhook url", func(d *Def) { d.Source = Source{Webhook: "up", URL: "nats://x"} }, "url"},
		{"webhook exchange", func(d *Def) { d.Source = Source{Webhook: "up", Exchange: "x"} }, "exchange"},
		{"map param", func(d *Def) { d.Job.Param = "x" }, "param"},
		{"extra params", func(d *Def) { d.Job.ExtraParams = json.RawMessage(`[1]`) }, "extra_params"},
	} {
		d := ok
		tc.edit(&d)
		if err := d.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestSpec(t *testing.T) {
	d := Def{Name: "wc", Job: Template{Kind: wire.JobMap, Function: "wordcount", ChunkN: 2}}
	evs := []Event{{ID: "a", Inputs: []json.RawMessage{json.RawMessage(`"s3://b/k"`)}}, {ID: "b", Inputs: []json.RawMessage{json.RawMessage(`"s3://b/l"`)}}}
	s, err := d.Spec(evs)
	if err != nil {
		t.Fatal(err)
	}
	if string(s.Iterdata) != `["s3://b/k","s3://b/l"]` || s.ChunkN != 2 || !strings.HasPrefix(s.ID, "tr-wc-") {
		t.Fatalf("spec %+v", s)
	}
	s2, _ := d.Spec(evs)
	s3, _ := d.Spec(evs[:1])
	if s2.ID != s.ID || s3.ID == s.ID {
		t.Fatalf("job ids %s %s %s: the same events must give the same id", s.ID, s2.ID, s3.ID)
	}
	if none, err := d.Spec([]Event{{ID: "x"}}); none != nil || err != nil {
		t.Fatalf("events without input: %v %v", none, err)
	}
	c := Def{Name: "sum", Job: Template{Kind: wire.JobCall, Function: "sum", Param: "values", ExtraParams: json.RawMessage(`{"y":1}`)}, Batch: Batch{Count: 2}}
	s, err = c.Spec([]Event{{ID: "a", Inputs: []json.RawMessage{json.RawMessage(`1`), json.RawMessage(`2`)}}})
	if err != nil || string(s.Data) != `{"values":[1,2],"y":1}` {
		t.Fatalf("call data %s %v", s.Data, err)
	}
}
