package otelapi

import (
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

// Every program loads on this kernel, each well within the verifier's budget.
func TestProgramsLoad(t *testing.T) {
	spec, err := loadOtelapi()
	if err != nil {
		t.Fatal(err)
	}
	testenv.ProgramsLoad(t, spec)
}
