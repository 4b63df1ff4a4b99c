// Command onecall makes one HTTP GET to the URL it is given (one client span under the
// launcher) and exits, printing the wall clock in nanoseconds just before it does: a
// one-call command, for the time the launcher takes to exit after its app.
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

func main() {
	res, err := http.Get(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	fmt.Println(time.Now().UnixNano())
}
