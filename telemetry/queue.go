package telemetry

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// queue is one exporter's batch span processor, over encoded spans: it batches them
// as the SDK's does (OTEL_BSP_*: a batch goes when it is full or ScheduleDelay after
// the last export, one export at a time, each within ExportTimeout), holds at most
// MaxQueueSize spans waiting, and accounts for every span it is given. Emitting never
// waits: a span that finds the queue full is dropped and counted - the bound is what
// rides out a slow or stalled collector, in memory, at ~300 bytes a span.
type queue struct {
	name   string
	send   sender
	enc    *encoder
	cfg    Batch
	report func(error)

	mu      sync.Mutex
	filling *batch   // the batch being filled
	full    []*batch // ready to export, oldest first
	waiting int      // spans in filling and full
	free    []*batch // exported batches, emptied, for new ones
	closed  bool     // after Shutdown: spans are neither queued nor counted
	req     []byte   // the request being exported (by run, one at a time)

	wake    chan struct{}   // a batch is full
	flushes chan chan error // ForceFlush's: everything queued so far, then reply
	stop    chan struct{}   // Shutdown: flush, then end
	done    chan struct{}   // the export loop ended

	queued, exported, failed, dropped atomic.Uint64
}

// maxFree bounds the buffers kept for reuse: a stall's backlog is given back.
const maxFree = 4

func newQueue(name string, s sender, enc *encoder, cfg Batch, report func(error)) *queue {
	q := &queue{name: name, send: s, enc: enc, cfg: cfg, report: report,
		wake: make(chan struct{}, 1), flushes: make(chan chan error), stop: make(chan struct{}), done: make(chan struct{})}
	go q.run()
	return q
}

// add queues one encoded span (a ScopeSpans.spans field) of scope's, or drops it if
// the queue is full.
func (q *queue) add(scope *Scope, span []byte) {
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
		q.filling = q.newBatch()
	}
	q.filling.add(scope, span)
	q.waiting++
	q.queued.Add(1)
	ready := q.filling.spans >= q.cfg.MaxExportBatchSize
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
func (q *queue) seal() {
	if q.filling == nil || q.filling.spans == 0 {
		return
	}
	q.full = append(q.full, q.filling)
	q.filling = nil
}

func (q *queue) newBatch() *batch {
	if n := len(q.free); n > 0 {
		b := q.free[n-1]
		q.free = q.free[:n-1]
		return b
	}
	return &batch{}
}

// next takes the oldest ready batch; with all, the one being filled too.
func (q *queue) next(all bool) *batch {
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

func (q *queue) run() {
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
func (q *queue) exportAll() error {
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
func (q *queue) export(b *batch) error {
	ctx, cancel := context.WithCancel(context.Background())
	if q.cfg.ExportTimeout > 0 { // 0: no timeout (OTEL_BSP_EXPORT_TIMEOUT=0, as the SDK)
		ctx, cancel = context.WithTimeout(context.Background(), q.cfg.ExportTimeout)
	}
	q.req = q.enc.request(q.req[:0], b)
	rejected, err := send(ctx, q.send, q.req)
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
	b.reset()
	q.mu.Lock()
	if len(q.free) < maxFree {
		q.free = append(q.free, b)
	}
	q.mu.Unlock()
	return err
}

// forceFlush exports what is queued, within ctx.
func (q *queue) forceFlush(ctx context.Context) error {
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
func (q *queue) shutdown(ctx context.Context) error {
	q.mu.Lock()
	already := q.closed
	q.closed = true
	q.mu.Unlock()
	if !already {
		close(q.stop)
	}
	select {
	case <-q.done:
		return q.send.close()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (q *queue) stats() ExporterStats {
	return ExporterStats{Exporter: q.name, Queued: q.queued.Load(), Exported: q.exported.Load(), Failed: q.failed.Load(), Dropped: q.dropped.Load()}
}
