package kit

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
)

// SharedMaps are the maps every object of one app uses the same of: those of
// bpf/include/spans.h (the in-flight server spans, by request context and by goroutine;
// where the app's context types keep their parent) and of bpf/include/outgoing.h (the
// trace context on its way to the wire, and the app's process ID as the kernel knows
// it).
var SharedMaps = []string{"inflight_contexts", "inflight_goroutines", "context_parents", "outgoing_http1", "outgoing_h2", "app_process"}

// Shared holds the maps the probes of one app share. Each is created when the first
// object that declares it loads, from that declaration (all come from spans.h); a
// later object whose declaration differs fails to load, saying which map.
type Shared struct {
	mu          sync.Mutex
	maps        map[string]*ebpf.Map
	propagating bool
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
