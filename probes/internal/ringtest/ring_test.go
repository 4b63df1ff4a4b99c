package ringtest

import (
	"context"
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

const (
	ringSize = 16 << 10 // 64 records
	slowPoll = 10 * time.Second
)

// ring loads the program with a small ring buffer and a reader whose timer is far
// slower than the records come: only the kernel's wakeups can keep it from filling.
func ring(t *testing.T) (*ebpf.Program, *bpf.Reader) {
	t.Helper()
	testenv.RequireRoot(t)
	spec, err := loadRing()
	if err != nil {
		t.Fatal(err)
	}
	spec.Maps["events"].MaxEntries = ringSize
	var objs ringObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		t.Fatal(bpf.Explain(err))
	}
	t.Cleanup(func() { objs.Close() })
	rd, err := bpf.NewReader(objs.Events, objs.LostEvents)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	rd.SetPoll(slowPoll, slowPoll)
	return objs.Output, rd
}

// A reader asleep on a timer of 10 s gets every record of a ring filled 15 times over
// in a fraction of that, in order, none dropped: past half full the programs wake it.
// Below half full they do not (the timer batches the records).
func TestWakesBeforeOverflow(t *testing.T) {
	prog, rd := ring(t)
	var got atomic.Uint64
	var outOfOrder atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rd.Run(ctx, func(rec []byte) {
			n := got.Add(1)
			if binary.NativeEndian.Uint64(rec) != n {
				outOfOrder.Store(true)
			}
		})
	}()
	time.Sleep(50 * time.Millisecond) // the reader waits in epoll

	output := func(n int, every time.Duration) {
		for range n {
			if _, err := prog.Run(&ebpf.RunOptions{}); err != nil {
				t.Fatal(err)
			}
			time.Sleep(every)
		}
	}
	// A quarter of the ring: no wakeup, the reader sleeps on.
	output(16, 0)
	time.Sleep(200 * time.Millisecond)
	if n := got.Load(); n != 0 {
		t.Errorf("%d records read with the ring a quarter full: the reader was woken", n)
	}

	const total = 1000
	start := time.Now()
	output(total-16, 50*time.Microsecond)
	took := time.Since(start)
	cancel()
	<-done
	// Past half the timer's period, the timer could have read them: no proof of a
	// wakeup. A failure under CI, not a skip.
	testenv.Require(t, took <= slowPoll/2, "the records took %s to output: the timer could have read them", took)
	lost, err := rd.Lost()
	if err != nil {
		t.Fatal(err)
	}
	if n := got.Load(); n != total || lost != 0 {
		t.Errorf("%d records read, %d lost, of %d output in %s into a ring of %d", n, lost, total, took, ringSize/256)
	}
	if outOfOrder.Load() {
		t.Error("records read out of order")
	}
}
