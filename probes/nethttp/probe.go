package nethttp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kit"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// Config is what the launcher can set of the net/http probes.
type Config struct {
	// Propagate inserts a traceparent into the app's outgoing plain HTTP/1 requests,
	// from the kernel (--propagate).
	Propagate bool
}

// Library is net/http for the probe kit.
func Library(cfg Config) kit.Library {
	lib := kit.Library{
		Name:   "net/http",
		Specs:  Specs,
		Object: objectSpec,
		// A call made with a context not derived from a request's starts its own
		// trace: never a parent by goroutine.
		Clients: map[string]kit.Lookup{ClientSpec.Name: kit.ByContext},
	}
	lib.Load = func(ctx context.Context, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
		return load(ctx, &lib, cfg, t, reps, env)
	}
	lib.Check = func(ctx context.Context, env kit.Env) []kit.Finding { return check(&lib) }
	return lib
}

// objectSpec is the embedded BPF object, parsed once (2 ms): the session starts that
// before the launcher needs it.
var objectSpec = sync.OnceValues(loadNethttp)

// Probe is the net/http instrumentation of one app: one BPF object for the server and
// client probes, and the socket programs that put the traceparent on the wire.
type Probe struct {
	*kit.Object
	propagate bool               // the socket programs are to be attached
	types     *offsets.TypeNames // names the dynamic types of client errors
	pid       int                // the app's, for types

	mu      sync.Mutex
	sockets *bpf.SocketPrograms
}

var _ kit.Probe = (*Probe)(nil)

// Programs put the traceparent of a client span into its request.
var propagationPrograms = []string{"request_write", "app_sockops", "inject"}

// load loads the programs of the specs the reports resolved, for the app's map layout
// (Swiss tables since Go 1.24).
func load(ctx context.Context, lib *kit.Library, cfg Config, t kit.Target, reps kit.Reports, env kit.Env) (kit.Probe, error) {
	layout := "_hmap"
	if offsets.VersionAtLeast(t.GoVersion, swissMapsSince) {
		layout = "_swiss"
	}
	p := &Probe{propagate: cfg.Propagate && env.TraceContext && reps.Enabled(ClientSpec.Name), pid: t.PID}
	spec := kit.ObjectSpec{
		Library: lib,
		Uprobes: []kit.Uprobe{
			{Spec: ServerSpec.Name, Symbol: serveHTTP, Entry: "server_entry" + layout, Return: "server_return"},
			{Spec: ClientSpec.Name, Symbol: roundTrip, Entry: "client_entry" + layout, Return: "client_return"},
		},
		Enable: map[string]string{ServerSpec.Name: "server_enabled", ClientSpec.Name: "client_enabled"},
		Decode: p.decode,
	}
	if p.propagate {
		spec.Programs = propagationPrograms
	}
	var err error
	if p.Object, err = kit.LoadObject(ctx, t, reps, env, spec); err != nil {
		return nil, err
	}
	return p, nil
}

// Attach attaches the uprobes and, to propagate, the socket programs and the uprobe on
// Request.write. Propagation that cannot be set up is said once; client spans are
// still made.
func (p *Probe) Attach(ctx context.Context) error {
	propagation := make(chan error, 1)
	if p.propagate {
		go func() { propagation <- p.attachPropagation(ctx) }()
	} else {
		propagation <- nil
	}
	err := p.Object.Attach(ctx)
	if perr := <-propagation; perr != nil && ctx.Err() == nil {
		slog.Warn(fmt.Sprintf("outgoing requests will not carry traceparent: %v (client spans are still made)", perr))
		go p.stopPropagation() // detaching waits out a grace period: not in the gate
	} else if perr != nil {
		err = errors.Join(err, perr)
	}
	if err != nil {
		p.stopPropagation()
	}
	return err
}

// attachPropagation attaches the socket programs to the app's cgroup, and the uprobe
// that tells them which request a write carries.
func (p *Probe) attachPropagation(ctx context.Context) error {
	write := kit.Uprobe{Spec: ClientSpec.Name, Symbol: requestWrite, Entry: "request_write"}
	if err := p.AttachUprobes(ctx, write); err != nil {
		return err
	}
	cgroup, release, err := bpf.Cgroup2Dir(p.Target().PID)
	if err != nil {
		return err
	}
	defer release()
	sockops, err := p.Program("app_sockops")
	if err != nil {
		return err
	}
	inject, err := p.Program("inject")
	if err != nil {
		return err
	}
	sockets, err := bpf.AttachSocketPrograms(cgroup, sockops, p.Map("app_sockets"), inject)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.sockets = sockets
	p.mu.Unlock()
	return nil
}

