// Package version reports which build of the launcher is running.
package version

import "runtime/debug"

// Version is set at link time by the Makefile (-X). Builds made with plain
// `go build` or `go install` fall back to the module version Go recorded.
var Version = ""

// String returns the launcher's version, never empty.
func String() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "(devel)"
}
