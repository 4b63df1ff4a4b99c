package kit

import (
	"errors"
	"fmt"
	"slices"

	"github.com/otel-go-launcher/otel-go-launcher/bpf"
)

// CheckedObject is a library's whole BPF object loaded on this host, for `launch
// doctor`: every program (all variants), each verified.
type CheckedObject struct {
	*bpf.Objects
	Programs int // how many loaded
}

// CheckObject loads every program of the library's object, the large ones in parallel,
// with shared maps of its own. The caller closes it (and may attach its programs
// first); on error nothing is left open.
func CheckObject(lib *Library) (*CheckedObject, error) {
	coll, err := lib.Object()
	if err != nil {
		return nil, fmt.Errorf("parse the BPF object: %w", err)
	}
	if err := CheckFields(lib.Specs, coll); err != nil {
		return nil, fmt.Errorf("BPF object and specs disagree (a bug): %w", err)
	}
	shared := NewShared()
	defer shared.Close() // the objects keep their own references
	maps, err := shared.mapsFor(coll)
	if err != nil {
		return nil, err
	}
	objs, err := bpf.LoadObjects(coll, bpf.LoadOptions{RingBufferSize: 4096, Shared: maps})
	if err != nil {
		return nil, err
	}
	objs.Preload(objs.Slow()...) // each on its own, in parallel
	var names []string
	for name := range coll.Programs {
		names = append(names, name)
	}
	slices.Sort(names)
	var errs []error
	for _, name := range names {
		if _, err := objs.Program(name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		objs.Close()
		return nil, err
	}
	return &CheckedObject{Objects: objs, Programs: len(names)}, nil
}

// CheckFindings is a library's doctor check: every program of its object loaded on this
// host (or why not), then the limits of what it traces, whatever the host.
func CheckFindings(lib *Library, limits ...string) []Finding {
	obj, err := CheckObject(lib)
	if err != nil {
		return []Finding{{Status: Fail, Text: fmt.Sprintf("probes %s: %v", lib.SpecNames(), err)}}
	}
	defer obj.Close()
	programs := fmt.Sprintf("%d programs", obj.Programs)
	if obj.Programs == 1 {
		programs = "1 program"
	}
	findings := []Finding{{Status: OK, Text: fmt.Sprintf("probes %s: %s verified", lib.SpecNames(), programs)}}
	for _, l := range limits {
		findings = append(findings, Finding{Status: Limit, Text: l})
	}
	return findings
}
