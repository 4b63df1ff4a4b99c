package nethttp

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// Server is the net/http server probe: loaded, then attached to one process.
type Server struct {
	objs   *bpf.Objects
	entry  string // the entry program for the target's map layout
	links  []link.Link
	reader *bpf.Reader
}

const offsetNone = ^uint64(0)

// LoadServer loads the probe's programs for a target built with Go goVersion: only the
// entry program for that Go's map layout. It needs nothing else from the target, so it
// runs while the target is analysed; the entry program (the large one) goes on loading
// in the background.
func LoadServer(goVersion string, ringSize int) (*Server, error) {
	spec, err := loadServer()
	if err != nil {
		return nil, err
	}
	s := &Server{entry: "server_entry_hmap"}
	unused := "server_entry_swiss"
	if offsets.VersionAtLeast(goVersion, swissMapsSince) {
		s.entry, unused = unused, s.entry
	}
	delete(spec.Programs, unused)
	if s.objs, err = bpf.LoadObjects(spec, ringSize, s.entry); err != nil {
		return nil, fmt.Errorf("load the net/http server probe: %w", err)
	}
	return s, nil
}

// Attach attaches the probe to process pid running the executable at path, at the
// functions rep resolved. It does nothing until Configure: the offsets may still be
// being read while the app waits at the start gate. The return uprobes are attached
// while the entry program is still being verified.
func (s *Server) Attach(path string, pid int, rep *offsets.ProbeReport) error {
	fn, ok := rep.Uprobe(serveHTTP)
	if !ok {
		return fmt.Errorf("%s not resolved", serveHTTP)
	}
	ret, err := s.objs.Program("server_return")
	if err != nil {
		return err
	}
	type attached struct {
		links []link.Link
		err   error
	}
	returns := make(chan attached, 1)
	go func() {
		l, err := bpf.AttachUprobes(path, pid, bpf.Uprobe{Symbol: serveHTTP + " (returns)", Program: ret, Offsets: fn.Returns})
		returns <- attached{l, err}
	}()
	entry, err := s.objs.Program(s.entry)
	var entryLinks []link.Link
	if err == nil {
		entryLinks, err = bpf.AttachUprobes(path, pid, bpf.Uprobe{Symbol: serveHTTP, Program: entry, Offsets: []uint64{fn.Offset}})
	}
	r := <-returns
	s.links = append(entryLinks, r.links...)
	if err == nil {
		err = r.err
	}
	if err != nil {
		s.Detach()
	}
	return err
}

