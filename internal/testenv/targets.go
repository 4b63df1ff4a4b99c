package testenv

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// Toolchains are the Go releases test targets are built with (GOTOOLCHAIN values; the
// go command fetches each from the module proxy on first use).
var Toolchains = []string{"go1.22.12", "go1.24.11", "go1.26.8", "go1.27.3"}

// MoreToolchains fill the gaps between Toolchains, for the checks that must cover
// every Go release from 1.21 (offsets from type metadata and from the database);
// go1.26.11 is a patch release that moved a field the probes read (http.response's
// status, 120 -> 128).
var MoreToolchains = []string{"go1.23.12", "go1.25.9", "go1.26.11"}

// OldToolchains are the releases before Go 1.22 that binary analysis still supports.
// Targets build with them through go.legacy.mod.
var OldToolchains = []string{"go1.20.14", "go1.21.13"}

// Variant is a way to build a target.
type Variant struct {
	Name  string
	Env   []string
	Flags []string
}

// The build modes the tests cover.
var (
	Plain         = Variant{Name: "plain"}
	Stripped      = Variant{Name: "stripped", Flags: []string{"-ldflags=-s -w"}}
	Trimpath      = Variant{Name: "trimpath", Flags: []string{"-trimpath"}}
	Production    = Variant{Name: "production", Flags: []string{"-trimpath", "-ldflags=-s -w"}} // as shipped
	PIE           = Variant{Name: "pie", Flags: []string{"-buildmode=pie"}}
	PIEStripped   = Variant{Name: "pie-stripped", Flags: []string{"-buildmode=pie", "-ldflags=-s -w"}}
	Cgo           = Variant{Name: "cgo", Env: []string{"CGO_ENABLED=1"}, Flags: []string{"-tags=withcgo", "-ldflags=-linkmode=external"}}
	CgoStripped   = Variant{Name: "cgo-stripped", Env: []string{"CGO_ENABLED=1"}, Flags: []string{"-tags=withcgo", "-ldflags=-linkmode=external -s -w"}}
	ARM64         = Variant{Name: "arm64", Env: []string{"GOARCH=arm64"}}
	ARM64Stripped = Variant{Name: "arm64-stripped", Env: []string{"GOARCH=arm64"}, Flags: []string{"-ldflags=-s -w"}}
)

// StrippedTwin is the stripped build of the same code and layout as v, if any.
func StrippedTwin(v Variant) (Variant, bool) {
	switch v.Name {
	case Plain.Name, Trimpath.Name:
		return Stripped, true
	case PIE.Name:
		return PIEStripped, true
	case Cgo.Name:
		return CgoStripped, true
	case ARM64.Name:
		return ARM64Stripped, true
	}
	return Variant{}, false
}

// Target is a built test program.
type Target struct {
	Name      string // "httpserver"
	Toolchain string
	Variant   Variant
	Path      string
}

func (t Target) String() string { return t.Name + "/" + t.Toolchain + "/" + t.Variant.Name }

var (
	targetMu   sync.Mutex
	targetOnce = map[string]*sync.Once{}
	targetErr  = map[string]error{}
)

// BuildTargets builds the program in internal/testenv/targets/NAME with every
// toolchain and variant given, two at a time, and returns them in that order. Builds
// are cached on disk by source, toolchain and variant, so suites and runs share them.
func BuildTargets(t testing.TB, name string, toolchains []string, variants []Variant) []Target {
	t.Helper()
	targets, err := BuildTargetsErr(name, toolchains, variants)
	if err != nil {
		t.Fatal(err)
	}
	return targets
}

// BuildTargetsErr is BuildTargets for code that is not a test (benchmarks).
func BuildTargetsErr(name string, toolchains []string, variants []Variant) ([]Target, error) {
	var targets []Target
	for _, tc := range toolchains {
		for _, v := range variants {
			targets = append(targets, Target{Name: name, Toolchain: tc, Variant: v})
		}
	}
	return targets, buildAll(targets)
}

