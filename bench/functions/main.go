// Command functions measures the per-call overhead of a Python no-op
// through the Python host (one warm interpreter) against spawning
// `python3 -c pass` per call, in the same run, and prints a table.
//
//	go run ./bench/functions -n 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/skeinrun/skein/pkg/cmdhost"
	"github.com/skeinrun/skein/pkg/fn"
	"github.com/skeinrun/skein/pkg/pyhost"
)

type row struct {
	name string
	ds   []time.Duration
}

func (r row) stats() (median, p90, mean time.Duration) {
	s := slices.Clone(r.ds)
	slices.Sort(s)
	var sum time.Duration
	for _, d := range s {
		sum += d
	}
	return s[len(s)/2], s[len(s)*9/10], sum / time.Duration(len(s))
}

func main() {
	n := flag.Int("n", 1000, "calls per method")
	python := flag.String("python", "python3", "interpreter")
	withCmd := flag.Bool("cmd", true, "also measure cmd:true through the command host")
	flag.Parse()
	if *n < 1 {
		log.Fatal("-n must be at least 1")
	}
	py, err := exec.LookPath(*python)
	if err != nil {
		log.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "skein-bench-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "noop.py"), []byte("def noop():\n    return None\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	h, err := pyhost.New(pyhost.Config{Python: py, ScriptDir: dir, Logger: quiet})
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	ctx := context.Background()
	call := &fn.Call{Ref: "noop:noop", ModulesDir: dir}
	for i := 0; i < 20; i++ { // start the interpreter and warm up
		if _, err := h.Call(ctx, call); err != nil {
			log.Fatal(err)
		}
	}
	host := row{name: "py:noop:noop through pyhost (warm)"}
	for i := 0; i < *n; i++ {
		t := time.Now()
		if _, err := h.Call(ctx, call); err != nil {
			log.Fatal(err)
		}
		host.ds = append(host.ds, time.Since(t))
	}
	rows := []row{host}
	if *withCmd {
		ch, err := cmdhost.New(cmdhost.Config{Logger: quiet})
		if err != nil {
			log.Fatal(err)
		}
		r := row{name: "cmd:true through cmdhost"}
		for i := 0; i < *n; i++ {
			t := time.Now()
			if _, err := ch.Call(ctx, &fn.Call{Ref: "true"}); err != nil {
				log.Fatal(err)
			}
			r.ds = append(r.ds, time.Since(t))
		}
		rows = append(rows, r)
	}
	// Spawn the interpreter the host runs (a PATH shim resolved away).
	py = h.Executable()
	spawn := row{name: "python3 -c pass per call"}
	for i := 0; i < *n; i++ {
		t := time.Now()
		if err := exec.Command(py, "-c", "pass").Run(); err != nil {
			log.Fatal(err)
		}
		spawn.ds = append(spawn.ds, time.Since(t))
	}
	rows = append(rows, spawn)

	out, _ := exec.Command(py, "--version").Output()
	fmt.Printf("%d calls each; %s; %s %s/%s, %d CPUs\n\n", *n, bytesTrim(out), runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU())
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "method\tmedian\tp90\tmean\t")
	for _, r := range rows {
		m, p, a := r.stats()
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", r.name, ms(m), ms(p), ms(a))
	}
	tw.Flush()
	hm, _, _ := host.stats()
	sm, _, _ := spawn.stats()
	fmt.Printf("\nspawn / host, medians: %.0fx\n", float64(sm)/float64(hm))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

func bytesTrim(b []byte) string {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return string(b)
}
