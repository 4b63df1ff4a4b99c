package main

import (
	"context"
	"errors"

	"github.com/otel-go-launcher/otel-go-launcher/launcher"
	"github.com/otel-go-launcher/otel-go-launcher/probes"
	"github.com/otel-go-launcher/otel-go-launcher/telemetry"
)

// The probes' session ends the spans still open at the app's exit then, and may go on
// attaching once the app runs (Options.Overlap).
var (
	_ launcher.ExitAware = (*probes.Session)(nil)
	_ launcher.Loading   = (*probes.Session)(nil)
)

// ebpfInstrumenter attaches the eBPF probes: the launcher's real Instrumenter. It lives
// here, beside its one user, so that process supervision (package launcher) knows no
// probes and does not link them.
type ebpfInstrumenter struct {
	probes probes.Options
}

// Instrument checks privileges, analyses the target, and attaches the probes.
func (e ebpfInstrumenter) Instrument(ctx context.Context, t launcher.Target) (launcher.Session, error) {
	if err := launcher.Preflight(); err != nil {
		return nil, err
	}
	s, err := probes.Instrument(ctx, t.Path, t.PID, e.probes)
	switch {
	case errors.Is(err, telemetry.ErrDisabled):
		return nil, &launcher.Unavailable{Err: err, Quiet: true}
	case err != nil:
		return nil, &launcher.Unavailable{Err: err}
	}
	return s, nil
}
