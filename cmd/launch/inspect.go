package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
)

func inspectCommand() *cli.Command {
	return &cli.Command{
		Name:      "inspect",
		Usage:     "show what the launcher finds in a Go binary: versions, probes, offsets",
		ArgsUsage: "BINARY",
		Description: `inspect reads BINARY without running it: its Go and module versions, and for each
probe whether it can be enabled, the functions it attaches to (ELF file offsets of their
entries and RET instructions) and the struct field offsets it reads, with their source
(--json lists every offset). Stripped binaries work: functions come from the Go
runtime's own table; field offsets come from DWARF (source "dwarf"), else from the
offsets database embedded in the launcher for exactly the binary's version ("db"),
else from the binary's runtime type descriptors ("typeinfo"), else they are "missing"
and the probe is disabled with the reason. A version the database has not seen is
never given a neighbouring version's offsets unconfirmed.`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON (the format is a stable contract)"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				fmt.Fprintln(os.Stderr, "launch inspect: want exactly one BINARY: launch inspect [--json] BINARY")
				return exitError{2}
			}
			if !useOffsetsDB(c, "launch inspect") {
				return exitError{2}
			}
			r, err := inspect(c.Args().First())
			if err != nil {
				fmt.Fprintf(os.Stderr, "launch inspect: %v\n", err)
				return exitError{1}
			}
			if c.Bool("json") {
				enc := json.NewEncoder(os.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(r)
			}
			printReport(os.Stdout, r)
			return nil
		},
	}
}

func inspect(path string) (*offsets.Report, error) {
	b, err := offsets.Open(path)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return offsets.Analyze(b, probes.Specs())
}

func printReport(w io.Writer, r *offsets.Report) {
	yes := func(ok bool, y, n string) string {
		if ok {
			return y
		}
		return n
	}
	goVersion := r.GoVersion
	if len(r.Experiments) > 0 {
		goVersion += " (GOEXPERIMENT=" + strings.Join(r.Experiments, ",") + ")"
	}
	fmt.Fprintf(w, "%s: %s, %s, %s, %s, %s\n", r.Path, goVersion, r.Arch,
		yes(r.PIE, "PIE", "not PIE"), yes(r.Stripped, "stripped", "symbol table"), yes(r.DWARF, "DWARF", "no DWARF"))
	const shown = 10
	for i, m := range r.Modules {
		if i == shown {
			fmt.Fprintf(w, "  ... and %d more modules (--json lists them)\n", len(r.Modules)-shown)
			break
		}
		label := "dependency"
		if i == 0 {
			label = "main module"
		}
		fmt.Fprintf(w, "  %-11s %s %s\n", label, m.Path, m.Version)
	}
	for _, p := range r.Probes {
		state := "enabled"
		if !p.Enabled {
			state = "disabled: " + p.Reason
		}
		fmt.Fprintf(w, "probe %s: %s\n", p.Name, state)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, u := range p.Uprobes {
			rets := ""
			switch n := len(u.Returns); {
			case n == 1:
				rets = "1 return"
			case n > 1:
				rets = fmt.Sprintf("%d returns", n)
			}
			at := fmt.Sprintf("at %#x", u.Offset)
			switch {
			case len(u.Calls) == 1:
				rets = "1 call site only"
			case len(u.Calls) > 1:
				rets = fmt.Sprintf("%d call sites only", len(u.Calls))
			case u.EntryProbe == nil:
				rets += " only"
			case *u.EntryProbe != u.Offset:
				at += fmt.Sprintf("+%d", *u.EntryProbe-u.Offset)
			}
			fmt.Fprintf(tw, "  uprobe\t%s\t%s\t%s\n", u.Symbol, at, rets)
		}
		// Offsets are in --json; here, where they come from (the reason names the
		// missing ones that matter).
		for _, c := range offsets.FieldSources(p) {
			src := c.Source
			what := "from " + src + " " + map[string]string{
				offsets.SourceDWARF:    "(the binary's debug information)",
				offsets.SourceDB:       "(the embedded offsets database, for " + r.GoVersion + ")",
				offsets.SourceTypeInfo: "(the binary's runtime type descriptors)",
			}[src]
			if src == offsets.SourceMissing {
				what = "missing"
			}
			fmt.Fprintf(tw, "  fields\t%d %s\t\t\n", c.Fields, what)
		}
		tw.Flush()
	}
}