// propagating reports whether the socket programs are attached.
func (p *Probe) propagating() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sockets != nil
}

// stopPropagation detaches what propagation attached.
func (p *Probe) stopPropagation() error {
	err := p.DetachProgram("request_write")
	p.mu.Lock()
	sockets := p.sockets
	p.sockets = nil
	p.mu.Unlock()
	if sockets != nil {
		err = errors.Join(err, sockets.Close())
	}
	return err
}

// Configure sets the app's offsets and turns the probes on; propagation only with the
// client probe.
func (p *Probe) Configure(reps kit.Reports, inflight kit.Lookup) error {
	client := slices.Contains(p.Enabling(reps), ClientSpec.Name)
	if !client && p.propagating() {
		go p.stopPropagation() // detaching waits out a grace period: not in the gate
	}
	if client {
		p.types = offsets.NewTypeNames(p.Target().Path)
	}
	return p.ConfigureWith(reps, inflight, map[string]uint64{"propagate": boolValue(client && p.propagating())})
}

func boolValue(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// decode fills span from an event: the record is the C struct, 8-byte aligned in the
// ring buffer; its first word says which.
func (p *Probe) decode(raw []byte, span *telemetry.Span) bool {
	switch kit.RecordKind(raw) {
	case eventServer:
		if ev := kit.RecordAs[nethttpHttpServerEvent](raw); ev != nil {
			serverSpan(ev, span)
			return true
		}
	case eventClient:
		if ev := kit.RecordAs[nethttpHttpClientEvent](raw); ev != nil {
			p.clientSpan(ev, span)
			return true
		}
	}
	return false
}

// Event kinds, as the C program numbers them.
const (
	eventServer = 1
	eventClient = 2
)

// Detach removes the uprobes and the socket programs; events already queued can still
// be read.
func (p *Probe) Detach() error {
	err := p.stopPropagation()
	return errors.Join(err, p.Object.Detach())
}

// Close detaches the probe and frees what it holds.
func (p *Probe) Close() error {
	err := p.Detach()
	if p.types != nil {
		err = errors.Join(err, p.types.Close())
	}
	return errors.Join(err, p.Object.Close())
}

// check loads every program (both map layouts) and attaches the socket programs to
// this process's cgroup, then detaches them: what instrumenting an app will need of
// this host.
func check(lib *kit.Library) []kit.Finding {
	obj, err := kit.CheckObject(lib)
	if err != nil {
		return []kit.Finding{{Status: kit.Fail, Text: fmt.Sprintf("probes %s: %v", lib.SpecNames(), err)}}
	}
	defer obj.Close()
	return []kit.Finding{
		{Status: kit.OK, Text: fmt.Sprintf("probes %s: %d programs verified", lib.SpecNames(), obj.Programs)},
		checkPropagation(obj),
		{Status: kit.Limit, Text: "outgoing traceparent goes on plain HTTP/1 requests only: HTTPS is encrypted before the kernel sees it, and HTTP/2 (h2c) gets none yet; those calls get client spans, and the next service starts a new trace"},
	}
}

// checkPropagation attaches the socket programs to this process's cgroup and detaches
// them.
func checkPropagation(obj *kit.CheckedObject) kit.Finding {
	fail := func(err error) kit.Finding {
		return kit.Finding{Status: kit.Fail, Text: fmt.Sprintf("outgoing traceparent: %v: client spans are still made, without it", err)}
	}
	cgroup, release, err := bpf.Cgroup2Dir(os.Getpid())
	if err != nil {
		return fail(err)
	}
	defer release()
	sockops, err1 := obj.Program("app_sockops")
	inject, err2 := obj.Program("inject")
	if err := errors.Join(err1, err2); err != nil {
		return fail(err)
	}
	s, err := bpf.AttachSocketPrograms(cgroup, sockops, obj.Map("app_sockets"), inject)
	if err != nil {
		return fail(fmt.Errorf("cgroup %s: %w", cgroup, err))
	}
	if err := s.Close(); err != nil {
		return fail(fmt.Errorf("cgroup %s: attached, but %w", cgroup, err))
	}
	return kit.Finding{Status: kit.OK, Text: "outgoing traceparent: socket programs attach to cgroup v2 " + cgroup + withoutNetAdmin()}
}

// withoutNetAdmin notes that the socket programs attached without CAP_NET_ADMIN.
func withoutNetAdmin() string {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if unix.Capget(&hdr, &data[0]) != nil || data[0].Effective&(1<<unix.CAP_NET_ADMIN) != 0 {
		return ""
	}
	return " (without NET_ADMIN: SYS_ADMIN covers it on this kernel; add NET_ADMIN where a security module asks for it by name)"
}
