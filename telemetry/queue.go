package telemetry

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// queue is one exporter's batch span processor, over spans as S values in batches of
// type B - encoded spans grouped by scope for our senders, snapshots for the SDK's
// exporter in a measurement build (sdkexport.go): it batches them as the SDK's does
// (OTEL_BSP_*: a batch goes when it is full or ScheduleDelay after the last export,
// one export at a time, each within ExportTimeout), holds at most MaxQueueSize spans
// waiting, and accounts for every span it is given. Emitting never waits: a span that
// finds the queue full is dropped and counted - the bound is what rides out a slow or
// stalled collector, in memory, at ~300 bytes a span.
type queue[S any, B spanBatch[S]] struct {
	name   string
	exp    batchExporter[B]
	cfg    otelconfig.Batch
	report func(error)

	mu      sync.Mutex
	filling B    // the batch being filled, if open
	open    bool // filling holds a batch
	full    []B  // ready to export, oldest first
	waiting int  // spans in filling and full
	free    []B  // exported batches, emptied, for new ones
	closed  bool // after Shutdown: spans are neither queued nor counted

	wake    chan struct{}   // a batch is full
	flushes chan chan error // ForceFlush's: everything queued so far, then reply
	stop    chan struct{}   // Shutdown: flush, then end
	done    chan struct{}   // the export loop ended

	queued, exported, failed, dropped atomic.Uint64
	// lastErr is the error of the last export attempt if it failed: at exit, an
	// export still being retried has no outcome yet, and this is why.
	lastErr atomic.Pointer[string]
}

// spanBatch is a batch of spans as its exporter keeps them.
type spanBatch[S any] interface {
	add(span S)
	len() int
	reset() // empty, its buffers kept for the next batch
}

// batchExporter makes a queue's batches and exports them.
type batchExporter[B any] interface {
	newBatch() B
	// export sends a batch, and says how many of its spans the receiver rejected;
	// note hears of each attempt's outcome.
	export(ctx context.Context, b B, note func(error)) (rejected int, err error)
	close() error
}

// maxFree bounds the buffers kept for reuse: a stall's backlog is given back.
const maxFree = 4

func newQueue[S any, B spanBatch[S]](name string, exp batchExporter[B], cfg otelconfig.Batch, report func(error)) *queue[S, B] {
	q := &queue[S, B]{name: name, exp: exp, cfg: cfg, report: report,
		wake: make(chan struct{}, 1), flushes: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q
}

// add queues one span, or drops it if the queue is full.
func (q *queue[S, B]) add(span S) {
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
	if !q.open {
		q.filling, q.open = q.newBatch(), true
	}
	q.filling.add(span)
	q.waiting++
	q.queued.Add(1)
	ready := q.filling.len() >= q.cfg.MaxExportBatchSize
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
func (q *queue[S, B]) seal() {
	if !q.open || q.filling.len() == 0 {
		return
	}
	q.full = append(q.full, q.filling)
	var none B
	q.filling, q.open = none, false
}

func (q *queue[S, B]) newBatch() B {
	if n := len(q.free); n > 0 {
		b := q.free[n-1]
		q.free = q.free[:n-1]
		return b
	}
	return q.exp.newBatch()
}

// next takes the oldest ready batch; with all, the one being filled too.
func (q *queue[S, B]) next(all bool) (B, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.full) == 0 && all {
		q.seal()
	}
	var none B
	if len(q.full) == 0 {
		return none, false
	}
	b := q.full[0]
	q.full[0] = none
	q.full = q.full[1:]
	q.waiting -= b.len()
	return b, true
}

func (q *queue[S, B]) run() {
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
		for b, ok := q.next(all); ok; b, ok = q.next(all) {
			q.export(b)
		}
		timer.Reset(q.cfg.ScheduleDelay)
	}
}

// exportAll exports what is queued now.
func (q *queue[S, B]) exportAll() error {
	var err error
	q.mu.Lock()
	q.seal()
	n := len(q.full)
	q.mu.Unlock()
	for ; n > 0; n-- {
		if b, ok := q.next(false); ok {
			if e := q.export(b); e != nil {
				err = e
			}
		}
	}
	return err
}

// export sends one batch, within the export timeout, counts the outcome and keeps the
// buffer for a new batch.
func (q *queue[S, B]) export(b B) error {
	ctx, cancel := context.WithCancel(context.Background())
	if q.cfg.ExportTimeout > 0 { // 0: no timeout (OTEL_BSP_EXPORT_TIMEOUT=0, as the SDK)
		ctx, cancel = context.WithTimeout(context.Background(), q.cfg.ExportTimeout)
	}
	rejected, err := q.exp.export(ctx, b, q.noteAttempt)
	cancel()
	spans := b.len()
	var partial *partialSuccessError
	if err == nil || errors.As(err, &partial) { // it went: only what was rejected failed
		q.failed.Add(uint64(rejected))
		q.exported.Add(uint64(spans - rejected))
	} else {
		q.failed.Add(uint64(spans))
	}
	if err != nil {
		q.report(err)
	}
	b.reset()
	q.mu.Lock()
	if len(q.free) < maxFree {
		q.free = append(q.free, b)
	}
	q.mu.Unlock()
	return err
}

// forceFlush exports what is queued, within ctx.
func (q *queue[S, B]) forceFlush(ctx context.Context) error {
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
func (q *queue[S, B]) shutdown(ctx context.Context) error {
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

func (q *queue[S, B]) stats() ExporterStats {
	st := ExporterStats{Exporter: q.name, Queued: q.queued.Load(), Exported: q.exported.Load(), Failed: q.failed.Load(), Dropped: q.dropped.Load()}
	if e := q.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

// noteAttempt keeps the error of the last export attempt, nil after a success: at
// exit, an export still being retried has no outcome yet, and this is why.
func (q *queue[S, B]) noteAttempt(err error) {
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

// encodedBatches are our batches: spans encoded as OTLP, grouped by scope, sent as
// one ExportTraceServiceRequest.
type encodedBatches struct {
	send sender
	enc  *encoder
	req  []byte // the request being exported (one at a time, by the queue's loop)
}

// scopedSpan is one encoded span (a ScopeSpans.spans field) and its scope.
type scopedSpan struct {
	scope *Scope
	span  []byte
}

func (e *encodedBatches) newBatch() *batch { return &batch{} }

func (e *encodedBatches) export(ctx context.Context, b *batch, note func(error)) (int, error) {
	e.req = e.enc.request(e.req[:0], b)
	return send(ctx, noting{e.send, note}, e.req)
}

func (e *encodedBatches) close() error { return e.send.close() }