// buildAll builds targets two at a time, setting their paths.
func buildAll(targets []Target) error {
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	errs := make([]error, len(targets))
	for i := range targets {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			targets[i].Path, errs[i] = buildTarget(targets[i])
		}(i)
	}
	wg.Wait()
	return errors.Join(errs...)
}

func buildTarget(tg Target) (string, error) {
	dir := filepath.Join(RepoRoot(), "internal", "testenv", "targets", tg.Name)
	key, err := targetKey(dir, tg)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "otel-go-launcher", "targets", tg.Name+"-"+tg.Toolchain+"-"+tg.Variant.Name+"-"+key)
	targetMu.Lock()
	once, ok := targetOnce[out]
	if !ok {
		once = &sync.Once{}
		targetOnce[out] = once
	}
	targetMu.Unlock()
	once.Do(func() {
		if _, err := os.Stat(out); err == nil {
			return
		}
		os.MkdirAll(filepath.Dir(out), 0o755)
		tmp := out + ".tmp" + fmt.Sprint(os.Getpid())
		args := append([]string{"build", "-o", tmp}, tg.Variant.Flags...)
		if slices.Contains(OldToolchains, tg.Toolchain) {
			args = append(args, "-modfile=go.legacy.mod")
		}
		cmd := exec.Command("go", append(args, ".")...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+tg.Toolchain, "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0", "GOWORK=off")
		cmd.Env = append(cmd.Env, tg.Variant.Env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			targetMu.Lock()
			targetErr[out] = fmt.Errorf("build %s: %v\n%s", tg, err, b)
			targetMu.Unlock()
			return
		}
		if err := os.Rename(tmp, out); err != nil {
			targetMu.Lock()
			targetErr[out] = err
			targetMu.Unlock()
		}
	})
	targetMu.Lock()
	defer targetMu.Unlock()
	return out, targetErr[out]
}

// targetKey hashes the target's sources with how it is built.
func targetKey(dir string, tg Target) (string, error) {
	h := sha256.New()
	fmt.Fprintln(h, tg.Toolchain, tg.Variant.Name, strings.Join(tg.Variant.Env, " "), strings.Join(tg.Variant.Flags, " "))
	ents, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			return "", err
		}
		fmt.Fprintln(h, n, len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:16], nil
}

// ModuleBuild is a build of a target against one release of the module it is about
// (grpc for grpcservice, go-redis for cacheservice), and the toolchain.
type ModuleBuild struct {
	Version   string // "v1.40.0"; its go.mod is go.MODULE-VERSION.mod ("" for go.mod's)
	Toolchain string
	Stripped  bool
	PIE       bool // -buildmode=pie: its addresses known only once it runs
}

// moduleTarget is a target built against several releases of its module: its go.mod
// requires Default, go.Tag-VERSION.mod (and .sum) another.
type moduleTarget struct {
	Name, Tag, Default string
}

// build builds the target for each build, cached as BuildTargets does.
// mustBuild is build for a test: a failed build fails it.
func (m moduleTarget) mustBuild(t testing.TB, builds []ModuleBuild) []Target {
	t.Helper()
	targets, err := m.build(builds)
	if err != nil {
		t.Fatal(err)
	}
	return targets
}

func (m moduleTarget) build(builds []ModuleBuild) ([]Target, error) {
	var targets []Target
	for _, b := range builds {
		v := Variant{Name: m.Tag + "-" + b.Version}
		if b.Version != m.Default {
			v.Flags = append(v.Flags, "-modfile=go."+m.Tag+"-"+b.Version+".mod")
		}
		if b.Stripped {
			v.Name += "-stripped"
			v.Flags = append(v.Flags, "-ldflags=-s -w")
		}
		if b.PIE {
			v.Name += "-pie"
			v.Flags = append(v.Flags, "-buildmode=pie")
		}
		targets = append(targets, Target{Name: m.Name, Toolchain: b.Toolchain, Variant: v})
	}
	return targets, buildAll(targets)
}

