package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// jaegerImage builds the trace backend locally: no image can be pulled here. Jaeger
// (all-in-one, OTLP in, query API) is built from the Go module proxy - the module in
// testdata/jaeger pins it - and put in a FROM-scratch image.
func jaegerImage(t *testing.T, env []string) string {
	t.Helper()
	const name = "localhost/jaeger-e2e:v1.76.0"
	if podmanCmd(env, "image", "exists", name).Run() == nil {
		return name
	}
	dir := t.TempDir()
	src, _ := filepath.Abs("testdata/jaeger")
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(dir, "jaeger"), "github.com/jaegertracing/jaeger/cmd/jaeger")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build jaeger: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte("FROM scratch\nCOPY jaeger /jaeger\nENV JAEGER_LISTEN_HOST=0.0.0.0\nENTRYPOINT [\"/jaeger\"]\n"), 0o644)
	podman(t, env, "build", "-q", "-t", name, dir)
	return name
}

// The example stack, as a user brings it up: podman-compose builds the two services
// FROM the base image and starts them with the trace backend; orders through the
// frontend become traces in Jaeger that span both services, the backend's server span
// the child of the frontend's client span, itself the child of the frontend's server
// span - found through Jaeger's own query API.
func TestComposeExample(t *testing.T) {
	env := podmanReady(t)
	testenv.RequireCommand(t, "podman-compose")
	jaeger := jaegerImage(t, env)

	stack, _ := filepath.Abs("../examples/compose")
	build := exec.Command("./build.sh")
	build.Dir = stack
	build.Env = append(os.Environ(), "LAUNCHER_IMAGE="+baseImageTag)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	frontendPort, uiPort := freePort(t), freePort(t)
	project := fmt.Sprintf("e2e%d", os.Getpid())
	compose := func(args ...string) (string, error) {
		cmd := exec.Command("podman-compose", append([]string{"-p", project, "-f", filepath.Join(stack, "compose.yaml")}, args...)...)
		cmd.Dir = stack
		cmd.Env = append(os.Environ(), env...)
		cmd.Env = append(cmd.Env, "LAUNCHER_IMAGE="+baseImageTag, "JAEGER_IMAGE="+jaeger,
			"FRONTEND_PORT="+frontendPort, "JAEGER_UI_PORT="+uiPort)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := compose("up", "-d", "--build"); err != nil {
		compose("down", "-t", "1")
		t.Fatalf("podman-compose up: %v\n%s", err, out)
	}
	defer func() {
		if t.Failed() {
			for _, s := range []string{"frontend", "backend", "jaeger"} {
				out, _ := podmanCmd(env, "logs", project+"_"+s+"_1").CombinedOutput()
				t.Logf("%s logs:\n%s", s, out)
			}
		}
		if out, err := compose("down", "-t", "5"); err != nil {
			t.Errorf("podman-compose down: %v\n%s", err, out)
		}
		podmanCmd(env, "network", "rm", "-f", project+"_default").Run() // down leaves it
	}()

	// Orders, once the frontend answers.
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(60 * time.Second)
	orders := 0
	for orders < 5 {
		resp, err := client.Get("http://127.0.0.1:" + frontendPort + "/order/espresso")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 && strings.Contains(string(body), `"in_stock"`) {
				orders++
				continue
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the frontend never served an order: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	// A trace with the frontend's server and client spans and the backend's server
	// span, linked, in Jaeger.
	var found string
	for deadline := time.Now().Add(60 * time.Second); found == "" && time.Now().Before(deadline); time.Sleep(time.Second) {
		traces, err := jaegerTraces(client, "http://127.0.0.1:"+uiPort, "frontend")
		if err != nil {
			continue
		}
		for _, tr := range traces {
			if why := crossServiceTrace(tr); why == "" {
				found = tr.TraceID
				break
			}
		}
	}
	if found == "" {
		traces, err := jaegerTraces(client, "http://127.0.0.1:"+uiPort, "frontend")
		t.Fatalf("no trace across frontend and backend in Jaeger (%v): %+v", err, traces)
	}
}

func freePort(t *testing.T) string {
	_, port, _ := strings.Cut(freeAddr(t), ":")
	return port
}

// jaegerTrace is what Jaeger's query API (/api/traces) says of a trace.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

func jaegerTraces(client *http.Client, base, service string) ([]jaegerTrace, error) {
	resp, err := client.Get(base + "/api/traces?service=" + service + "&limit=50")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out struct {
		Data []jaegerTrace `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, err
	}
	return out.Data, nil
}

// crossServiceTrace says what is missing for tr to be frontend server -> frontend
// client -> backend server, or "" when it is.
func crossServiceTrace(tr jaegerTrace) string {
	type span struct{ service, kind, name, parent string }
	spans := map[string]span{}
	for _, s := range tr.Spans {
		sp := span{service: tr.Processes[s.ProcessID].ServiceName, name: s.OperationName}
		for _, tag := range s.Tags {
			if tag.Key == "span.kind" {
				sp.kind, _ = tag.Value.(string)
			}
		}
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" {
				sp.parent = r.SpanID
			}
		}
		spans[s.SpanID] = sp
	}
	for _, s := range spans {
		if s.service != "backend" || s.kind != "server" || s.name != "GET /stock/{item}" {
			continue
		}
		call, ok := spans[s.parent]
		if !ok || call.service != "frontend" || call.kind != "client" {
			return "the backend span's parent is not the frontend's client span"
		}
		if root, ok := spans[call.parent]; !ok || root.service != "frontend" || root.kind != "server" || root.name != "GET /order/{item}" {
			return "the client span's parent is not the frontend's server span"
		}
		return ""
	}
	return "no backend server span"
}
