package nethttp

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// Config tunes the probe.
type Config struct {
	RingBufferSize int                // bytes; a power of two, at least a page
	Sampling       telemetry.Sampling // decided in the kernel: outgoing traceparents carry it
	TraceContext   bool               // W3C trace context: join incoming traceparents, send outgoing ones
	Propagate      bool               // insert traceparent into the app's outgoing HTTP/1 requests
}

// Indexes of Specs.
const (
	server = iota
	client
)

// Probe is the net/http instrumentation of one process: one BPF object for the server
// and client probes, which share the map of server requests' contexts.
type Probe struct {
	cfg     Config
	objs    *bpf.Objects
	entry   [2]string      // the entry programs for the target's map layout
	links   [2][]link.Link // uprobes of each spec
	sockets *bpf.SocketPrograms
	reader  *bpf.Reader
	types   *offsets.TypeNames
	path    string
	pid     int
	enabled [2]bool
	progs   []string // attached programs, for run counts
}

const offsetNone = ^uint64(0)

// Load loads the programs of the specs whose functions resolved (reports in Specs
// order), for a target built with Go goVersion: the entry programs for its map layout.
// It needs nothing else from the target, so it runs while DWARF is read. The entry and
// socket programs (the ones the verifier takes time over) load in the background, each
// on its own; the small ones at once.
func Load(goVersion string, resolved []offsets.ProbeReport, cfg Config) (*Probe, error) {
	parsed, err := objectSpec()
	if err != nil {
		return nil, err
	}
	layout := "_hmap"
	if offsets.VersionAtLeast(goVersion, swissMapsSince) {
		layout = "_swiss"
	}
	p := &Probe{cfg: cfg, entry: [2]string{"server_entry" + layout, "client_entry" + layout}}
	fast, slow := []string{}, []string{}
	if resolved[server].Enabled {
		fast, slow = append(fast, "server_return"), append(slow, p.entry[server])
	}
	if resolved[client].Enabled {
		fast, slow = append(fast, "client_return"), append(slow, p.entry[client])
		if cfg.Propagate && cfg.TraceContext {
			// sk_msg loads apart: a kernel without what it uses still gets spans.
			fast, slow = append(fast, "request_write", "app_sockops"), append(slow, "inject")
		}
	}
	spec := parsed.Copy()
	for name := range spec.Programs {
		if !slices.Contains(fast, name) && !slices.Contains(slow, name) {
			delete(spec.Programs, name)
		}
	}
	if p.objs, err = bpf.LoadObjects(spec, cfg.RingBufferSize, slow...); err != nil {
		return nil, fmt.Errorf("load the net/http probe: %w", err)
	}
	p.objs.Preload(slow...)
	return p, nil
}

// objectSpec is the embedded BPF object, parsed once (2 ms): Prepare starts that
// before the launcher needs it.
var objectSpec = sync.OnceValues(loadNethttp)

// Prepare parses the BPF object in the background.
func Prepare() { go objectSpec() }

// uprobeGroup is one program at some offsets.
type uprobeGroup struct {
	spec    int
	program string
	bpf.Uprobe
}