// GRPCBuild is a grpc release the grpcservice target builds with, and the toolchain.
type GRPCBuild = ModuleBuild

// GRPCBuilds cover the grpc releases the probes read differently: before v1.60
// (operateHeaders without a context), v1.60-v1.68 (WriteStatus, transport.Stream), and
// v1.69 on (writeStatus, ServerStream); the oldest supported, a middle and the newest
// release; two Go toolchains; the newest also stripped.
var GRPCBuilds = []GRPCBuild{
	{Version: "v1.40.0", Toolchain: "go1.22.12"},
	{Version: "v1.60.1", Toolchain: "go1.24.11"},
	{Version: "v1.85.0", Toolchain: "go1.26.8"},
	{Version: "v1.85.0", Toolchain: "go1.26.8", Stripped: true},
}

// GRPCDefault is the release of grpcservice's go.mod.
const GRPCDefault = "v1.60.1"

var grpcService = moduleTarget{Name: "grpcservice", Tag: "grpc", Default: GRPCDefault}

// BuildGRPC builds the grpcservice target for each build, cached as BuildTargets does.
func BuildGRPC(t testing.TB, builds ...GRPCBuild) []Target {
	t.Helper()
	return grpcService.mustBuild(t, builds)
}

// BuildGRPCErr is BuildGRPC for code that is not a test (benchmarks).
func BuildGRPCErr(builds ...GRPCBuild) ([]Target, error) { return grpcService.build(builds) }

// ConnBuilds are the connservice target's builds (gRPC and HTTP through cmux, a PROXY
// protocol listener and TLS): grpc before v1.60 (its connection's addresses in
// http2Server.remoteAddr and localAddr) on Go 1.22 (net/http's bundled HTTP/2), and the
// newest (in a peer.Peer) on Go 1.26, also stripped, and on Go 1.27
// (net/http/internal/http2).
var ConnBuilds = []ModuleBuild{
	{Version: "v1.59.0", Toolchain: "go1.22.12"},
	{Version: ConnDefault, Toolchain: "go1.26.8"},
	{Version: ConnDefault, Toolchain: "go1.26.8", Stripped: true},
	{Version: ConnDefault, Toolchain: "go1.27.3"},
}

// ConnDefault is the grpc release of connservice's go.mod.
const ConnDefault = "v1.85.0"

var connService = moduleTarget{Name: "connservice", Tag: "grpc", Default: ConnDefault}

// BuildConn builds the connservice target for each build, cached as BuildTargets does.
func BuildConn(t testing.TB, builds ...ModuleBuild) []Target {
	t.Helper()
	return connService.mustBuild(t, builds)
}

// RedisBuilds cover the go-redis releases the probe reads differently: the oldest
// v9 line (baseClient.opt first, Options.DB at 112) on an old toolchain, and the
// newest (opt after a field, DB at 152, process inlined: processStartingAt probed),
// also stripped.
var RedisBuilds = []ModuleBuild{
	{Version: "v9.0.5", Toolchain: "go1.22.12"},
	{Version: RedisDefault, Toolchain: "go1.26.8"},
	{Version: RedisDefault, Toolchain: "go1.26.8", Stripped: true},
}

// RedisDefault is the go-redis release of cacheservice's go.mod.
const RedisDefault = "v9.23.0"

var cacheService = moduleTarget{Name: "cacheservice", Tag: "redis", Default: RedisDefault}

// BuildRedis builds the cacheservice target for each build, cached as BuildTargets does.
func BuildRedis(t testing.TB, builds ...ModuleBuild) []Target {
	t.Helper()
	return cacheService.mustBuild(t, builds)
}

// BuildRedisErr is BuildRedis for code that is not a test (benchmarks).
func BuildRedisErr(builds ...ModuleBuild) ([]Target, error) { return cacheService.build(builds) }

