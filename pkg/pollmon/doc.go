// Package pollmon is the storage-polling completion monitor, the Lithops
// way, kept as an honest baseline for Skein's event-driven completion.
//
// # How it works
//
// With a job's Monitor set to "poll", a runtime writes a small status object
// per task when an attempt ends, under
//
//	<prefix>/<job>/status/<task>.json
//
// (WriteStatus does it), and the coordinator side runs a Monitor that lists
// the job's status prefix every Config.Interval (2 s by default, as Lithops'
// default wait interval) and reports every task whose status object appeared
// since the last listing, with the time the listing noticed it. Completion
// latency under polling is therefore about half the interval on average plus
// the listing's own time, and the listing's cost grows with the job.
//
// # What it costs
//
// Every storage call the Monitor makes is counted (Stats): one List call per
// interval for as long as the job runs (an S3 store pays ceil(keys/1000)
// requests per List: the store adapter should count pages if it wants the
// request count to be exact), plus one Get per status object when
// Config.ReadStatus asks for the object's content. Runtimes pay one Put per
// task. The event-driven path makes none of these requests.
//
// # Storage
//
// The package defines the few storage calls it needs (Lister, Putter,
// Getter, together Store). FromStore adapts any pkg/storage Store (the
// local directory store, COS, S3); DirStore is a dependency-free directory
// implementation. Keys are slash-separated; a bucket is a top-level name.
// The tests run the same watch test over DirStore, storage's local store
// and versitygw.
package pollmon
