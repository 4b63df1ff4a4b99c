// Command held waits for a line on stdin, then calls work three times, printing each
// result: a target for the hold's tests, which stop it at its first call.
package main

import (
	"bufio"
	"fmt"
	"os"
)

//go:noinline
func work(n int) string { return fmt.Sprint("work ", n) }

func main() {
	bufio.NewReader(os.Stdin).ReadString('\n')
	for n := range 3 {
		fmt.Println(work(n))
	}
}
