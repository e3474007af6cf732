package pollmon

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/skeinrun/skein/internal/testenv"
	"github.com/skeinrun/skein/pkg/storage"
)

// TestWatchLocalStore runs the watch test over pkg/storage's local store.
func TestWatchLocalStore(t *testing.T) {
	testWatch(t, func(t *testing.T) (Store, string) {
		l, err := storage.NewLocal(t.TempDir(), testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.MakeBucket(context.Background(), "b"); err != nil {
			t.Fatal(err)
		}
		return FromStore(l), "b"
	})
}

// TestWatchS3 runs it over versitygw, a real S3 server on loopback.
func TestWatchS3(t *testing.T) {
	endpoint := testenv.Require(t, testenv.S3Endpoint)
	cfg := storage.COSConfig{
		Endpoint:  endpoint,
		Region:    storage.DefaultRegion,
		PathStyle: true,
		AccessKey: testenv.Require(t, testenv.S3Access),
		SecretKey: storage.Secret(testenv.Require(t, testenv.S3Secret)),
	}
	testWatch(t, func(t *testing.T) (Store, string) {
		c, err := storage.NewCOS(cfg, storage.SchemeS3, testLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		bucket := fmt.Sprintf("skein-pollmon-%d", time.Now().UnixNano())
		if err := c.MakeBucket(context.Background(), bucket); err != nil {
			t.Fatal(err)
		}
		return FromStore(c), bucket
	})
}
