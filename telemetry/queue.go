package telemetry

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
)

// queue is one exporter's batch span processor, over spans as T values - bytes of
// OTLP for our senders (one span is many), snapshots for the SDK's exporter in a
// measurement build (sdkexport.go): it batches them as the SDK's does (OTEL_BSP_*: a
// batch goes when it is full or ScheduleDelay after the last export, one export at a
// time, each within ExportTimeout), holds at most MaxQueueSize spans waiting, and
// accounts for every span it is given. Emitting never waits: a span that finds the
// queue full is dropped and counted - the bound is what rides out a slow or stalled
// collector, in memory, at ~300 bytes a span.
type queue[T any] struct {
	name   string
	exp    batchExporter[T]
	cfg    Batch
	report func(error)

	mu      sync.Mutex
	filling []T         // the batch being filled: as exp.start made it, then spans
	spans   int         // in filling
	full    []*batch[T] // ready to export, oldest first
	waiting int         // spans in filling and full
	free    [][]T       // buffers of exported batches, for new ones
	closed  bool        // after Shutdown: spans are neither queued nor counted

	wake    chan struct{}   // a batch is full
	flushes chan chan error // ForceFlush's: everything queued so far, then reply
	stop    chan struct{}   // Shutdown: flush, then end
	done    chan struct{}   // the export loop ended

	queued, exported, failed, dropped atomic.Uint64
	// lastErr is the error of the last export attempt if it failed: at exit, an
	// export still being retried has no outcome yet, and this is why.
	lastErr atomic.Pointer[string]
}

type batch[T any] struct {
	buf   []T
	spans int
}

// batchExporter exports a queue's batches.
type batchExporter[T any] interface {
	// start makes buf, an exported batch's buffer or nil, an empty batch.
	start(buf []T) []T
	// export sends a batch, and says how many of its spans the receiver rejected;
	// note hears of each attempt's outcome.
	export(ctx context.Context, buf []T, note func(error)) (rejected int, err error)
	close() error
}

// maxFree bounds the buffers kept for reuse: a stall's backlog is given back.
const maxFree = 4

