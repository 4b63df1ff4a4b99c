// Package otelconfig is the OpenTelemetry configuration of a traced app: every OTEL_*
// variable the launcher honours (exporters, OTLP endpoints, sampler, propagators,
// batching, attribute limits, metrics, the resource), read once, as the SDK's
// environment specification says, into one Config that the spans, the metrics, the
// resource and `launch doctor` all take, and that `launch wrap` uses to check what it
// puts in an image. Invalid values are replaced by their defaults and said (Warnings),
// never a reason to stop tracing unless no export could work. It reads and imports
// nothing else - no exporter, no SDK - so any command can check a configuration.
package otelconfig

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/net/http/httpguts"
)

// Config is the OpenTelemetry configuration, read once from the environment as the
// specification defines it (FromEnv); the launcher's flags go on top. Everything
// that builds telemetry or checks it (`launch doctor`) takes it from here, so what is
// checked is what the exporter does.
type Config struct {
	Disabled     bool     // OTEL_SDK_DISABLED=true: no telemetry at all
	Exporters    []string // OTEL_TRACES_EXPORTER without "none": "otlp", "console"
	OTLP         OTLP     // OTEL_EXPORTER_OTLP_[TRACES_]*
	Sampling     Sampling // OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
	TraceContext bool     // OTEL_PROPAGATORS has tracecontext (the default)
	Baggage      bool     // OTEL_PROPAGATORS has baggage (the default): not carried by the launcher, a limit said
	Batch        Batch    // OTEL_BSP_*
	Metrics      Metrics  // OTEL_METRICS_EXPORTER, OTEL_METRIC_*, OTEL_EXPORTER_OTLP_[METRICS_]*
	// Resource is what the environment says of the app (OTEL_RESOURCE_ATTRIBUTES,
	// OTEL_SERVICE_NAME, the pod's variables), later entries winning: it overrides
	// what the launcher detects, on spans and metrics alike.
	Resource []attribute.KeyValue
	Limits   Limits // OTEL_[SPAN_]ATTRIBUTE_*_LIMIT, OTEL_SPAN_{EVENT,LINK}_COUNT_LIMIT, OTEL_{EVENT,LINK}_ATTRIBUTE_COUNT_LIMIT
	// Warnings are settings the specification says to replace, when invalid, by their
	// default: each says which and what was used instead.
	Warnings []string
}

// OTLP is the OTLP trace exporter's configuration.
type OTLP struct {
	Protocol string // "grpc" or "http/protobuf"
	// Endpoint is where spans go: for gRPC the scheme and HOST:PORT, for
	// http/protobuf the whole URL (the generic endpoint with /v1/traces added).
	Endpoint *url.URL
	// EndpointVar is the variable Endpoint came from, "" for the default.
	EndpointVar       string
	Insecure          bool // plaintext: an http:// endpoint, or OTEL_EXPORTER_OTLP_INSECURE for a gRPC endpoint without a scheme
	Headers           map[string]string
	Timeout           time.Duration
	Compression       string // "gzip", or "" for none
	Certificate       string // PEM file of the CAs that verify the collector
	ClientCertificate string // PEM files of the client's certificate and key, for mTLS
	ClientKey         string
}

// Metrics is the metrics pipeline's configuration: the request, call and operation
// duration histograms made from the probes' spans (every one, sampled or not).
type Metrics struct {
	Exporters []string // OTEL_METRICS_EXPORTER without "none": "otlp", "console"
	// Off says why there are no metrics though OTEL_METRICS_EXPORTER asked for some
	// (their endpoint's settings are wrong), "" otherwise.
	Off  string
	OTLP OTLP // OTEL_EXPORTER_OTLP_[METRICS_]*
	// Interval and Timeout are the periodic reader's: OTEL_METRIC_EXPORT_INTERVAL and
	// OTEL_METRIC_EXPORT_TIMEOUT.
	Interval, Timeout time.Duration
	// Temporality is OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE: "cumulative"
	// (the default), "delta" or "lowmemory".
	Temporality string
	// HistogramAggregation is OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION:
	// "explicit_bucket_histogram" (the default: the conventions' buckets) or
	// "base2_exponential_bucket_histogram".
	HistogramAggregation string
	// ExemplarFilter is OTEL_METRICS_EXEMPLAR_FILTER: "trace_based" (the default: a
	// measurement of a sampled span may be an exemplar), "always_on" or "always_off".
	ExemplarFilter string
}