// Configure sets the target's field offsets and enables the probe.
func (s *Server) Configure(goVersion string, rep *offsets.ProbeReport) error {
	field := func(f offsets.FieldRef) uint64 {
		if off, ok := rep.FieldOffset(f); ok {
			return off
		}
		return offsetNone
	}
	vars := map[string]uint64{
		"off_req_method":      field(reqMethod),
		"off_req_url":         field(reqURL),
		"off_req_proto_major": field(reqProtoMajor),
		"off_req_proto_minor": field(reqProtoMinor),
		"off_req_header":      field(reqHeader),
		"off_req_host":        field(reqHost),
		"off_req_remote_addr": field(reqRemoteAddr),
		"off_req_pattern":     field(reqPattern),
		"off_req_pat":         field(reqPat),
		"off_pattern_str":     field(patternStr),
		"off_url_path":        field(urlPath),
		"off_response_status": field(responseStatus),
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
	if err := s.objs.SetVariables(vars); err != nil {
		return err
	}
	var err error
	if s.reader, err = bpf.NewReader(s.objs.Map("events"), s.objs.Map("lost_events")); err != nil {
		return err
	}
	return s.objs.SetVariables(map[string]uint64{"configured": 1})
}

const serveHTTP = "net/http.serverHandler.ServeHTTP"

// Programs lists the probe's programs, for counting their runs.
func (s *Server) Programs() []*ebpf.Program {
	var progs []*ebpf.Program
	for _, name := range []string{s.entry, "server_return"} {
		if p, err := s.objs.Program(name); err == nil {
			progs = append(progs, p)
		}
	}
	return progs
}

// Run decodes events into spans for emit until ctx ends, then drains what is left.
func (s *Server) Run(ctx context.Context, emit func(*telemetry.Span)) {
	var span telemetry.Span
	s.reader.Run(ctx, func(raw []byte) {
		if len(raw) < int(unsafe.Sizeof(serverHttpServerEvent{})) {
			return
		}
		// The record is the C struct, 8-byte aligned in the ring buffer.
		ev := (*serverHttpServerEvent)(unsafe.Pointer(&raw[0]))
		serverSpan(ev, &span)
		emit(&span)
	})
}

// Lost is the number of spans the kernel dropped because the ring buffer was full.
func (s *Server) Lost() uint64 {
	if s.reader == nil {
		return 0
	}
	return s.reader.Lost()
}

// Detach removes the uprobes; events already queued can still be read.
func (s *Server) Detach() {
	bpf.CloseAll(s.links)
	s.links = nil
}

// Close detaches the probe and frees its programs and maps.
func (s *Server) Close() error {
	s.Detach()
	if s.reader != nil {
		s.reader.Close()
	}
	s.objs.Close()
	return nil
}

// serverSpan fills span from a server event, following the HTTP semantic conventions.
func serverSpan(ev *serverHttpServerEvent, span *telemetry.Span) {
	str := func(b []byte, n uint16) string { return string(b[:min(int(n), len(b))]) }
	method := str(ev.Method[:], ev.MethodLen)
	route := routeOf(str(ev.Route[:], ev.RouteLen))

	*span = telemetry.Span{
		TraceID: ev.Sc.TraceId,
		SpanID:  ev.Sc.SpanId,
		Kind:    trace.SpanKindServer,
		Start:   ev.StartNs,
		End:     ev.EndNs,
	}
	attrs := make([]attribute.KeyValue, 0, 12)
	if known := knownMethod(method); known {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method))
	} else {
		attrs = append(attrs, semconv.HTTPRequestMethodKey.String("_OTHER"), semconv.HTTPRequestMethodOriginal(method))
	}
	span.Name = method
	if !knownMethod(method) {
		span.Name = "HTTP"
	}
	if route != "" {
		span.Name += " " + route
		attrs = append(attrs, semconv.HTTPRoute(route))
	}
	attrs = append(attrs,
		semconv.URLPath(str(ev.Path[:], ev.PathLen)),
		semconv.URLScheme("http"))
	if ev.Status != 0 {
		attrs = append(attrs, semconv.HTTPResponseStatusCode(int(ev.Status)))
		if ev.Status >= 500 {
			span.Status = codes.Error
			attrs = append(attrs, semconv.ErrorTypeKey.String(strconv.Itoa(int(ev.Status))))
		}
	}
	if host, port := splitHostPort(str(ev.Host[:], ev.HostLen)); host != "" {
		attrs = append(attrs, semconv.ServerAddress(host))
		if port > 0 {
			attrs = append(attrs, semconv.ServerPort(port))
		}
	}
	if client, port := splitHostPort(str(ev.RemoteAddr[:], ev.RemoteLen)); client != "" {
		attrs = append(attrs, semconv.ClientAddress(client))
		if port > 0 {
			attrs = append(attrs, semconv.ClientPort(port))
		}
	}
	if v := protocolVersion(ev.ProtoMajor, ev.ProtoMinor); v != "" {
		attrs = append(attrs, semconv.NetworkProtocolVersion(v))
	}
	if ua := str(ev.UserAgent[:], ev.UaLen); ua != "" {
		attrs = append(attrs, semconv.UserAgentOriginal(ua))
	}
	span.Attributes = attrs

	if ev.HasParent != 0 {
		ts, _ := trace.ParseTraceState(str(ev.Tracestate[:], ev.TracestateLen))
		span.Parent = trace.NewSpanContext(trace.SpanContextConfig{
			TraceID:    ev.Sc.TraceId,
			SpanID:     ev.ParentSpanId,
			TraceFlags: trace.TraceFlags(ev.TraceFlags),
			TraceState: ts,
			Remote:     true,
		})
	}
}

// routeOf turns a ServeMux pattern ("[METHOD ][HOST]/PATH") into http.route (the path).
func routeOf(pattern string) string {
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		pattern = strings.TrimLeft(pattern[i+1:], " \t")
	}
	if i := strings.IndexByte(pattern, '/'); i > 0 {
		pattern = pattern[i:] // drop the host
	}
	return pattern
}

func knownMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH":
		return true
	}
	return false
}

func splitHostPort(hp string) (string, int) {
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return strings.Trim(hp, "[]"), 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

func protocolVersion(major, minor uint8) string {
	switch {
	case major == 0:
		return ""
	case major >= 2:
		return strconv.Itoa(int(major))
	}
	return strconv.Itoa(int(major)) + "." + strconv.Itoa(int(minor))
}
