package kit

import (
	"errors"
	"fmt"
	"sync"

	"github.com/cilium/ebpf"
)

// SharedMaps are the maps of bpf/include/spans.h: the in-flight server spans, by
// request context and by goroutine. Every probe's object of one app uses the same ones.
var SharedMaps = []string{"inflight_contexts", "inflight_goroutines"}

// Shared holds the maps the probes of one app share. Each is created when the first
// object that declares it loads, from that declaration (all come from spans.h); a
// later object whose declaration differs fails to load, saying which map.
type Shared struct {
	mu   sync.Mutex
	maps map[string]*ebpf.Map
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