// Batch is the batch span processor's configuration.
type Batch struct {
	ScheduleDelay time.Duration
	ExportTimeout time.Duration
	// MaxQueueSize bounds the spans waiting for export, per exporter; past it, spans
	// are dropped and counted. OTEL_BSP_MAX_QUEUE_SIZE, or launch --max-queue.
	MaxQueueSize       int
	MaxExportBatchSize int
}

// DefaultMaxQueueSize is the launcher's bound on queued spans, larger than the SDK's
// 2048: it queues spans as OTLP bytes (~300 a span for an HTTP server), not as span
// objects, and 32,768 of them (~10 MB) ride out a collector stalled for 2 s at
// 16,000 spans a second.
const DefaultMaxQueueSize = 32768

// WithMaxQueueSize is b with MaxQueueSize n (n > 0), and the export batch no larger.
func (b Batch) WithMaxQueueSize(n int) Batch {
	b.MaxQueueSize = n
	b.MaxExportBatchSize = min(b.MaxExportBatchSize, n)
	return b
}

// The specification's defaults.
const (
	defaultGRPCEndpoint    = "http://localhost:4317"
	defaultHTTPEndpoint    = "http://localhost:4318"
	defaultTimeout         = 10 * time.Second
	defaultMetricsInterval = 60 * time.Second
	defaultMetricsTimeout  = 30 * time.Second
)

// Signals: their OTLP variables' infix and their HTTP path.
type signal struct{ name, path string }

var (
	tracesSignal  = signal{"TRACES", "/v1/traces"}
	metricsSignal = signal{"METRICS", "/v1/metrics"}
)

var defaultBatch = Batch{ScheduleDelay: 5 * time.Second, ExportTimeout: 30 * time.Second, MaxQueueSize: DefaultMaxQueueSize, MaxExportBatchSize: 512}

// FromEnv reads the configuration from the environment. An error names the
// variable and says what it wants: with that setting, no span could be exported.
func FromEnv() (Config, error) { return From(os.Getenv) }

// FromList reads the configuration from KEY=VALUE pairs, the last of a key
// winning as in a process's environment: what launch wrap puts in an image's config,
// checked by the same reader the launcher runs. The files its settings name are in
// the image, not here: they are not looked for.
func FromList(list []string) (Config, error) {
	vars := map[string]string{}
	for _, kv := range list {
		if k, v, ok := strings.Cut(kv, "="); ok {
			vars[k] = v
		}
	}
	e := &env{get: func(name string) string { return vars[name] }, elsewhere: true}
	return e.config()
}

// env reads the variables of one configuration.
type env struct {
	get      func(string) string
	warnings []string
	// elsewhere: the environment is another machine's (an image's), whose files
	// cannot be checked from here.
	elsewhere bool
}

// warn notes a setting replaced by its default, once (a generic variable is read for
// each signal).
func (e *env) warn(format string, args ...any) {
	if w := fmt.Sprintf(format, args...); !slices.Contains(e.warnings, w) {
		e.warnings = append(e.warnings, w)
	}
}

// signal is the first of the signal-specific variable and the generic one that is set:
// OTEL_EXPORTER_OTLP_TRACES_X, else OTEL_EXPORTER_OTLP_X.
func (e *env) signal(sig signal, suffix string) (name, value string) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_" + sig.name + "_" + suffix, "OTEL_EXPORTER_OTLP_" + suffix} {
		if v := strings.TrimSpace(e.get(name)); v != "" {
			return name, v
		}
	}
	return "", ""
}

// From reads the configuration from the variables getenv gives, as FromEnv does from
// the process's environment.
func From(getenv func(string) string) (Config, error) { return (&env{get: getenv}).config() }