func newQueue[T any](name string, exp batchExporter[T], cfg Batch, report func(error)) *queue[T] {
	q := &queue[T]{name: name, exp: exp, cfg: cfg, report: report,
		wake: make(chan struct{}, 1), flushes: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q
}

// add queues one span (for bytes, an encoded ScopeSpans.spans field), or drops it if
// the queue is full.
func (q *queue[T]) add(span []T) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	if q.waiting >= q.cfg.MaxQueueSize {
		q.mu.Unlock()
		q.dropped.Add(1)
		return
	}
	if q.filling == nil {
		q.filling = q.newBuffer()
	}
	q.filling = append(q.filling, span...)
	q.spans++
	q.waiting++
	q.queued.Add(1)
	ready := q.spans >= q.cfg.MaxExportBatchSize
	if ready {
		q.seal()
	}
	q.mu.Unlock()
	if ready {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// seal moves the batch being filled to the ready ones. Called with mu held.
func (q *queue[T]) seal() {
	if q.spans == 0 {
		return
	}
	q.full = append(q.full, &batch[T]{buf: q.filling, spans: q.spans})
	q.filling, q.spans = nil, 0
}

func (q *queue[T]) newBuffer() []T {
	var b []T
	if n := len(q.free); n > 0 {
		b = q.free[n-1]
		q.free = q.free[:n-1]
	}
	return q.exp.start(b)
}

// next takes the oldest ready batch; with all, the one being filled too.
func (q *queue[T]) next(all bool) *batch[T] {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.full) == 0 && all {
		q.seal()
	}
	if len(q.full) == 0 {
		return nil
	}
	b := q.full[0]
	q.full[0] = nil
	q.full = q.full[1:]
	q.waiting -= b.spans
	return b
}

func (q *queue[T]) run() {
	defer close(q.done)
	timer := time.NewTimer(q.cfg.ScheduleDelay)
	defer timer.Stop()
	for {
		all := false
		select {
		case <-q.wake:
		case <-timer.C:
			all = true
		case reply := <-q.flushes:
			reply <- q.exportAll()
			continue
		case <-q.stop:
			q.exportAll()
			return
		}
		for b := q.next(all); b != nil; b = q.next(all) {
			q.export(b)
		}
		timer.Reset(q.cfg.ScheduleDelay)
	}
}

// exportAll exports what is queued now.
func (q *queue[T]) exportAll() error {
	var err error
	q.mu.Lock()
	q.seal()
	n := len(q.full)
	q.mu.Unlock()
	for ; n > 0; n-- {
		if b := q.next(false); b != nil {
			if e := q.export(b); e != nil {
				err = e
			}
		}
	}
	return err
}

// export sends one batch, within the export timeout, counts the outcome and keeps the
// buffer for a new batch.
func (q *queue[T]) export(b *batch[T]) error {
	ctx, cancel := context.WithCancel(context.Background())
	if q.cfg.ExportTimeout > 0 { // 0: no timeout (OTEL_BSP_EXPORT_TIMEOUT=0, as the SDK)
		ctx, cancel = context.WithTimeout(context.Background(), q.cfg.ExportTimeout)
	}
	rejected, err := q.exp.export(ctx, b.buf, q.noteAttempt)
	cancel()
	var partial *partialSuccessError
	if err == nil || errors.As(err, &partial) { // it went: only what was rejected failed
		q.failed.Add(uint64(rejected))
		q.exported.Add(uint64(b.spans - rejected))
	} else {
		q.failed.Add(uint64(b.spans))
	}
	if err != nil {
		q.report(err)
	}
	q.mu.Lock()
	if len(q.free) < maxFree {
		q.free = append(q.free, b.buf)
	}
	q.mu.Unlock()
	return err
}

// forceFlush exports what is queued, within ctx.
func (q *queue[T]) forceFlush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case q.flushes <- reply:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// shutdown stops taking spans, exports what is queued and closes the sender, within
// ctx. What is still queued or being exported then is counted by stats (Unexported).
func (q *queue[T]) shutdown(ctx context.Context) error {
	q.mu.Lock()
	already := q.closed
	q.closed = true
	q.mu.Unlock()
	if !already {
		close(q.stop)
	}
	select {
	case <-q.done:
		return q.exp.close()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *queue[T]) stats() ExporterStats {
	st := ExporterStats{Exporter: q.name, Queued: q.queued.Load(), Exported: q.exported.Load(), Failed: q.failed.Load(), Dropped: q.dropped.Load()}
	if e := q.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

// noteAttempt keeps the error of the last export attempt, nil after a success: at
// exit, an export still being retried has no outcome yet, and this is why.
func (q *queue[T]) noteAttempt(err error) {
	if err == nil {
		q.lastErr.Store(nil)
		return
	}
	e := err.Error()
	q.lastErr.Store(&e)
}

// noting is a sender that tells note of each attempt's outcome.
type noting struct {
	sender
	note func(error)
}

func (n noting) attempt(ctx context.Context, req []byte, resp *coltracepb.ExportTraceServiceResponse) (bool, time.Duration, error) {
	retry, throttle, err := n.sender.attempt(ctx, req, resp)
	n.note(err)
	return retry, throttle, err
}

// encodedBatches are our batches: spans encoded as OTLP, sent as one
// ExportTraceServiceRequest.
type encodedBatches struct {
	send sender
	enc  *encoder
	size int // spans a batch holds
}

// spanBytes is about what an HTTP server span takes encoded: a new batch's room.
const spanBytes = 320

// start keeps encoder.headroom bytes for the request's head.
func (e encodedBatches) start(buf []byte) []byte {
	if buf == nil {
		return make([]byte, e.enc.headroom, e.enc.headroom+e.size*spanBytes)
	}
	return buf[:e.enc.headroom]
}

func (e encodedBatches) export(ctx context.Context, buf []byte, note func(error)) (int, error) {
	return send(ctx, noting{e.send, note}, e.enc.request(buf))
}

func (e encodedBatches) close() error { return e.send.close() }
