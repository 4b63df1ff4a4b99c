package telemetry

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"

	collectortrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// TLSConfig is the TLS the exporter uses: the system's CAs, or those of
// OTEL_EXPORTER_OTLP_CERTIFICATE, and the client certificate if one is set.
func (o OTLP) TLSConfig() (*tls.Config, error) {
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

// CheckExport sends the collector an export of no spans, as the exporter would send
// spans - same endpoint, protocol, TLS and headers - and says whether it was accepted.
// For `launch doctor`.
func (o OTLP) CheckExport(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var tlsConfig *tls.Config
	if !o.Insecure {
		var err error
		if tlsConfig, err = o.TLSConfig(); err != nil {
			return err
		}
	}
	if o.Protocol == "http/protobuf" {
		return o.checkHTTP(ctx, tlsConfig)
	}
	creds := insecure.NewCredentials()
	if !o.Insecure {
		creds = credentials.NewTLS(tlsConfig)
	}
	conn, err := grpc.NewClient(o.Endpoint.Host, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx = metadata.NewOutgoingContext(ctx, metadata.New(o.Headers))
	_, err = collectortrace.NewTraceServiceClient(conn).Export(ctx, &collectortrace.ExportTraceServiceRequest{}, grpc.WaitForReady(false))
	if err != nil {
		if s, ok := status.FromError(err); ok {
			return fmt.Errorf("%s: %s", s.Code(), s.Message())
		}
	}
	return err
}

func (o OTLP) checkHTTP(ctx context.Context, tlsConfig *tls.Config) error {
	body, err := proto.Marshal(&collectortrace.ExportTraceServiceRequest{})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", o.Endpoint.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range o.Headers {
		req.Header.Set(k, v)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return errors.New(resp.Status + ": " + string(bytes.TrimSpace(msg)))
	}
	return nil
}
