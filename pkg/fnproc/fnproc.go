package fnproc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/skeinrun/skein/pkg/fn"
)

// Config says how function processes start.
type Config struct {
	// Environ is the runtime's environment, KEY=VALUE (nil: os.Environ()).
	// Only fn.EnvAllowed and PassEnv of it reach functions.
	Environ []string
	// PassEnv names further variables of Environ that functions get.
	// SKEIN_* names are refused (fn.CheckPassEnv).
	PassEnv []string
	// RunAs is the user functions run as: a user name, a numeric uid, or
	// uid:gid. "" runs them as the runtime's own user. A user other than
	// the runtime's own needs a runtime running as root.
	RunAs string
	// Dir is where the directories for another user are made (default:
	// os.TempDir()).
	Dir string
}

// Validate reports every bad field.
func (c Config) Validate() error {
	var errs []error
	for _, n := range c.PassEnv {
		if err := fn.CheckPassEnv(n); err != nil {
			errs = append(errs, err)
		}
	}
	if strings.TrimSpace(c.RunAs) != c.RunAs {
		errs = append(errs, fmt.Errorf("run-as %q: surrounding white space", c.RunAs))
	}
	return errors.Join(errs...)
}

// Setup is how the processes that run functions start: their
// environment, their user and their directories. It is safe for
// concurrent use; Close removes the directories it made.
type Setup struct {
	env    []string
	cred   *syscall.Credential // nil: the runtime's own user
	user   string
	base   string // made by New for another user; removed by Close
	work   string
	shared string
}

// Default is the setup of a host configured without one: the clean
// environment of this process (fn.EnvAllowed only), as this process's
// user.
func Default() *Setup {
	return &Setup{env: fn.BaseEnv(os.Environ(), nil), user: strconv.Itoa(os.Geteuid())}
}

// New resolves cfg.RunAs and builds the environment. For a user other
// than the runtime's own, it makes a directory tree under cfg.Dir: a work
// directory owned by that user (the functions' working directory without
// shipped modules, their TMPDIR, and their HOME when the user has none)
// and a shared directory the runtime writes and functions only read (the
// Python host's script, the shipped modules).
func New(cfg Config) (*Setup, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	environ := cfg.Environ
	if environ == nil {
		environ = os.Environ()
	}
	s := &Setup{env: fn.BaseEnv(environ, cfg.PassEnv), user: strconv.Itoa(os.Geteuid())}
	if cfg.RunAs == "" {
		return s, nil
	}
	u, err := lookup(cfg.RunAs)
	if err != nil {
		return nil, err
	}
	if u.uid == uint32(os.Geteuid()) && u.gid == uint32(os.Getegid()) {
		s.user = u.name
		return s, nil // already that user
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("run-as %s: running functions as another user needs a runtime started as root (this one runs as uid %d); leave run-as empty to run them as this user", cfg.RunAs, os.Geteuid())
	}
	s.cred = &syscall.Credential{Uid: u.uid, Gid: u.gid, Groups: u.groups}
	s.user = u.name
	if err := s.makeDirs(cfg.Dir, u); err != nil {
		s.Close()
		return nil, err
	}
	home := u.home
	if st, err := os.Stat(home); home == "" || err != nil || !st.IsDir() {
		home = s.work // nobody's home is /nonexistent
	}
	s.env = fn.MergeEnv(s.env, map[string]string{"HOME": home, "USER": u.name, "LOGNAME": u.name, "TMPDIR": s.work})
	return s, nil
}

func (s *Setup) makeDirs(parent string, u *account) error {
	base, err := os.MkdirTemp(parent, "skein-fn-")
	if err != nil {
		return fmt.Errorf("run-as %s: making the functions' directory: %w", u.name, err)
	}
	s.base = base
	for dir := filepath.Dir(base); ; dir = filepath.Dir(dir) {
		if !s.allowed(dir, 1) {
			return fmt.Errorf("run-as %s: the functions' directory would be under %s, which %s cannot pass; point TMPDIR (or the directory setting) elsewhere", u.name, dir, u.name)
		}
		if dir == "/" || dir == "." {
			break
		}
	}
	// Others may pass through the base, not list it.
	if err := os.Chmod(base, 0o711); err != nil {
		return fmt.Errorf("run-as %s: %w", u.name, err)
	}
	s.work, s.shared = filepath.Join(base, "work"), filepath.Join(base, "shared")
	if err := os.Mkdir(s.work, 0o700); err != nil {
		return fmt.Errorf("run-as %s: %w", u.name, err)
	}
	if err := os.Chown(s.work, int(u.uid), int(u.gid)); err != nil {
		return fmt.Errorf("run-as %s: giving the work directory to the user: %w", u.name, err)
	}
	if err := os.Mkdir(s.shared, 0o755); err != nil {
		return fmt.Errorf("run-as %s: %w", u.name, err)
	}
	return nil
}

// Env returns a copy of the environment functions start from.
func (s *Setup) Env() []string { return append([]string(nil), s.env...) }

