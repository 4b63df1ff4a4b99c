// Command held waits for a line on stdin, then calls work three times and more once,
// printing each result: a target for the hold's tests, which stop it at its first
// call of each.
package main

import (
	"bufio"
	"fmt"
	"os"
)

//go:noinline
func work(n int) string { return fmt.Sprint("work ", n) }

//go:noinline
func more(n int) string { return fmt.Sprint("more ", n) }

func main() {
	bufio.NewReader(os.Stdin).ReadString('\n')
	for n := range 3 {
		fmt.Println(work(n))
	}
	fmt.Println(more(3))
}
