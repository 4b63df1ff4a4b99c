package telemetry

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
	colmetricspb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/otel-go-launcher/otel-go-launcher/telemetry/otelconfig"
)

// The wording rule for the launcher's messages about exporting telemetry: a message
// about one signal names that signal exactly ("exporting spans: ...", "exporting
// metrics: ...", "flushing spans: ...", "flushing metrics: ..."), and never says one
// signal while wrapping an error that may be the other's. The pipeline's Shutdown and
// ForceFlush errors name their signals themselves, so a caller wraps them with words
// about when or where ("at exit: "), never with "spans" or "metrics".
//
// TestMessagesNameTheirSignal holds the source to it: the mixed forms found before
// ("flushing spans: %w" around the whole pipeline's Shutdown, which said "flushing
// spans: failed to upload metrics: ..."), and any message naming a signal in the code
// that handles a pipeline's Shutdown or ForceFlush error.
func TestMessagesNameTheirSignal(t *testing.T) {
	mixed := []*regexp.Regexp{
		regexp.MustCompile(`^(flushing|exporting) (spans|metrics): %w$`), // one signal around the whole pipeline
		regexp.MustCompile(`(?i)\bspans?\b.*\b(upload|export)(ing)? metrics`),
		regexp.MustCompile(`(?i)\bmetrics?\b.*\b(upload|export)(ing)? (spans|traces)`),
	}
	signal := regexp.MustCompile(`(?i)\b(spans?|metrics?|traces?)\b`)
	root := ".."
	checked := 0
	for _, dir := range []string{"telemetry", "probes", "launcher", "cmd"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			checked++
			ast.Inspect(f, func(n ast.Node) bool {
				switch n := n.(type) {
				case *ast.BasicLit:
					if s, ok := literal(n); ok {
						for _, re := range mixed {
							if re.MatchString(s) {
								t.Errorf("%s: %q mixes signals (%s): name the one signal the wrapped error is about, or say telemetry", fset.Position(n.Pos()), s, re)
							}
						}
					}
				case *ast.IfStmt:
					if !pipelineCall(n.Init) {
						return true
					}
					ast.Inspect(n.Body, func(m ast.Node) bool {
						if lit, ok := m.(*ast.BasicLit); ok {
							if s, ok := literal(lit); ok && signal.MatchString(s) {
								t.Errorf("%s: %q wraps a pipeline's error, which names its signals itself: say when or where, not %q",
									fset.Position(lit.Pos()), s, signal.FindString(s))
							}
						}
						return true
					})
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatalf("reading the source under %s: %v", dir, err)
		}
	}
	if checked < 20 {
		t.Fatalf("only %d source files read from %s: is the test run from its package directory?", checked, root)
	}
}

// literal is a string literal's value.
func literal(lit *ast.BasicLit) (string, bool) {
	if lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// pipelineCall reports whether init is `err := X.pipe.Shutdown(...)` or ForceFlush: a
// telemetry pipeline's, by the name of what it is called on.
func pipelineCall(init ast.Stmt) bool {
	as, ok := init.(*ast.AssignStmt)
	if !ok || len(as.Rhs) != 1 {
		return false
	}
	call, ok := as.Rhs[0].(*ast.CallExpr)
	if !ok {
		return false
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Shutdown" && sel.Sel.Name != "ForceFlush" {
		return false
	}
	var recv string
	switch x := sel.X.(type) {
	case *ast.Ident:
		recv = x.Name
	case *ast.SelectorExpr:
		recv = x.Sel.Name
	}
	return strings.Contains(strings.ToLower(recv), "pipe")
}

// traceOnly accepts every span export, as a receiver of traces alone does; its
// MetricsService is unimplemented.
type traceOnly struct {
	coltracepb.UnimplementedTraceServiceServer
}

func (traceOnly) Export(context.Context, *coltracepb.ExportTraceServiceRequest) (*coltracepb.ExportTraceServiceResponse, error) {
	return &coltracepb.ExportTraceServiceResponse{}, nil
}

// stuckMetrics answers no metrics export until its caller gives up.
type stuckMetrics struct {
	colmetricspb.UnimplementedMetricsServiceServer
}

func (stuckMetrics) Export(ctx context.Context, _ *colmetricspb.ExportMetricsServiceRequest) (*colmetricspb.ExportMetricsServiceResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// collectorPipeline is a pipeline exporting spans and metrics over gRPC to a receiver
// serving what register gives it, and what it logs.
func collectorPipeline(t *testing.T, register func(*grpc.Server)) (*Pipeline, *strings.Builder) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go srv.Serve(l)
	t.Cleanup(srv.Stop)
	cfg, err := otelconfig.From(vars{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + l.Addr().String(), "OTEL_METRICS_EXPORTER": "otlp"}.get)
	if err != nil {
		t.Fatal(err)
	}
	logged := &strings.Builder{}
	old := slog.Default()
	t.Cleanup(func() { slog.SetDefault(old) })
	slog.SetDefault(slog.New(slog.NewTextHandler(&syncWriter{w: logged}, nil)))
	p, err := New(context.Background(), App{Path: "/app"}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	p.Emit(&Span{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Kind: trace.SpanKindServer, Name: "GET", Start: 1, End: 2,
		Attributes: []attribute.KeyValue{attribute.String("http.request.method", "GET")}})
	return p, logged
}

// A receiver of traces alone (UNIMPLEMENTED for metrics, as the demo's printer was):
// what fails is said of the metrics, and nothing is said of the spans, which went.
func TestMetricsUnimplementedSaysMetrics(t *testing.T) {
	p, logged := collectorPipeline(t, func(s *grpc.Server) { coltracepb.RegisterTraceServiceServer(s, traceOnly{}) })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := p.ForceFlush(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "flushing metrics: ") || !strings.Contains(err.Error(), "Unimplemented") ||
		strings.Contains(err.Error(), "spans") {
		t.Errorf("ForceFlush: %v, want flushing metrics: ... Unimplemented, and no word of spans", err)
	}
	if err := p.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v, want nil: the spans went, and the metrics' failure is logged", err)
	}
	out := logged.String()
	if !strings.Contains(out, "exporting metrics: ") || !strings.Contains(out, "Unimplemented") {
		t.Errorf("the metrics' failed export was not said:\n%s", out)
	}
	if strings.Contains(out, "spans") {
		t.Errorf("spans said of a metrics failure:\n%s", out)
	}
	if st := p.Stats()[0]; st.Exported != 1 {
		t.Errorf("spans stats %+v, want the span exported", st)
	}
}

// Out of time while only the metrics' export is still going: the error names the
// metrics, and not the spans, whose export was done.
func TestShutdownOutOfTimeNamesTheSignal(t *testing.T) {
	p, _ := collectorPipeline(t, func(s *grpc.Server) {
		coltracepb.RegisterTraceServiceServer(s, traceOnly{})
		colmetricspb.RegisterMetricsServiceServer(s, stuckMetrics{})
	})
	// The span goes before the metrics' final export begins.
	if err := p.queues[0].forceFlush(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err := p.Shutdown(ctx)
	if err == nil || !strings.Contains(err.Error(), "flushing metrics: context deadline exceeded") || strings.Contains(err.Error(), "spans") {
		t.Errorf("Shutdown: %v, want flushing metrics: context deadline exceeded, and no word of spans", err)
	}
}
