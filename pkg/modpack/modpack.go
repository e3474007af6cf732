package modpack

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configures Pack.
type Options struct {
	// Python resolves module names (default python3 on PATH).
	Python string
	// BaseDir resolves relative paths, and is the working directory of the
	// module lookup (default: the current directory).
	BaseDir string
	// MaxBytes caps the total size of the packed files (default 256 MiB).
	MaxBytes int64
}

// DefaultMaxBytes is the default cap on the packed files' total size.
const DefaultMaxBytes = 256 << 20

// Archive is a packed set of modules.
type Archive struct {
	Zip []byte
	// Hash is the hex sha256 of the packed files (see Hash), the key to
	// store the zip under and to Unpack it with.
	Hash string
	// Files are the archive paths, sorted.
	Files []string
}

// File is one packed file.
type File struct {
	Path string // slash-separated, relative
	Exec bool
	Data []byte
}

// epoch is every entry's timestamp, for deterministic archives.
var epoch = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Pack packs include (module names, or paths of a file or a directory),
// minus what exclude matches, into a deterministic zip.
//
// An include entry that names an existing path (or contains a path
// separator, or ends in .py) is a path: a file is packed under its base
// name; a directory (a package) under its base name, recursively. Anything
// else is a dotted module name, resolved with the local interpreter
// (importlib.util.find_spec): a module file or a package directory is
// packed at the path its name implies (a.b -> a/b.py or a/b/), with the
// __init__.py of its parent packages. __pycache__ directories, .pyc and
// .pyo files are always skipped, as are symbolic links to directories.
//
// An exclude entry is a dotted module name or a slash path relative to the
// archive root (a.b and a/b both drop a/b.py and everything under a/b/), or
// a glob (path.Match) matched against each archive path and each base
// name ("*_test.py", "tests").
func Pack(ctx context.Context, include, exclude []string, opt Options) (*Archive, error) {
	if len(include) == 0 {
		return nil, errors.New("modpack: nothing to include")
	}
	if opt.MaxBytes == 0 {
		opt.MaxBytes = DefaultMaxBytes
	}
	if opt.BaseDir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return nil, fmt.Errorf("modpack: %w", err)
		}
		opt.BaseDir = wd
	}
	files := map[string]File{}
	from := map[string]string{}
	var total int64
	add := func(f File, src, entry string) error {
		if prev, dup := from[f.Path]; dup && prev != src {
			return fmt.Errorf("modpack: %q (from %q) and %q both pack as %s", prev, entry, src, f.Path)
		}
		if _, dup := files[f.Path]; !dup {
			total += int64(len(f.Data))
			if total > opt.MaxBytes {
				return fmt.Errorf("modpack: the modules exceed %d bytes (at %s from %q)", opt.MaxBytes, f.Path, entry)
			}
		}
		files[f.Path] = f
		from[f.Path] = src
		return nil
	}
	for _, entry := range include {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		roots, err := resolve(ctx, entry, opt)
		if err != nil {
			return nil, err
		}
		for _, r := range roots {
			if err := collect(r.src, r.dst, func(f File, src string) error { return add(f, src, entry) }); err != nil {
				return nil, err
			}
		}
	}
	for p := range files {
		if excluded(p, exclude) {
			delete(files, p)
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("modpack: nothing left to pack from %q after excluding %q", include, exclude)
	}
	list := make([]File, 0, len(files))
	for _, f := range files {
		list = append(list, f)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Path < list[j].Path })
	z, err := writeZip(list)
	if err != nil {
		return nil, err
	}
	a := &Archive{Zip: z, Hash: Hash(list)}
	for _, f := range list {
		a.Files = append(a.Files, f.Path)
	}
	return a, nil
}

