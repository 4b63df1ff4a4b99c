//go:build withcgo

package main

// int answer(void) { return 42; }
import "C"

// Linking C code forces the external linker, with its own start-up code before Go's.
var _ = C.answer
