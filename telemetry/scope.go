package telemetry

import (
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/otel-go-launcher/otel-go-launcher/internal/version"
)

// Scope is an instrumentation scope: a probe library's spans and request metrics are
// exported under its own, as an instrumentation library's are under the tracer and
// the meter it names. A library declares its scope once (NewScope), and the probe kit
// gives it to the library's spans (Span.Scope): no list of libraries here.
type Scope struct {
	Name      string // the probe package's import path
	Version   string // the launcher's: the probes are part of it
	SchemaURL string // the semantic conventions its spans and metrics follow
	// head is the ScopeSpans.scope field, tail the ScopeSpans.schema_url field (after
	// the spans, as the SDK's exporter writes them): encoded once.
	head, tail []byte
}

// NewScope is the scope named name (a probe package's import path), of the launcher's
// version, whose spans follow the semantic conventions the launcher pins (the
// resource's schema too).
func NewScope(name string) *Scope {
	return NewScopeOf(name, version.String(), semconv.SchemaURL)
}

// NewScopeOf is the scope of another instrumentation than a probe's: the app's own,
// which the OpenTelemetry API names (its tracer's name, version and schema URL; "" for
// none).
func NewScopeOf(name, ver, schemaURL string) *Scope {
	s := &Scope{Name: name, Version: ver, SchemaURL: schemaURL}
	var body []byte
	body = appendStringField(body, fieldScopeName, s.Name)
	body = appendStringField(body, fieldScopeVersion, s.Version)
	s.head = protowire.AppendTag(nil, fieldScope, protowire.BytesType)
	s.head = protowire.AppendBytes(s.head, body)
	s.tail = appendStringField(nil, fieldSSSchemaURL, s.SchemaURL)
	return s
}

// LauncherScope is the scope of the spans no library gave one: the launcher's module.
var LauncherScope = NewScope("github.com/otel-go-launcher/otel-go-launcher")

// scopeOf is s's scope.
func scopeOf(s *Span) *Scope {
	if s.Scope != nil {
		return s.Scope
	}
	return LauncherScope
}
