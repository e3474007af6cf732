package partition

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/storage"
	"github.com/skeinrun/skein/pkg/wire"
)

// TestChunkReadRidesOutAnOutage: a chunk whose reading is cut midway and
// whose storage then refuses connections for 2 s is read to its end, byte
// for byte, from where the cut left it; an outage longer than storage.RideOut
// fails the read, saying so.
func TestChunkReadRidesOutAnOutage(t *testing.T) {
	r, direct, bucket, proxy := proxiedS3(t)
	// 32 MB of numbered lines: more than the sockets between hold, so the
	// cut comes with most of the chunk unread.
	var b strings.Builder
	for i := 0; b.Len() < 32<<20; i++ {
		fmt.Fprintf(&b, "line %d of the text, with a few words more\n", i)
	}
	data := b.String()
	ctx := context.Background()
	if err := direct.Put(ctx, bucket, "big.txt", strings.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	obj := &wire.Object{URL: "s3://" + bucket + "/big.txt", Bucket: bucket, Key: "big.txt", Size: int64(len(data)), End: int64(len(data))}

	rc, err := OpenChunk(ctx, r, obj)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	head := make([]byte, 64<<10)
	if _, err := io.ReadFull(rc, head); err != nil {
		t.Fatal(err)
	}
	proxy.Down(true)
	time.AfterFunc(2*time.Second, func() { proxy.Down(false) })
	start := time.Now()
	rest, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("reading past a 2 s outage: %v (after %v)", err, time.Since(start))
	}
	if got := append(head, rest...); !bytes.Equal(got, []byte(data)) {
		t.Fatalf("read %d bytes, want the object's %d, byte for byte", len(got), len(data))
	}

	old := storage.RideOut
	storage.RideOut = time.Second
	defer func() { storage.RideOut = old }()
	rc2, err := OpenChunk(ctx, r, obj)
	if err != nil {
		t.Fatal(err)
	}
	defer rc2.Close()
	if _, err := io.ReadFull(rc2, head); err != nil {
		t.Fatal(err)
	}
	proxy.Down(true)
	defer proxy.Down(false)
	_, err = io.ReadAll(rc2)
	if err == nil || !strings.Contains(err.Error(), "still failing after") {
		t.Fatalf("reading through an outage longer than the tries: %v, want an error saying it gave up", err)
	}
}

// proxiedS3 is s3Env with the resolver's requests going through an outage
// proxy: the resolver reads through it, direct (and bucket) do not.
func proxiedS3(t *testing.T) (r *storage.Resolver, direct storage.Store, bucket string, proxy *testenv.OutageProxy) {
	_, direct, bucket = s3Env(t)
	u, err := url.Parse(testenv.Require(t, testenv.S3Endpoint))
	if err != nil {
		t.Fatal(err)
	}
	proxy = testenv.NewOutageProxy(t, u.Host)
	c := storage.DefaultConfig()
	c.LocalRoot = t.TempDir()
	c.COS = storage.COSConfig{Endpoint: "http://" + proxy.Addr(), Region: storage.DefaultRegion, PathStyle: true,
		AccessKey: testenv.Require(t, testenv.S3Access), SecretKey: storage.Secret(testenv.Require(t, testenv.S3Secret))}
	if r, err = storage.NewResolver(c, nil); err != nil {
		t.Fatal(err)
	}
	return r, direct, bucket, proxy
}