func (e *env) config() (Config, error) {
	var c Config
	// A boolean as the specification has them: only "true", in any case, is true;
	// anything else but "false" is said (1 and yes do not disable).
	if v := strings.TrimSpace(e.get("OTEL_SDK_DISABLED")); strings.EqualFold(v, "true") {
		return Config{Disabled: true}, nil
	} else if v != "" && !strings.EqualFold(v, "false") {
		e.warn("OTEL_SDK_DISABLED=%s: only true (in any case) disables: tracing and metrics stay on", v)
	}
	var errs []error
	var err error
	c.Exporters = e.exporters("OTEL_TRACES_EXPORTER")
	if c.OTLP, err = e.otlp(tracesSignal); err != nil {
		errs = append(errs, err)
	}
	if c.Metrics, err = e.metrics(); err != nil {
		// Metrics the launcher cannot export are no reason to lose the traces: said,
		// and off. (A generic variable's error is the traces' error already.)
		if len(errs) == 0 || !strings.Contains(errs[len(errs)-1].Error(), err.Error()) {
			e.warn("%s: no metrics", strings.ReplaceAll(err.Error(), "\n", "; "))
		}
		c.Metrics.Exporters = nil
		c.Metrics.Off = strings.ReplaceAll(err.Error(), "\n", "; ")
	}
	c.Sampling = e.sampling()
	c.TraceContext, c.Baggage = e.propagators()
	c.Batch = e.batch()
	c.Resource = e.resource()
	c.Limits = e.limits()
	c.Warnings = e.warnings
	return c, errors.Join(errs...)
}

// exporters reads a signal's exporter list (OTEL_TRACES_EXPORTER, OTEL_METRICS_EXPORTER):
// otlp by default, "none" for none, names in any case. A name the launcher does not
// have is said and left out; if none is left (and "none" was not asked for), the
// default is used: a typo or an exporter of another SDK (zipkin, prometheus) must not
// turn the signal off without a word.
func (e *env) exporters(name string) []string {
	raw := strings.TrimSpace(e.get(name))
	if raw == "" {
		return []string{"otlp"}
	}
	var exps, unknown []string
	none := false
	for _, exp := range strings.Split(raw, ",") {
		switch exp = strings.ToLower(strings.TrimSpace(exp)); exp {
		case "otlp", "console":
			if !slices.Contains(exps, exp) {
				exps = append(exps, exp)
			}
		case "none":
			none = true
		case "":
		default:
			unknown = append(unknown, exp)
		}
	}
	if len(unknown) > 0 {
		using := "using " + strings.Join(exps, ", ")
		if len(exps) == 0 && !none {
			exps, using = []string{"otlp"}, "using otlp, the default"
		} else if len(exps) == 0 {
			using = "none left"
		}
		e.warn("%s=%s: %s not an exporter the launcher has (otlp, console, none): left out, %s", name, raw, strings.Join(unknown, ", "), using)
	}
	return exps
}

