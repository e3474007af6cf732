package metrics

import (
	"bufio"
	"io"
	"math"
	"strconv"
	"strings"
)

// Expo writes metric families in the Prometheus text exposition format
// (version 0.0.4). Families must be written whole, one after the other:
// Family, then its samples.
type Expo struct {
	w   *bufio.Writer
	err error
}

// NewExpo writes to w; call Flush at the end.
func NewExpo(w io.Writer) *Expo { return &Expo{w: bufio.NewWriter(w)} }

// Flush writes what is buffered and returns the first error.
func (e *Expo) Flush() error {
	if err := e.w.Flush(); e.err == nil {
		e.err = err
	}
	return e.err
}

func (e *Expo) str(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

// Family starts a family: its HELP and TYPE lines. typ is counter, gauge
// or histogram.
func (e *Expo) Family(name, typ, help string) {
	e.str("# HELP " + name + " " + escapeHelp(help) + "\n# TYPE " + name + " " + typ + "\n")
}

// Sample writes one sample; labels are name, value pairs.
func (e *Expo) Sample(name string, v float64, labels ...string) {
	e.str(name)
	e.labels(labels, "", "")
	e.str(" " + formatFloat(v) + "\n")
}

// Histogram writes the samples of h (buckets, sum, count) for name.
func (e *Expo) Histogram(name string, h HistogramSnapshot, labels ...string) {
	var cum uint64
	for i, b := range h.Bounds {
		cum += h.Counts[i]
		e.str(name + "_bucket")
		e.labels(labels, "le", formatFloat(b))
		e.str(" " + strconv.FormatUint(cum, 10) + "\n")
	}
	e.str(name + "_bucket")
	e.labels(labels, "le", "+Inf")
	e.str(" " + strconv.FormatUint(h.Count, 10) + "\n")
	e.str(name + "_sum")
	e.labels(labels, "", "")
	e.str(" " + formatFloat(h.Sum) + "\n")
	e.str(name + "_count")
	e.labels(labels, "", "")
	e.str(" " + strconv.FormatUint(h.Count, 10) + "\n")
}

func (e *Expo) labels(kv []string, k, v string) {
	if len(kv) == 0 && k == "" {
		return
	}
	e.str("{")
	sep := ""
	for i := 0; i+1 < len(kv); i += 2 {
		e.str(sep + kv[i] + `="` + escapeLabel(kv[i+1]) + `"`)
		sep = ","
	}
	if k != "" {
		e.str(sep + k + `="` + escapeLabel(v) + `"`)
	}
	e.str("}")
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
