package offsets

import (
	"regexp"
)

// FunctionsMatching finds the functions whose names match re, from the pclntab (which
// stripping keeps), by name: their entries' link addresses. For what a name cannot say
// in full: a closure's code, whose name depends on where the compiler inlined the
// function that makes it ("main.main.func1.WithSpanKind.1" for
// go.opentelemetry.io/otel/trace.WithSpanKind's closure inlined into main.main.func1).
func (b *Binary) FunctionsMatching(re *regexp.Regexp) (found map[string]uint64, err error) {
	defer faultsArePanics()()
	defer recoverAs(&err, b.Path)
	t, err := b.pclntab()
	if err != nil {
		return nil, err
	}
	found = map[string]uint64{}
	err = t.forEach(func(name []byte, entry, _ uint64, _ uint8) bool {
		if re.Match(name) {
			found[string(name)] = entry
		}
		return true
	})
	return found, err
}

// ItabTypeAddrs finds the runtime type descriptors of the types named as %T prints
// them ("trace.attributeOption"), among the dynamic types of the binary's itabs - the
// types it ever converts to an interface with methods -, by link address: the type
// word a probe reads from an interface's itab, whatever the type's kind (a named
// slice, a func type). Stripped or not. A type never converted has none.
func (b *Binary) ItabTypeAddrs(names []string) (found map[string]uint64, err error) {
	defer faultsArePanics()()
	defer recoverAs(&err, b.Path)
	found = map[string]uint64{}
	ti, err := b.typeInfo()
	if err != nil {
		return found, err
	}
	itabs, err := b.itabs(ti)
	if err != nil {
		return found, err
	}
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	for _, itab := range itabs {
		typ := ti.pointer(itab + 8)
		if ti.kind(typ) == 0 {
			continue
		}
		if name := ti.typeName(typ); want[name] {
			found[name] = typ
		}
	}
	return found, nil
}
