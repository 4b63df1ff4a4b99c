package telemetry

import (
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Clock converts the kernel's monotonic timestamps (bpf_ktime_get_ns, CLOCK_MONOTONIC)
// to wall-clock time. The offset between the clocks is measured again by Refresh, so
// that NTP slewing of the wall clock does not accumulate into span times.
type Clock struct {
	offset atomic.Int64 // realtime - monotonic, ns
}

// NewClock measures the offset once.
func NewClock() *Clock {
	c := &Clock{}
	c.Refresh()
	return c
}

// Refresh re-measures the offset: realtime read between two monotonic reads, the
// tightest of three tries.
func (c *Clock) Refresh() {
	best, bestSpread := int64(0), int64(-1)
	for i := 0; i < 3; i++ {
		var m1, r, m2 unix.Timespec
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
		unix.ClockGettime(unix.CLOCK_REALTIME, &r)
		unix.ClockGettime(unix.CLOCK_MONOTONIC, &m2)
		spread := m2.Nano() - m1.Nano()
		if bestSpread < 0 || spread < bestSpread {
			best, bestSpread = r.Nano()-(m1.Nano()+spread/2), spread
		}
	}
	c.offset.Store(best)
}

// Wall converts a CLOCK_MONOTONIC timestamp in nanoseconds.
func (c *Clock) Wall(monoNs uint64) time.Time {
	return time.Unix(0, int64(monoNs)+c.offset.Load())
}
