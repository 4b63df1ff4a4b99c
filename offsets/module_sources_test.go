package offsets_test

import (
	"slices"
	"testing"

	"golang.org/x/mod/semver"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
	"github.com/otel-go-launcher/otel-go-launcher/probes/chi"
	"github.com/otel-go-launcher/otel-go-launcher/probes/databasesql"
	"github.com/otel-go-launcher/otel-go-launcher/probes/echo"
	"github.com/otel-go-launcher/otel-go-launcher/probes/gin"
	"github.com/otel-go-launcher/otel-go-launcher/probes/goredis"
	"github.com/otel-go-launcher/otel-go-launcher/probes/gorillamux"
	grpcprobe "github.com/otel-go-launcher/otel-go-launcher/probes/grpc"
	"github.com/otel-go-launcher/otel-go-launcher/probes/kafkago"
)

// moduleFields are the fields the probes of module read in a binary of its version v.
func moduleFields(module, v string) []offsets.FieldRef {
	var fields []offsets.FieldRef
	for _, s := range probes.Specs() {
		if s.Module != module {
			continue
		}
		for _, f := range s.Fields {
			if (f.Since == "" || semver.Compare(v, f.Since) >= 0) && (f.Before == "" || semver.Compare(v, f.Before) < 0) &&
				!slices.Contains(fields, f.FieldRef) {
				fields = append(fields, f.FieldRef)
			}
		}
	}
	return fields
}

// The gRPC probes read structs of grpc, golang.org/x/net, genproto and the standard
// library: in builds of the grpc releases the probes read differently, the type
// descriptors and the database (each field under its own module's version) give the
// offsets DWARF gives, and a stripped build gets every one from the database.
func TestGRPCSourcesAgreeWithDWARF(t *testing.T) {
	checkModuleSources(t, grpcprobe.Module, testenv.BuildGRPC(t, testenv.GRPCBuilds...))
}

// The go-redis probe reads structs of go-redis: the same, in builds of the oldest and
// newest v9 lines.
func TestRedisSourcesAgreeWithDWARF(t *testing.T) {
	checkModuleSources(t, goredis.Module, testenv.BuildRedis(t, testenv.RedisBuilds...))
}

// The kafka-go probe reads structs of kafka-go (Writer, Reader, Message, protocol's
// Header): the same, in builds of v0.4.30 (Go 1.22) and v0.4.51.
func TestKafkaGoSourcesAgreeWithDWARF(t *testing.T) {
	checkModuleSources(t, kafkago.Module, testenv.BuildKafkaGo(t, testenv.KafkaGoBuilds...))
}

// The route probes read their router's structs: the same, in builds of the oldest
// supported and the newest release.
func TestRouterSourcesAgreeWithDWARF(t *testing.T) {
	for _, r := range []struct {
		module string
		router testenv.Router
	}{
		{chi.Module, testenv.Chi},
		{gorillamux.Module, testenv.GorillaMux},
		{gin.Module, testenv.Gin},
		{echo.Module, testenv.Echo},
	} {
		t.Run(r.module, func(t *testing.T) { checkModuleSources(t, r.module, r.router.Build(t, r.router.Builds...)) })
	}
}

// The database/sql probe reads structs of pgx, lib/pq and go-sql-driver/mysql, for the
// server's address, the database's name and an error's code and message: the same, in
// the dbservice target's builds (the three drivers, Go 1.26, plain and stripped).
func TestSQLDriverSourcesAgreeWithDWARF(t *testing.T) {
	tgs := testenv.BuildTargets(t, "dbservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain, testenv.Stripped})
	for _, s := range []offsets.Spec{databasesql.PgxSpec, databasesql.PQSpec, databasesql.MySQLSpec} {
		checkModuleSources(t, s.Module, tgs)
	}
}

// checkModuleSources checks, in builds of module's releases (each stripped one after
// a plain one of its release and toolchain), that the type descriptors and the
// database give the offsets DWARF gives, and a stripped build gets every one from
// the database.
func checkModuleSources(t *testing.T, module string, tgs []testenv.Target) {
	t.Helper()
	db, err := offsets.EmbeddedDatabase()
	if err != nil {
		t.Fatal(err)
	}
	var specs []offsets.Spec
	for _, s := range probes.Specs() {
		if s.Module == module {
			specs = append(specs, s)
		}
	}
	dwarfOf := map[string]map[offsets.FieldRef]uint64{} // by version and toolchain
	for _, tg := range tgs {
		b := open(t, tg.Path)
		v := b.ModuleVersion(module)
		key := v + " " + tg.Toolchain
		want := moduleFields(module, v)
		if !b.DWARF {
			r, err := offsets.Analyze(b, specs)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range r.Probes {
				if !p.Enabled {
					t.Errorf("%s: %s disabled: %s", tg, p.Name, p.Reason)
				}
				for _, f := range p.Fields {
					if w, ok := dwarfOf[key][fieldRef(f.Name)]; !ok || f.Source != offsets.SourceDB || f.Offset == nil || *f.Offset != w {
						t.Errorf("%s: %s = %v from %s, want %d from the database (plain build: %v)", tg, f.Name, f.Offset, f.Source, w, ok)
					}
				}
			}
			continue
		}
		dw, err := b.DWARFFieldOffsets(want)
		if err != nil {
			t.Fatal(err)
		}
		if len(dw) != len(want) {
			t.Errorf("%s: DWARF has %d of the %d fields: %v", tg, len(dw), len(want), dw)
		}
		dwarfOf[key] = dw
		ti, err := b.TypeInfoFieldOffsets(want)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range want {
			module, version := b.PackageModule(f.Package())
			off, exact, ok := db.Lookup(module, version, f)
			if !exact || !ok || off != dw[f] {
				t.Errorf("%s: %s: database (%s %s) %d (exact %v, found %v), DWARF %d", tg, f, module, version, off, exact, ok, dw[f])
			}
			if got, ok := ti[f]; !ok || got != dw[f] {
				t.Errorf("%s: %s: typeinfo %d (found %v), DWARF %d", tg, f, got, ok, dw[f])
			}
		}
	}
}