// metrics reads the metrics pipeline's variables.
func (e *env) metrics() (Metrics, error) {
	m := Metrics{Interval: defaultMetricsInterval, Timeout: defaultMetricsTimeout}
	var errs []error
	var err error
	m.Exporters = e.exporters("OTEL_METRICS_EXPORTER")
	if len(m.Exporters) > 0 {
		if m.OTLP, err = e.otlp(metricsSignal); err != nil {
			errs = append(errs, err)
		}
	}
	e.milliseconds("OTEL_METRIC_EXPORT_INTERVAL", &m.Interval, false)
	e.milliseconds("OTEL_METRIC_EXPORT_TIMEOUT", &m.Timeout, false)
	m.Temporality = e.choice("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "cumulative", "delta", "lowmemory")
	m.ExemplarFilter = e.choice("OTEL_METRICS_EXEMPLAR_FILTER", "trace_based", "always_on", "always_off")
	m.HistogramAggregation = e.choice("OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION", "explicit_bucket_histogram", "base2_exponential_bucket_histogram")
	return m, errors.Join(errs...)
}

// choice reads a variable that takes one of a few values, case aside: def (the first)
// when unset or, with a warning, invalid.
func (e *env) choice(name, def string, others ...string) string {
	raw := strings.TrimSpace(e.get(name))
	v := strings.ToLower(raw)
	if v == "" {
		return def
	}
	allowed := append([]string{def}, others...)
	if slices.Contains(allowed, v) {
		return v
	}
	e.warn("%s=%s: want %s or %s: using %s", name, raw, strings.Join(allowed[:len(allowed)-1], ", "), allowed[len(allowed)-1], def)
	return def
}

// milliseconds reads a duration variable in milliseconds into dst, which holds its
// default; zero only if zeroOK.
func (e *env) milliseconds(name string, dst *time.Duration, zeroOK bool) {
	v := strings.TrimSpace(e.get(name))
	if v == "" {
		return
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n == 0 && !zeroOK {
		e.warn("%s=%s: want milliseconds: using %d", name, v, dst.Milliseconds())
		return
	}
	*dst = time.Duration(n) * time.Millisecond
}

func (e *env) otlp(sig signal) (OTLP, error) {
	o := OTLP{Protocol: "grpc", Timeout: defaultTimeout}
	if name, p := e.signal(sig, "PROTOCOL"); p != "" {
		// Values in any case, as the specification's enums. http/json goes to the same
		// port and path as http/protobuf, which every OTLP receiver takes too.
		switch lp := strings.ToLower(p); lp {
		case "grpc", "http/protobuf":
			o.Protocol = lp
		case "http/json":
			o.Protocol = "http/protobuf"
			e.warn("%s=%s: the launcher sends OTLP/HTTP as protobuf only: using http/protobuf", name, p)
		default:
			e.warn("%s=%s: want grpc or http/protobuf: using grpc", name, p)
		}
	}
	// A boolean as the specification has them: only "true", in any case, is true;
	// anything else but "false" is said once.
	if name, insecure := e.signal(sig, "INSECURE"); insecure != "" {
		o.Insecure = strings.EqualFold(insecure, "true")
		if !o.Insecure && !strings.EqualFold(insecure, "false") {
			e.warn("%s=%s: only true (in any case) means plaintext: using TLS", name, insecure)
		}
	}
	if err := o.endpoint(e, sig); err != nil {
		return o, err
	}
	if name, h := e.signal(sig, "HEADERS"); h != "" {
		o.Headers = e.headers(name, h, o.Protocol)
	}
	if name, t := e.signal(sig, "TIMEOUT"); t != "" {
		ms, err := strconv.Atoi(t)
		if err != nil || ms < 0 {
			e.warn("%s=%s: want milliseconds: using %d", name, t, defaultTimeout.Milliseconds())
		} else {
			o.Timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if name, c := e.signal(sig, "COMPRESSION"); c != "" {
		switch strings.ToLower(c) {
		case "gzip":
			o.Compression = "gzip"
		case "none":
		default:
			e.warn("%s=%s: want gzip or none: using none", name, c)
		}
	}
	var errs []error
	for _, f := range []struct {
		suffix string
		dst    *string
	}{{"CERTIFICATE", &o.Certificate}, {"CLIENT_CERTIFICATE", &o.ClientCertificate}, {"CLIENT_KEY", &o.ClientKey}} {
		name, path := e.signal(sig, f.suffix)
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil && !e.elsewhere {
			errs = append(errs, fmt.Errorf("%s=%s: %w", name, path, err))
		}
		*f.dst = path
	}
	if (o.ClientCertificate == "") != (o.ClientKey == "") {
		errs = append(errs, errors.New("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together: set both or neither"))
	}
	return o, errors.Join(errs...)
}

// endpoint resolves where a signal's data goes, as the OTLP exporter specification
// says: the signal-specific variable is used as it is; the generic one is a base URL,
// to which http/protobuf adds /v1/traces (/v1/metrics); the default is
// http://localhost:4317 (gRPC) or http://localhost:4318/v1/traces, plaintext. A gRPC
// endpoint may omit the scheme.
func (o *OTLP) endpoint(e *env, sig signal) error {
	name, raw := "", ""
	specific := "OTEL_EXPORTER_OTLP_" + sig.name + "_ENDPOINT"
	for _, n := range []string{specific, "OTEL_EXPORTER_OTLP_ENDPOINT"} {
		if v := strings.TrimSpace(e.get(n)); v != "" {
			name, raw = n, v
			break
		}
	}
	o.EndpointVar = name
	if raw == "" {
		raw = defaultGRPCEndpoint
		if o.Protocol == "http/protobuf" {
			raw = defaultHTTPEndpoint
		}
	}
	want := "want a URL such as http://collector:4317"
	if o.Protocol == "http/protobuf" {
		want = "want a URL such as http://collector:4318"
	}
	bad := func(why string) error {
		return fmt.Errorf("%s=%s: %s: %s", name, raw, why, want)
	}
	if name == "" {
		bad = func(why string) error { return fmt.Errorf("default OTLP endpoint %s: %s", raw, why) }
	}
	if o.Protocol == "grpc" && !strings.Contains(raw, "://") {
		// HOST:PORT: TLS unless OTEL_EXPORTER_OTLP_INSECURE=true.
		if _, port, err := net.SplitHostPort(raw); err != nil || port == "" {
			return bad("neither a URL nor HOST:PORT")
		}
		scheme := "https"
		if o.Insecure {
			scheme = "http"
		}
		raw = scheme + "://" + raw
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return bad("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return bad(fmt.Sprintf("scheme %q", u.Scheme))
	case u.Hostname() == "":
		return bad("no host")
	case u.User != nil:
		return bad("credentials go in OTEL_EXPORTER_OTLP_HEADERS, not in the URL")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("port %s is not 1-65535", p))
		}
	} else {
		// gRPC dials port 443 when none is given, whatever the scheme; HTTP the
		// scheme's. Said explicitly, so that a check dials what the exporter dials.
		port := "443"
		if o.Protocol == "http/protobuf" && u.Scheme == "http" {
			port = "80"
		}
		u.Host = net.JoinHostPort(u.Hostname(), port)
	}
	o.Insecure = u.Scheme == "http"
	if o.Protocol == "grpc" {
		u.Path, u.RawQuery = "", ""
	} else if name != specific {
		u.Path = strings.TrimSuffix(u.Path, "/") + sig.path
	} else if u.Path == "" {
		u.Path = "/"
	}
	o.Endpoint = u
	return nil
}

// headers reads W3C-baggage-like "key=value,key2=value2" pairs, values URL-encoded,
// as the SDK's exporters do: an entry without "=", a value that does not decode or a
// name that is not an HTTP token is left out, the others kept (the value is decoded,
// then trimmed). So is, unlike the SDK, a header that protocol could not carry - a
// value with control characters; for gRPC a name outside [0-9a-z-_.] once lower-cased,
// or a value that is not printable ASCII -: the SDK keeps those, and every export fails.
// Each is said once.
func (e *env) headers(name, raw, protocol string) map[string]string {
	h := map[string]string{}
	for _, pair := range strings.Split(raw, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		val, err := url.PathUnescape(v)
		val = strings.TrimSpace(val)
		switch {
		case !ok || k == "" || err != nil:
			e.warn("%s: %q is not key=value (URL-encoded): left out", name, strings.TrimSpace(pair))
		case !httpguts.ValidHeaderFieldName(k):
			e.warn("%s: header name %q is not a token: left out", name, k)
		case !httpguts.ValidHeaderFieldValue(val):
			e.warn("%s: the value of header %q has control characters: left out", name, k)
		case protocol == "grpc" && !grpcMetadataKey(strings.ToLower(k)):
			e.warn("%s: header name %q is not a gRPC metadata key (0-9 a-z - _ .): left out", name, k)
		case protocol == "grpc" && !strings.HasSuffix(strings.ToLower(k), "-bin") && !printableASCII(val):
			e.warn("%s: the value of header %q is not printable ASCII, as gRPC metadata must be: left out", name, k)
		default:
			h[k] = val
		}
	}
	return h
}

// grpcMetadataKey: the characters gRPC allows in a metadata key (grpc-go refuses a
// call whose metadata has others).
func grpcMetadataKey(k string) bool {
	return k != "" && strings.Trim(k, "0123456789abcdefghijklmnopqrstuvwxyz-_.") == ""
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func (e *env) batch() Batch {
	b := defaultBatch
	count := func(name string, dst *int) {
		if v := strings.TrimSpace(e.get(name)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				e.warn("%s=%s: want a positive number: using %d", name, v, *dst)
				return
			}
			*dst = n
		}
	}
	e.milliseconds("OTEL_BSP_SCHEDULE_DELAY", &b.ScheduleDelay, true)
	e.milliseconds("OTEL_BSP_EXPORT_TIMEOUT", &b.ExportTimeout, true)
	count("OTEL_BSP_MAX_QUEUE_SIZE", &b.MaxQueueSize)
	count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &b.MaxExportBatchSize)
	if b.MaxExportBatchSize > b.MaxQueueSize {
		// As the SDK's batch span processor: the default, unless the queue is smaller.
		use := min(defaultBatch.MaxExportBatchSize, b.MaxQueueSize)
		e.warn("OTEL_BSP_MAX_EXPORT_BATCH_SIZE=%d is more than OTEL_BSP_MAX_QUEUE_SIZE=%d: using %d", b.MaxExportBatchSize, b.MaxQueueSize, use)
		b.MaxExportBatchSize = use
	}
	return b
}

// String describes the endpoint for messages: "http://localhost:4317 (grpc,
// plaintext, the default)".
func (o OTLP) String() string {
	if o.Endpoint == nil {
		return "no OTLP endpoint"
	}
	security := "TLS"
	if o.Insecure {
		security = "plaintext"
	}
	s := fmt.Sprintf("%s (%s, %s", o.Endpoint, o.Protocol, security)
	if o.EndpointVar == "" {
		s += ", the default: set OTEL_EXPORTER_OTLP_ENDPOINT"
	}
	return s + ")"
}

// Limits are the span limits, as the SDK's tracer provider applies them
// (sdk/trace.SpanLimits) to every span: a negative limit is none.
type Limits struct {
	// AttributeValueLength is the most characters a string value keeps - each of a
	// string slice's, the bytes of a byte slice's -: OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,
	// else OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT; none by default. The span's attributes
	// only, as the SDK's: not its events' or links'.
	AttributeValueLength int
	// AttributeCount is how many attributes a span keeps, the first ones (the others
	// counted as dropped): OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT, else
	// OTEL_ATTRIBUTE_COUNT_LIMIT; 128 by default.
	AttributeCount int
	// EventCount is how many events a span keeps, the latest ones (the SDK evicts
	// the oldest, counted): OTEL_SPAN_EVENT_COUNT_LIMIT, 128 by default.
	EventCount int
	// LinkCount is how many links a span keeps, the latest ones:
	// OTEL_SPAN_LINK_COUNT_LIMIT, 128 by default.
	LinkCount int
	// EventAttributeCount and LinkAttributeCount are how many attributes an event, a
	// link, keeps, the first ones: OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT,
	// OTEL_LINK_ATTRIBUTE_COUNT_LIMIT, 128 by default (the generic
	// OTEL_ATTRIBUTE_COUNT_LIMIT is not theirs, as in the SDK).
	EventAttributeCount int
	LinkAttributeCount  int
}

// NoLimits keeps every attribute, event and link whole.
var NoLimits = Limits{AttributeValueLength: -1, AttributeCount: -1, EventCount: -1, LinkCount: -1,
	EventAttributeCount: -1, LinkAttributeCount: -1}

// limits reads the span limits as sdk/trace does: the span's variable if set, else the
// generic one; a value that is not an integer is the default (the other variable is
// not read then); a negative one is no limit. Both said, once.
func (e *env) limits() Limits {
	limit := func(def int, what string, names ...string) int {
		for _, name := range names {
			v := e.get(name) // untrimmed, as the SDK reads it
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			switch {
			case err != nil:
				e.warn("%s=%q is not an integer: using %s, as the SDK does", name, v, what)
				return def
			case n < 0:
				e.warn("%s=%d is negative: no limit, as the Go SDK takes it", name, n)
				return -1
			}
			return n
		}
		return def
	}
	return Limits{
		AttributeValueLength: limit(-1, "no limit", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT"),
		AttributeCount:       limit(128, "128", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "OTEL_ATTRIBUTE_COUNT_LIMIT"),
		EventCount:           limit(128, "128", "OTEL_SPAN_EVENT_COUNT_LIMIT"),
		LinkCount:            limit(128, "128", "OTEL_SPAN_LINK_COUNT_LIMIT"),
		EventAttributeCount:  limit(128, "128", "OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT"),
		LinkAttributeCount:   limit(128, "128", "OTEL_LINK_ATTRIBUTE_COUNT_LIMIT"),
	}
}
