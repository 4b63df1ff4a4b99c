// Command hello prints a line and exits: the smallest Go program, for start-up timing.
package main

import "fmt"

func main() { fmt.Println("hello") }
