// Package plot draws a job's timeline as one self-contained HTML file with
// inline SVG: no scripts, fonts, style sheets or images from anywhere else,
// so it opens from a CI artifact, an Airflow log folder or a mail.
//
// # What it shows
//
//   - A timeline with one bar per task attempt: x is the time since the job
//     was submitted, y the task index (reduce tasks below the maps). The
//     stretch from queued to started is light grey; the stretch from started
//     to finished is coloured by the attempt's outcome: done, failed,
//     retried (a failed attempt that was tried again) or running (no end
//     yet). Hovering a bar shows task, attempt, worker, duration and memory.
//   - The reducer's input arrivals, as ticks in a strip above the timeline.
//   - A histogram of map (or call) attempt durations, started → finished,
//     stacked by outcome; reducers run for the whole job and are left out
//     (the summary gives their time).
//   - A summary: tasks, attempts, outcomes, wall time, p50/p90/p99/max
//     durations, queue wait, workers, peak memory.
//
// # Size
//
// Up to Input.MaxElements attempts (5,000 by default) every bar is its own
// <rect class="bar STATE"> with a tooltip. Past that, bars are drawn
// compactly as one <path> per state made of short horizontal strokes and no
// tooltips, which keeps a 100,000-task job to a few megabytes and quick to
// open. The <svg class="timeline"> element carries data-attempts and
// data-mode ("elements" or "compact") for tools that check a plot.
package plot
