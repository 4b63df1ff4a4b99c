package bpf

import (
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// Release hands links to the kernel to detach in the background: they are gone soon
// after, none left behind, and their program runs no more. Without the mount (no
// CAP_SYS_ADMIN, an older kernel) they are closed as CloseAll does.
func TestReleaseFreesLinks(t *testing.T) {
	t.Run("pinned", testRelease)
	t.Run("no bpffs", func(t *testing.T) {
		saved := detachedBPFFS
		defer func() { detachedBPFFS = saved }()
		detachedBPFFS = func() (int, error) { return -1, unix.EPERM }
		testRelease(t)
	})
}

func testRelease(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.Require(t, haveUprobeMulti(), "uprobe_multi links (Linux 6.6 or later)")
	ticker, tick := buildTicker(t)
	cmd := exec.Command(ticker)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	c := counter(t, ebpf.AttachTraceUprobeMulti)
	links, err := AttachUprobes(ticker, cmd.Process.Pid, Uprobe{Symbol: "main.tick", Program: c.Program, Offsets: []uint64{tick}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []link.ID
	for _, l := range links {
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	time.Sleep(50 * time.Millisecond)
	if count(t, c) == 0 {
		t.Fatal("the uprobe never fired")
	}

	begin := time.Now()
	if err := Release(links); err != nil {
		t.Fatal(err)
	}
	t.Logf("Release returned in %v", time.Since(begin))
	for _, id := range ids {
		for deadline := time.Now().Add(5 * time.Second); ; {
			l, err := link.NewFromID(id)
			if err != nil {
				break
			}
			l.Close()
			if time.Now().After(deadline) {
				t.Fatalf("link %d still exists 5 s after Release", id)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("links gone %v after Release", time.Since(begin))
	// A link's ID goes first, as the kernel starts freeing it; its uprobes are
	// unregistered after, in the background, and a hit or two may land in between on a
	// busy machine. What must hold: the program stops firing - no hit for 200 ms, within
	// 5 s of the IDs going.
	n := count(t, c)
	for deadline := time.Now().Add(5 * time.Second); ; n = count(t, c) {
		time.Sleep(200 * time.Millisecond)
		after := count(t, c)
		if after == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d hits in the last 200 ms, 5 s after the links were gone", after-n)
		}
	}
	t.Logf("no hit after %v", time.Since(begin))
}

// doctor's check of the hand-over: it works here, and says why not where it cannot.
func TestCheckRelease(t *testing.T) {
	testenv.RequireRoot(t)
	if err := CheckRelease(); err != nil {
		t.Errorf("CheckRelease: %v", err)
	}
	saved := detachedBPFFS
	defer func() { detachedBPFFS = saved }()
	detachedBPFFS = func() (int, error) { return -1, unix.EPERM }
	if err := CheckRelease(); err == nil || !strings.Contains(err.Error(), "fsopen, fsmount") {
		t.Errorf("without a bpffs: %v", err)
	}
}
