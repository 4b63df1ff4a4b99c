package telemetry

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"golang.org/x/sys/unix"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

func monoNow() uint64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

func TestClockConvertsMonotonicToWall(t *testing.T) {
	c := NewClock()
	before := time.Now()
	w := c.Wall(monoNow())
	after := time.Now()
	if w.Before(before.Add(-100*time.Microsecond)) || w.After(after.Add(100*time.Microsecond)) {
		t.Errorf("wall %v outside [%v, %v]", w, before, after)
	}
}

// Spans keep the IDs the kernel chose, join their parent, and carry what the probe
// gave them; the sampler sees the parent's sampled flag.
func TestEmitKeepsKernelIDs(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	mem := &memSender{}
	p, err := newPipeline(context.Background(), App{Path: "/srv/app", PID: 42, GoVersion: "go1.26.8"}, testConfig(), []namedSender{{"memory", mem}})
	if err != nil {
		t.Fatal(err)
	}
	tid := trace.TraceID{1, 2, 3}
	parent := trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: trace.SpanID{9}, TraceFlags: trace.FlagsSampled, Remote: true})
	now := monoNow()
	p.Emit(&Span{TraceID: tid, SpanID: trace.SpanID{7}, Parent: parent, Kind: trace.SpanKindServer, Name: "GET /x",
		Start: now, End: now + 1000, Attributes: []attribute.KeyValue{attribute.String("k", "v")}, Status: codes.Error})
	unsampled := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{5}, SpanID: trace.SpanID{5}, Remote: true})
	p.Emit(&Span{TraceID: trace.TraceID{5}, SpanID: trace.SpanID{6}, Parent: unsampled, Name: "dropped", Start: now, End: now})
	p.Emit(&Span{TraceID: trace.TraceID{8}, SpanID: trace.SpanID{8}, Name: "root", Start: now, End: now})
	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	spans := mem.spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans exported, want 2 (the unsampled parent's child is dropped)", len(spans))
	}
	s := spans[0]
	if [16]byte(s.TraceId) != tid || [8]byte(s.SpanId) != (trace.SpanID{7}) || [8]byte(s.ParentSpanId) != (trace.SpanID{9}) ||
		s.Name != "GET /x" || s.Kind != tracepb.Span_SPAN_KIND_SERVER || s.Status.Code != tracepb.Status_STATUS_CODE_ERROR ||
		s.EndTimeUnixNano-s.StartTimeUnixNano != 1000 || s.Flags != 0x301 {
		t.Errorf("span %v", s)
	}
	if [16]byte(spans[1].TraceId) != (trace.TraceID{8}) || spans[1].ParentSpanId != nil || spans[1].Flags != 0x101 {
		t.Errorf("root span %v", spans[1])
	}
	attrs := map[string]string{}
	for _, kv := range mem.resource().Attributes {
		attrs[kv.Key] = fmt.Sprintf("%s %d", kv.Value.GetStringValue(), kv.Value.GetIntValue())
	}
	for k, v := range map[string]string{"service.name": "app 0", "process.pid": " 42", "process.runtime.version": "go1.26.8 0",
		"telemetry.distro.name": "otel-go-launcher 0", "deployment.environment.name": "test 0", "process.executable.path": "/srv/app 0"} {
		if attrs[k] != v {
			t.Errorf("resource %s = %q, want %q", k, attrs[k], v)
		}
	}
}

func TestServiceNameFromEnvironment(t *testing.T) {
	t.Setenv("OTEL_SERVICE_NAME", "checkout")
	res, err := appResource(context.Background(), App{Path: "/app"}, envResource(t))
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := res.Set().Value("service.name"); v.AsString() != "checkout" {
		t.Errorf("service.name %q", v.AsString())
	}
}

