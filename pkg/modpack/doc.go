// Package modpack packs a job's include_modules into a zip for shipping,
// and unpacks it once per content hash where the runtime runs.
//
// # Packing
//
// Pack takes module names or paths (a .py file, a package directory) and
// exclude patterns, and returns the zip, its content hash and the list of
// archive paths. The archive is deterministic: entries sorted by path,
// fixed timestamps (1980-01-01), modes 0644 or 0755. The hash (see Hash)
// is a sha256 over the files' paths, modes and bytes, so it names the
// content, not the zip encoding. Module names are resolved with the local
// interpreter's import path (importlib.util.find_spec, which does not run
// the module). __pycache__, .pyc and .pyo are never packed.
//
// # Shipping
//
// The package does no I/O beyond the local files: the caller stores
// Archive.Zip under a key made from Archive.Hash (uploading it only when
// the key is missing), passes the hash with the job, and on the runtime
// side calls Have (no download needed when it is there) or downloads the
// bytes and calls Unpack. The directory Unpack returns goes on the Python
// host's import path (fn.Call.ModulesDir).
//
// # Unpacking
//
// Unpack extracts into a temporary directory beside the target, checks
// that the content hashes to the expected value, and renames it into place
// atomically, so concurrent goroutines and processes sharing a cache dir
// extract at most a few times and never see a partial directory. It
// refuses entries that are absolute, climb out with "..", are not clean
// slash paths, or are not regular files (zip slip, links), and archives
// that unpack to more than DefaultMaxBytes.
package modpack
