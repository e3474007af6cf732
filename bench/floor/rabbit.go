// Package floor measures what a bare client moves through a broker with
// none of Skein on top: the floor that Skein's fan-out is compared with.
package floor

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Result is one floor run.
type Result struct {
	N      int
	Wall   time.Duration // first publish to last event read
	LatP50 time.Duration // task published -> its event read
	LatP99 time.Duration
}

// TasksPerSec is N over the wall time.
func (r Result) TasksPerSec() float64 { return float64(r.N) / r.Wall.Seconds() }

// RabbitFloor runs n tasks through RabbitMQ with bare amqp091-go: a
// publisher sends persistent tasks to a durable quorum queue with
// publisher confirms (pipelined, up to 1024 unconfirmed); a worker
// consumes with prefetch 256, publishes one persistent event per task to
// amq.topic with a confirm, and acks the task once the event is
// confirmed; a subscriber counts the events on an exclusive queue. The
// task queue is deleted at the end.
func RabbitFloor(ctx context.Context, url string, n int) (Result, error) {
	if n < 1 {
		return Result{}, fmt.Errorf("floor: n = %d, want at least 1", n)
	}
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return Result{}, fmt.Errorf("floor: connect: %w", err)
	}
	defer conn.Close()
	id := make([]byte, 4)
	_, _ = rand.Read(id)
	queue := "floor-" + hex.EncodeToString(id)
	topic := "floor." + hex.EncodeToString(id)

	admin, err := conn.Channel()
	if err != nil {
		return Result{}, err
	}
	defer admin.Close()
	if _, err := admin.QueueDeclare(queue, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		return Result{}, fmt.Errorf("floor: declare %s: %w", queue, err)
	}
	defer func() { _, _ = admin.QueueDelete(queue, false, false, false) }()
	evq, err := admin.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return Result{}, err
	}
	if err := admin.QueueBind(evq.Name, topic+".#", "amq.topic", false, nil); err != nil {
		return Result{}, err
	}

	// Subscriber.
	subCh, err := conn.Channel()
	if err != nil {
		return Result{}, err
	}
	defer subCh.Close()
	events, err := subCh.Consume(evq.Name, "", true, true, false, false, nil)
	if err != nil {
		return Result{}, err
	}
	lats := make([]time.Duration, 0, n)
	subDone := make(chan error, 1)
	var end time.Time
	go func() {
		for len(lats) < n {
			select {
			case d, ok := <-events:
				if !ok {
					subDone <- fmt.Errorf("floor: event consumer closed after %d events", len(lats))
					return
				}
				if len(d.Body) >= 8 {
					lats = append(lats, time.Since(time.Unix(0, int64(binary.BigEndian.Uint64(d.Body)))))
				}
			case <-ctx.Done():
				subDone <- fmt.Errorf("floor: %d of %d events: %w", len(lats), n, ctx.Err())
				return
			}
		}
		end = time.Now()
		subDone <- nil
	}()

	// Worker.
	wch, err := conn.Channel()
	if err != nil {
		return Result{}, err
	}
	defer wch.Close()
	if err := wch.Qos(256, 0, false); err != nil {
		return Result{}, err
	}
	if err := wch.Confirm(false); err != nil {
		return Result{}, err
	}
	tasks, err := wch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		return Result{}, err
	}
	var wwg sync.WaitGroup
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	wwg.Add(1)
	go func() {
		defer wwg.Done()
		for {
			select {
			case d, ok := <-tasks:
				if !ok {
					return
				}
				conf, err := wch.PublishWithDeferredConfirmWithContext(wctx, "amq.topic", topic+".done", false, false,
					amqp.Publishing{DeliveryMode: amqp.Persistent, Body: d.Body})
				if err != nil {
					return
				}
				wwg.Add(1)
				go func() {
					defer wwg.Done()
					if ok, _ := conf.WaitContext(wctx); ok {
						_ = d.Ack(false)
					}
				}()
			case <-wctx.Done():
				return
			}
		}
	}()

	// Publisher.
	pch, err := conn.Channel()
	if err != nil {
		return Result{}, err
	}
	defer pch.Close()
	if err := pch.Confirm(false); err != nil {
		return Result{}, err
	}
	start := time.Now()
	window := make(chan *amqp.DeferredConfirmation, 1024)
	pubErr := make(chan error, 1)
	go func() {
		for c := range window {
			if ok, err := c.WaitContext(ctx); !ok || err != nil {
				pubErr <- fmt.Errorf("floor: publish not confirmed: %v", err)
				for range window {
				}
				return
			}
		}
		pubErr <- nil
	}()
	for range n {
		body := make([]byte, 8)
		binary.BigEndian.PutUint64(body, uint64(time.Now().UnixNano()))
		c, err := pch.PublishWithDeferredConfirmWithContext(ctx, "", queue, false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
		if err != nil {
			close(window)
			return Result{}, fmt.Errorf("floor: publish: %w", err)
		}
		window <- c
	}
	close(window)
	if err := <-pubErr; err != nil {
		return Result{}, err
	}
	if err := <-subDone; err != nil {
		return Result{}, err
	}
	wcancel()
	wwg.Wait()
	slices.Sort(lats)
	return Result{
		N:      n,
		Wall:   end.Sub(start),
		LatP50: lats[len(lats)/2],
		LatP99: lats[min(len(lats)-1, len(lats)*99/100)],
	}, nil
}
