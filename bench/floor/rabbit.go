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
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/skeinrun/skein/internal/stats"
)

// Result is one floor run.
type Result struct {
	N      int
	Wall   time.Duration // first publish to last event read
	LatP50 time.Duration // task's function ended -> its event read (Skein's definition)
	LatP99 time.Duration
	// MsgsPerTask is the AMQP messages the clients exchanged with the
	// broker per task: publishes and their confirms, deliveries, acks.
	MsgsPerTask float64
}

// TasksPerSec is N over the wall time.
func (r Result) TasksPerSec() float64 { return float64(r.N) / r.Wall.Seconds() }

// RabbitFloor runs n tasks through RabbitMQ with bare amqp091-go, with
// the durability Skein has: a publisher sends persistent tasks to a
// durable quorum queue with publisher confirms (pipelined, up to 1024
// unconfirmed); a worker consumes with prefetch 1024 (the deepest window
// of Skein's runtime), batches its events as Skein's runtime does (the
// end times of the tasks finished and waiting, up to 128, in one
// persistent event published through amq.topic to a durable stream
// queue, with a confirm) and acks each task once its event is
// confirmed; a subscriber reads the stream. The queue and the stream are
// deleted at the end.
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
	evq, err := admin.QueueDeclare(queue+"-events", true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeStream})
	if err != nil {
		return Result{}, fmt.Errorf("floor: declare the event stream: %w", err)
	}
	defer func() { _, _ = admin.QueueDelete(evq.Name, false, false, false) }()
	if err := admin.QueueBind(evq.Name, topic+".#", "amq.topic", false, nil); err != nil {
		return Result{}, err
	}
	var count counter

	// Subscriber.
	subCh, err := conn.Channel()
	if err != nil {
		return Result{}, err
	}
	defer subCh.Close()
	if err := subCh.Qos(1024, 0, false); err != nil {
		return Result{}, err
	}
	events, err := subCh.Consume(evq.Name, "", false, false, false, false, amqp.Table{"x-stream-offset": "next"})
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
				count.add(2) // the delivery and its ack (streams grant credit on acks)
				now := time.Now()
				for b := d.Body; len(b) >= 8; b = b[8:] {
					lats = append(lats, now.Sub(time.Unix(0, int64(binary.BigEndian.Uint64(b)))))
				}
				_ = d.Ack(false)
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
	if err := wch.Qos(1024, 0, false); err != nil {
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
			var batch []amqp.Delivery
			select {
			case d, ok := <-tasks:
				if !ok {
					return
				}
				batch = append(batch, d)
			case <-wctx.Done():
				return
			}
			// The no-op ran; take the others already waiting.
			body := binary.BigEndian.AppendUint64(nil, uint64(time.Now().UnixNano()))
		drain:
			for len(batch) < 128 {
				select {
				case d, ok := <-tasks:
					if !ok {
						break drain
					}
					batch = append(batch, d)
					body = binary.BigEndian.AppendUint64(body, uint64(time.Now().UnixNano()))
				default:
					break drain
				}
			}
			count.add(len(batch) + 2) // deliveries, the event and its confirm
			conf, err := wch.PublishWithDeferredConfirmWithContext(wctx, "amq.topic", topic+".done", false, false,
				amqp.Publishing{DeliveryMode: amqp.Persistent, Body: body})
			if err != nil {
				return
			}
			wwg.Add(1)
			go func() {
				defer wwg.Done()
				if ok, _ := conf.WaitContext(wctx); ok {
					for _, d := range batch {
						count.add(1)
						_ = d.Ack(false)
					}
				}
			}()
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
		count.add(2) // the task and its confirm
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
		N:           n,
		Wall:        end.Sub(start),
		LatP50:      stats.Sorted(lats, 50),
		LatP99:      stats.Sorted(lats, 99),
		MsgsPerTask: float64(count.n.Load()) / float64(n),
	}, nil
}

// counter counts protocol messages from several goroutines.
type counter struct{ n atomic.Int64 }

func (c *counter) add(k int) { c.n.Add(int64(k)) }
