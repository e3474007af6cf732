package pollmon

import (
	"bytes"
	"context"

	"github.com/skeinrun/skein/pkg/storage"
)

// Store is everything the monitor and the runtime side use.
type Store interface {
	Lister
	Putter
	Getter
}

// FromStore adapts a storage.Store (the local directory store, COS or any
// S3 endpoint) to Store. Each call is one storage.Store call; for S3 a List
// follows pagination, so one counted List may be several requests
// (ceil(keys/1000)).
func FromStore(s storage.Store) Store { return storeAdapter{s} }

type storeAdapter struct{ s storage.Store }

func (a storeAdapter) List(ctx context.Context, bucket, prefix string) ([]string, error) {
	infos, err := a.s.List(ctx, bucket, prefix)
	if err != nil {
		return nil, err
	}
	keys := make([]string, len(infos))
	for i, in := range infos {
		keys[i] = in.Key
	}
	return keys, nil
}

func (a storeAdapter) Put(ctx context.Context, bucket, key string, data []byte) error {
	return a.s.Put(ctx, bucket, key, bytes.NewReader(data), int64(len(data)))
}

func (a storeAdapter) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	return storage.ReadAll(ctx, a.s, bucket, key)
}
