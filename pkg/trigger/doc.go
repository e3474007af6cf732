// Package trigger starts jobs from events: messages on a NATS subject or
// a RabbitMQ queue, POSTs to a coordinator's webhook (S3 bucket
// notifications among them) and the ends of other jobs (chaining).
// docs/pipelines.md#triggers is the user's view.
//
// # Triggers
//
// A trigger (Def) binds a source to a job template. Each event, or each
// batch of events (by count or time window), submits one job from the
// template: the events' inputs become a map's iterdata elements, or a
// call's argument. An S3 bucket notification's input is the new object's
// URL, so a wordcount over each uploaded object needs no code.
//
// # Where triggers live
//
// Definitions are records on the namespace's event stream (subject
// trigger.<name>): `submit trigger create|delete` asks a coordinator
// (APISubject), which records them; the config file's triggers are
// recorded by each coordinator as it starts. Every coordinator follows
// the records from the stream's start and runs every trigger, so that
// triggers survive coordinator restarts.
//
// # Sources
//
// A NATS source's subject lies under <ns>.notify.: the namespace's
// notification stream (NotifyStream) keeps those subjects, and each
// trigger is a durable consumer of it starting at the trigger's record,
// shared by the coordinators. An AMQP source is a durable queue (bound to
// a topic exchange if the trigger names one) that every coordinator
// consumes with manual acks. A jobs source reads the namespace's job
// events (run.skein.job.done) in stream order from the trigger's record;
// every coordinator reads it, so its events are never handed back.
// Records are refreshed before the event stream's retention drops them
// (Config.RefreshAfter).
//
// # Webhooks
//
// A webhook source's events come by HTTP: Runner.ServeWebhook listens
// (coordinator --webhook-listen) and takes POST /webhook/<name> for the
// triggers whose source is that name. A request must present a token
// (compared in constant time, never logged), be small, and be what the
// trigger reads (an S3 event notification for format "s3"); it is then
// recorded on the coordinator's bus, once per trigger, and answered 200
// only once the broker confirmed the records: on NATS a message on
// <ns>.notify.webhook.<trigger> in the notification stream (with a
// message id per trigger and event), on RabbitMQ a persistent message in
// the durable queue <ns>.webhook.<trigger>. The trigger's source is then
// a NATS or AMQP source over those records, so the records are run as
// any source's messages are, below; whichever coordinator took the POST,
// any coordinator may run its record.
//
// # Exactly one job per event
//
// A job's id is derived from its trigger and its events' ids (Def.JobID):
// an S3 notification's bucket, key, ETag and time; a message's id (NATS
// Nats-Msg-Id or stream position, AMQP message-id, else its body's
// hash); a job event's id. The coordinator starts at most one job per id
// (coordinator.SubmitOnce: the first spec on the job log wins), and a
// source message is acknowledged only once its job is recorded: a
// coordinator killed in between has the message delivered again, to
// itself restarted or to another coordinator, which finds the job on the
// log and only acknowledges. A coordinator whose lease has run out hands
// its events back to the source rather than submit. A batch of a NATS,
// AMQP or webhook source is recorded before its job is submitted, and a
// message delivered again that belongs to a recorded batch submits that
// batch's job as recorded (batch.go): a crash does not regroup it.
package trigger
