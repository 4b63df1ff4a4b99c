// Command execonly execs its first argument with the rest, and does nothing else: the
// least a runtime wrapper written in Go can cost (the Go runtime's start, then an exec
// from a process that has started its threads).
package main

import (
	"os"
	"syscall"
)

func main() {
	err := syscall.Exec(os.Args[1], os.Args[1:], os.Environ())
	os.Stderr.WriteString("execonly: " + err.Error() + "\n")
	os.Exit(1)
}
