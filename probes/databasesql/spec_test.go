package databasesql

import (
	"strings"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// database/sql's probe is left to pgx's where pgx's adapter (from v5.5.0) is the
// program's only driver - pgxservice, every pgx release it is built with, plain and
// stripped - and kept where other drivers are linked too (dbservice: SQLite, lib/pq,
// MySQL beside pgx), whose operations pgx's probe never sees.
func TestLeftToPgxWhereItIsTheOnlyDriver(t *testing.T) {
	check := func(tg testenv.Target, leftToPgx bool) {
		t.Run(tg.String(), func(t *testing.T) {
			bin, err := offsets.Open(tg.Path)
			if err != nil {
				t.Fatal(err)
			}
			defer bin.Close()
			rep, err := offsets.AnalyzeFunctions(bin, []offsets.Spec{Spec})
			if err != nil {
				t.Fatal(err)
			}
			p := rep.Probes[0]
			switch {
			case leftToPgx && (p.Enabled || !p.Unused() || !strings.Contains(p.Reason, "pgx's probe")):
				t.Errorf("enabled %v, unused %v (%s): want it left to pgx's probe, silently", p.Enabled, p.Unused(), p.Reason)
			case !leftToPgx && !p.Enabled:
				t.Errorf("disabled: %s", p.Reason)
			}
		})
	}
	for _, tg := range testenv.BuildPgx(t, testenv.PgxBuilds...) {
		check(tg, true)
	}
	for _, tg := range testenv.BuildTargets(t, "dbservice", []string{"go1.26.8"}, []testenv.Variant{testenv.Plain, testenv.Stripped}) {
		check(tg, false)
	}
}