// Exporter and protocol names are read in any case, as the specification's enums; a
// name the launcher does not have is said and left out, the default taking its place
// if nothing is left: never tracing off without a word.
func TestExportersFromEnvironment(t *testing.T) {
	for _, c := range []struct {
		exporter, protocol string
		want               []string
		warned             bool
	}{
		{"", "", []string{"otlp"}, false}, {"otlp", "grpc", []string{"otlp"}, false}, {"otlp", "http/protobuf", []string{"otlp"}, false},
		{"console,otlp", "", []string{"console", "otlp"}, false}, {"none", "", nil, false},
		{"OTLP", "HTTP/Protobuf", []string{"otlp"}, false}, {" Console , OTLP ", "GRPC", []string{"console", "otlp"}, false},
		{"zipkin", "", []string{"otlp"}, true}, {"zipkin,console", "", []string{"console"}, true}, {"zipkin,none", "", nil, true},
		{"otlp", "http/json", []string{"otlp"}, true}, {"otlp", "thrift", []string{"otlp"}, true},
	} {
		cfg, err := otelconfig.From(vars{"OTEL_TRACES_EXPORTER": c.exporter, "OTEL_EXPORTER_OTLP_PROTOCOL": c.protocol}.get)
		if err != nil {
			t.Errorf("%q %q: %v", c.exporter, c.protocol, err)
			continue
		}
		exps, err := senders(cfg)
		if err != nil || !slices.Equal(cfg.Exporters, c.want) || len(exps) != len(c.want) {
			t.Errorf("%q %q: exporters %q, want %q (%v)", c.exporter, c.protocol, cfg.Exporters, c.want, err)
		}
		if (len(cfg.Warnings) > 0) != c.warned {
			t.Errorf("%q %q: warnings %q", c.exporter, c.protocol, cfg.Warnings)
		}
	}
	for p, want := range map[string]string{"HTTP/Protobuf": "http/protobuf", "GRPC": "grpc", "http/json": "http/protobuf", "thrift": "grpc"} {
		if cfg, _ := otelconfig.From(vars{"OTEL_EXPORTER_OTLP_PROTOCOL": p}.get); cfg.OTLP.Protocol != want {
			t.Errorf("OTEL_EXPORTER_OTLP_PROTOCOL=%s: %s, want %s", p, cfg.OTLP.Protocol, want)
		}
	}
	cfg, _ := otelconfig.From(vars{"OTEL_SDK_DISABLED": "true"}.get)
	if _, err := New(context.Background(), App{Path: "/app"}, cfg); err != ErrDisabled {
		t.Errorf("OTEL_SDK_DISABLED: %v", err)
	}
}

func TestContainerIDPattern(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, line := range []string{
		"0::/system.slice/docker-" + id + ".scope",
		"12:memory:/docker/" + id,
		"1234 24 0:23 /var/lib/docker/containers/" + id + "/hostname /etc/hostname rw",
		"0::/machine.slice/libpod-" + id + ".scope/container",
	} {
		if m := containerIDPattern.FindStringSubmatch(line); m == nil || m[1] != id {
			t.Errorf("%q: %v", line, m)
		}
	}
	if m := containerIDPattern.FindStringSubmatch("0::/user.slice/user-0.slice/session-1.scope"); m != nil {
		t.Errorf("matched a non-container cgroup: %v", m)
	}
}

// The pod's downward-API variables give the Kubernetes attributes of both signals'
// resource; OTEL_RESOURCE_ATTRIBUTES wins over them.
func TestKubernetesResource(t *testing.T) {
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES_POD_NAME", "checkout-7d9f")
	t.Setenv("K8S_POD_NAME", "ignored: the operator's name comes first")
	t.Setenv("K8S_NAMESPACE_NAME", "shop")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "node-3")
	t.Setenv("K8S_POD_UID", "")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "k8s.node.name=from-otel-resource-attributes")
	res, err := appResource(context.Background(), App{Path: "/app"}, envResource(t))
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"k8s.pod.name": "checkout-7d9f", "k8s.namespace.name": "shop",
		"k8s.node.name": "from-otel-resource-attributes", "k8s.pod.uid": ""} {
		if v, _ := res.Set().Value(attribute.Key(k)); v.Emit() != want {
			t.Errorf("%s = %q, want %q", k, v.Emit(), want)
		}
	}
}