// PgxBuilds cover the pgx releases the pgx probe reads differently: v5.5.5 (PgError's
// Code at 16, no PrepareError: the server's error itself) and the newest (go.mod's),
// plain and stripped.
var PgxBuilds = []ModuleBuild{
	{Version: "v5.5.5", Toolchain: "go1.26.8"},
	{Version: "v5.5.5", Toolchain: "go1.26.8", Stripped: true},
	{Version: PgxDefault, Toolchain: "go1.26.8"},
	{Version: PgxDefault, Toolchain: "go1.26.8", Stripped: true},
}

// PgxDefault is the pgx release of pgxservice's go.mod.
const PgxDefault = "v5.13.0"

var pgxService = moduleTarget{Name: "pgxservice", Tag: "pgx", Default: PgxDefault}

// BuildPgx builds the pgxservice target for each build, cached as BuildTargets does.
func BuildPgx(t testing.TB, builds ...ModuleBuild) []Target {
	t.Helper()
	return pgxService.mustBuild(t, builds)
}

// OtelAPIBuilds cover two releases of the OpenTelemetry API (go.opentelemetry.io/otel)
// the otelapi probe bridges, the newest (otelapiservice's go.mod) and the oldest,
// v1.33.0 (the first with newSpan), plain and stripped; and the newest
// position-independent (the probe's addresses set once it runs).
var OtelAPIBuilds = []ModuleBuild{
	{Version: "v1.33.0", Toolchain: "go1.26.8"},
	{Version: "v1.33.0", Toolchain: "go1.26.8", Stripped: true},
	{Version: OtelAPIDefault, Toolchain: "go1.26.8"},
	{Version: OtelAPIDefault, Toolchain: "go1.26.8", Stripped: true},
	{Version: OtelAPIDefault, Toolchain: "go1.26.8", PIE: true},
}

// OtelAPIDefault is the otel release of otelapiservice's go.mod.
const OtelAPIDefault = "v1.47.0"

var otelAPIService = moduleTarget{Name: "otelapiservice", Tag: "otel", Default: OtelAPIDefault}

// BuildOtelAPI builds the otelapiservice target for each build, cached as BuildTargets does.
func BuildOtelAPI(t testing.TB, builds ...ModuleBuild) []Target {
	t.Helper()
	return otelAPIService.mustBuild(t, builds)
}

// SQLDriversDefault names the drivers of dbservice's go.mod (pgx v5.13.0, lib/pq
// v1.12.3, go-sql-driver/mysql v1.11.0); SQLDriversOld those of go.drivers-old.mod,
// older releases the database/sql probe reads differently: pgx v5.5.5 (PgError's Code
// at 16, no PrepareError: the server's error reaches database/sql itself), lib/pq
// v1.10.9 (no pq.Config: no database name) and go-sql-driver/mysql v1.5.0
// (mysqlConn.cfg at 168).
const (
	SQLDriversDefault = "newest"
	SQLDriversOld     = "old"
)

var dbService = moduleTarget{Name: "dbservice", Tag: "drivers", Default: SQLDriversDefault}

// BuildDBService builds the dbservice target with the drivers each build names
// (SQLDriversDefault, SQLDriversOld), cached as BuildTargets does.
func BuildDBService(t testing.TB, builds ...ModuleBuild) []Target {
	t.Helper()
	return dbService.mustBuild(t, builds)
}

// Router is a router's test service (internal/testenv/targets/NAME): the same
// endpoints for every router, built against the releases of its module that Builds
// name.
type Router struct {
	moduleTarget
	Module string // the router's module: "github.com/go-chi/chi/v5"
	// Builds: the oldest release the route probe supports on an old toolchain, and
	// the newest (go.mod's), plain and stripped.
	Builds []ModuleBuild
}

// Build builds the router's service for each build, cached as BuildTargets does.
func (r Router) Build(t testing.TB, builds ...ModuleBuild) []Target {
	t.Helper()
	return r.mustBuild(t, builds)
}

