package telemetry

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// CheckExport sends the collector an export of no spans, with the exporter's own
// sender - same endpoint, protocol, TLS and headers - once, and says whether it was
// accepted. For `launch doctor`.
func CheckExport(ctx context.Context, o otelconfig.OTLP) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	s, err := newSender("otlp", o)
	if err != nil {
		return err
	}
	defer s.close()
	_, _, err = s.attempt(ctx, nil, new(collectortrace.ExportTraceServiceResponse))
	return err
}

// CheckMetricsExport sends the collector an export of no metrics, with the metrics
// exporter the pipeline would build - same endpoint, protocol, TLS, headers and
// timeout - once, not retried, and says whether it was accepted. For `launch doctor`.
func CheckMetricsExport(ctx context.Context, m otelconfig.Metrics) error {
	exp, err := metricExporter(ctx, "otlp", m, false)
	if err != nil {
		return err
	}
	defer exp.Shutdown(context.Background())
	ctx, cancel := context.WithTimeout(ctx, m.OTLP.Timeout)
	defer cancel()
	return exp.Export(ctx, &metricdata.ResourceMetrics{Resource: resource.Empty()})
}

// tlsConfig is the TLS the exporter uses: the system's CAs, or those of
// OTEL_EXPORTER_OTLP_CERTIFICATE, and the client certificate if one is set.
func tlsConfig(o otelconfig.OTLP) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.Certificate != "" {
		pem, err := os.ReadFile(o.Certificate)
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CERTIFICATE=%s: no PEM certificate in it", o.Certificate)
		}
	}
	if o.ClientCertificate != "" {
		cert, err := tls.LoadX509KeyPair(o.ClientCertificate, o.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE, OTEL_EXPORTER_OTLP_CLIENT_KEY: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
