// Command ticker calls tick about once a millisecond until it is killed: a target for
// the uprobe tests.
package main

import "time"

//go:noinline
func tick(n int) int { return n + 1 }

func main() {
	for n := 0; ; n = tick(n) {
		time.Sleep(time.Millisecond)
	}
}