// BuildErr is Build for code that is not a test (benchmarks).
func (r Router) BuildErr(builds ...ModuleBuild) ([]Target, error) { return r.build(builds) }

// Newest is the build of the router's newest release with the newest toolchain.
func (r Router) Newest() ModuleBuild { return ModuleBuild{Version: r.Default, Toolchain: "go1.26.8"} }

// Chi is github.com/go-chi/chi/v5's service.
var Chi = Router{
	moduleTarget: moduleTarget{Name: "chiservice", Tag: "chi", Default: "v5.5.0"},
	Module:       "github.com/go-chi/chi/v5",
	Builds: []ModuleBuild{
		{Version: "v5.0.0", Toolchain: "go1.22.12"},
		{Version: "v5.5.0", Toolchain: "go1.26.8"},
		{Version: "v5.5.0", Toolchain: "go1.26.8", Stripped: true},
	},
}

// GorillaMux is github.com/gorilla/mux's service.
var GorillaMux = Router{
	moduleTarget: moduleTarget{Name: "muxservice", Tag: "mux", Default: "v1.8.1"},
	Module:       "github.com/gorilla/mux",
	Builds: []ModuleBuild{
		{Version: "v1.7.4", Toolchain: "go1.22.12"},
		{Version: "v1.8.1", Toolchain: "go1.26.8"},
		{Version: "v1.8.1", Toolchain: "go1.26.8", Stripped: true},
	},
}

// Gin is github.com/gin-gonic/gin's service.
var Gin = Router{
	moduleTarget: moduleTarget{Name: "ginservice", Tag: "gin", Default: "v1.12.0"},
	Module:       "github.com/gin-gonic/gin",
	Builds: []ModuleBuild{
		{Version: "v1.5.0", Toolchain: "go1.22.12"},
		{Version: "v1.12.0", Toolchain: "go1.26.8"},
		{Version: "v1.12.0", Toolchain: "go1.26.8", Stripped: true},
	},
}

// Echo is github.com/labstack/echo/v4's service.
var Echo = Router{
	moduleTarget: moduleTarget{Name: "echoservice", Tag: "echo", Default: "v4.16.6"},
	Module:       "github.com/labstack/echo/v4",
	Builds: []ModuleBuild{
		{Version: "v4.10.2", Toolchain: "go1.22.12"},
		{Version: "v4.16.6", Toolchain: "go1.26.8"},
		{Version: "v4.16.6", Toolchain: "go1.26.8", Stripped: true},
	},
}

// CaddyVersion is the release of Caddy the tests run as a proxy the project did not
// write (a Go program: it is traced as any).
const CaddyVersion = "v2.11.9"

// BuildCaddy builds Caddy from the module proxy (go install), once, cached on disk by
// release and toolchain as BuildTargets caches its targets.
func BuildCaddy(t testing.TB) string {
	t.Helper()
	p, err := BuildCaddyErr()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// BuildCaddyErr is BuildCaddy for code that is not a test (benchmarks).
func BuildCaddyErr() (string, error) {
	return buildModule("caddy", "github.com/caddyserver/caddy/v2/cmd/caddy", CaddyVersion, "go1.26.8")
}

// buildModule installs pkg@version with toolchain into the targets cache as
// name-version-toolchain, once per test process, and not again while it is there.
func buildModule(name, pkg, version, toolchain string) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	out := filepath.Join(cache, "otel-go-launcher", "targets", name+"-"+version+"-"+toolchain)
	targetMu.Lock()
	once, ok := targetOnce[out]
	if !ok {
		once = &sync.Once{}
		targetOnce[out] = once
	}
	targetMu.Unlock()
	once.Do(func() {
		if _, err := os.Stat(out); err == nil {
			return
		}
		os.MkdirAll(filepath.Dir(out), 0o755)
		bin, err := os.MkdirTemp(filepath.Dir(out), name+"-install-")
		if err == nil {
			defer os.RemoveAll(bin)
			cmd := exec.Command("go", "install", pkg+"@"+version)
			cmd.Env = append(os.Environ(), "GOTOOLCHAIN="+toolchain, "GOBIN="+bin, "GOFLAGS=-buildvcs=false", "CGO_ENABLED=0", "GOWORK=off")
			var b []byte
			if b, err = cmd.CombinedOutput(); err != nil {
				err = fmt.Errorf("go install %s@%s: %v\n%s", pkg, version, err, b)
			} else {
				err = os.Rename(filepath.Join(bin, filepath.Base(pkg)), out)
			}
		}
		if err != nil {
			targetMu.Lock()
			targetErr[out] = err
			targetMu.Unlock()
		}
	})
	targetMu.Lock()
	defer targetMu.Unlock()
	return out, targetErr[out]
}

