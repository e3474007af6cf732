package client_test

import (
	"context"
	"fmt"

	"github.com/skeinrun/skein/pkg/embedded"
	"github.com/skeinrun/skein/pkg/wire"
)

// A map job on an in-process installation: one task per element, extra
// parameters merged into each call.
func Example_map() {
	ctx := context.Background()
	c, err := embedded.Start(ctx, embedded.Config{Workers: 2})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	res, _, err := c.Client.Run(ctx, &wire.JobSpec{
		Kind:        wire.JobMap,
		Function:    "add",
		Iterdata:    wire.Value(`[1,2,3]`),
		ExtraParams: wire.Value(`{"y":1}`),
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(res))
	// Output: [2,3,4]
}

// A map-reduce job: the reducer starts with the first map result and
// folds the results as they land.
func Example_mapReduce() {
	ctx := context.Background()
	c, err := embedded.Start(ctx, embedded.Config{})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	res, _, err := c.Client.Run(ctx, &wire.JobSpec{
		Kind:           wire.JobMapReduce,
		Function:       "add",
		Iterdata:       wire.Value(`[1,2,3]`),
		ExtraParams:    wire.Value(`{"y":1}`),
		ReduceFunction: "product",
	})
	if err != nil {
		panic(err)
	}
	fmt.Println(string(res))
	// Output: 24
}

// Submit, then wait for the job's end record and fetch the result: what
// `submit --no-wait`, `submit wait` and `submit result` do.
func Example_wait() {
	ctx := context.Background()
	c, err := embedded.Start(ctx, embedded.Config{})
	if err != nil {
		panic(err)
	}
	defer c.Close()
	id, err := c.Client.Submit(ctx, &wire.JobSpec{Kind: wire.JobCall, Function: "add", Data: wire.Value(`{"x":1,"y":3}`)})
	if err != nil {
		panic(err)
	}
	st, err := c.Client.Wait(ctx, id)
	if err != nil {
		panic(err)
	}
	res, err := c.Client.Result(ctx, id)
	if err != nil {
		panic(err)
	}
	fmt.Println(st.State, string(res))
	// Output: done 4
}
