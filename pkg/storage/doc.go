// Package storage is Skein's object storage: one small Store interface
// (ranged get, put, head, sorted list, delete) with three implementations
// and the helpers the rest of Skein uses to read partitioned inputs and to
// keep large task inputs and results out of bus messages.
//
// # Stores
//
//   - Local: a directory; a bucket is a subdirectory of the root (the
//     default, used by the embedded mode). Absolute local:///path URLs are
//     served by a Local rooted at "/".
//   - COS: IBM Cloud Object Storage or any S3-compatible endpoint through
//     github.com/IBM/ibm-cos-sdk-go, with HMAC keys or an IBM IAM API key,
//     and path-style addressing for S3-compatible servers.
//   - HTTP: read-only http(s) objects fetched with Range requests.
//
// # URLs
//
// ParseURL reads cos://bucket[/key-or-prefix/], s3://…, local://bucket/key,
// local:///abs/path[/] and http(s)://host/path. A Resolver built from a
// Config maps each URL to its Store.
//
// # Errors and credentials
//
// Every error is an *Error naming the operation and the URL and wrapping a
// sentinel (ErrNotFound, ErrNoBucket, ErrAccessDenied, ErrBadURL, …) where
// one applies. Credentials are held as Secret values that print as
// "[redacted]"; they never appear in errors, logs or String output.
//
// # Artifacts
//
// Artifacts stores values under <ArtifactsURL><job>/<name> and returns a
// reference (the artifact's URL); Clean removes a job's whole prefix.
// Values larger than Config.InlineLimit travel this way.
package storage
