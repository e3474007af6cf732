// Package dashboard serves a live page of the jobs a coordinator holds:
// a list of jobs (state, progress, rate, failures, age) and, per job, a
// timeline drawn as the events arrive, the reducer's input arrivals, and
// the failed attempts with the traceback their runtime sent. Everything
// the page needs is embedded in the binary (no CDN, no fonts, no
// framework).
//
// # Data
//
// The job list and status come from the coordinator (Coordinator.Jobs);
// a job page's events come from the bus: the server subscribes to the
// job's event subject from its spec's position (JobStatus.From) and
// forwards them as server-sent events, batched every 250 ms. Once the job
// has ended, the stream is read up to the job's end record (a known
// stream position, never a quiet period) and then closed.
//
// # Rights
//
// Reading is open unless Auth.ReadNeedsAuth; cancelling needs the token
// (Auth.Token: an "Authorization: Bearer" header, or the cookie /login
// sets) or a reverse proxy's user header (Auth.UserHeader) naming a user
// of Auth.CancelUsers. A cancel is a POST with the X-Skein-Request
// header, which a cross-site form cannot send. See docs/dashboard.md.
package dashboard
