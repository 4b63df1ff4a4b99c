package launcher

import (
	"context"
	"errors"

	"github.com/otel-go-launcher/otel-go-launcher/probes"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// The probes' session ends the spans still open at the app's exit then.
var _ ExitAware = (*probes.Session)(nil)

// EBPF attaches the eBPF probes: the launcher's real Instrumenter.
type EBPF struct {
	Probes probes.Options
}

// Instrument checks privileges, analyses the target, and attaches the probes.
func (e EBPF) Instrument(ctx context.Context, t Target) (Session, error) {
	if err := Preflight(); err != nil {
		return nil, err
	}
	s, err := probes.Instrument(ctx, t.Path, t.PID, e.Probes)
	switch {
	case errors.Is(err, telemetry.ErrDisabled):
		return nil, &Unavailable{Err: err, Quiet: true}
	case err != nil:
		return nil, &Unavailable{Err: err}
	}
	return s, nil
}
