package kit

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"

	"github.com/otel-go-launcher/otel-go-launcher/offsets"
)

// SharedMaps are the maps every object of one app uses the same of: those of
// bpf/include/spans.h (the in-flight server spans, by request context and by goroutine;
// where the app's context types keep their parent), of bpf/include/routes.h (the
// templates routers matched, for those spans), of bpf/include/outgoing.h (the trace
// context on its way to the wire, and the app's process ID as the kernel knows it) and of
// bpf/include/sql_goroutines.h (the goroutines inside a database/sql operation, which a
// driver's own probe makes no second span for).
var SharedMaps = []string{"inflight_contexts", "inflight_goroutines", "context_parents", "inflight_routes", "outgoing_http1", "outgoing_h2", "app_process", "sql_goroutines"}

// Shared holds the maps the probes of one app share. Each is created when the first
// object that declares it loads, from that declaration (all come from spans.h); a
// later object whose declaration differs fails to load, saying which map.
type Shared struct {
	mu             sync.Mutex
	maps           map[string]*ebpf.Map
	propagating    bool
	contextParents []offsets.ContextParent
}

// SetPropagating says whether the socket programs that put what the probes file in
// outgoing.h on the wire are attached (probes/wire): the session sets it before it
// configures the probes, which file only then.
func (s *Shared) SetPropagating(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.propagating = on
}

// Propagating reports what SetPropagating said.
func (s *Shared) Propagating() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.propagating
}

// SetContextParents says which of the app's context types keep their parent elsewhere
// than first (offsets.ContextParents): the session sets it before it configures the
// probes, whose context walks look them up only if there are any (context_wrappers).
func (s *Shared) SetContextParents(ps []offsets.ContextParent) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.contextParents = ps
}

// ContextWrappers reports whether SetContextParents was given any.
func (s *Shared) ContextWrappers() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.contextParents) > 0
}

// FillContextParents writes what SetContextParents was given into the context_parents
// map (bpf/include/spans.h), at their link address + bias: where the app has its itabs.
func (s *Shared) FillContextParents(bias uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.maps["context_parents"]
	if m == nil || len(s.contextParents) == 0 {
		return nil
	}
	type where struct{ Hop, Offset uint32 } // struct context_parent
	for _, p := range s.contextParents {
		if p.Hop > 1<<31 || p.Offset > 1<<31 {
			continue // not in a real binary; without an entry the walk reads the first word
		}
		if err := m.Put(p.Itab+bias, where{uint32(p.Hop), uint32(p.Offset)}); err != nil {
			return fmt.Errorf("context_parents: %w", err)
		}
	}
	return nil
}

// MapsFor returns the shared maps obj declares, creating those not made yet: for an
// object that is not a library's (LoadObject does it for those).
func (s *Shared) MapsFor(obj *ebpf.CollectionSpec) (map[string]*ebpf.Map, error) {
	return s.mapsFor(obj)
}

// NewShared makes an empty set of shared maps.
func NewShared() *Shared { return &Shared{maps: map[string]*ebpf.Map{}} }

// mapsFor returns the shared maps obj declares, creating those not made yet.
func (s *Shared) mapsFor(obj *ebpf.CollectionSpec) (map[string]*ebpf.Map, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	maps := map[string]*ebpf.Map{}
	for _, name := range SharedMaps {
		spec, ok := obj.Maps[name]
		if !ok {
			continue
		}
		m, ok := s.maps[name]
		if !ok {
			var err error
			if m, err = ebpf.NewMap(spec); err != nil {
				return nil, fmt.Errorf("create the shared map %s: %w", name, err)
			}
			s.maps[name] = m
		}
		maps[name] = m
	}
	return maps, nil
}

// Close closes the shared maps; objects using them keep their own references.
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for name, m := range s.maps {
		if err := m.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close the shared map %s: %w", name, err))
		}
		delete(s.maps, name)
	}
	return errors.Join(errs...)
}