// Hash is the content hash of a set of files: the hex sha256 over each
// file, in path order, of its path, its mode ("644" or "755"), its length
// and its bytes. It does not depend on zip encoding or timestamps.
func Hash(files []File) string {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	h := sha256.New()
	for _, f := range sorted {
		mode := "644"
		if f.Exec {
			mode = "755"
		}
		fmt.Fprintf(h, "%s\x00%s\x00%d\x00", f.Path, mode, len(f.Data))
		h.Write(f.Data)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func writeZip(files []File) ([]byte, error) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range files {
		hdr := &zip.FileHeader{Name: f.Path, Method: zip.Deflate, Modified: epoch}
		mode := fs.FileMode(0o644)
		if f.Exec {
			mode = 0o755
		}
		hdr.SetMode(mode)
		w, err := zw.CreateHeader(hdr)
		if err != nil {
			return nil, fmt.Errorf("modpack: zip %s: %w", f.Path, err)
		}
		if _, err := w.Write(f.Data); err != nil {
			return nil, fmt.Errorf("modpack: zip %s: %w", f.Path, err)
		}
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("modpack: zip: %w", err)
	}
	return buf.Bytes(), nil
}

// root is a local file or directory packed at an archive path.
type root struct{ src, dst string }

func looksLikePath(entry string) bool {
	return strings.ContainsAny(entry, `/\`) || strings.HasSuffix(entry, ".py") || entry == "." || entry == ".."
}

func resolve(ctx context.Context, entry string, opt Options) ([]root, error) {
	p := entry
	if !filepath.IsAbs(p) {
		p = filepath.Join(opt.BaseDir, p)
	}
	if _, err := os.Stat(p); err == nil {
		abs, err := filepath.Abs(p)
		if err != nil {
			return nil, fmt.Errorf("modpack: %q: %w", entry, err)
		}
		base := filepath.Base(abs)
		if base == "/" || base == "." {
			return nil, fmt.Errorf("modpack: %q: cannot pack a file system root", entry)
		}
		return []root{{src: abs, dst: base}}, nil
	} else if looksLikePath(entry) {
		return nil, fmt.Errorf("modpack: include %q: %w", entry, err)
	}
	if !validModule(entry) {
		return nil, fmt.Errorf("modpack: include %q is neither an existing path nor a module name", entry)
	}
	return findModule(ctx, entry, opt)
}

func validModule(s string) bool {
	for _, part := range strings.Split(s, ".") {
		if part == "" {
			return false
		}
		for i, r := range part {
			if !(r == '_' || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (i > 0 && r >= '0' && r <= '9')) {
				return false
			}
		}
	}
	return true
}

// findScript prints, for a module name, its origin and package locations,
// and the __init__.py of each parent package.
const findScript = `
import importlib.util, json, sys
name = sys.argv[1]
sys.path.insert(0, ".")
spec = importlib.util.find_spec(name)
if spec is None:
    print(json.dumps({"error": "no module named %r on the import path" % name}))
    sys.exit(0)
parents = []
parts = name.split(".")
for i in range(1, len(parts)):
    ps = importlib.util.find_spec(".".join(parts[:i]))
    parents.append(ps.origin if ps and ps.origin and ps.origin.endswith("__init__.py") else None)
print(json.dumps({"origin": spec.origin, "locations": list(spec.submodule_search_locations or []), "parents": parents}))
`

func findModule(ctx context.Context, name string, opt Options) ([]root, error) {
	py := opt.Python
	if py == "" {
		py = "python3"
	}
	cmd := exec.CommandContext(ctx, py, "-c", findScript, name)
	cmd.Dir = opt.BaseDir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("modpack: finding module %q with %s: %w: %s", name, py, err, strings.TrimSpace(stderr.String()))
	}
	var r struct {
		Error     string    `json:"error"`
		Origin    *string   `json:"origin"`
		Locations []string  `json:"locations"`
		Parents   []*string `json:"parents"`
	}
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("modpack: finding module %q: bad answer %q: %w", name, out, err)
	}
	if r.Error != "" {
		return nil, fmt.Errorf("modpack: module %q: %s", name, r.Error)
	}
	parts := strings.Split(name, ".")
	dst := strings.Join(parts, "/")
	var roots []root
	for i, p := range r.Parents {
		if p != nil {
			roots = append(roots, root{src: *p, dst: strings.Join(parts[:i+1], "/") + "/__init__.py"})
		}
	}
	switch {
	case len(r.Locations) > 0: // a package (regular or namespace)
		roots = append(roots, root{src: r.Locations[0], dst: dst})
	case r.Origin != nil && (strings.HasSuffix(*r.Origin, ".py")):
		roots = append(roots, root{src: *r.Origin, dst: dst + ".py"})
	case r.Origin != nil && filepath.IsAbs(*r.Origin):
		// An extension module: keep its file name (it carries the ABI tag).
		roots = append(roots, root{src: *r.Origin, dst: path.Join(path.Dir(dst), filepath.Base(*r.Origin))})
	default:
		return nil, fmt.Errorf("modpack: module %q has no source file to ship (origin %v)", name, r.Origin)
	}
	return roots, nil
}

func skipped(name string, isDir bool) bool {
	if isDir {
		return name == "__pycache__"
	}
	return strings.HasSuffix(name, ".pyc") || strings.HasSuffix(name, ".pyo")
}

// collect walks src (a file or a directory) and emits its files under dst.
func collect(src, dst string, emit func(File, string) error) error {
	st, err := os.Stat(src)
	if err != nil {
		return fmt.Errorf("modpack: %w", err)
	}
	if !st.IsDir() {
		if skipped(filepath.Base(src), false) {
			return nil
		}
		return emitFile(src, dst, st, emit)
	}
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("modpack: %w", err)
		}
		if d.IsDir() {
			if p != src && skipped(d.Name(), true) {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return fmt.Errorf("modpack: %w", err)
		}
		st, err := os.Stat(p) // follows symlinks
		if err != nil {
			return fmt.Errorf("modpack: %w", err)
		}
		if st.IsDir() || !st.Mode().IsRegular() || skipped(d.Name(), false) {
			return nil
		}
		return emitFile(p, path.Join(dst, filepath.ToSlash(rel)), st, emit)
	})
}

func emitFile(src, dst string, st fs.FileInfo, emit func(File, string) error) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("modpack: %w", err)
	}
	return emit(File{Path: dst, Exec: st.Mode()&0o111 != 0, Data: data}, src)
}

func excluded(p string, exclude []string) bool {
	for _, e := range exclude {
		e = strings.Trim(strings.TrimSpace(e), "/")
		e = strings.TrimPrefix(e, "./")
		if e == "" {
			continue
		}
		if strings.ContainsAny(e, "*?[") {
			if ok, _ := path.Match(e, p); ok {
				return true
			}
			for _, part := range strings.Split(p, "/") {
				if ok, _ := path.Match(e, part); ok {
					return true
				}
			}
			continue
		}
		e = strings.TrimSuffix(e, ".py")
		if validModule(e) {
			e = strings.ReplaceAll(e, ".", "/")
		}
		if p == e || p == e+".py" || strings.HasPrefix(p, e+"/") {
			return true
		}
	}
	return false
}

// Unpack makes the archive's files available under cacheDir/hash and
// returns that directory. It extracts once per hash: an existing directory
// is reused, and concurrent callers (goroutines or processes) race on an
// atomic rename of a complete temporary directory. It rejects entries that
// would land outside the directory (zip slip), links, archives larger than
// DefaultMaxBytes, and archives whose content does not match hash.
func Unpack(cacheDir, hash string, zipBytes []byte) (string, error) {
	if !validHash(hash) {
		return "", fmt.Errorf("modpack: %q is not a sha256 hex hash", hash)
	}
	dir := filepath.Join(cacheDir, hash)
	if have(dir) {
		return dir, nil
	}
	mu := hashLock(dir)
	mu.Lock()
	defer mu.Unlock()
	if have(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(cacheDir, 0o755); err != nil {
		return "", fmt.Errorf("modpack: cache dir: %w", err)
	}
	tmp, err := os.MkdirTemp(cacheDir, "."+hash[:12]+".tmp-")
	if err != nil {
		return "", fmt.Errorf("modpack: %w", err)
	}
	defer os.RemoveAll(tmp) // a no-op after the rename
	files, err := extract(tmp, zipBytes)
	if err != nil {
		return "", err
	}
	if got := Hash(files); got != hash {
		return "", fmt.Errorf("modpack: archive content hashes to %s, not %s", got, hash)
	}
	// MkdirTemp made it 0700: functions running as another user than the
	// runtime read it (the cache's own directory decides who gets there).
	if err := os.Chmod(tmp, 0o755); err != nil {
		return "", fmt.Errorf("modpack: %w", err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if have(dir) { // another process got there first
			return dir, nil
		}
		return "", fmt.Errorf("modpack: %w", err)
	}
	return dir, nil
}

// Have returns cacheDir/hash when that archive is already unpacked there.
func Have(cacheDir, hash string) (string, bool) {
	if !validHash(hash) {
		return "", false
	}
	dir := filepath.Join(cacheDir, hash)
	return dir, have(dir)
}

func have(dir string) bool {
	st, err := os.Stat(dir)
	return err == nil && st.IsDir()
}

func validHash(h string) bool {
	if len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}

var locks sync.Map // dir -> *sync.Mutex

func hashLock(dir string) *sync.Mutex {
	m, _ := locks.LoadOrStore(dir, &sync.Mutex{})
	return m.(*sync.Mutex)
}

// extract writes the zip's regular files under dir.
func extract(dir string, zipBytes []byte) ([]File, error) {
	zr, err := zip.NewReader(bytes.NewReader(zipBytes), int64(len(zipBytes)))
	if err != nil {
		return nil, fmt.Errorf("modpack: reading archive: %w", err)
	}
	var files []File
	var total int64
	for _, zf := range zr.File {
		name := zf.Name
		if err := safeName(name); err != nil {
			return nil, err
		}
		mode := zf.Mode()
		if strings.HasSuffix(name, "/") && (mode.IsDir() || mode&fs.ModeType == 0) {
			continue // a directory entry: directories come with their files
		}
		if !mode.IsRegular() {
			return nil, fmt.Errorf("modpack: archive entry %q is not a regular file (%v)", name, mode.Type())
		}
		rc, err := zf.Open()
		if err != nil {
			return nil, fmt.Errorf("modpack: archive entry %q: %w", name, err)
		}
		data, err := io.ReadAll(io.LimitReader(rc, DefaultMaxBytes-total+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("modpack: archive entry %q: %w", name, err)
		}
		total += int64(len(data))
		if total > DefaultMaxBytes {
			return nil, fmt.Errorf("modpack: archive unpacks to more than %d bytes", DefaultMaxBytes)
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
			return nil, fmt.Errorf("modpack: %w", err)
		}
		perm := fs.FileMode(0o644)
		if mode&0o111 != 0 {
			perm = 0o755
		}
		if err := os.WriteFile(target, data, perm); err != nil {
			return nil, fmt.Errorf("modpack: %w", err)
		}
		files = append(files, File{Path: name, Exec: perm == 0o755, Data: data})
	}
	return files, nil
}

// safeName rejects archive paths that are absolute, climb out of the
// target directory, or are not clean slash paths.
func safeName(name string) error {
	bad := func(why string) error {
		return fmt.Errorf("modpack: unsafe archive path %s: %s", strconv.Quote(name), why)
	}
	n := strings.TrimSuffix(name, "/")
	switch {
	case n == "":
		return bad("empty")
	case strings.ContainsAny(name, "\\\x00"):
		return bad("backslash or NUL")
	case strings.HasPrefix(name, "/") || filepath.IsAbs(name) || (len(name) > 1 && name[1] == ':'):
		return bad("absolute")
	case path.Clean(n) != n:
		return bad("not clean")
	}
	for _, part := range strings.Split(n, "/") {
		if part == ".." || part == "." {
			return bad("climbs out")
		}
	}
	return nil
}
