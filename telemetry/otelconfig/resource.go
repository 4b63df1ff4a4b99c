package otelconfig

import (
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
)

// resource reads the resource's variables, in the order in which later ones win: the
// pod's (kubernetesVariables), OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME. As the
// SDK: an entry that is not key=value is said and left out, the others kept; a value
// whose percent-encoding is broken is kept as written.
func (e *env) resource() []attribute.KeyValue {
	attrs := kubernetesAttributes(e.get)
	const name = "OTEL_RESOURCE_ATTRIBUTES"
	var invalid []string
	for _, entry := range strings.Split(strings.TrimSpace(e.get(name)), ",") {
		if strings.TrimSpace(entry) == "" {
			continue
		}
		k, v, ok := strings.Cut(entry, "=")
		if k = strings.TrimSpace(k); !ok || k == "" {
			invalid = append(invalid, strings.TrimSpace(entry))
			continue
		}
		v = strings.TrimSpace(v)
		if unescaped, err := url.PathUnescape(v); err == nil {
			v = unescaped
		}
		attrs = append(attrs, attribute.String(k, v))
	}
	if len(invalid) > 0 {
		e.warn("%s: %q not key=value: left out, the other entries kept", name, invalid)
	}
	if svc := strings.TrimSpace(e.get("OTEL_SERVICE_NAME")); svc != "" {
		attrs = append(attrs, semconv.ServiceName(svc))
	}
	return attrs
}

// kubernetesVariables are where a pod's manifest puts its downward-API fields for
// OpenTelemetry, by the attribute each gives: OTEL_RESOURCE_ATTRIBUTES_* first (the
// OpenTelemetry Operator injects _POD_NAME, _POD_UID and _NODE_NAME; namespace and
// container follow the same pattern), then the plain K8S_* ones. (The other way,
// OTEL_RESOURCE_ATTRIBUTES=k8s.pod.name=$(POD_NAME),..., needs nothing of the launcher,
// and wins over these.)
var kubernetesVariables = []struct {
	key   attribute.Key
	names []string
}{
	{semconv.K8SPodNameKey, []string{"OTEL_RESOURCE_ATTRIBUTES_POD_NAME", "K8S_POD_NAME"}},
	{semconv.K8SPodUIDKey, []string{"OTEL_RESOURCE_ATTRIBUTES_POD_UID", "K8S_POD_UID"}},
	{semconv.K8SNamespaceNameKey, []string{"OTEL_RESOURCE_ATTRIBUTES_NAMESPACE_NAME", "K8S_NAMESPACE_NAME"}},
	{semconv.K8SNodeNameKey, []string{"OTEL_RESOURCE_ATTRIBUTES_NODE_NAME", "K8S_NODE_NAME"}},
	{semconv.K8SContainerNameKey, []string{"OTEL_RESOURCE_ATTRIBUTES_CONTAINER_NAME", "K8S_CONTAINER_NAME"}},
}

// kubernetesAttributes are the pod's attributes the environment gives.
func kubernetesAttributes(getenv func(string) string) []attribute.KeyValue {
	var attrs []attribute.KeyValue
	for _, v := range kubernetesVariables {
		for _, name := range v.names {
			if value := strings.TrimSpace(getenv(name)); value != "" {
				attrs = append(attrs, v.key.String(value))
				break
			}
		}
	}
	return attrs
}
