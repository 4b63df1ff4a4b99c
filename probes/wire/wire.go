// Package wire puts the trace context of the app's client spans into its outgoing
// requests, from the kernel (--propagate): a sockops program picks the app's outgoing
// TCP connections, an sk_msg program amends what the app writes to them - a
// traceparent after an HTTP/1 request line, a literal header field at the end of an
// HTTP/2 request's header block. Nothing is written to the app's memory, so it works
// on kernels in lockdown.
//
// The libraries' probes file what each request is to carry in the maps of
// bpf/include/outgoing.h, shared by every object of the app (kit.SharedMaps); this
// package knows no library, and no library knows its internals.
package wire

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
)

// objectSpec is the embedded BPF object, parsed once.
var objectSpec = sync.OnceValues(loadWire)

// Prepare parses the BPF object in the background, ahead of Attach.
func Prepare() { go objectSpec() }

// Wire is the socket programs attached for one app.
type Wire struct {
	objs    *bpf.Objects
	sockets *bpf.SocketPrograms
}

// Attach loads the socket programs, with the maps the app's probes share, and
// attaches them to the cgroup v2 of process pid, HTTP/2's program included. They
// change nothing until Enable.
func Attach(pid int, shared *kit.Shared) (*Wire, error) {
	cgroup, err := bpf.AppCgroup(pid)
	if err != nil {
		return nil, err
	}
	defer cgroup.Close()
	w, err := AttachTo(cgroup, pid, shared, true)
	if err != nil {
		return nil, err
	}
	if err := w.FollowHTTP2(); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// AttachTo is Attach with process pid's cgroup already open (bpf.AppCgroup): opened
// first, so that where the programs may not go nothing is loaded. It does not wait
// for HTTP/2's program: FollowHTTP2 does. Its verification starts now with http2
// (to run beside the others'), else when FollowHTTP2 asks for it (not to take the
// CPU from those the app waits for). The cgroup stays the caller's to close.
func AttachTo(cgroup *bpf.Cgroup, pid int, shared *kit.Shared, http2 bool) (*Wire, error) {
	spec, err := objectSpec()
	if err != nil {
		return nil, fmt.Errorf("parse the socket programs: %w", err)
	}
	maps, err := shared.MapsFor(spec)
	if err != nil {
		return nil, err
	}
	objs, err := bpf.LoadObjects(spec, bpf.LoadOptions{Shared: maps})
	if err != nil {
		return nil, fmt.Errorf("load the socket programs: %w", err)
	}
	for _, name := range objs.Slow() { // verified in parallel, each on its own
		if http2 || name != h2Program {
			objs.Preload(name)
		}
	}
	w := &Wire{objs: objs}
	if err := objs.SetVariables(appIdentity(pid)); err != nil {
		objs.Close()
		return nil, err
	}
	if w.sockets, err = attachTo(cgroup, objs); err != nil {
		objs.Close()
		return nil, err
	}
	return w, nil
}

// h2Program is the socket programs' HTTP/2 part, which inject hands on to.
const h2Program = "inject_h2"

// FollowHTTP2 waits for the HTTP/2 program to be verified, then puts it where inject
// hands HTTP/2 connections on to it (a tail call: each program is verified within its
// own budget). Until then, a connection whose first bytes are HTTP/2's preface is left
// alone for its lifetime, and HTTP/1 is served: the overlapped start holds the app's
// HTTP/2 connection set-up meanwhile (kit.Library.PrefaceWriters).
func (w *Wire) FollowHTTP2() error {
	h2, err := w.objs.Program(h2Program)
	if err != nil {
		return err
	}
	if err := w.objs.Map("wire_programs").Put(uint32(0), h2); err != nil {
		return fmt.Errorf("hand HTTP/2 on to its program: %w", err)
	}
	return nil
}

// appIdentity names the app to sockops: its process ID in this process's PID
// namespace, and that namespace. Without the namespace's identity (no /proc), the
// socket programs go by the ID the probes learn as the app runs.
func appIdentity(pid int) map[string]uint64 {
	var st unix.Stat_t
	if err := unix.Stat("/proc/self/ns/pid", &st); err != nil {
		return nil
	}
	return map[string]uint64{"app_pid": uint64(pid), "pid_ns_dev": st.Dev, "pid_ns_ino": st.Ino}
}

// attachTo attaches the socket programs at the app's own cgroup: they run on the
// connections of the processes in it (the app's container), never a neighbour's.
func attachTo(cgroup *bpf.Cgroup, objs *bpf.Objects) (*bpf.SocketPrograms, error) {
	sockops, err1 := objs.Program("app_sockops")
	inject, err2 := objs.Program("inject")
	if err := errors.Join(err1, err2); err != nil {
		return nil, err
	}
	return bpf.AttachSocketPrograms(cgroup, sockops, objs.Map("app_sockets"), inject)
}

// Enable lets the programs amend writes.
func (w *Wire) Enable() error { return w.objs.SetVariables(map[string]uint64{"wire_enabled": 1}) }

// Counts are what the socket programs did, since they were attached.
type Counts struct {
	HTTP1Inserted uint64 // HTTP/1 requests that got a traceparent
	H2Inserted    uint64 // HTTP/2 header blocks that got one
	H2TooLarge    uint64 // left as they were: the frame would have exceeded 16384 bytes
	H2Failed      uint64 // left as they were: the kernel refused the bytes, or the context was malformed
	H2Late        uint64 // left as they were: the context waited over a second for its write
	H2Split       uint64 // left as they were: the frame's bytes came in more than one write

	// The trace context lines an HTTP/1 request held already (forwarded by a proxy, or
	// the app's own), which get ours in place.
	HTTP1Replaced   uint64 // traceparent lines that got ours
	HTTP1Tracestate uint64 // tracestate lines that got ours (or were emptied: ours is none)
	HTTP1Split      uint64 // left as they were: the line came in more than one write
	HTTP1Missed     uint64 // left as they were: not found in what the program reads, or the kernel refused the bytes

	// The same of HTTP/2 header blocks: fields found by their values (raw or
	// Huffman-coded) or literal names, given ours as raw strings.
	H2Replaced   uint64 // traceparent fields that got ours
	H2Tracestate uint64 // tracestate fields that got ours (or nothing)
	H2NotFound   uint64 // left as they were: the app's traceparent not a literal in the block's one frame (indexed: its value sent before on the connection; a block in several frames)
	H2Unsafe     uint64 // left as they were: fields the encoder indexes whose value would grow in the peer's table
	H2TSKept     uint64 // left as they were: the app's tracestate, not ours, its name indexed
}

// Unchanged is the number of HTTP/2 header blocks that had a context filed but went
// out as they were.
func (c Counts) Unchanged() uint64 { return c.H2TooLarge + c.H2Failed + c.H2Late + c.H2Split }

// Kept is the number of trace context headers the app wrote (forwarded or its own)
// that went out as it wrote them, not naming the client span that sent them.
func (c Counts) Kept() uint64 {
	return c.HTTP1Split + c.HTTP1Missed + c.H2NotFound + c.H2Unsafe + c.H2TSKept
}

// Report says, in one line each, what went out without our context: nothing when all
// did.
func (c Counts) Report() []string {
	var lines []string
	if c.Unchanged() > 0 {
		lines = append(lines, fmt.Sprintf("outgoing traceparent: %d HTTP/2 requests went without it (%d: the header frame would have exceeded 16384 bytes, %d: the frame came in several writes, %d: the kernel refused the bytes, %d: written over a second after the call began); %d got it",
			c.Unchanged(), c.H2TooLarge, c.H2Split, c.H2Failed, c.H2Late, c.H2Inserted))
	}
	if c.Kept() > 0 {
		lines = append(lines, fmt.Sprintf("outgoing traceparent: %d trace context headers the app wrote itself (forwarded, or its own) went as written instead of ours (HTTP/1: %d came in two writes, %d were not found in the first 16 KiB of a write or the kernel refused the bytes; HTTP/2: %d traceparents were no literal in their block's one frame - an index, their value sent before on the connection, or in a block of several frames -, %d would have grown in the peer's compression table, %d tracestates not ours had an indexed name); %d got ours in place",
			c.Kept(), c.HTTP1Split, c.HTTP1Missed, c.H2NotFound, c.H2Unsafe, c.H2TSKept, c.HTTP1Replaced+c.HTTP1Tracestate+c.H2Replaced+c.H2Tracestate))
	}
	return lines
}

// Counts reads the counters (summed over CPUs), by their index in wire.bpf.c's enum
// wire_count.
func (w *Wire) Counts() (Counts, error) {
	m := w.objs.Map("wire_counts")
	read := func(i uint32) uint64 {
		var per []uint64
		if m.Lookup(i, &per) != nil {
			return 0
		}
		var n uint64
		for _, v := range per {
			n += v
		}
		return n
	}
	if m == nil {
		return Counts{}, errors.New("the socket programs have no counters (a bug)")
	}
	return Counts{HTTP1Inserted: read(0), H2Inserted: read(1), H2TooLarge: read(2), H2Failed: read(3), H2Late: read(4), H2Split: read(5),
		HTTP1Replaced: read(6), HTTP1Tracestate: read(7), HTTP1Split: read(8), HTTP1Missed: read(9),
		H2Replaced: read(10), H2Tracestate: read(11), H2NotFound: read(12), H2Unsafe: read(13), H2TSKept: read(14)}, nil
}

// Map returns one of the object's maps (for tests).
func (w *Wire) Map(name string) *ebpf.Map { return w.objs.Map(name) }

// Close detaches the programs: writes from then on go out as the app made them.
func (w *Wire) Close() error {
	err := w.sockets.Close()
	w.objs.Close()
	return err
}

// Check loads the socket programs and attaches them to this process's cgroup, then
// detaches them: what propagation will need of this host, for `launch doctor`.
func Check() kit.Finding {
	fail := func(err error) kit.Finding {
		return kit.Finding{Status: kit.Fail, Text: fmt.Sprintf("outgoing traceparent: %v: client spans are still made, without it", err)}
	}
	shared := kit.NewShared()
	defer shared.Close()
	w, err := Attach(os.Getpid(), shared)
	if err != nil {
		return fail(err)
	}
	if err := w.Close(); err != nil {
		return fail(fmt.Errorf("attached, but %w", err))
	}
	cgroup, _ := bpf.Cgroup2Path(os.Getpid())
	return kit.Finding{Status: kit.OK, Text: "outgoing traceparent: socket programs attach to the app's own cgroup v2 (here " + cgroup + "): they see the TCP connections of its processes only, no other container's or host process's" + withoutNetAdmin()}
}

// Limits is what propagation cannot do, whatever the host.
var Limits = kit.Finding{Status: kit.Limit, Text: "outgoing traceparent goes on plain HTTP/1 requests and plain HTTP/2 (h2c, gRPC without TLS) streams only: TLS (HTTPS, HTTPS/2, gRPC with TLS) is encrypted before the kernel sees it; those calls get client spans, and the next service starts a new trace"}

// OwnLimits is what propagation cannot do to the trace context an app writes itself.
var OwnLimits = kit.Finding{Status: kit.Limit, Text: "outgoing traceparent: a traceparent or tracestate the app writes itself (a proxy forwarding its caller's, or its own) gets the client span's in place, but goes as written where the kernel cannot change it safely: an HTTP/1 header line split across two writes, an HTTP/2 field sent as an index (its value sent before on the connection) or in a block of several frames, an HTTP/2 field the encoder indexes whose value would grow in the peer's compression table; each is counted and said when the launcher exits"}

// withoutNetAdmin notes that the socket programs attached without CAP_NET_ADMIN.
func withoutNetAdmin() string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil || data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0 {
		return ""
	}
	return " (without NET_ADMIN: SYS_ADMIN covers it on this kernel; add NET_ADMIN where a security module asks for it by name)"
}
