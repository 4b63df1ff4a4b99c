package main

import (
	"cmp"
	"encoding/hex"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
)

// span is one received span with the service that sent it.
type span struct {
	*tracepb.Span
	service string
}

// node is a span in its trace's tree.
type node struct {
	span
	children []*node
	// missingParent is the parent's ID when the span has one that was not received
	// (a remote parent, from an incoming traceparent): the span is a root here.
	missingParent string
	// loopParent is the parent's ID when parents lead back to the span (a malformed
	// export): the span is shown as a root.
	loopParent string
}

// trace is one trace's spans as trees, its roots in order of start.
type trace struct {
	id         string
	roots      []*node
	start, end uint64 // the earliest start and latest end of its spans, ns
	spans      int
	services   []string
}

// spansOf flattens exports into spans, each with its service.
func spansOf(reqs []*coltracepb.ExportTraceServiceRequest) []span {
	var out []span
	for _, r := range reqs {
		for _, rs := range r.ResourceSpans {
			service := attrString(rs.GetResource().GetAttributes(), "service.name")
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					out = append(out, span{s, service})
				}
			}
		}
	}
	return out
}

// buildTraces groups spans by trace and links each to its parent, whatever order they
// came in. A span whose parent is not among them is a root, and says so. Traces are
// in order of their first span's start, children in order of start.
func buildTraces(spans []span) []*trace {
	byTrace := map[string][]span{}
	var order []string
	for _, s := range spans {
		id := hex.EncodeToString(s.TraceId)
		if _, ok := byTrace[id]; !ok {
			order = append(order, id)
		}
		byTrace[id] = append(byTrace[id], s)
	}
	var traces []*trace
	for _, id := range order {
		traces = append(traces, buildTrace(id, byTrace[id]))
	}
	slices.SortStableFunc(traces, func(a, b *trace) int { return cmp.Compare(a.start, b.start) })
	return traces
}

func buildTrace(id string, spans []span) *trace {
	t := &trace{id: id, spans: len(spans)}
	nodes := make(map[string]*node, len(spans))
	for _, s := range spans {
		key := hex.EncodeToString(s.SpanId)
		if _, dup := nodes[key]; dup {
			continue // sent twice (an export retried): shown once
		}
		nodes[key] = &node{span: s}
		if t.start == 0 || s.StartTimeUnixNano < t.start {
			t.start = s.StartTimeUnixNano
		}
		t.end = max(t.end, s.EndTimeUnixNano)
		if !slices.Contains(t.services, s.service) {
			t.services = append(t.services, s.service)
		}
	}
	t.spans = len(nodes)
	for key, n := range nodes {
		parent := hex.EncodeToString(n.ParentSpanId)
		switch p, ok := nodes[parent]; {
		case parent == "" || parent == key:
			t.roots = append(t.roots, n)
		case !ok:
			n.missingParent = parent
			t.roots = append(t.roots, n)
		default:
			p.children = append(p.children, n)
		}
	}
	// Spans whose parents form a cycle (a malformed export) reach no root: shown as
	// roots so that none is lost.
	seen := map[*node]bool{}
	var visit func(*node)
	visit = func(n *node) {
		if seen[n] {
			return
		}
		seen[n] = true
		for _, c := range n.children {
			visit(c)
		}
	}
	for _, r := range t.roots {
		visit(r)
	}
	for _, n := range nodes {
		if !seen[n] {
			parent := hex.EncodeToString(n.ParentSpanId)
			p := nodes[parent]
			p.children = slices.DeleteFunc(p.children, func(c *node) bool { return c == n }) // the cycle, broken
			n.loopParent = parent
			t.roots = append(t.roots, n)
			visit(n)
		}
	}
	sortNodes(t.roots)
	return t
}

func sortNodes(ns []*node) {
	slices.SortFunc(ns, func(a, b *node) int {
		if c := cmp.Compare(a.StartTimeUnixNano, b.StartTimeUnixNano); c != 0 {
			return c
		}
		return strings.Compare(hex.EncodeToString(a.SpanId), hex.EncodeToString(b.SpanId))
	})
	for _, n := range ns {
		sortNodes(n.children)
	}
}

// bar is a span's place in its trace's timeline, [start, end] within [from, to], as
// width characters: filled where the span ran. A span has at least one character,
// however short, so that every span is seen.
func bar(start, end, from, to uint64, width int) string {
	if width <= 0 {
		return ""
	}
	if end < start {
		end = start
	}
	span := float64(to - from)
	if to <= from {
		span = 1
	}
	at := func(t uint64) float64 {
		t = min(max(t, from), to)
		return float64(t-from) / span * float64(width)
	}
	first := min(int(at(start)), width-1)
	last := max(int(at(end)+0.5), first+1) // exclusive
	last = min(last, width)
	return strings.Repeat("·", first) + strings.Repeat("█", last-first) + strings.Repeat("·", width-last)
}

