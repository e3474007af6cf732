package storage

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
)

func localArtifacts(t *testing.T) (*Artifacts, *Resolver) {
	c := DefaultConfig()
	c.LocalRoot = t.TempDir()
	r, err := NewResolver(c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewArtifacts(r)
	if err != nil {
		t.Fatal(err)
	}
	return a, r
}

func s3Artifacts(t *testing.T) (*Artifacts, *Resolver) {
	c := DefaultConfig()
	c.LocalRoot = t.TempDir()
	c.COS = s3Config(t)
	c.ArtifactsURL = "s3://" + uniqueBucket("skein-art") + "/skein-jobs/"
	r, err := NewResolver(c, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewArtifacts(r)
	if err != nil {
		t.Fatal(err)
	}
	return a, r
}

func testArtifacts(t *testing.T, a *Artifacts, r *Resolver) {
	ctx := context.Background()
	big := make([]byte, 20<<20)
	rand.Read(big)
	if a.Inline(len(big)) || !a.Inline(100) || a.InlineLimit() != DefaultInlineLimit {
		t.Fatalf("inline limit %d", a.InlineLimit())
	}
	// The bucket does not exist yet: the first Put creates it.
	ref, err := a.Put(ctx, "job-1", ResultName(3, 1), big)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ref, a.JobURL("job-1")) {
		t.Fatalf("ref %s is not under %s", ref, a.JobURL("job-1"))
	}
	got, err := a.Get(ctx, ref)
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("20 MB round trip: %d bytes, %v", len(got), err)
	}
	if _, err := a.Put(ctx, "job-1", InputName(0), []byte(`{"x":1}`)); err != nil {
		t.Fatal(err)
	}
	other, err := a.Put(ctx, "job-2", InputName(0), []byte("keep me"))
	if err != nil {
		t.Fatal(err)
	}
	if infos, err := a.List(ctx, "job-1"); err != nil || len(infos) != 2 {
		t.Fatalf("job-1 artifacts: %v, %v", infos, err)
	}
	if err := a.Clean(ctx, "job-1"); err != nil {
		t.Fatal(err)
	}
	// Nothing of job-1 remains, looking with the store itself.
	u, _ := ParseURL(a.JobURL("job-1"))
	s, _ := r.Store(u)
	if infos, err := s.List(ctx, u.Bucket, u.Key); err != nil || len(infos) != 0 {
		t.Fatalf("after Clean: %v, %v", infos, err)
	}
	if _, err := a.Get(ctx, ref); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after clean: %v", err)
	}
	if b, err := a.Get(ctx, other); err != nil || string(b) != "keep me" {
		t.Fatalf("job-2 after cleaning job-1: %q, %v", b, err)
	}
	if err := a.Clean(ctx, "never-ran"); err != nil {
		t.Fatalf("clean of an empty job: %v", err)
	}
	// References outside the artifacts prefix are refused.
	for _, bad := range []string{"local:///etc/passwd", u.Object("elsewhere/x").String(), "not a url"} {
		if _, err := a.Get(ctx, bad); err == nil {
			t.Errorf("Get(%q) accepted", bad)
		}
	}
	for _, job := range []string{"", "..", "a/b", "a b"} {
		if _, err := a.Put(ctx, job, "x", nil); !errors.Is(err, ErrInvalid) {
			t.Errorf("job id %q: %v", job, err)
		}
	}
	if _, err := a.Put(ctx, "j", "../x", nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("name ../x: %v", err)
	}
}

func TestArtifactsLocal(t *testing.T) { a, r := localArtifacts(t); testArtifacts(t, a, r) }
func TestArtifactsS3(t *testing.T)    { a, r := s3Artifacts(t); testArtifacts(t, a, r) }

// TestS3WrongCredentials: a clear access-denied error naming the URL,
// without the secret.
func TestS3WrongCredentials(t *testing.T) {
	cfg := s3Config(t)
	good, bucket := newS3Store(t)
	_ = good
	for name, c := range map[string]COSConfig{
		"wrong-secret": {Endpoint: cfg.Endpoint, Region: cfg.Region, PathStyle: true, AccessKey: cfg.AccessKey, SecretKey: "wrong-secret-value-123"},
		"wrong-key":    {Endpoint: cfg.Endpoint, Region: cfg.Region, PathStyle: true, AccessKey: "NOSUCHKEY42", SecretKey: "wrong-secret-value-123"},
	} {
		t.Run(name, func(t *testing.T) {
			s, err := NewCOS(c, SchemeCOS, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			_, err = s.List(context.Background(), bucket, "x/")
			checkErr(t, err, ErrAccessDenied, "cos://"+bucket+"/x/")
			_, err = s.Head(context.Background(), bucket, "k")
			checkErr(t, err, ErrAccessDenied, "cos://"+bucket+"/k")
			if strings.Contains(err.Error(), "wrong-secret-value-123") || strings.Contains(err.Error(), cfg.SecretKey.Reveal()) {
				t.Fatalf("error leaks the secret: %v", err)
			}
			t.Log(err)
		})
	}
}
