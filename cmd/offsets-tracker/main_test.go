package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
)

// The tracker measures for real: the probes' program built with this machine's Go
// release, and a module's versions from the module proxy (golang.org/x/sync's errgroup,
// standing in for an instrumented module; golang.org/x/net's, and grpc v1.40.0's, whose
// build picks a version of x/net that x/net's own target then measures). A second run skips what the first measured,
// and the file it writes is the canonical encoding.
func TestTracker(t *testing.T) {
	testenv.RequireCommand(t, "go")
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "db.json")
	t.Cleanup(func() { removeAll(filepath.Join(dir, "cache")) }) // the module cache is read-only
	errgroup := `package main

import "golang.org/x/sync/errgroup"

func main() {
	var g errgroup.Group
	g.Go(func() error { return nil })
	g.Wait()
}
`
	group := func(f string) offsets.FieldSpec {
		return offsets.FieldSpec{FieldRef: offsets.FieldRef{Struct: "golang.org/x/sync/errgroup.Group", Field: f}}
	}
	specs := append(probes.Specs(), offsets.Spec{Name: "errgroup", Module: "golang.org/x/sync", MinVersion: "v0.1.0",
		Fields: []offsets.FieldSpec{group("wg"), group("err"), group("noSuchField")}, Program: errgroup})
	local := runtime.Version()
	only := []string{local, "v0.1.0", "v0.10.0", "v1.40.0"} // v1.40.0: grpc's (and other modules' releases of that number: the OpenTelemetry API's)
	var log bytes.Buffer
	tr := &tracker{dbPath: dbPath, specs: specs, jobs: 2, only: only, cache: filepath.Join(dir, "cache"), log: &log}
	if err := tr.run(context.Background()); err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	data, err := os.ReadFile(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	db, err := offsets.ParseDatabase(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range probes.Specs()[0].Fields {
		off, exact, ok := db.Lookup("std", local, f.FieldRef)
		want, _, wantOK := must(offsets.EmbeddedDatabase()).Lookup("std", local, f.FieldRef)
		if !exact || ok != wantOK || off != want {
			t.Errorf("std %s %s: %d %v %v, the embedded database says %d %v", local, f, off, exact, ok, want, wantOK)
		}
	}
	for _, v := range []string{"v0.1.0", "v0.10.0"} {
		for _, f := range []string{"wg", "err"} {
			if _, exact, ok := db.Lookup("golang.org/x/sync", v, group(f).FieldRef); !exact || !ok {
				t.Errorf("errgroup %s: %s not measured", v, f)
			}
		}
		if _, exact, ok := db.Lookup("golang.org/x/sync", v, group("noSuchField").FieldRef); !exact || ok {
			t.Errorf("errgroup %s: a field it lacks is not recorded as absent", v)
		}
	}
	// golang.org/x/net, instrumented itself (x/net's HTTP/2 server) and read by grpc's
	// probes too: its own target measures every one of its fields, grpc's included.
	for _, v := range []string{"v0.1.0", "v0.10.0"} {
		for _, f := range []offsets.FieldRef{
			{Struct: "golang.org/x/net/http2.responseWriter", Field: "rws"},
			{Struct: "golang.org/x/net/http2.MetaHeadersFrame", Field: "Fields"},
			{Struct: "golang.org/x/net/http2/hpack.HeaderField", Field: "Sensitive"},
		} {
			if _, exact, ok := db.Lookup("golang.org/x/net", v, f); !exact || !ok {
				t.Errorf("x/net %s: %s not measured", v, f)
			}
		}
	}
	// grpc v1.40.0's build chose a 2020 pseudo-version of x/net: x/net's own target
	// measured it too, with every x/net field.
	if _, exact, ok := db.Lookup("golang.org/x/net", "v0.0.0-20200822124328-c89045814202",
		offsets.FieldRef{Struct: "golang.org/x/net/http2.responseWriter", Field: "rws"}); !exact || !ok {
		t.Errorf("x/net at grpc v1.40.0's pseudo-version: x/net's own fields not measured")
	}
	enc, _ := db.Encode()
	if !bytes.Equal(append(enc, '\n'), data) {
		t.Error("the file is not the canonical encoding")
	}

	// Incremental: nothing left to do, the file unchanged.
	log.Reset()
	if err := tr.run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log.String(), "0 versions to measure, 7 already in") || !strings.Contains(log.String(), "0 measured") {
		t.Errorf("second run:\n%s", log.String())
	}
	if again, _ := os.ReadFile(dbPath); !bytes.Equal(again, data) {
		t.Error("a run with nothing to do changed the file")
	}
	// A version nobody serves is an error, not silence.
	tr.only = []string{"go1.99.0"}
	if err := tr.run(context.Background()); err == nil || !strings.Contains(err.Error(), "go1.99.0 is not a served release") {
		t.Errorf("unknown version: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