// Attach attaches the probe to process pid running the executable at path, for each
// spec whose functions reps (in Specs order) resolved. It does nothing until Configure:
// the offsets may still be being read while the app waits at the start gate. All
// uprobes are registered at once, the small programs' while the large ones are still
// being verified.
func (p *Probe) Attach(path string, pid int, reps []offsets.ProbeReport) error {
	p.path, p.pid = path, pid
	var groups []uprobeGroup
	if reps[server].Enabled {
		fn, ok := reps[server].Uprobe(serveHTTP)
		if !ok {
			return fmt.Errorf("%s not resolved", serveHTTP)
		}
		groups = append(groups,
			uprobeGroup{server, p.entry[server], bpf.Uprobe{Symbol: serveHTTP, Offsets: []uint64{fn.Offset}}},
			uprobeGroup{server, "server_return", bpf.Uprobe{Symbol: serveHTTP + " (returns)", Offsets: fn.Returns}})
	}
	propagation := make(chan error, 1)
	if reps[client].Enabled {
		fn, ok1 := reps[client].Uprobe(roundTrip)
		write, ok2 := reps[client].Uprobe(requestWrite)
		if !ok1 || !ok2 {
			return fmt.Errorf("%s, %s not resolved", roundTrip, requestWrite)
		}
		groups = append(groups,
			uprobeGroup{client, p.entry[client], bpf.Uprobe{Symbol: roundTrip, Offsets: []uint64{fn.Offset}}},
			uprobeGroup{client, "client_return", bpf.Uprobe{Symbol: roundTrip + " (returns)", Offsets: fn.Returns}})
		if p.cfg.Propagate && p.cfg.TraceContext {
			go func() { propagation <- p.attachPropagation() }()
			groups = append(groups, uprobeGroup{client, "request_write", bpf.Uprobe{Symbol: requestWrite, Offsets: []uint64{write.Offset}}})
		} else {
			propagation <- nil
		}
	} else {
		propagation <- nil
	}

	type attached struct {
		group uprobeGroup
		links []link.Link
		err   error
	}
	results := make(chan attached, len(groups))
	for _, g := range groups {
		go func(g uprobeGroup) {
			prog, err := p.objs.Program(g.program) // waits for a slow one
			var links []link.Link
			if err == nil {
				g.Program = prog
				links, err = bpf.AttachUprobes(path, pid, g.Uprobe)
			}
			results <- attached{g, links, err}
		}(g)
	}
	var errs []error
	var writeLinks []link.Link
	for range groups {
		r := <-results
		if r.group.program == "request_write" {
			writeLinks = r.links // kept only if propagation is on
		} else {
			p.links[r.group.spec] = append(p.links[r.group.spec], r.links...)
		}
		if r.err != nil {
			errs = append(errs, r.err)
		} else {
			p.progs = append(p.progs, r.group.program)
		}
	}
	if err := <-propagation; err != nil {
		slog.Warn(fmt.Sprintf("outgoing requests will not carry traceparent: %v (client spans are still made)", err))
		go bpf.CloseAll(writeLinks) // waits out a grace period: not in the gate
		p.progs = slices.DeleteFunc(p.progs, func(name string) bool { return name == "request_write" })
	} else if p.sockets != nil {
		p.links[client] = append(p.links[client], writeLinks...)
		p.progs = append(p.progs, "inject")
	}
	if err := errors.Join(errs...); err != nil {
		p.Detach()
		return err
	}
	return nil
}

// attachPropagation attaches the socket programs to the app's cgroup.
func (p *Probe) attachPropagation() error {
	cgroup, release, err := bpf.Cgroup2Dir(p.pid)
	if err != nil {
		return err
	}
	defer release()
	sockops, err := p.objs.Program("app_sockops")
	if err != nil {
		return err
	}
	inject, err := p.objs.Program("inject")
	if err != nil {
		return err
	}
	p.sockets, err = bpf.AttachSocketPrograms(cgroup, sockops, p.objs.Map("app_sockets"), inject)
	return err
}

// Configure sets the target's field offsets and enables each spec reps (in Specs order)
// enables. A spec attached but not enabled (its fields are missing) is detached.
func (p *Probe) Configure(goVersion string, reps []offsets.ProbeReport) error {
	field := func(f offsets.FieldRef) uint64 {
		for _, r := range reps {
			if off, ok := r.FieldOffset(f); ok && r.Enabled {
				return off
			}
		}
		return offsetNone
	}
	vars := map[string]uint64{
		"off_req_method":       field(reqMethod),
		"off_req_url":          field(reqURL),
		"off_req_proto_major":  field(reqProtoMajor),
		"off_req_proto_minor":  field(reqProtoMinor),
		"off_req_header":       field(reqHeader),
		"off_req_host":         field(reqHost),
		"off_req_remote_addr":  field(reqRemoteAddr),
		"off_req_pattern":      field(reqPattern),
		"off_req_pat":          field(reqPat),
		"off_req_ctx":          field(reqCtx),
		"off_pattern_str":      field(patternStr),
		"off_url_scheme":       field(urlScheme),
		"off_url_host":         field(urlHost),
		"off_url_path":         field(urlPath),
		"off_url_rawquery":     field(urlRawQuery),
		"off_response_status":  field(responseStatus),
		"off_resp_status_code": field(respStatusCode),
		"off_resp_proto_major": field(respProtoMajor),
		"off_resp_proto_minor": field(respProtoMinor),
		"sampler_root":         uint64(p.cfg.Sampling.Root),
		"sampler_parent_based": boolVar(p.cfg.Sampling.ParentBased),
		"sampler_ratio_bound":  p.cfg.Sampling.RatioBound(),
		"extract":              boolVar(p.cfg.TraceContext),
	}
	if offsets.VersionAtLeast(goVersion, swissMapsSince) {
		vars["off_swiss_dirptr"] = field(swissDirPtr)
		vars["off_swiss_dirlen"] = field(swissDirLen)
		vars["off_table_groups"] = field(tableGroups)
		vars["off_groups_data"] = field(groupsData)
		vars["off_groups_mask"] = field(groupsMask)
	} else {
		vars["off_hmap_B"] = field(hmapB)
		vars["off_hmap_buckets"] = field(hmapBuckets)
		vars["off_hmap_oldbuckets"] = field(hmapOldbuckets)
	}
	for i := range p.enabled {
		p.enabled[i] = reps[i].Enabled && len(p.links[i]) > 0
		if !p.enabled[i] && len(p.links[i]) > 0 {
			go bpf.CloseAll(p.links[i]) // waits out a grace period: not in the gate
			p.links[i] = nil
		}
	}
	if !p.enabled[client] && p.sockets != nil {
		p.sockets.Close()
		p.sockets = nil
	}
	if !p.enabled[server] && !p.enabled[client] {
		return errors.New("no net/http probe enabled")
	}
	if err := p.objs.SetVariables(vars); err != nil {
		return err
	}
	var err error
	if p.reader, err = bpf.NewReader(p.objs.Map("events"), p.objs.Map("lost_events")); err != nil {
		return err
	}
	p.types = offsets.NewTypeNames(p.path)
	// Last: the probes act from here on.
	return p.objs.SetVariables(map[string]uint64{
		"propagate":      boolVar(p.sockets != nil),
		"server_enabled": boolVar(p.enabled[server]),
		"client_enabled": boolVar(p.enabled[client]),
	})
}

