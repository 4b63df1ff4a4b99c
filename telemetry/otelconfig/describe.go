package otelconfig

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Settings describe the effective configuration, one line per part, for launch doctor:
// what the launcher will do once defaults, flags and the replacements its warnings
// name are applied. Header values are never shown: they carry credentials.
func (c Config) Settings() []string {
	if c.Disabled {
		return []string{"OTEL_SDK_DISABLED=true: no telemetry"}
	}
	lines := []string{"traces: " + exportersText(c.Exporters, "OTEL_TRACES_EXPORTER")}
	if slices.Contains(c.Exporters, "otlp") {
		lines = append(lines, "traces OTLP: "+c.OTLP.details())
	}
	lines = append(lines,
		"sampler: "+c.Sampling.String(),
		"propagation: "+c.propagation(),
		fmt.Sprintf("batches: every %s, up to %d spans an export, %d spans queued per exporter, export timeout %s",
			c.Batch.ScheduleDelay, c.Batch.MaxExportBatchSize, c.Batch.MaxQueueSize, orNone(c.Batch.ExportTimeout)))
	lines = append(lines, "span attributes: "+c.Limits.String(), "span "+c.Limits.eventsAndLinks())
	switch {
	case c.Metrics.Off != "":
		lines = append(lines, "metrics: off: "+c.Metrics.Off)
	case len(c.Metrics.Exporters) == 0:
		lines = append(lines, "metrics: "+exportersText(nil, "OTEL_METRICS_EXPORTER"))
	default:
		lines = append(lines, fmt.Sprintf("metrics: %s, every %s, export timeout %s, %s temporality, %s, exemplars %s",
			exportersText(c.Metrics.Exporters, ""), c.Metrics.Interval, orNone(c.Metrics.Timeout), c.Metrics.Temporality,
			strings.ReplaceAll(c.Metrics.HistogramAggregation, "_", " "), c.Metrics.ExemplarFilter))
		if slices.Contains(c.Metrics.Exporters, "otlp") {
			lines = append(lines, "metrics OTLP: "+c.Metrics.OTLP.details())
		}
	}
	return lines
}

func exportersText(exps []string, variable string) string {
	if len(exps) == 0 {
		return "no exporter (" + variable + "=none)"
	}
	return strings.Join(exps, ", ")
}

func orNone(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	return d.String()
}

// details: the endpoint and everything else an export is sent with.
func (o OTLP) details() string {
	s := fmt.Sprintf("%s, timeout %s", o, orNone(o.Timeout))
	if o.Compression != "" {
		s += ", " + o.Compression
	}
	if len(o.Headers) > 0 {
		s += ", headers " + strings.Join(slices.Sorted(maps.Keys(o.Headers)), ", ") + " (values not shown)"
	}
	if o.Certificate != "" {
		s += ", CA certificates " + o.Certificate
	}
	if o.ClientCertificate != "" {
		s += ", client certificate " + o.ClientCertificate
	}
	return s
}

func (c Config) propagation() string {
	s := "W3C trace context joined from incoming requests and inserted into outgoing ones"
	if !c.TraceContext {
		s = "no trace context (OTEL_PROPAGATORS has no tracecontext): each service's traces stand alone"
	}
	if c.Baggage {
		s += "; W3C baggage not carried by the launcher (an app's own baggage header passes as written)"
	}
	return s
}

// String is the sampler's name as OTEL_TRACES_SAMPLER gives it, with its ratio.
func (s Sampling) String() string {
	var name string
	switch s.Root {
	case AlwaysOff:
		name = "always_off"
	case TraceIDRatio:
		name = fmt.Sprintf("traceidratio %g", s.Ratio)
	default:
		name = "always_on"
	}
	if s.ParentBased {
		return "parentbased_" + name
	}
	return name
}

// String: "at most 128 a span, values whole".
func (l Limits) String() string {
	length := "values whole"
	if l.AttributeValueLength >= 0 {
		length = fmt.Sprintf("values cut to %d characters", l.AttributeValueLength)
	}
	return atMost(l.AttributeCount, " a span") + ", " + length + " (the rest counted as dropped)"
}

// eventsAndLinks: "events: at most 128 a span, the latest, 128 attributes each; links: ...".
func (l Limits) eventsAndLinks() string {
	return fmt.Sprintf("events: %s, the latest, %s each; links: %s, the latest, %s each (the rest counted as dropped)",
		atMost(l.EventCount, " a span"), atMost(l.EventAttributeCount, " attributes"),
		atMost(l.LinkCount, " a span"), atMost(l.LinkAttributeCount, " attributes"))
}

func atMost(limit int, what string) string {
	if limit < 0 {
		return "any number" + what
	}
	return fmt.Sprintf("at most %d%s", limit, what)
}