// KafkaGoBuilds cover segmentio/kafka-go: an old release (v0.4.30, before
// Writer.AllowAutoTopicCreation) on an old toolchain, and the newest (kafkaservice's
// go.mod), also stripped.
var KafkaGoBuilds = []ModuleBuild{
	{Version: "v0.4.30", Toolchain: "go1.22.12"},
	{Version: KafkaGoDefault, Toolchain: "go1.26.8"},
	{Version: KafkaGoDefault, Toolchain: "go1.26.8", Stripped: true},
}

// KafkaGoDefault is the kafka-go release of kafkaservice's go.mod.
const KafkaGoDefault = "v0.4.51"

var kafkaService = moduleTarget{Name: "kafkaservice", Tag: "kafkago", Default: KafkaGoDefault}

// BuildKafkaGo builds the kafkaservice target for each build, cached as BuildTargets does.
func BuildKafkaGo(t testing.TB, builds ...ModuleBuild) []Target {
	t.Helper()
	return kafkaService.mustBuild(t, builds)
}

// BuildKafkaGoErr is BuildKafkaGo for code that is not a test (benchmarks).
func BuildKafkaGoErr(builds ...ModuleBuild) ([]Target, error) { return kafkaService.build(builds) }

// SaramaBuilds cover IBM/sarama: the first release under the IBM module path
// (v1.40.1) on an old toolchain, and the newest (saramaservice's go.mod), also stripped.
var SaramaBuilds = []ModuleBuild{
	{Version: "v1.40.1", Toolchain: "go1.22.12"},
	{Version: SaramaDefault, Toolchain: "go1.26.8"},
	{Version: SaramaDefault, Toolchain: "go1.26.8", Stripped: true},
}

// SaramaDefault is the sarama release of saramaservice's go.mod.
const SaramaDefault = "v1.62.0"

var saramaService = moduleTarget{Name: "saramaservice", Tag: "sarama", Default: SaramaDefault}

// BuildSarama builds the saramaservice target for each build, cached as BuildTargets does.
func BuildSarama(t testing.TB, builds ...ModuleBuild) []Target {
	t.Helper()
	return saramaService.mustBuild(t, builds)
}

// BuildSaramaErr is BuildSarama outside a test (benchmarks).
func BuildSaramaErr(builds ...ModuleBuild) ([]Target, error) { return saramaService.build(builds) }

var saramaAsync = moduleTarget{Name: "saramaasync", Tag: "sarama", Default: SaramaDefault}

// BuildSaramaAsync builds the saramaasync target (an AsyncProducer, no SyncProducer)
// for each build, cached as BuildTargets does.
func BuildSaramaAsync(t testing.TB, builds ...ModuleBuild) []Target {
	t.Helper()
	return saramaAsync.mustBuild(t, builds)
}

// BuildSaramaAsyncErr is BuildSaramaAsync outside a test (benchmarks).
func BuildSaramaAsyncErr(builds ...ModuleBuild) ([]Target, error) { return saramaAsync.build(builds) }
