package telemetry

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is the OpenTelemetry configuration, read once from the environment as the
// specification defines it (ConfigFromEnv); the launcher's flags go on top. Everything
// that builds telemetry or checks it (`launch doctor`) takes it from here, so what is
// checked is what the exporter does.
type Config struct {
	Disabled     bool     // OTEL_SDK_DISABLED=true: no telemetry at all
	Exporters    []string // OTEL_TRACES_EXPORTER without "none": "otlp", "console"
	OTLP         OTLP     // OTEL_EXPORTER_OTLP_[TRACES_]*
	Sampling     Sampling // OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG
	TraceContext bool     // OTEL_PROPAGATORS has tracecontext (the default)
	Batch        Batch    // OTEL_BSP_*
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

// Batch is the batch span processor's configuration.
type Batch struct {
	ScheduleDelay      time.Duration
	ExportTimeout      time.Duration
	MaxQueueSize       int
	MaxExportBatchSize int
}

// The specification's defaults.
const (
	defaultGRPCEndpoint = "http://localhost:4317"
	defaultHTTPEndpoint = "http://localhost:4318"
	tracesPath          = "/v1/traces"
	defaultTimeout      = 10 * time.Second
)

var defaultBatch = Batch{ScheduleDelay: 5 * time.Second, ExportTimeout: 30 * time.Second, MaxQueueSize: 2048, MaxExportBatchSize: 512}

// ConfigFromEnv reads the configuration from the environment. An error names the
// variable and says what it wants: with that setting, no span could be exported.
func ConfigFromEnv() (Config, error) { return configFrom(os.Getenv) }

// env reads the variables of one configuration.
type env struct {
	get      func(string) string
	warnings []string
}

func (e *env) warn(format string, args ...any) {
	e.warnings = append(e.warnings, fmt.Sprintf(format, args...))
}

// signal is the first of the trace-specific variable and the generic one that is set:
// OTEL_EXPORTER_OTLP_TRACES_X, else OTEL_EXPORTER_OTLP_X.
func (e *env) signal(suffix string) (name, value string) {
	for _, name := range []string{"OTEL_EXPORTER_OTLP_TRACES_" + suffix, "OTEL_EXPORTER_OTLP_" + suffix} {
		if v := strings.TrimSpace(e.get(name)); v != "" {
			return name, v
		}
	}
	return "", ""
}

func configFrom(getenv func(string) string) (Config, error) {
	e := &env{get: getenv}
	var c Config
	if strings.EqualFold(strings.TrimSpace(getenv("OTEL_SDK_DISABLED")), "true") {
		return Config{Disabled: true}, nil
	}
	var errs []error
	exporters := strings.TrimSpace(getenv("OTEL_TRACES_EXPORTER"))
	if exporters == "" {
		exporters = "otlp"
	}
	for _, name := range strings.Split(exporters, ",") {
		switch name = strings.TrimSpace(name); name {
		case "otlp", "console":
			c.Exporters = append(c.Exporters, name)
		case "none", "":
		default:
			errs = append(errs, fmt.Errorf("OTEL_TRACES_EXPORTER=%s: %q is not an exporter: want otlp, console or none", exporters, name))
		}
	}
	var err error
	if c.OTLP, err = e.otlp(); err != nil {
		errs = append(errs, err)
	}
	c.Sampling = e.sampling()
	c.TraceContext = e.traceContext()
	c.Batch = e.batch()
	c.Warnings = e.warnings
	return c, errors.Join(errs...)
}

func (e *env) otlp() (OTLP, error) {
	o := OTLP{Protocol: "grpc", Timeout: defaultTimeout}
	if name, p := e.signal("PROTOCOL"); p != "" {
		if p != "grpc" && p != "http/protobuf" {
			return o, fmt.Errorf("%s=%s: want grpc or http/protobuf", name, p)
		}
		o.Protocol = p
	}
	_, insecure := e.signal("INSECURE")
	if insecure != "" {
		b, err := strconv.ParseBool(insecure)
		if err != nil {
			e.warn("OTEL_EXPORTER_OTLP_INSECURE=%s: want true or false: using false", insecure)
		}
		o.Insecure = b
	}
	if err := o.endpoint(e); err != nil {
		return o, err
	}
	if name, h := e.signal("HEADERS"); h != "" {
		o.Headers = e.headers(name, h)
	}
	if name, t := e.signal("TIMEOUT"); t != "" {
		ms, err := strconv.Atoi(t)
		if err != nil || ms < 0 {
			e.warn("%s=%s: want milliseconds: using %d", name, t, defaultTimeout.Milliseconds())
		} else {
			o.Timeout = time.Duration(ms) * time.Millisecond
		}
	}
	if name, c := e.signal("COMPRESSION"); c != "" {
		switch c {
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
		name, path := e.signal(f.suffix)
		if path == "" {
			continue
		}
		if _, err := os.Stat(path); err != nil {
			errs = append(errs, fmt.Errorf("%s=%s: %w", name, path, err))
		}
		*f.dst = path
	}
	if (o.ClientCertificate == "") != (o.ClientKey == "") {
		errs = append(errs, errors.New("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together: set both or neither"))
	}
	return o, errors.Join(errs...)
}

// endpoint resolves where spans go, as the OTLP exporter specification says: the
// trace-specific variable is used as it is; the generic one is a base URL, to which
// http/protobuf adds /v1/traces; the default is http://localhost:4317 (gRPC) or
// http://localhost:4318/v1/traces, plaintext. A gRPC endpoint may omit the scheme.
func (o *OTLP) endpoint(e *env) error {
	name, raw := "", ""
	for _, n := range []string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"} {
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
	} else if name != "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT" {
		u.Path = strings.TrimSuffix(u.Path, "/") + tracesPath
	} else if u.Path == "" {
		u.Path = "/"
	}
	o.Endpoint = u
	return nil
}

// headers reads W3C-baggage-like "key=value,key2=value2" pairs, values URL-encoded.
func (e *env) headers(name, raw string) map[string]string {
	h := map[string]string{}
	for _, pair := range strings.Split(raw, ",") {
		if strings.TrimSpace(pair) == "" {
			continue
		}
		k, v, ok := strings.Cut(pair, "=")
		k = strings.TrimSpace(k)
		val, err := url.PathUnescape(strings.TrimSpace(v))
		if !ok || k == "" || err != nil {
			e.warn("%s: %q is not key=value (URL-encoded): left out", name, strings.TrimSpace(pair))
			continue
		}
		h[k] = val
	}
	return h
}

func (e *env) batch() Batch {
	b := defaultBatch
	ms := func(name string, dst *time.Duration) {
		if v := strings.TrimSpace(e.get(name)); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				e.warn("%s=%s: want milliseconds: using %d", name, v, dst.Milliseconds())
				return
			}
			*dst = time.Duration(n) * time.Millisecond
		}
	}
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
	ms("OTEL_BSP_SCHEDULE_DELAY", &b.ScheduleDelay)
	ms("OTEL_BSP_EXPORT_TIMEOUT", &b.ExportTimeout)
	count("OTEL_BSP_MAX_QUEUE_SIZE", &b.MaxQueueSize)
	count("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", &b.MaxExportBatchSize)
	if b.MaxExportBatchSize > b.MaxQueueSize {
		e.warn("OTEL_BSP_MAX_EXPORT_BATCH_SIZE=%d is more than OTEL_BSP_MAX_QUEUE_SIZE=%d: using %d", b.MaxExportBatchSize, b.MaxQueueSize, b.MaxQueueSize)
		b.MaxExportBatchSize = b.MaxQueueSize
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
