package wire

import (
	"fmt"
	"os"
	"testing"

	"github.com/otel-go-launcher/otel-go-launcher/internal/testenv"
)

func TestMain(m *testing.M) {
	// The socket programs attach at this test's own cgroup, as at a container's.
	restore, err := testenv.OwnCgroup()
	if err != nil {
		fmt.Fprintln(os.Stderr, "wire:", err)
	}
	code := m.Run()
	restore()
	testenv.Cleanup()
	os.Exit(code)
}
