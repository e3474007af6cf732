package fnproc

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/skeinrun/skein/pkg/fn"
)

// passableDir is a temporary directory other users may pass through
// (t.TempDir and its parent are 0700).
func passableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestBaseEnv(t *testing.T) {
	environ := []string{"PATH=/bin", "SKEIN_BUS=nats://u:pw@h", "SKEIN_STORAGE_SECRET_KEY=k", "LC_ALL=C",
		"AWS_SECRET_ACCESS_KEY=s", "HTTPS_PROXY=http://p", "TZ=UTC", "HOME=/root"}
	got := fn.BaseEnv(environ, []string{"HTTPS_PROXY", "SKEIN_BUS"})
	want := []string{"PATH=/bin", "LC_ALL=C", "HTTPS_PROXY=http://p", "TZ=UTC", "HOME=/root"}
	if !slices.Equal(got, want) {
		t.Fatalf("BaseEnv = %q, want %q", got, want)
	}
	for _, bad := range []string{"SKEIN_BUS", "SKEIN_STORAGE_ACCESS_KEY", "", "A=B"} {
		if fn.CheckPassEnv(bad) == nil {
			t.Errorf("CheckPassEnv(%q) accepted it", bad)
		}
	}
	if _, err := New(Config{PassEnv: []string{"SKEIN_BUS"}}); err == nil || !strings.Contains(err.Error(), "SKEIN_BUS") {
		t.Fatalf("New with pass-env SKEIN_BUS: %v, want a refusal naming it", err)
	}
}

// TestRunAsNobody: as root, a setup for nobody gives its processes
// nobody's credential without root's groups, a work directory nobody
// owns and a shared one it only reads; as another user, asking for
// nobody is refused.
func TestRunAsNobody(t *testing.T) {
	if os.Geteuid() != 0 {
		if _, err := New(Config{RunAs: "nobody"}); err == nil || !strings.Contains(err.Error(), "root") {
			t.Fatalf("run-as nobody as uid %d: %v, want an error saying it needs root", os.Geteuid(), err)
		}
		return
	}
	if _, err := New(Config{RunAs: "nobody", Dir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "cannot pass") {
		t.Fatalf("run-as nobody under a directory nobody cannot pass: %v, want a refusal", err)
	}
	s, err := New(Config{RunAs: "nobody", Dir: passableDir(t), Environ: []string{"PATH=/usr/bin:/bin", "HOME=/root", "SKEIN_BUS=x"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !s.SwitchesUser() || s.User() != "nobody" {
		t.Fatalf("user %q, switches %t", s.User(), s.SwitchesUser())
	}
	env := strings.Join(s.Env(), "\n")
	for _, want := range []string{"USER=nobody", "HOME=" + s.WorkDir(), "TMPDIR=" + s.WorkDir(), "PATH=/usr/bin:/bin"} {
		if !strings.Contains(env, want) {
			t.Errorf("env lacks %s:\n%s", want, env)
		}
	}
	if strings.Contains(env, "SKEIN_BUS") || strings.Contains(env, "/root") {
		t.Errorf("env keeps the runtime's:\n%s", env)
	}
	for dir, want := range map[string]os.FileMode{filepath.Dir(s.WorkDir()): 0o711, s.WorkDir(): 0o700, s.SharedDir(): 0o755} {
		st, err := os.Stat(dir)
		if err != nil || st.Mode().Perm() != want {
			t.Errorf("%s: %v %v, want mode %v", dir, st.Mode(), err, want)
		}
	}
	if st, _ := os.Stat(s.WorkDir()); st.Sys().(*syscall.Stat_t).Uid != 65534 {
		t.Errorf("work dir owned by uid %d, want 65534", st.Sys().(*syscall.Stat_t).Uid)
	}
	cmd := exec.Command("/bin/sh", "-c", `id -u; id -G; touch "$TMPDIR/f" && echo ok`)
	cmd.Env, cmd.SysProcAttr, cmd.Dir = s.Env(), s.SysProcAttr(), s.WorkDir()
	out, err := cmd.CombinedOutput()
	if err != nil || string(out) != "65534\n65534\nok\n" {
		t.Fatalf("as nobody: %q, %v; want uid 65534, only nobody's group, a writable TMPDIR", out, err)
	}
	base := filepath.Dir(s.WorkDir())
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(base); !os.IsNotExist(err) {
		t.Fatalf("Close left %s: %v", base, err)
	}
}

// TestLookPathAsUser: an executable behind a directory nobody cannot pass
// is not found for nobody, though root could run it; one on a path nobody
// may use is.
func TestLookPathAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		s, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		if p, err := s.LookPath("sh"); err != nil || p == "" {
			t.Fatalf("LookPath(sh) as this user: %q %v", p, err)
		}
		return
	}
	root := passableDir(t)
	private, public := filepath.Join(root, "private"), filepath.Join(root, "public")
	for dir, mode := range map[string]os.FileMode{private: 0o700, public: 0o755} {
		if err := os.Mkdir(dir, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "tool"), []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s, err := New(Config{RunAs: "nobody", Dir: passableDir(t), Environ: []string{"PATH=" + private + ":" + public}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, err := s.LookPath("tool"); err != nil || p != filepath.Join(public, "tool") {
		t.Fatalf("LookPath(tool) = %q, %v; want the one in %s", p, err, public)
	}
	if _, err := s.LookPath(filepath.Join(private, "tool")); err == nil {
		t.Fatalf("LookPath found %s/tool, which nobody cannot reach", private)
	}
}
