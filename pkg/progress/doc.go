// Package progress shows a job's progress on stderr from wire.JobStatus
// snapshots: the coordinator's progress notices, or a status poll in
// `submit status --watch`.
//
// # Two modes
//
// On a terminal the Reporter redraws one line in place (carriage return and
// erase-to-end-of-line) with a bar, the done/running/failed/retried counts,
// the completion rate and an ETA; redraws are limited to one every
// Config.Redraw (100 ms by default) however fast updates come, and Finish
// ends the line with a newline.
//
// Anywhere else (an Airflow task log, a file, a pipe) it writes plain,
// self-contained lines and never a control character. Lines are bounded: at
// most one every Config.Interval (10 s by default), plus one when the job's
// state changes (pending → running → done), one at the first failure, and
// one from Finish. A flood of updates therefore costs at most
// elapsed/Interval + a handful of lines.
//
// # Rate and ETA
//
// The rate is the number of finished tasks (done + failed) per second over a
// sliding window (Config.Window, 10 s by default), falling back to the
// average since the first update while the window is young; the ETA is the
// remaining tasks divided by that rate. Both are omitted until they mean
// something.
//
// A Reporter is safe for concurrent use.
package progress