func boolVar(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// Programs lists the probe's attached programs, for counting their runs.
func (p *Probe) Programs() []*ebpf.Program {
	var progs []*ebpf.Program
	for _, name := range p.progs {
		if prog, err := p.objs.Program(name); err == nil {
			progs = append(progs, prog)
		}
	}
	return progs
}

// Run decodes events into spans for emit until ctx ends, then drains what is left.
func (p *Probe) Run(ctx context.Context, emit func(*telemetry.Span)) {
	var span telemetry.Span
	p.reader.Run(ctx, func(raw []byte) {
		if len(raw) < 4 {
			return
		}
		// The record is the C struct, 8-byte aligned in the ring buffer; its first
		// word says which.
		switch binary.NativeEndian.Uint32(raw) {
		case eventServer:
			if len(raw) < int(unsafe.Sizeof(nethttpHttpServerEvent{})) {
				return
			}
			serverSpan((*nethttpHttpServerEvent)(unsafe.Pointer(&raw[0])), &span)
		case eventClient:
			if len(raw) < int(unsafe.Sizeof(nethttpHttpClientEvent{})) {
				return
			}
			p.clientSpan((*nethttpHttpClientEvent)(unsafe.Pointer(&raw[0])), &span)
		default:
			return
		}
		emit(&span)
	})
}

// Event kinds, as the C program numbers them.
const (
	eventServer = 1
	eventClient = 2
)

// Lost is the number of spans the kernel dropped because the ring buffer was full.
func (p *Probe) Lost() uint64 {
	if p.reader == nil {
		return 0
	}
	return p.reader.Lost()
}

// Detach removes the uprobes and the socket programs; events already queued can
// still be read.
func (p *Probe) Detach() {
	var wg sync.WaitGroup
	for i := range p.links {
		wg.Add(1)
		go func(links []link.Link) {
			defer wg.Done()
			bpf.CloseAll(links)
		}(p.links[i])
		p.links[i] = nil
	}
	if p.sockets != nil {
		p.sockets.Close()
		p.sockets = nil
	}
	wg.Wait()
}

// Close detaches the probe and frees its programs and maps.
func (p *Probe) Close() error {
	p.Detach()
	if p.reader != nil {
		p.reader.Close()
	}
	if p.types != nil {
		p.types.Close()
	}
	p.objs.Close()
	return nil
}

// Check loads every program of the probe (both map layouts) and attaches the socket
// programs to this process's cgroup, then detaches them: what instrumenting an app will
// need of this host. For `launch doctor`.
func Check() bpf.HostCheck {
	var c bpf.HostCheck
	spec, err := loadNethttp()
	if err != nil {
		c.Load = err
		return c
	}
	var names []string
	for name := range spec.Programs {
		names = append(names, name)
	}
	objs, err := bpf.LoadObjects(spec, 4096, names...)
	if err != nil {
		c.Load = err
		return c
	}
	defer objs.Close()
	objs.Preload(names...) // each on its own, in parallel
	for _, name := range names {
		if _, err := objs.Program(name); err != nil && c.Load == nil {
			c.Load = err
		} else if err == nil {
			c.Programs++
		}
	}
	cgroup, release, err := bpf.Cgroup2Dir(os.Getpid())
	if c.Sockets = err; err != nil {
		return c
	}
	defer release()
	c.Cgroup = cgroup
	sockops, err1 := objs.Program("app_sockops")
	inject, err2 := objs.Program("inject")
	if c.Sockets = errors.Join(err1, err2); c.Sockets != nil {
		return c
	}
	s, err := bpf.AttachSocketPrograms(c.Cgroup, sockops, objs.Map("app_sockets"), inject)
	if c.Sockets = err; err == nil {
		s.Close()
	}
	return c
}
