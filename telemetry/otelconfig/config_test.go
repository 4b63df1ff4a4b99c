package otelconfig

import (
	"context"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/resource"
)

// vars is an environment for From.
type vars map[string]string

func (v vars) get(name string) string { return v[name] }

// Where spans go, as the OTLP exporter specification says, and in plaintext by default.
func TestEndpoint(t *testing.T) {
	for _, c := range []struct {
		env      vars
		endpoint string
		insecure bool
		from     string
	}{
		{vars{}, "http://localhost:4317", true, ""},
		{vars{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "http://localhost:4318/v1/traces", true, ""},
		{vars{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://collector:4317"}, "https://collector:4317", false, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{vars{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector"}, "http://collector:443", true, "OTEL_EXPORTER_OTLP_ENDPOINT"}, // gRPC's default port
		{vars{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317"}, "https://collector:4317", false, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{vars{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", "OTEL_EXPORTER_OTLP_INSECURE": "true"}, "http://collector:4317", true, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{vars{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:1", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://b:2"}, "http://b:2", true, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{vars{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_ENDPOINT": "https://c:4318/base/"}, "https://c:4318/base/v1/traces", false, "OTEL_EXPORTER_OTLP_ENDPOINT"},
		{vars{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/custom"}, "http://c:4318/custom", true, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"},
		{vars{"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, "http://c:80/v1/traces", true, "OTEL_EXPORTER_OTLP_ENDPOINT"},
	} {
		cfg, err := From(c.env.get)
		if err != nil {
			t.Errorf("%v: %v", c.env, err)
			continue
		}
		if got := cfg.OTLP.Endpoint.String(); got != c.endpoint || cfg.OTLP.Insecure != c.insecure || cfg.OTLP.EndpointVar != c.from {
			t.Errorf("%v: %s insecure=%v from %q, want %s insecure=%v from %q", c.env, got, cfg.OTLP.Insecure, cfg.OTLP.EndpointVar, c.endpoint, c.insecure, c.from)
		}
	}
}

// OTEL_EXPORTER_OTLP_INSECURE is a boolean as the specification defines them: only
// "true", in any case, means plaintext; "1" or "t" do not (the SDK's exporters use TLS
// then), and a value that is neither true nor false is said.
func TestInsecureIsTrueOnly(t *testing.T) {
	for value, want := range map[string]struct {
		insecure, warned bool
	}{
		"true": {true, false}, "TRUE": {true, false}, "True": {true, false},
		"false": {false, false}, "FALSE": {false, false},
		"1": {false, true}, "t": {false, true}, "yes": {false, true}, "0": {false, true},
	} {
		for _, name := range []string{"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE"} {
			cfg, err := From(vars{"OTEL_EXPORTER_OTLP_ENDPOINT": "collector:4317", name: value}.get)
			if err != nil {
				t.Fatalf("%s=%s: %v", name, value, err)
			}
			warned := strings.Contains(strings.Join(cfg.Warnings, "\n"), name+"="+value)
			if cfg.OTLP.Insecure != want.insecure || warned != want.warned {
				t.Errorf("%s=%s: insecure %v, warned %v (%q); want %v, %v", name, value, cfg.OTLP.Insecure, warned, cfg.Warnings, want.insecure, want.warned)
			}
		}
	}
}

// An endpoint no export could reach is refused at once, naming the variable.
func TestBadEndpoint(t *testing.T) {
	for value, want := range map[string]string{
		"garbage":                "neither a URL nor HOST:PORT",
		"ftp://collector:4317":   `scheme "ftp"`,
		"http://collector:99999": "port 99999 is not 1-65535",
		"http://":                "no host",
		"http://user:pw@c:4317":  "credentials go in OTEL_EXPORTER_OTLP_HEADERS",
		"http://c:4317 x":        "not a URL",
	} {
		_, err := From(vars{"OTEL_EXPORTER_OTLP_ENDPOINT": value}.get)
		if err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_ENDPOINT="+value) || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v; want an error naming the variable and %q", value, err, want)
		}
	}
	if _, err := From(vars{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "collector:4318"}.get); err == nil ||
		!strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
		t.Errorf("http/protobuf without a scheme: %v", err)
	}
}

// Settings the specification says to ignore when invalid are warned about and
// defaulted; the rest are read as given.
func TestSettings(t *testing.T) {
	cfg, err := From(vars{
		"OTEL_EXPORTER_OTLP_HEADERS":        "api-key=abc%20def, x=1,broken",
		"OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "2500",
		"OTEL_EXPORTER_OTLP_COMPRESSION":    "gzip",
		"OTEL_BSP_SCHEDULE_DELAY":           "100",
		"OTEL_BSP_MAX_QUEUE_SIZE":           "many",
		"OTEL_BSP_MAX_EXPORT_BATCH_SIZE":    "64",
		"OTEL_TRACES_SAMPLER":               "bogus",
	}.get)
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.OTLP
	if o.Headers["api-key"] != "abc def" || o.Headers["x"] != "1" || len(o.Headers) != 2 || o.Timeout != 2500*time.Millisecond || o.Compression != "gzip" {
		t.Errorf("OTLP %+v", o)
	}
	if b := cfg.Batch; b.ScheduleDelay != 100*time.Millisecond || b.MaxQueueSize != DefaultMaxQueueSize || b.MaxExportBatchSize != 64 {
		t.Errorf("batch %+v", b)
	}
	if cfg.Sampling != DefaultSampling {
		t.Errorf("sampling %+v", cfg.Sampling)
	}
	for _, want := range []string{`"broken" is not key=value`, "OTEL_BSP_MAX_QUEUE_SIZE=many", "OTEL_TRACES_SAMPLER=bogus"} {
		if !strings.Contains(strings.Join(cfg.Warnings, "\n"), want) {
			t.Errorf("no warning about %s in %q", want, cfg.Warnings)
		}
	}
	if len(cfg.Warnings) != 3 {
		t.Errorf("warnings %q", cfg.Warnings)
	}
	if _, err := From(vars{"OTEL_EXPORTER_OTLP_CERTIFICATE": "/nonexistent/ca.pem"}.get); err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_CERTIFICATE=/nonexistent/ca.pem") {
		t.Errorf("missing CA file: %v", err)
	}
	if c, _ := From(vars{"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "garbage"}.get); !c.Disabled {
		t.Error("OTEL_SDK_DISABLED=TRUE: not disabled")
	}
}

// The metrics pipeline's variables: its own exporter list, endpoint (generic base +
// /v1/metrics, or the metrics-specific one as given), interval, timeout, temporality
// and exemplar filter; invalid values warned about and defaulted.
func TestMetricsSettings(t *testing.T) {
	cfg, err := From(vars{}.get)
	if err != nil {
		t.Fatal(err)
	}
	m := cfg.Metrics
	if !slices.Equal(m.Exporters, []string{"otlp"}) || m.OTLP.Endpoint.String() != "http://localhost:4317" || m.Interval != time.Minute ||
		m.Timeout != 30*time.Second || m.Temporality != "cumulative" || m.ExemplarFilter != "trace_based" {
		t.Errorf("defaults %+v", m)
	}
	cfg, err = From(vars{
		"OTEL_METRICS_EXPORTER":                             "console,otlp",
		"OTEL_EXPORTER_OTLP_PROTOCOL":                       "http/protobuf",
		"OTEL_EXPORTER_OTLP_ENDPOINT":                       "http://c:4318",
		"OTEL_EXPORTER_OTLP_METRICS_HEADERS":                "k=v",
		"OTEL_METRIC_EXPORT_INTERVAL":                       "250",
		"OTEL_METRIC_EXPORT_TIMEOUT":                        "soon",
		"OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": "Delta",
		"OTEL_METRICS_EXEMPLAR_FILTER":                      "sometimes",
	}.get)
	if err != nil {
		t.Fatal(err)
	}
	m = cfg.Metrics
	if !slices.Equal(m.Exporters, []string{"console", "otlp"}) || m.OTLP.Endpoint.String() != "http://c:4318/v1/metrics" || m.OTLP.Headers["k"] != "v" ||
		cfg.OTLP.Headers["k"] != "" || cfg.OTLP.Endpoint.String() != "http://c:4318/v1/traces" || m.Interval != 250*time.Millisecond ||
		m.Timeout != 30*time.Second || m.Temporality != "delta" || m.ExemplarFilter != "trace_based" {
		t.Errorf("settings %+v (traces %s)", m, cfg.OTLP.Endpoint)
	}
	if len(cfg.Warnings) != 2 {
		t.Errorf("warnings %q, want OTEL_METRIC_EXPORT_TIMEOUT's and OTEL_METRICS_EXEMPLAR_FILTER's", cfg.Warnings)
	}
	cfg, err = From(vars{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "http://m:9/custom", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_METRICS_EXPORTER": "none"}.get)
	if err != nil || len(cfg.Metrics.Exporters) != 0 {
		t.Errorf("none: %v %+v", err, cfg.Metrics)
	}
	// An endpoint the launcher cannot export metrics to turns them off, with a warning
	// and the reason doctor gives: the traces are still exported.
	cfg, err = From(vars{"OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": "garbage"}.get)
	if err != nil || len(cfg.Metrics.Exporters) != 0 || len(cfg.Exporters) != 1 || len(cfg.Warnings) != 1 || !strings.HasSuffix(cfg.Warnings[0], ": no metrics") ||
		!strings.Contains(cfg.Metrics.Off, "garbage") {
		t.Errorf("bad metrics endpoint: %v, metrics %+v, warnings %q", err, cfg.Metrics, cfg.Warnings)
	}
	// An exporter the launcher does not have (another SDK's) is said, and OTLP used.
	cfg, err = From(vars{"OTEL_METRICS_EXPORTER": "prometheus"}.get)
	if err != nil || !slices.Equal(cfg.Metrics.Exporters, []string{"otlp"}) || len(cfg.Warnings) != 1 || !strings.Contains(cfg.Warnings[0], "prometheus") {
		t.Errorf("prometheus: %v, metrics %v, warnings %q", err, cfg.Metrics.Exporters, cfg.Warnings)
	}
	if _, err := From(vars{"OTEL_EXPORTER_OTLP_ENDPOINT": "garbage"}.get); err == nil || strings.Count(err.Error(), "garbage") != 1 {
		t.Errorf("a bad generic endpoint is said once: %v", err)
	}
}

// The effective configuration doctor prints: defaults, replacements and no secret.
func TestEffectiveSettings(t *testing.T) {
	cfg, err := From(vars{"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25", "OTEL_PROPAGATORS": "Baggage",
		"OTEL_EXPORTER_OTLP_HEADERS": "api-key=s3cret", "OTEL_EXPORTER_OTLP_COMPRESSION": "GZIP", "OTEL_BSP_EXPORT_TIMEOUT": "0", "OTEL_METRICS_EXPORTER": "prometheus"}.get)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(cfg.Settings(), "\n")
	for _, want := range []string{
		"traces: otlp\n",
		"traces OTLP: http://localhost:4317 (grpc, plaintext, the default: set OTEL_EXPORTER_OTLP_ENDPOINT), timeout 10s, gzip, headers api-key (values not shown)",
		"sampler: parentbased_traceidratio 0.25",
		"propagation: no trace context (OTEL_PROPAGATORS has no tracecontext)",
		"W3C baggage not carried by the launcher",
		"batches: every 5s, up to 512 spans an export, 32768 spans queued per exporter, export timeout none",
		"metrics: otlp, every 1m0s, export timeout 30s, cumulative temporality, explicit bucket histogram, exemplars trace_based",
		"span attributes: at most 128 a span, values whole (the rest counted as dropped)",
		"span events: at most 128 a span, the latest, at most 128 attributes each; links: at most 128 a span, the latest, at most 128 attributes each (the rest counted as dropped)",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("no %q in\n%s", want, got)
		}
	}
	if strings.Contains(got, "s3cret") {
		t.Errorf("a header's value shown:\n%s", got)
	}
}

// The resource's variables give what the SDK's detector gives them, entry for entry.
func TestResourceAsTheSDK(t *testing.T) {
	for _, c := range []struct{ attrs, service string }{
		{"a=b", ""}, {" a = b , c=d ", ""}, {"a=b,bad,c=d", ""}, {"k=v%2C1%3Dx", ""}, {"k=%zz", ""}, {"a=b,a=c", ""},
		{"service.name=x", ""}, {"service.name=x", "checkout"}, {"", "checkout"}, {"a=b=c", ""}, {",,a=b,", ""}, {"a=", ""},
	} {
		t.Setenv("OTEL_RESOURCE_ATTRIBUTES", c.attrs)
		t.Setenv("OTEL_SERVICE_NAME", c.service)
		sdk, _ := resource.New(context.Background(), resource.WithFromEnv())
		cfg, err := FromEnv()
		if err != nil {
			t.Fatal(err)
		}
		ours := resource.NewSchemaless(cfg.Resource...)
		if !ours.Equal(sdk) {
			t.Errorf("OTEL_RESOURCE_ATTRIBUTES=%q OTEL_SERVICE_NAME=%q: %v, the SDK %v", c.attrs, c.service, ours.Attributes(), sdk.Attributes())
		}
	}
}

// A header the exporters could not send is left out and said, once, the others kept:
// a name that is not an HTTP token (as the SDK's exporters do), a value with control
// characters, and for gRPC what grpc-go refuses in metadata (the SDK keeps those, and
// every export fails). Values are decoded, then trimmed, as the SDK does.
func TestHeadersLeftOut(t *testing.T) {
	for _, c := range []struct {
		env      vars
		traces   map[string]string
		metrics  map[string]string
		warnings []string
	}{
		{vars{"OTEL_EXPORTER_OTLP_HEADERS": "x bad=1,api-key= k%20v ,ok=2"},
			map[string]string{"api-key": "k v", "ok": "2"}, map[string]string{"api-key": "k v", "ok": "2"},
			[]string{`OTEL_EXPORTER_OTLP_HEADERS: header name "x bad" is not a token: left out`}},
		{vars{"OTEL_EXPORTER_OTLP_TRACES_HEADERS": "api-key=k,x bad=1", "OTEL_EXPORTER_OTLP_METRICS_HEADERS": "a(b)=1,m=2"},
			map[string]string{"api-key": "k"}, map[string]string{"m": "2"},
			[]string{`OTEL_EXPORTER_OTLP_TRACES_HEADERS: header name "x bad" is not a token: left out`,
				`OTEL_EXPORTER_OTLP_METRICS_HEADERS: header name "a(b)" is not a token: left out`}},
		{vars{"OTEL_EXPORTER_OTLP_HEADERS": "a=1%0A2,b=2"}, map[string]string{"b": "2"}, map[string]string{"b": "2"},
			[]string{`OTEL_EXPORTER_OTLP_HEADERS: the value of header "a" has control characters: left out`}},
		// gRPC's metadata: keys [0-9a-z-_.] once lower-cased, printable ASCII values
		// (any bytes in a -bin key's); HTTP takes both.
		{vars{"OTEL_EXPORTER_OTLP_HEADERS": "X-Key=1,x!y=2,v=%C3%A9,k-bin=%C3%A9"},
			map[string]string{"X-Key": "1", "k-bin": "é"}, map[string]string{"X-Key": "1", "k-bin": "é"},
			[]string{`OTEL_EXPORTER_OTLP_HEADERS: header name "x!y" is not a gRPC metadata key (0-9 a-z - _ .): left out`,
				`OTEL_EXPORTER_OTLP_HEADERS: the value of header "v" is not printable ASCII, as gRPC metadata must be: left out`}},
		{vars{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_HEADERS": "X-Key=1,x!y=2,v=%C3%A9"},
			map[string]string{"X-Key": "1", "x!y": "2", "v": "é"}, map[string]string{"X-Key": "1", "x!y": "2", "v": "é"}, nil},
	} {
		cfg, err := From(c.env.get)
		if err != nil {
			t.Errorf("%v: %v", c.env, err)
			continue
		}
		if !maps.Equal(cfg.OTLP.Headers, c.traces) || !maps.Equal(cfg.Metrics.OTLP.Headers, c.metrics) {
			t.Errorf("%v: traces' headers %q, metrics' %q; want %q, %q", c.env, cfg.OTLP.Headers, cfg.Metrics.OTLP.Headers, c.traces, c.metrics)
		}
		if !slices.Equal(cfg.Warnings, c.warnings) {
			t.Errorf("%v: warnings %q, want %q", c.env, cfg.Warnings, c.warnings)
		}
	}
}

func TestSamplingFromEnv(t *testing.T) {
	for _, c := range []struct {
		sampler, arg string
		want         Sampling
	}{
		{"", "", DefaultSampling},
		{"parentbased_always_on", "", DefaultSampling},
		{"always_on", "", Sampling{Root: AlwaysOn, Ratio: 1}},
		{"always_off", "", Sampling{Root: AlwaysOff}},
		{"parentbased_always_off", "", Sampling{Root: AlwaysOff, ParentBased: true, Ratio: 1}},
		{"traceidratio", "0.25", Sampling{Root: TraceIDRatio, Ratio: 0.25}},
		{"parentbased_traceidratio", "", Sampling{Root: TraceIDRatio, ParentBased: true, Ratio: 1}},
		{"parentbased_traceidratio", "2", Sampling{Root: TraceIDRatio, ParentBased: true, Ratio: 1}}, // warned
		{"jaeger_remote", "", DefaultSampling},                                                       // warned
	} {
		e := &env{get: vars{"OTEL_TRACES_SAMPLER": c.sampler, "OTEL_TRACES_SAMPLER_ARG": c.arg}.get}
		if got := e.sampling(); got != c.want {
			t.Errorf("%s %s: %+v, want %+v", c.sampler, c.arg, got, c.want)
		}
	}
}

// OTEL_PROPAGATORS, names in any case: a list without tracecontext turns it off, as
// the SDK's, and says so unless it is "none".
func TestPropagatorsFromEnv(t *testing.T) {
	for _, c := range []struct {
		value            string
		traceContext, bg bool
		warned           bool
	}{
		{"", true, true, false}, {"tracecontext,baggage", true, true, false}, {"TraceContext, Baggage", true, true, false},
		{"tracecontext", true, false, false}, {"none", false, false, false}, {"tracecontext,none", false, false, false},
		{"baggage", false, true, true}, {"b3,tracecontext", true, false, true}, {"b3", false, false, true},
	} {
		e := &env{get: vars{"OTEL_PROPAGATORS": c.value}.get}
		tc, bg := e.propagators()
		if tc != c.traceContext || bg != c.bg || (len(e.warnings) > 0) != c.warned {
			t.Errorf("OTEL_PROPAGATORS=%q: tracecontext %v, baggage %v, warnings %q", c.value, tc, bg, e.warnings)
		}
	}
}
