// Command descend waits for a line on stdin, then recurses deep enough in fresh
// goroutines that their stacks grow (morestack re-enters the function from its first
// instruction), and exits: a target for the entry probe test.
package main

import (
	"bufio"
	"os"
	"sync"
	"sync/atomic"
)

var sink atomic.Int64

//go:noinline
func descend(depth, acc int) int {
	var frame [32]int // a frame big enough for the LEAQ/CMPQ/JLS stack check
	for i := range frame {
		frame[i] = acc + i
	}
	if depth == 0 {
		return frame[depth%32]
	}
	return descend(depth-1, acc+frame[depth%32])
}

func main() {
	bufio.NewReader(os.Stdin).ReadString('\n')
	var wg sync.WaitGroup
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sink.Add(int64(descend(100, g)))
		}()
	}
	wg.Wait()
}