// SysProcAttr returns the attributes of a function process: its own
// process group (which Guard has killed should the runtime die), SIGKILL
// when the runtime dies, and the run-as user's credential when it is not
// the runtime's own (Go sets the death signal after the credential, which
// would clear it).
func (s *Setup) SysProcAttr() *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.cred != nil {
		c := *s.cred
		c.Groups = append([]uint32{}, s.cred.Groups...)
		a.Credential = &c
	}
	return a
}

// User names the user functions run as (a name, or a uid).
func (s *Setup) User() string { return s.user }

// SwitchesUser reports whether functions run as another user than the
// runtime.
func (s *Setup) SwitchesUser() bool { return s.cred != nil }

// WorkDir is the directory the run-as user owns ("" when functions run as
// the runtime's user): their working directory when no shipped modules
// set one, and their TMPDIR.
func (s *Setup) WorkDir() string { return s.work }

// SharedDir is a directory the runtime writes and the run-as user reads
// ("" when functions run as the runtime's user): where the Python host's
// script and the shipped modules go.
func (s *Setup) SharedDir() string { return s.shared }

// Close removes the directories New made.
func (s *Setup) Close() error {
	if s.base == "" {
		return nil
	}
	return os.RemoveAll(s.base)
}

type account struct {
	name     string
	uid, gid uint32
	groups   []uint32
	home     string
}

// lookup resolves a user name, a uid, or uid:gid.
func lookup(spec string) (*account, error) {
	if uidS, gidS, ok := strings.Cut(spec, ":"); ok {
		uid, err1 := strconv.ParseUint(uidS, 10, 32)
		gid, err2 := strconv.ParseUint(gidS, 10, 32)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("run-as %q: want a user name, a uid, or uid:gid", spec)
		}
		a := &account{name: uidS, uid: uint32(uid), gid: uint32(gid), groups: []uint32{}}
		if u, err := user.LookupId(uidS); err == nil {
			a.name, a.home = u.Username, u.HomeDir
		}
		return a, nil
	}
	var (
		u   *user.User
		err error
	)
	if _, perr := strconv.ParseUint(spec, 10, 32); perr == nil {
		u, err = user.LookupId(spec)
	} else {
		u, err = user.Lookup(spec)
	}
	if err != nil {
		return nil, fmt.Errorf("run-as %q: %w", spec, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("run-as %q: non-numeric uid %q or gid %q", spec, u.Uid, u.Gid)
	}
	a := &account{name: u.Username, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir, groups: []uint32{}}
	if ids, err := u.GroupIds(); err == nil {
		for _, id := range ids {
			if g, err := strconv.ParseUint(id, 10, 32); err == nil {
				a.groups = append(a.groups, uint32(g))
			}
		}
	}
	return a, nil
}

// LookPath is exec.LookPath as the run-as user sees it: a name without a
// slash is searched on the functions' PATH, and only a file that user may
// execute, through directories it may pass, is found (a runtime started
// as root finds /root/.pyenv/shims/python3 first; nobody cannot run it).
func (s *Setup) LookPath(file string) (string, error) {
	if s.cred == nil {
		return exec.LookPath(file)
	}
	if strings.Contains(file, "/") {
		if err := s.canExec(file); err != nil {
			return "", &exec.Error{Name: file, Err: err}
		}
		return file, nil
	}
	path := ""
	for _, kv := range s.env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue // relative PATH entries depend on the working directory
		}
		p := filepath.Join(dir, file)
		if s.canExec(p) == nil {
			return p, nil
		}
	}
	return "", &exec.Error{Name: file, Err: fmt.Errorf("%w for user %s", exec.ErrNotFound, s.user)}
}

// canExec checks that the run-as user may reach and execute path: search
// permission on every directory on the way (of the path as given and of
// its target), execute permission on the file.
func (s *Setup) canExec(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	paths := []string{abs}
	if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
		paths = append(paths, real)
	}
	for _, p := range paths {
		for dir := filepath.Dir(p); ; dir = filepath.Dir(dir) {
			if !s.allowed(dir, 1) {
				return fmt.Errorf("user %s cannot pass directory %s", s.user, dir)
			}
			if dir == "/" {
				break
			}
		}
	}
	st, err := os.Stat(abs)
	if err != nil {
		return err
	}
	if st.IsDir() {
		return fmt.Errorf("%s is a directory", abs)
	}
	if !s.allowed(abs, 1) {
		return fmt.Errorf("user %s may not execute %s", s.user, abs)
	}
	return nil
}

// allowed reports whether the run-as user has permission bit want (1 x,
// 2 w, 4 r) on path, by its owner, group and mode.
func (s *Setup) allowed(path string, want os.FileMode) bool {
	st, err := os.Stat(path)
	if err != nil {
		return false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := st.Mode().Perm()
	switch {
	case sys.Uid == s.cred.Uid:
		return mode&(want<<6) != 0
	case sys.Gid == s.cred.Gid || slices.Contains(s.cred.Groups, sys.Gid):
		return mode&(want<<3) != 0
	}
	return mode&want != 0
}