// keyAttributes are the attributes a span line shows, when the span has them: what
// tells requests apart. The others (ports, user agent, protocol version) are left out.
var keyAttributes = []string{"url.path", "url.full", "http.response.status_code", "rpc.grpc.status_code",
	"server.address", "db.system.name", "db.system", "db.query.text", "messaging.destination.name", "error.type"}

// printTraces writes each trace as a tree, a waterfall bar before each span.
func printTraces(w io.Writer, traces []*trace, width int) {
	for _, t := range traces {
		fmt.Fprintf(w, "trace %s  %s  %d span%s  %s\n", t.id, strings.Join(t.services, ", "), t.spans, plural(t.spans),
			duration(t.end-t.start))
		for _, r := range t.roots {
			printNode(w, t, r, "", "", width)
		}
		fmt.Fprintln(w)
	}
}

// printNode writes n's line and its children's, lead being the tree's drawing before
// n's name and indent what comes before its children's.
func printNode(w io.Writer, t *trace, n *node, lead, indent string, width int) {
	var b strings.Builder
	b.WriteString("  ")
	b.WriteString(bar(n.StartTimeUnixNano, n.EndTimeUnixNano, t.start, t.end, width))
	b.WriteString("  ")
	b.WriteString(lead)
	b.WriteString(n.Name)
	fmt.Fprintf(&b, "  %s  %s", strings.TrimPrefix(n.Kind.String(), "SPAN_KIND_"), duration(n.EndTimeUnixNano-n.StartTimeUnixNano))
	if len(t.services) > 1 {
		b.WriteString("  @" + n.service)
	}
	switch n.GetStatus().GetCode() {
	case tracepb.Status_STATUS_CODE_ERROR:
		b.WriteString("  status=ERROR")
		if m := n.GetStatus().GetMessage(); m != "" {
			b.WriteString(" " + strconv.Quote(m))
		}
	case tracepb.Status_STATUS_CODE_OK:
		b.WriteString("  status=OK")
	}
	for _, k := range keyAttributes {
		if v, ok := attrText(n.Attributes, k); ok {
			if k == "server.address" {
				if p, ok := attrText(n.Attributes, "server.port"); ok {
					v += ":" + p
				}
			}
			fmt.Fprintf(&b, "  %s=%s", k, v)
		}
	}
	if n.missingParent != "" {
		fmt.Fprintf(&b, "  (parent %s not received)", n.missingParent)
	}
	if n.loopParent != "" {
		fmt.Fprintf(&b, "  (parent %s is among its own descendants)", n.loopParent)
	}
	fmt.Fprintln(w, b.String())
	for i, c := range n.children {
		if i == len(n.children)-1 {
			printNode(w, t, c, indent+"└─ ", indent+"   ", width)
		} else {
			printNode(w, t, c, indent+"├─ ", indent+"│  ", width)
		}
	}
}

// attrText is attribute key's value as text, long values cut short.
func attrText(attrs []*commonpb.KeyValue, key string) (string, bool) {
	for _, a := range attrs {
		if a.Key != key {
			continue
		}
		var s string
		switch v := a.Value.GetValue().(type) {
		case *commonpb.AnyValue_StringValue:
			s = strconv.Quote(v.StringValue)
			if len(v.StringValue) > 60 {
				s = strconv.Quote(v.StringValue[:57] + "...")
			}
			if !strings.ContainsAny(v.StringValue, " \"\\") && len(v.StringValue) <= 60 {
				s = v.StringValue // plain words need no quotes
			}
		case *commonpb.AnyValue_IntValue:
			s = strconv.FormatInt(v.IntValue, 10)
		case *commonpb.AnyValue_BoolValue:
			s = strconv.FormatBool(v.BoolValue)
		case *commonpb.AnyValue_DoubleValue:
			s = strconv.FormatFloat(v.DoubleValue, 'g', -1, 64)
		default:
			s = a.Value.String()
		}
		return s, true
	}
	return "", false
}

func attrString(attrs []*commonpb.KeyValue, key string) string {
	for _, a := range attrs {
		if a.Key == key {
			return a.Value.GetStringValue()
		}
	}
	return ""
}

// duration is ns as a duration, to the microsecond below 10 ms, shorter above.
func duration(ns uint64) string {
	d := time.Duration(ns)
	switch {
	case d < 10*time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < 10*time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(time.Millisecond).String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
